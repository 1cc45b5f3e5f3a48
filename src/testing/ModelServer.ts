/**
 * An offline stand-in for the OpenAI Responses API on 127.0.0.1, for running
 * the real `codex app-server` with no network and no API key: in a test, in
 * CI, in a demo.
 *
 * What it serves: `POST <base>/v1/responses` (any path ending in
 * `/responses`), answered with a `text/event-stream` in the frame format
 * codex reads (`event: TYPE\ndata: JSON\n\n`) or with an HTTP error. Any other
 * path gets a 404 and is recorded in `unexpected`.
 *
 * How a request is answered, first match wins:
 * 1. the next reply queued with `enqueue` (or given as `replies`);
 * 2. `respond(request)`, if it returns a reply (it may be async);
 * 3. a directive in the last user message, e.g. `[mode:slow]` (see
 *    {@link parseDirectives}): one prompt can choose its own behaviour, which
 *    lets one server serve many concurrent codex workers;
 * 4. `modeFor(body)`, if it returns a mode;
 * 5. the server-wide mode (`mode`, changed by `setMode`), default `text`.
 * A reply is built from `Reply` parts (text, reasoning, function calls,
 * failures, pauses; or an HTTP error such as a 429). The modes are shorthands:
 * `text` streams {@link defaultReply} (`Echo: <last user message>`) in
 * `deltas` pieces; `slow` the same with a pause after each delta; `failed` a
 * `response.failed`; `http500` / `http401` those statuses; `cut` half of the
 * deltas, then the stream ends without `response.completed`.
 *
 * Every model request is recorded in `requests` at arrival, in order: body,
 * headers (with `authorization`), the model, the tools offered, this turn's
 * tool outputs, the images of the last user message, and how it was answered.
 *
 * What codex 0.169 makes of it (with the arguments of `codexArgs`):
 * - text parts arrive as `item/agentMessage/delta` and an `agentMessage` item;
 * - reasoning parts as a `reasoning` item with `item/reasoning/summaryTextDelta`
 *   (and `item/reasoning/textDelta` for content);
 * - a function call of `exec_command` runs a shell command (a
 *   `commandExecution` item) when the thread's approval policy and sandbox
 *   allow it; a call of a dynamic tool becomes an `item/tool/call` server
 *   request; a custom call of `apply_patch` a `fileChange` item; either way
 *   codex then asks the model again with the output;
 * - a web search becomes a `webSearch` item (no further request);
 * - `fail`, `cut`, HTTP 500 and 401 fail the turn (an `error` notification,
 *   then `turn/completed` with status "failed"); a 429 with `retry-after` is
 *   retried after that delay when the provider allows stream retries, a 429
 *   without it fails the turn at once.
 *
 * Guarantees: binds 127.0.0.1 on a free port; fresh ids per response
 * (`resp_N`, items `msg_N_K`, `rs_N_K`, `fc_N_K`, calls `call_N_K`); the text
 * deltas concatenate exactly to the text; a client that disconnects
 * mid-stream stops its timers; `close()` ends every open connection and timer,
 * so a test's teardown never hangs on it. No dependencies beyond node:http and
 * node:zlib.
 *
 * Limits: the request body is not validated beyond being JSON; `usage`
 * numbers are made up unless a `Reply.usage` part sets them; compressed
 * request bodies are decoded for gzip/deflate/br/zstd only; no websocket
 * transport, no `/models` endpoint. Not a faithful model of the real service's
 * timing or errors beyond the shapes listed.
 *
 * @example
 * ```ts
 * import { Reply, startModelServer } from "codex-worker-pool/testing"
 *
 * const server = await startModelServer({ respond: () => [Reply.reasoning("Thinking"), Reply.text("Done.")] })
 * server.enqueue(Reply.rateLimited({ retryAfterSeconds: 0 }))  // the first request gets a 429
 * // ... run codex with codexArgs({ baseUrl: server.url }) ...
 * server.requests[0]?.authorization // "Bearer <the key codex sent>"
 * await server.close()
 * ```
 *
 * @since 0.1.0
 */
import * as http from "node:http"
import type { AddressInfo } from "node:net"
import * as zlib from "node:zlib"
import * as Reply from "./Reply.ts"

/**
 * How the server answers a request no script decided.
 *
 * @since 0.1.0
 * @category models
 */
export type ModelServerMode = "text" | "slow" | "failed" | "http500" | "http401" | "cut"

/**
 * Every mode, e.g. for validating a `[mode:NAME]` directive.
 *
 * @since 0.1.0
 * @category constants
 */
export const modelServerModes: ReadonlyArray<ModelServerMode> = ["text", "slow", "failed", "http500", "http401", "cut"]

/**
 * The output of a tool call that codex sends back to the model.
 *
 * @since 0.1.0
 * @category models
 */
export interface ToolOutput {
  readonly callId: string
  /** The `output` field as sent: a string, or a list of content items. */
  readonly output: unknown
}

/**
 * A model request as `respond` sees it and `requests` records it.
 *
 * @since 0.1.0
 * @category models
 */
export interface ModelRequest {
  /** 1-based count of model requests this server has received. */
  readonly index: number
  /** The parsed JSON body (the raw string if it was not JSON). */
  readonly body: unknown
  /** Request headers, lower-case names (`authorization`, `originator`, `session-id`, ...). */
  readonly headers: http.IncomingHttpHeaders
  readonly path: string
  /** `Date.now()` when the body had been read. */
  readonly receivedAt: number
  /** `body.model`. */
  readonly model: string | undefined
  /** The `authorization` header, e.g. `"Bearer sk-..."`. */
  readonly authorization: string | undefined
  /** Text of the last `role: "user"` message in `body.input` ("" if none). */
  readonly userText: string
  /** `image_url`s of the `input_image` parts of the last user message (data URLs for local images). */
  readonly images: ReadonlyArray<string>
  /** Names of the tools offered in `body.tools` (the `type` for tools without a name, e.g. `web_search`). */
  readonly toolNames: ReadonlyArray<string>
  /**
   * `function_call_output` and `custom_tool_call_output` items after the last
   * user message: this turn's tool results so far.
   */
  readonly toolOutputs: ReadonlyArray<ToolOutput>
}

/**
 * One model request as the server saw and answered it.
 *
 * @since 0.1.0
 * @category models
 */
export interface RecordedModelRequest extends ModelRequest {
  /** How the reply was chosen: a mode, or `"scripted"` (the queue or `respond`). */
  mode: ModelServerMode | "scripted"
  /** The reply sent (`undefined` while an async `respond` is deciding). */
  reply: Reply.Reply | undefined
  /** The text of the reply's text parts, concatenated (`""` for none). */
  replyText: string
  /** The text deltas the stream carries, in order. */
  deltas: ReadonlyArray<string>
  /** Usage reported in `response.completed`, if the stream completes. */
  usage: Reply.ModelUsage | undefined
  /**
   * `"streaming"` while the response is open, `"finished"` once the server
   * ended it, `"aborted"` if the client closed the connection first (e.g.
   * codex after `turn/interrupt`).
   */
  status: "streaming" | "finished" | "aborted"
  /** Set when `respond` threw or returned something that is not a reply (then answered with HTTP 500). */
  error: string | undefined
}

/**
 * A request to a path the server does not serve.
 *
 * @since 0.1.0
 * @category models
 */
export interface UnexpectedRequest {
  readonly method: string
  readonly path: string
  readonly receivedAt: number
}

/**
 * What the `text` option and usage function get to look at.
 *
 * @since 0.1.0
 * @category models
 */
export type ModelRequestContext = ModelRequest

/**
 * Settings of a model server; every field is optional.
 *
 * @since 0.1.0
 * @category models
 */
export interface ModelServerOptions {
  /** Chooses the reply of a request; `undefined` falls through to directives and modes. May be async. */
  readonly respond?: ((request: ModelRequest) => Reply.Reply | undefined | Promise<Reply.Reply | undefined>) | undefined
  /** Replies queued from the start, used one per request before anything else. */
  readonly replies?: ReadonlyArray<Reply.Reply> | undefined
  /** Server-wide mode used when nothing else decides; default `"text"`. */
  readonly mode?: ModelServerMode | undefined
  /** Per-request mode choice; return `undefined` to fall through to the server-wide mode. */
  readonly modeFor?: ((body: unknown) => ModelServerMode | undefined) | undefined
  /** Reply text of the modes, fixed or derived from the request; default {@link defaultReply} of the user text. */
  readonly text?: string | ((request: ModelRequestContext) => string) | undefined
  /** How many `response.output_text.delta` events a mode's reply is split into; default 3. */
  readonly deltas?: number | undefined
  /** Pause after each delta in `slow` mode, in ms; default 300. */
  readonly slowDelayMs?: number | undefined
  /** Message carried by the modes' `response.failed` and HTTP error bodies. */
  readonly errorMessage?: string | undefined
  /** Usage for `response.completed` when no `Reply.usage` part sets it; default {@link defaultUsage}. */
  readonly usage?: ((request: ModelRequestContext, replyText: string, deltaCount: number) => Reply.ModelUsage) | undefined
}

/**
 * A running model server.
 *
 * @since 0.1.0
 * @category models
 */
export interface ModelServer {
  /** Base URL for a codex model provider, e.g. `http://127.0.0.1:PORT/v1`. */
  readonly url: string
  readonly port: number
  /** Model requests in arrival order (a live array). */
  readonly requests: Array<RecordedModelRequest>
  /** Requests to other paths (a live array); normally empty. */
  readonly unexpected: Array<UnexpectedRequest>
  /** Queues replies for the next requests, one each, ahead of `respond` and the modes. */
  enqueue(...replies: ReadonlyArray<Reply.Reply>): void
  /** How many queued replies are left. */
  readonly queued: number
  /** Changes the server-wide mode for later requests. */
  setMode(mode: ModelServerMode): void
  /** Stops listening, ends open connections and pending timers. Idempotent. */
  close(): Promise<void>
}

/**
 * The default reply of the modes: echoes the user's text.
 *
 * @since 0.1.0
 * @category constructors
 */
export const defaultReply = (userText: string): string => `Echo: ${userText}`

/**
 * The default usage: input ~ body length / 4, output = number of deltas.
 *
 * @since 0.1.0
 * @category constructors
 */
export const defaultUsage = (request: ModelRequestContext, _replyText: string, deltaCount: number): Reply.ModelUsage => {
  const input = Math.max(1, Math.ceil(JSON.stringify(request.body ?? "").length / 4))
  return { input_tokens: input, output_tokens: deltaCount, total_tokens: input + deltaCount }
}

/**
 * Directives found in a prompt: `[mode:NAME]`, `[deltas:N]`, `[delay:MS]`
 * (pause after each delta, in any streaming mode).
 *
 * @since 0.1.0
 * @category models
 */
export interface PromptDirectives {
  readonly mode?: ModelServerMode
  readonly deltas?: number
  readonly delayMs?: number
}

/**
 * Reads `[mode:NAME]`, `[deltas:N]` and `[delay:MS]` directives from a prompt
 * text. Unknown values are ignored.
 *
 * @since 0.1.0
 * @category utils
 */
export const parseDirectives = (text: string): PromptDirectives => {
  const result: { mode?: ModelServerMode; deltas?: number; delayMs?: number } = {}
  for (const match of text.matchAll(/\[(mode|deltas|delay):([^\]\s]+)\]/g)) {
    const key = match[1]
    const value = match[2] ?? ""
    if (key === "mode") {
      const mode = modelServerModes.find((m) => m === value)
      if (mode !== undefined) result.mode = mode
    } else {
      const n = Number(value)
      if (Number.isInteger(n) && n >= 0) {
        if (key === "deltas" && n >= 1) result.deltas = n
        if (key === "delay") result.delayMs = n
      }
    }
  }
  return result
}

const isRecord = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value)

const inputOf = (body: unknown): ReadonlyArray<unknown> => {
  const input = isRecord(body) ? body["input"] : undefined
  return Array.isArray(input) ? input : []
}

const lastUserIndex = (input: ReadonlyArray<unknown>): number => {
  for (let i = input.length - 1; i >= 0; i--) {
    const item = input[i]
    if (isRecord(item) && item["role"] === "user") return i
  }
  return -1
}

const contentParts = (item: unknown): ReadonlyArray<unknown> => {
  if (!isRecord(item)) return []
  const content = item["content"]
  return Array.isArray(content) ? content : []
}

/**
 * Text of the last `role: "user"` message of a Responses-API request body
 * ("" if none).
 *
 * @since 0.1.0
 * @category utils
 */
export const lastUserText = (body: unknown): string => {
  const input = inputOf(body)
  const index = lastUserIndex(input)
  if (index < 0) return ""
  const item = input[index] as Record<string, unknown>
  if (typeof item["content"] === "string") return item["content"]
  return contentParts(item)
    .map((part) => (isRecord(part) && typeof part["text"] === "string" ? part["text"] : ""))
    .join("")
}

/**
 * Splits `text` into at most `count` non-empty pieces of near-equal length
 * (by code point) that concatenate to `text`. An empty text gives no pieces.
 *
 * @since 0.1.0
 * @category utils
 */
export const splitIntoDeltas = (text: string, count: number): Array<string> => {
  const chars = Array.from(text)
  const n = Math.max(1, Math.min(Math.floor(count), chars.length))
  const pieces: Array<string> = []
  let start = 0
  for (let i = 0; i < n && start < chars.length; i++) {
    const end = Math.round(((i + 1) * chars.length) / n)
    pieces.push(chars.slice(start, end).join(""))
    start = end
  }
  return pieces
}

/** Reads the facts of a request body that tests and scripts ask about. */
const describeRequest = (
  index: number,
  body: unknown,
  headers: http.IncomingHttpHeaders,
  path: string,
  receivedAt: number
): ModelRequest => {
  const input = inputOf(body)
  const userIndex = lastUserIndex(input)
  const images: Array<string> = []
  if (userIndex >= 0) {
    for (const part of contentParts(input[userIndex])) {
      if (isRecord(part) && part["type"] === "input_image" && typeof part["image_url"] === "string") {
        images.push(part["image_url"])
      }
    }
  }
  const toolOutputs: Array<ToolOutput> = []
  for (const item of input.slice(userIndex + 1)) {
    if (!isRecord(item)) continue
    const type = item["type"]
    if ((type === "function_call_output" || type === "custom_tool_call_output") && typeof item["call_id"] === "string") {
      toolOutputs.push({ callId: item["call_id"], output: item["output"] })
    }
  }
  const tools = isRecord(body) && Array.isArray(body["tools"]) ? body["tools"] : []
  const toolNames = tools.flatMap((tool: unknown) =>
    !isRecord(tool) ? [] : typeof tool["name"] === "string" ? [tool["name"]] : typeof tool["type"] === "string" ? [tool["type"]] : []
  )
  const model = isRecord(body) && typeof body["model"] === "string" ? body["model"] : undefined
  const authorization = headers["authorization"]
  return {
    index,
    body,
    headers,
    path,
    receivedAt,
    model,
    authorization,
    userText: lastUserText(body),
    images,
    toolNames,
    toolOutputs
  }
}

type Frame = readonly [event: string, data: Record<string, unknown>]
type Step = { readonly frame: Frame } | { readonly pauseMs: number }

interface Plan {
  readonly steps: ReadonlyArray<Step>
  readonly replyText: string
  readonly deltas: ReadonlyArray<string>
  readonly usage: Reply.ModelUsage | undefined
}

/** The SSE frames (and pauses) of a streamed reply. Throws on something that is not a part. */
const planStream = (
  parts: ReadonlyArray<Reply.Part>,
  request: ModelRequest,
  defaultUsageOf: (replyText: string, deltaCount: number) => Reply.ModelUsage
): Plan => {
  const n = request.index
  const responseId = `resp_${n}`
  const model = request.model ?? "mock-model"
  const steps: Array<Step> = []
  const frame = (event: string, data: Record<string, unknown>) => steps.push({ frame: [event, data] })
  const streamDeltas = (pieces: ReadonlyArray<string>, delayMs: number, make: (delta: string) => Record<string, unknown>, event: string) => {
    for (const delta of pieces) {
      frame(event, make(delta))
      if (delayMs > 0) steps.push({ pauseMs: delayMs })
    }
  }
  const output: Array<unknown> = []
  const textDeltas: Array<string> = []
  let replyText = ""
  let usage: Reply.ModelUsage | undefined
  let ended = false

  frame("response.created", {
    response: { id: responseId, object: "response", status: "in_progress", model, output: [] }
  })
  for (const part of parts) {
    if (ended) break
    const outputIndex = output.length
    switch (part?._tag) {
      case "Text": {
        const id = `msg_${n}_${outputIndex}`
        frame("response.output_item.added", {
          output_index: outputIndex,
          item: { type: "message", id, status: "in_progress", role: "assistant", content: [] }
        })
        const pieces = splitIntoDeltas(part.text, part.deltas)
        textDeltas.push(...pieces)
        replyText += part.text
        streamDeltas(pieces, part.delayMs, (delta) => ({
          item_id: id,
          output_index: outputIndex,
          content_index: 0,
          delta
        }), "response.output_text.delta")
        const item = {
          type: "message",
          id,
          status: "completed",
          role: "assistant",
          content: [{ type: "output_text", text: part.text, annotations: [] }]
        }
        output.push(item)
        if (part.complete) frame("response.output_item.done", { output_index: outputIndex, item })
        break
      }
      case "Reasoning": {
        const id = `rs_${n}_${outputIndex}`
        frame("response.output_item.added", {
          output_index: outputIndex,
          item: { type: "reasoning", id, summary: [] }
        })
        part.summary.forEach((summaryText, summaryIndex) => {
          const base = { item_id: id, output_index: outputIndex, summary_index: summaryIndex }
          frame("response.reasoning_summary_part.added", { ...base, part: { type: "summary_text", text: "" } })
          streamDeltas(
            splitIntoDeltas(summaryText, part.deltas),
            part.delayMs,
            (delta) => ({ ...base, delta }),
            "response.reasoning_summary_text.delta"
          )
          frame("response.reasoning_summary_text.done", { ...base, text: summaryText })
          frame("response.reasoning_summary_part.done", { ...base, part: { type: "summary_text", text: summaryText } })
        })
        part.content.forEach((contentText, contentIndex) => {
          const base = { item_id: id, output_index: outputIndex, content_index: contentIndex }
          streamDeltas(
            splitIntoDeltas(contentText, part.deltas),
            part.delayMs,
            (delta) => ({ ...base, delta }),
            "response.reasoning_text.delta"
          )
          frame("response.reasoning_text.done", { ...base, text: contentText })
        })
        const item = {
          type: "reasoning",
          id,
          summary: part.summary.map((s) => ({ type: "summary_text", text: s })),
          ...(part.content.length === 0 ? {} : { content: part.content.map((c) => ({ type: "reasoning_text", text: c })) }),
          encrypted_content: null
        }
        output.push(item)
        frame("response.output_item.done", { output_index: outputIndex, item })
        break
      }
      case "FunctionCall": {
        const id = `fc_${n}_${outputIndex}`
        const callId = part.callId ?? `call_${n}_${outputIndex}`
        const namespace = part.namespace === undefined ? {} : { namespace: part.namespace }
        frame("response.output_item.added", {
          output_index: outputIndex,
          item: { type: "function_call", id, call_id: callId, name: part.name, ...namespace, arguments: "", status: "in_progress" }
        })
        frame("response.function_call_arguments.delta", { item_id: id, output_index: outputIndex, delta: part.arguments })
        frame("response.function_call_arguments.done", { item_id: id, output_index: outputIndex, arguments: part.arguments })
        const item = {
          type: "function_call",
          id,
          call_id: callId,
          name: part.name,
          ...namespace,
          arguments: part.arguments,
          status: "completed"
        }
        output.push(item)
        frame("response.output_item.done", { output_index: outputIndex, item })
        break
      }
      case "CustomToolCall": {
        const id = `ct_${n}_${outputIndex}`
        const callId = part.callId ?? `call_${n}_${outputIndex}`
        frame("response.output_item.added", {
          output_index: outputIndex,
          item: { type: "custom_tool_call", id, call_id: callId, name: part.name, input: "", status: "in_progress" }
        })
        const item = { type: "custom_tool_call", id, call_id: callId, name: part.name, input: part.input, status: "completed" }
        output.push(item)
        frame("response.output_item.done", { output_index: outputIndex, item })
        break
      }
      case "WebSearch": {
        const id = `ws_${n}_${outputIndex}`
        const action = { type: "search", query: part.query }
        frame("response.output_item.added", {
          output_index: outputIndex,
          item: { type: "web_search_call", id, status: "in_progress", action }
        })
        const item = { type: "web_search_call", id, status: "completed", action }
        output.push(item)
        frame("response.output_item.done", { output_index: outputIndex, item })
        break
      }
      case "Pause":
        steps.push({ pauseMs: part.ms })
        break
      case "Usage":
        usage = part.usage
        break
      case "Fail":
        frame("response.failed", {
          response: {
            id: responseId,
            object: "response",
            status: "failed",
            model,
            error: { code: part.code, message: part.message },
            output
          }
        })
        ended = true
        break
      case "Cut":
        ended = true
        break
      default:
        throw new TypeError(`not a Reply part: ${JSON.stringify(part)}`)
    }
  }
  if (!ended) {
    usage ??= defaultUsageOf(replyText, textDeltas.length)
    frame("response.completed", {
      response: { id: responseId, object: "response", status: "completed", model, output, usage }
    })
  } else {
    usage = undefined
  }
  return { steps, replyText, deltas: textDeltas, usage }
}

/**
 * Starts a model server on 127.0.0.1 with a random free port.
 *
 * @since 0.1.0
 * @category constructors
 */
export const startModelServer = async (options: ModelServerOptions = {}): Promise<ModelServer> => {
  let serverMode: ModelServerMode = options.mode ?? "text"
  let counter = 0
  let closed = false
  const queue: Array<Reply.Reply> = [...(options.replies ?? [])]
  const requests: Array<RecordedModelRequest> = []
  const unexpected: Array<UnexpectedRequest> = []
  const timers = new Set<NodeJS.Timeout>()
  const errorMessage = options.errorMessage ?? "mock model server failure"
  const usageFn = options.usage ?? defaultUsage

  /** The reply of a mode, for a request no script answered. */
  const modeReply = (request: ModelRequest): { readonly mode: ModelServerMode; readonly reply: Reply.Reply } => {
    const directives = parseDirectives(request.userText)
    const mode = directives.mode ?? options.modeFor?.(request.body) ?? serverMode
    switch (mode) {
      case "http500":
        return { mode, reply: Reply.httpError(500, { message: errorMessage }) }
      case "http401":
        return { mode, reply: Reply.httpError(401, { message: errorMessage, code: "invalid_api_key" }) }
      case "failed":
        return { mode, reply: Reply.fail(errorMessage) }
      default: {
        const text = typeof options.text === "function"
          ? options.text(request)
          : options.text ?? defaultReply(request.userText)
        const deltas = directives.deltas ?? options.deltas ?? 3
        const delayMs = mode === "slow" ? directives.delayMs ?? options.slowDelayMs ?? 300 : directives.delayMs ?? 0
        if (mode !== "cut") return { mode, reply: Reply.text(text, { deltas, delayMs }) }
        // `cut` sends the first half of the deltas, no output_item.done, then ends.
        const planned = splitIntoDeltas(text, deltas)
        const sent = planned.slice(0, Math.ceil(planned.length / 2))
        return {
          mode,
          reply: sent.length === 0
            ? Reply.cut()
            : [Reply.text(sent.join(""), { deltas: sent.length, delayMs, complete: false }), Reply.cut()]
        }
      }
    }
  }

  const send = (res: http.ServerResponse, record: RecordedModelRequest, reply: Reply.Reply): void => {
    if (res.destroyed) return
    if (Reply.isHttp(reply)) {
      record.reply = reply
      sendJson(res, reply.status, reply.body, reply.headers)
      return
    }
    let plan: Plan
    try {
      const parts = Reply.partsOf(reply)
      if (parts === undefined || !parts.every((part) => part !== null && typeof part === "object")) {
        throw new TypeError(`not a Reply: ${JSON.stringify(reply)}`)
      }
      plan = planStream(parts, record, (replyText, deltaCount) => usageFn(record, replyText, deltaCount))
    } catch (error) {
      fail(res, record, error)
      return
    }
    record.reply = reply
    record.replyText = plan.replyText
    record.deltas = plan.deltas
    record.usage = plan.usage
    res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" })
    let sequence = 0
    let next = 0
    let pending: NodeJS.Timeout | undefined
    res.on("close", () => {
      if (pending !== undefined) {
        clearTimeout(pending)
        timers.delete(pending)
        pending = undefined
      }
    })
    const pump = (): void => {
      if (pending !== undefined) timers.delete(pending)
      pending = undefined
      while (next < plan.steps.length) {
        if (res.destroyed) return
        const step = plan.steps[next]!
        next++
        if ("pauseMs" in step) {
          if (step.pauseMs === 0) continue
          pending = setTimeout(pump, step.pauseMs)
          timers.add(pending)
          return
        }
        const [type, data] = step.frame
        res.write(`event: ${type}\ndata: ${JSON.stringify({ type, sequence_number: sequence++, ...data })}\n\n`)
      }
      if (!res.destroyed) res.end()
    }
    pump()
  }

  const fail = (res: http.ServerResponse, record: RecordedModelRequest, error: unknown): void => {
    const message = error instanceof Error ? error.message : String(error)
    record.error = message
    const reply = Reply.httpError(500, { message: `mock model server: respond failed: ${message}` })
    record.reply = reply
    if (!res.destroyed) sendJson(res, reply.status, reply.body, reply.headers)
  }

  const server = http.createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0] ?? "/"
    const chunks: Array<Buffer> = []
    req.on("data", (chunk: Buffer) => chunks.push(chunk))
    req.on("error", () => res.destroy())
    req.on("end", () => {
      const receivedAt = Date.now()
      if (req.method !== "POST" || !path.endsWith("/responses")) {
        unexpected.push({ method: req.method ?? "", path, receivedAt })
        sendJson(res, 404, { error: { message: `mock model server: no route for ${req.method} ${path}` } }, {})
        return
      }
      const body = parseBody(Buffer.concat(chunks), req.headers["content-encoding"])
      const request = describeRequest(++counter, body, req.headers, path, receivedAt)
      const record: RecordedModelRequest = {
        ...request,
        mode: "scripted",
        reply: undefined,
        replyText: "",
        deltas: [],
        usage: undefined,
        status: "streaming",
        error: undefined
      }
      res.on("finish", () => {
        record.status = "finished"
      })
      res.on("close", () => {
        if (record.status === "streaming") record.status = "aborted"
      })

      const fallBack = () => {
        const chosen = modeReply(request)
        record.mode = chosen.mode
        send(res, record, chosen.reply)
      }
      const queued = queue.shift()
      if (queued !== undefined) {
        requests.push(record)
        send(res, record, queued)
        return
      }
      let decided: Reply.Reply | undefined | Promise<Reply.Reply | undefined>
      try {
        decided = options.respond?.(request)
      } catch (error) {
        requests.push(record)
        fail(res, record, error)
        return
      }
      if (decided instanceof Promise) {
        requests.push(record)
        decided.then(
          (reply) => (reply === undefined ? fallBack() : send(res, record, reply)),
          (error: unknown) => fail(res, record, error)
        )
        return
      }
      if (decided === undefined) {
        // Chosen synchronously, so `mode` is final when the record appears.
        const chosen = modeReply(request)
        record.mode = chosen.mode
        requests.push(record)
        send(res, record, chosen.reply)
        return
      }
      requests.push(record)
      send(res, record, decided)
    })
  })

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      server.off("error", reject)
      resolve()
    })
  })
  const port = (server.address() as AddressInfo).port

  return {
    url: `http://127.0.0.1:${port}/v1`,
    port,
    requests,
    unexpected,
    enqueue: (...replies) => {
      queue.push(...replies)
    },
    get queued() {
      return queue.length
    },
    setMode: (mode) => {
      serverMode = mode
    },
    close: () => {
      if (closed) return Promise.resolve()
      closed = true
      for (const timer of timers) clearTimeout(timer)
      timers.clear()
      return new Promise<void>((resolve) => {
        server.close(() => resolve())
        server.closeAllConnections()
      })
    }
  }
}

const sendJson = (
  res: http.ServerResponse,
  status: number,
  payload: unknown,
  headers: Readonly<Record<string, string>>
): void => {
  const text = JSON.stringify(payload)
  res.writeHead(status, { ...headers, "content-type": "application/json", "content-length": Buffer.byteLength(text) })
  res.end(text)
}

const parseBody = (raw: Buffer, encoding: string | undefined): unknown => {
  let bytes = raw
  try {
    if (encoding === "gzip") bytes = zlib.gunzipSync(raw)
    else if (encoding === "deflate") bytes = zlib.inflateSync(raw)
    else if (encoding === "br") bytes = zlib.brotliDecompressSync(raw)
    else if (encoding === "zstd") bytes = zlib.zstdDecompressSync(raw)
  } catch {
    return raw.toString("utf8")
  }
  const text = bytes.toString("utf8")
  try {
    return JSON.parse(text) as unknown
  } catch {
    return text
  }
}

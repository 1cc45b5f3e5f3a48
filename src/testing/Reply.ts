/**
 * Scripted answers of the offline model server (`startModelServer`): what it
 * sends back for one model request, built from parts.
 *
 * A reply is either a list of stream parts, streamed as one Responses-API
 * `text/event-stream` (`response.created`, one output item per part,
 * `response.completed`), or one HTTP failure answered instead of a stream
 * (`httpError`, `rateLimited`).
 *
 * Stream parts:
 * - `text(s)`: an assistant message streamed in `deltas` pieces;
 * - `reasoning(summary)`: a reasoning item with summary parts (and optional
 *   raw reasoning text) streamed as deltas;
 * - `functionCall(name, args)`: a call of a tool the request offered
 *   (`exec_command` for codex's shell, or a client's dynamic tool);
 *   `shellCommand(cmd)` is that call for codex's `exec_command` tool;
 * - `customToolCall(name, input)`: a call of a freeform tool, e.g. codex's
 *   `apply_patch` (`applyPatch(patch)`), offered to the models codex knows;
 * - `webSearch(query)`: a web search the model ran itself;
 * - `fail(message)`: a `response.failed` event, then the stream ends;
 * - `cut()`: the stream ends here, without `response.completed`;
 * - `pause(ms)`: the stream waits before the next part;
 * - `usage(u)`: the token usage `response.completed` reports.
 *
 * One codex turn can take several model requests: after a function call codex
 * runs the tool and asks the model again with the tool's output in `input`,
 * so a turn with one tool call needs two replies (the call, then e.g. a text).
 *
 * Guarantees: the constructors validate their arguments and throw a
 * `TypeError` naming the bad one; parts are plain immutable data, so a reply
 * can be reused for many requests.
 *
 * Limits: only the event shapes listed in each constructor are produced
 * (checked against codex-cli 0.169.0); no images or refusal parts. Parts
 * after `fail()` or `cut()` are not sent.
 *
 * @since 0.1.0
 */

/**
 * An assistant message, streamed as `response.output_item.added` (message),
 * N x `response.output_text.delta`, `response.output_item.done` with the full
 * text.
 *
 * @since 0.1.0
 * @category models
 */
export interface TextPart {
  readonly _tag: "Text"
  readonly text: string
  /** Number of `response.output_text.delta` events (fewer when the text is shorter). */
  readonly deltas: number
  /** Pause after each delta, in ms (the first delta goes out at once). */
  readonly delayMs: number
  /** `false`: no `response.output_item.done` for this message (a message the model never finished). */
  readonly complete: boolean
}

/**
 * A reasoning item: `response.output_item.added` (reasoning), per summary part
 * `response.reasoning_summary_part.added` + `response.reasoning_summary_text.delta`s
 * (+ `.done` events), per content part `response.reasoning_text.delta`s, then
 * `response.output_item.done` with the whole item.
 *
 * @since 0.1.0
 * @category models
 */
export interface ReasoningPart {
  readonly _tag: "Reasoning"
  /** Summary parts, each streamed with its own `summary_index`. */
  readonly summary: ReadonlyArray<string>
  /** Raw reasoning text parts, each streamed with its own `content_index`. */
  readonly content: ReadonlyArray<string>
  /** Deltas per summary or content part. */
  readonly deltas: number
  /** Pause after each delta, in ms. */
  readonly delayMs: number
}

/**
 * A function call: `response.output_item.added` (function_call, empty
 * arguments), `response.function_call_arguments.delta` and `.done`,
 * `response.output_item.done` with the full arguments.
 *
 * @since 0.1.0
 * @category models
 */
export interface FunctionCallPart {
  readonly _tag: "FunctionCall"
  readonly name: string
  /** The arguments as the JSON string the model sends. */
  readonly arguments: string
  /** The call id codex answers with; default `call_<request>_<output index>`. */
  readonly callId: string | undefined
  /** Namespace of a namespaced tool (e.g. `multi_agent_v1`), if any. */
  readonly namespace: string | undefined
}

/**
 * A call of a freeform ("custom") tool: `response.output_item.added` and
 * `response.output_item.done` with `{type: "custom_tool_call", call_id, name,
 * input}`. Codex answers it with a `custom_tool_call_output` in its next
 * request.
 *
 * @since 0.1.0
 * @category models
 */
export interface CustomToolCallPart {
  readonly _tag: "CustomToolCall"
  readonly name: string
  /** The tool's input, as is (e.g. a patch). */
  readonly input: string
  readonly callId: string | undefined
}

/**
 * A web search the model ran: `response.output_item.added` and
 * `response.output_item.done` with `{type: "web_search_call", status, action:
 * {type: "search", query}}`. Codex shows it as a `webSearch` item; no request
 * follows.
 *
 * @since 0.1.0
 * @category models
 */
export interface WebSearchPart {
  readonly _tag: "WebSearch"
  readonly query: string
}

/**
 * A `response.failed` event carrying `error: { code, message }`; the stream
 * ends after it.
 *
 * @since 0.1.0
 * @category models
 */
export interface FailPart {
  readonly _tag: "Fail"
  readonly message: string
  /** E.g. `server_error`, `rate_limit_exceeded`, `context_length_exceeded`, `insufficient_quota`. */
  readonly code: string
}

/**
 * The stream ends here, without `response.completed`.
 *
 * @since 0.1.0
 * @category models
 */
export interface CutPart {
  readonly _tag: "Cut"
}

/**
 * The stream waits `ms` before the next part.
 *
 * @since 0.1.0
 * @category models
 */
export interface PausePart {
  readonly _tag: "Pause"
  readonly ms: number
}

/**
 * Token usage reported in `response.completed`, in the Responses API's shape.
 *
 * @since 0.1.0
 * @category models
 */
export interface ModelUsage {
  readonly input_tokens: number
  readonly output_tokens: number
  readonly total_tokens: number
  readonly input_tokens_details?: { readonly cached_tokens: number } | undefined
  readonly output_tokens_details?: { readonly reasoning_tokens: number } | undefined
}

/**
 * Sets the usage `response.completed` reports (instead of the server's default).
 *
 * @since 0.1.0
 * @category models
 */
export interface UsagePart {
  readonly _tag: "Usage"
  readonly usage: ModelUsage
}

/**
 * A part of a streamed reply.
 *
 * @since 0.1.0
 * @category models
 */
export type Part =
  | TextPart
  | ReasoningPart
  | FunctionCallPart
  | CustomToolCallPart
  | WebSearchPart
  | FailPart
  | CutPart
  | PausePart
  | UsagePart

/**
 * An HTTP answer instead of a stream: a status, a JSON error body and headers.
 *
 * @since 0.1.0
 * @category models
 */
export interface HttpReply {
  readonly _tag: "Http"
  readonly status: number
  readonly body: unknown
  readonly headers: Readonly<Record<string, string>>
}

/**
 * What the server answers one model request with.
 *
 * @since 0.1.0
 * @category models
 */
export type Reply = Part | ReadonlyArray<Part> | HttpReply

const nonNegativeInt = (name: string, value: number | undefined, fallback: number, min = 0): number => {
  if (value === undefined) return fallback
  if (!Number.isInteger(value) || value < min) {
    throw new TypeError(`Reply: ${name} must be an integer >= ${min}, got ${value}`)
  }
  return value
}

const string = (name: string, value: unknown): string => {
  if (typeof value !== "string") throw new TypeError(`Reply: ${name} must be a string, got ${typeof value}`)
  return value
}

const strings = (name: string, value: string | ReadonlyArray<string>): ReadonlyArray<string> => {
  const list = typeof value === "string" ? [value] : value
  if (!Array.isArray(list)) throw new TypeError(`Reply: ${name} must be a string or an array of strings`)
  list.forEach((item, i) => string(`${name}[${i}]`, item))
  return [...list]
}

/**
 * Options of a streamed part.
 *
 * @since 0.1.0
 * @category models
 */
export interface StreamOptions {
  /** How many delta events (per part); default 3. */
  readonly deltas?: number | undefined
  /** Pause after each delta, in ms; default 0. */
  readonly delayMs?: number | undefined
}

/**
 * An assistant message with `content`, streamed in `deltas` pieces (default 3).
 *
 * @example
 * ```ts
 * import { Reply, startModelServer } from "codex-worker-pool/testing"
 *
 * const server = await startModelServer({ respond: () => Reply.text("Hello!", { deltas: 2 }) })
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const text = (
  content: string,
  options: StreamOptions & { readonly complete?: boolean | undefined } = {}
): TextPart => ({
  _tag: "Text",
  text: string("text", content),
  deltas: nonNegativeInt("deltas", options.deltas, 3, 1),
  delayMs: nonNegativeInt("delayMs", options.delayMs, 0),
  complete: options.complete ?? true
})

/**
 * A reasoning item. Codex forwards the summary as `item/reasoning/summaryTextDelta`
 * notifications and the content as `item/reasoning/textDelta`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const reasoning = (
  summary: string | ReadonlyArray<string>,
  options: StreamOptions & { readonly content?: string | ReadonlyArray<string> | undefined } = {}
): ReasoningPart => ({
  _tag: "Reasoning",
  summary: strings("summary", summary),
  content: options.content === undefined ? [] : strings("content", options.content),
  deltas: nonNegativeInt("deltas", options.deltas, 3, 1),
  delayMs: nonNegativeInt("delayMs", options.delayMs, 0)
})

/**
 * A call of the tool `name` with `args` (an object, serialized as JSON, or a
 * JSON string sent as is). The name must be one the request offered (see
 * `ModelRequest.toolNames`), e.g. `exec_command` or a dynamic tool's name.
 *
 * @since 0.1.0
 * @category constructors
 */
export const functionCall = (
  name: string,
  args: unknown = {},
  options: { readonly callId?: string | undefined; readonly namespace?: string | undefined } = {}
): FunctionCallPart => {
  const serialized = typeof args === "string" ? args : JSON.stringify(args)
  if (serialized === undefined) throw new TypeError("Reply: functionCall arguments must be JSON-serializable")
  return {
    _tag: "FunctionCall",
    name: string("name", name),
    arguments: serialized,
    callId: options.callId === undefined ? undefined : string("callId", options.callId),
    namespace: options.namespace === undefined ? undefined : string("namespace", options.namespace)
  }
}

/**
 * A call of codex's shell tool (`exec_command`, codex-cli 0.169) running
 * `command`. Whether codex runs it depends on the thread's approval policy and
 * sandbox: with `approvalPolicy: "never"` and `sandbox: "danger-full-access"`
 * it runs at once; otherwise codex may ask for an approval first.
 *
 * @since 0.1.0
 * @category constructors
 */
export const shellCommand = (
  command: string,
  options: { readonly workdir?: string | undefined; readonly callId?: string | undefined } = {}
): FunctionCallPart =>
  functionCall(
    "exec_command",
    options.workdir === undefined
      ? { cmd: string("command", command), login: false }
      : { cmd: string("command", command), login: false, workdir: options.workdir },
    { callId: options.callId }
  )

/**
 * A call of the freeform tool `name` with `input` sent as is. The name must
 * be one the request offered as a `custom` tool (codex 0.169 offers
 * `apply_patch` to the models it knows, e.g. `gpt-5.5`, not to unknown ones).
 *
 * @since 0.1.0
 * @category constructors
 */
export const customToolCall = (
  name: string,
  input: string,
  options: { readonly callId?: string | undefined } = {}
): CustomToolCallPart => ({
  _tag: "CustomToolCall",
  name: string("name", name),
  input: string("input", input),
  callId: options.callId === undefined ? undefined : string("callId", options.callId)
})

/**
 * A call of codex's `apply_patch` with `patch` (`*** Begin Patch` ...
 * `*** End Patch`): codex applies it as a `fileChange` item when the sandbox
 * allows writing there, or asks for an approval first.
 *
 * @since 0.1.0
 * @category constructors
 */
export const applyPatch = (patch: string, options: { readonly callId?: string | undefined } = {}): CustomToolCallPart =>
  customToolCall("apply_patch", patch, options)

/**
 * A web search for `query` that the model ran itself.
 *
 * @since 0.1.0
 * @category constructors
 */
export const webSearch = (query: string): WebSearchPart => ({ _tag: "WebSearch", query: string("query", query) })

/**
 * A `response.failed` event with `error: { code, message }` (code default
 * `server_error`). Codex fails the turn with "stream disconnected before
 * completion: MESSAGE"; with code `rate_limit_exceeded` and "try again in Ns"
 * in the message it treats it as retryable.
 *
 * @since 0.1.0
 * @category constructors
 */
export const fail = (message = "mock model server failure", options: { readonly code?: string | undefined } = {}): FailPart => ({
  _tag: "Fail",
  message: string("message", message),
  code: options.code === undefined ? "server_error" : string("code", options.code)
})

/**
 * Ends the stream at this point without `response.completed` (codex: "stream
 * closed before response.completed").
 *
 * @since 0.1.0
 * @category constructors
 */
export const cut = (): CutPart => ({ _tag: "Cut" })

/**
 * Waits `ms` before sending the next part.
 *
 * @since 0.1.0
 * @category constructors
 */
export const pause = (ms: number): PausePart => ({ _tag: "Pause", ms: nonNegativeInt("ms", ms, 0) })

/**
 * The usage `response.completed` reports for this reply.
 *
 * @since 0.1.0
 * @category constructors
 */
export const usage = (
  value: {
    readonly input: number
    readonly output: number
    readonly cachedInput?: number | undefined
    readonly reasoningOutput?: number | undefined
  }
): UsagePart => {
  const input = nonNegativeInt("input", value.input, 0)
  const output = nonNegativeInt("output", value.output, 0)
  return {
    _tag: "Usage",
    usage: {
      input_tokens: input,
      output_tokens: output,
      total_tokens: input + output,
      ...(value.cachedInput === undefined
        ? {}
        : { input_tokens_details: { cached_tokens: nonNegativeInt("cachedInput", value.cachedInput, 0) } }),
      ...(value.reasoningOutput === undefined
        ? {}
        : { output_tokens_details: { reasoning_tokens: nonNegativeInt("reasoningOutput", value.reasoningOutput, 0) } })
    }
  }
}

/**
 * An HTTP error answer: `status` with the JSON body
 * `{ error: { message, type, code, param: null } }` and extra `headers`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const httpError = (
  status: number,
  options: {
    readonly message?: string | undefined
    readonly type?: string | undefined
    readonly code?: string | null | undefined
    readonly headers?: Readonly<Record<string, string>> | undefined
  } = {}
): HttpReply => {
  if (!Number.isInteger(status) || status < 400 || status > 599) {
    throw new TypeError(`Reply: status must be an HTTP error status (400-599), got ${status}`)
  }
  return {
    _tag: "Http",
    status,
    body: {
      error: {
        message: options.message ?? "mock model server failure",
        type: options.type ?? (status >= 500 ? "server_error" : "invalid_request_error"),
        code: options.code ?? null,
        param: null
      }
    },
    headers: { ...options.headers }
  }
}

/**
 * HTTP 429 with a `rate_limit_exceeded` error body, and a `retry-after`
 * header (whole seconds, as HTTP defines it) when `retryAfterSeconds` is
 * given. Codex 0.169 with `stream_max_retries` > 0 (`codexArgs({ retries: {
 * stream: N } })`) waits that long and retries, sending an `error`
 * notification with `willRetry: true` ("Reconnecting... 1/N"); without the
 * header, or once the retries are used up, it fails the turn. Codex reads
 * only whole seconds: `retry-after: 0` retries at once, a fraction is ignored
 * (as if there were no header), `retry-after-ms` is not read.
 *
 * @since 0.1.0
 * @category constructors
 */
export const rateLimited = (
  options: { readonly retryAfterSeconds?: number | undefined; readonly message?: string | undefined } = {}
): HttpReply => {
  const seconds = options.retryAfterSeconds === undefined
    ? undefined
    : nonNegativeInt("retryAfterSeconds", options.retryAfterSeconds, 0)
  return httpError(429, {
    message: options.message ?? "Rate limit reached for requests",
    type: "requests",
    code: "rate_limit_exceeded",
    headers: seconds === undefined ? {} : { "retry-after": String(seconds) }
  })
}

/**
 * The parts of a reply as a list (an `HttpReply` gives `undefined`).
 *
 * @since 0.1.0
 * @category getters
 */
export const partsOf = (reply: Reply): ReadonlyArray<Part> | undefined =>
  isHttp(reply) ? undefined : Array.isArray(reply) ? reply : [reply as Part]

/**
 * Whether a reply is an HTTP answer rather than a stream.
 *
 * @since 0.1.0
 * @category guards
 */
export const isHttp = (reply: Reply): reply is HttpReply =>
  !Array.isArray(reply) && (reply as { readonly _tag?: unknown })._tag === "Http"

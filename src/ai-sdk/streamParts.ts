/**
 * Codex's item notifications as AI SDK stream parts: agent messages as text,
 * reasoning as reasoning, and Codex's own actions as provider-executed tool
 * calls. Pure: no I/O, no timers; the turn feeds it the notifications of its
 * own thread and turn, in order.
 *
 * Guarantees:
 * - `item/agentMessage/delta` -> `text-start` / `text-delta` / `text-end`
 *   (id = the item id); a message that arrives whole (no deltas) is emitted
 *   at its completion;
 * - reasoning: each summary part and each raw-content part of a `reasoning`
 *   item is its own `reasoning-start` / `-delta` / `-end` block (ids
 *   `ITEM:s0`, `ITEM:s1`, ... and `ITEM:c0`, ...), like the OpenAI provider;
 *   a summary part ends when the next one is added; text that was never
 *   streamed is emitted from the completed item;
 * - Codex's actions (command execution, file change, MCP tool call, web
 *   search, call of a dynamic tool that is not an AI SDK tool of the call,
 *   image view, plan update) become one
 *   `tool-call` and one final `tool-result`, both `providerExecuted: true` and
 *   `dynamic: true` (without both `streamText` throws "Model tried to call
 *   unavailable tool"), with the inputs and results the README's AI SDK
 *   section lists; tool names are `codex_command_execution`, `codex_file_change`, `codex_web_search`,
 *   `codex_view_image`, `codex_update_plan`, `mcp__SERVER__TOOL`, and the
 *   dynamic tool's own name;
 * - results of actions that did not complete (`failed`, `declined`, a failed
 *   dynamic tool) are `isError: true`;
 * - streamed command output and MCP progress go out as they arrive, as
 *   `tool-result` parts with `preliminary: true` (the V3 spec's way: they
 *   replace each other, and the final result follows), unless
 *   `streamToolOutput` is off. Each carries the output so far, cut to its last
 *   `PRELIMINARY_OUTPUT_LIMIT` characters (`outputTruncated: true`);
 * - a web search that opened a page adds a `source` part (url); a generated
 *   image with its bytes adds a `file` part;
 * - a call of an AI SDK tool of the call is the client's: `clientCall`
 *   makes its `tool-call` part (neither provider-executed nor dynamic, id =
 *   Codex's call id) and its items map to nothing; its result comes from the
 *   next step;
 * - `endStep()` ends open text and reasoning when a step ends on tool calls;
 * - `finish()` closes whatever is still open: text and reasoning end, and an
 *   action without a result gets an error result (`status: "interrupted"`,
 *   or the given status), so no tool call is left without a result.
 *
 * Limits: the AI SDK's `streamText` (ai 6 and 7) does not honour
 * `preliminary` for provider-executed tools: its `content`, `toolResults` and
 * `response.messages` keep every preliminary result as a result of its own
 * (its UI message stream replaces them, as the spec says). Turn
 * `streamToolOutput` off when those lists matter. Items of kinds not listed
 * (sub-agents, review mode, compaction, hook prompts) are not mapped; with
 * `includeRawChunks` every notification is also sent as a `raw` part.
 *
 * @since 0.1.0
 */
import type { JSONValue, LanguageModelV3StreamPart, SharedV3ProviderMetadata } from "@ai-sdk/provider"
import type * as CodexProtocol from "../CodexProtocol.ts"
import { dynamicToolName } from "./toolParking.ts"

type ThreadItem = CodexProtocol.v2.ThreadItem
type Notification = CodexProtocol.ServerNotificationMessage

/** Streamed tool output beyond this many characters is cut to its tail in preliminary results. */
export const PRELIMINARY_OUTPUT_LIMIT = 16_384

/** The tool names of Codex's own actions. */
export const toolNames = {
  commandExecution: "codex_command_execution",
  fileChange: "codex_file_change",
  webSearch: "codex_web_search",
  imageView: "codex_view_image",
  planUpdate: "codex_update_plan"
} as const

/** The tool name of an MCP tool: `mcp__SERVER__TOOL`. */
export const mcpToolName = (server: string, tool: string): string => `mcp__${server}__${tool}`

interface OpenTool {
  readonly toolName: string
  /** Streamed output so far (command output). */
  output: string
}

const json = (value: unknown): JSONValue => (value === undefined ? null : value as JSONValue)

/** Options of a {@link StreamPartMapper}. */
export interface StreamPartMapperOptions {
  /** The provider metadata of a part (`itemId` when it belongs to an item). */
  readonly metadata: (itemId?: string) => SharedV3ProviderMetadata
  /** Send streamed tool output as preliminary tool results (the current step's setting). */
  readonly streamToolOutput: () => boolean
  /**
   * True for a dynamic tool that is an AI SDK tool of the call: its items
   * are not mapped (its call is the client's, see `clientCall`).
   */
  readonly isClientTool: (namespace: string | null | undefined, tool: string) => boolean
}

/**
 * Maps one turn's item notifications to stream parts.
 *
 * @since 0.1.0
 * @category models
 */
export class StreamPartMapper {
  readonly #options: StreamPartMapperOptions
  /** Open text parts, by item id; whether any delta arrived. */
  readonly #text = new Map<string, boolean>()
  /** Text items that have been closed (late deltas are dropped). */
  readonly #textDone = new Set<string>()
  /** Open reasoning blocks, by block id -> item id. */
  readonly #reasoning = new Map<string, string>()
  /** Reasoning blocks that received text, by block id. */
  readonly #reasoningSeen = new Set<string>()
  /** Open tool calls (a tool-call sent, no final result yet), by call id. */
  readonly #tools = new Map<string, OpenTool>()
  /** Tool calls that got their final result. */
  readonly #toolsDone = new Set<string>()
  #plans = 0

  constructor(options: StreamPartMapperOptions) {
    this.#options = options
  }

  /** The parts for one notification of the turn (may be none). */
  map(message: Notification): Array<LanguageModelV3StreamPart> {
    const parts: Array<LanguageModelV3StreamPart> = []
    switch (message.method) {
      case "item/agentMessage/delta": {
        const { itemId, delta } = message.params
        if (this.#textDone.has(itemId) || delta === "") break
        this.#openText(itemId, parts)
        this.#text.set(itemId, true)
        parts.push({ type: "text-delta", id: itemId, delta, providerMetadata: this.#metadata(itemId) })
        break
      }
      case "item/reasoning/summaryPartAdded": {
        const { itemId, summaryIndex } = message.params
        // A new summary part ends the earlier ones of the item.
        for (const [block, item] of [...this.#reasoning]) {
          if (item === itemId && block.startsWith(`${itemId}:s`) && block !== `${itemId}:s${summaryIndex}`) {
            this.#endReasoning(block, parts)
          }
        }
        break
      }
      case "item/reasoning/summaryTextDelta": {
        const { itemId, summaryIndex, delta } = message.params
        this.#reasoningDelta(itemId, `${itemId}:s${summaryIndex}`, delta, parts)
        break
      }
      case "item/reasoning/textDelta": {
        const { itemId, contentIndex, delta } = message.params
        this.#reasoningDelta(itemId, `${itemId}:c${contentIndex}`, delta, parts)
        break
      }
      case "item/commandExecution/outputDelta": {
        const { itemId, delta } = message.params
        const tool = this.#tools.get(itemId)
        if (tool === undefined) break
        tool.output += delta
        if (this.#options.streamToolOutput()) {
          const truncated = tool.output.length > PRELIMINARY_OUTPUT_LIMIT
          this.#preliminary(itemId, tool, {
            status: "inProgress",
            output: truncated ? tool.output.slice(-PRELIMINARY_OUTPUT_LIMIT) : tool.output,
            ...(truncated ? { outputTruncated: true } : {})
          }, parts)
        }
        break
      }
      case "item/mcpToolCall/progress": {
        const { itemId, message: progress } = message.params
        const tool = this.#tools.get(itemId)
        if (tool !== undefined && this.#options.streamToolOutput()) {
          this.#preliminary(itemId, tool, { status: "inProgress", progress }, parts)
        }
        break
      }
      case "item/started":
        this.#started(message.params.item, parts)
        break
      case "item/completed":
        this.#completed(message.params.item, parts)
        break
      case "turn/plan/updated": {
        const { turnId, explanation, plan } = message.params
        const id = `plan:${turnId}:${++this.#plans}`
        const input = { explanation, plan }
        parts.push(this.#toolCall(id, toolNames.planUpdate, input, undefined))
        parts.push(this.#toolResult(id, toolNames.planUpdate, { status: "completed", plan }, false, undefined))
        this.#toolsDone.add(id)
        break
      }
      default:
        break
    }
    return parts
  }

  /**
   * The `tool-call` part of Codex's call of an AI SDK tool (`item/tool/call`):
   * a call for the client to execute, so neither provider-executed nor
   * dynamic; its id is Codex's call id.
   */
  clientCall(params: CodexProtocol.ServerRequestParams<"item/tool/call">): LanguageModelV3StreamPart {
    return {
      type: "tool-call",
      toolCallId: params.callId,
      toolName: params.tool,
      input: JSON.stringify(params.arguments ?? {}),
      providerMetadata: this.#metadata(params.callId)
    }
  }

  /** Ends the open text and reasoning blocks: a step ends (Codex's actions stay open). */
  endStep(): Array<LanguageModelV3StreamPart> {
    const parts: Array<LanguageModelV3StreamPart> = []
    for (const id of [...this.#text.keys()]) this.#endText(id, parts)
    for (const block of [...this.#reasoning.keys()]) this.#endReasoning(block, parts)
    return parts
  }

  /**
   * Closes what is still open at the end of a turn: `status` is the turn's
   * (`completed`, `interrupted`, `failed`) or why it ended otherwise.
   */
  finish(status: string): Array<LanguageModelV3StreamPart> {
    const parts: Array<LanguageModelV3StreamPart> = []
    for (const id of [...this.#text.keys()]) this.#endText(id, parts)
    for (const block of [...this.#reasoning.keys()]) this.#endReasoning(block, parts)
    const openStatus = status === "completed" ? "interrupted" : status
    for (const [id, tool] of [...this.#tools]) {
      this.#tools.delete(id)
      this.#toolsDone.add(id)
      parts.push(this.#toolResult(id, tool.toolName, {
        status: openStatus,
        error: `The turn ended (${status}) before this action finished.`,
        ...(tool.output === "" ? {} : { output: tool.output })
      }, true, id))
    }
    return parts
  }

  #metadata(itemId?: string): SharedV3ProviderMetadata {
    return this.#options.metadata(itemId)
  }

  #openText(itemId: string, parts: Array<LanguageModelV3StreamPart>): void {
    if (this.#text.has(itemId)) return
    this.#text.set(itemId, false)
    parts.push({ type: "text-start", id: itemId, providerMetadata: this.#metadata(itemId) })
  }

  #endText(itemId: string, parts: Array<LanguageModelV3StreamPart>): void {
    if (!this.#text.delete(itemId)) return
    this.#textDone.add(itemId)
    parts.push({ type: "text-end", id: itemId, providerMetadata: this.#metadata(itemId) })
  }

  #reasoningDelta(itemId: string, block: string, delta: string, parts: Array<LanguageModelV3StreamPart>): void {
    if (delta === "" || (this.#reasoningSeen.has(block) && !this.#reasoning.has(block))) return
    if (!this.#reasoning.has(block)) {
      this.#reasoning.set(block, itemId)
      parts.push({ type: "reasoning-start", id: block, providerMetadata: this.#metadata(itemId) })
    }
    this.#reasoningSeen.add(block)
    parts.push({ type: "reasoning-delta", id: block, delta, providerMetadata: this.#metadata(itemId) })
  }

  #endReasoning(block: string, parts: Array<LanguageModelV3StreamPart>): void {
    const itemId = this.#reasoning.get(block)
    if (itemId === undefined) return
    this.#reasoning.delete(block)
    parts.push({ type: "reasoning-end", id: block, providerMetadata: this.#metadata(itemId) })
  }

  #toolCall(id: string, toolName: string, input: unknown, itemId: string | undefined): LanguageModelV3StreamPart {
    return {
      type: "tool-call",
      toolCallId: id,
      toolName,
      input: JSON.stringify(input ?? {}),
      providerExecuted: true,
      dynamic: true,
      providerMetadata: this.#metadata(itemId)
    }
  }

  #toolResult(
    id: string,
    toolName: string,
    result: unknown,
    isError: boolean,
    itemId: string | undefined
  ): LanguageModelV3StreamPart {
    return {
      type: "tool-result",
      toolCallId: id,
      toolName,
      result: json(result) as NonNullable<JSONValue>,
      ...(isError ? { isError: true } : {}),
      dynamic: true,
      providerMetadata: this.#metadata(itemId)
    }
  }

  #preliminary(id: string, tool: OpenTool, result: unknown, parts: Array<LanguageModelV3StreamPart>): void {
    parts.push({
      type: "tool-result",
      toolCallId: id,
      toolName: tool.toolName,
      result: json(result) as NonNullable<JSONValue>,
      preliminary: true,
      dynamic: true,
      providerMetadata: this.#metadata(id)
    })
  }

  /** Sends the tool-call of an action once. */
  #call(id: string, toolName: string, input: unknown, parts: Array<LanguageModelV3StreamPart>): void {
    if (this.#tools.has(id) || this.#toolsDone.has(id)) return
    this.#tools.set(id, { toolName, output: "" })
    parts.push(this.#toolCall(id, toolName, input, id))
  }

  /** Sends the final result of an action (and its call, if it was never sent). */
  #result(
    id: string,
    toolName: string,
    input: unknown,
    result: unknown,
    isError: boolean,
    parts: Array<LanguageModelV3StreamPart>
  ): void {
    if (this.#toolsDone.has(id)) return
    this.#call(id, toolName, input, parts)
    this.#tools.delete(id)
    this.#toolsDone.add(id)
    parts.push(this.#toolResult(id, toolName, result, isError, id))
  }

  #started(item: ThreadItem, parts: Array<LanguageModelV3StreamPart>): void {
    switch (item.type) {
      case "commandExecution":
        return this.#call(item.id, toolNames.commandExecution, commandInput(item), parts)
      case "fileChange":
        return this.#call(item.id, toolNames.fileChange, fileChangeInput(item), parts)
      case "mcpToolCall":
        return this.#call(item.id, mcpToolName(item.server, item.tool), mcpInput(item), parts)
      case "dynamicToolCall":
        if (this.#options.isClientTool(item.namespace, item.tool)) return
        return this.#call(item.id, dynamicToolName(item.namespace, item.tool), item.arguments, parts)
      case "imageView":
        return this.#call(item.id, toolNames.imageView, { path: item.path }, parts)
      default:
        // Messages and reasoning open on their first delta; a web search starts empty (read at completion).
        return
    }
  }

  #completed(item: ThreadItem, parts: Array<LanguageModelV3StreamPart>): void {
    switch (item.type) {
      case "agentMessage": {
        if (!this.#textDone.has(item.id) && this.#text.get(item.id) !== true && item.text !== "") {
          this.#openText(item.id, parts)
          parts.push({ type: "text-delta", id: item.id, delta: item.text, providerMetadata: this.#metadata(item.id) })
        }
        return this.#endText(item.id, parts)
      }
      case "reasoning": {
        item.summary.forEach((text, index) => this.#reasoningWhole(item.id, `${item.id}:s${index}`, text, parts))
        item.content.forEach((text, index) => this.#reasoningWhole(item.id, `${item.id}:c${index}`, text, parts))
        for (const [block, itemId] of [...this.#reasoning]) if (itemId === item.id) this.#endReasoning(block, parts)
        return
      }
      case "commandExecution": {
        const tool = this.#tools.get(item.id)
        return this.#result(item.id, toolNames.commandExecution, commandInput(item), {
          status: item.status,
          exitCode: item.exitCode,
          output: item.aggregatedOutput ?? (tool === undefined || tool.output === "" ? null : tool.output),
          durationMs: item.durationMs
        }, item.status !== "completed", parts)
      }
      case "fileChange":
        return this.#result(item.id, toolNames.fileChange, fileChangeInput(item), {
          status: item.status,
          changes: item.changes.map((change) => ({ path: change.path, kind: change.kind.type }))
        }, item.status !== "completed", parts)
      case "mcpToolCall":
        return this.#result(item.id, mcpToolName(item.server, item.tool), mcpInput(item), {
          status: item.status,
          result: item.result === null ? null : json(item.result),
          error: item.error?.message ?? null,
          durationMs: item.durationMs
        }, item.status !== "completed", parts)
      case "dynamicToolCall":
        if (this.#options.isClientTool(item.namespace, item.tool)) return
        return this.#result(item.id, dynamicToolName(item.namespace, item.tool), item.arguments, {
          status: item.status,
          success: item.success,
          contentItems: item.contentItems === null ? null : json(item.contentItems),
          durationMs: item.durationMs
        }, item.status !== "completed" || item.success === false, parts)
      case "webSearch": {
        const action = item.action
        this.#result(item.id, toolNames.webSearch, { query: item.query, action: json(action) }, {
          status: "completed",
          results: item.results === null ? null : json(item.results)
        }, false, parts)
        if (action?.type === "openPage" && typeof action.url === "string" && action.url !== "") {
          parts.push({
            type: "source",
            sourceType: "url",
            id: `${item.id}:source`,
            url: action.url,
            providerMetadata: this.#metadata(item.id)
          })
        }
        return
      }
      case "imageView":
        return this.#result(item.id, toolNames.imageView, { path: item.path }, { status: "completed" }, false, parts)
      case "imageGeneration": {
        if ("result" in item && typeof item.result === "string" && item.result !== "") {
          parts.push({ type: "file", mediaType: "image/png", data: item.result, providerMetadata: this.#metadata(item.id) })
        }
        return
      }
      default:
        return
    }
  }

  /** Emits a reasoning block's whole text when none of it was streamed. */
  #reasoningWhole(itemId: string, block: string, text: string, parts: Array<LanguageModelV3StreamPart>): void {
    if (this.#reasoningSeen.has(block) || text === "") return
    this.#reasoningDelta(itemId, block, text, parts)
  }
}

const commandInput = (item: Extract<ThreadItem, { type: "commandExecution" }>) => ({
  command: item.command,
  cwd: item.cwd
})

const fileChangeInput = (item: Extract<ThreadItem, { type: "fileChange" }>) => ({
  changes: item.changes.map((change) => ({
    path: change.path,
    kind: change.kind.type,
    ...(change.kind.type === "update" && change.kind.move_path !== null ? { movePath: change.kind.move_path } : {}),
    diff: change.diff
  }))
})

const mcpInput = (item: Extract<ThreadItem, { type: "mcpToolCall" }>) => ({
  server: item.server,
  tool: item.tool,
  arguments: item.arguments
})

/**
 * AI SDK function tools across steps: how the call's `tools` reach Codex,
 * how a tool result of the next step becomes the answer to Codex's pending
 * `item/tool/call`, and where a turn waits ("parks") in between.
 *
 * The flow: the call's function tools are offered to Codex as dynamic tools
 * on `thread/start` (the only place Codex takes them). When Codex calls one,
 * its `item/tool/call` request stays pending, the model emits a `tool-call`
 * part and ends the step with finish reason `tool-calls`, and the turn
 * parks: it keeps its lease and waits in this provider's {@link ToolParking}
 * registry. The next call of the same conversation, whose prompt ends with
 * the tool results, takes the parked turn from the registry (by thread and
 * call id), answers the pending requests with {@link toolResultAnswer} and
 * streams the rest of the same turn, on the same worker, without a new lease.
 *
 * Guarantees:
 * - a tool result becomes an answer of the schema's shape
 *   (`DynamicToolCallResponse`): text and JSON as `inputText`, error outputs
 *   and denied executions with `success: false`, images in `content` as
 *   `inputImage`; what cannot be sent (other files) is replaced by a short
 *   text and reported as a warning;
 * - the registry holds at most one parked turn per thread, and a turn is
 *   taken from it at most once (a second call with the same results finds
 *   nothing and starts a new turn).
 *
 * Codex's calls of dynamic tools that the call did not offer as AI SDK
 * tools (declared through `threadDefaults.dynamicTools`) go through a
 * {@link ToolCallHandler}; with none, they get {@link unsupportedToolCall}.
 *
 * @since 0.1.0
 */
import type {
  LanguageModelV3FunctionTool,
  LanguageModelV3Prompt,
  LanguageModelV3ToolResultOutput,
  LanguageModelV3ToolResultPart,
  SharedV3Warning
} from "@ai-sdk/provider"
import type * as CodexProtocol from "../CodexProtocol.ts"

type Result = CodexProtocol.ServerRequestResult<"item/tool/call">
type ContentItem = CodexProtocol.v2.DynamicToolCallOutputContentItem

// Answering a tool call nobody parks is the server-request module's job; its
// types live there so that modules needing only them stay free of the AI SDK.
export { dynamicToolName, type ToolCallHandler, unsupportedToolCall } from "./approvals.ts"

/** A failed answer carrying `text`. */
export const failedToolCall = (text: string): Result => ({ success: false, contentItems: [{ type: "inputText", text }] })

/** The AI SDK function tools of a call, as Codex's dynamic tool specs (for `thread/start`). */
export const dynamicToolSpecs = (
  tools: ReadonlyArray<LanguageModelV3FunctionTool>
): Array<CodexProtocol.v2.DynamicToolSpec> =>
  tools.map((tool) => ({
    type: "function" as const,
    name: tool.name,
    description: tool.description ?? "",
    inputSchema: tool.inputSchema as CodexProtocol.v2.DynamicToolFunctionSpec["inputSchema"]
  }))

/** True when `text` is JSON: Codex sends a function call's arguments to the client only then. */
export const isJsonText = (text: string): boolean => {
  try {
    JSON.parse(text)
    return true
  } catch {
    return false
  }
}

const stringify = (value: unknown): string => {
  if (typeof value === "string") return value
  const text = JSON.stringify(value)
  return text === undefined ? String(value) : text
}

/**
 * The answer to Codex's `item/tool/call` that an AI SDK tool result stands
 * for, and warnings for what it could not carry.
 *
 * @since 0.1.0
 * @category constructors
 */
export const toolResultAnswer = (
  output: LanguageModelV3ToolResultOutput
): { readonly result: Result; readonly warnings: ReadonlyArray<SharedV3Warning> } => {
  const warnings: Array<SharedV3Warning> = []
  const text = (value: string): ContentItem => ({ type: "inputText", text: value })
  switch (output.type) {
    case "text":
      return { result: { success: true, contentItems: [text(output.value)] }, warnings }
    case "json":
      return { result: { success: true, contentItems: [text(stringify(output.value))] }, warnings }
    case "error-text":
      return { result: { success: false, contentItems: [text(output.value)] }, warnings }
    case "error-json":
      return { result: { success: false, contentItems: [text(stringify(output.value))] }, warnings }
    case "execution-denied":
      return {
        result: failedToolCall(
          `The execution of this tool call was denied${output.reason === undefined ? "." : `: ${output.reason}`}`
        ),
        warnings
      }
    case "content": {
      const items: Array<ContentItem> = []
      for (const part of output.value) {
        switch (part.type) {
          case "text":
            items.push(text(part.text))
            break
          case "image-data":
            items.push({ type: "inputImage", imageUrl: `data:${part.mediaType};base64,${part.data}` })
            break
          case "file-data":
            if (part.mediaType.toLowerCase().startsWith("image/")) {
              items.push({ type: "inputImage", imageUrl: `data:${part.mediaType};base64,${part.data}` })
              break
            }
            items.push(text(`[a file of type ${part.mediaType} was not sent]`))
            warnings.push({
              type: "unsupported",
              feature: `tool result files of type ${part.mediaType}`,
              details: "Codex takes text and images in a tool result; the file was replaced by a note."
            })
            break
          case "image-url":
            items.push({ type: "inputImage", imageUrl: part.url })
            break
          default:
            items.push(text(`[a tool result part of type ${part.type} was not sent]`))
            warnings.push({
              type: "unsupported",
              feature: `tool result parts of type ${part.type}`,
              details: "Codex takes text and images in a tool result; the part was replaced by a note."
            })
        }
      }
      return { result: { success: true, contentItems: items.length === 0 ? [text("")] : items }, warnings }
    }
  }
}

/**
 * The tool results the prompt ends with: those of its trailing `tool`
 * messages (empty when the last message is not a tool message).
 */
export const trailingToolResults = (prompt: LanguageModelV3Prompt): Array<LanguageModelV3ToolResultPart> => {
  let start = prompt.length
  while (start > 0 && prompt[start - 1]!.role === "tool") start--
  const results: Array<LanguageModelV3ToolResultPart> = []
  for (const message of prompt.slice(start)) {
    if (message.role !== "tool") continue
    for (const part of message.content) if (part.type === "tool-result") results.push(part)
  }
  return results
}

/**
 * What the registry needs of a parked turn: its thread and the calls it
 * waits on.
 *
 * @since 0.1.0
 * @category models
 */
export interface Parked {
  readonly threadId: string
  /** The call ids whose results the turn waits for. */
  readonly parkedCallIds: ReadonlySet<string>
}

/**
 * The turns of one provider that wait for tool results, one per thread.
 *
 * @since 0.1.0
 * @category models
 */
export class ToolParking<T extends Parked> {
  readonly #byThread = new Map<string, T>()

  /** How many turns are parked. */
  get size(): number {
    return this.#byThread.size
  }

  /** Registers a parked turn (replacing none: a thread has one active turn). */
  park(turn: T): void {
    this.#byThread.set(turn.threadId, turn)
  }

  /** Removes `turn` if it is registered (it resumed, ended, timed out or was aborted). */
  remove(turn: T): void {
    if (this.#byThread.get(turn.threadId) === turn) this.#byThread.delete(turn.threadId)
  }

  /**
   * Takes the parked turn that waits for one of `callIds`: of `threadId` when
   * the prompt names a thread, else any turn waiting for such a call.
   */
  take(threadId: string | undefined, callIds: ReadonlyArray<string>): T | undefined {
    const waits = (turn: T) => callIds.some((id) => turn.parkedCallIds.has(id))
    let found: T | undefined
    if (threadId !== undefined) {
      const turn = this.#byThread.get(threadId)
      if (turn !== undefined && waits(turn)) found = turn
    } else {
      for (const turn of this.#byThread.values()) {
        if (waits(turn)) {
          found = turn
          break
        }
      }
    }
    if (found !== undefined) this.#byThread.delete(found.threadId)
    return found
  }

  /** Takes the parked turn of `threadId`, whatever it waits for. */
  takeThread(threadId: string): T | undefined {
    const turn = this.#byThread.get(threadId)
    if (turn !== undefined) this.#byThread.delete(threadId)
    return turn
  }
}

/**
 * The AI SDK model's stream parts (what a `Turn` emits, see
 * `../ai-sdk/streamParts.ts`) as `effect/ai` response parts, and the parts of
 * a whole response (`generateText`) collected from them. Pure: no I/O.
 *
 * Guarantees:
 * - text and reasoning blocks keep their ids, deltas and order; every part's
 *   provider metadata (`{ codex: { threadId, itemId } }`) becomes its
 *   `metadata`, so `Prompt.fromResponseParts` keeps the thread for the next
 *   call;
 * - a Codex action becomes a `tool-call` and `tool-result`s with
 *   `providerExecuted: true`, named after the request's tool whose
 *   `providerName` is the action's (see `CodexTool`); an action whose tool the
 *   request does not declare is left out (effect/ai would refuse the
 *   response), with its results;
 * - `isError` results are failures (`isFailure: true`); streamed results are
 *   `preliminary: true` and are left out of a whole response;
 * - `finish` carries the reason (`stop`, `error`, `other` for an interrupted
 *   turn), the usage, and the thread and turn ids in its metadata;
 * - a url `source` without a title is titled with its url (effect/ai
 *   requires one); file bytes are sent as base64.
 *
 * Limits: `stream-start` (warnings), `error` (the call fails) and `raw` parts
 * are the caller's business and are not converted here.
 *
 * @internal
 */
import type { LanguageModelV3StreamPart, SharedV3ProviderMetadata } from "@ai-sdk/provider"
import type { Response } from "effect/ai"
import { toolNames } from "../ai-sdk/streamParts.ts"
import { providerNames } from "./CodexTool.ts"

type Out = Response.StreamPartEncoded

const finishReasons: ReadonlySet<string> = new Set<Response.FinishReason>([
  "stop",
  "length",
  "content-filter",
  "tool-calls",
  "error",
  "pause",
  "other",
  "unknown"
])

const byAiSdkName: Readonly<Record<string, string>> = {
  [toolNames.commandExecution]: providerNames.commandExecution,
  [toolNames.fileChange]: providerNames.fileChange,
  [toolNames.webSearch]: providerNames.webSearch,
  [toolNames.imageView]: providerNames.viewImage,
  [toolNames.planUpdate]: providerNames.updatePlan
}

/**
 * The Codex tool an AI SDK tool part stands for, and its params in that
 * tool's shape. MCP tools are `mcp__SERVER__TOOL` (their input has server and
 * tool); any other name is a dynamic tool.
 */
const classify = (toolName: string): { readonly providerName: string; readonly params: (input: unknown) => unknown } => {
  const known = byAiSdkName[toolName]
  if (known !== undefined) return { providerName: known, params: (input) => input }
  if (toolName.startsWith("mcp__")) return { providerName: providerNames.mcpToolCall, params: (input) => input }
  return { providerName: providerNames.dynamicToolCall, params: (input) => ({ tool: toolName, arguments: input ?? null }) }
}

const metadataOf = (metadata: SharedV3ProviderMetadata | undefined): { readonly metadata?: Response.ProviderMetadata } =>
  metadata === undefined ? {} : { metadata: metadata as Response.ProviderMetadata }

const parseInput = (input: string): unknown => {
  try {
    return JSON.parse(input)
  } catch {
    return input
  }
}

const base64 = (data: string | Uint8Array): string => typeof data === "string" ? data : Buffer.from(data).toString("base64")

const defined = <T extends Record<string, unknown>>(record: T): { [K in keyof T]: Exclude<T[K], undefined> } => {
  const result: Record<string, unknown> = {}
  for (const [key, value] of Object.entries(record)) if (value !== undefined) result[key] = value
  return result as { [K in keyof T]: Exclude<T[K], undefined> }
}

/**
 * Converts one call's parts. `declared` maps the provider names of the
 * request's Codex tools to their names in the request's toolkit.
 */
export class PartConverter {
  readonly #declared: ReadonlyMap<string, string>

  constructor(declared: ReadonlyMap<string, string>) {
    this.#declared = declared
  }

  /** The effect/ai parts of one AI SDK part (none for a left-out action and for the caller's parts). */
  convert(part: LanguageModelV3StreamPart): Array<Out> {
    switch (part.type) {
      case "text-start":
      case "text-end":
      case "reasoning-start":
      case "reasoning-end":
        return [{ type: part.type, id: part.id, ...metadataOf(part.providerMetadata) }]
      case "text-delta":
      case "reasoning-delta":
        return [{ type: part.type, id: part.id, delta: part.delta, ...metadataOf(part.providerMetadata) }]
      case "tool-call": {
        const tool = this.#tool(part.toolName)
        if (tool === undefined) return []
        return [{
          type: "tool-call",
          id: part.toolCallId,
          name: tool.name,
          params: tool.params(parseInput(part.input)),
          providerExecuted: true,
          ...metadataOf(part.providerMetadata)
        }]
      }
      case "tool-result": {
        const tool = this.#tool(part.toolName)
        if (tool === undefined) return []
        return [{
          type: "tool-result",
          id: part.toolCallId,
          name: tool.name,
          result: part.result,
          isFailure: part.isError === true,
          providerExecuted: true,
          preliminary: part.preliminary === true,
          ...metadataOf(part.providerMetadata)
        }]
      }
      case "source":
        return part.sourceType === "url"
          ? [{
            type: "source",
            sourceType: "url",
            id: part.id,
            url: part.url,
            title: part.title ?? part.url,
            ...metadataOf(part.providerMetadata)
          }]
          : [{
            type: "source",
            sourceType: "document",
            id: part.id,
            mediaType: part.mediaType,
            title: part.title,
            ...(part.filename === undefined ? {} : { fileName: part.filename }),
            ...metadataOf(part.providerMetadata)
          }]
      case "file":
        return [{ type: "file", mediaType: part.mediaType, data: base64(part.data), ...metadataOf(part.providerMetadata) }]
      case "response-metadata":
        return [{
          type: "response-metadata",
          ...defined({ id: part.id, modelId: part.modelId, timestamp: part.timestamp?.toISOString() })
        }]
      case "finish": {
        const { inputTokens, outputTokens } = part.usage
        return [{
          type: "finish",
          reason: (finishReasons.has(part.finishReason.unified) ? part.finishReason.unified : "unknown") as Response.FinishReason,
          usage: {
            inputTokens: defined({
              uncached: inputTokens.noCache,
              total: inputTokens.total,
              cacheRead: inputTokens.cacheRead,
              cacheWrite: inputTokens.cacheWrite
            }),
            outputTokens: defined({ total: outputTokens.total, text: outputTokens.text, reasoning: outputTokens.reasoning })
          },
          ...metadataOf(part.providerMetadata)
        }]
      }
      default:
        // stream-start, error, raw: the caller's; tool inputs and approval requests: not emitted by a turn.
        return []
    }
  }

  #tool(toolName: string): { readonly name: string; readonly params: (input: unknown) => unknown } | undefined {
    const { params, providerName } = classify(toolName)
    const name = this.#declared.get(providerName)
    return name === undefined ? undefined : { name, params }
  }
}

/**
 * The parts of a whole response, from its stream parts: each text and
 * reasoning block as one part (with the metadata of its start), final tool
 * results only, in the order the blocks started.
 */
export const collectParts = (parts: Iterable<Out>): Array<Response.PartEncoded> => {
  const content: Array<Response.PartEncoded> = []
  const blocks = new Map<string, { text: string }>()
  for (const part of parts) {
    switch (part.type) {
      case "text-start":
      case "reasoning-start": {
        const block = {
          type: part.type === "text-start" ? "text" as const : "reasoning" as const,
          text: "",
          ...(part.metadata === undefined ? {} : { metadata: part.metadata })
        }
        blocks.set(`${block.type}:${part.id}`, block)
        content.push(block)
        break
      }
      case "text-delta":
      case "reasoning-delta": {
        const block = blocks.get(`${part.type === "text-delta" ? "text" : "reasoning"}:${part.id}`)
        if (block !== undefined) block.text += part.delta
        break
      }
      case "tool-result":
        if (part.preliminary !== true) content.push(part)
        break
      case "tool-call":
      case "source":
      case "file":
      case "response-metadata":
      case "finish":
        content.push(part)
        break
      default:
        break
    }
  }
  return content
}

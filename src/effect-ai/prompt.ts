/**
 * An `effect/ai` `Prompt` in the AI SDK's prompt shape, so the AI SDK model's
 * `planInput` (`../ai-sdk/promptInput.ts`) plans the turn's input from it:
 * the same threads, transcripts, images and warnings for both models.
 *
 * Guarantees:
 * - each message keeps its role and its parts their order; a part's or a
 *   message's `options` become its `providerOptions`, so the thread id this
 *   model writes in a response's metadata (`{ codex: { threadId } }`), which
 *   `Prompt.fromResponseParts` (and `Chat`) keep as `options`, continues the
 *   thread;
 * - file data: bytes and `URL`s as they are; a string is a URL when it
 *   starts with `data:` or `file:`, else base64 (the AI SDK's convention);
 * - tool calls keep their id, name, params and `providerExecuted`; tool
 *   results become JSON outputs (`execution-denied` for a denial).
 *
 * Limits: tool-approval requests are left out (Codex asks for approvals
 * itself, through the model's `approvals` callback); what `planInput` does
 * not send (reasoning, Codex's tool parts, client tool results) is its
 * business, and it warns for what it drops.
 *
 * @internal
 */
import type {
  JSONObject,
  JSONValue,
  LanguageModelV3DataContent,
  LanguageModelV3Message,
  LanguageModelV3Prompt,
  LanguageModelV3ToolResultOutput,
  SharedV3ProviderOptions
} from "@ai-sdk/provider"
import type { Prompt } from "effect/ai"

const isObject = (u: unknown): u is JSONObject => typeof u === "object" && u !== null && !Array.isArray(u)

/** `options` as provider options: only the entries that are objects (the AI SDK's shape). */
const providerOptionsOf = (options: Prompt.ProviderOptions | undefined): { providerOptions?: SharedV3ProviderOptions } => {
  if (options === undefined) return {}
  let result: Record<string, JSONObject> | undefined
  for (const [key, value] of Object.entries(options)) {
    if (!isObject(value)) continue
    ;(result ??= {})[key] = value
  }
  return result === undefined ? {} : { providerOptions: result }
}

const dataOf = (data: string | Uint8Array | URL): LanguageModelV3DataContent => {
  if (typeof data !== "string" || !/^(data|file):/i.test(data)) return data
  try {
    return new URL(data)
  } catch {
    return data
  }
}

const toolResultOutput = (part: Prompt.ToolResultPart): LanguageModelV3ToolResultOutput => {
  const result = part.result as { readonly type?: unknown; readonly reason?: unknown } | null | undefined
  if (part.isFailure && result?.type === "execution-denied") {
    return typeof result.reason === "string" ? { type: "execution-denied", reason: result.reason } : { type: "execution-denied" }
  }
  const value = (part.result === undefined ? null : part.result) as JSONValue
  return part.isFailure ? { type: "error-json", value } : { type: "json", value }
}

const toolResult = (part: Prompt.ToolResultPart) => ({
  type: "tool-result" as const,
  toolCallId: part.id,
  toolName: part.name,
  output: toolResultOutput(part),
  ...providerOptionsOf(part.options)
})

const messageOf = (message: Prompt.Message): LanguageModelV3Message => {
  const options = providerOptionsOf(message.options)
  switch (message.role) {
    case "system":
      return { role: "system", content: message.content, ...options }
    case "user":
      return {
        role: "user",
        content: message.content.map((part) =>
          part.type === "text"
            ? { type: "text", text: part.text, ...providerOptionsOf(part.options) }
            : {
              type: "file",
              data: dataOf(part.data),
              mediaType: part.mediaType,
              ...(part.fileName === undefined ? {} : { filename: part.fileName }),
              ...providerOptionsOf(part.options)
            }
        ),
        ...options
      }
    case "assistant": {
      const content: Extract<LanguageModelV3Message, { role: "assistant" }>["content"] = []
      for (const part of message.content) {
        switch (part.type) {
          case "text":
          case "reasoning":
            content.push({ type: part.type, text: part.text, ...providerOptionsOf(part.options) })
            break
          case "file":
            content.push({
              type: "file",
              data: dataOf(part.data),
              mediaType: part.mediaType,
              ...(part.fileName === undefined ? {} : { filename: part.fileName }),
              ...providerOptionsOf(part.options)
            })
            break
          case "tool-call":
            content.push({
              type: "tool-call",
              toolCallId: part.id,
              toolName: part.name,
              input: part.params,
              providerExecuted: part.providerExecuted,
              ...providerOptionsOf(part.options)
            })
            break
          case "tool-result":
            content.push(toolResult(part))
            break
          case "tool-approval-request":
            break
        }
      }
      return { role: "assistant", content, ...options }
    }
    case "tool":
      return {
        role: "tool",
        content: message.content.map((part) =>
          part.type === "tool-result"
            ? toolResult(part)
            : {
              type: "tool-approval-response" as const,
              approvalId: part.approvalId,
              approved: part.approved,
              ...(part.reason === undefined ? {} : { reason: part.reason }),
              ...providerOptionsOf(part.options)
            }
        ),
        ...options
      }
  }
}

/** The prompt as the AI SDK's `LanguageModelV3Prompt`. */
export const toAiSdkPrompt = (prompt: Prompt.Prompt): LanguageModelV3Prompt => prompt.content.map(messageOf)

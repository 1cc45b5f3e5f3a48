/**
 * The language model (`LanguageModelV3`): `doStream` runs a `Turn` on a
 * leased worker, `doGenerate` collects that stream into content.
 *
 * Guarantees:
 * - the call's settings and prompt are validated before a worker is leased:
 *   a bad `providerOptions.codex` rejects with a `PoolOptionsError` naming
 *   the field, and takes no worker;
 * - a call beyond the pool's capacity waits in its FIFO queue; aborting the
 *   call's `abortSignal` while queued takes no worker and rejects with the
 *   signal's reason;
 * - `supportedUrls` declares only `file:` image URLs, so the AI SDK downloads
 *   http(s) images itself (the app-server refuses remote image URLs) and the
 *   model gets their bytes;
 * - `responseFormat: { type: "json", schema }` becomes the turn's
 *   `outputSchema` (so `generateObject` / `Output.object` work); JSON without
 *   a schema gets a compatibility warning (not enforced);
 * - the call's function tools are offered to a new thread as Codex dynamic
 *   tools; Codex's call of one ends the step with `tool-calls` and parks the
 *   turn, and the call whose prompt ends with the results continues it on
 *   the same lease (see `toolParking.ts` and `turn.ts`); results no parked
 *   turn waits for start a new turn that gets them as text; a call that
 *   continues a thread whose parked turn it does not answer stops that turn
 *   first;
 * - settings codex does not take (temperature, topP, ...), provider-defined
 *   tools and a `toolChoice` other than `auto` / `none` are reported as
 *   `unsupported` warnings (`none` offers no tools);
 * - `doGenerate` returns text, reasoning, Codex's tool calls and their final
 *   results, sources and files; an `error` part stops the turn and rejects.
 *
 * @since 0.1.0
 */
import type {
  LanguageModelV3,
  LanguageModelV3CallOptions,
  LanguageModelV3Content,
  LanguageModelV3FinishReason,
  LanguageModelV3FunctionTool,
  LanguageModelV3GenerateResult,
  LanguageModelV3StreamPart,
  LanguageModelV3StreamResult,
  SharedV3ProviderMetadata,
  SharedV3Warning
} from "@ai-sdk/provider"
import { describeInput, planInput } from "./promptInput.ts"
import { acquireOptions, type CodexCallOptions, parseCallOptions } from "./settings.ts"
import { trailingToolResults } from "./toolParking.ts"
import { type ProviderSettings, type StepRequest, Turn, type TurnRequest } from "./turn.ts"
import { emptyUsage } from "./usage.ts"

/** Settings of the provider that shape each call. */
export interface ModelSettings extends ProviderSettings {
  /** Per-call settings every call starts from (`providerOptions.codex` overrides them). */
  readonly callDefaults: CodexCallOptions
  readonly streamToolOutput: boolean
}

const unsupportedSettings = [
  "maxOutputTokens",
  "temperature",
  "stopSequences",
  "topP",
  "topK",
  "presencePenalty",
  "frequencyPenalty",
  "seed"
] as const

const callWarnings = (options: LanguageModelV3CallOptions): Array<SharedV3Warning> => {
  const warnings: Array<SharedV3Warning> = []
  for (const feature of unsupportedSettings) {
    if (options[feature] !== undefined) warnings.push({ type: "unsupported", feature })
  }
  for (const tool of options.tools ?? []) {
    if (tool.type === "function") continue
    warnings.push({
      type: "unsupported",
      feature: `provider-defined tool ${tool.id}`,
      details: "Codex takes function tools (as dynamic tools); provider-defined tools are not passed to it."
    })
  }
  const choice = options.toolChoice?.type
  if (choice !== undefined && choice !== "auto" && choice !== "none") {
    warnings.push({
      type: "unsupported",
      feature: "toolChoice",
      details: "Codex decides itself whether to call a tool; the tools are offered as with `auto`."
    })
  }
  if (options.responseFormat?.type === "json" && options.responseFormat.schema === undefined) {
    warnings.push({
      type: "compatibility",
      feature: "responseFormat",
      details: "JSON without a schema is not enforced by Codex; give a schema, or ask for JSON in the prompt."
    })
  }
  return warnings
}

/**
 * A Codex model of a provider.
 *
 * @since 0.1.0
 * @category models
 */
export class CodexLanguageModel implements LanguageModelV3 {
  readonly specificationVersion = "v3" as const
  readonly provider = "codex"
  readonly modelId: string
  /** Only local image files are passed as URLs; the AI SDK downloads the rest. */
  readonly supportedUrls: Record<string, Array<RegExp>> = { "image/*": [/^file:\/\//i] }
  readonly #settings: ModelSettings

  constructor(modelId: string, settings: ModelSettings) {
    this.modelId = modelId
    this.#settings = settings
  }

  async doGenerate(options: LanguageModelV3CallOptions): Promise<LanguageModelV3GenerateResult> {
    const { stream, request } = await this.#start(options, false)
    const content: Array<LanguageModelV3Content> = []
    let finishReason: LanguageModelV3FinishReason = { unified: "other", raw: undefined }
    let usage = emptyUsage()
    let providerMetadata: SharedV3ProviderMetadata | undefined
    let warnings: Array<SharedV3Warning> = []
    let response: LanguageModelV3GenerateResult["response"]
    const texts = new Map<string, { text: string }>()
    const reasoning = new Map<string, { text: string }>()
    const reader = stream.getReader()
    for (;;) {
      const { done, value: part } = await reader.read()
      if (done) break
      switch (part.type) {
        case "stream-start":
          warnings = part.warnings
          break
        case "response-metadata":
          response = { ...(part.id === undefined ? {} : { id: part.id }), ...(part.modelId === undefined ? {} : { modelId: part.modelId }) }
          break
        case "text-start": {
          // Keep the part's metadata: it carries the thread id a later call resumes.
          const text = {
            type: "text" as const,
            text: "",
            ...(part.providerMetadata === undefined ? {} : { providerMetadata: part.providerMetadata })
          }
          texts.set(part.id, text)
          content.push(text)
          break
        }
        case "text-delta":
          texts.get(part.id)!.text += part.delta
          break
        case "reasoning-start": {
          const block = {
            type: "reasoning" as const,
            text: "",
            ...(part.providerMetadata === undefined ? {} : { providerMetadata: part.providerMetadata })
          }
          reasoning.set(part.id, block)
          content.push(block)
          break
        }
        case "reasoning-delta":
          reasoning.get(part.id)!.text += part.delta
          break
        case "tool-call":
        case "source":
        case "file":
          content.push(part)
          break
        case "tool-result":
          if (part.preliminary !== true) content.push(part)
          break
        case "error":
          // The call has failed: stop the turn (a no-op when it already ended) and reject.
          void reader.cancel(part.error).catch(() => {})
          throw part.error
        case "finish":
          finishReason = part.finishReason
          usage = part.usage
          providerMetadata = part.providerMetadata
          break
      }
    }
    return {
      content,
      finishReason,
      usage,
      warnings,
      request,
      ...(response === undefined ? {} : { response }),
      ...(providerMetadata === undefined ? {} : { providerMetadata })
    }
  }

  async doStream(options: LanguageModelV3CallOptions): Promise<LanguageModelV3StreamResult> {
    const { stream, request } = await this.#start(options, true)
    return { stream, request }
  }

  /**
   * Validates the call, then continues the parked turn its tool results
   * answer, or leases a worker and starts a turn.
   */
  async #start(
    options: LanguageModelV3CallOptions,
    streaming: boolean
  ): Promise<{ readonly stream: ReadableStream<LanguageModelV3StreamPart>; readonly request: { readonly body: unknown } }> {
    const settings = this.#settings
    const callOptions = parseCallOptions("providerOptions.codex", options.providerOptions?.["codex"])
    const merged: CodexCallOptions = { ...settings.callDefaults, ...callOptions }
    const plan = planInput(options.prompt, merged.threadId)
    const resumeId = merged.threadId ?? plan.found?.threadId
    const step: StepRequest = {
      warnings: callWarnings(options),
      includeRawChunks: streaming && options.includeRawChunks === true,
      streamToolOutput: streaming && (merged.streamToolOutput ?? settings.streamToolOutput),
      signal: options.abortSignal
    }
    const results = trailingToolResults(options.prompt)
    if (results.length > 0) {
      const parked = settings.parking.take(resumeId, results.map((result) => result.toolCallId))
      if (parked !== undefined) {
        return {
          stream: parked.resume(step, results),
          request: {
            body: {
              threadId: parked.threadId,
              toolResults: results.map((result) => ({ toolCallId: result.toolCallId, output: result.output }))
            }
          }
        }
      }
    }
    if (resumeId !== undefined) {
      // The conversation went on without this thread's parked turn: stop it (its lease ends once it is interrupted).
      settings.parking.takeThread(resumeId)?.cancel(
        "The conversation continued without this tool call's result: the turn was interrupted."
      )
    }
    const format = options.responseFormat
    const outputSchema = format?.type === "json" && format.schema !== undefined
      ? format.schema as unknown as TurnRequest["outputSchema"]
      : undefined
    const tools = options.toolChoice?.type === "none"
      ? []
      : (options.tools ?? []).filter((tool): tool is LanguageModelV3FunctionTool => tool.type === "function")
    const request: TurnRequest = {
      ...step,
      modelId: this.modelId,
      settings: merged,
      plan,
      resumeId,
      explicitThread: merged.threadId !== undefined,
      outputSchema,
      tools,
      warnings: [...step.warnings, ...plan.warnings]
    }
    const worker = await settings.pool.acquire(acquireOptions(options.abortSignal, merged, resumeId))
    const turn = new Turn(worker, settings, request)
    return {
      stream: turn.stream,
      request: {
        body: {
          threadId: resumeId,
          input: describeInput(resumeId === undefined ? plan.transcriptInput : plan.newInput),
          ...(outputSchema === undefined ? {} : { outputSchema })
        }
      }
    }
  }
}

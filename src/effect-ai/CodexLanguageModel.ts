/**
 * A `LanguageModel` of Effect's own `effect/ai` over the `CodexWorkerPool`
 * service: each `generateText`, `generateObject` or `streamText` call is one
 * Codex turn on a leased worker, run by the AI SDK model's turn machinery
 * (`../ai-sdk/turn.ts`) and shown through the same mapping, so both models
 * see a turn the same way.
 *
 * Guarantees:
 * - a call beyond the pool's capacity waits in its FIFO queue;
 *   interrupting the calling fiber while it waits leaves the queue at once
 *   and takes no worker;
 * - the worker goes back to the pool exactly once on every path: the turn
 *   ends (completed or failed), the worker crashes, the caller's fiber is
 *   interrupted, a `streamText` stream is not read to its end. A call that
 *   stops before its turn ended sends `turn/interrupt`, and its scope (the
 *   interrupted fiber, the stream's consumer) waits for the turn to end,
 *   up to `interruptTimeout` (real time): then the worker is returned, or,
 *   unconfirmed, taken out of service (its process tree is killed). So once
 *   a call's fiber has ended, or its stream's scope has closed, its worker
 *   is back: a call forked in the scope the layers are built in is
 *   interrupted before the pool shuts down, and leaves no lease behind;
 * - per-call settings (the {@link Config} service, over the layer's `config`)
 *   are validated with the AI SDK model's schema before a worker is leased:
 *   a bad field fails the call with an `AiError` (`InvalidRequestError`)
 *   naming it, and takes no worker;
 * - the prompt becomes the turn's input as in the AI SDK model: a thread is
 *   continued when the prompt's last assistant message carries the thread id
 *   this model writes in every part's metadata (`{ codex: { threadId } }`,
 *   kept by `Prompt.fromResponseParts` and `Chat`), or `Config.threadId`
 *   names one; system messages become a new thread's developer instructions;
 *   images become image inputs (temporary files removed when the call ends);
 * - `generateObject`'s schema becomes the turn's `outputSchema`, in the
 *   strict subset OpenAI's structured outputs take (the model's
 *   `codecTransformer` is `OpenAiStructuredOutput.toCodecOpenAI`);
 * - the response has the text, the reasoning, the usage (completed turns
 *   only), `response-metadata` (the turn id) and `finish` (the thread and
 *   turn ids in its metadata); Codex's actions are provider-executed tool
 *   parts when the request's toolkit declares their `CodexTool` (see there);
 * - every failure is an `AiError` whose description is the original message
 *   (a failed turn, a crashed worker, a full queue, ...), see `errors.ts`; an
 *   `error` the turn reports ends the call with it (as the AI SDK model's
 *   `doGenerate` does);
 * - what Codex cannot honour is logged as a warning (and a `codex.warning`
 *   span event), never silently dropped: effect/ai tools other than
 *   `CodexTool`s (not passed to Codex), a `toolChoice` that requires a tool,
 *   and the prompt parts the AI SDK model reports as unsupported.
 *
 * Limits: Codex runs its own tools; the toolkit's other tools are not offered
 * to it. Server requests (approvals, permissions, user input, MCP
 * elicitations) are answered by the callbacks of the options, which are plain
 * functions (value or promise), with the AI SDK model's safe defaults.
 * `account` and `workspace` settings are refused: the Effect pool's `get`
 * does not take them. The `ResponseIdTracker` of effect/ai is not used:
 * threads are continued through the metadata above. The wait after an
 * interrupt runs on real time, not on a `TestClock`.
 *
 * @example
 * ```ts
 * import { Effect, Layer } from "effect"
 * import { LanguageModel } from "effect/ai"
 * import { CodexLanguageModel } from "codex-worker-pool/effect-ai"
 * import { layerCodexWorkerPool } from "codex-worker-pool/node"
 *
 * const Codex = CodexLanguageModel.layer({
 *   model: "gpt-5.1-codex",
 *   threadDefaults: { ephemeral: true, approvalPolicy: "never", sandbox: "read-only" }
 * }).pipe(Layer.provide(layerCodexWorkerPool({ poolSize: 2 })))
 *
 * const program = Effect.gen(function*() {
 *   const response = yield* LanguageModel.generateText({ prompt: "What does this repository do?" })
 *   return response.text
 * }).pipe(
 *   CodexLanguageModel.withConfigOverride({ effort: "low" }),
 *   Effect.provide(Codex)
 * )
 * ```
 *
 * @since 0.1.0
 */
import type { SharedV3Warning } from "@ai-sdk/provider"
import { Clock, Context, Duration, Effect, Layer, Option, Schema, Stream } from "effect"
import { AiError, LanguageModel, Model, OpenAiStructuredOutput, type Response, Telemetry, Tool } from "effect/ai"
import { dual } from "effect/Function"
import type { Span } from "effect/Tracer"
import { type ServerRequestHandlers, ServerRequestCallbackFields } from "../ai-sdk/approvals.ts"
import { planInput, type PromptPlan } from "../ai-sdk/promptInput.ts"
import { type CodexCallOptions, parseCallOptions } from "../ai-sdk/settings.ts"
import { ToolParking } from "../ai-sdk/toolParking.ts"
import { ANNOUNCED_CALL_GRACE_MS, type ProviderSettings, Turn, type TurnRequest } from "../ai-sdk/turn.ts"
import type * as CodexProtocol from "../CodexProtocol.ts"
import * as CodexWorkerPool from "../CodexWorkerPool.ts"
import { PoolOptionsError } from "../errors.ts"
import { decodeOptions, DurationInput, toMillis } from "../internal/options.ts"
import { invalidRequest, toAiError } from "./errors.ts"
import { type Lease, lease } from "./lease.ts"
import { collectParts, PartConverter } from "./parts.ts"
import { toAiSdkPrompt } from "./prompt.ts"

export type { CodexCallOptions } from "../ai-sdk/settings.ts"
export type {
  ApprovalDecision,
  ApprovalRequest,
  ServerRequestContext,
  ServerRequestHandlers
} from "../ai-sdk/approvals.ts"

// The two below are the AI SDK model's, declared here so that this module's
// types never refer to `@ai-sdk/provider` (an optional peer).

/**
 * Params sent with every `thread/start` (and `thread/resume`): cwd,
 * approvalPolicy, sandbox, ephemeral, dynamicTools, ...
 *
 * @since 0.1.0
 * @category models
 */
export type ThreadDefaults = Readonly<Omit<Partial<CodexProtocol.v2.ThreadStartParams>, "model">>

/**
 * How image bytes reach Codex: a temporary file read as `localImage`, or an
 * inline `data:` URL.
 *
 * @since 0.1.0
 * @category models
 */
export type ImageInputMode = "localImage" | "dataUrl"

/**
 * Options of {@link layer}, {@link make} and {@link model}.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options extends ServerRequestHandlers {
  /** The model id sent with `thread/start` and `turn/start` (`Config.model` overrides it per call). */
  readonly model: string
  /** Sent with every `thread/start` (and `thread/resume`): cwd, approvalPolicy, sandbox, ephemeral, ... */
  readonly threadDefaults?: ThreadDefaults | undefined
  /** Per-call settings of every call (the {@link Config} service overrides them field by field). */
  readonly config?: CodexCallOptions | undefined
  /**
   * How long a call that stops early waits for its interrupted turn to end
   * before the worker is taken out of service. Finite; default 5 seconds.
   */
  readonly interruptTimeout?: Duration.Input | undefined
  /**
   * How long a server-request callback (`approvals`, `permissions`, ...) may
   * take before the safe default is sent instead. Default 5 minutes;
   * `Duration.infinity` waits as long as the turn lasts.
   */
  readonly serverRequestTimeout?: Duration.Input | undefined
  /** How image bytes reach Codex: a temporary `localImage` file (default) or an inline data URL. */
  readonly imageInput?: ImageInputMode | undefined
  /**
   * Send streamed command output and MCP progress as preliminary tool
   * results in `streamText` (default true; `Config.streamToolOutput` per call).
   */
  readonly streamToolOutput?: boolean | undefined
}

/**
 * Per-call settings (the AI SDK model's `providerOptions.codex`: `effort`,
 * `summary`, `model`, `cwd`, `sandbox`, `sandboxPolicy`, `approvalPolicy`,
 * `personality`, `threadId`, `streamToolOutput`), over the layer's `config`.
 * Provide it around a call, or use {@link withConfigOverride}.
 *
 * @since 0.1.0
 * @category services
 */
export class Config extends Context.Service<Config, CodexCallOptions>()(
  "codex-worker-pool/effect-ai/CodexLanguageModel/Config"
) {}

/**
 * Runs `self` with `overrides` over the {@link Config} it already has.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { LanguageModel } from "effect/ai"
 * import { CodexLanguageModel } from "codex-worker-pool/effect-ai"
 *
 * const answer = LanguageModel.generateText({ prompt: "Explain the failing test" }).pipe(
 *   CodexLanguageModel.withConfigOverride({ effort: "high", summary: "auto" })
 * )
 * ```
 *
 * @since 0.1.0
 * @category configuration
 */
export const withConfigOverride: {
  (overrides: CodexCallOptions): <A, E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A, E, Exclude<R, Config>>
  <A, E, R>(self: Effect.Effect<A, E, R>, overrides: CodexCallOptions): Effect.Effect<A, E, Exclude<R, Config>>
} = dual(2, <A, E, R>(self: Effect.Effect<A, E, R>, overrides: CodexCallOptions) =>
  Effect.flatMap(
    Effect.serviceOption(Config),
    (config) => Effect.provideService(self, Config, { ...(Option.isSome(config) ? config.value : {}), ...overrides })
  ))

const isObject = (u: unknown): u is object => typeof u === "object" && u !== null && !Array.isArray(u)

const OptionsSchema = Schema.Struct({
  model: Schema.String.check(Schema.makeFilter((s: string) => s !== "" || "Expected a non-empty string")),
  threadDefaults: Schema.optional(Schema.declare(isObject, { expected: "an object of thread/start params" })),
  config: Schema.optional(Schema.Unknown),
  interruptTimeout: Schema.optional(DurationInput),
  serverRequestTimeout: Schema.optional(DurationInput),
  imageInput: Schema.optional(Schema.Literals(["localImage", "dataUrl"])),
  streamToolOutput: Schema.optional(Schema.Boolean),
  ...ServerRequestCallbackFields
})

/** The validated options, throwing a `PoolOptionsError` naming the bad one. */
const validate = (options: Options) => {
  decodeOptions("CodexLanguageModel", OptionsSchema, options)
  const interruptTimeoutMs = options.interruptTimeout === undefined ? 5_000 : toMillis(options.interruptTimeout)
  if (!Number.isFinite(interruptTimeoutMs)) {
    throw new PoolOptionsError({
      message: "Invalid CodexLanguageModel options: interruptTimeout: Expected a finite duration, got Infinity."
    })
  }
  return {
    model: options.model,
    config: parseCallOptions("CodexLanguageModel options: config", options.config),
    interruptTimeoutMs,
    serverRequestTimeoutMs: options.serverRequestTimeout === undefined
      ? 300_000
      : toMillis(options.serverRequestTimeout),
    threadDefaults: options.threadDefaults ?? {},
    imageInput: options.imageInput ?? "localImage",
    streamToolOutput: options.streamToolOutput ?? true,
    handlers: {
      approvals: options.approvals,
      permissions: options.permissions,
      userInput: options.userInput,
      elicitation: options.elicitation,
      chatgptAuthTokens: options.chatgptAuthTokens
    } satisfies ServerRequestHandlers
  }
}

type Method = "generateText" | "streamText"

const liveClock = Clock.Clock.defaultValue()

/** The provider names of the request's Codex tools, by name; the names of its other tools. */
const toolsOf = (tools: ReadonlyArray<Tool.Any>) => {
  const declared = new Map<string, string>()
  const others: Array<string> = []
  for (const tool of tools) {
    if (Tool.isProviderDefined(tool) && tool.id.startsWith("codex.")) declared.set(tool.providerName, tool.name)
    else others.push(tool.name)
  }
  return { declared, others }
}

const requiresTool = (choice: LanguageModel.ToolChoice<string>): boolean =>
  choice === "required" || (typeof choice === "object" && ("tool" in choice || choice.mode === "required"))

const describeWarning = (warning: SharedV3Warning): string => {
  switch (warning.type) {
    case "unsupported":
      return `${warning.feature} is not supported${warning.details === undefined ? "" : `: ${warning.details}`}`
    case "compatibility":
      return `${warning.feature} is only partly supported${warning.details === undefined ? "" : `: ${warning.details}`}`
    default:
      return warning.message
  }
}

/** Logs each warning and adds it to the call's span. */
const reportWarnings = (warnings: ReadonlyArray<SharedV3Warning>, span: Span) =>
  Effect.forEach(warnings, (warning) =>
    Effect.gen(function*() {
      const text = describeWarning(warning)
      span.event("codex.warning", yield* Clock.currentTimeNanos, { "codex.warning": text })
      yield* Effect.logWarning(`CodexLanguageModel: ${text}`)
    }), { discard: true })

/**
 * Makes the language model over the `CodexWorkerPool` in the context. Bad
 * options are a defect (a `PoolOptionsError` naming the option).
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options): Effect.Effect<LanguageModel.LanguageModel, never, CodexWorkerPool.CodexWorkerPool> =>
  Effect.gen(function*() {
    const settings = validate(options)
    const pool = yield* CodexWorkerPool.CodexWorkerPool
    const shared: Omit<ProviderSettings, "pool"> = {
      loadedThreads: new WeakMap(),
      threadDefaults: settings.threadDefaults,
      interruptTimeoutMs: settings.interruptTimeoutMs,
      serverRequestTimeoutMs: settings.serverRequestTimeoutMs,
      // effect/ai tools are not offered to Codex (a warning), so no turn ever parks.
      toolResultTimeoutMs: 60_000,
      announcedCallGraceMs: ANNOUNCED_CALL_GRACE_MS,
      parking: new ToolParking<Turn>(),
      handlers: settings.handlers,
      toolCalls: undefined,
      imageInput: settings.imageInput
    }

    /** What one call asks for, validated before a worker is leased. */
    const prepare = (options: LanguageModel.ProviderOptions, method: Method) =>
      Effect.gen(function*() {
        const override = yield* Effect.serviceOption(Config)
        let merged: CodexCallOptions
        let plan: PromptPlan
        try {
          const callOptions = Option.isNone(override)
            ? {}
            : parseCallOptions("CodexLanguageModel.Config", override.value)
          merged = { ...settings.config, ...callOptions }
          plan = planInput(toAiSdkPrompt(options.prompt), merged.threadId)
        } catch (error) {
          return yield* Effect.fail(toAiError(method, error))
        }
        for (const key of ["account", "workspace"] as const) {
          if (merged[key] !== undefined) {
            return yield* Effect.fail(invalidRequest(
              method,
              key,
              `${key} is not supported: the CodexWorkerPool service's get does not take it. Remove it from the config.`
            ))
          }
        }
        let outputSchema: TurnRequest["outputSchema"]
        if (options.responseFormat.type === "json") {
          try {
            outputSchema = Tool.getJsonSchemaFromSchema(options.responseFormat.schema, {
              transformer: OpenAiStructuredOutput.toCodecOpenAI
            }) as unknown as TurnRequest["outputSchema"]
          } catch (error) {
            return yield* Effect.fail(AiError.make({
              module: "CodexLanguageModel",
              method,
              reason: new AiError.UnsupportedSchemaError({ description: error instanceof Error ? error.message : String(error) })
            }))
          }
        }
        const { declared, others } = toolsOf(options.tools)
        const warnings: Array<SharedV3Warning> = []
        if (others.length > 0) {
          warnings.push({
            type: "unsupported",
            feature: "tools",
            details: `Codex runs its own tools; these are not passed to it: ${others.join(", ")}.`
          })
        }
        if (requiresTool(options.toolChoice)) {
          warnings.push({ type: "unsupported", feature: "toolChoice", details: "Codex decides which of its tools to run." })
        }
        const resumeId = merged.threadId ?? plan.found?.threadId
        const request: Omit<TurnRequest, "signal"> = {
          modelId: settings.model,
          settings: merged,
          plan,
          resumeId,
          explicitThread: merged.threadId !== undefined,
          outputSchema,
          tools: [],
          warnings: [...warnings, ...plan.warnings],
          includeRawChunks: false,
          streamToolOutput: method === "streamText" && (merged.streamToolOutput ?? settings.streamToolOutput)
        }
        Telemetry.addGenAIAnnotations(options.span, {
          provider: { name: "codex" },
          request: { model: merged.model ?? settings.model }
        })
        return { request, declared }
      })

    /**
     * Stops the turn of a lease still held when the call's scope closes: the
     * turn interrupts itself and gives the worker back; unconfirmed within
     * `interruptTimeout`, the worker is taken out of service.
     */
    const stop = (leased: Lease, controller: AbortController) =>
      Effect.suspend(() => {
        if (!leased.live) return Effect.void
        controller.abort(new Error("The CodexLanguageModel call ended before its turn did: the turn is interrupted."))
        return leased.ended.pipe(
          Effect.timeoutOption(Duration.millis(settings.interruptTimeoutMs)),
          Effect.flatMap((ended) => Option.isNone(ended) ? Effect.sync(() => leased.end(true)) : Effect.void),
          Effect.provideService(Clock.Clock, liveClock)
        )
      })

    /** One call as a stream of effect/ai parts. */
    const run = (options: LanguageModel.ProviderOptions, method: Method): Stream.Stream<Response.StreamPartEncoded, AiError.AiError> =>
      Stream.unwrap(Effect.gen(function*() {
        const { declared, request } = yield* prepare(options, method)
        const controller = new AbortController()
        const turn = yield* lease(pool, (leased) =>
          Effect.as(
            Effect.addFinalizer(() => stop(leased, controller)),
            new Turn(leased.handle, { ...shared, pool: leased.pool }, { ...request, signal: controller.signal })
          )).pipe(Effect.mapError((error) => toAiError(method, error)))
        const converter = new PartConverter(declared)
        const span = options.span
        return Stream.fromReadableStream({ evaluate: () => turn.stream, onError: (error) => toAiError(method, error) }).pipe(
          Stream.mapEffect((part): Effect.Effect<ReadonlyArray<Response.StreamPartEncoded>, AiError.AiError> => {
            switch (part.type) {
              case "stream-start":
                return Effect.as(reportWarnings(part.warnings, span), [])
              case "error":
                return Effect.fail(toAiError(method, part.error))
              case "response-metadata":
                Telemetry.addGenAIAnnotations(span, { response: { id: part.id, model: part.modelId } })
                break
              case "finish":
                Telemetry.addGenAIAnnotations(span, {
                  response: { finishReasons: [part.finishReason.unified] },
                  usage: { inputTokens: part.usage.inputTokens.total, outputTokens: part.usage.outputTokens.total }
                })
                break
            }
            return Effect.succeed(converter.convert(part))
          }),
          Stream.flattenIterable
        )
      }))

    return yield* LanguageModel.make({
      codecTransformer: OpenAiStructuredOutput.toCodecOpenAI,
      // System messages reach Codex only as a new thread's developer instructions.
      supportsSystemMessagesInHistory: Effect.succeed(false),
      generateText: (options) => Effect.map(Stream.runCollect(run(options, "generateText")), collectParts),
      streamText: (options) => run(options, "streamText")
    })
  })

/**
 * The language model as a layer over the `CodexWorkerPool` service. Bad
 * options are a defect naming the option.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options): Layer.Layer<LanguageModel.LanguageModel, never, CodexWorkerPool.CodexWorkerPool> =>
  Layer.effect(LanguageModel.LanguageModel, make(options))

/**
 * The language model as an effect/ai `Model` (a layer that also provides the
 * provider name `"codex"` and the model name).
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { LanguageModel } from "effect/ai"
 * import { CodexLanguageModel } from "codex-worker-pool/effect-ai"
 * import { layerCodexWorkerPool } from "codex-worker-pool/node"
 *
 * const Codex = CodexLanguageModel.model("gpt-5.1-codex", { threadDefaults: { ephemeral: true } })
 *
 * const program = LanguageModel.generateText({ prompt: "Hello" }).pipe(
 *   Effect.provide(Codex),
 *   Effect.provide(layerCodexWorkerPool({ poolSize: 1 }))
 * )
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const model = (
  modelId: string,
  options: Omit<Options, "model"> = {}
): Model.Model<"codex", LanguageModel.LanguageModel, CodexWorkerPool.CodexWorkerPool> =>
  Model.make("codex", modelId, layer({ ...options, model: modelId }))

/**
 * `codex-worker-pool/effect-ai`: Codex as a `LanguageModel` of Effect's own
 * `effect/ai`, over the `CodexWorkerPool` service, so Effect code calls
 * Codex through Effect's AI abstraction (`LanguageModel.generateText`,
 * `generateObject`, `streamText`, `Chat`) with the pool's queueing, abort by
 * interruption and cleanup.
 *
 * - `CodexLanguageModel`: the model (`layer`, `make`, `model`) and its
 *   per-call settings (`Config`, `withConfigOverride`).
 * - `CodexTool`: Codex's own actions as provider-defined tools; a request
 *   whose toolkit declares them (`CodexTool.toolkit`) sees them as
 *   provider-executed tool calls.
 *
 * Each call runs the AI SDK model's turn machinery and mapping
 * (`codex-worker-pool/ai-sdk`), without loading `ai` or `@ai-sdk/provider`
 * (only their types are used). This entry does not load
 * `@effect/platform-node` either: provide the pool with
 * `layerCodexWorkerPool` from `codex-worker-pool/node`, or `layerTest` from
 * `codex-worker-pool/testing`.
 *
 * @example
 * ```ts
 * import { Effect, Layer, Stream } from "effect"
 * import { LanguageModel } from "effect/ai"
 * import { CodexLanguageModel, CodexTool } from "codex-worker-pool/effect-ai"
 * import { layerCodexWorkerPool } from "codex-worker-pool/node"
 *
 * const Codex = CodexLanguageModel.layer({ model: "gpt-5.1-codex", threadDefaults: { ephemeral: true } }).pipe(
 *   Layer.provide(layerCodexWorkerPool({ poolSize: 2 }))
 * )
 *
 * const program = LanguageModel.streamText({ prompt: "List the files here", toolkit: CodexTool.toolkit }).pipe(
 *   Stream.runForEach((part) =>
 *     Effect.sync(() => {
 *       if (part.type === "tool-call") console.log("codex runs", part.name, part.params)
 *       if (part.type === "text-delta") process.stdout.write(part.delta)
 *     })
 *   ),
 *   Effect.provide(Codex)
 * )
 * ```
 *
 * @since 0.1.0
 */
export * as CodexLanguageModel from "./CodexLanguageModel.ts"
export * as CodexTool from "./CodexTool.ts"

/**
 * The pool's and Codex's failures as `AiError`s, the only error
 * `effect/ai`'s `LanguageModel` lets a provider fail with.
 *
 * Guarantees: the reason's `description` is the original error's message
 * (which says what happened and what to do), and its metadata names the
 * original error: `{ codex: { error: "WorkerCrashedError" } }` (the `_tag`,
 * else the error's `name`). The reason is chosen by what a caller can do:
 * - `InvalidRequestError` (not retryable): bad per-call settings or prompt
 *   (`PoolOptionsError`), and a request codex refused (`JsonRpcError`: a
 *   thread that cannot be resumed, a bad `threadDefaults` field);
 * - `UnknownError` (not retryable): the pool was shut down (`PoolShutdownError`);
 * - `InternalProviderError` (retryable): everything else: a failed turn
 *   (its message from codex), a crashed or stuck worker, a lease or request
 *   timeout, a full queue, an acquire timeout, a failed spawn, a callback
 *   that threw.
 * An `AiError` is kept as it is.
 *
 * @internal
 */
import { AiError } from "effect/ai"

const nameOf = (error: unknown): string => {
  if (typeof error === "object" && error !== null) {
    const tag = (error as { readonly _tag?: unknown })._tag
    if (typeof tag === "string") return tag
    if (error instanceof Error) return error.name
  }
  return typeof error
}

const messageOf = (error: unknown): string => (error instanceof Error ? error.message : String(error))

/** `error` as the `AiError` of `method` (`generateText`, `streamText`). */
export const toAiError = (method: string, error: unknown): AiError.AiError => {
  if (AiError.isAiError(error)) return error
  const name = nameOf(error)
  const description = messageOf(error)
  const metadata = { codex: { error: name } }
  const reason = name === "PoolOptionsError" || name === "JsonRpcError"
    ? new AiError.InvalidRequestError({ description, metadata })
    : name === "PoolShutdownError"
    ? new AiError.UnknownError({ description, metadata })
    : new AiError.InternalProviderError({ description, metadata })
  return AiError.make({ module: "CodexLanguageModel", method, reason })
}

/** An `InvalidRequestError` about `parameter`. */
export const invalidRequest = (method: string, parameter: string, description: string): AiError.AiError =>
  AiError.make({
    module: "CodexLanguageModel",
    method,
    reason: new AiError.InvalidRequestError({
      parameter,
      description,
      metadata: { codex: { error: "PoolOptionsError" } }
    })
  })

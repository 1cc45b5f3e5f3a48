/**
 * codex-worker-pool: a FIFO-queued pool of long-lived Codex CLI workers
 * (`codex app-server`) on Effect, with a promise facade.
 *
 * - `WorkerPool`: the generic Effect-native pool (`make`, `layer`).
 * - `createWorkerPool`: its promise facade.
 * - `CodexWorker`, `CodexWorkerPool`: Codex app-server workers and the pool
 *   of them as an Effect service (`layer`, `layerNode`).
 * - `createCodexWorkerPool`: the Codex pool's promise facade.
 * - `RateLimits`: rate-limit admission per API key (RPM, TPM, 429 cooldown)
 *   and per workspace, in memory or shared through Redis.
 * - The errors every API fails with.
 *
 * @since 0.1.0
 */
export * as CodexWorker from "./CodexWorker.ts"
export * as CodexWorkerPool from "./CodexWorkerPool.ts"
export * as RateLimits from "./RateLimits.ts"
export * as WorkerPool from "./WorkerPool.ts"
export {
  createCodexWorkerPool,
  type CloseEvent,
  type CodexPromiseWorkerPool,
  type CodexWorkerHandle,
  type CodexWorkerPoolOptions
} from "./CodexPromisePool.ts"
export {
  createWorkerPool,
  type AcquireOptions,
  type PoolStats,
  type PromiseWorkerPool,
  type WorkerPoolOptions
} from "./PromisePool.ts"
export {
  AcquireTimeoutError,
  ChannelClosedError,
  JsonRpcError,
  LeaseTimeoutError,
  PoolOptionsError,
  PoolShutdownError,
  QueueFullError,
  RateLimitedError,
  RequestTimeoutError,
  WorkerCrashedError,
  WorkerNotLeasedError,
  WorkerSpawnError,
  WorkspaceLimitError
} from "./errors.ts"

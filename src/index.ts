/**
 * codex-worker-pool: a FIFO-queued pool of long-lived Codex CLI workers
 * (`codex app-server`) on Effect, with a promise facade.
 *
 * - `WorkerPool`: the generic Effect-native pool (`make`, `layer`).
 * - `createWorkerPool`: its promise facade.
 * - `CodexWorker`, `CodexWorkerPool`: Codex app-server workers and the pool
 *   of them as an Effect service (`layer`, `layerNode`).
 * - `createCodexWorkerPool`: the Codex pool's promise facade.
 * - `CodexProtocol`: the app-server protocol's types, generated from the
 *   pinned `@openai/codex`, and helpers typing requests and messages by method.
 * - The errors every API fails with, each a Schema of itself, and
 *   `CodexWorkerPoolError`, the Schema of them all.
 *
 * @since 0.1.0
 */
export * as CodexProtocol from "./CodexProtocol.ts"
export * as CodexWorker from "./CodexWorker.ts"
export * as CodexWorkerPool from "./CodexWorkerPool.ts"
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
  CodexWorkerPoolError,
  JsonRpcError,
  LeaseTimeoutError,
  PoolOptionsError,
  PoolShutdownError,
  QueueFullError,
  RequestTimeoutError,
  ResponseDecodeError,
  WorkerCrashedError,
  WorkerNotLeasedError,
  WorkerSpawnError,
  type WorkerSpawnReason
} from "./errors.ts"

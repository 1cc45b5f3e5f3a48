/**
 * codex-worker-pool: a FIFO-queued pool of long-lived workers on Effect, with
 * a promise facade.
 *
 * - `WorkerPool`: the Effect-native pool (`make`, `layer`).
 * - `createWorkerPool`: the promise facade over the same core.
 * - The errors every API fails with.
 *
 * @since 0.1.0
 */
export * as WorkerPool from "./WorkerPool.ts"
export {
  createWorkerPool,
  type AcquireOptions,
  type PoolStats,
  type PromiseWorkerPool,
  type WorkerPoolOptions
} from "./PromisePool.ts"
export {
  AcquireTimeoutError,
  PoolOptionsError,
  PoolShutdownError,
  QueueFullError,
  WorkerNotLeasedError
} from "./errors.ts"

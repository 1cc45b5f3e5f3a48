/**
 * codex-worker-pool: a FIFO-queued pool of long-lived Codex CLI workers
 * (`codex app-server`) on Effect, with a promise facade.
 *
 * - `WorkerPool`: the generic Effect-native pool (`make`, `layer`).
 * - `createWorkerPool`: its promise facade.
 * - `CodexWorker`, `CodexWorkerPool`: Codex app-server workers and the pool
 *   of them as an Effect service (`make`, `layer`), spawning with the
 *   `ChildProcessSpawner` (`effect/process`) they are given.
 * - The types of the Codex pool's promise facade (`CodexPromiseWorkerPool`,
 *   `CodexWorkerHandle`, ...).
 * - `CodexProtocol`: the app-server protocol's types, generated from the
 *   pinned `@openai/codex`, and helpers typing requests and messages by method.
 * - The errors every API fails with.
 *
 * This entry does not load `@effect/platform-node`. What spawns codex with
 * Node is in `codex-worker-pool/node`: `createCodexWorkerPool` (the promise
 * facade), `layerCodexWorkerPool` (the service) and
 * `layerChildProcessSpawner` (Node's spawner).
 *
 * @since 0.1.0
 */
export * as CodexProtocol from "./CodexProtocol.ts"
export * as CodexWorker from "./CodexWorker.ts"
export * as CodexWorkerPool from "./CodexWorkerPool.ts"
export * as WorkerPool from "./WorkerPool.ts"
export type {
  CloseEvent,
  CodexPromisePoolStats,
  CodexPromiseWorkerPool,
  CodexWorkerHandle,
  CodexWorkerPoolOptions
} from "./CodexPromisePool.ts"
export {
  createWorkerPool,
  type AcquireOptions,
  type PoolLogger,
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
  ProtocolError,
  QueueFullError,
  RequestTimeoutError,
  ResponseDecodeError,
  WorkerCrashedError,
  WorkerNotLeasedError,
  WorkerSpawnError,
  type WorkerSpawnReason,
  WorkerStdioError
} from "./errors.ts"

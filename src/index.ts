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
 * - `RateLimits`: rate-limit admission per API key (RPM, TPM, 429 cooldown)
 *   and per workspace, in memory or shared through Redis.
 * - The errors every API fails with, each a Schema of itself, and
 *   `CodexWorkerPoolError`, the Schema of them all.
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
export * as RateLimits from "./RateLimits.ts"
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
  type WorkerPoolAccountOptions,
  type WorkerPoolOptions
} from "./PromisePool.ts"
export {
  AccountExistsError,
  AccountRemovedError,
  AcquireTimeoutError,
  ChannelClosedError,
  CodexWorkerPoolError,
  JsonRpcError,
  LeaseTimeoutError,
  PoolOptionsError,
  PoolShutdownError,
  ProtocolError,
  QueueFullError,
  RateLimitedError,
  RequestTimeoutError,
  ResponseDecodeError,
  UnknownAccountError,
  WorkerCrashedError,
  WorkerNotLeasedError,
  WorkerSpawnError,
  type WorkerSpawnReason,
  WorkerStdioError,
  WorkspaceLimitError
} from "./errors.ts"

/**
 * `codex-worker-pool/node`: the parts that spawn codex with Node's process
 * spawner (`@effect/platform-node`, a peer dependency this entry needs and
 * the root entry does not).
 *
 * - `createCodexWorkerPool`: the Codex pool's promise facade.
 * - `layerCodexWorkerPool`: the `CodexWorkerPool` service, spawning with Node;
 *   `layerCodexWorkerPoolConfig`: the same with its options read from `Config`s.
 * - `layerChildProcessSpawner`: Node's `ChildProcessSpawner` (with the
 *   `FileSystem` and `Path` it needs), for `CodexWorker.make` and
 *   `CodexWorkerPool.layer` / `make`.
 *
 * The root entry (`codex-worker-pool`) has everything that does not depend on
 * the platform: `WorkerPool`, `createWorkerPool`, `CodexWorker`,
 * `CodexWorkerPool` (needing a `ChildProcessSpawner` from `effect/process`),
 * `CodexProtocol`, the errors, and the facade's types.
 *
 * @example
 * ```ts
 * import { createCodexWorkerPool } from "codex-worker-pool/node"
 *
 * const pool = createCodexWorkerPool({ poolSize: 2 })
 * const result = await pool.use((worker) => worker.request("thread/start", { ephemeral: true }))
 * await pool.shutdown()
 * ```
 *
 * @since 0.1.0
 */
import * as NodeChildProcessSpawner from "@effect/platform-node/NodeChildProcessSpawner"
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import * as NodePath from "@effect/platform-node/NodePath"
import type * as Config from "effect/Config"
import * as Layer from "effect/Layer"
import type { ChildProcessSpawner } from "effect/process/ChildProcessSpawner"
import { type CodexPromiseWorkerPool, type CodexWorkerPoolOptions, makeCodexPromisePool } from "./CodexPromisePool.ts"
import * as CodexWorkerPool from "./CodexWorkerPool.ts"

export type {
  CloseEvent,
  CodexPromisePoolStats,
  CodexPromiseWorkerPool,
  CodexWorkerHandle,
  CodexWorkerPoolOptions
} from "./CodexPromisePool.ts"

/**
 * Node's `ChildProcessSpawner`, with the `FileSystem` and `Path` it needs
 * (it checks `cwd` before spawning). What `CodexWorker.make` and
 * `CodexWorkerPool.layer` / `make` need on Node.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { CodexWorker } from "codex-worker-pool"
 * import { layerChildProcessSpawner } from "codex-worker-pool/node"
 *
 * const program = Effect.scoped(Effect.gen(function*() {
 *   const worker = yield* CodexWorker.make({ codexHome: "/tmp/codex-home" })
 *   const { thread } = yield* worker.call("thread/start", { ephemeral: true })
 *   return thread.id
 * })).pipe(Effect.provide(layerChildProcessSpawner))
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layerChildProcessSpawner: Layer.Layer<ChildProcessSpawner> = NodeChildProcessSpawner.layer.pipe(
  Layer.provide(Layer.merge(NodeFileSystem.layer, NodePath.layer))
)

/**
 * The `CodexWorkerPool` service as a scoped layer, spawning codex with Node:
 * `CodexWorkerPool.layer(options)` given {@link layerChildProcessSpawner}.
 * Closing the layer shuts the pool down and kills every worker tree. Bad
 * options are a defect naming the option.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { CodexWorkerPool } from "codex-worker-pool"
 * import { layerCodexWorkerPool } from "codex-worker-pool/node"
 *
 * const program = Effect.gen(function*() {
 *   const pool = yield* CodexWorkerPool.CodexWorkerPool
 *   return yield* pool.use((worker) => worker.request("thread/start", { ephemeral: true }))
 * }).pipe(Effect.provide(layerCodexWorkerPool({ poolSize: 2 })))
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layerCodexWorkerPool = (
  options: CodexWorkerPool.Options = {}
): Layer.Layer<CodexWorkerPool.CodexWorkerPool> =>
  CodexWorkerPool.layer(options).pipe(Layer.provide(layerChildProcessSpawner))

/**
 * {@link layerCodexWorkerPool} with its options read from `Config`s, through
 * the current `ConfigProvider` (the environment by default):
 * `CodexWorkerPool.layerConfig(config)` given {@link layerChildProcessSpawner}.
 * A value that cannot be read or is not a valid option fails the layer with a
 * `ConfigError` naming it (in the error channel, not as a defect).
 *
 * @example
 * ```ts
 * import { Config, Effect } from "effect"
 * import { CodexWorkerPool } from "codex-worker-pool"
 * import { layerCodexWorkerPoolConfig } from "codex-worker-pool/node"
 *
 * // CODEX_POOL_SIZE=4 CODEX_IDLE_TIMEOUT="10 minutes" node app.js
 * const PoolLive = layerCodexWorkerPoolConfig({
 *   poolSize: Config.Int("CODEX_POOL_SIZE"),
 *   idleTimeout: Config.Duration("CODEX_IDLE_TIMEOUT").pipe(Config.withDefault("5 minutes"))
 * })
 * ```
 *
 * @since 0.2.0
 * @category layers
 */
export const layerCodexWorkerPoolConfig = (
  config: Config.Wrap<CodexWorkerPool.Options>
): Layer.Layer<CodexWorkerPool.CodexWorkerPool, Config.ConfigError> =>
  CodexWorkerPool.layerConfig(config).pipe(Layer.provide(layerChildProcessSpawner))

/**
 * Creates a pool of Codex app-server workers driven with promises, spawning
 * codex with Node. Same pool, same guarantees as `CodexWorkerPool` (see
 * `CodexWorkerHandle` for what a leased worker offers). Bad options throw a
 * `PoolOptionsError` naming the option. Workers are spawned on demand (or
 * ahead of it with `minIdle`); `shutdown()` kills every worker tree.
 *
 * @since 0.1.0
 * @category constructors
 */
export const createCodexWorkerPool = (options: CodexWorkerPoolOptions = {}): CodexPromiseWorkerPool =>
  makeCodexPromisePool(options, layerChildProcessSpawner)

/**
 * A pool of `codex app-server` workers as an Effect service: the queued
 * `WorkerPool` composed with `CodexWorker`.
 *
 * What it adds to both:
 * - a worker whose process exits or whose channel breaks is taken out of
 *   service at once (an idle one is finalized, a leased one when released)
 *   and replaced on demand;
 * - a lease held longer than `leaseTimeout` (default 5 minutes) gets its
 *   worker's tree killed and its pending requests failed with
 *   `LeaseTimeoutError`;
 * - metrics carry `provider: "codex"`; gauges report the live processes of
 *   all worker trees and their resident memory, and `stats` includes both;
 * - an opt-in watchdog process (`watchdog: true`, Linux) that kills every
 *   worker tree if the host is SIGKILLed;
 * - `layerConfig`: the options read from `Config`s, a bad value failing the
 *   layer with a `ConfigError` (options from code stay a defect).
 *
 * Times are `Duration.Input`s (`"30 seconds"`, `Duration.minutes(5)`, or a
 * number of milliseconds). A limit of time is > 0, with `Duration.infinity`
 * for no limit; zero is refused (it meant "no limit" in 0.1, and still does in
 * the promise facade's `...Ms` options). `shutdownTimeout` and `killGrace`
 * may be zero: no wait, no grace.
 *
 * Limits: see `CodexWorker` (descendant tracking by `/proc` scans) and
 * `WorkerPool` (a replacement may start while its predecessor is still being
 * killed).
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
 */
import { Config, Context, type Duration, Effect, Layer } from "effect"
import type { ChildProcessSpawner } from "effect/process/ChildProcessSpawner"
import type * as Scope from "effect/Scope"
import type * as CodexWorker from "./CodexWorker.ts"
import type { WorkerSpawnError } from "./errors.ts"
import { checkConfig, makeParts, validate } from "./internal/codexPool.ts"
import type * as WorkerPool from "./WorkerPool.ts"

/**
 * Options of a Codex worker pool. Times are `Duration.Input`s; a limit of
 * time must be > 0, `Duration.infinity` meaning no limit. Bad options are a
 * defect (`PoolOptionsError` naming the option), or a `ConfigError` when read
 * by `layerConfig`.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options extends CodexWorker.ProcessOptions {
  /** Most workers (codex processes) at once. Default 1. */
  readonly poolSize?: number | undefined
  /** Idle time before a worker is retired. Default 5 minutes; `Duration.infinity`: never. */
  readonly idleTimeout?: Duration.Input | undefined
  /** Longest wait in the queue before `AcquireTimeoutError`. Default (or `Duration.infinity`): no limit. */
  readonly acquireTimeout?: Duration.Input | undefined
  /** Most queued acquires; one more fails at once with `QueueFullError`. Default: unbounded. */
  readonly maxQueue?: number | undefined
  /** Workers kept warm (spawned and initialized ahead of demand). Default 0. */
  readonly minIdle?: number | undefined
  /**
   * Longest lease; then the worker's tree is killed (`LeaseTimeoutError`).
   * Default 5 minutes; `Duration.infinity`: no limit.
   */
  readonly leaseTimeout?: Duration.Input | undefined
  /**
   * How long shutdown waits for leased workers before killing them anyway.
   * Default 30 seconds; `Duration.infinity`: wait for ever; zero: kill them at once.
   */
  readonly shutdownTimeout?: Duration.Input | undefined
  /** The `pool` attribute of the metrics. Default "codex". */
  readonly name?: string | undefined
  /** Start a watchdog process that kills every worker tree if the host is SIGKILLed (Linux). Default false. */
  readonly watchdog?: boolean | undefined
}

/**
 * The counts of a Codex pool.
 *
 * @since 0.1.0
 * @category models
 */
export interface Stats extends WorkerPool.Stats {
  /** Live processes in all worker trees (codex and everything it started). */
  readonly processes: number
  /** Resident memory of those processes, in bytes. */
  readonly residentBytes: number
}

/**
 * The service: a queued pool of Codex workers.
 *
 * @since 0.1.0
 * @category models
 */
export interface Service {
  /** Leases a worker for the current scope, waiting FIFO when all are busy. */
  readonly get: Effect.Effect<CodexWorker.CodexWorker, WorkerSpawnError | WorkerPool.PoolError, Scope.Scope>
  /** `get` with per-acquire options. */
  readonly getWith: (
    options: WorkerPool.AcquireOptions
  ) => Effect.Effect<CodexWorker.CodexWorker, WorkerSpawnError | WorkerPool.PoolError, Scope.Scope>
  /** Leases a worker for the duration of `f`. */
  readonly use: <A, E, R>(
    f: (worker: CodexWorker.CodexWorker) => Effect.Effect<A, E, R>,
    options?: WorkerPool.AcquireOptions
  ) => Effect.Effect<A, E | WorkerSpawnError | WorkerPool.PoolError, R>
  /** Takes a worker out of service (finalized now if idle, when released if leased). */
  readonly invalidate: (worker: CodexWorker.CodexWorker) => Effect.Effect<void>
  /** The counts now, including processes and resident memory. */
  readonly stats: Effect.Effect<Stats>
  /** Shuts down and waits until every worker tree is gone (what closing the scope does). */
  readonly shutdown: Effect.Effect<void>
}

/**
 * The Codex worker pool service key.
 *
 * @since 0.1.0
 * @category services
 */
export class CodexWorkerPool extends Context.Service<CodexWorkerPool, Service>()("codex-worker-pool/CodexWorkerPool") {}

/**
 * Makes a Codex worker pool in the current scope; closing the scope shuts it
 * down and kills every worker tree. Bad options are a defect naming the option.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options = {}): Effect.Effect<Service, never, ChildProcessSpawner | Scope.Scope> =>
  Effect.map(Effect.suspend(() => makeParts(validate(options))), ({ pool, stats }): Service => ({
    get: pool.get,
    getWith: pool.getWith,
    use: pool.use,
    invalidate: pool.invalidate,
    stats,
    shutdown: pool.shutdown
  }))

/**
 * The service as a scoped layer, given a `ChildProcessSpawner`. On Node,
 * `layerCodexWorkerPool` from `codex-worker-pool/node` is this with Node's
 * spawner.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options = {}): Layer.Layer<CodexWorkerPool, never, ChildProcessSpawner> =>
  Layer.effect(CodexWorkerPool, make(options))

/**
 * {@link layer} with its options read from `Config`s, through the current
 * `ConfigProvider` (the environment by default): a `Config` per option
 * (`Config.Wrap`), or one `Config` of the whole options object.
 *
 * A value that cannot be read, or that is read but is not a valid option
 * (`poolSize: 0`, a zero or negative duration, `minIdle` above `poolSize`),
 * fails the layer with a `ConfigError` naming it, in the error channel, not
 * as a defect. Durations read with `Config.Duration` take strings such as
 * `"30 seconds"` or `"Infinity"`. On Node, `layerCodexWorkerPoolConfig` from
 * `codex-worker-pool/node` is this with Node's spawner.
 *
 * @example
 * ```ts
 * import { Config } from "effect"
 * import { CodexWorkerPool } from "codex-worker-pool"
 *
 * const PoolLive = CodexWorkerPool.layerConfig({
 *   poolSize: Config.Int("CODEX_POOL_SIZE").pipe(Config.withDefault(2)),
 *   leaseTimeout: Config.Duration("CODEX_LEASE_TIMEOUT").pipe(Config.withDefault("10 minutes")),
 *   codexHome: Config.String("CODEX_HOME").pipe(Config.withDefault(undefined))
 * })
 * ```
 *
 * @since 0.2.0
 * @category layers
 */
export const layerConfig = (
  config: Config.Wrap<Options>
): Layer.Layer<CodexWorkerPool, Config.ConfigError, ChildProcessSpawner> =>
  Layer.effect(
    CodexWorkerPool,
    Config.unwrap(config).pipe(
      Effect.flatMap(checkConfig),
      Effect.flatMap(make)
    )
  )

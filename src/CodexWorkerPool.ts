/**
 * A pool of `codex app-server` workers as an Effect service: the queued
 * `WorkerPool` composed with `CodexWorker`.
 *
 * What it adds to both:
 * - a worker whose process exits or whose channel breaks is taken out of
 *   service at once (an idle one is finalized, a leased one when released)
 *   and replaced on demand;
 * - a lease held longer than `leaseTimeoutMs` (default 5 minutes) gets its
 *   worker's tree killed and its pending requests failed with
 *   `LeaseTimeoutError`;
 * - metrics carry `provider: "codex"`; gauges report the live processes of
 *   all worker trees and their resident memory, and `stats` includes both;
 * - an opt-in watchdog process (`watchdog: true`, Linux) that kills every
 *   worker tree if the host is SIGKILLed.
 *
 * Limits: see `CodexWorker` (descendant tracking by `/proc` scans) and
 * `WorkerPool` (a replacement may start while its predecessor is still being
 * killed).
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { CodexWorkerPool } from "codex-worker-pool"
 *
 * const program = Effect.gen(function*() {
 *   const pool = yield* CodexWorkerPool.CodexWorkerPool
 *   return yield* pool.use((worker) => worker.request("thread/start", { ephemeral: true }))
 * }).pipe(Effect.provide(CodexWorkerPool.layerNode({ poolSize: 2 })))
 * ```
 *
 * @since 0.1.0
 */
import { Context, Effect, Layer, Metric, Schema } from "effect"
import type { ChildProcessSpawner } from "effect/process/ChildProcessSpawner"
import type * as Scope from "effect/Scope"
import * as CodexWorker from "./CodexWorker.ts"
import { LeaseTimeoutError, PoolOptionsError, type WorkerSpawnError } from "./errors.ts"
import { CountOrInfinity, decodeOptions, IntAtLeast, Millis } from "./internal/options.ts"
import { startWatchdog } from "./internal/watchdog.ts"
import * as WorkerPool from "./WorkerPool.ts"

/**
 * Options of a Codex worker pool. Times are in milliseconds.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options extends CodexWorker.ProcessOptions {
  /** Most workers (codex processes) at once. Default 1. */
  readonly poolSize?: number | undefined
  /** Idle time before a worker is retired. Default 300000; 0 disables. */
  readonly idleTimeoutMs?: number | undefined
  /** Longest wait in the queue before `AcquireTimeoutError`. Default: no limit. */
  readonly acquireTimeoutMs?: number | undefined
  /** Most queued acquires; one more fails at once with `QueueFullError`. Default: unbounded. */
  readonly maxQueue?: number | undefined
  /** Workers kept warm (spawned and initialized ahead of demand). Default 0. */
  readonly minIdle?: number | undefined
  /** Longest lease; then the worker's tree is killed (`LeaseTimeoutError`). Default 300000; 0 disables. */
  readonly leaseTimeoutMs?: number | undefined
  /** How long shutdown waits for leased workers before killing them anyway. Default 30000. */
  readonly shutdownTimeoutMs?: number | undefined
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

const OptionsSchema = Schema.Struct({
  poolSize: Schema.optional(IntAtLeast(1)),
  idleTimeoutMs: Schema.optional(Millis),
  acquireTimeoutMs: Schema.optional(Millis),
  maxQueue: Schema.optional(CountOrInfinity),
  minIdle: Schema.optional(IntAtLeast(0)),
  leaseTimeoutMs: Schema.optional(Millis),
  shutdownTimeoutMs: Schema.optional(Millis),
  name: Schema.optional(Schema.String),
  watchdog: Schema.optional(Schema.Boolean),
  command: Schema.optional(Schema.String.check(Schema.isNonEmpty())),
  args: Schema.optional(Schema.Array(Schema.String)),
  env: Schema.optional(Schema.Record(Schema.String, Schema.UndefinedOr(Schema.String))),
  cwd: Schema.optional(Schema.String),
  codexHome: Schema.optional(Schema.String),
  spawnTimeoutMs: Schema.optional(Millis.check(Schema.isGreaterThan(0))),
  killGraceMs: Schema.optional(Millis),
  processScanIntervalMs: Schema.optional(Millis.check(Schema.isGreaterThan(0))),
  clientInfo: Schema.optional(Schema.Struct({
    name: Schema.String,
    version: Schema.String,
    title: Schema.optional(Schema.String)
  })),
  capabilities: Schema.optional(Schema.Unknown)
})

/** Validated options. @internal */
export type Settings = ReturnType<typeof validate>

/** Validates options, throwing a `PoolOptionsError` naming the bad option. @internal */
export const validate = (options: Options) => {
  const o = decodeOptions("CodexWorkerPool", OptionsSchema, options)
  const poolSize = o.poolSize ?? 1
  if ((o.minIdle ?? 0) > poolSize) {
    throw new PoolOptionsError({
      message: `Invalid CodexWorkerPool options: minIdle: must be <= poolSize (${poolSize}), got ${o.minIdle}.`
    })
  }
  const process: CodexWorker.ProcessOptions = {
    command: o.command,
    args: o.args,
    env: o.env,
    cwd: o.cwd,
    codexHome: o.codexHome,
    spawnTimeoutMs: o.spawnTimeoutMs,
    killGraceMs: o.killGraceMs,
    processScanIntervalMs: o.processScanIntervalMs,
    clientInfo: o.clientInfo,
    capabilities: o.capabilities
  }
  return {
    process,
    pool: {
      size: poolSize,
      idleTimeout: o.idleTimeoutMs ?? 300_000,
      acquireTimeout: o.acquireTimeoutMs ?? 0,
      maxQueue: o.maxQueue,
      minIdle: o.minIdle,
      leaseTimeout: o.leaseTimeoutMs ?? 300_000,
      shutdownTimeout: o.shutdownTimeoutMs,
      name: o.name ?? "codex",
      provider: "codex"
    },
    watchdog: o.watchdog ?? false
  }
}

/** The workers alive in one pool, for the process gauges. @internal */
export const processStats = (workers: ReadonlySet<CodexWorker.CodexWorker>) => {
  let processes = 0
  let residentBytes = 0
  for (const worker of workers) {
    processes += worker.processCount()
    residentBytes += worker.residentBytes()
  }
  return { processes, residentBytes }
}

/**
 * The pool's parts, shared by the service and the promise facade. @internal
 */
export const makeParts = <W = CodexWorker.CodexWorker>(
  settings: Settings,
  /** How the pool holds a worker: the worker itself, or a view of it (the promise facade's handle). */
  view: {
    readonly wrap: (worker: CodexWorker.CodexWorker) => W
    readonly unwrap: (held: W) => CodexWorker.CodexWorker
  } = { wrap: (worker) => worker as W, unwrap: (held) => held as CodexWorker.CodexWorker }
) =>
  Effect.gen(function*() {
    const workers = new Set<CodexWorker.CodexWorker>()
    const watchdog = settings.watchdog ? startWatchdog({ args: ["--codex-worker-pool-watchdog"] }) : undefined
    if (watchdog !== undefined) yield* Effect.addFinalizer(() => Effect.sync(() => watchdog.stop()))
    // Set once the pool exists; a worker that closes before that has no lease to end.
    let invalidate: (held: W) => void = () => {}
    const acquire = Effect.gen(function*() {
      const worker = yield* CodexWorker.make(settings.process, watchdog)
      const held = view.wrap(worker)
      workers.add(worker)
      yield* Effect.addFinalizer(() => Effect.sync(() => void workers.delete(worker)))
      worker.onClose(() => invalidate(held))
      return held
    })
    const pool = yield* WorkerPool.make<W, WorkerSpawnError, ChildProcessSpawner>({
      acquire,
      ...settings.pool,
      onLeaseTimeout: (held, leaseTimeoutMs) => {
        const worker = view.unwrap(held)
        return worker.terminate(new LeaseTimeoutError({ leaseTimeoutMs, pid: worker.pid }))
      }
    })
    invalidate = (held) => Effect.runSync(pool.invalidate(held))

    const context = yield* Effect.context<never>()
    const attributes = { pool: settings.pool.name, provider: "codex" }
    const gauges = [
      Metric.registerUnsafe(
        Metric.gauge("codex_worker_pool_processes", { description: "Live processes of all worker trees", attributes }),
        context,
        { get: () => ({ value: processStats(workers).processes }), update: () => {}, modify: () => {} }
      ),
      Metric.registerUnsafe(
        Metric.gauge("codex_worker_pool_resident_bytes", {
          description: "Resident memory of all worker trees",
          attributes
        }),
        context,
        { get: () => ({ value: processStats(workers).residentBytes }), update: () => {}, modify: () => {} }
      )
    ]
    yield* Effect.addFinalizer(() => Effect.sync(() => gauges.forEach((g) => g.remove())))

    return { pool, workers, stats: Effect.map(pool.stats, (stats): Stats => ({ ...stats, ...processStats(workers) })) }
  })

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
 * The service as a scoped layer, given a `ChildProcessSpawner`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options = {}): Layer.Layer<CodexWorkerPool, never, ChildProcessSpawner> =>
  Layer.effect(CodexWorkerPool, make(options))

/**
 * The service as a scoped layer with Node's process spawner.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerNode = (options: Options = {}): Layer.Layer<CodexWorkerPool> =>
  layer(options).pipe(Layer.provide(CodexWorker.layerNode))

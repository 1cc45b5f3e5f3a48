/**
 * The Codex pool's assembly, shared by the `CodexWorkerPool` service and the
 * `createCodexWorkerPool` facade without being public.
 *
 * @internal
 */
import { Context, Effect, Schema } from "effect"
import type { ChildProcessSpawner } from "effect/process/ChildProcessSpawner"
import type * as Scope from "effect/Scope"
import * as CodexWorker from "../CodexWorker.ts"
import type { Options, Stats } from "../CodexWorkerPool.ts"
import { LeaseTimeoutError, PoolOptionsError, type WorkerSpawnError } from "../errors.ts"
import * as WorkerPool from "../WorkerPool.ts"
import type { PoolLogger } from "../PromisePool.ts"
import { type Logging, PoolLoggerSchema } from "./hostLogger.ts"
import { registerPulled } from "./metrics.ts"
import { CountOrInfinity, decodeOptions, IntAtLeast, Millis } from "./options.ts"
import { CoreKey, type Internals } from "./poolInternals.ts"
import { startWatchdog, type Watchdog } from "./watchdog.ts"

/** How the pool makes one worker in the worker's scope. */
export type MakeWorker = (
  options: CodexWorker.ProcessOptions,
  watchdog: Watchdog | undefined
) => Effect.Effect<CodexWorker.CodexWorker, WorkerSpawnError, ChildProcessSpawner | Scope.Scope>

/**
 * The worker constructor the pool uses: `CodexWorker.make` (a real codex
 * process) unless a test pool (src/testing) provides its in-process fake.
 */
export const WorkerFactory = Context.Reference<MakeWorker>("codex-worker-pool/internal/WorkerFactory", {
  defaultValue: () => CodexWorker.make
})

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
  // Up to V8's longest string (2^29 - 24 characters): a longer line could not be decoded at all.
  maxLineBytes: Schema.optional(IntAtLeast(1024).check(Schema.isLessThanOrEqualTo(2 ** 29 - 24))),
  clientInfo: Schema.optional(Schema.Struct({
    name: Schema.String,
    version: Schema.String,
    title: Schema.optional(Schema.String)
  })),
  capabilities: Schema.optional(Schema.Unknown)
})

/** The promise facade's options: the service's, plus how it logs. */
const FacadeOptionsSchema = Schema.Struct({
  ...OptionsSchema.fields,
  debug: Schema.optional(Schema.Boolean),
  logger: Schema.optional(PoolLoggerSchema)
})

/** Validated options. */
export type Settings = ReturnType<typeof validate>

/**
 * Validates options, throwing a `PoolOptionsError` naming the bad option.
 * `facade`: the options of `createCodexWorkerPool`, which also take `debug`
 * and `logger`.
 */
export const validate = (
  options: Options & { readonly debug?: boolean | undefined; readonly logger?: PoolLogger | undefined },
  facade = false
) => {
  const o: Schema.Schema.Type<typeof FacadeOptionsSchema> = facade
    ? decodeOptions("createCodexWorkerPool", FacadeOptionsSchema, options)
    : decodeOptions("CodexWorkerPool", OptionsSchema, options)
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
    maxLineBytes: o.maxLineBytes,
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
    watchdog: o.watchdog ?? false,
    // The host's own object (the decoded copy has lost its `this`).
    logging: { debug: o.debug ?? false, logger: options.logger } satisfies Logging
  }
}

/** Live processes and resident memory of the workers of one pool. */
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
 * The pool's parts, shared by the service and the promise facade: the
 * generic pool over Codex workers (or a view of them), the live workers, the
 * process gauges, the crash invalidation and the lease-timeout kill.
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
    const makeWorker = yield* WorkerFactory
    const watchdog = settings.watchdog ? startWatchdog({ args: ["--codex-worker-pool-watchdog"] }) : undefined
    if (watchdog !== undefined) yield* Effect.addFinalizer(() => Effect.sync(() => watchdog.stop()))
    // Set once the pool exists; a worker that closes before that has no lease to end.
    let invalidate: (held: W) => void = () => {}
    const acquire = Effect.gen(function*() {
      const worker = yield* makeWorker(settings.process, watchdog)
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

    // The pool's own attributes, `pool_id` included: two Codex pools with the
    // same name keep their process gauges apart too.
    const removeGauges = registerPulled(
      yield* Effect.context<never>(),
      (pool as WorkerPool.WorkerPool<W, WorkerSpawnError> & { readonly [CoreKey]: Internals<W> })[CoreKey]
        .metricAttributes,
      [
        {
          name: "codex_worker_pool_processes",
          description: "Live processes of all worker trees",
          get: () => processStats(workers).processes
        },
        {
          name: "codex_worker_pool_resident_bytes",
          description: "Resident memory of all worker trees",
          get: () => processStats(workers).residentBytes
        }
      ]
    )
    yield* Effect.addFinalizer(() => Effect.sync(removeGauges))

    return { pool, workers, stats: Effect.map(pool.stats, (stats): Stats => ({ ...stats, ...processStats(workers) })) }
  }).pipe(Effect.withSpan("CodexWorkerPool.make", { attributes: { pool: settings.pool.name } }))


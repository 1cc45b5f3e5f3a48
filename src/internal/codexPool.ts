/**
 * The Codex pool's assembly, shared by the `CodexWorkerPool` service and the
 * `createCodexWorkerPool` facade without being public.
 *
 * @internal
 */
import { Context, Effect, Redacted, Schema } from "effect"
import type { ChildProcessSpawner } from "effect/process/ChildProcessSpawner"
import type * as Scope from "effect/Scope"
import * as CodexWorker from "../CodexWorker.ts"
import type { AccountOptions, AccountStats, Options, Stats } from "../CodexWorkerPool.ts"
import {
  type AccountExistsError,
  LeaseTimeoutError,
  PoolOptionsError,
  UnknownAccountError,
  type WorkerSpawnError
} from "../errors.ts"
import * as WorkerPool from "../WorkerPool.ts"
import type { PoolLogger } from "../PromisePool.ts"
import { DEFAULT_ACCOUNT } from "./core.ts"
import { type Logging, PoolLoggerSchema } from "./hostLogger.ts"
import { registerPulled } from "./metrics.ts"
import { CountOrInfinity, decodeOptions, IntAtLeast, Millis, underEnv } from "./options.ts"
import { checkAccountNames, CoreKey, type Internals, WorkerCap } from "./poolInternals.ts"
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

/** An environment variable's value: a string, or a `Redacted` one (a secret). */
const EnvValue = Schema.declare(
  (u: unknown): u is string | Redacted.Redacted<string> =>
    typeof u === "string" || (Redacted.isRedacted(u) && typeof Redacted.value(u) === "string"),
  { expected: "a string or a Redacted string" }
)

const EnvSchema = Schema.Record(Schema.String, Schema.UndefinedOr(EnvValue))

/** What an account changes of the default account's process options, and its cap. */
const AccountSchema = Schema.Struct({
  env: Schema.optional(EnvSchema),
  codexHome: Schema.optional(Schema.String),
  args: Schema.optional(Schema.Array(Schema.String)),
  maxWorkers: Schema.optional(WorkerCap)
})

const OptionsSchema = Schema.Struct({
  poolSize: Schema.optional(IntAtLeast(1)),
  maxWorkers: Schema.optional(WorkerCap),
  accounts: Schema.optional(Schema.Record(Schema.String, AccountSchema)),
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
  env: Schema.optional(EnvSchema),
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
  const what = facade ? "createCodexWorkerPool" : "CodexWorkerPool"
  // `env` values may be API keys: a message never shows them.
  const o: Schema.Schema.Type<typeof FacadeOptionsSchema> = facade
    ? decodeOptions(what, FacadeOptionsSchema, options, underEnv)
    : decodeOptions(what, OptionsSchema, options, underEnv)
  const poolSize = o.poolSize ?? 1
  if ((o.minIdle ?? 0) > poolSize) {
    throw new PoolOptionsError({
      message: `Invalid CodexWorkerPool options: minIdle: must be <= poolSize (${poolSize}), got ${o.minIdle}.`
    })
  }
  if (o.maxWorkers !== undefined && (o.minIdle ?? 0) > o.maxWorkers) {
    throw new PoolOptionsError({
      message: `Invalid ${what} options: minIdle: must be <= maxWorkers (${o.maxWorkers}), got ${o.minIdle}.`
    })
  }
  if (o.accounts !== undefined) checkAccountNames(what, Object.keys(o.accounts), "accounts.")
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
    maxWorkers: o.maxWorkers ?? Infinity,
    accounts: Object.entries(o.accounts ?? {}).map(([name, account]) => accountSettings(process, name, account)),
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

/** How the workers of one account are started, and its cap. */
export interface AccountSettings {
  readonly name: string
  readonly process: CodexWorker.ProcessOptions
  readonly maxWorkers: number
}

/** The default account's process options overlaid with an account's (its `env` on top of theirs). */
const accountSettings = (
  defaults: CodexWorker.ProcessOptions,
  name: string,
  account: Schema.Schema.Type<typeof AccountSchema>
): AccountSettings => ({
  name,
  process: {
    ...defaults,
    env: account.env === undefined ? defaults.env : { ...defaults.env, ...account.env },
    codexHome: account.codexHome ?? defaults.codexHome,
    args: account.args ?? defaults.args
  },
  maxWorkers: account.maxWorkers ?? Infinity
})

/** Validates the options of an account added at run time, throwing a `PoolOptionsError` naming the bad one. */
const validateAccount = (defaults: CodexWorker.ProcessOptions, name: string, account: AccountOptions): AccountSettings => {
  checkAccountNames("addAccount", [name], "name ")
  return accountSettings(defaults, name, decodeOptions("addAccount", AccountSchema, account, underEnv))
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
    /** The live workers of one account, and the removal of its gauges once they are registered. */
    interface AccountWorkers {
      readonly workers: Set<CodexWorker.CodexWorker>
      removeGauges: () => void
    }
    const accounts = new Map<string, AccountWorkers>()
    /** Makes a worker of an account: started with its process options, counted in its set and the pool's. */
    const acquireFor = (process: CodexWorker.ProcessOptions, mine: AccountWorkers) =>
      Effect.gen(function*() {
        const worker = yield* makeWorker(process, watchdog)
        const held = view.wrap(worker)
        workers.add(worker)
        mine.workers.add(worker)
        yield* Effect.addFinalizer(() =>
          Effect.sync(() => {
            workers.delete(worker)
            mine.workers.delete(worker)
          })
        )
        worker.onClose(() => invalidate(held))
        return held
      })
    const newAccount = (): AccountWorkers => ({ workers: new Set(), removeGauges: () => {} })
    const defaultAccount = newAccount()
    accounts.set(DEFAULT_ACCOUNT, defaultAccount)
    const initial = settings.accounts.map((account) => {
      const mine = newAccount()
      accounts.set(account.name, mine)
      return [account.name, { acquire: acquireFor(account.process, mine), maxWorkers: account.maxWorkers }] as const
    })
    const pool = yield* WorkerPool.make<W, WorkerSpawnError, ChildProcessSpawner>({
      acquire: acquireFor(settings.process, defaultAccount),
      maxWorkers: settings.maxWorkers,
      accounts: Object.fromEntries(initial),
      ...settings.pool,
      onLeaseTimeout: (held, leaseTimeoutMs) => {
        const worker = view.unwrap(held)
        return worker.terminate(new LeaseTimeoutError({ leaseTimeoutMs, pid: worker.pid }))
      }
    })
    invalidate = (held) => Effect.runSync(pool.invalidate(held))
    const internals = (pool as WorkerPool.WorkerPool<W, WorkerSpawnError> & { readonly [CoreKey]: Internals<W> })[CoreKey]
    const context = yield* Effect.context<never>()

    /** Registers the process gauges of an account (attribute `account`). */
    const registerAccountGauges = (name: string, mine: AccountWorkers) => {
      mine.removeGauges = registerPulled(context, { ...internals.metricAttributes, account: name }, [
        {
          name: "codex_worker_pool_account_processes",
          description: "Live processes of the account's worker trees",
          get: () => processStats(mine.workers).processes
        },
        {
          name: "codex_worker_pool_account_resident_bytes",
          description: "Resident memory of the account's worker trees",
          get: () => processStats(mine.workers).residentBytes
        }
      ])
    }
    for (const [name, mine] of accounts) registerAccountGauges(name, mine)
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        for (const mine of accounts.values()) mine.removeGauges()
      })
    )

    /**
     * Adds an account (validated: a bad one throws `PoolOptionsError`), or
     * returns `AccountExistsError`.
     */
    const addAccount = (name: string, options: AccountOptions): AccountExistsError | undefined => {
      const account = validateAccount(settings.process, name, options)
      const mine = newAccount()
      const exists = internals.addAccount(name, acquireFor(account.process, mine), account.maxWorkers)
      if (exists !== undefined) return exists
      accounts.set(name, mine)
      registerAccountGauges(name, mine)
      return undefined
    }

    /** Removes an account (see `Internals.removeAccount`) and its gauges. */
    const removeAccount: Internals<W>["removeAccount"] = (name) => {
      const done = internals.removeAccount(name)
      if (!(done instanceof UnknownAccountError)) {
        accounts.get(name)?.removeGauges()
        accounts.delete(name)
      }
      return done
    }

    /** The pool's counts with processes and resident memory, in all and by account. */
    const statsNow = (stats: WorkerPool.Stats): Stats => ({
      ...stats,
      ...processStats(workers),
      accounts: Object.fromEntries(
        Object.entries(stats.accounts).map(([name, counts]): [string, AccountStats] => {
          const mine = accounts.get(name)
          return [name, { ...counts, ...processStats(mine === undefined ? new Set() : mine.workers) }]
        })
      )
    })

    // The pool's own attributes, `pool_id` included: two Codex pools with the
    // same name keep their process gauges apart too.
    const removeGauges = registerPulled(
      context,
      internals.metricAttributes,
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

    return { pool, workers, stats: Effect.map(pool.stats, statsNow), statsNow, addAccount, removeAccount }
  })


/**
 * The Codex pool's assembly, shared by the `CodexWorkerPool` service and the
 * `createCodexWorkerPool` facade without being public.
 *
 * @internal
 */
import { type Config, Context, Duration, Effect, Layer, Schema, Struct } from "effect"
import type { ChildProcessSpawner } from "effect/process/ChildProcessSpawner"
import type * as Scope from "effect/Scope"
import * as CodexWorker from "../CodexWorker.ts"
import {
  type AccountExistsError,
  LeaseTimeoutError,
  PoolOptionsError,
  type RateLimitedError,
  UnknownAccountError,
  type WorkspaceLimitError,
  WorkerSpawnError
} from "../errors.ts"
import * as RateLimits from "../RateLimits.ts"
import { LimitsSchema, SettingsFields, StoreOptionsSchema, WorkspaceLimitsOption } from "./admissionSchema.ts"
import * as WorkerPool from "../WorkerPool.ts"
import type { AccountOptions, AccountStats, CodexWorkerPoolOptions, Options, Stats } from "./codexPoolTypes.ts"
import { DEFAULT_ACCOUNT } from "./core.ts"
import { type Logging, PoolLoggerSchema } from "./hostLogger.ts"
import { registerPulled } from "./metrics.ts"
import {
  checkEffectAcquireOptions,
  CountOrInfinity,
  decodeOptions,
  DurationInput,
  durationOfMs,
  EnvSchema,
  IntAtLeast,
  Millis,
  ProcessOptionsFields,
  Timeout,
  timeoutMillis,
  underEnv
} from "./options.ts"
import {
  accountNamesAllowed,
  checkAccountName,
  checkInErrorChannel,
  CoreKey,
  type Internals,
  minIdleWithin,
  WorkerCap
} from "./poolInternals.ts"
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

/** The admission settings beside the limits (`rateLimitOptions`). */
const RateLimitOptionsSchema = Schema.Struct(SettingsFields)

/** The rate-limit options of a pool (the facade adds `rateLimitStore`). */
const RateLimitFields = {
  rateLimits: Schema.optional(LimitsSchema),
  workspaceLimits: Schema.optional(WorkspaceLimitsOption),
  rateLimitOptions: Schema.optional(RateLimitOptionsSchema)
}

/** What an account changes of the default account's process options, its cap and its rate limits. */
const AccountSchema = Schema.Struct({
  env: Schema.optional(EnvSchema),
  codexHome: Schema.optional(Schema.String),
  args: Schema.optional(Schema.Array(Schema.String)),
  maxWorkers: Schema.optional(WorkerCap),
  rateLimits: Schema.optional(LimitsSchema)
})

/** The options of the service (`CodexWorkerPool.Options`). */
const OptionsSchema = Schema.Struct({
  poolSize: Schema.optional(IntAtLeast(1)),
  maxWorkers: Schema.optional(WorkerCap),
  accounts: Schema.optional(Schema.Record(Schema.String, AccountSchema)),
  idleTimeout: Schema.optional(Timeout),
  acquireTimeout: Schema.optional(Timeout),
  maxQueue: Schema.optional(CountOrInfinity),
  minIdle: Schema.optional(IntAtLeast(0)),
  leaseTimeout: Schema.optional(Timeout),
  shutdownTimeout: Schema.optional(DurationInput),
  name: Schema.optional(Schema.String),
  watchdog: Schema.optional(Schema.Boolean),
  ...RateLimitFields,
  ...ProcessOptionsFields
}).check(minIdleWithin("poolSize"), accountNamesAllowed)

/**
 * The options of the promise facade (`createCodexWorkerPool`): the same, with
 * times as numbers of milliseconds under their `...Ms` names (0: no limit,
 * except `killGraceMs`: no grace), plus how it logs.
 */
const FacadeOptionsSchema = Schema.Struct({
  ...Struct.omit(OptionsSchema.fields, [
    "idleTimeout",
    "acquireTimeout",
    "leaseTimeout",
    "shutdownTimeout",
    "spawnTimeout",
    "killGrace",
    "processScanInterval"
  ]),
  idleTimeoutMs: Schema.optional(Millis),
  acquireTimeoutMs: Schema.optional(Millis),
  leaseTimeoutMs: Schema.optional(Millis),
  shutdownTimeoutMs: Schema.optional(Millis),
  spawnTimeoutMs: Schema.optional(Millis.check(Schema.isGreaterThan(0))),
  killGraceMs: Schema.optional(Millis.check(Schema.isFinite())),
  processScanIntervalMs: Schema.optional(Millis.check(Schema.isGreaterThan(0))),
  debug: Schema.optional(Schema.Boolean),
  logger: Schema.optional(PoolLoggerSchema),
  rateLimitStore: Schema.optional(StoreOptionsSchema)
}).check(minIdleWithin("poolSize"), accountNamesAllowed)

/**
 * The service's options for the facade's: the one place where the facade's
 * `...Ms` numbers become the Effect API's durations. Its limits keep their
 * meaning, 0 (or `Infinity`) being "no limit": `Duration.infinity`.
 */
export const fromFacadeOptions = (options: CodexWorkerPoolOptions): Options => {
  const {
    acquireTimeoutMs,
    debug: _debug,
    idleTimeoutMs,
    killGraceMs,
    leaseTimeoutMs,
    logger: _logger,
    processScanIntervalMs,
    rateLimitStore: _rateLimitStore,
    shutdownTimeoutMs,
    spawnTimeoutMs,
    ...rest
  } = options
  return {
    ...rest,
    idleTimeout: durationOfMs(idleTimeoutMs),
    acquireTimeout: durationOfMs(acquireTimeoutMs),
    leaseTimeout: durationOfMs(leaseTimeoutMs),
    shutdownTimeout: durationOfMs(shutdownTimeoutMs),
    // Not limits: `spawnTimeoutMs` and `processScanIntervalMs` are > 0, and
    // `killGraceMs: 0` is no grace.
    spawnTimeout: spawnTimeoutMs === undefined ? undefined : Duration.millis(spawnTimeoutMs),
    killGrace: killGraceMs === undefined ? undefined : Duration.millis(killGraceMs),
    processScanInterval: processScanIntervalMs === undefined ? undefined : Duration.millis(processScanIntervalMs)
  }
}

/** Validated options. */
export type Settings = ReturnType<typeof settingsOf>

/** The settings of validated service options. */
const settingsOf = (o: Options, logging: Logging, rateLimitStore?: RateLimits.StoreOptions | undefined) => {
  const process: CodexWorker.ProcessOptions = {
    command: o.command,
    args: o.args,
    env: o.env,
    cwd: o.cwd,
    codexHome: o.codexHome,
    spawnTimeout: o.spawnTimeout,
    killGrace: o.killGrace,
    processScanInterval: o.processScanInterval,
    maxLineBytes: o.maxLineBytes,
    clientInfo: o.clientInfo,
    capabilities: o.capabilities
  }
  return {
    process,
    maxWorkers: o.maxWorkers ?? Infinity,
    accounts: Object.entries(o.accounts ?? {}).map(([name, account]) => accountSettings(process, name, account)),
    pool: {
      size: o.poolSize ?? 1,
      idleTimeout: o.idleTimeout ?? "5 minutes",
      acquireTimeout: o.acquireTimeout,
      maxQueue: o.maxQueue,
      minIdle: o.minIdle,
      leaseTimeout: o.leaseTimeout ?? "5 minutes",
      shutdownTimeout: o.shutdownTimeout,
      name: o.name ?? "codex",
      provider: "codex"
    } satisfies Omit<WorkerPool.Options<unknown, never, never>, "acquire">,
    watchdog: o.watchdog ?? false,
    logging,
    rateLimits: rateLimitsOf(o, rateLimitStore !== undefined),
    /** The facade's shared store (`rateLimitStore`); the Effect service takes a `RateLimitsStore` from context. */
    rateLimitStore,
    /** The acquire budget (ms, 0: none) of a call that names no timeout: admission and the wait for a worker. */
    acquireTimeoutMs: timeoutMillis(o.acquireTimeout, 0)
  }
}

/**
 * The options of the pool's rate-limit admission, or `undefined` when the
 * pool has no rate-limit option at all (then there is no admission: the hot
 * path is the plain pool's).
 */
const rateLimitsOf = (o: Options, sharedStore: boolean): RateLimits.Options | undefined => {
  const accounts = Object.entries(o.accounts ?? {})
  if (
    !sharedStore && o.rateLimits === undefined && o.workspaceLimits === undefined && o.rateLimitOptions === undefined &&
    accounts.every(([, account]) => account.rateLimits === undefined)
  ) return undefined
  const limits: Record<string, RateLimits.Limits> = {}
  if (o.rateLimits !== undefined) limits[DEFAULT_ACCOUNT] = o.rateLimits
  for (const [name, account] of accounts) if (account.rateLimits !== undefined) limits[name] = account.rateLimits
  return {
    ...o.rateLimitOptions,
    limits,
    workspaceLimits: o.workspaceLimits,
    name: o.name ?? "codex"
  }
}

/** How the workers of one account are started, and its cap. */
export interface AccountSettings {
  readonly name: string
  readonly process: CodexWorker.ProcessOptions
  readonly maxWorkers: number
  readonly rateLimits: RateLimits.Limits | undefined
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
  maxWorkers: account.maxWorkers ?? Infinity,
  rateLimits: account.rateLimits
})

/** Validates the options of an account added at run time, throwing a `PoolOptionsError` naming the bad one. */
const validateAccount = (defaults: CodexWorker.ProcessOptions, name: string, account: AccountOptions): AccountSettings => {
  checkAccountName(name)
  return accountSettings(defaults, name, decodeOptions("addAccount", AccountSchema, account, underEnv))
}

/** Validates the service's options, throwing a `PoolOptionsError` naming the bad option. */
export const validate = (options: Options): Settings =>
  // `env` values may be API keys: a message never shows them.
  settingsOf(decodeOptions("CodexWorkerPool", OptionsSchema, options, underEnv) as Options, { debug: false, logger: undefined })

/**
 * Validates the options of `createCodexWorkerPool`, throwing a
 * `PoolOptionsError` naming the bad option (by its facade name).
 */
export const validateFacade = (options: CodexWorkerPoolOptions): Settings => {
  const o = decodeOptions("createCodexWorkerPool", FacadeOptionsSchema, options, underEnv) as CodexWorkerPoolOptions
  // The host's own logger object (the decoded copy has lost its `this`).
  return settingsOf(fromFacadeOptions(o), { debug: o.debug ?? false, logger: options.logger }, o.rateLimitStore)
}

/**
 * Checks service options read from a `Config` by the rules of `validate`,
 * failing with a `ConfigError` naming each bad option instead of a defect.
 */
export const checkConfig = (options: Options): Effect.Effect<Options, Config.ConfigError> =>
  checkInErrorChannel(OptionsSchema, options)

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

type Worker = CodexWorker.CodexWorker

/**
 * The pool's parts, shared by the service and the promise facade: the
 * generic pool over Codex workers, the live workers, the process gauges, the
 * crash invalidation and the lease-timeout kill.
 */
export const makeParts = (
  settings: Settings,
  /** The pool's rate-limit admission, when it has rate-limit options: kept in step with `addAccount` / `removeAccount`. */
  rateLimits?: RateLimits.Service | undefined
) =>
  Effect.gen(function*() {
    const workers = new Set<CodexWorker.CodexWorker>()
    const makeWorker = yield* WorkerFactory
    const watchdog = settings.watchdog ? startWatchdog({ args: ["--codex-worker-pool-watchdog"] }) : undefined
    if (watchdog !== undefined) yield* Effect.addFinalizer(() => Effect.sync(() => watchdog.stop()))
    // Set once the pool exists; a worker that closes before that has no lease to end.
    let invalidate: (worker: Worker) => void = () => {}
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
        workers.add(worker)
        mine.workers.add(worker)
        yield* Effect.addFinalizer(() =>
          Effect.sync(() => {
            workers.delete(worker)
            mine.workers.delete(worker)
          })
        )
        worker.onClose(() => invalidate(worker))
        // Closed before the pool knows it (the invalidate above found no slot):
        // a worker that died at once is a failed spawn, never a worker in service.
        const closed = worker.closeInfo()
        if (closed !== undefined) {
          return yield* Effect.fail(
            new WorkerSpawnError({ command: process.command ?? "codex", reason: "ExitedEarly", pid: worker.pid, cause: closed.error })
          )
        }
        return worker
      })
    const newAccount = (): AccountWorkers => ({ workers: new Set(), removeGauges: () => {} })
    const defaultAccount = newAccount()
    accounts.set(DEFAULT_ACCOUNT, defaultAccount)
    const initial = settings.accounts.map((account) => {
      const mine = newAccount()
      accounts.set(account.name, mine)
      return [account.name, { acquire: acquireFor(account.process, mine), maxWorkers: account.maxWorkers }] as const
    })
    const pool = yield* WorkerPool.make<Worker, WorkerSpawnError, ChildProcessSpawner>({
      acquire: acquireFor(settings.process, defaultAccount),
      maxWorkers: settings.maxWorkers,
      accounts: Object.fromEntries(initial),
      ...settings.pool,
      onLeaseTimeout: (worker, leaseTimeout) =>
        worker.terminate(
          new LeaseTimeoutError({ leaseTimeoutMs: Duration.toMillis(leaseTimeout), pid: worker.pid })
        )
    })
    invalidate = (worker) => Effect.runSync(pool.invalidate(worker))
    const internals = (pool as WorkerPool.WorkerPool<Worker, WorkerSpawnError> & { readonly [CoreKey]: Internals<Worker> })[CoreKey]
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
      if (account.rateLimits !== undefined && rateLimits === undefined) {
        throw new PoolOptionsError({
          message:
            `Invalid addAccount options: rateLimits: the pool was made without rate limits; give it \`rateLimits\` or \`rateLimitOptions: {}\` when you create it to add accounts with limits.`
        })
      }
      const mine = newAccount()
      const exists = internals.addAccount(name, acquireFor(account.process, mine), account.maxWorkers)
      if (exists !== undefined) return exists
      rateLimits?.setLimits(name, account.rateLimits)
      accounts.set(name, mine)
      registerAccountGauges(name, mine)
      return undefined
    }

    /** Removes an account (see `Internals.removeAccount`) and its gauges. */
    const removeAccount: Internals<Worker>["removeAccount"] = (name) => {
      const done = internals.removeAccount(name)
      if (!(done instanceof UnknownAccountError)) {
        rateLimits?.setLimits(name, undefined)
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

    return { pool, workers, stats: Effect.map(pool.stats, statsNow), statsNow, addAccount, removeAccount, internals }
  }).pipe(Effect.withSpan("CodexWorkerPool.make", { attributes: { pool: settings.pool.name } }))

/**
 * The Effect service's rate-limit admission, in the current scope: on the
 * `RateLimitsStore` in context, or a memory store of its own when there is
 * none. Closed when the scope closes.
 */
export const makeRateLimits = (
  options: RateLimits.Options
): Effect.Effect<RateLimits.Service, never, Scope.Scope> =>
  Effect.gen(function*() {
    const store = yield* Effect.serviceOption(RateLimits.RateLimitsStore)
    const context = store._tag === "Some"
      ? Context.make(RateLimits.RateLimitsStore, store.value)
      : yield* Layer.build(RateLimits.layerStoreMemory)
    // Options were validated with the pool's: a failure here is a defect.
    return yield* RateLimits.make(options).pipe(Effect.provideContext(context), Effect.orDie)
  })

/** Options of a Codex pool's acquire: the generic ones and the rate-limit ones. */
export interface CodexAcquireOptions extends WorkerPool.AcquireOptions {
  readonly workspace?: string | undefined
  readonly estimatedTokens?: number | undefined
}

/**
 * Feeds `reservation` every message of `worker` until the lease ends, then
 * settles it: the returned function ends it (idempotent). The worker closing
 * (a crash, a lease timeout's kill, shutdown) ends it too.
 */
export const chargeLease = (worker: CodexWorker.CodexWorker, reservation: RateLimits.Reservation): () => void => {
  const off = worker.subscribe((message) => reservation.onNotification(message.method, message.params))
  let offClose: (() => void) | undefined
  let ended = false
  const end = () => {
    if (ended) return
    ended = true
    off()
    offClose?.()
    reservation.settle()
  }
  offClose = worker.onClose(end)
  return end
}

/**
 * `get`, `getWith` and `use` of the Effect service through rate-limit
 * admission: a call waits for its turn (holding no worker), bounded by its
 * acquire timeout, then waits for a worker with what is left of it; the
 * lease's notifications are charged and the reservation settled as the lease
 * ends. A call that gets no worker gives its reservation back.
 */
export const admitted = (
  pool: WorkerPool.WorkerPool<CodexWorker.CodexWorker, WorkerSpawnError>,
  rateLimits: RateLimits.Service,
  defaultTimeoutMs: number
) => {
  const getWith = (
    options: CodexAcquireOptions
  ): Effect.Effect<CodexWorker.CodexWorker, WorkerSpawnError | WorkerPool.PoolError | RateLimitedError | WorkspaceLimitError, Scope.Scope> =>
    Effect.suspend(() => {
      const invalid = checkEffectAcquireOptions(options)
      if (invalid !== undefined) return Effect.die(invalid)
      const budget = timeoutMillis(options.timeout, defaultTimeoutMs)
      return Effect.uninterruptibleMask((restore) =>
        Effect.flatMap(
          restore(rateLimits.admit({
            key: options.account ?? DEFAULT_ACCOUNT,
            workspace: options.workspace,
            estimatedTokens: options.estimatedTokens,
            timeoutMs: budget
          })).pipe(Effect.catchTag("PoolOptionsError", (error) => Effect.die(error))),
          (reservation) =>
            restore(pool.getWith(
              budget === 0 ? options : { ...options, timeout: Math.max(1, budget - reservation.waitedMs) }
            )).pipe(
              Effect.onError(() => Effect.sync(() => reservation.cancel())),
              Effect.tap((worker) => {
                const end = chargeLease(worker, reservation)
                return Effect.addFinalizer(() => Effect.sync(end))
              })
            )
        )
      )
    })
  const get = getWith({})
  const use = <A, E, R>(
    f: (worker: CodexWorker.CodexWorker) => Effect.Effect<A, E, R>,
    options?: CodexAcquireOptions
  ) => Effect.scoped(Effect.flatMap(getWith(options ?? {}), f))
  return { get, getWith, use }
}

/**
 * What the pool modules share without making it public: option validation,
 * the key under which an Effect pool carries its core for the promise
 * facades, and the stats of a core.
 *
 * @internal
 */
import { Config, type Context, type Deferred, Effect, Schema } from "effect"
import { type AccountExistsError, PoolOptionsError, type UnknownAccountError } from "../errors.ts"
import { DEFAULT_ACCOUNT, type PoolCore, type Slot } from "./core.ts"
import type { PoolAttributes } from "./metrics.ts"
import {
  CountOrInfinity,
  decodeOptions,
  DurationInput,
  Function,
  IntAtLeast,
  Timeout,
  timeoutMillis,
  toMillis
} from "./options.ts"
import type { AccountStats, Options, Stats } from "./poolTypes.ts"

/** Schema of a cap on an account's workers: an integer >= 1, or `Infinity` (none). */
export const WorkerCap = Schema.Number.check(
  Schema.makeFilter((n: number) => n === Infinity || (Number.isInteger(n) && n >= 1) || "Expected an integer >= 1 or Infinity")
)

/**
 * The options that are plain values (all but the callbacks and `accounts`,
 * whose workers `acquire` effects make): what `layerConfig` reads from a
 * `Config`.
 */
export const ValueOptionsFields = {
  size: IntAtLeast(1),
  maxWorkers: Schema.optional(WorkerCap),
  idleTimeout: Schema.optional(Timeout),
  acquireTimeout: Schema.optional(Timeout),
  maxQueue: Schema.optional(CountOrInfinity),
  minIdle: Schema.optional(IntAtLeast(0)),
  shutdownTimeout: Schema.optional(DurationInput),
  leaseTimeout: Schema.optional(Timeout),
  name: Schema.optional(Schema.String),
  provider: Schema.optional(Schema.String)
}

/**
 * `minIdle` fits within `size` (`poolSize` in a Codex pool's options) and the
 * default account's `maxWorkers`; an issue at `minIdle` otherwise.
 */
export const minIdleWithin = (sizeName: "size" | "poolSize") =>
  Schema.makeFilter((o: {
    readonly size?: number | undefined
    readonly poolSize?: number | undefined
    readonly minIdle?: number | undefined
    readonly maxWorkers?: number | undefined
  }) => {
    const size = o[sizeName] ?? 1
    if (o.minIdle === undefined) return true
    if (o.minIdle > size) return { path: ["minIdle"], issue: `must be <= ${sizeName} (${size})` }
    if (o.maxWorkers !== undefined && o.minIdle > o.maxWorkers) {
      return { path: ["minIdle"], issue: `must be <= maxWorkers (${o.maxWorkers})` }
    }
    return true
  })

/**
 * The problem with an account name, or `undefined` when it is fine: a
 * non-empty string other than the default account's name.
 */
export const accountNameProblem = (name: unknown): string | undefined =>
  typeof name !== "string" || name === ""
    ? "an account name must be a non-empty string"
    : name === DEFAULT_ACCOUNT
    ? `"${DEFAULT_ACCOUNT}" is the default account's name (the top-level options configure it)`
    : undefined

/**
 * The names of `accounts` are allowed (see {@link accountNameProblem}); an
 * issue at `accounts."<name>"` otherwise. The name is quoted in the path (an
 * empty one must show), which also keeps `decodeOptions` from appending the
 * account's options as "the bad value": the name is what is wrong.
 */
export const accountNamesAllowed = Schema.makeFilter(
  (o: { readonly accounts?: Readonly<Record<string, unknown>> | undefined }) => {
    for (const name of Object.keys(o.accounts ?? {})) {
      const problem = accountNameProblem(name)
      if (problem !== undefined) return { path: ["accounts", JSON.stringify(name)], issue: problem }
    }
    return true
  }
)

const EffectSchema = Schema.declare((u: unknown): u is Effect.Effect<unknown, unknown, unknown> => Effect.isEffect(u), {
  expected: "an Effect"
})

const AccountSchema = Schema.Struct({
  acquire: EffectSchema,
  maxWorkers: Schema.optional(WorkerCap)
})

const OptionsSchema = Schema.Struct({
  acquire: EffectSchema,
  onLeaseTimeout: Schema.optional(Function),
  accounts: Schema.optional(Schema.Record(Schema.String, AccountSchema)),
  ...ValueOptionsFields
}).check(minIdleWithin("size"), accountNamesAllowed)

const ValueOptionsSchema = Schema.Struct(ValueOptionsFields).check(minIdleWithin("size"))

/**
 * Checks options read from a `Config` (`layerConfig`) by the rules of
 * `validate`, failing with a `ConfigError` that names each bad option instead
 * of a defect.
 */
export const checkConfigOptions = <A>(options: A): Effect.Effect<A, Config.ConfigError> =>
  checkInErrorChannel(ValueOptionsSchema, options)

/**
 * Decodes `options` with `schema` as `decodeOptions` does (unknown options
 * refused, every issue reported), failing with a `ConfigError` carrying the
 * `SchemaError`.
 */
export const checkInErrorChannel = <A>(schema: Schema.Top, options: A): Effect.Effect<A, Config.ConfigError> =>
  Effect.as(
    Effect.mapError(
      Schema.decodeUnknownEffect(schema as Schema.Codec<unknown>)(options, { onExcessProperty: "error", errors: "all" }),
      (error) => new Config.ConfigError(error)
    ),
    options
  )

/** The validated settings of a pool, in milliseconds as the core works. */
export interface Settings {
  readonly size: number
  /** 0: no limit. */
  readonly idleTimeout: number
  /** 0: no limit. */
  readonly acquireTimeout: number
  readonly maxQueue: number
  readonly minIdle: number
  /** `Infinity`: wait for ever; 0: finalize leased workers at once. */
  readonly shutdownTimeout: number
  /** 0: no limit. */
  readonly leaseTimeout: number
  readonly name: string
  readonly provider: string
  /** The default account's cap (`Infinity`: only `size`). */
  readonly maxWorkers: number
}

/** Throws a `PoolOptionsError` when the name given to `addAccount` is not allowed. */
export const checkAccountName = (name: string): void => {
  const problem = accountNameProblem(name)
  if (problem !== undefined) {
    throw new PoolOptionsError({ message: `Invalid addAccount options: name ${JSON.stringify(name)}: ${problem}.` })
  }
}

/** Validates an account added at run time (`addAccount`), throwing a `PoolOptionsError` naming the bad option. */
export const validateAccount = (name: string, account: unknown): { readonly maxWorkers: number } => {
  checkAccountName(name)
  const o = decodeOptions("addAccount", AccountSchema, account)
  return { maxWorkers: o.maxWorkers ?? Infinity }
}

/** Validates options, throwing a `PoolOptionsError` naming the bad option. */
export const validate = (options: Options<any, any, any>): Settings => {
  const o = decodeOptions("WorkerPool", OptionsSchema, options)
  return {
    size: o.size,
    idleTimeout: timeoutMillis(o.idleTimeout, 300_000),
    acquireTimeout: timeoutMillis(o.acquireTimeout, 0),
    maxQueue: o.maxQueue ?? Infinity,
    minIdle: o.minIdle ?? 0,
    shutdownTimeout: o.shutdownTimeout === undefined ? 30_000 : toMillis(o.shutdownTimeout),
    leaseTimeout: timeoutMillis(o.leaseTimeout, 0),
    name: o.name ?? "worker-pool",
    provider: o.provider ?? "generic",
    maxWorkers: o.maxWorkers ?? Infinity
  }
}

/** Where the promise facades find the core of an Effect pool. */
export const CoreKey: unique symbol = Symbol.for("codex-worker-pool/WorkerPool/core")

/** What a promise facade needs of an Effect pool. */
export interface Internals<W> {
  readonly core: PoolCore<W>
  readonly settings: Settings
  /** The attributes of the pool's metric series (with its own `pool_id`). */
  readonly metricAttributes: PoolAttributes
  /**
   * How the pool logs: its loggers, minimum level and annotations (`pool`,
   * `pool_id`), for work a facade runs outside the pool's fibers.
   */
  readonly logContext: Context.Context<never>
  /** Resolves when `slot` has been finalized. */
  readonly whenFinalized: (slot: Slot<W>) => Promise<void>
  /**
   * Adds an account whose workers `acquire` makes (run in the pool's context;
   * validated by the caller), or returns `AccountExistsError`.
   */
  readonly addAccount: (
    name: string,
    acquire: Effect.Effect<W, unknown, any>,
    maxWorkers: number
  ) => AccountExistsError | undefined
  /**
   * Removes an account now (its waiters fail, its workers retire), returning
   * a deferred done once every worker of it has been finalized; or
   * `UnknownAccountError`. Throws `PoolOptionsError` for the default account.
   */
  readonly removeAccount: (name: string) => Deferred.Deferred<void> | UnknownAccountError
}

/** The counts of each account of a core, by name. */
export const accountStatsOf = <W>(core: PoolCore<W>): Record<string, AccountStats> =>
  Object.fromEntries(Array.from(core.accounts.values(), (account): [string, AccountStats] => [account.name, {
    workers: account.leased + account.idle,
    busy: account.leased,
    idle: account.idle,
    queued: account.queue.length,
    creating: account.creating,
    maxWorkers: Math.min(account.maxWorkers, core.settings.size)
  }]))

/** The counts of a core. */
export const statsOf = <W>(core: PoolCore<W>): Stats => ({
  poolSize: core.settings.size,
  workers: core.leased + core.idle,
  busy: core.leased,
  idle: core.idle,
  queued: core.queued,
  creating: core.creating,
  finalizing: core.finalizing,
  created: core.totals.created,
  finalized: core.totals.finalized,
  createFailures: core.totals.createFailures,
  closed: core.closed,
  accounts: accountStatsOf(core)
})


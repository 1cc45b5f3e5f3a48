/**
 * What the pool modules share without making it public: option validation,
 * the key under which an Effect pool carries its core for the promise
 * facades, and the stats of a core.
 *
 * @internal
 */
import { Context, type Deferred, type Duration, Effect, Schema } from "effect"
import { type AccountExistsError, PoolOptionsError, type UnknownAccountError } from "../errors.ts"
import type { AccountStats, Options, Stats } from "../WorkerPool.ts"
import { DEFAULT_ACCOUNT, type PoolCore, type Slot } from "./core.ts"
import type { PoolAttributes } from "./metrics.ts"
import { CountOrInfinity, decodeOptions, DurationInput, Function, IntAtLeast, toMillis } from "./options.ts"

const EffectSchema = Schema.declare((u: unknown): u is Effect.Effect<unknown, unknown, unknown> => Effect.isEffect(u), {
  expected: "an Effect"
})

/** Schema of a cap on an account's workers: an integer >= 1, or `Infinity` (none). */
export const WorkerCap = Schema.Number.check(
  Schema.makeFilter((n: number) => n === Infinity || (Number.isInteger(n) && n >= 1) || "Expected an integer >= 1 or Infinity")
)

const AccountSchema = Schema.Struct({
  acquire: EffectSchema,
  maxWorkers: Schema.optional(WorkerCap)
})

const OptionsSchema = Schema.Struct({
  acquire: EffectSchema,
  size: IntAtLeast(1),
  maxWorkers: Schema.optional(WorkerCap),
  accounts: Schema.optional(Schema.Record(Schema.String, AccountSchema)),
  idleTimeout: Schema.optional(DurationInput),
  acquireTimeout: Schema.optional(DurationInput),
  maxQueue: Schema.optional(CountOrInfinity),
  minIdle: Schema.optional(IntAtLeast(0)),
  shutdownTimeout: Schema.optional(DurationInput),
  leaseTimeout: Schema.optional(DurationInput),
  onLeaseTimeout: Schema.optional(Function),
  name: Schema.optional(Schema.String),
  provider: Schema.optional(Schema.String)
})

/** The validated settings of a pool. */
export interface Settings {
  readonly size: number
  readonly idleTimeout: number
  readonly acquireTimeout: number
  readonly maxQueue: number
  readonly minIdle: number
  readonly shutdownTimeout: number
  readonly leaseTimeout: number
  readonly name: string
  readonly provider: string
  /** The default account's cap (`Infinity`: only `size`). */
  readonly maxWorkers: number
}

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

/** Throws a `PoolOptionsError` when an account name (`accounts` key or `addAccount` argument) is not allowed. */
export const checkAccountNames = (what: string, names: Iterable<string>, prefix: string): void => {
  for (const name of names) {
    const problem = accountNameProblem(name)
    if (problem !== undefined) {
      throw new PoolOptionsError({ message: `Invalid ${what} options: ${prefix}${JSON.stringify(name)}: ${problem}.` })
    }
  }
}

/** Validates an account added at run time (`addAccount`), throwing a `PoolOptionsError` naming the bad option. */
export const validateAccount = (name: string, account: unknown): { readonly maxWorkers: number } => {
  checkAccountNames("addAccount", [name], "name ")
  const o = decodeOptions("addAccount", AccountSchema, account)
  return { maxWorkers: o.maxWorkers ?? Infinity }
}

/** Validates options, throwing a `PoolOptionsError` naming the bad option. */
export const validate = (options: Options<any, any, any>): Settings => {
  const o = decodeOptions("WorkerPool", OptionsSchema, options)
  const minIdle = o.minIdle ?? 0
  if (minIdle > o.size) {
    throw new PoolOptionsError({ message: `Invalid WorkerPool options: minIdle: must be <= size (${o.size}), got ${minIdle}.` })
  }
  const maxWorkers = o.maxWorkers ?? Infinity
  if (minIdle > maxWorkers) {
    throw new PoolOptionsError({
      message: `Invalid WorkerPool options: minIdle: must be <= maxWorkers (${maxWorkers}), got ${minIdle}.`
    })
  }
  if (o.accounts !== undefined) checkAccountNames("WorkerPool", Object.keys(o.accounts), "accounts.")
  const millis = (d: Duration.Input | undefined, fallback: number) => {
    const ms = d === undefined ? fallback : toMillis(d)
    return ms === Infinity ? 0 : ms
  }
  return {
    size: o.size,
    idleTimeout: millis(o.idleTimeout, 300_000),
    acquireTimeout: millis(o.acquireTimeout, 0),
    maxQueue: o.maxQueue ?? Infinity,
    minIdle,
    shutdownTimeout: millis(o.shutdownTimeout, 30_000),
    leaseTimeout: millis(o.leaseTimeout, 0),
    name: o.name ?? "worker-pool",
    provider: o.provider ?? "generic",
    maxWorkers
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


/**
 * What the pool modules share without making it public: option validation,
 * the key under which an Effect pool carries its core for the promise
 * facades, and the stats of a core.
 *
 * @internal
 */
import { Context, type Duration, Effect, Schema } from "effect"
import { PoolOptionsError } from "../errors.ts"
import type { Options, Stats } from "../WorkerPool.ts"
import type { PoolCore, Slot } from "./core.ts"
import type { PoolAttributes } from "./metrics.ts"
import { CountOrInfinity, decodeOptions, DurationInput, Function, IntAtLeast, toMillis } from "./options.ts"

const OptionsSchema = Schema.Struct({
  acquire: Schema.declare((u: unknown): u is Effect.Effect<unknown, unknown, unknown> => Effect.isEffect(u), {
    expected: "an Effect"
  }),
  size: IntAtLeast(1),
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
}

/** Validates options, throwing a `PoolOptionsError` naming the bad option. */
export const validate = (options: Options<any, any, any>): Settings => {
  const o = decodeOptions("WorkerPool", OptionsSchema, options)
  const minIdle = o.minIdle ?? 0
  if (minIdle > o.size) {
    throw new PoolOptionsError({ message: `Invalid WorkerPool options: minIdle: must be <= size (${o.size}), got ${minIdle}.` })
  }
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
    provider: o.provider ?? "generic"
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
}

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
  closed: core.closed
})


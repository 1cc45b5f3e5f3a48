/**
 * What the pool modules share without making it public: option validation,
 * the key under which an Effect pool carries its core for the promise
 * facades, and the stats of a core.
 *
 * @internal
 */
import { Config, type Context, Effect, Schema } from "effect"
import type { Options, Stats } from "../WorkerPool.ts"
import type { PoolCore, Slot } from "./core.ts"
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

/** The options that are plain values (all but the callbacks): what `layerConfig` reads from a `Config`. */
export const ValueOptionsFields = {
  size: IntAtLeast(1),
  idleTimeout: Schema.optional(Timeout),
  acquireTimeout: Schema.optional(Timeout),
  maxQueue: Schema.optional(CountOrInfinity),
  minIdle: Schema.optional(IntAtLeast(0)),
  shutdownTimeout: Schema.optional(DurationInput),
  leaseTimeout: Schema.optional(Timeout),
  name: Schema.optional(Schema.String),
  provider: Schema.optional(Schema.String)
}

/** `minIdle` fits within `size`; an issue at `minIdle` otherwise. */
const minIdleWithinSize = Schema.makeFilter((o: { readonly size: number; readonly minIdle?: number | undefined }) =>
  o.minIdle === undefined || o.minIdle <= o.size ||
  { path: ["minIdle"], issue: `must be <= size (${o.size})` }
)

const OptionsSchema = Schema.Struct({
  acquire: Schema.declare((u: unknown): u is Effect.Effect<unknown, unknown, unknown> => Effect.isEffect(u), {
    expected: "an Effect"
  }),
  onLeaseTimeout: Schema.optional(Function),
  ...ValueOptionsFields
}).check(minIdleWithinSize)

const ValueOptionsSchema = Schema.Struct(ValueOptionsFields).check(minIdleWithinSize)

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


/**
 * Rate-limit admission for OpenAI API keys shared by many callers and many
 * instances: requests per minute (RPM) and tokens per minute (TPM) per key,
 * a 429 cooldown every instance sees, and usage and soft limits per
 * workspace, kept in Effect's `effect/persistence/RateLimiter` store (memory
 * by default, Redis for several instances).
 *
 * A pool calls it before it takes a worker: `admit` waits for the call's
 * turn (FIFO per key, interruptible, bounded by the call's timeout: when the
 * announced wait is longer than what is left of it, the call fails at once
 * with `RateLimitedError`), and returns a `Reservation`. The pool feeds the
 * reservation every notification of the leased worker (`onNotification`: it
 * charges the tokens codex reports, counts each model request, and reports an
 * HTTP 429 as a cooldown) and calls `settle()` when the lease ends (or
 * `cancel()` if the call never ran).
 *
 * Guarantees:
 * - per key and instance, admission is FIFO: a later call is never admitted
 *   before an earlier one; a waiting call holds no worker;
 * - a call refused (`RateLimitedError`, `WorkspaceLimitError`) or interrupted
 *   while waiting is charged nothing;
 * - a refund is never more than the call was charged, and never fills a
 *   bucket past its capacity (see `internal/admission.ts` for how, since
 *   Effect's limiter cannot un-consume);
 * - a workspace at its limit is refused at once and never takes a slot of the
 *   key, so it does not delay other workspaces;
 * - with a shared store, every store call is bounded by `storeTimeoutMs`; when
 *   the store is unreachable, admission goes on with a local limiter at
 *   `limit / instances` and returns to the shared store when it answers. It
 *   never admits without a limit.
 *
 * Limits: across instances, admission is not FIFO (the store admits in the
 * order it sees the calls). Workspace token limits are soft (a turn that
 * crosses one runs to its end). Counters use each instance's clock for the
 * minute and UTC-day windows. What instances admitted on their local
 * fallback during a Redis outage is not charged to Redis when it returns.
 * Use `layerStoreRedisUrl` (or a NodeRedis layer with `disableOfflineQueue`)
 * so that commands never wait in node-redis' offline queue.
 *
 * @example
 * ```ts
 * import { Effect, Layer } from "effect"
 * import { RateLimits } from "codex-worker-pool"
 *
 * const program = Effect.gen(function*() {
 *   const limits = yield* RateLimits.RateLimits
 *   const reservation = yield* limits.admit({ key: "default", workspace: "acme", timeoutMs: 30_000 })
 *   // ... run the turn, passing each notification to reservation.onNotification(method, params)
 *   reservation.settle()
 * }).pipe(Effect.provide(
 *   RateLimits.layer({ limits: { default: { requestsPerMinute: 500, tokensPerMinute: 200_000 } } }).pipe(
 *     Layer.provide(RateLimits.layerStoreMemory)
 *   )
 * ))
 * ```
 *
 * @since 0.2.0
 */
import { Context, Effect, Layer, References, Schema, Scope } from "effect"
import * as Exit from "effect/Exit"
import * as Cause from "effect/Cause"
import * as Redis from "effect/persistence/Redis"
import type { PoolOptionsError, PoolShutdownError, RateLimitedError, WorkspaceLimitError } from "./errors.ts"
import {
  type Admission,
  type AdmitRequest,
  type KeyLimits,
  makeAdmission,
  Reservation,
  sanitizeWorkspaceLimits,
  type UsageFigures,
  type WorkspaceLimits as WorkspaceLimitsShape,
  type WorkspaceUsage
} from "./internal/admission.ts"
import {
  makeMemoryStore,
  makeRedisConnection,
  makeRedisStore,
  RateLimitsStore
} from "./internal/admissionStore.ts"
import { AdmissionMetricNames } from "./internal/admissionMetrics.ts"
import { LimitsSchema, SettingsFields, StoreOptionsSchema, WorkspaceLimitsOption } from "./internal/admissionSchema.ts"
import { decodeOptions } from "./internal/options.ts"

// Pure readers of the leased worker's notifications (see internal/admissionNotifications.ts).
export { rateLimitSignalOf, retryAfterMsOf, tokenUsageOf } from "./internal/admissionNotifications.ts"
export type { RateLimitSignal, TokenUsageBreakdown, TokenUsageUpdate } from "./internal/admissionNotifications.ts"
export { AdmissionMetricNames as MetricNames, RateLimitsStore, Reservation }
export type { AdmitRequest, UsageFigures, WorkspaceUsage }

/**
 * Requests and tokens per minute of one API key (account). Omitted: no limit.
 *
 * @since 0.2.0
 * @category models
 */
export type Limits = KeyLimits

/**
 * Limits of one workspace, per minute and per UTC day. Omitted: no limit.
 * Tokens are codex's `totalTokens` (input, cached input included, plus output).
 *
 * @since 0.2.0
 * @category models
 */
export type WorkspaceLimits = WorkspaceLimitsShape

/**
 * Options of rate-limit admission. Times are in milliseconds.
 *
 * @since 0.2.0
 * @category models
 */
export interface Options {
  /**
   * Limits per account (= API key) name. A pool without accounts uses the
   * account "default". Keys not listed have no RPM / TPM limit (the 429
   * cooldown and workspace limits still apply).
   */
  readonly limits?: Readonly<Record<string, Limits>> | undefined
  /** Tokens reserved at admission when a call gives no `estimatedTokens`. Default 8000. */
  readonly defaultEstimatedTokens?: number | undefined
  /** How long a key cools down after a 429 whose message names no wait. Default 2000. */
  readonly defaultCooldownMs?: number | undefined
  /** Limits per workspace: a record, or a function returning them (undefined: none). */
  readonly workspaceLimits?:
    | Readonly<Record<string, WorkspaceLimits>>
    | ((workspace: string) => WorkspaceLimits | undefined)
    | undefined
  /** Share of a workspace limit at which a warning is logged and counted (once per window). Default 0.8. */
  readonly workspaceWarnAt?: number | undefined
  /**
   * Most workspaces (beyond those in a `workspaceLimits` record) with metric
   * series of their own; later ones are counted as `workspace="_other"`. Default 100.
   */
  readonly maxWorkspaceSeries?: number | undefined
  /**
   * How many instances share the store. While the shared store is unreachable
   * each instance admits at `limit / instances`. Default 1.
   */
  readonly instances?: number | undefined
  /** Longest wait for one call to a shared store before it counts as unreachable. Default 500. */
  readonly storeTimeoutMs?: number | undefined
  /** How often an unreachable shared store is probed. Default 1000. */
  readonly probeIntervalMs?: number | undefined
  /** The `pool` attribute of the metrics and the name in logs. Default "codex". */
  readonly name?: string | undefined
}

/**
 * Where the state lives when it is shared by several instances: a Redis
 * server. The connection is made in the background and re-made when lost;
 * until Redis answers, admission runs on its local fallback limiter.
 *
 * @since 0.2.0
 * @category models
 */
export interface StoreOptions {
  /** `redis://[[user]:password@]host[:port][/db]` or `rediss://...`. */
  readonly redisUrl: string
  /** Prefix of every key in Redis. Default "codex-worker-pool:". */
  readonly prefix?: string | undefined
  /** Longest wait for a TCP connection to Redis. Default 1000. */
  readonly connectTimeoutMs?: number | undefined
}

/**
 * The admission service.
 *
 * @since 0.2.0
 * @category models
 */
export interface Service {
  /**
   * Waits until the call may run under the limits of its key (FIFO per key);
   * fails at once with `RateLimitedError` when the wait would outlast
   * `timeoutMs`, with `WorkspaceLimitError` when its workspace is at a limit.
   * Interruption while waiting gives back everything.
   */
  readonly admit: (
    request: AdmitRequest
  ) => Effect.Effect<Reservation, RateLimitedError | WorkspaceLimitError | PoolShutdownError | PoolOptionsError>
  /**
   * `admit` for promise code: the reservation itself when the call is
   * admitted at once without a store round trip (memory store), else a
   * promise. Aborting `signal` while it waits rejects with `signal.reason`.
   */
  readonly admitUnsafe: (request: AdmitRequest, signal?: AbortSignal) => Reservation | Promise<Reservation>
  /**
   * Reports an HTTP 429 for `account` (when no reservation is at hand; a
   * reservation reports its own from the `error` notification): its calls
   * wait `retryAfterMs` (default `defaultCooldownMs`) on every instance.
   */
  readonly reportRateLimited: (account: string, retryAfterMs?: number) => void
  /** A workspace's usage this minute and this UTC day, as the shared store holds it. */
  readonly usage: (workspace: string) => Effect.Effect<WorkspaceUsage>
  /** Sets or (undefined) removes the limits of an account, for later admissions. */
  readonly setLimits: (account: string, limits: Limits | undefined) => void
  /** The limits of an account now. */
  readonly limitsOf: (account: string) => Limits
  /** Milliseconds the account still cools down as this instance knows it; 0 if it does not. */
  readonly cooldownRemaining: (account: string) => number
  /** Calls of the account waiting for admission on this instance. */
  readonly waiting: (account: string) => number
  /** True while the shared store is unreachable and the local fallback limiter is used. */
  readonly degraded: () => boolean
  /** Waits until the background store updates (charges, refunds, counters) have finished. */
  readonly flush: Effect.Effect<void>
}

/**
 * The admission service tag.
 *
 * @since 0.2.0
 * @category services
 */
export class RateLimits extends Context.Service<RateLimits, Service>()("codex-worker-pool/RateLimits") {}

const OptionsSchema = Schema.Struct({
  limits: Schema.optional(Schema.Record(Schema.String, LimitsSchema)),
  ...SettingsFields,
  workspaceLimits: Schema.optional(WorkspaceLimitsOption),
  name: Schema.optional(Schema.String)
})

/** Validates options (throws `PoolOptionsError` naming the option) and fills in the defaults. */
const configOf = (options: Options) => {
  const o = decodeOptions("rate limit", OptionsSchema, options)
  const workspaceLimits = options.workspaceLimits
  const lookup = workspaceLimits === undefined
    ? undefined
    : typeof workspaceLimits === "function"
    ? workspaceLimits
    : (workspace: string) => Object.hasOwn(workspaceLimits, workspace) ? workspaceLimits[workspace] : undefined
  return {
    name: o.name ?? "codex",
    limits: o.limits ?? {},
    defaultEstimatedTokens: o.defaultEstimatedTokens ?? 8_000,
    defaultCooldownMs: o.defaultCooldownMs ?? 2_000,
    workspaceLimits: lookup,
    configuredWorkspaces: workspaceLimits === undefined || typeof workspaceLimits === "function"
      ? []
      : Object.keys(workspaceLimits).filter((w) => sanitizeWorkspaceLimits(workspaceLimits[w]!) !== undefined),
    workspaceWarnAt: o.workspaceWarnAt ?? 0.8,
    maxWorkspaceSeries: o.maxWorkspaceSeries ?? 100,
    instances: o.instances ?? 1,
    storeTimeoutMs: o.storeTimeoutMs ?? 500,
    probeIntervalMs: o.probeIntervalMs ?? 1_000
  }
}

const serviceOf = (admission: Admission): Service => ({
  admit: (request) => admission.admit(request),
  admitUnsafe: (request, signal) => admission.admitUnsafe(request, signal),
  reportRateLimited: (account, retryAfterMs) => admission.reportRateLimited(account, retryAfterMs),
  usage: (workspace) => admission.usage(workspace),
  setLimits: (account, limits) => admission.setLimits(account, limits),
  limitsOf: (account) => admission.limitsOf(account),
  cooldownRemaining: (account) => admission.cooldownRemaining(account),
  waiting: (account) => admission.waiting(account),
  degraded: () => admission.degraded,
  flush: admission.flush
})

/**
 * Makes the admission service on the `RateLimitsStore` in context, for the
 * lifetime of the scope: when it closes, waiting calls fail with
 * `PoolShutdownError` and pending store updates get `storeTimeoutMs` to end.
 * Bad options fail with `PoolOptionsError` naming the option.
 *
 * @since 0.2.0
 * @category constructors
 */
export const make = (options: Options): Effect.Effect<Service, PoolOptionsError, RateLimitsStore | Scope.Scope> =>
  Effect.gen(function*() {
    const config = yield* Effect.try({ try: () => configOf(options), catch: (error) => error as PoolOptionsError })
    const store = yield* RateLimitsStore
    return serviceOf(yield* makeAdmission(config, store))
  })

/**
 * The admission service as a layer.
 *
 * @since 0.2.0
 * @category layers
 */
export const layer = (options: Options): Layer.Layer<RateLimits, PoolOptionsError, RateLimitsStore> =>
  Layer.effect(RateLimits, make(options))

/**
 * State in this process only (Effect's `RateLimiter.layerStoreMemory`): for
 * one instance, and for tests (time comes from the `Clock`).
 *
 * @since 0.2.0
 * @category layers
 */
export const layerStoreMemory: Layer.Layer<RateLimitsStore> = Layer.effect(RateLimitsStore, makeMemoryStore)

/**
 * State on the `Redis` service in context (Effect's
 * `RateLimiter.layerStoreRedis` plus counters), shared by every instance
 * using the same Redis and `prefix`. Provide it with
 * `@effect/platform-node`'s `NodeRedis.layer({ url, disableOfflineQueue: true })`:
 * without `disableOfflineQueue`, commands sent while Redis is down wait in
 * node-redis' queue and run late, after admission has already given up on
 * them. `layerStoreRedisUrl` makes such a connection itself.
 *
 * @since 0.2.0
 * @category layers
 */
export const layerStoreRedis = (
  options?: { readonly prefix?: string | undefined }
): Layer.Layer<RateLimitsStore, never, Redis.Redis> =>
  Layer.effect(
    RateLimitsStore,
    Effect.flatMap(
      Effect.service(Redis.Redis),
      (redis) => makeRedisStore(redis, options?.prefix ?? "codex-worker-pool:")
    )
  )

/**
 * State on Redis at `redisUrl`, over a connection this layer makes and
 * closes: `disableOfflineQueue`, a connect timeout, reconnection for ever.
 * Building it never waits for Redis: until Redis answers, admission runs on
 * its local fallback limiter.
 *
 * @since 0.2.0
 * @category layers
 */
export const layerStoreRedisUrl = (options: StoreOptions): Layer.Layer<RateLimitsStore, PoolOptionsError> =>
  Layer.effect(
    RateLimitsStore,
    Effect.try({
      try: () => decodeOptions("rateLimitStore", StoreOptionsSchema, options),
      catch: (error) => error as PoolOptionsError
    }).pipe(Effect.flatMap((o) =>
      makeRedisConnection({
        url: o.redisUrl,
        prefix: o.prefix ?? "codex-worker-pool:",
        connectTimeoutMs: o.connectTimeoutMs ?? 1_000,
        retryMs: 1_000
      })
    ))
  )

/**
 * The admission service for promise code (the pool facades): built at once
 * (a Redis connection, if any, is made in the background), closed by
 * `close()`. Throws `PoolOptionsError` for bad options.
 *
 * @since 0.2.0
 * @category constructors
 */
export const makeUnsafe = (
  options: Options,
  store?: StoreOptions | undefined
): { readonly service: Service; readonly close: () => Promise<void> } => {
  const scope = Effect.runSync(Scope.make())
  const build = Effect.gen(function*() {
    const storeContext = yield* Layer.buildWithScope(
      store === undefined ? layerStoreMemory : layerStoreRedisUrl(store),
      scope
    )
    return yield* make(options).pipe(Effect.provideContext(storeContext), Scope.provide(scope))
  }).pipe(Effect.provideService(References.MinimumLogLevel, "Info"))
  // `runFork` rather than `runSyncExit`: the service's background fibers keep
  // the default scheduler (runSyncExit's would run them on microtasks only).
  // Building completes synchronously: the Redis connection is made by a fiber.
  const exit = Effect.runFork(build).pollUnsafe()
  if (exit === undefined) throw new Error("RateLimits.makeUnsafe: building the service did not complete synchronously")
  if (Exit.isFailure(exit)) {
    Effect.runFork(Scope.close(scope, Exit.void))
    throw Cause.squash(exit.cause)
  }
  let closing: Promise<void> | undefined
  return {
    service: exit.value,
    close: () => closing ??= Effect.runPromise(Scope.close(scope, Exit.void))
  }
}

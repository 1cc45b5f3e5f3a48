/**
 * A pool of long-lived, single-flight workers with a FIFO waiting room, for
 * Effect programs.
 *
 * Each worker serves one lease at a time. At most `size` workers exist; an
 * acquire beyond that waits in a first-in-first-out queue, and a released
 * worker is handed straight to the oldest waiter. A waiter that is
 * interrupted leaves the queue at once; `acquireTimeout` and `maxQueue` bound
 * the wait. The pool lives in a `Scope`: closing it fails every waiter with
 * `PoolShutdownError`, finalizes idle workers at once and leased ones when
 * their lease ends (or after `shutdownTimeout`).
 *
 * Times are `Duration.Input`s (`"30 seconds"`, `Duration.minutes(5)`, or a
 * number of milliseconds). A limit of time (`idleTimeout`, `acquireTimeout`,
 * `leaseTimeout`, an acquire's `timeout`) is > 0, with `Duration.infinity`
 * for no limit; zero is refused. `shutdownTimeout` may be zero (leased
 * workers are finalized at once) or `Duration.infinity` (wait for ever).
 * `layerConfig` reads the options that are values from `Config`s, a bad one
 * failing the layer with a `ConfigError` (options from code stay a defect).
 *
 * Workers are made by the `acquire` effect inside a scope of their own, so
 * whatever `acquire` registers with `Effect.acquireRelease` or
 * `Effect.addFinalizer` runs when the worker is finalized: on idle retirement,
 * `invalidate`, or shutdown.
 *
 * Why not Effect's `Pool`: it keeps the shape this module wants (scoped
 * items, invalidation, a TTL) but its waiters take permits from a semaphore
 * rather than receiving a worker in a FIFO hand-off, a failed create is not
 * routed to the waiter that caused it, its TTL retires items "up to twice"
 * late, and each `get` forks work that costs several times this pool's hand-off.
 * This module keeps the design of Effect's pool (scope per item, finalizers,
 * `Clock`-driven time, `Deferred`-style waiters completed without a scheduler
 * hop) around a synchronous core that provides those guarantees.
 *
 * Logs: every line carries `pool` (the name) and `pool_id` (as in the
 * metrics). An acquire that waits writes, at Debug, "worker-pool: acquire
 * queued" (`queued`: the queue's length) and, once served, "worker-pool:
 * worker handed to waiter" (`waitedMs`, `queued`) from the waiting caller's
 * own fiber, so the caller's `Logger`, minimum level, log annotations and span
 * apply; nothing is built for them unless that fiber's minimum level admits
 * Debug. A waiter of a promise facade has no fiber: its lines are written in
 * the context the pool was made in (the facade's `logger` and `debug`). Lines
 * that have no caller go to the `Logger` of the context the pool was made in:
 * lease timeouts, failed `onLeaseTimeout`s and finalizers, and what workers
 * log while they are made, retired or finalized (in the pool's fibers).
 *
 * Tracing: an acquire that finds no idle worker runs under a
 * `WorkerPool.acquire` span, a child of the caller's span, with `pool`,
 * `pool_id`, `queued` (the queue's length when it joined), `waitedMs` and
 * `outcome` (`acquired`, `timeout`, `queue_full`, `shutdown`,
 * `create_failed`, `account_removed` or `interrupted`). It ends when the
 * worker is handed over (what the caller then does runs under the caller's
 * span); its queue and hand-off lines are its events, and a worker made for it
 * is made under it. An acquire served by an idle worker makes no span, and
 * none is made when the caller's fiber has no tracer installed (only Effect's
 * native one) or tracing disabled. `make` runs under a `WorkerPool.make` span;
 * the pool's own fibers (timers, finalizers, creates no traced caller waits
 * for) run under no span, so what they trace starts a trace of its own rather
 * than growing the construction's for the pool's whole life.
 *
 * Accounts (worker groups): `accounts` names groups of workers made by
 * their own `acquire` (for a Codex pool: one API key each), each with an
 * optional cap (`maxWorkers`); the top-level options are the default
 * account's. An acquire names its account (`getWith({ account })`), gets a
 * worker of that account only, and waits FIFO by capacity across accounts:
 * a unit of capacity that frees up goes to the oldest waiter that can use it,
 * whichever its account, so no account's queue starves another's request. At
 * `size`, a waiter of B with no worker retires the oldest idle worker of
 * another account to make room. `addAccount` / `removeAccount` change them at
 * run time. `prefer` (an opaque key, e.g. a thread id) picks the idle worker
 * of the account that last served that key, when one is idle; it never makes
 * an acquire wait. See `internal/core.ts` for the exact guarantees.
 *
 * Limits: workers being finalized no longer count toward `size`, so a
 * replacement may be created while its predecessor is still shutting down.
 * `queuedAhead` in an `AcquireTimeoutError` is counted when the timeout fires.
 * `minIdle` keeps workers of the default account only.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { WorkerPool } from "codex-worker-pool"
 *
 * const program = Effect.gen(function*() {
 *   const pool = yield* WorkerPool.make({
 *     acquire: Effect.acquireRelease(
 *       Effect.promise(() => openConnection()),
 *       (connection) => Effect.promise(() => connection.close())
 *     ),
 *     size: 2,
 *     acquireTimeout: "30 seconds"
 *   })
 *   return yield* pool.use((connection) => Effect.promise(() => connection.query("select 1")))
 * }).pipe(Effect.scoped)
 * ```
 *
 * @since 0.1.0
 */
import { Clock, Config, Context, Deferred, Duration, Effect, FiberSet, Layer, LogLevel, References, Scope } from "effect"
import { type AccountExistsError, UnknownAccountError } from "./errors.ts"
import { PoolCore } from "./internal/core.ts"
import { MetricNames, registerPoolMetrics } from "./internal/metrics.ts"
import { PoolAccounts } from "./internal/poolAccounts.ts"
import { makeDriver } from "./internal/poolDriver.ts"
import { makeLeases } from "./internal/poolLeases.ts"
import {
  checkConfigOptions,
  CoreKey,
  type Internals,
  statsOf,
  validate,
  validateAccount
} from "./internal/poolInternals.ts"
import type { AccountOptions, AcquireOptions, Options, PoolError, Stats } from "./internal/poolTypes.ts"
import { makeWaiting, type WaitingRoom } from "./internal/poolWaiters.ts"
import { noStackTrace, withoutParentSpan } from "./internal/tracing.ts"

export type {
  AccountOptions,
  AccountStats,
  AcquireOptions,
  Options,
  PoolError,
  Stats
} from "./internal/poolTypes.ts"

/**
 * A pool of workers of type `W` whose creation may fail with `E`.
 *
 * @since 0.1.0
 * @category models
 */
export interface WorkerPool<W, E = never> {
  /**
   * Leases a worker for the current scope: it returns to the pool (or to the
   * next waiter) when the scope closes. Waits FIFO when all are busy;
   * interrupting the fiber removes it from the queue.
   */
  readonly get: Effect.Effect<W, E | PoolError, Scope.Scope>
  /** {@link WorkerPool.get} with per-acquire options. */
  readonly getWith: (options: AcquireOptions) => Effect.Effect<W, E | PoolError, Scope.Scope>
  /** Leases a worker for the duration of `f`. */
  readonly use: <A, E2, R2>(
    f: (worker: W) => Effect.Effect<A, E2, R2>,
    options?: AcquireOptions
  ) => Effect.Effect<A, E | E2 | PoolError, R2>
  /**
   * Takes a broken worker out of service: an idle one is finalized at once, a
   * leased one when its lease ends. Its slot is refilled on demand. Unknown
   * workers are ignored.
   */
  readonly invalidate: (worker: W) => Effect.Effect<void>
  /** The pool's counts now. */
  readonly stats: Effect.Effect<Stats>
  /**
   * Adds an account at run time. Its `acquire` runs in the pool's context
   * (the one `make` ran in). Fails with `AccountExistsError` (changing
   * nothing) when the pool has an account of that name; a bad name or
   * options are a defect (`PoolOptionsError`).
   */
  readonly addAccount: (name: string, account: AccountOptions<W, E, never>) => Effect.Effect<void, AccountExistsError>
  /**
   * Removes an account at once: its waiters fail with `AccountRemovedError`,
   * later acquires for it with `UnknownAccountError`; its idle workers are
   * finalized now, its leased ones when released, those being created when
   * they arrive. Then waits until every worker of it has been finalized
   * (interrupting the wait leaves the account removed). Fails with
   * `UnknownAccountError` when there is no such account; removing the default
   * account is a defect (`PoolOptionsError`).
   */
  readonly removeAccount: (name: string) => Effect.Effect<void, UnknownAccountError>
  /**
   * Shuts the pool down and waits until every worker is finalized (what closing
   * its scope does). Idempotent.
   */
  readonly shutdown: Effect.Effect<void>
}

/**
 * Makes a pool in the current scope. Closing the scope shuts it down.
 *
 * Bad options are a defect (a `PoolOptionsError` naming the option).
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = <W, E = never, R = never>(
  options: Options<W, E, R>
): Effect.Effect<WorkerPool<W, E>, never, R | Scope.Scope> =>
  Effect.gen(function*() {
    const settings = validate(options)
    const core = new PoolCore<W>(settings, settings.maxWorkers)
    // The pool's own fibers (creates, timers, finalizers) outlive this
    // construction: they do not run under its span, nor under the caller's.
    const callerContext = withoutParentSpan(yield* Effect.context<R | Scope.Scope>())
    const clock = Context.get(callerContext, Clock.Clock)
    const metrics = registerPoolMetrics(
      callerContext as Context.Context<never>,
      { name: settings.name, provider: settings.provider },
      [
        { name: MetricNames.queueLength, description: "Acquires waiting for a worker", get: () => core.queued },
        { name: MetricNames.busy, description: "Workers leased out", get: () => core.leased },
        { name: MetricNames.idle, description: "Workers waiting for a lease", get: () => core.idle },
        { name: MetricNames.creating, description: "Workers being created", get: () => core.creating }
      ],
      [
        { name: MetricNames.created, description: "Workers created", get: () => core.totals.created },
        { name: MetricNames.finalized, description: "Workers finalized", get: () => core.totals.finalized },
        { name: MetricNames.createFailures, description: "Worker creates that failed", get: () => core.totals.createFailures }
      ]
    )
    const accounts = new PoolAccounts<W, E, R>(core, callerContext as Context.Context<never>, metrics.attributes)
    accounts.register(core.defaultAccount, options.acquire)
    if (options.accounts !== undefined) {
      for (const [name, account] of Object.entries(options.accounts)) {
        core.addAccount(name, account.maxWorkers ?? Infinity)
        accounts.register(core.accounts.get(name)!, account.acquire)
      }
    }

    // Every line the pool writes, from its own fibers and its workers' (they
    // are made in its fibers), names the pool.
    const annotations = { pool: settings.name, pool_id: metrics.attributes.pool_id }
    const context = Context.add(callerContext, References.CurrentLogAnnotations, {
      ...Context.get(callerContext, References.CurrentLogAnnotations),
      ...annotations
    })
    yield* Effect.annotateCurrentSpan(annotations)
    const run = yield* Effect.updateContext(
      Effect.annotateLogs(FiberSet.makeRuntime<R>(), annotations),
      withoutParentSpan<R | Scope.Scope>
    )
    const { driver, shutdown, stopTimer, whenFinalized } = makeDriver<W, E, R>({
      core,
      settings,
      clock,
      run,
      accounts,
      recordWait: metrics.recordWait,
      // Debug lines of waiters that are not fibers (the promise facades'), in the pool's context.
      debug: !LogLevel.isGreaterThan(Context.get(context, References.MinimumLogLevel), "Debug"),
      log: (message, fields) => {
        Effect.runForkWith(context)(Effect.logDebug(message, fields))
      },
      onLeaseTimeout: options.onLeaseTimeout
    })
    yield* Effect.addFinalizer(() =>
      Effect.ensuring(shutdown, Effect.sync(() => {
        stopTimer()
        accounts.close()
        metrics.remove()
      }))
    )
    core.start(driver)

    const room: WaitingRoom = {
      clock,
      line: (message, fields, span) => {
        const line = Effect.annotateLogs(Effect.logDebug(message, fields), annotations)
        return span === undefined ? line : Effect.withParentSpan(line, span, noStackTrace)
      }
    }

    const waiting = makeWaiting<W, E>(core, room, { attributes: annotations })
    const { getWith, useWith, withOptions } = makeLeases<W, E>(core, settings, waiting)

    const internals: Internals<W> = {
      core,
      settings,
      metricAttributes: metrics.attributes,
      logContext: Context.make(References.CurrentLoggers, Context.get(context, References.CurrentLoggers)).pipe(
        Context.add(References.MinimumLogLevel, Context.get(context, References.MinimumLogLevel)),
        Context.add(References.CurrentLogAnnotations, Context.get(context, References.CurrentLogAnnotations))
      ),
      addAccount: (name, acquire, maxWorkers) => accounts.add(name, acquire, maxWorkers),
      removeAccount: (name) => accounts.remove(name),
      whenFinalized
    }

    const pool: WorkerPool<W, E> & { readonly [CoreKey]: Internals<W> } = {
      [CoreKey]: internals,
      get: getWith(settings.acquireTimeout, core.defaultAccount, undefined),
      getWith: (options) => withOptions(options, getWith),
      use: (f, options) =>
        options === undefined
          ? useWith(f, settings.acquireTimeout, core.defaultAccount, undefined)
          : withOptions(options, (timeout, account, key) => useWith(f, timeout, account, key)),
      invalidate: (worker) =>
        Effect.sync(() => {
          const slot = core.slots.get(worker)
          if (slot !== undefined) core.invalidate(slot)
        }),
      stats: Effect.sync(() => statsOf(core)),
      addAccount: (name, account) =>
        Effect.suspend(() => {
          const { maxWorkers } = validateAccount(name, account)
          const exists = accounts.add(name, account.acquire, maxWorkers)
          return exists === undefined ? Effect.void : Effect.fail(exists)
        }),
      removeAccount: (name) =>
        Effect.suspend(() => {
          const done = accounts.remove(name)
          return done instanceof UnknownAccountError ? Effect.fail(done) : Deferred.await(done)
        }),
      shutdown
    }
    return pool
  }).pipe(Effect.withSpan("WorkerPool.make"))

/**
 * Builds a pool as a scoped `Layer` for a service key, so Effect services can
 * depend on it; the pool shuts down when the layer is released.
 *
 * @example
 * ```ts
 * import { Context, Effect } from "effect"
 * import { WorkerPool } from "codex-worker-pool"
 *
 * class Connections extends Context.Service<Connections, WorkerPool.WorkerPool<Connection>>()("app/Connections") {}
 *
 * const ConnectionsLive = WorkerPool.layer(Connections, {
 *   acquire: Effect.acquireRelease(
 *     Effect.promise(() => openConnection()),
 *     (connection) => Effect.promise(() => connection.close())
 *   ),
 *   size: 4
 * })
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = <I, W, E = never, R = never>(
  key: Context.Key<I, WorkerPool<W, E>>,
  options: Options<W, E, R>
): Layer.Layer<I, never, Exclude<R, Scope.Scope>> => Layer.effect(key, make(options))

/**
 * The options of a pool that are plain values, which {@link layerConfig}
 * reads from `Config`s: all but `acquire`, `onLeaseTimeout` and `accounts`
 * (each account is made by an `acquire` of its own). The default account's
 * `maxWorkers` is one of them.
 *
 * @since 0.2.0
 * @category models
 */
export type ValueOptions = Omit<Options<unknown, unknown, unknown>, "acquire" | "onLeaseTimeout" | "accounts">

/**
 * Options of {@link layerConfig}: `acquire`, `onLeaseTimeout` and `accounts`
 * as in {@link Options} (code, not configuration), every other option as a
 * `Config` of its value.
 *
 * @since 0.2.0
 * @category models
 */
export type ConfigOptions<W, E, R> =
  & {
    /** Makes one worker, as in {@link Options}. */
    readonly acquire: Effect.Effect<W, E, R | Scope.Scope>
    /** Runs when a lease outlives `leaseTimeout`, as in {@link Options}. */
    readonly onLeaseTimeout?: ((worker: W, leaseTimeout: Duration.Duration) => Effect.Effect<void>) | undefined
    /** More accounts, as in {@link Options}: each has an `acquire` of its own, so they come from code. */
    readonly accounts?: Readonly<Record<string, AccountOptions<W, E, R>>> | undefined
  }
  & { readonly [K in keyof ValueOptions]: Config.Wrap<ValueOptions[K]> }

/**
 * {@link layer} with the options that are values read from `Config`s (e.g.
 * the environment, through the current `ConfigProvider`), while `acquire`,
 * `onLeaseTimeout` and `accounts` come from code (a bad account is a defect,
 * as in {@link make}).
 *
 * A value that cannot be read, or that is read but is not a valid option
 * (`size: 0`, a negative duration, `minIdle` above `size`), fails the layer
 * with a `ConfigError` naming it, in the error channel, not as a defect.
 * Durations read with `Config.Duration` take strings such as `"30 seconds"`
 * or `"Infinity"`.
 *
 * @example
 * ```ts
 * import { Config, Context, Effect } from "effect"
 * import { WorkerPool } from "codex-worker-pool"
 *
 * class Connections extends Context.Service<Connections, WorkerPool.WorkerPool<Connection>>()("app/Connections") {}
 *
 * const ConnectionsLive = WorkerPool.layerConfig(Connections, {
 *   acquire: Effect.acquireRelease(
 *     Effect.promise(() => openConnection()),
 *     (connection) => Effect.promise(() => connection.close())
 *   ),
 *   size: Config.Int("DB_POOL_SIZE"),
 *   idleTimeout: Config.Duration("DB_POOL_IDLE_TIMEOUT").pipe(Config.withDefault("5 minutes"))
 * })
 * ```
 *
 * @since 0.2.0
 * @category layers
 */
export const layerConfig = <I, W, E = never, R = never>(
  key: Context.Key<I, WorkerPool<W, E>>,
  options: ConfigOptions<W, E, R>
): Layer.Layer<I, Config.ConfigError, Exclude<R, Scope.Scope>> => {
  const { accounts, acquire, onLeaseTimeout, ...values } = options
  return Layer.effect(
    key,
    Config.unwrap<ValueOptions>(values as Config.Wrap<ValueOptions>).pipe(
      Effect.flatMap(checkConfigOptions),
      Effect.flatMap((read) =>
        make<W, E, R>({
          ...read,
          acquire,
          ...(onLeaseTimeout === undefined ? {} : { onLeaseTimeout }),
          ...(accounts === undefined ? {} : { accounts })
        })
      )
    )
  )
}

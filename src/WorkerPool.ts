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
import {
  Cause,
  Clock,
  Config,
  Context,
  Deferred,
  Duration,
  Effect,
  Exit,
  Fiber,
  FiberSet,
  Layer,
  LogLevel,
  References,
  Scope,
  type Tracer
} from "effect"
import {
  AccountExistsError,
  AccountRemovedError,
  PoolOptionsError,
  UnknownAccountError
} from "./errors.ts"
import { type Account, CreateOp, type Driver, PoolCore, type Slot, Waiter, type WaiterFailure } from "./internal/core.ts"
import { AccountMetricNames, MetricNames, registerPoolMetrics, registerPulled } from "./internal/metrics.ts"
import { checkEffectAcquireOptions, timeoutMillis } from "./internal/options.ts"
import {
  checkConfigOptions,
  CoreKey,
  type Internals,
  statsOf,
  validate,
  validateAccount
} from "./internal/poolInternals.ts"
import type { AccountOptions, AcquireOptions, Options, PoolError, Stats } from "./internal/poolTypes.ts"
import { isTraced, noStackTrace, withoutParentSpan } from "./internal/tracing.ts"

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
 * How many hand-offs may resume their fibers synchronously inside each other.
 * A release resumes the next waiter's fiber at once, and that fiber may
 * release again before returning: past this depth the resume is scheduled
 * instead, so a long queue of quick leases cannot overflow the stack.
 */
const MAX_NESTED_RESUMES = 32
let nestedResumes = 0

/** What a pool's fiber waiters need of it to log and trace their wait. */
interface WaitingRoom {
  readonly clock: Clock.Clock
  /** A Debug line with the pool's annotations, in the fiber that runs it (under `span` when given). */
  readonly line: (message: string, fields: Record<string, unknown>, span?: Tracer.Span) => Effect.Effect<void>
}

/**
 * A waiter that is a fiber suspended in `Effect.callback`. It resumes the
 * fiber straight into what comes next (`continueWith(slot)`: the caller's own effect,
 * for `use`), so a hand-off builds no continuation of its own.
 *
 * Its fiber logs its own queueing and hand-off (so the caller's logger, level,
 * annotations and span apply), and owns its `WorkerPool.acquire` span; the
 * pool's driver hooks only record the queue lengths on it.
 */
class FiberWaiter<W, A, E> extends Waiter<W> {
  resume: ((effect: Effect.Effect<A, E>) => void) | undefined = undefined
  /** What the fiber resumes with when the waiter settled before the fiber suspended. */
  settledWith: Effect.Effect<A, E> | undefined = undefined
  readonly room: WaitingRoom
  readonly continueWith: (slot: Slot<W>) => Effect.Effect<A, E>
  slot: Slot<W> | undefined = undefined
  /** The lease the worker was handed over under. */
  lease = 0
  /** The caller's fiber admits Debug lines: it logs its queueing and its hand-off. */
  debug = false
  /** The queue length when it joined the queue, and when it got its worker; -1 until then. */
  queuedAtEnqueue = -1
  queuedAtHandOff = -1
  /** Its `WorkerPool.acquire` span, when the caller's fiber has a tracer. */
  span: Tracer.Span | undefined = undefined
  /** Whether span times are recorded (`References.TracerTimingEnabled`). */
  spanTiming = true
  constructor(room: WaitingRoom, continueWith: (slot: Slot<W>) => Effect.Effect<A, E>) {
    super()
    this.room = room
    this.continueWith = continueWith
  }
  /** Driver hook: it joined the queue, `queued` long. */
  joined(queued: number): void {
    this.queuedAtEnqueue = queued
    this.span?.attribute("queued", queued)
  }
  succeed(slot: Slot<W>, waitedMs: number): void {
    this.slot = slot
    this.lease = slot.lease
    let next = this.continueWith(slot)
    const span = this.span
    if (span !== undefined) {
      // The span covers the wait only, not what the caller does with the
      // worker. It ends at the time of the hand-off, once the fiber has
      // resumed and written its lines (events of the span).
      span.attribute("waitedMs", waitedMs)
      span.attribute("outcome", "acquired")
      const endTime = this.spanTiming ? this.room.clock.currentTimeNanosUnsafe() : BigInt(0)
      next = Effect.andThen(Effect.sync(() => span.end(endTime, Exit.void)), next)
    }
    if (this.debug && this.queuedAtHandOff >= 0) {
      const fields = { waitedMs, queued: this.queuedAtHandOff }
      next = Effect.andThen(this.room.line("worker-pool: worker handed to waiter", fields, span), next)
    }
    this.wake(next)
  }
  fail(failure: WaiterFailure): void {
    if (this.span !== undefined) {
      const timedOut = "_tag" in failure && failure._tag === "AcquireTimeoutError"
      this.annotateEnd(outcomeOf(failure), timedOut ? failure.waitedMs : undefined)
    }
    this.wake(
      "createFailure" in failure
        ? Effect.failCause(failure.createFailure as Cause.Cause<E>)
        : "accountRemoved" in failure
        ? Effect.fail(new AccountRemovedError({ account: failure.accountRemoved }) as E)
        : Effect.fail(failure as E)
    )
  }
  /** Its fiber was interrupted while it waited (and it has left the queue). */
  interrupted(): void {
    if (this.span !== undefined) this.annotateEnd("interrupted", undefined)
  }
  /** The span's last attributes; the span ends with the fiber's exit (`Effect.useSpan`). */
  private annotateEnd(outcome: string, waitedMs: number | undefined): void {
    const span = this.span!
    span.attribute("outcome", outcome)
    if (this.queuedAtEnqueue >= 0) {
      span.attribute("waitedMs", waitedMs ?? this.room.clock.currentTimeMillisUnsafe() - this.enqueuedAt)
    }
  }
  private wake(effect: Effect.Effect<A, E>): void {
    const resume = this.resume
    if (resume === undefined) {
      // Settled before its fiber suspended (served or refused inside `enqueue`,
      // or while the fiber logged): the fiber picks it up when it gets there.
      this.settledWith = effect
      return
    }
    if (nestedResumes >= MAX_NESTED_RESUMES) {
      // The fiber resumes into a yield: it continues from the scheduler, on a fresh stack.
      resume(Effect.andThen(Effect.yieldNow, effect))
      return
    }
    nestedResumes++
    try {
      resume(effect)
    } finally {
      nestedResumes--
    }
  }
}

/** The `outcome` attribute of a `WorkerPool.acquire` span that ended in `failure`. */
const outcomeOf = (failure: WaiterFailure): string =>
  "createFailure" in failure
    ? "create_failed"
    : "accountRemoved" in failure
    ? "account_removed"
    : failure._tag === "AcquireTimeoutError"
    ? "timeout"
    : failure._tag === "QueueFullError"
    ? "queue_full"
    : "shutdown"

/** Suspends the fiber until `waiter` settles; at once when it already has. */
const awaitWaiter = <W, A, E>(waiter: FiberWaiter<W, A, E>): Effect.Effect<A, E> =>
  waiter.settledWith ?? Effect.callback<A, E>((resume) => {
    if (waiter.settledWith !== undefined) resume(waiter.settledWith)
    else waiter.resume = resume
  })

const succeedWith = <A>(a: A) => Effect.succeed(a)

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
    /** What the pool keeps of each live account: how to make its workers and its metric series. */
    interface AccountEntry {
      readonly acquire: Effect.Effect<W, E, R | Scope.Scope>
      readonly removeMetrics: () => void
    }
    const accounts = new Map<Account<W>, AccountEntry>()
    const registerAccount = (account: Account<W>, acquire: Effect.Effect<W, E, R | Scope.Scope>) => {
      accounts.set(account, {
        // The lines its workers write name the account (not the default one, to leave a plain pool's lines as they were).
        acquire: account === core.defaultAccount ? acquire : Effect.annotateLogs(acquire, "account", account.name),
        removeMetrics: registerPulled(callerContext as Context.Context<never>, {
          ...metrics.attributes,
          account: account.name
        }, [
          { name: AccountMetricNames.queueLength, description: "Acquires waiting for a worker of the account", get: () => account.queue.length },
          { name: AccountMetricNames.busy, description: "Workers of the account leased out", get: () => account.leased },
          { name: AccountMetricNames.idle, description: "Workers of the account waiting for a lease", get: () => account.idle },
          { name: AccountMetricNames.creating, description: "Workers of the account being created", get: () => account.creating }
        ])
      })
    }
    registerAccount(core.defaultAccount, options.acquire)
    if (options.accounts !== undefined) {
      for (const [name, account] of Object.entries(options.accounts)) {
        core.addAccount(name, account.maxWorkers ?? Infinity)
        registerAccount(core.accounts.get(name)!, account.acquire)
      }
    }
    /** Removed accounts whose workers are not all finalized yet, and who waits for that. */
    const removals = new Map<Account<W>, Deferred.Deferred<void>>()
    const settleRemovals = () => {
      for (const [account, done] of removals) {
        if (account.total !== 0) continue
        let left = false
        for (const slot of core.slots.values()) {
          if (slot.account === account) {
            left = true
            break
          }
        }
        if (!left) {
          removals.delete(account)
          Deferred.doneUnsafe(done, Exit.void)
        }
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
    // Debug lines of waiters that are not fibers (the promise facades'), in the pool's context.
    const debug = !LogLevel.isGreaterThan(Context.get(context, References.MinimumLogLevel), "Debug")
    const log = (message: string, fields: Record<string, unknown>) =>
      Effect.runForkWith(context)(Effect.logDebug(message, fields))
    const room: WaitingRoom = {
      clock,
      line: (message, fields, span) => {
        const line = Effect.annotateLogs(Effect.logDebug(message, fields), annotations)
        return span === undefined ? line : Effect.withParentSpan(line, span, noStackTrace)
      }
    }
    const acquireSpan = { attributes: annotations }

    const creates = new Map<CreateOp<W>, Fiber.Fiber<unknown, unknown>>()
    const leaseTimers = new Map<Slot<W>, Fiber.Fiber<unknown>>()
    const leaseTimeout = Duration.millis(settings.leaseTimeout)
    const expireLease = (slot: Slot<W>) =>
      Effect.suspend(() => {
        leaseTimers.delete(slot)
        core.invalidate(slot)
        const ms = settings.leaseTimeout
        return Effect.logWarning(`worker-pool: a lease outlived leaseTimeout (${ms} ms); the worker is retired`).pipe(
          Effect.andThen(
            options.onLeaseTimeout === undefined ? Effect.void : options.onLeaseTimeout(slot.worker, leaseTimeout)
          ),
          Effect.catchCause((cause) => Effect.logWarning("worker-pool: onLeaseTimeout failed", cause))
        )
      })
    const finalizedListeners = new Map<Slot<W>, Array<() => void>>()
    let timer: Fiber.Fiber<unknown> | undefined
    let drained: Deferred.Deferred<void> | undefined

    const createWorker = (op: CreateOp<W>, acquire: Effect.Effect<W, E, R | Scope.Scope>) =>
      Effect.uninterruptibleMask((restore) => {
        // Not a child of the pool's scope: that would finalize leased workers
        // before shutdown has run. Shutdown finalizes every worker itself.
        const scope = Scope.makeUnsafe()
        return Effect.flatMap(Effect.exit(restore(Scope.provide(acquire, scope))), (exit) => {
          creates.delete(op)
          if (Exit.isSuccess(exit)) {
            core.created(op, exit.value, scope)
            return Effect.void
          }
          return Effect.ensuring(Scope.close(scope, exit), Effect.sync(() => core.createFailed(op, exit.cause)))
        })
      })

    const finalizeWorker = (slot: Slot<W>) =>
      Scope.close(slot.handle as Scope.Closeable, Exit.void).pipe(
        Effect.catchCause((cause) => Effect.logWarning("A worker's finalizer failed", cause)),
        Effect.ensuring(Effect.sync(() => {
          core.finalized(slot)
          const listeners = finalizedListeners.get(slot)
          if (listeners !== undefined) {
            finalizedListeners.delete(slot)
            for (const f of listeners) f()
          }
        })),
        Effect.uninterruptible
      )

    const driver: Driver<W> = {
      now: () => clock.currentTimeMillisUnsafe(),
      create: (op) => {
        // A worker made for a traced waiter is made under its `WorkerPool.acquire` span.
        // The core only creates for live accounts, so the entry is there.
        const create = createWorker(op, accounts.get(op.account)!.acquire)
        const span = op.owner instanceof FiberWaiter ? op.owner.span : undefined
        const fiber = run(span === undefined ? create : Effect.withParentSpan(create, span, noStackTrace))
        // A create that completed synchronously has already been accounted for.
        if (fiber.pollUnsafe() === undefined) creates.set(op, fiber)
      },
      finalize: (slot) => {
        run(finalizeWorker(slot))
      },
      setTimer: (at) => {
        if (timer !== undefined) {
          timer.interruptUnsafe()
          timer = undefined
        }
        if (at !== undefined) {
          const delay = Math.max(0, at - clock.currentTimeMillisUnsafe())
          timer = run(Effect.flatMap(Effect.sleep(delay), () =>
            Effect.sync(() => {
              timer = undefined
              core.onTimer()
            })))
        }
      },
      leased: settings.leaseTimeout === 0 ? () => {} : (slot) => {
        leaseTimers.set(slot, run(Effect.andThen(Effect.sleep(settings.leaseTimeout), expireLease(slot))))
      },
      unleased: settings.leaseTimeout === 0 ? () => {} : (slot) => {
        const fiber = leaseTimers.get(slot)
        if (fiber !== undefined) {
          leaseTimers.delete(slot)
          fiber.interruptUnsafe()
        }
      },
      changed: () => {
        if (removals.size !== 0) settleRemovals()
        if (drained !== undefined && core.drained) Deferred.doneUnsafe(drained, Exit.void)
      },
      // A fiber waiter logs these lines itself, in its own fiber.
      enqueued: (queued, waiter) => {
        if (waiter instanceof FiberWaiter) waiter.joined(queued)
        else if (debug) log("worker-pool: acquire queued", { queued })
      },
      handedOff: (waitedMs, queued, waiter) => {
        metrics.recordWait(waitedMs)
        if (waiter instanceof FiberWaiter) waiter.queuedAtHandOff = queued
        else if (debug) log("worker-pool: worker handed to waiter", { waitedMs, queued })
      }
    }

    const shutdown: Effect.Effect<void> = Effect.suspend(() => {
      if (drained === undefined) {
        drained = Deferred.makeUnsafe<void>()
        core.shutdown()
        for (const fiber of creates.values()) fiber.interruptUnsafe()
        driver.changed()
      }
      const done = Deferred.await(drained)
      return Effect.timeoutOrElse(done, {
        duration: settings.shutdownTimeout,
        orElse: () => {
          core.finalizeLeased()
          return done
        }
      })
    })

    yield* Effect.addFinalizer(() =>
      Effect.ensuring(shutdown, Effect.sync(() => {
        driver.setTimer(undefined)
        for (const entry of accounts.values()) entry.removeMetrics()
        accounts.clear()
        metrics.remove()
      }))
    )
    core.start(driver)

    /**
     * The release of the lease `slot` is under now (a stale one is refused), as
     * an exit handler: it runs in the fiber, uninterruptibly, so it releases
     * right there and returns no effect to run.
     */
    const releaser = (slot: Slot<W>) => {
      const lease = slot.lease
      return () => {
        core.release(slot, lease)
        return Effect.void
      }
    }

    /**
     * Waits in the queue (after `core.take()` found nothing), in the caller's
     * fiber: `wait` queues `waiter` and returns what the fiber runs until it
     * is served, and `wait` is run under a `WorkerPool.acquire` span when the
     * fiber has a tracer. Only the waiting path pays for any of this.
     */
    const queued = <A, E1, R1>(
      waiter: FiberWaiter<W, any, any>,
      wait: () => Effect.Effect<A, E1, R1>
    ): Effect.Effect<A, E1, R1> => {
      const fiber = Fiber.getCurrent()!
      waiter.debug = !LogLevel.isGreaterThan(fiber.cache.minimumLogLevel, "Debug")
      if (!isTraced(fiber)) return wait()
      return Effect.useSpan("WorkerPool.acquire", acquireSpan, (span) => {
        waiter.span = span
        waiter.spanTiming = fiber.getRef(References.TracerTimingEnabled)
        return wait()
      })
    }

    /** Queues `waiter`; the fiber logs that it did (when it admits Debug), then waits. */
    const enqueue = <A, E1>(waiter: FiberWaiter<W, A, E1>, timeout: number, account: Account<W>): Effect.Effect<A, E1> => {
      core.enqueue(waiter, timeout, account)
      const wait = awaitWaiter(waiter)
      return waiter.debug && waiter.queuedAtEnqueue >= 0
        ? Effect.andThen(
          room.line("worker-pool: acquire queued", { queued: waiter.queuedAtEnqueue }, waiter.span),
          wait
        )
        : wait
    }

    const waitForSlot = (
      restore: <A, E1, R1>(effect: Effect.Effect<A, E1, R1>) => Effect.Effect<A, E1, R1>,
      timeout: number,
      account: Account<W>,
      key: string | undefined
    ): Effect.Effect<Slot<W>, E | PoolError> => {
      const waiter = new FiberWaiter<W, Slot<W>, E | PoolError>(room, succeedWith)
      waiter.key = key
      return queued(waiter, () =>
        Effect.onInterrupt(
          restore(enqueue(waiter, timeout, account)),
          // Interrupted while waiting: leave the queue. Interrupted just as a
          // worker arrived: pass that worker on to the next waiter.
          () =>
            Effect.sync(() => {
              if (core.cancel(waiter)) waiter.interrupted()
              else if (waiter.slot !== undefined) core.release(waiter.slot)
            })
        ))
    }

    // Both run their body each time they are run: an idle worker is taken
    // synchronously, with no Effect built for waiting.
    const getWith = (
      timeout: number,
      account: Account<W>,
      key: string | undefined
    ): Effect.Effect<W, E | PoolError, Scope.Scope> =>
      Effect.uninterruptibleMask((restore) => {
        const slot = core.take(account, key)
        return slot !== undefined
          ? Effect.as(Effect.addFinalizer(releaser(slot)), slot.worker)
          : Effect.flatMap(
            waitForSlot(restore, timeout, account, key),
            (slot) => Effect.as(Effect.addFinalizer(releaser(slot)), slot.worker)
          )
      })

    const useWith = <A, E2, R2>(
      f: (worker: W) => Effect.Effect<A, E2, R2>,
      timeout: number,
      account: Account<W>,
      key: string | undefined
    ): Effect.Effect<A, E | E2 | PoolError, R2> =>
      Effect.uninterruptibleMask((restore) => {
        const slot = core.take(account, key)
        if (slot !== undefined) {
          // The lease is held from here on: a `f` that throws instead of
          // returning an effect is this `use`'s defect, and the worker (which
          // did nothing wrong) still goes back through the exit handler.
          let body: Effect.Effect<A, E2, R2>
          try {
            body = f(slot.worker)
          } catch (defect) {
            body = Effect.die(defect)
          }
          return Effect.onExit(restore(body), releaser(slot))
        }
        // One exit handler covers every way out: `f` ended (release), interrupted
        // while queued (leave the queue), or interrupted just as a worker arrived
        // (pass it on to the next waiter).
        // `f` only builds the effect the fiber resumes with; a throw becomes that fiber's defect.
        const waiter = new FiberWaiter<W, A, E | E2 | PoolError>(room, (slot) => {
          try {
            return f(slot.worker) as Effect.Effect<A, E | E2 | PoolError>
          } catch (defect) {
            return Effect.die(defect)
          }
        })
        waiter.key = key
        return queued(waiter, () =>
          Effect.onExit(
            restore(enqueue(waiter, timeout, account) as Effect.Effect<A, E | E2 | PoolError, R2>),
            () => {
              if (waiter.slot !== undefined) core.release(waiter.slot, waiter.lease)
              else if (core.cancel(waiter)) waiter.interrupted()
              return Effect.void
            }
          ))
      })

    /** The acquire timeout of valid `options` (in ms, 0: none). */
    const acquireTimeoutOf = (options: AcquireOptions): number => timeoutMillis(options.timeout, settings.acquireTimeout)

    /**
     * Runs `acquire` with what `options` ask for: bad options are a defect (a
     * `PoolOptionsError` naming the option), an unknown account a failure,
     * both found before anything is queued or leased.
     */
    const withOptions = <A, E1, R1>(
      options: AcquireOptions,
      acquire: (timeout: number, account: Account<W>, key: string | undefined) => Effect.Effect<A, E1, R1>
    ): Effect.Effect<A, E1 | UnknownAccountError, R1> =>
      Effect.suspend((): Effect.Effect<A, E1 | UnknownAccountError, R1> => {
        const invalid = checkEffectAcquireOptions(options)
        if (invalid !== undefined) return Effect.die(invalid)
        // `undefined` options: the checker allows them, and so does `getWith` at run time.
        const o: AcquireOptions = options ?? {}
        const name = o.account
        const account = name === undefined ? core.defaultAccount : core.accounts.get(name)
        if (account === undefined) return Effect.fail(new UnknownAccountError({ account: name! }))
        return acquire(acquireTimeoutOf(o), account, o.prefer)
      })

    const addAccount = (name: string, acquire: Effect.Effect<W, unknown, any>, maxWorkers: number) => {
      if (!core.addAccount(name, maxWorkers)) return new AccountExistsError({ account: name })
      registerAccount(core.accounts.get(name)!, acquire as Effect.Effect<W, E, R | Scope.Scope>)
      return undefined
    }

    const removeAccount = (name: string) => {
      const account = core.accounts.get(name)
      if (account === core.defaultAccount) {
        throw new PoolOptionsError({
          message: `Invalid removeAccount options: name "${name}": the default account cannot be removed ` +
            `(it is the pool's top-level options).`
        })
      }
      if (account === undefined) return new UnknownAccountError({ account: name })
      const done = Deferred.makeUnsafe<void>()
      removals.set(account, done)
      accounts.get(account)!.removeMetrics()
      accounts.delete(account)
      core.removeAccount(name)
      settleRemovals()
      return done
    }

    const internals: Internals<W> = {
      core,
      settings,
      metricAttributes: metrics.attributes,
      logContext: Context.make(References.CurrentLoggers, Context.get(context, References.CurrentLoggers)).pipe(
        Context.add(References.MinimumLogLevel, Context.get(context, References.MinimumLogLevel)),
        Context.add(References.CurrentLogAnnotations, Context.get(context, References.CurrentLogAnnotations))
      ),
      addAccount,
      removeAccount,
      whenFinalized: (slot) =>
        slot.state === "finalized" ? Promise.resolve() : new Promise<void>((resolve) => {
          const listeners = finalizedListeners.get(slot)
          if (listeners === undefined) finalizedListeners.set(slot, [resolve])
          else listeners.push(resolve)
        })
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
          const exists = addAccount(name, account.acquire, maxWorkers)
          return exists === undefined ? Effect.void : Effect.fail(exists)
        }),
      removeAccount: (name) =>
        Effect.suspend(() => {
          const done = removeAccount(name)
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

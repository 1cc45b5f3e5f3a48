/**
 * The waiting path of `WorkerPool.get` / `use`: a caller that found no idle
 * worker (`core.take()` returned nothing) queues a `FiberWaiter` and its
 * fiber suspends until the core hands it a worker or fails it.
 *
 * Guarantees: a hand-off resumes the waiting fiber straight into what comes
 * next (for `use`, the caller's own effect) with no continuation built by the
 * pool; at most `MAX_NESTED_RESUMES` hand-offs resume fibers inside each
 * other, deeper ones resume through a yield, so a long queue of quick leases
 * cannot overflow the stack. A fiber interrupted while queued leaves the
 * queue at once; one interrupted just as a worker arrived passes the worker
 * on. The waiting fiber writes its own queue and hand-off lines (its logger,
 * level, annotations and span apply) and owns its `WorkerPool.acquire` span,
 * made only when the fiber has a tracer that records. Nothing here runs for
 * an acquire served by an idle worker.
 *
 * @internal
 */
import { type Cause, type Clock, Effect, Exit, Fiber, LogLevel, References, type Tracer } from "effect"
import { AccountRemovedError } from "../errors.ts"
import { type Account, type PoolCore, type Slot, Waiter, type WaiterFailure } from "./core.ts"
import type { PoolError } from "./poolTypes.ts"
import { isTraced } from "./tracing.ts"

/**
 * How many hand-offs may resume their fibers synchronously inside each other.
 * A release resumes the next waiter's fiber at once, and that fiber may
 * release again before returning: past this depth the resume is scheduled
 * instead, so a long queue of quick leases cannot overflow the stack.
 */
const MAX_NESTED_RESUMES = 32
let nestedResumes = 0

/** What a pool's fiber waiters need of it to log and trace their wait. */
export interface WaitingRoom {
  readonly clock: Clock.Clock
  /** A Debug line with the pool's annotations, in the fiber that runs it (under `span` when given). */
  readonly line: (message: string, fields: Record<string, unknown>, span?: Tracer.Span) => Effect.Effect<void>
}

/**
 * A waiter that is a fiber suspended in `Effect.callback`. It resumes the
 * fiber straight into what comes next (for `use`, the caller's own effect
 * `use(worker)`; for `get`, the slot), so a hand-off builds no continuation of
 * its own.
 *
 * Its fiber logs its own queueing and hand-off (so the caller's logger, level,
 * annotations and span apply), and owns its `WorkerPool.acquire` span; the
 * pool's driver hooks only record the queue lengths on it.
 */
export class FiberWaiter<W, A, E> extends Waiter<W> {
  resume: ((effect: Effect.Effect<A, E>) => void) | undefined = undefined
  /** What the fiber resumes with when the waiter settled before the fiber suspended. */
  settledWith: Effect.Effect<A, E> | undefined = undefined
  readonly room: WaitingRoom
  /** `use`'s function of the worker, or `undefined` for `get` (then `A` is the `Slot`). */
  readonly use: ((worker: W) => Effect.Effect<A, E, any>) | undefined
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
  constructor(room: WaitingRoom, use: ((worker: W) => Effect.Effect<A, E, any>) | undefined) {
    super()
    this.room = room
    this.use = use
  }
  /** Driver hook: it joined the queue, `queued` long. */
  joined(queued: number): void {
    this.queuedAtEnqueue = queued
    this.span?.attribute("queued", queued)
  }
  succeed(slot: Slot<W>, waitedMs: number): void {
    this.slot = slot
    this.lease = slot.lease
    let next = this.use === undefined ? Effect.succeed(slot as A) : useWorker(this.use, slot.worker)
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

/** What `use`'s fiber resumes with: `f` only builds that effect, and a throw becomes the fiber's defect. */
const useWorker = <W, A, E>(f: (worker: W) => Effect.Effect<A, E, any>, worker: W): Effect.Effect<A, E> => {
  try {
    return f(worker) as Effect.Effect<A, E>
  } catch (defect) {
    return Effect.die(defect)
  }
}

/** The waiting path of one pool's `get` and `use`. */
export interface Waiting<W, E> {
  /** Waits in the queue for a worker, for `get`; `restore` is the caller's interruptibility. */
  readonly waitForSlot: (
    restore: <A, E1, R1>(effect: Effect.Effect<A, E1, R1>) => Effect.Effect<A, E1, R1>,
    timeout: number,
    account: Account<W>,
    key: string | undefined
  ) => Effect.Effect<Slot<W>, E | PoolError>
  /**
   * Waits in the queue for a worker, then runs `f` with it and releases it
   * however `f` ends, for `use`.
   */
  readonly useQueued: <A, E2, R2>(
    restore: <A1, E1, R1>(effect: Effect.Effect<A1, E1, R1>) => Effect.Effect<A1, E1, R1>,
    f: (worker: W) => Effect.Effect<A, E2, R2>,
    timeout: number,
    account: Account<W>,
    key: string | undefined
  ) => Effect.Effect<A, E | E2 | PoolError, R2>
}

/**
 * The waiting path of a pool: its waiters log through `room` and trace under
 * `WorkerPool.acquire` spans made with `acquireSpan` (the pool's attributes).
 */
export const makeWaiting = <W, E>(
  core: PoolCore<W>,
  room: WaitingRoom,
  acquireSpan: Tracer.SpanOptions
): Waiting<W, E> => {
  type Restore = <A1, E1, R1>(effect: Effect.Effect<A1, E1, R1>) => Effect.Effect<A1, E1, R1>

  /**
   * Waits in the queue (after `core.take()` found nothing), in the caller's
   * fiber: `wait` queues `waiter` and returns what the fiber runs until it
   * is served, and `wait` is run under a `WorkerPool.acquire` span when the
   * fiber has a tracer. Only the waiting path pays for any of this. `wait` is
   * one function per pool, given its arguments here, so an untraced wait
   * builds no closure for it.
   */
  const queued = <Wt extends FiberWaiter<W, any, any>, A, E1, R1>(
    waiter: Wt,
    restore: Restore,
    timeout: number,
    account: Account<W>,
    wait: (waiter: Wt, restore: Restore, timeout: number, account: Account<W>) => Effect.Effect<A, E1, R1>
  ): Effect.Effect<A, E1, R1> => {
    const fiber = Fiber.getCurrent()!
    waiter.debug = !LogLevel.isGreaterThan(fiber.cache.minimumLogLevel, "Debug")
    if (!isTraced(fiber)) return wait(waiter, restore, timeout, account)
    return Effect.useSpan("WorkerPool.acquire", acquireSpan, (span) => {
      waiter.span = span
      waiter.spanTiming = fiber.getRef(References.TracerTimingEnabled)
      return wait(waiter, restore, timeout, account)
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

  /** `get`'s wait: until the waiter has a worker, for the caller to lease in its scope. */
  const waitGet = (
    waiter: FiberWaiter<W, Slot<W>, E | PoolError>,
    restore: Restore,
    timeout: number,
    account: Account<W>
  ): Effect.Effect<Slot<W>, E | PoolError> =>
    Effect.onInterrupt(
      restore(enqueue(waiter, timeout, account)),
      // Interrupted while waiting: leave the queue. Interrupted just as a
      // worker arrived: pass that worker on to the next waiter.
      () =>
        Effect.sync(() => {
          if (core.cancel(waiter)) waiter.interrupted()
          else if (waiter.slot !== undefined) core.release(waiter.slot, waiter.lease)
        })
    )

  /**
   * `use`'s wait and lease: one exit handler covers every way out: `f` ended
   * (release), interrupted while queued (leave the queue), or interrupted
   * just as a worker arrived (pass it on to the next waiter).
   */
  const waitUse = (
    waiter: FiberWaiter<W, any, any>,
    restore: Restore,
    timeout: number,
    account: Account<W>
  ): Effect.Effect<any, any, any> =>
    Effect.onExit(restore(enqueue(waiter, timeout, account)), () => {
      if (waiter.slot !== undefined) core.release(waiter.slot, waiter.lease)
      else if (core.cancel(waiter)) waiter.interrupted()
      return Effect.void
    })

  const waitForSlot: Waiting<W, E>["waitForSlot"] = (restore, timeout, account, key) => {
    const waiter = new FiberWaiter<W, Slot<W>, E | PoolError>(room, undefined)
    waiter.key = key
    return queued(waiter, restore, timeout, account, waitGet)
  }

  const useQueued = <A, E2, R2>(
    restore: Restore,
    f: (worker: W) => Effect.Effect<A, E2, R2>,
    timeout: number,
    account: Account<W>,
    key: string | undefined
  ): Effect.Effect<A, E | E2 | PoolError, R2> => {
    const waiter = new FiberWaiter<W, A, E | E2 | PoolError>(room, f as (worker: W) => Effect.Effect<A, E2, any>)
    waiter.key = key
    return queued(waiter, restore, timeout, account, waitUse)
  }

  return { waitForSlot, useQueued }
}

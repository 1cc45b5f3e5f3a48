/**
 * Random schedules over a `WorkerPool`, for property tests: a generated pool
 * configuration and a list of steps (acquires, releases, interruptions,
 * invalidations, failing and gated creates, clock advances, shutdown), an
 * interpreter that runs them under the `TestClock` against a model of who
 * waits and who holds which worker, and the invariants checked along the way.
 *
 * Every invariant belongs to a category; a property test names the categories
 * it asserts, and the first violation in one of them stops the schedule with
 * the violation and a trace of the steps and the pool's counts.
 */
import { Arbitrary, Cause, Clock, Deferred, Duration, Effect, Exit, Fiber, Scheduler, Schema, Scope } from "effect"
import { TestClock } from "effect/testing"
import { AcquireTimeoutError, PoolShutdownError, QueueFullError } from "../../src/errors.ts"
import type { Slot, Waiter, WaiterFailure } from "../../src/internal/core.ts"
import { CoreKey, type Internals } from "../../src/internal/poolInternals.ts"
import * as WorkerPool from "../../src/WorkerPool.ts"
import { countingScheduler, type SchedulerCounter, watch as watchFiber } from "./failFast.ts"
import { CreateFailed, makeResources, type Resource } from "./resources.ts"

// -----------------------------------------------------------------------------
// What is generated
// -----------------------------------------------------------------------------

const Int = (minimum: number, maximum: number) => Schema.Int.check(Schema.isBetween({ minimum, maximum }))

/** The pool's options and when (and how) the schedule shuts it down. */
export const Config = Schema.Struct({
  size: Int(1, 4),
  /** Clamped to `size`. */
  minIdle: Schema.optional(Int(0, 4)),
  /** 0 disables idle retirement. */
  idleTimeout: Schema.Literals([0, 100, 1000, 60_000]),
  acquireTimeout: Schema.optional(Schema.Literals([50, 500, 5000])),
  maxQueue: Schema.optional(Schema.Literals([0, 1, 2, 5])),
  shutdownTimeout: Schema.Literals([1000, 30_000]),
  /** Shut down before this step (after it, in the same tick, when `racyShutdown`); at the end when past the last step. */
  shutdownAt: Schema.optional(Int(0, 40)),
  racyShutdown: Schema.Boolean,
  /**
   * Fibers yield to the scheduler after this many operations (default: Effect's budget, so a waiter handed a
   * worker runs on at once, inside the pool's call). Small budgets make resumed fibers continue later, which
   * opens windows such as a worker handed to a waiter that is interrupted before it runs. (At least 3: with
   * 2, a resumed fiber would yield again before its first own operation, forever.)
   */
  opsBeforeYield: Schema.optional(Schema.Literals([3, 4, 5, 6, 7, 8, 10, 11, 12, 13, 16, 24])),
  /** At the end, let `shutdownTimeout` finalize leases still held instead of releasing them first. */
  endByTimeout: Schema.Boolean
})
export type Config = typeof Config.Type

/** Picks the n-th (modulo) candidate of a step; candidates are ordered oldest first. */
const Pick = Int(0, 7)

/**
 * The pool's duration for a limit of the model, in milliseconds with 0 for no
 * limit (as the core has it): `Duration.infinity` for 0.
 */
const limitOf = (ms: number): Duration.Duration => (ms === 0 ? Duration.infinity : Duration.millis(ms))

/** Per-acquire timeout in milliseconds ("pool": `get`, with the pool's `acquireTimeout`; 0: no limit). */
const AcquireTimeout = Schema.Literals(["pool", 0, 50, 500, 5000])
type AcquireTimeout = typeof AcquireTimeout.Type

export const Step = Schema.Union([
  /**
   * Fork one acquire that holds its lease until released or interrupted; with `release`, also end a held
   * lease in the same tick, so that the newcomer's acquire and the release interleave.
   */
  Schema.TaggedStruct("Acquire", { timeout: AcquireTimeout, release: Schema.optional(Pick) }),
  /** Fork one acquire whose create (if it starts one) waits for a gate of its own, so creates can finish out of order. */
  Schema.TaggedStruct("AcquireGated", { timeout: AcquireTimeout }),
  /** Fork several acquires in the same tick (and end a held lease, with `release`). */
  Schema.TaggedStruct("Burst", { count: Int(2, 4), timeout: AcquireTimeout, release: Schema.optional(Pick) }),
  /** End a held lease. */
  Schema.TaggedStruct("Release", { pick: Pick }),
  /** End up to `count` held leases (oldest first), advancing the clock by `gapMs` between them. */
  Schema.TaggedStruct("StaggeredRelease", { count: Int(2, 4), gapMs: Schema.Literals([1, 2]) }),
  /** Interrupt a waiting or holding acquire (and wait for it to end). */
  Schema.TaggedStruct("Interrupt", { pick: Pick }),
  /**
   * Interrupt the oldest waiter and release a lease in the same tick. "releaseFirst" is the hand-off race:
   * the worker is handed to the waiter, whose fiber is interrupted before it runs and must pass it on.
   */
  Schema.TaggedStruct("InterruptHeadAndRelease", { pick: Pick, order: Schema.Literals(["releaseFirst", "interruptFirst"]) }),
  /** Invalidate a live worker, idle or leased. */
  Schema.TaggedStruct("Invalidate", { pick: Pick }),
  /** The next `count` create attempts fail (50: creates keep failing for a while). */
  Schema.TaggedStruct("FailCreates", { count: Schema.Literals([1, 3, 50]) }),
  /** Creates started from now on wait until this (new) gate opens. */
  Schema.TaggedStruct("CloseGate", {}),
  /** Open one of the closed gates (oldest first), so creates can complete out of order. */
  Schema.TaggedStruct("OpenGate", { pick: Pick }),
  /** Advance the TestClock (past acquire timeouts, idle timeouts, the shutdown timeout). */
  Schema.TaggedStruct("Advance", { ms: Schema.Literals([1, 49, 50, 100, 500, 1000, 5000, 30_000, 60_000]) })
])
export type Step = typeof Step.Type

export const arbitraries = {
  config: Arbitrary.schema(Config),
  steps: Arbitrary.array(Arbitrary.schema(Step), { maxLength: 40 })
}

/**
 * Schedules aimed at the idle lifecycle: only leases, releases, invalidations
 * and small clock steps around the idle timeout, so that workers become idle
 * at nearby times and retire (or must not) one by one.
 */
const IdleConfig = Schema.Struct({
  size: Int(1, 4),
  minIdle: Schema.optional(Int(0, 3)),
  idleTimeout: Schema.Literals([100, 1000]),
  opsBeforeYield: Config.fields.opsBeforeYield
})
const IdleStep = Schema.Union([
  Schema.TaggedStruct("Acquire", { timeout: Schema.Literal("pool") }),
  Schema.TaggedStruct("Burst", { count: Int(2, 4), timeout: Schema.Literal("pool") }),
  Schema.TaggedStruct("Release", { pick: Pick }),
  Schema.TaggedStruct("StaggeredRelease", { count: Int(2, 4), gapMs: Schema.Literals([1, 2]) }),
  Schema.TaggedStruct("Invalidate", { pick: Pick }),
  Schema.TaggedStruct("Advance", { ms: Schema.Literals([1, 2, 50, 98, 99, 100, 101, 500, 999, 1000]) })
])
export const idleArbitraries = {
  config: Arbitrary.map(Arbitrary.schema(IdleConfig), (c): Config => ({
    ...c,
    shutdownTimeout: 1000,
    racyShutdown: false,
    endByTimeout: false
  })),
  steps: Arbitrary.array(Arbitrary.schema(IdleStep), { maxLength: 40 }) as Arbitrary.Arbitrary<Array<Step>>
}

// -----------------------------------------------------------------------------
// Invariants
// -----------------------------------------------------------------------------

export type Category =
  /** Waiters are served in arrival order, no barging, a release goes to the oldest waiter. */
  | "fifo"
  /** At most `size` workers, one holder per worker, no idle worker while anyone waits, no needless wait. */
  | "capacity"
  /** Every acquire settles exactly once, with a legitimate outcome; the queue length matches the model. */
  | "settle"
  /** Shutdown fails waiters with PoolShutdownError, finalizes every worker exactly once and completes. */
  | "shutdown"
  /** The pool's counters agree with each other and with the resources. */
  | "accounting"
  /** Idle workers retire when due and only then, never below minIdle. */
  | "idle"

export const allCategories: ReadonlyArray<Category> = ["fifo", "capacity", "settle", "shutdown", "accounting", "idle"]

type Status = "waiting" | "holding" | "released" | "failed" | "interrupted"

/**
 * Where an acquire stands in the pool's core, observed synchronously at the
 * core's own calls (the acquire's fiber may report its outcome later, after a
 * yield): not yet arrived, between `take` finding nothing and `enqueue`, in the
 * queue, handed a worker, or gone (failed or cancelled).
 */
type CoreState = "pending" | "arriving" | "queued" | "served" | "left"

/** One forked acquire. */
interface Rec {
  readonly id: number
  /** Effective acquire timeout in ms, 0 for none. */
  readonly timeout: number
  readonly enqueuedAt: number
  readonly afterShutdown: boolean
  readonly scope: Scope.Closeable
  readonly done: Deferred.Deferred<void>
  fiber: Fiber.Fiber<void> | undefined
  status: Status
  /** How many times the acquire reported an outcome (must end at exactly 1). */
  outcomes: number
  /** Interrupted by the schedule while the core had not served it: it must not get a worker. */
  interruptRequested: boolean
  /** Interrupted by the schedule at all. */
  interruptSent: boolean
  /** The worker the core handed it. */
  coreWorker: number | undefined
  worker: number | undefined
  error: unknown
  /** Order in which acquires obtained their worker. */
  servedSeq: number | undefined
  core: CoreState
  /** Order in which acquires joined the pool's queue (undefined when served without queueing). */
  enqueueSeq: number | undefined
  /** Waiters still queued ahead of it when the core failed it. */
  aheadAtFail: number | undefined
  /** Order in which the core handed out workers. */
  coreServeSeq: number | undefined
}

const describeError = (e: unknown): string =>
  e instanceof AcquireTimeoutError
    ? `AcquireTimeoutError(waited ${e.waitedMs}, ahead ${e.queuedAhead})`
    : e instanceof CreateFailed
    ? `CreateFailed(#${e.attempt})`
    : e instanceof Error
    ? e.name
    : String(e)

/**
 * Runs one schedule and checks the invariants of `watch`. Fails (with a
 * trace) at the first violation in a watched category, and fails fast (with
 * the trace so far) when the run blocks, whatever the categories: every wait
 * of the interpreter is bounded in scheduler rounds, and the run as a whole is
 * watched (helpers/failFast.ts), so a broken pool makes the property fail and
 * shrink instead of hanging.
 */
export const runSchedule = (config: Config, steps: ReadonlyArray<Step>, watch: ReadonlyArray<Category>) =>
  Effect.gen(function*() {
    const { counter, scheduler } = countingScheduler(yield* Scheduler.Scheduler, config.opsBeforeYield)
    const trace: Array<string> = []
    const run = yield* Effect.forkDetach(
      Effect.provideService(runScheduleWith(config, steps, watch, counter, trace), Scheduler.Scheduler, scheduler)
    )
    const watched = yield* watchFiber(run, counter, 10_000)
    if (watched._tag === "Done") return yield* watched.exit
    run.interruptUnsafe()
    return yield* Effect.die(
      new Error(
        `[blocked] the schedule ${
          watched._tag === "Blocked" ? "is blocked: no fiber can run and it has not ended" : `ran ${watched.ms} ms without ending`
        }\nconfig: ${JSON.stringify(config)}\ntrace (last 60 lines):\n${trace.slice(-60).join("\n")}`
      )
    )
  })

const runScheduleWith = (
  config: Config,
  steps: ReadonlyArray<Step>,
  watch: ReadonlyArray<Category>,
  counter: SchedulerCounter,
  trace: Array<string>
) =>
  Effect.gen(function*() {
    const watched = new Set(watch)
    const violations: Array<string> = []
    const violate = (category: Category, message: string) => {
      if (watched.has(category)) violations.push(`[${category}] ${message}`)
    }

    const size = config.size
    const minIdle = Math.min(config.minIdle ?? 0, size)
    const idleTimeout = config.idleTimeout
    const maxQueue = config.maxQueue
    const res = makeResources()
    const objects = new Map<number, Resource>()
    const poolScope = yield* Scope.make()
    const pool = yield* Scope.provide(
      WorkerPool.make({
        acquire: Effect.tap(res.acquire, (r) => Effect.sync(() => void objects.set(r.id, r))),
        size,
        minIdle,
        idleTimeout: limitOf(idleTimeout),
        ...(config.acquireTimeout === undefined ? {} : { acquireTimeout: limitOf(config.acquireTimeout) }),
        ...(maxQueue === undefined ? {} : { maxQueue }),
        shutdownTimeout: Duration.millis(config.shutdownTimeout)
      }),
      poolScope
    )

    const recs: Array<Rec> = []
    /** Worker id -> the acquire holding it. */
    const holders = new Map<number, Rec>()
    const invalidated = new Set<number>()
    /** Every create attempt ever made to fail (`res.failing` is cleared at the end). */
    const failingAttempts = new Set<number>()
    /** When each idle worker (as the model sees it) became idle. */
    const idleSince = new Map<number, number>()
    let idleBefore = new Set<number>()
    let finalizedSeen = 0
    // minIdle: a warm-up create that fails is retried at the next take, not in a loop; until then the pool may be
    // short of warm workers.
    let createFailuresSeen = 0
    let createFailedRecsSeen = 0
    let warmCheckSuspended = false
    let tookSinceCheck = false
    let servedSeq = 0
    let shutdownStartedAt: number | undefined = undefined
    let closing: Fiber.Fiber<void> | undefined = undefined
    // For the summary.
    const waitedIds = new Set<number>()
    let handOffRaces = 0
    let retired = 0
    let shutdownMid = false
    let leasesFinalizedByTimeout = 0

    /** Gates closed by CloseGate or AcquireGated; each holds the creates started while it was the current one. */
    const gates: Array<Deferred.Deferred<void>> = []
    const opened = new Set<Deferred.Deferred<void>>()
    const openGate = (gate: Deferred.Deferred<void>) =>
      Effect.suspend(() => {
        opened.add(gate)
        if (res.gate === gate) res.gate = undefined
        return Deferred.succeed(gate, undefined)
      })

    /** Lets every fiber run until it blocks. */
    const settle = Effect.gen(function*() {
      let rounds = 0
      do {
        yield* Effect.yieldNow
        if (++rounds > 10_000) {
          violations.push(`[settle] the fibers did not settle after ${rounds} scheduler rounds`)
          return
        }
      } while (counter.pending > 0)
    })
    const now = () => Clock.currentTimeMillis
    const waiting = () => recs.filter((r) => r.status === "waiting")
    const holding = () => recs.filter((r) => r.status === "holding")
    const isFinalized = (w: number) => res.finalized.includes(w)
    const alive = () => res.created.filter((w) => !isFinalized(w))
    const shutdownTimedOut = (t: number) =>
      shutdownStartedAt !== undefined && t >= shutdownStartedAt + config.shutdownTimeout

    // --- what the core does, observed at its calls ----------------------------------
    //
    // An acquire's fiber calls `take` and then, when it found nothing, `enqueue`; the core later calls the
    // waiter's `succeed` or `fail`, or the fiber's interruption calls `cancel`. Wrapping those (on this pool's
    // core only) tells exactly when each acquire arrived, was served or left, whatever the fibers do after.

    const byFiber = new Map<Fiber.Fiber<unknown, unknown>, Rec>()
    const byWaiter = new Map<Waiter<Resource>, Rec>()
    let enqueues = 0
    let coreServes = 0
    const queuedAhead = (rec: Rec) =>
      recs.filter((r) => r !== rec && r.core === "queued" && r.enqueueSeq! < rec.enqueueSeq!).length
    const coreServed = (rec: Rec, slot: Slot<Resource>) => {
      // FIFO and no barging: whoever is served, nobody queued before it may still be waiting.
      for (const a of recs) {
        if (a !== rec && a.core === "queued" && (rec.enqueueSeq === undefined || a.enqueueSeq! < rec.enqueueSeq)) {
          violate(
            "fifo",
            `#${rec.id} was handed worker ${slot.worker.id} ` +
              (rec.enqueueSeq === undefined ? "without queueing" : "from the queue") +
              ` while #${a.id}, queued before it, still waited`
          )
        }
      }
      rec.core = "served"
      rec.coreWorker = slot.worker.id
      rec.coreServeSeq = ++coreServes
    }
    const core = (pool as unknown as { readonly [CoreKey]: Internals<Resource> })[CoreKey].core
    const currentRec = () => {
      const fiber = Fiber.getCurrent()
      return fiber === undefined ? undefined : byFiber.get(fiber)
    }
    const coreTake = core.take
    core.take = function(this: typeof core, ...args: Parameters<typeof coreTake>) {
      const slot = coreTake.apply(this, args)
      const rec = currentRec()
      if (slot !== undefined) tookSinceCheck = true
      if (rec !== undefined && rec.core === "pending") {
        if (slot !== undefined) coreServed(rec, slot)
        else rec.core = "arriving"
      }
      return slot
    }
    const coreEnqueue = core.enqueue
    core.enqueue = function(this: typeof core, waiter: Waiter<Resource>, ...rest: Array<any>) {
      const rec = currentRec()
      if (rec !== undefined) {
        rec.core = "queued"
        rec.enqueueSeq = ++enqueues
        byWaiter.set(waiter, rec)
        const succeed = waiter.succeed
        const fail = waiter.fail
        waiter.succeed = function(this: Waiter<Resource>, slot: Slot<Resource>, waitedMs: number) {
          coreServed(rec, slot)
          return succeed.call(this, slot, waitedMs)
        }
        waiter.fail = function(this: Waiter<Resource>, failure: WaiterFailure) {
          rec.aheadAtFail = queuedAhead(rec)
          rec.core = "left"
          return fail.call(this, failure)
        }
      }
      return coreEnqueue.call(this, waiter, ...rest)
    }
    /** The acquires neither served nor gone when the core shut down: each must fail with PoolShutdownError. */
    let unservedAtShutdown: ReadonlyArray<Rec> | undefined = undefined
    const coreShutdown = core.shutdown
    core.shutdown = function(this: typeof core) {
      if (!this.closed) {
        unservedAtShutdown = recs.filter((r) => r.core !== "served" && r.core !== "left" && !r.interruptRequested)
        trace.push(`  core shuts down (unserved: ${unservedAtShutdown.map((r) => `#${r.id}`).join(", ") || "none"})`)
      }
      return coreShutdown.call(this)
    }
    /** When the core's timer retired each worker (idle before the timer, not after). */
    const retiredAt = new Map<number, number>()
    const clock = yield* Clock.Clock
    const coreOnTimer = core.onTimer
    core.onTimer = function(this: typeof core) {
      const idle = [...this.slots.values()].filter((slot) => slot.state === "idle")
      coreOnTimer.call(this)
      const t = clock.currentTimeMillisUnsafe()
      for (const slot of idle) if (slot.state !== "idle") retiredAt.set(slot.worker.id, t)
    }
    // A released worker that stays in service goes straight to the oldest waiter (without idling or a create).
    const coreRelease = core.release
    core.release = function(this: typeof core, slot: Slot<Resource>, lease?: number) {
      const head = this.oldestWaiter()
      const current = slot.state === "leased" && (lease === undefined || lease === slot.lease)
      const handsOff = current && !slot.invalid && !this.closed && head !== undefined
      const released = lease === undefined ? coreRelease.call(this, slot) : coreRelease.call(this, slot, lease)
      const rec = head === undefined ? undefined : byWaiter.get(head)
      if (handsOff && rec !== undefined && rec.coreWorker !== slot.worker.id) {
        violate(
          "fifo",
          `worker ${slot.worker.id} released while #${rec.id} was the oldest waiter, but #${rec.id} ` +
            (rec.coreWorker === undefined ? `is ${rec.core}` : `was handed worker ${rec.coreWorker}`)
        )
      }
      return released
    }
    const coreCancel = core.cancel
    core.cancel = function(this: typeof core, waiter: Waiter<Resource>) {
      const cancelled = coreCancel.call(this, waiter)
      const rec = byWaiter.get(waiter)
      if (cancelled && rec !== undefined) rec.core = "left"
      return cancelled
    }

    // --- the acquires -----------------------------------------------------------

    const onAcquired = (rec: Rec, exit: Exit.Exit<Resource, unknown>) => {
      rec.outcomes++
      if (rec.outcomes > 1) violate("settle", `#${rec.id} settled ${rec.outcomes} times`)
      if (Exit.isSuccess(exit)) {
        const w = exit.value.id
        if (rec.interruptRequested) violate("settle", `#${rec.id} was interrupted while waiting but received worker ${w}`)
        if (rec.afterShutdown) violate("shutdown", `#${rec.id} started after shutdown but received worker ${w}`)
        if (rec.core !== "served") violate("settle", `#${rec.id} obtained worker ${w} but the pool never handed it one`)
        const other = holders.get(w)
        if (other !== undefined) violate("capacity", `worker ${w} leased to #${rec.id} while #${other.id} holds it`)
        if (invalidated.has(w)) violate("capacity", `invalidated worker ${w} leased again to #${rec.id}`)
        if (isFinalized(w)) violate("capacity", `finalized worker ${w} leased to #${rec.id}`)
        rec.status = "holding"
        rec.worker = w
        rec.servedSeq = ++servedSeq
        holders.set(w, rec)
        return
      }
      const cause = exit.cause
      if (Cause.hasInterrupts(cause) && !Cause.hasFails(cause)) {
        rec.status = "interrupted"
        if (!rec.interruptSent) violate("settle", `#${rec.id} was interrupted without being asked to`)
        return
      }
      rec.status = "failed"
      const error = Cause.squash(cause)
      rec.error = error
      if (error instanceof PoolShutdownError) {
        if (shutdownStartedAt === undefined) violate("shutdown", `#${rec.id} failed with PoolShutdownError before shutdown`)
      } else if (rec.afterShutdown) {
        violate("shutdown", `#${rec.id} started after shutdown failed with ${describeError(error)}`)
      } else if (error instanceof AcquireTimeoutError) {
        if (rec.timeout === 0) violate("settle", `#${rec.id} has no timeout but failed with ${describeError(error)}`)
        if (error.waitedMs !== rec.timeout) {
          violate("settle", `#${rec.id} with timeout ${rec.timeout} ms failed with ${describeError(error)}`)
        }
        if (error.queuedAhead !== rec.aheadAtFail) {
          violate("settle", `#${rec.id}: ${describeError(error)} but ${rec.aheadAtFail} waiter(s) were ahead`)
        }
      } else if (error instanceof QueueFullError) {
        if (maxQueue === undefined) violate("settle", `#${rec.id} failed with QueueFullError without maxQueue`)
      } else if (error instanceof CreateFailed) {
        if (!failingAttempts.has(error.attempt)) violate("settle", `#${rec.id} failed with ${describeError(error)}, not a failing attempt`)
      } else {
        violate("settle", `#${rec.id} failed with an unexpected ${describeError(error)}: ${Cause.pretty(cause)}`)
      }
    }

    /** Ends a lease in the model; the caller closes the lease's scope right after. */
    const endHold = (rec: Rec) => {
      if (rec.worker !== undefined && holders.get(rec.worker) === rec) holders.delete(rec.worker)
      rec.status = "released"
    }

    const startAcquire = (timeout: AcquireTimeout) =>
      Effect.gen(function*() {
        const rec: Rec = {
          id: recs.length,
          timeout: timeout === "pool" ? (config.acquireTimeout ?? 0) : timeout,
          enqueuedAt: yield* now(),
          afterShutdown: shutdownStartedAt !== undefined,
          scope: yield* Scope.make(),
          done: yield* Deferred.make<void>(),
          fiber: undefined,
          status: "waiting",
          outcomes: 0,
          interruptRequested: false,
          interruptSent: false,
          coreWorker: undefined,
          worker: undefined,
          error: undefined,
          servedSeq: undefined,
          core: "pending",
          enqueueSeq: undefined,
          aheadAtFail: undefined,
          coreServeSeq: undefined
        }
        recs.push(rec)
        const get = timeout === "pool" ? pool.get : pool.getWith({ timeout: limitOf(timeout) })
        const body = Effect.uninterruptibleMask((restore) =>
          Effect.flatMap(Effect.exit(restore(Scope.provide(get, rec.scope))), (exit) => {
            onAcquired(rec, exit)
            return Exit.isSuccess(exit) ? restore(Deferred.await(rec.done)) : Effect.void
          })
        ).pipe(
          Effect.ensuring(Effect.suspend(() => {
            // Interrupted while holding: the lease ends with the fiber.
            if (rec.status === "holding") endHold(rec)
            return Scope.close(rec.scope, Exit.void)
          }))
        )
        // The fiber registers itself before it reaches the pool (the forking fiber may yield before it could).
        const register = Effect.sync(() => void byFiber.set(Fiber.getCurrent()!, rec))
        rec.fiber = yield* Effect.forkChild(Effect.andThen(register, body))
        return rec
      })

    /** Releases a held lease from the test fiber, synchronously. */
    const release = (rec: Rec) =>
      Effect.gen(function*() {
        endHold(rec)
        yield* Scope.close(rec.scope, Exit.void)
        yield* Deferred.succeed(rec.done, undefined)
      })

    // --- shutdown ---------------------------------------------------------------

    const startShutdown = Effect.gen(function*() {
      shutdownStartedAt = yield* now()
      trace.push(`  shutdown`)
      // Detached: a run that fails while shutdown still waits (for a lease that a broken pool lost) must end now,
      // not wait for the interruption of an uninterruptible finalizer on a clock nobody advances any more.
      closing = yield* Effect.forkDetach(Scope.close(poolScope, Exit.void), { startImmediately: true })
    })

    const checkShutdownOutcomes = () => {
      if (unservedAtShutdown === undefined) return violate("shutdown", `closing the pool's scope did not shut the core down`)
      for (const r of unservedAtShutdown) {
        if (r.status !== "failed" || !(r.error instanceof PoolShutdownError)) {
          violate(
            "shutdown",
            `#${r.id} was not served at shutdown but ended ${r.status}` +
              (r.status === "failed" ? ` with ${describeError(r.error)}` : "")
          )
        }
      }
    }

    // --- invariants after every step ------------------------------------------------

    const statsLine = (s: WorkerPool.Stats) =>
      `busy ${s.busy} idle ${s.idle} creating ${s.creating} queued ${s.queued} finalizing ${s.finalizing} ` +
      `created ${s.created} finalized ${s.finalized}${s.closed ? " closed" : ""}`

    const checkInvariants = (step: Step | undefined, idleAtStart: number) =>
      Effect.gen(function*() {
        const s = yield* pool.stats
        const t = yield* now()
        trace.push(`  t=${t} ${statsLine(s)}`)

        // Newly finalized workers must be explained: invalidated, shut down, or retired when due.
        const newlyFinalized = res.finalized.slice(finalizedSeen)
        finalizedSeen = res.finalized.length
        let retiredNow = 0
        for (const w of newlyFinalized) {
          const holder = holders.get(w)
          if (holder !== undefined) {
            leasesFinalizedByTimeout++
            if (!shutdownTimedOut(t)) violate("capacity", `worker ${w} finalized while #${holder.id} holds it`)
          } else if (!invalidated.has(w) && shutdownStartedAt === undefined) {
            retiredNow++
            retired++
            const since = idleSince.get(w)
            const at = retiredAt.get(w)
            if (idleTimeout === 0) violate("idle", `worker ${w} retired although idleTimeout is 0`)
            else if (at === undefined) violate("idle", `worker ${w} finalized, neither invalidated nor retired by the timer`)
            else if (!idleBefore.has(w) || since === undefined) violate("idle", `worker ${w} retired without having been idle`)
            else if (since + idleTimeout > at) {
              violate("idle", `worker ${w} retired at ${at}, idle since ${since}, before idleTimeout ${idleTimeout}`)
            }
          }
        }

        // The model of who is idle, and since when.
        const live = alive()
        const heldLive = holding().filter((r) => r.worker !== undefined && !isFinalized(r.worker))
        const idleNow = new Set(live.filter((w) => !holders.has(w)))
        for (const w of idleNow) if (!idleBefore.has(w)) idleSince.set(w, t)
        for (const w of [...idleSince.keys()]) if (!idleNow.has(w)) idleSince.delete(w)
        idleBefore = idleNow

        // capacity
        if (s.busy + s.idle + s.creating > size) violate("capacity", `busy + idle + creating > size ${size}: ${statsLine(s)}`)
        if (heldLive.length > size) violate("capacity", `${heldLive.length} leases held at once, size ${size}`)
        if (s.idle > 0 && s.queued > 0) violate("capacity", `idle workers while acquires wait: ${statsLine(s)}`)
        if (!s.closed && s.queued > s.creating && s.busy + s.idle + s.creating < size) {
          violate("capacity", `acquires wait with no create for them while there is room: ${statsLine(s)}`)
        }

        // settle
        const waitingNow = waiting()
        for (const r of waitingNow) waitedIds.add(r.id)
        if (s.queued !== waitingNow.length) {
          violate("settle", `stats.queued ${s.queued} but ${waitingNow.length} acquire(s) wait: ${waitingNow.map((r) => `#${r.id}`)}`)
        }
        if (step?._tag === "Advance") {
          for (const r of waitingNow) {
            if (r.timeout > 0 && r.enqueuedAt + r.timeout <= t) {
              violate("settle", `#${r.id} still waits at ${t}, past its deadline ${r.enqueuedAt + r.timeout}`)
            }
          }
        }

        // accounting
        if (s.created - s.finalized !== s.workers + s.finalizing) {
          violate("accounting", `created - finalized != workers + finalizing: ${statsLine(s)}`)
        }
        // (A create interrupted by shutdown after its resource was made finalizes it without counting it.)
        if (s.created - s.finalized !== res.created.length - res.finalized.length) {
          violate("accounting", `stats say ${s.created} created / ${s.finalized} finalized, resources ${res.created.length} / ${res.finalized.length}`)
        }
        // (Shutdown may interrupt a create before its first attempt: then it is only a create failure.)
        const attemptsExpected = s.created + s.createFailures + s.creating
        if (shutdownStartedAt === undefined ? res.attempts !== attemptsExpected : res.attempts > attemptsExpected) {
          violate("accounting", `${res.attempts} create attempts but created + createFailures + creating = ${s.created + s.createFailures + s.creating}`)
        }
        if (s.finalizing !== 0) violate("accounting", `a finalization did not complete: ${statsLine(s)}`)
        if (s.busy !== heldLive.length) {
          violate("accounting", `stats.busy ${s.busy} but ${heldLive.length} lease(s) held (a worker was lost or double counted)`)
        }
        if (s.idle !== idleNow.size) violate("accounting", `stats.idle ${s.idle} but ${idleNow.size} live worker(s) unheld`)

        // idle
        if (step?._tag === "Advance" && shutdownStartedAt === undefined && idleTimeout > 0) {
          if (retiredNow > Math.max(0, idleAtStart - minIdle)) {
            violate("idle", `${retiredNow} worker(s) retired with ${idleAtStart} idle and minIdle ${minIdle}`)
          }
          const overdue = [...idleNow].filter((w) => idleSince.get(w)! + idleTimeout <= t)
          if (overdue.length > 0 && s.idle > minIdle) {
            violate("idle", `worker(s) ${overdue} idle for idleTimeout ${idleTimeout} not retired at ${t} (idle ${s.idle}, minIdle ${minIdle})`)
          }
        }

        // minIdle workers are kept warm (made ahead of demand, within size), except after a failed warm-up.
        const createFailedRecs = recs.filter((r) => r.error instanceof CreateFailed).length
        const undelivered = (s.createFailures - createFailuresSeen) - (createFailedRecs - createFailedRecsSeen)
        if (undelivered > 0) warmCheckSuspended = true
        else if (tookSinceCheck) warmCheckSuspended = false
        createFailuresSeen = s.createFailures
        createFailedRecsSeen = createFailedRecs
        tookSinceCheck = false
        if (
          minIdle > 0 && !s.closed && !warmCheckSuspended && s.idle + s.creating - s.queued < minIdle &&
          s.busy + s.idle + s.creating < size
        ) {
          violate("idle", `fewer than minIdle ${minIdle} workers warm (idle or being created) with room to make them: ${statsLine(s)}`)
        }

        // shutdown
        if (shutdownStartedAt !== undefined && closing !== undefined) {
          if (s.queued !== 0 || s.idle !== 0) violate("shutdown", `after shutdown: ${statsLine(s)}`)
          const done = closing.pollUnsafe() !== undefined
          const mayFinish = (heldLive.length === 0 && s.creating === 0) || shutdownTimedOut(t)
          if (done && heldLive.length > 0) violate("shutdown", `shutdown completed while ${heldLive.length} lease(s) are held`)
          if (!done && mayFinish) violate("shutdown", `shutdown has not completed with nothing held (${statsLine(s)})`)
        }
      })

    const failIfViolated = () => {
      if (violations.length > 0) {
        throw new Error(
          `${violations.join("\n")}\nconfig: ${JSON.stringify(config)}\ntrace (last 60 lines):\n${trace.slice(-60).join("\n")}`
        )
      }
    }

    // --- the steps --------------------------------------------------------------

    const runStep = (step: Step) =>
      Effect.gen(function*() {
        switch (step._tag) {
          case "Acquire": {
            if (step.release !== undefined) {
              const held = holding()
              const rec = yield* startAcquire(step.timeout)
              if (held.length === 0) return void trace.push(`#${rec.id} acquire (timeout ${step.timeout}), nothing held`)
              const holder = held[step.release % held.length]!
              trace.push(`#${rec.id} acquire (timeout ${step.timeout}) while #${holder.id} releases worker ${holder.worker}`)
              yield* release(holder)
              return undefined
            }
            const s0 = yield* pool.stats
            const rec = yield* startAcquire(step.timeout)
            trace.push(`#${rec.id} acquire (timeout ${step.timeout})`)
            return () => {
              // A single acquire's fate is known from the counts just before it (unless shut down meanwhile).
              if (shutdownStartedAt !== undefined) return
              const takesIdle = s0.idle > 0 && s0.queued === 0
              const full = !takesIdle && s0.busy + s0.idle + s0.creating >= size &&
                s0.queued - s0.creating >= (maxQueue ?? Infinity)
              if ((rec.error instanceof QueueFullError) !== full) {
                violate("settle", `#${rec.id} ${full ? "should have" : "should not have"} been refused (maxQueue ${maxQueue}), counts before: ${statsLine(s0)}; it is ${rec.status}`)
              }
              if (takesIdle && rec.status !== "holding") {
                violate("settle", `#${rec.id} found an idle worker and nobody waiting but is ${rec.status}`)
              }
            }
          }
          case "AcquireGated": {
            const previous = res.gate
            res.gate = yield* Deferred.make<void>()
            gates.push(res.gate)
            const rec = yield* startAcquire(step.timeout)
            trace.push(`#${rec.id} acquire (timeout ${step.timeout}), creates behind gate ${gates.length - 1}`)
            yield* settle
            res.gate = previous
            return undefined
          }
          case "Burst": {
            const held = holding()
            const ids: Array<number> = []
            for (let i = 0; i < step.count; i++) ids.push((yield* startAcquire(step.timeout)).id)
            const holder = step.release === undefined || held.length === 0 ? undefined : held[step.release % held.length]!
            trace.push(
              `#${ids.join(", #")} acquire at once (timeout ${step.timeout})` +
                (holder === undefined ? "" : ` while #${holder.id} releases worker ${holder.worker}`)
            )
            if (holder === undefined) return undefined
            yield* release(holder)
            return undefined
          }
          case "Release": {
            const held = holding()
            if (held.length === 0) return void trace.push(`release: nothing held`)
            const rec = held[step.pick % held.length]!
            trace.push(`#${rec.id} releases worker ${rec.worker}${invalidated.has(rec.worker!) ? " (invalid)" : ""}`)
            yield* release(rec)
            return undefined
          }
          case "StaggeredRelease": {
            const held = holding().slice(0, step.count)
            trace.push(`${held.map((r) => `#${r.id}`).join(", ") || "nobody"} release, ${step.gapMs} ms apart`)
            for (const [i, rec] of held.entries()) {
              if (i > 0) {
                yield* TestClock.adjust(Duration.millis(step.gapMs))
                yield* settle
              }
              yield* release(rec)
              yield* settle
              // Notes when the worker became idle (the model's clock for idle workers is this check).
              if (i < held.length - 1) yield* checkInvariants(undefined, 0)
            }
            return undefined
          }
          case "Interrupt": {
            const candidates = recs.filter((r) => r.status === "waiting" || r.status === "holding")
            if (candidates.length === 0) return void trace.push(`interrupt: nobody waits or holds`)
            const rec = candidates[step.pick % candidates.length]!
            trace.push(`#${rec.id} interrupted while ${rec.status}`)
            rec.interruptSent = true
            if (rec.status === "waiting" && rec.core !== "served") rec.interruptRequested = true
            // Bounded: the fiber must have ended once every fiber has settled.
            rec.fiber!.interruptUnsafe()
            yield* settle
            if (rec.fiber!.pollUnsafe() === undefined) {
              violations.push(`[blocked] #${rec.id} has not ended after its interruption, with every fiber settled`)
            }
            return undefined
          }
          case "InterruptHeadAndRelease": {
            const head = waiting().find((r) => !r.interruptRequested)
            const held = holding()
            const holder = held.length === 0 ? undefined : held[step.pick % held.length]!
            const interruptText = head === undefined ? "nobody waits" : `#${head.id} interrupted`
            const releaseText = holder === undefined ? "nothing held" : `#${holder.id} releases worker ${holder.worker}`
            trace.push(
              step.order === "interruptFirst"
                ? `${interruptText}, then ${releaseText}`
                : `${releaseText}, then ${interruptText}`
            )
            const interrupt = () => {
              if (head === undefined) return
              // Already handed a worker (release first): then this interrupts a holder, which may keep it.
              head.interruptSent = true
              if (head.core !== "served") head.interruptRequested = true
              head.fiber!.interruptUnsafe()
            }
            if (step.order === "interruptFirst") interrupt()
            if (holder !== undefined) yield* release(holder)
            if (step.order === "releaseFirst") {
              if (head !== undefined && holder !== undefined && !invalidated.has(holder.worker!)) handOffRaces++
              interrupt()
            }
            return undefined
          }
          case "Invalidate": {
            const live = alive()
            if (live.length === 0) return void trace.push(`invalidate: no live worker`)
            const w = live[step.pick % live.length]!
            const wasIdle = !holders.has(w)
            trace.push(`invalidate worker ${w} (${wasIdle ? "idle" : `held by #${holders.get(w)!.id}`})`)
            invalidated.add(w)
            yield* pool.invalidate(objects.get(w)!)
            return () => {
              if (wasIdle && !isFinalized(w)) violate("capacity", `invalidated idle worker ${w} was not finalized`)
            }
          }
          case "FailCreates": {
            for (let i = 1; i <= step.count; i++) {
              res.failing.add(res.attempts + i)
              failingAttempts.add(res.attempts + i)
            }
            trace.push(`create attempts #${res.attempts + 1}..#${res.attempts + step.count} will fail`)
            return undefined
          }
          case "CloseGate": {
            res.gate = yield* Deferred.make<void>()
            gates.push(res.gate)
            trace.push(`gate ${gates.length - 1} closed`)
            return undefined
          }
          case "OpenGate": {
            const closed = gates.filter((g) => !opened.has(g))
            if (closed.length === 0) return void trace.push(`open gate: none closed`)
            const gate = closed[step.pick % closed.length]!
            trace.push(`gate ${gates.indexOf(gate)} opened`)
            yield* openGate(gate)
            return undefined
          }
          case "Advance": {
            trace.push(`advance ${step.ms} ms`)
            yield* TestClock.adjust(Duration.millis(step.ms))
            return undefined
          }
        }
      })

    // --- the schedule -----------------------------------------------------------------

    // Let the minIdle warm-up run first.
    yield* settle
    yield* checkInvariants(undefined, 0)
    failIfViolated()

    const shutdownAt = config.shutdownAt ?? Infinity
    for (let i = 0; i < steps.length; i++) {
      const step = steps[i]!
      let pendingShutdown = false
      if (i === shutdownAt && !config.racyShutdown && shutdownStartedAt === undefined) {
        const idleAtStart = (yield* pool.stats).idle
        shutdownMid = true
        yield* startShutdown
        yield* settle
        checkShutdownOutcomes()
        yield* checkInvariants(undefined, idleAtStart)
        failIfViolated()
      }
      const idleAtStart = (yield* pool.stats).idle
      const after = yield* runStep(step)
      if (i === shutdownAt && config.racyShutdown && shutdownStartedAt === undefined) {
        shutdownMid = true
        yield* startShutdown
        pendingShutdown = true
      }
      yield* settle
      after?.()
      if (pendingShutdown) checkShutdownOutcomes()
      yield* checkInvariants(step, idleAtStart)
      failIfViolated()
    }

    // --- the end: liveness, shutdown, and nothing left behind ------------------------

    if (shutdownStartedAt === undefined) {
      trace.push(`end: open the gate, stop failing creates, release everything`)
      for (const gate of gates) yield* openGate(gate)
      res.failing.clear()
      yield* settle
      for (let round = 0; round <= recs.length && (holding().length > 0 || waiting().length > 0); round++) {
        for (const rec of holding()) yield* release(rec)
        yield* settle
      }
      yield* checkInvariants(undefined, 0)
      const left = waiting()
      if (left.length > 0) violate("settle", `${left.map((r) => `#${r.id}`)} still wait with nothing held`)
      failIfViolated()
      // Nothing held: the pool must serve a new acquire at once (no worker was lost).
      const final = yield* Effect.forkChild(Effect.scoped(Effect.map(pool.getWith({ timeout: Duration.infinity }), (r) => r.id)))
      yield* settle
      const exit = final.pollUnsafe()
      trace.push(`final acquire: ${exit === undefined ? "still waiting" : Exit.isSuccess(exit) ? `worker ${exit.value}` : Cause.pretty(exit.cause)}`)
      if (exit === undefined || Exit.isFailure(exit)) {
        violate("settle", `with nothing held, a final acquire ${exit === undefined ? "still waits" : `failed: ${Cause.pretty(exit.cause)}`}`)
      }
      yield* checkInvariants(undefined, 0)
      failIfViolated()
      yield* startShutdown
      yield* settle
      checkShutdownOutcomes()
      yield* checkInvariants(undefined, 0)
      failIfViolated()
    }

    if (config.endByTimeout) {
      trace.push(`end: wait shutdownTimeout`)
      yield* TestClock.adjust(Duration.millis(config.shutdownTimeout))
      yield* settle
      yield* checkInvariants(undefined, 0)
    }
    trace.push(`end: release everything, open the gate`)
    for (const rec of holding()) yield* release(rec)
    for (const gate of gates) yield* openGate(gate)
    yield* settle
    yield* checkInvariants(undefined, 0)
    failIfViolated()

    // Everything has ended.
    // (`closing` is assigned inside `startShutdown`, which control-flow analysis does not see.)
    const closed = closing as Fiber.Fiber<void> | undefined
    if (closed === undefined || closed.pollUnsafe() === undefined) violate("shutdown", `shutdown did not complete`)
    for (const rec of recs) {
      if (rec.fiber!.pollUnsafe() === undefined) violate("settle", `#${rec.id} has not ended (${rec.status})`)
      if (rec.outcomes !== 1) violate("settle", `#${rec.id} settled ${rec.outcomes} times`)
    }
    const s = yield* pool.stats
    if (s.queued !== 0 || s.busy !== 0 || s.idle !== 0 || s.creating !== 0 || s.finalizing !== 0 || !s.closed) {
      violate("shutdown", `after shutdown: ${statsLine(s)}`)
    }
    const created = [...res.created].sort((a, b) => a - b)
    const finalized = [...res.finalized].sort((a, b) => a - b)
    if (JSON.stringify(created) !== JSON.stringify(finalized)) {
      violate("shutdown", `created ${JSON.stringify(created)} but finalized ${JSON.stringify(finalized)}`)
    }
    // FIFO among the queued acquires that were served: in the order they joined the queue.
    const served = recs.filter((r) => r.servedSeq !== undefined)
    const servedFromQueue = recs.filter((r) => r.enqueueSeq !== undefined && r.coreServeSeq !== undefined)
      .sort((a, b) => a.enqueueSeq! - b.enqueueSeq!)
    for (let i = 1; i < servedFromQueue.length; i++) {
      const [a, b] = [servedFromQueue[i - 1]!, servedFromQueue[i]!]
      if (b.coreServeSeq! < a.coreServeSeq!) violate("fifo", `#${b.id} was served before #${a.id}, queued before it`)
    }
    failIfViolated()
    const failedWith = (tag: string) => recs.filter((r) => r.status === "failed" && (r.error as { _tag?: string } | undefined)?._tag === tag).length
    const summary: Summary = {
      acquires: recs.length,
      served: served.length,
      servedAfterWaiting: served.filter((r) => r.servedSeq !== undefined && waitedIds.has(r.id)).length,
      interruptedWaiting: recs.filter((r) => r.status === "interrupted").length,
      handOffRaces,
      timedOut: failedWith("AcquireTimeoutError"),
      queueFull: failedWith("QueueFullError"),
      createFailed: recs.filter((r) => r.error instanceof CreateFailed).length,
      shutdownFailed: failedWith("PoolShutdownError"),
      retired,
      invalidatedWorkers: invalidated.size,
      shutdownMidSchedule: shutdownMid ? 1 : 0,
      shutdownTimedOut: leasesFinalizedByTimeout
    }
    return summary
  })

/** What happened in a schedule, to check that the generator reaches the interesting cases. */
export interface Summary {
  readonly acquires: number
  readonly served: number
  /** Served after having waited in the queue for at least one step. */
  readonly servedAfterWaiting: number
  readonly interruptedWaiting: number
  /** Waiters interrupted in the same tick as a release handed them a worker. */
  readonly handOffRaces: number
  readonly timedOut: number
  readonly queueFull: number
  readonly createFailed: number
  readonly shutdownFailed: number
  readonly retired: number
  readonly invalidatedWorkers: number
  readonly shutdownMidSchedule: number
  readonly shutdownTimedOut: number
}

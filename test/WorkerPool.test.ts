import { describe, expect, it } from "@effect/vitest"
import { Cause, Context, Deferred, Duration, Effect, Exit, Fiber, Logger, Metric, References, Scope } from "effect"
import { TestClock } from "effect/testing"
import { AcquireTimeoutError, PoolOptionsError, PoolShutdownError, QueueFullError } from "../src/errors.ts"
import * as WorkerPool from "../src/WorkerPool.ts"
import { failFast } from "./helpers/failFast.ts"
import { CreateFailed, makeResources, type Resource } from "./helpers/resources.ts"

/**
 * `it.effect` that fails fast instead of hanging: a test whose fibers all wait
 * for something that never happens (a broken pool) fails at once, and so does
 * a teardown whose pool cannot shut down (see helpers/failFast.ts).
 */
const test = <E>(name: string, body: () => Effect.Effect<void, E, Scope.Scope>) =>
  it.effect(name, () => failFast(body(), { name }))

/** Lets forked fibers run until they block. */
const settle = Effect.gen(function*() {
  for (let i = 0; i < 10; i++) yield* Effect.yieldNow
})

/**
 * Leases a worker in a scope of its own (a child of the test's scope, so a
 * lease still held at the end of a test ends before the pool shuts down);
 * returns the worker and a release effect.
 */
const lease = <W, E>(pool: WorkerPool.WorkerPool<W, E>) =>
  Effect.gen(function*() {
    const scope = yield* Scope.fork(yield* Effect.scope)
    const worker = yield* Scope.provide(pool.get, scope)
    return { worker, release: Scope.close(scope, Exit.void) }
  })

/** Forks a lease that records the order in which workers were obtained. */
const forkLease = <W, E>(pool: WorkerPool.WorkerPool<W, E>, served: Array<string>, name: string) =>
  Effect.forkChild(Effect.tap(lease(pool), () => Effect.sync(() => void served.push(name))))

describe("WorkerPool", () => {
  describe("capacity and order", () => {
    test("at most size workers exist and acquires beyond capacity wait", () =>
      Effect.gen(function*() {
        const res = makeResources()
        const pool = yield* WorkerPool.make({ acquire: res.acquire, size: 2 })
        yield* lease(pool)
        yield* lease(pool)
        const third = yield* Effect.forkChild(lease(pool))
        yield* settle
        expect(yield* pool.stats).toMatchObject({ workers: 2, busy: 2, queued: 1, creating: 0 })
        expect(res.created).toEqual([1, 2])
        expect(third.pollUnsafe()).toBeUndefined()
      }))

    test("waiters are served first in, first out", () =>
      Effect.gen(function*() {
        const pool = yield* WorkerPool.make({ acquire: makeResources().acquire, size: 1 })
        const first = yield* lease(pool)
        const served: Array<string> = []
        const fibers = []
        for (const name of ["a", "b", "c", "d"]) {
          fibers.push(yield* forkLease(pool, served, name))
          yield* settle
        }
        yield* first.release
        for (const fiber of fibers) {
          const { release } = yield* Fiber.join(fiber)
          yield* release
        }
        expect(served).toEqual(["a", "b", "c", "d"])
      }))

    test("an acquire that arrives while others wait goes behind them (no barging)", () =>
      Effect.gen(function*() {
        const pool = yield* WorkerPool.make({ acquire: makeResources().acquire, size: 1 })
        const first = yield* lease(pool)
        const served: Array<string> = []
        const early = yield* forkLease(pool, served, "early")
        yield* settle
        // The release and the newcomer happen in the same step: the newcomer must not take the worker.
        yield* first.release
        const late = yield* forkLease(pool, served, "late")
        yield* settle
        expect(served).toEqual(["early"])
        yield* (yield* Fiber.join(early)).release
        yield* Fiber.join(late)
        expect(served).toEqual(["early", "late"])
      }))

    test("release hands the worker straight to the oldest waiter without idling or creating", () =>
      Effect.gen(function*() {
        const res = makeResources()
        const pool = yield* WorkerPool.make({ acquire: res.acquire, size: 1 })
        const first = yield* lease(pool)
        const waiter = yield* Effect.forkChild(lease(pool))
        yield* settle
        yield* first.release
        // Synchronously after the release: leased again, never idle.
        expect(yield* pool.stats).toMatchObject({ busy: 1, idle: 0, queued: 0 })
        const second = yield* Fiber.join(waiter)
        expect(second.worker).toBe(first.worker)
        expect(res.created).toEqual([1])
      }))
  })

  describe("abort", () => {
    test("an interrupted waiter leaves the queue at once and never receives a worker", () =>
      Effect.gen(function*() {
        const res = makeResources()
        const pool = yield* WorkerPool.make({ acquire: res.acquire, size: 1 })
        const first = yield* lease(pool)
        const served: Array<string> = []
        const a = yield* forkLease(pool, served, "a")
        const b = yield* forkLease(pool, served, "b")
        yield* settle
        expect((yield* pool.stats).queued).toBe(2)
        yield* Fiber.interrupt(a)
        expect((yield* pool.stats).queued).toBe(1)
        yield* first.release
        yield* Fiber.join(b)
        expect(served).toEqual(["b"])
        expect(Exit.hasInterrupts(yield* Fiber.await(a))).toBe(true)
      }))

    test("a waiter interrupted just before a release does not take the worker from the next waiter", () =>
      Effect.gen(function*() {
        const res = makeResources()
        const pool = yield* WorkerPool.make({ acquire: res.acquire, size: 1 })
        const first = yield* lease(pool)
        const served: Array<string> = []
        const a = yield* forkLease(pool, served, "a")
        const b = yield* forkLease(pool, served, "b")
        yield* settle
        // The interruption is requested first, then the worker is released in the
        // same step. (The race where a worker reaches a waiter that is already
        // interrupted but has not run yet is covered by the chain property.)
        yield* Effect.sync(() => a.interruptUnsafe())
        yield* first.release
        const bLease = yield* Fiber.join(b)
        expect(served).toEqual(["b"])
        expect(bLease.worker).toBe(first.worker)
        expect(Exit.hasInterrupts(yield* Fiber.await(a))).toBe(true)
        expect(yield* pool.stats).toMatchObject({ busy: 1, queued: 0, workers: 1 })
      }))

    test("a long queue of leases that end at once is served without overflowing the stack", () =>
      Effect.gen(function*() {
        const pool = yield* WorkerPool.make({ acquire: makeResources().acquire, size: 1 })
        const first = yield* lease(pool)
        let served = 0
        const fibers = yield* Effect.forEach(
          Array.from({ length: 5_000 }),
          () => Effect.forkChild(pool.use(() => Effect.sync(() => void served++))),
          { concurrency: 1 }
        )
        yield* settle
        expect((yield* pool.stats).queued).toBe(5_000)
        yield* first.release
        yield* Fiber.joinAll(fibers)
        expect(served).toBe(5_000)
        expect(yield* pool.stats).toMatchObject({ queued: 0, busy: 0, idle: 1 })
      }))

    test("interrupting a use while queued leaves nothing queued", () =>
      Effect.gen(function*() {
        const pool = yield* WorkerPool.make({ acquire: makeResources().acquire, size: 1 })
        yield* lease(pool)
        const waiting = yield* Effect.forkChild(pool.use(() => Effect.void))
        yield* settle
        expect((yield* pool.stats).queued).toBe(1)
        yield* Fiber.interrupt(waiting)
        expect((yield* pool.stats).queued).toBe(0)
      }))
  })

  describe("bounded waiting", () => {
    test("acquireTimeout fails the waiter with how long it waited, how many were ahead and the size", () =>
      Effect.gen(function*() {
        const pool = yield* WorkerPool.make({ acquire: makeResources().acquire, size: 1, acquireTimeout: "10 seconds" })
        yield* lease(pool)
        const a = yield* Effect.forkChild(Effect.flip(lease(pool)))
        yield* TestClock.adjust("4 seconds")
        const b = yield* Effect.forkChild(Effect.flip(lease(pool)))
        yield* settle
        yield* TestClock.adjust("6 seconds")
        const aError = yield* Fiber.join(a)
        expect(aError).toBeInstanceOf(AcquireTimeoutError)
        expect(aError).toMatchObject({ waitedMs: 10_000, queuedAhead: 0, poolSize: 1 })
        expect(aError.message).toContain("poolSize may be too small")
        expect((yield* pool.stats).queued).toBe(1)
        yield* TestClock.adjust("4 seconds")
        expect(yield* Fiber.join(b)).toMatchObject({ _tag: "AcquireTimeoutError", waitedMs: 10_000 })
        expect((yield* pool.stats).queued).toBe(0)
      }))

    test("a per-acquire timeout overrides the pool's and counts the waiters still ahead", () =>
      Effect.gen(function*() {
        const pool = yield* WorkerPool.make({ acquire: makeResources().acquire, size: 1 })
        yield* lease(pool)
        yield* Effect.forkChild(lease(pool))
        yield* Effect.forkChild(lease(pool))
        yield* settle
        const impatient = yield* Effect.forkChild(
          Effect.flip(Effect.scoped(pool.getWith({ timeout: "1 second" })))
        )
        yield* settle
        yield* TestClock.adjust("1 second")
        expect(yield* Fiber.join(impatient)).toMatchObject({ waitedMs: 1000, queuedAhead: 2, poolSize: 1 })
        expect((yield* pool.stats).queued).toBe(2)
      }))

    test("bad per-acquire options are a PoolOptionsError defect naming the option, and change nothing", () =>
      Effect.gen(function*() {
        const res = makeResources()
        const pool = yield* WorkerPool.make({ acquire: res.acquire, size: 1 })
        const cases: Array<[Record<string, unknown>, RegExp]> = [
          [{ timeout: "50" }, /^Invalid acquire options: timeout: Expected a duration > 0 .*, got "50"\.$/],
          [{ timeout: null }, /timeout: Expected a duration > 0 .*, got null/],
          [{ timeout: -1 }, /timeout: Expected a duration > 0 .*, got -1/],
          // Zero is refused: it meant "no limit" before `Duration.infinity` did.
          [{ timeout: 0 }, /timeout: Expected a duration > 0 \(Duration\.infinity for no limit\), got 0/],
          [{ timeoutMs: 50 }, /^Invalid acquire options: timeoutMs: unknown option\.$/]
        ]
        const defectOf = (exit: Exit.Exit<unknown, unknown>) => Exit.isFailure(exit) ? Cause.squash(exit.cause) : exit
        // With no worker (an acquire would create one), then with one idle.
        for (const idle of [false, true]) {
          if (idle) yield* pool.use(() => Effect.void)
          const before = yield* pool.stats
          for (const [options, message] of cases) {
            let ran = false
            const acquireOptions = options as WorkerPool.AcquireOptions
            const used = yield* Effect.exit(pool.use(() => Effect.sync(() => (ran = true)), acquireOptions))
            const got = yield* Effect.exit(Effect.scoped(pool.getWith(acquireOptions)))
            for (const defect of [defectOf(used), defectOf(got)]) {
              expect(defect).toBeInstanceOf(PoolOptionsError)
              expect((defect as PoolOptionsError).message).toMatch(message)
            }
            expect(ran).toBe(false)
            expect(yield* pool.stats).toEqual(before)
          }
        }
        expect(res.created).toEqual([1])
        // Good options still work: a duration string, Infinity, explicit undefined.
        for (const timeout of ["1 second", Infinity, undefined] as const) {
          expect(yield* pool.use((r) => Effect.succeed(r.id), { timeout })).toBe(1)
        }
      }))

    test("maxQueue fails an acquire at once with QueueFullError when the queue is full", () =>
      Effect.gen(function*() {
        const pool = yield* WorkerPool.make({ acquire: makeResources().acquire, size: 1, maxQueue: 1 })
        yield* lease(pool)
        yield* Effect.forkChild(lease(pool))
        yield* settle
        const error = yield* Effect.flip(lease(pool))
        expect(error).toBeInstanceOf(QueueFullError)
        expect(error).toMatchObject({ maxQueue: 1, poolSize: 1 })
        expect((yield* pool.stats).queued).toBe(1)
      }))
  })

  describe("shutdown", () => {
    test("every queued waiter fails with PoolShutdownError, not an interruption", () =>
      Effect.gen(function*() {
        const scope = yield* Scope.make()
        const pool = yield* Scope.provide(WorkerPool.make({ acquire: makeResources().acquire, size: 1 }), scope)
        const held = yield* lease(pool)
        const waiters = []
        for (let i = 0; i < 3; i++) waiters.push(yield* Effect.forkChild(lease(pool)))
        yield* settle
        const closing = yield* Effect.forkChild(Scope.close(scope, Exit.void))
        yield* settle
        for (const w of waiters) {
          const exit = yield* Fiber.await(w)
          expect(Exit.isFailure(exit) && !Exit.hasInterrupts(exit)).toBe(true)
          expect(Exit.isFailure(exit) && Cause.squash(exit.cause)).toBeInstanceOf(PoolShutdownError)
        }
        yield* held.release
        yield* Fiber.join(closing)
      }))

    test("an acquire after shutdown fails at once with PoolShutdownError", () =>
      Effect.gen(function*() {
        const scope = yield* Scope.make()
        const pool = yield* Scope.provide(WorkerPool.make({ acquire: makeResources().acquire, size: 1 }), scope)
        yield* Scope.close(scope, Exit.void)
        const error = yield* Effect.flip(lease(pool))
        expect(error).toBeInstanceOf(PoolShutdownError)
        expect(error.message).toMatch(/^Worker pool has been shut down\./)
      }))

    test("idle workers are finalized at once and leased ones when they are returned", () =>
      Effect.gen(function*() {
        const res = makeResources()
        const scope = yield* Scope.make()
        const pool = yield* Scope.provide(WorkerPool.make({ acquire: res.acquire, size: 2 }), scope)
        const a = yield* lease(pool)
        const b = yield* lease(pool)
        yield* b.release
        const closing = yield* Effect.forkChild(Scope.close(scope, Exit.void))
        yield* settle
        expect(res.finalized).toEqual([2])
        expect(closing.pollUnsafe()).toBeUndefined()
        yield* a.release
        yield* Fiber.join(closing)
        expect(res.finalized).toEqual([2, 1])
      }))

    test("leased workers are finalized anyway after shutdownTimeout", () =>
      Effect.gen(function*() {
        const res = makeResources()
        const scope = yield* Scope.make()
        const pool = yield* Scope.provide(
          WorkerPool.make({ acquire: res.acquire, size: 1, shutdownTimeout: "5 seconds" }),
          scope
        )
        const held = yield* lease(pool)
        const closing = yield* Effect.forkChild(Scope.close(scope, Exit.void))
        yield* TestClock.adjust("4999 millis")
        expect(res.finalized).toEqual([])
        yield* TestClock.adjust("1 millis")
        yield* Fiber.join(closing)
        expect(res.finalized).toEqual([1])
        // The late release is harmless.
        yield* held.release
        expect(res.finalized).toEqual([1])
      }))

    test("a create in flight at shutdown is interrupted and leaves nothing behind", () =>
      Effect.gen(function*() {
        const res = makeResources()
        res.gate = yield* Deferred.make<void>()
        const scope = yield* Scope.make()
        const pool = yield* Scope.provide(WorkerPool.make({ acquire: res.acquire, size: 1 }), scope)
        const waiter = yield* Effect.forkChild(lease(pool))
        yield* settle
        expect((yield* pool.stats).creating).toBe(1)
        yield* Scope.close(scope, Exit.void)
        expect(yield* Effect.flip(Fiber.join(waiter))).toBeInstanceOf(PoolShutdownError)
        expect(yield* pool.stats).toMatchObject({ creating: 0, workers: 0 })
        expect(res.created).toEqual([])
      }))
  })

  describe("create failures", () => {
    test("a failed create fails the waiter that caused it and the pool stays usable", () =>
      Effect.gen(function*() {
        const res = makeResources()
        res.failing.add(1)
        const pool = yield* WorkerPool.make({ acquire: res.acquire, size: 1 })
        const error = yield* Effect.flip(lease(pool))
        expect(error).toBeInstanceOf(CreateFailed)
        expect((error as CreateFailed).attempt).toBe(1)
        const { worker } = yield* lease(pool)
        expect(worker.id).toBe(2)
        expect(yield* pool.stats).toMatchObject({ createFailures: 1, created: 1, busy: 1 })
      }))

    test("with waiters queued, a failed create fails its own waiter only", () =>
      Effect.gen(function*() {
        const res = makeResources()
        res.gate = yield* Deferred.make<void>()
        res.failing.add(2)
        const pool = yield* WorkerPool.make({ acquire: res.acquire, size: 2 })
        const a = yield* Effect.forkChild(lease(pool))
        yield* settle
        const b = yield* Effect.forkChild(lease(pool))
        yield* settle
        yield* Deferred.succeed(res.gate, void 0)
        expect((yield* Fiber.join(a)).worker.id).toBe(1)
        expect(yield* Effect.flip(Fiber.join(b))).toMatchObject({ attempt: 2 })
      }))
  })

  describe("idle lifecycle", () => {
    test("an idle worker is finalized exactly at idleTimeout", () =>
      Effect.gen(function*() {
        const res = makeResources()
        const pool = yield* WorkerPool.make({ acquire: res.acquire, size: 1, idleTimeout: "1 minute" })
        yield* (yield* lease(pool)).release
        yield* TestClock.adjust("59999 millis")
        expect(res.finalized).toEqual([])
        yield* TestClock.adjust("1 millis")
        yield* settle
        expect(res.finalized).toEqual([1])
        expect((yield* pool.stats).workers).toBe(0)
      }))

    test("reuse restarts the idle clock", () =>
      Effect.gen(function*() {
        const res = makeResources()
        const pool = yield* WorkerPool.make({ acquire: res.acquire, size: 1, idleTimeout: "1 minute" })
        yield* (yield* lease(pool)).release
        yield* TestClock.adjust("50 seconds")
        yield* (yield* lease(pool)).release
        yield* TestClock.adjust("50 seconds")
        expect(res.finalized).toEqual([])
        yield* TestClock.adjust("10 seconds")
        yield* settle
        expect(res.finalized).toEqual([1])
      }))

    test("idleTimeout Duration.infinity never retires a worker", () =>
      Effect.gen(function*() {
        const res = makeResources()
        const pool = yield* WorkerPool.make({ acquire: res.acquire, size: 1, idleTimeout: Duration.infinity })
        yield* (yield* lease(pool)).release
        yield* TestClock.adjust("1000 days")
        expect(res.finalized).toEqual([])
        expect((yield* pool.stats).idle).toBe(1)
      }))

    test("a worker is never retired while someone waits for it", () =>
      Effect.gen(function*() {
        const res = makeResources()
        const pool = yield* WorkerPool.make({ acquire: res.acquire, size: 1, idleTimeout: "1 second" })
        const first = yield* lease(pool)
        const waiter = yield* Effect.forkChild(lease(pool))
        yield* TestClock.adjust("10 seconds")
        yield* first.release
        yield* TestClock.adjust("10 seconds")
        expect(res.finalized).toEqual([])
        expect((yield* Fiber.join(waiter)).worker.id).toBe(1)
      }))

    test("minIdle keeps that many workers warm and never retires them", () =>
      Effect.gen(function*() {
        const res = makeResources()
        const pool = yield* WorkerPool.make({ acquire: res.acquire, size: 3, minIdle: 1, idleTimeout: "1 second" })
        yield* settle
        expect(yield* pool.stats).toMatchObject({ idle: 1, workers: 1 })
        // Leasing the warm worker starts another one.
        const a = yield* lease(pool)
        yield* settle
        expect(yield* pool.stats).toMatchObject({ busy: 1, idle: 1, workers: 2 })
        yield* a.release
        yield* TestClock.adjust("1 second")
        yield* settle
        // Two idle, one retires, the warm one stays.
        expect(yield* pool.stats).toMatchObject({ idle: 1, workers: 1 })
        yield* TestClock.adjust("1 hour")
        expect(yield* pool.stats).toMatchObject({ idle: 1, workers: 1 })
      }))
  })

  describe("invalidate", () => {
    test("an idle invalidated worker is finalized and its slot refilled on demand", () =>
      Effect.gen(function*() {
        const res = makeResources()
        const pool = yield* WorkerPool.make({ acquire: res.acquire, size: 1 })
        const first = yield* lease(pool)
        yield* first.release
        yield* pool.invalidate(first.worker)
        yield* settle
        expect(res.finalized).toEqual([1])
        expect((yield* lease(pool)).worker.id).toBe(2)
      }))

    test("a leased invalidated worker is finalized when its lease ends, then replaced for the next waiter", () =>
      Effect.gen(function*() {
        const res = makeResources()
        const pool = yield* WorkerPool.make({ acquire: res.acquire, size: 1 })
        const first = yield* lease(pool)
        const waiter = yield* Effect.forkChild(lease(pool))
        yield* settle
        yield* pool.invalidate(first.worker)
        expect(res.finalized).toEqual([])
        yield* first.release
        const next = yield* Fiber.join(waiter)
        expect(next.worker.id).toBe(2)
        expect(res.finalized).toEqual([1])
      }))

    test("a lease held past leaseTimeout retires the worker and runs onLeaseTimeout once", () =>
      Effect.gen(function*() {
        const res = makeResources()
        const expired: Array<[number, number]> = []
        const pool = yield* WorkerPool.make({
          acquire: res.acquire,
          size: 1,
          leaseTimeout: "1 minute",
          onLeaseTimeout: (worker, leaseTimeout) =>
            Effect.sync(() => void expired.push([worker.id, Duration.toMillis(leaseTimeout)]))
        })
        const first = yield* lease(pool)
        yield* TestClock.adjust("59999 millis")
        expect(expired).toEqual([])
        yield* TestClock.adjust("1 millis")
        expect(expired).toEqual([[1, 60_000]])
        expect(res.finalized).toEqual([])
        yield* first.release
        expect(res.finalized).toEqual([1])
        // A lease released in time is not expired.
        const second = yield* lease(pool)
        yield* TestClock.adjust("30 seconds")
        yield* second.release
        yield* TestClock.adjust("1 hour")
        expect(expired).toEqual([[1, 60_000]])
        expect(second.worker.id).toBe(2)
      }))

    test("a use whose function throws while queued dies with that defect and releases the worker", () =>
      Effect.gen(function*() {
        const pool = yield* WorkerPool.make({ acquire: makeResources().acquire, size: 1 })
        const first = yield* lease(pool)
        const boom = new Error("boom")
        const queued = yield* Effect.forkChild(pool.use((): Effect.Effect<void> => {
          throw boom
        }))
        const next = yield* Effect.forkChild(pool.use((r) => Effect.succeed(r.id)))
        yield* settle
        yield* first.release
        const exit = yield* Fiber.await(queued)
        expect(Exit.isFailure(exit) && Cause.squash(exit.cause)).toBe(boom)
        expect(yield* Fiber.join(next)).toBe(1)
        expect(yield* pool.stats).toMatchObject({ busy: 0, idle: 1, queued: 0 })
      }))

    test("a use whose function throws with a worker idle dies with that defect and returns the worker", () =>
      Effect.gen(function*() {
        const res = makeResources()
        const scope = yield* Scope.make()
        const pool = yield* Scope.provide(
          WorkerPool.make({ acquire: res.acquire, size: 1, shutdownTimeout: "30 seconds" }),
          scope
        )
        yield* pool.use(() => Effect.void)
        expect(yield* pool.stats).toMatchObject({ busy: 0, idle: 1 })
        const boom = new Error("boom")
        // The fast path: the idle worker is taken at once and `f` is called right there.
        const exit = yield* Effect.exit(pool.use((): Effect.Effect<void> => {
          throw boom
        }))
        expect(Exit.isFailure(exit) && Cause.squash(exit.cause)).toBe(boom)
        expect(yield* pool.stats).toMatchObject({ busy: 0, idle: 1, queued: 0, workers: 1 })
        // The next use gets the same worker at once, without the clock moving.
        const next = yield* Effect.forkChild(pool.use((r) => Effect.succeed(r.id), { timeout: "1 second" }))
        yield* settle
        expect(next.pollUnsafe()).toEqual(Exit.succeed(1))
        expect(res.created).toEqual([1])
        // Nothing is leased, so closing the scope does not wait for shutdownTimeout.
        const closing = yield* Effect.forkChild(Scope.close(scope, Exit.void))
        yield* settle
        expect(closing.pollUnsafe()).toEqual(Exit.void)
        expect(res.finalized).toEqual([1])
      }))

    test("use releases the worker when its effect fails", () =>
      Effect.gen(function*() {
        const pool = yield* WorkerPool.make({ acquire: makeResources().acquire, size: 1 })
        const error = yield* Effect.flip(pool.use(() => Effect.fail("boom" as const)))
        expect(error).toBe("boom")
        expect(yield* pool.stats).toMatchObject({ busy: 0, idle: 1 })
      }))
  })

  describe("observability", () => {
    test("metrics report queue, busy, idle and counts with the pool and provider attributes", () =>
      Effect.gen(function*() {
        const pool = yield* WorkerPool.make({
          acquire: makeResources().acquire,
          size: 1,
          name: "metrics-test",
          provider: "codex"
        })
        const first = yield* lease(pool)
        yield* Effect.forkChild(lease(pool))
        yield* settle
        const read = Effect.map(Metric.snapshot, (snapshots) => {
          const mine = snapshots.filter((s) => s.attributes?.["pool"] === "metrics-test")
          return Object.fromEntries(mine.map((s) => [s.id, s]))
        })
        let metrics = yield* read
        expect(metrics["worker_pool_queue_length"]?.attributes).toEqual({
          pool: "metrics-test",
          pool_id: "metrics-test#1",
          provider: "codex"
        })
        expect(metrics["worker_pool_queue_length"]?.state).toEqual({ value: 1 })
        expect(metrics["worker_pool_workers_busy"]?.state).toEqual({ value: 1 })
        expect(metrics["worker_pool_workers_created_total"]?.state).toMatchObject({ count: 1 })
        yield* TestClock.adjust("250 millis")
        yield* first.release
        metrics = yield* read
        expect(metrics["worker_pool_queue_length"]?.state).toEqual({ value: 0 })
        // The first acquire waited 0 ms for its worker to be created, the second 250 ms in the queue.
        expect(metrics["worker_pool_wait_ms"]?.state).toMatchObject({ count: 2, sum: 250 })
      }).pipe(Effect.provideService(Metric.MetricRegistry, new Map())))

    test("two pools with the same name keep series of their own, and closing one leaves the other's", () =>
      Effect.gen(function*() {
        /** Every series of pools named "twin": metric id -> pool_id -> state. */
        const read = Effect.map(Metric.snapshot, (snapshots) => {
          const out: Record<string, Record<string, unknown>> = {}
          for (const s of snapshots) {
            if (s.attributes?.["pool"] !== "twin") continue
            ;(out[s.id] ??= {})[s.attributes["pool_id"]!] = s.state
          }
          return out
        })
        const scopeA = yield* Scope.make()
        const scopeB = yield* Scope.make()
        const a = yield* Scope.provide(WorkerPool.make({ acquire: makeResources().acquire, size: 1, name: "twin" }), scopeA)
        const b = yield* Scope.provide(WorkerPool.make({ acquire: makeResources().acquire, size: 2, name: "twin" }), scopeB)
        const leaseA = yield* lease(a)
        const leasesB = [yield* lease(b), yield* lease(b)]
        let metrics = yield* read
        expect(metrics["worker_pool_workers_busy"]).toEqual({ "twin#1": { value: 1 }, "twin#2": { value: 2 } })
        expect(metrics["worker_pool_workers_created_total"]).toEqual({
          "twin#1": { count: 1, incremental: true },
          "twin#2": { count: 2, incremental: true }
        })
        expect(Object.keys(metrics["worker_pool_wait_ms"] ?? {})).toEqual(["twin#1", "twin#2"])

        yield* leaseA.release
        yield* Scope.close(scopeA, Exit.void)
        metrics = yield* read
        expect(metrics["worker_pool_workers_busy"]).toEqual({ "twin#2": { value: 2 } })
        expect(metrics["worker_pool_workers_created_total"]).toEqual({ "twin#2": { count: 2, incremental: true } })
        expect(Object.keys(metrics["worker_pool_wait_ms"] ?? {})).toEqual(["twin#2"])
        expect(yield* b.stats).toMatchObject({ busy: 2 })

        // The number of a closed pool is taken again: pool_id values stay bounded.
        const c = yield* WorkerPool.make({ acquire: makeResources().acquire, size: 1, name: "twin" })
        yield* lease(c)
        metrics = yield* read
        expect(metrics["worker_pool_workers_busy"]).toEqual({ "twin#1": { value: 1 }, "twin#2": { value: 2 } })
        for (const held of leasesB) yield* held.release
        yield* Scope.close(scopeB, Exit.void)
        expect(Object.keys((yield* read)["worker_pool_workers_busy"] ?? {})).toEqual(["twin#1"])
      }).pipe(Effect.provideService(Metric.MetricRegistry, new Map())))

    test("logs enqueue and hand-off at debug level with queue length and waited milliseconds", () => {
      const lines: Array<unknown> = []
      const logger = Logger.make((options) => {
        if (options.logLevel === "Debug") lines.push(options.message)
      })
      return Effect.gen(function*() {
        const pool = yield* WorkerPool.make({ acquire: makeResources().acquire, size: 1 })
        const first = yield* lease(pool)
        yield* Effect.forkChild(lease(pool))
        yield* settle
        yield* TestClock.adjust("30 millis")
        yield* first.release
        yield* settle
        expect(lines).toEqual([
          ["worker-pool: acquire queued", { queued: 1 }],
          ["worker-pool: worker handed to waiter", { waitedMs: 0, queued: 0 }],
          ["worker-pool: acquire queued", { queued: 1 }],
          ["worker-pool: worker handed to waiter", { waitedMs: 30, queued: 0 }]
        ])
      }).pipe(
        Effect.provide(Logger.layer([logger])),
        Effect.provideService(References.MinimumLogLevel, "Debug")
      )
    })
  })

  describe("log annotations", () => {
    test("the pool's lines, from its own fibers too, carry pool and pool_id", () => {
      const lines: Array<[string, unknown, unknown]> = []
      const logger = Logger.make((options) => {
        lines.push([options.logLevel, options.message, options.fiber.getRef(References.CurrentLogAnnotations)])
      })
      return Effect.gen(function*() {
        const pool = yield* WorkerPool.make({
          acquire: makeResources().acquire,
          size: 1,
          name: "annotated",
          leaseTimeout: "1 second"
        })
        yield* lease(pool)
        yield* TestClock.adjust("1 second")
        const ids = { pool: "annotated", pool_id: "annotated#1" }
        expect(lines).toEqual([
          ["Debug", ["worker-pool: acquire queued", { queued: 1 }], ids],
          ["Debug", ["worker-pool: worker handed to waiter", { waitedMs: 0, queued: 0 }], ids],
          ["Warn", ["worker-pool: a lease outlived leaseTimeout (1000 ms); the worker is retired"], ids]
        ])
      }).pipe(
        Effect.provide(Logger.layer([logger])),
        Effect.provideService(References.MinimumLogLevel, "Debug")
      )
    })
  })

  describe("construction", () => {
    test("layer builds the pool as a service and shuts it down when released", () =>
      Effect.gen(function*() {
        const res = makeResources()
        class Pool extends Context.Service<Pool, WorkerPool.WorkerPool<Resource, CreateFailed>>()("test/Pool") {}
        const id = yield* Effect.scoped(
          Effect.gen(function*() {
            const pool = yield* Pool
            return yield* pool.use((r) => Effect.succeed(r.id))
          }).pipe(Effect.provide(WorkerPool.layer(Pool, { acquire: res.acquire, size: 1 })))
        )
        expect(id).toBe(1)
        expect(res.finalized).toEqual([1])
      }))

    test("bad options are a defect naming the option", () =>
      Effect.gen(function*() {
        const acquire = makeResources().acquire
        const cases: Array<[WorkerPool.Options<Resource, CreateFailed, never>, RegExp]> = [
          [{ acquire, size: 0 }, /size: Expected a value greater than or equal to 1/],
          [{ acquire, size: 1.5 }, /size: Expected an integer/],
          [{ acquire, size: 1, idleTimeout: -1 }, /idleTimeout/],
          [{ acquire, size: 1, acquireTimeout: Number.NaN }, /acquireTimeout/],
          [{ acquire, size: 1, maxQueue: -1 }, /maxQueue/],
          [{ acquire, size: 1, minIdle: 2 }, /minIdle: must be <= size/],
          [{ acquire, size: 1, sise: 2 } as never, /sise: unknown option/]
        ]
        for (const [options, message] of cases) {
          const exit = yield* Effect.exit(Effect.scoped(WorkerPool.make(options)))
          expect(Exit.isFailure(exit)).toBe(true)
          const defect = Exit.isFailure(exit) ? Cause.squash(exit.cause) : undefined
          expect(defect).toBeInstanceOf(PoolOptionsError)
          expect((defect as PoolOptionsError).message).toMatch(message)
        }
      }))

    test("shutdown is idempotent and later leases fail", () =>
      Effect.gen(function*() {
        const pool = yield* WorkerPool.make({ acquire: makeResources().acquire, size: 1 })
        yield* pool.shutdown
        yield* pool.shutdown
        expect((yield* pool.stats).closed).toBe(true)
        expect(yield* Effect.flip(pool.use(() => Effect.void))).toBeInstanceOf(PoolShutdownError)
      }))
  })
})




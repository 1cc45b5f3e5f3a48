/**
 * The times of the Effect `WorkerPool`: every option takes a `Duration.Input`,
 * `Duration.infinity` is "no limit", a zero limit is refused, and
 * `shutdownTimeout` may be zero (no wait) or infinite (wait for ever). Pool
 * time runs on the `TestClock` of `it.effect`. The promise facade
 * (`createWorkerPool`) keeps its `...Ms` numbers, 0 meaning no limit; its
 * timers are Node's, driven by vitest's fake timers.
 */
import { describe, expect, it } from "@effect/vitest"
import { Cause, Duration, Effect, Exit, Fiber, Scope } from "effect"
import { TestClock } from "effect/testing"
import { afterEach, vi } from "vitest"
import { AcquireTimeoutError, PoolOptionsError } from "../src/errors.ts"
import { durationOfMs } from "../src/internal/options.ts"
import { createWorkerPool } from "../src/PromisePool.ts"
import * as WorkerPool from "../src/WorkerPool.ts"
import { makeResources } from "./helpers/resources.ts"

/** Lets forked fibers run until they block. */
const settle = Effect.gen(function*() {
  for (let i = 0; i < 10; i++) yield* Effect.yieldNow
})

/** Leases a worker in a scope of its own; returns it and a release effect. */
const lease = <W, E>(pool: WorkerPool.WorkerPool<W, E>) =>
  Effect.gen(function*() {
    const scope = yield* Scope.fork(yield* Effect.scope)
    const worker = yield* Scope.provide(pool.get, scope)
    return { worker, release: Scope.close(scope, Exit.void) }
  })

const defectOf = (exit: Exit.Exit<unknown, unknown>) => (Exit.isFailure(exit) ? Cause.squash(exit.cause) : undefined)

/** How long "for ever" is checked for. */
const aYear = Duration.days(365)

describe("WorkerPool durations", () => {
  it.effect("idleTimeout takes a Duration: an idle worker retires exactly when it runs out", () =>
    Effect.gen(function*() {
      const res = makeResources()
      const pool = yield* WorkerPool.make({ acquire: res.acquire, size: 1, idleTimeout: Duration.seconds(90) })
      yield* (yield* lease(pool)).release
      yield* TestClock.adjust("89999 millis")
      expect(res.finalized).toEqual([])
      yield* TestClock.adjust("1 millis")
      yield* settle
      expect(res.finalized).toEqual([1])
    }))

  it.effect("idleTimeout absent is 5 minutes; a number is milliseconds", () =>
    Effect.gen(function*() {
      const defaults = makeResources()
      const byDefault = yield* WorkerPool.make({ acquire: defaults.acquire, size: 1 })
      const numbers = makeResources()
      const byNumber = yield* WorkerPool.make({ acquire: numbers.acquire, size: 1, idleTimeout: 1_000 })
      yield* (yield* lease(byDefault)).release
      yield* (yield* lease(byNumber)).release
      yield* TestClock.adjust("1 second")
      yield* settle
      expect([defaults.finalized, numbers.finalized]).toEqual([[], [1]])
      yield* TestClock.adjust(Duration.subtract(Duration.minutes(5), Duration.seconds(1)))
      yield* settle
      expect(defaults.finalized).toEqual([1])
    }))

  it.effect("acquireTimeout takes a Duration; Duration.infinity (pool or acquire) waits for ever", () =>
    Effect.gen(function*() {
      const res = makeResources()
      const pool = yield* WorkerPool.make({ acquire: res.acquire, size: 1, acquireTimeout: Duration.seconds(10) })
      const held = yield* lease(pool)
      const bounded = yield* Effect.forkChild(Effect.flip(Effect.scoped(pool.get)))
      const unbounded = yield* Effect.forkChild(Effect.scoped(pool.getWith({ timeout: Duration.infinity })))
      yield* settle
      yield* TestClock.adjust("10 seconds")
      const error = yield* Fiber.join(bounded)
      expect(error).toBeInstanceOf(AcquireTimeoutError)
      expect(error).toMatchObject({ waitedMs: 10_000 })
      yield* TestClock.adjust(aYear)
      expect(unbounded.pollUnsafe()).toBeUndefined()
      yield* held.release
      expect((yield* Fiber.join(unbounded)).id).toBe(1)

      const unlimited = yield* WorkerPool.make({
        acquire: makeResources().acquire,
        size: 1,
        acquireTimeout: Duration.infinity
      })
      const first = yield* lease(unlimited)
      const waiter = yield* Effect.forkChild(Effect.scoped(unlimited.get))
      yield* settle
      yield* TestClock.adjust(aYear)
      expect(waiter.pollUnsafe()).toBeUndefined()
      yield* first.release
      expect((yield* Fiber.join(waiter)).id).toBe(1)
    }))

  it.effect("leaseTimeout takes a Duration and onLeaseTimeout gets it as a Duration; infinity never expires", () =>
    Effect.gen(function*() {
      const res = makeResources()
      const seen: Array<Duration.Duration> = []
      const pool = yield* WorkerPool.make({
        acquire: res.acquire,
        size: 1,
        leaseTimeout: "2 minutes",
        onLeaseTimeout: (_worker, leaseTimeout) => Effect.sync(() => void seen.push(leaseTimeout))
      })
      const held = yield* lease(pool)
      yield* TestClock.adjust("2 minutes")
      expect(seen).toHaveLength(1)
      expect(Duration.isDuration(seen[0])).toBe(true)
      expect(Duration.toMillis(seen[0]!)).toBe(120_000)
      yield* held.release

      const expired: Array<unknown> = []
      const unlimited = yield* WorkerPool.make({
        acquire: makeResources().acquire,
        size: 1,
        leaseTimeout: Duration.infinity,
        onLeaseTimeout: (worker) => Effect.sync(() => void expired.push(worker))
      })
      yield* lease(unlimited)
      yield* TestClock.adjust(aYear)
      expect(expired).toEqual([])
    }))

  it.effect("shutdownTimeout Duration.infinity waits for ever: shutdown stays pending a year, until the lease ends", () =>
    Effect.gen(function*() {
      const res = makeResources()
      const scope = yield* Scope.make()
      const pool = yield* Scope.provide(
        WorkerPool.make({ acquire: res.acquire, size: 1, shutdownTimeout: Duration.infinity }),
        scope
      )
      const held = yield* lease(pool)
      const shutdown = yield* Effect.forkChild(pool.shutdown)
      yield* settle
      yield* TestClock.adjust(aYear)
      yield* settle
      expect(shutdown.pollUnsafe()).toBeUndefined()
      expect(res.finalized).toEqual([])
      yield* held.release
      yield* Fiber.join(shutdown)
      expect(res.finalized).toEqual([1])
      yield* Scope.close(scope, Exit.void)
    }))

  it.effect("shutdownTimeout takes a Duration: leased workers are finalized when it runs out", () =>
    Effect.gen(function*() {
      const res = makeResources()
      const pool = yield* WorkerPool.make({ acquire: res.acquire, size: 1, shutdownTimeout: Duration.seconds(3) })
      yield* lease(pool)
      const shutdown = yield* Effect.forkChild(pool.shutdown)
      yield* settle
      yield* TestClock.adjust("2999 millis")
      expect(shutdown.pollUnsafe()).toBeUndefined()
      yield* TestClock.adjust("1 millis")
      yield* Fiber.join(shutdown)
      expect(res.finalized).toEqual([1])
    }))

  it.effect("shutdownTimeout zero does not wait: leased workers are finalized at once", () =>
    Effect.gen(function*() {
      const res = makeResources()
      const pool = yield* WorkerPool.make({ acquire: res.acquire, size: 1, shutdownTimeout: Duration.zero })
      yield* lease(pool)
      const shutdown = yield* Effect.forkChild(pool.shutdown)
      yield* settle
      // No clock adjustment: nothing waits for the lease.
      expect(shutdown.pollUnsafe()).toEqual(Exit.void)
      expect(res.finalized).toEqual([1])
    }))

  it.effect("a zero limit is refused, naming the option and Duration.infinity; so are negative and bad durations", () =>
    Effect.gen(function*() {
      const acquire = makeResources().acquire
      const cases: Array<[Partial<WorkerPool.Options<unknown, unknown, never>>, RegExp]> = [
        [{ idleTimeout: 0 }, /idleTimeout: Expected a duration > 0 \(Duration\.infinity for no limit\), got 0\.$/],
        [{ idleTimeout: Duration.zero }, /idleTimeout: Expected a duration > 0 .*, got a Duration \(0\)\.$/],
        [{ acquireTimeout: "0 millis" }, /acquireTimeout: Expected a duration > 0 .*, got "0 millis"/],
        [{ leaseTimeout: 0 }, /leaseTimeout: Expected a duration > 0 /],
        [{ shutdownTimeout: -1 }, /shutdownTimeout: Expected a duration >= 0 .*, got -1/],
        [{ shutdownTimeout: "-Infinity" }, /shutdownTimeout: Expected a duration >= 0 /],
        [{ idleTimeout: "soon" as Duration.Input }, /idleTimeout: Expected a duration > 0 .*, got "soon"/]
      ]
      for (const [options, message] of cases) {
        const exit = yield* Effect.exit(Effect.scoped(WorkerPool.make({ acquire, size: 1, ...options })))
        const defect = defectOf(exit)
        expect(defect).toBeInstanceOf(PoolOptionsError)
        expect((defect as PoolOptionsError).message).toMatch(message)
      }
    }))

  it.effect("the limits take every Duration.Input form", () =>
    Effect.gen(function*() {
      const res = makeResources()
      const pool = yield* WorkerPool.make({
        acquire: res.acquire,
        size: 1,
        idleTimeout: [1, 500_000_000], // 1.5 s as [seconds, nanos]
        acquireTimeout: BigInt(2_000_000_000), // 2 s in nanoseconds
        leaseTimeout: { minutes: 1 },
        shutdownTimeout: "Infinity"
      })
      yield* (yield* lease(pool)).release
      yield* TestClock.adjust("1499 millis")
      expect(res.finalized).toEqual([])
      yield* TestClock.adjust("1 millis")
      yield* settle
      expect(res.finalized).toEqual([1])
    }))
})

describe("createWorkerPool keeps its milliseconds", () => {
  afterEach(() => {
    vi.useRealTimers()
  })

  it("durationOfMs: undefined stays absent, 0 and Infinity are Duration.infinity, others are milliseconds", () => {
    expect(durationOfMs(undefined)).toBeUndefined()
    expect(durationOfMs(0)).toBe(Duration.infinity)
    expect(durationOfMs(Infinity)).toBe(Duration.infinity)
    expect(Duration.toMillis(durationOfMs(1)!)).toBe(1)
    expect(Duration.toMillis(durationOfMs(2.5)!)).toBe(2.5)
  })

  it("idleTimeoutMs 0 still never retires and shutdownTimeoutMs 0 still waits for ever", async () => {
    vi.useFakeTimers()
    const destroyed: Array<number> = []
    let next = 0
    const pool = createWorkerPool({
      create: async () => ({ id: ++next }),
      destroy: (worker) => void destroyed.push(worker.id),
      poolSize: 2,
      idleTimeoutMs: 0,
      shutdownTimeoutMs: 0
    })
    const held = await pool.acquire()
    pool.release(await pool.acquire())
    await vi.advanceTimersByTimeAsync(Duration.toMillis(aYear))
    expect(destroyed).toEqual([])
    let done = false
    const shutdown = pool.shutdown().then(() => {
      done = true
    })
    await vi.advanceTimersByTimeAsync(Duration.toMillis(aYear))
    // The idle worker went at shutdown; the leased one is waited for.
    expect(destroyed).toEqual([2])
    expect(done).toBe(false)
    pool.release(held)
    await shutdown
    expect(destroyed).toEqual([2, 1])
  })

  it("leaseTimeoutMs is milliseconds and onLeaseTimeout still gets milliseconds", async () => {
    vi.useFakeTimers()
    const expired: Array<unknown> = []
    const pool = createWorkerPool({
      create: async () => ({}),
      poolSize: 1,
      leaseTimeoutMs: 1_500,
      onLeaseTimeout: (_worker, ms) => void expired.push(ms)
    })
    const held = await pool.acquire()
    await vi.advanceTimersByTimeAsync(1_499)
    expect(expired).toEqual([])
    await vi.advanceTimersByTimeAsync(1)
    expect(expired).toEqual([1_500])
    pool.release(held)
    await pool.shutdown()
  })
})

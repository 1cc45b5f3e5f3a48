/**
 * Property tests of `WorkerPool` over random schedules run under the
 * `TestClock`: random pool options and random interleavings of acquires
 * (some with their own timeout), releases, interruptions (including the race
 * of an interruption with a hand-off), invalidations, failing and gated
 * creates, clock advances and shutdown, with fibers yielding to the scheduler
 * at Effect's usual budget or after every few operations. See
 * `helpers/schedule.ts` for the generator, the model (which also observes the
 * pool's core at its own calls) and the invariants of each category.
 *
 * Each property runs a fixed seed, so a failure reproduces; the failure
 * message shows the shrunk schedule, the violated invariant and a trace.
 * Nothing here waits without bound: a schedule whose fibers block (a broken
 * pool that never serves, times out or retires) fails at once as `[blocked]`
 * and shrinks like any other failure, and the unit tests run fail-fast.
 */
import { describe, expect, it } from "@effect/vitest"
import { Arbitrary, Deferred, Effect, Exit, Fiber, Scheduler, Schema, Scope } from "effect"
import { TestClock } from "effect/testing"
import * as WorkerPool from "../src/WorkerPool.ts"
import { makeResources } from "./helpers/resources.ts"
import { failFast } from "./helpers/failFast.ts"
import { arbitraries, idleArbitraries, runSchedule, type Summary } from "./helpers/schedule.ts"

/** `it.effect` that fails fast instead of hanging (see helpers/failFast.ts). */
const test = <E>(name: string, body: () => Effect.Effect<void, E, Scope.Scope>) =>
  it.effect(name, () => failFast(body(), { name }))

/** Lets forked fibers run until they block. */
const settle = Effect.gen(function*() {
  for (let i = 0; i < 20; i++) yield* Effect.yieldNow
})

// Fixed seeds keep the suite deterministic; set WORKER_POOL_PROP_SEED (an integer added to each property's seed)
// and WORKER_POOL_PROP_RUNS to explore further.
const RUNS = Number(process.env["WORKER_POOL_PROP_RUNS"] ?? 500)
const SEED = Number(process.env["WORKER_POOL_PROP_SEED"] ?? 0)
const options = (seed: number) => ({ timeout: 60_000, arbitrary: { runs: RUNS, size: 40, seed: SEED + seed } })

describe("WorkerPool properties (random schedules, TestClock)", () => {
  it.effect.prop(
    "FIFO: acquires are served in arrival order, with no barging, and a release goes to the oldest waiter",
    arbitraries,
    ({ config, steps }) => runSchedule(config, steps, ["fifo"]),
    options(1)
  )

  it.effect.prop(
    "capacity: at most size workers, one holder per worker, no idle worker while acquires wait",
    arbitraries,
    ({ config, steps }) => runSchedule(config, steps, ["capacity"]),
    options(5)
  )

  it.effect.prop(
    "every acquire settles exactly once, with a legitimate outcome; interrupted waiters never get a worker",
    arbitraries,
    ({ config, steps }) => runSchedule(config, steps, ["settle"]),
    options(3)
  )

  it.effect.prop(
    "shutdown fails waiters with PoolShutdownError, completes, and finalizes every worker exactly once",
    arbitraries,
    ({ config, steps }) => runSchedule(config, steps, ["shutdown"]),
    options(4)
  )

  it.effect.prop(
    "accounting: the pool's counts agree with each other and with the workers held and alive",
    arbitraries,
    ({ config, steps }) => runSchedule(config, steps, ["accounting"]),
    options(2)
  )

  it.effect.prop(
    "idle workers retire exactly when due and never below minIdle, and minIdle workers are kept warm",
    idleArbitraries,
    ({ config, steps }) => runSchedule(config, steps, ["idle"]),
    options(60)
  )

  // A release resumes the next waiter's fiber synchronously, and a quick `use` releases again before returning:
  // past a nesting depth the pool resumes into a yield instead (so a long queue cannot overflow the stack), which
  // leaves a window where a waiter already handed a worker is interrupted before it runs and must pass it on.
  // (Live clock: a failing run must not hang in the pool's shutdown, which waits `shutdownTimeout` for a lost lease.)
  it.live.prop(
    "a long chain of quick leases, some interrupted as the chain reaches them, loses no worker",
    {
      size: Schema.Int.check(Schema.isBetween({ minimum: 1, maximum: 3 })),
      waiters: Schema.Int.check(Schema.isBetween({ minimum: 1, maximum: 120 })),
      interrupt: Schema.Array(Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 119 }))),
      interruptAfterRelease: Schema.Boolean,
      via: Schema.Literals(["use", "get"])
    },
    ({ interrupt, interruptAfterRelease, size, via, waiters }) =>
      Effect.gen(function*() {
        const res = makeResources()
        const pool = yield* WorkerPool.make({ acquire: res.acquire, size, shutdownTimeout: "10 millis" })
        // Every worker leased, then a queue of quick uses behind them.
        const holders = yield* Scope.fork(yield* Effect.scope)
        for (let i = 0; i < size; i++) yield* Scope.provide(pool.get, holders)
        let ran = 0
        const fibers: Array<Fiber.Fiber<void, unknown>> = []
        for (let i = 0; i < waiters; i++) {
          const work = Effect.sync(() => void ran++)
          const lease = via === "use" ? pool.use(() => work) : Effect.scoped(Effect.andThen(pool.get, work))
          fibers.push(yield* Effect.forkChild(lease))
        }
        yield* settle
        expect((yield* pool.stats).queued).toBe(waiters)
        const victims = new Set(interrupt.filter((i) => i < waiters))
        const interruptVictims = Effect.sync(() => {
          for (const i of victims) fibers[i]!.interruptUnsafe()
        })
        // The release runs the chain (partly synchronously); the interruptions land before or after it.
        if (!interruptAfterRelease) yield* interruptVictims
        yield* Scope.close(holders, Exit.void)
        if (interruptAfterRelease) yield* interruptVictims
        for (let i = 0; i < 1000 && fibers.some((fiber) => fiber.pollUnsafe() === undefined); i++) yield* Effect.yieldNow
        const stuck = fibers.flatMap((fiber, i) => fiber.pollUnsafe() === undefined ? [i] : [])
        expect(stuck, "uses still waiting after the chain ran (a worker was lost)").toEqual([])
        const exits = fibers.map((fiber) => fiber.pollUnsafe()!)
        // Every use ran or was interrupted, and none ran twice.
        const succeeded = exits.filter(Exit.isSuccess).length
        expect(succeeded + exits.filter((e) => Exit.isFailure(e) && Exit.hasInterrupts(e)).length).toBe(waiters)
        expect(ran).toBe(succeeded)
        for (const [i, exit] of exits.entries()) if (!victims.has(i)) expect(Exit.isSuccess(exit)).toBe(true)
        // No worker was lost: all are idle again and the pool serves a new lease.
        expect(yield* pool.stats).toMatchObject({ busy: 0, queued: 0, idle: size, creating: 0 })
        expect(yield* pool.use((r) => Effect.succeed(r.id))).toBeGreaterThan(0)
      }),
    { timeout: 60_000, arbitrary: { runs: Math.ceil(RUNS / 5), seed: SEED + 7 } }
  )

  // Guards the generator: the properties above are only as good as the cases it reaches.
  it.effect("the generated schedules reach every interesting case", () =>
    Effect.gen(function*() {
      const samples = yield* Arbitrary.sampleEffect(Arbitrary.all(arbitraries), { count: RUNS, size: 40, seed: 7 })
      const totals: Record<string, number> = {}
      for (const { config, steps } of samples) {
        const summary: Summary = yield* Effect.scoped(runSchedule(config, steps, [])).pipe(
          Effect.provide(TestClock.layer())
        )
        for (const [key, value] of Object.entries(summary)) totals[key] = (totals[key] ?? 0) + value
      }
      console.log(totals)
      for (const [key, value] of Object.entries(totals)) expect([key, value > 0]).toEqual([key, true])
    }), 60_000)

  describe("counterexamples found by the properties", () => {
    // The capacity property's shrunk schedule: size 2, minIdle 1, two acquires at once with fibers yielding every
    // 10 operations ends with busy 1, idle 1, queued 1. `get` calls `core.take()` and, when that finds nothing,
    // `core.enqueue()` in a later operation of the fiber; when the fiber yields in between (its operation budget,
    // `Scheduler.MaxOpsBeforeYield`, runs out there), a worker that becomes idle meanwhile stays idle while the
    // acquire waits behind it: until its timeout, or forever. Here: the only worker is released while the
    // acquire is between the two calls.
    test("an acquire that yields between take and enqueue is not left waiting beside an idle worker", () =>
      Effect.gen(function*() {
        const stranded: Array<number> = []
        for (let ops = 3; ops <= 12; ops++) {
          const poolScope = yield* Scope.make()
          const pool = yield* Scope.provide(WorkerPool.make({ acquire: makeResources().acquire, size: 1 }), poolScope)
          const holderScope = yield* Scope.make()
          yield* Scope.provide(pool.get, holderScope)
          const waiterScope = yield* Scope.fork(yield* Effect.scope)
          const waiter = yield* Effect.forkChild(
            Scope.provide(pool.get, waiterScope).pipe(Effect.provideService(Scheduler.MaxOpsBeforeYield, ops))
          )
          yield* Effect.yieldNow // the waiter runs until its budget makes it yield
          yield* Scope.close(holderScope, Exit.void) // the only worker is released
          for (let i = 0; i < 50; i++) yield* Effect.yieldNow
          const stats = yield* pool.stats
          if (waiter.pollUnsafe() === undefined && stats.idle > 0) stranded.push(ops)
          yield* Scope.close(waiterScope, Exit.void)
          yield* Scope.close(poolScope, Exit.void) // fails a stranded waiter with PoolShutdownError
          yield* Fiber.await(waiter)
        }
        expect(stranded, "operation budgets at which the waiter was stranded").toEqual([])
      }))

    // The idle property's shrunk schedule: size 4, minIdle 1, two acquires at once with fibers yielding every 3
    // operations ends with busy 2, idle 0, creating 0: no warm worker although there is room for two. The first
    // acquire takes the warm worker and starts a warm-up create; the second queues behind that create (no create
    // of its own); the new worker is handed to it, and nothing starts another warm-up. Any create that takes
    // time (a real worker's) does this, as the gate shows here.
    test("minIdle stays warm after the warm-up create is handed to a waiter", () =>
      Effect.gen(function*() {
        const res = makeResources()
        const pool = yield* WorkerPool.make({ acquire: res.acquire, size: 4, minIdle: 1 })
        yield* settle
        expect(yield* pool.stats).toMatchObject({ idle: 1, creating: 0 })
        const gate = yield* Deferred.make<void>()
        res.gate = gate
        // Lease scopes are children of the test's scope: they close (ending the leases) before the pool does.
        const first = yield* Scope.fork(yield* Effect.scope)
        yield* Scope.provide(pool.get, first) // takes the warm worker; a warm-up create starts (gated)
        const second = yield* Scope.fork(yield* Effect.scope)
        const waiter = yield* Effect.forkChild(Scope.provide(pool.get, second)) // waits for that create
        yield* settle
        expect(yield* pool.stats).toMatchObject({ busy: 1, idle: 0, creating: 1, queued: 1 })
        res.gate = undefined
        yield* Deferred.succeed(gate, undefined)
        yield* Fiber.join(waiter)
        yield* settle
        const stats = yield* pool.stats
        expect(stats.busy).toBe(2)
        expect(stats.idle + stats.creating, "workers warm or warming (minIdle 1, room for 2)").toBeGreaterThanOrEqual(1)
      }))
  })
})

/**
 * The times of the Codex pool: the Effect service (`CodexWorkerPool.Options`,
 * `CodexWorker.ProcessOptions`) takes `Duration.Input`s under duration names,
 * `Duration.infinity` meaning no limit, while the promise facade
 * (`createCodexWorkerPool`, `createTestCodexWorkerPool`) keeps its `...Ms`
 * numbers with their old meaning (0: no limit), mapped in one place
 * (`fromFacadeOptions`).
 *
 * Pool time runs on the `TestClock` over fake workers (`makeTest`); the
 * facade's on vitest's fake timers. The option checks of `CodexWorker.make`
 * fail before any process is spawned.
 */
import { describe, expect, it } from "@effect/vitest"
import { Cause, Duration, Effect, Exit, Fiber, Scope } from "effect"
import * as ChildProcessSpawner from "effect/process/ChildProcessSpawner"
import { TestClock } from "effect/testing"
import { afterEach, vi } from "vitest"
import * as CodexWorker from "../src/CodexWorker.ts"
import type * as CodexWorkerPool from "../src/CodexWorkerPool.ts"
import { AcquireTimeoutError, LeaseTimeoutError, PoolOptionsError, WorkerSpawnError } from "../src/errors.ts"
import { fromFacadeOptions, validateFacade } from "../src/internal/codexPool.ts"
import { createCodexWorkerPool } from "../src/node.ts"
import { createTestCodexWorkerPool, makeTest, type TestOptions } from "../src/testing/TestCodexWorkerPool.ts"

/** Leases a worker in a scope of its own; returns it and the release. */
const lease = (pool: CodexWorkerPool.Service) =>
  Effect.gen(function*() {
    const scope = yield* Scope.fork(yield* Effect.scope)
    const worker = yield* Scope.provide(pool.get, scope)
    return { worker, release: Scope.close(scope, Exit.void) }
  })

/** Lets forked fibers run until they block. */
const settle = Effect.gen(function*() {
  for (let i = 0; i < 10; i++) yield* Effect.yieldNow
})

/** A promise that never settles: a request the script never answers. */
const never = () => new Promise<never>(() => {})

const defectOf = (exit: Exit.Exit<unknown, unknown>) => (Exit.isFailure(exit) ? Cause.squash(exit.cause) : undefined)

const aYear = Duration.days(365)

describe("CodexWorkerPool durations (Effect service)", () => {
  it.effect("idleTimeout takes a Duration: an idle worker is retired exactly when it runs out", () =>
    Effect.gen(function*() {
      const { fakes, pool } = yield* makeTest({ idleTimeout: Duration.seconds(90) })
      yield* pool.use(() => Effect.void)
      yield* TestClock.adjust("89999 millis")
      yield* settle
      expect(fakes.all[0]!.finalized).toBe(false)
      yield* TestClock.adjust("1 millis")
      while (!fakes.all[0]!.finalized) yield* Effect.yieldNow
      expect(yield* pool.stats).toMatchObject({ workers: 0, finalized: 1 })
    }))

  it.effect("idleTimeout absent is still 5 minutes, and Duration.infinity never retires", () =>
    Effect.gen(function*() {
      const byDefault = yield* makeTest({})
      const never = yield* makeTest({ idleTimeout: Duration.infinity })
      yield* byDefault.pool.use(() => Effect.void)
      yield* never.pool.use(() => Effect.void)
      yield* TestClock.adjust("4 minutes")
      yield* settle
      expect(byDefault.fakes.all[0]!.finalized).toBe(false)
      yield* TestClock.adjust("1 minute")
      while (!byDefault.fakes.all[0]!.finalized) yield* Effect.yieldNow
      yield* TestClock.adjust(aYear)
      yield* settle
      expect(never.fakes.all[0]!.finalized).toBe(false)
    }))

  it.effect("acquireTimeout takes a Duration string", () =>
    Effect.gen(function*() {
      const { pool } = yield* makeTest({ poolSize: 1, acquireTimeout: "15 seconds" })
      yield* lease(pool)
      const waiter = yield* Effect.forkChild(Effect.flip(pool.use(() => Effect.void)))
      yield* settle
      yield* TestClock.adjust("15 seconds")
      const error = yield* Fiber.join(waiter)
      expect(error).toBeInstanceOf(AcquireTimeoutError)
      expect(error).toMatchObject({ waitedMs: 15_000, poolSize: 1 })
    }))

  it.effect("leaseTimeout takes a Duration; the LeaseTimeoutError still carries the limit in milliseconds", () =>
    Effect.gen(function*() {
      const { pool } = yield* makeTest({ leaseTimeout: Duration.minutes(2), script: { methods: { "turn/start": never } } })
      const { worker } = yield* lease(pool)
      const pending = yield* Effect.forkChild(Effect.flip(worker.request("turn/start", {})))
      yield* TestClock.adjust("119999 millis")
      expect(pending.pollUnsafe()).toBeUndefined()
      yield* TestClock.adjust("1 millis")
      const error = yield* Fiber.join(pending)
      expect(error).toBeInstanceOf(LeaseTimeoutError)
      expect(error).toMatchObject({ leaseTimeoutMs: 120_000, pid: worker.pid })
      expect((error as LeaseTimeoutError).message).toContain("leaseTimeout (120000 ms)")
    }))

  it.effect("leaseTimeout absent is still 5 minutes, and Duration.infinity never expires", () =>
    Effect.gen(function*() {
      const script = { methods: { "turn/start": never } }
      const byDefault = yield* makeTest({ script })
      const unlimited = yield* makeTest({ leaseTimeout: Duration.infinity, script })
      const a = yield* lease(byDefault.pool)
      const b = yield* lease(unlimited.pool)
      const expiring = yield* Effect.forkChild(Effect.flip(a.worker.request("turn/start", {})))
      const waiting = yield* Effect.forkChild(b.worker.request("turn/start", {}))
      yield* TestClock.adjust("5 minutes")
      expect(yield* Fiber.join(expiring)).toMatchObject({ _tag: "LeaseTimeoutError", leaseTimeoutMs: 300_000 })
      yield* TestClock.adjust(aYear)
      yield* settle
      expect(waiting.pollUnsafe()).toBeUndefined()
      expect(unlimited.fakes.all[0]!.closed).toBe(false)
    }))

  it.effect("shutdownTimeout Duration.infinity waits for ever: a year later shutdown still waits for the lease", () =>
    Effect.gen(function*() {
      const { fakes, pool } = yield* makeTest({ poolSize: 2, shutdownTimeout: Duration.infinity })
      const held = yield* lease(pool)
      yield* pool.use(() => Effect.void)
      const shutdown = yield* Effect.forkChild(pool.shutdown)
      yield* settle
      yield* TestClock.adjust(aYear)
      yield* settle
      expect(shutdown.pollUnsafe()).toBeUndefined()
      // The idle worker went at once; the leased one is waited for.
      expect(fakes.all.map((fake) => fake.finalized)).toEqual([false, true])
      yield* held.release
      yield* Fiber.join(shutdown)
      expect(fakes.all.every((fake) => fake.finalized)).toBe(true)
    }))

  it.effect("shutdownTimeout zero kills leased workers at once; absent it is still 30 seconds", () =>
    Effect.gen(function*() {
      const now = yield* makeTest({ shutdownTimeout: 0 })
      yield* lease(now.pool)
      const first = yield* Effect.forkChild(now.pool.shutdown)
      while (first.pollUnsafe() === undefined) yield* Effect.yieldNow
      expect(now.fakes.all[0]!.finalized).toBe(true)

      const byDefault = yield* makeTest({})
      yield* lease(byDefault.pool)
      const second = yield* Effect.forkChild(byDefault.pool.shutdown)
      yield* settle
      yield* TestClock.adjust("29999 millis")
      yield* settle
      expect(second.pollUnsafe()).toBeUndefined()
      yield* TestClock.adjust("1 millis")
      yield* Fiber.join(second)
      expect(byDefault.fakes.all[0]!.finalized).toBe(true)
    }))

  it.effect("spawnTimeout takes a Duration; Duration.infinity waits for initialize for ever", () =>
    Effect.gen(function*() {
      const script = { methods: { initialize: never } }
      const bounded = yield* makeTest({ spawnTimeout: Duration.seconds(7), script })
      const unbounded = yield* makeTest({ spawnTimeout: Duration.infinity, script })
      const failing = yield* Effect.forkChild(Effect.flip(bounded.pool.use(() => Effect.void)))
      const waiting = yield* Effect.forkChild(unbounded.pool.use(() => Effect.void))
      yield* settle
      yield* TestClock.adjust("7 seconds")
      const error = yield* Fiber.join(failing)
      expect(error).toBeInstanceOf(WorkerSpawnError)
      expect((error as WorkerSpawnError).message).toContain("spawnTimeout (7000 ms)")
      yield* TestClock.adjust(aYear)
      yield* settle
      expect(waiting.pollUnsafe()).toBeUndefined()
      expect(yield* unbounded.pool.stats).toMatchObject({ creating: 1, createFailures: 0 })
    }))

  it.effect("bad times die with PoolOptionsError naming the option; the old ...Ms names are unknown options", () =>
    Effect.gen(function*() {
      const cases: Array<[TestOptions, RegExp]> = [
        [{ idleTimeout: 0 }, /idleTimeout: Expected a duration > 0 \(Duration\.infinity for no limit\), got 0/],
        [{ acquireTimeout: Duration.zero }, /acquireTimeout: Expected a duration > 0 /],
        [{ leaseTimeout: "0 seconds" }, /leaseTimeout: Expected a duration > 0 /],
        [{ spawnTimeout: 0 }, /spawnTimeout: Expected a duration > 0 /],
        [{ shutdownTimeout: -5 }, /shutdownTimeout: Expected a duration >= 0 /],
        [{ minIdle: 2 }, /minIdle: must be <= poolSize \(1\), got 2/],
        [{ idleTimeoutMs: 60_000 } as TestOptions, /idleTimeoutMs: unknown option/],
        [{ shutdownTimeoutMs: 0 } as TestOptions, /shutdownTimeoutMs: unknown option/]
      ]
      for (const [options, message] of cases) {
        const defect = defectOf(yield* Effect.exit(Effect.scoped(makeTest(options))))
        expect(defect).toBeInstanceOf(PoolOptionsError)
        expect((defect as PoolOptionsError).message).toMatch(message)
      }
    }))
})

describe("CodexWorker.make checks its times before spawning", () => {
  /** A spawner that records every spawn (none is expected). */
  const spawns: Array<unknown> = []
  const spawner = ChildProcessSpawner.make((command) =>
    Effect.sync(() => void spawns.push(command)).pipe(Effect.andThen(Effect.die(new Error("no spawn expected"))))
  )

  it.effect("a bad killGrace, spawnTimeout or processScanInterval dies with PoolOptionsError naming it", () =>
    Effect.gen(function*() {
      const cases: Array<[CodexWorker.ProcessOptions, RegExp]> = [
        [{ killGrace: Duration.infinity }, /^Invalid CodexWorker options: killGrace: Expected a finite duration >= 0, got a Duration \(Infinity\)\.$/],
        [{ killGrace: -1 }, /killGrace: Expected a finite duration >= 0, got -1/],
        [{ spawnTimeout: 0 }, /spawnTimeout: Expected a duration > 0 /],
        [{ processScanInterval: "0 millis" }, /processScanInterval: Expected a duration > 0 /],
        [{ spawnTimeoutMs: 1_000 } as CodexWorker.ProcessOptions, /spawnTimeoutMs: unknown option/]
      ]
      for (const [options, message] of cases) {
        const exit = yield* Effect.exit(Effect.scoped(CodexWorker.make({ command: "codex-never-spawned", ...options })))
        const defect = defectOf(exit)
        expect(defect).toBeInstanceOf(PoolOptionsError)
        expect((defect as PoolOptionsError).message).toMatch(message)
      }
      expect(spawns).toEqual([])
    }).pipe(Effect.provideService(ChildProcessSpawner.ChildProcessSpawner, spawner)))
})

describe("the promise facade keeps its milliseconds", () => {
  afterEach(() => {
    vi.useRealTimers()
  })

  it("fromFacadeOptions maps each ...Ms option to its duration, 0 of a limit to Duration.infinity", () => {
    const mapped = fromFacadeOptions({
      poolSize: 2,
      idleTimeoutMs: 0,
      acquireTimeoutMs: 1_500,
      leaseTimeoutMs: 0,
      shutdownTimeoutMs: 0,
      spawnTimeoutMs: 20_000,
      killGraceMs: 0,
      processScanIntervalMs: 250,
      debug: true,
      logger: console
    })
    expect(Object.keys(mapped).sort()).toEqual([
      "acquireTimeout",
      "idleTimeout",
      "killGrace",
      "leaseTimeout",
      "poolSize",
      "processScanInterval",
      "shutdownTimeout",
      "spawnTimeout"
    ])
    const millis = (d: Duration.Input | undefined) => (d === undefined ? undefined : Duration.toMillis(d))
    expect({
      idleTimeout: millis(mapped.idleTimeout),
      acquireTimeout: millis(mapped.acquireTimeout),
      leaseTimeout: millis(mapped.leaseTimeout),
      shutdownTimeout: millis(mapped.shutdownTimeout),
      spawnTimeout: millis(mapped.spawnTimeout),
      // No grace, not "no limit".
      killGrace: millis(mapped.killGrace),
      processScanInterval: millis(mapped.processScanInterval)
    }).toEqual({
      idleTimeout: Infinity,
      acquireTimeout: 1_500,
      leaseTimeout: Infinity,
      shutdownTimeout: Infinity,
      spawnTimeout: 20_000,
      killGrace: 0,
      processScanInterval: 250
    })
    // Absent stays absent: the service's defaults apply.
    const defaults = validateFacade({})
    expect(defaults.pool).toMatchObject({ idleTimeout: "5 minutes", leaseTimeout: "5 minutes" })
    expect(defaults.pool.acquireTimeout).toBeUndefined()
    expect(defaults.pool.shutdownTimeout).toBeUndefined()
  })

  it("the facade refuses the Effect names and bad milliseconds, naming them", () => {
    const cases: Array<[Record<string, unknown>, RegExp]> = [
      [{ idleTimeout: "1 minute" }, /^Invalid createCodexWorkerPool options: idleTimeout: unknown option\.$/],
      [{ killGraceMs: Infinity }, /killGraceMs: Expected a finite number, got Infinity/],
      [{ spawnTimeoutMs: 0 }, /spawnTimeoutMs: Expected a value greater than 0, got 0/],
      [{ leaseTimeoutMs: -1 }, /leaseTimeoutMs: Expected a number of milliseconds >= 0 \(not NaN\), got -1/],
      [{ poolSize: 1, minIdle: 2 }, /minIdle: must be <= poolSize \(1\), got 2/]
    ]
    // Refused before anything is built or spawned.
    for (const [options, message] of cases) {
      expect(() => createCodexWorkerPool(options as never)).toThrow(PoolOptionsError)
      expect(() => createCodexWorkerPool(options as never)).toThrow(message)
    }
  })

  it("createTestCodexWorkerPool: leaseTimeoutMs is milliseconds", async () => {
    vi.useFakeTimers()
    const pool = createTestCodexWorkerPool({ leaseTimeoutMs: 1_500, script: { methods: { "turn/start": never } } })
    const worker = await pool.acquire()
    const request = worker.request("turn/start", {}).catch((error: unknown) => error)
    await vi.advanceTimersByTimeAsync(1_499)
    expect(pool.fakes.open()).toHaveLength(1)
    await vi.advanceTimersByTimeAsync(1)
    expect(await request).toMatchObject({ _tag: "LeaseTimeoutError", leaseTimeoutMs: 1_500 })
    pool.release(worker)
    await pool.shutdown()
  })

  it("createTestCodexWorkerPool: idleTimeoutMs 0 never retires and shutdownTimeoutMs 0 waits for ever", async () => {
    vi.useFakeTimers()
    const pool = createTestCodexWorkerPool({ poolSize: 2, idleTimeoutMs: 0, leaseTimeoutMs: 0, shutdownTimeoutMs: 0 })
    const held = await pool.acquire()
    pool.release(await pool.acquire())
    await vi.advanceTimersByTimeAsync(Duration.toMillis(aYear))
    expect(pool.fakes.open()).toHaveLength(2)
    let done = false
    const shutdown = pool.shutdown().then(() => {
      done = true
    })
    await vi.advanceTimersByTimeAsync(Duration.toMillis(aYear))
    expect(done).toBe(false)
    // The idle worker went at shutdown; the leased one is waited for.
    expect(pool.fakes.open()).toHaveLength(1)
    pool.release(held)
    await shutdown
    expect(pool.fakes.open()).toEqual([])
  })
})

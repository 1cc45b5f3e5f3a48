/**
 * The Effect-native contenders (this library's `WorkerPool` and Effect's
 * `Pool`) and measurements 1-6 for them.
 *
 * Every measurement runs inside one `Effect.runPromise`, with the clock read
 * inside it, so the comparison is API against API rather than the cost of
 * starting a runtime per operation. Waiters are fibers: each is forked with
 * `startImmediately`, so it has joined the pool's queue before the next one
 * is forked, and aborting one means interrupting its fiber.
 */
import { Deferred, Effect, Exit, Fiber, Scope } from "effect"
import * as Pool from "effect/Pool"
import * as WorkerPool from "../../src/WorkerPool.ts"
import type { Check } from "../lib/types.ts"
import { gcNow, heapUsed, median } from "../lib/stats.ts"
import { ABORT_BATCHES, abortCheck, orderCheck, stormCheck } from "./promiseScenarios.ts"
import type { PoolSettings, Worker } from "./promiseContenders.ts"

export interface EffectAdapter {
  readonly use: <A, E, R>(f: (worker: Worker) => Effect.Effect<A, E, R>) => Effect.Effect<A, unknown, R>
  /** `use` under the acquire timeout the pool was made with (the storm's waiters; holders use `use`). */
  readonly useTimed: <A, E, R>(f: (worker: Worker) => Effect.Effect<A, E, R>) => Effect.Effect<A, unknown, R>
}

export interface EffectContender {
  readonly name: string
  readonly description: string
  readonly make: (settings: PoolSettings) => Effect.Effect<EffectAdapter, never, Scope.Scope>
  readonly abort: true | string
  readonly timeout: true | string
}

const workers = () => {
  let next = 0
  return Effect.sync((): Worker => ({ id: next++ }))
}

export const effectNative: EffectContender = {
  name: "effect-api",
  description: "this library, Effect-native API (WorkerPool.make + pool.use)",
  abort: true,
  timeout: true,
  make: ({ size, acquireTimeoutMs }) =>
    Effect.map(
      WorkerPool.make<Worker>({
        acquire: workers(),
        size,
        ...(acquireTimeoutMs ? { acquireTimeout: acquireTimeoutMs } : {})
      }),
      (pool): EffectAdapter => ({ use: (f) => pool.use(f), useTimed: (f) => pool.use(f) })
    )
}

export const effectPool: EffectContender = {
  name: "effect-pool",
  description: "effect 4.1 Pool (makeWithTTL min 0 / max N, TTL 5 min; Pool.use; timeout = Effect.timeout)",
  abort: true,
  timeout: true,
  make: ({ size, acquireTimeoutMs }) =>
    Effect.map(
      Pool.makeWithTTL({ acquire: workers(), min: 0, max: size, timeToLive: "5 minutes" }),
      (pool): EffectAdapter => ({
        use: (f) => Pool.use(pool, f),
        // No acquire timeout in Effect's Pool: the whole use is timed (the body never runs in the storm).
        useTimed: acquireTimeoutMs ? (f) => Effect.timeout(Pool.use(pool, f), acquireTimeoutMs) : (f) => Pool.use(pool, f)
      })
    )
}

export const effectContenders: ReadonlyArray<EffectContender> = [effectNative, effectPool]

const noop = () => Effect.void

/**
 * The body of a waiter's lease when the pool is saturated: it holds the worker
 * across one scheduler turn, so the release runs from the scheduler rather
 * than from inside the fiber that handed the worker over. (With bodies that
 * complete synchronously, a hand-off chain through `WorkerPool` nests one
 * fiber run per hand-off on the JS stack; see the report of this benchmark.)
 */
const hop = () => Effect.yieldNow

/** Holds every worker until `release` runs. */
const holdAll = (pool: EffectAdapter, size: number) =>
  Effect.gen(function*() {
    const gate = yield* Deferred.make<void>()
    const allHeld = yield* Deferred.make<void>()
    let held = 0
    const holders: Array<Fiber.Fiber<unknown, unknown>> = []
    for (let i = 0; i < size; i++) {
      holders.push(
        yield* Effect.forkChild(
          pool.use(() =>
            Effect.andThen(
              Effect.sync(() => {
                if (++held === size) Deferred.doneUnsafe(allHeld, Exit.void)
              }),
              Deferred.await(gate)
            )
          )
        )
      )
    }
    yield* Deferred.await(allHeld)
    return Effect.andThen(Deferred.succeed(gate, undefined), Fiber.awaitAll(holders))
  })

const warm = (pool: EffectAdapter, size: number) => Effect.flatMap(holdAll(pool, size), (release) => release)

const slots = <A>(n: number): Array<A | null> => {
  const a: Array<A | null> = []
  for (let i = 0; i < n; i++) a.push(null)
  return a
}

/** Runs `body` with a fresh, warmed pool in its own scope. */
const withPool = <A>(
  contender: EffectContender,
  settings: PoolSettings,
  body: (pool: EffectAdapter) => Effect.Effect<A, unknown>
): Promise<A> =>
  Effect.runPromise(
    Effect.scoped(
      Effect.gen(function*() {
        const pool = yield* contender.make(settings)
        yield* warm(pool, settings.size)
        return yield* body(pool)
      })
    )
  )

/** A fiber that waits in the pool's queue (it has joined it when this returns). */
const forkWaiter = <A, E>(effect: Effect.Effect<A, E>) => Effect.forkChild(effect, { startImmediately: true })

/** 1. Uncontended use, sequential: ns per operation. */
export const uncontended = (contender: EffectContender, size: number, ops: number): Promise<number> =>
  withPool(contender, { size }, (pool) =>
    Effect.gen(function*() {
      let i = 0
      const t0 = performance.now()
      yield* Effect.whileLoop({ while: () => i++ < ops, body: () => pool.use(noop), step: () => {} })
      return ((performance.now() - t0) * 1e6) / ops
    }))

/**
 * 2. Saturated hand-off: `callers` fibers doing `cycles` uses each, each use
 * holding its worker across one scheduler turn (without that, the first
 * fibers run all their cycles on idle workers before the others start, and
 * nothing is ever handed off). Operations per second.
 */
export const handoff = (contender: EffectContender, size: number, callers: number, cycles: number): Promise<number> =>
  withPool(contender, { size }, (pool) =>
    Effect.gen(function*() {
      const loop = Effect.suspend(() => {
        let k = 0
        return Effect.whileLoop({ while: () => k++ < cycles, body: () => pool.use(hop), step: () => {} })
      })
      const callerIds = Array.from({ length: callers }, (_, i) => i)
      const t0 = performance.now()
      yield* Effect.forEach(callerIds, () => loop, { concurrency: "unbounded", discard: true })
      return (callers * cycles) / ((performance.now() - t0) / 1000)
    }))

/** 3. FIFO under saturation: pool of 1, `n` queued fibers; served order must equal queue order. */
export const fifo = (contender: EffectContender, n: number): Promise<Check> =>
  withPool(contender, { size: 1 }, (pool) =>
    Effect.gen(function*() {
      const release = yield* holdAll(pool, 1)
      const queued: Array<number> = []
      const served: Array<number> = []
      const fibers: Array<Fiber.Fiber<unknown, unknown>> = []
      for (let i = 0; i < n; i++) {
        fibers.push(
          yield* forkWaiter(Effect.suspend(() => {
            queued.push(i)
            return pool.use(() => Effect.andThen(Effect.sync(() => void served.push(i)), Effect.yieldNow))
          }))
        )
      }
      yield* release
      yield* Fiber.awaitAll(fibers)
      // Waiters are numbered in the order they reached `use`; that must be 0..n-1 too.
      const q = orderCheck(queued, n)
      if (!q.ok) return { ok: false, text: "VIOLATED", detail: `fibers did not queue in fork order: ${q.detail}` }
      return orderCheck(served, n)
    }))

/** 4. Heap bytes per queued fiber. */
export const heapPerWaiter = (contender: EffectContender, size: number, n: number): Promise<number> =>
  withPool(contender, { size }, (pool) =>
    Effect.gen(function*() {
      const release = yield* holdAll(pool, size)
      const fibers = slots<Fiber.Fiber<unknown, unknown>>(n)
      const waiter = pool.use(hop)
      gcNow()
      const before = heapUsed()
      for (let i = 0; i < n; i++) fibers[i] = yield* forkWaiter(waiter)
      gcNow()
      const after = heapUsed()
      yield* release
      yield* Fiber.awaitAll(fibers as Array<Fiber.Fiber<unknown, unknown>>)
      return (after - before) / n
    }))

/** 5. Abort cost: `queued` fibers; interrupt `sample` from the middle, in batches. Microseconds per abort (median batch). */
export const abortCost = (
  contender: EffectContender,
  size: number,
  queued: number,
  sample: number
): Promise<{ readonly perAbortUs: number; readonly check: Check }> =>
  withPool(contender, { size }, (pool) =>
    Effect.gen(function*() {
      const release = yield* holdAll(pool, size)
      const served: Array<number> = []
      const fibers = slots<Fiber.Fiber<unknown, unknown>>(queued) as Array<Fiber.Fiber<unknown, unknown>>
      for (let i = 0; i < queued; i++) {
        fibers[i] = yield* forkWaiter(pool.use(() => Effect.andThen(Effect.sync(() => void served.push(i)), Effect.yieldNow)))
      }
      const first = Math.floor((queued - sample) / 2)
      const perBatch = Math.ceil(sample / ABORT_BATCHES)
      const times: Array<number> = []
      for (let from = first; from < first + sample; from += perBatch) {
        const victims = fibers.slice(from, Math.min(from + perBatch, first + sample))
        gcNow()
        const t0 = performance.now()
        yield* Fiber.interruptAll(victims)
        times.push(((performance.now() - t0) * 1000) / victims.length)
      }
      yield* release
      yield* Fiber.awaitAll(fibers)
      return { perAbortUs: median(times)!, check: abortCheck(served, queued, first, sample) }
    }))

/** 6. Timeout storm: `n` fibers with a `timeoutMs` acquire timeout; ms until all have failed. */
export const timeoutStorm = (
  contender: EffectContender,
  size: number,
  n: number,
  timeoutMs: number
): Promise<{ readonly ms: number; readonly check: Check }> =>
  withPool(contender, { size, acquireTimeoutMs: timeoutMs }, (pool) =>
    Effect.gen(function*() {
      const release = yield* holdAll(pool, size)
      let served = 0
      let failed = 0
      const waiter = Effect.exit(pool.useTimed(() => Effect.sync(() => void served++))).pipe(
        Effect.map((exit) => {
          if (Exit.isFailure(exit)) failed++
        })
      )
      const fibers = slots<Fiber.Fiber<unknown, unknown>>(n) as Array<Fiber.Fiber<unknown, unknown>>
      gcNow()
      const t0 = performance.now()
      for (let i = 0; i < n; i++) fibers[i] = yield* forkWaiter(waiter)
      yield* Fiber.awaitAll(fibers)
      const t1 = performance.now()
      yield* release
      return { ms: t1 - t0, check: stormCheck(served, failed, n) }
    }))

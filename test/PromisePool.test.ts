/**
 * The promise facade (`createWorkerPool`): queueing, FIFO hand-off, abort,
 * timeouts, queue bound, invalidation, idle retirement, shutdown, errors,
 * option validation and stats.
 *
 * Workers are plain objects numbered in creation order; `create` and
 * `destroy` are spies, so every test can count them. Anything time-based runs
 * on vitest's fake timers (the pool's clock is Effect's default Clock, which
 * reads `Date.now` and sleeps with `setTimeout`); nothing sleeps for real.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest"
import {
  AcquireTimeoutError,
  PoolOptionsError,
  PoolShutdownError,
  QueueFullError,
  WorkerNotLeasedError
} from "../src/errors.ts"
import { createWorkerPool, type PoolLogger, type PromiseWorkerPool, type WorkerPoolOptions } from "../src/PromisePool.ts"

// -----------------------------------------------------------------------------
// Helpers
// -----------------------------------------------------------------------------

interface Worker {
  readonly id: number
}

/** Pools made by a test, shut down (without waiting) after it. */
const pools: Array<PromiseWorkerPool<Worker>> = []

afterEach(() => {
  for (const pool of pools.splice(0)) pool.shutdown().catch(() => {})
  vi.useRealTimers()
  vi.restoreAllMocks()
})

/**
 * A pool of numbered workers. `create` and `destroy` are spies that succeed at
 * once unless the test passes its own. `poolSize` defaults to 1.
 */
const setup = (options: Partial<WorkerPoolOptions<Worker>> = {}) => {
  let next = 0
  const create = vi.fn(async (_signal: AbortSignal): Promise<Worker> => ({ id: ++next }))
  const destroy = vi.fn(async (_worker: Worker): Promise<void> => {})
  const pool = createWorkerPool<Worker>({ create, destroy, poolSize: 1, ...options })
  pools.push(pool)
  return { pool, create, destroy }
}

/** The ids of the workers `destroy` was called with, in call order. */
const destroyedIds = (destroy: { readonly mock: { readonly calls: ReadonlyArray<ReadonlyArray<unknown>> } }) =>
  destroy.mock.calls.map(([worker]) => (worker as Worker).id)

/** A promise with its resolve / reject exposed. */
const deferred = <A>() => {
  let resolve!: (value: A) => void
  let reject!: (error: unknown) => void
  const promise = new Promise<A>((res, rej) => {
    resolve = res
    reject = rej
  })
  return { promise, resolve, reject }
}

/** Watches a promise so a test can assert it is still pending (and marks its rejection handled). */
const track = <A>(promise: Promise<A>) => {
  const t: { state: "pending" | "fulfilled" | "rejected"; value?: A; error?: unknown } = { state: "pending" }
  promise.then(
    (value) => {
      t.state = "fulfilled"
      t.value = value
    },
    (error: unknown) => {
      t.state = "rejected"
      t.error = error
    }
  )
  return t
}

/** Lets pending promise callbacks and the pool's fibers run, without moving time. */
const flush = async () => {
  for (let i = 0; i < 3; i++) {
    if (vi.isFakeTimers()) await vi.advanceTimersByTimeAsync(0)
    else await new Promise<void>((resolve) => setImmediate(resolve))
  }
}

/** The rejection reason of a promise that must reject. */
const rejectionOf = async (promise: Promise<unknown>): Promise<unknown> => {
  try {
    await promise
  } catch (error) {
    return error
  }
  throw new Error("expected the promise to reject, but it resolved")
}

/** Constructs a pool from options that are deliberately ill-typed. */
const construct = (options: Record<string, unknown>) =>
  createWorkerPool(options as unknown as WorkerPoolOptions<Worker>)

const ok = async (_signal: AbortSignal): Promise<Worker> => ({ id: 0 })

// -----------------------------------------------------------------------------
// PRD acceptance criteria
// -----------------------------------------------------------------------------

describe("PRD acceptance", () => {
  it("poolSize 1 with two concurrent users: the second waits instead of failing", async () => {
    const { pool } = setup({ poolSize: 1 })
    const first = deferred<string>()
    const one = track(pool.use(() => first.promise))
    const two = track(pool.use(async () => "second"))
    await flush()

    expect(one.state).toBe("pending")
    expect(two.state).toBe("pending")
    expect(pool.stats()).toMatchObject({ busy: 1, queued: 1 })
    first.resolve("first")
  })

  it("the second starts after the first release and completes", async () => {
    const { pool, create } = setup({ poolSize: 1 })
    const events: Array<string> = []
    const first = deferred<void>()
    const one = pool.use(async (worker) => {
      events.push(`first start on ${worker.id}`)
      await first.promise
      events.push("first end")
      return "first"
    })
    const two = pool.use(async (worker) => {
      events.push(`second start on ${worker.id}`)
      return "second"
    })
    await flush()
    expect(events).toEqual(["first start on 1"])

    first.resolve()
    expect(await one).toBe("first")
    expect(await two).toBe("second")
    expect(events).toEqual(["first start on 1", "first end", "second start on 1"])
    expect(create).toHaveBeenCalledTimes(1)
    expect(pool.stats()).toMatchObject({ busy: 0, idle: 1, queued: 0 })
  })

  it("FIFO order is deterministic", async () => {
    const { pool } = setup({ poolSize: 2 })
    const held = [await pool.acquire(), await pool.acquire()]
    const served: Array<number> = []
    for (let i = 0; i < 20; i++) {
      void pool.acquire().then((worker) => {
        served.push(i)
        held.push(worker)
      })
    }

    // Release in an irregular pattern: one or both workers, oldest or newest holder first.
    for (let round = 0; served.length < 20; round++) {
      const count = round % 3 === 0 ? held.length : 1
      const from = round % 2 === 0 ? 0 : held.length - count
      for (const worker of held.splice(from, count)) pool.release(worker)
      await flush()
    }

    expect(served).toEqual(Array.from({ length: 20 }, (_, i) => i))
  })

  it("abort before acquire leaves no queued waiter", async () => {
    const { pool } = setup({ poolSize: 1 })
    const held = await pool.acquire()
    const controller = new AbortController()
    const aborted = track(pool.acquire({ signal: controller.signal }))
    const next = track(pool.acquire())
    expect(pool.stats().queued).toBe(2)

    controller.abort()
    expect(pool.stats().queued).toBe(1)
    pool.release(held)
    await flush()

    expect(aborted.state).toBe("rejected")
    expect(next).toMatchObject({ state: "fulfilled", value: held })
    expect(pool.stats()).toMatchObject({ queued: 0, busy: 1 })
  })

  it("shutdown rejects every pending waiter with PoolShutdownError", async () => {
    const { pool } = setup({ poolSize: 1 })
    const held = await pool.acquire()
    const waiters = [pool.acquire(), pool.acquire(), pool.acquire()].map(track)

    const shutdown = track(pool.shutdown())
    await flush()

    for (const waiter of waiters) {
      expect(waiter.state).toBe("rejected")
      expect(waiter.error).toBeInstanceOf(PoolShutdownError)
    }
    expect(pool.stats().queued).toBe(0)
    expect(shutdown.state).toBe("pending") // the held worker is still out
    pool.release(held)
    await flush()
    expect(shutdown.state).toBe("fulfilled")
  })
})

// -----------------------------------------------------------------------------
// Queueing and hand-off
// -----------------------------------------------------------------------------

describe("queueing and hand-off", () => {
  it("a released worker goes straight to the oldest waiter, never idle in between", async () => {
    const { pool, create } = setup({ poolSize: 1 })
    const held = await pool.acquire()
    const first = track(pool.acquire())
    const second = track(pool.acquire())

    pool.release(held)
    expect(pool.stats()).toMatchObject({ idle: 0, busy: 1, queued: 1 })
    await flush()

    expect(first).toMatchObject({ state: "fulfilled", value: held })
    expect(second.state).toBe("pending")
    expect(create).toHaveBeenCalledTimes(1)
  })

  it("a waiter gets the released worker even while a worker is being created for it", async () => {
    const pending = deferred<Worker>()
    const create = vi.fn()
      .mockResolvedValueOnce({ id: 1 })
      .mockReturnValueOnce(pending.promise)
    const { pool } = setup({ poolSize: 2, create })
    const held = await pool.acquire()
    const waiter = track(pool.acquire()) // starts a second create
    expect(create).toHaveBeenCalledTimes(2)

    pool.release(held)
    await flush()
    expect(waiter).toMatchObject({ state: "fulfilled", value: held })
    expect(pool.stats().idle).toBe(0)

    pending.resolve({ id: 2 }) // nobody waits any more: it goes idle
    await flush()
    expect(pool.stats()).toMatchObject({ busy: 1, idle: 1, queued: 0 })
    expect(create).toHaveBeenCalledTimes(2)
  })

  it("an acquire made after others are waiting is served after them (no barging)", async () => {
    const { pool } = setup({ poolSize: 1 })
    const held = await pool.acquire()
    const order: Array<string> = []
    const early = pool.acquire().then((w) => {
      order.push("early")
      return w
    })
    const late = pool.acquire().then((w) => {
      order.push("late")
      return w
    })
    pool.release(held) // right after the late acquire

    pool.release(await early)
    await late
    expect(order).toEqual(["early", "late"])
  })

  it("an acquire made just after a hand-off does not take the handed-off worker", async () => {
    const { pool } = setup({ poolSize: 1 })
    const held = await pool.acquire()
    const waiter = track(pool.acquire())
    pool.release(held)
    const newcomer = track(pool.acquire()) // same tick, before the waiter's promise callbacks ran
    await flush()

    expect(waiter).toMatchObject({ state: "fulfilled", value: held })
    expect(newcomer.state).toBe("pending")
    expect(pool.stats()).toMatchObject({ busy: 1, queued: 1 })
  })
})

// -----------------------------------------------------------------------------
// Abort
// -----------------------------------------------------------------------------

describe("abort", () => {
  it("rejects with exactly signal.reason, a DOMException AbortError by default", async () => {
    const { pool } = setup()
    await pool.acquire()
    const controller = new AbortController()
    const waiter = pool.acquire({ signal: controller.signal })
    controller.abort()

    const error = await rejectionOf(waiter)
    expect(error).toBe(controller.signal.reason)
    expect(error).toBeInstanceOf(DOMException)
    expect((error as DOMException).name).toBe("AbortError")
  })

  it("rejects with the custom reason given to abort(reason)", async () => {
    const { pool } = setup()
    await pool.acquire()
    const controller = new AbortController()
    const reason = new Error("user cancelled")
    const waiter = pool.acquire({ signal: controller.signal })
    controller.abort(reason)

    expect(await rejectionOf(waiter)).toBe(reason)
  })

  it("an already-aborted signal rejects without queuing or creating", async () => {
    const { pool, create } = setup()
    const reason = new Error("too late")

    const error = await rejectionOf(pool.acquire({ signal: AbortSignal.abort(reason) }))
    expect(error).toBe(reason)
    expect(pool.stats()).toMatchObject({ queued: 0, creating: 0, workers: 0 })
    expect(create).not.toHaveBeenCalled()
  })

  it("an already-aborted signal rejects even when a worker is idle", async () => {
    const { pool } = setup()
    pool.release(await pool.acquire())

    await expect(pool.acquire({ signal: AbortSignal.abort() })).rejects.toMatchObject({ name: "AbortError" })
    expect(pool.stats()).toMatchObject({ idle: 1, busy: 0 })
  })

  it("abort after the worker was handed over does nothing", async () => {
    const { pool } = setup()
    const held = await pool.acquire()
    const controller = new AbortController()
    const waiter = pool.acquire({ signal: controller.signal })
    pool.release(held)
    controller.abort()

    expect(await waiter).toBe(held)
    expect(pool.stats()).toMatchObject({ busy: 1, queued: 0 })
    expect(() => pool.release(held)).not.toThrow()
    expect(pool.stats()).toMatchObject({ busy: 0, idle: 1 })
  })

  it("10,000 waiters with every other one aborted: survivors served FIFO, aborted ones never", async () => {
    const { pool, create } = setup({ poolSize: 1 })
    const held = await pool.acquire()
    const n = 10_000
    const served: Array<number> = []
    const rejected: Array<number> = []
    const controllers = Array.from({ length: n }, () => new AbortController())
    const settled = controllers.map((controller, i) =>
      pool.acquire({ signal: controller.signal }).then(
        (worker) => {
          served.push(i)
          pool.release(worker)
        },
        () => {
          rejected.push(i)
        }
      )
    )
    expect(pool.stats().queued).toBe(n)

    for (let i = 1; i < n; i += 2) controllers[i]!.abort()
    expect(pool.stats().queued).toBe(n / 2)

    pool.release(held)
    await Promise.all(settled)

    const evens = Array.from({ length: n / 2 }, (_, k) => 2 * k)
    const odds = evens.map((i) => i + 1)
    expect(served).toEqual(evens)
    expect(rejected).toEqual(odds)
    expect(pool.stats()).toMatchObject({ queued: 0, busy: 0, idle: 1 })
    expect(create).toHaveBeenCalledTimes(1)
  })
})

// -----------------------------------------------------------------------------
// Acquire timeout
// -----------------------------------------------------------------------------

describe("acquire timeout", () => {
  beforeEach(() => {
    vi.useFakeTimers()
  })

  it("acquireTimeoutMs rejects with AcquireTimeoutError exactly when it elapses", async () => {
    const { pool } = setup({ poolSize: 1, acquireTimeoutMs: 1000 })
    await pool.acquire()
    const waiter = track(pool.acquire())

    await vi.advanceTimersByTimeAsync(999)
    expect(waiter.state).toBe("pending")
    await vi.advanceTimersByTimeAsync(1)
    expect(waiter.state).toBe("rejected")

    const error = waiter.error as AcquireTimeoutError
    expect(error).toBeInstanceOf(AcquireTimeoutError)
    expect(error.name).toBe("AcquireTimeoutError")
    expect(error).toMatchObject({ waitedMs: 1000, queuedAhead: 0, poolSize: 1 })
    expect(error.message).toContain("1000 ms")
    expect(error.message).toContain("poolSize may be too small")
  })

  it("queuedAhead counts the waiters still ahead when the timeout fires", async () => {
    const { pool } = setup({ poolSize: 1 })
    await pool.acquire()
    pool.acquire().catch(() => {})
    pool.acquire().catch(() => {})
    const waiter = track(pool.acquire({ timeoutMs: 50 }))

    await vi.advanceTimersByTimeAsync(50)
    expect(waiter.error).toMatchObject({ name: "AcquireTimeoutError", waitedMs: 50, queuedAhead: 2, poolSize: 1 })
  })

  it("a per-call timeoutMs overrides acquireTimeoutMs", async () => {
    const { pool } = setup({ poolSize: 1, acquireTimeoutMs: 1000 })
    await pool.acquire()
    const short = track(pool.acquire({ timeoutMs: 200 }))
    const long = track(pool.acquire({ timeoutMs: 5000 }))

    await vi.advanceTimersByTimeAsync(200)
    expect(short.error).toMatchObject({ name: "AcquireTimeoutError", waitedMs: 200 })
    await vi.advanceTimersByTimeAsync(4799)
    expect(long.state).toBe("pending")
    await vi.advanceTimersByTimeAsync(1)
    expect(long.error).toMatchObject({ name: "AcquireTimeoutError", waitedMs: 5000 })
  })

  it("a per-call timeoutMs of 0 waits without limit", async () => {
    const { pool } = setup({ poolSize: 1, acquireTimeoutMs: 1000 })
    await pool.acquire()
    const waiter = track(pool.acquire({ timeoutMs: 0 }))

    await vi.advanceTimersByTimeAsync(3_600_000)
    expect(waiter.state).toBe("pending")
    expect(pool.stats().queued).toBe(1)
  })

  it("the timed-out waiter leaves the queue and a later release goes to the next one", async () => {
    const { pool } = setup({ poolSize: 1 })
    const held = await pool.acquire()
    const impatient = track(pool.acquire({ timeoutMs: 100 }))
    const patient = track(pool.acquire())

    await vi.advanceTimersByTimeAsync(100)
    expect(impatient.state).toBe("rejected")
    expect(pool.stats().queued).toBe(1)

    pool.release(held)
    await flush()
    expect(patient).toMatchObject({ state: "fulfilled", value: held })
    expect(pool.stats()).toMatchObject({ queued: 0, busy: 1 })
  })

  it("aborting waiters with deadlines leaves every other deadline exact", async () => {
    const { pool } = setup({ poolSize: 1 })
    await pool.acquire()
    const n = 60
    // Distinct timeouts in scrambled order: 1000 + 10 * ((37 * i) mod 60), a permutation.
    const timeouts = Array.from({ length: n }, (_, i) => 1000 + 10 * ((37 * i) % n))
    const controllers = timeouts.map(() => new AbortController())
    const waiters = timeouts.map((timeoutMs, i) => track(pool.acquire({ timeoutMs, signal: controllers[i]!.signal })))
    for (let i = 0; i < n; i += 3) controllers[i]!.abort()
    expect(pool.stats().queued).toBe(n - n / 3)

    const survivors = timeouts.map((timeoutMs, i) => ({ timeoutMs, i })).filter(({ i }) => i % 3 !== 0)
    survivors.sort((a, b) => a.timeoutMs - b.timeoutMs)
    let now = 0
    for (const { timeoutMs, i } of survivors) {
      await vi.advanceTimersByTimeAsync(timeoutMs - 1 - now)
      expect(waiters[i]!.state).toBe("pending")
      await vi.advanceTimersByTimeAsync(1)
      now = timeoutMs
      expect(waiters[i]!.error).toMatchObject({ name: "AcquireTimeoutError", waitedMs: timeoutMs })
    }
    for (let i = 0; i < n; i += 3) expect(waiters[i]!.error).toMatchObject({ name: "AbortError" })
    expect(pool.stats().queued).toBe(0)
  })

  it("a waiter served before its timeout is not rejected later", async () => {
    const { pool } = setup({ poolSize: 1, acquireTimeoutMs: 1000 })
    const held = await pool.acquire()
    const waiter = track(pool.acquire())
    await vi.advanceTimersByTimeAsync(500)
    pool.release(held)

    await vi.advanceTimersByTimeAsync(2000)
    expect(waiter).toMatchObject({ state: "fulfilled", value: held })
    expect(pool.stats()).toMatchObject({ busy: 1, queued: 0 })
  })

  it("a negative per-call timeoutMs rejects with PoolOptionsError naming timeoutMs", async () => {
    const { pool } = setup({ poolSize: 1 })
    await pool.acquire()

    const error = await rejectionOf(pool.acquire({ timeoutMs: -1 }))
    expect(error).toBeInstanceOf(PoolOptionsError)
    expect((error as Error).message).toContain("timeoutMs")
    expect(pool.stats().queued).toBe(0)
  })

  it("a negative per-call timeoutMs is rejected even when a worker is idle", async () => {
    const { pool } = setup({ poolSize: 1 })
    pool.release(await pool.acquire())

    const result = await pool.acquire({ timeoutMs: -1 }).then(() => "resolved", (error: unknown) => error)
    expect(result).toBeInstanceOf(PoolOptionsError)
    expect(pool.stats()).toMatchObject({ idle: 1, busy: 0 })
  })
})

// -----------------------------------------------------------------------------
// Queue bound
// -----------------------------------------------------------------------------

describe("maxQueue", () => {
  it("the acquire beyond maxQueue rejects at once with QueueFullError", async () => {
    const { pool } = setup({ poolSize: 1, maxQueue: 2 })
    const held = await pool.acquire()
    const queued = [pool.acquire(), pool.acquire()]
    const refused = track(pool.acquire())
    await Promise.resolve()
    await Promise.resolve()

    expect(refused.state).toBe("rejected")
    const error = refused.error as QueueFullError
    expect(error).toBeInstanceOf(QueueFullError)
    expect(error).toMatchObject({ name: "QueueFullError", maxQueue: 2, poolSize: 1 })
    expect(error.message).toContain("maxQueue: 2")
    expect(pool.stats().queued).toBe(2)

    pool.release(held)
    pool.release(await queued[0]!)
    expect(await queued[1]!).toBe(held)
  })

  it("maxQueue 0 rejects an acquire at once when every worker is busy", async () => {
    const { pool } = setup({ poolSize: 1, maxQueue: 0 })
    await pool.acquire()

    const error = await rejectionOf(pool.acquire())
    expect(error).toBeInstanceOf(QueueFullError)
    expect(pool.stats().queued).toBe(0)
  })

  it("maxQueue 0 still lets an acquire create a worker when the pool has room", async () => {
    const { pool, create } = setup({ poolSize: 2, maxQueue: 0 })

    const result = await pool.acquire().then((worker) => worker, (error: unknown) => error)
    expect(result).toEqual({ id: 1 })
    expect(create).toHaveBeenCalledTimes(1)
  })

  it("acquires a new worker is being created for do not count toward maxQueue", async () => {
    const { pool, create } = setup({ poolSize: 3, maxQueue: 1 })

    const results = await Promise.allSettled([pool.acquire(), pool.acquire(), pool.acquire()])
    expect(results.map((r) => r.status)).toEqual(["fulfilled", "fulfilled", "fulfilled"])
    expect(create).toHaveBeenCalledTimes(3)
  })
})

// -----------------------------------------------------------------------------
// release errors
// -----------------------------------------------------------------------------

describe("release errors", () => {
  it("releasing a worker twice throws WorkerNotLeasedError and changes nothing", async () => {
    const { pool } = setup({ poolSize: 2 })
    const worker = await pool.acquire()
    pool.release(worker)
    const before = pool.stats()

    expect(() => pool.release(worker)).toThrow(WorkerNotLeasedError)
    expect(() => pool.release(worker)).toThrow(/not currently leased from this pool/)
    expect(pool.stats()).toEqual(before)
    expect(await pool.acquire()).toBe(worker)
    expect(pool.stats()).toMatchObject({ busy: 1, idle: 0, workers: 1 })
  })

  it("releasing a foreign object throws WorkerNotLeasedError and changes nothing", async () => {
    const { pool } = setup({ poolSize: 1 })
    const worker = await pool.acquire()
    const before = pool.stats()

    let thrown: unknown
    try {
      pool.release({ id: 99 })
    } catch (error) {
      thrown = error
    }
    expect(thrown).toBeInstanceOf(WorkerNotLeasedError)
    expect(thrown).toMatchObject({ name: "WorkerNotLeasedError", operation: "release" })
    expect((thrown as Error).message).toMatch(/^release\(\) was given a worker that is not currently leased/)
    expect(pool.stats()).toEqual(before)

    pool.release(worker)
    expect(pool.stats()).toMatchObject({ busy: 0, idle: 1 })
  })
})

// -----------------------------------------------------------------------------
// invalidate
// -----------------------------------------------------------------------------

describe("invalidate", () => {
  it("invalidating a leased worker ends its lease and destroys it once", async () => {
    const { pool, destroy } = setup({ poolSize: 1 })
    const worker = await pool.acquire()

    await pool.invalidate(worker)
    expect(destroy).toHaveBeenCalledTimes(1)
    expect(destroy).toHaveBeenCalledWith(worker)
    expect(pool.stats()).toMatchObject({ busy: 0, idle: 0, workers: 0, finalized: 1 })
  })

  it("the invalidate promise resolves only after destroy has finished", async () => {
    const destroyDone = deferred<void>()
    const destroy = vi.fn(() => destroyDone.promise)
    const { pool } = setup({ poolSize: 1, destroy })
    const worker = await pool.acquire()

    const invalidated = track(pool.invalidate(worker))
    await flush()
    expect(destroy).toHaveBeenCalledTimes(1)
    expect(invalidated.state).toBe("pending")
    expect(pool.stats().finalizing).toBe(1)

    destroyDone.resolve()
    await flush()
    expect(invalidated.state).toBe("fulfilled")
    expect(pool.stats().finalizing).toBe(0)
  })

  it("the invalidated worker's slot is refilled by a new create on the next acquire", async () => {
    const { pool, create } = setup({ poolSize: 1 })
    const first = await pool.acquire()
    await pool.invalidate(first)

    const second = await pool.acquire()
    expect(create).toHaveBeenCalledTimes(2)
    expect(second).not.toBe(first)
    expect(second).toEqual({ id: 2 })
  })

  it("invalidating a leased worker while others wait creates a replacement for the oldest waiter", async () => {
    const { pool, create, destroy } = setup({ poolSize: 1 })
    const worker = await pool.acquire()
    const waiter = pool.acquire()

    await pool.invalidate(worker)
    expect(await waiter).toEqual({ id: 2 })
    expect(create).toHaveBeenCalledTimes(2)
    expect(destroyedIds(destroy)).toEqual([1])
  })

  it("releasing a worker after invalidating it throws WorkerNotLeasedError", async () => {
    const { pool, destroy } = setup({ poolSize: 1 })
    const worker = await pool.acquire()
    const invalidated = pool.invalidate(worker)

    expect(() => pool.release(worker)).toThrow(WorkerNotLeasedError)
    await invalidated
    expect(destroy).toHaveBeenCalledTimes(1)
  })

  it("invalidating an idle worker destroys it at once", async () => {
    const { pool, destroy } = setup({ poolSize: 1 })
    const worker = await pool.acquire()
    pool.release(worker)

    await pool.invalidate(worker)
    expect(destroyedIds(destroy)).toEqual([1])
    expect(pool.stats()).toMatchObject({ idle: 0, workers: 0 })
  })

  it("invalidating an unknown worker rejects with WorkerNotLeasedError", async () => {
    const { pool, destroy } = setup({ poolSize: 1 })

    const error = await rejectionOf(pool.invalidate({ id: 42 }))
    expect(error).toBeInstanceOf(WorkerNotLeasedError)
    expect(error).toMatchObject({ operation: "invalidate" })
    expect(destroy).not.toHaveBeenCalled()
  })
})

// -----------------------------------------------------------------------------
// use
// -----------------------------------------------------------------------------

describe("use", () => {
  it("releases the worker when fn succeeds", async () => {
    const { pool } = setup({ poolSize: 1 })

    expect(await pool.use(async (worker) => worker.id * 10)).toBe(10)
    expect(pool.stats()).toMatchObject({ busy: 0, idle: 1 })
  })

  it("releases the worker when fn throws, and rejects with fn's error", async () => {
    const { pool } = setup({ poolSize: 1 })
    const boom = new Error("boom")

    const error = await rejectionOf(pool.use(async () => {
      throw boom
    }))
    expect(error).toBe(boom)
    expect(pool.stats()).toMatchObject({ busy: 0, idle: 1, queued: 0 })
  })

  it("hands the worker to the next waiter when fn throws", async () => {
    const { pool } = setup({ poolSize: 1 })
    const failing = pool.use(async () => {
      await Promise.resolve()
      throw new Error("boom")
    })
    const next = pool.use(async (worker) => worker.id)

    await expect(failing).rejects.toThrow("boom")
    expect(await next).toBe(1)
  })

  it("passes fn a signal that is not aborted, and aborts it when the pool shuts down", async () => {
    const { pool } = setup({ poolSize: 1 })
    let seen: AbortSignal | undefined
    const finish = deferred<void>()
    const using = pool.use(async (_worker, signal) => {
      seen = signal
      await finish.promise
    })
    await flush()
    expect(seen).toBeInstanceOf(AbortSignal)
    expect(seen!.aborted).toBe(false)

    const shutdown = pool.shutdown()
    expect(seen!.aborted).toBe(true)
    finish.resolve()
    await using
    await shutdown
  })

  it("the signal passed to fn aborts when the caller's signal aborts", async () => {
    const { pool } = setup({ poolSize: 1 })
    const controller = new AbortController()
    const reason = new Error("caller gave up")
    const result = pool.use(
      (_worker, signal) =>
        new Promise<string>((_resolve, reject) => {
          signal.addEventListener("abort", () => reject(signal.reason))
        }),
      { signal: controller.signal }
    )
    await flush()

    controller.abort(reason)
    expect(await rejectionOf(result)).toBe(reason)
    expect(pool.stats()).toMatchObject({ busy: 0, idle: 1 })
  })

  it("when fn invalidates the worker, use neither throws nor releases it again", async () => {
    const { pool, destroy, create } = setup({ poolSize: 1 })
    const using = pool.use(async (worker) => {
      await pool.invalidate(worker)
      return "done"
    })
    const waiter = pool.acquire() // queued behind use

    expect(await using).toBe("done")
    expect(destroyedIds(destroy)).toEqual([1])
    expect(await waiter).toEqual({ id: 2 }) // a fresh worker, not worker 1 released a second time
    expect(create).toHaveBeenCalledTimes(2)
    expect(pool.stats()).toMatchObject({ busy: 1, idle: 0, workers: 1, finalized: 1 })
  })

  it("when fn releases the worker itself, use does not end the next holder's lease", async () => {
    const { pool } = setup({ poolSize: 1 })
    const ready = deferred<void>()
    const using = pool.use(async (worker) => {
      await ready.promise
      pool.release(worker) // goes straight to the waiter below
    })
    await flush()
    const waiter = pool.acquire()
    ready.resolve()

    await using
    const worker = await waiter
    expect(pool.stats()).toMatchObject({ busy: 1, idle: 0 })
    pool.release(worker)
    expect(pool.stats()).toMatchObject({ busy: 0, idle: 1 })
  })

  it("with an already-aborted signal rejects with its reason and never calls fn", async () => {
    const { pool, create } = setup({ poolSize: 1 })
    const reason = new Error("aborted before use")
    const fn = vi.fn(async () => "ran")

    expect(await rejectionOf(pool.use(fn, { signal: AbortSignal.abort(reason) }))).toBe(reason)
    expect(fn).not.toHaveBeenCalled()
    expect(create).not.toHaveBeenCalled()
    expect(pool.stats().queued).toBe(0)
  })

  it("aborting a queued use rejects it without calling fn", async () => {
    const { pool } = setup({ poolSize: 1 })
    const held = await pool.acquire()
    const controller = new AbortController()
    const fn = vi.fn(async () => "ran")
    const queued = pool.use(fn, { signal: controller.signal })
    controller.abort()

    expect(await rejectionOf(queued)).toBe(controller.signal.reason)
    pool.release(held)
    expect(fn).not.toHaveBeenCalled()
    expect(pool.stats()).toMatchObject({ busy: 0, idle: 1, queued: 0 })
  })
})

// -----------------------------------------------------------------------------
// create failures
// -----------------------------------------------------------------------------

describe("create failure", () => {
  it("rejects the acquire that caused it with the very error create threw", async () => {
    const boom = new Error("spawn failed")
    const create = vi.fn().mockRejectedValueOnce(boom)
    const { pool } = setup({ poolSize: 1, create })

    expect(await rejectionOf(pool.acquire())).toBe(boom)
    expect(pool.stats()).toMatchObject({ workers: 0, creating: 0, queued: 0, createFailures: 1 })
  })

  it("a synchronous throw from create rejects the acquire with that error", async () => {
    const boom = new Error("sync failure")
    const create = vi.fn(() => {
      throw boom
    })
    const { pool } = setup({ poolSize: 1, create })

    expect(await rejectionOf(pool.acquire())).toBe(boom)
  })

  it("the pool stays usable: the next acquire creates again and succeeds", async () => {
    const create = vi.fn()
      .mockRejectedValueOnce(new Error("first try fails"))
      .mockResolvedValueOnce({ id: 7 })
    const { pool } = setup({ poolSize: 1, create })
    await rejectionOf(pool.acquire())

    expect(await pool.acquire()).toEqual({ id: 7 })
    expect(create).toHaveBeenCalledTimes(2)
    expect(pool.stats()).toMatchObject({ busy: 1, created: 1, createFailures: 1 })
  })

  it("with a queue, a failing create rejects exactly one waiter and the next one is served", async () => {
    const boom = new Error("spawn failed")
    const create = vi.fn()
      .mockRejectedValueOnce(boom)
      .mockResolvedValueOnce({ id: 2 })
    const { pool } = setup({ poolSize: 1, create })
    const first = track(pool.acquire())
    const second = track(pool.acquire())
    const third = track(pool.acquire())
    await flush()

    expect(first).toMatchObject({ state: "rejected", error: boom })
    expect(second).toMatchObject({ state: "fulfilled", value: { id: 2 } })
    expect(third.state).toBe("pending")
    expect(create).toHaveBeenCalledTimes(2)
    expect(pool.stats()).toMatchObject({ busy: 1, queued: 1, createFailures: 1 })
  })
})

// -----------------------------------------------------------------------------
// Idle lifecycle
// -----------------------------------------------------------------------------

describe("idle timeout", () => {
  beforeEach(() => {
    vi.useFakeTimers()
  })

  it("an idle worker is destroyed exactly at idleTimeoutMs", async () => {
    const { pool, destroy } = setup({ poolSize: 1, idleTimeoutMs: 1000 })
    pool.release(await pool.acquire())

    await vi.advanceTimersByTimeAsync(999)
    expect(destroy).not.toHaveBeenCalled()
    expect(pool.stats().idle).toBe(1)
    await vi.advanceTimersByTimeAsync(1)
    expect(destroyedIds(destroy)).toEqual([1])
    expect(pool.stats()).toMatchObject({ idle: 0, workers: 0, finalized: 1 })
  })

  it("idle workers retire after 300000 ms by default", async () => {
    const { pool, destroy } = setup({ poolSize: 1 })
    pool.release(await pool.acquire())

    await vi.advanceTimersByTimeAsync(299_999)
    expect(destroy).not.toHaveBeenCalled()
    await vi.advanceTimersByTimeAsync(1)
    expect(destroy).toHaveBeenCalledTimes(1)
  })

  it("reusing a worker restarts its idle time", async () => {
    const { pool, destroy } = setup({ poolSize: 1, idleTimeoutMs: 1000 })
    pool.release(await pool.acquire())
    await vi.advanceTimersByTimeAsync(600)
    pool.release(await pool.acquire())

    await vi.advanceTimersByTimeAsync(999)
    expect(destroy).not.toHaveBeenCalled()
    await vi.advanceTimersByTimeAsync(1)
    expect(destroy).toHaveBeenCalledTimes(1)
  })

  it("a leased worker is never retired", async () => {
    const { pool, destroy } = setup({ poolSize: 1, idleTimeoutMs: 1000 })
    await pool.acquire()

    await vi.advanceTimersByTimeAsync(10_000)
    expect(destroy).not.toHaveBeenCalled()
    expect(pool.stats().busy).toBe(1)
  })

  it("idleTimeoutMs 0 never retires an idle worker", async () => {
    const { pool, destroy } = setup({ poolSize: 1, idleTimeoutMs: 0 })
    pool.release(await pool.acquire())

    await vi.advanceTimersByTimeAsync(24 * 3_600_000)
    expect(destroy).not.toHaveBeenCalled()
    expect(pool.stats().idle).toBe(1)
  })

  it("minIdle workers are created at start and never retired", async () => {
    const { pool, create, destroy } = setup({ poolSize: 3, minIdle: 2, idleTimeoutMs: 1000 })
    await flush()
    expect(create).toHaveBeenCalledTimes(2)
    expect(pool.stats()).toMatchObject({ idle: 2, busy: 0, workers: 2 })

    await vi.advanceTimersByTimeAsync(3_600_000)
    expect(destroy).not.toHaveBeenCalled()
    expect(pool.stats().idle).toBe(2)
  })

  it("minIdle refills the warm worker an acquire took", async () => {
    const { pool, create } = setup({ poolSize: 2, minIdle: 1 })
    await flush()
    const worker = await pool.acquire()
    await flush()

    expect(worker).toEqual({ id: 1 })
    expect(create).toHaveBeenCalledTimes(2)
    expect(pool.stats()).toMatchObject({ busy: 1, idle: 1 })
  })

  it("idle workers beyond minIdle retire, down to minIdle", async () => {
    const { pool, destroy } = setup({ poolSize: 3, minIdle: 1, idleTimeoutMs: 1000 })
    await flush()
    const workers = await Promise.all([pool.acquire(), pool.acquire(), pool.acquire()])
    for (const worker of workers) pool.release(worker)
    expect(pool.stats().idle).toBe(3)

    await vi.advanceTimersByTimeAsync(1000)
    expect(destroy).toHaveBeenCalledTimes(2)
    expect(pool.stats()).toMatchObject({ idle: 1, workers: 1 })
    await vi.advanceTimersByTimeAsync(3_600_000)
    expect(destroy).toHaveBeenCalledTimes(2)
  })
})

// -----------------------------------------------------------------------------
// Lease timeout
// -----------------------------------------------------------------------------

describe("lease timeout", () => {
  beforeEach(() => {
    vi.useFakeTimers()
    vi.spyOn(console, "log").mockImplementation(() => {}) // the pool logs a warning on expiry
  })

  it("onLeaseTimeout is called exactly at leaseTimeoutMs with the worker and the limit", async () => {
    const onLeaseTimeout = vi.fn()
    const { pool } = setup({ poolSize: 1, leaseTimeoutMs: 1000, onLeaseTimeout })
    const worker = await pool.acquire()

    await vi.advanceTimersByTimeAsync(999)
    expect(onLeaseTimeout).not.toHaveBeenCalled()
    await vi.advanceTimersByTimeAsync(1)
    expect(onLeaseTimeout).toHaveBeenCalledTimes(1)
    expect(onLeaseTimeout).toHaveBeenCalledWith(worker, 1000)
  })

  it("an expired lease logs a warning that names leaseTimeout", async () => {
    const { pool } = setup({ poolSize: 1, leaseTimeoutMs: 1000 })
    await pool.acquire()
    await vi.advanceTimersByTimeAsync(1000)

    const lines = vi.mocked(console.log).mock.calls.map((args) => args.map(String).join(" "))
    expect(lines.filter((line) => line.includes("WARN") && line.includes("leaseTimeout"))).toHaveLength(1)
  })

  it("a worker whose lease expired is destroyed when released and replaced on the next acquire", async () => {
    const { pool, create, destroy } = setup({ poolSize: 1, leaseTimeoutMs: 1000 })
    const worker = await pool.acquire()
    await vi.advanceTimersByTimeAsync(1000)
    expect(destroy).not.toHaveBeenCalled() // still leased: the caller owns it until release
    expect(pool.stats().busy).toBe(1)

    pool.release(worker)
    await flush()
    expect(destroyedIds(destroy)).toEqual([1])
    expect(pool.stats()).toMatchObject({ busy: 0, idle: 0, workers: 0 })
    expect(await pool.acquire()).toEqual({ id: 2 })
    expect(create).toHaveBeenCalledTimes(2)
  })

  it("a lease released in time never triggers onLeaseTimeout", async () => {
    const onLeaseTimeout = vi.fn()
    const { pool, destroy } = setup({ poolSize: 1, leaseTimeoutMs: 1000, onLeaseTimeout })
    const worker = await pool.acquire()
    await vi.advanceTimersByTimeAsync(999)
    pool.release(worker)

    await vi.advanceTimersByTimeAsync(10_000)
    expect(onLeaseTimeout).not.toHaveBeenCalled()
    expect(destroy).not.toHaveBeenCalled()
    expect(await pool.acquire()).toBe(worker)
  })

  it("the lease clock restarts when a worker is handed to the next waiter", async () => {
    const onLeaseTimeout = vi.fn()
    const { pool } = setup({ poolSize: 1, leaseTimeoutMs: 1000, onLeaseTimeout })
    const worker = await pool.acquire()
    const waiter = pool.acquire()
    await vi.advanceTimersByTimeAsync(600)
    pool.release(worker)
    expect(await waiter).toBe(worker)

    await vi.advanceTimersByTimeAsync(999)
    expect(onLeaseTimeout).not.toHaveBeenCalled()
    await vi.advanceTimersByTimeAsync(1)
    expect(onLeaseTimeout).toHaveBeenCalledTimes(1)
  })
})

// -----------------------------------------------------------------------------
// Shutdown
// -----------------------------------------------------------------------------

describe("shutdown", () => {
  it("aborts the signal of a running use body with PoolShutdownError, which that use rejects with", async () => {
    const { pool } = setup({ poolSize: 1 })
    let reason: unknown
    const running = deferred<void>()
    const use = pool.use((_worker, signal) =>
      new Promise<never>((_resolve, reject) => {
        signal.addEventListener("abort", () => {
          reason = signal.reason
          reject(signal.reason)
        })
        running.resolve()
      })
    )
    await running.promise
    const shutdown = pool.shutdown()
    const error = await rejectionOf(use)
    expect(reason).toBeInstanceOf(PoolShutdownError)
    expect(error).toBe(reason)
    await shutdown
  })

  it("destroys idle workers at once and resolves", async () => {
    const { pool, destroy } = setup({ poolSize: 2 })
    const [a, b] = await Promise.all([pool.acquire(), pool.acquire()])
    pool.release(a!)
    pool.release(b!)

    await pool.shutdown()
    expect(destroyedIds(destroy).sort()).toEqual([1, 2])
    expect(pool.stats()).toMatchObject({ workers: 0, idle: 0, busy: 0, closed: true, finalized: 2 })
  })

  it("destroys busy workers when they are released and resolves after the last release", async () => {
    const { pool, destroy } = setup({ poolSize: 2 })
    const [a, b] = await Promise.all([pool.acquire(), pool.acquire()])
    const shutdown = track(pool.shutdown())
    await flush()
    expect(destroy).not.toHaveBeenCalled()

    pool.release(a!)
    await flush()
    expect(destroyedIds(destroy)).toEqual([a!.id])
    expect(shutdown.state).toBe("pending")

    pool.release(b!)
    await flush()
    expect(destroyedIds(destroy)).toEqual([a!.id, b!.id])
    expect(shutdown.state).toBe("fulfilled")
  })

  it("with shutdownTimeoutMs, busy workers are destroyed anyway after the timeout", async () => {
    vi.useFakeTimers()
    const { pool, destroy } = setup({ poolSize: 1, shutdownTimeoutMs: 1000 })
    const worker = await pool.acquire()
    const shutdown = track(pool.shutdown())

    await vi.advanceTimersByTimeAsync(999)
    expect(destroy).not.toHaveBeenCalled()
    expect(shutdown.state).toBe("pending")
    await vi.advanceTimersByTimeAsync(1)
    expect(destroy).toHaveBeenCalledWith(worker)
    expect(shutdown.state).toBe("fulfilled")
    expect(() => pool.release(worker)).not.toThrow() // a late release after the forced end is tolerated
    expect(destroy).toHaveBeenCalledTimes(1)
  })

  it("busy workers are destroyed after 30000 ms by default", async () => {
    vi.useFakeTimers()
    const { pool, destroy } = setup({ poolSize: 1 })
    await pool.acquire()
    const shutdown = track(pool.shutdown())

    await vi.advanceTimersByTimeAsync(29_999)
    expect(shutdown.state).toBe("pending")
    await vi.advanceTimersByTimeAsync(1)
    expect(destroy).toHaveBeenCalledTimes(1)
    expect(shutdown.state).toBe("fulfilled")
  })

  it("an acquire after shutdown rejects at once with PoolShutdownError", async () => {
    const { pool, create } = setup({ poolSize: 1 })
    pool.release(await pool.acquire())
    await pool.shutdown()

    const acquired = track(pool.acquire())
    await Promise.resolve()
    await Promise.resolve()
    expect(acquired.state).toBe("rejected")
    expect(acquired.error).toBeInstanceOf(PoolShutdownError)
    expect((acquired.error as Error).message).toMatch(/^Worker pool has been shut down\./)
    expect(create).toHaveBeenCalledTimes(1)
  })

  it("an acquire made while shutdown is waiting for busy workers rejects at once", async () => {
    const { pool } = setup({ poolSize: 1 })
    const held = await pool.acquire()
    const shutdown = pool.shutdown()

    await expect(pool.acquire()).rejects.toBeInstanceOf(PoolShutdownError)
    pool.release(held)
    await shutdown
  })

  it("await using shuts the pool down at the end of the block", async () => {
    const destroy = vi.fn()
    let escaped: PromiseWorkerPool<Worker> | undefined
    {
      await using pool = createWorkerPool<Worker>({ create: ok, destroy, poolSize: 1 })
      escaped = pool
      pool.release(await pool.acquire())
    }
    expect(destroy).toHaveBeenCalledTimes(1)
    expect(escaped.stats()).toMatchObject({ closed: true, workers: 0 })
  })

  it("Symbol.asyncDispose is shutdown", async () => {
    const { pool, destroy } = setup({ poolSize: 1 })
    pool.release(await pool.acquire())

    await pool[Symbol.asyncDispose]()
    expect(destroy).toHaveBeenCalledTimes(1)
    expect(pool.shutdown()).toBe(pool[Symbol.asyncDispose]())
  })

  it("is idempotent: later calls return the same promise and destroy nothing twice", async () => {
    const { pool, destroy } = setup({ poolSize: 2 })
    const [a, b] = await Promise.all([pool.acquire(), pool.acquire()])
    pool.release(a!)
    pool.release(b!)

    const first = pool.shutdown()
    const second = pool.shutdown()
    expect(second).toBe(first)
    await first
    await pool.shutdown()
    expect(destroy).toHaveBeenCalledTimes(2)
  })

  it("a worker whose create completes after shutdown is destroyed", async () => {
    const pending = deferred<Worker>()
    const { pool, destroy } = setup({ poolSize: 1, create: vi.fn(() => pending.promise) })
    const waiter = track(pool.acquire())
    await flush()

    const shutdown = pool.shutdown()
    pending.resolve({ id: 5 }) // a create that ignores its signal
    await shutdown
    expect(waiter.error).toBeInstanceOf(PoolShutdownError)
    expect(destroyedIds(destroy)).toEqual([5])
  })

  it("a create in flight at shutdown gets its signal aborted", async () => {
    const signals: Array<AbortSignal> = []
    const create = vi.fn(
      (signal: AbortSignal) =>
        new Promise<Worker>((_resolve, reject) => {
          signals.push(signal)
          signal.addEventListener("abort", () => reject(signal.reason))
        })
    )
    const { pool } = setup({ poolSize: 1, create })
    track(pool.acquire())
    await flush()
    expect(signals).toHaveLength(1)
    expect(signals[0]!.aborted).toBe(false)

    const shutdown = track(pool.shutdown())
    await flush()
    expect(signals[0]!.aborted).toBe(true)
    expect(shutdown.state).toBe("fulfilled")
  })

  it("shutdown resolves within shutdownTimeoutMs even when a create never settles", async () => {
    vi.useFakeTimers()
    const { pool } = setup({ poolSize: 1, shutdownTimeoutMs: 1000, create: vi.fn(() => new Promise<Worker>(() => {})) })
    track(pool.acquire())
    await flush()

    const shutdown = track(pool.shutdown())
    await vi.advanceTimersByTimeAsync(1000)
    expect(shutdown.state).toBe("fulfilled")
  })
})

// -----------------------------------------------------------------------------
// Errors
// -----------------------------------------------------------------------------

describe("errors", () => {
  /** An error is a real Error subclass, named after its class, tagged the same. */
  const expectNamedError = (error: unknown, Class: new(...args: Array<any>) => Error, name: string) => {
    expect(error).toBeInstanceOf(Error)
    expect(error).toBeInstanceOf(Class)
    expect(Class.name).toBe(name)
    expect((error as Error).name).toBe(name)
    expect((error as { _tag: string })._tag).toBe(name)
    expect(typeof (error as Error).stack).toBe("string")
    expect((error as Error).message.length).toBeGreaterThan(20)
  }

  it("PoolShutdownError is an Error named PoolShutdownError", async () => {
    const { pool } = setup()
    await pool.shutdown()
    expectNamedError(await rejectionOf(pool.acquire()), PoolShutdownError, "PoolShutdownError")
  })

  it("AcquireTimeoutError is an Error named AcquireTimeoutError", async () => {
    vi.useFakeTimers()
    const { pool } = setup()
    await pool.acquire()
    const waiter = track(pool.acquire({ timeoutMs: 10 }))
    await vi.advanceTimersByTimeAsync(10)
    expectNamedError(waiter.error, AcquireTimeoutError, "AcquireTimeoutError")
  })

  it("QueueFullError is an Error named QueueFullError", async () => {
    const { pool } = setup({ maxQueue: 0 })
    await pool.acquire()
    expectNamedError(await rejectionOf(pool.acquire()), QueueFullError, "QueueFullError")
  })

  it("WorkerNotLeasedError is an Error named WorkerNotLeasedError", () => {
    const { pool } = setup()
    let thrown: unknown
    try {
      pool.release({ id: 1 })
    } catch (error) {
      thrown = error
    }
    expectNamedError(thrown, WorkerNotLeasedError, "WorkerNotLeasedError")
  })

  it("PoolOptionsError is an Error named PoolOptionsError", () => {
    let thrown: unknown
    try {
      construct({ create: ok, poolSize: 0 })
    } catch (error) {
      thrown = error
    }
    expectNamedError(thrown, PoolOptionsError, "PoolOptionsError")
  })
})

// -----------------------------------------------------------------------------
// Options
// -----------------------------------------------------------------------------

describe("options", () => {
  /** The PoolOptionsError message thrown by constructing with `options`. */
  const messageOf = (options: Record<string, unknown>): string => {
    let thrown: unknown
    try {
      construct(options)
    } catch (error) {
      thrown = error
    }
    expect(thrown).toBeInstanceOf(PoolOptionsError)
    return (thrown as PoolOptionsError).message
  }

  it.each([
    { label: "poolSize 0", options: { poolSize: 0 }, expected: /^Invalid createWorkerPool options: poolSize: / },
    { label: "poolSize 1.5", options: { poolSize: 1.5 }, expected: /poolSize: Expected an integer/ },
    { label: "poolSize -1", options: { poolSize: -1 }, expected: /poolSize: Expected a value greater than or equal to 1/ },
    { label: "poolSize \"2\"", options: { poolSize: "2" }, expected: /poolSize: Expected number/ },
    { label: "idleTimeoutMs NaN", options: { poolSize: 1, idleTimeoutMs: NaN }, expected: /idleTimeoutMs: / },
    { label: "idleTimeoutMs -1", options: { poolSize: 1, idleTimeoutMs: -1 }, expected: /idleTimeoutMs: / },
    { label: "acquireTimeoutMs NaN", options: { poolSize: 1, acquireTimeoutMs: NaN }, expected: /acquireTimeoutMs: / },
    { label: "acquireTimeoutMs -1", options: { poolSize: 1, acquireTimeoutMs: -1 }, expected: /acquireTimeoutMs: / },
    { label: "shutdownTimeoutMs NaN", options: { poolSize: 1, shutdownTimeoutMs: NaN }, expected: /shutdownTimeoutMs: / },
    { label: "shutdownTimeoutMs -1", options: { poolSize: 1, shutdownTimeoutMs: -1 }, expected: /shutdownTimeoutMs: / },
    { label: "maxQueue -1", options: { poolSize: 1, maxQueue: -1 }, expected: /maxQueue: Expected an integer >= 0 or Infinity/ },
    { label: "minIdle -1", options: { poolSize: 1, minIdle: -1 }, expected: /minIdle: / },
    { label: "leaseTimeoutMs -1", options: { poolSize: 1, leaseTimeoutMs: -1 }, expected: /leaseTimeoutMs: / },
    { label: "onLeaseTimeout \"kill\"", options: { poolSize: 1, onLeaseTimeout: "kill" }, expected: /onLeaseTimeout: Expected a function/ },
    { label: "the typo poolsize", options: { poolsize: 2 }, expected: /poolsize: unknown option/ }
  ])("$label throws a PoolOptionsError naming the option", ({ options, expected }) => {
    expect(messageOf({ create: ok, ...options })).toMatch(expected)
  })

  it("create that is not a function throws a PoolOptionsError naming create", () => {
    expect(messageOf({ create: "spawn", poolSize: 1 })).toMatch(/create: Expected a function/)
  })

  it("a missing create throws a PoolOptionsError naming create", () => {
    expect(messageOf({ poolSize: 1 })).toMatch(/create: /)
  })

  it("minIdle above poolSize throws a PoolOptionsError naming minIdle and poolSize", () => {
    const message = messageOf({ create: ok, poolSize: 2, minIdle: 3 })
    expect(message).toMatch(/minIdle/)
    expect(message).toMatch(/poolSize/)
  })

  it("bad options throw before create is ever called", () => {
    const create = vi.fn(ok)
    expect(() => construct({ create, poolSize: 1, minIdle: 1, maxQueue: -1 })).toThrow(PoolOptionsError)
    expect(create).not.toHaveBeenCalled()
  })

  describe("per-call options", () => {
    const bad: ReadonlyArray<[string, unknown, RegExp]> = [
      ["timeoutMs \"50\"", { timeoutMs: "50" }, /^Invalid acquire options: timeoutMs: .*got "50"\.$/],
      ["timeoutMs null", { timeoutMs: null }, /^Invalid acquire options: timeoutMs: .*got null\.$/],
      ["timeoutMs NaN", { timeoutMs: NaN }, /^Invalid acquire options: timeoutMs: .*got NaN\.$/],
      ["signal {}", { signal: {} }, /^Invalid acquire options: signal: Expected an AbortSignal, got an object\.$/],
      ["signal \"x\"", { signal: "x" }, /signal: Expected an AbortSignal/],
      ["the Effect name timeout", { timeout: 50 }, /^Invalid acquire options: timeout: unknown option\.$/],
      ["options null", null, /^Invalid acquire options: expected an object/]
    ]

    it.each(bad)("%s rejects acquire with PoolOptionsError naming it, before any create", async (_, options, message) => {
      const { pool, create } = setup({ poolSize: 1 })
      const result = pool.acquire(options as never)
      expect(result).toBeInstanceOf(Promise)
      const error = await rejectionOf(result)
      expect(error).toBeInstanceOf(PoolOptionsError)
      expect((error as Error).message).toMatch(message)
      expect(create).not.toHaveBeenCalled()
      expect(pool.stats()).toMatchObject({ queued: 0, creating: 0, busy: 0, workers: 0 })
    })

    it.each(bad)("%s rejects acquire with a worker idle, which stays idle", async (_, options, message) => {
      const { pool } = setup({ poolSize: 1 })
      pool.release(await pool.acquire())
      const error = await rejectionOf(pool.acquire(options as never))
      expect((error as Error).message).toMatch(message)
      expect(pool.stats()).toMatchObject({ idle: 1, busy: 0, queued: 0 })
    })

    it.each(bad)("%s rejects use without running fn, and a queued acquire is undisturbed", async (_, options, message) => {
      const { pool } = setup({ poolSize: 1 })
      const held = await pool.acquire()
      const waiter = track(pool.acquire())
      const fn = vi.fn(async () => "ran")
      const error = await rejectionOf(pool.use(fn, options as never))
      expect((error as Error).message).toMatch(message)
      expect(fn).not.toHaveBeenCalled()
      expect(pool.stats()).toMatchObject({ busy: 1, queued: 1 })
      pool.release(held)
      await flush()
      expect(waiter).toMatchObject({ state: "fulfilled", value: held })
    })

    it("good options pass: undefined fields, a real signal, Infinity", async () => {
      const { pool } = setup({ poolSize: 1 })
      const signal = new AbortController().signal
      pool.release(await pool.acquire({ signal: undefined, timeoutMs: undefined }))
      pool.release(await pool.acquire({ signal, timeoutMs: Infinity }))
      expect(await pool.use(async (w) => w.id, { signal, timeoutMs: 0 })).toBe(1)
    })
  })

  it("Infinity is accepted for maxQueue and the times", () => {
    expect(() =>
      construct({
        create: ok,
        poolSize: 1,
        maxQueue: Infinity,
        idleTimeoutMs: Infinity,
        acquireTimeoutMs: Infinity,
        shutdownTimeoutMs: Infinity
      }).shutdown()
    ).not.toThrow()
  })
})

// -----------------------------------------------------------------------------
// Logging
// -----------------------------------------------------------------------------

describe("logging", () => {
  type Line = readonly [level: string, message: string, fields: Readonly<Record<string, unknown>>]
  /** A host logger recording every call. */
  const recorder = () => {
    const lines: Array<Line> = []
    const logger: PoolLogger = {
      debug: (message, fields) => void lines.push(["debug", message, fields]),
      info: (message, fields) => void lines.push(["info", message, fields]),
      warn: (message, fields) => void lines.push(["warn", message, fields]),
      error: (message, fields) => void lines.push(["error", message, fields])
    }
    return { lines, logger }
  }
  let names = 0
  /** A pool name no other pool of this file uses (its pool_id is then `<name>#1`). */
  const uniqueName = () => `logging-${++names}`

  it("with debug, queueing and hand-offs reach the host logger with queued, waitedMs and the pool's ids", async () => {
    vi.useFakeTimers()
    const { lines, logger } = recorder()
    const name = uniqueName()
    const { pool } = setup({ poolSize: 1, debug: true, logger, name })
    const held = await pool.acquire()
    const waiter = pool.acquire()
    await vi.advanceTimersByTimeAsync(30)
    pool.release(held)
    expect(await waiter).toBe(held)
    const ids = { pool: name, pool_id: `${name}#1` }
    expect(lines).toEqual([
      ["debug", "worker-pool: acquire queued", { ...ids, queued: 1 }],
      ["debug", "worker-pool: worker handed to waiter", { ...ids, waitedMs: 0, queued: 0 }],
      ["debug", "worker-pool: acquire queued", { ...ids, queued: 1 }],
      ["debug", "worker-pool: worker handed to waiter", { ...ids, waitedMs: 30, queued: 0 }]
    ])
  })

  it("without debug, the host logger gets no debug line at all", async () => {
    const { lines, logger } = recorder()
    const { pool } = setup({ poolSize: 1, logger, name: uniqueName() })
    const held = await pool.acquire()
    const waiter = pool.acquire()
    pool.release(held)
    pool.release(await waiter)
    await pool.shutdown()
    expect(lines).toEqual([])
  })

  it("a destroy that fails is a warning to the host logger, with the cause", async () => {
    const { lines, logger } = recorder()
    const name = uniqueName()
    const destroy = vi.fn(async () => {
      throw new Error("destroy went wrong")
    })
    const { pool } = setup({ poolSize: 1, logger, name, destroy })
    await pool.invalidate(await pool.acquire())
    expect(lines).toHaveLength(1)
    const [level, message, fields] = lines[0]!
    expect([level, message]).toEqual(["warn", "destroy() of a worker failed"])
    expect(fields).toMatchObject({ pool: name, pool_id: `${name}#1` })
    expect(fields["cause"]).toContain("destroy went wrong")
  })

  it("a worker delivered after shutdown aborted its create is destroyed, and that destroy's failure reaches the host logger", async () => {
    const { lines, logger } = recorder()
    const created = deferred<Worker>()
    const destroy = vi.fn(async () => {
      throw new Error("late destroy went wrong")
    })
    const { pool } = setup({ poolSize: 1, logger, name: uniqueName(), create: () => created.promise, destroy })
    const waiter = track(pool.acquire())
    await flush()
    await pool.shutdown()
    expect(waiter.error).toBeInstanceOf(PoolShutdownError)
    created.resolve({ id: 7 })
    await flush()
    expect(destroy).toHaveBeenCalledWith({ id: 7 })
    expect(lines.map(([level, message]) => [level, message])).toEqual([["warn", "destroy() of a worker failed"]])
    expect(lines[0]![2]["cause"]).toContain("late destroy went wrong")
  })

  it("a host logger that throws loses its lines and breaks nothing", async () => {
    vi.useFakeTimers()
    let calls = 0
    const fail = () => {
      calls++
      throw new Error("the host logger is broken")
    }
    const destroy = vi.fn(async () => {
      throw new Error("destroy went wrong")
    })
    const { pool } = setup({
      poolSize: 1,
      debug: true,
      logger: { debug: fail, info: fail, warn: fail, error: fail },
      name: uniqueName(),
      destroy,
      leaseTimeoutMs: 1_000
    })
    const held = await pool.acquire()
    const waiter = pool.acquire()
    pool.release(held)
    expect(await waiter).toBe(held)
    // A lease timeout warning, then a failed destroy's warning.
    await vi.advanceTimersByTimeAsync(1_000)
    pool.release(held)
    await flush()
    expect(await pool.use(async (w) => w.id)).toBe(2)
    expect(pool.stats()).toMatchObject({ busy: 0, idle: 1, queued: 0, created: 2, finalized: 1 })
    await pool.shutdown()
    expect(destroy).toHaveBeenCalledTimes(2)
    expect(calls).toBeGreaterThanOrEqual(6)
  })

  it("a console or a logger class instance is accepted, and its methods are called on it", async () => {
    class HostLogger {
      readonly seen: Array<string> = []
      debug(message: string) {
        this.seen.push(message)
      }
      info() {}
      warn() {}
      error() {}
    }
    const host = new HostLogger()
    const { pool } = setup({ poolSize: 1, debug: true, logger: host, name: uniqueName() })
    pool.release(await pool.acquire())
    expect(host.seen).toContain("worker-pool: acquire queued")
    expect(() => construct({ create: ok, poolSize: 1, logger: console }).shutdown()).not.toThrow()
  })

  it.each([
    ["a logger without warn", { logger: { debug() {}, info() {}, error() {} } }, /logger\.warn: Missing key/],
    ["a logger whose error is not a function", {
      logger: { debug() {}, info() {}, warn() {}, error: "stderr" }
    }, /logger\.error: Expected a function, got "stderr"/],
    ["a logger that is a function", { logger: () => {} }, /logger: /],
    ["debug \"yes\"", { debug: "yes" }, /debug: .*got "yes"/]
  ])("%s throws a PoolOptionsError naming it", (_, options, message) => {
    let thrown: unknown
    try {
      construct({ create: ok, poolSize: 1, ...options })
    } catch (error) {
      thrown = error
    }
    expect(thrown).toBeInstanceOf(PoolOptionsError)
    expect((thrown as Error).message).toMatch(message)
  })
})

// -----------------------------------------------------------------------------
// stats
// -----------------------------------------------------------------------------

describe("stats", () => {
  it("counts workers, leases, waiters and totals through a scenario", async () => {
    const pending = deferred<Worker>()
    const create = vi.fn()
      .mockResolvedValueOnce({ id: 1 })
      .mockReturnValueOnce(pending.promise)
      .mockRejectedValueOnce(new Error("spawn failed"))
      .mockResolvedValueOnce({ id: 3 })
    const { pool } = setup({ poolSize: 2, create })
    // The pool-wide counts (the per-account ones are tested with accounts).
    const counts = () => {
      const { accounts: _, ...rest } = pool.stats()
      return rest
    }
    const zero = {
      poolSize: 2,
      workers: 0,
      busy: 0,
      idle: 0,
      queued: 0,
      creating: 0,
      finalizing: 0,
      created: 0,
      finalized: 0,
      createFailures: 0,
      closed: false
    }
    expect(counts()).toEqual(zero)

    const a = await pool.acquire()
    expect(counts()).toEqual({ ...zero, workers: 1, busy: 1, created: 1 })

    const b = pool.acquire() // its worker is being created
    expect(counts()).toEqual({ ...zero, workers: 1, busy: 1, queued: 1, creating: 1, created: 1 })

    const c = pool.acquire() // full: it waits for a release
    expect(counts()).toEqual({ ...zero, workers: 1, busy: 1, queued: 2, creating: 1, created: 1 })

    pool.release(a) // straight to b
    expect(await b).toBe(a)
    expect(counts()).toEqual({ ...zero, workers: 1, busy: 1, queued: 1, creating: 1, created: 1 })

    pending.resolve({ id: 2 }) // straight to c
    const w2 = await c
    expect(w2).toEqual({ id: 2 })
    expect(counts()).toEqual({ ...zero, workers: 2, busy: 2, created: 2 })

    pool.release(w2)
    await pool.invalidate(w2)
    expect(counts()).toEqual({ ...zero, workers: 1, busy: 1, created: 2, finalized: 1 })

    expect(await rejectionOf(pool.acquire())).toMatchObject({ message: "spawn failed" })
    expect(counts()).toEqual({ ...zero, workers: 1, busy: 1, created: 2, finalized: 1, createFailures: 1 })

    const w3 = await pool.acquire()
    pool.release(a)
    pool.release(w3)
    expect(counts()).toEqual({ ...zero, workers: 2, idle: 2, created: 3, finalized: 1, createFailures: 1 })

    await pool.shutdown()
    expect(counts()).toEqual({ ...zero, created: 3, finalized: 3, createFailures: 1, closed: true })
  })
})

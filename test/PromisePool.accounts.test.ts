/**
 * The promise facade (`createWorkerPool`) with accounts: `create` per account
 * (or the pool's, given the account's name), isolation, unknown accounts,
 * caps, eviction, run-time add / remove, `prefer`, stats and metrics by
 * account.
 */
import { Effect, Metric } from "effect"
import { afterEach, describe, expect, it, vi } from "vitest"
import {
  AccountExistsError,
  AccountRemovedError,
  PoolOptionsError,
  UnknownAccountError
} from "../src/errors.ts"
import { createWorkerPool, type PromiseWorkerPool, type WorkerPoolOptions } from "../src/PromisePool.ts"

interface Worker {
  readonly id: number
  readonly account: string
}

const pools: Array<PromiseWorkerPool<Worker>> = []

afterEach(() => {
  for (const pool of pools.splice(0)) pool.shutdown().catch(() => {})
})

/** A pool whose `create` numbers workers across accounts and records the account it was asked for. */
const setup = (options: Partial<WorkerPoolOptions<Worker>> = {}) => {
  let next = 0
  const create = vi.fn(async (_signal: AbortSignal, account: string): Promise<Worker> => ({ id: ++next, account }))
  const destroyed: Array<string> = []
  const destroy = vi.fn(async (worker: Worker): Promise<void> => void destroyed.push(`${worker.account}#${worker.id}`))
  const pool = createWorkerPool<Worker>({ create, destroy, poolSize: 2, ...options })
  pools.push(pool)
  return { pool, create, destroy, destroyed }
}

/** Lets promise callbacks run. */
const flush = async () => {
  for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve))
}

const rejectionOf = async (promise: Promise<unknown>): Promise<unknown> => {
  try {
    await promise
  } catch (error) {
    return error
  }
  throw new Error("expected a rejection")
}

describe("createWorkerPool accounts", () => {
  it("the pool's create makes every account's workers, given the account's name; an account's own create wins", async () => {
    const own = vi.fn(async (_signal: AbortSignal, account: string): Promise<Worker> => ({ id: 100, account: `own:${account}` }))
    const { create, pool } = setup({ poolSize: 3, accounts: { a: {}, b: { create: own } } })
    expect(await pool.use(async (w) => w.account, { account: "a" })).toBe("a")
    expect(await pool.use(async (w) => w.account, { account: "b" })).toBe("own:b")
    expect(await pool.use(async (w) => w.account)).toBe("default")
    expect(create.mock.calls.map(([, account]) => account)).toEqual(["a", "default"])
    expect(own).toHaveBeenCalledTimes(1)
  })

  it("a worker of an account is only handed to callers of that account", async () => {
    const { pool } = setup({ poolSize: 2, accounts: { a: {}, b: {} } })
    for (let i = 0; i < 5; i++) {
      const [a, b] = await Promise.all([pool.acquire({ account: "a" }), pool.acquire({ account: "b" })])
      expect([a.account, b.account]).toEqual(["a", "b"])
      pool.release(b)
      pool.release(a)
    }
  })

  it("an unknown account rejects at once with UnknownAccountError naming it; nothing is queued", async () => {
    const { create, pool } = setup()
    const error = await rejectionOf(pool.acquire({ account: "ghost" }))
    expect(error).toBeInstanceOf(UnknownAccountError)
    expect(error).toMatchObject({ account: "ghost" })
    expect(await rejectionOf(pool.use(async () => 1, { account: "ghost" }))).toBeInstanceOf(UnknownAccountError)
    expect(pool.stats()).toMatchObject({ queued: 0, creating: 0 })
    expect(create).not.toHaveBeenCalled()
  })

  it("account and prefer must be strings: PoolOptionsError naming them", async () => {
    const { pool } = setup()
    expect(await rejectionOf(pool.acquire({ account: 7 } as never))).toMatchObject({
      _tag: "PoolOptionsError",
      message: expect.stringMatching(/account: Expected string \| undefined, got 7/)
    })
    expect(await rejectionOf(pool.acquire({ prefer: null } as never))).toBeInstanceOf(PoolOptionsError)
  })

  it("a capped account waits while others are served; its release serves its own waiter", async () => {
    const { pool } = setup({ poolSize: 3, accounts: { a: { maxWorkers: 1 } } })
    const a1 = await pool.acquire({ account: "a" })
    const a2 = pool.acquire({ account: "a" })
    await flush()
    expect(pool.stats().accounts["a"]).toEqual({ workers: 1, busy: 1, idle: 0, queued: 1, creating: 0, maxWorkers: 1 })
    const d = await pool.acquire()
    expect(d.account).toBe("default")
    pool.release(a1)
    expect(await a2).toBe(a1)
  })

  it("at poolSize, a waiter of another account retires the oldest idle worker and gets a new one", async () => {
    const { destroyed, pool } = setup({ poolSize: 1, accounts: { b: {} } })
    pool.release(await pool.acquire())
    const b = await pool.acquire({ account: "b" })
    expect(b.account).toBe("b")
    await flush()
    expect(destroyed).toEqual(["default#1"])
    expect(pool.stats()).toMatchObject({ workers: 1, busy: 1, created: 2, finalized: 1 })
  })

  it("removeAccount rejects its waiters, destroys its idle workers now and busy ones on release, then resolves", async () => {
    const { destroyed, pool } = setup({ poolSize: 3, accounts: { a: { maxWorkers: 2 } } })
    const busy = await pool.acquire({ account: "a" })
    const idle = await pool.acquire({ account: "a" })
    pool.release(idle)
    const other = await pool.acquire({ account: "a" }) // takes the idle one
    const waiting = pool.acquire({ account: "a" })
    await flush()
    pool.release(other) // to the waiter
    const held = await waiting
    const queued = pool.acquire({ account: "a" })
    let removed = false
    const removal = pool.removeAccount("a").then(() => void (removed = true))
    const error = await rejectionOf(queued)
    expect(error).toBeInstanceOf(AccountRemovedError)
    expect(error).toMatchObject({ account: "a", message: expect.stringContaining(`"a" was removed`) })
    expect(await rejectionOf(pool.acquire({ account: "a" }))).toBeInstanceOf(UnknownAccountError)
    await flush()
    expect(destroyed).toEqual([])
    pool.release(busy)
    await flush()
    expect(destroyed).toEqual(["a#1"])
    expect(removed).toBe(false)
    pool.release(held)
    await removal
    expect(destroyed).toEqual(["a#1", "a#2"])
    expect(pool.stats().accounts).toEqual({
      default: { workers: 0, busy: 0, idle: 0, queued: 0, creating: 0, maxWorkers: 3 }
    })
  })

  it("removeAccount: unknown names reject with UnknownAccountError, the default account with PoolOptionsError", async () => {
    const { pool } = setup()
    expect(await rejectionOf(pool.removeAccount("ghost"))).toMatchObject({ _tag: "UnknownAccountError", account: "ghost" })
    expect(await rejectionOf(pool.removeAccount("default"))).toBeInstanceOf(PoolOptionsError)
  })

  it("a removal while the account's worker is being created destroys it when it arrives", async () => {
    let release!: () => void
    const gate = new Promise<void>((resolve) => (release = resolve))
    const { destroyed, pool } = setup({
      accounts: {
        slow: { create: async (_signal, account) => {
          await gate
          return { id: 9, account }
        } }
      }
    })
    const waiting = pool.acquire({ account: "slow" })
    await flush()
    expect(pool.stats().accounts["slow"]).toMatchObject({ creating: 1, queued: 1 })
    const removal = pool.removeAccount("slow")
    expect(await rejectionOf(waiting)).toBeInstanceOf(AccountRemovedError)
    release()
    await removal
    expect(destroyed).toEqual(["slow#9"])
    expect(pool.stats()).toMatchObject({ creating: 0, workers: 0, finalizing: 0 })
  })

  it("addAccount adds an account at run time; a taken name throws AccountExistsError; bad options throw", async () => {
    const { pool } = setup()
    pool.addAccount("late", { maxWorkers: 1 })
    expect(await pool.use(async (w) => w.account, { account: "late" })).toBe("late")
    expect(() => pool.addAccount("late", {})).toThrow(AccountExistsError)
    expect(() => pool.addAccount("default", {})).toThrow(/name "default": "default" is the default account's name/)
    expect(() => pool.addAccount("", {})).toThrow(PoolOptionsError)
    expect(() => pool.addAccount("x", { maxWorkers: 0 })).toThrow(/maxWorkers: Expected an integer >= 1 or Infinity/)
    expect(() => pool.addAccount("x", { env: {} } as never)).toThrow(/env: unknown option/)
    expect(Object.keys(pool.stats().accounts)).toEqual(["default", "late"])
  })

  it("bad accounts options throw PoolOptionsError naming the option", () => {
    const create = async () => ({ id: 1, account: "x" })
    expect(() => createWorkerPool({ create, poolSize: 1, accounts: { default: {} } })).toThrow(/accounts\."default"/)
    expect(() => createWorkerPool({ create, poolSize: 1, accounts: { a: { create: 1 } } } as never)).toThrow(
      /accounts\.a\.create: Expected a function/
    )
    expect(() => createWorkerPool({ create, poolSize: 1, minIdle: 2 })).toThrow(/minIdle: must be <= poolSize/)
    expect(() => createWorkerPool({ create, poolSize: 3, maxWorkers: 1, minIdle: 2 })).toThrow(/minIdle: must be <= maxWorkers/)
  })

  it("prefer hands out the idle worker that last served the key, and never waits for a busy one", async () => {
    const { pool } = setup({ poolSize: 3 })
    const w = await Promise.all([
      pool.acquire({ prefer: "t1" }),
      pool.acquire({ prefer: "t2" }),
      pool.acquire({ prefer: "t3" })
    ])
    for (const worker of w) pool.release(worker)
    const again = await pool.acquire({ prefer: "t1" })
    expect(again).toBe(w[0])
    // t1's worker is busy: served by an idle one at once.
    const other = await pool.acquire({ prefer: "t1" })
    expect(other).not.toBe(w[0])
    pool.release(other)
    pool.release(again)
    expect(await pool.use(async (worker) => worker, { prefer: "t1" })).toBe(w[0])
  })

  it("prefer applies within the caller's account only", async () => {
    const { pool } = setup({ poolSize: 2, accounts: { b: {} } })
    const a = await pool.acquire({ prefer: "shared" })
    pool.release(a)
    const b = await pool.acquire({ account: "b", prefer: "shared" })
    expect(b.account).toBe("b")
  })

  it("stats and metrics report each account", async () => {
    const { pool } = setup({ poolSize: 2, name: "acc-facade", accounts: { a: { maxWorkers: 1 } } })
    const held = await pool.acquire({ account: "a" })
    const queued = rejectionOf(pool.acquire({ account: "a" }))
    await flush()
    expect(pool.stats().accounts).toEqual({
      default: { workers: 0, busy: 0, idle: 0, queued: 0, creating: 0, maxWorkers: 2 },
      a: { workers: 1, busy: 1, idle: 0, queued: 1, creating: 0, maxWorkers: 1 }
    })
    const series = (id: string) =>
      Object.fromEntries(
        Effect.runSync(Metric.snapshot)
          .filter((s) => s.id === id && s.attributes?.["pool"] === "acc-facade")
          .map((s) => [s.attributes!["account"], s.state])
      )
    expect(series("worker_pool_account_queue_length")).toEqual({ default: { value: 0 }, a: { value: 1 } })
    expect(series("worker_pool_account_workers_busy")).toEqual({ default: { value: 0 }, a: { value: 1 } })
    pool.addAccount("b", {})
    expect(Object.keys(series("worker_pool_account_workers_busy"))).toEqual(["default", "a", "b"])
    const removal = pool.removeAccount("a")
    expect(Object.keys(series("worker_pool_account_workers_busy"))).toEqual(["default", "b"])
    expect(await queued).toBeInstanceOf(AccountRemovedError)
    pool.release(held)
    await removal
    await pool.shutdown()
    expect(series("worker_pool_account_workers_busy")).toEqual({})
  })
})

/**
 * `WorkerPool` with accounts: isolation, caps, FIFO by capacity across
 * accounts, eviction, run-time add / remove, the affinity hint, per-account
 * stats, metrics and log annotations. The policy's random-schedule proof is
 * in `WorkerPool.accounts.property.test.ts`.
 */
import { describe, expect, it } from "@effect/vitest"
import { Cause, Effect, Exit, Fiber, Logger, Metric, References, Scope } from "effect"
import { TestClock } from "effect/testing"
import {
  AccountExistsError,
  AccountRemovedError,
  PoolOptionsError,
  PoolShutdownError,
  UnknownAccountError
} from "../src/errors.ts"
import * as WorkerPool from "../src/WorkerPool.ts"

/** Lets forked fibers run until they block. */
const settle = Effect.gen(function*() {
  for (let i = 0; i < 10; i++) yield* Effect.yieldNow
})

interface Worker {
  readonly id: number
  readonly account: string
}

/** Workers of several accounts, numbered across them; every create and finalize recorded. */
const makeWorld = () => {
  let next = 1
  const created: Array<string> = []
  const finalized: Array<string> = []
  const acquireOf = (account: string) =>
    Effect.acquireRelease(
      Effect.sync((): Worker => {
        const worker = { id: next++, account }
        created.push(`${account}#${worker.id}`)
        return worker
      }),
      (worker) => Effect.sync(() => void finalized.push(`${worker.account}#${worker.id}`))
    )
  return { acquireOf, created, finalized }
}

/** Leases a worker in a scope of its own; returns it and its release. */
const lease = <W, E>(pool: WorkerPool.WorkerPool<W, E>, options: WorkerPool.AcquireOptions = {}) =>
  Effect.gen(function*() {
    const scope = yield* Scope.fork(yield* Effect.scope)
    const worker = yield* Scope.provide(pool.getWith(options), scope)
    return { worker, release: Scope.close(scope, Exit.void) }
  })

const defectOf = <A, E>(exit: Exit.Exit<A, E>): unknown => Exit.isFailure(exit) ? Cause.squash(exit.cause) : undefined

describe("WorkerPool accounts", () => {
  it.effect("a worker of an account only ever serves callers of that account", () =>
    Effect.gen(function*() {
      const world = makeWorld()
      const pool = yield* WorkerPool.make({
        acquire: world.acquireOf("default"),
        size: 3,
        accounts: { a: { acquire: world.acquireOf("a") }, b: { acquire: world.acquireOf("b") } }
      })
      for (let round = 0; round < 3; round++) {
        for (const account of ["a", "b", "default"]) {
          const got = yield* pool.use((w) => Effect.succeed(w.account), { account })
          expect(got).toBe(account)
        }
        expect(yield* pool.use((w) => Effect.succeed(w.account))).toBe("default")
      }
      // Three accounts, size 3: one worker each, reused.
      expect(world.created).toEqual(["a#1", "b#2", "default#3"])
    }))

  it.effect("an unknown account fails at once with UnknownAccountError naming it; nothing is queued", () =>
    Effect.gen(function*() {
      const world = makeWorld()
      const pool = yield* WorkerPool.make({ acquire: world.acquireOf("default"), size: 1 })
      const error = yield* Effect.flip(pool.use(() => Effect.void, { account: "nobody" }))
      expect(error).toBeInstanceOf(UnknownAccountError)
      expect(error).toMatchObject({ _tag: "UnknownAccountError", account: "nobody" })
      expect((error as UnknownAccountError).message).toContain(`"nobody"`)
      const viaGet = yield* Effect.flip(Effect.scoped(pool.getWith({ account: "nobody" })))
      expect(viaGet).toBeInstanceOf(UnknownAccountError)
      expect(yield* pool.stats).toMatchObject({ queued: 0, creating: 0, workers: 0 })
      // "default" names the default account.
      expect(yield* pool.use((w) => Effect.succeed(w.account), { account: "default" })).toBe("default")
    }))

  it.effect("account and prefer that are not strings are a PoolOptionsError defect naming them", () =>
    Effect.gen(function*() {
      const world = makeWorld()
      const pool = yield* WorkerPool.make({ acquire: world.acquireOf("default"), size: 1 })
      for (const [options, message] of [[{ account: 1 }, /account: Expected string \| undefined, got 1/], [{ prefer: {} }, /prefer/]] as const) {
        const exit = yield* Effect.exit(pool.use(() => Effect.void, options as never))
        expect(defectOf(exit)).toBeInstanceOf(PoolOptionsError)
        expect((defectOf(exit) as PoolOptionsError).message).toMatch(message)
      }
      expect(world.created).toEqual([])
    }))

  it.effect("an account at its cap waits while another account's request is served", () =>
    Effect.gen(function*() {
      const world = makeWorld()
      const pool = yield* WorkerPool.make({
        acquire: world.acquireOf("default"),
        size: 3,
        accounts: { a: { acquire: world.acquireOf("a"), maxWorkers: 1 } }
      })
      const first = yield* lease(pool, { account: "a" })
      const second = yield* Effect.forkChild(lease(pool, { account: "a" }))
      yield* settle
      expect(second.pollUnsafe()).toBeUndefined()
      expect((yield* pool.stats).accounts["a"]).toEqual({ workers: 1, busy: 1, idle: 0, queued: 1, creating: 0, maxWorkers: 1 })
      // The default account is not held back by a's queue.
      expect(yield* pool.use((w) => Effect.succeed(w.account))).toBe("default")
      yield* first.release
      const next = yield* Fiber.join(second)
      expect(next.worker).toBe(first.worker)
      expect(world.created).toEqual(["a#1", "default#2"])
    }))

  it.effect("FIFO by capacity: one request of B waits only for the waiters that arrived before it", () =>
    Effect.gen(function*() {
      const world = makeWorld()
      const pool = yield* WorkerPool.make({
        acquire: world.acquireOf("default"),
        size: 1,
        accounts: { b: { acquire: world.acquireOf("b") } }
      })
      const served: Array<string> = []
      const holder = yield* lease(pool)
      const fork = (name: string, account?: string) =>
        Effect.forkChild(
          Effect.tap(lease(pool, account === undefined ? {} : { account }), () => Effect.sync(() => void served.push(name)))
        )
      const early = [yield* fork("a1"), yield* fork("a2")]
      const b = yield* fork("b1", "b")
      const late = [yield* fork("a3"), yield* fork("a4")]
      yield* settle
      yield* holder.release
      for (const fiber of early) yield* (yield* Fiber.join(fiber)).release
      // The freed capacity goes to b: the default worker is retired and b's made.
      yield* (yield* Fiber.join(b)).release
      for (const fiber of late) yield* (yield* Fiber.join(fiber)).release
      expect(served).toEqual(["a1", "a2", "b1", "a3", "a4"])
      expect(world.created).toEqual(["default#1", "b#2", "default#3"])
      expect(world.finalized).toEqual(["default#1", "b#2"])
    }))

  it.effect("at size, an idle worker of another account is retired to make room", () =>
    Effect.gen(function*() {
      const world = makeWorld()
      const pool = yield* WorkerPool.make({
        acquire: world.acquireOf("default"),
        size: 2,
        accounts: { b: { acquire: world.acquireOf("b") } }
      })
      const one = yield* lease(pool)
      const two = yield* lease(pool)
      yield* one.release
      yield* TestClock.adjust("10 millis")
      yield* two.release
      expect(yield* pool.stats).toMatchObject({ idle: 2, workers: 2 })
      // b evicts the oldest idle worker of another account.
      expect(yield* pool.use((w) => Effect.succeed(w.account), { account: "b" })).toBe("b")
      expect(world.finalized).toEqual(["default#1"])
      expect((yield* pool.stats).accounts).toMatchObject({ default: { idle: 1 }, b: { idle: 1 } })
    }))

  it.effect("removeAccount fails its waiters, retires its workers as they come back, then completes", () =>
    Effect.gen(function*() {
      const world = makeWorld()
      const pool = yield* WorkerPool.make({
        acquire: world.acquireOf("default"),
        size: 3,
        accounts: { a: { acquire: world.acquireOf("a"), maxWorkers: 2 } }
      })
      const held = yield* lease(pool, { account: "a" })
      const held2 = yield* lease(pool, { account: "a" })
      const waiter = yield* Effect.forkChild(lease(pool, { account: "a" }))
      yield* settle
      expect((yield* pool.stats).accounts["a"]).toMatchObject({ busy: 2, queued: 1 })
      yield* held2.release // goes straight to the waiter
      const waiterLease = yield* Fiber.join(waiter)
      const queued = yield* Effect.forkChild(lease(pool, { account: "a" }))
      yield* settle

      const removal = yield* Effect.forkChild(pool.removeAccount("a"))
      yield* settle
      const error = yield* Effect.flip(Fiber.join(queued))
      expect(error).toBeInstanceOf(AccountRemovedError)
      expect(error).toMatchObject({ account: "a" })
      expect(yield* Effect.flip(pool.use(() => Effect.void, { account: "a" }))).toBeInstanceOf(UnknownAccountError)
      expect((yield* pool.stats).accounts).not.toHaveProperty("a")
      // Both workers are still leased: nothing finalized, the removal waits.
      expect(world.finalized).toEqual([])
      expect(removal.pollUnsafe()).toBeUndefined()
      yield* held.release
      expect(world.finalized).toEqual(["a#1"])
      expect(removal.pollUnsafe()).toBeUndefined()
      yield* waiterLease.release
      expect(world.finalized).toEqual(["a#1", "a#2"])
      yield* settle
      expect(removal.pollUnsafe()).toEqual(Exit.void)
      expect(yield* pool.stats).toMatchObject({ workers: 0, busy: 0, idle: 0, finalizing: 0 })
    }))

  it.effect("removeAccount of an idle account finalizes its workers at once", () =>
    Effect.gen(function*() {
      const world = makeWorld()
      const pool = yield* WorkerPool.make({
        acquire: world.acquireOf("default"),
        size: 2,
        accounts: { a: { acquire: world.acquireOf("a") } }
      })
      yield* pool.use(() => Effect.void, { account: "a" })
      yield* pool.removeAccount("a")
      expect(world.finalized).toEqual(["a#1"])
    }))

  it.effect("removeAccount: an unknown name fails with UnknownAccountError, the default account is a defect", () =>
    Effect.gen(function*() {
      const world = makeWorld()
      const pool = yield* WorkerPool.make({ acquire: world.acquireOf("default"), size: 1 })
      expect(yield* Effect.flip(pool.removeAccount("nobody"))).toMatchObject({ _tag: "UnknownAccountError", account: "nobody" })
      const exit = yield* Effect.exit(pool.removeAccount("default"))
      expect(defectOf(exit)).toBeInstanceOf(PoolOptionsError)
      expect((defectOf(exit) as PoolOptionsError).message).toMatch(/the default account cannot be removed/)
      expect(yield* pool.use((w) => Effect.succeed(w.account))).toBe("default")
    }))

  it.effect("addAccount at run time; a taken name fails with AccountExistsError and changes nothing", () =>
    Effect.gen(function*() {
      const world = makeWorld()
      const pool = yield* WorkerPool.make({ acquire: world.acquireOf("default"), size: 2 })
      yield* pool.addAccount("late", { acquire: world.acquireOf("late"), maxWorkers: 1 })
      expect(yield* pool.use((w) => Effect.succeed(w.account), { account: "late" })).toBe("late")
      const exists = yield* Effect.flip(pool.addAccount("late", { acquire: world.acquireOf("other") }))
      expect(exists).toBeInstanceOf(AccountExistsError)
      expect(exists.account).toBe("late")
      expect(yield* pool.use((w) => Effect.succeed(w.account), { account: "late" })).toBe("late")
      expect((yield* pool.stats).accounts["late"]?.maxWorkers).toBe(1)
      // Removed and added again: the new one's workers are made by the new acquire.
      yield* pool.removeAccount("late")
      yield* pool.addAccount("late", { acquire: world.acquireOf("late-v2") })
      expect(yield* pool.use((w) => Effect.succeed(w.account), { account: "late" })).toBe("late-v2")
    }))

  it.effect("a removed account re-added while its worker is leased never gets that worker back", () =>
    Effect.gen(function*() {
      const world = makeWorld()
      const pool = yield* WorkerPool.make({
        acquire: world.acquireOf("default"),
        size: 2,
        accounts: { a: { acquire: world.acquireOf("a-v1") } }
      })
      const held = yield* lease(pool, { account: "a" })
      const removal = yield* Effect.forkChild(pool.removeAccount("a"))
      yield* settle
      yield* pool.addAccount("a", { acquire: world.acquireOf("a-v2") })
      yield* held.release
      expect(world.finalized).toEqual(["a-v1#1"])
      yield* Fiber.join(removal)
      expect(yield* pool.use((w) => Effect.succeed(w.account), { account: "a" })).toBe("a-v2")
    }))

  it.effect("bad account options are a defect naming the option", () =>
    Effect.gen(function*() {
      const world = makeWorld()
      const acquire = world.acquireOf("default")
      const cases: Array<[unknown, RegExp]> = [
        [{ acquire, size: 1, accounts: { default: { acquire } } }, /accounts\."default": "default" is the default account's name/],
        [{ acquire, size: 1, accounts: { "": { acquire } } }, /accounts\."": an account name must be a non-empty string/],
        [{ acquire, size: 1, accounts: { a: { acquire, maxWorkers: 0 } } }, /accounts\.a\.maxWorkers: Expected an integer >= 1 or Infinity/],
        [{ acquire, size: 1, accounts: { a: { maxWorkers: 1 } } }, /accounts\.a\.acquire/],
        [{ acquire, size: 1, accounts: { a: { acquire, colour: 1 } } }, /accounts\.a\.colour: unknown option/],
        [{ acquire, size: 2, maxWorkers: 1.5 }, /maxWorkers: Expected an integer >= 1 or Infinity/],
        [{ acquire, size: 2, maxWorkers: 1, minIdle: 2 }, /minIdle: must be <= maxWorkers \(1\)/]
      ]
      for (const [options, message] of cases) {
        const exit = yield* Effect.exit(Effect.scoped(WorkerPool.make(options as never)))
        expect(defectOf(exit)).toBeInstanceOf(PoolOptionsError)
        expect((defectOf(exit) as PoolOptionsError).message).toMatch(message)
      }
      const pool = yield* WorkerPool.make({ acquire, size: 1 })
      for (const [name, account, message] of [
        ["default", { acquire }, /name "default": "default" is the default account's name/],
        ["x", { acquire, maxWorkers: -1 }, /maxWorkers: Expected an integer >= 1 or Infinity/],
        ["x", { create: acquire }, /create: unknown option/]
      ] as const) {
        const exit = yield* Effect.exit(pool.addAccount(name, account as never))
        expect(defectOf(exit)).toBeInstanceOf(PoolOptionsError)
        expect((defectOf(exit) as PoolOptionsError).message).toMatch(message)
      }
      expect(Object.keys((yield* pool.stats).accounts)).toEqual(["default"])
    }))

  it.effect("the default account's maxWorkers caps it within size", () =>
    Effect.gen(function*() {
      const world = makeWorld()
      const pool = yield* WorkerPool.make({
        acquire: world.acquireOf("default"),
        size: 3,
        maxWorkers: 1,
        accounts: { b: { acquire: world.acquireOf("b") } }
      })
      yield* lease(pool)
      const waiting = yield* Effect.forkChild(lease(pool))
      yield* settle
      expect(waiting.pollUnsafe()).toBeUndefined()
      expect((yield* pool.stats).accounts["default"]).toMatchObject({ busy: 1, queued: 1, maxWorkers: 1 })
      expect((yield* pool.stats).accounts["b"]?.maxWorkers).toBe(3)
      expect(yield* pool.use((w) => Effect.succeed(w.account), { account: "b" })).toBe("b")
    }))

  describe("prefer", () => {
    it.effect("an acquire gets the idle worker that last served its key, else the usual one", () =>
      Effect.gen(function*() {
        const world = makeWorld()
        const pool = yield* WorkerPool.make({ acquire: world.acquireOf("default"), size: 3 })
        const leases = [
          yield* lease(pool, { prefer: "thread-1" }),
          yield* lease(pool, { prefer: "thread-2" }),
          yield* lease(pool, { prefer: "thread-3" })
        ]
        for (const held of leases) yield* held.release
        // The most recently released is the usual pick (thread-3's); preference overrides it.
        expect(yield* pool.use((w) => Effect.succeed(w.id), { prefer: "thread-1" })).toBe(1)
        expect(yield* pool.use((w) => Effect.succeed(w.id), { prefer: "thread-2" })).toBe(2)
        // A key no idle worker served: the usual pick.
        expect(yield* pool.use((w) => Effect.succeed(w.id), { prefer: "thread-9" })).toBe(2)
      }))

    it.effect("a preferred worker that is busy is not waited for", () =>
      Effect.gen(function*() {
        const world = makeWorld()
        const pool = yield* WorkerPool.make({ acquire: world.acquireOf("default"), size: 2 })
        const first = yield* lease(pool, { prefer: "t" })
        yield* first.release
        const again = yield* lease(pool, { prefer: "t" })
        expect(again.worker.id).toBe(1)
        // Its worker is busy: this one is served by a new worker at once.
        const other = yield* lease(pool, { prefer: "t" })
        expect(other.worker.id).toBe(2)
      }))

    it.effect("preference never goes ahead of a waiter: a queued acquire keeps its place", () =>
      Effect.gen(function*() {
        const world = makeWorld()
        const pool = yield* WorkerPool.make({ acquire: world.acquireOf("default"), size: 1 })
        const first = yield* lease(pool, { prefer: "t" })
        const order: Array<string> = []
        const a = yield* Effect.forkChild(Effect.tap(lease(pool), () => Effect.sync(() => void order.push("plain"))))
        yield* settle
        const b = yield* Effect.forkChild(
          Effect.tap(lease(pool, { prefer: "t" }), () => Effect.sync(() => void order.push("prefers t")))
        )
        yield* settle
        yield* first.release
        yield* (yield* Fiber.join(a)).release
        yield* (yield* Fiber.join(b)).release
        expect(order).toEqual(["plain", "prefers t"])
      }))

    it.effect("a waiter's key is recorded on the worker handed to it", () =>
      Effect.gen(function*() {
        const world = makeWorld()
        const pool = yield* WorkerPool.make({ acquire: world.acquireOf("default"), size: 2 })
        const one = yield* lease(pool)
        const two = yield* lease(pool)
        const waiter = yield* Effect.forkChild(lease(pool, { prefer: "t" }))
        yield* settle
        yield* one.release // handed to the waiter, which records "t" on worker 1
        yield* (yield* Fiber.join(waiter)).release
        yield* two.release // most recent idle: worker 2
        expect(yield* pool.use((w) => Effect.succeed(w.id), { prefer: "t" })).toBe(1)
      }))
  })

  describe("observability", () => {
    it.effect("stats count each account", () =>
      Effect.gen(function*() {
        const world = makeWorld()
        const pool = yield* WorkerPool.make({
          acquire: world.acquireOf("default"),
          size: 2,
          accounts: { a: { acquire: world.acquireOf("a"), maxWorkers: 1 } }
        })
        yield* lease(pool, { account: "a" })
        yield* Effect.forkChild(lease(pool, { account: "a" }))
        const idle = yield* lease(pool)
        yield* idle.release
        yield* settle
        const stats = yield* pool.stats
        expect(stats.accounts).toEqual({
          default: { workers: 1, busy: 0, idle: 1, queued: 0, creating: 0, maxWorkers: 2 },
          a: { workers: 1, busy: 1, idle: 0, queued: 1, creating: 0, maxWorkers: 1 }
        })
        expect(stats).toMatchObject({ workers: 2, busy: 1, idle: 1, queued: 1 })
      }))

    it.effect("per-account series carry the account attribute and come and go with the account", () =>
      Effect.gen(function*() {
        const read = Effect.map(Metric.snapshot, (snapshots) => {
          const out: Record<string, Record<string, unknown>> = {}
          for (const s of snapshots) {
            if (s.attributes?.["pool"] !== "acc" || s.attributes["account"] === undefined) continue
            ;(out[s.id] ??= {})[s.attributes["account"]] = s.state
          }
          return out
        })
        const world = makeWorld()
        const pool = yield* WorkerPool.make({
          acquire: world.acquireOf("default"),
          size: 2,
          name: "acc",
          accounts: { a: { acquire: world.acquireOf("a"), maxWorkers: 1 } }
        })
        yield* lease(pool, { account: "a" })
        yield* Effect.forkChild(lease(pool, { account: "a" }))
        yield* settle
        let metrics = yield* read
        expect(metrics).toEqual({
          worker_pool_account_queue_length: { default: { value: 0 }, a: { value: 1 } },
          worker_pool_account_workers_busy: { default: { value: 0 }, a: { value: 1 } },
          worker_pool_account_workers_idle: { default: { value: 0 }, a: { value: 0 } },
          worker_pool_account_workers_creating: { default: { value: 0 }, a: { value: 0 } }
        })
        const snapshot = (yield* Metric.snapshot).find((s) =>
          s.id === "worker_pool_account_workers_busy" && s.attributes?.["account"] === "a"
        )
        expect(snapshot?.attributes).toEqual({ pool: "acc", pool_id: "acc#1", provider: "generic", account: "a" })
        yield* pool.addAccount("b", { acquire: world.acquireOf("b") })
        expect(Object.keys((yield* read)["worker_pool_account_workers_busy"] ?? {})).toEqual(["default", "a", "b"])
        yield* Effect.forkChild(pool.removeAccount("a"))
        yield* settle
        metrics = yield* read
        expect(Object.keys(metrics["worker_pool_account_workers_busy"] ?? {})).toEqual(["default", "b"])
      }).pipe(Effect.provideService(Metric.MetricRegistry, new Map())))

    it.effect("lines written while making a worker of an account name the account", () => {
      const lines: Array<[unknown, unknown]> = []
      const logger = Logger.make((options) => {
        lines.push([options.message, options.fiber.getRef(References.CurrentLogAnnotations)])
      })
      return Effect.gen(function*() {
        const world = makeWorld()
        const logging = (account: string) => Effect.tap(world.acquireOf(account), () => Effect.logInfo("made"))
        const pool = yield* WorkerPool.make({
          acquire: logging("default"),
          size: 2,
          name: "logs",
          accounts: { a: { acquire: logging("a") } }
        })
        yield* pool.use(() => Effect.void)
        yield* pool.use(() => Effect.void, { account: "a" })
        expect(lines).toEqual([
          [["made"], { pool: "logs", pool_id: "logs#1" }],
          [["made"], { pool: "logs", pool_id: "logs#1", account: "a" }]
        ])
      }).pipe(Effect.provide(Logger.layer([logger])))
    })
  })

  it.effect("shutdown fails the waiters of every account with PoolShutdownError", () =>
    Effect.gen(function*() {
      const world = makeWorld()
      const scope = yield* Scope.make()
      const pool = yield* Scope.provide(
        WorkerPool.make({
          acquire: world.acquireOf("default"),
          size: 1,
          accounts: { a: { acquire: world.acquireOf("a") } },
          shutdownTimeout: 0
        }),
        scope
      )
      const holder = yield* Scope.make()
      yield* Scope.provide(pool.get, holder)
      const waiters = [
        yield* Effect.forkChild(Effect.scoped(pool.getWith({ account: "a" }))),
        yield* Effect.forkChild(Effect.scoped(pool.get))
      ]
      yield* settle
      const closing = yield* Effect.forkChild(Scope.close(scope, Exit.void))
      yield* settle
      for (const waiter of waiters) expect(yield* Effect.flip(Fiber.join(waiter))).toBeInstanceOf(PoolShutdownError)
      yield* Scope.close(holder, Exit.void)
      yield* Fiber.join(closing)
      expect(world.finalized).toEqual(["default#1"])
    }))
})

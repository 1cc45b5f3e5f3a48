/**
 * The fail-fast harness of the pool tests (helpers/failFast.ts): a body or a
 * teardown that waits for ever, or keeps running, fails at once with a
 * message saying so, instead of hanging the suite.
 */
import { describe, expect, it } from "@effect/vitest"
import { Cause, Deferred, Effect, Exit, Scope } from "effect"
import { failFast } from "./helpers/failFast.ts"
import * as WorkerPool from "../src/WorkerPool.ts"
import { makeResources } from "./helpers/resources.ts"

const messageOf = (exit: Exit.Exit<unknown, unknown>): string => {
  if (Exit.isSuccess(exit)) return "(succeeded)"
  const error = Cause.squash(exit.cause)
  return error instanceof Error ? error.message : String(error)
}

describe("failFast", () => {
  it.effect("passes a body's success and failure through, after its teardown", () =>
    Effect.gen(function*() {
      const finalized: Array<string> = []
      const ok = yield* failFast(Effect.as(Effect.addFinalizer(() => Effect.sync(() => void finalized.push("ok"))), 42))
      expect(ok).toBe(42)
      const failed = yield* Effect.exit(failFast(Effect.andThen(
        Effect.addFinalizer(() => Effect.sync(() => void finalized.push("failed"))),
        Effect.fail("boom" as const)
      )))
      expect(failed).toEqual(Exit.fail("boom"))
      expect(finalized).toEqual(["ok", "failed"])
    }))

  it.effect("a body that waits for ever fails at once as blocked", () =>
    Effect.gen(function*() {
      const start = Date.now()
      const exit = yield* Effect.exit(failFast(Deferred.await(yield* Deferred.make<void>()), { name: "waits" }))
      expect(messageOf(exit)).toMatch(/^waits: the body is blocked/)
      expect(Date.now() - start).toBeLessThan(5_000)
    }))

  it.effect("a body that sleeps on a TestClock nobody advances fails as blocked", () =>
    Effect.gen(function*() {
      const exit = yield* Effect.exit(failFast(Effect.sleep("1 hour"), { name: "sleeps" }))
      expect(messageOf(exit)).toMatch(/^sleeps: the body is blocked/)
    }))

  it.effect("a body that waits for a pool that never serves fails as blocked, and so does its teardown", () =>
    Effect.gen(function*() {
      const exit = yield* Effect.exit(failFast(
        Effect.gen(function*() {
          const pool = yield* WorkerPool.make({ acquire: makeResources().acquire, size: 1 })
          // Held for ever: a lease whose scope is never closed, so shutdown waits (on the TestClock) for it.
          yield* Scope.provide(pool.get, yield* Scope.make())
          yield* Effect.scoped(pool.get)
        }),
        { name: "starved", describe: () => "seed 7" }
      ))
      expect(messageOf(exit)).toMatch(/^starved: the body is blocked[^]*\nseed 7$/)
      // A body that ends, leaving a lease the pool's shutdown waits for on the TestClock: its teardown is blocked.
      const teardown = yield* Effect.exit(failFast(
        Effect.gen(function*() {
          const pool = yield* WorkerPool.make({ acquire: makeResources().acquire, size: 1 })
          yield* Scope.provide(pool.get, yield* Scope.make())
        }),
        { name: "lost lease" }
      ))
      expect(messageOf(teardown)).toMatch(/^lost lease: teardown \(closing the body's scope: the pool's shutdown\) is blocked/)
    }))

  it.effect("a body that keeps running without ending fails after the real-time bound", () =>
    Effect.gen(function*() {
      const exit = yield* Effect.exit(failFast(Effect.forever(Effect.yieldNow), { name: "spins", liveMs: 100 }))
      expect(messageOf(exit)).toMatch(/^spins: the body kept running for \d+ ms of real time without ending/)
    }))
})

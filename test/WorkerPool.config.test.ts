/**
 * `WorkerPool.layerConfig`: the pool's value options read from `Config`s
 * (`acquire`, `onLeaseTimeout` and `accounts` from code). A value that cannot be read or
 * is not a valid option fails the layer with a `ConfigError` in the error
 * channel, never a defect; options from code (`layer`, `make`) stay a
 * `PoolOptionsError` defect. Pool time runs on the `TestClock`.
 */
import { describe, expect, it } from "@effect/vitest"
import { Cause, Config, ConfigProvider, Context, Duration, Effect, Exit, Fiber, Layer, Scope } from "effect"
import { TestClock } from "effect/testing"
import { PoolOptionsError } from "../src/errors.ts"
import * as WorkerPool from "../src/WorkerPool.ts"
import { makeResources, type Resource } from "./helpers/resources.ts"

class Resources extends Context.Service<Resources, WorkerPool.WorkerPool<Resource, unknown>>()("test/Resources") {}

/** Lets forked fibers run until they block. */
const settle = Effect.gen(function*() {
  for (let i = 0; i < 10; i++) yield* Effect.yieldNow
})

/** Builds `layer` in a scope of its own under `provider`; returns the exit and the scope. */
const build = <A, E>(layer: Layer.Layer<A, E>, provider: ConfigProvider.ConfigProvider) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const exit = yield* Effect.exit(
      Scope.provide(Layer.build(layer), scope).pipe(Effect.provideService(ConfigProvider.ConfigProvider, provider))
    )
    return { exit, scope }
  })

/** The `ConfigError` a failed build failed with; fails the test if the build died or succeeded. */
const configErrorOf = (exit: Exit.Exit<unknown, unknown>): Config.ConfigError => {
  expect(Exit.isFailure(exit)).toBe(true)
  if (Exit.isSuccess(exit)) throw new Error("the layer was built")
  expect(Cause.hasDies(exit.cause)).toBe(false)
  const error = Cause.findErrorOption(exit.cause)
  expect(error._tag).toBe("Some")
  expect(error._tag === "Some" && error.value).toBeInstanceOf(Config.ConfigError)
  return (error as { readonly value: Config.ConfigError }).value
}

describe("WorkerPool.layerConfig", () => {
  it.effect("reads size and durations (strings such as \"30 seconds\") from config; acquire and onLeaseTimeout come from code", () =>
    Effect.gen(function*() {
      const res = makeResources()
      const expired: Array<Duration.Duration> = []
      const layer = WorkerPool.layerConfig(Resources, {
        acquire: res.acquire,
        onLeaseTimeout: (_worker, leaseTimeout) => Effect.sync(() => void expired.push(leaseTimeout)),
        size: Config.Int("POOL_SIZE"),
        idleTimeout: Config.Duration("POOL_IDLE_TIMEOUT"),
        leaseTimeout: Config.Duration("POOL_LEASE_TIMEOUT").pipe(Config.withDefault("1 hour")),
        name: Config.String("POOL_NAME").pipe(Config.withDefault("configured"))
      })
      const provider = ConfigProvider.fromEnv({
        env: { POOL_SIZE: "2", POOL_IDLE_TIMEOUT: "30 seconds", POOL_LEASE_TIMEOUT: "2 minutes" }
      })
      const { exit, scope } = yield* build(layer, provider)
      expect(Exit.isSuccess(exit)).toBe(true)
      const pool = Context.get((exit as Exit.Success<Context.Context<Resources>>).value, Resources)

      // size 2: two leases at once.
      const aScope = yield* Scope.make()
      const a = yield* Scope.provide(pool.get, aScope)
      const bScope = yield* Scope.make()
      const b = yield* Scope.provide(pool.get, bScope)
      expect([a.id, b.id]).toEqual([1, 2])
      expect(yield* pool.stats).toMatchObject({ poolSize: 2, busy: 2 })
      // leaseTimeout "2 minutes", reported to onLeaseTimeout as a Duration.
      yield* TestClock.adjust("2 minutes")
      expect(expired.map(Duration.toMillis)).toEqual([120_000, 120_000])
      yield* Scope.close(bScope, Exit.void)
      yield* Scope.close(aScope, Exit.void)
      expect(res.finalized).toEqual([2, 1])
      // idleTimeout "30 seconds".
      const c = yield* Scope.make()
      yield* Scope.provide(pool.get, c)
      yield* Scope.close(c, Exit.void)
      yield* TestClock.adjust("29999 millis")
      yield* settle
      expect(res.finalized).toEqual([2, 1])
      yield* TestClock.adjust("1 millis")
      yield* settle
      expect(res.finalized).toEqual([2, 1, 3])
      yield* Scope.close(scope, Exit.void)
    }))

  it.effect("a value that is read but is not a valid option fails the layer with ConfigError naming it, not a defect", () =>
    Effect.gen(function*() {
      const res = makeResources()
      const layer = WorkerPool.layerConfig(Resources, {
        acquire: res.acquire,
        size: Config.Int("SIZE"),
        minIdle: Config.Int("MIN_IDLE").pipe(Config.withDefault(0)),
        idleTimeout: Config.Duration("IDLE").pipe(Config.withDefault("5 minutes")),
        shutdownTimeout: Config.Duration("SHUTDOWN").pipe(Config.withDefault("30 seconds"))
      })
      const cases: Array<[Record<string, string>, RegExp]> = [
        [{ SIZE: "0" }, /Expected a value greater than or equal to 1\n\s+at \["size"\]/],
        [{ SIZE: "2", IDLE: "0 seconds" }, /Expected a duration > 0 \(Duration\.infinity for no limit\)\n\s+at \["idleTimeout"\]/],
        [{ SIZE: "2", SHUTDOWN: "-1 seconds" }, /at \["shutdownTimeout"\]/],
        [{ SIZE: "2", MIN_IDLE: "3" }, /must be <= size \(2\)\n\s+at \["minIdle"\]/],
        // Not readable at all: Config's own errors, naming the key.
        [{ SIZE: "two" }, /at \["SIZE"\]/],
        [{}, /at \["SIZE"\]/]
      ]
      for (const [env, message] of cases) {
        const { exit } = yield* build(layer, ConfigProvider.fromEnv({ env }))
        expect(configErrorOf(exit).message).toMatch(message)
      }
      expect(res.attempts).toBe(0)
    }))

  it.effect("reads the default account's maxWorkers from config; accounts (each with its acquire) come from code", () =>
    Effect.gen(function*() {
      const defaults = makeResources()
      const acme = makeResources()
      const layer = WorkerPool.layerConfig(Resources, {
        acquire: defaults.acquire,
        accounts: { acme: { acquire: acme.acquire, maxWorkers: 1 } },
        size: Config.Int("POOL_SIZE"),
        maxWorkers: Config.Int("POOL_MAX_WORKERS")
      })
      const { exit, scope } = yield* build(layer, ConfigProvider.fromEnv({ env: { POOL_SIZE: "3", POOL_MAX_WORKERS: "1" } }))
      expect(Exit.isSuccess(exit)).toBe(true)
      const pool = Context.get((exit as Exit.Success<Context.Context<Resources>>).value, Resources)
      const held = yield* Scope.make()
      yield* Scope.provide(pool.get, held)
      yield* Scope.provide(pool.getWith({ account: "acme" }), held)
      // maxWorkers 1: a second acquire of the default account waits, though size (3) has room.
      const waiter = yield* Effect.forkChild(Effect.scoped(pool.get))
      yield* settle
      expect((yield* pool.stats).accounts).toMatchObject({
        default: { busy: 1, queued: 1, maxWorkers: 1 },
        acme: { busy: 1, queued: 0, maxWorkers: 1 }
      })
      expect([defaults.created, acme.created]).toEqual([[1], [1]])
      yield* Scope.close(held, Exit.void)
      yield* Fiber.join(waiter)
      yield* Scope.close(scope, Exit.void)
    }))

  it.effect("a maxWorkers read from config that is not valid, or below minIdle, fails the layer with ConfigError", () =>
    Effect.gen(function*() {
      const res = makeResources()
      const layer = WorkerPool.layerConfig(Resources, {
        acquire: res.acquire,
        size: Config.succeed(4),
        minIdle: Config.Int("MIN_IDLE").pipe(Config.withDefault(0)),
        maxWorkers: Config.Number("MAX_WORKERS")
      })
      const cases: Array<[Record<string, string>, RegExp]> = [
        [{ MAX_WORKERS: "0" }, /Expected an integer >= 1 or Infinity\n\s+at \["maxWorkers"\]/],
        [{ MAX_WORKERS: "1.5" }, /Expected an integer >= 1 or Infinity\n\s+at \["maxWorkers"\]/],
        [{ MAX_WORKERS: "1", MIN_IDLE: "2" }, /must be <= maxWorkers \(1\)\n\s+at \["minIdle"\]/]
      ]
      for (const [env, message] of cases) {
        const { exit } = yield* build(layer, ConfigProvider.fromEnv({ env }))
        expect(configErrorOf(exit).message).toMatch(message)
      }
      expect(res.attempts).toBe(0)
    }))

  it.effect("options from code stay a PoolOptionsError defect", () =>
    Effect.gen(function*() {
      const layer = WorkerPool.layer(Resources, { acquire: makeResources().acquire, size: 0 })
      const { exit } = yield* build(layer, ConfigProvider.fromEnv({ env: {} }))
      expect(Exit.isFailure(exit)).toBe(true)
      const defect = Exit.isFailure(exit) ? Cause.squash(exit.cause) : undefined
      expect(Exit.isFailure(exit) && Cause.hasDies(exit.cause)).toBe(true)
      expect(defect).toBeInstanceOf(PoolOptionsError)
      expect((defect as PoolOptionsError).message).toContain("size")
    }))
})

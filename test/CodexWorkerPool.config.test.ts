/**
 * `CodexWorkerPool.layerConfig` and the Node `layerCodexWorkerPoolConfig`:
 * the pool's options read from `Config`s through a `ConfigProvider` (a record
 * or an environment), against the fake app-server
 * (test/fixtures/fake-app-server.mjs). A value that cannot be read or is not
 * a valid option fails the layer with a `ConfigError` in the error channel
 * (not a defect) and starts no process; options from code stay a
 * `PoolOptionsError` defect.
 *
 * Every process carries this test's marker and is found through /proc; pool
 * time runs on the `TestClock`, the worker's tree kill on the live clock
 * (awaited with short, bounded polls).
 */
import { afterEach, beforeEach, describe, expect, it } from "@effect/vitest"
import { Cause, Config, ConfigProvider, Context, Effect, Exit, Layer, Schema, Scope } from "effect"
import { TestClock } from "effect/testing"
import * as CodexWorkerPool from "../src/CodexWorkerPool.ts"
import { PoolOptionsError } from "../src/errors.ts"
import { layerChildProcessSpawner, layerCodexWorkerPoolConfig } from "../src/node.ts"
import { fakeAppServerPath, killByMarker, liveByMarker, markerArg, newMarker, waitUntil } from "./helpers/procs.ts"

let marker = ""
beforeEach(() => {
  marker = newMarker()
})
afterEach(async () => {
  // Safety net only: every test asserts on its own that nothing survived.
  await killByMarker(marker)
})

/** Waits (bounded, real time) until `predicate` holds; the result is asserted by the caller. */
const eventually = (predicate: () => boolean, timeoutMs = 5_000) =>
  Effect.promise(() => waitUntil(predicate, { timeoutMs }))

const noMarkedProcessLeft = () => eventually(() => liveByMarker(marker).length === 0)

/** The options of the pool, each read from the environment variable of its name. */
const fromEnv = {
  command: Config.String("CODEX_COMMAND"),
  args: Config.Array(Schema.String, "CODEX_ARGS"),
  poolSize: Config.Int("CODEX_POOL_SIZE"),
  minIdle: Config.Int("CODEX_MIN_IDLE").pipe(Config.withDefault(0)),
  idleTimeout: Config.Duration("CODEX_IDLE_TIMEOUT").pipe(Config.withDefault("5 minutes")),
  leaseTimeout: Config.Duration("CODEX_LEASE_TIMEOUT").pipe(Config.withDefault("5 minutes")),
  killGrace: Config.Duration("CODEX_KILL_GRACE").pipe(Config.withDefault("300 millis")),
  spawnTimeout: Config.Duration("CODEX_SPAWN_TIMEOUT").pipe(Config.withDefault("30 seconds"))
}

/** An environment that runs the fake app-server with this test's marker, plus `more`. */
const env = (more: Record<string, string> = {}): Record<string, string> => ({
  CODEX_COMMAND: process.execPath,
  CODEX_ARGS: `${fakeAppServerPath},${markerArg(marker)}`,
  ...more
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

/** The `ConfigError` a failed build failed with: in the error channel, with no defect. */
const configErrorOf = (exit: Exit.Exit<unknown, unknown>): Config.ConfigError => {
  if (Exit.isSuccess(exit)) throw new Error("the layer was built")
  expect(Cause.hasDies(exit.cause)).toBe(false)
  const error = Cause.findErrorOption(exit.cause)
  if (error._tag === "None") throw new Error(`no failure in ${Cause.pretty(exit.cause)}`)
  expect(error.value).toBeInstanceOf(Config.ConfigError)
  return error.value as Config.ConfigError
}

const poolOf = (exit: Exit.Exit<Context.Context<CodexWorkerPool.CodexWorkerPool>, unknown>) => {
  if (Exit.isFailure(exit)) throw new Error(Cause.pretty(exit.cause))
  return Context.get(exit.value, CodexWorkerPool.CodexWorkerPool)
}

describe("CodexWorkerPool.layerConfig", () => {
  it.effect("a ConfigProvider from a record builds a working pool; durations read from strings such as \"30 seconds\" apply", () =>
    Effect.gen(function*() {
      const layer = CodexWorkerPool.layerConfig({
        command: Config.String("command"),
        args: Config.Array(Schema.String, "args"),
        poolSize: Config.Int("poolSize"),
        idleTimeout: Config.Duration("idleTimeout"),
        killGrace: Config.Duration("killGrace")
      }).pipe(Layer.provide(layerChildProcessSpawner))
      const provider = ConfigProvider.fromUnknown({
        command: process.execPath,
        args: [fakeAppServerPath, markerArg(marker)],
        poolSize: "2",
        idleTimeout: "30 seconds",
        killGrace: "300 millis"
      })
      const { exit, scope } = yield* build(layer, provider)
      const pool = poolOf(exit)
      const pid = yield* pool.use((worker) =>
        Effect.as(worker.request("thread/start", { ephemeral: true }), worker.pid)
      )
      expect(liveByMarker(marker).map((p) => p.pid)).toEqual([pid])
      expect(yield* pool.stats).toMatchObject({ poolSize: 2, idle: 1 })
      // idleTimeout "30 seconds": not a moment earlier.
      yield* TestClock.adjust("29999 millis")
      expect(yield* pool.stats).toMatchObject({ idle: 1, finalizing: 0, finalized: 0 })
      yield* TestClock.adjust("1 millis")
      expect(yield* eventually(() => Effect.runSync(pool.stats).finalized === 1)).toBe(true)
      expect(yield* noMarkedProcessLeft()).toBe(true)
      yield* Scope.close(scope, Exit.void)
    }))

  it.effect("one Config of the whole options object works too", () =>
    Effect.gen(function*() {
      const layer = CodexWorkerPool.layerConfig(Config.all(fromEnv)).pipe(Layer.provide(layerChildProcessSpawner))
      const { exit, scope } = yield* build(layer, ConfigProvider.fromEnv({ env: env({ CODEX_POOL_SIZE: "1", CODEX_MIN_IDLE: "1" }) }))
      const pool = poolOf(exit)
      // minIdle 1: a worker was started ahead of demand.
      expect(yield* eventually(() => Effect.runSync(pool.stats).idle === 1)).toBe(true)
      expect(liveByMarker(marker)).toHaveLength(1)
      yield* Scope.close(scope, Exit.void)
      expect(yield* noMarkedProcessLeft()).toBe(true)
    }))

  it.effect("a bad value fails the layer with ConfigError naming it, in the error channel, and starts no process", () =>
    Effect.gen(function*() {
      const layer = CodexWorkerPool.layerConfig(fromEnv).pipe(Layer.provide(layerChildProcessSpawner))
      const cases: Array<[Record<string, string>, RegExp]> = [
        [{ CODEX_POOL_SIZE: "0" }, /Expected a value greater than or equal to 1\n\s+at \["poolSize"\]/],
        [{ CODEX_POOL_SIZE: "2", CODEX_MIN_IDLE: "3" }, /must be <= poolSize \(2\)\n\s+at \["minIdle"\]/],
        [{ CODEX_POOL_SIZE: "1", CODEX_IDLE_TIMEOUT: "0 seconds" }, /Expected a duration > 0 \(Duration\.infinity for no limit\)\n\s+at \["idleTimeout"\]/],
        [{ CODEX_POOL_SIZE: "1", CODEX_SPAWN_TIMEOUT: "0 millis" }, /at \["spawnTimeout"\]/],
        [{ CODEX_POOL_SIZE: "1", CODEX_KILL_GRACE: "Infinity" }, /Expected a finite duration >= 0\n\s+at \["killGrace"\]/],
        // Not readable: Config's own errors, naming the variable.
        [{ CODEX_POOL_SIZE: "two" }, /at \["CODEX_POOL_SIZE"\]/],
        [{ CODEX_POOL_SIZE: "1", CODEX_LEASE_TIMEOUT: "a while" }, /at \["CODEX_LEASE_TIMEOUT"\]/],
        [{}, /at \["CODEX_POOL_SIZE"\]/]
      ]
      for (const [more, message] of cases) {
        const { exit } = yield* build(layer, ConfigProvider.fromEnv({ env: env(more) }))
        expect(configErrorOf(exit).message).toMatch(message)
      }
      expect(liveByMarker(marker)).toEqual([])
    }))

  it.effect("accounts and maxWorkers read from config: each account's worker gets its own key (a Config.Redacted)", () =>
    Effect.gen(function*() {
      const layer = CodexWorkerPool.layerConfig({
        ...fromEnv,
        env: { CWP_KEY: Config.Redacted("CODEX_KEY") },
        maxWorkers: Config.Int("CODEX_MAX_WORKERS"),
        accounts: {
          acme: {
            env: { CWP_KEY: Config.Redacted("ACME_KEY") },
            maxWorkers: Config.Int("ACME_MAX_WORKERS")
          }
        }
      }).pipe(Layer.provide(layerChildProcessSpawner))
      const provider = ConfigProvider.fromEnv({
        env: env({
          CODEX_POOL_SIZE: "2",
          CODEX_MAX_WORKERS: "1",
          CODEX_KEY: "key-default",
          ACME_KEY: "key-acme",
          ACME_MAX_WORKERS: "1"
        })
      })
      const { exit, scope } = yield* build(layer, provider)
      const pool = poolOf(exit)
      const keyOf = (account?: string) =>
        pool.use(
          (worker) =>
            Effect.map(
              worker.request("cwp/env", { names: ["CWP_KEY"] }),
              (result) => (result as { env: { CWP_KEY: string | null } }).env.CWP_KEY
            ),
          account === undefined ? undefined : { account }
        )
      expect(yield* keyOf("acme")).toBe("key-acme")
      expect(yield* keyOf()).toBe("key-default")
      const stats = yield* pool.stats
      expect(stats.accounts["default"]?.maxWorkers).toBe(1)
      expect(stats.accounts["acme"]?.maxWorkers).toBe(1)
      expect(liveByMarker(marker)).toHaveLength(2)
      yield* Scope.close(scope, Exit.void)
      expect(yield* noMarkedProcessLeft()).toBe(true)
    }))

  it.effect("a bad account read from config fails the layer with ConfigError naming it, never showing a key", () =>
    Effect.gen(function*() {
      const withAccounts = (accounts: Config.Wrap<CodexWorkerPool.Options["accounts"]>) =>
        CodexWorkerPool.layerConfig({ ...fromEnv, accounts }).pipe(Layer.provide(layerChildProcessSpawner))
      const key = { CWP_KEY: Config.String("ACME_KEY") }
      const cases: Array<[Layer.Layer<CodexWorkerPool.CodexWorkerPool, Config.ConfigError>, Record<string, string>, RegExp]> = [
        [
          withAccounts({ acme: { env: key, maxWorkers: Config.Int("ACME_MAX_WORKERS") } }),
          { ACME_MAX_WORKERS: "0" },
          /Expected an integer >= 1 or Infinity\n\s+at \["accounts"\]\["acme"\]\["maxWorkers"\]/
        ],
        [withAccounts({ default: { env: key } }), {}, /"default" is the default account's name/],
        [withAccounts({ "": { env: key } }), {}, /an account name must be a non-empty string/],
        // The key where the variables should be: named by its path, not shown.
        [withAccounts({ acme: { env: Config.String("ACME_KEY") as never } }), {}, /at \["accounts"\]\["acme"\]\["env"\]/]
      ]
      for (const [layer, more, message] of cases) {
        const provider = ConfigProvider.fromEnv({ env: env({ CODEX_POOL_SIZE: "1", ACME_KEY: "sk-acme-secret", ...more }) })
        const { exit } = yield* build(layer, provider)
        const error = configErrorOf(exit)
        expect(error.message).toMatch(message)
        expect(error.message).not.toContain("sk-acme-secret")
      }
      expect(liveByMarker(marker)).toEqual([])
    }))

  it.effect("options from code stay a PoolOptionsError defect", () =>
    Effect.gen(function*() {
      const layer = CodexWorkerPool.layer({ poolSize: 0 }).pipe(Layer.provide(layerChildProcessSpawner))
      const { exit } = yield* build(layer, ConfigProvider.fromEnv({ env: {} }))
      expect(Exit.isFailure(exit) && Cause.hasDies(exit.cause)).toBe(true)
      const defect = Exit.isFailure(exit) ? Cause.squash(exit.cause) : undefined
      expect(defect).toBeInstanceOf(PoolOptionsError)
      expect((defect as PoolOptionsError).message).toContain("poolSize")
    }))
})

describe("layerCodexWorkerPoolConfig (node)", () => {
  it.effect("reads the options from the environment, spawns with Node, and closing it leaves no process", () =>
    Effect.gen(function*() {
      const layer = layerCodexWorkerPoolConfig(fromEnv)
      const { exit, scope } = yield* build(layer, ConfigProvider.fromEnv({ env: env({ CODEX_POOL_SIZE: "1" }) }))
      const pool = poolOf(exit)
      const result = yield* pool.use((worker) => worker.call("thread/start", { ephemeral: true }))
      expect(result.thread.ephemeral).toBe(true)
      expect(liveByMarker(marker)).toHaveLength(1)
      yield* Scope.close(scope, Exit.void)
      expect(yield* noMarkedProcessLeft()).toBe(true)
    }))

  it.effect("a bad value fails it with ConfigError, not a defect", () =>
    Effect.gen(function*() {
      const { exit } = yield* build(
        layerCodexWorkerPoolConfig(fromEnv),
        ConfigProvider.fromEnv({ env: env({ CODEX_POOL_SIZE: "0" }) })
      )
      expect(configErrorOf(exit).message).toContain("poolSize")
      expect(liveByMarker(marker)).toEqual([])
    }))
})

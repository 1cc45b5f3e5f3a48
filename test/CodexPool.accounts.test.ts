/**
 * Accounts of the Codex pool, against real processes of the fake app-server
 * (test/fixtures/fake-app-server.mjs), through the promise facade and the
 * Effect service:
 *
 * - each account's workers are started with that account's environment (its
 *   key), `codexHome` and `args` on top of the defaults, and nobody else's,
 *   as the processes themselves report (`cwp/env`, `/proc/PID/environ`,
 *   `/proc/PID/cmdline`);
 * - eviction (a waiter of another account at `poolSize`) and account removal
 *   kill the retired worker's whole tree (checked in `/proc`);
 * - a key never shows in a log line (every line, at debug, through the host
 *   logger), an error message, `stats()`, or a metric snapshot.
 *
 * Every process carries this test's marker; every test ends with none alive.
 */
import { afterEach, beforeEach, describe, expect, it } from "@effect/vitest"
import { Cause, Effect, Exit, Metric, Redacted, type Scope } from "effect"
import type { ChildProcessSpawner } from "effect/process/ChildProcessSpawner"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { type CodexWorkerHandle, type CodexWorkerPoolOptions, createCodexWorkerPool, layerChildProcessSpawner } from "../src/node.ts"
import * as CodexWorker from "../src/CodexWorker.ts"
import * as CodexWorkerPool from "../src/CodexWorkerPool.ts"
import {
  AccountExistsError,
  AccountRemovedError,
  PoolOptionsError,
  UnknownAccountError,
  WorkerSpawnError
} from "../src/errors.ts"
import type { PoolLogger } from "../src/PromisePool.ts"
import { fakePoolOptions, fakeServiceOptions, isLivePid, killByMarker, liveByMarker, newMarker, statFields, waitUntil } from "./helpers/procs.ts"
import { within } from "./helpers/wait.ts"

let marker = ""
const pools: Array<{ shutdown(): Promise<void> }> = []
beforeEach(() => {
  marker = newMarker()
})
afterEach(async () => {
  for (const pool of pools.splice(0)) await pool.shutdown().catch(() => {})
  await killByMarker(marker)
})

/** Pool options that run the fake app-server with this test's marker and `flags` (a failed test's leases end soon). */
const fake = (flags: ReadonlyArray<string> = [], options: CodexWorkerPoolOptions = {}): CodexWorkerPoolOptions =>
  fakePoolOptions(marker, flags, { shutdownTimeoutMs: 1_000, ...options })

/** `fake` for the Effect service (times as durations). */
const fakeService = (options: CodexWorkerPool.Options = {}): CodexWorkerPool.Options =>
  fakeServiceOptions(marker, [], { shutdownTimeout: "1 second", ...options })

const makePool = (options: CodexWorkerPoolOptions) => {
  const pool = createCodexWorkerPool(options)
  pools.push(pool)
  return pool
}

const noMarkedProcessLeft = () => waitUntil(() => liveByMarker(marker).length === 0)
const treeOf = (pid: number): Array<number> => [
  pid,
  ...liveByMarker(marker).filter((p) => statFields(p.pid)?.ppid === pid).map((p) => p.pid)
]
const allDead = (pids: ReadonlyArray<number>) => pids.every((pid) => !isLivePid(pid))
const bounded = <A>(promise: Promise<A>, what: string) => within(promise, what, 5_000)
const rejection = (promise: Promise<unknown>): Promise<any> =>
  promise.then((value) => {
    throw new Error(`expected a rejection, got ${JSON.stringify(value)}`)
  }, (error: unknown) => error)

const NAMES = ["CWP_KEY", "CWP_BASE", "CWP_ONLY_ACME", "CODEX_HOME"]

/** What a worker's process reports of its environment. */
const envOf = async (worker: CodexWorkerHandle): Promise<Record<string, string | null>> =>
  ((await worker.request("cwp/env", { names: NAMES })) as { env: Record<string, string | null> }).env

/** A variable of a process's environment, read from /proc (independently of the fake). */
const procEnv = (pid: number, name: string): string | undefined =>
  fs.readFileSync(`/proc/${pid}/environ`, "utf8").split("\0").find((entry) => entry.startsWith(`${name}=`))
    ?.slice(name.length + 1)

const procArgs = (pid: number): Array<string> => fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0")

const tempDir = () => fs.mkdtempSync(path.join(os.tmpdir(), "cwp-accounts-"))

describe("Codex pool accounts (fake app-server)", () => {
  it("each account's workers get that account's environment, codexHome and args, and nobody else's", async () => {
    const acmeHome = tempDir()
    try {
      const base = fake([], {})
      const pool = makePool({
        ...base,
        poolSize: 5,
        env: { CWP_KEY: "key-default", CWP_BASE: "base" },
        accounts: {
          acme: {
            env: { CWP_KEY: Redacted.make("key-acme"), CWP_ONLY_ACME: "1" },
            codexHome: acmeHome,
            maxWorkers: 2
          },
          beta: { env: { CWP_KEY: "key-beta", CWP_BASE: undefined }, args: [...base.args!, "--beta-flag"] }
        }
      })
      const acme = await Promise.all([pool.acquire({ account: "acme" }), pool.acquire({ account: "acme" })])
      const beta = await Promise.all([pool.acquire({ account: "beta" }), pool.acquire({ account: "beta" })])
      const plain = await pool.acquire()
      expect(new Set([...acme, ...beta, plain].map((w) => w.pid)).size).toBe(5)
      for (const worker of acme) {
        expect(await envOf(worker)).toEqual({ CWP_KEY: "key-acme", CWP_BASE: "base", CWP_ONLY_ACME: "1", CODEX_HOME: acmeHome })
        expect(procEnv(worker.pid, "CWP_KEY")).toBe("key-acme")
        expect((worker.initializeResult as { codexHome: string }).codexHome).toBe(acmeHome)
        expect(procArgs(worker.pid)).not.toContain("--beta-flag")
      }
      for (const worker of beta) {
        expect(await envOf(worker)).toMatchObject({ CWP_KEY: "key-beta", CWP_BASE: null, CWP_ONLY_ACME: null })
        expect(procEnv(worker.pid, "CWP_KEY")).toBe("key-beta")
        expect(procArgs(worker.pid)).toContain("--beta-flag")
        expect((await envOf(worker))["CODEX_HOME"]).not.toBe(acmeHome)
      }
      expect(await envOf(plain)).toMatchObject({ CWP_KEY: "key-default", CWP_BASE: "base", CWP_ONLY_ACME: null })
      expect(procArgs(plain.pid)).not.toContain("--beta-flag")
      for (const worker of [...acme, ...beta, plain]) pool.release(worker)
      // Released and acquired again: each account still gets its own.
      for (let i = 0; i < 3; i++) {
        expect((await pool.use((w) => envOf(w), { account: "beta" }))["CWP_KEY"]).toBe("key-beta")
        expect((await pool.use((w) => envOf(w), { account: "acme" }))["CWP_KEY"]).toBe("key-acme")
        expect((await pool.use((w) => envOf(w)))["CWP_KEY"]).toBe("key-default")
      }
      const stats = pool.stats()
      expect(stats.accounts["acme"]).toMatchObject({ workers: 2, idle: 2, maxWorkers: 2, processes: 2 })
      expect(stats.accounts["beta"]).toMatchObject({ workers: 2, processes: 2 })
      expect(stats.accounts["default"]).toMatchObject({ workers: 1, processes: 1 })
      expect(stats.accounts["acme"]!.residentBytes).toBeGreaterThan(0)
      await bounded(pool.shutdown(), "shutdown")
      expect(await noMarkedProcessLeft()).toBe(true)
    } finally {
      fs.rmSync(acmeHome, { recursive: true, force: true })
    }
  })

  it("an account added at run time gets its own environment; removing it kills its trees", async () => {
    const pool = makePool(fake(["--mcp-children"], { poolSize: 3, env: { CWP_KEY: "key-default" } }))
    pool.addAccount("late", { env: { CWP_KEY: Redacted.make("key-late") }, maxWorkers: 2 })
    expect(() => pool.addAccount("late", {})).toThrow(AccountExistsError)
    const busy = await Promise.all([pool.acquire({ account: "late" }), pool.acquire({ account: "late" })])
    for (const worker of busy) expect((await envOf(worker))["CWP_KEY"]).toBe("key-late")
    const trees = busy.map((worker) => treeOf(worker.pid))
    expect(trees.map((tree) => tree.length)).toEqual([4, 4])
    const waiter = rejection(pool.acquire({ account: "late" })) // at its cap: it waits
    let removed = false
    const removal = pool.removeAccount("late").then(() => void (removed = true))
    expect(await waiter).toBeInstanceOf(AccountRemovedError)
    expect(await rejection(pool.acquire({ account: "late" }))).toBeInstanceOf(UnknownAccountError)
    // Busy workers' trees are killed as they are released.
    expect(trees.flat().every(isLivePid)).toBe(true)
    pool.release(busy[0]!)
    expect(await waitUntil(() => allDead(trees[0]!))).toBe(true)
    expect(trees[1]!.every(isLivePid)).toBe(true)
    expect(removed).toBe(false)
    pool.release(busy[1]!)
    await bounded(removal, "the removal")
    expect(allDead(trees[1]!)).toBe(true)
    expect(pool.stats().accounts).not.toHaveProperty("late")
    // An idle worker's tree is killed at once.
    pool.addAccount("idle", { env: { CWP_KEY: "key-idle" } })
    const idlePid = await pool.use(async (w) => w.pid, { account: "idle" })
    const idleTree = treeOf(idlePid)
    expect(idleTree).toHaveLength(4)
    await bounded(pool.removeAccount("idle"), "the removal")
    expect(allDead(idleTree)).toBe(true)
    expect((await pool.use((w) => envOf(w)))["CWP_KEY"]).toBe("key-default")
    await bounded(pool.shutdown(), "shutdown")
    expect(await noMarkedProcessLeft()).toBe(true)
  })

  it("eviction at poolSize kills the retired worker's whole tree and starts the other account's", async () => {
    const pool = makePool(fake(["--mcp-children"], { poolSize: 1, accounts: { b: { env: { CWP_KEY: "key-b" } } } }))
    const first = await pool.acquire()
    const tree = treeOf(first.pid)
    expect(tree).toHaveLength(4)
    pool.release(first)
    const b = await bounded(pool.acquire({ account: "b" }), "b's worker")
    expect(b.pid).not.toBe(first.pid)
    expect((await envOf(b))["CWP_KEY"]).toBe("key-b")
    expect(await waitUntil(() => allDead(tree))).toBe(true)
    expect(await waitUntil(() => pool.stats().finalized === 1)).toBe(true)
    expect(pool.stats()).toMatchObject({ workers: 1, created: 2, finalized: 1 })
    expect(pool.stats().accounts).toMatchObject({ default: { workers: 0, processes: 0 }, b: { workers: 1, processes: 4 } })
    pool.release(b)
    await bounded(pool.shutdown(), "shutdown")
    expect(await noMarkedProcessLeft()).toBe(true)
  })

  it("prefer hands a conversation back to the worker that served it", async () => {
    const pool = makePool(fake([], { poolSize: 3 }))
    const workers = await Promise.all([
      pool.acquire({ prefer: "thread-a" }),
      pool.acquire({ prefer: "thread-b" }),
      pool.acquire({ prefer: "thread-c" })
    ])
    const pids = workers.map((w) => w.pid)
    for (const worker of workers) pool.release(worker)
    for (const [i, key] of ["thread-a", "thread-b", "thread-c", "thread-a"].entries()) {
      expect(await pool.use(async (w) => w.pid, { prefer: key })).toBe(pids[i % 3])
    }
    await bounded(pool.shutdown(), "shutdown")
    expect(await noMarkedProcessLeft()).toBe(true)
  })

  describe("secrets", () => {
    const SECRET_A = "sk-acme-0123456789-SECRET"
    const SECRET_B = "sk-beta-9876543210-SECRET"
    const SECRET_D = "sk-default-5555-SECRET"
    const leaks = (text: string) => [SECRET_A, SECRET_B, SECRET_D].filter((secret) => text.includes(secret))
    /** Everything a value shows when logged or printed. */
    const shown = (value: unknown): string => {
      const seen = new WeakSet<object>()
      const json = JSON.stringify(value, (_key, v) => {
        if (typeof v === "object" && v !== null) {
          if (seen.has(v)) return "[circular]"
          seen.add(v)
        }
        return v instanceof Error ? { ...v, name: v.name, message: v.message, stack: v.stack } : v
      })
      return `${json} ${String(value)}`
    }

    it("a key never shows in a log line, an error, stats or a metric", async () => {
      const lines: Array<string> = []
      const logger: PoolLogger = {
        debug: (message, fields) => void lines.push(shown([message, fields])),
        info: (message, fields) => void lines.push(shown([message, fields])),
        warn: (message, fields) => void lines.push(shown([message, fields])),
        error: (message, fields) => void lines.push(shown([message, fields]))
      }
      const name = `secrets-${marker}`
      const pool = makePool(fake(["--stderr-noise"], {
        poolSize: 2,
        name,
        debug: true,
        logger,
        leaseTimeoutMs: 300,
        env: { OPENAI_API_KEY: Redacted.make(SECRET_D) },
        accounts: {
          acme: { env: { OPENAI_API_KEY: Redacted.make(SECRET_A) } },
          beta: { env: { OPENAI_API_KEY: SECRET_B } }
        }
      }))
      const errors: Array<unknown> = []
      for (const account of ["acme", "beta", "default"]) {
        await pool.use(async (w) => {
          // The process has its key (read from /proc: asking the fake would make it log the answer).
          expect(procEnv(w.pid, "OPENAI_API_KEY")).toMatch(/SECRET/)
          const { thread } = (await w.request("thread/start", {})) as { thread: { id: string } }
          errors.push(await rejection(w.request("turn/start", { threadId: "nope", input: [] })))
          return thread.id
        }, { account })
      }
      // A worker that outlives its lease, an account whose codexHome cannot be made, a removal.
      const stuck = await pool.acquire({ account: "acme" })
      errors.push(await bounded(rejection(stuck.request("cwp/never-answered", {})), "the lease timeout"))
      pool.release(stuck)
      // A file where a directory should be: codexHome cannot be created.
      const file = path.join(tempDir(), "not-a-directory")
      fs.writeFileSync(file, "")
      pool.addAccount("broken", { env: { OPENAI_API_KEY: Redacted.make(SECRET_A) }, codexHome: path.join(file, "home") })
      const spawnError = await bounded(rejection(pool.acquire({ account: "broken" })), "the spawn failure")
      fs.rmSync(path.dirname(file), { recursive: true, force: true })
      expect(spawnError).toBeInstanceOf(WorkerSpawnError)
      errors.push(spawnError)
      errors.push(await rejection(pool.acquire({ account: "ghost" })))
      const removal = pool.removeAccount("beta")
      await bounded(removal, "the removal")
      errors.push(await rejection(pool.acquire({ account: "beta" })))
      // Options errors name the option, never the value.
      for (const bad of [
        { env: SECRET_D },
        { env: { OPENAI_API_KEY: 42 } },
        { accounts: { acme: { env: SECRET_A } } },
        { accounts: { acme: { env: { OPENAI_API_KEY: Redacted.make(42) } } } }
      ]) {
        const error = (() => {
          try {
            createCodexWorkerPool(fake([], bad as never))
          } catch (e) {
            return e
          }
        })()
        expect(error).toBeInstanceOf(PoolOptionsError)
        expect((error as PoolOptionsError).message).toMatch(/env/)
        errors.push(error)
      }
      const addError = (() => {
        try {
          pool.addAccount("x", { env: SECRET_B } as never)
        } catch (e) {
          return e
        }
      })()
      expect(addError).toBeInstanceOf(PoolOptionsError)
      errors.push(addError)

      const stats = shown(pool.stats())
      const metrics = shown(Effect.runSync(Metric.snapshot).filter((s) => s.attributes?.["pool"] === name))
      await bounded(pool.shutdown(), "shutdown")
      expect(lines.length).toBeGreaterThan(20)
      expect(lines.some((line) => line.includes("thread/start") && line.includes(`"account":"acme"`))).toBe(true)
      expect(metrics).toContain("codex_worker_pool_account_processes")
      expect(stats).toContain("acme")
      expect(lines.flatMap(leaks)).toEqual([])
      expect(errors.map(shown).flatMap(leaks)).toEqual([])
      expect(leaks(stats)).toEqual([])
      expect(leaks(metrics)).toEqual([])
      expect(await noMarkedProcessLeft()).toBe(true)
    })

    it("a bad env option is named without its value", () => {
      const cases: Array<[unknown, RegExp]> = [
        [{ env: SECRET_D }, /^Invalid createCodexWorkerPool options: env: Expected [^,]*\.$/],
        [{ accounts: { acme: { env: SECRET_A } } }, /^Invalid createCodexWorkerPool options: accounts\.acme\.env: Expected [^,]*\.$/],
        [{ env: { KEY: 42 } }, /^Invalid createCodexWorkerPool options: env\.KEY: Expected a string or a Redacted string\.$/]
      ]
      for (const [options, message] of cases) {
        expect(() => createCodexWorkerPool(options as never)).toThrow(message)
      }
      // The Effect API: the service's options, and those of one worker.
      const defectOf = (effect: Effect.Effect<unknown, unknown, ChildProcessSpawner | Scope.Scope>) => {
        const exit = Effect.runSyncExit(effect.pipe(Effect.scoped, Effect.provide(layerChildProcessSpawner)))
        return Exit.isFailure(exit) ? Cause.squash(exit.cause) : undefined
      }
      const service = defectOf(CodexWorkerPool.make({ accounts: { acme: { env: { KEY: 4242 } } } } as never))
      expect(service).toBeInstanceOf(PoolOptionsError)
      expect((service as PoolOptionsError).message).toBe(
        "Invalid CodexWorkerPool options: accounts.acme.env.KEY: Expected a string or a Redacted string."
      )
      const worker = defectOf(CodexWorker.make({ env: { KEY: 4242 } } as never))
      expect(worker).toBeInstanceOf(PoolOptionsError)
      expect((worker as PoolOptionsError).message).toBe(
        "Invalid CodexWorker options: env.KEY: Expected a string or a Redacted string."
      )
      // A Redacted value is accepted where a string is: only the empty command is refused.
      const onlyCommand = defectOf(CodexWorker.make({ command: "", env: { KEY: Redacted.make("k") } }))
      expect(onlyCommand).toBeInstanceOf(PoolOptionsError)
      expect((onlyCommand as PoolOptionsError).message).toMatch(/^Invalid CodexWorker options: command: [^;]*\.$/)
    })
  })

  describe("the Effect service", () => {
    it.live("getWith({ account }) leases that account's worker; addAccount / removeAccount at run time", () =>
      Effect.gen(function*() {
        const pool = yield* CodexWorkerPool.make(fakeService({
          poolSize: 2,
          env: { CWP_KEY: "key-default" },
          accounts: { acme: { env: { CWP_KEY: Redacted.make("key-acme") }, maxWorkers: 1 } }
        }))
        const keyOf = (account?: string) =>
          pool.use(
            (w) => Effect.map(w.request("cwp/env", { names: ["CWP_KEY"] }), (r) => (r as { env: { CWP_KEY: string } }).env.CWP_KEY),
            account === undefined ? undefined : { account }
          )
        expect(yield* keyOf("acme")).toBe("key-acme")
        expect(yield* keyOf()).toBe("key-default")
        expect(yield* Effect.flip(keyOf("ghost"))).toBeInstanceOf(UnknownAccountError)
        yield* pool.addAccount("late", { env: { CWP_KEY: "key-late" } })
        expect(yield* Effect.flip(pool.addAccount("late", {}))).toBeInstanceOf(AccountExistsError)
        expect(yield* keyOf("late")).toBe("key-late")
        const stats = yield* pool.stats
        expect(Object.keys(stats.accounts)).toEqual(["default", "acme", "late"])
        expect(stats.accounts["acme"]).toMatchObject({ maxWorkers: 1, processes: 0 })
        yield* pool.removeAccount("late")
        expect(yield* Effect.flip(keyOf("late"))).toBeInstanceOf(UnknownAccountError)
        const bad = yield* Effect.exit(pool.addAccount("x", { env: "key" } as never))
        expect(Exit.isFailure(bad) && Cause.squash(bad.cause)).toBeInstanceOf(PoolOptionsError)
      }).pipe(
        Effect.scoped,
        Effect.provide(layerChildProcessSpawner),
        Effect.andThen(Effect.promise(() => noMarkedProcessLeft())),
        Effect.map((ok) => expect(ok).toBe(true))
      ))
  })
})

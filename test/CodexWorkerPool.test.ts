/**
 * Real-process tests of the `CodexWorkerPool` Effect service against the fake
 * app-server (test/fixtures/fake-app-server.mjs).
 *
 * Every test carries its own marker on the command line of every process it
 * starts (the fake passes it on to its MCP-like children), finds them again
 * through /proc, and ends by asserting that no live process carries it
 * (zombies count as dead). The afterEach safety net SIGKILLs survivors by PID.
 *
 * Pool timers (idle timeout, lease timeout, shutdown timeout) run on the
 * `TestClock` of `it.effect` and are moved with `TestClock.adjust`; the worker's
 * own tree kill runs on the live clock, so real process events are awaited
 * with `waitUntil` (short, bounded polls). The spawn timeout tests use
 * `it.live` with a 300 ms `spawnTimeout`: the timeout races the real spawn
 * of a process, and there is no observable moment at which the worker's timer
 * is known to be armed, so a `TestClock.adjust` could land before it.
 */
import { afterEach, beforeEach, describe, expect, it } from "@effect/vitest"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Cause, Deferred, Effect, Exit, Fiber, Metric, Scope } from "effect"
import { TestClock } from "effect/testing"
import * as CodexWorker from "../src/CodexWorker.ts"
import * as CodexWorkerPool from "../src/CodexWorkerPool.ts"
import {
  JsonRpcError,
  LeaseTimeoutError,
  PoolOptionsError,
  WorkerCrashedError,
  WorkerSpawnError
} from "../src/errors.ts"
import { layerChildProcessSpawner, layerCodexWorkerPool } from "../src/node.ts"
import {
  fakeServiceOptions,
  isLivePid,
  killByMarker,
  liveByMarker,
  mcpChildrenIn,
  newMarker,
  statFields,
  waitUntil
} from "./helpers/procs.ts"

let marker = ""
beforeEach(() => {
  marker = newMarker()
})
afterEach(async () => {
  // Safety net only: every test asserts on its own that nothing survived.
  await killByMarker(marker)
})

/** Pool options that run the fake app-server with this test's marker and `flags`. */
const fake = (flags: ReadonlyArray<string> = [], options: CodexWorkerPool.Options = {}): CodexWorkerPool.Options =>
  fakeServiceOptions(marker, flags, options)

/** Waits (bounded, real time) until `predicate` holds; the result is asserted by the caller. */
const eventually = (predicate: () => boolean, timeoutMs = 5_000) =>
  Effect.promise(() => waitUntil(predicate, { timeoutMs }))

/** True once no live process carries this test's marker. */
const noMarkedProcessLeft = () => eventually(() => liveByMarker(marker).length === 0)

/**
 * The pids of a worker's tree as seen from outside the code under test: the
 * fake app-server and its live children (the MCP-like ones are its direct children).
 */
const treeOf = (worker: CodexWorker.CodexWorker): Array<number> => [
  worker.pid,
  ...liveByMarker(marker).filter((p) => statFields(p.pid)?.ppid === worker.pid).map((p) => p.pid)
]

const allDead = (pids: ReadonlyArray<number>) => pids.every((pid) => !isLivePid(pid))

/**
 * Leases a worker in a scope of its own (a child of the test's scope, so a
 * lease still held at the end of a test ends before the pool shuts down);
 * returns the worker and a release effect.
 */
const lease = (pool: CodexWorkerPool.Service) =>
  Effect.gen(function*() {
    const scope = yield* Scope.fork(yield* Effect.scope)
    const worker = yield* Scope.provide(pool.get, scope)
    return { worker, release: Scope.close(scope, Exit.void) }
  })

/** A fresh temporary directory, removed when the test's scope closes. */
const tempDir = Effect.acquireRelease(
  Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "cwp-home-test-"))),
  (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
)

/** Runs a pool test with Node's process spawner. */
const withSpawner = <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.provide(effect, layerChildProcessSpawner)

/** A request the fake never answers (unknown methods get no response). */
const unanswered = (worker: CodexWorker.CodexWorker) => worker.request("cwp/never-answered", {})

/** Runs one text turn on `worker` and resolves with the notifications of the turn, up to `turn/completed`. */
const runTurn = (worker: CodexWorker.CodexWorker, text: string) =>
  Effect.gen(function*() {
    const seen: Array<CodexWorker.IncomingMessage> = []
    const completed = yield* Deferred.make<void>()
    const unsubscribe = worker.subscribe((message) => {
      seen.push(message)
      if (message.method === "turn/completed") Deferred.doneUnsafe(completed, Exit.void)
    })
    const { thread } = (yield* worker.request("thread/start", { ephemeral: true })) as { thread: { id: string } }
    yield* worker.request("turn/start", { threadId: thread.id, input: [{ type: "text", text, text_elements: [] }] })
    yield* Deferred.await(completed)
    unsubscribe()
    return seen
  })

describe("CodexWorkerPool", () => {
  describe("every end of a worker leaves no marked process", () => {
    it.effect("shutdown kills the trees of an idle and a busy worker (the busy one after shutdownTimeout)", () =>
      withSpawner(Effect.gen(function*() {
        const pool = yield* CodexWorkerPool.make(fake(["--mcp-children"], { poolSize: 2, shutdownTimeout: "10 seconds" }))
        const busy = yield* lease(pool)
        const idle = yield* lease(pool)
        const busyTree = treeOf(busy.worker)
        const idleTree = treeOf(idle.worker)
        expect([busyTree.length, idleTree.length]).toEqual([4, 4])
        yield* idle.release

        const shutdown = yield* Effect.forkChild(pool.shutdown)
        expect(yield* eventually(() => allDead(idleTree))).toBe(true)
        yield* TestClock.adjust("10 seconds")
        yield* Fiber.join(shutdown)
        expect(allDead(busyTree)).toBe(true)
        expect(yield* pool.stats).toMatchObject({ workers: 0, finalized: 2, processes: 0 })
        // Ending the lease after shutdown finalized its worker is harmless.
        yield* busy.release
        expect(yield* noMarkedProcessLeft()).toBe(true)
      })))

    it.effect("an idle timeout kills the retired worker's whole tree", () =>
      withSpawner(Effect.gen(function*() {
        const pool = yield* CodexWorkerPool.make(fake(["--mcp-children"], { idleTimeout: "60 seconds" }))
        const { release, worker } = yield* lease(pool)
        const tree = treeOf(worker)
        expect(tree).toHaveLength(4)
        yield* release
        yield* TestClock.adjust("60 seconds")
        expect(yield* eventually(() => allDead(tree))).toBe(true)
        expect(yield* eventually(() => Effect.runSync(pool.stats).finalized === 1)).toBe(true)
        expect(yield* pool.stats).toMatchObject({ workers: 0, idle: 0 })
        expect(yield* noMarkedProcessLeft()).toBe(true)
      })))

    it.effect("invalidating a leased worker kills its whole tree when the lease ends", () =>
      withSpawner(Effect.gen(function*() {
        const pool = yield* CodexWorkerPool.make(fake(["--mcp-children"]))
        const { release, worker } = yield* lease(pool)
        const tree = treeOf(worker)
        expect(tree).toHaveLength(4)
        yield* pool.invalidate(worker)
        yield* release
        expect(yield* eventually(() => allDead(tree))).toBe(true)
        expect(yield* noMarkedProcessLeft()).toBe(true)
      })))

    it.effect("a crash mid-turn fails the pending request with WorkerCrashedError and kills the orphaned descendants", () =>
      withSpawner(Effect.gen(function*() {
        const pool = yield* CodexWorkerPool.make(
          fake(["--mcp-children", "--crash-mid-turn", "--deltas=4", "--delta-delay-ms=20"])
        )
        const { worker } = yield* lease(pool)
        const tree = treeOf(worker)
        expect(tree).toHaveLength(4)
        const { thread } = (yield* worker.request("thread/start", {})) as { thread: { id: string } }
        yield* worker.request("turn/start", { threadId: thread.id, input: [{ type: "text", text: "hi", text_elements: [] }] })
        // No clock adjustment: the failure must not wait for the (5 minute) lease timeout.
        const error = yield* Effect.flip(unanswered(worker))
        expect(error).toBeInstanceOf(WorkerCrashedError)
        expect(error).toMatchObject({ pid: worker.pid, code: 1, signal: null })
        expect((error as WorkerCrashedError).stderrTail.some((line) => line.includes("crashing mid-turn"))).toBe(true)
        expect((yield* worker.closed).error).toBe(error)
        expect(yield* eventually(() => allDead(tree))).toBe(true)
        expect(yield* noMarkedProcessLeft()).toBe(true)
      })))

    it.effect("a lease timeout fails the pending request with LeaseTimeoutError, kills the tree and retires the worker", () =>
      withSpawner(Effect.gen(function*() {
        const pool = yield* CodexWorkerPool.make(fake(["--mcp-children"], { leaseTimeout: "60 seconds" }))
        const first = yield* lease(pool)
        const tree = treeOf(first.worker)
        expect(tree).toHaveLength(4)
        const pending = yield* Effect.forkChild(unanswered(first.worker))
        yield* TestClock.adjust("60 seconds")
        const error = yield* Effect.flip(Fiber.join(pending))
        expect(error).toBeInstanceOf(LeaseTimeoutError)
        expect(error).toMatchObject({ leaseTimeoutMs: 60_000, pid: first.worker.pid })
        expect(yield* eventually(() => allDead(tree))).toBe(true)
        // Releasing the expired lease is allowed, and the worker is not handed out again.
        yield* first.release
        const second = yield* lease(pool)
        expect(second.worker.pid).not.toBe(first.worker.pid)
        expect(yield* eventually(() => Effect.runSync(pool.stats).finalized === 1)).toBe(true)
        expect(yield* pool.stats).toMatchObject({ created: 2, workers: 1 })
        yield* second.release
        yield* pool.shutdown
        expect(yield* noMarkedProcessLeft()).toBe(true)
      })))
  })

  describe("reuse", () => {
    it.effect("a second lease gets the same process and initializeResult without a second initialize", () =>
      withSpawner(Effect.gen(function*() {
        // The fake answers a second `initialize` with an error, which would fail the second lease.
        const pool = yield* CodexWorkerPool.make(fake())
        const first = yield* lease(pool)
        const { initializeResult, pid } = first.worker
        expect(initializeResult).toMatchObject({ userAgent: expect.stringContaining("fake-app-server") })
        yield* first.release
        const second = yield* lease(pool)
        expect(second.worker.pid).toBe(pid)
        expect(second.worker.initializeResult).toEqual(initializeResult)
        expect(yield* pool.stats).toMatchObject({ created: 1, workers: 1 })
        yield* second.release
        yield* pool.shutdown
        expect(yield* noMarkedProcessLeft()).toBe(true)
      })))
  })

  describe("a use whose function throws", () => {
    it.effect("with a worker idle, dies with that defect and leaves the worker in service for the next use", () =>
      withSpawner(Effect.gen(function*() {
        const scope = yield* Scope.make()
        const pool = yield* Scope.provide(CodexWorkerPool.make(fake([], { shutdownTimeout: "30 seconds" })), scope)
        const pid = yield* pool.use((worker) => Effect.succeed(worker.pid))
        expect(yield* pool.stats).toMatchObject({ busy: 0, idle: 1 })
        const boom = new Error("boom")
        const exit = yield* Effect.exit(pool.use((): Effect.Effect<void> => {
          throw boom
        }))
        expect(Exit.isFailure(exit) && Cause.squash(exit.cause)).toBe(boom)
        expect(yield* pool.stats).toMatchObject({ busy: 0, idle: 1, queued: 0, workers: 1 })
        // The next use gets the same process at once (the pool clock does not move).
        const next = yield* Effect.forkChild(pool.use((worker) => Effect.succeed(worker.pid)))
        for (let i = 0; i < 10; i++) yield* Effect.yieldNow
        expect(next.pollUnsafe()).toEqual(Exit.succeed(pid))
        // Nothing is leased: closing the scope only waits for the tree kill, not for shutdownTimeout.
        const closing = yield* Effect.forkChild(Scope.close(scope, Exit.void))
        expect(yield* eventually(() => closing.pollUnsafe() !== undefined)).toBe(true)
        expect(yield* noMarkedProcessLeft()).toBe(true)
      })))
  })

  describe("crashed workers", () => {
    it.effect("requests on a crashed worker fail at once with WorkerCrashedError carrying the signal", () =>
      withSpawner(Effect.gen(function*() {
        const pool = yield* CodexWorkerPool.make(fake())
        const { release, worker } = yield* lease(pool)
        process.kill(worker.pid, "SIGKILL")
        const closed = yield* worker.closed
        expect(closed).toMatchObject({ code: null, signal: "SIGKILL" })
        // No clock adjustment: neither request waits for the lease timeout.
        const first = yield* Effect.flip(worker.request("thread/start", {}))
        const second = yield* Effect.flip(worker.request("thread/start", {}))
        expect(first).toBeInstanceOf(WorkerCrashedError)
        expect(first).toMatchObject({ pid: worker.pid, code: null, signal: "SIGKILL" })
        expect(second).toBe(first)
        yield* release
        yield* pool.shutdown
        expect(yield* noMarkedProcessLeft()).toBe(true)
      })))

    it.effect("releasing a crashed worker is allowed and the next lease gets a new process", () =>
      withSpawner(Effect.gen(function*() {
        const pool = yield* CodexWorkerPool.make(fake())
        const first = yield* lease(pool)
        process.kill(first.worker.pid, "SIGKILL")
        yield* first.worker.closed
        yield* first.release
        const second = yield* lease(pool)
        expect(second.worker.pid).not.toBe(first.worker.pid)
        expect(yield* second.worker.request("thread/start", {})).toMatchObject({ thread: { id: expect.any(String) } })
        expect(yield* pool.stats).toMatchObject({ created: 2, workers: 1 })
        yield* second.release
        yield* pool.shutdown
        expect(yield* noMarkedProcessLeft()).toBe(true)
      })))
    it.effect("a worker whose request failed with WorkerCrashedError is not handed to the queued waiter when released", () =>
      withSpawner(Effect.gen(function*() {
        const pool = yield* CodexWorkerPool.make(fake([], { poolSize: 1 }))
        const crash = yield* Deferred.make<void>()
        let crashedPid = 0
        // Leases the worker, then (once a waiter is queued) kills it under a pending request;
        // `use` releases the worker as soon as the request fails.
        const first = yield* Effect.forkChild(Effect.flip(pool.use((worker) => {
          crashedPid = worker.pid
          return Deferred.await(crash).pipe(
            Effect.andThen(Effect.sync(() => process.kill(worker.pid, "SIGKILL"))),
            Effect.andThen(unanswered(worker))
          )
        })))
        expect(yield* eventually(() => crashedPid !== 0)).toBe(true)
        const waiter = yield* Effect.forkChild(pool.use((worker) =>
          Effect.map(Effect.exit(worker.request("thread/start", {})), (exit) => ({ pid: worker.pid, ok: Exit.isSuccess(exit) }))
        ))
        expect(yield* eventually(() => Effect.runSync(pool.stats).queued === 1)).toBe(true)
        yield* Deferred.succeed(crash, undefined)
        expect(yield* Fiber.join(first)).toBeInstanceOf(WorkerCrashedError)
        const next = yield* Fiber.join(waiter)
        expect(next.pid).not.toBe(crashedPid)
        expect(next.ok).toBe(true)
        yield* pool.shutdown
        expect(yield* noMarkedProcessLeft()).toBe(true)
      })))

    it.effect("an idle worker whose process dies is finalized at once and its orphaned descendants are killed", () =>
      withSpawner(Effect.gen(function*() {
        const pool = yield* CodexWorkerPool.make(fake(["--mcp-children"]))
        const first = yield* lease(pool)
        const tree = treeOf(first.worker)
        expect(tree).toHaveLength(4)
        yield* first.release
        process.kill(first.worker.pid, "SIGKILL")
        expect(yield* eventually(() => allDead(tree))).toBe(true)
        expect(yield* eventually(() => Effect.runSync(pool.stats).finalized === 1)).toBe(true)
        expect(yield* pool.stats).toMatchObject({ workers: 0, idle: 0 })
        expect(yield* noMarkedProcessLeft()).toBe(true)
      })))
  })

  describe("spawn failures", () => {
    it.effect("a command that does not exist fails with WorkerSpawnError naming it and leaks no slot", () =>
      withSpawner(Effect.gen(function*() {
        const command = `/nonexistent/codex-${marker}`
        const pool = yield* CodexWorkerPool.make({ command, args: ["app-server"] })
        const error = yield* Effect.flip(lease(pool))
        expect(error).toBeInstanceOf(WorkerSpawnError)
        expect(error).toMatchObject({ command, reason: "StartFailed", pid: undefined })
        expect(error.message).toContain(command)
        // The hint fits the cause: the command is wrong or codex is not installed.
        expect(error.message).toContain("npm install @openai/codex")
        expect(yield* pool.stats).toMatchObject({ createFailures: 1, workers: 0, creating: 0, queued: 0, processes: 0 })
        // The pool is not stuck: the next acquire tries again and fails the same way.
        expect(yield* Effect.flip(lease(pool))).toBeInstanceOf(WorkerSpawnError)
        expect(yield* pool.stats).toMatchObject({ createFailures: 2, workers: 0, creating: 0, queued: 0 })
        expect(yield* noMarkedProcessLeft()).toBe(true)
      })))

    it.live("a worker that never answers initialize fails with WorkerSpawnError after spawnTimeout and leaves no process", () =>
      withSpawner(Effect.gen(function*() {
        const pool = yield* CodexWorkerPool.make(fake(["--mcp-children", "--hang-initialize"], { spawnTimeout: "300 millis" }))
        const error = yield* Effect.flip(lease(pool))
        expect(error).toBeInstanceOf(WorkerSpawnError)
        expect(error).toMatchObject({ command: process.execPath, reason: "Timeout" })
        expect(error.message).toContain("spawnTimeout (300 ms)")
        // The hint fits the cause: too slow, or not an app server.
        expect(error.message).toContain("raise `spawnTimeout` (`spawnTimeoutMs` in createCodexWorkerPool)")
        expect(error.message).not.toContain("npm install")
        expect(yield* pool.stats).toMatchObject({ createFailures: 1, workers: 0, creating: 0 })
        expect(yield* noMarkedProcessLeft()).toBe(true)
      })))

    it.live("a worker that exits before initialize fails with WorkerSpawnError and leaves no process", () =>
      withSpawner(Effect.gen(function*() {
        const pool = yield* CodexWorkerPool.make(fake(["--exit-before-initialize"]))
        const error = yield* Effect.flip(lease(pool))
        expect(error).toBeInstanceOf(WorkerSpawnError)
        expect(error).toMatchObject({ command: process.execPath })
        // The cause says how the process ended, with its last stderr lines.
        expect((error as WorkerSpawnError).cause).toMatchObject({ _tag: "WorkerCrashedError", code: 1 })
        expect(error).toMatchObject({ reason: "ExitedEarly" })
        // The hint fits the cause: codex's own last words, not "install codex".
        expect(error.message).toContain("exited with code 1 before answering initialize")
        expect(error.message).toContain("exiting before initialize")
        expect(error.message).not.toContain("npm install")
        expect(yield* pool.stats).toMatchObject({ createFailures: 1, workers: 0, creating: 0 })
        expect(yield* noMarkedProcessLeft()).toBe(true)
      })))

    it.live("a worker that starts descendants in other groups and sessions, then exits before initialize, leaves none of them", () =>
      withSpawner(Effect.gen(function*() {
        const poolScope = yield* Scope.make()
        const pool = yield* Scope.provide(CodexWorkerPool.make(fake(["--exit-after-children"])), poolScope)
        const error = (yield* Effect.flip(lease(pool))) as WorkerSpawnError
        // The acquire fails once the tree kill is over: nothing is left, without waiting.
        expect(liveByMarker(marker)).toEqual([])
        expect(error).toBeInstanceOf(WorkerSpawnError)
        expect(error).toMatchObject({ reason: "ExitedEarly", cause: { _tag: "WorkerCrashedError", code: 1 } })
        expect(error.message).toContain("exiting after starting children")
        // The fake had started its three children (one in its group, one in a
        // group of its own, one in a session of its own) before it exited.
        const children = mcpChildrenIn(error.stderrTail)
        expect(children).toHaveLength(3)
        expect(children.filter(isLivePid)).toEqual([])
        expect(yield* pool.stats).toMatchObject({ createFailures: 1, workers: 0, creating: 0, processes: 0 })
        yield* Scope.close(poolScope, Exit.void)
        expect(liveByMarker(marker)).toEqual([])
      })))

    it.live("a server that answers initialize with an error fails with WorkerSpawnError carrying it and leaves no process", () =>
      withSpawner(Effect.gen(function*() {
        const pool = yield* CodexWorkerPool.make(fake(["--mcp-children", "--reject-initialize"]))
        const error = (yield* Effect.flip(lease(pool))) as WorkerSpawnError
        expect(liveByMarker(marker)).toEqual([])
        expect(error).toBeInstanceOf(WorkerSpawnError)
        expect(error).toMatchObject({ reason: "InitializeFailed", pid: expect.any(Number) })
        expect(error.cause).toBeInstanceOf(JsonRpcError)
        expect(error.message).toContain("fake rejects initialize (--reject-initialize)")
        expect(error.message).toContain("`clientInfo`")
        expect(yield* pool.stats).toMatchObject({ createFailures: 1, workers: 0, creating: 0 })
      })))

    it.live("a codexHome that does not exist is created (mode 0700, relative to cwd) and the worker starts", () =>
      withSpawner(Effect.gen(function*() {
        const base = yield* tempDir
        const pool = yield* CodexWorkerPool.make(fake([], { cwd: base, codexHome: "missing/home" }))
        const { release, worker } = yield* lease(pool)
        const expected = path.join(base, "missing", "home")
        // The fake reports the CODEX_HOME it was given: the absolute directory, now existing.
        expect(worker.initializeResult).toMatchObject({ codexHome: expected })
        const stat = fs.statSync(expected)
        expect(stat.isDirectory()).toBe(true)
        expect(stat.mode & 0o077).toBe(0)
        yield* release
        yield* pool.shutdown
        expect(yield* noMarkedProcessLeft()).toBe(true)
      })))

    it.live("a codexHome that is a file, or cannot be created, fails with WorkerSpawnError naming it and starts no process", () =>
      withSpawner(Effect.gen(function*() {
        const base = yield* tempDir
        const file = path.join(base, "file")
        fs.writeFileSync(file, "")
        const cases = [
          [file, "is not a directory"],
          [path.join(file, "home"), "does not exist and could not be created"]
        ] as const
        for (const [codexHome, problem] of cases) {
          const pool = yield* CodexWorkerPool.make(fake([], { codexHome }))
          const error = (yield* Effect.flip(lease(pool))) as WorkerSpawnError
          expect(error).toBeInstanceOf(WorkerSpawnError)
          expect(error).toMatchObject({ reason: "CodexHome", pid: undefined })
          expect(error.message).toContain(`codexHome "${codexHome}" ${problem}`)
          expect(error.message).toContain("Point the `codexHome` option at a directory")
          expect(yield* pool.stats).toMatchObject({ createFailures: 1, workers: 0, creating: 0 })
          expect(liveByMarker(marker)).toEqual([])
          yield* pool.shutdown
        }
      })))
  })

  describe("channel", () => {
    it.effect("garbage on stdout and noise on stderr do not break the channel: a full turn completes", () =>
      withSpawner(Effect.gen(function*() {
        const pool = yield* CodexWorkerPool.make(fake(["--garbage", "--stderr-noise"]))
        const seen = yield* pool.use((worker) => runTurn(worker, "hi"))
        const deltas = seen.filter((m) => m.method === "item/agentMessage/delta").map((m) => (m.params as any).delta)
        expect(deltas.join("")).toBe("echo: hi 1 2")
        expect(seen.at(-1)?.params).toMatchObject({ turn: { status: "completed" } })
        yield* pool.shutdown
        expect(yield* noMarkedProcessLeft()).toBe(true)
      })))

    it.effect("a server error response fails the request with JsonRpcError carrying its code and message", () =>
      withSpawner(Effect.gen(function*() {
        const pool = yield* CodexWorkerPool.make(fake())
        const error = yield* Effect.flip(
          pool.use((worker) => worker.request("turn/start", { threadId: "no-such-thread", input: [] }))
        )
        expect(error).toBeInstanceOf(JsonRpcError)
        expect(error).toMatchObject({
          method: "turn/start",
          code: -32600,
          serverMessage: "thread not found: no-such-thread",
          data: undefined
        })
        yield* pool.shutdown
        expect(yield* noMarkedProcessLeft()).toBe(true)
      })))
  })

  describe("stats and metrics", () => {
    it.effect("stats count codex with its MCP-like children and their memory, and 0 after shutdown", () =>
      withSpawner(Effect.gen(function*() {
        const pool = yield* CodexWorkerPool.make(fake(["--mcp-children"]))
        const { release } = yield* lease(pool)
        const during = yield* pool.stats
        expect(during.processes).toBe(4)
        expect(during.residentBytes).toBeGreaterThan(0)
        yield* release
        yield* pool.shutdown
        expect(yield* pool.stats).toMatchObject({ processes: 0, residentBytes: 0 })
        expect(yield* noMarkedProcessLeft()).toBe(true)
      })))

    it.effect("the process gauges and the generic pool metrics appear in Metric.snapshot with provider codex", () =>
      withSpawner(Effect.gen(function*() {
        const name = `metrics-${marker}`
        const pool = yield* CodexWorkerPool.make(fake(["--mcp-children"], { name }))
        const { release } = yield* lease(pool)
        const snapshot = yield* Metric.snapshot
        const mine = Object.fromEntries(
          snapshot.filter((s) => s.attributes?.["pool"] === name).map((s) => [s.id, s])
        )
        const attributes = { pool: name, pool_id: `${name}#1`, provider: "codex" }
        expect(mine["codex_worker_pool_processes"]?.attributes).toEqual(attributes)
        expect(mine["codex_worker_pool_processes"]?.state).toEqual({ value: 4 })
        expect(mine["codex_worker_pool_resident_bytes"]?.attributes).toEqual(attributes)
        expect((mine["codex_worker_pool_resident_bytes"]?.state as { value: number }).value).toBeGreaterThan(0)
        expect(mine["worker_pool_workers_busy"]?.attributes).toEqual(attributes)
        expect(mine["worker_pool_workers_busy"]?.state).toEqual({ value: 1 })
        expect(mine["worker_pool_workers_created_total"]?.state).toMatchObject({ count: 1 })
        yield* release
        yield* pool.shutdown
        expect(yield* noMarkedProcessLeft()).toBe(true)
      }).pipe(Effect.provideService(Metric.MetricRegistry, new Map()))))

    it.effect("two Codex pools with the same name keep process gauges of their own; closing one leaves the other's", () =>
      withSpawner(Effect.gen(function*() {
        const name = `twin-${marker}`
        /** metric id -> pool_id -> state, for the series of pools named `name`. */
        const read = Effect.map(Metric.snapshot, (snapshots) => {
          const out: Record<string, Record<string, unknown>> = {}
          for (const s of snapshots) {
            if (s.attributes?.["pool"] === name) (out[s.id] ??= {})[s.attributes["pool_id"]!] = s.state
          }
          return out
        })
        const scopeA = yield* Scope.make()
        const a = yield* Scope.provide(CodexWorkerPool.make(fake(["--mcp-children"], { name })), scopeA)
        const b = yield* CodexWorkerPool.make(fake([], { name }))
        const leaseA = yield* lease(a)
        const leaseB = yield* lease(b)
        let metrics = yield* read
        expect(metrics["codex_worker_pool_processes"]).toEqual({ [`${name}#1`]: { value: 4 }, [`${name}#2`]: { value: 1 } })
        expect(metrics["worker_pool_workers_busy"]).toEqual({ [`${name}#1`]: { value: 1 }, [`${name}#2`]: { value: 1 } })
        yield* leaseA.release
        yield* Scope.close(scopeA, Exit.void)
        metrics = yield* read
        expect(metrics["codex_worker_pool_processes"]).toEqual({ [`${name}#2`]: { value: 1 } })
        expect(metrics["worker_pool_workers_busy"]).toEqual({ [`${name}#2`]: { value: 1 } })
        yield* leaseB.release
        yield* b.shutdown
        expect(yield* noMarkedProcessLeft()).toBe(true)
      }).pipe(Effect.provideService(Metric.MetricRegistry, new Map()))))
  })

  describe("service and layer", () => {
    it.effect("layerCodexWorkerPool (node) provides the service: use runs a request, and closing the layer kills every tree", () =>
      Effect.gen(function*() {
        let tree: Array<number> = []
        const result = yield* Effect.gen(function*() {
          const pool = yield* CodexWorkerPool.CodexWorkerPool
          return yield* pool.use((worker) => {
            tree = treeOf(worker)
            return worker.request("thread/start", { ephemeral: true })
          })
        }).pipe(Effect.provide(layerCodexWorkerPool(fake(["--mcp-children"]))))
        expect(result).toMatchObject({ thread: { id: expect.any(String), ephemeral: true } })
        expect(tree).toHaveLength(4)
        // The layer's scope has closed: shutdown waited for every tree to be killed.
        expect(allDead(tree)).toBe(true)
        expect(yield* noMarkedProcessLeft()).toBe(true)
      }))

    it.effect("make with a bad option dies with PoolOptionsError naming the option", () =>
      withSpawner(Effect.gen(function*() {
        const exit = yield* Effect.exit(CodexWorkerPool.make({ poolSize: 0 }))
        expect(Exit.isFailure(exit)).toBe(true)
        const defect = Exit.isFailure(exit) ? Cause.squash(exit.cause) : undefined
        expect(defect).toBeInstanceOf(PoolOptionsError)
        expect((defect as PoolOptionsError).message).toContain("poolSize")
        expect(yield* noMarkedProcessLeft()).toBe(true)
      })))
  })
})

/**
 * Real-process tests of how a Codex worker ends when its stdio breaks or its
 * server breaks the protocol, against the fake app-server with `--control`
 * (test-only methods that stop reading stdin, close it, answer with a raw
 * response, or write long lines).
 *
 * Every process carries this test's marker; each test asserts from `/proc`
 * that the worker's tree is gone, and the afterEach safety net SIGKILLs
 * survivors by PID. The tests run on the live clock: what they wait for are
 * real process events, each bounded by a timeout.
 */
import { afterEach, beforeEach, describe, expect, it } from "@effect/vitest"
import { Cause, Effect, Exit, Fiber, Scope } from "effect"
import * as CodexWorker from "../src/CodexWorker.ts"
import * as CodexWorkerPool from "../src/CodexWorkerPool.ts"
import { PoolOptionsError, ProtocolError, WorkerCrashedError, WorkerStdioError } from "../src/errors.ts"
import { layerChildProcessSpawner } from "../src/node.ts"
import {
  fakeServiceOptions,
  isLivePid,
  killByMarker,
  liveByMarker,
  newMarker,
  statFields,
  waitUntil
} from "./helpers/procs.ts"

let marker = ""
beforeEach(() => {
  marker = newMarker()
})
afterEach(async () => {
  await killByMarker(marker)
})

/** Pool options that run the fake app-server with this test's marker, `--control` and `flags`. */
const fake = (flags: ReadonlyArray<string> = [], options: CodexWorkerPool.Options = {}): CodexWorkerPool.Options =>
  fakeServiceOptions(marker, ["--control", ...flags], options)

/** Waits (bounded, real time) until `predicate` holds; the result is asserted by the caller. */
const eventually = (predicate: () => boolean, timeoutMs = 5_000) =>
  Effect.promise(() => waitUntil(predicate, { timeoutMs }))

/** The fake app-server and its live children (the MCP-like ones are its direct children). */
const treeOf = (worker: CodexWorker.CodexWorker): Array<number> => [
  worker.pid,
  ...liveByMarker(marker).filter((p) => statFields(p.pid)?.ppid === worker.pid).map((p) => p.pid)
]

const allDead = (pids: ReadonlyArray<number>) => pids.every((pid) => !isLivePid(pid))

/** Leases a worker in a scope of its own; returns it and a release effect. */
const lease = (pool: CodexWorkerPool.Service) =>
  Effect.gen(function*() {
    const scope = yield* Scope.fork(yield* Effect.scope)
    const worker = yield* Scope.provide(pool.get, scope)
    const closes: Array<CodexWorker.CloseInfo> = []
    worker.onClose((info) => closes.push(info))
    return { worker, closes, release: Scope.close(scope, Exit.void) }
  })

/** A pool test on real processes, on the live clock, bounded well below the suite timeout. */
const live = <A, E>(effect: Effect.Effect<A, E, any>) =>
  effect.pipe(Effect.provide(layerChildProcessSpawner), Effect.scoped, Effect.timeout("25 seconds")) as Effect.Effect<
    A,
    E | Cause.TimeoutError
  >

/** After a worker ended: the next lease gets a new, working process. */
const nextLeaseIsNew = (pool: CodexWorkerPool.Service, oldPid: number) =>
  Effect.gen(function*() {
    const next = yield* lease(pool)
    expect(next.worker.pid).not.toBe(oldPid)
    expect(yield* next.worker.request("thread/start", {})).toMatchObject({ thread: { id: expect.any(String) } })
    yield* next.release
  })

describe("a worker's channel", () => {
  it.live("1000 requests blocked on a full stdin all fail with one WorkerCrashedError when codex is SIGKILLed", () =>
    live(Effect.gen(function*() {
      const pool = yield* CodexWorkerPool.make(fake())
      const { closes, worker } = yield* lease(pool)
      yield* worker.request("fake/stopReadingStdin")
      const padding = "p".repeat(2048)
      const requests = yield* Effect.forEach(
        Array.from({ length: 1000 }, (_, i) => i),
        (i) => Effect.forkChild(Effect.flip(worker.request("cwp/never-answered", { i, padding })))
      )
      const notification = yield* Effect.forkChild(Effect.flip(worker.notify("cwp/after-the-requests")))
      yield* Effect.sleep("500 millis")
      // 2 MB of requests cannot all be written: the notification queued behind them has not been.
      expect(notification.pollUnsafe()).toBeUndefined()
      process.kill(worker.pid, "SIGKILL")
      const errors = yield* Fiber.joinAll(requests)
      const crash = errors[0]
      expect(crash).toBeInstanceOf(WorkerCrashedError)
      expect(crash).toMatchObject({ pid: worker.pid, signal: "SIGKILL" })
      expect(new Set(errors).size).toBe(1)
      expect(yield* Fiber.join(notification)).toBe(crash)
      expect(closes.map((info) => info.error)).toEqual([crash])
      expect(yield* eventually(() => !isLivePid(worker.pid))).toBe(true)
    })))

  it.live("a server that closes its stdin but keeps running is ended with WorkerStdioError, killed and replaced", () =>
    live(Effect.gen(function*() {
      const pool = yield* CodexWorkerPool.make(fake(["--mcp-children"]))
      const { closes, release, worker } = yield* lease(pool)
      const tree = treeOf(worker)
      expect(tree).toHaveLength(4)
      yield* worker.request("fake/closeStdin")
      expect(isLivePid(worker.pid)).toBe(true)
      const error = yield* Effect.flip(worker.request("thread/start", {}))
      expect(error).toBeInstanceOf(WorkerStdioError)
      expect(error).toMatchObject({ pid: worker.pid, stream: "stdin" })
      expect((error as WorkerStdioError).detail).toBe("writing to its stdin failed: write EPIPE")
      expect(closes.map((info) => info.error)).toEqual([error])
      expect(closes[0]).toMatchObject({ code: null, signal: null })
      expect(yield* eventually(() => allDead(tree))).toBe(true)
      yield* release
      yield* nextLeaseIsNew(pool, worker.pid)
      expect(yield* pool.stats).toMatchObject({ created: 2 })
    })))

  it.live("a malformed response fails its request with ProtocolError promptly and ends the worker", () =>
    live(Effect.gen(function*() {
      const pool = yield* CodexWorkerPool.make(fake(["--mcp-children"]))
      const { closes, release, worker } = yield* lease(pool)
      const tree = treeOf(worker)
      const other = yield* Effect.forkChild(Effect.flip(worker.request("cwp/never-answered")))
      const error = yield* Effect.flip(worker.request("fake/respondRaw", { response: { result: 1, error: null } }))
      expect(error).toBeInstanceOf(ProtocolError)
      expect(error).toMatchObject({ kind: "MalformedResponse", method: "fake/respondRaw" })
      expect(yield* Fiber.join(other)).toBe(error)
      expect(closes.map((info) => info.error)).toEqual([error])
      expect(yield* eventually(() => allDead(tree))).toBe(true)
      yield* release
      yield* nextLeaseIsNew(pool, worker.pid)
    })))

  it.live("a stdout line longer than maxLineBytes ends the worker with ProtocolError, not a crash report", () =>
    live(Effect.gen(function*() {
      const pool = yield* CodexWorkerPool.make(fake([], { maxLineBytes: 1024 * 1024 }))
      const { closes, release, worker } = yield* lease(pool)
      // 2 MiB without a newline: the limit is noticed without waiting for the end of the line.
      const error = yield* Effect.flip(worker.request("fake/writeStdout", { bytes: 2 * 1024 * 1024 }))
      expect(error).toBeInstanceOf(ProtocolError)
      expect(error).toMatchObject({ kind: "LineTooLong", pid: worker.pid, method: undefined })
      expect(error.message).toContain("maxLineBytes (1048576 bytes)")
      expect(closes.map((info) => info.error)).toEqual([error])
      expect(closes[0]).toMatchObject({ code: null, signal: null })
      expect(yield* eventually(() => !isLivePid(worker.pid))).toBe(true)
      yield* release
      yield* nextLeaseIsNew(pool, worker.pid)
    })))

  it.live("200 MB of stderr without a newline: the worker keeps working and its crash report stays small", () =>
    live(Effect.gen(function*() {
      const pool = yield* CodexWorkerPool.make(fake())
      const { release, worker } = yield* lease(pool)
      expect(yield* worker.request("fake/writeStderr", { bytes: 200_000_000 })).toEqual({ written: 200_000_000 })
      expect(yield* worker.request("thread/start", {})).toMatchObject({ thread: { id: expect.any(String) } })
      process.kill(worker.pid, "SIGKILL")
      const { error } = yield* worker.closed
      expect(error).toBeInstanceOf(WorkerCrashedError)
      if (!(error instanceof WorkerCrashedError)) return
      const long = error.stderrTail.find((line) => line.startsWith("xxx"))
      expect(long).toContain("[line truncated: 200000000 bytes, limit 2048]")
      expect(error.message.length).toBeLessThan(10_000)
      yield* release
    })))

  it.effect("maxLineBytes is a pool option; out of range it is refused with PoolOptionsError naming it", () =>
    Effect.gen(function*() {
      yield* CodexWorkerPool.make({ maxLineBytes: 1024 })
      for (const maxLineBytes of [0, 100, 2 ** 30, 1.5e6 + 0.5]) {
        const exit = yield* Effect.exit(CodexWorkerPool.make({ maxLineBytes }))
        const defect = Exit.isFailure(exit) ? Cause.squash(exit.cause) : undefined
        expect(defect).toBeInstanceOf(PoolOptionsError)
        expect((defect as PoolOptionsError).message).toContain("maxLineBytes")
      }
    }).pipe(Effect.provide(layerChildProcessSpawner), Effect.scoped))
})

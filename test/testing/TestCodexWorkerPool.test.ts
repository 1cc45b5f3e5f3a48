/**
 * Tests of the test pool (`layerTest`, `makeTest`, `createTestCodexWorkerPool`)
 * and its scripted fake workers: the script answers methods, emits
 * notifications, sends server requests and crashes on demand; the pool around
 * the fakes is the real one (FIFO queue, lease and idle timeouts, spawn
 * failures, shutdown), which these tests exercise on the `TestClock`.
 * `textTurns` is checked through the AI SDK provider, as a chat server would
 * use it.
 *
 * No process is started anywhere in this file.
 */
import { describe, expect, it } from "@effect/vitest"
import { streamText } from "ai"
import { Cause, Deferred, Effect, Exit, Fiber, Scope } from "effect"
import { TestClock } from "effect/testing"
import { createCodexProvider } from "../../src/ai-sdk/index.ts"
import type * as CodexWorker from "../../src/CodexWorker.ts"
import * as CodexWorkerPool from "../../src/CodexWorkerPool.ts"
import {
  JsonRpcError,
  LeaseTimeoutError,
  PoolOptionsError,
  PoolShutdownError,
  WorkerCrashedError,
  WorkerSpawnError
} from "../../src/errors.ts"
import { FAKE_PID_BASE, FakeRpcError, rpcError } from "../../src/testing/FakeCodexWorker.ts"
import {
  createTestCodexWorkerPool,
  FakeCodexWorkers,
  layerTest,
  makeTest,
  type TestOptions
} from "../../src/testing/TestCodexWorkerPool.ts"
import { textTurns } from "../../src/testing/textTurns.ts"

/** Leases a worker in a scope of its own; returns it and the release. */
const lease = (pool: CodexWorkerPool.Service) =>
  Effect.gen(function*() {
    const scope = yield* Scope.fork(yield* Effect.scope)
    const worker = yield* Scope.provide(pool.get, scope)
    return { worker, release: Scope.close(scope, Exit.void) }
  })

/** A promise that never settles: a request the script never answers. */
const never = () => new Promise<never>(() => {})

const defectOf = (exit: Exit.Exit<unknown, unknown>) => (Exit.isFailure(exit) ? Cause.squash(exit.cause) : undefined)

describe("test pool over scripted fake workers (Effect)", () => {
  it.effect("layerTest provides the pool: a scripted method answers, and the fake records what the client sent", () =>
    Effect.gen(function*() {
      const result = yield* Effect.gen(function*() {
        const pool = yield* CodexWorkerPool.CodexWorkerPool
        const fakes = yield* FakeCodexWorkers
        const answer = yield* pool.use((worker) => worker.request("thread/start", { ephemeral: true }))
        const fake = fakes.all[0]!
        return { answer, fake, attempts: fakes.attempts }
      }).pipe(
        Effect.provide(layerTest({
          capabilities: { experimentalApi: true },
          script: { methods: { "thread/start": (params) => ({ thread: { id: "T1" }, echoed: params }) } }
        }))
      )
      expect(result.answer).toEqual({ thread: { id: "T1" }, echoed: { ephemeral: true } })
      expect(result.attempts).toBe(1)
      expect(result.fake.received).toEqual([
        {
          kind: "request",
          id: 1,
          method: "initialize",
          params: { clientInfo: { name: "codex-worker-pool", version: "0.2.0" }, capabilities: { experimentalApi: true } }
        },
        { kind: "notification", method: "initialized", params: undefined },
        { kind: "request", id: 2, method: "thread/start", params: { ephemeral: true } }
      ])
      expect(result.fake.pid).toBeGreaterThan(FAKE_PID_BASE)
      // Closing the layer finalized the fake.
      expect(result.fake.finalized).toBe(true)
      expect(result.fake.closed).toBe(true)
    }))

  it.effect("an unscripted method fails with JsonRpcError -32600; a thrown rpcError keeps its code; other throws are -32603", () =>
    Effect.gen(function*() {
      const { pool } = yield* makeTest({
        script: {
          methods: {
            "thread/resume": () => {
              throw rpcError(-32600, "thread not found: T9", { threadId: "T9" })
            },
            "turn/start": () => Promise.reject(new Error("script bug"))
          }
        }
      })
      const [unknown, resumed, started] = yield* pool.use((worker) =>
        Effect.all([
          Effect.flip(worker.request("thread/bogus", {})),
          Effect.flip(worker.request("thread/resume", { threadId: "T9" })),
          Effect.flip(worker.request("turn/start", {}))
        ])
      )
      expect(unknown).toBeInstanceOf(JsonRpcError)
      expect(unknown).toMatchObject({ method: "thread/bogus", code: -32600 })
      expect((unknown as JsonRpcError).serverMessage).toContain("unknown variant `thread/bogus`")
      expect(resumed).toMatchObject({ code: -32600, serverMessage: "thread not found: T9", data: { threadId: "T9" } })
      expect(started).toMatchObject({ code: -32603, serverMessage: "script bug" })
    }))

  it.effect("what the script emits before returning arrives before the response, what it emits after, after", () =>
    Effect.gen(function*() {
      const { pool } = yield* makeTest({
        script: {
          methods: {
            "turn/start": (_params, fake) => {
              fake.notify("before", { n: 1 })
              queueMicrotask(() => fake.notify("after", { n: 2 }))
              return { turn: { id: "U1" } }
            }
          }
        }
      })
      const log: Array<string> = []
      yield* pool.use((worker) =>
        Effect.gen(function*() {
          const afterSeen = yield* Deferred.make<void>()
          worker.subscribe((message) => {
            log.push(message.method)
            if (message.method === "after") Deferred.doneUnsafe(afterSeen, Exit.void)
          })
          const result = yield* worker.request("turn/start", {})
          log.push(`response ${JSON.stringify(result)}`)
          yield* Deferred.await(afterSeen)
        })
      )
      expect(log).toEqual(["before", 'response {"turn":{"id":"U1"}}', "after"])
    }))

  it.effect("a server request from the script reaches the client, and respond / respondError settle it", () =>
    Effect.gen(function*() {
      const answers: Array<unknown> = []
      const { pool } = yield* makeTest({
        script: {
          methods: {
            "turn/start": async (_params, fake) => {
              answers.push(await fake.request("item/tool/call", { tool: "lookup", arguments: { id: 1 } }))
              answers.push(await fake.request("item/commandExecution/requestApproval", {}).catch((e: unknown) => e))
              return {}
            }
          }
        }
      })
      const requests = yield* pool.use((worker) =>
        Effect.gen(function*() {
          const seen: Array<CodexWorker.IncomingMessage> = []
          worker.subscribe((message) => {
            seen.push(message)
            if (message._tag !== "Request") return
            Effect.runFork(
              message.method === "item/tool/call"
                ? worker.respond(message.id, { success: true, contentItems: [{ type: "inputText", text: "found" }] })
                : worker.respondError(message.id, { code: -32000, message: "no approvals here" })
            )
          })
          yield* worker.request("turn/start", {})
          return seen
        })
      )
      expect(requests.map((m) => [m._tag, m.method, m._tag === "Request" ? m.id : undefined])).toEqual([
        ["Request", "item/tool/call", 0],
        ["Request", "item/commandExecution/requestApproval", 1]
      ])
      expect(answers[0]).toEqual({ success: true, contentItems: [{ type: "inputText", text: "found" }] })
      expect(answers[1]).toBeInstanceOf(FakeRpcError)
      expect(answers[1]).toMatchObject({ code: -32000, message: "no approvals here" })
    }))

  it.effect("crash fails the pending request with WorkerCrashedError carrying code, signal and stderr, and the next lease gets a new fake", () =>
    Effect.gen(function*() {
      const { pool, fakes } = yield* makeTest({ script: { methods: { "turn/start": never } } })
      const first = yield* lease(pool)
      const closed = yield* Deferred.make<CodexWorker.CloseInfo>()
      first.worker.onClose((info) => Deferred.doneUnsafe(closed, Exit.succeed(info)))
      const pending = yield* Effect.forkChild(first.worker.request("turn/start", {}))
      // The request is in flight before the crash.
      while (fakes.all[0]!.requestsOf("turn/start").length === 0) yield* Effect.yieldNow
      fakes.all[0]!.crash({ signal: "SIGKILL", stderr: ["panic: fake"] })
      const error = yield* Effect.flip(Fiber.join(pending))
      expect(error).toBeInstanceOf(WorkerCrashedError)
      expect(error).toMatchObject({ pid: first.worker.pid, code: null, signal: "SIGKILL", stderrTail: ["panic: fake"] })
      expect((yield* Deferred.await(closed)).error).toBe(error)
      expect(first.worker.processCount()).toBe(0)
      // Later requests fail at once; the crashed worker is not handed out again.
      expect(yield* Effect.flip(first.worker.request("thread/start", {}))).toBe(error)
      yield* first.release
      const second = yield* lease(pool)
      expect(second.worker.pid).not.toBe(first.worker.pid)
      expect(fakes.all.map((fake) => fake.closed)).toEqual([true, false])
      yield* second.release
    }))

  it.effect("with poolSize 1 a second use waits in the queue and gets the same fake after the release", () =>
    Effect.gen(function*() {
      const { pool, fakes } = yield* makeTest({ poolSize: 1 })
      const first = yield* lease(pool)
      const second = yield* Effect.forkChild(pool.use((worker) => Effect.succeed(worker.pid)))
      while ((yield* pool.stats).queued === 0) yield* Effect.yieldNow
      expect(yield* pool.stats).toMatchObject({ busy: 1, queued: 1, created: 1 })
      yield* first.release
      expect(yield* Fiber.join(second)).toBe(first.worker.pid)
      expect(yield* pool.stats).toMatchObject({ created: 1, workers: 1, processes: 1, residentBytes: 0 })
      expect(fakes.attempts).toBe(1)
    }))

  it.effect("a lease held past leaseTimeout fails its pending request with LeaseTimeoutError and retires the fake", () =>
    Effect.gen(function*() {
      const { pool, fakes } = yield* makeTest({ leaseTimeout: "60 seconds", script: { methods: { "turn/start": never } } })
      const first = yield* lease(pool)
      const pending = yield* Effect.forkChild(first.worker.request("turn/start", {}))
      yield* TestClock.adjust("60 seconds")
      const error = yield* Effect.flip(Fiber.join(pending))
      expect(error).toBeInstanceOf(LeaseTimeoutError)
      expect(error).toMatchObject({ leaseTimeoutMs: 60_000, pid: first.worker.pid })
      expect(fakes.all[0]!.closeInfo?.error).toBe(error)
      yield* first.release
      const second = yield* lease(pool)
      expect(second.worker.pid).not.toBe(first.worker.pid)
      yield* second.release
    }))

  it.effect("an idle fake is finalized after idleTimeout", () =>
    Effect.gen(function*() {
      const { pool, fakes } = yield* makeTest({ idleTimeout: "10 seconds" })
      yield* pool.use(() => Effect.void)
      expect(fakes.all[0]!.finalized).toBe(false)
      yield* TestClock.adjust("10 seconds")
      while (!fakes.all[0]!.finalized) yield* Effect.yieldNow
      expect(yield* pool.stats).toMatchObject({ workers: 0, finalized: 1, processes: 0 })
    }))

  it.effect("a spawn the script refuses fails the acquire with WorkerSpawnError and leaks no slot", () =>
    Effect.gen(function*() {
      let refuse = true
      const { pool, fakes } = yield* makeTest({
        poolSize: 1,
        script: {
          onSpawn: () => {
            if (refuse) throw new Error("no codex today")
          }
        }
      })
      const error = yield* Effect.flip(pool.use(() => Effect.void))
      expect(error).toBeInstanceOf(WorkerSpawnError)
      expect(error).toMatchObject({ reason: "StartFailed" })
      expect((error as WorkerSpawnError).message).toContain("no codex today")
      refuse = false
      yield* pool.use(() => Effect.void)
      expect(fakes.attempts).toBe(2)
      expect(fakes.all).toHaveLength(1)
      expect(yield* pool.stats).toMatchObject({ created: 1, createFailures: 1, workers: 1 })
    }))

  it.effect("an initialize that is never answered fails with WorkerSpawnError after spawnTimeout", () =>
    Effect.gen(function*() {
      const { pool } = yield* makeTest({ spawnTimeout: "5 seconds", script: { methods: { initialize: never } } })
      const attempt = yield* Effect.forkChild(Effect.flip(pool.use(() => Effect.void)))
      yield* TestClock.adjust("5 seconds")
      const error = yield* Fiber.join(attempt)
      expect(error).toBeInstanceOf(WorkerSpawnError)
      expect(error).toMatchObject({ reason: "Timeout" })
      expect((error as WorkerSpawnError).message).toContain("spawnTimeout (5000 ms)")
    }))

  it.effect("shutdown fails a queued acquire with PoolShutdownError and finalizes every fake", () =>
    Effect.gen(function*() {
      const { pool, fakes } = yield* makeTest({ poolSize: 1, shutdownTimeout: "1 second" })
      const held = yield* lease(pool)
      const queued = yield* Effect.forkChild(Effect.flip(pool.use(() => Effect.void)))
      while ((yield* pool.stats).queued === 0) yield* Effect.yieldNow
      const shutdown = yield* Effect.forkChild(pool.shutdown)
      expect(yield* Fiber.join(queued)).toBeInstanceOf(PoolShutdownError)
      yield* held.release
      yield* Fiber.join(shutdown)
      expect(fakes.all.every((fake) => fake.finalized)).toBe(true)
      expect(yield* pool.stats).toMatchObject({ closed: true, workers: 0, processes: 0 })
    }))

  it.effect("process options and unknown options die with PoolOptionsError naming them", () =>
    Effect.gen(function*() {
      const processOption = yield* Effect.exit(Effect.scoped(makeTest({ command: "codex" } as TestOptions)))
      expect(defectOf(processOption)).toBeInstanceOf(PoolOptionsError)
      expect((defectOf(processOption) as PoolOptionsError).message).toContain("command: not used by fake workers")
      const unknown = yield* Effect.exit(Effect.scoped(makeTest({ poolSise: 2 } as TestOptions)))
      expect((defectOf(unknown) as PoolOptionsError).message).toContain("poolSise: unknown option")
      const bad = yield* Effect.exit(Effect.scoped(makeTest({ poolSize: 0 })))
      expect((defectOf(bad) as PoolOptionsError).message).toContain("poolSize")
    }))
})

describe("test pool over scripted fake workers (promises)", () => {
  it("textTurns streams replies through the AI SDK provider, queued FIFO through poolSize 1", async () => {
    const pool = createTestCodexWorkerPool({
      poolSize: 1,
      script: textTurns({ reply: ({ text }) => `You said: ${text}`, deltas: 2 })
    })
    const codex = createCodexProvider({ pool })
    const order: Array<string> = []
    const texts = await Promise.all(["one", "two", "three"].map(async (prompt) => {
      let text = ""
      for await (const delta of streamText({ model: codex("fake-model"), prompt }).textStream) text += delta
      order.push(prompt)
      return text
    }))
    expect(texts).toEqual(["You said: one", "You said: two", "You said: three"])
    expect(order).toEqual(["one", "two", "three"])
    expect(pool.stats()).toMatchObject({ created: 1, workers: 1, queued: 0 })
    expect(pool.fakes.all[0]!.requestsOf("turn/start")).toHaveLength(3)
    await pool.shutdown()
    expect(pool.fakes.all[0]!.finalized).toBe(true)
  })

  it("textTurns: a reply with an error fails the turn; turn/interrupt ends a waiting turn as interrupted", async () => {
    let release!: (text: string) => void
    const pool = createTestCodexWorkerPool({
      script: textTurns({
        reply: ({ text }) =>
          text === "fail" ? { error: "model down" } : new Promise<string>((resolve) => (release = resolve))
      })
    })
    const outcome = await pool.use(async (worker) => {
      const completed: Array<any> = []
      const errors: Array<any> = []
      let notify = () => {}
      worker.onMessage((message) => {
        if (message.method === "error") errors.push(message.params)
        if (message.method === "turn/completed") {
          completed.push((message.params as any).turn)
          notify()
        }
      })
      const nextCompletion = () => new Promise<void>((resolve) => (notify = resolve))
      const { thread } = (await worker.request("thread/start", {})) as { thread: { id: string } }
      let done = nextCompletion()
      await worker.request("turn/start", { threadId: thread.id, input: [{ type: "text", text: "fail" }] })
      await done
      done = nextCompletion()
      const { turn } = (await worker.request("turn/start", {
        threadId: thread.id,
        input: [{ type: "text", text: "hold" }]
      })) as { turn: { id: string } }
      expect(await worker.request("turn/interrupt", { threadId: thread.id, turnId: turn.id })).toEqual({})
      await done
      release("too late")
      const again = await worker.request("turn/interrupt", { threadId: thread.id, turnId: turn.id }).catch((e) => e)
      return { completed, errors, again }
    })
    expect(outcome.errors).toMatchObject([{ willRetry: false, error: { message: "model down" } }])
    expect(outcome.completed.map((turn) => turn.status)).toEqual(["failed", "interrupted"])
    expect(outcome.again).toBeInstanceOf(JsonRpcError)
    expect(outcome.again).toMatchObject({ serverMessage: "no active turn to interrupt" })
    await pool.shutdown()
  })

  it("a crash reaches the handle's onClose and rejects the pending request", async () => {
    const pool = createTestCodexWorkerPool({ script: { methods: { "turn/start": never } } })
    const worker = await pool.acquire()
    const closes: Array<unknown> = []
    worker.onClose((event) => closes.push(event))
    const pending = worker.request("turn/start", {}).catch((error: unknown) => error)
    pool.fakes.byPid(worker.pid)!.crash({ code: 3 })
    const error = await pending
    expect(error).toBeInstanceOf(WorkerCrashedError)
    expect(closes).toEqual([{ code: 3, signal: null, error }])
    pool.release(worker)
    expect(pool.stats()).toMatchObject({ workers: 0, processes: 0 })
    await pool.shutdown()
  })

  it("a fake's warning (an onClose listener that threw) reaches the pool's host logger", async () => {
    const warnings: Array<[string, Readonly<Record<string, unknown>>]> = []
    const ignore = () => {}
    const logger = {
      debug: ignore,
      info: ignore,
      warn: (message: string, fields: Readonly<Record<string, unknown>>) => void warnings.push([message, fields]),
      error: ignore
    }
    // `logger` is an option of the promise facade (createCodexWorkerPool), which this pool is.
    const pool = createTestCodexWorkerPool({ logger } as TestOptions)
    const worker = await pool.acquire()
    worker.onClose(() => {
      throw new Error("listener went wrong")
    })
    pool.fakes.byPid(worker.pid)!.crash({ code: 3 })
    await new Promise((resolve) => setImmediate(resolve))
    expect(warnings.map(([message]) => message)).toEqual(["fake codex worker: an onClose listener threw"])
    expect(warnings[0]![1]["error"]).toMatchObject({ message: "listener went wrong" })
    pool.release(worker)
    await pool.shutdown()
  })

  it("bad options throw PoolOptionsError naming them", () => {
    expect(() => createTestCodexWorkerPool({ watchdog: true } as TestOptions)).toThrow(
      /watchdog: not used by fake workers/
    )
    expect(() => createTestCodexWorkerPool({ script: 1 } as unknown as TestOptions)).toThrow(/script: expected an object/)
  })
})

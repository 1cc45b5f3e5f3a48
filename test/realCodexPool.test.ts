/**
 * The REAL `codex app-server` binary driven through the pool: the promise
 * facade (`createCodexWorkerPool`) and the Effect service
 * (`layerCodexWorkerPool` of src/node.ts), against the offline mock model server.
 *
 * What it pins: a pooled worker runs a full turn (thread/start, turn/start,
 * the deltas the server streamed, turn/completed); a second acquire on a full
 * pool waits in the queue and gets the same process after the release; an
 * abort while queued takes no worker; an interrupted turn and a failed model
 * request leave the worker reusable; a lease reuses the process and its cached
 * `initializeResult`; shutdown leaves no codex process alive, even with a
 * worker busy in a turn.
 *
 * Process hygiene: every test puts its own marker on its codex command line,
 * uses a fresh CODEX_HOME, shuts its pool down and then asserts through /proc
 * that no live process carries its marker (zombies count as dead). afterEach
 * shuts down what a failed test left and SIGKILLs marked survivors by PID.
 *
 * Limits: needs the native codex binary (@openai/codex-linux-x64) and Linux
 * /proc. Every wait is bounded (WAIT_MS) and no assertion depends on timing;
 * a slow turn is a `[mode:slow] [delay:60000]` prompt (one delta, then a pause
 * longer than any test), so only an interrupt or a kill ends it early.
 */
import { Effect } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest"
import {
  type CloseEvent,
  type CodexPromiseWorkerPool,
  type CodexWorkerHandle,
  type CodexWorkerPoolOptions,
  createCodexWorkerPool
} from "../src/node.ts"
import type { IncomingMessage } from "../src/CodexWorker.ts"
import * as CodexWorkerPool from "../src/CodexWorkerPool.ts"
import { WorkerSpawnError } from "../src/errors.ts"
import { layerCodexWorkerPool } from "../src/node.ts"
import { type ModelServer, startModelServer } from "../src/testing/ModelServer.ts"
import { codexEnv, type CodexHome, makeCodexHome } from "../src/testing/codexConfig.ts"
import {
  codexBinaryPath,
  findMarkedProcesses,
  isAlive,
  killMarkedProcesses,
  makeMarker,
  markedCodexArgs
} from "./helpers/codex.ts"
import { until as untilWithin, within as withinMs } from "./helpers/wait.ts"

/** Upper bound of any single wait (a response, a notification, a state change). */
const WAIT_MS = 10_000
const TEST_TIMEOUT_MS = 30_000
/** One delta at once, then a pause no test waits out. */
const SLOW = "[mode:slow] [delay:60000]"

let server: ModelServer
let marker = ""
let home: CodexHome
/** Pools made by the running test; afterEach shuts down any still open. */
const pools: Array<CodexPromiseWorkerPool> = []

beforeAll(async () => {
  server = await startModelServer({ deltas: 4 })
})

afterAll(async () => {
  await server?.close()
})

beforeEach(() => {
  marker = makeMarker("pool")
  home = makeCodexHome()
})

afterEach(async () => {
  for (const pool of pools.splice(0)) await within(pool.shutdown(), "pool shutdown").catch(() => {})
  await killMarkedProcesses(marker)
  home.cleanup()
})

// -----------------------------------------------------------------------------
// Helpers
// -----------------------------------------------------------------------------

const within = <A>(promise: PromiseLike<A>, what: string, ms = WAIT_MS) => withinMs(promise, what, ms)
const until = (predicate: () => boolean, what: string) => untilWithin(predicate, what, WAIT_MS)

/** Options for a pool of real codex workers carrying this test's marker. */
const codexOptions = () => ({
  command: codexBinaryPath(),
  args: markedCodexArgs(server.url, marker),
  env: codexEnv({ codexHome: home.path })
})

const makePool = (options: CodexWorkerPoolOptions = {}): CodexPromiseWorkerPool => {
  const pool = createCodexWorkerPool({ ...codexOptions(), ...options })
  pools.push(pool)
  return pool
}

/** A prompt unique to this test (the mock server's records are shared by the file). */
const prompt = (text: string): string => `${text} (${marker})`

/** The mock server's record of the model request whose last user message is `text`. */
const modelRequest = (text: string) => server.requests.find((request) => request.userText === text)

/** Shuts the pool down and asserts that none of this test's processes is alive. */
const shutdownAndCheck = async (pool: CodexPromiseWorkerPool): Promise<void> => {
  await within(pool.shutdown(), "pool shutdown")
  expect(findMarkedProcesses(marker)).toEqual([])
}

const paramsOf = (message: IncomingMessage): any => message.params ?? {}

/** Records a worker's notifications from now on. */
const record = (worker: CodexWorkerHandle) => {
  const messages: Array<IncomingMessage> = []
  const waiters = new Set<() => void>()
  const stop = worker.onMessage((message) => {
    messages.push(message)
    for (const waiter of [...waiters]) waiter()
  })
  /** The first recorded message matching `predicate` (waits for it, bounded). */
  const waitFor = (predicate: (message: IncomingMessage) => boolean, what: string): Promise<IncomingMessage> =>
    within(
      new Promise<IncomingMessage>((resolve) => {
        const check = () => {
          const found = messages.find(predicate)
          if (found === undefined) return
          waiters.delete(check)
          resolve(found)
        }
        waiters.add(check)
        check()
      }),
      what
    )
  return { messages, waitFor, stop }
}

const startThread = async (worker: CodexWorkerHandle): Promise<string> => {
  const result = (await worker.request("thread/start", {
    ephemeral: true,
    approvalPolicy: "never",
    sandbox: "read-only"
  })) as { thread: { id: string } }
  return result.thread.id
}

interface StartedTurn {
  readonly threadId: string
  readonly turnId: string
  readonly recorder: ReturnType<typeof record>
  /** Resolves with `turn/completed`'s `turn`. */
  readonly completed: () => Promise<any>
}

/** Starts a thread and a turn on it, recording the turn's notifications. */
const startTurn = async (worker: CodexWorkerHandle, text: string): Promise<StartedTurn> => {
  const recorder = record(worker)
  const threadId = await startThread(worker)
  const started = (await worker.request("turn/start", {
    threadId,
    input: [{ type: "text", text, text_elements: [] }]
  })) as { turn: { id: string } }
  const completed = async () => {
    const message = await recorder.waitFor(
      (m) => m.method === "turn/completed" && paramsOf(m).threadId === threadId,
      `turn/completed of "${text}"`
    )
    return paramsOf(message).turn
  }
  return { threadId, turnId: started.turn.id, recorder, completed }
}

interface TurnOutcome {
  readonly threadId: string
  readonly turnId: string
  /** `turn/completed`'s `turn`. */
  readonly turn: any
  readonly deltas: Array<string>
  /** The turn's notifications (those carrying its thread id), in order. */
  readonly notifications: Array<IncomingMessage>
}

/** Runs one turn on a new thread and collects its notifications until `turn/completed`. */
const runTurn = async (worker: CodexWorkerHandle, text: string): Promise<TurnOutcome> => {
  const started = await startTurn(worker, text)
  try {
    const turn = await started.completed()
    const notifications = started.recorder.messages.filter((m) => paramsOf(m).threadId === started.threadId)
    const deltas = notifications
      .filter((m) => m.method === "item/agentMessage/delta")
      .map((m) => String(paramsOf(m).delta))
    return { threadId: started.threadId, turnId: started.turnId, turn, deltas, notifications }
  } finally {
    started.recorder.stop()
  }
}

// -----------------------------------------------------------------------------
// Promise facade
// -----------------------------------------------------------------------------

describe("real codex through createCodexWorkerPool", () => {
  it("a turn completes through a pooled worker with the deltas the server streamed", {
    timeout: TEST_TIMEOUT_MS
  }, async () => {
    const pool = makePool()
    const text = prompt("hello pool")
    const outcome = await pool.use((worker) => runTurn(worker, text))
    expect(outcome.turn.status).toBe("completed")
    expect(outcome.turn.id).toBe(outcome.turnId)
    const served = modelRequest(text)
    expect(served?.status).toBe("finished")
    expect(outcome.deltas).toEqual(served!.deltas)
    expect(outcome.deltas.join("")).toBe(`Echo: ${text}`)
    const agentMessage = outcome.notifications.find(
      (m) => m.method === "item/completed" && paramsOf(m).item?.type === "agentMessage"
    )
    expect(paramsOf(agentMessage!).item.text).toBe(`Echo: ${text}`)
    expect(pool.stats()).toMatchObject({ created: 1, busy: 0, idle: 1, queued: 0 })
    await shutdownAndCheck(pool)
  })

  it("with poolSize 1 a second turn waits in the queue, then runs on the same process after the release", {
    timeout: TEST_TIMEOUT_MS
  }, async () => {
    const pool = makePool({ poolSize: 1 })
    const events: Array<string> = []
    const turn = (name: string) => (worker: CodexWorkerHandle) => {
      events.push(`${name} acquired`)
      return runTurn(worker, prompt(name)).then((outcome) => {
        events.push(`${name} done`)
        return { pid: worker.pid, outcome }
      })
    }
    const first = pool.use(turn("first"))
    const second = pool.use(turn("second"))
    await until(() => events.includes("first acquired"), "the first lease")
    expect(pool.stats()).toMatchObject({ busy: 1, queued: 1 })
    const [a, b] = await within(Promise.all([first, second]), "both turns")
    expect(events).toEqual(["first acquired", "first done", "second acquired", "second done"])
    expect(a.outcome.turn.status).toBe("completed")
    expect(b.outcome.turn.status).toBe("completed")
    expect(b.outcome.deltas.join("")).toBe(`Echo: ${prompt("second")}`)
    expect(b.pid).toBe(a.pid)
    // The second model request arrived after the first had finished.
    const served = server.requests.filter((r) => r.userText === prompt("first") || r.userText === prompt("second"))
    expect(served.map((r) => r.userText)).toEqual([prompt("first"), prompt("second")])
    expect(pool.stats()).toMatchObject({ created: 1, queued: 0, busy: 0 })
    await shutdownAndCheck(pool)
  })

  it("abort while queued rejects with the signal's reason, takes no worker and empties the queue", {
    timeout: TEST_TIMEOUT_MS
  }, async () => {
    const pool = makePool({ poolSize: 1 })
    const held = await within(pool.acquire(), "the first worker")
    const controller = new AbortController()
    const queued = pool.acquire({ signal: controller.signal })
    expect(pool.stats().queued).toBe(1)
    controller.abort()
    const reason = controller.signal.reason
    expect(reason).toBeInstanceOf(DOMException)
    expect((reason as DOMException).name).toBe("AbortError")
    await expect(within(queued, "the aborted acquire")).rejects.toBe(reason)
    expect(pool.stats()).toMatchObject({ queued: 0, busy: 1 })
    // The release does not go to the aborted waiter: the worker becomes idle.
    pool.release(held)
    expect(pool.stats()).toMatchObject({ queued: 0, busy: 0, idle: 1, created: 1 })
    await shutdownAndCheck(pool)
  })

  it("turn/interrupt mid-turn ends the turn as interrupted and the worker then serves the next turn", {
    timeout: TEST_TIMEOUT_MS
  }, async () => {
    const pool = makePool({ poolSize: 1 })
    const worker = await within(pool.acquire(), "a worker")
    const slowText = prompt(`slow ${SLOW}`)
    const slow = await startTurn(worker, slowText)
    await slow.recorder.waitFor(
      (m) => m.method === "item/agentMessage/delta" && paramsOf(m).threadId === slow.threadId,
      "the first delta"
    )
    expect(modelRequest(slowText)?.status).toBe("streaming")
    expect(await worker.request("turn/interrupt", { threadId: slow.threadId, turnId: slow.turnId })).toEqual({})
    const interrupted = await slow.completed()
    slow.recorder.stop()
    expect(interrupted).toMatchObject({ id: slow.turnId, status: "interrupted" })
    await until(() => modelRequest(slowText)?.status === "aborted", "codex to hang up on the model request")
    pool.release(worker)

    const next = await within(pool.acquire(), "the worker again")
    expect(next.pid).toBe(worker.pid)
    const outcome = await runTurn(next, prompt("after the interrupt"))
    expect(outcome.turn.status).toBe("completed")
    expect(outcome.deltas.join("")).toBe(`Echo: ${prompt("after the interrupt")}`)
    pool.release(next)
    expect(pool.stats()).toMatchObject({ created: 1, finalized: 0 })
    await shutdownAndCheck(pool)
  })

  const failures = [
    { mode: "failed", message: /stream disconnected before completion: mock model server failure/, info: "other" },
    { mode: "http500", message: /high demand/, info: "internalServerError" }
  ] as const
  for (const failure of failures) {
    it(`a ${failure.mode} model response gives an error notification and a failed turn, and the worker is reused`, {
      timeout: TEST_TIMEOUT_MS
    }, async () => {
      const pool = makePool({ poolSize: 1 })
      const failedText = prompt(`please fail [mode:${failure.mode}]`)
      const { pid, outcome } = await pool.use(async (worker) => ({
        pid: worker.pid,
        outcome: await runTurn(worker, failedText)
      }))
      expect(outcome.turn.status).toBe("failed")
      expect(outcome.turn.error.message).toMatch(failure.message)
      expect(outcome.turn.error.codexErrorInfo).toBe(failure.info)
      const error = outcome.notifications.find((m) => m.method === "error")
      expect(paramsOf(error!)).toMatchObject({ turnId: outcome.turnId, willRetry: false })
      expect(paramsOf(error!).error).toEqual(outcome.turn.error)
      expect(modelRequest(failedText)?.mode).toBe(failure.mode)

      const next = await pool.use(async (worker) => ({
        pid: worker.pid,
        outcome: await runTurn(worker, prompt("after the failure"))
      }))
      expect(next.pid).toBe(pid)
      expect(next.outcome.turn.status).toBe("completed")
      expect(pool.stats()).toMatchObject({ created: 1, finalized: 0 })
      await shutdownAndCheck(pool)
    })
  }

  it("a second lease reuses the process and its cached initializeResult", { timeout: TEST_TIMEOUT_MS }, async () => {
    const pool = makePool({ poolSize: 1 })
    const first = await within(pool.acquire(), "a worker")
    const initializeResult = first.initializeResult
    expect(initializeResult).toMatchObject({ platformFamily: "unix", codexHome: expect.any(String) })
    pool.release(first)
    const second = await within(pool.acquire(), "the worker again")
    expect(second.pid).toBe(first.pid)
    expect(second.initializeResult).toBe(initializeResult)
    // The process answers without a second initialize (it would refuse one).
    const outcome = await runTurn(second, prompt("second lease"))
    expect(outcome.turn.status).toBe("completed")
    pool.release(second)
    expect(pool.stats()).toMatchObject({ created: 1, finalized: 0 })
    await shutdownAndCheck(pool)
  })

  it("a codexHome that does not exist yet is created (mode 0700) and codex starts in it", {
    timeout: TEST_TIMEOUT_MS
  }, async () => {
    const codexHome = path.join(home.path, "missing", "home")
    const pool = makePool({ codexHome })
    const worker = await within(pool.acquire(), "a worker")
    expect(worker.initializeResult).toMatchObject({ codexHome: fs.realpathSync(codexHome) })
    expect(fs.statSync(codexHome).mode & 0o077).toBe(0)
    pool.release(worker)
    await shutdownAndCheck(pool)
  })

  it("a CODEX_HOME (set through env) that does not exist fails with WorkerSpawnError carrying codex's reason", {
    timeout: TEST_TIMEOUT_MS
  }, async () => {
    const missing = path.join(home.path, "missing")
    const pool = makePool({ env: codexEnv({ codexHome: missing }) })
    const error = await within(pool.acquire().then(() => undefined, (e: unknown) => e), "the failed acquire")
    expect(error).toBeInstanceOf(WorkerSpawnError)
    expect(error).toMatchObject({ reason: "ExitedEarly" })
    expect((error as WorkerSpawnError).message).toContain(`CODEX_HOME points to "${missing}", but that path does not exist`)
    expect((error as WorkerSpawnError).message).not.toContain("npm install")
    await shutdownAndCheck(pool)
  })

  it("shutdown leaves no codex process alive", { timeout: TEST_TIMEOUT_MS }, async () => {
    const pool = makePool({ poolSize: 2 })
    const a = await within(pool.acquire(), "worker a")
    const b = await within(pool.acquire(), "worker b")
    expect(a.pid).not.toBe(b.pid)
    expect((await runTurn(a, prompt("before shutdown"))).turn.status).toBe("completed")
    pool.release(a)
    pool.release(b)
    expect(findMarkedProcesses(marker).map((p) => p.pid)).toEqual(expect.arrayContaining([a.pid, b.pid]))
    await within(pool.shutdown(), "pool shutdown")
    expect(isAlive(a.pid)).toBe(false)
    expect(isAlive(b.pid)).toBe(false)
    expect(pool.stats()).toMatchObject({ closed: true, workers: 0, finalized: 2 })
    expect(findMarkedProcesses(marker)).toEqual([])
  })

  /** A pool of 2 (shutdownTimeoutMs 500) with one idle worker and one busy in a slow turn that has streamed. */
  const busyAtShutdown = async () => {
    const pool = makePool({ poolSize: 2, shutdownTimeoutMs: 500 })
    const busy = await within(pool.acquire(), "the busy worker")
    const idle = await within(pool.acquire(), "the idle worker")
    pool.release(idle)
    const slowText = prompt(`busy at shutdown ${SLOW}`)
    const slow = await startTurn(busy, slowText)
    await slow.recorder.waitFor((m) => m.method === "item/agentMessage/delta", "the first delta")
    slow.recorder.stop()
    return { pool, busy, idle, slowText }
  }

  it("shutdown kills a worker still busy in a turn once shutdownTimeoutMs has passed", {
    timeout: TEST_TIMEOUT_MS
  }, async () => {
    const { pool, busy, idle, slowText } = await busyAtShutdown()
    await within(pool.shutdown(), "pool shutdown")
    expect(isAlive(busy.pid)).toBe(false)
    expect(isAlive(idle.pid)).toBe(false)
    await until(() => modelRequest(slowText)?.status !== "streaming", "the model request to end")
    expect(modelRequest(slowText)?.status).toBe("aborted")
    // The holder's late release is harmless after shutdown, and the handle is dead.
    expect(() => pool.release(busy)).not.toThrow()
    await expect(busy.request("thread/start", { ephemeral: true })).rejects.toBeInstanceOf(Error)
    expect(findMarkedProcesses(marker)).toEqual([])
  })

  it("the holder of a busy worker killed by shutdown hears of it through onClose", {
    timeout: TEST_TIMEOUT_MS
  }, async () => {
    const { pool, busy } = await busyAtShutdown()
    const closed = new Promise<CloseEvent>((resolve) => busy.onClose(resolve))
    await within(pool.shutdown(), "pool shutdown")
    expect(isAlive(busy.pid)).toBe(false)
    // The process is gone, so onClose has fired: as a close by the pool (no exit status, no error).
    const event = await within(closed, "the busy worker's onClose", 2_000)
    expect(event).toEqual({ code: null, signal: null, error: undefined })
    expect(findMarkedProcesses(marker)).toEqual([])
  })
})

// -----------------------------------------------------------------------------
// Effect service
// -----------------------------------------------------------------------------

describe("real codex through the CodexWorkerPool service", () => {
  it("layerCodexWorkerPool + pool.use(worker => worker.request(...)) runs a real turn", { timeout: TEST_TIMEOUT_MS }, async () => {
    const text = prompt("hello effect")
    const program = Effect.gen(function*() {
      const pool = yield* CodexWorkerPool.CodexWorkerPool
      const outcome = yield* pool.use((worker) =>
        Effect.gen(function*() {
          const messages: Array<IncomingMessage> = []
          let onMessage = () => {}
          const unsubscribe = worker.subscribe((message) => {
            messages.push(message)
            onMessage()
          })
          const { thread } = (yield* worker.request("thread/start", { ephemeral: true })) as { thread: { id: string } }
          const { turn } = (yield* worker.request("turn/start", {
            threadId: thread.id,
            input: [{ type: "text", text, text_elements: [] }]
          })) as { turn: { id: string } }
          const isCompleted = (m: IncomingMessage) => m.method === "turn/completed" && paramsOf(m).turn?.id === turn.id
          const completed = yield* Effect.callback<IncomingMessage>((resume) => {
            onMessage = () => {
              const found = messages.find(isCompleted)
              if (found !== undefined) resume(Effect.succeed(found))
            }
            onMessage()
          }).pipe(Effect.timeout(WAIT_MS), Effect.ensuring(Effect.sync(unsubscribe)))
          const deltas = messages
            .filter((m) => m.method === "item/agentMessage/delta" && paramsOf(m).turnId === turn.id)
            .map((m) => String(paramsOf(m).delta))
          return { pid: worker.pid, turn: paramsOf(completed).turn, deltas }
        })
      )
      const stats = yield* pool.stats
      return { ...outcome, stats }
    }).pipe(Effect.provide(layerCodexWorkerPool({ ...codexOptions(), poolSize: 1 })))

    const result = await within(Effect.runPromise(program), "the Effect program")
    expect(result.turn.status).toBe("completed")
    expect(result.deltas.join("")).toBe(`Echo: ${text}`)
    expect(result.deltas).toEqual(modelRequest(text)!.deltas)
    expect(result.stats).toMatchObject({ created: 1, busy: 0, idle: 1, processes: 1 })
    // Closing the layer's scope shut the pool down.
    expect(isAlive(result.pid)).toBe(false)
    expect(findMarkedProcesses(marker)).toEqual([])
  })
})

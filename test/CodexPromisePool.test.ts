/**
 * Real-process tests of the promise facade `createCodexWorkerPool` against the
 * fake app-server (test/fixtures/fake-app-server.mjs), and of a host process
 * (test/fixtures/codex-pool-host.ts) that ends without shutting its pool down.
 *
 * Every test carries its own marker on the command line of every process it
 * starts (the fake passes it on to its MCP-like children), finds them again
 * through /proc, and ends by asserting that no live process carries it
 * (zombies count as dead). The afterEach safety net SIGKILLs survivors by PID.
 *
 * The facade runs on the live clock (it has no Effect context to put a
 * `TestClock` in), so its timers are given small real values (a 100 ms request
 * timeout, a 300 ms lease timeout) and only outcomes are asserted, never
 * durations; the pool timers themselves are tested on the `TestClock` in
 * CodexWorkerPool.test.ts.
 */
import { afterEach, beforeEach, describe, expect, it } from "@effect/vitest"
import { type ChildProcess, spawn } from "node:child_process"
import { fileURLToPath } from "node:url"
import {
  type CloseEvent,
  type CodexWorkerHandle,
  type CodexWorkerPoolOptions,
  createCodexWorkerPool
} from "../src/node.ts"
import type { IncomingMessage } from "../src/CodexWorker.ts"
import type { PoolLogger } from "../src/PromisePool.ts"
import {
  JsonRpcError,
  LeaseTimeoutError,
  PoolOptionsError,
  PoolShutdownError,
  RequestTimeoutError,
  WorkerCrashedError,
  WorkerNotLeasedError,
  WorkerSpawnError
} from "../src/errors.ts"
import { createTestCodexWorkerPool } from "../src/testing/TestCodexWorkerPool.ts"
import {
  fakePoolOptions,
  isLivePid,
  killByMarker,
  liveByMarker,
  markerArg,
  mcpChildrenIn,
  newMarker,
  statFields,
  waitUntil
} from "./helpers/procs.ts"
import { within } from "./helpers/wait.ts"

const hostScript = fileURLToPath(new URL("./fixtures/codex-pool-host.ts", import.meta.url))

let marker = ""
beforeEach(() => {
  marker = newMarker()
})
afterEach(async () => {
  // Safety net only: every test asserts on its own that nothing survived.
  await killByMarker(marker)
})

/** Pool options that run the fake app-server with this test's marker and `flags`. */
const fake = (flags: ReadonlyArray<string> = [], options: CodexWorkerPoolOptions = {}): CodexWorkerPoolOptions =>
  fakePoolOptions(marker, flags, options)

/** True once no live process carries this test's marker (waits a few seconds at most). */
const noMarkedProcessLeft = () => waitUntil(() => liveByMarker(marker).length === 0)

/** The fake app-server `pid` and its live children (the MCP-like ones are its direct children). */
const treeOf = (pid: number): Array<number> => [
  pid,
  ...liveByMarker(marker).filter((p) => statFields(p.pid)?.ppid === pid).map((p) => p.pid)
]

const allDead = (pids: ReadonlyArray<number>) => pids.every((pid) => !isLivePid(pid))

/** Rejects if `promise` has not settled within `ms` (a bound on a wait, not an assertion on time). */
const bounded = <A>(promise: Promise<A>, what: string, ms = 5_000): Promise<A> => within(promise, what, ms)

/** Resolves with what `promise` rejected with; fails the test if it resolved. */
const rejection = (promise: Promise<unknown>): Promise<any> =>
  promise.then((value) => {
    throw new Error(`expected a rejection, got ${JSON.stringify(value)}`)
  }, (error: unknown) => error)

const textInput = (text: string) => [{ type: "text", text, text_elements: [] }]

/**
 * Starts a thread and a turn on `worker`, answering server requests with
 * `onRequest`; resolves with every message received up to `turn/completed`.
 */
const runTurn = async (
  worker: CodexWorkerHandle,
  text: string,
  onRequest: (message: IncomingMessage & { readonly _tag: "Request" }) => void = () => {}
): Promise<Array<IncomingMessage>> => {
  const messages: Array<IncomingMessage> = []
  let completed!: () => void
  const done = new Promise<void>((resolve) => (completed = resolve))
  const unsubscribe = worker.onMessage((message) => {
    messages.push(message)
    if (message._tag === "Request") onRequest(message)
    if (message.method === "turn/completed") completed()
  })
  try {
    const { thread } = (await worker.request("thread/start", { ephemeral: true })) as { thread: { id: string } }
    await worker.request("turn/start", { threadId: thread.id, input: textInput(text) })
    await bounded(done, "turn/completed")
    return messages
  } finally {
    unsubscribe()
  }
}

/** What the fake app-server has read since it started (its `cwp/received` answer). */
const receivedBy = async (worker: CodexWorkerHandle): Promise<Array<string>> =>
  ((await bounded(worker.request("cwp/received"), "cwp/received")) as { received: Array<string> }).received

const deltasOf = (messages: ReadonlyArray<IncomingMessage>) =>
  messages.filter((m) => m.method === "item/agentMessage/delta").map((m) => (m.params as { delta: string }).delta)

interface Host {
  readonly child: ChildProcess
  readonly pid: number
  readonly ready: { readonly pids: Array<number>; readonly processes: number }
  readonly exited: Promise<{ readonly code: number | null; readonly signal: NodeJS.Signals | null } | "still running">
}

/**
 * Starts test/fixtures/codex-pool-host.ts (a pool over the fake with
 * `--mcp-children`, two workers leased, one released again) and waits for
 * its ready line.
 */
const startHost = async (args: ReadonlyArray<string>): Promise<Host> => {
  const child = spawn(process.execPath, [hostScript, markerArg(marker), ...args], { stdio: ["pipe", "pipe", "pipe"] })
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null } | "still running">((resolve) => {
    const timer = setTimeout(() => resolve("still running"), 10_000)
    child.once("exit", (code, signal) => {
      clearTimeout(timer)
      resolve({ code, signal })
    })
  })
  let stdout = ""
  let stderr = ""
  child.stdout!.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk))
  child.stderr!.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk))
  const started = await waitUntil(() => stdout.includes("\n"), { timeoutMs: 10_000 })
  if (!started) throw new Error(`codex-pool-host did not start: ${stderr}`)
  const ready = JSON.parse(stdout.slice(0, stdout.indexOf("\n")))
  return { child, pid: child.pid!, ready, exited }
}

/** True once no marked process is alive but the host itself. */
const onlyHostLeft = (host: Host) => waitUntil(() => liveByMarker(marker).every((p) => p.pid === host.pid))

describe("createCodexWorkerPool", () => {
  describe("every end of a worker leaves no marked process", () => {
    it("shutdown aborts a running use and kills the trees of the busy and the idle worker", async () => {
      const pool = createCodexWorkerPool(fake(["--mcp-children"], { poolSize: 2 }))
      let busyPid = 0
      const busy = rejection(pool.use(async (worker, signal) => {
        busyPid = worker.pid
        return worker.request("cwp/never-answered", {}, { signal })
      }))
      expect(await waitUntil(() => busyPid !== 0)).toBe(true)
      const idle = await pool.acquire()
      pool.release(idle)
      const trees = [treeOf(busyPid), treeOf(idle.pid)]
      expect(trees.map((tree) => tree.length)).toEqual([4, 4])

      await bounded(pool.shutdown(), "shutdown")
      expect(await busy).toBeInstanceOf(PoolShutdownError)
      expect(allDead(trees.flat())).toBe(true)
      expect(pool.stats()).toMatchObject({ workers: 0, finalized: 2, processes: 0 })
      expect(await noMarkedProcessLeft()).toBe(true)
    })

    it("a crash mid-turn rejects the pending request with WorkerCrashedError and fires onClose once with it", async () => {
      const pool = createCodexWorkerPool(
        fake(["--mcp-children", "--crash-mid-turn", "--deltas=4", "--delta-delay-ms=20"])
      )
      const worker = await pool.acquire()
      const tree = treeOf(worker.pid)
      expect(tree).toHaveLength(4)
      const closes: Array<CloseEvent> = []
      worker.onClose((event) => closes.push(event))
      const { thread } = (await worker.request("thread/start", {})) as { thread: { id: string } }
      await worker.request("turn/start", { threadId: thread.id, input: textInput("hi") })

      // The default lease timeout is 5 minutes: a prompt rejection does not wait for it.
      const error = await bounded(rejection(worker.request("cwp/never-answered", {})), "the rejection")
      expect(error).toBeInstanceOf(WorkerCrashedError)
      expect(error).toMatchObject({ pid: worker.pid, code: 1, signal: null })
      expect((error as WorkerCrashedError).stderrTail.some((line) => line.includes("crashing mid-turn"))).toBe(true)
      expect(await waitUntil(() => closes.length > 0)).toBe(true)
      expect(closes).toEqual([{ code: 1, signal: null, error }])

      pool.release(worker)
      expect(await waitUntil(() => allDead(tree))).toBe(true)
      await pool.shutdown()
      expect(closes).toHaveLength(1)
      expect(await noMarkedProcessLeft()).toBe(true)
    })

    it("a lease timeout rejects the pending request with LeaseTimeoutError, kills the tree and allows the release", async () => {
      const pool = createCodexWorkerPool(fake(["--mcp-children"], { leaseTimeoutMs: 300 }))
      const worker = await pool.acquire()
      const tree = treeOf(worker.pid)
      expect(tree).toHaveLength(4)
      const closes: Array<CloseEvent> = []
      worker.onClose((event) => closes.push(event))

      const error = await bounded(rejection(worker.request("cwp/never-answered", {})), "the lease timeout")
      expect(error).toBeInstanceOf(LeaseTimeoutError)
      expect(error).toMatchObject({ leaseTimeoutMs: 300, pid: worker.pid })
      expect(await waitUntil(() => allDead(tree))).toBe(true)
      expect(await waitUntil(() => closes.length > 0)).toBe(true)
      expect(closes[0]?.error).toBe(error)
      expect(() => pool.release(worker)).not.toThrow()

      const next = await pool.acquire()
      expect(next.pid).not.toBe(worker.pid)
      pool.release(next)
      await pool.shutdown()
      expect(await noMarkedProcessLeft()).toBe(true)
    })

    it("invalidate resolves once the worker's whole tree is dead", async () => {
      const pool = createCodexWorkerPool(fake(["--mcp-children"]))
      const worker = await pool.acquire()
      const tree = treeOf(worker.pid)
      expect(tree).toHaveLength(4)
      await bounded(pool.invalidate(worker), "invalidate")
      expect(allDead(tree)).toBe(true)
      expect(pool.stats()).toMatchObject({ workers: 0, finalized: 1, processes: 0 })
      await pool.shutdown()
      expect(await noMarkedProcessLeft()).toBe(true)
    })

    it("a host that calls process.exit without shutting its pool down leaves no marked process", async () => {
      const host = await startHost(["--mode=exit"])
      expect(host.ready.pids).toHaveLength(2)
      expect(host.ready.processes).toBe(8)
      expect(await host.exited).toEqual({ code: 0, signal: null })
      expect(await onlyHostLeft(host)).toBe(true)
      expect(await noMarkedProcessLeft()).toBe(true)
    })

    it("a host that dies of an uncaught exception without shutting its pool down leaves no marked process", async () => {
      const host = await startHost(["--mode=throw"])
      expect(host.ready.processes).toBe(8)
      expect(await host.exited).toEqual({ code: 1, signal: null })
      expect(await noMarkedProcessLeft()).toBe(true)
    })

    it("a host ended by SIGTERM dies by SIGTERM and leaves no marked process", async () => {
      const host = await startHost(["--mode=wait"])
      expect(host.ready.processes).toBe(8)
      host.child.kill("SIGTERM")
      expect(await host.exited).toEqual({ code: null, signal: "SIGTERM" })
      expect(await noMarkedProcessLeft()).toBe(true)
    })
  })

  describe("host SIGKILL", () => {
    it("without the watchdog, a SIGKILLed host leaves the MCP-like descendants alive (the documented limit)", async () => {
      const host = await startHost(["--mode=wait"])
      host.child.kill("SIGKILL")
      await host.exited
      // codex (the fake) exits on stdin EOF; its descendants in other groups and sessions are nobody's to kill.
      expect(await waitUntil(() => host.ready.pids.every((pid) => !liveByMarker(marker).some((p) => p.pid === pid))))
        .toBe(true)
      expect(liveByMarker(marker).length).toBeGreaterThan(0)
    })

    it("with watchdog: true, a SIGKILLed host leaves no marked process", async () => {
      const host = await startHost(["--mode=wait", "--watchdog"])
      expect(host.ready.processes).toBe(8)
      host.child.kill("SIGKILL")
      expect(await host.exited).toEqual({ code: null, signal: "SIGKILL" })
      expect(await noMarkedProcessLeft()).toBe(true)
    })
  })

  describe("crashed workers", () => {
    it("a request on a crashed worker rejects at once with WorkerCrashedError carrying the signal", async () => {
      const pool = createCodexWorkerPool(fake())
      const worker = await pool.acquire()
      const closed = new Promise<CloseEvent>((resolve) => worker.onClose(resolve))
      process.kill(worker.pid, "SIGKILL")
      await bounded(closed, "onClose")
      const error = await bounded(rejection(worker.request("thread/start", {})), "the rejection")
      expect(error).toBeInstanceOf(WorkerCrashedError)
      expect(error).toMatchObject({ pid: worker.pid, code: null, signal: "SIGKILL" })
      pool.release(worker)
      await pool.shutdown()
      expect(await noMarkedProcessLeft()).toBe(true)
    })

    it("releasing a crashed worker is allowed and the next acquire gets a new process", async () => {
      const pool = createCodexWorkerPool(fake())
      const worker = await pool.acquire()
      const closed = new Promise<CloseEvent>((resolve) => worker.onClose(resolve))
      process.kill(worker.pid, "SIGKILL")
      await bounded(closed, "onClose")
      expect(() => pool.release(worker)).not.toThrow()
      const next = await pool.acquire()
      expect(next.pid).not.toBe(worker.pid)
      expect(await next.request("thread/start", {})).toMatchObject({ thread: { id: expect.any(String) } })
      expect(pool.stats()).toMatchObject({ created: 2, workers: 1 })
      pool.release(next)
      await pool.shutdown()
      expect(await noMarkedProcessLeft()).toBe(true)
    })
    it("a worker whose request rejected with WorkerCrashedError is not handed to the queued waiter", async () => {
      const pool = createCodexWorkerPool(fake([], { poolSize: 1 }))
      let crashedPid = 0
      let crash: (() => void) | undefined
      // Leases the worker, then (once a waiter is queued) kills it under a pending request;
      // `use` releases the worker as soon as the request rejects.
      const first = rejection(pool.use(async (worker) => {
        crashedPid = worker.pid
        await new Promise<void>((resolve) => (crash = resolve))
        const pending = worker.request("cwp/never-answered", {})
        process.kill(worker.pid, "SIGKILL")
        return pending
      }))
      expect(await waitUntil(() => crash !== undefined)).toBe(true)
      const waiter = pool.use(async (worker) => ({ pid: worker.pid, result: await worker.request("thread/start", {}) }))
      expect(await waitUntil(() => pool.stats().queued === 1)).toBe(true)
      crash!()
      expect(await first).toBeInstanceOf(WorkerCrashedError)
      const next = await bounded(waiter, "the waiter's use")
      expect(next.pid).not.toBe(crashedPid)
      expect(next.result).toMatchObject({ thread: { id: expect.any(String) } })
      await pool.shutdown()
      expect(await noMarkedProcessLeft()).toBe(true)
    })
  })

  describe("spawn failures", () => {
    it("a command that does not exist rejects with WorkerSpawnError naming it and leaks nothing", async () => {
      const command = `/nonexistent/codex-${marker}`
      const pool = createCodexWorkerPool({ command, poolSize: 1 })
      // The second acquire queues behind the first one's create; each gets its own failure.
      const [error, queued] = await Promise.all([rejection(pool.acquire()), rejection(pool.acquire())])
      expect(error).toBeInstanceOf(WorkerSpawnError)
      expect(error).toMatchObject({ command })
      expect(error.message).toContain(command)
      expect(queued).toBeInstanceOf(WorkerSpawnError)
      expect(pool.stats()).toMatchObject({ createFailures: 2, workers: 0, busy: 0, queued: 0, creating: 0 })
      // Not stuck: a later acquire tries again.
      expect(await rejection(pool.acquire())).toBeInstanceOf(WorkerSpawnError)
      expect(pool.stats()).toMatchObject({ createFailures: 3, workers: 0, queued: 0, creating: 0 })
      await pool.shutdown()
      expect(await noMarkedProcessLeft()).toBe(true)
    })

    it("a worker that starts descendants in other groups and sessions, then exits before initialize, leaves none of them", async () => {
      const pool = createCodexWorkerPool(fake(["--exit-after-children"]))
      const error = await rejection(pool.acquire())
      // The acquire rejects once the tree kill is over: nothing is left, without waiting.
      expect(liveByMarker(marker)).toEqual([])
      expect(error).toBeInstanceOf(WorkerSpawnError)
      expect(error).toMatchObject({ reason: "ExitedEarly", cause: { _tag: "WorkerCrashedError", code: 1 } })
      expect(error.message).toContain("exiting after starting children")
      expect(error.message).not.toContain("npm install")
      const children = mcpChildrenIn(error.stderrTail)
      expect(children).toHaveLength(3)
      expect(children.filter(isLivePid)).toEqual([])
      expect(pool.stats()).toMatchObject({ createFailures: 1, workers: 0, creating: 0, processes: 0 })
      await bounded(pool.shutdown(), "shutdown")
      expect(liveByMarker(marker)).toEqual([])
    })

    it("a worker that starts descendants and never answers initialize rejects after spawnTimeoutMs and leaves none", async () => {
      const pool = createCodexWorkerPool(fake(["--mcp-children", "--hang-initialize"], { spawnTimeoutMs: 2_000 }))
      const acquired = rejection(pool.acquire())
      // The fake and its three children are up before the spawn times out.
      const sawTree = await waitUntil(() => liveByMarker(marker).length === 4)
      const error = await bounded(acquired, "the failed acquire")
      expect(sawTree).toBe(true)
      expect(liveByMarker(marker)).toEqual([])
      expect(error).toBeInstanceOf(WorkerSpawnError)
      expect(error).toMatchObject({ reason: "Timeout" })
      expect(error.message).toContain("spawnTimeout (2000 ms)")
      expect(mcpChildrenIn(error.stderrTail)).toHaveLength(3)
      await bounded(pool.shutdown(), "shutdown")
      expect(liveByMarker(marker)).toEqual([])
    })
  })

  describe("turns", () => {
    it("a full turn delivers the agent message deltas and turn/completed through onMessage", async () => {
      const pool = createCodexWorkerPool(fake(["--deltas=3"]))
      const messages = await pool.use((worker) => runTurn(worker, "hello"))
      expect(deltasOf(messages)).toEqual(["echo: hello", " 1", " 2"])
      const methods = messages.map((m) => m.method)
      expect(methods.indexOf("turn/started")).toBeLessThan(methods.indexOf("item/agentMessage/delta"))
      expect(messages.at(-1)).toMatchObject({
        _tag: "Notification",
        method: "turn/completed",
        params: { turn: { status: "completed" } }
      })
      await pool.shutdown()
      expect(await noMarkedProcessLeft()).toBe(true)
    })

    it("an approval request arrives with id 0 and the turn continues after respond(id, decline)", async () => {
      const pool = createCodexWorkerPool(fake(["--approval"]))
      const requests: Array<IncomingMessage> = []
      const messages = await pool.use((worker) =>
        runTurn(worker, "run it", (request) => {
          requests.push(request)
          void worker.respond(request.id, { decision: "decline" })
        })
      )
      expect(requests).toHaveLength(1)
      expect(requests[0]).toMatchObject({ _tag: "Request", id: 0, method: "item/commandExecution/requestApproval" })
      const command = messages.find((m) =>
        m.method === "item/completed" && (m.params as { item: { type: string } }).item.type === "commandExecution"
      )
      expect(command?.params).toMatchObject({ item: { decision: "decline", status: "declined" } })
      expect(deltasOf(messages)).toEqual(["echo: run it", " 1", " 2"])
      expect(messages.at(-1)?.params).toMatchObject({ turn: { status: "completed" } })
      await pool.shutdown()
      expect(await noMarkedProcessLeft()).toBe(true)
    })
  })

  describe("requests", () => {
    it("a server error rejects with JsonRpcError carrying the server's code and message", async () => {
      const pool = createCodexWorkerPool(fake())
      // The worker already sent `initialize` once: the server refuses a second one.
      const error = await pool.use((worker) => rejection(worker.request("initialize", { clientInfo: {} })))
      expect(error).toBeInstanceOf(JsonRpcError)
      expect(error).toMatchObject({
        method: "initialize",
        code: -32600,
        serverMessage: "Already initialized",
        data: undefined
      })
      await pool.shutdown()
      expect(await noMarkedProcessLeft()).toBe(true)
    })

    it("aborting a request rejects it with signal.reason", async () => {
      const pool = createCodexWorkerPool(fake())
      const reason = new Error("the caller gave up")
      const error = await pool.use((worker) => {
        const controller = new AbortController()
        const pending = worker.request("cwp/never-answered", {}, { signal: controller.signal })
        controller.abort(reason)
        return rejection(pending)
      })
      expect(error).toBe(reason)
      await pool.shutdown()
      expect(await noMarkedProcessLeft()).toBe(true)
    })

    it("bad request options reject with PoolOptionsError naming them, and nothing is sent", async () => {
      const pool = createCodexWorkerPool(fake())
      const started: Array<string> = []
      const errors = await pool.use(async (worker) => {
        const unsubscribe = worker.onMessage((message) => {
          if (message.method === "thread/started") started.push((message.params as { thread: { id: string } }).thread.id)
        })
        const bad: Array<unknown> = [{ signal: {} }, { timeoutMs: "50" }, { timeoutMs: null }, { timeout: 50 }]
        const errors = []
        for (const options of bad) {
          const result = worker.request("thread/start", { ephemeral: true }, options as never)
          expect(result).toBeInstanceOf(Promise)
          errors.push(await rejection(result))
        }
        // A good request after them: its thread/started is the only one (the server answers in order).
        const { thread } = (await worker.request("thread/start", { ephemeral: true })) as { thread: { id: string } }
        expect(await waitUntil(() => started.length > 0)).toBe(true)
        unsubscribe()
        expect(started).toEqual([thread.id])
        return errors
      })
      expect(errors.map((e) => e instanceof PoolOptionsError && e.message)).toEqual([
        "Invalid request options: signal: Expected an AbortSignal, got an object.",
        "Invalid request options: timeoutMs: Expected a number of milliseconds >= 0 (not NaN), got \"50\".",
        "Invalid request options: timeoutMs: Expected a number of milliseconds >= 0 (not NaN), got null.",
        "Invalid request options: timeout: unknown option."
      ])
      await pool.shutdown()
      expect(await noMarkedProcessLeft()).toBe(true)
    })

    it("a request with timeoutMs rejects with RequestTimeoutError when no answer comes", async () => {
      const pool = createCodexWorkerPool(fake())
      const error = await pool.use((worker) =>
        bounded(rejection(worker.request("cwp/never-answered", {}, { timeoutMs: 100 })), "the request timeout")
      )
      expect(error).toBeInstanceOf(RequestTimeoutError)
      expect(error).toMatchObject({ method: "cwp/never-answered", timeoutMs: 100 })
      await pool.shutdown()
      expect(await noMarkedProcessLeft()).toBe(true)
    })
  })

  describe("lease-scoped handles", () => {
    it("a stale release after the worker went to a waiter throws WorkerNotLeasedError and leaves that lease alone", async () => {
      const pool = createCodexWorkerPool(fake([], { poolSize: 1 }))
      const first = await pool.acquire()
      const handedOver = pool.acquire()
      expect(pool.stats().queued).toBe(1)
      pool.release(first)
      const second = await bounded(handedOver, "the hand-off")
      expect(second.pid).toBe(first.pid)
      expect(second).not.toBe(first)

      const third = pool.acquire()
      expect(() => pool.release(first)).toThrow(WorkerNotLeasedError)
      // The second holder still holds the worker: the third still waits, and the second's lease works.
      expect(pool.stats()).toMatchObject({ busy: 1, idle: 0, queued: 1 })
      expect(await bounded(second.request("thread/start", {}), "thread/start")).toMatchObject({
        thread: { id: expect.any(String) }
      })
      pool.release(second)
      pool.release(await bounded(third, "the third acquire"))
      expect(pool.stats()).toMatchObject({ busy: 0, idle: 1, queued: 0, created: 1 })
      await pool.shutdown()
      expect(await noMarkedProcessLeft()).toBe(true)
    })

    it("a stale handle's request, notify, respond and respondError reject with WorkerNotLeasedError and send nothing", async () => {
      const pool = createCodexWorkerPool(fake([], { poolSize: 1 }))
      const stale = await pool.acquire()
      pool.release(stale)
      const current = await pool.acquire()
      expect(current.pid).toBe(stale.pid)
      const before = await receivedBy(current)

      const errors = await Promise.all([
        rejection(stale.request("cwp/stale-request", {})),
        rejection(stale.notify("cwp/stale-notify", {})),
        rejection(stale.respond(41, { decision: "accept" })),
        rejection(stale.respondError(42, { code: -32601, message: "no" }))
      ].map((pending) => bounded(pending, "the stale call's rejection")))
      expect(errors.map((error) => error instanceof WorkerNotLeasedError)).toEqual([true, true, true, true])
      expect(errors.map((error) => error.operation)).toEqual(["request", "notify", "respond", "respondError"])
      expect(errors[0].message).toContain("Nothing was sent")

      // The process read nothing from the stale handle: only the current holder's own calls.
      const after = await receivedBy(current)
      expect(after).toEqual([...before, "cwp/received"])
      pool.release(current)
      await pool.shutdown()
      expect(await noMarkedProcessLeft()).toBe(true)
    })

    it("listeners of a released handle stop firing while the next holder's fire", async () => {
      const pool = createCodexWorkerPool(fake(["--deltas=2"], { poolSize: 1 }))
      const stale = await pool.acquire()
      const staleMessages: Array<IncomingMessage> = []
      const staleCloses: Array<CloseEvent> = []
      stale.onMessage((message) => staleMessages.push(message))
      stale.onClose((event) => staleCloses.push(event))
      pool.release(stale)
      // Registered after the lease ended: never fires either.
      stale.onMessage((message) => staleMessages.push(message))

      const current = await pool.acquire()
      const currentCloses: Array<CloseEvent> = []
      current.onClose((event) => currentCloses.push(event))
      const messages = await runTurn(current, "mine")
      expect(deltasOf(messages)).toEqual(["echo: mine", " 1"])
      expect(staleMessages).toEqual([])

      process.kill(current.pid, "SIGKILL")
      expect(await waitUntil(() => currentCloses.length > 0)).toBe(true)
      expect(currentCloses[0]).toMatchObject({ code: null, signal: "SIGKILL" })
      expect(staleCloses).toEqual([])
      pool.release(current)
      await pool.shutdown()
      expect(staleMessages).toEqual([])
      expect(await noMarkedProcessLeft()).toBe(true)
    })

    it("a listener that releases mid-turn silences the handle's other listeners at once; the next holder hears the rest", async () => {
      const pool = createCodexWorkerPool(fake(["--deltas=4", "--delta-delay-ms=20"], { poolSize: 1 }))
      const first = await pool.acquire()
      const heardByFirst: Array<string> = []
      first.onMessage((message) => {
        if (message.method === "item/agentMessage/delta") pool.release(first)
      })
      // Called after the listener above for the same message, once the lease has ended.
      first.onMessage((message) => heardByFirst.push(message.method))
      const heardBySecond: Array<string> = []
      const second = pool.acquire().then((worker) => {
        worker.onMessage((message) => heardBySecond.push(message.method))
        return worker
      })
      const { thread } = (await first.request("thread/start", { ephemeral: true })) as { thread: { id: string } }
      await first.request("turn/start", { threadId: thread.id, input: textInput("handed over mid-turn") })
      const next = await bounded(second, "the hand-off")
      expect(await waitUntil(() => heardBySecond.includes("turn/completed"))).toBe(true)
      expect(heardByFirst).not.toContain("item/agentMessage/delta")
      expect(heardByFirst).not.toContain("turn/completed")
      expect(heardBySecond.filter((method) => method === "item/agentMessage/delta")).toHaveLength(3)
      pool.release(next)
      await pool.shutdown()
      expect(await noMarkedProcessLeft()).toBe(true)
    })

    it("invalidate through a stale handle rejects with WorkerNotLeasedError and leaves the worker in service", async () => {
      const pool = createCodexWorkerPool(fake([], { poolSize: 1 }))
      const stale = await pool.acquire()
      await bounded(stale.request("thread/start", {}), "thread/start")
      pool.release(stale)
      const current = await pool.acquire()
      const error = await bounded(rejection(pool.invalidate(stale)), "the stale invalidate")
      expect(error).toBeInstanceOf(WorkerNotLeasedError)
      expect(error).toMatchObject({ operation: "invalidate" })
      expect(pool.stats()).toMatchObject({ busy: 1, workers: 1, finalizing: 0, finalized: 0 })
      expect(await bounded(current.request("thread/start", {}), "thread/start")).toMatchObject({
        thread: { id: expect.any(String) }
      })
      // An invalidated handle is dead too.
      await bounded(pool.invalidate(current), "invalidate")
      expect(() => pool.release(current)).toThrow(WorkerNotLeasedError)
      expect((await rejection(current.request("thread/start", {}))).operation).toBe("request")
      await pool.shutdown()
      expect(await noMarkedProcessLeft()).toBe(true)
    })

    it("each use callback gets a handle of its own, dead once use has returned", async () => {
      const pool = createCodexWorkerPool(fake([], { poolSize: 1 }))
      const used = await pool.use(async (worker) => {
        await worker.request("thread/start", {})
        return worker
      })
      expect(() => pool.release(used)).toThrow(WorkerNotLeasedError)
      expect(await bounded(rejection(used.request("thread/start", {})), "the stale request")).toBeInstanceOf(
        WorkerNotLeasedError
      )
      const again = await pool.use(async (worker) => worker)
      const held = await pool.acquire()
      expect(new Set([used, again, held]).size).toBe(3)
      // Every lease of the same process: the same pid and workerKey.
      expect([again.pid, held.pid]).toEqual([used.pid, used.pid])
      expect([again.workerKey, held.workerKey]).toEqual([used.workerKey, used.workerKey])
      expect(again.workerKey).toBe(used.workerKey)
      expect(held.initializeResult).toEqual(used.initializeResult)
      pool.release(held)
      await pool.shutdown()
      expect(await noMarkedProcessLeft()).toBe(true)
    })

    it("a handle of another pool is refused by release and invalidate", async () => {
      const pool = createCodexWorkerPool(fake([], { poolSize: 1 }))
      const other = createCodexWorkerPool(fake([], { poolSize: 1 }))
      const foreign = await other.acquire()
      expect(() => pool.release(foreign)).toThrow(WorkerNotLeasedError)
      expect(await bounded(rejection(pool.invalidate(foreign)), "the foreign invalidate")).toBeInstanceOf(
        WorkerNotLeasedError
      )
      expect(await bounded(foreign.request("thread/start", {}), "thread/start")).toMatchObject({
        thread: { id: expect.any(String) }
      })
      other.release(foreign)
      await Promise.all([pool.shutdown(), other.shutdown()])
      expect(await noMarkedProcessLeft()).toBe(true)
    })
  })

  describe("logging", () => {
    type Line = readonly [level: string, message: string, fields: Readonly<Record<string, unknown>>]
    /** A host logger recording every call. */
    const recorder = () => {
      const lines: Array<Line> = []
      const logger: PoolLogger = {
        debug: (message, fields) => void lines.push(["debug", message, fields]),
        info: (message, fields) => void lines.push(["info", message, fields]),
        warn: (message, fields) => void lines.push(["warn", message, fields]),
        error: (message, fields) => void lines.push(["error", message, fields])
      }
      return { lines, logger }
    }

    it("with debug, codex's stderr lines reach the host logger with the worker's pid and the pool's ids", async () => {
      const { lines, logger } = recorder()
      const name = `stderr-${marker}`
      const pool = createCodexWorkerPool(fake(["--stderr-noise"], { debug: true, logger, name }))
      const pid = await pool.use(async (worker) => {
        await worker.request("thread/start", { ephemeral: true })
        return worker.pid
      })
      const received = (line: Line) =>
        line[0] === "debug" && line[1].startsWith("codex app-server stderr: ") && line[1].includes("recv ")
      // stderr is read on its own: the line may arrive just after the answer.
      expect(await waitUntil(() => lines.some((l) => received(l) && l[1].includes("thread/start")))).toBe(true)
      expect(lines.find(received)![2]).toMatchObject({ pid, pool: name, pool_id: `${name}#1` })
      // The pool's own debug lines come the same way.
      expect(lines.some(([level, message]) => level === "debug" && message === "worker-pool: acquire queued")).toBe(true)
      await pool.shutdown()
      expect(await noMarkedProcessLeft()).toBe(true)
    })

    it("without debug, no stderr line (no debug line at all) reaches the host logger", async () => {
      const { lines, logger } = recorder()
      const pool = createCodexWorkerPool(fake(["--stderr-noise"], { logger }))
      await pool.use((worker) => worker.request("thread/start", { ephemeral: true }))
      await pool.shutdown()
      expect(await noMarkedProcessLeft()).toBe(true)
      expect(lines.filter(([level]) => level === "debug")).toEqual([])
    })

    it("a JSON-RPC warning (a stdout line that is not JSON) reaches the host logger without debug", async () => {
      const { lines, logger } = recorder()
      const name = `garbage-${marker}`
      const pool = createCodexWorkerPool(fake(["--garbage"], { logger, name }))
      await pool.use((worker) => worker.request("thread/start", { ephemeral: true }))
      const warning = lines.find(([level, message]) =>
        level === "warn" && message.startsWith("JSON-RPC: skipping a line that is not JSON: garbage:")
      )
      expect(warning?.[2]).toMatchObject({ pool: name, pool_id: `${name}#1` })
      await pool.shutdown()
      expect(await noMarkedProcessLeft()).toBe(true)
    })

    it("an onClose listener that throws is a warning to the host logger, with the error", async () => {
      const { lines, logger } = recorder()
      const pool = createCodexWorkerPool(fake([], { logger }))
      const worker = await pool.acquire()
      worker.onClose(() => {
        throw new Error("listener went wrong")
      })
      process.kill(worker.pid, "SIGKILL")
      const threw = (line: Line) => line[0] === "warn" && line[1] === "codex worker: an onClose listener threw"
      expect(await waitUntil(() => lines.some(threw))).toBe(true)
      expect(lines.find(threw)![2]["error"]).toMatchObject({ message: "listener went wrong" })
      pool.release(worker)
      await pool.shutdown()
      expect(await noMarkedProcessLeft()).toBe(true)
    })

    it("a host logger that throws breaks nothing", async () => {
      const fail = () => {
        throw new Error("the host logger is broken")
      }
      const pool = createCodexWorkerPool(
        fake(["--garbage", "--stderr-noise"], { debug: true, logger: { debug: fail, info: fail, warn: fail, error: fail } })
      )
      const result = await pool.use((worker) => worker.request("thread/start", { ephemeral: true }))
      expect(result).toMatchObject({ thread: { id: expect.any(String) } })
      expect(await pool.use((worker) => worker.request("thread/start", { ephemeral: true }))).toMatchObject({
        thread: { id: expect.any(String) }
      })
      await pool.shutdown()
      expect(await noMarkedProcessLeft()).toBe(true)
    })

    it.each([
      ["logger.error", { logger: { debug() {}, info() {}, warn() {} } }],
      ["logger.warn", { logger: { debug() {}, info() {}, warn: 1, error() {} } }],
      ["debug", { debug: 1 }]
    ])("a bad %s throws PoolOptionsError naming it", (name, options) => {
      expect(() => createCodexWorkerPool(options as unknown as CodexWorkerPoolOptions)).toThrow(
        expect.objectContaining({ _tag: "PoolOptionsError", message: expect.stringContaining(`${name}: `) })
      )
      expect(liveByMarker(marker)).toEqual([])
    })
  })

  describe("pool", () => {
    // Pure pool semantics: scripted fake workers (no process) suffice.
    it("with poolSize 1 a second use starts after the first releases and reuses the same worker", async () => {
      const pool = createTestCodexWorkerPool({ poolSize: 1 })
      const events: Array<string> = []
      let finishFirst: (() => void) | undefined
      const first = pool.use(async (worker) => {
        events.push("first started")
        await new Promise<void>((resolve) => (finishFirst = resolve))
        events.push("first done")
        return worker.pid
      })
      const second = pool.use(async (worker) => {
        events.push("second started")
        return worker.pid
      })
      expect(await waitUntil(() => finishFirst !== undefined && pool.stats().queued === 1)).toBe(true)
      expect(events).toEqual(["first started"])
      finishFirst!()
      const [firstPid, secondPid] = await Promise.all([first, second])
      expect(events).toEqual(["first started", "first done", "second started"])
      expect(secondPid).toBe(firstPid)
      expect(pool.stats()).toMatchObject({ created: 1, workers: 1 })
      await pool.shutdown()
      expect(pool.fakes.all.map((worker) => worker.finalized)).toEqual([true])
    })

    it("stats count codex with its MCP-like children and their memory, and 0 after shutdown", async () => {
      const pool = createCodexWorkerPool(fake(["--mcp-children"]))
      const worker = await pool.acquire()
      const during = pool.stats()
      expect(during.processes).toBe(4)
      expect(during.residentBytes).toBeGreaterThan(0)
      pool.release(worker)
      await pool.shutdown()
      expect(pool.stats()).toMatchObject({ processes: 0, residentBytes: 0 })
      expect(await noMarkedProcessLeft()).toBe(true)
    })

    it.each([
      ["poolSize", { poolSize: 0 }],
      ["killGraceMs", { killGraceMs: -1 }],
      ["poolSise", { poolSise: 2 }]
    ])("a bad option (%s) throws PoolOptionsError naming it", (name, options) => {
      let error: unknown
      try {
        createCodexWorkerPool(options as CodexWorkerPoolOptions)
      } catch (caught) {
        error = caught
      }
      expect(error).toBeInstanceOf(PoolOptionsError)
      expect((error as PoolOptionsError).message).toContain(`${name}:`)
      if (name === "poolSise") expect((error as PoolOptionsError).message).toContain("unknown option")
      expect(liveByMarker(marker)).toEqual([])
    })
  })
})

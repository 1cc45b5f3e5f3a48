/**
 * The AI SDK language model (`createCodexProvider`) over the REAL `codex
 * app-server` binary, driven by the real `ai` package (`streamText`,
 * `generateText`) against the offline mock model server.
 *
 * What it pins: the PRD's acceptance criteria (with poolSize 1 concurrent
 * calls queue instead of failing; the second starts after the first release;
 * FIFO order; an abort while queued leaves no waiter behind; shutdown rejects
 * queued calls), then concurrency through poolSize 2, abort mid-stream and
 * consumer cancel (turn/interrupt, then release), failed model requests, a
 * worker crash mid-turn, thread continuation, and token usage.
 *
 * How order is observed: one event log per test. The pool is wrapped in a
 * recording `CodexPoolLike` that logs "acquired" / "released" /
 * "invalidated" (and keeps every handle it gave out, listening to its
 * messages), and the mock server's `requests.push` is wrapped to log
 * "model <prompt>" when a model request arrives. All of it runs on this
 * process's event loop, so the log's order is the causal order.
 *
 * Process hygiene: every test has its own marker on its codex command line and
 * a fresh CODEX_HOME, shuts its pool down and then asserts through /proc that
 * no live process carries its marker (zombies count as dead). afterEach shuts
 * down what a failed test left and SIGKILLs marked survivors by PID.
 *
 * Approvals: a scripted shell command (`Reply.shellCommand`) on a thread with
 * `approvalPolicy: "untrusted"` makes the real binary ask for one offline.
 *
 * Not covered here: the rest of what the model shows beyond text (reasoning,
 * Codex's actions, images, structured output, every server request): see
 * test/aiSdkRealFeatures.test.ts (real binary), test/aiSdkTurn.test.ts
 * (recorded streams) and test/aiSdkServerRequests.test.ts (fake app-server).
 *
 * Limits: needs the native codex binary (@openai/codex-linux-x64) and Linux
 * /proc. Every wait is bounded and no assertion depends on timing. A slow turn
 * is a `[mode:slow] [delay:60000]` prompt: one delta, then a pause no test
 * waits out, so only an interrupt, a kill or shutdown ends it early.
 */
import { experimental_streamTextLowMemory, generateText, type ModelMessage, streamText } from "ai"
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest"
import {
  type CodexPromiseWorkerPool,
  type CodexWorkerHandle,
  type CodexWorkerPoolOptions,
  createCodexWorkerPool
} from "../src/node.ts"
import type { IncomingMessage } from "../src/CodexWorker.ts"
import { type CodexPoolLike, createCodexProvider, type ThreadDefaults } from "../src/ai-sdk/index.ts"
import { LeaseTimeoutError, PoolShutdownError, WorkerCrashedError } from "../src/errors.ts"
import { type ModelServer, startModelServer } from "../src/testing/ModelServer.ts"
import * as Reply from "../src/testing/Reply.ts"
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

/** Upper bound of any single wait (a call, a stream, a state change). */
const WAIT_MS = 10_000
const TEST_TIMEOUT_MS = 30_000
/** One delta at once, then a pause no test waits out. */
const SLOW = "[mode:slow] [delay:60000]"

let server: ModelServer
let marker = ""
let home: CodexHome
/** The running test's event log (see the header). */
let log: Array<string> = []
/** Pools made by the running test; afterEach shuts down any still open. */
const pools: Array<CodexPromiseWorkerPool> = []

beforeAll(async () => {
  server = await startModelServer({ deltas: 4 })
  // Log each model request of the running test the moment it is recorded (on arrival).
  const record = server.requests.push.bind(server.requests)
  server.requests.push = (...requests) => {
    for (const request of requests) {
      if (request.userText.includes(marker)) log.push(`model ${request.userText.replace(` (${marker})`, "")}`)
    }
    return record(...requests)
  }
})

afterAll(async () => {
  await server?.close()
})

beforeEach(() => {
  marker = makeMarker("aisdk")
  home = makeCodexHome()
  log = []
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
const until = (predicate: () => boolean, what: string, ms = WAIT_MS) => untilWithin(predicate, what, ms)

/** A prompt unique to this test (the mock server's records are shared by the file); the log drops the marker. */
const prompt = (text: string): string => `${text} (${marker})`

/** The mock server's record of the model request whose last user message is `text`. */
const modelRequest = (text: string) => server.requests.find((request) => request.userText === text)

const echo = (text: string): string => `Echo: ${text}`

/** The pool, wrapped so that every acquire / release / invalidate is logged and every worker observed. */
interface Observed extends CodexPoolLike {
  /** The handles given out, in acquire order (a reused worker appears again). */
  readonly leases: Array<CodexWorkerHandle>
  /** Every notification and server request of every worker given out. */
  readonly messages: Array<IncomingMessage>
}

const observe = (pool: CodexPromiseWorkerPool): Observed => {
  // This test's log, even for a late release after the test has ended.
  const events = log
  const leases: Array<CodexWorkerHandle> = []
  const messages: Array<IncomingMessage> = []
  const listening = new Set<CodexWorkerHandle>()
  return {
    leases,
    messages,
    acquire: (options) =>
      pool.acquire(options).then((worker) => {
        events.push("acquired")
        leases.push(worker)
        if (!listening.has(worker)) {
          listening.add(worker)
          worker.onMessage((message) => messages.push(message))
        }
        return worker
      }),
    release: (worker) => {
      events.push("released")
      pool.release(worker)
    },
    invalidate: (worker) => {
      events.push("invalidated")
      return pool.invalidate(worker)
    }
  }
}

interface Setup {
  readonly pool: CodexPromiseWorkerPool
  readonly observed: Observed
  /** The language model over the observed pool. */
  readonly model: ReturnType<ReturnType<typeof createCodexProvider>>
  /** The language model over the pool itself (no wrapper in between). */
  readonly rawModel: ReturnType<ReturnType<typeof createCodexProvider>>
}

const setup = (
  options: CodexWorkerPoolOptions & { readonly ephemeral?: boolean } = {}
): Setup => {
  const { ephemeral = true, ...poolOptions } = options
  const pool = createCodexWorkerPool({
    command: codexBinaryPath(),
    args: markedCodexArgs(server.url, marker),
    env: codexEnv({ codexHome: home.path }),
    poolSize: 1,
    // A worker a failing test leaves leased must not hold up afterEach's shutdown.
    shutdownTimeoutMs: 1_000,
    ...poolOptions
  })
  pools.push(pool)
  const observed = observe(pool)
  const threadDefaults: ThreadDefaults = { ephemeral, approvalPolicy: "never", sandbox: "read-only" }
  return {
    pool,
    observed,
    model: createCodexProvider({ pool: observed, threadDefaults })("mock-model"),
    rawModel: createCodexProvider({ pool, threadDefaults })("mock-model")
  }
}

/** Shuts the pool down and asserts that none of this test's processes is alive. */
const shutdownAndCheck = async (pool: CodexPromiseWorkerPool): Promise<void> => {
  await within(pool.shutdown(), "pool shutdown")
  expect(findMarkedProcesses(marker)).toEqual([])
}

interface Collected {
  readonly parts: Array<any>
  readonly text: string
  readonly errors: Array<unknown>
  readonly aborted: boolean
}

/** Reads a `streamText` result's full stream to its end (bounded); `onPart` may act on each part. */
const collect = (
  result: { readonly fullStream: AsyncIterable<any> },
  onPart: (part: any) => void = () => {}
): Promise<Collected> =>
  within(
    (async () => {
      const parts: Array<any> = []
      for await (const part of result.fullStream) {
        parts.push(part)
        onPart(part)
      }
      return {
        parts,
        text: parts.filter((p) => p.type === "text-delta").map((p) => p.text as string).join(""),
        errors: parts.filter((p) => p.type === "error").map((p) => p.error as unknown),
        aborted: parts.some((p) => p.type === "abort")
      }
    })(),
    "the stream to end"
  )

const paramsOf = (message: IncomingMessage): any => message.params ?? {}

/** Statuses of the `turn/completed` notifications the observed workers sent, in order. */
const turnStatuses = (observed: Observed): Array<string> =>
  observed.messages.filter((m) => m.method === "turn/completed").map((m) => String(paramsOf(m).turn?.status))

/** Makes `count` calls wait in the queue behind a worker the test holds, in call order. */
const queueBehind = async (pool: CodexPromiseWorkerPool, calls: Array<() => void>): Promise<void> => {
  for (const [index, call] of calls.entries()) {
    call()
    await until(() => pool.stats().queued === index + 1, `call ${index + 1} to queue`)
  }
}

// -----------------------------------------------------------------------------
// The PRD's acceptance criteria
// -----------------------------------------------------------------------------

describe("AI SDK over real codex: queued acquisition (PRD acceptance criteria)", () => {
  it("with poolSize 1, two concurrent streamText calls no longer fail due to busy pool", {
    timeout: TEST_TIMEOUT_MS
  }, async () => {
    const { pool, model } = setup({ poolSize: 1 })
    const first = streamText({ model, prompt: prompt("first") })
    const second = streamText({ model, prompt: prompt("second") })
    const [a, b] = await Promise.all([collect(first), collect(second)])
    expect(a.errors).toEqual([])
    expect(b.errors).toEqual([])
    expect(a.text).toBe(echo(prompt("first")))
    expect(b.text).toBe(echo(prompt("second")))
    expect(await first.finishReason).toBe("stop")
    expect(await second.finishReason).toBe("stop")
    expect(pool.stats()).toMatchObject({ created: 1, busy: 0, queued: 0 })
    await shutdownAndCheck(pool)
  })

  it("the second starts after the first release and completes successfully", { timeout: TEST_TIMEOUT_MS }, async () => {
    const { pool, model, observed } = setup({ poolSize: 1 })
    const first = streamText({ model, prompt: prompt("first") })
    const second = streamText({ model, prompt: prompt("second") })
    const [a, b] = await Promise.all([collect(first), collect(second)])
    expect(log).toEqual(["acquired", "model first", "released", "acquired", "model second", "released"])
    expect(b.text).toBe(echo(prompt("second")))
    expect(b.errors).toEqual([])
    expect(a.text).toBe(echo(prompt("first")))
    // The first model request had finished when the second arrived, on the same process.
    const [r1, r2] = [modelRequest(prompt("first"))!, modelRequest(prompt("second"))!]
    expect(server.requests.indexOf(r1)).toBeLessThan(server.requests.indexOf(r2))
    expect([r1.status, r2.status]).toEqual(["finished", "finished"])
    expect(observed.leases.map((w) => w.pid)).toEqual([observed.leases[0]!.pid, observed.leases[0]!.pid])
    await shutdownAndCheck(pool)
  })

  it("FIFO queue order is deterministic", { timeout: TEST_TIMEOUT_MS }, async () => {
    const { pool, model } = setup({ poolSize: 1 })
    const held = await within(pool.acquire(), "the worker")
    const names = ["fifo 1", "fifo 2", "fifo 3", "fifo 4"]
    const results: Array<Promise<Collected>> = []
    await queueBehind(pool, names.map((name) => () => void results.push(collect(streamText({ model, prompt: prompt(name) })))))
    expect(pool.stats().queued).toBe(4)
    pool.release(held)
    const collected = await Promise.all(results)
    expect(collected.map((c) => c.text)).toEqual(names.map((name) => echo(prompt(name))))
    expect(log).toEqual(names.flatMap((name) => ["acquired", `model ${name}`, "released"]))
    expect(pool.stats()).toMatchObject({ created: 1, queued: 0, busy: 0 })
    await shutdownAndCheck(pool)
  })

  it("abort before acquire prevents orphaned queued waiter (streamText surfaces the abort)", {
    timeout: TEST_TIMEOUT_MS
  }, async () => {
    const { pool, model } = setup({ poolSize: 1 })
    const held = await within(pool.acquire(), "the worker")
    const controller = new AbortController()
    const result = streamText({ model, prompt: prompt("aborted while queued"), abortSignal: controller.signal })
    const collecting = collect(result)
    await until(() => pool.stats().queued === 1, "the call to queue")
    controller.abort()
    const collected = await collecting
    expect(collected.aborted).toBe(true)
    expect(collected.text).toBe("")
    await expect(within(result.text, "the text promise")).rejects.toBe(controller.signal.reason)
    expect((controller.signal.reason as Error).name).toBe("AbortError")
    expect(pool.stats()).toMatchObject({ queued: 0, busy: 1 })
    // The release goes to the idle list, not to the aborted call.
    pool.release(held)
    expect(pool.stats()).toMatchObject({ queued: 0, busy: 0, idle: 1 })
    const after = await within(generateText({ model, prompt: prompt("after") }), "the next call")
    expect(after.text).toBe(echo(prompt("after")))
    expect(log).toEqual(["acquired", "model after", "released"])
    expect(modelRequest(prompt("aborted while queued"))).toBeUndefined()
    await shutdownAndCheck(pool)
  })

  it("abort before acquire prevents orphaned queued waiter (generateText rejects with the AbortError)", {
    timeout: TEST_TIMEOUT_MS
  }, async () => {
    const { pool, model } = setup({ poolSize: 1 })
    const held = await within(pool.acquire(), "the worker")
    const controller = new AbortController()
    const call = generateText({ model, prompt: prompt("aborted while queued"), abortSignal: controller.signal })
    call.catch(() => {})
    await until(() => pool.stats().queued === 1, "the call to queue")
    controller.abort()
    await expect(within(call, "the aborted call")).rejects.toBe(controller.signal.reason)
    expect(pool.stats()).toMatchObject({ queued: 0, busy: 1 })
    pool.release(held)
    expect(pool.stats()).toMatchObject({ queued: 0, busy: 0, idle: 1 })
    expect(log).toEqual([])
    expect(modelRequest(prompt("aborted while queued"))).toBeUndefined()
    await shutdownAndCheck(pool)
  })

  it("shutdown() rejects pending queued requests", { timeout: TEST_TIMEOUT_MS }, async () => {
    const { pool, model } = setup({ poolSize: 1 })
    const held = await within(pool.acquire(), "the worker")
    let generated!: Promise<unknown>
    let streamed!: ReturnType<typeof streamText>
    let collecting!: Promise<Collected>
    await queueBehind(pool, [
      () => {
        generated = generateText({ model, prompt: prompt("queued generate") })
        generated.catch(() => {})
      },
      () => {
        streamed = streamText({ model, prompt: prompt("queued stream"), onError: () => {} })
        collecting = collect(streamed)
      }
    ])
    const down = pool.shutdown()
    await expect(within(generated, "the queued generateText")).rejects.toBeInstanceOf(PoolShutdownError)
    const collected = await collecting
    expect(collected.errors).toHaveLength(1)
    expect(collected.errors[0]).toBeInstanceOf(PoolShutdownError)
    expect(pool.stats().queued).toBe(0)
    pool.release(held)
    await within(down, "pool shutdown")
    expect(log).toEqual([])
    expect(findMarkedProcesses(marker)).toEqual([])
  })
})

// -----------------------------------------------------------------------------
// Beyond the PRD
// -----------------------------------------------------------------------------

describe("AI SDK over real codex: streams, aborts, failures, crashes, threads, usage", () => {
  it("three concurrent streams through poolSize 2 all complete with their own text", {
    timeout: TEST_TIMEOUT_MS
  }, async () => {
    const { pool, model, observed } = setup({ poolSize: 2 })
    const names = ["one", "two", "three"]
    const texts = await within(
      Promise.all(names.map(async (name) => {
        let text = ""
        for await (const chunk of streamText({ model, prompt: prompt(name) }).textStream) text += chunk
        return text
      })),
      "three streams"
    )
    expect(texts).toEqual(names.map((name) => echo(prompt(name))))
    expect(log.filter((entry) => entry.startsWith("model")).sort()).toEqual(names.map((name) => `model ${name}`).sort())
    expect(pool.stats()).toMatchObject({ busy: 0, queued: 0 })
    // Never more than 2 processes (the second may still be starting if the first served all three).
    const { created, creating } = pool.stats()
    expect(created + creating).toBeLessThanOrEqual(2)
    expect(new Set(observed.leases.map((w) => w.pid)).size).toBeLessThanOrEqual(2)
    await shutdownAndCheck(pool)
  })

  it("abort mid-stream interrupts the turn, releases the worker, and the worker serves the next call", {
    timeout: TEST_TIMEOUT_MS
  }, async () => {
    const { pool, model, observed } = setup({ poolSize: 1 })
    const controller = new AbortController()
    const slowText = prompt(`slow ${SLOW}`)
    const result = streamText({ model, prompt: slowText, abortSignal: controller.signal })
    const collected = await collect(result, (part) => {
      if (part.type === "text-delta") controller.abort()
    })
    expect(collected.aborted).toBe(true)
    expect(collected.text).not.toBe("")
    expect(collected.text).not.toBe(echo(slowText))
    await until(() => log.includes("released"), "the worker's release")
    expect(turnStatuses(observed)).toEqual(["interrupted"])
    await until(() => modelRequest(slowText)?.status === "aborted", "codex to hang up on the model request")
    expect(pool.stats()).toMatchObject({ busy: 0, idle: 1, finalized: 0 })

    const next = await within(generateText({ model, prompt: prompt("next") }), "the next call")
    expect(next.text).toBe(echo(prompt("next")))
    expect(observed.leases.map((w) => w.pid)).toEqual([observed.leases[0]!.pid, observed.leases[0]!.pid])
    expect(log).toEqual([`acquired`, `model slow ${SLOW}`, "released", "acquired", "model next", "released"])
    await shutdownAndCheck(pool)
  })

  it("consumer cancel (breaking out of textStream) interrupts the turn and releases the worker", {
    timeout: TEST_TIMEOUT_MS
  }, async () => {
    // The single-consumer streamText passes a cancel on to the model's stream (the default one keeps reading, see below).
    const { pool, model, observed } = setup({ poolSize: 1 })
    const slowText = prompt(`cancelled ${SLOW}`)
    const result = experimental_streamTextLowMemory({ model, prompt: slowText })
    const chunks: Array<string> = []
    await within(
      (async () => {
        for await (const chunk of result.textStream) {
          chunks.push(chunk)
          break
        }
      })(),
      "the first chunk"
    )
    expect(chunks).toHaveLength(1)
    await until(() => log.includes("released"), "the worker's release")
    expect(turnStatuses(observed)).toEqual(["interrupted"])
    await until(() => modelRequest(slowText)?.status === "aborted", "codex to hang up on the model request")
    expect(pool.stats()).toMatchObject({ busy: 0, idle: 1, finalized: 0 })

    const next = await within(generateText({ model, prompt: prompt("next") }), "the next call")
    expect(next.text).toBe(echo(prompt("next")))
    expect(log).toEqual(["acquired", `model cancelled ${SLOW}`, "released", "acquired", "model next", "released"])
    expect(new Set(observed.leases.map((w) => w.pid)).size).toBe(1)
    await shutdownAndCheck(pool)
  })

  it("leaving the default streamText's textStream early lets the turn finish, then releases the worker", {
    timeout: TEST_TIMEOUT_MS
  }, async () => {
    // streamText keeps reading the model's stream for its result promises, so the turn is not interrupted.
    const { pool, model, observed } = setup({ poolSize: 1 })
    const text = prompt("left early [mode:slow] [delay:100]")
    const result = streamText({ model, prompt: text })
    for await (const _chunk of result.textStream) break
    await until(() => log.includes("released"), "the worker's release")
    expect(turnStatuses(observed)).toEqual(["completed"])
    expect(modelRequest(text)?.status).toBe("finished")
    expect(pool.stats()).toMatchObject({ busy: 0, idle: 1 })
    await shutdownAndCheck(pool)
  })

  it("a failing model rejects generateText with the server's message, and the worker serves the next call", {
    timeout: TEST_TIMEOUT_MS
  }, async () => {
    const { pool, model, observed } = setup({ poolSize: 1 })
    const failing = generateText({ model, prompt: prompt("fail [mode:failed]") })
    await expect(within(failing, "the failing call")).rejects.toThrow(/mock model server failure/)
    expect(turnStatuses(observed)).toEqual(["failed"])
    const next = await within(generateText({ model, prompt: prompt("next") }), "the next call")
    expect(next.text).toBe(echo(prompt("next")))
    expect(log).toEqual(["acquired", "model fail [mode:failed]", "released", "acquired", "model next", "released"])
    expect(new Set(observed.leases.map((w) => w.pid)).size).toBe(1)
    expect(pool.stats()).toMatchObject({ created: 1, finalized: 0 })
    await shutdownAndCheck(pool)
  })

  it("an approval codex asks for is answered by the approvals option: decline by default, accept runs the command", {
    timeout: TEST_TIMEOUT_MS
  }, async () => {
    const { pool } = setup({ poolSize: 1 })
    const threadDefaults: ThreadDefaults = { ephemeral: true, approvalPolicy: "untrusted", sandbox: "danger-full-access" }
    const asked: Array<string> = []
    const declining = createCodexProvider({ pool, threadDefaults })("mock-model")
    const accepting = createCodexProvider({
      pool,
      threadDefaults,
      approvals: ({ method }) => {
        asked.push(method)
        return "accept"
      }
    })("mock-model")
    server.enqueue(Reply.shellCommand(`echo declined-${marker}`), Reply.text("not run"))
    const declined = await within(generateText({ model: declining, prompt: prompt("may I?") }), "the declined call")
    expect(declined.text).toBe("not run")
    expect(String(server.requests.at(-1)!.toolOutputs[0]?.output)).toContain("rejected by user")
    server.enqueue(Reply.shellCommand(`echo accepted-${marker}`), Reply.text("ran"))
    const accepted = await within(generateText({ model: accepting, prompt: prompt("please") }), "the accepted call")
    expect(accepted.text).toBe("ran")
    expect(asked).toEqual(["item/commandExecution/requestApproval"])
    expect(String(server.requests.at(-1)!.toolOutputs[0]?.output)).toContain(`accepted-${marker}`)
    await shutdownAndCheck(pool)
  })

  it("a failing model gives streamText an error part with the server's message, and the worker serves the next call", {
    timeout: TEST_TIMEOUT_MS
  }, async () => {
    const { pool, model, observed } = setup({ poolSize: 1 })
    const onError: Array<unknown> = []
    const result = streamText({
      model,
      prompt: prompt("fail [mode:http401]"),
      onError: ({ error }) => void onError.push(error)
    })
    const collected = await collect(result)
    expect(collected.errors).toHaveLength(1)
    expect(String((collected.errors[0] as Error).message)).toMatch(/401 Unauthorized: mock model server failure/)
    expect(onError).toEqual(collected.errors)
    expect(await result.finishReason).toBe("error")
    const next = await within(generateText({ model, prompt: prompt("next") }), "the next call")
    expect(next.text).toBe(echo(prompt("next")))
    expect(new Set(observed.leases.map((w) => w.pid)).size).toBe(1)
    expect(pool.stats()).toMatchObject({ created: 1, finalized: 0 })
    await shutdownAndCheck(pool)
  })

  it("a worker that dies mid-turn ends the stream at once with WorkerCrashedError, and the next call gets a new worker", {
    timeout: TEST_TIMEOUT_MS
  }, async () => {
    // A lease timeout far beyond the test's bounds: only the crash itself can end the stream in time.
    const { pool, model, observed } = setup({ poolSize: 1, leaseTimeoutMs: 600_000 })
    const slowText = prompt(`doomed ${SLOW}`)
    const result = streamText({ model, prompt: slowText, onError: () => {} })
    let killed: number | undefined
    const collected = await collect(result, (part) => {
      if (part.type !== "text-delta" || killed !== undefined) return
      // The model holds the lease: find its codex process by marker.
      const codex = findMarkedProcesses(marker)
      expect(codex.map((p) => p.pid)).toContain(observed.leases[0]!.pid)
      killed = observed.leases[0]!.pid
      process.kill(killed, "SIGKILL")
    })
    expect(killed).toBeDefined()
    expect(collected.errors).toHaveLength(1)
    expect(collected.errors[0]).toBeInstanceOf(WorkerCrashedError)
    expect(collected.errors[0]).not.toBeInstanceOf(LeaseTimeoutError)
    expect(collected.errors[0]).toMatchObject({ pid: killed, signal: "SIGKILL" })
    expect(await result.finishReason).toBe("error")
    await until(() => !isAlive(killed!), "the killed process to be gone")

    const next = await within(generateText({ model, prompt: prompt("next") }), "the next call")
    expect(next.text).toBe(echo(prompt("next")))
    expect(observed.leases).toHaveLength(2)
    expect(observed.leases[1]!.pid).not.toBe(killed)
    expect(pool.stats()).toMatchObject({ created: 2, finalized: 1 })
    await shutdownAndCheck(pool)
  })

  it("a turn that outlives leaseTimeoutMs ends the stream with LeaseTimeoutError, and the next call gets a new worker", {
    timeout: TEST_TIMEOUT_MS
  }, async () => {
    const { pool, model, observed } = setup({ poolSize: 1, leaseTimeoutMs: 500 })
    const result = streamText({ model, prompt: prompt(`overtime ${SLOW}`), onError: () => {} })
    const collected = await collect(result)
    expect(collected.text).not.toBe("")
    expect(collected.errors).toHaveLength(1)
    expect(collected.errors[0]).toBeInstanceOf(LeaseTimeoutError)
    const expired = observed.leases[0]!.pid
    await until(() => !isAlive(expired), "the expired worker's process to be gone")
    const next = await within(generateText({ model, prompt: prompt("next") }), "the next call")
    expect(next.text).toBe(echo(prompt("next")))
    expect(observed.leases[1]!.pid).not.toBe(expired)
    await shutdownAndCheck(pool)
  })

  it("thread continuation: passing back streamText's response.messages resumes the same thread", {
    timeout: TEST_TIMEOUT_MS
  }, async () => {
    // Resumable threads are persisted ones: thread/resume needs a rollout file.
    const { pool, model } = setup({ poolSize: 1, ephemeral: false })
    const question: ModelMessage = { role: "user", content: prompt("first") }
    const first = streamText({ model, messages: [question] })
    expect(await within(first.text, "the first call")).toBe(echo(prompt("first")))
    const threadId = ((await first.providerMetadata)?.["codex"] as { threadId?: string } | undefined)?.threadId
    expect(threadId).toEqual(expect.any(String))
    const history = (await first.response).messages

    const second = await within(
      generateText({ model, messages: [question, ...history, { role: "user", content: prompt("second") }] }),
      "the second call"
    )
    expect(second.text).toBe(echo(prompt("second")))
    expect(second.providerMetadata?.["codex"]).toEqual({ threadId, turnId: expect.any(String) })
    // Codex sent the first exchange as history, and only the new message as the turn.
    const input = (modelRequest(prompt("second"))!.body as { input: Array<any> }).input
    const conversation = input
      .filter((item) => item.role === "user" || item.role === "assistant")
      .map((item) => `${item.role}: ${item.content.map((c: any) => c.text).join("")}`)
      .filter((line) => !line.includes("<environment_context>"))
    expect(conversation).toEqual([
      `user: ${prompt("first")}`,
      `assistant: ${echo(prompt("first"))}`,
      `user: ${prompt("second")}`
    ])
    await shutdownAndCheck(pool)
  })

  // Each lease has a handle of its own: what a worker has loaded is remembered per process (`workerKey`).
  it("a continued ephemeral thread on the same worker is continued directly, though the lease is a new one", {
    timeout: TEST_TIMEOUT_MS
  }, async () => {
    const { pool, model, observed } = setup({ poolSize: 1, ephemeral: true })
    const question: ModelMessage = { role: "user", content: prompt("first") }
    const first = await within(generateText({ model, messages: [question] }), "the first call")
    const threadId = (first.providerMetadata?.["codex"] as { threadId?: string } | undefined)?.threadId
    expect(threadId).toEqual(expect.any(String))
    const second = await within(
      generateText({ model, messages: [question, ...first.response.messages, { role: "user", content: prompt("second") }] }),
      "the second call"
    )
    expect(observed.leases).toHaveLength(2)
    expect(observed.leases[1]).not.toBe(observed.leases[0])
    expect(observed.leases[1]!.workerKey).toBe(observed.leases[0]!.workerKey)
    // codex cannot resume an ephemeral thread: the same id means the loaded thread was continued directly.
    expect(second.providerMetadata?.["codex"]).toEqual({ threadId, turnId: expect.any(String) })
    expect(second.text).toBe(echo(prompt("second")))
    await shutdownAndCheck(pool)
  })

  it("usage is reported for a completed turn", { timeout: TEST_TIMEOUT_MS }, async () => {
    const { pool, model } = setup({ poolSize: 1 })
    const result = await within(generateText({ model, prompt: prompt("count me") }), "the call")
    const usage = modelRequest(prompt("count me"))!.usage!
    expect(result.usage).toMatchObject({
      inputTokens: usage.input_tokens,
      outputTokens: usage.output_tokens,
      totalTokens: usage.total_tokens
    })
    expect(result.finishReason).toBe("stop")
    await shutdownAndCheck(pool)
  })
})

// -----------------------------------------------------------------------------
// Regressions: each was a bug of the model once; the comment says what it was
// -----------------------------------------------------------------------------

describe("AI SDK over real codex: regressions", () => {
  // Was: Turn.#run's `if (signal.aborted) return this.#abort(...)` left the phase "starting" with no
  // request in flight, so nothing ever released the worker.
  it("an abort right as a queued call is handed the worker still releases the worker", {
    timeout: TEST_TIMEOUT_MS
  }, async () => {
    const { pool, rawModel } = setup({ poolSize: 1 })
    const held = await within(pool.acquire(), "the worker")
    const controller = new AbortController()
    const result = streamText({ model: rawModel, prompt: prompt("handed over, then aborted"), abortSignal: controller.signal })
    const collecting = collect(result)
    await until(() => pool.stats().queued === 1, "the call to queue")
    // The release hands the worker to the queued call; the abort comes before its doStream resumes.
    pool.release(held)
    controller.abort()
    const collected = await collecting
    expect(collected.aborted).toBe(true)
    // No codex request was sent for this call, so nothing delays the release.
    await until(() => pool.stats().busy === 0, "the worker's release", 3_000)
    const next = await within(generateText({ model: rawModel, prompt: prompt("next") }), "the next call")
    expect(next.text).toBe(echo(prompt("next")))
    expect(modelRequest(prompt("handed over, then aborted"))).toBeUndefined()
    await shutdownAndCheck(pool)
  })

  // Was: doGenerate built its text content without the text parts' providerMetadata (the thread id).
  it("thread continuation: passing back generateText's response.messages resumes the same thread", {
    timeout: TEST_TIMEOUT_MS
  }, async () => {
    const { pool, model } = setup({ poolSize: 1, ephemeral: false })
    const question: ModelMessage = { role: "user", content: prompt("first") }
    const first = await within(generateText({ model, messages: [question] }), "the first call")
    const threadId = (first.providerMetadata?.["codex"] as { threadId?: string } | undefined)?.threadId
    expect(threadId).toEqual(expect.any(String))
    // The assistant message must carry the thread id for the next call to find it.
    expect(JSON.stringify(first.response.messages)).toContain(threadId!)
    const second = await within(
      generateText({ model, messages: [question, ...first.response.messages, { role: "user", content: prompt("second") }] }),
      "the second call"
    )
    expect(second.providerMetadata?.["codex"]).toEqual({ threadId, turnId: expect.any(String) })
    await shutdownAndCheck(pool)
  })

  // codex refuses thread/resume of an ephemeral thread ("no rollout found"), even on the process that has it loaded.
  it("thread continuation works with ephemeral threads (the header's recommended threadDefaults)", {
    timeout: TEST_TIMEOUT_MS
  }, async () => {
    const { pool, model } = setup({ poolSize: 1, ephemeral: true })
    const question: ModelMessage = { role: "user", content: prompt("first") }
    const first = streamText({ model, messages: [question] })
    expect(await within(first.text, "the first call")).toBe(echo(prompt("first")))
    const history = (await first.response).messages
    const second = await within(
      generateText({ model, messages: [question, ...history, { role: "user", content: prompt("second") }] }),
      "the second call"
    )
    expect(second.finishReason).toBe("stop")
    // However the model continues (same thread, or a new one given the transcript), it sees the first exchange.
    const request = server.requests.at(-1)!
    expect(request.userText).toContain(prompt("second"))
    expect(JSON.stringify(request.body)).toContain(echo(prompt("first")))
    await shutdownAndCheck(pool)
  })

  // Was: Turn.#run's onClose listener ignored a close without an error (a close by the pool).
  it("a stream whose busy worker is killed by shutdown ends with an error", { timeout: TEST_TIMEOUT_MS }, async () => {
    const { pool, model } = setup({ poolSize: 1, shutdownTimeoutMs: 500 })
    const slowText = prompt(`running at shutdown ${SLOW}`)
    const result = streamText({ model, prompt: slowText, onError: () => {} })
    let down: Promise<void> | undefined
    const collecting = collect(result, (part) => {
      if (part.type === "text-delta" && down === undefined) down = pool.shutdown()
    })
    await until(() => down !== undefined, "the first delta")
    await within(down!, "pool shutdown")
    expect(findMarkedProcesses(marker)).toEqual([])
    // The worker is dead: the stream must not wait for a turn that can never end.
    const collected = await within(collecting, "the stream to end after shutdown", 3_000)
    expect(collected.errors).toHaveLength(1)
    expect(await result.finishReason).toBe("error")
  })
})

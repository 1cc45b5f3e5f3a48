/**
 * What the REAL `codex app-server` (codex-cli 0.169.0) makes of each scripted
 * reply of the offline model server, driven through the pool
 * (`createCodexWorkerPool` with the `codex-worker-pool/testing` configuration).
 * These are the facts the model server's documentation promises and that
 * later features rely on:
 * - a reasoning part arrives as a `reasoning` item with
 *   `item/reasoning/summaryPartAdded`, `summaryTextDelta` (by summaryIndex)
 *   and `textDelta` (by contentIndex) notifications;
 * - a shell command (`exec_command` call) runs and gives a
 *   `commandExecution` item with its output, which codex sends back to the
 *   model; with `approvalPolicy: "untrusted"` codex asks first
 *   (`item/commandExecution/requestApproval`);
 * - a dynamic tool call becomes an `item/tool/call` server request and its
 *   answer goes back to the model;
 * - a 429 with `retry-after` is retried (an `error` notification with
 *   `willRetry: true`), a 429 without it fails the turn;
 * - `response.failed` fails the turn; the request records the API key,
 *   model and images codex sent.
 *
 * Process hygiene: every test has its own marker on its codex command line
 * and a fresh CODEX_HOME, shuts its pool down and then asserts through /proc
 * that no live process carries its marker (zombies count as dead); afterEach
 * shuts down what a failed test left and SIGKILLs marked survivors by PID.
 *
 * Limits: needs the native codex binary and Linux /proc. Every wait is
 * bounded; no assertion depends on timing.
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest"
import {
  type CodexPromiseWorkerPool,
  type CodexWorkerHandle,
  createCodexWorkerPool
} from "../../src/node.ts"
import type { IncomingMessage } from "../../src/CodexWorker.ts"
import { type CodexArgsOptions, codexEnv, type CodexHome, makeCodexHome } from "../../src/testing/codexConfig.ts"
import { type ModelServer, type ModelServerOptions, startModelServer } from "../../src/testing/ModelServer.ts"
import * as Reply from "../../src/testing/Reply.ts"
import {
  codexBinaryPath,
  findMarkedProcesses,
  killMarkedProcesses,
  makeMarker,
  markedCodexArgs
} from "../helpers/codex.ts"
import { within as withinMs } from "../helpers/wait.ts"

const WAIT_MS = 10_000
const TEST_TIMEOUT_MS = 30_000

let marker = ""
let home: CodexHome
const servers: Array<ModelServer> = []
const pools: Array<CodexPromiseWorkerPool> = []

beforeEach(() => {
  marker = makeMarker("model")
  home = makeCodexHome()
})

afterEach(async () => {
  for (const pool of pools.splice(0)) await withinMs(pool.shutdown(), "pool shutdown", WAIT_MS).catch(() => {})
  await killMarkedProcesses(marker)
  await Promise.all(servers.splice(0).map((server) => server.close()))
  home.cleanup()
})

const within = <A>(promise: PromiseLike<A>, what: string) => withinMs(promise, what, WAIT_MS)

const serve = async (options: ModelServerOptions = {}): Promise<ModelServer> => {
  const server = await startModelServer(options)
  servers.push(server)
  return server
}

/** A pool of one real codex worker for `server`, with this test's marker. */
const makePool = (
  server: ModelServer,
  options: { readonly args?: Omit<CodexArgsOptions, "baseUrl">; readonly apiKey?: string } = {}
): CodexPromiseWorkerPool => {
  const pool = createCodexWorkerPool({
    command: codexBinaryPath(),
    args: markedCodexArgs(server.url, marker, options.args),
    env: codexEnv({ apiKey: options.apiKey }),
    codexHome: home.path,
    // dynamicTools needs the experimental API.
    capabilities: { experimentalApi: true },
    shutdownTimeoutMs: 1_000
  })
  pools.push(pool)
  return pool
}

const shutdownAndCheck = async (pool: CodexPromiseWorkerPool): Promise<void> => {
  await within(pool.shutdown(), "pool shutdown")
  expect(findMarkedProcesses(marker)).toEqual([])
}

const paramsOf = (message: IncomingMessage): any => message.params ?? {}

interface Turn {
  /** `turn/completed`'s `turn`. */
  readonly turn: any
  /** Every notification and server request of the turn's thread, in order. */
  readonly messages: Array<IncomingMessage>
}

/**
 * Starts a thread with `threadParams` and runs one turn with `input`,
 * answering server requests with `answer`, until `turn/completed`.
 */
const runTurn = async (
  worker: CodexWorkerHandle,
  input: ReadonlyArray<unknown>,
  options: {
    readonly thread?: Record<string, unknown>
    readonly turn?: Record<string, unknown>
    readonly answer?: (request: IncomingMessage & { readonly _tag: "Request" }) => unknown
  } = {}
): Promise<Turn> => {
  const { thread } = (await worker.request("thread/start", {
    ephemeral: true,
    approvalPolicy: "never",
    sandbox: "danger-full-access",
    ...options.thread
  })) as { thread: { id: string } }
  const messages: Array<IncomingMessage> = []
  let stop = () => {}
  const completed = new Promise<any>((resolve) => {
    stop = worker.onMessage((message) => {
      if (paramsOf(message).threadId !== thread.id) return
      messages.push(message)
      if (message._tag === "Request" && options.answer !== undefined) {
        void worker.respond(message.id, options.answer(message))
      }
      if (message.method === "turn/completed") resolve(paramsOf(message).turn)
    })
  })
  try {
    await worker.request("turn/start", { threadId: thread.id, input, ...options.turn })
    return { turn: await within(completed, "turn/completed"), messages }
  } finally {
    stop()
  }
}

const text = (value: string) => [{ type: "text", text: value, text_elements: [] }]
const methods = (turn: Turn) => turn.messages.map((message) => message.method)
const only = (turn: Turn, method: string) => turn.messages.filter((message) => message.method === method).map(paramsOf)
const itemsCompleted = (turn: Turn, type: string) =>
  only(turn, "item/completed").map((params) => params.item).filter((item) => item.type === type)

describe("real codex against scripted model replies", () => {
  it("a reasoning part arrives as a reasoning item with summary and content deltas, then the answer", {
    timeout: TEST_TIMEOUT_MS
  }, async () => {
    const server = await serve({
      replies: [[Reply.reasoning(["Plan the answer.", "Check it."], { content: "raw thought", deltas: 2 }), Reply.text("Done.")]]
    })
    const pool = makePool(server)
    const turn = await pool.use((worker) => runTurn(worker, text("think")))
    expect(turn.turn.status).toBe("completed")
    expect(only(turn, "item/started").map((params) => params.item.type)).toEqual(["userMessage", "reasoning", "agentMessage"])
    expect(only(turn, "item/reasoning/summaryPartAdded").map((params) => params.summaryIndex)).toEqual([0, 1])
    const summary = only(turn, "item/reasoning/summaryTextDelta")
    expect(summary.map((params) => [params.summaryIndex, params.delta])).toEqual([
      [0, "Plan the"],
      [0, " answer."],
      [1, "Check"],
      [1, " it."]
    ])
    expect(only(turn, "item/reasoning/textDelta").map((params) => [params.contentIndex, params.delta])).toEqual([
      [0, "raw th"],
      [0, "ought"]
    ])
    expect(itemsCompleted(turn, "reasoning")).toMatchObject([
      { id: "rs_1_0", summary: ["Plan the answer.", "Check it."], content: ["raw thought"] }
    ])
    // The reasoning item is done before the message starts.
    expect(methods(turn).lastIndexOf("item/reasoning/textDelta")).toBeLessThan(methods(turn).indexOf("item/agentMessage/delta"))
    expect(itemsCompleted(turn, "agentMessage")).toMatchObject([{ text: "Done." }])
    await shutdownAndCheck(pool)
  })

  it("a shell command runs as a commandExecution item and its output goes back to the model", {
    timeout: TEST_TIMEOUT_MS
  }, async () => {
    const server = await serve({ replies: [Reply.shellCommand(`echo ran-${marker}`), Reply.text("It ran.")] })
    const pool = makePool(server)
    const turn = await pool.use((worker) => runTurn(worker, text("run it")))
    expect(turn.turn.status).toBe("completed")
    const [execution] = itemsCompleted(turn, "commandExecution")
    expect(execution).toMatchObject({ id: "call_1_0", status: "completed", exitCode: 0 })
    expect(execution.command).toContain(`echo ran-${marker}`)
    expect(execution.aggregatedOutput).toBe(`ran-${marker}\n`)
    expect(server.requests).toHaveLength(2)
    expect(server.requests[0]!.toolNames).toContain("exec_command")
    expect(server.requests[1]!.toolOutputs).toHaveLength(1)
    expect(server.requests[1]!.toolOutputs[0]!.callId).toBe("call_1_0")
    expect(String(server.requests[1]!.toolOutputs[0]!.output)).toContain(`ran-${marker}`)
    expect(itemsCompleted(turn, "agentMessage")).toMatchObject([{ text: "It ran." }])
    await shutdownAndCheck(pool)
  })

  it("with approvalPolicy untrusted codex asks before the shell command, and a decline reaches the model", {
    timeout: TEST_TIMEOUT_MS
  }, async () => {
    const server = await serve({ replies: [Reply.shellCommand(`echo never-${marker}`), Reply.text("Declined.")] })
    const pool = makePool(server)
    const turn = await pool.use((worker) =>
      runTurn(worker, text("ask first"), {
        thread: { approvalPolicy: "untrusted", sandbox: "read-only" },
        answer: () => ({ decision: "decline" })
      })
    )
    const approvals = turn.messages.filter((message) => message._tag === "Request")
    expect(approvals.map((message) => message.method)).toEqual(["item/commandExecution/requestApproval"])
    expect(paramsOf(approvals[0]!)).toMatchObject({ itemId: "call_1_0" })
    expect(paramsOf(approvals[0]!).command).toContain(`echo never-${marker}`)
    expect(itemsCompleted(turn, "commandExecution")).toMatchObject([{ status: "declined", exitCode: null }])
    expect(String(server.requests[1]!.toolOutputs[0]!.output)).toContain("rejected by user")
    expect(turn.turn.status).toBe("completed")
    await shutdownAndCheck(pool)
  })

  it("a call of a dynamic tool becomes an item/tool/call request whose answer goes back to the model", {
    timeout: TEST_TIMEOUT_MS
  }, async () => {
    const server = await serve({ replies: [Reply.functionCall("lookup_ticket", { id: "T-7" }), Reply.text("Found it.")] })
    const pool = makePool(server)
    const dynamicTools = [{
      name: "lookup_ticket",
      description: "Looks up a ticket",
      inputSchema: { type: "object", properties: { id: { type: "string" } }, required: ["id"] }
    }]
    const turn = await pool.use((worker) =>
      runTurn(worker, text("find T-7"), {
        thread: { dynamicTools },
        answer: () => ({ success: true, contentItems: [{ type: "inputText", text: "T-7 is open" }] })
      })
    )
    const calls = turn.messages.filter((message) => message._tag === "Request")
    expect(calls.map((message) => message.method)).toEqual(["item/tool/call"])
    expect(paramsOf(calls[0]!)).toMatchObject({ tool: "lookup_ticket", callId: "call_1_0", arguments: { id: "T-7" } })
    expect(server.requests[0]!.toolNames).toContain("lookup_ticket")
    expect(server.requests[1]!.toolOutputs).toEqual([{ callId: "call_1_0", output: "T-7 is open" }])
    expect(itemsCompleted(turn, "dynamicToolCall")).toMatchObject([{ tool: "lookup_ticket", status: "completed", success: true }])
    expect(turn.turn.status).toBe("completed")
    await shutdownAndCheck(pool)
  })

  it("a 429 with retry-after is retried when stream retries are allowed: an error with willRetry, then the answer", {
    timeout: TEST_TIMEOUT_MS
  }, async () => {
    const server = await serve({ replies: [Reply.rateLimited({ retryAfterSeconds: 0 }), Reply.text("Second try.")] })
    const pool = makePool(server, { args: { retries: { stream: 2 } } })
    const turn = await pool.use((worker) => runTurn(worker, text("retry me")))
    expect(only(turn, "error")).toMatchObject([{
      willRetry: true,
      error: {
        message: "Reconnecting... 1/2",
        codexErrorInfo: { responseStreamDisconnected: { httpStatusCode: 429 } }
      }
    }])
    expect(turn.turn.status).toBe("completed")
    expect(itemsCompleted(turn, "agentMessage")).toMatchObject([{ text: "Second try." }])
    expect(server.requests).toHaveLength(2)
    await shutdownAndCheck(pool)
  })

  it("a 429 without retry-after fails the turn at once, even with stream retries allowed", {
    timeout: TEST_TIMEOUT_MS
  }, async () => {
    const server = await serve({ replies: [Reply.rateLimited(), Reply.text("never sent")] })
    const pool = makePool(server, { args: { retries: { stream: 2 } } })
    const turn = await pool.use((worker) => runTurn(worker, text("no retry")))
    const failure = { responseTooManyFailedAttempts: { httpStatusCode: 429 } }
    expect(only(turn, "error")).toMatchObject([{ willRetry: false, error: { codexErrorInfo: failure } }])
    expect(turn.turn).toMatchObject({ status: "failed", error: { codexErrorInfo: failure } })
    expect(server.requests).toHaveLength(1)
    await shutdownAndCheck(pool)
  })

  it("response.failed fails the turn with its message; with code rate_limit_exceeded codex says rateLimitExceeded", {
    timeout: TEST_TIMEOUT_MS
  }, async () => {
    const server = await serve({
      replies: [Reply.fail("model exploded"), Reply.fail("Slow down.", { code: "rate_limit_exceeded" })]
    })
    const pool = makePool(server)
    const [plain, limited] = await pool.use(async (worker) => [
      await runTurn(worker, text("one")),
      await runTurn(worker, text("two"))
    ])
    expect(plain.turn).toMatchObject({
      status: "failed",
      error: { message: "stream disconnected before completion: model exploded", codexErrorInfo: "other" }
    })
    expect(limited.turn).toMatchObject({
      status: "failed",
      error: { message: "rate limit exceeded: Slow down.", codexErrorInfo: "rateLimitExceeded" }
    })
    await shutdownAndCheck(pool)
  })

  it("each request records the API key codex sent, the thread's model and the turn's images", {
    timeout: TEST_TIMEOUT_MS
  }, async () => {
    const server = await serve({ replies: [Reply.text("Nice picture.")] })
    const pool = makePool(server, { apiKey: `sk-${marker}` })
    const png = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
    const turn = await pool.use((worker) =>
      runTurn(worker, [...text("what is this?"), { type: "image", url: png }], { thread: { model: "my-model" } })
    )
    expect(turn.turn.status).toBe("completed")
    expect(server.requests).toHaveLength(1)
    expect(server.requests[0]).toMatchObject({
      authorization: `Bearer sk-${marker}`,
      model: "my-model",
      userText: "what is this?",
      images: [png]
    })
    await shutdownAndCheck(pool)
  })
})

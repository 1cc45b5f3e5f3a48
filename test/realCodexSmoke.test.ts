/**
 * Smoke tests of the REAL `codex app-server` binary against the mock model
 * server, over plain node:child_process (no library code). They pin down the
 * protocol facts the worker pool relies on: the handshake, a streamed text
 * turn, a second turn on the same process, failed turns that leave the
 * process usable, interrupt, and exit on stdin EOF.
 *
 * Process hygiene: every codex gets a unique marker on its command line and a
 * fresh CODEX_HOME; each test stops its process by PID (stdin EOF, then
 * SIGKILL if it has not exited within a bounded wait) and asserts via /proc
 * that nothing carrying its marker is left alive.
 *
 * Limits: needs the native binary (@openai/codex-linux-x64) and Linux /proc.
 * Waits are bounded (WAIT_MS per step); no assertion depends on timing.
 */
import { type ChildProcessWithoutNullStreams, spawn } from "node:child_process"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { type ModelServer, type ModelServerMode, startModelServer } from "../src/testing/ModelServer.ts"
import { codexEnv, makeCodexHome } from "../src/testing/codexConfig.ts"
import {
  childPids,
  codexBinaryPath,
  findMarkedProcesses,
  isAlive,
  makeMarker,
  markedCodexArgs
} from "./helpers/codex.ts"
import { within } from "./helpers/wait.ts"

/** Upper bound for any single wait (a response, a notification, an exit). */
const WAIT_MS = 10_000
const TEST_TIMEOUT_MS = 20_000

interface Message {
  readonly id?: number | string
  readonly method?: string
  readonly params?: any
  readonly result?: any
  readonly error?: { readonly code: number; readonly message: string }
}

/** A tiny JSON-RPC (newline-delimited) client around one app-server process. */
interface AppServer {
  readonly pid: number
  readonly marker: string
  /** Every message received from stdout, in order. */
  readonly messages: Array<Message>
  /** Sends a request and resolves with its response message (result or error). */
  call(method: string, params?: unknown): Promise<Message>
  /** Sends a request and resolves with its result; rejects on an error response. */
  request(method: string, params?: unknown): Promise<any>
  notify(method: string, params?: unknown): void
  /** First message (received at or after index `from`) matching `predicate`. */
  waitFor(predicate: (message: Message) => boolean, from?: number): Promise<Message>
  /** Resolves with the exit code and signal. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
  closeStdin(): void
  /** Ends the process: stdin EOF, bounded wait, then SIGKILL by PID. */
  stop(): Promise<void>
}

const withTimeout = <A>(promise: Promise<A>, what: string): Promise<A> => within(promise, what, WAIT_MS)

const spawnAppServer = (baseUrl: string, codexHome: string, marker: string): AppServer => {
  const child: ChildProcessWithoutNullStreams = spawn(codexBinaryPath(), markedCodexArgs(baseUrl, marker), {
    env: { ...process.env, ...codexEnv({ codexHome }) },
    stdio: ["pipe", "pipe", "pipe"]
  })
  const pid = child.pid
  if (pid === undefined) throw new Error("codex did not start")
  const messages: Array<Message> = []
  const listeners = new Set<(message: Message) => void>()
  let buffered = ""
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
    buffered += chunk
    let newline: number
    while ((newline = buffered.indexOf("\n")) >= 0) {
      const line = buffered.slice(0, newline)
      buffered = buffered.slice(newline + 1)
      if (line.trim() === "") continue
      const message = JSON.parse(line) as Message
      messages.push(message)
      for (const listener of [...listeners]) listener(message)
    }
  })
  child.stderr.resume() // diagnostics only; must be drained
  child.stdin.on("error", () => {}) // EPIPE after exit is expected
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once("exit", (code, signal) => resolve({ code, signal }))
  })
  let nextId = 1
  const write = (message: unknown): void => {
    child.stdin.write(`${JSON.stringify(message)}\n`)
  }
  const waitFor = (predicate: (message: Message) => boolean, from = 0): Promise<Message> =>
    withTimeout(
      new Promise<Message>((resolve) => {
        const seen = messages.slice(from).find(predicate)
        if (seen !== undefined) return resolve(seen)
        const listener = (message: Message): void => {
          if (!predicate(message)) return
          listeners.delete(listener)
          resolve(message)
        }
        listeners.add(listener)
      }),
      "a message"
    )
  const call = (method: string, params?: unknown): Promise<Message> => {
    const id = nextId++
    const from = messages.length
    write(params === undefined ? { id, method } : { id, method, params })
    return waitFor((message) => message.id === id && message.method === undefined, from)
  }
  const stop = async (): Promise<void> => {
    child.stdin.end()
    const timer = new Promise<"timeout">((resolve) => setTimeout(() => resolve("timeout"), WAIT_MS).unref())
    if ((await Promise.race([exited, timer])) === "timeout" && isAlive(pid)) {
      try {
        process.kill(pid, "SIGKILL")
      } catch {
        // exited in between
      }
      await exited
    }
  }
  return {
    pid,
    marker,
    messages,
    call,
    request: async (method, params) => {
      const response = await call(method, params)
      if (response.error !== undefined) throw new Error(`${method} failed: ${JSON.stringify(response.error)}`)
      return response.result
    },
    notify: (method, params) => write(params === undefined ? { method } : { method, params }),
    waitFor,
    exited,
    closeStdin: () => child.stdin.end(),
    stop
  }
}

let model: ModelServer

beforeAll(async () => {
  model = await startModelServer({ deltas: 4, slowDelayMs: 200 })
})

afterAll(async () => {
  await model?.close()
})

/** Runs `body` against a fresh, uninitialized app-server, then stops it and checks nothing is left. */
const withAppServer = async (label: string, body: (codex: AppServer) => Promise<void>): Promise<void> => {
  const marker = makeMarker(label)
  const home = makeCodexHome()
  const codex = spawnAppServer(model.url, home.path, marker)
  try {
    await body(codex)
  } finally {
    await codex.stop()
    home.cleanup()
  }
  expect(findMarkedProcesses(marker)).toEqual([])
}

const initialize = async (codex: AppServer): Promise<any> => {
  const result = await codex.request("initialize", {
    clientInfo: { name: "cwp-smoke", version: "0.0.0" },
    capabilities: null
  })
  codex.notify("initialized")
  return result
}

const startThread = async (codex: AppServer): Promise<string> => {
  const result = await codex.request("thread/start", { approvalPolicy: "never", sandbox: "read-only", ephemeral: true })
  return result.thread.id as string
}

interface TurnOutcome {
  readonly turnId: string
  readonly deltas: Array<string>
  readonly completed: Message
  readonly notifications: Array<Message>
}

/** Starts a turn and collects its notifications until `turn/completed`. */
const runTurn = async (codex: AppServer, threadId: string, text: string): Promise<TurnOutcome> => {
  const from = codex.messages.length
  const started = await codex.request("turn/start", {
    threadId,
    input: [{ type: "text", text, text_elements: [] }]
  })
  const turnId = started.turn.id as string
  expect(started.turn.status).toBe("inProgress")
  const completed = await codex.waitFor(
    (message) => message.method === "turn/completed" && message.params.turn.id === turnId,
    from
  )
  const notifications = codex.messages
    .slice(from)
    .filter((message) => message.method !== undefined && message.params?.turnId === turnId)
  const deltas = notifications
    .filter((message) => message.method === "item/agentMessage/delta")
    .map((message) => message.params.delta as string)
  return { turnId, deltas, completed, notifications }
}

describe("real codex app-server", () => {
  it("answers initialize with userAgent, codexHome and platform", { timeout: TEST_TIMEOUT_MS }, async () => {
    await withAppServer("init", async (codex) => {
      const result = await initialize(codex)
      expect(result).toMatchObject({ platformFamily: "unix", platformOs: "linux" })
      expect(typeof result.userAgent).toBe("string")
      expect(typeof result.codexHome).toBe("string")
    })
  })

  it("streams agent message deltas that add up to the text the model server sent", { timeout: TEST_TIMEOUT_MS }, async () => {
    await withAppServer("text", async (codex) => {
      await initialize(codex)
      const threadId = await startThread(codex)
      const before = model.requests.length
      const turn = await runTurn(codex, threadId, "hello codex")
      expect(turn.completed.params.turn.status).toBe("completed")
      const served = model.requests.slice(before)
      expect(served).toHaveLength(1)
      expect(served[0]!.replyText).toBe("Echo: hello codex")
      expect(turn.deltas).toEqual(served[0]!.deltas)
      expect(turn.deltas.join("")).toBe("Echo: hello codex")
      const agentMessage = turn.notifications.find(
        (message) => message.method === "item/completed" && message.params.item.type === "agentMessage"
      )
      expect(agentMessage?.params.item.text).toBe("Echo: hello codex")
      const usage = turn.notifications.find((message) => message.method === "thread/tokenUsage/updated")
      expect(usage?.params.tokenUsage.last).toMatchObject({
        inputTokens: served[0]!.usage!.input_tokens,
        outputTokens: served[0]!.usage!.output_tokens,
        totalTokens: served[0]!.usage!.total_tokens
      })
    })
  })

  it("runs a second turn on the same process without a second initialize", { timeout: TEST_TIMEOUT_MS }, async () => {
    await withAppServer("twice", async (codex) => {
      await initialize(codex)
      const first = await runTurn(codex, await startThread(codex), "first")
      const second = await runTurn(codex, await startThread(codex), "second")
      expect(first.completed.params.turn.status).toBe("completed")
      expect(second.completed.params.turn.status).toBe("completed")
      expect(second.deltas.join("")).toBe("Echo: second")
      const again = await codex.call("initialize", { clientInfo: { name: "x", version: "1" }, capabilities: null })
      expect(again.error?.message).toMatch(/already initialized/i)
    })
  })

  const failures: Array<[ModelServerMode, string | { httpConnectionFailed: { httpStatusCode: number } }]> = [
    ["failed", "other"],
    ["http500", "internalServerError"],
    ["http401", { httpConnectionFailed: { httpStatusCode: 401 } }],
    ["cut", "other"]
  ]
  for (const [mode, codexErrorInfo] of failures) {
    it(`a ${mode} model response gives an error notification, a failed turn, and the process stays usable`, {
      timeout: TEST_TIMEOUT_MS
    }, async () => {
      await withAppServer(mode, async (codex) => {
        await initialize(codex)
        const threadId = await startThread(codex)
        const failed = await runTurn(codex, threadId, `please fail [mode:${mode}]`)
        const turn = failed.completed.params.turn
        expect(turn.status).toBe("failed")
        expect(turn.error).toMatchObject({ codexErrorInfo })
        const error = failed.notifications.find((message) => message.method === "error")
        expect(error?.params).toMatchObject({ threadId, turnId: failed.turnId, willRetry: false })
        expect(error?.params.error).toEqual(turn.error)
        // The same thread and process go on working.
        const next = await runTurn(codex, threadId, "after the failure")
        expect(next.completed.params.turn.status).toBe("completed")
        expect(next.deltas.join("")).toBe("Echo: after the failure")
      })
    })
  }

  it("turn/interrupt on a slow turn answers {} and then completes the turn as interrupted", {
    timeout: TEST_TIMEOUT_MS
  }, async () => {
    await withAppServer("interrupt", async (codex) => {
      await initialize(codex)
      const threadId = await startThread(codex)
      // One delta, then a pause longer than any test: only an interrupt ends this turn.
      const SLOW_PROMPT = `take your time [mode:slow] [delay:600000] ${codex.marker}`
      const from = codex.messages.length
      const started = await codex.request("turn/start", {
        threadId,
        input: [{ type: "text", text: SLOW_PROMPT, text_elements: [] }]
      })
      const turnId = started.turn.id as string
      await codex.waitFor((message) => message.method === "item/agentMessage/delta", from)
      const modelRequest = model.requests.find((request) => request.userText === SLOW_PROMPT)
      expect(modelRequest?.status).toBe("streaming")
      const interruptAt = codex.messages.length
      const response = await codex.call("turn/interrupt", { threadId, turnId })
      expect(response.result).toEqual({})
      const completed = await codex.waitFor(
        (message) => message.method === "turn/completed" && message.params.turn.id === turnId,
        from
      )
      expect(completed.params.turn.status).toBe("interrupted")
      // The interrupt response comes before turn/completed.
      expect(codex.messages.indexOf(response)).toBeLessThan(codex.messages.indexOf(completed))
      expect(codex.messages.indexOf(completed)).toBeGreaterThanOrEqual(interruptAt)
      // Codex hangs up on the model request (bounded by the test timeout).
      while (modelRequest?.status === "streaming") await new Promise((resolve) => setTimeout(resolve, 10))
      expect(modelRequest?.status).toBe("aborted")
      // Interrupting again: there is no active turn any more.
      const again = await codex.call("turn/interrupt", { threadId, turnId })
      expect(again.error?.message).toMatch(/no active turn/)
      // And the thread takes a new turn.
      const next = await runTurn(codex, threadId, "next")
      expect(next.completed.params.turn.status).toBe("completed")
    })
  })

  it("exits with code 0 when its stdin is closed", { timeout: TEST_TIMEOUT_MS }, async () => {
    await withAppServer("eof", async (codex) => {
      await initialize(codex)
      await startThread(codex)
      codex.closeStdin()
      const exit = await withTimeout(codex.exited, "exit after stdin EOF")
      expect(exit).toEqual({ code: 0, signal: null })
      expect(isAlive(codex.pid)).toBe(false)
    })
  })

  it("exits with code 0 on SIGTERM", { timeout: TEST_TIMEOUT_MS }, async () => {
    await withAppServer("sigterm", async (codex) => {
      await initialize(codex)
      process.kill(codex.pid, "SIGTERM")
      const exit = await withTimeout(codex.exited, "exit after SIGTERM")
      expect(exit).toEqual({ code: 0, signal: null })
    })
  })

  it("has no live child processes after a turn when shell snapshots are off", { timeout: TEST_TIMEOUT_MS }, async () => {
    await withAppServer("children", async (codex) => {
      await initialize(codex)
      const turn = await runTurn(codex, await startThread(codex), "anyone there?")
      expect(turn.completed.params.turn.status).toBe("completed")
      expect(childPids(codex.pid).filter(isAlive)).toEqual([])
    })
  })

  it("accepts the marker override without a configWarning about unknown keys", { timeout: TEST_TIMEOUT_MS }, async () => {
    await withAppServer("marker", async (codex) => {
      expect(findMarkedProcesses(codex.marker).map((info) => info.pid)).toEqual([codex.pid])
      await initialize(codex)
      await startThread(codex)
      const warnings = codex.messages.filter(
        (message) => message.method === "configWarning" || message.method === "warning"
      )
      expect(JSON.stringify(warnings)).not.toMatch(/unrecognized|CWP_MARKER/)
    })
  })
})

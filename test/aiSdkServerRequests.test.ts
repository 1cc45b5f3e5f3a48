/**
 * Server requests during a turn, end to end through the fake app-server
 * (`--server-requests=JSON`: each turn sends the given requests, awaits each
 * answer, and reports it as `fake/serverRequestAnswered`), a real pool and
 * the AI SDK model.
 *
 * What it pins: every method of the pinned protocol's `ServerRequest` union
 * gets an answer of its schema's shape (the request and answer tables are
 * typed by method, so a method a newer codex adds fails compilation here);
 * the callbacks answer when given; a withdrawn request
 * (`serverRequest/resolved`) aborts its callback and gets no late answer; an
 * abort while a request is pending answers it with the default before the
 * turn is interrupted, and the worker serves the next call.
 *
 * Process hygiene: each test marks its processes, shuts its pool down and
 * checks /proc for survivors.
 */
import { generateText, streamText } from "ai"
import { afterEach, describe, expect, it } from "vitest"
import { type CodexPromiseWorkerPool, createCodexWorkerPool } from "../src/node.ts"
import type * as CodexProtocol from "../src/CodexProtocol.ts"
import type { IncomingMessage } from "../src/CodexWorker.ts"
import { createCodexProvider, type CodexProviderOptions } from "../src/ai-sdk/index.ts"
import { fakePoolOptions, killByMarker, liveByMarker, newMarker } from "./helpers/procs.ts"
import { until, within } from "./helpers/wait.ts"

type Method = CodexProtocol.ServerRequestMethod

/** Example params of every server request method (`$THREAD` / `$TURN` are filled in by the fake). */
const examples: { readonly [M in Method]: CodexProtocol.ServerRequestParams<M> } = {
  "item/commandExecution/requestApproval": {
    kind: "command",
    threadId: "$THREAD",
    turnId: "$TURN",
    itemId: "cmd_1",
    startedAtMs: 0,
    environmentId: null,
    command: "rm -rf build",
    cwd: "/workspace"
  },
  "item/fileChange/requestApproval": {
    threadId: "$THREAD",
    turnId: "$TURN",
    itemId: "patch_1",
    startedAtMs: 0,
    reason: "write outside the workspace"
  },
  "item/tool/requestUserInput": {
    threadId: "$THREAD",
    turnId: "$TURN",
    itemId: "ask_1",
    isBlocking: true,
    autoResolutionMs: null,
    questions: [{
      id: "color",
      header: "Color",
      question: "Which color?",
      isOther: false,
      isSecret: false,
      options: [{ label: "red", description: "Red" }, { label: "blue", description: "Blue" }]
    }]
  },
  "mcpServer/elicitation/request": {
    threadId: "$THREAD",
    turnId: "$TURN",
    serverName: "docs",
    mode: "form",
    _meta: null,
    message: "Sign in to docs?",
    requestedSchema: { type: "object", properties: {} }
  },
  "item/permissions/requestApproval": {
    threadId: "$THREAD",
    turnId: "$TURN",
    itemId: "perm_1",
    environmentId: null,
    startedAtMs: 0,
    cwd: "/workspace",
    reason: "needs network",
    permissions: { network: { enabled: true }, fileSystem: null }
  },
  "item/tool/call": {
    threadId: "$THREAD",
    turnId: "$TURN",
    callId: "call_1",
    namespace: null,
    tool: "lookup_ticket",
    arguments: { id: "T-1" }
  },
  "account/chatgptAuthTokens/refresh": { reason: "unauthorized", previousAccountId: null },
  "attestation/generate": {},
  "currentTime/read": { threadId: "$THREAD" },
  "applyPatchApproval": {
    conversationId: "$THREAD",
    callId: "patch_2",
    fileChanges: { "a.txt": { type: "add", content: "a" } },
    reason: null,
    grantRoot: null
  },
  "execCommandApproval": {
    conversationId: "$THREAD",
    callId: "exec_2",
    approvalId: null,
    command: ["ls"],
    cwd: "/workspace",
    reason: null,
    parsedCmd: []
  }
}

const methods = Object.keys(examples) as Array<Method>

/** The answers the fake reported, in order. */
interface Answered {
  readonly method: Method
  readonly result?: unknown
  readonly error?: { readonly code: number; readonly message: string } | null
  readonly withdrawn?: boolean
}

let marker = ""
const pools: Array<CodexPromiseWorkerPool> = []

afterEach(async () => {
  for (const pool of pools.splice(0)) await within(pool.shutdown(), "pool shutdown", 10_000).catch(() => {})
  await killByMarker(marker)
})

const setup = (
  requests: ReadonlyArray<{ readonly method: Method; readonly params?: unknown; readonly withdrawAfterMs?: number }>,
  options: Omit<CodexProviderOptions, "pool"> = {},
  flags: ReadonlyArray<string> = []
) => {
  marker = newMarker()
  const list = requests.map((r) => ({ params: examples[r.method], ...r }))
  const pool = createCodexWorkerPool(
    fakePoolOptions(marker, [`--server-requests=${JSON.stringify(list)}`, "--delta-delay-ms=1", ...flags], {
      poolSize: 1
    })
  )
  pools.push(pool)
  const answered: Array<Answered> = []
  const late: Array<unknown> = []
  const listening = new Set<unknown>()
  const releases: Array<string> = []
  const model = createCodexProvider({
    pool: {
      acquire: async (acquireOptions) => {
        const worker = await pool.acquire(acquireOptions)
        if (!listening.has(worker)) {
          listening.add(worker)
          worker.onMessage((message: IncomingMessage) => {
            if (message.method === "fake/serverRequestAnswered") answered.push(message.params as Answered)
            if (message.method === "fake/lateResponse") late.push(message.params)
          })
        }
        return worker
      },
      release: (worker) => {
        releases.push("released")
        pool.release(worker)
      },
      invalidate: (worker) => {
        releases.push("invalidated")
        return pool.invalidate(worker)
      }
    },
    threadDefaults: { ephemeral: true },
    ...options
  })("fake-model")
  return { pool, model, answered, late, releases }
}

const shutdownAndCheck = async (pool: CodexPromiseWorkerPool) => {
  await within(pool.shutdown(), "pool shutdown", 10_000)
  expect(liveByMarker(marker)).toEqual([])
}

describe("AI SDK model: server requests (fake app-server)", () => {
  it("every server request of the pinned protocol gets its schema's answer by default, and the turn completes", async () => {
    const { pool, model, answered, releases } = setup(methods.map((method) => ({ method })))
    const before = Math.floor(Date.now() / 1000)
    const result = await within(generateText({ model, prompt: "hello" }), "the call", 10_000)
    expect(result.finishReason).toBe("stop")
    expect(result.text).toMatch(/^echo: hello/)
    const expected: { readonly [M in Method]: CodexProtocol.ServerRequestResult<M> | "error" } = {
      "item/commandExecution/requestApproval": { decision: "decline" },
      "item/fileChange/requestApproval": { decision: "decline" },
      "item/tool/requestUserInput": { answers: {} },
      "mcpServer/elicitation/request": { action: "decline", content: null, _meta: null },
      "item/permissions/requestApproval": { permissions: {}, scope: "turn" },
      "item/tool/call": {
        success: false,
        contentItems: [{
          type: "inputText",
          text: "The tool \"lookup_ticket\" is not available: the AI SDK provider has no implementation of it."
        }]
      },
      "account/chatgptAuthTokens/refresh": "error",
      "attestation/generate": "error",
      "currentTime/read": { currentTimeAt: 0 },
      "applyPatchApproval": { decision: { denied: { rejection: "Declined by the client." } } },
      "execCommandApproval": { decision: { denied: { rejection: "Declined by the client." } } }
    }
    expect(answered.map((a) => a.method)).toEqual(methods)
    for (const answer of answered) {
      const want = expected[answer.method]
      if (want === "error") {
        expect(answer.result).toBeNull()
        expect(answer.error).toMatchObject({ code: -32000, message: expect.stringContaining(answer.method) })
      } else if (answer.method === "currentTime/read") {
        const { currentTimeAt } = answer.result as CodexProtocol.ServerRequestResult<"currentTime/read">
        expect(currentTimeAt).toBeGreaterThanOrEqual(before)
        expect(currentTimeAt).toBeLessThanOrEqual(Math.floor(Date.now() / 1000))
      } else {
        expect(answer.error).toBeNull()
        expect(answer.result).toEqual(want)
      }
    }
    expect(releases).toEqual(["released"])
    await shutdownAndCheck(pool)
  })

  it("the callbacks answer their requests, each with the typed params", async () => {
    const seen: Array<string> = []
    const { pool, model, answered } = setup(
      [
        { method: "item/commandExecution/requestApproval" },
        { method: "item/fileChange/requestApproval" },
        { method: "execCommandApproval" },
        { method: "applyPatchApproval" },
        { method: "item/permissions/requestApproval" },
        { method: "item/tool/requestUserInput" },
        { method: "mcpServer/elicitation/request" },
        { method: "account/chatgptAuthTokens/refresh" }
      ],
      {
        approvals: (request) => {
          switch (request.method) {
            case "item/commandExecution/requestApproval":
              seen.push(`command ${request.params.command}`)
              return "accept"
            case "item/fileChange/requestApproval":
              seen.push(`file change ${request.params.reason}`)
              return "acceptForSession"
            case "execCommandApproval":
              seen.push(`legacy command ${request.params.command.join(" ")}`)
              return "accept"
            case "applyPatchApproval":
              seen.push(`legacy patch ${Object.keys(request.params.fileChanges).join(",")}`)
              return "cancel"
          }
        },
        permissions: (params) => {
          seen.push(`permissions ${params.reason}`)
          return { permissions: { network: { enabled: true } }, scope: "session" }
        },
        userInput: async (params) => {
          seen.push(`questions ${params.questions.map((q) => q.id).join(",")}`)
          return { answers: { color: { answers: ["blue"] } } }
        },
        elicitation: (params) => {
          seen.push(`elicitation ${params.serverName}`)
          return { action: "accept", content: { ok: true }, _meta: null }
        },
        chatgptAuthTokens: () => ({ accessToken: "token", chatgptAccountId: "acct", chatgptPlanType: null })
      }
    )
    await within(generateText({ model, prompt: "hello" }), "the call", 10_000)
    expect(seen).toEqual([
      "command rm -rf build",
      "file change write outside the workspace",
      "legacy command ls",
      "legacy patch a.txt",
      "permissions needs network",
      "questions color",
      "elicitation docs"
    ])
    expect(answered.map((a) => a.result)).toEqual([
      { decision: "accept" },
      { decision: "acceptForSession" },
      { decision: "approved" },
      { decision: "abort" },
      { permissions: { network: { enabled: true } }, scope: "session" },
      { answers: { color: { answers: ["blue"] } } },
      { action: "accept", content: { ok: true }, _meta: null },
      { accessToken: "token", chatgptAccountId: "acct", chatgptPlanType: null }
    ])
    await shutdownAndCheck(pool)
  })

  it("an approvals answer that is not a decision is declined and reported as an error", async () => {
    const { pool, model, answered } = setup([{ method: "item/commandExecution/requestApproval" }], {
      approvals: () => "yes please" as never
    })
    const result = streamText({ model, prompt: "hello", onError: () => {} })
    const errors: Array<unknown> = []
    for await (const part of result.fullStream) if (part.type === "error") errors.push(part.error)
    expect(answered.map((a) => a.result)).toEqual([{ decision: "decline" }])
    expect(String(errors[0])).toMatch(/approvals returned "yes please"/)
    await shutdownAndCheck(pool)
  })

  it("a request codex withdraws aborts its callback and gets no late answer", async () => {
    let aborted = false
    const { pool, model, answered, late } = setup(
      [{ method: "item/commandExecution/requestApproval", withdrawAfterMs: 100 }],
      {
        approvals: (_request, { signal }) =>
          new Promise((resolve) => {
            signal.addEventListener("abort", () => {
              aborted = true
              // Answering after the withdrawal must not reach codex.
              resolve("accept")
            })
          })
      }
    )
    const result = await within(generateText({ model, prompt: "hello" }), "the call", 10_000)
    expect(result.finishReason).toBe("stop")
    expect(aborted).toBe(true)
    expect(answered).toEqual([{ method: "item/commandExecution/requestApproval", id: 0, withdrawn: true }])
    // A second call on the same worker: a late answer to the first would show up by now.
    await within(generateText({ model, prompt: "again" }), "the second call", 10_000)
    expect(late).toEqual([])
    await shutdownAndCheck(pool)
  })

  it("an abort while a request waits for its callback answers it with the default, interrupts, and the worker serves the next call", async () => {
    const { pool, model, answered, releases } = setup([{ method: "item/commandExecution/requestApproval" }], {
      approvals: () => new Promise(() => {}) // a human who never answers
    }, ["--deltas=2"])
    const controller = new AbortController()
    const result = streamText({ model, prompt: "hello", abortSignal: controller.signal })
    const reading = (async () => {
      for await (const _part of result.fullStream) {
        // read to the end
      }
    })()
    await until(() => pool.stats().busy === 1, "the lease", 10_000)
    // The request is out once the fake waits: give it a moment to arrive, bounded.
    await new Promise((resolve) => setTimeout(resolve, 200))
    controller.abort()
    await within(reading, "the aborted stream", 10_000)
    await until(() => releases.length > 0, "the release", 10_000)
    expect(releases).toEqual(["released"])
    expect(answered.map((a) => a.result)).toEqual([{ decision: "decline" }])
    // The same worker goes on: its next turn asks again and completes.
    const next = await within(
      createCodexProvider({ pool, threadDefaults: { ephemeral: true } })("fake-model").doGenerate({
        prompt: [{ role: "user", content: [{ type: "text", text: "next" }] }]
      }),
      "the next call",
      10_000
    )
    expect(next.finishReason.unified).toBe("stop")
    expect(pool.stats()).toMatchObject({ created: 1, busy: 0 })
    await shutdownAndCheck(pool)
  })
})

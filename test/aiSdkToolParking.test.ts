/**
 * AI SDK function tools across steps (`src/ai-sdk/toolParking.ts`,
 * `src/ai-sdk/turn.ts`): the call's tools are offered to Codex as dynamic
 * tools on `thread/start`; Codex's call of one ends the step with
 * `tool-calls` and parks the turn on its lease; the next call of the
 * conversation brings the results and continues the same turn on the same
 * worker.
 *
 * Fast tests run the real pool over in-process fake workers
 * (`createTestCodexWorkerPool`) whose script behaves as codex 0.169 was seen
 * to (by the real-binary tests below and test/testing/ModelServer.codex.test.ts):
 * for each model response it sends `rawResponseItem/completed` per function
 * call (on a thread started with `experimentalRawEvents`), `item/started`
 * and the `item/tool/call` request per call, all before any answer, and
 * `rawResponse/completed` (which real codex may send before the requests:
 * `completedFirst`); it waits for every answer, then goes on.
 *
 * What it pins: the tools on `thread/start`; the step's parts (a `tool-call`
 * that is neither provider-executed nor dynamic, finish `tool-calls`); one
 * step for the calls of one response; resume on the same lease (no acquire,
 * `stats().parked`, the gauge); a call that comes after its step ended; the
 * grace for an announced call that never comes; client-side tools (no
 * `execute`); the bound (`toolResultTimeoutMs`): interrupt, answer, release,
 * and a later result starting a new turn with it as text; abort and crash
 * while parked; a late `turn/completed` of the interrupted turn; a
 * conversation that moves on; a queued call that waits through both steps.
 *
 * The real-binary tests (last describe) prove the same against codex-cli
 * 0.169.0 and the offline model server. Process hygiene there: each test
 * marks its processes, uses a fresh CODEX_HOME, shuts its pool down and
 * checks /proc for survivors.
 *
 * Timing: the fake pool needs no waits; the provider's own timers
 * (`toolResultTimeoutMs`, the announced-call grace) are real and short, and
 * every wait on them is bounded with `until` / `within`.
 */
import type { LanguageModelV3, LanguageModelV3CallOptions, LanguageModelV3StreamPart } from "@ai-sdk/provider"
import { generateText, jsonSchema, type ModelMessage, stepCountIs, streamText, type Tool, tool } from "ai"
import { Effect, Metric } from "effect"
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest"
import { type CodexPoolLike, createCodexProvider, type CodexProviderOptions } from "../src/ai-sdk/index.ts"
import { CodexLanguageModel } from "../src/ai-sdk/model.ts"
import { ToolParking, toolResultAnswer } from "../src/ai-sdk/toolParking.ts"
import { ANNOUNCED_CALL_GRACE_MS, type Turn } from "../src/ai-sdk/turn.ts"
import type { CodexPromiseWorkerPool, CodexWorkerHandle } from "../src/CodexPromisePool.ts"
import { PoolOptionsError } from "../src/errors.ts"
import { createCodexWorkerPool } from "../src/node.ts"
import { codexEnv, type CodexHome, makeCodexHome } from "../src/testing/codexConfig.ts"
import type { FakeWorker, MethodHandler } from "../src/testing/FakeCodexWorker.ts"
import { type ModelServer, startModelServer } from "../src/testing/ModelServer.ts"
import * as Reply from "../src/testing/Reply.ts"
import { createTestCodexWorkerPool, type TestCodexPromiseWorkerPool } from "../src/testing/TestCodexWorkerPool.ts"
import { textTurns, type TurnRequest as FakeTurn } from "../src/testing/textTurns.ts"
import {
  codexBinaryPath,
  findMarkedProcesses,
  killMarkedProcesses,
  makeMarker,
  markedCodexArgs
} from "./helpers/codex.ts"
import { until as untilMs, within as withinMs } from "./helpers/wait.ts"

const WAIT_MS = 10_000
const within = <A>(promise: PromiseLike<A>, what: string, ms = WAIT_MS) => withinMs(promise, what, ms)
const until = (predicate: () => boolean, what: string, ms = WAIT_MS) => untilMs(predicate, what, ms)

// -----------------------------------------------------------------------------
// A codex-like script of tool calls for fake workers
// -----------------------------------------------------------------------------

/** One call of a tool in a scripted model response. */
interface FakeCall {
  readonly tool: string
  readonly args: unknown
  readonly callId: string
  /** The arguments as the model sent them, when not `JSON.stringify(args)` (e.g. not JSON: no request follows). */
  readonly rawArguments?: string
  /** Announced (raw event) but its request is never sent, as codex does for arguments it cannot parse. */
  readonly withhold?: boolean
  /** The request is sent only once this settles (after `rawResponse/completed`). */
  readonly after?: Promise<void>
}

/** One model response of a scripted turn. */
interface FakeResponse {
  readonly calls: ReadonlyArray<FakeCall>
  /** `rawResponse/completed` before the requests (real codex's race). */
  readonly completedFirst?: boolean
}

interface ToolScript {
  readonly script: { readonly methods: Readonly<Record<string, MethodHandler>> }
  /** The params of every `thread/start`, in order. */
  readonly threadStarts: Array<any>
  /** The answers the client gave to `item/tool/call`, in order. */
  readonly answers: Array<{ readonly callId: string; readonly result: any }>
  /** The texts of every `turn/start`, in order. */
  readonly turnTexts: Array<string>
}

/**
 * A fake-worker script: each turn runs `responses(turn)` (one element per
 * model response), waiting for the client's answers to each response's
 * calls, then answers with `final` (default: the answers' texts).
 */
const toolScript = (
  responses: (turn: FakeTurn & { readonly index: number }) => ReadonlyArray<FakeResponse>,
  options: {
    readonly final?: (answers: ReadonlyArray<{ readonly callId: string; readonly result: any }>) => string
    /** Before answering `turn/start`, send a `turn/completed` of the thread's previous turn (a late one). */
    readonly staleCompleted?: boolean
  } = {}
): ToolScript => {
  const threadStarts: Array<any> = []
  const answers: Array<{ callId: string; result: any }> = []
  const turnTexts: Array<string> = []
  const rawThreads = new Set<string>()
  const lastTurn = new Map<string, string>()
  let turns = 0
  const base = textTurns({
    deltas: 2,
    reply: async (turn) => {
      const { threadId, turnId, worker } = turn
      const raw = rawThreads.has(threadId)
      const mine: Array<{ callId: string; result: any }> = []
      let responseIndex = 0
      for (const response of responses({ ...turn, index: ++turns })) {
        responseIndex++
        const pending: Array<Promise<void>> = []
        const send = async (call: FakeCall) => {
          if (call.after !== undefined) await call.after
          if (worker.closed) return
          worker.notify("item/started", {
            threadId,
            turnId,
            item: {
              type: "dynamicToolCall",
              id: call.callId,
              namespace: null,
              tool: call.tool,
              arguments: call.args,
              status: "inProgress",
              contentItems: null,
              success: null,
              durationMs: null
            }
          })
          try {
            const result = await worker.request("item/tool/call", {
              threadId,
              turnId,
              callId: call.callId,
              namespace: null,
              tool: call.tool,
              arguments: call.args
            })
            mine.push({ callId: call.callId, result })
            answers.push({ callId: call.callId, result })
          } catch {
            // the worker closed
          }
        }
        const completed = () => {
          if (raw) {
            worker.notify("rawResponse/completed", {
              threadId,
              turnId,
              responseId: `resp_${responseIndex}`,
              usage: null,
              usageMetadata: null
            })
          }
        }
        if (response.completedFirst === true) {
          for (const call of response.calls) announce(worker, raw, threadId, turnId, call)
          completed()
          for (const call of response.calls) if (call.withhold !== true) pending.push(send(call))
        } else {
          for (const call of response.calls) {
            announce(worker, raw, threadId, turnId, call)
            if (call.withhold !== true) pending.push(send(call))
          }
          completed()
        }
        await Promise.all(pending)
      }
      return options.final?.(mine) ?? `Done: ${mine.map((a) => a.result?.contentItems?.[0]?.text).join(", ")}`
    }
  })
  const methods = base.methods!
  return {
    threadStarts,
    answers,
    turnTexts,
    script: {
      methods: {
        ...methods,
        "thread/start": (params, worker) => {
          threadStarts.push(params)
          const result = methods["thread/start"]!(params, worker) as { thread: { id: string } }
          if ((params as { experimentalRawEvents?: boolean }).experimentalRawEvents === true) rawThreads.add(result.thread.id)
          return result
        },
        "turn/start": (params, worker) => {
          const p = params as { threadId: string; input: Array<{ type: string; text?: string }> }
          turnTexts.push(p.input.filter((i) => i.type === "text").map((i) => i.text).join("\n"))
          const previous = lastTurn.get(p.threadId)
          if (options.staleCompleted === true && previous !== undefined) {
            // A late turn/completed of the thread's previous turn, before the new turn's id is known.
            worker.notify("turn/completed", {
              threadId: p.threadId,
              turn: { id: previous, status: "interrupted", items: [], error: null }
            })
          }
          const result = methods["turn/start"]!(params, worker) as { turn: { id: string } }
          lastTurn.set(p.threadId, result.turn.id)
          return result
        }
      }
    }
  }
}

const announce = (worker: FakeWorker, raw: boolean, threadId: string, turnId: string, call: FakeCall) => {
  if (!raw) return
  worker.notify("rawResponseItem/completed", {
    threadId,
    turnId,
    item: {
      type: "function_call",
      name: call.tool,
      arguments: call.rawArguments ?? JSON.stringify(call.args),
      call_id: call.callId
    }
  })
}

// -----------------------------------------------------------------------------
// Setup
// -----------------------------------------------------------------------------

/** The pool as the model sees it, logging acquires and ends of leases (and forwarding `markParked`). */
interface Observed extends CodexPoolLike {
  readonly log: Array<string>
}

const observe = (pool: CodexPromiseWorkerPool, log: Array<string>): Observed => ({
  log,
  acquire: async (options) => {
    const worker = await pool.acquire(options)
    log.push(`acquired ${worker.pid}`)
    return worker
  },
  release: (worker) => {
    log.push(`released ${worker.pid}`)
    pool.release(worker)
  },
  invalidate: (worker) => {
    log.push(`invalidated ${worker.pid}`)
    return pool.invalidate(worker)
  },
  markParked: (worker: CodexWorkerHandle, parked: boolean) => pool.markParked(worker, parked)
})

const testPools: Array<TestCodexPromiseWorkerPool> = []
afterEach(async () => {
  for (const pool of testPools.splice(0)) await within(pool.shutdown(), "test pool shutdown")
})

/**
 * A test pool running `tools`, and the model over it. `graceMs` replaces the
 * announced-call grace (not a public option: the model is then built with
 * the provider's settings by hand).
 */
const setup = (
  tools: ToolScript,
  providerOptions: Omit<CodexProviderOptions, "pool"> = {},
  { graceMs }: { readonly graceMs?: number } = {}
) => {
  // A test that ends with a parked turn must not hold up the shutdown for long.
  const pool = createTestCodexWorkerPool({ poolSize: 1, script: tools.script, shutdownTimeoutMs: 200 })
  testPools.push(pool)
  const log: Array<string> = []
  const observed = observe(pool, log)
  const model: LanguageModelV3 = graceMs === undefined
    ? createCodexProvider({ pool: observed, threadDefaults: { ephemeral: true }, ...providerOptions })("fake-model")
    : new CodexLanguageModel("fake-model", {
      pool: observed,
      loadedThreads: new WeakMap(),
      threadDefaults: { ephemeral: true },
      interruptTimeoutMs: 5_000,
      serverRequestTimeoutMs: 300_000,
      toolResultTimeoutMs: 60_000,
      announcedCallGraceMs: graceMs,
      parking: new ToolParking<Turn>(),
      handlers: {},
      toolCalls: undefined,
      imageInput: "localImage",
      callDefaults: {},
      streamToolOutput: true
    })
  return { pool, model, log, ...tools }
}

const lookup = { type: "function" as const, name: "lookup", description: "Looks a ticket up", inputSchema: { type: "object", properties: { id: { type: "string" } } } }

const userPrompt = (text: string): LanguageModelV3CallOptions["prompt"] => [{ role: "user", content: [{ type: "text", text }] }]

/** Reads a stream to its end. */
const read = (stream: ReadableStream<LanguageModelV3StreamPart>): Promise<Array<LanguageModelV3StreamPart>> =>
  within(
    (async () => {
      const parts: Array<LanguageModelV3StreamPart> = []
      const reader = stream.getReader()
      for (;;) {
        const { done, value } = await reader.read()
        if (done) return parts
        parts.push(value)
      }
    })(),
    "the step's stream to end"
  )

const doStream = async (model: LanguageModelV3, options: Partial<LanguageModelV3CallOptions> & Pick<LanguageModelV3CallOptions, "prompt">) =>
  read((await model.doStream({ tools: [lookup], ...options })).stream)

/** The prompt of the next step: `prompt`, the step's tool calls as an assistant message, and their results. */
const nextPrompt = (
  prompt: LanguageModelV3CallOptions["prompt"],
  parts: ReadonlyArray<LanguageModelV3StreamPart>,
  results: Record<string, string>
): LanguageModelV3CallOptions["prompt"] => {
  const calls = parts.filter((p): p is Extract<LanguageModelV3StreamPart, { type: "tool-call" }> => p.type === "tool-call")
  return [
    ...prompt,
    {
      role: "assistant",
      content: calls.map((call) => ({
        type: "tool-call" as const,
        toolCallId: call.toolCallId,
        toolName: call.toolName,
        input: JSON.parse(call.input),
        ...(call.providerMetadata === undefined ? {} : { providerOptions: call.providerMetadata })
      }))
    },
    {
      role: "tool",
      content: calls.map((call) => ({
        type: "tool-result" as const,
        toolCallId: call.toolCallId,
        toolName: call.toolName,
        output: { type: "text" as const, value: results[call.toolCallId] ?? "?" }
      }))
    }
  ]
}

const finishOf = (parts: ReadonlyArray<LanguageModelV3StreamPart>) =>
  parts.find((p): p is Extract<LanguageModelV3StreamPart, { type: "finish" }> => p.type === "finish")
const callsOf = (parts: ReadonlyArray<LanguageModelV3StreamPart>) =>
  parts.filter((p): p is Extract<LanguageModelV3StreamPart, { type: "tool-call" }> => p.type === "tool-call")
const textOf = (parts: ReadonlyArray<LanguageModelV3StreamPart>) =>
  parts.flatMap((p) => (p.type === "text-delta" ? [p.delta] : [])).join("")

const call = (callId: string, id: string, extra: Partial<FakeCall> = {}): FakeCall => ({
  tool: "lookup",
  args: { id },
  callId,
  ...extra
})

const ok = (text: string) => ({ success: true, contentItems: [{ type: "inputText", text }] })

// -----------------------------------------------------------------------------
// Fast tests over fake workers
// -----------------------------------------------------------------------------

describe("AI SDK function tools: offered on thread/start", () => {
  it("function tools become dynamic tools with raw events; threadDefaults tools of the same name give way", async () => {
    const tools = toolScript(() => [])
    const { model, threadStarts } = setup(tools, {
      threadDefaults: {
        ephemeral: true,
        dynamicTools: [
          { type: "function", name: "lookup", description: "old", inputSchema: {} },
          { type: "function", name: "other", description: "kept", inputSchema: {} }
        ]
      }
    })
    const parts = await doStream(model, { prompt: userPrompt("hi") })
    expect(finishOf(parts)?.finishReason).toEqual({ unified: "stop", raw: "completed" })
    expect(threadStarts).toHaveLength(1)
    expect(threadStarts[0]).toMatchObject({
      experimentalRawEvents: true,
      dynamicTools: [
        { type: "function", name: "other", description: "kept", inputSchema: {} },
        { type: "function", name: "lookup", description: "Looks a ticket up", inputSchema: lookup.inputSchema }
      ]
    })
  })

  it("no tools, or toolChoice none: thread/start is unchanged; provider tools and a forced choice are warnings", async () => {
    const tools = toolScript(() => [])
    const { model, threadStarts } = setup(tools)
    await doStream(model, { prompt: userPrompt("a"), tools: [] })
    await doStream(model, { prompt: userPrompt("b"), toolChoice: { type: "none" } })
    const parts = await doStream(model, {
      prompt: userPrompt("c"),
      tools: [lookup, { type: "provider", id: "openai.web_search", name: "web_search", args: {} }],
      toolChoice: { type: "required" }
    })
    expect(threadStarts[0]).not.toHaveProperty("dynamicTools")
    expect(threadStarts[0]).not.toHaveProperty("experimentalRawEvents")
    expect(threadStarts[1]).not.toHaveProperty("dynamicTools")
    expect(threadStarts[2]).toMatchObject({ dynamicTools: [{ name: "lookup" }] })
    const start = parts[0]
    expect(start?.type === "stream-start" && start.warnings).toEqual([
      expect.objectContaining({ type: "unsupported", feature: "provider-defined tool openai.web_search" }),
      expect.objectContaining({ type: "unsupported", feature: "toolChoice" })
    ])
  })

  it("toolResultTimeoutMs is validated: not a positive timer delay fails with PoolOptionsError naming it", () => {
    const pool = { acquire: async () => ({}) as any, release: () => {}, invalidate: async () => {} }
    for (const bad of [0, -1, Infinity, Number.NaN, 2 ** 31, "5"]) {
      expect(() => createCodexProvider({ pool, toolResultTimeoutMs: bad as number })).toThrow(PoolOptionsError)
      expect(() => createCodexProvider({ pool, toolResultTimeoutMs: bad as number })).toThrow(/toolResultTimeoutMs/)
    }
    expect(() => createCodexProvider({ pool, toolResultTimeoutMs: 1 })).not.toThrow()
  })
})

describe("AI SDK function tools: park and resume", () => {
  it("a call of an AI SDK tool ends the step with tool-calls and parks; the next step continues the turn on the same lease", async () => {
    const tools = toolScript(() => [{ calls: [call("call_1", "T-7")] }])
    const { pool, model, log, answers } = setup(tools)
    const prompt = userPrompt("is T-7 open?")
    const step1 = await doStream(model, { prompt })
    expect(callsOf(step1)).toEqual([{
      type: "tool-call",
      toolCallId: "call_1",
      toolName: "lookup",
      input: "{\"id\":\"T-7\"}",
      providerMetadata: { codex: { threadId: expect.any(String), itemId: "call_1" } }
    }])
    const finish1 = finishOf(step1)!
    expect(finish1.finishReason).toEqual({ unified: "tool-calls", raw: "tool-calls" })
    expect(finish1.providerMetadata?.["codex"]).toMatchObject({ threadId: expect.any(String), turnId: expect.any(String) })
    // Parked: the lease is held, counted as parked, and codex still waits for the answer.
    expect(pool.stats()).toMatchObject({ busy: 1, parked: 1, idle: 0 })
    expect(answers).toEqual([])
    expect(log).toHaveLength(1)

    const step2 = await doStream(model, { prompt: nextPrompt(prompt, step1, { call_1: "T-7 is open" }) })
    expect(step2[0]).toEqual({ type: "stream-start", warnings: [] })
    expect(step2.find((p) => p.type === "response-metadata")).toMatchObject({ id: finish1.providerMetadata?.["codex"]?.["turnId"] })
    expect(answers).toEqual([{ callId: "call_1", result: ok("T-7 is open") }])
    expect(textOf(step2)).toBe("Done: T-7 is open")
    expect(finishOf(step2)!.finishReason).toEqual({ unified: "stop", raw: "completed" })
    // One lease for both steps.
    const pid = pool.fakes.all[0]!.pid
    expect(log).toEqual([`acquired ${pid}`, `released ${pid}`])
    expect(pool.stats()).toMatchObject({ busy: 0, parked: 0, idle: 1 })
    expect(pool.fakes.all[0]!.requestsOf("turn/start")).toHaveLength(1)
  })

  it("streamText with execute runs both steps on one lease; usage is per step; the tool call carries the thread", async () => {
    const tools = toolScript(() => [{ calls: [call("call_1", "T-7")] }])
    const { pool, model, log } = setup(tools)
    const executed: Array<unknown> = []
    const result = streamText({
      model,
      prompt: "is T-7 open?",
      tools: {
        lookup: tool({
          inputSchema: jsonSchema<{ id: string }>({ type: "object", properties: { id: { type: "string" } } }),
          execute: async (input) => {
            executed.push(input)
            expect(pool.stats()).toMatchObject({ busy: 1, parked: 1 })
            return { id: input.id, status: "open" }
          }
        })
      },
      stopWhen: stepCountIs(3)
    })
    expect(await within(result.text, "the text")).toBe("Done: {\"id\":\"T-7\",\"status\":\"open\"}")
    const steps = await result.steps
    expect(steps.map((s) => s.finishReason)).toEqual(["tool-calls", "stop"])
    expect(executed).toEqual([{ id: "T-7" }])
    // The fake reports usage once, at the end of the turn: the last step has it.
    expect(steps[0]!.usage.inputTokens).toBeUndefined()
    expect(steps[1]!.usage.inputTokens).toBe(10)
    const threadId = steps[0]!.providerMetadata?.["codex"]?.["threadId"]
    expect(typeof threadId).toBe("string")
    expect(JSON.stringify(steps[0]!.response.messages)).toContain(String(threadId))
    expect(log).toHaveLength(2)
    expect(pool.stats()).toMatchObject({ busy: 0, parked: 0 })
  })

  it("generateText with execute works the same (doGenerate)", async () => {
    const tools = toolScript(() => [{ calls: [call("call_1", "T-8")] }])
    const { pool, model } = setup(tools)
    const result = await within(
      generateText({
        model,
        prompt: "T-8?",
        tools: {
          lookup: tool({
            inputSchema: jsonSchema<{ id: string }>({ type: "object" }),
            execute: async ({ id }) => `${id} closed`
          })
        },
        stopWhen: stepCountIs(3)
      }),
      "generateText"
    )
    expect(result.steps.map((s) => s.finishReason)).toEqual(["tool-calls", "stop"])
    expect(result.text).toBe("Done: T-8 closed")
    expect(pool.stats()).toMatchObject({ busy: 0, parked: 0 })
  })

  it("several calls of one response are one step, also when codex completes the response before sending them", async () => {
    for (const completedFirst of [false, true]) {
      const tools = toolScript(() => [{ calls: [call("c1", "A"), call("c2", "B")], completedFirst }])
      const { pool, model, answers } = setup(tools)
      const prompt = userPrompt("A and B")
      const step1 = await doStream(model, { prompt })
      expect(callsOf(step1).map((c) => c.toolCallId)).toEqual(["c1", "c2"])
      expect(finishOf(step1)!.finishReason.unified).toBe("tool-calls")
      const step2 = await doStream(model, { prompt: nextPrompt(prompt, step1, { c1: "a", c2: "b" }) })
      expect(answers).toEqual([{ callId: "c1", result: ok("a") }, { callId: "c2", result: ok("b") }])
      expect(textOf(step2)).toBe("Done: a, b")
      expect(pool.stats()).toMatchObject({ busy: 0, parked: 0 })
    }
  })

  it("streamText executes the calls of one step together (one step, two tool calls)", async () => {
    const tools = toolScript(() => [{ calls: [call("c1", "A"), call("c2", "B")], completedFirst: true }])
    const { model } = setup(tools)
    const result = streamText({
      model,
      prompt: "A and B",
      tools: { lookup: tool({ inputSchema: jsonSchema<{ id: string }>({ type: "object" }), execute: async ({ id }) => `#${id}` }) },
      stopWhen: stepCountIs(5)
    })
    expect(await within(result.text, "the text")).toBe("Done: #A, #B")
    const steps = await result.steps
    expect(steps.map((s) => s.toolCalls.length)).toEqual([2, 0])
  })

  it("a call that reaches the client after its step ended opens the next step", async () => {
    let releaseB!: () => void
    const gate = new Promise<void>((resolve) => (releaseB = resolve))
    const tools = toolScript(() => [{ calls: [call("c1", "A"), call("c2", "B", { after: gate })], completedFirst: true }])
    const { pool, model, answers } = setup(tools, {}, { graceMs: 20 })
    const prompt = userPrompt("A then B")
    // B is announced: the step waits for it until the grace ends it without B.
    const step1 = await doStream(model, { prompt })
    expect(callsOf(step1).map((c) => c.toolCallId)).toEqual(["c1"])
    releaseB()
    const prompt2 = nextPrompt(prompt, step1, { c1: "a" })
    const step2 = await doStream(model, { prompt: prompt2 })
    // B came while parked: it is the next step's call, and that step ends at once on it.
    expect(callsOf(step2).map((c) => c.toolCallId)).toEqual(["c2"])
    expect(finishOf(step2)!.finishReason.unified).toBe("tool-calls")
    expect(answers).toEqual([{ callId: "c1", result: ok("a") }])
    const step3 = await doStream(model, { prompt: nextPrompt(prompt2, step2, { c2: "b" }) })
    expect(textOf(step3)).toBe("Done: a, b")
    expect(pool.stats()).toMatchObject({ busy: 0, parked: 0 })
  })

  it("an announced call that never arrives does not hold the step: it ends after the grace", async () => {
    const tools = toolScript(() => [{ calls: [call("c1", "A"), call("c2", "B", { withhold: true })] }])
    const { pool, model } = setup(tools, {}, { graceMs: 20 })
    const step1 = await doStream(model, { prompt: userPrompt("x") })
    expect(callsOf(step1).map((c) => c.toolCallId)).toEqual(["c1"])
    expect(pool.stats()).toMatchObject({ parked: 1 })
    expect(ANNOUNCED_CALL_GRACE_MS).toBe(1_000) // the provider's
  })

  it("a call whose arguments are not JSON is not waited for (codex answers it itself)", async () => {
    const tools = toolScript(() => [{
      calls: [call("c0", "bad", { rawArguments: "{not json", withhold: true }), call("c1", "A")]
    }])
    // A grace no test waits out: the step must end without it.
    const { model } = setup(tools, {}, { graceMs: 600_000 })
    const step1 = await doStream(model, { prompt: userPrompt("x") })
    expect(callsOf(step1).map((c) => c.toolCallId)).toEqual(["c1"])
  })

  it("a client-side tool (no execute): streamText ends on the call; a later call with the result continues the turn", async () => {
    const tools = toolScript(() => [{ calls: [call("call_9", "T-9")] }])
    const { pool, model, log } = setup(tools)
    // No execute: the caller answers (the AI SDK's typings want an output type for it).
    const askUser = { inputSchema: jsonSchema<{ id: string }>({ type: "object" }) } as Tool<{ id: string }, unknown>
    const first = streamText({ model, prompt: "T-9?", tools: { lookup: askUser } })
    expect(await within(first.finishReason, "the first call")).toBe("tool-calls")
    const calls = await first.toolCalls
    expect(calls).toMatchObject([{ toolCallId: "call_9", toolName: "lookup", input: { id: "T-9" } }])
    expect(calls[0]!.providerExecuted).toBeUndefined()
    expect(pool.stats()).toMatchObject({ busy: 1, parked: 1 })
    const messages: Array<ModelMessage> = [
      { role: "user", content: "T-9?" },
      ...(await first.response).messages,
      {
        role: "tool",
        content: [{ type: "tool-result", toolCallId: "call_9", toolName: "lookup", output: { type: "json", value: { open: true } } }]
      }
    ]
    const second = streamText({ model, messages, tools: { lookup: askUser } })
    expect(await within(second.text, "the second call")).toBe("Done: {\"open\":true}")
    expect(log).toHaveLength(2) // one acquire, one release
    expect(pool.stats()).toMatchObject({ busy: 0, parked: 0 })
  })

  it("the codex_worker_pool_parked gauge reads the parked leases of its pool", async () => {
    const tools = toolScript(() => [{ calls: [call("c1", "A")] }])
    const { pool, model } = setup(tools)
    /** The parked gauges of the live pools, by pool_id (this pool's is the one that reads 1 while parked). */
    const gauges = () =>
      Object.fromEntries(
        Effect.runSync(Metric.snapshot)
          .filter((s) => s.id === "codex_worker_pool_parked")
          .map((s) => [s.attributes?.["pool_id"], (s.state as { value: number }).value])
      )
    const prompt = userPrompt("x")
    const step1 = await doStream(model, { prompt })
    expect(pool.stats().parked).toBe(1)
    expect(Object.values(gauges())).toContain(1)
    const parkedIds = Object.entries(gauges()).filter(([, value]) => value === 1).map(([id]) => id)
    await doStream(model, { prompt: nextPrompt(prompt, step1, { c1: "a" }) })
    expect(pool.stats().parked).toBe(0)
    for (const id of parkedIds) expect(gauges()[id!]).toBe(0)
    await pool.shutdown()
    // Closing the pool removes its series.
    for (const id of parkedIds) expect(gauges()).not.toHaveProperty(id!)
  })

  it("markParked ignores a handle whose lease has ended, and a lease that ends while marked stops counting", async () => {
    const pool = createTestCodexWorkerPool({ poolSize: 1, script: textTurns() })
    testPools.push(pool)
    const worker = await pool.acquire()
    pool.markParked(worker, true)
    expect(pool.stats()).toMatchObject({ busy: 1, parked: 1 })
    pool.release(worker)
    expect(pool.stats()).toMatchObject({ busy: 0, parked: 0 })
    pool.markParked(worker, true)
    expect(pool.stats().parked).toBe(0)
  })
})

describe("AI SDK function tools: bounds, aborts, crashes", () => {
  it("a parked turn that gets no result in toolResultTimeoutMs is interrupted, its call answered, its worker released", async () => {
    const tools = toolScript(() => [{ calls: [call("c1", "A")] }], { staleCompleted: true })
    const { pool, model, log, answers, turnTexts } = setup(tools, { toolResultTimeoutMs: 50 })
    const prompt = userPrompt("slow tool")
    const step1 = await doStream(model, { prompt })
    expect(pool.stats()).toMatchObject({ busy: 1, parked: 1 })
    await until(() => pool.stats().busy === 0, "the timed-out turn's release")
    const fake = pool.fakes.all[0]!
    expect(answers).toEqual([{
      callId: "c1",
      result: {
        success: false,
        contentItems: [{
          type: "inputText",
          text: "No result for this tool call arrived within toolResultTimeoutMs (50 ms): the turn was interrupted."
        }]
      }
    }])
    expect(fake.requestsOf("turn/interrupt")).toHaveLength(1)
    expect(pool.stats()).toMatchObject({ parked: 0, idle: 1 })

    // The result comes later: a new turn on the same thread gets it as text. The fake sends the interrupted
    // turn's turn/completed again before the new turn starts: it does not end the new call.
    const step2 = await doStream(model, { prompt: nextPrompt(prompt, step1, { c1: "late answer" }) })
    expect(turnTexts[1]).toBe(`The tool call lookup with input {"id":"A"} (call id c1) returned: late answer`)
    const threads = fake.requestsOf("turn/start").map((p: any) => p.threadId)
    expect(threads).toHaveLength(2)
    expect(threads[1]).toBe(threads[0])
    // The script calls the tool again: the new turn parks in turn, and was not ended by the stale turn/completed.
    expect(finishOf(step2)!.finishReason.unified).toBe("tool-calls")
    expect(log.filter((l) => l.startsWith("acquired"))).toHaveLength(2)
  })

  it("abort while parked interrupts the turn, answers the call, and releases the worker, which serves the next call", async () => {
    const tools = toolScript((turn) => (turn.index === 1 ? [{ calls: [call("c1", "A")] }] : []))
    const { pool, model, answers } = setup(tools)
    const controller = new AbortController()
    await doStream(model, { prompt: userPrompt("x"), abortSignal: controller.signal })
    expect(pool.stats()).toMatchObject({ busy: 1, parked: 1 })
    controller.abort(new Error("user gave up"))
    await until(() => pool.stats().busy === 0, "the release after abort")
    expect(pool.stats().parked).toBe(0)
    expect(answers[0]!.result).toMatchObject({ success: false, contentItems: [{ text: expect.stringContaining("aborted") }] })
    expect(pool.fakes.all[0]!.requestsOf("turn/interrupt")).toHaveLength(1)
    const next = await doStream(model, { prompt: userPrompt("again") })
    expect(textOf(next)).toBe("Done: ")
    expect(pool.fakes.all).toHaveLength(1)
  })

  it("streamText aborted while its tool executes: the parked turn is interrupted and the worker released", async () => {
    const tools = toolScript(() => [{ calls: [call("c1", "A")] }])
    const { pool, model } = setup(tools)
    const controller = new AbortController()
    const result = streamText({
      model,
      prompt: "x",
      abortSignal: controller.signal,
      tools: {
        lookup: tool({
          inputSchema: jsonSchema<{ id: string }>({ type: "object" }),
          execute: async () => {
            controller.abort()
            return "never used"
          }
        })
      },
      stopWhen: stepCountIs(3)
    })
    const parts: Array<string> = []
    for await (const part of result.fullStream) parts.push(part.type)
    expect(parts).toContain("abort")
    await until(() => pool.stats().busy === 0, "the release after abort")
    expect(pool.stats().parked).toBe(0)
  })

  it("a worker that dies while parked is given back at once; a later result starts a new turn on another worker", async () => {
    const tools = toolScript((turn) => (turn.index === 1 ? [{ calls: [call("c1", "A")] }] : []))
    const { pool, model, log, turnTexts } = setup(tools)
    const prompt = userPrompt("x")
    const step1 = await doStream(model, { prompt })
    pool.fakes.all[0]!.crash()
    await until(() => pool.stats().busy === 0, "the crashed worker's release")
    expect(pool.stats().parked).toBe(0)
    const step2 = await doStream(model, { prompt: nextPrompt(prompt, step1, { c1: "late" }) })
    expect(textOf(step2)).toBe("Done: ")
    // The new worker resumes the thread (the fake's threads outlive a worker) and gets the result as text.
    expect(turnTexts[1]).toBe(`The tool call lookup with input {"id":"A"} (call id c1) returned: late`)
    expect(pool.fakes.all[1]!.requestsOf("thread/resume")).toHaveLength(1)
    expect(log.filter((l) => l.startsWith("acquired"))).toHaveLength(2)
    expect(pool.fakes.all).toHaveLength(2)
  })

  it("a conversation that goes on without the results stops the parked turn first; with poolSize 1 the next call gets its worker", async () => {
    const tools = toolScript((turn) => (turn.index === 1 ? [{ calls: [call("c1", "A")] }] : []))
    const { pool, model, answers } = setup(tools)
    const prompt = userPrompt("x")
    const step1 = await doStream(model, { prompt })
    const threadId = String(finishOf(step1)!.providerMetadata?.["codex"]?.["threadId"])
    const moved: LanguageModelV3CallOptions["prompt"] = [
      ...prompt,
      { role: "assistant", content: [{ type: "text", text: "let me check", providerOptions: { codex: { threadId } } }] },
      { role: "user", content: [{ type: "text", text: "never mind" }] }
    ]
    const next = await doStream(model, { prompt: moved })
    expect(textOf(next)).toBe("Done: ")
    expect(answers[0]!.result).toMatchObject({ success: false })
    expect(pool.fakes.all[0]!.requestsOf("turn/interrupt")).toHaveLength(1)
    expect(pool.fakes.all[0]!.requestsOf("turn/start").map((p: any) => p.threadId)).toEqual([threadId, threadId])
    expect(pool.stats()).toMatchObject({ busy: 0, parked: 0 })
  })

  it("with poolSize 1 a queued call waits through both steps of a parked conversation, then runs", async () => {
    const tools = toolScript((turn) => (turn.text.startsWith("A") ? [{ calls: [call("c1", "A")] }] : []))
    const { pool, model, log } = setup(tools)
    const prompt = userPrompt("A: tool please")
    const step1 = await doStream(model, { prompt })
    const queued = doStream(model, { prompt: userPrompt("B: plain") })
    await until(() => pool.stats().queued === 1, "B to queue")
    const step2 = await doStream(model, { prompt: nextPrompt(prompt, step1, { c1: "a" }) })
    expect(textOf(step2)).toBe("Done: a")
    const b = await queued
    expect(textOf(b)).toBe("Done: ")
    const pid = pool.fakes.all[0]!.pid
    expect(log).toEqual([`acquired ${pid}`, `released ${pid}`, `acquired ${pid}`, `released ${pid}`])
  })
})

describe("AI SDK function tools: tool results as Codex answers", () => {
  it("text, json, errors, denials and content parts become DynamicToolCallResponse items", () => {
    expect(toolResultAnswer({ type: "text", value: "hi" }).result).toEqual(ok("hi"))
    expect(toolResultAnswer({ type: "json", value: { a: 1 } }).result).toEqual(ok("{\"a\":1}"))
    expect(toolResultAnswer({ type: "error-text", value: "boom" }).result).toEqual({
      success: false,
      contentItems: [{ type: "inputText", text: "boom" }]
    })
    expect(toolResultAnswer({ type: "error-json", value: { e: 1 } }).result.success).toBe(false)
    expect(toolResultAnswer({ type: "execution-denied", reason: "no" }).result).toEqual({
      success: false,
      contentItems: [{ type: "inputText", text: "The execution of this tool call was denied: no" }]
    })
    const content = toolResultAnswer({
      type: "content",
      value: [
        { type: "text", text: "see" },
        { type: "image-data", data: "AAAA", mediaType: "image/png" },
        { type: "image-url", url: "https://example.com/a.png" },
        { type: "file-data", data: "BBBB", mediaType: "application/pdf" }
      ]
    })
    expect(content.result).toEqual({
      success: true,
      contentItems: [
        { type: "inputText", text: "see" },
        { type: "inputImage", imageUrl: "data:image/png;base64,AAAA" },
        { type: "inputImage", imageUrl: "https://example.com/a.png" },
        { type: "inputText", text: "[a file of type application/pdf was not sent]" }
      ]
    })
    expect(content.warnings).toMatchObject([{ type: "unsupported", feature: "tool result files of type application/pdf" }])
  })
})

// -----------------------------------------------------------------------------
// The real codex binary and the offline model server
// -----------------------------------------------------------------------------

const REAL_TIMEOUT_MS = 40_000

describe("AI SDK function tools over real codex", () => {
  let server: ModelServer
  let marker = ""
  let home: CodexHome
  const pools: Array<CodexPromiseWorkerPool> = []

  beforeAll(async () => {
    server = await startModelServer({
      respond: (request) => {
        const script = /\[tools:(\w+)\]/.exec(request.userText)?.[1]
        if (script === undefined) return undefined // the modes: "Echo: <text>"
        if (request.toolOutputs.length > 0) {
          return Reply.text(`Results: ${request.toolOutputs.map((o) => String(o.output)).join(" | ")}`, { deltas: 2 })
        }
        switch (script) {
          case "one":
            return Reply.functionCall("lookup", { id: "T-1" })
          case "two":
            return [Reply.text("Checking both."), Reply.functionCall("lookup", { id: "T-1" }), Reply.functionCall("lookup", { id: "T-2" })]
          default:
            return undefined
        }
      }
    })
  })

  afterAll(async () => {
    await server?.close()
  })

  beforeEach(() => {
    marker = makeMarker("parking")
    home = makeCodexHome()
  })

  afterEach(async () => {
    for (const pool of pools.splice(0)) await within(pool.shutdown(), "pool shutdown").catch(() => {})
    await killMarkedProcesses(marker)
    home.cleanup()
  })

  const realSetup = (providerOptions: Omit<CodexProviderOptions, "pool"> = {}) => {
    const pool = createCodexWorkerPool({
      command: codexBinaryPath(),
      args: markedCodexArgs(server.url, marker),
      env: codexEnv({ codexHome: home.path }),
      poolSize: 1,
      capabilities: { experimentalApi: true },
      shutdownTimeoutMs: 1_000
    })
    pools.push(pool)
    const log: Array<string> = []
    const model = createCodexProvider({
      pool: observe(pool, log),
      threadDefaults: { ephemeral: true, approvalPolicy: "never", sandbox: "read-only" },
      ...providerOptions
    })("mock-model")
    return { pool, log, model }
  }

  const shutdownAndCheck = async (pool: CodexPromiseWorkerPool) => {
    await within(pool.shutdown(), "pool shutdown")
    expect(findMarkedProcesses(marker)).toEqual([])
  }

  const ticketSchema = jsonSchema<{ id: string }>({
    type: "object",
    properties: { id: { type: "string" } },
    required: ["id"]
  })
  /** The lookup tool, executed by `execute`, or client-side (no `execute`) without it. */
  const lookupTool = (execute?: (input: { id: string }) => Promise<string>) =>
    execute === undefined
      ? { description: "Looks a ticket up", inputSchema: ticketSchema } as Tool<{ id: string }, string>
      : tool({ description: "Looks a ticket up", inputSchema: ticketSchema, execute })

  const requestsOf = (text: string) => server.requests.filter((r) => r.userText.includes(text))

  it("a two-step tool conversation runs on one worker with poolSize 1 while a second conversation waits, then runs", {
    timeout: REAL_TIMEOUT_MS
  }, async () => {
    const { pool, log, model } = realSetup()
    const first = `first [tools:one] (${marker})`
    const second = `second (${marker})`
    let queuedDuringTool = -1
    let parkedDuringTool = -1
    let secondCall: Promise<string> | undefined
    const result = streamText({
      model,
      prompt: first,
      tools: {
        lookup: lookupTool(async ({ id }) => {
          // The second conversation asks while the first one is parked: it must wait in the queue.
          secondCall = Promise.resolve(streamText({ model, prompt: second }).text)
          await until(() => pool.stats().queued === 1, "the second conversation to queue")
          queuedDuringTool = pool.stats().queued
          parkedDuringTool = pool.stats().parked
          return `${id} is open`
        })
      },
      stopWhen: stepCountIs(3)
    })
    expect(await within(result.text, "the first conversation")).toBe("Results: T-1 is open")
    expect((await result.steps).map((s) => s.finishReason)).toEqual(["tool-calls", "stop"])
    expect(queuedDuringTool).toBe(1)
    expect(parkedDuringTool).toBe(1)
    expect(await within(secondCall!, "the second conversation")).toBe(`Echo: ${second}`)
    // Codex got our tool output in the same turn: one turn/start, two model requests.
    const models = requestsOf(first)
    expect(models).toHaveLength(2)
    expect(models[1]!.toolOutputs.map((o) => o.output)).toEqual(["T-1 is open"])
    // Acquired once for both steps; the second conversation only after the first released.
    expect(log.map((l) => l.split(" ")[0])).toEqual(["acquired", "released", "acquired", "released"])
    expect(pool.stats()).toMatchObject({ busy: 0, parked: 0, queued: 0 })
    await shutdownAndCheck(pool)
  })

  it("two calls of one model response are one step; a client-side tool's result continues the parked turn", {
    timeout: REAL_TIMEOUT_MS
  }, async () => {
    const { pool, log, model } = realSetup()
    const text = `both [tools:two] (${marker})`
    const first = streamText({ model, prompt: text, tools: { lookup: lookupTool() } })
    expect(await within(first.finishReason, "the first step")).toBe("tool-calls")
    const calls = await first.toolCalls
    // Codex sends the calls of one response at once, in no fixed order: both are in this step.
    expect(calls.map((c) => (c.input as { id: string }).id).sort()).toEqual(["T-1", "T-2"])
    expect(await first.text).toBe("Checking both.")
    expect(pool.stats()).toMatchObject({ busy: 1, parked: 1 })
    const messages: Array<ModelMessage> = [
      { role: "user", content: text },
      ...(await first.response).messages,
      {
        role: "tool",
        content: calls.map((c) => ({
          type: "tool-result" as const,
          toolCallId: c.toolCallId,
          toolName: c.toolName,
          output: { type: "text" as const, value: `${(c.input as { id: string }).id} ok` }
        }))
      }
    ]
    const second = streamText({ model, messages, tools: { lookup: lookupTool() } })
    const answer = await within(second.text, "the second step")
    expect(answer.startsWith("Results: ")).toBe(true)
    expect(answer.slice("Results: ".length).split(" | ").sort()).toEqual(["T-1 ok", "T-2 ok"])
    expect(requestsOf(text)).toHaveLength(2)
    expect(log.map((l) => l.split(" ")[0])).toEqual(["acquired", "released"])
    await shutdownAndCheck(pool)
  })

  it("a parked turn that times out releases its worker; the late result starts a new turn that carries it", {
    timeout: REAL_TIMEOUT_MS
  }, async () => {
    const { pool, log, model } = realSetup({ toolResultTimeoutMs: 300 })
    const text = `late [tools:one] (${marker})`
    const first = streamText({ model, prompt: text, tools: { lookup: lookupTool() } })
    expect(await within(first.finishReason, "the first step")).toBe("tool-calls")
    const [toolCall] = await first.toolCalls
    await until(() => pool.stats().busy === 0, "the timed-out turn to release its worker")
    expect(pool.stats()).toMatchObject({ parked: 0, idle: 1 })
    expect(log.map((l) => l.split(" ")[0])).toEqual(["acquired", "released"])
    const messages: Array<ModelMessage> = [
      { role: "user", content: text },
      ...(await first.response).messages,
      {
        role: "tool",
        content: [{ type: "tool-result", toolCallId: toolCall!.toolCallId, toolName: "lookup", output: { type: "text", value: "T-1 came late" } }]
      }
    ]
    const second = streamText({ model, messages, tools: { lookup: lookupTool() } })
    // A new turn on the same thread, whose input names the call and carries its result.
    const carried = `The tool call lookup with input {"id":"T-1"} (call id ${toolCall!.toolCallId}) returned: T-1 came late`
    expect(await within(second.text, "the second call")).toBe(`Echo: ${carried}`)
    const latest = server.requests.filter((r) => r.userText === carried)
    expect(latest).toHaveLength(1)
    // The thread was continued: the model request holds the first turn's user message too.
    expect(JSON.stringify(latest[0]!.body)).toContain(text)
    expect(log.map((l) => l.split(" ")[0])).toEqual(["acquired", "released", "acquired", "released"])
    await shutdownAndCheck(pool)
  })

  it("abort while parked interrupts the turn, releases the worker, and the worker serves the next call", {
    timeout: REAL_TIMEOUT_MS
  }, async () => {
    const { pool, log, model } = realSetup()
    const controller = new AbortController()
    const text = `abort [tools:one] (${marker})`
    const result = streamText({
      model,
      prompt: text,
      abortSignal: controller.signal,
      tools: {
        lookup: lookupTool(async () => {
          expect(pool.stats()).toMatchObject({ busy: 1, parked: 1 })
          controller.abort()
          return "unused"
        })
      },
      stopWhen: stepCountIs(3)
    })
    const parts: Array<string> = []
    for await (const part of result.fullStream) parts.push(part.type)
    expect(parts).toContain("abort")
    await until(() => pool.stats().busy === 0, "the release after the abort")
    expect(pool.stats().parked).toBe(0)
    // Codex got our "aborted" answer (the model may or may not be asked again before the interrupt lands).
    const next = `next (${marker})`
    expect(await within(streamText({ model, prompt: next }).text, "the next call")).toBe(`Echo: ${next}`)
    expect(log.map((l) => l.split(" ")[0])).toEqual(["acquired", "released", "acquired", "released"])
    await shutdownAndCheck(pool)
  })
})

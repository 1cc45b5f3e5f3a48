/**
 * The effect/ai language model (`CodexLanguageModel`) over the test pool
 * (`layerTest`: the real `CodexWorkerPool` over in-process fake workers),
 * driven by effect/ai's own `LanguageModel.generateText`, `generateObject`
 * and `streamText`.
 *
 * What it pins: what a recorded codex stream becomes (replayed by a fake
 * worker script: text, reasoning, Codex's actions as provider-executed tool
 * parts when the toolkit declares them, usage, metadata, failures as
 * `AiError`s); prompts and per-call settings (thread continuation, Config,
 * structured output, warnings); and the pool's guarantees through the model:
 * FIFO queueing, interruption while queued (no worker taken), interruption
 * mid-turn (`turn/interrupt`, then the worker back, or out of service when
 * unconfirmed), a stream read partly, a crash, and closing the layer's scope
 * with a call running (no lease left, every worker finalized).
 *
 * Time: real (`it.live`). The turn machinery and the fakes use real timers;
 * every wait is a bounded poll, and no assertion depends on how long
 * something took. The real binary is exercised by test/effectAiCodex.test.ts.
 */
import { describe, expect, it } from "@effect/vitest"
import { Cause, Context, Effect, Exit, Fiber, Layer, Logger, Schema, Scope, Stream } from "effect"
import { AiError, LanguageModel, Model, Prompt, Tool, Toolkit } from "effect/ai"
import * as CodexWorkerPool from "../src/CodexWorkerPool.ts"
import { CodexLanguageModel, CodexTool } from "../src/effect-ai/index.ts"
import {
  FakeCodexWorkers,
  type FakeWorker,
  type FakeWorkerScript,
  layerTest,
  type TestOptions,
  textTurns
} from "../src/testing/index.ts"
import { loadStream, type RecordedMessage } from "./fixtures/codex-streams/replay.ts"

// -----------------------------------------------------------------------------
// Helpers
// -----------------------------------------------------------------------------

/**
 * A fake-worker script that replays a recorded stream on `turn/start`: the
 * thread and turn ids are the recording's, notifications go out one per
 * tick, a recorded server request waits for the client's answer. With
 * `pauseAt` the replay stops before that message until `turn/interrupt`,
 * which ends the turn as interrupted.
 */
const replayScript = (messages: ReadonlyArray<RecordedMessage>, options: { readonly pauseAt?: number } = {}): FakeWorkerScript => {
  const threadId = String(messages.find((m) => m.params?.threadId !== undefined)?.params.threadId)
  const turnId = String(messages.find((m) => m.method === "turn/started")?.params.turn.id)
  let interrupted = false
  const tick = () => new Promise<void>((resolve) => setTimeout(resolve, 0))
  const run = async (worker: FakeWorker) => {
    for (const [index, raw] of messages.entries()) {
      await tick()
      if (interrupted || worker.closed || options.pauseAt === index) return
      if (raw["id"] !== undefined) await worker.request(raw.method, raw.params).catch(() => {})
      else worker.notify(raw.method, raw.params)
    }
  }
  return {
    methods: {
      "thread/start": () => ({ thread: { id: threadId } }),
      "thread/resume": () => ({ thread: { id: threadId } }),
      "turn/start": (_params, worker) => {
        interrupted = false
        void run(worker)
        return { turn: { id: turnId, status: "inProgress", items: [], error: null } }
      },
      "turn/interrupt": (_params, worker) => {
        interrupted = true
        setTimeout(() =>
          worker.notify("turn/completed", {
            threadId,
            turn: { id: turnId, status: "interrupted", items: [], error: null }
          }), 0)
        return {}
      }
    }
  }
}

/** The model over a test pool of `script` (poolSize 1 unless `pool` says otherwise). */
const setup = (
  script: FakeWorkerScript,
  options: { readonly pool?: Omit<TestOptions, "script">; readonly model?: Partial<CodexLanguageModel.Options> } = {}
) =>
  CodexLanguageModel.layer({ model: "mock-model", ...options.model }).pipe(
    Layer.provideMerge(layerTest({ poolSize: 1, ...options.pool, script }))
  )

/** Polls `predicate` every 10 ms, for at most 5 s (real time). */
const waitFor = (predicate: () => boolean, what: string) =>
  Effect.gen(function*() {
    for (let i = 0; i < 500; i++) {
      if (predicate()) return
      yield* Effect.sleep("10 millis")
    }
    return yield* Effect.die(new Error(`timed out waiting for ${what}`))
  })

/** A promise the test resolves. */
const gate = () => {
  let open!: () => void
  const promise = new Promise<void>((resolve) => open = resolve)
  return { promise, open }
}

const inputText = (params: unknown): string =>
  ((params as { input?: Array<{ type: string; text?: string }> }).input ?? [])
    .flatMap((item) => item.type === "text" && item.text !== undefined ? [item.text] : [])
    .join("\n")

/** The input texts of every `turn/start` the fakes received, in worker order. */
const turnTexts = (fakes: FakeCodexWorkers["Service"]) =>
  fakes.all.flatMap((fake) => fake.requestsOf("turn/start").map(inputText))

const stats = Effect.gen(function*() {
  const pool = yield* CodexWorkerPool.CodexWorkerPool
  return yield* pool.stats
})

/** The recorded usage of a stream, summed over its `last` breakdowns. */
const recordedUsage = (messages: ReadonlyArray<RecordedMessage>) =>
  messages.filter((m) => m.method === "thread/tokenUsage/updated").reduce(
    (sum, m) => ({
      input: sum.input + m.params.tokenUsage.last.inputTokens,
      output: sum.output + m.params.tokenUsage.last.outputTokens,
      reasoning: sum.reasoning + m.params.tokenUsage.last.reasoningOutputTokens
    }),
    { input: 0, output: 0, reasoning: 0 }
  )

const aiErrorOf = <A>(exit: Exit.Exit<A, unknown>): AiError.AiError => {
  if (Exit.isSuccess(exit)) throw new Error("expected the call to fail")
  const error = Cause.squash(exit.cause)
  if (!AiError.isAiError(error)) throw new Error(`expected an AiError, got ${String(error)}`)
  return error
}

// -----------------------------------------------------------------------------
// Recorded streams
// -----------------------------------------------------------------------------

describe("effect/ai model over replayed codex streams", () => {
  it.live("generateText: reasoning, the command as a provider-executed tool call and its final result, the answer, usage", () => {
    const messages = loadStream("command")
    const threadId = messages.find((m) => m.params?.threadId !== undefined)!.params.threadId
    const turnId = messages.find((m) => m.method === "turn/started")!.params.turn.id
    return Effect.gen(function*() {
      const response = yield* LanguageModel.generateText({ prompt: "count", toolkit: CodexTool.toolkit })
      expect(response.reasoningText).toBe("I will count to three")
      expect(response.toolCalls).toMatchObject([{
        name: "CodexCommandExecution",
        providerExecuted: true,
        params: { command: "/bin/bash -c 'for i in 1 2 3; do echo line $i; sleep 0.3; done'", cwd: "/workspace" }
      }])
      // Only the final result: the streamed output is not part of a whole response.
      expect(response.toolResults).toHaveLength(1)
      expect(response.toolResults[0]).toMatchObject({
        name: "CodexCommandExecution",
        isFailure: false,
        providerExecuted: true,
        result: { status: "completed", exitCode: 0, output: "line 1\nline 2\nline 3\n" }
      })
      expect(response.text).toBe("Done.")
      expect(response.finishReason).toBe("stop")
      const expected = recordedUsage(messages)
      expect(response.usage.inputTokens.total).toBe(expected.input)
      expect(response.usage.outputTokens.total).toBe(expected.output)
      expect(response.usage.outputTokens.reasoning).toBe(expected.reasoning)
      expect(response.content.find((part) => part.type === "response-metadata")).toMatchObject({ id: turnId })
      expect(response.content.find((part) => part.type === "finish")?.metadata).toEqual({ codex: { threadId, turnId } })
      expect(response.content.find((part) => part.type === "text")?.metadata).toMatchObject({ codex: { threadId } })
      expect((yield* stats).busy).toBe(0)
    }).pipe(Effect.provide(setup(replayScript(messages))))
  })

  it.live("streamText: preliminary command output before the final result, then the answer and finish", () =>
    Effect.gen(function*() {
      const parts = yield* Stream.runCollect(LanguageModel.streamText({ prompt: "count", toolkit: CodexTool.toolkit }))
      const types = parts.map((part) => part.type)
      expect(types.indexOf("reasoning-start")).toBeLessThan(types.indexOf("tool-call"))
      const results = parts.filter((part) => part.type === "tool-result")
      expect(results.length).toBeGreaterThan(1)
      expect(results.slice(0, -1).every((part) => part.preliminary && (part.result as { status?: unknown }).status === "inProgress")).toBe(true)
      expect(results.at(-1)).toMatchObject({ preliminary: false, isFailure: false, result: { status: "completed", exitCode: 0 } })
      const text = parts.flatMap((part) => part.type === "text-delta" ? [part.delta] : []).join("")
      expect(text).toBe("Done.")
      expect(parts.at(-1)).toMatchObject({ type: "finish", reason: "stop" })
    }).pipe(Effect.provide(setup(replayScript(loadStream("command"))))))

  it.live("without a toolkit declaring them, Codex's actions are left out and the rest of the response stands", () =>
    Effect.gen(function*() {
      const response = yield* LanguageModel.generateText({ prompt: "count" })
      const types: Array<string> = response.content.map((part) => part.type)
      expect(types).not.toContain("tool-call")
      expect(types).not.toContain("tool-result")
      expect(response.reasoningText).toBe("I will count to three")
      expect(response.text).toBe("Done.")
      // A toolkit that declares only some of them gets only those.
      const partial = yield* LanguageModel.generateText({ prompt: "count", toolkit: Toolkit.make(CodexTool.FileChange) })
      expect(partial.toolCalls).toEqual([])
    }).pipe(Effect.provide(setup(replayScript(loadStream("command"))))))

  it.live("reasoning: each summary part and the raw reasoning are reasoning blocks, in order", () =>
    Effect.gen(function*() {
      const response = yield* LanguageModel.generateText({ prompt: "think" })
      expect(response.reasoning.map((part) => part.text)).toEqual([
        "Reading the **question**",
        "Planning the answer",
        "raw chain of thought"
      ])
    }).pipe(Effect.provide(setup(replayScript(loadStream("reasoning"))))))

  const actions = [
    { stream: "file-change", name: "CodexFileChange", isFailure: false, params: { changes: [{ kind: "add" }] } },
    {
      stream: "web-search",
      name: "CodexWebSearch",
      isFailure: false,
      params: { query: "codex app-server protocol", action: { type: "search" } }
    },
    { stream: "dynamic-tool", name: "CodexDynamicToolCall", isFailure: true, params: { tool: "lookup_ticket", arguments: { id: "T-42" } } },
    { stream: "approval-declined", name: "CodexCommandExecution", isFailure: true, params: {} },
    { stream: "background-command", name: "CodexCommandExecution", isFailure: true, params: {} }
  ] as const
  for (const { isFailure, name, params, stream } of actions) {
    it.live(`${stream}: the action decodes as ${name} (isFailure ${isFailure})`, () =>
      Effect.gen(function*() {
        const response = yield* LanguageModel.generateText({ prompt: "x", toolkit: CodexTool.toolkit })
        expect(response.toolCalls).toMatchObject([{ name, providerExecuted: true, params }])
        expect(response.toolResults).toMatchObject([{ name, providerExecuted: true, isFailure }])
        expect(response.finishReason).toBe("stop")
        if (stream === "background-command") {
          expect(response.toolResults[0]!.result).toMatchObject({ status: "interrupted" })
        }
      }).pipe(Effect.provide(setup(replayScript(loadStream(stream))))))
  }

  it.live("a web search that opened a page adds a url source, titled with its url", () => {
    const url = "https://example.com/protocol"
    const messages = loadStream("web-search").map((m): RecordedMessage =>
      m.method === "item/completed" && m.params.item.type === "webSearch"
        ? { ...m, params: { ...m.params, item: { ...m.params.item, action: { type: "openPage", url } } } }
        : m
    )
    return Effect.gen(function*() {
      const response = yield* LanguageModel.generateText({ prompt: "x" })
      const source = response.content.find((part) => part.type === "source")
      expect(source).toMatchObject({ sourceType: "url", title: url })
      expect(source?.type === "source" && source.sourceType === "url" && source.url.href).toBe(url)
    }).pipe(Effect.provide(setup(replayScript(messages))))
  })

  it.live("a failed turn fails the call with an InternalProviderError carrying codex's message, and returns the worker", () =>
    Effect.gen(function*() {
      const error = aiErrorOf(yield* Effect.exit(LanguageModel.generateText({ prompt: "x" })))
      expect(error.reason._tag).toBe("InternalProviderError")
      expect(error.isRetryable).toBe(true)
      expect(error.message).toMatch(/Codex turn failed: .*the model is overloaded/)
      expect((yield* stats).busy).toBe(0)
      const streamed = aiErrorOf(yield* Effect.exit(Stream.runCollect(LanguageModel.streamText({ prompt: "x" }))))
      expect(streamed.method).toBe("streamText")
      expect(streamed.message).toMatch(/the model is overloaded/)
    }).pipe(Effect.provide(setup(replayScript(loadStream("failed"))))))

  it.live("a recorded command approval is declined by default, and the approvals callback answers it", () => {
    const messages = loadStream("approval-declined")
    const seen: Array<string> = []
    return Effect.gen(function*() {
      yield* LanguageModel.generateText({ prompt: "x" })
      const fakes = yield* FakeCodexWorkers
      const answers = fakes.all[0]!.received.filter((m) => m.kind === "response")
      expect(answers).toMatchObject([{ result: { decision: "acceptForSession" } }])
      expect(seen).toEqual(["item/commandExecution/requestApproval"])
    }).pipe(Effect.provide(setup(replayScript(messages), {
      model: {
        approvals: (request) => {
          seen.push(request.method)
          return "acceptForSession"
        }
      }
    })))
  })
})

// -----------------------------------------------------------------------------
// Prompts and settings
// -----------------------------------------------------------------------------

describe("effect/ai model: prompts and settings", () => {
  it.live("a prompt carrying a previous response continues its thread on the worker that has it", () =>
    Effect.gen(function*() {
      const first = yield* LanguageModel.generateText({ prompt: "first" })
      const prompt = Prompt.concat(
        Prompt.concat(Prompt.make("first"), Prompt.fromResponseParts(first.content)),
        "second"
      )
      const second = yield* LanguageModel.generateText({ prompt })
      expect(second.text).toBe("Echo: second")
      const fake = (yield* FakeCodexWorkers).all[0]!
      expect(fake.requestsOf("thread/start")).toHaveLength(1)
      const starts = fake.requestsOf("turn/start") as Array<{ threadId: string }>
      expect(starts[1]!.threadId).toBe(starts[0]!.threadId)
      // Only what is new to the thread is sent.
      expect(turnTexts(yield* FakeCodexWorkers)).toEqual(["first", "second"])
    }).pipe(Effect.provide(setup(textTurns()))))

  it.live("system messages become the new thread's developer instructions", () =>
    Effect.gen(function*() {
      yield* LanguageModel.generateText({
        prompt: Prompt.make([{ role: "system", content: "Be brief." }, { role: "user", content: "hi" }])
      })
      expect((yield* FakeCodexWorkers).all[0]!.requestsOf("thread/start")).toMatchObject([
        { developerInstructions: "Be brief.", model: "mock-model", ephemeral: true }
      ])
    }).pipe(Effect.provide(setup(textTurns(), { model: { threadDefaults: { ephemeral: true } } }))))

  it.live("Config settings become turn/start params; withConfigOverride layers them over the layer's config", () =>
    Effect.gen(function*() {
      yield* LanguageModel.generateText({ prompt: "a" }).pipe(
        CodexLanguageModel.withConfigOverride({ effort: "low" }),
        CodexLanguageModel.withConfigOverride({ model: "other-model", effort: "high" })
      )
      expect((yield* FakeCodexWorkers).all[0]!.requestsOf("turn/start")).toMatchObject([
        { effort: "low", summary: "auto", model: "other-model" }
      ])
    }).pipe(Effect.provide(setup(textTurns(), { model: { config: { summary: "auto" } } }))))

  it.live("a bad Config fails with an InvalidRequestError naming the field, and takes no worker", () =>
    Effect.gen(function*() {
      const bad = aiErrorOf(
        yield* Effect.exit(
          LanguageModel.generateText({ prompt: "a" }).pipe(
            Effect.provideService(CodexLanguageModel.Config, { effort: "bogus" } as any)
          )
        )
      )
      expect(bad.reason._tag).toBe("InvalidRequestError")
      expect(bad.message).toMatch(/CodexLanguageModel\.Config: effort: Expected/)
      const account = aiErrorOf(
        yield* Effect.exit(
          LanguageModel.generateText({ prompt: "a" }).pipe(CodexLanguageModel.withConfigOverride({ account: "a1" }))
        )
      )
      expect(account.reason).toMatchObject({ _tag: "InvalidRequestError", parameter: "account" })
      expect((yield* FakeCodexWorkers).attempts).toBe(0)
    }).pipe(Effect.provide(setup(textTurns()))))

  it.live("generateObject sends the schema as the turn's outputSchema and decodes the answer", () =>
    Effect.gen(function*() {
      const Answer = Schema.Struct({ answer: Schema.String, confidence: Schema.Finite })
      const response = yield* LanguageModel.generateObject({ prompt: "answer", schema: Answer, objectName: "Answer" })
      expect(response.value).toEqual({ answer: "42", confidence: 0.9 })
      const [start] = (yield* FakeCodexWorkers).all[0]!.requestsOf("turn/start") as Array<{ outputSchema: any }>
      expect(start!.outputSchema).toMatchObject({
        type: "object",
        properties: { answer: { type: "string" }, confidence: { type: "number" } },
        required: ["answer", "confidence"],
        additionalProperties: false
      })
    }).pipe(Effect.provide(setup(textTurns({ reply: () => JSON.stringify({ answer: "42", confidence: 0.9 }) })))))

  it.live("tools Codex cannot run and a required toolChoice are logged as warnings, and the call goes on", () => {
    const warnings: Array<unknown> = []
    const logger = Logger.make((options) => {
      if (options.logLevel === "Warn") warnings.push(options.message)
    })
    const Lookup = Tool.make("Lookup", { parameters: Schema.Struct({ id: Schema.String }), success: Schema.String })
    const toolkit = Toolkit.make(Lookup, CodexTool.CommandExecution)
    return Effect.gen(function*() {
      const response = yield* LanguageModel.generateText({
        prompt: "hi",
        toolkit: toolkit.pipe(Effect.provide(toolkit.toLayer({ Lookup: () => Effect.succeed("found") }))),
        toolChoice: "required"
      })
      expect(response.text).toBe("Echo: hi")
      expect(warnings.flat().join("\n")).toMatch(/tools is not supported: Codex runs its own tools; these are not passed to it: Lookup/)
      expect(warnings.flat().join("\n")).toMatch(/toolChoice is not supported/)
    }).pipe(Effect.provide(setup(textTurns())), Effect.provide(Logger.layer([logger])))
  })

  it.live("model() is an effect/ai Model: provider \"codex\", its model name, and that model id on the thread", () =>
    Effect.gen(function*() {
      expect(yield* Model.ProviderName).toBe("codex")
      expect(yield* Model.ModelName).toBe("other-model")
      yield* LanguageModel.generateText({ prompt: "hi" })
      expect((yield* FakeCodexWorkers).all[0]!.requestsOf("thread/start")).toMatchObject([{ model: "other-model" }])
    }).pipe(
      Effect.provide(CodexLanguageModel.model("other-model", { threadDefaults: { ephemeral: true } })),
      Effect.provide(layerTest({ poolSize: 1, script: textTurns() }))
    ))

  it("bad options are a defect naming the option", () => {
    expect(() => Effect.runSync(Effect.scoped(Layer.build(setup(textTurns(), { model: { interruptTimeout: -1 } })))))
      .toThrow(/Invalid CodexLanguageModel options: interruptTimeout: Expected a duration >= 0/)
    expect(() => Effect.runSync(Effect.scoped(Layer.build(setup(textTurns(), { model: { model: "" } })))))
      .toThrow(/model: Expected a non-empty string/)
    expect(() => Effect.runSync(Effect.scoped(Layer.build(setup(textTurns(), { model: { config: { effort: "x" } as any } })))))
      .toThrow(/config: effort/)
  })
})

// -----------------------------------------------------------------------------
// The pool through the model
// -----------------------------------------------------------------------------

describe("effect/ai model: queueing, interruption and cleanup", () => {
  it.live("with poolSize 1, concurrent calls queue and run one at a time, in FIFO order", () => {
    const gates = new Map(["a", "b", "c"].map((text) => [text, gate()]))
    return Effect.gen(function*() {
      const fakes = yield* FakeCodexWorkers
      const a = yield* Effect.forkChild(LanguageModel.generateText({ prompt: "a" }))
      yield* waitFor(() => turnTexts(fakes).length === 1, "a's turn")
      const pool = yield* CodexWorkerPool.CodexWorkerPool
      const b = yield* Effect.forkChild(LanguageModel.generateText({ prompt: "b" }))
      yield* waitFor(() => Effect.runSync(pool.stats).queued === 1, "b queued")
      const c = yield* Effect.forkChild(LanguageModel.generateText({ prompt: "c" }))
      yield* waitFor(() => Effect.runSync(pool.stats).queued === 2, "c queued")
      expect(turnTexts(fakes)).toEqual(["a"])
      gates.get("c")!.open()
      gates.get("b")!.open()
      gates.get("a")!.open()
      expect((yield* Fiber.join(a)).text).toBe("Echo: a")
      expect((yield* Fiber.join(b)).text).toBe("Echo: b")
      expect((yield* Fiber.join(c)).text).toBe("Echo: c")
      expect(turnTexts(fakes)).toEqual(["a", "b", "c"])
      expect(fakes.all).toHaveLength(1)
      expect(yield* stats).toMatchObject({ busy: 0, queued: 0 })
    }).pipe(Effect.provide(setup(textTurns({
      reply: async ({ text }) => {
        await gates.get(text)!.promise
        return `Echo: ${text}`
      }
    }))))
  })

  it.live("interrupting a queued call leaves the queue at once and takes no worker", () => {
    const release = gate()
    return Effect.gen(function*() {
      const fakes = yield* FakeCodexWorkers
      const a = yield* Effect.forkChild(LanguageModel.generateText({ prompt: "a" }))
      yield* waitFor(() => turnTexts(fakes).length === 1, "a's turn")
      const b = yield* Effect.forkChild(LanguageModel.generateText({ prompt: "b" }))
      const pool = yield* CodexWorkerPool.CodexWorkerPool
      yield* waitFor(() => Effect.runSync(pool.stats).queued === 1, "b queued")
      yield* Fiber.interrupt(b)
      expect(yield* stats).toMatchObject({ queued: 0, busy: 1 })
      release.open()
      yield* Fiber.join(a)
      expect((yield* LanguageModel.generateText({ prompt: "c" })).text).toBe("Echo: c")
      expect(turnTexts(fakes)).toEqual(["a", "c"])
      expect(fakes.all).toHaveLength(1)
    }).pipe(Effect.provide(setup(textTurns({
      reply: async ({ text }) => {
        if (text === "a") await release.promise
        return `Echo: ${text}`
      }
    }))))
  })

  it.live("interrupting a call mid-turn sends turn/interrupt and gives the worker back before the interrupt returns", () =>
    Effect.gen(function*() {
      const fakes = yield* FakeCodexWorkers
      const fiber = yield* Effect.forkChild(LanguageModel.generateText({ prompt: "slow" }))
      yield* waitFor(() => turnTexts(fakes).length === 1, "the turn")
      yield* Fiber.interrupt(fiber)
      expect(fakes.all[0]!.requestsOf("turn/interrupt")).toHaveLength(1)
      expect(yield* stats).toMatchObject({ busy: 0, idle: 1 })
      // The worker was confirmed idle and is reused.
      expect((yield* LanguageModel.generateText({ prompt: "next" })).text).toBe("Echo: next")
      expect(fakes.all).toHaveLength(1)
      expect(fakes.all[0]!.finalized).toBe(false)
    }).pipe(Effect.provide(setup(textTurns({
      reply: ({ text }) => text === "slow" ? new Promise<string>(() => {}) : `Echo: ${text}`
    })))))

  it.live("a worker that does not confirm the interrupt within interruptTimeout is taken out of service", () =>
    Effect.gen(function*() {
      const fakes = yield* FakeCodexWorkers
      const fiber = yield* Effect.forkChild(LanguageModel.generateText({ prompt: "slow" }))
      yield* waitFor(() => turnTexts(fakes).length === 1, "the turn")
      yield* Fiber.interrupt(fiber)
      expect((yield* stats).busy).toBe(0)
      yield* waitFor(() => fakes.all[0]!.finalized, "the stuck worker's finalization")
      expect((yield* LanguageModel.generateText({ prompt: "next" })).text).toBe("Echo: next")
      expect(fakes.all).toHaveLength(2)
    }).pipe(Effect.provide(setup(
      textTurns({
        reply: ({ text }) => text === "slow" ? new Promise<string>(() => {}) : `Echo: ${text}`,
        // Answers the interrupt but never ends the turn.
        methods: { "turn/interrupt": () => ({}) }
      }),
      { model: { interruptTimeout: "100 millis" } }
    ))))

  it.live("a call interrupted while a request hangs (no turn yet) takes its worker out of service after interruptTimeout", () =>
    Effect.gen(function*() {
      const fakes = yield* FakeCodexWorkers
      const fiber = yield* Effect.forkChild(LanguageModel.generateText({ prompt: "x" }))
      yield* waitFor(() => fakes.all[0]?.requestsOf("thread/start").length === 1, "thread/start")
      // The turn acts on an abort only when its request returns; this one never does.
      yield* Fiber.interrupt(fiber)
      expect((yield* stats).busy).toBe(0)
      yield* waitFor(() => fakes.all[0]!.finalized, "the stuck worker's finalization")
      expect(fakes.all[0]!.requestsOf("turn/start")).toEqual([])
    }).pipe(Effect.provide(setup(
      textTurns({ methods: { "thread/start": () => new Promise(() => {}) } }),
      { model: { interruptTimeout: "100 millis" } }
    ))))

  it.live("a stream read only in part interrupts its turn and gives the worker back", () => {
    const messages = loadStream("command")
    const pauseAt = messages.findIndex((m) => m.method === "item/commandExecution/outputDelta")
    return Effect.gen(function*() {
      const parts = yield* LanguageModel.streamText({ prompt: "count", toolkit: CodexTool.toolkit }).pipe(
        Stream.takeUntil((part) => part.type === "tool-call"),
        Stream.runCollect
      )
      expect(parts.at(-1)).toMatchObject({ type: "tool-call", name: "CodexCommandExecution" })
      const fakes = yield* FakeCodexWorkers
      expect(fakes.all[0]!.requestsOf("turn/interrupt")).toHaveLength(1)
      expect(yield* stats).toMatchObject({ busy: 0, idle: 1 })
    }).pipe(Effect.provide(setup(replayScript(messages, { pauseAt }))))
  })

  it.live("a worker crash mid-turn fails the call with the crash, and the next call gets a new worker", () =>
    Effect.gen(function*() {
      const error = aiErrorOf(yield* Effect.exit(LanguageModel.generateText({ prompt: "crash" })))
      expect(error.reason).toMatchObject({ _tag: "InternalProviderError", metadata: { codex: { error: "WorkerCrashedError" } } })
      expect((yield* LanguageModel.generateText({ prompt: "next" })).text).toBe("Echo: next")
      expect((yield* FakeCodexWorkers).all).toHaveLength(2)
    }).pipe(Effect.provide(setup(textTurns({
      reply: ({ text, worker }) => {
        if (text !== "crash") return `Echo: ${text}`
        worker.crash({ code: 137 })
        return new Promise<string>(() => {})
      }
    })))))

  it.live("closing the layer's scope with a call running interrupts it, returns its lease and finalizes every worker", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const context = yield* Layer.buildWithScope(
        setup(textTurns({ reply: () => new Promise<string>(() => {}) })),
        scope
      )
      const fakes = Context.get(context, FakeCodexWorkers)
      const pool = Context.get(context, CodexWorkerPool.CodexWorkerPool)
      const fiber = yield* LanguageModel.generateText({ prompt: "slow" }).pipe(
        Effect.provideContext(context),
        Effect.forkIn(scope)
      )
      yield* waitFor(() => turnTexts(fakes).length === 1, "the turn")
      expect((yield* pool.stats).busy).toBe(1)
      yield* Scope.close(scope, Exit.void)
      const exit = fiber.pollUnsafe()
      expect(exit !== undefined && Exit.isFailure(exit) && Cause.hasInterruptsOnly(exit.cause)).toBe(true)
      expect(fakes.all[0]!.requestsOf("turn/interrupt")).toHaveLength(1)
      expect(yield* pool.stats).toMatchObject({ busy: 0, closed: true })
      expect(fakes.all.every((fake) => fake.finalized && fake.closed)).toBe(true)
    }))
})

/**
 * The AI SDK model (`createCodexProvider`) driven by the real `ai` package
 * (`streamText`, `generateText`, `generateObject`) over recorded codex streams
 * replayed in-process (`test/fixtures/codex-streams/replay.ts`): fast,
 * deterministic checks of what the model makes of real notification streams
 * and of its side of the conversation (the requests it sends, the answers it
 * gives, the lease it releases).
 *
 * What it pins: provider-executed tool parts pass `streamText` and
 * `generateText` (no "unavailable tool"), reasoning content, usage summed
 * over a turn's model requests, per-call settings on `turn/start` and on the
 * lease, the explicit thread, the output schema, images and their temporary
 * files (gone when the call ends, on every path), answers to recorded server
 * requests, and the lifecycle guarantees on a replay: one release per call,
 * crash, abort, late notifications of another turn.
 *
 * The real binary is exercised by test/aiSdk.test.ts and
 * test/aiSdkRealFeatures.test.ts; these replays keep the mapping honest
 * between recordings.
 */
import { generateObject, generateText, jsonSchema, streamText } from "ai"
import { existsSync } from "node:fs"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { createCodexProvider, type ServerRequestHandlers } from "../src/ai-sdk/index.ts"
import { PoolOptionsError, WorkerCrashedError } from "../src/errors.ts"
import { loadStream, type RecordedMessage, replayPool, type ReplayOptions } from "./fixtures/codex-streams/replay.ts"
import { until } from "./helpers/wait.ts"

const PNG = Buffer.from(
  "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==",
  "base64"
)

const setup = (
  messages: ReadonlyArray<RecordedMessage>,
  options: ReplayOptions & Omit<Parameters<typeof createCodexProvider>[0], "pool"> = {}
) => {
  const { crashAfter, pauseAt, resumeFails, ...providerOptions } = options
  const pool = replayPool(messages, {
    ...(crashAfter === undefined ? {} : { crashAfter }),
    ...(pauseAt === undefined ? {} : { pauseAt }),
    ...(resumeFails === undefined ? {} : { resumeFails })
  })
  const model = createCodexProvider({ pool, ...providerOptions })("mock-model")
  return { pool, model, log: pool.log }
}

const collect = async (result: { readonly fullStream: AsyncIterable<any> }) => {
  const parts: Array<any> = []
  for await (const part of result.fullStream) parts.push(part)
  return parts
}

const turnStart = (log: { readonly requests: ReadonlyArray<{ method: string; params: any }> }) =>
  log.requests.find((request) => request.method === "turn/start")?.params

/** `messages` with the agent message's text replaced by `text` (one delta). */
const withAnswer = (messages: ReadonlyArray<RecordedMessage>, text: string): Array<RecordedMessage> => {
  let first = true
  return messages.flatMap((m): Array<RecordedMessage> => {
    if (m.method === "item/agentMessage/delta") {
      if (!first) return []
      first = false
      return [{ ...m, params: { ...m.params, delta: text } }]
    }
    if (m.method === "item/completed" && m.params.item.type === "agentMessage") {
      return [{ ...m, params: { ...m.params, item: { ...m.params.item, text } } }]
    }
    return [m]
  })
}

/** The sum of the `last` usage of a recorded stream. */
const recordedUsage = (messages: ReadonlyArray<RecordedMessage>) =>
  messages.filter((m) => m.method === "thread/tokenUsage/updated").reduce(
    (sum, m) => ({
      input: sum.input + m.params.tokenUsage.last.inputTokens,
      output: sum.output + m.params.tokenUsage.last.outputTokens,
      reasoning: sum.reasoning + m.params.tokenUsage.last.reasoningOutputTokens
    }),
    { input: 0, output: 0, reasoning: 0 }
  )

describe("AI SDK model over replayed codex streams: parts and content", () => {
  it("streamText shows reasoning, the command as a provider-executed tool call and result, and the answer", async () => {
    const messages = loadStream("command")
    const { model, log } = setup(messages)
    const result = streamText({ model, prompt: "count" })
    const parts = await collect(result)
    expect(parts.filter((p) => p.type === "error")).toEqual([])
    expect(parts.some((p) => p.type === "reasoning-delta" && p.text === "I will count to three")).toBe(true)
    const call = parts.find((p) => p.type === "tool-call")
    expect(call).toMatchObject({
      toolName: "codex_command_execution",
      providerExecuted: true,
      dynamic: true,
      input: { command: "/bin/bash -c 'for i in 1 2 3; do echo line $i; sleep 0.3; done'", cwd: "/workspace" }
    })
    const results = parts.filter((p) => p.type === "tool-result")
    expect(results.at(-1)).toMatchObject({ output: { status: "completed", exitCode: 0, output: "line 1\nline 2\nline 3\n" } })
    expect(await result.text).toBe("Done.")
    expect(await result.finishReason).toBe("stop")
    expect(log.releases).toEqual(["released"])
  })

  it("usage is the sum over the turn's model requests", async () => {
    const messages = loadStream("command")
    const { model } = setup(messages)
    const result = await generateText({ model, prompt: "count" })
    const expected = recordedUsage(messages)
    expect(messages.filter((m) => m.method === "thread/tokenUsage/updated").length).toBe(2)
    expect(result.usage).toMatchObject({ inputTokens: expected.input, outputTokens: expected.output })
    expect(result.usage.outputTokenDetails?.reasoningTokens).toBe(expected.reasoning)
  })

  it("generateText returns reasoning, the tool call and only its final result, with the thread in the metadata", async () => {
    const messages = loadStream("command")
    const threadId = messages.find((m) => m.params?.threadId !== undefined)!.params.threadId
    const { model } = setup(messages)
    const result = await generateText({ model, prompt: "count" })
    expect(result.reasoningText).toBe("I will count to three")
    expect(result.toolCalls).toMatchObject([{ toolName: "codex_command_execution", providerExecuted: true, dynamic: true }])
    expect(result.toolResults).toHaveLength(1)
    expect(result.toolResults[0]).toMatchObject({ output: { status: "completed", exitCode: 0 } })
    expect(result.text).toBe("Done.")
    expect(result.providerMetadata?.["codex"]).toMatchObject({ threadId })
    // Every part of the answer carries the thread, so passing the messages back continues it.
    const assistant = result.response.messages[0]!
    expect(JSON.stringify(assistant)).toContain(threadId)
    expect(result.response.id).toBe(messages.find((m) => m.method === "turn/started")!.params.turn.id)
  })

  it("reasoning: generateText returns each summary part and the raw reasoning as reasoning content", async () => {
    const { model } = setup(loadStream("reasoning"))
    const result = await generateText({ model, prompt: "think" })
    expect(result.reasoning.map((r) => (r.type === "reasoning" ? r.text : r.type))).toEqual([
      "Reading the **question**",
      "Planning the answer",
      "raw chain of thought"
    ])
    expect(result.text).toBe("The answer is 42.")
  })

  it("a failed turn rejects generateText with codex's message and releases once", async () => {
    const { model, log } = setup(loadStream("failed"))
    await expect(generateText({ model, prompt: "x" })).rejects.toThrow(/Codex turn failed: .*the model is overloaded/)
    await until(() => log.releases.length > 0, "the release", 2_000)
    expect(log.releases).toEqual(["released"])
  })

  it("a command still running at the end of the turn shows as a tool error", async () => {
    const { model } = setup(loadStream("background-command"))
    const parts = await collect(streamText({ model, prompt: "x" }))
    expect(parts.find((p) => p.type === "tool-error")).toMatchObject({
      toolName: "codex_command_execution",
      error: { status: "interrupted" }
    })
  })

  it("includeRawChunks adds every notification of the turn as a raw part", async () => {
    const messages = loadStream("reasoning")
    const { model } = setup(messages)
    const parts = await collect(streamText({ model, prompt: "x", includeRawChunks: true }))
    const raw = parts.filter((p) => p.type === "raw").map((p) => p.rawValue.method)
    expect(raw).toContain("item/reasoning/summaryTextDelta")
    expect(raw.at(-1)).toBe("turn/completed")
  })
})

describe("AI SDK model over replayed codex streams: lifecycle", () => {
  it("a worker that crashes mid-turn ends the stream with its error, closes the open command, and releases once", async () => {
    const messages = loadStream("command")
    const crashAt = messages.findIndex((m) => m.method === "item/commandExecution/outputDelta")
    const { model, log } = setup(messages, { crashAfter: crashAt + 1 })
    const parts = await collect(streamText({ model, prompt: "x", onError: () => {} }))
    expect(parts.find((p) => p.type === "error")?.error).toBeInstanceOf(WorkerCrashedError)
    expect(parts.find((p) => p.type === "tool-error")).toMatchObject({ error: { status: "failed" } })
    expect(log.releases).toEqual(["released"])
  })

  it("an abort mid-turn interrupts the turn and releases once, after the interrupted turn ended", async () => {
    const messages = loadStream("command")
    const { model, log } = setup(messages, { pauseAt: messages.findIndex((m) => m.method === "item/commandExecution/outputDelta") })
    const controller = new AbortController()
    const parts: Array<any> = []
    for await (const part of streamText({ model, prompt: "x", abortSignal: controller.signal }).fullStream) {
      parts.push(part)
      if (part.type === "tool-call") controller.abort()
    }
    expect(parts.at(-1)?.type).toBe("abort")
    await until(() => log.releases.length > 0, "the release", 2_000)
    expect(log.requests.map((r) => r.method)).toEqual(["thread/start", "turn/start", "turn/interrupt"])
    expect(log.releases).toEqual(["released"])
  })

  it("notifications of another turn (a late turn/completed) do not end the call", async () => {
    const messages = loadStream("reasoning")
    const threadId = messages.find((m) => m.params?.threadId !== undefined)!.params.threadId
    const stale: Array<RecordedMessage> = [
      { method: "item/agentMessage/delta", params: { threadId, turnId: "old-turn", itemId: "old", delta: "stale " } },
      { method: "turn/completed", params: { threadId, turn: { id: "old-turn", status: "interrupted", items: [], error: null } } }
    ]
    const started = messages.findIndex((m) => m.method === "turn/started")
    // One stale pair before our turn is known, one after.
    const mixed = [...stale, ...messages.slice(0, started + 1), ...stale, ...messages.slice(started + 1)]
    const { model } = setup(mixed)
    const result = await generateText({ model, prompt: "x" })
    expect(result.text).toBe("The answer is 42.")
    expect(result.finishReason).toBe("stop")
  })

  it("notifications of another thread are ignored", async () => {
    const messages = loadStream("reasoning")
    const started = messages.findIndex((m) => m.method === "turn/started")
    const other: RecordedMessage = {
      method: "turn/completed",
      params: { threadId: "another-thread", turn: { id: "x", status: "failed", items: [], error: { message: "no" } } }
    }
    const { model } = setup([...messages.slice(0, started + 1), other, ...messages.slice(started + 1)])
    expect((await generateText({ model, prompt: "x" })).text).toBe("The answer is 42.")
  })
})

describe("AI SDK model over replayed codex streams: settings", () => {
  it("providerOptions.codex become turn/start params and lease options", async () => {
    const { model, log } = setup(loadStream("reasoning"))
    await generateText({
      model,
      prompt: "x",
      providerOptions: {
        codex: {
          effort: "high",
          summary: "detailed",
          model: "gpt-override",
          cwd: "/somewhere",
          sandbox: "workspace-write",
          approvalPolicy: "on-request",
          personality: "pragmatic",
          account: "team-a",
          workspace: "ws-1"
        }
      }
    })
    expect(turnStart(log)).toMatchObject({
      model: "gpt-override",
      effort: "high",
      summary: "detailed",
      cwd: "/somewhere",
      approvalPolicy: "on-request",
      personality: "pragmatic",
      sandboxPolicy: {
        type: "workspaceWrite",
        writableRoots: [],
        networkAccess: false,
        excludeTmpdirEnvVar: false,
        excludeSlashTmp: false
      }
    })
    expect(log.requests[0]).toMatchObject({ method: "thread/start", params: { model: "gpt-override" } })
    expect(log.acquires[0]).toMatchObject({ account: "team-a", workspace: "ws-1" })
    expect(log.acquires[0]).not.toHaveProperty("prefer")
  })

  it("callDefaults apply to every call, and providerOptions.codex override them field by field", async () => {
    const { model, log } = setup(loadStream("reasoning"), { callDefaults: { effort: "low", summary: "auto" } })
    await generateText({ model, prompt: "x", providerOptions: { codex: { effort: "high" } } })
    expect(turnStart(log)).toMatchObject({ effort: "high", summary: "auto" })
  })

  it("a bad providerOptions.codex rejects with PoolOptionsError naming the field, before a worker is leased", async () => {
    const { model, log } = setup(loadStream("reasoning"))
    const call = generateText({ model, prompt: "x", providerOptions: { codex: { effort: "max", sandbx: "read-only" } } })
    await expect(call).rejects.toBeInstanceOf(PoolOptionsError)
    await expect(call).rejects.toThrow(/^Invalid providerOptions\.codex: /)
    await expect(call).rejects.toThrow(
      /effort: Expected "none" \| "minimal" \| "low" \| "medium" \| "high" \| "xhigh" \| "ultra"/
    )
    await expect(call).rejects.toThrow(/sandbx: unknown option/)
    expect(log.acquires).toEqual([])
  })

  it("threadId continues that thread (thread/resume) with only the prompt's messages as input", async () => {
    const messages = loadStream("reasoning")
    const threadId = messages.find((m) => m.params?.threadId !== undefined)!.params.threadId
    const { model, log } = setup(messages)
    await generateText({ model, prompt: "again", providerOptions: { codex: { threadId } } })
    expect(log.requests[0]).toMatchObject({ method: "thread/resume", params: { threadId } })
    // The continued thread is the affinity hint: an idle worker that has it loaded is preferred.
    expect(log.acquires[0]).toMatchObject({ prefer: threadId })
    expect(turnStart(log).input).toEqual([{ type: "text", text: "again", text_elements: [] }])
  })

  it("a named thread that cannot be resumed fails the call (its context would be lost) and releases once", async () => {
    const { model, log } = setup(loadStream("reasoning"), { resumeFails: true })
    await expect(generateText({ model, prompt: "again", providerOptions: { codex: { threadId: "gone" } } })).rejects
      .toThrow(/no rollout found for thread id gone/)
    expect(log.requests.map((r) => r.method)).toEqual(["thread/resume"])
    await until(() => log.releases.length > 0, "the release", 2_000)
    expect(log.releases).toEqual(["released"])
  })

  it("a thread from the prompt's metadata that cannot be resumed is replaced by a new thread given the whole conversation", async () => {
    const { model, log } = setup(loadStream("reasoning"), { resumeFails: true })
    await generateText({
      model,
      instructions: "Be brief.",
      messages: [
        { role: "user", content: "first" },
        { role: "assistant", content: [{ type: "text", text: "answer", providerOptions: { codex: { threadId: "gone" } } }] },
        { role: "user", content: "second" }
      ]
    })
    expect(log.requests.map((r) => r.method)).toEqual(["thread/resume", "thread/start", "turn/start"])
    expect(log.requests[1]!.params).toMatchObject({ developerInstructions: "Be brief." })
    expect(turnStart(log).input).toEqual([{
      type: "text",
      text: "User: first\n\nAssistant: answer\n\nUser: second",
      text_elements: []
    }])
  })

  it("responseFormat json with a schema becomes the turn's outputSchema, and generateObject parses the answer", async () => {
    const { model, log } = setup(withAnswer(loadStream("reasoning"), "{\"answer\":42}"))
    const schema = {
      type: "object" as const,
      properties: { answer: { type: "number" as const } },
      required: ["answer"],
      additionalProperties: false
    }
    const result = await generateObject({ model, prompt: "x", schema: jsonSchema<{ answer: number }>(schema) })
    expect(result.object).toEqual({ answer: 42 })
    expect(turnStart(log).outputSchema).toMatchObject(schema)
  })

  it("unsupported settings and tools are warnings", async () => {
    const { model } = setup(loadStream("reasoning"))
    const result = await generateText({ model, prompt: "x", temperature: 0.3, seed: 1 })
    expect(result.warnings).toEqual(expect.arrayContaining([
      expect.objectContaining({ type: "unsupported", feature: "temperature" }),
      expect.objectContaining({ type: "unsupported", feature: "seed" })
    ]))
  })
})

describe("AI SDK model over replayed codex streams: images and files", () => {
  const imagePrompt = (data: Uint8Array | string | URL, mediaType = "image/png") =>
    [{ role: "user" as const, content: [{ type: "text" as const, text: "look" }, { type: "file" as const, data, mediaType }] }]

  it("image bytes go to codex as a localImage file that is gone when the call ends", async () => {
    const { model, log } = setup(loadStream("reasoning"))
    let seen: { path: string; existed: boolean } | undefined
    const result = streamText({ model, messages: imagePrompt(PNG) })
    for await (const part of result.fullStream) {
      if (part.type === "reasoning-start" && seen === undefined) {
        const input = turnStart(log).input
        const image = input.find((i: any) => i.type === "localImage")
        seen = { path: image.path, existed: existsSync(image.path) }
      }
    }
    expect(turnStart(log).input[0]).toEqual({ type: "text", text: "look", text_elements: [] })
    expect(seen?.existed).toBe(true)
    expect(path.extname(seen!.path)).toBe(".png")
    expect(existsSync(seen!.path)).toBe(false)
    expect(existsSync(path.dirname(seen!.path))).toBe(false)
  })

  it("the temporary file is removed when the call fails, crashes or is aborted", async () => {
    const messages = loadStream("reasoning")
    // After the first reasoning delta: crash there, or stop there and abort.
    const at = messages.findIndex((m) => m.method === "item/reasoning/summaryPartAdded") + 2
    for (const options of [{ crashAfter: at }, { pauseAt: at }]) {
      const { model, log } = setup(messages, options)
      const controller = new AbortController()
      const result = streamText({ model, messages: imagePrompt(PNG), abortSignal: controller.signal, onError: () => {} })
      let file: string | undefined
      for await (const part of result.fullStream) {
        if (part.type !== "reasoning-delta") continue
        file = turnStart(log).input.find((i: any) => i.type === "localImage").path
        expect(existsSync(file!)).toBe(true)
        if (options.pauseAt !== undefined) controller.abort()
      }
      await until(() => log.releases.length > 0, "the release", 2_000)
      expect(file).toBeDefined()
      expect(existsSync(file!)).toBe(false)
    }
    const failed = setup(loadStream("failed"))
    await expect(generateText({ model: failed.model, messages: imagePrompt(PNG) })).rejects.toThrow(/Codex turn failed/)
    const file = turnStart(failed.log).input.find((i: any) => i.type === "localImage").path
    await until(() => failed.log.releases.length > 0, "the release", 2_000)
    expect(existsSync(file)).toBe(false)
  })

  it("with imageInput dataUrl, image bytes go inline as a data URL", async () => {
    const { model, log } = setup(loadStream("reasoning"), { imageInput: "dataUrl" })
    await generateText({ model, messages: imagePrompt(PNG) })
    expect(turnStart(log).input[1]).toEqual({ type: "image", url: `data:image/png;base64,${PNG.toString("base64")}` })
  })

  it("a file: image URL is passed as that localImage path (supportedUrls keeps the SDK from downloading it)", async () => {
    const { model, log } = setup(loadStream("reasoning"))
    await generateText({ model, messages: imagePrompt(new URL("file:///images/cat.png")) })
    expect(turnStart(log).input[1]).toEqual({ type: "localImage", path: "/images/cat.png" })
  })

  it("text files are inlined as text; other files are unsupported warnings, not sent", async () => {
    const { model, log } = setup(loadStream("reasoning"))
    const result = await generateText({
      model,
      messages: [{
        role: "user",
        content: [
          { type: "text", text: "read" },
          { type: "file", data: Buffer.from("# Notes\nhello"), mediaType: "text/markdown", filename: "notes.md" },
          { type: "file", data: Buffer.from("%PDF-1.4"), mediaType: "application/pdf" }
        ]
      }]
    })
    expect(turnStart(log).input).toEqual([{
      type: "text",
      text: "read<file name=\"notes.md\" media-type=\"text/markdown\">\n# Notes\nhello\n</file>",
      text_elements: []
    }])
    expect(result.warnings).toEqual(
      expect.arrayContaining([expect.objectContaining({ type: "unsupported", feature: "file parts of type application/pdf" })])
    )
  })
})

describe("AI SDK model over replayed codex streams: server requests", () => {
  const approvalStream = () => loadStream("approval-declined")

  it("a recorded command approval is declined by default", async () => {
    const { model, log } = setup(approvalStream())
    await generateText({ model, prompt: "x" })
    expect(log.responses).toEqual([{ id: 0, result: { decision: "decline" } }])
  })

  it("the approvals callback answers it, with the typed request", async () => {
    const seen: Array<unknown> = []
    const approvals: ServerRequestHandlers["approvals"] = (request) => {
      seen.push(request.method === "item/commandExecution/requestApproval" ? request.params.command : request.method)
      return "acceptForSession"
    }
    const { model, log } = setup(approvalStream(), { approvals })
    await generateText({ model, prompt: "x" })
    expect(seen).toEqual(["/bin/bash -c 'touch approved.txt'"])
    expect(log.responses).toEqual([{ id: 0, result: { decision: "acceptForSession" } }])
  })

  it("an approvals callback that throws gets the request declined and the error reported", async () => {
    const { model, log } = setup(approvalStream(), {
      approvals: () => {
        throw new Error("approval service down")
      }
    })
    const parts = await collect(streamText({ model, prompt: "x", onError: () => {} }))
    expect(log.responses).toEqual([{ id: 0, result: { decision: "decline" } }])
    expect(parts.find((p) => p.type === "error")?.error).toMatchObject({ message: "approval service down" })
  })

  it("a callback that never answers gets the default after serverRequestTimeoutMs, and the turn goes on", async () => {
    const { model, log } = setup(approvalStream(), { approvals: () => new Promise(() => {}), serverRequestTimeoutMs: 20 })
    const result = await generateText({ model, prompt: "x" })
    expect(result.finishReason).toBe("stop")
    expect(log.responses).toEqual([{ id: 0, result: { decision: "decline" } }])
  })

  it("a recorded dynamic tool call is answered as unsupported, in the schema's shape", async () => {
    const { model, log } = setup(loadStream("dynamic-tool"))
    const result = await generateText({ model, prompt: "x" })
    expect(log.responses).toEqual([{
      id: 0,
      result: {
        success: false,
        contentItems: [{
          type: "inputText",
          text: "The tool \"lookup_ticket\" is not available: the AI SDK provider has no implementation of it."
        }]
      }
    }])
    expect(result.toolCalls).toMatchObject([{ toolName: "lookup_ticket", input: { id: "T-42" } }])
  })
})

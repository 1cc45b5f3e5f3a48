/**
 * The item -> stream part mapper (`src/ai-sdk/streamParts.ts`), fed with real
 * codex 0.169 streams recorded by `test/fixtures/codex-streams/record.ts`.
 *
 * Each fixture's parts are snapshotted (review a snapshot change like code),
 * and the properties the AI SDK depends on are asserted explicitly: every
 * tool call is provider-executed and dynamic, has exactly one final result,
 * and a turn's end leaves nothing open. A few synthetic streams cover what
 * the recordings do not (whole messages without deltas, long output, late
 * deltas).
 */
import type { LanguageModelV3StreamPart } from "@ai-sdk/provider"
import { describe, expect, it } from "vitest"
import type * as CodexProtocol from "../src/CodexProtocol.ts"
import { PRELIMINARY_OUTPUT_LIMIT, StreamPartMapper } from "../src/ai-sdk/streamParts.ts"
import { loadStream, type RecordedMessage } from "./fixtures/codex-streams/replay.ts"

const fixtures = [
  "reasoning",
  "command",
  "file-change",
  "web-search",
  "dynamic-tool",
  "approval-declined",
  "background-command",
  "failed"
] as const

const notification = (raw: RecordedMessage): CodexProtocol.ServerNotificationMessage =>
  ({ _tag: "Notification", method: raw.method, params: raw.params, raw }) as CodexProtocol.ServerNotificationMessage

/** Runs `messages` through a mapper, as the turn does: `finish` at `turn/completed`. */
const mapAll = (
  messages: ReadonlyArray<RecordedMessage>,
  streamToolOutput = true,
  clientTools: ReadonlySet<string> = new Set()
): Array<LanguageModelV3StreamPart> => {
  const mapper = new StreamPartMapper({
    metadata: (itemId) => ({ codex: itemId === undefined ? {} : { itemId } }),
    streamToolOutput: () => streamToolOutput,
    isClientTool: (namespace, tool) => (namespace === null || namespace === undefined) && clientTools.has(tool)
  })
  const parts: Array<LanguageModelV3StreamPart> = []
  for (const raw of messages) {
    if (raw["id"] !== undefined) continue // server requests are answered elsewhere
    if (raw.method === "turn/completed") parts.push(...mapper.finish(String(raw.params.turn.status)))
    else parts.push(...mapper.map(notification(raw)))
  }
  return parts
}

const ofType = <T extends LanguageModelV3StreamPart["type"]>(parts: ReadonlyArray<LanguageModelV3StreamPart>, type: T) =>
  parts.filter((part): part is Extract<LanguageModelV3StreamPart, { type: T }> => part.type === type)

const finalResults = (parts: ReadonlyArray<LanguageModelV3StreamPart>) =>
  ofType(parts, "tool-result").filter((part) => part.preliminary !== true)

describe("stream parts of recorded codex streams", () => {
  it.each(fixtures)("%s: parts match the snapshot", (name) => {
    expect(mapAll(loadStream(name))).toMatchSnapshot()
  })

  it.each(fixtures)("%s: every tool call is provider-executed and dynamic, with exactly one final result", (name) => {
    const parts = mapAll(loadStream(name))
    const calls = ofType(parts, "tool-call")
    for (const call of calls) {
      expect(call).toMatchObject({ providerExecuted: true, dynamic: true })
      expect(() => JSON.parse(call.input)).not.toThrow()
      const results = finalResults(parts).filter((result) => result.toolCallId === call.toolCallId)
      expect(results).toHaveLength(1)
      expect(results[0]).toMatchObject({ dynamic: true, toolName: call.toolName })
      // The result comes after its call.
      expect(parts.indexOf(results[0]!)).toBeGreaterThan(parts.indexOf(call))
    }
    expect(new Set(ofType(parts, "tool-result").map((result) => result.toolCallId))).toEqual(
      new Set(calls.map((call) => call.toolCallId))
    )
  })

  it.each(fixtures)("%s: every text and reasoning block that starts also ends", (name) => {
    const parts = mapAll(loadStream(name))
    const starts = parts.filter((part) => part.type === "text-start" || part.type === "reasoning-start")
    const ends = parts.filter((part) => part.type === "text-end" || part.type === "reasoning-end")
    expect(ends.map((part) => (part as { id: string }).id).sort()).toEqual(
      starts.map((part) => (part as { id: string }).id).sort()
    )
  })

  it("reasoning: each summary part and the raw content are blocks of their own, with their text", () => {
    const parts = mapAll(loadStream("reasoning"))
    const blocks = new Map<string, string>()
    for (const part of ofType(parts, "reasoning-delta")) blocks.set(part.id, (blocks.get(part.id) ?? "") + part.delta)
    expect(Object.fromEntries(blocks)).toEqual({
      "rs_1_0:s0": "Reading the **question**",
      "rs_1_0:s1": "Planning the answer",
      "rs_1_0:c0": "raw chain of thought"
    })
    // The first summary part ends when the second is added, before the second starts.
    const order = parts.map((part) => `${part.type} ${(part as { id?: string }).id ?? ""}`)
    expect(order.indexOf("reasoning-end rs_1_0:s0")).toBeLessThan(order.indexOf("reasoning-start rs_1_0:s1"))
    expect(ofType(parts, "text-delta").map((part) => part.delta).join("")).toBe("The answer is 42.")
  })

  it("command: input is the command and cwd; output streams as preliminary results; the final result has it all", () => {
    const parts = mapAll(loadStream("command"))
    const [call] = ofType(parts, "tool-call")
    expect(call).toMatchObject({ toolName: "codex_command_execution", toolCallId: "call_1_1" })
    expect(JSON.parse(call!.input)).toEqual({
      command: "/bin/bash -c 'for i in 1 2 3; do echo line $i; sleep 0.3; done'",
      cwd: "/workspace"
    })
    const preliminary = ofType(parts, "tool-result").filter((part) => part.preliminary === true)
    expect(preliminary.length).toBeGreaterThan(0)
    // Each preliminary result carries the output so far (they replace each other).
    const outputs = preliminary.map((part) => (part.result as { output: string }).output)
    for (let i = 1; i < outputs.length; i++) expect(outputs[i]!.startsWith(outputs[i - 1]!)).toBe(true)
    expect(finalResults(parts)[0]).toMatchObject({
      result: { status: "completed", exitCode: 0, output: "line 1\nline 2\nline 3\n" }
    })
    expect(finalResults(parts)[0]!.isError).toBeUndefined()
  })

  it("command: with streamToolOutput off there are no preliminary results", () => {
    const parts = mapAll(loadStream("command"), false)
    expect(ofType(parts, "tool-result").filter((part) => part.preliminary === true)).toEqual([])
    expect(finalResults(parts)).toHaveLength(1)
  })

  it("file change: input lists the changed paths with their diffs", () => {
    const parts = mapAll(loadStream("file-change"))
    const [call] = ofType(parts, "tool-call")
    expect(call!.toolName).toBe("codex_file_change")
    expect(JSON.parse(call!.input)).toEqual({
      changes: [{ path: "/workspace/hello.txt", kind: "add", diff: "hello from codex\n" }]
    })
    expect(finalResults(parts)[0]).toMatchObject({
      result: { status: "completed", changes: [{ path: "/workspace/hello.txt", kind: "add" }] }
    })
  })

  it("web search: the call carries the query (read at completion: the item starts empty)", () => {
    const parts = mapAll(loadStream("web-search"))
    const [call] = ofType(parts, "tool-call")
    expect(call!.toolName).toBe("codex_web_search")
    expect(JSON.parse(call!.input)).toMatchObject({ query: "codex app-server protocol" })
  })

  it("dynamic tool: named after the tool, its arguments as input, the unsupported answer as an error result", () => {
    const parts = mapAll(loadStream("dynamic-tool"))
    const [call] = ofType(parts, "tool-call")
    expect(call).toMatchObject({ toolName: "lookup_ticket" })
    expect(JSON.parse(call!.input)).toEqual({ id: "T-42" })
    expect(finalResults(parts)[0]).toMatchObject({ isError: true, result: { success: false } })
  })

  it("a dynamic tool that is an AI SDK tool of the call maps to nothing (its call is the client's, from item/tool/call)", () => {
    const parts = mapAll(loadStream("dynamic-tool"), true, new Set(["lookup_ticket"]))
    expect(parts.filter((p) => p.type.startsWith("tool-"))).toEqual([])
    expect(parts.map((p) => p.type)).toEqual(["text-start", "text-delta", "text-delta", "text-end"])
    const mapper = new StreamPartMapper({
      metadata: (itemId) => ({ codex: { threadId: "T", ...(itemId === undefined ? {} : { itemId }) } }),
      streamToolOutput: () => true,
      isClientTool: () => true
    })
    expect(mapper.clientCall({
      threadId: "T",
      turnId: "U",
      callId: "call_1",
      namespace: null,
      tool: "lookup_ticket",
      arguments: { id: "T-1" }
    })).toEqual({
      type: "tool-call",
      toolCallId: "call_1",
      toolName: "lookup_ticket",
      input: "{\"id\":\"T-1\"}",
      providerMetadata: { codex: { threadId: "T", itemId: "call_1" } }
    })
  })

  it("declined approval: the command's result is an error with status declined", () => {
    const parts = mapAll(loadStream("approval-declined"))
    expect(finalResults(parts)[0]).toMatchObject({ isError: true, result: { status: "declined" } })
  })

  it("a command still running when the turn completes is closed with an error result", () => {
    const parts = mapAll(loadStream("background-command"))
    const results = finalResults(parts)
    expect(results).toHaveLength(1)
    expect(results[0]).toMatchObject({
      isError: true,
      result: { status: "interrupted", error: "The turn ended (completed) before this action finished." }
    })
  })

  it("a failed turn without items maps to no parts", () => {
    expect(mapAll(loadStream("failed"))).toEqual([])
  })
})

describe("stream parts of synthetic streams", () => {
  const base = { threadId: "t", turnId: "u" }
  const n = (method: string, params: Record<string, unknown>): RecordedMessage => ({ method, params: { ...base, ...params } })
  const command = (status: string, extra: Record<string, unknown> = {}) => ({
    type: "commandExecution",
    id: "cmd",
    command: "ls",
    cwd: "/w",
    status,
    aggregatedOutput: null,
    exitCode: null,
    durationMs: null,
    ...extra
  })

  it("a message that arrives whole (no deltas) is emitted at its completion", () => {
    const parts = mapAll([
      n("item/started", { item: { type: "agentMessage", id: "m", text: "" } }),
      n("item/completed", { item: { type: "agentMessage", id: "m", text: "whole" } }),
      { method: "turn/completed", params: { ...base, turn: { id: "u", status: "completed" } } }
    ])
    expect(parts.map((part) => part.type)).toEqual(["text-start", "text-delta", "text-end"])
    expect(ofType(parts, "text-delta")[0]!.delta).toBe("whole")
  })

  it("a message that was streamed is not repeated at its completion, and late deltas are dropped", () => {
    const parts = mapAll([
      n("item/agentMessage/delta", { itemId: "m", delta: "a" }),
      n("item/completed", { item: { type: "agentMessage", id: "m", text: "a" } }),
      n("item/agentMessage/delta", { itemId: "m", delta: "late" })
    ])
    expect(ofType(parts, "text-delta").map((part) => part.delta)).toEqual(["a"])
  })

  it("reasoning that was never streamed is emitted from the completed item", () => {
    const parts = mapAll([n("item/completed", { item: { type: "reasoning", id: "r", summary: ["s"], content: [] } })])
    expect(parts.map((part) => part.type)).toEqual(["reasoning-start", "reasoning-delta", "reasoning-end"])
  })

  it("a turn that fails mid-text closes the text, and an open action gets an error result with its output so far", () => {
    const parts = mapAll([
      n("item/agentMessage/delta", { itemId: "m", delta: "partial" }),
      n("item/started", { item: command("inProgress") }),
      n("item/commandExecution/outputDelta", { itemId: "cmd", delta: "out" }),
      { method: "turn/completed", params: { ...base, turn: { id: "u", status: "failed" } } }
    ])
    expect(parts.at(-2)).toMatchObject({ type: "text-end", id: "m" })
    expect(parts.at(-1)).toMatchObject({
      type: "tool-result",
      isError: true,
      result: { status: "failed", output: "out", error: "The turn ended (failed) before this action finished." }
    })
  })

  it("long streamed output is cut to its tail in preliminary results, and the final result has all of it", () => {
    const chunk = "x".repeat(PRELIMINARY_OUTPUT_LIMIT)
    const parts = mapAll([
      n("item/started", { item: command("inProgress") }),
      n("item/commandExecution/outputDelta", { itemId: "cmd", delta: `head${chunk}` }),
      n("item/completed", { item: command("failed", { exitCode: 1, aggregatedOutput: `head${chunk}` }) })
    ])
    const [preliminary, final] = ofType(parts, "tool-result")
    expect(preliminary!.result).toEqual({ status: "inProgress", output: chunk, outputTruncated: true })
    expect(final).toMatchObject({ isError: true, result: { status: "failed", exitCode: 1, output: `head${chunk}` } })
  })

  it("an action whose start was missed still gets its call before its result", () => {
    const parts = mapAll([n("item/completed", { item: command("completed", { exitCode: 0, aggregatedOutput: "" }) })])
    expect(parts.map((part) => part.type)).toEqual(["tool-call", "tool-result"])
  })

  it("MCP tool calls: named mcp__SERVER__TOOL, progress as preliminary results", () => {
    const item = {
      type: "mcpToolCall",
      id: "mcp1",
      server: "docs",
      tool: "search",
      arguments: { q: "x" },
      status: "inProgress",
      result: null,
      error: null,
      durationMs: null
    }
    const parts = mapAll([
      n("item/started", { item }),
      n("item/mcpToolCall/progress", { itemId: "mcp1", message: "searching" }),
      n("item/completed", {
        item: { ...item, status: "completed", result: { content: [], structuredContent: null, _meta: null } }
      })
    ])
    expect(parts.map((part) => part.type)).toEqual(["tool-call", "tool-result", "tool-result"])
    expect(parts[0]).toMatchObject({ toolName: "mcp__docs__search", input: JSON.stringify({ server: "docs", tool: "search", arguments: { q: "x" } }) })
    expect(parts[1]).toMatchObject({ preliminary: true, result: { status: "inProgress", progress: "searching" } })
    expect(parts[2]).toMatchObject({ result: { status: "completed", error: null } })
  })

  it("plan updates become a provider-executed update_plan call with its result", () => {
    const plan = [{ step: "read", status: "completed" }, { step: "write", status: "inProgress" }]
    const parts = mapAll([n("turn/plan/updated", { explanation: "why", plan })])
    expect(parts).toMatchObject([
      { type: "tool-call", toolName: "codex_update_plan", providerExecuted: true, dynamic: true },
      { type: "tool-result", toolName: "codex_update_plan", result: { status: "completed", plan } }
    ])
  })

  it("a web search that opened a page adds a url source", () => {
    const parts = mapAll([
      n("item/completed", {
        item: { type: "webSearch", id: "w", query: "", action: { type: "openPage", url: "https://example.com/" }, results: null }
      })
    ])
    expect(ofType(parts, "source")).toMatchObject([{ sourceType: "url", url: "https://example.com/" }])
  })

  it("a generated image with bytes becomes a file part", () => {
    const parts = mapAll([
      n("item/completed", {
        item: { type: "imageGeneration", id: "g", status: "completed", revisedPrompt: null, failure: null, generationId: null, result: "iVBORw0KGgo=" }
      })
    ])
    expect(ofType(parts, "file")).toMatchObject([{ mediaType: "image/png", data: "iVBORw0KGgo=" }])
  })
})

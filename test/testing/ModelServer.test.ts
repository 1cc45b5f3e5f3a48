/**
 * Tests of the offline Responses-API server (src/testing/ModelServer.ts) on its
 * own, over plain fetch: each mode, per-request mode selection, scripted
 * replies (every `Reply` part, the queue, `respond`), recording and shutdown.
 * What the real codex makes of each part is pinned in ModelServer.codex.test.ts.
 * No timing assertions; every wait is bounded by the test timeout.
 */
import { gzipSync } from "node:zlib"
import { afterEach, describe, expect, it } from "vitest"
import {
  type ModelServer,
  type ModelServerOptions,
  parseDirectives,
  splitIntoDeltas,
  startModelServer
} from "../../src/testing/ModelServer.ts"
import * as Reply from "../../src/testing/Reply.ts"

interface Frame {
  readonly event: string
  readonly data: Record<string, unknown>
}

const servers: Array<ModelServer> = []

afterEach(async () => {
  await Promise.all(servers.splice(0).map((server) => server.close()))
})

const serve = async (options?: ModelServerOptions): Promise<ModelServer> => {
  const server = await startModelServer(options)
  servers.push(server)
  return server
}

/** A request body shaped like the ones codex sends. */
const codexLikeBody = (userText: string): unknown => ({
  model: "mock-model",
  stream: true,
  input: [
    { type: "message", role: "developer", content: [{ type: "input_text", text: "You are a coding agent." }] },
    { type: "message", role: "user", content: [{ type: "input_text", text: "<environment_context/>" }] },
    { type: "message", role: "user", content: [{ type: "input_text", text: userText }] }
  ]
})

const post = (server: ModelServer, body: unknown, init: RequestInit = {}): Promise<Response> =>
  fetch(`${server.url}/responses`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
    ...init
  })

const parseFrames = (text: string): Array<Frame> =>
  text
    .split("\n\n")
    .filter((block) => block.trim() !== "")
    .map((block) => {
      const lines = block.split("\n")
      const event = lines.find((line) => line.startsWith("event: "))?.slice(7) ?? ""
      const data = JSON.parse(lines.find((line) => line.startsWith("data: "))?.slice(6) ?? "{}") as Record<
        string,
        unknown
      >
      return { event, data }
    })

const framesOf = async (response: Response): Promise<Array<Frame>> => parseFrames(await response.text())

const deltasOf = (frames: ReadonlyArray<Frame>): Array<string> =>
  frames.filter((frame) => frame.event === "response.output_text.delta").map((frame) => String(frame.data["delta"]))

/** Reads SSE frames until `stop` matches one, then cancels the body. */
const readUntil = async (response: Response, stop: (frame: Frame) => boolean): Promise<Array<Frame>> => {
  const reader = response.body!.getReader()
  const decoder = new TextDecoder()
  let buffered = ""
  const frames: Array<Frame> = []
  for (;;) {
    const { done, value } = await reader.read()
    if (done) break
    buffered += decoder.decode(value, { stream: true })
    const end = buffered.lastIndexOf("\n\n")
    if (end < 0) continue
    frames.push(...parseFrames(buffered.slice(0, end + 2)))
    buffered = buffered.slice(end + 2)
    if (frames.some(stop)) break
  }
  await reader.cancel()
  return frames
}

describe("model server", () => {
  it("serves on 127.0.0.1 with a base url ending in /v1", async () => {
    const server = await serve()
    expect(server.url).toBe(`http://127.0.0.1:${server.port}/v1`)
  })

  it("text mode streams created, item added, deltas, item done and completed in order", async () => {
    const server = await serve({ text: "Hello world", deltas: 3 })
    const response = await post(server, codexLikeBody("hi"))
    expect(response.status).toBe(200)
    expect(response.headers.get("content-type")).toBe("text/event-stream")
    const frames = await framesOf(response)
    expect(frames.map((frame) => frame.event)).toEqual([
      "response.created",
      "response.output_item.added",
      "response.output_text.delta",
      "response.output_text.delta",
      "response.output_text.delta",
      "response.output_item.done",
      "response.completed"
    ])
    expect(frames.every((frame) => frame.data["type"] === frame.event)).toBe(true)
  })

  it("text mode deltas concatenate to the reply text given in the item done frame", async () => {
    const server = await serve({ text: "The quick brown fox", deltas: 4 })
    const frames = await framesOf(await post(server, codexLikeBody("hi")))
    const deltas = deltasOf(frames)
    expect(deltas).toHaveLength(4)
    expect(deltas.join("")).toBe("The quick brown fox")
    const done = frames.find((frame) => frame.event === "response.output_item.done")!
    expect(done.data["item"]).toMatchObject({
      type: "message",
      role: "assistant",
      content: [{ type: "output_text", text: "The quick brown fox" }]
    })
  })

  it("echoes the last user message by default", async () => {
    const server = await serve()
    const frames = await framesOf(await post(server, codexLikeBody("what is 2+2?")))
    expect(deltasOf(frames).join("")).toBe("Echo: what is 2+2?")
    expect(server.requests[0]!.userText).toBe("what is 2+2?")
    expect(server.requests[0]!.replyText).toBe("Echo: what is 2+2?")
  })

  it("derives the reply from the request when text is a function", async () => {
    const server = await serve({ text: ({ userText, index }) => `#${index}: ${userText.toUpperCase()}` })
    await framesOf(await post(server, codexLikeBody("one")))
    const frames = await framesOf(await post(server, codexLikeBody("two")))
    expect(deltasOf(frames).join("")).toBe("#2: TWO")
  })

  it("reports usage in response.completed and records it", async () => {
    const server = await serve({ usage: () => ({ input_tokens: 7, output_tokens: 3, total_tokens: 10 }) })
    const frames = await framesOf(await post(server, codexLikeBody("hi")))
    const completed = frames.find((frame) => frame.event === "response.completed")!
    expect(completed.data["response"]).toMatchObject({
      id: "resp_1",
      usage: { input_tokens: 7, output_tokens: 3, total_tokens: 10 }
    })
    expect(server.requests[0]!.usage).toEqual({ input_tokens: 7, output_tokens: 3, total_tokens: 10 })
  })

  it("uses fresh response and item ids for every request", async () => {
    const server = await serve()
    const first = await framesOf(await post(server, codexLikeBody("a")))
    const second = await framesOf(await post(server, codexLikeBody("b")))
    const itemId = (frames: ReadonlyArray<Frame>) =>
      (frames.find((frame) => frame.event === "response.output_item.added")!.data["item"] as { id: string }).id
    expect(itemId(first)).not.toBe(itemId(second))
    expect(deltasOf(second).length).toBeGreaterThan(0)
    const deltaItemIds = second
      .filter((frame) => frame.event === "response.output_text.delta")
      .map((frame) => frame.data["item_id"])
    expect(new Set(deltaItemIds)).toEqual(new Set([itemId(second)]))
  })

  it("slow mode streams the same complete reply as text mode", async () => {
    const server = await serve({ mode: "slow", slowDelayMs: 5, text: "slow and steady", deltas: 3 })
    const frames = await framesOf(await post(server, codexLikeBody("hi")))
    expect(deltasOf(frames).join("")).toBe("slow and steady")
    expect(frames.at(-1)!.event).toBe("response.completed")
    expect(server.requests[0]!.mode).toBe("slow")
  })

  it("slow mode sends the first delta at once and then pauses", async () => {
    // With a pause far longer than the test timeout, the stream can only get
    // as far as the first delta.
    const server = await serve({ mode: "slow", slowDelayMs: 600_000, text: "abc", deltas: 3 })
    const frames = await readUntil(await post(server, codexLikeBody("hi")), (frame) =>
      frame.event === "response.output_text.delta"
    )
    expect(frames.map((frame) => frame.event)).toEqual([
      "response.created",
      "response.output_item.added",
      "response.output_text.delta"
    ])
    expect(deltasOf(frames)).toEqual(["a"])
  })

  it("failed mode sends response.failed with the error message and no completion", async () => {
    const server = await serve({ mode: "failed", errorMessage: "model exploded" })
    const response = await post(server, codexLikeBody("hi"))
    expect(response.status).toBe(200)
    const frames = await framesOf(response)
    expect(frames.map((frame) => frame.event)).toEqual(["response.created", "response.failed"])
    expect(frames[1]!.data["response"]).toMatchObject({
      status: "failed",
      error: { code: "server_error", message: "model exploded" }
    })
  })

  it("http500 mode answers 500 with a JSON error body", async () => {
    const server = await serve({ mode: "http500" })
    const response = await post(server, codexLikeBody("hi"))
    expect(response.status).toBe(500)
    expect(await response.json()).toMatchObject({ error: { type: "server_error" } })
  })

  it("http401 mode answers 401 with an invalid_api_key error", async () => {
    const server = await serve({ mode: "http401" })
    const response = await post(server, codexLikeBody("hi"))
    expect(response.status).toBe(401)
    expect(await response.json()).toMatchObject({ error: { code: "invalid_api_key" } })
  })

  it("cut mode ends the stream after some deltas without response.completed", async () => {
    const server = await serve({ mode: "cut", text: "abcdef", deltas: 6 })
    const frames = await framesOf(await post(server, codexLikeBody("hi")))
    const events = frames.map((frame) => frame.event)
    expect(events).not.toContain("response.completed")
    expect(events).not.toContain("response.output_item.done")
    expect(deltasOf(frames)).toEqual(["a", "b", "c"])
    expect(server.requests[0]!.deltas).toEqual(["a", "b", "c"])
  })

  it("a [mode:NAME] directive in the prompt overrides the server mode for that request", async () => {
    const server = await serve({ mode: "text" })
    const failed = await post(server, codexLikeBody("please [mode:http500]"))
    const ok = await post(server, codexLikeBody("plain"))
    expect(failed.status).toBe(500)
    expect(ok.status).toBe(200)
    await failed.text()
    await ok.text()
    expect(server.requests.map((request) => request.mode)).toEqual(["http500", "text"])
  })

  it("a directive only counts in the last user message", async () => {
    const server = await serve()
    const body = codexLikeBody("plain") as { input: Array<unknown> }
    body.input.splice(1, 0, {
      type: "message",
      role: "user",
      content: [{ type: "input_text", text: "earlier [mode:failed]" }]
    })
    const response = await post(server, body)
    await response.text()
    expect(server.requests[0]!.mode).toBe("text")
  })

  it("a [deltas:N] directive sets the number of deltas", async () => {
    const server = await serve({ text: "abcdefgh" })
    const frames = await framesOf(await post(server, codexLikeBody("[deltas:8]")))
    expect(deltasOf(frames)).toEqual(["a", "b", "c", "d", "e", "f", "g", "h"])
  })

  it("modeFor chooses the mode per request from the body", async () => {
    const server = await serve({
      modeFor: (body) => (JSON.stringify(body).includes("boom") ? "failed" : undefined)
    })
    const boom = await framesOf(await post(server, codexLikeBody("boom")))
    const fine = await framesOf(await post(server, codexLikeBody("fine")))
    expect(boom.map((frame) => frame.event)).toContain("response.failed")
    expect(fine.map((frame) => frame.event)).toContain("response.completed")
  })

  it("setMode changes the mode of later requests", async () => {
    const server = await serve()
    await (await post(server, codexLikeBody("a"))).text()
    server.setMode("http401")
    const response = await post(server, codexLikeBody("b"))
    expect(response.status).toBe(401)
    await response.text()
    expect(server.requests.map((request) => request.mode)).toEqual(["text", "http401"])
  })

  it("records each model request with its parsed body and receive time", async () => {
    const server = await serve()
    const before = Date.now()
    const body = codexLikeBody("record me")
    await (await post(server, body)).text()
    expect(server.requests).toHaveLength(1)
    const recorded = server.requests[0]!
    expect(recorded.body).toEqual(body)
    expect(recorded.path).toBe("/v1/responses")
    expect(recorded.receivedAt).toBeGreaterThanOrEqual(before)
  })

  it("marks a request finished once its stream has been sent in full", async () => {
    const server = await serve()
    await (await post(server, codexLikeBody("done"))).text()
    expect(server.requests[0]!.status).toBe("finished")
  })

  it("marks a request aborted when the client hangs up mid-stream", async () => {
    const server = await serve({ mode: "slow", slowDelayMs: 600_000 })
    const controller = new AbortController()
    const response = await post(server, codexLikeBody("bye"), { signal: controller.signal })
    await readUntil(response, (frame) => frame.event === "response.output_item.added")
    controller.abort()
    // Bounded by the test timeout: the server sees the hang-up shortly.
    while (server.requests[0]!.status === "streaming") await new Promise((resolve) => setTimeout(resolve, 5))
    expect(server.requests[0]!.status).toBe("aborted")
  })

  it("decodes a gzip-compressed request body", async () => {
    const server = await serve()
    const response = await fetch(`${server.url}/responses`, {
      method: "POST",
      headers: { "content-type": "application/json", "content-encoding": "gzip" },
      body: gzipSync(JSON.stringify(codexLikeBody("zipped")))
    })
    expect(deltasOf(await framesOf(response)).join("")).toBe("Echo: zipped")
  })

  it("answers other paths with 404 and records them as unexpected", async () => {
    const server = await serve()
    const response = await fetch(`${server.url}/models`)
    expect(response.status).toBe(404)
    await response.text()
    expect(server.requests).toHaveLength(0)
    expect(server.unexpected).toMatchObject([{ method: "GET", path: "/v1/models" }])
  })

  it("serves concurrent requests in different modes independently", async () => {
    const server = await serve({ deltas: 2 })
    const [a, b, c] = await Promise.all([
      post(server, codexLikeBody("alpha")).then(framesOf),
      post(server, codexLikeBody("beta [mode:failed]")).then(framesOf),
      post(server, codexLikeBody("gamma [mode:slow] [delay:1]")).then(framesOf)
    ])
    expect(deltasOf(a).join("")).toBe("Echo: alpha")
    expect(b.map((frame) => frame.event)).toContain("response.failed")
    expect(deltasOf(c).join("")).toBe("Echo: gamma [mode:slow] [delay:1]")
  })

  it("close ends a stream that is still open and resolves", async () => {
    const server = await startModelServer({ mode: "slow", slowDelayMs: 600_000 })
    const response = await post(server, codexLikeBody("hang"))
    const reader = response.body!.getReader()
    await reader.read() // at least the first frame has arrived
    await server.close()
    const rest = await (async () => {
      try {
        for (;;) {
          const { done } = await reader.read()
          if (done) return "ended"
        }
      } catch {
        return "errored"
      }
    })()
    expect(["ended", "errored"]).toContain(rest)
  })

  it("close is idempotent", async () => {
    const server = await startModelServer()
    await server.close()
    await server.close()
  })
})

describe("model server helpers", () => {
  it("splitIntoDeltas keeps every character and never yields empty pieces", () => {
    expect(splitIntoDeltas("abcdefg", 3)).toEqual(["ab", "cde", "fg"])
    expect(splitIntoDeltas("ab", 5)).toEqual(["a", "b"])
    expect(splitIntoDeltas("", 3)).toEqual([])
    expect(splitIntoDeltas("héllo 👋", 2).join("")).toBe("héllo 👋")
  })

  it("parseDirectives reads mode, deltas and delay and ignores unknown values", () => {
    expect(parseDirectives("x [mode:slow] [deltas:5] [delay:20]")).toEqual({ mode: "slow", deltas: 5, delayMs: 20 })
    expect(parseDirectives("[mode:bogus] [deltas:0] [delay:-1]")).toEqual({})
  })
})

const eventsOf = (frames: ReadonlyArray<Frame>) => frames.map((frame) => frame.event)
const dataOf = (frames: ReadonlyArray<Frame>, event: string) =>
  frames.filter((frame) => frame.event === event).map((frame) => frame.data)

describe("scripted replies", () => {
  it("a text part streams a message like the text mode, with its own delta count", async () => {
    const server = await serve({ replies: [Reply.text("scripted words", { deltas: 2 })] })
    const frames = await framesOf(await post(server, codexLikeBody("hi")))
    expect(eventsOf(frames)).toEqual([
      "response.created",
      "response.output_item.added",
      "response.output_text.delta",
      "response.output_text.delta",
      "response.output_item.done",
      "response.completed"
    ])
    expect(deltasOf(frames).join("")).toBe("scripted words")
    expect(server.requests[0]).toMatchObject({ mode: "scripted", replyText: "scripted words" })
  })

  it("a reasoning part streams summary parts by summary_index and content by content_index, then the whole item", async () => {
    const server = await serve({
      replies: [[Reply.reasoning(["plan A", "plan B"], { content: "raw", deltas: 2 }), Reply.text("answer")]]
    })
    const frames = await framesOf(await post(server, codexLikeBody("hi")))
    expect(eventsOf(frames).slice(0, 17)).toEqual([
      "response.created",
      "response.output_item.added",
      "response.reasoning_summary_part.added",
      "response.reasoning_summary_text.delta",
      "response.reasoning_summary_text.delta",
      "response.reasoning_summary_text.done",
      "response.reasoning_summary_part.done",
      "response.reasoning_summary_part.added",
      "response.reasoning_summary_text.delta",
      "response.reasoning_summary_text.delta",
      "response.reasoning_summary_text.done",
      "response.reasoning_summary_part.done",
      "response.reasoning_text.delta",
      "response.reasoning_text.delta",
      "response.reasoning_text.done",
      "response.output_item.done",
      "response.output_item.added"
    ])
    const summaryDeltas = dataOf(frames, "response.reasoning_summary_text.delta")
    expect(summaryDeltas.map((d) => [d["summary_index"], d["delta"]])).toEqual([[0, "pla"], [0, "n A"], [1, "pla"], [1, "n B"]])
    expect(dataOf(frames, "response.reasoning_text.delta").map((d) => [d["content_index"], d["delta"]])).toEqual([
      [0, "ra"],
      [0, "w"]
    ])
    expect(dataOf(frames, "response.output_item.added")[0]).toMatchObject({
      output_index: 0,
      item: { type: "reasoning", id: "rs_1_0", summary: [] }
    })
    expect(dataOf(frames, "response.output_item.done")[0]).toMatchObject({
      output_index: 0,
      item: {
        type: "reasoning",
        id: "rs_1_0",
        summary: [{ type: "summary_text", text: "plan A" }, { type: "summary_text", text: "plan B" }],
        content: [{ type: "reasoning_text", text: "raw" }]
      }
    })
    // The message after it is the second output item.
    expect(dataOf(frames, "response.output_item.added")[1]).toMatchObject({ output_index: 1, item: { id: "msg_1_1" } })
    expect(server.requests[0]!.replyText).toBe("answer")
  })

  it("a function call part sends the call with JSON arguments and a call id", async () => {
    const server = await serve({ replies: [Reply.functionCall("lookup_ticket", { id: "T-1" })] })
    const frames = await framesOf(await post(server, codexLikeBody("hi")))
    expect(eventsOf(frames)).toEqual([
      "response.created",
      "response.output_item.added",
      "response.function_call_arguments.delta",
      "response.function_call_arguments.done",
      "response.output_item.done",
      "response.completed"
    ])
    expect(dataOf(frames, "response.output_item.added")[0]).toMatchObject({
      item: { type: "function_call", name: "lookup_ticket", call_id: "call_1_0", arguments: "" }
    })
    expect(dataOf(frames, "response.output_item.done")[0]).toMatchObject({
      item: { type: "function_call", id: "fc_1_0", name: "lookup_ticket", call_id: "call_1_0", arguments: '{"id":"T-1"}' }
    })
    expect(dataOf(frames, "response.completed")[0]!["response"]).toMatchObject({
      output: [{ type: "function_call", call_id: "call_1_0" }]
    })
  })

  it("a custom tool call part (applyPatch) sends the call with its input as is", async () => {
    const patch = "*** Begin Patch\n*** Add File: a.txt\n+a\n*** End Patch\n"
    const server = await serve({ replies: [Reply.applyPatch(patch)] })
    const frames = await framesOf(await post(server, codexLikeBody("hi")))
    expect(eventsOf(frames)).toEqual([
      "response.created",
      "response.output_item.added",
      "response.output_item.done",
      "response.completed"
    ])
    expect(dataOf(frames, "response.output_item.added")[0]).toMatchObject({
      item: { type: "custom_tool_call", name: "apply_patch", call_id: "call_1_0", input: "" }
    })
    expect(dataOf(frames, "response.output_item.done")[0]).toMatchObject({
      item: { type: "custom_tool_call", id: "ct_1_0", name: "apply_patch", call_id: "call_1_0", input: patch }
    })
    expect(Reply.customToolCall("x", "y", { callId: "c" })).toEqual({ _tag: "CustomToolCall", name: "x", input: "y", callId: "c" })
    expect(() => Reply.customToolCall("x", 1 as never)).toThrow(TypeError)
  })

  it("a web search part sends a completed web_search_call with its query", async () => {
    const server = await serve({ replies: [[Reply.webSearch("codex"), Reply.text("found")]] })
    const frames = await framesOf(await post(server, codexLikeBody("hi")))
    expect(dataOf(frames, "response.output_item.done")[0]).toMatchObject({
      item: { type: "web_search_call", id: "ws_1_0", status: "completed", action: { type: "search", query: "codex" } }
    })
    expect(server.requests[0]!.replyText).toBe("found")
  })

  it("shellCommand is a call of codex's exec_command tool", () => {
    expect(Reply.shellCommand("echo hi", { callId: "c1" })).toEqual({
      _tag: "FunctionCall",
      name: "exec_command",
      arguments: '{"cmd":"echo hi","login":false}',
      callId: "c1",
      namespace: undefined
    })
  })

  it("a fail part sends response.failed with its code and ends the stream there", async () => {
    const server = await serve({
      replies: [[Reply.text("partial"), Reply.fail("slow down", { code: "rate_limit_exceeded" }), Reply.text("never")]]
    })
    const frames = await framesOf(await post(server, codexLikeBody("hi")))
    expect(eventsOf(frames).at(-1)).toBe("response.failed")
    expect(eventsOf(frames)).not.toContain("response.completed")
    expect(dataOf(frames, "response.failed")[0]!["response"]).toMatchObject({
      status: "failed",
      error: { code: "rate_limit_exceeded", message: "slow down" }
    })
    expect(deltasOf(frames).join("")).toBe("partial")
    expect(server.requests[0]!.usage).toBeUndefined()
  })

  it("a cut part ends the stream without response.completed", async () => {
    const server = await serve({ replies: [[Reply.text("abc"), Reply.cut()]] })
    const frames = await framesOf(await post(server, codexLikeBody("hi")))
    expect(eventsOf(frames).at(-1)).toBe("response.output_item.done")
    expect(eventsOf(frames)).not.toContain("response.completed")
  })

  it("a pause part holds the stream before the next part", async () => {
    const server = await serve({ replies: [[Reply.text("before"), Reply.pause(600_000), Reply.text("after")]] })
    const frames = await readUntil(await post(server, codexLikeBody("hi")), (frame) =>
      frame.event === "response.output_item.done"
    )
    expect(deltasOf(frames).join("")).toBe("before")
    // Bounded by the test timeout: the server sees the hang-up shortly.
    while (server.requests[0]!.status === "streaming") await new Promise((resolve) => setTimeout(resolve, 5))
    expect(server.requests[0]!.status).toBe("aborted")
  })

  it("a usage part sets the usage of response.completed", async () => {
    const server = await serve({
      replies: [[Reply.text("x"), Reply.usage({ input: 5, output: 2, cachedInput: 1, reasoningOutput: 1 })]]
    })
    const frames = await framesOf(await post(server, codexLikeBody("hi")))
    const usage = {
      input_tokens: 5,
      output_tokens: 2,
      total_tokens: 7,
      input_tokens_details: { cached_tokens: 1 },
      output_tokens_details: { reasoning_tokens: 1 }
    }
    expect(dataOf(frames, "response.completed")[0]!["response"]).toMatchObject({ usage })
    expect(server.requests[0]!.usage).toEqual(usage)
  })

  it("httpError answers with the status, a JSON error body and the extra headers", async () => {
    const server = await serve({ replies: [Reply.httpError(503, { message: "overloaded", headers: { "x-extra": "1" } })] })
    const response = await post(server, codexLikeBody("hi"))
    expect(response.status).toBe(503)
    expect(response.headers.get("x-extra")).toBe("1")
    expect(await response.json()).toEqual({
      error: { message: "overloaded", type: "server_error", code: null, param: null }
    })
  })

  it("rateLimited answers 429 with retry-after in whole seconds, or without the header", async () => {
    const server = await serve({ replies: [Reply.rateLimited({ retryAfterSeconds: 2 }), Reply.rateLimited()] })
    const limited = await post(server, codexLikeBody("a"))
    expect(limited.status).toBe(429)
    expect(limited.headers.get("retry-after")).toBe("2")
    expect(await limited.json()).toMatchObject({ error: { code: "rate_limit_exceeded" } })
    const bare = await post(server, codexLikeBody("b"))
    expect(bare.status).toBe(429)
    expect(bare.headers.get("retry-after")).toBeNull()
    await bare.text()
  })

  it("the constructors reject bad arguments with a TypeError naming them", () => {
    expect(() => Reply.text("x", { deltas: 0 })).toThrow(/deltas must be an integer >= 1/)
    expect(() => Reply.pause(-1)).toThrow(/ms must be an integer >= 0/)
    expect(() => Reply.httpError(200)).toThrow(/status must be an HTTP error status/)
    expect(() => Reply.rateLimited({ retryAfterSeconds: 0.5 })).toThrow(/retryAfterSeconds must be an integer/)
    expect(() => Reply.reasoning([1 as unknown as string])).toThrow(/summary\[0\] must be a string/)
  })
})

describe("choosing the reply", () => {
  it("queued replies come first, one per request, then respond, then directives and modes", async () => {
    const server = await serve({
      replies: [Reply.text("queued 1")],
      respond: (request) => (request.userText.includes("scripted") ? Reply.text("from respond") : undefined)
    })
    server.enqueue(Reply.text("queued 2"))
    expect(server.queued).toBe(2)
    const texts: Array<string> = []
    for (const prompt of ["scripted", "scripted", "scripted", "plain", "plain [mode:failed]"]) {
      texts.push(deltasOf(await framesOf(await post(server, codexLikeBody(prompt)))).join(""))
    }
    expect(texts).toEqual(["queued 1", "queued 2", "from respond", "Echo: plain", ""])
    expect(server.requests.map((request) => request.mode)).toEqual(["scripted", "scripted", "scripted", "text", "failed"])
    expect(server.queued).toBe(0)
  })

  it("respond may be async, and the request is recorded before it decides", async () => {
    let decide!: (reply: Reply.Reply) => void
    const server = await serve({ respond: () => new Promise<Reply.Reply>((resolve) => (decide = resolve)) })
    const response = post(server, codexLikeBody("wait for me"))
    while (server.requests.length === 0) await new Promise((resolve) => setTimeout(resolve, 5))
    expect(server.requests[0]).toMatchObject({ userText: "wait for me", reply: undefined, status: "streaming" })
    decide(Reply.text("decided"))
    expect(deltasOf(await framesOf(await response)).join("")).toBe("decided")
    expect(server.requests[0]!.reply).toMatchObject({ _tag: "Text", text: "decided" })
  })

  it("a respond that throws is answered with HTTP 500 and recorded as the request's error", async () => {
    const server = await serve({
      respond: () => {
        throw new Error("script bug")
      }
    })
    const response = await post(server, codexLikeBody("hi"))
    expect(response.status).toBe(500)
    expect(await response.json()).toMatchObject({ error: { message: "mock model server: respond failed: script bug" } })
    expect(server.requests[0]!.error).toBe("script bug")
  })

  it("a reply that is not made of parts is answered with HTTP 500 naming it", async () => {
    const server = await serve({ replies: [{ _tag: "Bogus" } as unknown as Reply.Reply] })
    const response = await post(server, codexLikeBody("hi"))
    expect(response.status).toBe(500)
    await response.text()
    expect(server.requests[0]!.error).toMatch(/not a Reply part/)
  })
})

describe("recorded requests", () => {
  it("record the authorization header, the model, the tools offered, this turn's tool outputs and images", async () => {
    const server = await serve()
    const body = {
      model: "gpt-test",
      input: [
        { type: "message", role: "user", content: [{ type: "input_text", text: "earlier" }] },
        { type: "function_call_output", call_id: "old", output: "from an earlier turn" },
        {
          type: "message",
          role: "user",
          content: [{ type: "input_text", text: "look" }, { type: "input_image", image_url: "data:image/png;base64,AAAA" }]
        },
        { type: "function_call", call_id: "c1", name: "exec_command", arguments: "{}" },
        { type: "function_call_output", call_id: "c1", output: "ran" },
        { type: "custom_tool_call", call_id: "c2", name: "apply_patch", input: "*** Begin Patch" },
        { type: "custom_tool_call_output", call_id: "c2", output: "patched" }
      ],
      tools: [{ type: "function", name: "exec_command" }, { type: "namespace", name: "multi_agent_v1" }, {
        type: "web_search"
      }]
    }
    const response = await fetch(`${server.url}/responses`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: "Bearer sk-test" },
      body: JSON.stringify(body)
    })
    await response.text()
    expect(server.requests[0]).toMatchObject({
      index: 1,
      authorization: "Bearer sk-test",
      model: "gpt-test",
      userText: "look",
      images: ["data:image/png;base64,AAAA"],
      toolNames: ["exec_command", "multi_agent_v1", "web_search"],
      toolOutputs: [{ callId: "c1", output: "ran" }, { callId: "c2", output: "patched" }]
    })
    expect(server.requests[0]!.headers["authorization"]).toBe("Bearer sk-test")
  })
})

/**
 * The JSON-RPC channel over an in-memory transport: input lines come from a
 * Queue, written lines go to an array and a Queue (so a test can wait for a
 * request to be written before answering it). Time is the TestClock's.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Logger from "effect/Logger"
import * as Queue from "effect/Queue"
import * as References from "effect/References"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/testing/TestClock"
import { ChannelClosedError, JsonRpcError, RequestTimeoutError, WorkerCrashedError } from "../src/errors.ts"
import * as JsonRpc from "../src/internal/jsonRpc.ts"

interface LogEntry {
  readonly level: string
  readonly text: string
}

/** Runs `body` with every log entry (debug included) collected into `logs`. */
const withLogs = <A, E, R>(logs: Array<LogEntry>, body: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  body.pipe(
    Effect.provideService(
      References.CurrentLoggers,
      new Set([Logger.make((options) => {
        const parts = Array.isArray(options.message) ? options.message : [options.message]
        logs.push({ level: options.logLevel, text: parts.map(String).join(" ") })
      })])
    ),
    Effect.provideService(References.MinimumLogLevel, "Debug")
  )

const makeTransport = <CE = never>(
  onInputEnd?: (exit: Exit.Exit<void, never>) => Effect.Effect<ChannelClosedError | CE>
) =>
  Effect.gen(function*() {
    const input = yield* Queue.unbounded<string, Cause.Done>()
    const writes = yield* Queue.unbounded<string>()
    const written: Array<string> = []
    const channel = yield* JsonRpc.make<CE, never, never>({
      input: Stream.fromQueue(input),
      write: (line) =>
        Effect.sync(() => {
          written.push(line)
          Queue.offerUnsafe(writes, line)
        }),
      onInputEnd
    })
    /** Feeds one line (a value is JSON-encoded) to the channel. */
    const send = (message: unknown) =>
      Queue.offer(input, typeof message === "string" ? message : JSON.stringify(message))
    /** Waits for the next written line and parses it. */
    const nextWrite = Effect.map(Queue.take(writes), (line) => JSON.parse(line) as Record<string, unknown>)
    return { channel, input, written, send, nextWrite }
  })

describe("JsonRpc channel", () => {
  it.effect("matches responses that arrive out of order to their requests", () =>
    Effect.gen(function*() {
      const { channel, nextWrite, send } = yield* makeTransport()
      const first = yield* Effect.forkChild(channel.request("a", { n: 1 }))
      const second = yield* Effect.forkChild(channel.request("b", { n: 2 }))
      const requestA = yield* nextWrite
      const requestB = yield* nextWrite
      expect(requestA).toEqual({ id: 1, method: "a", params: { n: 1 } })
      expect(requestB).toEqual({ id: 2, method: "b", params: { n: 2 } })
      yield* send({ id: 2, result: "for b" })
      yield* send({ id: 1, result: "for a" })
      expect(yield* Fiber.join(second)).toBe("for b")
      expect(yield* Fiber.join(first)).toBe("for a")
      expect(yield* channel.pendingCount).toBe(0)
    }))

  it.effect("sends no jsonrpc field and omits params when there are none", () =>
    Effect.gen(function*() {
      const { channel, nextWrite, send, written } = yield* makeTransport()
      yield* channel.notify("initialized")
      yield* nextWrite
      const fiber = yield* Effect.forkChild(channel.request("ping"))
      yield* nextWrite
      yield* send({ id: 1, result: null, jsonrpc: "2.0" })
      expect(yield* Fiber.join(fiber)).toBe(null)
      expect(written).toEqual(["{\"method\":\"initialized\"}\n", "{\"id\":1,\"method\":\"ping\"}\n"])
    }))

  it.effect("matches ids by type: a string id does not answer a numeric request", () => {
    const logs: Array<LogEntry> = []
    return withLogs(
      logs,
      Effect.gen(function*() {
        const { channel, nextWrite, send } = yield* makeTransport()
        const fiber = yield* Effect.forkChild(channel.request("a"))
        yield* nextWrite
        yield* send({ id: "1", result: "wrong" })
        yield* send({ id: 1, result: "right" })
        expect(yield* Fiber.join(fiber)).toBe("right")
        expect(logs.some((entry) => entry.level === "Warn" && entry.text.includes("never sent"))).toBe(true)
      })
    )
  })

  it.effect("answers a server request with id 0 through respond", () =>
    Effect.gen(function*() {
      const { channel, nextWrite, send } = yield* makeTransport()
      const received = yield* Deferred.make<JsonRpc.IncomingMessage>()
      channel.subscribe((message) => Deferred.doneUnsafe(received, Effect.succeed(message)))
      yield* send({ id: 0, method: "item/tool/call", params: { tool: "t" } })
      const request = yield* Deferred.await(received)
      expect(request._tag).toBe("Request")
      if (request._tag !== "Request") return
      expect(request.id).toBe(0)
      expect(request.method).toBe("item/tool/call")
      expect(request.params).toEqual({ tool: "t" })
      yield* channel.respond(request.id, { success: true })
      expect(yield* nextWrite).toEqual({ id: 0, result: { success: true } })
    }))

  it.effect("answers a server request with a string id, echoing it unchanged", () =>
    Effect.gen(function*() {
      const { channel, nextWrite, send } = yield* makeTransport()
      const requests = yield* Effect.forkChild(Stream.runHead(channel.messages))
      yield* Effect.yieldNow
      yield* send({ id: "req-7", method: "item/commandExecution/requestApproval", params: {} })
      const message = yield* Fiber.join(requests)
      expect(message._tag).toBe("Some")
      if (message._tag !== "Some" || message.value._tag !== "Request") return
      yield* channel.respondError(message.value.id, { code: -32000, message: "no", data: { why: 1 } })
      expect(yield* nextWrite).toEqual({ id: "req-7", error: { code: -32000, message: "no", data: { why: 1 } } })
    }))

  it.effect("delivers notifications with their extra fields", () =>
    Effect.gen(function*() {
      const { channel, send } = yield* makeTransport()
      const collected = yield* Effect.forkChild(Stream.runCollect(Stream.take(channel.messages, 2)))
      yield* Effect.yieldNow
      yield* send({ method: "turn/started", params: { turnId: "t" }, emittedAtMs: 42 })
      yield* send({ method: "thread/started" })
      const [first, second] = yield* Fiber.join(collected)
      expect(first).toEqual({
        _tag: "Notification",
        method: "turn/started",
        params: { turnId: "t" },
        raw: { method: "turn/started", params: { turnId: "t" }, emittedAtMs: 42 }
      })
      expect(second?.method).toBe("thread/started")
      expect(second?.params).toBeUndefined()
    }))

  it.effect("fails a request with JsonRpcError carrying code, message and data", () =>
    Effect.gen(function*() {
      const { channel, nextWrite, send } = yield* makeTransport()
      const fiber = yield* Effect.forkChild(Effect.flip(channel.request("thread/start", {})))
      yield* nextWrite
      yield* send({ id: 1, error: { code: -32600, message: "Not initialized", data: { hint: "x" } } })
      const error = yield* Fiber.join(fiber)
      expect(error).toBeInstanceOf(JsonRpcError)
      if (!(error instanceof JsonRpcError)) return
      expect(error.code).toBe(-32600)
      expect(error.serverMessage).toBe("Not initialized")
      expect(error.data).toEqual({ hint: "x" })
      expect(error.method).toBe("thread/start")
      expect(error.message).toContain("thread/start")
      expect(error.message).toContain("Not initialized")
    }))

  it.effect("fails a request with RequestTimeoutError when no response arrives in time", () =>
    Effect.gen(function*() {
      const { channel, nextWrite } = yield* makeTransport()
      const fiber = yield* Effect.forkChild(Effect.flip(channel.request("turn/start", {}, { timeout: "5 seconds" })))
      yield* nextWrite
      yield* TestClock.adjust("4999 millis")
      expect(fiber.pollUnsafe()).toBeUndefined()
      yield* TestClock.adjust("1 millis")
      const error = yield* Fiber.join(fiber)
      expect(error).toBeInstanceOf(RequestTimeoutError)
      if (!(error instanceof RequestTimeoutError)) return
      expect(error.method).toBe("turn/start")
      expect(error.timeoutMs).toBe(5000)
      expect(yield* channel.pendingCount).toBe(0)
    }))

  it.effect("removes an interrupted request; its late response is logged and ignored", () => {
    const logs: Array<LogEntry> = []
    return withLogs(
      logs,
      Effect.gen(function*() {
        const { channel, nextWrite, send } = yield* makeTransport()
        const fiber = yield* Effect.forkChild(channel.request("slow"))
        yield* nextWrite
        expect(yield* channel.pendingCount).toBe(1)
        yield* Fiber.interrupt(fiber)
        expect(yield* channel.pendingCount).toBe(0)
        yield* send({ id: 1, result: "late" })
        const next = yield* Effect.forkChild(channel.request("fast"))
        yield* nextWrite
        yield* send({ id: 2, result: "ok" })
        expect(yield* Fiber.join(next)).toBe("ok")
        expect(logs.some((entry) => entry.level === "Debug" && entry.text.includes("abandoned"))).toBe(true)
      })
    )
  })

  it.effect("skips malformed lines and keeps working", () => {
    const logs: Array<LogEntry> = []
    return withLogs(
      logs,
      Effect.gen(function*() {
        const { channel, nextWrite, send } = yield* makeTransport()
        const fiber = yield* Effect.forkChild(channel.request("a"))
        yield* nextWrite
        yield* send("this is not json")
        yield* send("[1, 2]")
        yield* send("42")
        yield* send({ foo: "bar" })
        yield* send({ id: 1, method: 5 })
        yield* send({ id: 99, result: "nobody asked" })
        yield* send("")
        yield* send({ id: 1, result: "fine" })
        expect(yield* Fiber.join(fiber)).toBe("fine")
        expect(logs.filter((entry) => entry.level === "Warn")).toHaveLength(6)
      })
    )
  })

  it.effect("fails pending requests with the injected error when the input ends, and later ones at once", () =>
    Effect.gen(function*() {
      const crash = new WorkerCrashedError({ pid: 123, code: 1, signal: null, stderrTail: ["boom"] })
      const { channel, input, nextWrite } = yield* makeTransport<WorkerCrashedError>(() => Effect.succeed(crash))
      const first = yield* Effect.forkChild(Effect.flip(channel.request("a")))
      const second = yield* Effect.forkChild(Effect.flip(channel.request("b", undefined, { timeout: "1 minute" })))
      yield* nextWrite
      yield* nextWrite
      yield* Queue.end(input)
      expect(yield* Fiber.join(first)).toBe(crash)
      expect(yield* Fiber.join(second)).toBe(crash)
      expect(yield* channel.closed).toBe(crash)
      expect(yield* channel.isClosed).toBe(true)
      expect(yield* Effect.flip(channel.request("c"))).toBe(crash)
      expect(yield* Effect.flip(channel.notify("d"))).toBe(crash)
    }))

  it.effect("closes with ChannelClosedError when the input ends and no error is injected", () =>
    Effect.gen(function*() {
      const { channel, input } = yield* makeTransport()
      yield* Queue.end(input)
      const error = yield* channel.closed
      expect(error).toBeInstanceOf(ChannelClosedError)
      expect(error.reason).toContain("ended")
    }))

  it.effect("ends message streams when the channel closes", () =>
    Effect.gen(function*() {
      const { channel, send } = yield* makeTransport()
      const collected = yield* Effect.forkChild(Stream.runCollect(channel.messages))
      yield* Effect.yieldNow
      yield* send({ method: "n" })
      yield* Effect.yieldNow
      expect(yield* channel.close("test is over")).toBe(true)
      expect(yield* channel.close("again")).toBe(false)
      expect((yield* Fiber.join(collected)).map((message) => message.method)).toEqual(["n"])
    }))

  it.effect("fails pending requests when the channel's scope closes", () =>
    Effect.gen(function*() {
      const pending = yield* Effect.scoped(Effect.gen(function*() {
        const { channel, nextWrite } = yield* makeTransport()
        const fiber = yield* Effect.forkDetach(Effect.flip(channel.request("a")))
        yield* nextWrite
        return fiber
      }))
      const error = yield* Fiber.join(pending)
      expect(error).toBeInstanceOf(ChannelClosedError)
    }))

  it.effect("keeps going when a listener throws", () => {
    const logs: Array<LogEntry> = []
    return withLogs(
      logs,
      Effect.gen(function*() {
        const { channel, nextWrite, send } = yield* makeTransport()
        const seen: Array<string> = []
        channel.subscribe(() => {
          throw new Error("listener bug")
        })
        const unsubscribe = channel.subscribe((message) => seen.push(message.method))
        yield* send({ method: "one" })
        const fiber = yield* Effect.forkChild(channel.request("a"))
        yield* nextWrite
        yield* send({ id: 1, result: "still works" })
        expect(yield* Fiber.join(fiber)).toBe("still works")
        unsubscribe()
        yield* send({ method: "two" })
        yield* channel.close("done") // closing after the line above has been read
        expect(seen).toEqual(["one"])
        expect(logs.some((entry) => entry.level === "Warn" && entry.text.includes("listener"))).toBe(true)
      })
    )
  })

  it.effect("a throwing onClose hook is logged with the logger of the context the channel was made in", () => {
    const logs: Array<LogEntry> = []
    return Effect.gen(function*() {
      // Only the channel's maker has the collecting logger; the close comes from elsewhere.
      const { channel } = yield* withLogs(logs, makeTransport())
      channel.onClose(() => {
        throw new Error("hook bug")
      })
      yield* channel.close("done")
      for (let i = 0; i < 5; i++) yield* Effect.yieldNow
      expect(logs.filter((entry) => entry.text.includes("onClose hook threw")).map((entry) => entry.level)).toEqual([
        "Warn"
      ])
    })
  })

  it.effect("never interleaves writes of concurrent requests", () =>
    Effect.gen(function*() {
      const count = 50
      const input = yield* Queue.unbounded<string, Cause.Done>()
      const allWritten = yield* Deferred.make<void>()
      const chunks: Array<string> = []
      let linesWritten = 0
      // A transport that writes each line in three pieces, yielding between them.
      const channel = yield* JsonRpc.make({
        input: Stream.fromQueue(input),
        write: (line) =>
          Effect.gen(function*() {
            const third = Math.ceil(line.length / 3)
            for (let i = 0; i < line.length; i += third) {
              chunks.push(line.slice(i, i + third))
              yield* Effect.yieldNow
            }
            if (++linesWritten === count) yield* Deferred.succeed(allWritten, undefined)
          })
      })
      const fibers = yield* Effect.forEach(
        Array.from({ length: count }, (_, i) => i),
        (i) => Effect.forkChild(channel.request("m", { i, padding: "x".repeat(i) }))
      )
      yield* Deferred.await(allWritten)
      const lines = chunks.join("").split("\n")
      expect(lines.pop()).toBe("")
      const parsed = lines.map((line) => JSON.parse(line) as { id: number; params: { i: number; padding: string } })
      expect(new Set(parsed.map((message) => message.id)).size).toBe(count)
      for (const message of parsed) expect(message.params.padding).toBe("x".repeat(message.params.i))
      for (const message of parsed) yield* Queue.offer(input, JSON.stringify({ id: message.id, result: message.id }))
      const results = yield* Fiber.joinAll(fibers)
      expect([...results].sort((a, b) => Number(a) - Number(b))).toEqual(Array.from({ length: count }, (_, i) => i + 1))
    }))
})

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
import {
  ChannelClosedError,
  JsonRpcError,
  ProtocolError,
  RequestTimeoutError,
  WorkerCrashedError
} from "../src/errors.ts"
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
  describe("malformed responses to pending requests", () => {
    const shapes: ReadonlyArray<readonly [string, Record<string, unknown>, string]> = [
      ["both result and error: null", { result: 1, error: null }, "both"],
      ["an error code that is a string", { error: { code: "-32000", message: "no" } }, "error.code"],
      ["an error without a message", { error: { code: -32000 } }, "error.message"],
      ["an error that is a string", { error: "boom" }, "not an object"],
      ["the id alone", {}, "neither"]
    ]
    it.effect.each(shapes)("%s fails the request with ProtocolError at once and closes the channel", ([
      ,
      response,
      reason
    ]) =>
      Effect.gen(function*() {
        const { channel, nextWrite, send } = yield* makeTransport()
        const closedWith: Array<unknown> = []
        channel.onClose((error) => closedWith.push(error))
        const fiber = yield* Effect.forkChild(Effect.flip(channel.request("thread/start", { n: 1 })))
        const other = yield* Effect.forkChild(Effect.flip(channel.request("turn/start")))
        yield* nextWrite
        yield* nextWrite
        yield* send({ id: 1, ...response })
        // No clock adjustment: nothing waits for a timeout.
        const error = yield* Fiber.join(fiber)
        expect(error).toBeInstanceOf(ProtocolError)
        if (!(error instanceof ProtocolError)) return
        expect(error.kind).toBe("MalformedResponse")
        expect(error.method).toBe("thread/start")
        expect(error.reason).toContain(reason)
        expect(error.preview).toContain("\"id\":1")
        expect(error.message).toContain("malformed response to \"thread/start\"")
        // The server is broken: the channel ends, with the same error for everyone.
        expect(yield* Fiber.join(other)).toBe(error)
        expect(closedWith).toEqual([error])
        expect(yield* channel.closed).toBe(error)
        expect(yield* Effect.flip(channel.request("later"))).toBe(error)
      }))

    it.effect("a malformed response to an abandoned or unknown id is only logged", () => {
      const logs: Array<LogEntry> = []
      return withLogs(
        logs,
        Effect.gen(function*() {
          const { channel, nextWrite, send } = yield* makeTransport()
          const abandoned = yield* Effect.forkChild(channel.request("a"))
          yield* nextWrite
          yield* Fiber.interrupt(abandoned)
          const fiber = yield* Effect.forkChild(channel.request("b"))
          yield* nextWrite
          yield* send({ id: 1, error: "boom" })
          yield* send({ id: 77, error: "boom" })
          yield* send({ id: 2, result: "fine" })
          expect(yield* Fiber.join(fiber)).toBe("fine")
          expect(yield* channel.isClosed).toBe(false)
        })
      )
    })
  })

  it.effect("an error response keeps data and every other field of the error object", () =>
    Effect.gen(function*() {
      const { channel, nextWrite, send } = yield* makeTransport()
      const fiber = yield* Effect.forkChild(Effect.flip(channel.request("turn/start")))
      yield* nextWrite
      yield* send({
        id: 1,
        error: { code: -32001, message: "busy", data: { retry: true }, retryAfterMs: 1500, codexErrorInfo: { kind: "x" } }
      })
      const error = yield* Fiber.join(fiber)
      expect(error).toBeInstanceOf(JsonRpcError)
      if (!(error instanceof JsonRpcError)) return
      expect(error.data).toEqual({ retry: true })
      expect(error.extra).toEqual({ retryAfterMs: 1500, codexErrorInfo: { kind: "x" } })
      expect(yield* channel.isClosed).toBe(false)
    }))

  describe("write failures", () => {
    /**
     * A transport whose writes succeed until `failing` is set, then fail; the
     * owner's error is computed only when `release` completes, and the input
     * ends when the test says so.
     */
    const makeFailingTransport = Effect.gen(function*() {
      const input = yield* Queue.unbounded<string, Cause.Done>()
      const writes = yield* Queue.unbounded<string>()
      const release = yield* Deferred.make<void>()
      const writeFailed = yield* Deferred.make<Error>()
      const calls = { onWriteFailure: 0, onInputEnd: 0 }
      let failing = false
      const crash = new WorkerCrashedError({ pid: 7, code: null, signal: "SIGKILL", stderrTail: [] })
      const channel = yield* JsonRpc.make<WorkerCrashedError, never, Error>({
        input: Stream.fromQueue(input),
        write: (line) =>
          failing ? Effect.fail(new Error("write EPIPE")) : Effect.sync(() => Queue.offerUnsafe(writes, line)),
        writeFailed: Deferred.await(writeFailed),
        onWriteFailure: () =>
          Effect.sync(() => calls.onWriteFailure++).pipe(Effect.andThen(Deferred.await(release)), Effect.as(crash)),
        onInputEnd: () =>
          Effect.sync(() => calls.onInputEnd++).pipe(
            Effect.as(new ChannelClosedError({ reason: "a second, different close error" }))
          )
      })
      return {
        channel,
        input,
        writes,
        release,
        writeFailed,
        calls,
        crash,
        fail: () => {
          failing = true
        }
      }
    })

    it.effect("a failed write closes the channel once with the owner's error, even when the input ends meanwhile", () =>
      Effect.gen(function*() {
        const { calls, channel, crash, fail, input, release, writes } = yield* makeFailingTransport
        const closedWith: Array<unknown> = []
        channel.onClose((error) => closedWith.push(error))
        const written = yield* Effect.forEach(
          [1, 2, 3],
          (i) => Effect.forkChild(Effect.flip(channel.request(`before-${i}`)))
        )
        for (let i = 0; i < 3; i++) yield* Queue.take(writes)
        fail()
        const failed = yield* Effect.forEach(
          [1, 2, 3],
          (i) => Effect.forkChild(Effect.flip(channel.request(`after-${i}`)))
        )
        const notification = yield* Effect.forkChild(Effect.flip(channel.notify("n")))
        for (let i = 0; i < 100 && calls.onWriteFailure === 0; i++) yield* Effect.yieldNow
        expect(calls.onWriteFailure).toBe(1)
        // The input ends while the owner is still computing the error of the failed write.
        yield* Queue.end(input)
        yield* Effect.yieldNow
        expect(yield* channel.isClosed).toBe(false)
        yield* Deferred.succeed(release, undefined)
        const errors = [
          ...(yield* Fiber.joinAll(written)),
          ...(yield* Fiber.joinAll(failed)),
          yield* Fiber.join(notification)
        ]
        for (const error of errors) expect(error).toBe(crash)
        expect(closedWith).toEqual([crash])
        expect(calls).toEqual({ onWriteFailure: 1, onInputEnd: 0 })
        expect(yield* channel.closed).toBe(crash)
      }))

    it.effect("a write that fails after it was accepted (writeFailed) closes the channel", () =>
      Effect.gen(function*() {
        const { calls, channel, crash, release, writeFailed, writes } = yield* makeFailingTransport
        const pending = yield* Effect.forkChild(Effect.flip(channel.request("a")))
        yield* Queue.take(writes)
        yield* Deferred.succeed(writeFailed, new Error("write EPIPE"))
        yield* Deferred.succeed(release, undefined)
        expect(yield* Fiber.join(pending)).toBe(crash)
        expect(yield* channel.closed).toBe(crash)
        expect(calls.onWriteFailure).toBe(1)
      }))

    it.effect("without onWriteFailure, a failed write closes the channel with ChannelClosedError", () =>
      Effect.gen(function*() {
        const input = yield* Queue.unbounded<string, Cause.Done>()
        const channel = yield* JsonRpc.make({
          input: Stream.fromQueue(input),
          write: () => Effect.fail(new Error("write EPIPE"))
        })
        const error = yield* Effect.flip(channel.request("a"))
        expect(error).toBeInstanceOf(ChannelClosedError)
        expect((error as ChannelClosedError).reason).toContain("EPIPE")
        expect(yield* channel.closed).toBe(error)
      }))
  })

  it.effect("a defect while handling a line is logged and the channel keeps reading", () => {
    let thrown = 0
    return Effect.gen(function*() {
      const { channel, nextWrite, send } = yield* makeTransport()
      const fiber = yield* Effect.forkChild(channel.request("a"))
      yield* nextWrite
      yield* send("not json: the warning about it throws")
      yield* send({ id: 1, result: "still read" })
      expect(yield* Fiber.join(fiber)).toBe("still read")
      expect(thrown).toBeGreaterThan(0)
      expect(yield* channel.isClosed).toBe(false)
    }).pipe(
      Effect.provideService(
        References.CurrentLoggers,
        new Set([Logger.make((options) => {
          if (options.logLevel === "Warn") {
            thrown++
            throw new Error("logger bug")
          }
        })])
      )
    )
  })
})

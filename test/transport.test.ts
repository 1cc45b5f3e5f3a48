/**
 * The transport for `@janole/ai-sdk-provider-codex-asp` (src/transport.ts),
 * driven by a consumer written to that provider's transport interface (the
 * provider itself is not installed), against the fake app-server
 * (test/fixtures/fake-app-server.mjs) through `createCodexWorkerPool`.
 *
 * Every test marks the processes it starts, and ends by asserting that no
 * marked process is alive; the afterEach safety net SIGKILLs survivors by PID.
 * Waits on real processes are bounded; nothing asserts on durations.
 */
import { afterEach, beforeEach, describe, expect, it } from "@effect/vitest"
import type { CodexPromiseWorkerPool, CodexWorkerHandle, CodexWorkerPoolOptions } from "../src/CodexPromisePool.ts"
import { createCodexWorkerPool } from "../src/node.ts"
import { ChannelClosedError, WorkerCrashedError } from "../src/errors.ts"
import {
  type CodexTransport,
  createTransportFactory,
  type JsonRpcId,
  type JsonRpcMessage,
  type TransportContext,
  type TransportPool
} from "../src/transport.ts"
import { fakePoolOptions, isLivePid, killByMarker, liveByMarker, newMarker, waitUntil } from "./helpers/procs.ts"
import { until, within } from "./helpers/wait.ts"

let marker = ""
beforeEach(() => {
  marker = newMarker()
})
afterEach(async () => {
  await killByMarker(marker)
})

const fake = (flags: ReadonlyArray<string> = [], options: CodexWorkerPoolOptions = {}): CodexWorkerPoolOptions =>
  fakePoolOptions(marker, flags, { poolSize: 1, ...options })

const noMarkedProcessLeft = () => waitUntil(() => liveByMarker(marker).length === 0)

const bounded = <A>(promise: Promise<A>, what: string, ms = 5_000): Promise<A> => within(promise, what, ms)

const rejection = (promise: Promise<unknown>): Promise<any> =>
  promise.then((value) => {
    throw new Error(`expected a rejection, got ${JSON.stringify(value)}`)
  }, (error: unknown) => error)

const textInput = (text: string) => [{ type: "text", text, text_elements: [] }]

// -----------------------------------------------------------------------------
// The provider's side, written to its transport interface (0.5.1), with its own
// mutable types: what its `transportFactory` setting accepts.
// -----------------------------------------------------------------------------

type ProviderId = string | number
type ProviderMessage =
  | { id: ProviderId; method: string; params?: unknown }
  | { method: string; params?: unknown }
  | { id: ProviderId; result: unknown }
  | { id: ProviderId; error: { code: number; message: string; data?: unknown } }
interface ProviderTransport {
  connect(): Promise<void>
  disconnect(): Promise<void>
  sendMessage(message: ProviderMessage): Promise<void>
  sendNotification(method: string, params?: unknown): Promise<void>
  on<K extends keyof ProviderEvents>(event: K, listener: ProviderEvents[K]): () => void
}
type ProviderEvents = {
  message: (message: ProviderMessage) => void
  error: (error: unknown) => void
  close: (code: number | null, signal: NodeJS.Signals | null) => void
}
interface ProviderSettings {
  transportFactory?: (context: { signal?: AbortSignal; threadId?: string }) => ProviderTransport
}

// Compile-time: the factory fits the provider's setting, and the Codex pool fits the factory.
const settingsFor = (pool: CodexPromiseWorkerPool): ProviderSettings => ({ transportFactory: createTransportFactory(pool) })

/**
 * A client like the provider's: numbers its own requests, matches responses
 * by id, answers server requests with `onServerRequest`, records everything.
 */
class Consumer {
  readonly messages: Array<ProviderMessage> = []
  readonly errors: Array<unknown> = []
  readonly closes: Array<readonly [number | null, NodeJS.Signals | null]> = []
  readonly #pending = new Map<ProviderId, { resolve: (value: unknown) => void; reject: (error: unknown) => void }>()
  #nextId = 1

  readonly transport: ProviderTransport
  readonly onServerRequest: (request: { id: ProviderId; method: string; params?: unknown }) => unknown

  constructor(
    transport: ProviderTransport,
    onServerRequest: (request: { id: ProviderId; method: string; params?: unknown }) => unknown = () => {
      throw new Error("no handler")
    }
  ) {
    this.transport = transport
    this.onServerRequest = onServerRequest
    transport.on("message", (message) => this.#handle(message))
    transport.on("error", (error) => this.errors.push(error))
    transport.on("close", (code, signal) => this.closes.push([code, signal]))
  }

  /** Sends a request with `id` (default: the next number) and resolves with its result. */
  request(method: string, params?: unknown, id: ProviderId = this.#nextId++): Promise<unknown> {
    const response = new Promise<unknown>((resolve, reject) => this.#pending.set(id, { resolve, reject }))
    return this.transport.sendMessage(params === undefined ? { id, method } : { id, method, params }).then(
      () => response
    )
  }

  /** Resolves with the first message `predicate` accepts, among those received so far or later. */
  async waitFor(predicate: (message: ProviderMessage) => boolean, what: string): Promise<ProviderMessage> {
    await until(() => this.messages.some(predicate), what, 5_000)
    return this.messages.find(predicate)!
  }

  /** The handshake the provider makes on every call. */
  async initialize(): Promise<unknown> {
    const result = await this.request("initialize", { clientInfo: { name: "provider", version: "0.5.1" } })
    await this.transport.sendNotification("initialized")
    return result
  }

  #handle(message: ProviderMessage): void {
    this.messages.push(message)
    if ("method" in message) {
      if ("id" in message) {
        const request = message
        Promise.resolve().then(() => this.onServerRequest(request)).then(
          (result) => this.transport.sendMessage({ id: request.id, result }),
          (error: Error) => this.transport.sendMessage({ id: request.id, error: { code: -32000, message: error.message } })
        )
      }
      return
    }
    const pending = this.#pending.get(message.id)
    if (pending === undefined) return
    this.#pending.delete(message.id)
    if ("error" in message) pending.reject(Object.assign(new Error(message.error.message), message.error))
    else pending.resolve(message.result)
  }
}

/** A pool that records what the transport asks of it, around a real Codex pool. */
const spyPool = (pool: CodexPromiseWorkerPool) => {
  const calls: Array<string> = []
  const acquireOptions: Array<unknown> = []
  const notifications: Array<string> = []
  const requests: Array<string> = []
  const originals = new Map<CodexWorkerHandle, CodexWorkerHandle>()
  const spied: TransportPool = {
    acquire: async (options) => {
      acquireOptions.push(options)
      const worker = await pool.acquire(options)
      // A proxy, so that whatever the handle is (and holds) stays as it is.
      const wrapped = new Proxy(worker, {
        get: (target, key) => {
          if (key === "request") {
            return (method: string, ...rest: Array<unknown>) => {
              requests.push(method)
              return (target.request as (...args: Array<unknown>) => Promise<unknown>)(method, ...rest)
            }
          }
          if (key === "notify") {
            return (method: string, params?: unknown) => {
              notifications.push(method)
              return target.notify(method, params)
            }
          }
          const value = Reflect.get(target, key)
          return typeof value === "function" ? value.bind(target) : value
        }
      })
      originals.set(wrapped, worker)
      return wrapped
    },
    release: (worker) => {
      calls.push("release")
      pool.release(originals.get(worker)!)
    },
    invalidate: (worker) => {
      calls.push("invalidate")
      return pool.invalidate(originals.get(worker)!)
    }
  }
  return { pool: spied, calls, acquireOptions, notifications, requests }
}

const connectConsumer = async (
  factory: (context: TransportContext) => CodexTransport,
  context: TransportContext = {},
  onServerRequest?: ConstructorParameters<typeof Consumer>[1]
): Promise<Consumer> => {
  const consumer = new Consumer(factory(context), onServerRequest)
  await bounded(consumer.transport.connect(), "connect")
  return consumer
}

const startThread = async (consumer: Consumer): Promise<string> =>
  ((await consumer.request("thread/start", { ephemeral: true })) as { thread: { id: string } }).thread.id

const isMethod = (method: string) => (message: ProviderMessage) => "method" in message && message.method === method

describe("createTransportFactory", () => {
  it("the provider's setting accepts the factory of a Codex pool", () => {
    const pool = createCodexWorkerPool(fake())
    expect(typeof settingsFor(pool).transportFactory).toBe("function")
    return pool.shutdown()
  })

  describe("connect and disconnect", () => {
    it("with poolSize 1, a second connect waits until the first transport disconnects", async () => {
      const pool = createCodexWorkerPool(fake())
      const factory = createTransportFactory(pool)
      const first = await connectConsumer(factory)
      await first.initialize()
      const firstThread = await startThread(first)

      const second = new Consumer(factory({}))
      let connected = false
      const connecting = second.transport.connect().then(() => (connected = true))
      await until(() => pool.stats().queued === 1, "the second connect to queue", 5_000)
      expect(connected).toBe(false)

      await first.transport.disconnect()
      await bounded(connecting, "the second connect")
      expect(pool.stats()).toMatchObject({ workers: 1, busy: 1, queued: 0 })
      await second.initialize()
      expect(await startThread(second)).not.toBe(firstThread)

      await second.transport.disconnect()
      expect(pool.stats()).toMatchObject({ workers: 1, busy: 0, idle: 1 })
      await pool.shutdown()
      expect(await noMarkedProcessLeft()).toBe(true)
    })

    it("aborting the call's signal while connect waits rejects with its reason and takes no worker", async () => {
      const pool = createCodexWorkerPool(fake())
      const factory = createTransportFactory(pool)
      const first = await connectConsumer(factory)
      const controller = new AbortController()
      const waiting = rejection(factory({ signal: controller.signal }).connect())
      await until(() => pool.stats().queued === 1, "the connect to queue", 5_000)

      const reason = new Error("the user went away")
      controller.abort(reason)
      expect(await bounded(waiting, "the rejection")).toBe(reason)
      expect(pool.stats().queued).toBe(0)

      await first.transport.disconnect()
      expect(pool.stats()).toMatchObject({ busy: 0, idle: 1 })
      // An already aborted signal rejects at once.
      expect(await rejection(factory({ signal: controller.signal }).connect())).toBe(reason)
      await pool.shutdown()
      expect(await noMarkedProcessLeft()).toBe(true)
    })

    it("disconnect while connect waits abandons the wait: connect rejects with ChannelClosedError", async () => {
      const pool = createCodexWorkerPool(fake())
      const factory = createTransportFactory(pool)
      const first = await connectConsumer(factory)
      const transport = factory({})
      const waiting = rejection(transport.connect())
      await until(() => pool.stats().queued === 1, "the connect to queue", 5_000)

      await transport.disconnect()
      expect(await bounded(waiting, "the rejection")).toBeInstanceOf(ChannelClosedError)
      expect(pool.stats().queued).toBe(0)
      await first.transport.disconnect()
      expect(pool.stats()).toMatchObject({ busy: 0, idle: 1 })
      await pool.shutdown()
      expect(await noMarkedProcessLeft()).toBe(true)
    })

    it("passes the call's threadId to the pool as the affinity hint `prefer`", async () => {
      const real = createCodexWorkerPool(fake())
      const spy = spyPool(real)
      const factory = createTransportFactory(spy.pool)
      const consumer = await connectConsumer(factory, { threadId: "thr_42" })
      await consumer.transport.disconnect()
      const plain = await connectConsumer(factory)
      await plain.transport.disconnect()
      expect(spy.acquireOptions).toEqual([
        { signal: expect.any(AbortSignal), prefer: "thr_42" },
        { signal: expect.any(AbortSignal) }
      ])
      await real.shutdown()
      expect(await noMarkedProcessLeft()).toBe(true)
    })

    it("disconnect ends the lease exactly once, however often it is called; sends then reject", async () => {
      const real = createCodexWorkerPool(fake())
      const spy = spyPool(real)
      const consumer = await connectConsumer(createTransportFactory(spy.pool))
      await consumer.initialize()
      await startThread(consumer)
      const before = consumer.messages.length

      await Promise.all([consumer.transport.disconnect(), consumer.transport.disconnect()])
      await consumer.transport.disconnect()
      expect(spy.calls).toEqual(["release"])
      expect(real.stats()).toMatchObject({ busy: 0, idle: 1 })

      const error = await rejection(consumer.transport.sendMessage({ id: 9, method: "thread/start", params: {} }))
      expect(error).toBeInstanceOf(ChannelClosedError)
      expect(error.message).toContain("disconnected")
      expect(await rejection(consumer.transport.sendNotification("cwp/anything"))).toBeInstanceOf(ChannelClosedError)
      expect(await rejection(consumer.transport.connect())).toBeInstanceOf(ChannelClosedError)
      expect(consumer.messages.length).toBe(before)
      await real.shutdown()
      expect(await noMarkedProcessLeft()).toBe(true)
    })

    it("sends before connect reject with ChannelClosedError", async () => {
      const pool = createCodexWorkerPool(fake())
      const transport = createTransportFactory(pool)({})
      const error = await rejection(transport.sendMessage({ id: 1, method: "thread/start" }))
      expect(error).toBeInstanceOf(ChannelClosedError)
      expect(error.message).toContain("connect() first")
      await transport.disconnect()
      expect(pool.stats().workers).toBe(0)
      await pool.shutdown()
    })
  })

  describe("messages", () => {
    it("initialize is answered from the worker's cached result and initialized is swallowed", async () => {
      const real = createCodexWorkerPool(fake())
      const spy = spyPool(real)
      const consumer = await connectConsumer(createTransportFactory(spy.pool))
      const result = await bounded(consumer.initialize(), "initialize")
      // The fake answers a second initialize with "Already initialized": this one never reached it.
      expect(result).toMatchObject({ userAgent: expect.stringContaining("fake-app-server") })
      expect(spy.requests).toEqual([])
      expect(spy.notifications).toEqual([])
      // A second handshake on the same transport is answered the same way.
      expect(await consumer.initialize()).toEqual(result)

      await consumer.transport.sendNotification("cwp/custom", { a: 1 })
      await consumer.transport.sendMessage({ method: "cwp/other" })
      expect(spy.notifications).toEqual(["cwp/custom", "cwp/other"])
      await consumer.transport.disconnect()
      await real.shutdown()
      expect(await noMarkedProcessLeft()).toBe(true)
    })

    it("responses carry the provider's own ids: numbers, 0 and strings, answered in any order", async () => {
      const pool = createCodexWorkerPool(fake(["--delay-ms=20"]))
      const consumer = await connectConsumer(createTransportFactory(pool))
      expect(await consumer.request("initialize", {}, 0)).toMatchObject({ userAgent: expect.any(String) })
      const ids: Array<JsonRpcId> = [0, "req-a", 7, "0", 1]
      const results = await bounded(
        Promise.all(ids.map((id) => consumer.request("thread/start", { ephemeral: true }, id))),
        "the thread/start responses"
      )
      const threadIds = results.map((result) => (result as { thread: { id: string } }).thread.id)
      expect(new Set(threadIds).size).toBe(ids.length)
      const responses = consumer.messages.filter((m) => !("method" in m))
      // One response per request (initialize included), each with its request's id and type.
      expect(responses.map((m) => (m as { id: JsonRpcId }).id).sort()).toEqual([0, 0, 1, 7, "0", "req-a"].sort())
      for (const [index, id] of ids.entries()) {
        const response = responses.find((m) => (m as { id: JsonRpcId }).id === id && "result" in m && (m.result as any)?.thread)
        expect((response as { result: { thread: { id: string } } }).result.thread.id).toBe(threadIds[index])
      }

      // A server error comes back with the server's code and message, under the provider's id.
      const error = await rejection(consumer.request("turn/start", { threadId: "nope", input: [] }, "bad"))
      expect(error).toMatchObject({ code: -32600, message: "thread not found: nope" })
      expect(consumer.messages.at(-1)).toEqual({ id: "bad", error: { code: -32600, message: "thread not found: nope" } })
      await consumer.transport.disconnect()
      await pool.shutdown()
      expect(await noMarkedProcessLeft()).toBe(true)
    })

    it("notifications arrive in the server's order; a response comes before the notifications sent after it", async () => {
      // The fake writes the turn/start response and the whole turn in one write (no delay between deltas).
      const pool = createCodexWorkerPool(fake(["--deltas=3", "--delta-delay-ms=0", "--coalesce-writes"]))
      const consumer = await connectConsumer(createTransportFactory(pool))
      await consumer.initialize()
      const threadId = await startThread(consumer)
      await consumer.request("turn/start", { threadId, input: textInput("hi") }, "turn")
      await consumer.waitFor(isMethod("turn/completed"), "turn/completed")

      const labels = consumer.messages.map((m) => "method" in m ? m.method : `response ${(m as { id: JsonRpcId }).id}`)
      // Delivered as they are read, the turn's notifications would all overtake the response.
      expect(labels.indexOf("response turn")).toBeLessThan(labels.indexOf("turn/started"))
      expect(labels.filter((label) => !label.startsWith("response")).slice(-12)).toEqual([
        "thread/status/changed",
        "turn/started",
        "item/started",
        "item/completed",
        "item/started",
        "item/agentMessage/delta",
        "item/agentMessage/delta",
        "item/agentMessage/delta",
        "item/completed",
        "thread/tokenUsage/updated",
        "thread/status/changed",
        "turn/completed"
      ])
      // Delivered as read: the server's extra fields too.
      expect(consumer.messages.find(isMethod("turn/started"))).toMatchObject({ emittedAtMs: expect.any(Number) })
      await consumer.transport.disconnect()
      await pool.shutdown()
      expect(await noMarkedProcessLeft()).toBe(true)
    })

    it("a server request passes through with its id and the provider's answer reaches the server", async () => {
      const pool = createCodexWorkerPool(fake(["--approval"]))
      const answers: Array<{ id: ProviderId; method: string }> = []
      const consumer = await connectConsumer(createTransportFactory(pool), {}, (request) => {
        answers.push({ id: request.id, method: request.method })
        return answers.length === 1 ? { decision: "accept" } : Promise.reject(new Error("declined by test"))
      })
      await consumer.initialize()
      const threadId = await startThread(consumer)

      const commandItem = (message: ProviderMessage) =>
        isMethod("item/completed")(message) &&
        (message as { params: { item: { type: string } } }).params.item.type === "commandExecution"
      await consumer.request("turn/start", { threadId, input: textInput("one") })
      const accepted = await consumer.waitFor(commandItem, "the accepted command")
      expect((accepted as any).params.item).toMatchObject({ status: "completed", decision: "accept" })
      await consumer.waitFor(isMethod("turn/completed"), "turn/completed")

      // The second approval is answered with an error response: the server declines the command.
      consumer.messages.length = 0
      await consumer.request("turn/start", { threadId, input: textInput("two") })
      const declined = await consumer.waitFor(commandItem, "the declined command")
      expect((declined as any).params.item).toMatchObject({ status: "declined" })
      // The fake numbers its requests from 0: the ids arrived as the server sent them.
      expect(answers).toEqual([
        { id: 0, method: "item/commandExecution/requestApproval" },
        { id: 1, method: "item/commandExecution/requestApproval" }
      ])
      await consumer.waitFor(isMethod("turn/completed"), "turn/completed")
      await consumer.transport.disconnect()
      await pool.shutdown()
      expect(await noMarkedProcessLeft()).toBe(true)
    })

    it("a listener that throws does not disturb the others", async () => {
      const pool = createCodexWorkerPool(fake())
      const transport = createTransportFactory(pool)({})
      transport.on("message", () => {
        throw new Error("listener bug")
      })
      const consumer = new Consumer(transport)
      await transport.connect()
      expect(await bounded(consumer.initialize(), "initialize")).toMatchObject({ userAgent: expect.any(String) })
      await transport.disconnect()
      await pool.shutdown()
      expect(await noMarkedProcessLeft()).toBe(true)
    })
  })

  describe("ends of a worker", () => {
    it("a crash mid-turn emits error then close, answers what is pending, and sends then reject with the crash", async () => {
      const pool = createCodexWorkerPool(fake(["--crash-mid-turn", "--deltas=4", "--delta-delay-ms=30"]))
      const consumer = await connectConsumer(createTransportFactory(pool))
      await consumer.initialize()
      const threadId = await startThread(consumer)
      await consumer.request("turn/start", { threadId, input: textInput("hi") })
      // The fake never answers an unknown method: this one is pending when the process dies.
      const pending = rejection(consumer.request("cwp/never-answered", {}, "pending"))

      await until(() => consumer.closes.length > 0, "the close event", 5_000)
      expect(consumer.closes).toEqual([[1, null]])
      expect(consumer.errors).toHaveLength(1)
      expect(consumer.errors[0]).toBeInstanceOf(WorkerCrashedError)
      expect(consumer.errors[0]).toMatchObject({ code: 1, signal: null })
      const answer = await bounded(pending, "the pending request's answer")
      expect(answer).toMatchObject({ code: -32603, message: (consumer.errors[0] as Error).message })
      // Order: error, the pending request's answer, close.
      expect(consumer.messages.at(-1)).toMatchObject({ id: "pending", error: { code: -32603 } })

      expect(await rejection(consumer.transport.sendMessage({ id: 5, method: "thread/start" }))).toBe(consumer.errors[0])
      await consumer.transport.disconnect()
      await consumer.transport.disconnect()
      expect(consumer.closes).toHaveLength(1)
      expect(pool.stats()).toMatchObject({ busy: 0 })
      await pool.shutdown()
      expect(await noMarkedProcessLeft()).toBe(true)
    })

    it("disconnect answers the requests still pending, and invalidates the worker they leave busy", async () => {
      const real = createCodexWorkerPool(fake())
      const spy = spyPool(real)
      const factory = createTransportFactory(spy.pool)
      const consumer = await connectConsumer(factory)
      await consumer.initialize()
      const pid = liveByMarker(marker)[0]!.pid
      const pending = rejection(consumer.request("cwp/never-answered", {}, 41))
      await new Promise((resolve) => setImmediate(resolve))

      await bounded(consumer.transport.disconnect(), "disconnect")
      const answer = await bounded(pending, "the pending request's answer")
      expect(answer).toMatchObject({ code: -32603, message: expect.stringContaining("disconnected") })
      expect(consumer.messages.at(-1)).toMatchObject({ id: 41, error: { code: -32603, data: { name: "ChannelClosedError" } } })
      expect(spy.calls).toEqual(["invalidate"])
      expect(isLivePid(pid)).toBe(false)
      expect(consumer.closes).toEqual([])

      // The next transport gets a fresh worker.
      const next = await connectConsumer(factory)
      await next.initialize()
      expect(liveByMarker(marker).map((p) => p.pid)).not.toContain(pid)
      await next.transport.disconnect()
      expect(spy.calls).toEqual(["invalidate", "release"])
      await real.shutdown()
      expect(await noMarkedProcessLeft()).toBe(true)
    })

    it("disconnect mid-turn invalidates the worker; after a completed turn it is released and reused", async () => {
      const real = createCodexWorkerPool(fake(["--approval"]))
      const spy = spyPool(real)
      const factory = createTransportFactory(spy.pool)

      // A turn that completes: the worker goes back to the pool.
      const done = await connectConsumer(factory, {}, () => ({ decision: "accept" }))
      await done.initialize()
      const pid = liveByMarker(marker)[0]!.pid
      await done.request("turn/start", { threadId: await startThread(done), input: textInput("one") })
      await done.waitFor(isMethod("turn/completed"), "turn/completed")
      await done.transport.disconnect()
      expect(spy.calls).toEqual(["release"])

      // A turn left waiting for its approval: the worker is taken down.
      const stuck = await connectConsumer(factory, {}, () => new Promise(() => {}))
      await stuck.initialize()
      await stuck.request("turn/start", { threadId: await startThread(stuck), input: textInput("two") })
      await stuck.waitFor(isMethod("item/commandExecution/requestApproval"), "the approval request")
      expect(liveByMarker(marker).map((p) => p.pid)).toEqual([pid])
      await bounded(stuck.transport.disconnect(), "disconnect")
      expect(spy.calls).toEqual(["release", "invalidate"])
      expect(isLivePid(pid)).toBe(false)
      await real.shutdown()
      expect(await noMarkedProcessLeft()).toBe(true)
    })

    it("a lease timeout emits LeaseTimeoutError and close(null, null)", async () => {
      const pool = createCodexWorkerPool(fake([], { leaseTimeoutMs: 300 }))
      const consumer = await connectConsumer(createTransportFactory(pool))
      await consumer.initialize()
      await until(() => consumer.closes.length > 0, "the close event", 5_000)
      expect(consumer.closes).toEqual([[null, null]])
      expect(consumer.errors).toHaveLength(1)
      expect((consumer.errors[0] as Error).name).toBe("LeaseTimeoutError")
      await consumer.transport.disconnect()
      await pool.shutdown()
      expect(await noMarkedProcessLeft()).toBe(true)
    })
  })
})

// Keeps the provider's message type and ours interchangeable in both directions.
const _toOurs = (message: ProviderMessage): JsonRpcMessage => message
const _toTheirs = (message: JsonRpcMessage): ProviderMessage => message as ProviderMessage
void _toOurs
void _toTheirs

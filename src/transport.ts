/**
 * A transport for `@janole/ai-sdk-provider-codex-asp`, so that provider
 * queues on this pool instead of failing with "All workers are busy". Give
 * its `transportFactory` setting `createTransportFactory(pool)`: each call of
 * the provider then leases a worker from the pool for as long as its
 * transport is connected.
 *
 * The provider is not a dependency: the interface types below are declared
 * here, named after the provider's own (`CodexTransport`, `JsonRpcMessage`,
 * `TransportContext`, ... of its 0.5.1 `transportFactory` setting), and are
 * structurally compatible with them.
 *
 * Guarantees:
 * - `connect` acquires a worker (FIFO behind other waiters), passing the
 *   call's `threadId` to the pool as an affinity hint (`prefer`); aborting the
 *   context's `signal` while it waits rejects with the signal's reason and
 *   takes no worker;
 * - `disconnect` ends the lease exactly once, however often it is called, also
 *   after a crash and while `connect` still waits (the wait is abandoned). A
 *   quiet worker is released; one with a request of this transport still
 *   unanswered, or a turn seen starting and not completing, is invalidated
 *   (its process tree killed), so the next lease never sees its leftovers;
 * - `initialize` is answered at once from the worker's cached result (with the
 *   provider's id), `initialized` is swallowed: the worker was initialized
 *   once, when its process started;
 * - every other request is forwarded and its response delivered as a
 *   `message` with the provider's own id (numbers, `0` and strings alike):
 *   the server's result, the server's error, or, when the server never
 *   answers (crash, lease timeout, disconnect), an error response (code
 *   -32603) saying why. Each request gets exactly one response, at the
 *   latest while `disconnect` runs;
 * - notifications and server requests (with the server's id) are delivered
 *   as `message`s in the order the server sent them; the provider's answers
 *   to server requests (`{ id, result }` / `{ id, error }`) go back unchanged;
 * - when the worker's process exits or the pool takes it down (crash, lease
 *   timeout, shutdown), `error` is emitted with the error when it was not a
 *   normal end (`WorkerCrashedError`, `LeaseTimeoutError`), then `close` with
 *   the exit code and signal (both `null` when the pool ended it);
 * - after `disconnect`, or before `connect`, sends reject with
 *   `ChannelClosedError`, after a crash with the crash's error, and no event
 *   is emitted any more.
 *
 * Limits: the provider's `initialize` params are ignored: the pool's workers
 * speak with the `clientInfo` and `capabilities` given to the pool (set
 * `capabilities: { experimentalApi: true }` there if the provider needs the
 * experimental API, e.g. for dynamic tools). Messages are delivered one
 * event-loop turn (`setImmediate`) after they arrive, so that a response is
 * normally delivered before the notifications the server sent after it; the
 * pool's channel matches responses itself and does not expose when one
 * arrived, so that order is not guaranteed. The `threadId` affinity is a hint
 * only. Listeners that throw are logged and do not disturb the others.
 *
 * @example
 * ```ts
 * import { createCodexAppServer } from "@janole/ai-sdk-provider-codex-asp"
 * import { createCodexWorkerPool } from "codex-worker-pool/node"
 * import { createTransportFactory } from "codex-worker-pool/transport"
 *
 * const pool = createCodexWorkerPool({ poolSize: 2 })
 * const codex = createCodexAppServer({ transportFactory: createTransportFactory(pool) })
 * ```
 *
 * @since 0.1.0
 */
import { Effect } from "effect"
import type { CloseEvent, CodexWorkerHandle } from "./CodexPromisePool.ts"
import type { IncomingMessage } from "./CodexWorker.ts"
import { ChannelClosedError, JsonRpcError } from "./errors.ts"

/**
 * A JSON-RPC id.
 *
 * @since 0.1.0
 * @category models
 */
export type JsonRpcId = string | number

/**
 * A request: from the provider to the server, or from the server to the provider.
 *
 * @since 0.1.0
 * @category models
 */
export interface JsonRpcRequest {
  readonly id: JsonRpcId
  readonly method: string
  readonly params?: unknown
}

/**
 * A notification (no id, no response).
 *
 * @since 0.1.0
 * @category models
 */
export interface JsonRpcNotification {
  readonly method: string
  readonly params?: unknown
}

/**
 * A successful response.
 *
 * @since 0.1.0
 * @category models
 */
export interface JsonRpcSuccessResponse {
  readonly id: JsonRpcId
  readonly result: unknown
}

/**
 * An error response.
 *
 * @since 0.1.0
 * @category models
 */
export interface JsonRpcErrorResponse {
  readonly id: JsonRpcId
  readonly error: { readonly code: number; readonly message: string; readonly data?: unknown }
}

/**
 * A response.
 *
 * @since 0.1.0
 * @category models
 */
export type JsonRpcResponse = JsonRpcSuccessResponse | JsonRpcErrorResponse

/**
 * Any JSON-RPC message the transport carries.
 *
 * @since 0.1.0
 * @category models
 */
export type JsonRpcMessage = JsonRpcRequest | JsonRpcNotification | JsonRpcSuccessResponse | JsonRpcErrorResponse

/**
 * The events of a transport and their listeners.
 *
 * @since 0.1.0
 * @category models
 */
export type CodexTransportEventMap = {
  message: (message: JsonRpcMessage) => void
  error: (error: unknown) => void
  close: (code: number | null, signal: NodeJS.Signals | null) => void
}

/**
 * The transport interface of `@janole/ai-sdk-provider-codex-asp`.
 *
 * @since 0.1.0
 * @category models
 */
export interface CodexTransport {
  connect(): Promise<void>
  disconnect(): Promise<void>
  sendMessage(message: JsonRpcMessage): Promise<void>
  sendNotification(method: string, params?: unknown): Promise<void>
  on<K extends keyof CodexTransportEventMap>(event: K, listener: CodexTransportEventMap[K]): () => void
}

/**
 * What the provider passes to its `transportFactory` for each call.
 *
 * @since 0.1.0
 * @category models
 */
export interface TransportContext {
  /** The call's abort signal: aborts `connect` while it waits for a worker. */
  readonly signal?: AbortSignal | undefined
  /** The thread the call continues, if any: a hint for the pool to prefer the worker that has it. */
  readonly threadId?: string | undefined
}

/**
 * What the transport needs of a pool: `createCodexWorkerPool`'s facade.
 *
 * @since 0.1.0
 * @category models
 */
export interface TransportPool {
  /** `prefer` is an affinity hint (a thread id); a pool that does not know it ignores it. */
  acquire(
    options?: { readonly signal?: AbortSignal | undefined; readonly prefer?: string | undefined }
  ): Promise<CodexWorkerHandle>
  release(worker: CodexWorkerHandle): void
  invalidate(worker: CodexWorkerHandle): Promise<void>
}

/** JSON-RPC's "internal error": the code of the responses the transport makes up itself. */
const TRANSPORT_ERROR_CODE = -32603

/** A request forwarded to the worker and not answered yet. */
interface PendingRequest {
  readonly id: JsonRpcId
}

type Listeners = { readonly [K in keyof CodexTransportEventMap]: Set<CodexTransportEventMap[K]> }

const isId = (id: unknown): id is JsonRpcId => typeof id === "number" || typeof id === "string"

const describe = (error: unknown): string => error instanceof Error ? error.message : String(error)

const errorResponse = (id: JsonRpcId, error: unknown): JsonRpcErrorResponse =>
  error instanceof JsonRpcError
    ? {
      id,
      error: error.data === undefined
        ? { code: error.code, message: error.serverMessage }
        : { code: error.code, message: error.serverMessage, data: error.data }
    }
    : {
      id,
      error: {
        code: TRANSPORT_ERROR_CODE,
        message: describe(error),
        data: { name: error instanceof Error ? error.name : "Error" }
      }
    }

/** The ids of turns a `turn/started` announced and no `turn/completed` ended yet. */
const turnIdOf = (message: IncomingMessage): string | undefined => {
  const turn = (message.params as { readonly turn?: { readonly id?: unknown } } | undefined)?.turn
  return typeof turn?.id === "string" ? turn.id : undefined
}

class PoolTransport implements CodexTransport {
  readonly #pool: TransportPool
  readonly #context: TransportContext
  readonly #listeners: Listeners = { message: new Set(), error: new Set(), close: new Set() }
  /** Aborted by `disconnect`: abandons the acquire or the requests in flight. */
  readonly #abort = new AbortController()
  readonly #pending = new Set<PendingRequest>()
  readonly #activeTurns = new Set<string>()
  /** Worker messages waiting for the next event-loop turn. */
  #inbox: Array<IncomingMessage> = []
  #flushScheduled = false
  #state: "new" | "connecting" | "connected" | "disconnected" = "new"
  #connecting: Promise<void> | undefined
  #worker: CodexWorkerHandle | undefined
  #unsubscribe: Array<() => void> = []
  /** Set once the worker has closed. */
  #closed: CloseEvent | undefined
  /** True once `close` was emitted (or will never be). */
  #done = false

  constructor(pool: TransportPool, context: TransportContext) {
    this.#pool = pool
    this.#context = context
  }

  connect(): Promise<void> {
    switch (this.#state) {
      case "connected":
        return Promise.resolve()
      case "connecting":
        return this.#connecting!
      case "disconnected":
        return Promise.reject(this.#notConnected())
    }
    const signal = this.#context.signal
    if (signal?.aborted) return Promise.reject(signal.reason)
    this.#state = "connecting"
    const own = this.#abort
    const forward = () => own.abort(signal!.reason)
    signal?.addEventListener("abort", forward, { once: true })
    const threadId = this.#context.threadId
    this.#connecting = this.#pool.acquire(threadId === undefined ? { signal: own.signal } : {
      signal: own.signal,
      prefer: threadId
    }).then(
      (worker) => {
        signal?.removeEventListener("abort", forward)
        this.#connecting = undefined
        if (this.#state === "disconnected") {
          // Disconnected while the hand-off was under way.
          this.#pool.release(worker)
          throw this.#notConnected()
        }
        this.#attach(worker)
      },
      (error: unknown) => {
        signal?.removeEventListener("abort", forward)
        this.#connecting = undefined
        if (this.#state === "connecting") this.#state = "disconnected"
        throw error
      }
    )
    return this.#connecting
  }

  disconnect(): Promise<void> {
    const state = this.#state
    this.#state = "disconnected"
    if (state === "connecting") {
      this.#abort.abort(this.#notConnected())
      return Promise.resolve()
    }
    if (state !== "connected") return Promise.resolve()
    const worker = this.#worker!
    this.#worker = undefined
    for (const unsubscribe of this.#unsubscribe) unsubscribe()
    this.#unsubscribe = []
    this.#inbox = []
    const quiet = this.#closed !== undefined || (this.#pending.size === 0 && this.#activeTurns.size === 0)
    // Settle what is still unanswered, then stop emitting.
    const reason = new ChannelClosedError({
      reason: "the transport was disconnected before the server answered this request"
    })
    this.#abort.abort(reason)
    for (const entry of Array.from(this.#pending)) this.#answer(entry, errorResponse(entry.id, reason), true)
    this.#done = true
    if (quiet) {
      try {
        this.#pool.release(worker)
      } catch (error) {
        return Promise.reject(error)
      }
      return Promise.resolve()
    }
    // Not quiet: whatever it still does must not reach the next lease.
    return this.#pool.invalidate(worker).catch((error: unknown) => {
      Effect.runFork(Effect.logWarning("codex transport: invalidating a busy worker failed", error))
    })
  }

  async sendMessage(message: JsonRpcMessage): Promise<void> {
    const worker = this.#live()
    const record = message as unknown as Record<string, unknown>
    const method = record["method"]
    const id = record["id"]
    if (typeof method === "string") {
      if (!("id" in record) || id === undefined) return this.#notify(worker, method, record["params"])
      if (!isId(id)) throw new TypeError(`sendMessage: a request's id must be a number or a string, got ${String(id)}.`)
      return this.#request(worker, id, method, record["params"])
    }
    if (isId(id) && "result" in record) return worker.respond(id, record["result"])
    if (isId(id) && "error" in record) {
      return worker.respondError(id, record["error"] as JsonRpcErrorResponse["error"])
    }
    throw new TypeError(
      `sendMessage: not a JSON-RPC request, notification or response: ${JSON.stringify(message)?.slice(0, 200)}.`
    )
  }

  async sendNotification(method: string, params?: unknown): Promise<void> {
    return this.#notify(this.#live(), method, params)
  }

  on<K extends keyof CodexTransportEventMap>(event: K, listener: CodexTransportEventMap[K]): () => void {
    const listeners = this.#listeners[event] as Set<CodexTransportEventMap[K]> | undefined
    if (listeners === undefined) throw new TypeError(`on: unknown event "${String(event)}" (message, error, close).`)
    // Wrapped, so that the same function added twice is two subscriptions.
    const entry = ((...args: Array<unknown>) => (listener as (...args: Array<unknown>) => void)(...args)) as
      CodexTransportEventMap[K]
    listeners.add(entry)
    return () => void listeners.delete(entry)
  }

  #notConnected(): ChannelClosedError {
    return new ChannelClosedError({
      reason: this.#state === "disconnected"
        ? "this transport is disconnected (disconnect() was called, or connect() failed); the provider makes " +
          "a new transport for each call"
        : "this transport is not connected yet: call connect() first"
    })
  }

  /** The leased worker, or throws why there is none to send to. */
  #live(): CodexWorkerHandle {
    if (this.#state !== "connected") throw this.#notConnected()
    if (this.#closed !== undefined) {
      throw this.#closed.error ?? new ChannelClosedError({ reason: "the worker's process has ended" })
    }
    return this.#worker!
  }

  #attach(worker: CodexWorkerHandle): void {
    this.#state = "connected"
    this.#worker = worker
    this.#unsubscribe.push(worker.onMessage((message) => {
      if (message._tag === "Notification") {
        if (message.method === "turn/started") {
          const turnId = turnIdOf(message)
          if (turnId !== undefined) this.#activeTurns.add(turnId)
        } else if (message.method === "turn/completed") {
          const turnId = turnIdOf(message)
          if (turnId !== undefined) this.#activeTurns.delete(turnId)
        }
      }
      this.#inbox.push(message)
      this.#scheduleFlush()
    }))
    // Called at once if the worker already closed.
    this.#unsubscribe.push(worker.onClose((event) => {
      this.#closed = event
      // After the messages that came before the close, and after the responses already matched.
      setImmediate(() => this.#finishClose(event))
    }))
  }

  #scheduleFlush(): void {
    if (this.#flushScheduled) return
    this.#flushScheduled = true
    // One event-loop turn later: the pool's channel has delivered the responses matched before these.
    setImmediate(() => {
      this.#flushScheduled = false
      this.#flush()
    })
  }

  #flush(): void {
    const inbox = this.#inbox
    this.#inbox = []
    for (const message of inbox) {
      if (this.#done) return
      this.#emit("message", message.raw as unknown as JsonRpcMessage)
    }
  }

  #finishClose(event: CloseEvent): void {
    if (this.#done) return
    this.#flush()
    if (event.error !== undefined) this.#emit("error", event.error)
    const error = event.error ?? new ChannelClosedError({ reason: "the worker's process has ended" })
    for (const entry of Array.from(this.#pending)) this.#answer(entry, errorResponse(entry.id, error), true)
    this.#done = true
    this.#emitClose(event.code, event.signal as NodeJS.Signals | null)
  }

  #notify(worker: CodexWorkerHandle, method: string, params: unknown): Promise<void> {
    // The worker was initialized when its process started.
    if (method === "initialized") return Promise.resolve()
    return worker.notify(method, params)
  }

  #request(worker: CodexWorkerHandle, id: JsonRpcId, method: string, params: unknown): Promise<void> {
    const entry: PendingRequest = { id }
    this.#pending.add(entry)
    if (method === "initialize") {
      // Answered from the cache, asynchronously, as a response read from a process would be.
      const result = worker.initializeResult
      queueMicrotask(() => this.#answer(entry, { id, result }))
      return Promise.resolve()
    }
    worker.request(method, params, { signal: this.#abort.signal }).then(
      (result) => this.#answer(entry, { id, result }),
      (error: unknown) => {
        // The worker closed: its close settles what is pending, after the error event.
        if (this.#closed !== undefined && !(error instanceof JsonRpcError)) return
        this.#answer(entry, errorResponse(id, error))
      }
    )
    return Promise.resolve()
  }

  /** Delivers the response of `entry`, once; only while the transport emits (or `force`, while it stops). */
  #answer(entry: PendingRequest, response: JsonRpcResponse, force = false): void {
    if (!this.#pending.delete(entry)) return
    if (this.#done && !force) return
    this.#emit("message", response)
  }

  #emit(event: "message" | "error", value: unknown): void {
    for (const listener of Array.from(this.#listeners[event])) {
      try {
        ;(listener as (value: unknown) => void)(value)
      } catch (cause) {
        Effect.runFork(Effect.logWarning(`codex transport: a "${event}" listener threw`, cause))
      }
    }
  }

  #emitClose(code: number | null, signal: NodeJS.Signals | null): void {
    for (const listener of Array.from(this.#listeners.close)) {
      try {
        listener(code, signal)
      } catch (cause) {
        Effect.runFork(Effect.logWarning(`codex transport: a "close" listener threw`, cause))
      }
    }
  }
}

/**
 * Makes the `transportFactory` of `@janole/ai-sdk-provider-codex-asp`: each
 * transport it makes leases a worker of `pool` from `connect` to
 * `disconnect` (see the module's guarantees).
 *
 * @example
 * ```ts
 * import { createCodexWorkerPool } from "codex-worker-pool/node"
 * import { createTransportFactory } from "codex-worker-pool/transport"
 *
 * const pool = createCodexWorkerPool({ poolSize: 2 })
 * const transportFactory = createTransportFactory(pool)
 * const transport = transportFactory({ threadId: "thr_123" })
 * await transport.connect() // waits for a worker
 * await transport.disconnect() // gives it back
 * await pool.shutdown()
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const createTransportFactory = (pool: TransportPool): (context: TransportContext) => CodexTransport => (
  context
) => new PoolTransport(pool, context ?? {})

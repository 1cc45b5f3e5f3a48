/**
 * An in-memory stand-in for a `CodexWorker`, for tests of the layers above
 * it (the promise facade's lease-scoped handles) without processes: every
 * request, notification and answer it is sent is reported to `onDelivery`
 * synchronously, requests are answered at once, `emit` delivers a
 * notification to its subscribers the way the JSON-RPC channel does (to a
 * snapshot of them, in order), and `crash` closes it like a dead process.
 */
import { Effect, Schema, Stream } from "effect"
import type * as CodexWorker from "../../src/CodexWorker.ts"
import { ChannelClosedError, ResponseDecodeError, WorkerCrashedError } from "../../src/errors.ts"

/** What reached a fake worker. */
export interface Delivery {
  readonly worker: number
  readonly operation: "request" | "notify" | "respond" | "respondError"
  /** The `lease` field of the params, result or error data: who sent it. */
  readonly sender: unknown
}

export interface FakeCodexWorker extends CodexWorker.CodexWorker {
  /** 1, 2, ... in creation order. */
  readonly id: number
  /** Sends a notification `{ worker, seq }` to the subscribers. */
  readonly emit: (method: string, seq: number) => void
  /** Closes it as a crash would (`WorkerCrashedError`); false if already closed. */
  readonly crash: () => boolean
  /** Closes it as finalization does (`ChannelClosedError`). */
  readonly finalize: () => void
}

/** The pid a fake worker reports: not a real process, never signalled. */
export const fakePid = (id: number): number => 4_000_000 + id
export const fakeIdOf = (pid: number): number => pid - 4_000_000

const senderOf = (value: unknown): unknown =>
  typeof value === "object" && value !== null ? (value as { lease?: unknown }).lease : undefined

export const makeFakeCodexWorker = (id: number, onDelivery: (delivery: Delivery) => void): FakeCodexWorker => {
  const pid = fakePid(id)
  const listeners = new Set<(message: CodexWorker.IncomingMessage) => void>()
  const closeListeners = new Set<(info: CodexWorker.CloseInfo) => void>()
  let closeInfo: CodexWorker.CloseInfo | undefined

  const deliver = <A>(operation: Delivery["operation"], sender: unknown, answer: A) =>
    Effect.suspend(() => {
      if (closeInfo !== undefined) return Effect.fail(closeInfo.error)
      onDelivery({ worker: id, operation, sender })
      return Effect.succeed(answer)
    })

  const close = (info: CodexWorker.CloseInfo): boolean => {
    if (closeInfo !== undefined) return false
    closeInfo = info
    listeners.clear()
    for (const listener of Array.from(closeListeners)) listener(info)
    closeListeners.clear()
    return true
  }

  const request = (method: string, params?: unknown) =>
    deliver("request", senderOf(params), { worker: id, method } as unknown)

  return {
    id,
    pid,
    initializeResult: { userAgent: `fake-worker/${id}`, codexHome: "/nonexistent", platformFamily: "unix", platformOs: "linux" },
    request,
    call: request as CodexWorker.CodexWorker["call"],
    requestSchema: (method, params, schema) =>
      Effect.flatMap(request(method, params), (result) =>
        Effect.mapError(
          Schema.decodeUnknownEffect(schema)(result),
          (error) => new ResponseDecodeError({ method, issue: error.message, result })
        )),
    notify: (_method, params) => deliver("notify", senderOf(params), undefined),
    respond: (_id, result) => deliver("respond", senderOf(result), undefined),
    respondError: (_id, error) => deliver("respondError", senderOf(error.data), undefined),
    messages: Stream.empty,
    subscribe: (listener) => {
      if (closeInfo !== undefined) return () => {}
      const entry = (message: CodexWorker.IncomingMessage) => listener(message)
      listeners.add(entry)
      return () => void listeners.delete(entry)
    },
    onClose: (listener) => {
      if (closeInfo !== undefined) {
        listener(closeInfo)
        return () => {}
      }
      closeListeners.add(listener)
      return () => void closeListeners.delete(listener)
    },
    closed: Effect.never,
    closeInfo: () => closeInfo,
    processCount: () => (closeInfo === undefined ? 1 : 0),
    residentBytes: () => 0,
    terminate: (error) => Effect.sync(() => void close({ code: null, signal: null, error })),
    emit: (method, seq) => {
      const params = { worker: id, seq }
      const message: CodexWorker.IncomingMessage = { _tag: "Notification", method, params, raw: { method, params } }
      for (const listener of Array.from(listeners)) listener(message)
    },
    crash: () =>
      close({
        code: null,
        signal: "SIGKILL",
        error: new WorkerCrashedError({ pid, code: null, signal: "SIGKILL", stderrTail: [] })
      }),
    finalize: () => void close({ code: null, signal: null, error: new ChannelClosedError({ reason: "finalized (fake)" }) })
  }
}

/**
 * A scripted, in-process stand-in for one `codex app-server` worker, for
 * testing code that uses the pool without running codex.
 *
 * The fake implements the `CodexWorker` interface over the library's own
 * JSON-RPC channel, with an in-memory transport instead of stdio: requests,
 * timeouts, interruption, server requests and close semantics are those of a
 * real worker; only the process is replaced by a script.
 *
 * - Requests are answered by `script.methods[method](params, worker)`: its
 *   return value (or the value of its promise) is the result; a thrown
 *   `FakeRpcError` (see {@link rpcError}) becomes a JSON-RPC error with its
 *   code, any other exception error -32603 with its message. A method without
 *   a handler gets -32600 "unknown variant", as codex answers.
 *   `initialize` is answered with a codex-like result unless scripted.
 * - The script drives the client through the `FakeWorker` it is given:
 *   `notify` emits a notification, `request` sends a server request (ids from
 *   0, as codex) and resolves with the client's answer, `crash` ends the
 *   "process": queued output is still delivered, then the channel closes with
 *   `WorkerCrashedError` (exit code, signal and stderr as given), so pending
 *   requests fail and the pool takes the worker out of service.
 * - Everything the client sent (requests, notifications, answers) is kept in
 *   `received`, in order, after a JSON round trip (what codex would parse).
 *
 * Guarantees: output reaches the client in the order the script produced it;
 * what a handler emits before returning arrives before its response, what it
 * emits later (e.g. from `queueMicrotask` or after an `await`) after it. The
 * fake's `pid` is above Linux's highest possible pid (2^22), so it never names
 * a real process; `processCount()` is 1 while open, 0 after; `residentBytes()`
 * is 0. Pool time (idle, lease and acquire timeouts) runs on Effect's `Clock`,
 * so `TestClock` drives it; the fake adds no timers of its own.
 *
 * Limits: no codex behaviour beyond what the script does (see `textTurns` for
 * a codex-like thread/turn script); handlers run synchronously on the
 * client's write, so a slow handler delays the writer (return a promise
 * instead); nothing is actually spawned, so spawn-time effects (binary
 * lookup, CODEX_HOME, environment) are not exercised.
 *
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type * as CodexProtocol from "../CodexProtocol.ts"
import type * as CodexWorker from "../CodexWorker.ts"
import {
  ChannelClosedError,
  type LeaseTimeoutError,
  WorkerCrashedError,
  WorkerSpawnError
} from "../errors.ts"
import * as JsonRpc from "../internal/jsonRpc.ts"
import { type CloseTracking, decodeResult, trackClose } from "../internal/workerClose.ts"

/**
 * Fake pids start above this: 2^22, the highest `pid_max` Linux allows.
 *
 * @since 0.1.0
 * @category constants
 */
export const FAKE_PID_BASE = 4_194_304

/**
 * The `command` a fake worker's `WorkerSpawnError` names.
 *
 * @since 0.1.0
 * @category constants
 */
export const FAKE_COMMAND = "fake codex app-server"

/**
 * Thrown by a method handler to answer with a JSON-RPC error; also what a
 * fake's server request rejects with when the client answers with an error.
 *
 * @since 0.1.0
 * @category errors
 */
export class FakeRpcError extends Error {
  override readonly name = "FakeRpcError"
  readonly code: number
  readonly data: unknown
  constructor(code: number, message: string, data?: unknown) {
    super(message)
    this.code = code
    this.data = data
  }
}

/**
 * A JSON-RPC error for a handler to throw, e.g. `throw rpcError(-32600, "thread not found: T")`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const rpcError = (code: number, message: string, data?: unknown): FakeRpcError =>
  new FakeRpcError(code, message, data)

/**
 * Answers one request method.
 *
 * @since 0.1.0
 * @category models
 */
export type MethodHandler = (params: unknown, worker: FakeWorker) => unknown

/**
 * What a fake worker does.
 *
 * @since 0.1.0
 * @category models
 */
export interface FakeWorkerScript {
  /** Handlers by request method. */
  readonly methods?: Readonly<Record<string, MethodHandler>> | undefined
  /** Called for every notification the client sends (`initialized` among them). */
  readonly onNotification?: ((method: string, params: unknown, worker: FakeWorker) => void) | undefined
  /**
   * Called when a worker is "spawned", before `initialize`. Throwing (or
   * rejecting) fails the spawn with `WorkerSpawnError`; a promise delays it.
   */
  readonly onSpawn?: ((worker: FakeWorker) => void | Promise<void>) | undefined
}

/**
 * A message the client sent to a fake worker.
 *
 * @since 0.1.0
 * @category models
 */
export type ReceivedMessage =
  | { readonly kind: "request"; readonly id: JsonRpc.JsonRpcId; readonly method: string; readonly params: unknown }
  | { readonly kind: "notification"; readonly method: string; readonly params: unknown }
  | { readonly kind: "response"; readonly id: JsonRpc.JsonRpcId; readonly result: unknown }
  | { readonly kind: "error"; readonly id: JsonRpc.JsonRpcId; readonly error: JsonRpc.JsonRpcErrorObject }

/**
 * How a fake worker's "process" dies in `crash`.
 *
 * @since 0.1.0
 * @category models
 */
export interface CrashOptions {
  /** Exit code; default 1 (`null` with a signal). */
  readonly code?: number | null | undefined
  /** Signal name, e.g. `"SIGKILL"`; default none. */
  readonly signal?: string | null | undefined
  /** Lines the process "wrote to stderr"; they appear in `WorkerCrashedError.stderrTail`. */
  readonly stderr?: ReadonlyArray<string> | undefined
}

/**
 * The script's (and the test's) side of a fake worker.
 *
 * @since 0.1.0
 * @category models
 */
export interface FakeWorker {
  /** The fake pid the pool sees (above 2^22, never a real process). */
  readonly pid: number
  /** 1-based spawn order within its pool. */
  readonly index: number
  /** Everything the client sent, in order (a live array). */
  readonly received: ReadonlyArray<ReceivedMessage>
  /** The params of every request with `method` the client sent, in order. */
  readonly requestsOf: (method: string) => ReadonlyArray<unknown>
  /** Sends a notification to the client. No-op once closed. */
  readonly notify: (method: string, params?: unknown) => void
  /**
   * Sends a server request (approval, tool call) and resolves with the
   * client's result; rejects with `FakeRpcError` on an error answer, or with
   * an `Error` if the worker closes first.
   */
  readonly request: (method: string, params?: unknown) => Promise<unknown>
  /** Ends the "process": output already sent is delivered, then the channel closes with `WorkerCrashedError`. */
  readonly crash: (options?: CrashOptions) => void
  /** Whether the worker's channel has closed (crash, terminate or finalization). */
  readonly closed: boolean
  /** How it closed, once it has. */
  readonly closeInfo: CodexWorker.CloseInfo | undefined
  /** Whether the pool finalized it (retired, invalidated, shut down). */
  readonly finalized: boolean
}

/** The settings a fake worker takes from the pool's options. */
export interface FakeWorkerOptions {
  readonly clientInfo?: { readonly name: string; readonly version: string; readonly title?: string | undefined } | undefined
  readonly capabilities?: unknown
  /** Longest wait for the answer to `initialize`. Default 30 seconds. */
  readonly spawnTimeout?: Duration.Input | undefined
}

const isRecord = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value)

const errorMessage = (error: unknown): string => (error instanceof Error ? error.message : String(error))

/**
 * The default answer to `initialize`, shaped like codex 0.169's.
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultInitializeResult: CodexProtocol.InitializeResponse = {
  userAgent: "fake-codex/0.0.0",
  codexHome: "/nonexistent/fake-codex-home",
  platformFamily: "unix",
  platformOs: "linux"
}

/**
 * Makes a fake worker in the current scope; closing the scope finalizes it.
 * Returns the `CodexWorker` the pool uses and the `FakeWorker` the script and
 * the test use.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  script: FakeWorkerScript,
  options: FakeWorkerOptions,
  index: number
): Effect.Effect<
  { readonly worker: CodexWorker.CodexWorker; readonly fake: FakeWorker },
  WorkerSpawnError,
  Scope.Scope
> =>
  Effect.gen(function*() {
    const pid = FAKE_PID_BASE + index
    // Lines logged from callbacks go to the logger of the worker's maker (the pool's).
    const logContext = yield* Effect.context<never>()
    const received: Array<ReceivedMessage> = []
    const input = yield* Queue.make<string, Cause.Done>()
    const pendingServerRequests = new Map<JsonRpc.JsonRpcId, {
      readonly resolve: (value: unknown) => void
      readonly reject: (error: unknown) => void
    }>()
    let nextServerRequestId = 0
    let crash: WorkerCrashedError | undefined
    // Set once the channel exists (below); until then the worker has not closed.
    let closing: CloseTracking<CodexWorker.CloseInfo> | undefined
    const closeInfo = () => closing?.closeInfo()
    let finalized = false
    let outputEnded = false

    const emit = (message: Record<string, unknown>) => {
      if (outputEnded) return
      Queue.offerUnsafe(input, JSON.stringify(message))
    }
    const endOutput = () => {
      if (outputEnded) return
      outputEnded = true
      Queue.endUnsafe(input)
      for (const pending of pendingServerRequests.values()) {
        pending.reject(new Error(`fake codex worker ${pid} closed before the client answered`))
      }
      pendingServerRequests.clear()
    }

    const fake: FakeWorker = {
      pid,
      index,
      received,
      requestsOf: (method) =>
        received.flatMap((message) => message.kind === "request" && message.method === method ? [message.params] : []),
      notify: (method, params) => emit(params === undefined ? { method } : { method, params }),
      request: (method, params) => {
        if (outputEnded) return Promise.reject(new Error(`fake codex worker ${pid} is closed`))
        const id = nextServerRequestId++
        return new Promise<unknown>((resolve, reject) => {
          pendingServerRequests.set(id, { resolve, reject })
          emit(params === undefined ? { id, method } : { id, method, params })
        })
      },
      crash: (crashOptions = {}) => {
        if (outputEnded) return
        const signal = crashOptions.signal ?? null
        crash = new WorkerCrashedError({
          pid,
          code: crashOptions.code === undefined ? (signal === null ? 1 : null) : crashOptions.code,
          signal,
          stderrTail: [...(crashOptions.stderr ?? [])]
        })
        endOutput()
      },
      get closed() {
        return closeInfo() !== undefined
      },
      get closeInfo() {
        return closeInfo()
      },
      get finalized() {
        return finalized
      }
    }

    const answer = (id: JsonRpc.JsonRpcId, outcome: { readonly result: unknown } | { readonly error: unknown }) => {
      if ("result" in outcome) {
        emit({ id, result: outcome.result === undefined ? null : outcome.result })
        return
      }
      const error = outcome.error
      emit({
        id,
        error: error instanceof FakeRpcError
          ? error.data === undefined
            ? { code: error.code, message: error.message }
            : { code: error.code, message: error.message, data: error.data }
          : { code: -32603, message: errorMessage(error) }
      })
    }

    const handleRequest = (id: JsonRpc.JsonRpcId, method: string, params: unknown) => {
      const handler = script.methods?.[method]
        ?? (method === "initialize" ? () => defaultInitializeResult : undefined)
      if (handler === undefined) {
        answer(id, { error: rpcError(-32600, `Invalid request: unknown variant \`${method}\` (fake codex worker)`) })
        return
      }
      let value: unknown
      try {
        value = handler(params, fake)
      } catch (error) {
        answer(id, { error })
        return
      }
      if (value instanceof Promise) {
        value.then((result) => answer(id, { result }), (error: unknown) => answer(id, { error }))
      } else {
        answer(id, { result: value })
      }
    }

    // What the client writes: parsed as codex would, recorded, then dispatched.
    const receive = (line: string) => {
      const message: unknown = JSON.parse(line)
      if (!isRecord(message)) return
      const id = message["id"] as JsonRpc.JsonRpcId | undefined
      if (typeof message["method"] === "string") {
        const method = message["method"]
        const params = message["params"]
        if (id === undefined) {
          received.push({ kind: "notification", method, params })
          try {
            script.onNotification?.(method, params, fake)
          } catch (error) {
            Effect.runForkWith(logContext)(
              Effect.logWarning(`fake codex worker: onNotification threw for "${method}"`, error)
            )
          }
        } else {
          received.push({ kind: "request", id, method, params })
          handleRequest(id, method, params)
        }
        return
      }
      if (id === undefined) return
      const pending = pendingServerRequests.get(id)
      pendingServerRequests.delete(id)
      if ("error" in message) {
        const error = message["error"] as JsonRpc.JsonRpcErrorObject
        received.push({ kind: "error", id, error })
        pending?.reject(new FakeRpcError(error.code, error.message, error.data))
      } else {
        received.push({ kind: "response", id, result: message["result"] })
        pending?.resolve(message["result"])
      }
    }

    if (script.onSpawn !== undefined) {
      yield* Effect.tryPromise({
        try: async () => await script.onSpawn!(fake),
        catch: (cause) => new WorkerSpawnError({ command: FAKE_COMMAND, cause })
      })
    }

    const channel = yield* JsonRpc.make<WorkerCrashedError | LeaseTimeoutError, never, never>({
      input: Stream.fromQueue(input),
      write: (line) => Effect.sync(() => receive(line)),
      onInputEnd: () =>
        Effect.succeed(
          crash ?? new WorkerCrashedError({ pid, code: 0, signal: null, stderrTail: [] })
        )
    })

    yield* Effect.addFinalizer(() =>
      Effect.andThen(
        channel.shutdown(
          new ChannelClosedError({ reason: "the worker was finalized (idle retirement, invalidate or shutdown)" })
        ),
        Effect.sync(() => {
          finalized = true
          endOutput()
        })
      )
    )

    const tracking = trackClose(channel, {
      toInfo: (error): CodexWorker.CloseInfo =>
        error._tag === "WorkerCrashedError"
          ? { code: error.code, signal: error.signal, error }
          : { code: null, signal: null, error },
      logContext,
      label: "fake codex worker",
      beforeListeners: () => endOutput()
    })
    closing = tracking

    const spawnTimeoutMs = Duration.toMillis(options.spawnTimeout ?? 30_000)
    const initializeResult = yield* channel.request("initialize", {
      clientInfo: options.clientInfo ?? { name: "codex-worker-pool", version: "0.2.0" },
      capabilities: options.capabilities ?? null
    }).pipe(
      Effect.timeoutOrElse({
        duration: Duration.millis(spawnTimeoutMs),
        orElse: () =>
          Effect.fail(
            new WorkerSpawnError({
              command: FAKE_COMMAND,
              reason: "Timeout",
              pid,
              cause: `no answer to initialize within spawnTimeout (${spawnTimeoutMs} ms)`
            })
          )
      }),
      Effect.tap(() => channel.notify("initialized")),
      // The same reasons as a real worker's handshake.
      Effect.mapError((error) =>
        error._tag === "WorkerSpawnError"
          ? error
          : error._tag === "WorkerCrashedError"
          ? new WorkerSpawnError({ command: FAKE_COMMAND, reason: "ExitedEarly", cause: error })
          : new WorkerSpawnError({ command: FAKE_COMMAND, reason: "InitializeFailed", pid, cause: error })
      )
    )

    const worker: CodexWorker.CodexWorker = {
      pid,
      initializeResult: initializeResult as CodexProtocol.InitializeResponse,
      request: (method, params, requestOptions) => channel.request(method, params, requestOptions),
      call: channel.request as CodexWorker.CodexWorker["call"],
      requestSchema: (method, params, schema, requestOptions) =>
        Effect.flatMap(channel.request(method, params, requestOptions), decodeResult(method, schema)),
      notify: channel.notify,
      respond: channel.respond,
      respondError: channel.respondError,
      messages: channel.messages,
      subscribe: channel.subscribe,
      onClose: tracking.onClose,
      closed: tracking.closed,
      closeInfo: tracking.closeInfo,
      processCount: () => (closeInfo() === undefined ? 1 : 0),
      residentBytes: () => 0,
      terminate: (error) => Effect.andThen(channel.shutdown(error), Effect.sync(endOutput))
    }
    return { worker, fake }
  })

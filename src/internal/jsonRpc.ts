/**
 * A newline-delimited JSON-RPC 2.0 channel over any line transport: an input
 * `Stream` of lines and a `write` function for one line. The codex app-server
 * speaks this dialect on stdio; nothing here knows about processes.
 *
 * Dialect: messages are sent without the `"jsonrpc"` field and accepted with
 * or without it. Our request ids are integers counting up from 1; the server's
 * request ids (integers from 0, or strings) are echoed back as they came.
 *
 * Guarantees:
 * - responses are matched to requests by id in O(1), in any order; an id is
 *   matched by value and type (a string `"1"` does not answer request `1`);
 * - each message is written as exactly one line, and writes are serialized,
 *   so concurrent callers never interleave (the `write` given to `make` must
 *   itself write a line atomically, or not at all);
 * - a request that is interrupted, or that times out, leaves no pending entry;
 *   a response arriving for it later is logged at debug level and ignored;
 * - malformed input that answers no pending request (not JSON, no JSON-RPC
 *   shape, a malformed server request, an unknown or abandoned response id) is
 *   logged and skipped, never fatal;
 * - a response to a pending request with a shape this channel does not accept
 *   (both `result` and `error`, neither, an `error` that is not an object with
 *   a numeric `code` and a string `message`) closes the channel with a
 *   `ProtocolError` naming the request's method: that request and every other
 *   pending one fail with it at once. Ending the channel, rather than failing
 *   only that request, is deliberate: a server that answers in a shape we
 *   cannot read is broken or speaks another protocol version, and the owner (a
 *   pool) must replace it rather than hand it to the next user;
 * - an error response keeps every field of its error object: `code`,
 *   `message`, `data`, and any other field in `JsonRpcError.extra`;
 * - the channel closes exactly once: through `close`/`shutdown`, through a
 *   `ProtocolError` as above, when the scope given to `make` closes, or when
 *   the transport ends: the input ends or fails (the error comes from
 *   `onInputEnd`), or a write fails, synchronously or later through
 *   `writeFailed` (the error comes from `onWriteFailure`). Only the first end
 *   of the transport computes the close error, so when a dying process breaks
 *   both pipes every pending request still gets the same error object; a
 *   writer whose write failed waits for that error and fails with it. Every
 *   pending request then fails at once with the close error, every later call
 *   fails at once with it, message streams end, and `closed` resolves to it;
 * - a listener that throws is logged and does not disturb the channel or the
 *   other listeners; a defect while handling a line is logged and reading
 *   goes on (the transport is never left unread while the channel is open);
 * - each request runs under a span (`requestSpan.name`, kind `client`) with
 *   `rpc.system`, `rpc.method`, `rpc.jsonrpc.request_id`, the owner's
 *   attributes and, when it fails, `error.type` (the error's tag) and
 *   `rpc.jsonrpc.error_code`; it is a child of the caller's span. The span is
 *   made only when the caller's fiber has a tracer installed (not Effect's
 *   native one) and tracing is enabled, so without one a request pays nothing.
 *
 * Limits: no batches (a JSON array is logged and skipped); no cancellation is
 * sent to the server when a request is abandoned (the app-server has none at
 * this level); server requests nobody answers stay unanswered; messages are
 * delivered to listeners synchronously from the reader fiber, so a slow
 * listener delays all input. `JSON.stringify` failures (cycles, bigint) in
 * params are defects.
 *
 * @internal
 */
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Cause from "effect/Cause"
import type * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Semaphore from "effect/Semaphore"
import * as Stream from "effect/Stream"
import { ChannelClosedError, JsonRpcError, ProtocolError, RequestTimeoutError } from "../errors.ts"
import { isTraced } from "./tracing.ts"

/** A JSON-RPC request id. */
export type JsonRpcId = number | string

/** A notification from the server: no id, no response expected. */
export interface IncomingNotification {
  readonly _tag: "Notification"
  readonly method: string
  readonly params: unknown
  /** The whole message as received, with extra fields such as `emittedAtMs`. */
  readonly raw: Readonly<Record<string, unknown>>
}

/** A request from the server: answer it with `respond` or `respondError`. */
export interface IncomingRequest {
  readonly _tag: "Request"
  /** Echo it back unchanged; may be `0` or a string. */
  readonly id: JsonRpcId
  readonly method: string
  readonly params: unknown
  /** The whole message as received. */
  readonly raw: Readonly<Record<string, unknown>>
}

/** What the server sends that is not a response to one of our requests. */
export type IncomingMessage = IncomingNotification | IncomingRequest

/** The error object of a JSON-RPC error response. */
export interface JsonRpcErrorObject {
  readonly code: number
  readonly message: string
  readonly data?: unknown
}

/** Options of one request. */
export interface RequestOptions {
  /** Fail with `RequestTimeoutError` if no response arrives in time. No limit by default. */
  readonly timeout?: Duration.Input | undefined
}

/**
 * A JSON-RPC channel. It closes with a `ChannelClosedError`, a `ProtocolError`
 * (the server broke the protocol), or `CE`: the extra error type its owner may
 * close it with (through `shutdown`, `onInputEnd` or `onWriteFailure`), such
 * as `WorkerCrashedError`.
 */
export interface JsonRpcChannel<CE = never> {
  /** Sends a request and waits for its response's `result`. */
  readonly request: (
    method: string,
    params?: unknown,
    options?: RequestOptions
  ) => Effect.Effect<unknown, JsonRpcError | RequestTimeoutError | CloseError<CE>>
  /** Sends a notification (no id, no response). */
  readonly notify: (method: string, params?: unknown) => Effect.Effect<void, CloseError<CE>>
  /** Answers a server request with a result. */
  readonly respond: (id: JsonRpcId, result: unknown) => Effect.Effect<void, CloseError<CE>>
  /** Answers a server request with an error. */
  readonly respondError: (
    id: JsonRpcId,
    error: JsonRpcErrorObject
  ) => Effect.Effect<void, CloseError<CE>>
  /**
   * Calls `listener` synchronously for every incoming notification and server
   * request, until the returned function is called. Exceptions are logged.
   */
  readonly subscribe: (listener: (message: IncomingMessage) => void) => () => void
  /**
   * Calls `hook` synchronously when the channel closes, before any pending
   * request fails (at once if already closed); returns the unsubscribe.
   */
  readonly onClose: (hook: (error: CloseError<CE>) => void) => () => void
  /**
   * The incoming notifications and server requests from the moment the stream
   * starts running; it ends when the channel closes. Each run is a separate
   * subscriber with an unbounded buffer.
   */
  readonly messages: Stream.Stream<IncomingMessage>
  /** Closes the channel with a `ChannelClosedError` carrying `reason`. `false` if already closed. */
  readonly close: (reason: string) => Effect.Effect<boolean>
  /** Closes the channel with `error`. `false` if already closed (the first error stays). */
  readonly shutdown: (error: CloseError<CE>) => Effect.Effect<boolean>
  /** Waits until the channel is closed and returns the error it was closed with. */
  readonly closed: Effect.Effect<CloseError<CE>>
  /** Whether the channel is closed. */
  readonly isClosed: Effect.Effect<boolean>
  /** How many requests are waiting for a response. */
  readonly pendingCount: Effect.Effect<number>
}

/** Every error a channel with owner errors `CE` can close with. */
export type CloseError<CE> = ChannelClosedError | ProtocolError | CE

/** Options of {@link make}. */
export interface MakeOptions<CE, EIn, EW> {
  /** Incoming lines, without their line terminator (a trailing `\r` is tolerated). */
  readonly input: Stream.Stream<string, EIn>
  /** Writes one line (the terminator is included in `line`). Must not interleave partial lines. */
  readonly write: (line: string) => Effect.Effect<void, EW>
  /**
   * For a transport whose `write` only queues the line: completes with the
   * error once the transport has failed to write after `write` returned. The
   * channel then ends as after a failed `write` (see `onWriteFailure`).
   */
  readonly writeFailed?: Effect.Effect<EW> | undefined
  /**
   * Computes the error the channel closes with when `input` ends (`Exit.succeed`)
   * or fails. By default a `ChannelClosedError` saying so (or the input's
   * `ProtocolError`, when it failed with one). A failure or defect here falls
   * back to the default.
   */
  readonly onInputEnd?: ((exit: Exit.Exit<void, EIn>) => Effect.Effect<CloseError<CE>>) | undefined
  /**
   * Computes the error the channel closes with when writing fails (`write`
   * failed, or `writeFailed` completed). By default a `ChannelClosedError`
   * saying so. A failure or defect here falls back to the default.
   */
  readonly onWriteFailure?: ((error: EW) => Effect.Effect<CloseError<CE>>) | undefined
  /**
   * The name of each request's span (default `"jsonrpc.request"`) and
   * attributes of the owner to add to it (a worker's `codex.pid`).
   */
  readonly requestSpan?: {
    readonly name: string
    readonly attributes?: Readonly<Record<string, unknown>> | undefined
  } | undefined
}

// -----------------------------------------------------------------------------
// Incoming message shapes
// -----------------------------------------------------------------------------

const Id = Schema.Union([Schema.Number, Schema.String])

const RequestShape = Schema.Struct({
  id: Id,
  method: Schema.String,
  params: Schema.optionalKey(Schema.Unknown)
})

const NotificationShape = Schema.Struct({
  method: Schema.String,
  params: Schema.optionalKey(Schema.Unknown)
})

const decodeRequest = Schema.decodeUnknownOption(RequestShape)
const decodeNotification = Schema.decodeUnknownOption(NotificationShape)

const preview = (line: string): string => line.length > 200 ? `${line.slice(0, 200)}… (${line.length} chars)` : line

const describeError = (error: unknown): string => error instanceof Error ? error.message : String(error)

const describeCause = (cause: Cause.Cause<unknown>): string => describeError(Cause.squash(cause))

/**
 * What a response with a pending id says: its result, its error, or, when it
 * has a shape this channel does not accept, what is wrong with it.
 */
type ResponseOutcome =
  | { readonly _tag: "Result"; readonly result: unknown }
  | {
    readonly _tag: "Error"
    readonly code: number
    readonly message: string
    readonly data: unknown
    readonly extra: Readonly<Record<string, unknown>>
  }
  | { readonly _tag: "Malformed"; readonly reason: string }

const readResponse = (raw: Readonly<Record<string, unknown>>): ResponseOutcome => {
  const hasResult = "result" in raw
  const hasError = "error" in raw
  if (hasResult && hasError) return { _tag: "Malformed", reason: `it has both "result" and "error"` }
  if (hasResult) return { _tag: "Result", result: raw.result }
  if (!hasError) return { _tag: "Malformed", reason: `it has neither "result" nor "error"` }
  const error = raw.error
  if (typeof error !== "object" || error === null || Array.isArray(error)) {
    return { _tag: "Malformed", reason: `its "error" is not an object` }
  }
  const { code, data, message, ...extra } = error as Record<string, unknown>
  if (typeof code !== "number" || !Number.isFinite(code)) {
    return { _tag: "Malformed", reason: `its "error.code" is not a number` }
  }
  if (typeof message !== "string") return { _tag: "Malformed", reason: `its "error.message" is not a string` }
  return { _tag: "Error", code, message, data, extra }
}

interface Pending<CE> {
  readonly method: string
  readonly deferred: Deferred.Deferred<unknown, JsonRpcError | CloseError<CE>>
}

/**
 * Starts a channel over `input` and `write`. The reader fiber lives in the
 * current scope; closing the scope closes the channel.
 */
export const make = <CE = never, EIn = unknown, EW = unknown>(
  options: MakeOptions<CE, EIn, EW>
): Effect.Effect<JsonRpcChannel<CE>, never, Scope.Scope> =>
  Effect.gen(function*() {
    type CloseError = ChannelClosedError | ProtocolError | CE

    const scope = yield* Effect.scope
    const pending = new Map<JsonRpcId, Pending<CE>>()
    const listeners = new Set<(message: IncomingMessage) => void>()
    const closeHooks = new Set<(error: CloseError) => void>()
    const closedDeferred = Deferred.makeUnsafe<CloseError>()
    const writeLock = Semaphore.makeUnsafe(1)
    let closeError: CloseError | undefined = undefined
    // Set when the transport ended (input ended, a write failed) and the owner
    // is computing the close error: later transport ends leave it to that one.
    let ending = false
    let nextId = 1
    // Lines logged outside a fiber go to the logger of the channel's maker.
    const logContext = yield* Effect.context<never>()

    const shutdownUnsafe = (error: CloseError): boolean => {
      if (closeError !== undefined) return false
      closeError = error
      // Hooks first: the owner learns of the close before any caller does
      // (a pool must take a dead worker out of service before its user can
      // react to a failed request by releasing it).
      for (const hook of closeHooks) {
        try {
          hook(error)
        } catch (cause) {
          Effect.runForkWith(logContext)(Effect.logWarning("JSON-RPC: an onClose hook threw", cause))
        }
      }
      closeHooks.clear()
      const failure = Effect.fail(error)
      for (const entry of pending.values()) Deferred.doneUnsafe(entry.deferred, failure)
      pending.clear()
      listeners.clear()
      Deferred.doneUnsafe(closedDeferred, Effect.succeed(error))
      return true
    }

    const shutdown = (error: CloseError): Effect.Effect<boolean> => Effect.sync(() => shutdownUnsafe(error))

    // The first end of the transport computes the close error; any later one
    // (the input ending after a failed write, or the reverse) is ignored, so
    // every pending request fails with that one error.
    const endTransport = (closeWith: Effect.Effect<CloseError>): Effect.Effect<void> =>
      Effect.suspend(() => {
        if (ending || closeError !== undefined) return Effect.void
        ending = true
        return Effect.flatMap(closeWith, shutdown)
      })

    const defaultInputEnd = (exit: Exit.Exit<void, EIn>): CloseError => {
      if (Exit.isFailure(exit)) {
        const error = Cause.findErrorOption(exit.cause)
        if (Option.isSome(error) && error.value instanceof ProtocolError) return error.value
      }
      return new ChannelClosedError({
        reason: Exit.isSuccess(exit)
          ? "the server's output ended"
          : `reading the server's output failed: ${describeCause(exit.cause)}`
      })
    }

    const onInputEnd = (exit: Exit.Exit<void, EIn>): Effect.Effect<CloseError> =>
      options.onInputEnd === undefined
        ? Effect.succeed(defaultInputEnd(exit))
        : Effect.catchCause(
          Effect.suspend(() => options.onInputEnd!(exit)),
          (cause) =>
            Effect.as(
              Effect.logWarning("JSON-RPC: onInputEnd failed; closing with the default error", cause),
              defaultInputEnd(exit)
            )
        )

    const defaultWriteFailure = (error: EW): CloseError =>
      new ChannelClosedError({ reason: `writing to the transport failed: ${describeError(error)}` })

    const onWriteFailure = (error: EW): Effect.Effect<CloseError> =>
      options.onWriteFailure === undefined
        ? Effect.succeed(defaultWriteFailure(error))
        : Effect.catchCause(
          Effect.suspend(() => options.onWriteFailure!(error)),
          (cause) =>
            Effect.as(
              Effect.logWarning("JSON-RPC: onWriteFailure failed; closing with the default error", cause),
              defaultWriteFailure(error)
            )
        )

    // A failed write ends the channel: the close error is computed in a fiber
    // of the channel's scope (the writer may be interrupted meanwhile), and the
    // writer fails with that error once the channel has closed.
    const writeFailed = (error: EW): Effect.Effect<never, CloseError> =>
      Effect.andThen(
        Effect.forkIn(endTransport(onWriteFailure(error)), scope),
        Effect.flatMap(Deferred.await(closedDeferred), Effect.fail)
      )

    // Writes one message as one line, unless the channel is closed by the time
    // the write lock is held.
    const writeMessage = (message: Record<string, unknown>): Effect.Effect<void, CloseError> =>
      writeLock.withPermit(Effect.suspend(() => {
        if (closeError !== undefined) return Effect.fail(closeError)
        const line = JSON.stringify(message) + "\n"
        return Effect.catch(options.write(line), writeFailed)
      }))

    const spanName = options.requestSpan?.name ?? "jsonrpc.request"
    const spanAttributes = options.requestSpan?.attributes ?? {}

    /**
     * `exchange` (request `id`, or `undefined` when it failed before getting
     * one) under a span, when the fiber's spans are recorded: `rpc.method`,
     * the owner's attributes and, on failure, `error.type` (the error's tag)
     * and the JSON-RPC error code.
     */
    const traced = <A, E>(
      fiber: Fiber.Fiber<unknown, unknown>,
      method: string,
      id: JsonRpcId | undefined,
      exchange: Effect.Effect<A, E>
    ): Effect.Effect<A, E> => {
      if (!isTraced(fiber)) return exchange
      const attributes: Record<string, unknown> = { ...spanAttributes, "rpc.system": "jsonrpc", "rpc.method": method }
      if (id !== undefined) attributes["rpc.jsonrpc.request_id"] = id
      return Effect.useSpan(spanName, { attributes, kind: "client" }, (span) =>
        Effect.onExit(exchange, (exit) => {
          if (Exit.isFailure(exit)) {
            const error = Cause.findErrorOption(exit.cause)
            if (Option.isSome(error)) {
              const e = error.value as { readonly _tag?: unknown }
              span.attribute("error.type", typeof e._tag === "string" ? e._tag : "unknown")
              if (e instanceof JsonRpcError) span.attribute("rpc.jsonrpc.error_code", e.code)
            }
          }
          return Effect.void
        }))
    }

    const request = (
      method: string,
      params?: unknown,
      requestOptions?: RequestOptions
    ): Effect.Effect<unknown, JsonRpcError | RequestTimeoutError | CloseError> =>
      Effect.withFiber((fiber) => {
        if (closeError !== undefined) return traced(fiber, method, undefined, Effect.fail(closeError))
        const id = nextId++
        const deferred = Deferred.makeUnsafe<unknown, JsonRpcError | CloseError>()
        pending.set(id, { method, deferred })
        const message = params === undefined ? { id, method } : { id, method, params }
        const exchange = Effect.andThen(writeMessage(message), Deferred.await(deferred))
        const timeout = requestOptions?.timeout
        const bounded: Effect.Effect<unknown, JsonRpcError | RequestTimeoutError | CloseError> = timeout === undefined
          ? exchange
          : Effect.timeoutOrElse(exchange, {
            duration: timeout,
            orElse: () => Effect.fail(new RequestTimeoutError({ method, timeoutMs: Duration.toMillis(timeout) }))
          })
        return traced(fiber, method, id, Effect.ensuring(bounded, Effect.sync(() => pending.delete(id))))
      })

    const notify = (method: string, params?: unknown) =>
      writeMessage(params === undefined ? { method } : { method, params })

    const respond = (id: JsonRpcId, result: unknown) => writeMessage({ id, result })

    const respondError = (id: JsonRpcId, error: JsonRpcErrorObject) =>
      writeMessage({
        id,
        error: error.data === undefined
          ? { code: error.code, message: error.message }
          : { code: error.code, message: error.message, data: error.data }
      })

    const subscribe = (listener: (message: IncomingMessage) => void): () => void => {
      if (closeError !== undefined) return () => {}
      // Wrap, so that subscribing the same function twice gives two subscriptions.
      const entry = (message: IncomingMessage) => listener(message)
      listeners.add(entry)
      return () => {
        listeners.delete(entry)
      }
    }

    const onCloseUnsafe = (hook: (error: CloseError) => void): () => void => {
      if (closeError !== undefined) {
        hook(closeError)
        return () => {}
      }
      closeHooks.add(hook)
      return () => {
        closeHooks.delete(hook)
      }
    }

    const messages: Stream.Stream<IncomingMessage> = Stream.callback<IncomingMessage>((queue) =>
      Effect.acquireRelease(
        Effect.sync(() => {
          const unsubscribe = subscribe((message) => {
            Queue.offerUnsafe(queue, message)
          })
          const removeHook = onCloseUnsafe(() => {
            Queue.endUnsafe(queue)
          })
          return () => {
            unsubscribe()
            removeHook()
          }
        }),
        (release) => Effect.sync(release)
      )
    )

    const dispatch = (message: IncomingMessage): Effect.Effect<void> =>
      Effect.suspend(() => {
        const failures: Array<unknown> = []
        for (const listener of Array.from(listeners)) {
          try {
            listener(message)
          } catch (error) {
            failures.push(error)
          }
        }
        return failures.length === 0 ? Effect.void : Effect.forEach(
          failures,
          (error) =>
            Effect.logWarning(
              `JSON-RPC: a message listener threw while handling "${message.method}"; the channel goes on`,
              error
            ),
          { discard: true }
        )
      })

    // A line with an `id` and no `method`: a response, to a pending request or not.
    const handleResponse = (raw: Readonly<Record<string, unknown>>, line: string): Effect.Effect<void> => {
      const id = raw.id
      if (typeof id !== "number" && typeof id !== "string") {
        return id === null && "error" in raw
          ? Effect.logWarning(`JSON-RPC: the server reported an error without an id: ${preview(line)}`)
          : Effect.logWarning(`JSON-RPC: skipping a line that matches no JSON-RPC message shape: ${preview(line)}`)
      }
      const entry = pending.get(id)
      if (entry === undefined) {
        return typeof id === "number" && Number.isInteger(id) && id >= 1 && id < nextId
          ? Effect.logDebug(`JSON-RPC: ignoring a response for request ${id}, which was abandoned`)
          : Effect.logWarning(`JSON-RPC: ignoring a response with an id that was never sent: ${preview(line)}`)
      }
      const outcome = readResponse(raw)
      if (outcome._tag === "Malformed") {
        // The server answered this request in a way we cannot read: it is
        // broken, so the channel ends, and this request fails with the error.
        const error = new ProtocolError({
          kind: "MalformedResponse",
          method: entry.method,
          reason: outcome.reason,
          preview: preview(line)
        })
        return Effect.andThen(
          Effect.logWarning(`JSON-RPC: closing the channel: ${error.message}`),
          shutdown(error)
        )
      }
      pending.delete(id)
      Deferred.doneUnsafe(
        entry.deferred,
        outcome._tag === "Result" ? Effect.succeed(outcome.result) : Effect.fail(
          new JsonRpcError({
            method: entry.method,
            code: outcome.code,
            serverMessage: outcome.message,
            data: outcome.data,
            extra: outcome.extra
          })
        )
      )
      return Effect.void
    }

    const handleLine = (line: string): Effect.Effect<void> =>
      Effect.suspend(() => {
        if (line.trim().length === 0) return Effect.void
        if (closeError !== undefined) return Effect.logDebug(`JSON-RPC: dropping a line read after close`)
        let json: unknown
        try {
          json = JSON.parse(line)
        } catch {
          return Effect.logWarning(`JSON-RPC: skipping a line that is not JSON: ${preview(line)}`)
        }
        if (typeof json !== "object" || json === null || Array.isArray(json)) {
          return Effect.logWarning(`JSON-RPC: skipping a line that is not a JSON-RPC message: ${preview(line)}`)
        }
        const raw = json as Record<string, unknown>

        if ("method" in raw) {
          const request = decodeRequest(raw)
          if (Option.isSome(request)) {
            return dispatch({
              _tag: "Request",
              id: request.value.id,
              method: request.value.method,
              params: request.value.params,
              raw
            })
          }
          const notification = "id" in raw ? Option.none() : decodeNotification(raw)
          if (Option.isSome(notification)) {
            return dispatch({
              _tag: "Notification",
              method: notification.value.method,
              params: notification.value.params,
              raw
            })
          }
        } else if ("id" in raw) {
          return handleResponse(raw, line)
        }
        return Effect.logWarning(`JSON-RPC: skipping a line that matches no JSON-RPC message shape: ${preview(line)}`)
      })

    // A defect while handling one line (a throwing logger, a bug) must not stop
    // the reader: the transport would go unread. It is logged, and reading goes on.
    const handleLineSafely = (line: string): Effect.Effect<void> =>
      Effect.catchCause(handleLine(line), (cause) =>
        Cause.hasInterruptsOnly(cause)
          ? Effect.failCause(cause)
          : Effect.catchCause(
            Effect.logWarning("JSON-RPC: handling an incoming line failed; the channel goes on", cause),
            () => Effect.void
          ))

    const reader = Stream.runForEach(options.input, handleLineSafely).pipe(
      Effect.exit,
      Effect.flatMap((exit) => endTransport(onInputEnd(exit)))
    )

    yield* Effect.addFinalizer(() => shutdown(new ChannelClosedError({ reason: "its scope was closed" })))
    yield* Effect.forkScoped(reader)
    if (options.writeFailed !== undefined) {
      yield* Effect.forkScoped(Effect.flatMap(options.writeFailed, (error) => endTransport(onWriteFailure(error))))
    }

    return {
      request,
      notify,
      respond,
      respondError,
      subscribe,
      onClose: onCloseUnsafe,
      messages,
      close: (reason: string) => shutdown(new ChannelClosedError({ reason })),
      shutdown,
      closed: Deferred.await(closedDeferred),
      isClosed: Effect.sync(() => closeError !== undefined),
      pendingCount: Effect.sync(() => pending.size)
    }
  })

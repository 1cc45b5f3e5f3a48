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
 * - malformed input (not JSON, no JSON-RPC shape, an unknown response id) is
 *   logged and skipped, never fatal;
 * - the channel closes exactly once: through `close`/`shutdown`, when the
 *   input ends or fails (the error then comes from `onInputEnd`), or when the
 *   scope given to `make` closes. Every pending request then fails at once with
 *   the close error, every later call fails at once with it, message streams
 *   end, and `closed` resolves to it.
 * - a listener that throws is logged and does not disturb the channel or the
 *   other listeners.
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
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Semaphore from "effect/Semaphore"
import * as Stream from "effect/Stream"
import { ChannelClosedError, JsonRpcError, RequestTimeoutError } from "../errors.ts"

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
 * A JSON-RPC channel. `CE` is the extra error type its owner may close it with
 * (through `shutdown` or `onInputEnd`), such as `WorkerCrashedError`.
 */
export interface JsonRpcChannel<CE = never> {
  /** Sends a request and waits for its response's `result`. */
  readonly request: (
    method: string,
    params?: unknown,
    options?: RequestOptions
  ) => Effect.Effect<unknown, JsonRpcError | RequestTimeoutError | ChannelClosedError | CE>
  /** Sends a notification (no id, no response). */
  readonly notify: (method: string, params?: unknown) => Effect.Effect<void, ChannelClosedError | CE>
  /** Answers a server request with a result. */
  readonly respond: (id: JsonRpcId, result: unknown) => Effect.Effect<void, ChannelClosedError | CE>
  /** Answers a server request with an error. */
  readonly respondError: (
    id: JsonRpcId,
    error: JsonRpcErrorObject
  ) => Effect.Effect<void, ChannelClosedError | CE>
  /**
   * Calls `listener` synchronously for every incoming notification and server
   * request, until the returned function is called. Exceptions are logged.
   */
  readonly subscribe: (listener: (message: IncomingMessage) => void) => () => void
  /**
   * Calls `hook` synchronously when the channel closes, before any pending
   * request fails (at once if already closed); returns the unsubscribe.
   */
  readonly onClose: (hook: (error: ChannelClosedError | CE) => void) => () => void
  /**
   * The incoming notifications and server requests from the moment the stream
   * starts running; it ends when the channel closes. Each run is a separate
   * subscriber with an unbounded buffer.
   */
  readonly messages: Stream.Stream<IncomingMessage>
  /** Closes the channel with a `ChannelClosedError` carrying `reason`. `false` if already closed. */
  readonly close: (reason: string) => Effect.Effect<boolean>
  /** Closes the channel with `error`. `false` if already closed (the first error stays). */
  readonly shutdown: (error: ChannelClosedError | CE) => Effect.Effect<boolean>
  /** Waits until the channel is closed and returns the error it was closed with. */
  readonly closed: Effect.Effect<ChannelClosedError | CE>
  /** Whether the channel is closed. */
  readonly isClosed: Effect.Effect<boolean>
  /** How many requests are waiting for a response. */
  readonly pendingCount: Effect.Effect<number>
}

/** Options of {@link make}. */
export interface MakeOptions<CE, EIn, EW> {
  /** Incoming lines, without their line terminator (a trailing `\r` is tolerated). */
  readonly input: Stream.Stream<string, EIn>
  /** Writes one line (the terminator is included in `line`). Must not interleave partial lines. */
  readonly write: (line: string) => Effect.Effect<void, EW>
  /**
   * Computes the error the channel closes with when `input` ends (`Exit.succeed`)
   * or fails. By default a `ChannelClosedError` saying so. A failure or defect
   * here falls back to the default.
   */
  readonly onInputEnd?: ((exit: Exit.Exit<void, EIn>) => Effect.Effect<ChannelClosedError | CE>) | undefined
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

const ErrorResponseShape = Schema.Struct({
  id: Schema.NullOr(Id),
  error: Schema.Struct({
    code: Schema.Number,
    message: Schema.String,
    data: Schema.optionalKey(Schema.Unknown)
  })
})

const ResponseShape = Schema.Struct({
  id: Id,
  result: Schema.Unknown
})

const decodeRequest = Schema.decodeUnknownOption(RequestShape)
const decodeNotification = Schema.decodeUnknownOption(NotificationShape)
const decodeErrorResponse = Schema.decodeUnknownOption(ErrorResponseShape)
const decodeResponse = Schema.decodeUnknownOption(ResponseShape)

const preview = (line: string): string => line.length > 200 ? `${line.slice(0, 200)}… (${line.length} chars)` : line

const describeCause = (cause: Cause.Cause<unknown>): string => {
  const error = Cause.squash(cause)
  return error instanceof Error ? error.message : String(error)
}

interface Pending<CE> {
  readonly method: string
  readonly deferred: Deferred.Deferred<unknown, JsonRpcError | ChannelClosedError | CE>
}

/**
 * Starts a channel over `input` and `write`. The reader fiber lives in the
 * current scope; closing the scope closes the channel.
 */
export const make = <CE = never, EIn = unknown, EW = unknown>(
  options: MakeOptions<CE, EIn, EW>
): Effect.Effect<JsonRpcChannel<CE>, never, Scope.Scope> =>
  Effect.gen(function*() {
    type CloseError = ChannelClosedError | CE

    const pending = new Map<JsonRpcId, Pending<CE>>()
    const listeners = new Set<(message: IncomingMessage) => void>()
    const closeHooks = new Set<(error: CloseError) => void>()
    const closedDeferred = Deferred.makeUnsafe<CloseError>()
    const writeLock = Semaphore.makeUnsafe(1)
    let closeError: CloseError | undefined = undefined
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

    // Writes one message as one line, unless the channel is closed by the time
    // the write lock is held.
    const writeMessage = (message: Record<string, unknown>): Effect.Effect<void, CloseError> =>
      writeLock.withPermit(Effect.suspend(() => {
        if (closeError !== undefined) return Effect.fail(closeError)
        const line = JSON.stringify(message) + "\n"
        return Effect.mapError(
          options.write(line),
          (cause) =>
            new ChannelClosedError({
              reason: `writing to the transport failed: ${cause instanceof Error ? cause.message : String(cause)}`
            })
        )
      }))

    const request = (
      method: string,
      params?: unknown,
      requestOptions?: RequestOptions
    ): Effect.Effect<unknown, JsonRpcError | RequestTimeoutError | CloseError> =>
      Effect.suspend(() => {
        if (closeError !== undefined) return Effect.fail(closeError)
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
        return Effect.ensuring(bounded, Effect.sync(() => pending.delete(id)))
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

    const settle = (
      id: JsonRpcId,
      outcome: (method: string) => Effect.Effect<unknown, JsonRpcError>,
      line: string
    ): Effect.Effect<void> => {
      const entry = pending.get(id)
      if (entry === undefined) {
        return typeof id === "number" && Number.isInteger(id) && id >= 1 && id < nextId
          ? Effect.logDebug(`JSON-RPC: ignoring a response for request ${id}, which was abandoned`)
          : Effect.logWarning(`JSON-RPC: ignoring a response with an id that was never sent: ${preview(line)}`)
      }
      pending.delete(id)
      Deferred.doneUnsafe(entry.deferred, outcome(entry.method))
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
        } else if ("error" in raw) {
          const response = decodeErrorResponse(raw)
          if (Option.isSome(response)) {
            const { error, id } = response.value
            if (id === null) {
              return Effect.logWarning(`JSON-RPC: the server reported an error without an id: ${preview(line)}`)
            }
            return settle(
              id,
              (method) =>
                Effect.fail(
                  new JsonRpcError({ method, code: error.code, serverMessage: error.message, data: error.data })
                ),
              line
            )
          }
        } else if ("result" in raw) {
          const response = decodeResponse(raw)
          if (Option.isSome(response)) {
            return settle(response.value.id, () => Effect.succeed(response.value.result), line)
          }
        }
        return Effect.logWarning(`JSON-RPC: skipping a line that matches no JSON-RPC message shape: ${preview(line)}`)
      })

    const defaultInputEnd = (exit: Exit.Exit<void, EIn>): ChannelClosedError =>
      new ChannelClosedError({
        reason: Exit.isSuccess(exit)
          ? "the server's output ended"
          : `reading the server's output failed: ${describeCause(exit.cause)}`
      })

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

    const reader = Stream.runForEach(options.input, handleLine).pipe(
      Effect.exit,
      Effect.flatMap((exit) => closeError !== undefined ? Effect.void : Effect.flatMap(onInputEnd(exit), shutdown))
    )

    yield* Effect.addFinalizer(() => shutdown(new ChannelClosedError({ reason: "its scope was closed" })))
    yield* Effect.forkScoped(reader)

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

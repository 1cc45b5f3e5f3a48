/**
 * What a worker built on a JSON-RPC channel shares, real (`CodexWorker`) or
 * fake (`codex-worker-pool/testing`): how the channel's close reaches the
 * worker's users, and how a request's result is decoded with a Schema.
 *
 * Guarantees: the close is recorded and every `onClose` listener called
 * synchronously, from the channel's own close hook, so before any pending
 * request fails; a listener registered after the close is called at once; a
 * listener that throws is logged (in `logContext`) and the others still run;
 * `closed` completes once, with the same value.
 *
 * @internal
 */
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import type * as Context from "effect/Context"
import * as Schema from "effect/Schema"
import { ResponseDecodeError } from "../errors.ts"

/** The part of a JSON-RPC channel this module needs. */
interface Closable<CE> {
  readonly onClose: (hook: (error: CE) => void) => () => void
}

/** How a worker's users learn that it closed. */
export interface CloseTracking<Info> {
  readonly onClose: (listener: (info: Info) => void) => () => void
  readonly closed: Effect.Effect<Info>
  readonly closeInfo: () => Info | undefined
}

/**
 * Tracks the close of `channel`: `toInfo` turns its close error into what
 * users see, `beforeListeners` runs first (e.g. ending a fake's output).
 */
export const trackClose = <CE, Info>(
  channel: Closable<CE>,
  options: {
    readonly toInfo: (error: CE) => Info
    readonly logContext: Context.Context<never>
    readonly label: string
    readonly beforeListeners?: (() => void) | undefined
  }
): CloseTracking<Info> => {
  let closeInfo: Info | undefined
  const closed = Deferred.makeUnsafe<Info>()
  const listeners = new Set<(info: Info) => void>()
  channel.onClose((error) => {
    const info = options.toInfo(error)
    closeInfo = info
    options.beforeListeners?.()
    for (const listener of listeners) {
      try {
        listener(info)
      } catch (cause) {
        Effect.runForkWith(options.logContext)(Effect.logWarning(`${options.label}: an onClose listener threw`, cause))
      }
    }
    listeners.clear()
    Deferred.doneUnsafe(closed, Effect.succeed(info))
  })
  return {
    onClose: (listener) => {
      if (closeInfo !== undefined) {
        listener(closeInfo)
        return () => {}
      }
      listeners.add(listener)
      return () => void listeners.delete(listener)
    },
    closed: Deferred.await(closed),
    closeInfo: () => closeInfo
  }
}

/** Decodes a request's result with `schema`, failing with `ResponseDecodeError` naming the method. */
export const decodeResult = <A>(method: string, schema: Schema.Decoder<A>) => {
  // Every issue, not only the first: the message is for a person finding a version mismatch.
  const decode = Schema.decodeUnknownEffect(schema, { errors: "all" })
  return (result: unknown): Effect.Effect<A, ResponseDecodeError> =>
    Effect.mapError(decode(result), (error) => new ResponseDecodeError({ method, issue: error.message, result }))
}

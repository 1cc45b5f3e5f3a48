/**
 * Running an Effect for promise code: the promise settles with the effect's
 * value or failure, or with `signal.reason` when the signal aborts (the
 * effect's fiber is then interrupted). Used by the promise handles of leases
 * (the Codex facade's and the `effect/ai` model's).
 *
 * @internal
 */
import * as Cause from "effect/Cause"
import type * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import { WorkerNotLeasedError } from "../errors.ts"

/** Runs `effect` as a fiber with `context`, settling with its value, its failure, or `signal.reason` on abort. */
export const toPromise = <A, E>(
  context: Context.Context<never>,
  effect: Effect.Effect<A, E>,
  signal?: AbortSignal
): Promise<A> => {
  if (signal?.aborted) return Promise.reject(signal.reason)
  return new Promise<A>((resolve, reject) => {
    const fiber = Effect.runForkWith(context)(effect)
    const onAbort = () => {
      reject(signal!.reason)
      fiber.interruptUnsafe()
    }
    signal?.addEventListener("abort", onAbort, { once: true })
    fiber.addObserver((exit) => {
      signal?.removeEventListener("abort", onAbort)
      if (Exit.isSuccess(exit)) resolve(exit.value)
      else if (!Cause.hasInterruptsOnly(exit.cause)) reject(Cause.squash(exit.cause))
    })
  })
}

/** The rejection of a call through a handle whose lease has ended. */
export const notLeased = (operation: "request" | "notify" | "respond" | "respondError"): Promise<never> =>
  Promise.reject(new WorkerNotLeasedError({ operation }))

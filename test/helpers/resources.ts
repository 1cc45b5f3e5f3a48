/**
 * A countable test resource for pool tests: every create and finalize is
 * recorded, and creates can be made to fail or to wait for a signal.
 */
import { Deferred, Effect } from "effect"

export interface Resource {
  readonly id: number
}

export class CreateFailed extends Error {
  override readonly name = "CreateFailed"
  readonly attempt: number
  constructor(attempt: number) {
    super(`create #${attempt} failed`)
    this.attempt = attempt
  }
}

export interface Resources {
  /** The acquire effect to give `WorkerPool.make`. */
  readonly acquire: Effect.Effect<Resource, CreateFailed, import("effect/Scope").Scope>
  readonly created: Array<number>
  readonly finalized: Array<number>
  /** Attempts (1-based) that fail. */
  readonly failing: Set<number>
  /** When set, each create waits for this deferred before finishing. */
  gate: Deferred.Deferred<void> | undefined
  attempts: number
  readonly live: () => number
}

export const makeResources = (): Resources => {
  const self: Resources = {
    created: [],
    finalized: [],
    failing: new Set(),
    gate: undefined,
    attempts: 0,
    live: () => self.created.length - self.finalized.length,
    // The gate is waited on outside acquireRelease, whose acquire is uninterruptible.
    acquire: Effect.suspend(() => {
      const attempt = ++self.attempts
      const gate = self.gate === undefined ? Effect.void : Deferred.await(self.gate)
      return Effect.andThen(
        gate,
        Effect.acquireRelease(
          Effect.suspend(() => {
            if (self.failing.has(attempt)) return Effect.fail(new CreateFailed(attempt))
            self.created.push(attempt)
            return Effect.succeed<Resource>({ id: attempt })
          }),
          (r) => Effect.sync(() => void self.finalized.push(r.id))
        )
      )
    })
  }
  return self
}

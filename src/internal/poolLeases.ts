/**
 * The leases of `WorkerPool.get` / `getWith` / `use`: the fast path that
 * takes an idle worker synchronously, the release of a lease, and per-acquire
 * options.
 *
 * Guarantees: an acquire served by an idle worker builds no Effect for
 * waiting and makes no span; it costs `core.take()`, one exit handler (`use`)
 * or finalizer (`get`), and, only when the pool has a `leaseTimeout` (the
 * Codex pools' default is 5 minutes), the lease's timer fiber, which the
 * driver forks at the lease and interrupts at its release. Otherwise the waiting path
 * (`poolWaiters.ts`) takes over. A lease is released exactly once, however
 * the caller's scope or `f` ends, and a stale release (of a lease that has
 * already ended, e.g. after a lease timeout) is refused by the core. A `f`
 * that throws instead of returning an effect is the `use`'s defect; the
 * worker still goes back. Bad acquire options are a defect and an unknown
 * account a failure, both found before anything is queued or leased.
 *
 * @internal
 */
import { Effect, type Scope } from "effect"
import { UnknownAccountError } from "../errors.ts"
import type { Account, PoolCore, Slot } from "./core.ts"
import { checkEffectAcquireOptions, timeoutMillis } from "./options.ts"
import type { Settings } from "./poolInternals.ts"
import type { AcquireOptions, PoolError } from "./poolTypes.ts"
import type { Waiting } from "./poolWaiters.ts"

/** How one pool leases its workers (see the module's header). */
export interface Leases<W, E> {
  /** A lease for the current scope, waiting up to `timeout` ms (0: no limit). */
  readonly getWith: (
    timeout: number,
    account: Account<W>,
    key: string | undefined
  ) => Effect.Effect<W, E | PoolError, Scope.Scope>
  /** A lease for the duration of `f`, waiting up to `timeout` ms (0: no limit). */
  readonly useWith: <A, E2, R2>(
    f: (worker: W) => Effect.Effect<A, E2, R2>,
    timeout: number,
    account: Account<W>,
    key: string | undefined
  ) => Effect.Effect<A, E | E2 | PoolError, R2>
  /** Runs `acquire` with what valid `options` ask for. */
  readonly withOptions: <A, E1, R1>(
    options: AcquireOptions,
    acquire: (timeout: number, account: Account<W>, key: string | undefined) => Effect.Effect<A, E1, R1>
  ) => Effect.Effect<A, E1 | UnknownAccountError, R1>
}

/** The leases of a pool whose core is `core`, waiting through `waiting`. */
export const makeLeases = <W, E>(core: PoolCore<W>, settings: Settings, waiting: Waiting<W, E>): Leases<W, E> => {
  const { useQueued, waitForSlot } = waiting

  /**
   * The release of the lease `slot` is under now (a stale one is refused), as
   * an exit handler: it runs in the fiber, uninterruptibly, so it releases
   * right there and returns no effect to run.
   */
  const releaser = (slot: Slot<W>) => {
    const lease = slot.lease
    return () => {
      core.release(slot, lease)
      return Effect.void
    }
  }

  // Both run their body each time they are run: an idle worker is taken
  // synchronously, with no Effect built for waiting.
  const getWith = (
    timeout: number,
    account: Account<W>,
    key: string | undefined
  ): Effect.Effect<W, E | PoolError, Scope.Scope> =>
    Effect.uninterruptibleMask((restore) => {
      const slot = core.take(account, key)
      return slot !== undefined
        ? Effect.as(Effect.addFinalizer(releaser(slot)), slot.worker)
        : Effect.flatMap(
          waitForSlot(restore, timeout, account, key),
          (slot) => Effect.as(Effect.addFinalizer(releaser(slot)), slot.worker)
        )
    })

  const useWith = <A, E2, R2>(
    f: (worker: W) => Effect.Effect<A, E2, R2>,
    timeout: number,
    account: Account<W>,
    key: string | undefined
  ): Effect.Effect<A, E | E2 | PoolError, R2> =>
    Effect.uninterruptibleMask((restore) => {
      const slot = core.take(account, key)
      if (slot === undefined) return useQueued(restore, f, timeout, account, key)
      // The lease is held from here on: a `f` that throws instead of
      // returning an effect is this `use`'s defect, and the worker (which
      // did nothing wrong) still goes back through the exit handler.
      let body: Effect.Effect<A, E2, R2>
      try {
        body = f(slot.worker)
      } catch (defect) {
        body = Effect.die(defect)
      }
      return Effect.onExit(restore(body), releaser(slot))
    })

  /** The acquire timeout of valid `options` (in ms, 0: none). */
  const acquireTimeoutOf = (options: AcquireOptions): number => timeoutMillis(options.timeout, settings.acquireTimeout)

  /**
   * Runs `acquire` with what `options` ask for: bad options are a defect (a
   * `PoolOptionsError` naming the option), an unknown account a failure,
   * both found before anything is queued or leased.
   */
  const withOptions = <A, E1, R1>(
    options: AcquireOptions,
    acquire: (timeout: number, account: Account<W>, key: string | undefined) => Effect.Effect<A, E1, R1>
  ): Effect.Effect<A, E1 | UnknownAccountError, R1> =>
    Effect.suspend((): Effect.Effect<A, E1 | UnknownAccountError, R1> => {
      const invalid = checkEffectAcquireOptions(options)
      if (invalid !== undefined) return Effect.die(invalid)
      // `undefined` options: the checker allows them, and so does `getWith` at run time.
      const o: AcquireOptions = options ?? {}
      const name = o.account
      const account = name === undefined ? core.defaultAccount : core.accounts.get(name)
      if (account === undefined) return Effect.fail(new UnknownAccountError({ account: name! }))
      return acquire(acquireTimeoutOf(o), account, o.prefer)
    })

  return { getWith, useWith, withOptions }
}

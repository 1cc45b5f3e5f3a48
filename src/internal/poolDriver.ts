/**
 * The Effect side of a `WorkerPool`: the `Driver` its synchronous core calls
 * to create and finalize workers, run its single timer, time leases and
 * report queueing; and the pool's shutdown.
 *
 * Guarantees: each worker is made by its account's `acquire` in a scope of
 * its own (not a child of the pool's scope, so closing that scope never
 * finalizes a leased worker behind the core's back), and that scope is
 * closed exactly once, when the core finalizes the worker; a failed create
 * closes its scope and is routed to the core (and so to the waiter that
 * caused it). The core's deadlines (idle retirement, acquire timeouts) share
 * one timer fiber, replaced whenever the earliest deadline changes; each
 * lease under a `leaseTimeout` has a timer fiber of its own, interrupted when
 * the lease ends. Every fiber runs in the pool's `FiberSet` (interrupted when
 * the pool's scope closes) under no span. A worker made for a traced waiter
 * is made under the waiter's `WorkerPool.acquire` span. Shutdown fails every
 * waiter, interrupts creates in flight, finalizes idle workers at once and
 * leased ones when they come back or after `shutdownTimeout`, and completes
 * once every worker has been finalized; running it again waits for the same.
 *
 * Limits: a worker's finalizer that fails is logged (Warn) and the worker is
 * counted as finalized all the same.
 *
 * @internal
 */
import { type Clock, Deferred, Duration, Effect, Exit, type Fiber, Scope } from "effect"
import type { CreateOp, Driver, PoolCore, Slot } from "./core.ts"
import type { PoolAccounts } from "./poolAccounts.ts"
import type { Settings } from "./poolInternals.ts"
import { FiberWaiter } from "./poolWaiters.ts"
import { noStackTrace } from "./tracing.ts"

/** Forks an effect into the pool's `FiberSet`, in the pool's context. */
export type Run<R> = <A, E1>(effect: Effect.Effect<A, E1, R>) => Fiber.Fiber<A, E1>

/** What a pool's driver is made of. */
export interface DriverParts<W, E, R> {
  readonly core: PoolCore<W>
  readonly settings: Settings
  readonly clock: Clock.Clock
  readonly run: Run<R>
  readonly accounts: PoolAccounts<W, E, R>
  /** Records a waiter's wait in the pool's wait-time metric. */
  readonly recordWait: (ms: number) => void
  /** Whether the pool's context admits Debug lines, and writes one there (for waiters that are not fibers). */
  readonly debug: boolean
  readonly log: (message: string, fields: Record<string, unknown>) => void
  readonly onLeaseTimeout: ((worker: W, leaseTimeout: Duration.Duration) => Effect.Effect<void>) | undefined
}

/** A pool's driver, its shutdown, and what the promise facades need of it. */
export interface PoolDriver<W> {
  /** What the core calls. */
  readonly driver: Driver<W>
  /**
   * Shuts the pool down (once) and waits until every worker is finalized,
   * finalizing leased ones after `shutdownTimeout`.
   */
  readonly shutdown: Effect.Effect<void>
  /** After shutdown, when the pool's scope closes: stops the timer. */
  readonly stopTimer: () => void
  /** Resolves when `slot` has been finalized. */
  readonly whenFinalized: (slot: Slot<W>) => Promise<void>
}

/** Makes the driver of a pool (see the module's header); the caller starts the core with it. */
export const makeDriver = <W, E, R>(parts: DriverParts<W, E, R>): PoolDriver<W> => {
  const { accounts, clock, core, debug, log, onLeaseTimeout, recordWait, run, settings } = parts
  const creates = new Map<CreateOp<W>, Fiber.Fiber<unknown, unknown>>()
  const leaseTimers = new Map<Slot<W>, Fiber.Fiber<unknown>>()
  const leaseTimeout = Duration.millis(settings.leaseTimeout)
  const expireLease = (slot: Slot<W>) =>
    Effect.suspend(() => {
      leaseTimers.delete(slot)
      core.invalidate(slot)
      const ms = settings.leaseTimeout
      return Effect.logWarning(`worker-pool: a lease outlived leaseTimeout (${ms} ms); the worker is retired`).pipe(
        Effect.andThen(onLeaseTimeout === undefined ? Effect.void : onLeaseTimeout(slot.worker, leaseTimeout)),
        Effect.catchCause((cause) => Effect.logWarning("worker-pool: onLeaseTimeout failed", cause))
      )
    })
  const finalizedListeners = new Map<Slot<W>, Array<() => void>>()
  let timer: Fiber.Fiber<unknown> | undefined
  let drained: Deferred.Deferred<void> | undefined

  const createWorker = (op: CreateOp<W>, acquire: Effect.Effect<W, E, R | Scope.Scope>) =>
    Effect.uninterruptibleMask((restore) => {
      // Not a child of the pool's scope: that would finalize leased workers
      // before shutdown has run. Shutdown finalizes every worker itself.
      const scope = Scope.makeUnsafe()
      return Effect.flatMap(Effect.exit(restore(Scope.provide(acquire, scope))), (exit) => {
        creates.delete(op)
        if (Exit.isSuccess(exit)) {
          core.created(op, exit.value, scope)
          return Effect.void
        }
        return Effect.ensuring(Scope.close(scope, exit), Effect.sync(() => core.createFailed(op, exit.cause)))
      })
    })

  const finalizeWorker = (slot: Slot<W>) =>
    Scope.close(slot.handle as Scope.Closeable, Exit.void).pipe(
      Effect.catchCause((cause) => Effect.logWarning("A worker's finalizer failed", cause)),
      Effect.ensuring(Effect.sync(() => {
        core.finalized(slot)
        const listeners = finalizedListeners.get(slot)
        if (listeners !== undefined) {
          finalizedListeners.delete(slot)
          for (const f of listeners) f()
        }
      })),
      Effect.uninterruptible
    )

  const setTimer = (at: number | undefined) => {
    if (timer !== undefined) {
      timer.interruptUnsafe()
      timer = undefined
    }
    if (at !== undefined) {
      const delay = Math.max(0, at - clock.currentTimeMillisUnsafe())
      timer = run(Effect.flatMap(Effect.sleep(delay), () =>
        Effect.sync(() => {
          timer = undefined
          core.onTimer()
        })))
    }
  }

  const driver: Driver<W> = {
    now: () => clock.currentTimeMillisUnsafe(),
    create: (op) => {
      // A worker made for a traced waiter is made under its `WorkerPool.acquire` span.
      // The core only creates for live accounts, so the entry is there.
      const create = createWorker(op, accounts.acquireOf(op.account))
      const span = op.owner instanceof FiberWaiter ? op.owner.span : undefined
      const fiber = run(span === undefined ? create : Effect.withParentSpan(create, span, noStackTrace))
      // A create that completed synchronously has already been accounted for.
      if (fiber.pollUnsafe() === undefined) creates.set(op, fiber)
    },
    finalize: (slot) => {
      run(finalizeWorker(slot))
    },
    setTimer,
    leased: settings.leaseTimeout === 0 ? () => {} : (slot) => {
      leaseTimers.set(slot, run(Effect.andThen(Effect.sleep(settings.leaseTimeout), expireLease(slot))))
    },
    unleased: settings.leaseTimeout === 0 ? () => {} : (slot) => {
      const fiber = leaseTimers.get(slot)
      if (fiber !== undefined) {
        leaseTimers.delete(slot)
        fiber.interruptUnsafe()
      }
    },
    changed: () => {
      if (accounts.removals.size !== 0) accounts.settleRemovals()
      if (drained !== undefined && core.drained) Deferred.doneUnsafe(drained, Exit.void)
    },
    // A fiber waiter logs these lines itself, in its own fiber.
    enqueued: (queued, waiter) => {
      if (waiter instanceof FiberWaiter) waiter.joined(queued)
      else if (debug) log("worker-pool: acquire queued", { queued })
    },
    handedOff: (waitedMs, queued, waiter) => {
      recordWait(waitedMs)
      if (waiter instanceof FiberWaiter) waiter.queuedAtHandOff = queued
      else if (debug) log("worker-pool: worker handed to waiter", { waitedMs, queued })
    }
  }

  const shutdown: Effect.Effect<void> = Effect.suspend(() => {
    if (drained === undefined) {
      drained = Deferred.makeUnsafe<void>()
      core.shutdown()
      for (const fiber of creates.values()) fiber.interruptUnsafe()
      driver.changed()
    }
    const done = Deferred.await(drained)
    return Effect.timeoutOrElse(done, {
      duration: settings.shutdownTimeout,
      orElse: () => {
        core.finalizeLeased()
        return done
      }
    })
  })

  return {
    driver,
    shutdown,
    stopTimer: () => setTimer(undefined),
    whenFinalized: (slot) =>
      slot.state === "finalized" ? Promise.resolve() : new Promise<void>((resolve) => {
        const listeners = finalizedListeners.get(slot)
        if (listeners === undefined) finalizedListeners.set(slot, [resolve])
        else listeners.push(resolve)
      })
  }
}

/**
 * One worker leased from the Effect `CodexWorkerPool` service, in the shape
 * the AI SDK model's `Turn` drives: a promise-based `CodexWorkerHandle`, and
 * the pool's `release` / `invalidate` for that one lease.
 *
 * Guarantees:
 * - the wait for a worker is the pool's own FIFO wait (`getWith`):
 *   interrupting it leaves the queue at once and takes no worker;
 * - the lease is held in a scope of its own, closed exactly once, by the
 *   first of `release`, `invalidate` and `end`: the worker is back in the
 *   pool (or, invalidated, on its way to be finalized) when that returns,
 *   and `ended` completes;
 * - as the lease ends, every listener registered through the handle is
 *   removed, before the worker can go to anyone else; from then on the
 *   handle's `request`, `notify`, `respond` and `respondError` reject with
 *   `WorkerNotLeasedError` and send nothing, and `onMessage` / `onClose`
 *   register nothing (as the promise facade's handles do);
 * - the handle's requests run with the context of the fiber that leased it
 *   (its logger and tracer), one fiber each; a request's `signal` interrupts
 *   its fiber.
 *
 * Limits: a request sent before the lease ended still settles for its
 * sender; its answer is matched by id, so the next holder never sees it.
 *
 * @internal
 */
import { type Context, Deferred, Effect, Exit, Scope } from "effect"
import type { CloseEvent, CodexWorkerHandle } from "../CodexPromisePool.ts"
import type * as CodexWorker from "../CodexWorker.ts"
import type * as CodexWorkerPool from "../CodexWorkerPool.ts"
import type { JsonRpcErrorObject, JsonRpcId } from "../internal/jsonRpc.ts"
import { notLeased, toPromise } from "../internal/leasePromises.ts"
import { checkRequestOptions } from "../internal/options.ts"
import type { CodexPoolLike } from "../ai-sdk/turn.ts"

const noop = () => {}

/**
 * A leased worker. `pool` is what `Turn` releases it through; `owner` is set
 * by whoever drives the lease (the turn's abort), for the call's finalizer.
 */
export class Lease {
  readonly worker: CodexWorker.CodexWorker
  readonly handle: CodexWorkerHandle
  /** `Turn`'s view of the pool: release and invalidate end this lease. */
  readonly pool: CodexPoolLike
  readonly #service: CodexWorkerPool.Service
  readonly #scope: Scope.Closeable
  readonly #ended = Deferred.makeUnsafe<void>()
  readonly #subscriptions = new Set<() => void>()
  #live = true

  constructor(
    service: CodexWorkerPool.Service,
    worker: CodexWorker.CodexWorker,
    scope: Scope.Closeable,
    context: Context.Context<never>
  ) {
    this.#service = service
    this.worker = worker
    this.#scope = scope
    this.handle = new LeaseHandle(this, context)
    this.pool = {
      // A lease gives out one worker, already leased: a turn only releases or invalidates it.
      acquire: () => Promise.reject(new TypeError("A CodexLanguageModel lease does not acquire workers.")),
      release: (handle) => {
        if (handle === this.handle) this.end(false)
      },
      invalidate: (handle) => {
        if (handle === this.handle) this.end(true)
        return Promise.resolve()
      }
    }
  }

  /** Whether the lease still holds the worker. */
  get live(): boolean {
    return this.#live
  }

  /** Completes once the lease has ended and the pool has the worker back. */
  get ended(): Effect.Effect<void> {
    return Deferred.await(this.#ended)
  }

  /** Ends the lease (idempotent): `invalidate` takes the worker out of service. */
  end(invalidate: boolean): void {
    if (!this.#live) return
    this.#live = false
    const subscriptions = [...this.#subscriptions]
    this.#subscriptions.clear()
    for (const unsubscribe of subscriptions) unsubscribe()
    try {
      if (invalidate) Effect.runSync(this.#service.invalidate(this.worker))
      // The scope holds the pool's release of this lease (synchronous).
      Effect.runSync(Scope.close(this.#scope, Exit.void))
    } finally {
      Deferred.doneUnsafe(this.#ended, Exit.void)
    }
  }

  /** Registers an unsubscribe to run as the lease ends; returns the one to give the caller. */
  track(unsubscribe: () => void): () => void {
    if (!this.#live) {
      unsubscribe()
      return noop
    }
    this.#subscriptions.add(unsubscribe)
    return () => {
      if (this.#subscriptions.delete(unsubscribe)) unsubscribe()
    }
  }
}

/** The promise-driven handle of a {@link Lease}. */
class LeaseHandle implements CodexWorkerHandle {
  readonly pid: number
  readonly initializeResult: unknown
  readonly #lease: Lease
  readonly #context: Context.Context<never>

  constructor(lease: Lease, context: Context.Context<never>) {
    this.#lease = lease
    this.#context = context
    this.pid = lease.worker.pid
    this.initializeResult = lease.worker.initializeResult
  }

  /** The worker itself: the same object for every lease of the same process. */
  get workerKey(): object {
    return this.#lease.worker
  }

  // `any`: the typed overload of `request` declares the result type of each protocol method.
  request(
    method: string,
    params?: unknown,
    options?: { readonly signal?: AbortSignal | undefined; readonly timeoutMs?: number | undefined }
  ): Promise<any> {
    if (!this.#lease.live) return notLeased("request")
    const invalid = checkRequestOptions(options)
    if (invalid !== undefined) return Promise.reject(invalid)
    const timeoutMs = options?.timeoutMs
    return toPromise(
      this.#context,
      this.#lease.worker.request(method, params, {
        timeout: timeoutMs === undefined || timeoutMs === 0 ? undefined : timeoutMs
      }),
      options?.signal
    )
  }

  notify(method: string, params?: unknown): Promise<void> {
    return this.#lease.live ? toPromise(this.#context, this.#lease.worker.notify(method, params)) : notLeased("notify")
  }

  respond(id: JsonRpcId, result: unknown): Promise<void> {
    return this.#lease.live ? toPromise(this.#context, this.#lease.worker.respond(id, result)) : notLeased("respond")
  }

  respondError(id: JsonRpcId, error: JsonRpcErrorObject): Promise<void> {
    return this.#lease.live
      ? toPromise(this.#context, this.#lease.worker.respondError(id, error))
      : notLeased("respondError")
  }

  onMessage(listener: (message: CodexWorker.IncomingMessage) => void): () => void {
    if (!this.#lease.live) return noop
    // The check covers a message delivered as the lease ends (the channel calls a snapshot of its listeners).
    return this.#lease.track(this.#lease.worker.subscribe((message) => {
      if (this.#lease.live) listener(message)
    }))
  }

  onClose(listener: (event: CloseEvent) => void): () => void {
    if (!this.#lease.live) return noop
    return this.#lease.track(this.#lease.worker.onClose((info) => {
      if (!this.#lease.live) return
      listener({
        code: info.code,
        signal: info.signal,
        error: info.error._tag === "ChannelClosedError" ? undefined : info.error
      })
    }))
  }
}

/**
 * Leases a worker in a scope of its own. The wait is interruptible (the
 * pool's queue); once the worker is handed over the lease exists, and
 * `onLeased` runs uninterruptibly with it (to register its finalizer).
 */
export const lease = <A>(
  service: CodexWorkerPool.Service,
  onLeased: (lease: Lease) => Effect.Effect<A, never, Scope.Scope>
): Effect.Effect<A, Effect.Error<CodexWorkerPool.Service["get"]>, Scope.Scope> =>
  Effect.uninterruptibleMask((restore) =>
    Effect.gen(function*() {
      const context = yield* Effect.context<never>()
      const scope = Scope.makeUnsafe()
      const exit = yield* Effect.exit(restore(Scope.provide(service.get, scope)))
      if (Exit.isFailure(exit)) {
        yield* Scope.close(scope, exit)
        return yield* Effect.failCause(exit.cause)
      }
      return yield* onLeased(new Lease(service, exit.value, scope, context))
    })
  )

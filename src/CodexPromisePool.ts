/**
 * The promise facade of the Codex worker pool, for the AI SDK provider and
 * other code not written in Effect. Same pool, same guarantees as
 * `CodexWorkerPool`; a leased worker is a small handle (one per lease) over
 * one app-server process.
 *
 * The handle is what a provider's transport needs (connect / disconnect /
 * sendMessage / sendNotification / on message, error, close):
 * - `request` resolves with the result, or rejects with `JsonRpcError`
 *   (server error: `code`, `message`, `data`), `WorkerCrashedError` (the process
 *   died), `LeaseTimeoutError`, `RequestTimeoutError`, or `signal.reason`;
 * - `onMessage` delivers every notification and server request;
 * - `onClose` fires once when the process exits or its channel breaks, so a
 *   consumer streaming a turn with no request in flight notices a crash at once.
 * Releasing a crashed worker is allowed and does not return it to service.
 *
 * Accounts (`accounts`, `addAccount`, `removeAccount`; see `CodexWorkerPool`):
 * `acquire({ account })` / `use(fn, { account })` lease a worker started with
 * that account's environment (its API key) and nobody else's;
 * `acquire({ prefer: threadId })` leases the idle worker that last served
 * that thread when there is one, which saves a `thread/resume` (and an
 * ephemeral thread exists only there).
 *
 * Handles are lease-scoped: every `acquire` and every `use` callback gets a
 * handle of its own, which stands for that one lease. Once the lease has
 * ended (`release`, `invalidate`, or `use` returning) the handle is dead:
 * `release` and `invalidate` throw / reject with `WorkerNotLeasedError` and
 * change nothing; `request`, `notify`, `respond` and `respondError` reject with
 * `WorkerNotLeasedError` and send nothing; the listeners registered through it
 * are removed as the lease ends, before the worker goes to anyone else, and a
 * listener registered on a dead handle never fires. So a stale handle cannot
 * act on (or hear) a worker that now serves another caller.
 *
 * Parked leases: `markParked(handle, true)` tells the pool that the holder
 * of a lease waits (the AI SDK provider's turn between two steps, waiting for
 * tool results); `stats().parked` and the `codex_worker_pool_parked` gauge
 * count such leases until they are unmarked or end. A parked lease is a
 * lease like any other (`busy`, lease timeout, shutdown).
 *
 * Limits: a request sent before the lease ended still settles for its sender
 * (its answer is matched by id, so the next holder never sees it). When
 * shutdown's timeout ends a lease the pool finalizes the worker, which serves
 * nobody again: that handle keeps its listeners (its `onClose` fires) and its
 * requests fail with the worker's own closed error.
 *
 * `createCodexWorkerPool` itself is in `codex-worker-pool/node`: it spawns
 * codex with Node's process spawner. The types are in the root entry too.
 *
 * @example
 * ```ts
 * import { createCodexWorkerPool } from "codex-worker-pool/node"
 *
 * const pool = createCodexWorkerPool({ poolSize: 2, codexHome: "/var/lib/app/codex" })
 * const threadId = await pool.use(async (worker, signal) => {
 *   const { thread } = (await worker.request("thread/start", { ephemeral: true }, { signal })) as any
 *   return thread.id as string
 * })
 * await pool.shutdown()
 * ```
 *
 * @since 0.1.0
 */
import { type Context, Effect, Exit, identity, Layer, Scope } from "effect"
import type { ChildProcessSpawner } from "effect/process/ChildProcessSpawner"
import type * as CodexProtocol from "./CodexProtocol.ts"
import type * as CodexWorker from "./CodexWorker.ts"
import type * as CodexWorkerPool from "./CodexWorkerPool.ts"
import {
  type AccountExistsError,
  PoolOptionsError,
  UnknownAccountError
} from "./errors.ts"
import { chargeLease, makeParts, type MakeWorker, validateFacade, WorkerFactory } from "./internal/codexPool.ts"
import type { CodexWorkerPoolOptions } from "./internal/codexPoolTypes.ts"
import { DEFAULT_ACCOUNT } from "./internal/core.ts"
import * as RateLimits from "./RateLimits.ts"
import { registerPulled } from "./internal/metrics.ts"
import type { Slot } from "./internal/core.ts"
import { withLogging } from "./internal/hostLogger.ts"
import { notLeased, toPromise } from "./internal/leasePromises.ts"
import type { JsonRpcErrorObject, JsonRpcId } from "./internal/jsonRpc.ts"
import { checkAcquireOptions, checkRequestOptions } from "./internal/options.ts"
import { CoreKey, type Internals } from "./internal/poolInternals.ts"
import { type AcquireOptions, type PoolLogger, PromisePool, type PromiseWorkerPool } from "./PromisePool.ts"
import type * as WorkerPool from "./WorkerPool.ts"

export type { CodexWorkerPoolOptions } from "./internal/codexPoolTypes.ts"

/**
 * How a worker's process ended, as `onClose` reports it.
 *
 * @since 0.1.0
 * @category models
 */
export interface CloseEvent {
  readonly code: number | null
  readonly signal: string | null
  /** Set when the worker did not end normally: a crash, a lease timeout, a broken pipe (`WorkerStdioError`) or a protocol violation (`ProtocolError`). */
  readonly error?: Error | undefined
}

/**
 * A leased Codex worker, driven with promises.
 *
 * @since 0.1.0
 * @category models
 */
export interface CodexWorkerHandle {
  /** The codex process id. */
  readonly pid: number
  /** The server's answer to `initialize`, sent once when the process started. */
  readonly initializeResult: unknown
  /**
   * Identifies the process behind this lease: the same object for every lease
   * of the same worker, another for another worker (even one that reuses a
   * pid). Key per-process caches (a `WeakMap`) by it; it has no methods.
   */
  readonly workerKey: object
  /**
   * Sends a request of the pinned app-server protocol and resolves with its
   * typed result (e.g. `v2.ThreadStartResponse` for `"thread/start"`; see
   * `CodexProtocol`); params are optional for a method that takes none.
   * Static types only: the result is not checked at runtime.
   * Params that do not have the method's params type select the untyped
   * overload below, whose result is `unknown`. Rejects with
   * `WorkerNotLeasedError` once the lease has ended. Bad `options`
   * (`timeoutMs` not a number >= 0, `signal` not an `AbortSignal`, an unknown
   * option) reject with `PoolOptionsError` naming them, and nothing is sent.
   */
  request<M extends CodexProtocol.ClientRequestMethod>(
    method: M,
    ...args: CodexProtocol.RequestArgs<
      M,
      { readonly signal?: AbortSignal | undefined; readonly timeoutMs?: number | undefined }
    >
  ): Promise<CodexProtocol.RequestResult<M>>
  /**
   * Sends a request and resolves with its result. Rejects with
   * `WorkerNotLeasedError` once the lease has ended, and with
   * `PoolOptionsError` for bad `options` (nothing is sent then).
   */
  request(
    method: string,
    params?: unknown,
    options?: { readonly signal?: AbortSignal | undefined; readonly timeoutMs?: number | undefined }
  ): Promise<unknown>
  /** Sends a notification. Rejects with `WorkerNotLeasedError` once the lease has ended. */
  notify(method: string, params?: unknown): Promise<void>
  /** Answers a server request (an approval, a tool call). Rejects with `WorkerNotLeasedError` once the lease has ended. */
  respond(id: JsonRpcId, result: unknown): Promise<void>
  /** Answers a server request with an error. Rejects with `WorkerNotLeasedError` once the lease has ended. */
  respondError(id: JsonRpcId, error: JsonRpcErrorObject): Promise<void>
  /**
   * Calls `listener` for every notification and server request until the
   * lease ends (it is then removed); returns the unsubscribe.
   */
  onMessage(listener: (message: CodexWorker.IncomingMessage) => void): () => void
  /**
   * Calls `listener` once when the process exits or the channel breaks, if
   * that happens before the lease ends (at once if it already has); returns
   * the unsubscribe.
   */
  onClose(listener: (event: CloseEvent) => void): () => void
}

/**
 * The counts of the Codex promise pool: the service's, and the leases that
 * are parked.
 *
 * @since 0.1.0
 * @category models
 */
export interface CodexPromisePoolStats extends CodexWorkerPool.Stats {
  /**
   * Leases marked parked (`markParked`): held by an AI SDK turn that waits
   * between two steps for tool results. They count as `busy` too.
   */
  readonly parked: number
}

/**
 * A Codex worker pool driven with promises.
 *
 * @since 0.1.0
 * @category models
 */
export interface CodexPromiseWorkerPool extends PromiseWorkerPool<CodexWorkerHandle, CodexWorkerPool.AccountOptions> {
  /** The counts now, with live processes, their resident memory, and parked leases. */
  stats(): CodexPromisePoolStats
  /**
   * Marks the lease of `worker` as parked (its holder waits, e.g. an AI SDK
   * turn between two steps) or no longer parked. A parked lease is still a
   * lease: it counts in `busy` and ends as any other; it also counts in
   * `stats().parked` and the `codex_worker_pool_parked` gauge until it is
   * unmarked or ends. A handle whose lease has ended is ignored.
   */
  markParked(worker: CodexWorkerHandle, parked: boolean): void
  /**
   * A workspace's usage this minute and this UTC day (requests and tokens
   * charged by the rate limits). Rejects with `PoolOptionsError` on a pool
   * without rate-limit options.
   */
  usage(workspace: string): Promise<RateLimits.WorkspaceUsage>
  /**
   * Records that the lease of `worker` serves `key` (a thread id it started,
   * say), for the affinity hint: once the worker is idle, an acquire with
   * `prefer: key` gets it. The key an acquire was made with (`prefer`) is
   * recorded already; this is for a key learned during the lease. A handle
   * whose lease has ended is ignored.
   */
  setAffinity(worker: CodexWorkerHandle, key: string): void
}

/** The options of `CodexWorkerHandle.request`. */
interface RequestCallOptions {
  readonly signal?: AbortSignal | undefined
  readonly timeoutMs?: number | undefined
}

const noop = () => {}

type Worker = CodexWorker.CodexWorker

/**
 * The handle of one lease: the slot it was leased from and that lease's
 * number. It is live while the slot is under that lease; the facade sets the
 * number to -1 as the lease ends through it, and a hand-off to the next
 * holder moves the slot to another number, so a stale handle never matches.
 * One small object per lease, its methods on the prototype.
 */
class LeaseHandle implements CodexWorkerHandle {
  readonly pid: number
  readonly initializeResult: unknown
  readonly #pool: CodexPromisePool
  readonly #slot: Slot<Worker>
  #lease: number
  /** The unsubscribes of listeners registered through this handle (created on the first). */
  #subscriptions: Set<() => void> | undefined = undefined

  constructor(pool: CodexPromisePool, slot: Slot<Worker>) {
    this.#pool = pool
    this.#slot = slot
    this.#lease = slot.lease
    this.pid = slot.worker.pid
    this.initializeResult = slot.worker.initializeResult
  }

  /** The slot `held` was leased from, when it is a handle of `pool`. */
  static slotIn(pool: CodexPromisePool, held: unknown): Slot<Worker> | undefined {
    return typeof held === "object" && held !== null && #pool in held && held.#pool === pool ? held.#slot : undefined
  }

  /** The lease `handle` stands for (-1 once it ended through the facade). */
  static leaseOf(handle: LeaseHandle): number {
    return handle.#lease
  }

  /** True while the lease `handle` stands for is its slot's current one. */
  static isLive(handle: LeaseHandle): boolean {
    return handle.#live()
  }

  /** Ends `handle`: it no longer matches any lease and its listeners are removed. */
  static revoke(handle: LeaseHandle): void {
    handle.#lease = -1
    const subscriptions = handle.#subscriptions
    if (subscriptions !== undefined) {
      handle.#subscriptions = undefined
      for (const unsubscribe of subscriptions) unsubscribe()
    }
  }

  get workerKey(): object {
    return this.#pool.keyOf(this.#slot.worker)
  }

  /** True while the lease this handle stands for is the slot's current one. */
  #live(): boolean {
    return this.#lease === this.#slot.lease && this.#slot.state !== "idle"
  }

  // `any`: the typed overload of `request` declares the result type of each protocol method.
  request(method: string, params?: unknown, options?: RequestCallOptions): Promise<any> {
    if (!this.#live()) return notLeased("request")
    const invalid = checkRequestOptions(options)
    if (invalid !== undefined) return Promise.reject(invalid)
    const timeoutMs = options?.timeoutMs
    return toPromise(
      this.#pool.logContext,
      this.#slot.worker.request(method, params, {
        timeout: timeoutMs === undefined || timeoutMs === 0 ? undefined : timeoutMs
      }),
      options?.signal
    )
  }

  notify(method: string, params?: unknown): Promise<void> {
    return this.#live() ? toPromise(this.#pool.logContext, this.#slot.worker.notify(method, params)) : notLeased("notify")
  }

  respond(id: JsonRpcId, result: unknown): Promise<void> {
    return this.#live() ? toPromise(this.#pool.logContext, this.#slot.worker.respond(id, result)) : notLeased("respond")
  }

  respondError(id: JsonRpcId, error: JsonRpcErrorObject): Promise<void> {
    return this.#live()
      ? toPromise(this.#pool.logContext, this.#slot.worker.respondError(id, error))
      : notLeased("respondError")
  }

  onMessage(listener: (message: CodexWorker.IncomingMessage) => void): () => void {
    if (!this.#live()) return noop
    // The check covers a message being delivered as the lease ends (the
    // channel calls a snapshot of its listeners).
    return this.#track(this.#slot.worker.subscribe((message) => {
      if (this.#live()) listener(message)
    }))
  }

  onClose(listener: (event: CloseEvent) => void): () => void {
    if (!this.#live()) return noop
    return this.#track(this.#slot.worker.onClose((info) => {
      if (this.#lease !== this.#slot.lease) return
      listener({
        code: info.code,
        signal: info.signal,
        error: info.error._tag === "ChannelClosedError" ? undefined : info.error
      })
    }))
  }

  #track(unsubscribe: () => void): () => void {
    // The listener ended the lease already (`onClose` of a closed worker calls it at once).
    if (this.#lease !== this.#slot.lease) {
      unsubscribe()
      return noop
    }
    const subscriptions = this.#subscriptions ??= new Set()
    subscriptions.add(unsubscribe)
    return () => {
      if (subscriptions.delete(unsubscribe)) unsubscribe()
    }
  }
}

/**
 * The Codex facade: the generic facade over a pool of `CodexWorker`s, handing
 * out a `LeaseHandle` per lease.
 *
 * @internal
 */
export class CodexPromisePool extends PromisePool<Worker, CodexWorkerHandle, CodexWorkerPool.AccountOptions>
  implements CodexPromiseWorkerPool
{
  readonly #statsNow: (stats: WorkerPool.Stats) => CodexWorkerPool.Stats
  readonly #keys = new WeakMap<Worker, object>()
  /** Handles marked parked; those whose lease has ended are dropped when counted. */
  readonly #parked = new Set<LeaseHandle>()
  /** The pool's logging, for what the handles run (requests, notifications, answers). */
  readonly logContext: Context.Context<never>
  constructor(
    internals: Internals<Worker>,
    scope: Scope.Closeable,
    parts: {
      /** The pool's counts with the processes and resident memory of its workers. */
      readonly statsNow: (stats: WorkerPool.Stats) => CodexWorkerPool.Stats
      readonly addAccount: (name: string, account: CodexWorkerPool.AccountOptions) => AccountExistsError | undefined
      readonly removeAccount: Internals<Worker>["removeAccount"]
    }
  ) {
    super(internals, scope, {
      add: (name, account) => {
        const exists = parts.addAccount(name, account)
        if (exists !== undefined) throw exists
      },
      remove: parts.removeAccount
    })
    this.#statsNow = parts.statsNow
    this.logContext = internals.logContext
  }
  override grant(slot: Slot<Worker>): CodexWorkerHandle {
    return new LeaseHandle(this, slot)
  }
  override slotOf(held: CodexWorkerHandle): Slot<Worker> | undefined {
    return LeaseHandle.slotIn(this, held)
  }
  override leaseOf(held: CodexWorkerHandle): number {
    return LeaseHandle.leaseOf(held as LeaseHandle)
  }
  override revoke(held: CodexWorkerHandle): void {
    LeaseHandle.revoke(held as LeaseHandle)
  }
  /** The `workerKey` of `worker`'s handles. */
  keyOf(worker: Worker): object {
    let key = this.#keys.get(worker)
    if (key === undefined) this.#keys.set(worker, key = Object.freeze({ pid: worker.pid }))
    return key
  }
  markParked(worker: CodexWorkerHandle, parked: boolean): void {
    if (LeaseHandle.slotIn(this, worker) === undefined) return
    this.parkedCount() // drops the handles of leases that ended
    const handle = worker as LeaseHandle
    if (parked && LeaseHandle.isLive(handle)) this.#parked.add(handle)
    else this.#parked.delete(handle)
  }
  setAffinity(worker: CodexWorkerHandle, key: string): void {
    const slot = LeaseHandle.slotIn(this, worker)
    if (slot !== undefined && LeaseHandle.isLive(worker as LeaseHandle)) slot.key = key
  }
  /** Leases marked parked that have not ended. */
  parkedCount(): number {
    for (const handle of this.#parked) if (!LeaseHandle.isLive(handle)) this.#parked.delete(handle)
    return this.#parked.size
  }
  override stats(): CodexPromisePoolStats {
    return { ...this.#statsNow(super.stats()), parked: this.parkedCount() }
  }
  usage(workspace: string): Promise<RateLimits.WorkspaceUsage> {
    return Promise.reject(
      new PoolOptionsError({
        message:
          `usage(${JSON.stringify(workspace)}): this pool has no rate limits; give it \`rateLimits\`, \`workspaceLimits\`, \`rateLimitOptions\` or \`rateLimitStore\` to count usage.`
      })
    )
  }
}

/** The worker behind a live handle of `pool` (the handle was just granted). */
const workerOf = (pool: CodexPromisePool, held: CodexWorkerHandle): Worker => LeaseHandle.slotIn(pool, held)!.worker

/**
 * The Codex facade with rate-limit admission (a pool made with rate-limit
 * options; without them the plain `CodexPromisePool` runs, untouched). An
 * acquire (and so `use`) first waits for admission, holding no worker,
 * within its budget (`timeoutMs`, else `acquireTimeoutMs`), then for a worker
 * with what is left; the lease's notifications are charged and the
 * reservation settled as the lease ends through the facade (`release`,
 * `invalidate`, `use` returning: all go through `revoke`) or its worker
 * closes. An acquire that gets no worker gives its reservation back.
 *
 * @internal
 */
class RateLimitedCodexPromisePool extends CodexPromisePool {
  readonly #rateLimits: RateLimits.Service
  readonly #closeRateLimits: () => Promise<void>
  readonly #accounts: ReadonlyMap<string, unknown>
  readonly #defaultTimeoutMs: number
  /** How each lease admitted here ends: unsubscribes and settles its reservation. */
  readonly #leases = new Map<CodexWorkerHandle, () => void>()
  #closing: Promise<void> | undefined

  constructor(
    internals: Internals<Worker>,
    scope: Scope.Closeable,
    parts: ConstructorParameters<typeof CodexPromisePool>[2],
    rateLimits: { readonly service: RateLimits.Service; readonly close: () => Promise<void> },
    defaultTimeoutMs: number
  ) {
    super(internals, scope, parts)
    this.#rateLimits = rateLimits.service
    this.#closeRateLimits = rateLimits.close
    this.#accounts = internals.core.accounts
    this.#defaultTimeoutMs = defaultTimeoutMs
  }

  override acquire(options?: AcquireOptions): Promise<CodexWorkerHandle> {
    const invalid = checkAcquireOptions(options)
    if (invalid !== undefined) return Promise.reject(invalid)
    const signal = options?.signal
    if (signal?.aborted) return Promise.reject(signal.reason)
    const account = options?.account
    // Before admission: a call that cannot get a worker is charged nothing.
    if (account !== undefined && !this.#accounts.has(account)) {
      return Promise.reject(new UnknownAccountError({ account }))
    }
    const timeoutMs = options?.timeoutMs ?? this.#defaultTimeoutMs
    const budget = timeoutMs === Infinity ? 0 : timeoutMs
    let admitted: RateLimits.Reservation | Promise<RateLimits.Reservation>
    try {
      admitted = this.#rateLimits.admitUnsafe({
        key: account ?? DEFAULT_ACCOUNT,
        workspace: options?.workspace,
        estimatedTokens: options?.estimatedTokens,
        timeoutMs: budget
      }, signal)
    } catch (error) {
      return Promise.reject(error)
    }
    return admitted instanceof Promise
      ? admitted.then((reservation) => this.#take(reservation, options, budget))
      : this.#take(admitted, options, budget)
  }

  /** Waits for a worker with what is left of the budget, then charges its lease to `reservation`. */
  #take(
    reservation: RateLimits.Reservation,
    options: AcquireOptions | undefined,
    budget: number
  ): Promise<CodexWorkerHandle> {
    const timeoutMs = budget === 0 ? 0 : Math.max(1, budget - reservation.waitedMs)
    let acquired: Promise<CodexWorkerHandle>
    try {
      acquired = super.acquire(options === undefined ? { timeoutMs } : { ...options, timeoutMs })
    } catch (error) {
      reservation.cancel()
      return Promise.reject(error)
    }
    return acquired.then((held) => {
      this.#leases.set(held, chargeLease(workerOf(this, held), reservation))
      return held
    }, (error) => {
      reservation.cancel()
      throw error
    })
  }

  override revoke(held: CodexWorkerHandle): void {
    super.revoke(held)
    const end = this.#leases.get(held)
    if (end !== undefined) {
      this.#leases.delete(held)
      end()
    }
  }

  override usage(workspace: string): Promise<RateLimits.WorkspaceUsage> {
    // After the background charges of leases that ended, so that they show.
    return Effect.runPromise(Effect.andThen(this.#rateLimits.flush, this.#rateLimits.usage(workspace)))
  }

  override shutdown(): Promise<void> {
    return this.#closing ??= super.shutdown().finally(() => {
      for (const end of this.#leases.values()) end()
      this.#leases.clear()
      return this.#closeRateLimits()
    })
  }
}

/**
 * Creates a pool of Codex app-server workers driven with promises, spawning
 * with the `ChildProcessSpawner` that `spawner` builds (built once, in the
 * pool's scope; `shutdown` closes it). Bad options throw a `PoolOptionsError`
 * naming the option. `createCodexWorkerPool` (`codex-worker-pool/node`) is
 * this with Node's spawner.
 *
 * @internal
 */
export const makeCodexPromisePool = (
  options: CodexWorkerPoolOptions,
  spawner: Layer.Layer<ChildProcessSpawner>,
  /** The test pool's fake workers (src/testing); real processes when absent. */
  makeWorker?: MakeWorker | undefined
): CodexPromiseWorkerPool => {
  const settings = validateFacade(options)
  const rateLimits = settings.rateLimits === undefined
    ? undefined
    : RateLimits.makeUnsafe(settings.rateLimits, settings.rateLimitStore)
  const scope = Scope.makeUnsafe()
  try {
    const context = Effect.runSync(Scope.provide(Layer.build(spawner), scope))
    const parts = Effect.runSync(
      makeParts(settings, rateLimits?.service).pipe(
        withLogging(settings.logging),
        makeWorker === undefined ? identity : Effect.provideService(WorkerFactory, makeWorker),
        Scope.provide(scope),
        Effect.provideContext(context)
      )
    )
    const pool = parts.pool as WorkerPool.WorkerPool<Worker, unknown> & { readonly [CoreKey]: Internals<Worker> }
    const facade = rateLimits === undefined
      ? new CodexPromisePool(pool[CoreKey], scope, parts)
      : new RateLimitedCodexPromisePool(pool[CoreKey], scope, parts, rateLimits, settings.acquireTimeoutMs)
    const removeGauge = registerPulled(context, pool[CoreKey].metricAttributes, [{
      name: "codex_worker_pool_parked",
      description: "Leases parked by their holder (AI SDK turns waiting between steps for tool results)",
      get: () => facade.parkedCount()
    }])
    Effect.runSync(Scope.addFinalizer(scope, Effect.sync(removeGauge)))
    return facade
  } catch (error) {
    Effect.runFork(Scope.close(scope, Exit.void))
    void rateLimits?.close()
    throw error
  }
}

export type { AcquireOptions, PoolLogger }

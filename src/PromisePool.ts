/**
 * The promise facade of the worker pool, for code that is not written in
 * Effect (the AI SDK provider, for one).
 *
 * It drives the same core as `WorkerPool` and keeps its guarantees: per-worker
 * single flight, at most `poolSize` workers, a FIFO queue with direct
 * hand-off, abort with `AbortSignal`, optional acquire timeout and queue
 * bound, shutdown that rejects every waiter with `PoolShutdownError` and
 * finalizes every worker. Acquire and release run synchronously on the core:
 * no fiber, timer or scheduler hop per call (one timer serves the whole pool;
 * with `leaseTimeoutMs` set, each lease also gets a timer fiber of its own).
 *
 * Limits: a promise that has resolved cannot be taken back, so a signal that
 * aborts after the worker was handed over does not release it: the caller
 * owns the worker and must `release` it (prefer `use`, which always does).
 *
 * Leases: this pool hands out your own worker objects, so `release(worker)`
 * and `invalidate(worker)` name a worker, not a lease, and nothing tells an
 * old reference from the current holder's. Caught, with `WorkerNotLeasedError`
 * and nothing changed: releasing a worker that is not leased out at the moment
 * (released twice while it sits idle, invalidated, or never acquired from this
 * pool), and invalidating an object that is not from this pool. Not caught:
 * once a released worker has gone to the next caller (a waiter gets it at
 * once), a second `release(worker)` ends that caller's lease, `invalidate`
 * takes its worker out of service, and whatever the old reference does to the
 * worker reaches the new holder's. `use` is safe from its own side: it ends
 * only the lease it started, even when `fn` has released the worker already.
 * Prefer `use`, and drop a worker reference at release. (The Codex pool's
 * facade hands out a handle per lease and refuses stale ones.) After
 * `shutdown()`, releasing a worker the pool no longer leases is ignored: the
 * shutdown timeout may have ended that lease.
 *
 * Accounts: `accounts` adds named groups of workers (each made by its own
 * `create`, or by the top-level `create`, which gets the account's name),
 * each with an optional cap; `acquire({ account })` gets a worker of that
 * account only, FIFO by capacity across accounts (see `WorkerPool`), and
 * `acquire({ prefer })` the idle worker that last served that key, when
 * there is one. `addAccount` / `removeAccount` change them at run time.
 *
 * @example
 * ```ts
 * import { createWorkerPool } from "codex-worker-pool"
 *
 * const pool = createWorkerPool({
 *   create: async () => openConnection(),
 *   destroy: (connection) => connection.close(),
 *   poolSize: 2,
 *   acquireTimeoutMs: 30_000
 * })
 * const rows = await pool.use((connection, signal) => connection.query("select 1", { signal }))
 * await pool.shutdown()
 * ```
 *
 * @since 0.1.0
 */
import { Deferred, Duration, Effect, Exit, Schema, Scope } from "effect"
import * as Cause from "effect/Cause"
import {
  AccountRemovedError,
  PoolShutdownError,
  UnknownAccountError,
  WorkerNotLeasedError
} from "./errors.ts"
import type { Account, PoolCore, Slot, WaiterFailure } from "./internal/core.ts"
import { DEFAULT_ACCOUNT, Waiter } from "./internal/core.ts"
import { type PoolLogger, PoolLoggerSchema, withLogging } from "./internal/hostLogger.ts"
import {
  checkAcquireOptions,
  CountOrInfinity,
  decodeOptions,
  durationOfMs,
  Function,
  IntAtLeast,
  Millis
} from "./internal/options.ts"
import {
  accountNamesAllowed,
  checkAccountName,
  CoreKey,
  type Internals,
  minIdleWithin,
  statsOf,
  WorkerCap
} from "./internal/poolInternals.ts"
import * as WorkerPool from "./WorkerPool.ts"

export type { PoolLogger } from "./internal/hostLogger.ts"

/**
 * Options of {@link createWorkerPool}. Times are in milliseconds.
 *
 * @since 0.1.0
 * @category models
 */
export interface WorkerPoolOptions<W> {
  /**
   * Makes a worker of `account` ("default" for the default account; the
   * others' unless they have a `create` of their own). `signal` aborts when
   * the pool shuts down during the create.
   */
  readonly create: (signal: AbortSignal, account: string) => Promise<W>
  /** Finalizes a worker (idle retirement, invalidate, shutdown). Errors are logged, not thrown. */
  readonly destroy?: ((worker: W) => Promise<void> | void) | undefined
  /** Most workers alive at once (idle, busy or being created). An integer >= 1. */
  readonly poolSize: number
  /** Idle time before a worker is destroyed. Default 300000 (5 minutes); 0 disables. */
  readonly idleTimeoutMs?: number | undefined
  /** Longest wait in the queue before `AcquireTimeoutError`. Default: no limit (0). */
  readonly acquireTimeoutMs?: number | undefined
  /** Most queued acquires; one more rejects at once with `QueueFullError`. Default: unbounded. */
  readonly maxQueue?: number | undefined
  /** Idle workers kept warm, within `poolSize`. Default 0. */
  readonly minIdle?: number | undefined
  /** How long `shutdown()` waits for busy workers before destroying them anyway. Default 30000. */
  readonly shutdownTimeoutMs?: number | undefined
  /**
   * Longest a lease may be held. When it runs out the worker is retired
   * (destroyed when released) and `onLeaseTimeout` is called. Default 0: no limit.
   */
  readonly leaseTimeoutMs?: number | undefined
  /** Called when a lease outlives `leaseTimeoutMs`, e.g. to kill a stuck worker. Errors are logged. */
  readonly onLeaseTimeout?: ((worker: W, leaseTimeoutMs: number) => Promise<void> | void) | undefined
  /** Names the pool in metrics and logs. Default "worker-pool". */
  readonly name?: string | undefined
  /** The `provider` attribute of the metrics. Default "generic". */
  readonly provider?: string | undefined
  /**
   * Log at debug level too: each acquire queued (`queued`: the queue length)
   * and each hand-off (`waitedMs`, `queued`). Default false: debug lines are
   * not even produced.
   */
  readonly debug?: boolean | undefined
  /**
   * Where the pool's log lines go (queueing and hand-offs with `debug`, lease
   * timeouts, `destroy` and `onLeaseTimeout` failures...). Default: Effect's
   * default logger (the console).
   */
  readonly logger?: PoolLogger | undefined
  /** Most workers of the default account at once. An integer >= 1; default: only `poolSize` limits it. */
  readonly maxWorkers?: number | undefined
  /**
   * More accounts (worker groups), by name: any non-empty string but
   * "default". `poolSize` bounds the workers of all accounts together.
   */
  readonly accounts?: Readonly<Record<string, WorkerPoolAccountOptions<W>>> | undefined
}

/**
 * An account of {@link createWorkerPool}: a group of workers served only to
 * callers that name it.
 *
 * @since 0.1.0
 * @category models
 */
export interface WorkerPoolAccountOptions<W> {
  /** Makes a worker of this account. Default: the pool's `create`, called with the account's name. */
  readonly create?: ((signal: AbortSignal, account: string) => Promise<W>) | undefined
  /** Most workers of this account at once. An integer >= 1; default: only `poolSize` limits it. */
  readonly maxWorkers?: number | undefined
}

/**
 * Options of one acquire. Bad ones (`timeoutMs` not a number >= 0, `signal`
 * not an `AbortSignal`, `account` or `prefer` not a string, an unknown
 * option) reject the acquire with `PoolOptionsError` naming them, before
 * anything is queued or leased.
 *
 * @since 0.1.0
 * @category models
 */
export interface AcquireOptions {
  /** Aborting it while queued removes the acquire and rejects it with `signal.reason`. */
  readonly signal?: AbortSignal | undefined
  /** Overrides `acquireTimeoutMs` for this acquire; 0 waits without limit. */
  readonly timeoutMs?: number | undefined
  /**
   * The account to get a worker of. Default: the default account ("default").
   * One the pool does not have rejects at once with `UnknownAccountError`.
   */
  readonly account?: string | undefined
  /**
   * An affinity key (a thread id, say): an idle worker of the account that
   * last served this key is the one handed out. Otherwise the acquire is
   * served as usual: it never waits for a busy worker, never goes ahead of a
   * waiter.
   */
  readonly prefer?: string | undefined
  /**
   * The workspace the call is charged to. Read by a Codex pool with rate
   * limits (usage, `workspaceLimits`); other pools ignore it.
   */
  readonly workspace?: string | undefined
  /**
   * Tokens reserved at admission (a finite number >= 0). Read by a Codex pool
   * with rate limits (default: its `defaultEstimatedTokens`); others ignore it.
   */
  readonly estimatedTokens?: number | undefined
}

/**
 * The pool's counts.
 *
 * @since 0.1.0
 * @category models
 */
export type PoolStats = WorkerPool.Stats

/**
 * A worker pool driven with promises.
 *
 * @since 0.1.0
 * @category models
 */
export interface PromiseWorkerPool<W, A = WorkerPoolAccountOptions<W>> extends AsyncDisposable {
  /** Resolves with a worker, waiting FIFO when all are busy. */
  acquire(options?: AcquireOptions): Promise<W>
  /**
   * Returns a leased worker: it goes straight to the oldest waiter, or back to
   * the idle list. Throws `WorkerNotLeasedError` (changing nothing) for a worker
   * that is not leased out at the moment. See the module's notes on leases for
   * what a stale release of a bare worker object can still do.
   */
  release(worker: W): void
  /**
   * Takes a worker out of service and resolves once it is destroyed. For a
   * leased worker this ends the lease too: do not `release` it afterwards.
   */
  invalidate(worker: W): Promise<void>
  /**
   * Acquires, runs `fn`, and releases the worker however `fn` ends. It ends
   * only the lease it started: if `fn` released the worker itself, nothing more
   * happens. `fn`'s signal aborts when the caller's `signal` does (with its
   * reason) or when the pool shuts down (with a `PoolShutdownError`).
   */
  use<A>(fn: (worker: W, signal: AbortSignal) => Promise<A>, options?: AcquireOptions): Promise<A>
  /** The counts now. */
  stats(): PoolStats
  /**
   * Adds an account at run time. Throws `AccountExistsError` (changing
   * nothing) when the pool has one of that name, `PoolOptionsError` for a
   * bad name or options.
   */
  addAccount(name: string, account: A): void
  /**
   * Removes an account at once: its waiters reject with
   * `AccountRemovedError`, later acquires for it with `UnknownAccountError`;
   * its idle workers are destroyed now, its busy ones when released, those
   * being created when they arrive. Resolves once every worker of it has
   * been destroyed. Rejects with `UnknownAccountError` when there is no such
   * account, `PoolOptionsError` for the default account.
   */
  removeAccount(name: string): Promise<void>
  /** Rejects every waiter with `PoolShutdownError` and resolves once every worker is destroyed. */
  shutdown(): Promise<void>
}

const AccountSchema = Schema.Struct({
  create: Schema.optional(Function),
  maxWorkers: Schema.optional(WorkerCap)
})

const OptionsSchema = Schema.Struct({
  create: Function,
  maxWorkers: Schema.optional(WorkerCap),
  accounts: Schema.optional(Schema.Record(Schema.String, AccountSchema)),
  destroy: Schema.optional(Function),
  poolSize: IntAtLeast(1),
  idleTimeoutMs: Schema.optional(Millis),
  acquireTimeoutMs: Schema.optional(Millis),
  maxQueue: Schema.optional(CountOrInfinity),
  minIdle: Schema.optional(IntAtLeast(0)),
  shutdownTimeoutMs: Schema.optional(Millis),
  leaseTimeoutMs: Schema.optional(Millis),
  onLeaseTimeout: Schema.optional(Function),
  name: Schema.optional(Schema.String),
  provider: Schema.optional(Schema.String),
  debug: Schema.optional(Schema.Boolean),
  logger: Schema.optional(PoolLoggerSchema)
}).check(minIdleWithin("poolSize"), accountNamesAllowed)

/** A waiter that is a pending promise, optionally abortable. */
class PromiseWaiter<W, H> extends Waiter<W> {
  readonly promise: Promise<H>
  resolve!: (held: H) => void
  reject!: (error: unknown) => void
  readonly pool: PromisePool<W, H, any>
  readonly core: PoolCore<W>
  readonly signal: AbortSignal | undefined

  constructor(pool: PromisePool<W, H, any>, core: PoolCore<W>, signal: AbortSignal | undefined) {
    super()
    this.pool = pool
    this.core = core
    this.signal = signal
    this.promise = new Promise<H>((resolve, reject) => {
      this.resolve = resolve
      this.reject = reject
    })
    signal?.addEventListener("abort", this, { once: true })
  }

  succeed(slot: Slot<W>): void {
    this.signal?.removeEventListener("abort", this)
    this.resolve(this.pool.grant(slot))
  }

  fail(failure: WaiterFailure): void {
    this.signal?.removeEventListener("abort", this)
    this.reject(
      "createFailure" in failure
        ? squash(failure.createFailure)
        : "accountRemoved" in failure
        ? new AccountRemovedError({ account: failure.accountRemoved })
        : failure
    )
  }

  /** The abort listener. */
  handleEvent(): void {
    if (this.core.cancel(this)) this.reject(this.signal!.reason)
  }
}

/** The error a failed create rejected with (or the defect it died with). */
const squash = (cause: unknown): unknown => Cause.squash(cause as Cause.Cause<unknown>)

/**
 * How a facade adds and removes accounts: the options of an account (`A`)
 * are the facade's own.
 *
 * @internal
 */
export interface AccountControl<A> {
  /** Validates `account` and adds it; throws `PoolOptionsError` or `AccountExistsError`. */
  readonly add: (name: string, account: A) => void
  /** What `Internals.removeAccount` does, plus the facade's own clean-up. */
  readonly remove: (name: string) => ReturnType<Internals<unknown>["removeAccount"]>
}

/**
 * The facade over a pool's core. The core holds workers `W`; a lease is handed
 * out as `H`: the worker itself here, a lease-scoped handle in a subclass that
 * overrides `grant`, `slotOf`, `leaseOf` and `revoke`. `A`: the options of an
 * account added at run time.
 *
 * @internal
 */
export class PromisePool<W, H = W, A = WorkerPoolAccountOptions<H>> implements PromiseWorkerPool<H, A> {
  readonly #core: PoolCore<W>
  readonly #internals: Internals<W>
  readonly #scope: Scope.Closeable
  readonly #accounts: AccountControl<A>
  readonly #abortOnShutdown = new AbortController()
  #shutdown: Promise<void> | undefined

  constructor(internals: Internals<W>, scope: Scope.Closeable, accounts: AccountControl<A>) {
    this.#internals = internals
    this.#core = internals.core
    this.#scope = scope
    this.#accounts = accounts
  }

  /** What the current lease of `slot` is handed out as (called as the lease begins): the worker itself. */
  grant(slot: Slot<W>): H {
    return slot.worker as unknown as H
  }

  /** The slot `held` was leased from, or `undefined` when it is not from this pool. */
  slotOf(held: H): Slot<W> | undefined {
    return this.#core.slots.get(held as unknown as W)
  }

  /**
   * The lease of `slot` that `held` stands for. A bare worker cannot tell its
   * leases apart: it stands for whichever lease its slot is under now.
   */
  leaseOf(_held: H, slot: Slot<W>): number {
    return slot.lease
  }

  /** The lease `held` stands for is ending through this facade; runs before the worker moves on. */
  revoke(_held: H): void {}

  acquire(options?: AcquireOptions): Promise<H> {
    const core = this.#core
    let signal: AbortSignal | undefined
    let timeout: number | undefined
    let account: Account<W> | undefined = core.defaultAccount
    let key: string | undefined
    if (options !== undefined) {
      // Before anything else: bad options never queue, lease or abort anything.
      const invalid = checkAcquireOptions(options)
      if (invalid !== undefined) return Promise.reject(invalid)
      signal = options.signal
      if (signal?.aborted) return Promise.reject(signal.reason)
      if (options.timeoutMs !== undefined) timeout = options.timeoutMs === Infinity ? 0 : options.timeoutMs
      if (options.account !== undefined) {
        account = core.accounts.get(options.account)
        if (account === undefined) return Promise.reject(new UnknownAccountError({ account: options.account }))
      }
      key = options.prefer
    }
    const slot = core.take(account, key)
    if (slot !== undefined) return Promise.resolve(this.grant(slot))
    const waiter = new PromiseWaiter(this, core, signal)
    waiter.key = key
    core.enqueue(waiter, timeout, account)
    return waiter.promise
  }

  release(held: H): void {
    const core = this.#core
    const slot = this.slotOf(held)
    if (slot !== undefined) {
      const lease = this.leaseOf(held, slot)
      if (slot.state === "leased" && slot.lease === lease) {
        // First, so that nothing of this lease runs once the worker has moved on.
        this.revoke(held)
        core.release(slot, lease)
        return
      }
      // After shutdown, a lease may already have been ended by the shutdown timeout.
      if (core.closed && slot.lease === lease) return
    } else if (core.closed) {
      // ... and its worker finalized since.
      return
    }
    throw new WorkerNotLeasedError({ operation: "release" })
  }

  invalidate(held: H): Promise<void> {
    const core = this.#core
    const slot = this.slotOf(held)
    if (slot === undefined) {
      return core.closed ? Promise.resolve() : Promise.reject(new WorkerNotLeasedError({ operation: "invalidate" }))
    }
    const lease = this.leaseOf(held, slot)
    // A handle of an ended lease: its worker is idle or serves someone else.
    if (slot.lease !== lease) return Promise.reject(new WorkerNotLeasedError({ operation: "invalidate" }))
    if (slot.state === "leased") {
      this.revoke(held)
      core.invalidate(slot)
      core.release(slot, lease)
    } else {
      core.invalidate(slot)
    }
    return this.#internals.whenFinalized(slot)
  }

  async use<A>(fn: (worker: H, signal: AbortSignal) => Promise<A>, options?: AcquireOptions): Promise<A> {
    const held = await this.acquire(options)
    const slot = this.slotOf(held)!
    const lease = this.leaseOf(held, slot)
    const signal = options?.signal === undefined
      ? this.#abortOnShutdown.signal
      : AbortSignal.any([options.signal, this.#abortOnShutdown.signal])
    try {
      return await fn(held, signal)
    } finally {
      this.revoke(held)
      // Unless `fn` already ended this lease (release, invalidate) or shutdown did.
      this.#core.release(slot, lease)
    }
  }

  stats(): PoolStats {
    return statsOf(this.#core)
  }

  addAccount(name: string, account: A): void {
    this.#accounts.add(name, account)
  }

  removeAccount(name: string): Promise<void> {
    let done: ReturnType<AccountControl<A>["remove"]>
    try {
      done = this.#accounts.remove(name)
    } catch (error) {
      return Promise.reject(error)
    }
    return done instanceof UnknownAccountError ? Promise.reject(done) : Effect.runPromise(Deferred.await(done))
  }

  shutdown(): Promise<void> {
    if (this.#shutdown === undefined) {
      this.#abortOnShutdown.abort(new PoolShutdownError())
      this.#shutdown = Effect.runPromise(Scope.close(this.#scope, Exit.void))
    }
    return this.#shutdown
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.shutdown()
  }
}

/**
 * Creates a worker pool driven with promises. Bad options throw a
 * `PoolOptionsError` naming the option.
 *
 * @since 0.1.0
 * @category constructors
 */
export const createWorkerPool = <W>(options: WorkerPoolOptions<W>): PromiseWorkerPool<W> => {
  const o = decodeOptions("createWorkerPool", OptionsSchema, options)
  const create = options.create
  const destroy = options.destroy
  const onLeaseTimeout = options.onLeaseTimeout
  const finalizer = (worker: W) =>
    destroy === undefined ? Effect.void : Effect.tryPromise({
      try: async () => destroy(worker),
      catch: (error) => error
    }).pipe(Effect.catchCause((cause) => Effect.logWarning("destroy() of a worker failed", cause)))
  /**
   * Makes a worker of `account` with `make`. The create stays interruptible
   * (unlike in `Effect.acquireRelease`), so shutdown aborts its signal; a
   * worker it delivers anyway is destroyed, in the pool's context (its logger).
   */
  const acquireWith = (make: (signal: AbortSignal, account: string) => Promise<W>, account: string) => {
    const createEffect = Effect.flatMap(Effect.context<never>(), (context) =>
      Effect.callback<W, unknown>((resume, signal) => {
        let created: Promise<W>
        try {
          created = Promise.resolve(make(signal, account))
        } catch (error) {
          return resume(Effect.fail(error))
        }
        created.then(
          (worker) => {
            if (signal.aborted) Effect.runForkWith(context)(finalizer(worker))
            else resume(Effect.succeed(worker))
          },
          (error) => resume(Effect.fail(error))
        )
      }))
    return Effect.uninterruptibleMask((restore) =>
      Effect.tap(restore(createEffect), (worker) => Effect.addFinalizer(() => finalizer(worker)))
    )
  }
  const accountsOf = (accounts: Readonly<Record<string, WorkerPoolAccountOptions<W>>>) =>
    Object.fromEntries(
      Object.entries(accounts).map(([name, account]) => [name, {
        acquire: acquireWith(account.create ?? create, name),
        maxWorkers: account.maxWorkers
      }])
    )
  const scope = Scope.makeUnsafe()
  const make = WorkerPool.make<W, unknown>({
    acquire: acquireWith(create, DEFAULT_ACCOUNT),
    maxWorkers: o.maxWorkers,
    accounts: options.accounts === undefined ? undefined : accountsOf(options.accounts),
    size: o.poolSize,
    // The facade's milliseconds (0: no limit) as the Effect pool's durations.
    idleTimeout: durationOfMs(o.idleTimeoutMs),
    acquireTimeout: durationOfMs(o.acquireTimeoutMs),
    maxQueue: o.maxQueue,
    minIdle: o.minIdle,
    shutdownTimeout: durationOfMs(o.shutdownTimeoutMs),
    leaseTimeout: durationOfMs(o.leaseTimeoutMs),
    onLeaseTimeout: onLeaseTimeout === undefined ? undefined : (worker, leaseTimeout) =>
      Effect.tryPromise({
        try: async () => onLeaseTimeout(worker, Duration.toMillis(leaseTimeout)),
        catch: (error) => error
      }).pipe(
        Effect.catchCause((cause) => Effect.logWarning("onLeaseTimeout() failed", cause))
      ),
    name: o.name,
    provider: o.provider
  }).pipe(
    withLogging({ debug: o.debug === true, logger: options.logger }),
    Scope.provide(scope)
  )
  const pool = Effect.runSync(make) as WorkerPool.WorkerPool<W, unknown> & {
    readonly [CoreKey]: Internals<W>
  }
  const internals = pool[CoreKey]
  return new PromisePool<W, W, WorkerPoolAccountOptions<W>>(internals, scope, {
    add: (name, account) => {
      checkAccountName(name)
      const a = decodeOptions("addAccount", AccountSchema, account)
      const exists = internals.addAccount(name, acquireWith(account.create ?? create, name), a.maxWorkers ?? Infinity)
      if (exists !== undefined) throw exists
    },
    remove: internals.removeAccount
  })
}

/**
 * The models of `WorkerPool` (its options, acquire options, errors and
 * stats), declared here so that the internal pool modules and the public
 * module import them from one place: `WorkerPool` re-exports them as its own
 * (their documentation is here), and no internal module imports a public one.
 *
 * @internal
 */
import type { Duration, Effect, Scope } from "effect"
import type {
  AccountRemovedError,
  AcquireTimeoutError,
  PoolShutdownError,
  QueueFullError,
  UnknownAccountError
} from "../errors.ts"

/**
 * The pool's own ways for an acquire to fail: shutdown, timeout, a full
 * queue, and for an acquire naming an account, an unknown account or its
 * removal while waiting.
 *
 * @since 0.1.0
 * @category errors
 */
export type PoolError =
  | PoolShutdownError
  | AcquireTimeoutError
  | QueueFullError
  | UnknownAccountError
  | AccountRemovedError

/**
 * An account: a group of workers made alike (for a Codex pool, with one API
 * key), served only to callers that name it.
 *
 * @since 0.1.0
 * @category models
 */
export interface AccountOptions<W, E, R> {
  /** Makes one worker of this account, in the worker's own scope (like the pool's `acquire`). */
  readonly acquire: Effect.Effect<W, E, R | Scope.Scope>
  /** Most workers of this account at once (idle, leased or being created). Default: only `size` limits it. */
  readonly maxWorkers?: number | undefined
}

/**
 * Options of {@link make}.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options<W, E, R> {
  /** Makes one worker. It runs in the worker's own scope: its finalizers run when the worker is finalized. */
  readonly acquire: Effect.Effect<W, E, R | Scope.Scope>
  /** Most workers alive (idle, leased or being created) at once. An integer >= 1. */
  readonly size: number
  /**
   * How long a worker may stay idle before it is finalized. Default 5 minutes;
   * `Duration.infinity`: never. Must be > 0.
   */
  readonly idleTimeout?: Duration.Input | undefined
  /**
   * How long an acquire may wait in the queue before failing with
   * `AcquireTimeoutError`. Default (or `Duration.infinity`): no limit. Must be > 0.
   */
  readonly acquireTimeout?: Duration.Input | undefined
  /** Most waiters queued at once; one more fails at once with `QueueFullError`. Default: unbounded. */
  readonly maxQueue?: number | undefined
  /** Idle workers kept warm (made ahead of demand, never retired), within `size`. Default 0. */
  readonly minIdle?: number | undefined
  /**
   * How long shutdown waits for leased workers to come back before finalizing
   * them anyway. Default 30 seconds; `Duration.infinity`: wait for ever; zero:
   * finalize them at once.
   */
  readonly shutdownTimeout?: Duration.Input | undefined
  /**
   * Longest a lease may be held. When it runs out the worker is taken out of
   * service (finalized when the lease ends) and `onLeaseTimeout` runs.
   * Default (or `Duration.infinity`): no limit. Must be > 0.
   */
  readonly leaseTimeout?: Duration.Input | undefined
  /** Runs when a lease outlives `leaseTimeout` (its second argument), e.g. to kill a stuck worker's processes. */
  readonly onLeaseTimeout?: ((worker: W, leaseTimeout: Duration.Duration) => Effect.Effect<void>) | undefined
  /**
   * Names the pool in metrics (`pool` attribute) and logs. Default
   * "worker-pool". Pools may share a name: each one's series also carry a
   * `pool_id` of its own (`<name>#<n>`, `n` the lowest number not used by a
   * live pool of that name), so they never mix.
   */
  readonly name?: string | undefined
  /** The `provider` attribute of the metrics. Default "generic". */
  readonly provider?: string | undefined
  /**
   * Most workers of the default account (the one `acquire` makes) at once.
   * An integer >= 1; default: only `size` limits it.
   */
  readonly maxWorkers?: number | undefined
  /**
   * More accounts, by name (any non-empty string but "default", the
   * default account's): each makes its workers with its own `acquire` and
   * may have its own cap. `size` bounds the workers of all accounts together.
   */
  readonly accounts?: Readonly<Record<string, AccountOptions<W, E, R>>> | undefined
}

/**
 * Options of a single acquire. Bad ones (a `timeout` that is not a duration
 * > 0, an `account` or `prefer` that is not a string, an unknown option) are
 * a defect: a `PoolOptionsError` naming them, raised before anything is
 * queued or leased.
 *
 * @since 0.1.0
 * @category models
 */
export interface AcquireOptions {
  /** Overrides the pool's `acquireTimeout` for this acquire; `Duration.infinity` waits without limit. */
  readonly timeout?: Duration.Input | undefined
  /**
   * The account to get a worker of. Default: the default account ("default").
   * One the pool does not have fails at once with `UnknownAccountError`.
   */
  readonly account?: string | undefined
  /**
   * An affinity key (a thread id, say): when an idle worker of the account
   * last served a lease with this key, that worker is the one handed out.
   * Otherwise the acquire is served as usual; it never waits for a busy
   * worker and never goes ahead of a waiter. The worker remembers the key of
   * its latest lease only.
   */
  readonly prefer?: string | undefined
}

/**
 * A snapshot of the pool's counts.
 *
 * @since 0.1.0
 * @category models
 */
export interface Stats {
  /** The configured `size`. */
  readonly poolSize: number
  /** Workers alive and usable: `busy + idle`. */
  readonly workers: number
  /** Workers leased out. */
  readonly busy: number
  /** Workers waiting for a lease. */
  readonly idle: number
  /** Acquires waiting in the queue. */
  readonly queued: number
  /** Workers being created. */
  readonly creating: number
  /** Workers being finalized. */
  readonly finalizing: number
  /** Workers created since the pool started. */
  readonly created: number
  /** Workers finalized since the pool started. */
  readonly finalized: number
  /** Creates that failed since the pool started. */
  readonly createFailures: number
  /** True once shutdown has begun. */
  readonly closed: boolean
  /** The counts of each account, by name ("default" included). */
  readonly accounts: Readonly<Record<string, AccountStats>>
}

/**
 * The counts of one account.
 *
 * @since 0.1.0
 * @category models
 */
export interface AccountStats {
  /** Workers of the account alive and usable: `busy + idle`. */
  readonly workers: number
  /** Its workers leased out. */
  readonly busy: number
  /** Its workers waiting for a lease. */
  readonly idle: number
  /** Acquires for it waiting in the queue. */
  readonly queued: number
  /** Its workers being created. */
  readonly creating: number
  /** Its cap: its `maxWorkers`, or `size` when that is lower or it has none. */
  readonly maxWorkers: number
}

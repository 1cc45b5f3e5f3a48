/**
 * The accounts of a `WorkerPool`, beside those the core keeps: how each one
 * makes its workers, its metric series, and the removals still waiting for
 * their workers to be finalized.
 *
 * Guarantees: the core only creates workers for live accounts, and an
 * account's entry lives exactly as long as it does, so `acquireOf` always
 * finds the account it is asked for. A removal is settled (its deferred
 * done) once the account has no worker left in any state, not even one
 * being finalized. Adding or removing an account changes nothing when it
 * fails (an existing name, an unknown one).
 *
 * @internal
 */
import { type Context, Deferred, Effect, Exit, type Scope } from "effect"
import { AccountExistsError, PoolOptionsError, UnknownAccountError } from "../errors.ts"
import type { Account, PoolCore } from "./core.ts"
import { AccountMetricNames, type PoolAttributes, registerPulled } from "./metrics.ts"

/** What the pool keeps of each live account: how to make its workers and its metric series. */
interface AccountEntry<W, E, R> {
  readonly acquire: Effect.Effect<W, E, R | Scope.Scope>
  readonly removeMetrics: () => void
}

/** The accounts of one pool (see the module's header). */
export class PoolAccounts<W, E, R> {
  readonly core: PoolCore<W>
  /** The context the metric series are registered in (the pool's). */
  readonly context: Context.Context<never>
  readonly metricAttributes: PoolAttributes
  readonly entries = new Map<Account<W>, AccountEntry<W, E, R>>()
  /** Removed accounts whose workers are not all finalized yet, and who waits for that. */
  readonly removals = new Map<Account<W>, Deferred.Deferred<void>>()

  constructor(core: PoolCore<W>, context: Context.Context<never>, metricAttributes: PoolAttributes) {
    this.core = core
    this.context = context
    this.metricAttributes = metricAttributes
  }

  /** Keeps how `account` (already in the core) makes its workers, and registers its metric series. */
  register(account: Account<W>, acquire: Effect.Effect<W, E, R | Scope.Scope>): void {
    this.entries.set(account, {
      // The lines its workers write name the account (not the default one, to leave a plain pool's lines as they were).
      acquire: account === this.core.defaultAccount ? acquire : Effect.annotateLogs(acquire, "account", account.name),
      removeMetrics: registerPulled(this.context, { ...this.metricAttributes, account: account.name }, [
        { name: AccountMetricNames.queueLength, description: "Acquires waiting for a worker of the account", get: () => account.queue.length },
        { name: AccountMetricNames.busy, description: "Workers of the account leased out", get: () => account.leased },
        { name: AccountMetricNames.idle, description: "Workers of the account waiting for a lease", get: () => account.idle },
        { name: AccountMetricNames.creating, description: "Workers of the account being created", get: () => account.creating }
      ])
    })
  }

  /** How a live account makes its workers. */
  acquireOf(account: Account<W>): Effect.Effect<W, E, R | Scope.Scope> {
    return this.entries.get(account)!.acquire
  }

  /** Adds an account (validated by the caller), or returns `AccountExistsError` changing nothing. */
  add(name: string, acquire: Effect.Effect<W, unknown, any>, maxWorkers: number): AccountExistsError | undefined {
    if (!this.core.addAccount(name, maxWorkers)) return new AccountExistsError({ account: name })
    this.register(this.core.accounts.get(name)!, acquire as Effect.Effect<W, E, R | Scope.Scope>)
    return undefined
  }

  /**
   * Removes an account now, returning a deferred done once every worker of
   * it has been finalized; or `UnknownAccountError`. Throws
   * `PoolOptionsError` for the default account.
   */
  remove(name: string): Deferred.Deferred<void> | UnknownAccountError {
    const core = this.core
    const account = core.accounts.get(name)
    if (account === core.defaultAccount) {
      throw new PoolOptionsError({
        message: `Invalid removeAccount options: name "${name}": the default account cannot be removed ` +
          `(it is the pool's top-level options).`
      })
    }
    if (account === undefined) return new UnknownAccountError({ account: name })
    const done = Deferred.makeUnsafe<void>()
    this.removals.set(account, done)
    this.entries.get(account)!.removeMetrics()
    this.entries.delete(account)
    core.removeAccount(name)
    this.settleRemovals()
    return done
  }

  /** Completes the removals whose accounts have no worker left. */
  settleRemovals(): void {
    for (const [account, done] of this.removals) {
      if (account.total !== 0) continue
      let left = false
      for (const slot of this.core.slots.values()) {
        if (slot.account === account) {
          left = true
          break
        }
      }
      if (!left) {
        this.removals.delete(account)
        Deferred.doneUnsafe(done, Exit.void)
      }
    }
  }

  /** Removes every account's metric series (the pool is gone). */
  close(): void {
    for (const entry of this.entries.values()) entry.removeMetrics()
    this.entries.clear()
  }
}

/**
 * A pool of `codex app-server` workers as an Effect service: the queued
 * `WorkerPool` composed with `CodexWorker`.
 *
 * What it adds to both:
 * - a worker whose process exits or whose channel breaks is taken out of
 *   service at once (an idle one is finalized, a leased one when released)
 *   and replaced on demand;
 * - a lease held longer than `leaseTimeout` (default 5 minutes) gets its
 *   worker's tree killed and its pending requests failed with
 *   `LeaseTimeoutError`;
 * - metrics carry `provider: "codex"`; gauges report the live processes of
 *   all worker trees and their resident memory, and `stats` includes both;
 * - an opt-in watchdog process (`watchdog: true`, Linux) that kills every
 *   worker tree if the host is SIGKILLed;
 * - accounts (`accounts`, `addAccount`): groups of workers started with their
 *   own environment (an API key), `codexHome` or `args` on top of the
 *   top-level options, served only to callers that name them, under the one
 *   `poolSize` budget of processes (see `WorkerPool` for the fairness
 *   policy). `env` values may be `Redacted`: they are revealed only to the
 *   spawn, and no log line, error, metric or stats names anything of an
 *   account but its name;
 * - `layerConfig`: the options read from `Config`s, a bad value failing the
 *   layer with a `ConfigError` (options from code stay a defect);
 * - rate limits (`rateLimits`, per account `accounts[name].rateLimits`,
 *   `workspaceLimits`, `rateLimitOptions`; see `RateLimits`): a call waits
 *   for admission under its account's requests and tokens per minute before
 *   it takes a worker (FIFO per account, holding no worker, bounded by its
 *   acquire timeout: `RateLimitedError` at once when the announced wait is
 *   longer), its tokens are charged from the lease's `thread/tokenUsage/updated`
 *   notifications and settled when the lease ends, an HTTP 429 `error`
 *   notification cools the account down, and `usage(workspace)` reports a
 *   workspace's figures. The state is on the `RateLimits.RateLimitsStore` in
 *   context (`RateLimits.layerStoreRedisUrl` to share it between instances),
 *   in memory when there is none. A pool without any of these options has no
 *   admission at all.
 *
 * Times are `Duration.Input`s (`"30 seconds"`, `Duration.minutes(5)`, or a
 * number of milliseconds). A limit of time is > 0, with `Duration.infinity`
 * for no limit; zero is refused (it meant "no limit" in 0.1, and still does in
 * the promise facade's `...Ms` options). `shutdownTimeout` and `killGrace`
 * may be zero: no wait, no grace.
 *
 * Limits: see `CodexWorker` (descendant tracking by `/proc` scans) and
 * `WorkerPool` (a replacement may start while its predecessor is still being
 * killed). A key is in its worker's environment, which processes of the same
 * OS user can read (`/proc/<pid>/environ`). Accounts without a `codexHome`
 * of their own share the default one, and with it the threads codex keeps
 * there: give each account its own when they must not see each other's.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { CodexWorkerPool } from "codex-worker-pool"
 * import { layerCodexWorkerPool } from "codex-worker-pool/node"
 *
 * const program = Effect.gen(function*() {
 *   const pool = yield* CodexWorkerPool.CodexWorkerPool
 *   return yield* pool.use((worker) => worker.request("thread/start", { ephemeral: true }))
 * }).pipe(Effect.provide(layerCodexWorkerPool({ poolSize: 2 })))
 * ```
 *
 * @since 0.1.0
 */
import { Config, Context, Deferred, Effect, Layer } from "effect"
import type { ChildProcessSpawner } from "effect/process/ChildProcessSpawner"
import type * as Scope from "effect/Scope"
import type * as CodexWorker from "./CodexWorker.ts"
import {
  type AccountExistsError,
  PoolOptionsError,
  UnknownAccountError
} from "./errors.ts"
import { admitted, checkConfig, makeParts, makeRateLimits, validate } from "./internal/codexPool.ts"
import type { AccountOptions, AcquireError, AcquireOptions, Options, Stats } from "./internal/codexPoolTypes.ts"
import type * as RateLimits from "./RateLimits.ts"

export type {
  AccountOptions,
  AccountStats,
  AcquireError,
  AcquireOptions,
  Options,
  RateLimitOptions,
  Stats
} from "./internal/codexPoolTypes.ts"

/**
 * The service: a queued pool of Codex workers.
 *
 * @since 0.1.0
 * @category models
 */
export interface Service {
  /**
   * Leases a worker for the current scope, waiting FIFO when all are busy
   * (with rate limits, first for admission).
   */
  readonly get: Effect.Effect<CodexWorker.CodexWorker, AcquireError, Scope.Scope>
  /** `get` with per-acquire options. */
  readonly getWith: (options: AcquireOptions) => Effect.Effect<CodexWorker.CodexWorker, AcquireError, Scope.Scope>
  /** Leases a worker for the duration of `f`. */
  readonly use: <A, E, R>(
    f: (worker: CodexWorker.CodexWorker) => Effect.Effect<A, E, R>,
    options?: AcquireOptions
  ) => Effect.Effect<A, E | AcquireError, R>
  /**
   * A workspace's usage this minute and this UTC day (requests and tokens
   * charged by the rate limits). Fails with `PoolOptionsError` on a pool
   * without rate-limit options.
   */
  readonly usage: (workspace: string) => Effect.Effect<RateLimits.WorkspaceUsage, PoolOptionsError>
  /** Takes a worker out of service (finalized now if idle, when released if leased). */
  readonly invalidate: (worker: CodexWorker.CodexWorker) => Effect.Effect<void>
  /** The counts now, including processes and resident memory. */
  readonly stats: Effect.Effect<Stats>
  /**
   * Adds an account at run time. Fails with `AccountExistsError` (changing
   * nothing) when the pool has one of that name; bad options are a defect
   * (`PoolOptionsError` naming the option, never showing an `env` value).
   */
  readonly addAccount: (name: string, account: AccountOptions) => Effect.Effect<void, AccountExistsError>
  /**
   * Removes an account at once (its waiters fail with `AccountRemovedError`,
   * its idle workers' trees are killed now, its busy ones' when released),
   * then waits until every worker tree of it is gone. Fails with
   * `UnknownAccountError` when there is no such account.
   */
  readonly removeAccount: (name: string) => Effect.Effect<void, UnknownAccountError>
  /** Shuts down and waits until every worker tree is gone (what closing the scope does). */
  readonly shutdown: Effect.Effect<void>
}

/**
 * The Codex worker pool service key.
 *
 * @since 0.1.0
 * @category services
 */
export class CodexWorkerPool extends Context.Service<CodexWorkerPool, Service>()("codex-worker-pool/CodexWorkerPool") {}

/**
 * Makes a Codex worker pool in the current scope; closing the scope shuts it
 * down and kills every worker tree. Bad options are a defect naming the option.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options = {}): Effect.Effect<Service, never, ChildProcessSpawner | Scope.Scope> =>
  Effect.suspend(() => {
    const settings = validate(options)
    if (settings.rateLimits === undefined) return Effect.map(makeParts(settings), serviceOf)
    const rateLimitOptions = settings.rateLimits
    return Effect.gen(function*() {
      // Made first, so closed after the pool: waiting calls fail with PoolShutdownError then.
      const rateLimits = yield* makeRateLimits(rateLimitOptions)
      const parts = yield* makeParts(settings, rateLimits)
      return {
        ...serviceOf(parts),
        ...admitted(parts.pool, rateLimits, settings.acquireTimeoutMs),
        // After the background charges of leases that ended, so that they show.
        usage: (workspace: string) => Effect.andThen(rateLimits.flush, rateLimits.usage(workspace))
      }
    })
  })

const noRateLimits = (workspace: string) =>
  Effect.fail(
    new PoolOptionsError({
      message:
        `usage(${JSON.stringify(workspace)}): this pool has no rate limits; give it \`rateLimits\`, \`workspaceLimits\` or \`rateLimitOptions\` to count usage.`
    })
  )

const serviceOf = (
  { addAccount, pool, removeAccount, stats }: Effect.Success<ReturnType<typeof makeParts>>
): Service => ({
    get: pool.get,
    getWith: pool.getWith,
    use: pool.use,
    usage: noRateLimits,
    invalidate: pool.invalidate,
    stats,
    addAccount: (name, account) =>
      Effect.suspend(() => {
        const exists = addAccount(name, account)
        return exists === undefined ? Effect.void : Effect.fail(exists)
      }),
    removeAccount: (name) =>
      Effect.suspend(() => {
        const done = removeAccount(name)
        return done instanceof UnknownAccountError ? Effect.fail(done) : Deferred.await(done)
      }),
    shutdown: pool.shutdown
  })

/**
 * The service as a scoped layer, given a `ChildProcessSpawner`. On Node,
 * `layerCodexWorkerPool` from `codex-worker-pool/node` is this with Node's
 * spawner.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options = {}): Layer.Layer<CodexWorkerPool, never, ChildProcessSpawner> =>
  Layer.effect(CodexWorkerPool, make(options))

/**
 * {@link layer} with its options read from `Config`s, through the current
 * `ConfigProvider` (the environment by default): a `Config` per option
 * (`Config.Wrap`), or one `Config` of the whole options object.
 *
 * A value that cannot be read, or that is read but is not a valid option
 * (`poolSize: 0`, a zero or negative duration, `minIdle` above `poolSize`),
 * fails the layer with a `ConfigError` naming it, in the error channel, not
 * as a defect. Durations read with `Config.Duration` take strings such as
 * `"30 seconds"` or `"Infinity"`. `maxWorkers` and `accounts` are read like
 * the rest (an account's key with `Config.Redacted`, so that it stays
 * redacted; a `ConfigError` never shows an `env` value). On Node,
 * `layerCodexWorkerPoolConfig` from `codex-worker-pool/node` is this with
 * Node's spawner.
 *
 * @example
 * ```ts
 * import { Config } from "effect"
 * import { CodexWorkerPool } from "codex-worker-pool"
 *
 * const PoolLive = CodexWorkerPool.layerConfig({
 *   poolSize: Config.Int("CODEX_POOL_SIZE").pipe(Config.withDefault(2)),
 *   leaseTimeout: Config.Duration("CODEX_LEASE_TIMEOUT").pipe(Config.withDefault("10 minutes")),
 *   codexHome: Config.String("CODEX_HOME").pipe(Config.withDefault(undefined)),
 *   accounts: {
 *     acme: { env: { OPENAI_API_KEY: Config.Redacted("ACME_OPENAI_API_KEY") }, maxWorkers: Config.Int("ACME_MAX_WORKERS") }
 *   }
 * })
 * ```
 *
 * @since 0.2.0
 * @category layers
 */
export const layerConfig = (
  config: Config.Wrap<Options>
): Layer.Layer<CodexWorkerPool, Config.ConfigError, ChildProcessSpawner> =>
  Layer.effect(
    CodexWorkerPool,
    Config.unwrap(config).pipe(
      Effect.flatMap(checkConfig),
      Effect.flatMap(make)
    )
  )

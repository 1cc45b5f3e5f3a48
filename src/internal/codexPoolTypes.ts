/**
 * The models of a Codex pool's options and stats (`CodexWorkerPool`'s, and
 * the promise facade's options), declared here so that the pool's assembly
 * (`codexPool.ts`) and the public modules import them from one place: the
 * public modules re-export them as their own (their documentation is here),
 * and no internal module imports a public one.
 *
 * @internal
 */
import type { Duration } from "effect"
import type * as Redacted from "effect/Redacted"
import type * as CodexWorker from "../CodexWorker.ts"
import type { RateLimitedError, WorkerSpawnError, WorkspaceLimitError } from "../errors.ts"
import type * as RateLimits from "../RateLimits.ts"
import type { PoolLogger } from "./hostLogger.ts"
import type * as WorkerPool from "./poolTypes.ts"

/**
 * Options of a Codex worker pool. Times are `Duration.Input`s; a limit of
 * time must be > 0, `Duration.infinity` meaning no limit. Bad options are a
 * defect (`PoolOptionsError` naming the option), or a `ConfigError` when read
 * by `layerConfig`.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options extends CodexWorker.ProcessOptions {
  /** Most workers (codex processes) at once. Default 1. */
  readonly poolSize?: number | undefined
  /** Idle time before a worker is retired. Default 5 minutes; `Duration.infinity`: never. */
  readonly idleTimeout?: Duration.Input | undefined
  /** Longest wait in the queue before `AcquireTimeoutError`. Default (or `Duration.infinity`): no limit. */
  readonly acquireTimeout?: Duration.Input | undefined
  /** Most queued acquires; one more fails at once with `QueueFullError`. Default: unbounded. */
  readonly maxQueue?: number | undefined
  /** Workers kept warm (spawned and initialized ahead of demand). Default 0. */
  readonly minIdle?: number | undefined
  /**
   * Longest lease; then the worker's tree is killed (`LeaseTimeoutError`).
   * Default 5 minutes; `Duration.infinity`: no limit.
   */
  readonly leaseTimeout?: Duration.Input | undefined
  /**
   * How long shutdown waits for leased workers before killing them anyway.
   * Default 30 seconds; `Duration.infinity`: wait for ever; zero: kill them at once.
   */
  readonly shutdownTimeout?: Duration.Input | undefined
  /** The `pool` attribute of the metrics. Default "codex". */
  readonly name?: string | undefined
  /** Start a watchdog process that kills every worker tree if the host is SIGKILLed (Linux). Default false. */
  readonly watchdog?: boolean | undefined
  /** Most workers of the default account at once. An integer >= 1; default: only `poolSize` limits it. */
  readonly maxWorkers?: number | undefined
  /**
   * More accounts, by name (any non-empty string but "default"): each
   * starts its workers with the top-level options overlaid with its own.
   * `poolSize` bounds the processes of all accounts together.
   */
  readonly accounts?: Readonly<Record<string, AccountOptions>> | undefined
  /**
   * Requests and tokens per minute of the default account's API key: a call
   * that would go over one waits for admission before it takes a worker.
   * Default: none. Any rate-limit option (this, an account's `rateLimits`,
   * `workspaceLimits`, `rateLimitOptions`) turns admission on.
   */
  readonly rateLimits?: RateLimits.Limits | undefined
  /**
   * Limits per workspace (a call's `workspace`), per minute and per UTC day:
   * a record, or a function returning them (`undefined`: none). A workspace
   * at a limit is refused at once with `WorkspaceLimitError`.
   */
  readonly workspaceLimits?: RateLimits.Options["workspaceLimits"]
  /**
   * How admission works beside the limits: `defaultEstimatedTokens` (8000),
   * `defaultCooldownMs` (2000), `workspaceWarnAt` (0.8), `maxWorkspaceSeries`
   * (100), `instances` (1), `storeTimeoutMs` (500), `probeIntervalMs` (1000);
   * see `RateLimits.Options`. `{}` turns admission on with no limit yet (for
   * accounts added later with limits).
   */
  readonly rateLimitOptions?: RateLimitOptions | undefined
}

/**
 * The settings of a pool's rate-limit admission beside the limits (see
 * `RateLimits.Options`).
 *
 * @since 0.2.0
 * @category models
 */
export type RateLimitOptions = Pick<
  RateLimits.Options,
  | "defaultEstimatedTokens"
  | "defaultCooldownMs"
  | "workspaceWarnAt"
  | "maxWorkspaceSeries"
  | "instances"
  | "storeTimeoutMs"
  | "probeIntervalMs"
>

/**
 * Options of one acquire of a Codex pool: `WorkerPool.AcquireOptions` and
 * what its rate limits read. Bad ones are a defect (`PoolOptionsError`).
 *
 * @since 0.2.0
 * @category models
 */
export interface AcquireOptions extends WorkerPool.AcquireOptions {
  /** The workspace the call is charged to (usage and `workspaceLimits`). Default: none. */
  readonly workspace?: string | undefined
  /** Tokens reserved at admission (a finite number >= 0). Default: `rateLimitOptions.defaultEstimatedTokens`. */
  readonly estimatedTokens?: number | undefined
}

/**
 * How a Codex pool's acquire can fail: the pool's errors, and its rate
 * limits' (only with rate-limit options).
 *
 * @since 0.2.0
 * @category models
 */
export type AcquireError = WorkerSpawnError | WorkerPool.PoolError | RateLimitedError | WorkspaceLimitError

/**
 * An account of a Codex pool: how its workers differ from the default
 * account's (the top-level options), and its cap.
 *
 * @example
 * ```ts
 * import { Redacted } from "effect"
 *
 * const accounts = {
 *   acme: {
 *     env: { OPENAI_API_KEY: Redacted.make(process.env.ACME_OPENAI_API_KEY ?? "") },
 *     codexHome: "/var/lib/app/codex/acme",
 *     maxWorkers: 2
 *   }
 * }
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface AccountOptions {
  /**
   * Environment variables set on top of the top-level `env` (`undefined`
   * removes one), e.g. the account's API key: `OPENAI_API_KEY`,
   * `CODEX_API_KEY`, or the `env_key` of the configured model provider.
   * Pass secrets as `Redacted` values.
   */
  readonly env?: Readonly<Record<string, string | Redacted.Redacted<string> | undefined>> | undefined
  /** Its own `CODEX_HOME` (config, `auth.json`, threads). Default: the top-level `codexHome`. */
  readonly codexHome?: string | undefined
  /** Its own arguments. Default: the top-level `args`. */
  readonly args?: ReadonlyArray<string> | undefined
  /** Most workers of this account at once. An integer >= 1; default: only `poolSize` limits it. */
  readonly maxWorkers?: number | undefined
  /**
   * Requests and tokens per minute of this account's API key. Default: none.
   * Adding an account with limits needs a pool made with rate-limit options.
   */
  readonly rateLimits?: RateLimits.Limits | undefined
}

/**
 * The counts of a Codex pool.
 *
 * @since 0.1.0
 * @category models
 */
export interface Stats extends WorkerPool.Stats {
  /** Live processes in all worker trees (codex and everything it started). */
  readonly processes: number
  /** Resident memory of those processes, in bytes. */
  readonly residentBytes: number
  /** The counts of each account, by name ("default" included). */
  readonly accounts: Readonly<Record<string, AccountStats>>
}

/**
 * The counts of one account of a Codex pool.
 *
 * @since 0.1.0
 * @category models
 */
export interface AccountStats extends WorkerPool.AccountStats {
  /** Live processes in the account's worker trees. */
  readonly processes: number
  /** Resident memory of those processes, in bytes. */
  readonly residentBytes: number
}

/**
 * Options of `createCodexWorkerPool`: those of `CodexWorkerPool`, with times
 * as numbers of milliseconds under `...Ms` names (where 0 means no limit), and
 * how the pool logs. Bad options throw a `PoolOptionsError` naming the option.
 *
 * @since 0.1.0
 * @category models
 */
export interface CodexWorkerPoolOptions extends
  Omit<
    Options,
    | "idleTimeout"
    | "acquireTimeout"
    | "leaseTimeout"
    | "shutdownTimeout"
    | "spawnTimeout"
    | "killGrace"
    | "processScanInterval"
  >
{
  /** Idle time before a worker is retired. Default 300000 (5 minutes); 0 disables. */
  readonly idleTimeoutMs?: number | undefined
  /** Longest wait in the queue before `AcquireTimeoutError`. Default: no limit (0). */
  readonly acquireTimeoutMs?: number | undefined
  /** Longest lease; then the worker's tree is killed (`LeaseTimeoutError`). Default 300000; 0 disables. */
  readonly leaseTimeoutMs?: number | undefined
  /** How long shutdown waits for leased workers before killing them anyway. Default 30000; 0 waits for ever. */
  readonly shutdownTimeoutMs?: number | undefined
  /** Longest time from spawn to the answer to `initialize`. Default 30000; must be > 0. */
  readonly spawnTimeoutMs?: number | undefined
  /** Grace between SIGTERM and SIGKILL when a worker's tree is killed. Default 2000; 0: SIGKILL at once. */
  readonly killGraceMs?: number | undefined
  /** How often the worker's descendants are looked up in `/proc`. Default 1000; must be > 0. */
  readonly processScanIntervalMs?: number | undefined
  /**
   * Log at debug level too: queueing and hand-offs (`queued`, `waitedMs`),
   * every line codex writes to stderr (`pid`), JSON-RPC details. Default
   * false: debug lines are not even produced.
   */
  readonly debug?: boolean | undefined
  /**
   * Where every line the pool writes goes: the above with `debug`, and
   * always warnings (lease timeouts, JSON-RPC lines that are not JSON,
   * listeners that threw, kill failures...). Default: Effect's default logger
   * (the console).
   */
  readonly logger?: PoolLogger | undefined
  /**
   * Where the rate-limit state lives when several instances share the same
   * API keys: a Redis server (`{ redisUrl, prefix?, connectTimeoutMs? }`).
   * Default: this process's memory. While Redis is unreachable each instance
   * admits at `limit / rateLimitOptions.instances`. Setting it turns
   * admission on (the 429 cooldown and usage are then shared).
   */
  readonly rateLimitStore?: RateLimits.StoreOptions | undefined
}

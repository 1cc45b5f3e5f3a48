/**
 * The Effect metrics of rate-limit admission. Like the pool's own metrics
 * (`metrics.ts`), every series is a registered one read from plain counters
 * when a snapshot or exporter asks, so recording costs a number increment;
 * series are registered on first use and removed when the admission service
 * closes.
 *
 * Series (every one carries `pool`; `account` is an operator-named key, so its
 * cardinality is the number of accounts):
 * - `worker_pool_admission_wait_ms` {account}: histogram of how long admitted
 *   calls waited for their turn (0 when they did not wait);
 * - `worker_pool_admission_waiting` {account}: calls waiting for admission now;
 * - `worker_pool_admission_throttled_total` {account, limit}: calls that had
 *   to wait, by the limit that made them wait (`rpm`, `tpm`, `cooldown`);
 * - `worker_pool_admission_rejected_total` {account, reason}: calls refused
 *   (`rpm`, `tpm`, `cooldown`: the announced wait exceeded the budget;
 *   `workspace`: a workspace limit);
 * - `worker_pool_rate_limit_cooldowns_total` {account}: HTTP 429s reported;
 * - `worker_pool_rate_limit_store_degraded`: 1 while the shared store is
 *   unreachable and the local fallback limiter is in use, else 0;
 * - `worker_pool_rate_limit_store_degradations_total`, and
 *   `worker_pool_rate_limit_store_errors_total` (failed or timed-out calls);
 * - per workspace {workspace}: `worker_pool_workspace_requests_total`,
 *   `worker_pool_workspace_tokens_total` {kind: input, cached_input, output,
 *   reasoning}, `worker_pool_workspace_limit_warnings_total` {limit},
 *   `worker_pool_workspace_rejected_total` {limit}.
 *
 * Cardinality of `workspace`: workspace names may come from end users, so
 * they are bounded: the workspaces named in a static `workspaceLimits` record
 * and then the first `maxWorkspaceSeries` other names seen get a series of
 * their own; every later name is counted under `workspace="_other"`. First
 * come is deterministic and cheap (no sorting, no series churn); the exact
 * figures of every workspace stay readable through `usage(workspace)`.
 *
 * These are this instance's counts; sum them across instances in Prometheus.
 *
 * @internal
 */
import { type Context, Metric } from "effect"

/** Names of the series, as exporters see them. */
export const AdmissionMetricNames = {
  waitMs: "worker_pool_admission_wait_ms",
  waiting: "worker_pool_admission_waiting",
  throttled: "worker_pool_admission_throttled_total",
  rejected: "worker_pool_admission_rejected_total",
  cooldowns: "worker_pool_rate_limit_cooldowns_total",
  degraded: "worker_pool_rate_limit_store_degraded",
  degradations: "worker_pool_rate_limit_store_degradations_total",
  storeErrors: "worker_pool_rate_limit_store_errors_total",
  workspaceRequests: "worker_pool_workspace_requests_total",
  workspaceTokens: "worker_pool_workspace_tokens_total",
  workspaceWarnings: "worker_pool_workspace_limit_warnings_total",
  workspaceRejected: "worker_pool_workspace_rejected_total"
} as const

/** The series a workspace beyond the cardinality bound is counted under. */
export const OTHER_WORKSPACE = "_other"

const waitBoundaries = [0, 1, 5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000, 300_000]

/** A histogram with Effect's semantics (cumulative buckets, `value <= boundary`). */
export class Histogram {
  readonly #counts: Uint32Array
  #count = 0
  #sum = 0
  #min = Number.MAX_VALUE
  #max = -Number.MAX_VALUE
  readonly boundaries: ReadonlyArray<number>
  constructor(boundaries: ReadonlyArray<number>) {
    this.boundaries = boundaries
    this.#counts = new Uint32Array(boundaries.length + 1)
  }
  record(value: number): void {
    const boundaries = this.boundaries
    let i = 0
    while (i < boundaries.length && value > boundaries[i]!) i++
    this.#counts[i]!++
    this.#count++
    this.#sum += value
    if (value < this.#min) this.#min = value
    if (value > this.#max) this.#max = value
  }
  get count(): number {
    return this.#count
  }
  state(): Metric.HistogramState {
    let cumulated = 0
    const buckets = this.boundaries.map((boundary, i): [number, number] => [boundary, cumulated += this.#counts[i]!])
    return { buckets, count: this.#count, min: this.#min, max: this.#max, sum: this.#sum }
  }
}

/** A monotonic count read on demand. */
export interface Count {
  value: number
}

/** Per-account series, created on first use. */
export interface AccountSeries {
  readonly wait: Histogram
  readonly waiting: Count
  readonly throttled: Readonly<Record<"rpm" | "tpm" | "cooldown", Count>>
  readonly rejected: Readonly<Record<"rpm" | "tpm" | "cooldown" | "workspace", Count>>
  readonly cooldowns: Count
}

/** Per-workspace series, created on first use (bounded, see the header). */
export interface WorkspaceSeries {
  readonly requests: Count
  readonly tokens: Readonly<Record<"input" | "cached_input" | "output" | "reasoning", Count>>
  readonly warnings: (limit: string) => Count
  readonly rejected: (limit: string) => Count
}

/** The registry of admission series of one admission service. */
export class AdmissionMetrics {
  readonly #context: Context.Context<never>
  readonly #pool: string
  readonly #registrations: Array<{ remove(): void }> = []
  readonly #accounts = new Map<string, AccountSeries>()
  readonly #workspaces = new Map<string, WorkspaceSeries>()
  readonly #maxWorkspaceSeries: number
  #dynamicWorkspaces = 0
  readonly degraded: Count = { value: 0 }
  readonly degradations: Count = { value: 0 }
  readonly storeErrors: Count = { value: 0 }

  constructor(
    context: Context.Context<never>,
    pool: string,
    maxWorkspaceSeries: number,
    configuredWorkspaces: ReadonlyArray<string>
  ) {
    this.#context = context
    this.#pool = pool
    this.#maxWorkspaceSeries = maxWorkspaceSeries
    const attributes = { pool }
    this.#gauge(AdmissionMetricNames.degraded, "1 while the shared rate-limit store is unreachable", attributes, this.degraded)
    this.#counter(AdmissionMetricNames.degradations, "Times the shared rate-limit store became unreachable", attributes, this.degradations)
    this.#counter(AdmissionMetricNames.storeErrors, "Rate-limit store calls that failed or timed out", attributes, this.storeErrors)
    for (const workspace of configuredWorkspaces) this.#makeWorkspace(workspace)
  }

  #counter(name: string, description: string, attributes: Record<string, string>, count: Count): void {
    this.#registrations.push(Metric.registerUnsafe(
      Metric.counter(name, { description, attributes, incremental: true }),
      this.#context,
      { get: () => ({ count: count.value, incremental: true }), update: () => {}, modify: () => {} }
    ))
  }

  #gauge(name: string, description: string, attributes: Record<string, string>, count: Count): void {
    this.#registrations.push(Metric.registerUnsafe(
      Metric.gauge(name, { description, attributes }),
      this.#context,
      { get: () => ({ value: count.value }), update: () => {}, modify: () => {} }
    ))
  }

  /** The series of `account`. */
  account(account: string): AccountSeries {
    let series = this.#accounts.get(account)
    if (series !== undefined) return series
    const attributes = { pool: this.#pool, account }
    const wait = new Histogram(waitBoundaries)
    this.#registrations.push(Metric.registerUnsafe(
      Metric.histogram(AdmissionMetricNames.waitMs, {
        description: "Milliseconds an admitted call waited for its turn under the rate limits",
        boundaries: waitBoundaries,
        attributes
      }),
      this.#context,
      { get: () => wait.state(), update: () => {}, modify: () => {} }
    ))
    const waiting: Count = { value: 0 }
    this.#gauge(AdmissionMetricNames.waiting, "Calls waiting for rate-limit admission", attributes, waiting)
    const throttled = { rpm: { value: 0 }, tpm: { value: 0 }, cooldown: { value: 0 } }
    for (const [limit, count] of Object.entries(throttled)) {
      this.#counter(AdmissionMetricNames.throttled, "Calls that waited for rate-limit admission", { ...attributes, limit }, count)
    }
    const rejected = { rpm: { value: 0 }, tpm: { value: 0 }, cooldown: { value: 0 }, workspace: { value: 0 } }
    for (const [reason, count] of Object.entries(rejected)) {
      this.#counter(AdmissionMetricNames.rejected, "Calls refused by rate-limit admission", { ...attributes, reason }, count)
    }
    const cooldowns: Count = { value: 0 }
    this.#counter(AdmissionMetricNames.cooldowns, "HTTP 429 answers reported for the account", attributes, cooldowns)
    series = { wait, waiting, throttled, rejected, cooldowns }
    this.#accounts.set(account, series)
    return series
  }

  /** The series `workspace` is counted under (its own, or `_other` past the bound). */
  workspace(workspace: string): WorkspaceSeries {
    const series = this.#workspaces.get(workspace)
    if (series !== undefined) return series
    if (this.#dynamicWorkspaces >= this.#maxWorkspaceSeries) {
      return this.#workspaces.get(OTHER_WORKSPACE) ?? this.#makeWorkspace(OTHER_WORKSPACE)
    }
    this.#dynamicWorkspaces++
    return this.#makeWorkspace(workspace)
  }

  #makeWorkspace(workspace: string): WorkspaceSeries {
    const attributes = { pool: this.#pool, workspace }
    const requests: Count = { value: 0 }
    this.#counter(AdmissionMetricNames.workspaceRequests, "Model requests made for the workspace", attributes, requests)
    const tokens = { input: { value: 0 }, cached_input: { value: 0 }, output: { value: 0 }, reasoning: { value: 0 } }
    for (const [kind, count] of Object.entries(tokens)) {
      this.#counter(AdmissionMetricNames.workspaceTokens, "Tokens used by the workspace", { ...attributes, kind }, count)
    }
    const lazy = (name: string, description: string) => {
      const counts = new Map<string, Count>()
      return (limit: string): Count => {
        let count = counts.get(limit)
        if (count === undefined) {
          count = { value: 0 }
          counts.set(limit, count)
          this.#counter(name, description, { ...attributes, limit }, count)
        }
        return count
      }
    }
    const series: WorkspaceSeries = {
      requests,
      tokens,
      warnings: lazy(AdmissionMetricNames.workspaceWarnings, "Times the workspace crossed the warning share of a limit"),
      rejected: lazy(AdmissionMetricNames.workspaceRejected, "Calls refused because the workspace was at a limit")
    }
    this.#workspaces.set(workspace, series)
    return series
  }

  /** Removes every series of this service. */
  remove(): void {
    for (const r of this.#registrations) r.remove()
    this.#registrations.length = 0
  }
}

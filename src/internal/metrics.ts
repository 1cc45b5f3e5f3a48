/**
 * The pool's Effect metrics. Every series is a registered one that reads the
 * pool's own counts when a snapshot or exporter asks, so keeping them costs
 * nothing on the acquire / release path but a bucket increment per wait.
 *
 * Every series carries the attributes `pool` (the pool's name), `pool_id`
 * (which pool of that name: `<name>#<n>`) and `provider`; the per-account
 * series (`worker_pool_account_*`, one set per account while it exists) add
 * `account`, the account's name. Two pools with the
 * same name (one per tenant, say) thus never share a series, and closing one
 * removes its own series only. `n` is the lowest number not taken by a live
 * pool of that name in the same registry, so it is reused once its pool has
 * closed: the values of `pool_id` an exporter ever sees are bounded by the
 * most pools of one name alive at once, not by how many were ever made. A
 * counter of a reused `pool_id` restarts from 0, which exporters treat as a
 * counter reset.
 *
 * @internal
 */
import { Context, Metric } from "effect"

/** Names of the series, as exporters see them. */
export const MetricNames = {
  queueLength: "worker_pool_queue_length",
  waitMs: "worker_pool_wait_ms",
  busy: "worker_pool_workers_busy",
  idle: "worker_pool_workers_idle",
  creating: "worker_pool_workers_creating",
  created: "worker_pool_workers_created_total",
  finalized: "worker_pool_workers_finalized_total",
  createFailures: "worker_pool_worker_create_failures_total"
} as const

/**
 * Names of the per-account series: the same counts as the pool's, for one
 * account (attribute `account`, besides the pool's). Registered while the
 * account exists, so their number is bounded by the operator's accounts.
 */
export const AccountMetricNames = {
  queueLength: "worker_pool_account_queue_length",
  busy: "worker_pool_account_workers_busy",
  idle: "worker_pool_account_workers_idle",
  creating: "worker_pool_account_workers_creating"
} as const

const waitBoundaries = [1, 5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000, 300_000]

/** A gauge read from `get` on demand. */
export interface PulledGauge {
  readonly name: string
  readonly description: string
  readonly get: () => number
}

/** A monotonic counter read from `get` on demand. */
export type PulledCounter = PulledGauge

/** The attributes of every series of one pool. */
export type PoolAttributes = {
  readonly pool: string
  readonly pool_id: string
  readonly provider: string
}

/** Numbers of the pools alive, by registry and pool name. */
const liveNumbers = new WeakMap<Metric.MetricRegistry, Map<string, Set<number>>>()

/** Takes the lowest number >= 1 no live pool named `name` has in `registry`; returns it and its release. */
const takeNumber = (registry: Metric.MetricRegistry, name: string): { readonly n: number; readonly free: () => void } => {
  let byName = liveNumbers.get(registry)
  if (byName === undefined) liveNumbers.set(registry, byName = new Map())
  let taken = byName.get(name)
  if (taken === undefined) byName.set(name, taken = new Set())
  let n = 1
  while (taken.has(n)) n++
  taken.add(n)
  const numbers = taken
  let freed = false
  return {
    n,
    free: () => {
      if (freed) return
      freed = true
      numbers.delete(n)
      if (numbers.size === 0 && byName.get(name) === numbers) byName.delete(name)
    }
  }
}

/**
 * Registers gauges and counters read on demand, with `attributes`, in the
 * registry of `context`. Returns a function that removes them again.
 */
export const registerPulled = (
  context: Context.Context<never>,
  attributes: Readonly<Record<string, string>>,
  gauges: ReadonlyArray<PulledGauge>,
  counters: ReadonlyArray<PulledCounter> = []
): () => void => {
  const registrations: Array<{ remove(): void }> = []
  for (const g of gauges) {
    const metric = Metric.gauge(g.name, { description: g.description, attributes })
    registrations.push(Metric.registerUnsafe(metric, context, {
      get: () => ({ value: g.get() }),
      update: () => {},
      modify: () => {}
    }))
  }
  for (const c of counters) {
    const metric = Metric.counter(c.name, { description: c.description, attributes, incremental: true })
    registrations.push(Metric.registerUnsafe(metric, context, {
      get: () => ({ count: c.get(), incremental: true }),
      update: () => {},
      modify: () => {}
    }))
  }
  return () => {
    for (const r of registrations) r.remove()
  }
}

/**
 * Registers the series of a pool named `name` in the registry of `context`,
 * under a `pool_id` of its own. Returns the attributes (for series the caller
 * adds), the wait-time recorder, and a function that removes every series and
 * frees the `pool_id`.
 */
export const registerPoolMetrics = (
  context: Context.Context<never>,
  identity: { readonly name: string; readonly provider: string },
  gauges: ReadonlyArray<PulledGauge>,
  counters: ReadonlyArray<PulledCounter>
): {
  readonly attributes: PoolAttributes
  readonly recordWait: (ms: number) => void
  readonly remove: () => void
} => {
  const number = takeNumber(Context.get(context, Metric.MetricRegistry), identity.name)
  const attributes: PoolAttributes = {
    pool: identity.name,
    pool_id: `${identity.name}#${number.n}`,
    provider: identity.provider
  }
  const removePulled = registerPulled(context, attributes, gauges, counters)
  // The histogram is a registered series too: recording a wait is a bucket
  // increment here, and Effect reads the state when asked.
  const wait = new WaitRecorder(waitBoundaries)
  const histogram = Metric.registerUnsafe(
    Metric.histogram(MetricNames.waitMs, {
      description: "Milliseconds an acquire spent queued before it got a worker",
      boundaries: waitBoundaries,
      attributes
    }),
    context,
    { get: () => wait.state(), update: () => {}, modify: () => {} }
  )
  return {
    attributes,
    recordWait: (ms) => wait.record(ms),
    remove: () => {
      removePulled()
      histogram.remove()
      number.free()
    }
  }
}

/** A histogram with Effect's semantics (cumulative buckets, `value <= boundary`). */
class WaitRecorder {
  readonly #boundaries: ReadonlyArray<number>
  readonly #counts: Uint32Array
  #count = 0
  #sum = 0
  #min = Number.MAX_VALUE
  #max = -Number.MAX_VALUE

  constructor(boundaries: ReadonlyArray<number>) {
    this.#boundaries = boundaries
    this.#counts = new Uint32Array(boundaries.length + 1)
  }

  record(value: number): void {
    const boundaries = this.#boundaries
    let i = 0
    while (i < boundaries.length && value > boundaries[i]!) i++
    this.#counts[i]!++
    this.#count++
    this.#sum += value
    if (value < this.#min) this.#min = value
    if (value > this.#max) this.#max = value
  }

  state(): Metric.HistogramState {
    let cumulated = 0
    const buckets = this.#boundaries.map((boundary, i): [number, number] => [boundary, cumulated += this.#counts[i]!])
    return { buckets, count: this.#count, min: this.#min, max: this.#max, sum: this.#sum }
  }
}

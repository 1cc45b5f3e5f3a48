/**
 * The pool's Effect metrics. Every series is a registered one that reads the
 * pool's own counts when a snapshot or exporter asks, so keeping them costs
 * nothing on the acquire / release path but a bucket increment per wait.
 *
 * Every series carries the attributes `pool` (the pool's name) and `provider`.
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

const waitBoundaries = [1, 5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000, 300_000]

/** A gauge read from `get` on demand. */
export interface PulledGauge {
  readonly name: string
  readonly description: string
  readonly get: () => number
}

/** A monotonic counter read from `get` on demand. */
export type PulledCounter = PulledGauge

/**
 * Registers the pool's series in the registry of `context`. Returns the
 * wait-time recorder and a function that removes every series again.
 */
export const registerPoolMetrics = (
  context: Context.Context<never>,
  attributes: Readonly<Record<string, string>>,
  gauges: ReadonlyArray<PulledGauge>,
  counters: ReadonlyArray<PulledCounter>
): { readonly recordWait: (ms: number) => void; readonly remove: () => void } => {
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
  // The histogram is a registered series too: recording a wait is a bucket
  // increment here, and Effect reads the state when asked.
  const wait = new WaitRecorder(waitBoundaries)
  registrations.push(Metric.registerUnsafe(
    Metric.histogram(MetricNames.waitMs, {
      description: "Milliseconds an acquire spent queued before it got a worker",
      boundaries: waitBoundaries,
      attributes
    }),
    context,
    { get: () => wait.state(), update: () => {}, modify: () => {} }
  ))
  return {
    recordWait: (ms) => wait.record(ms),
    remove: () => {
      for (const r of registrations) r.remove()
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

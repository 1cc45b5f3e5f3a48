/**
 * The pool's Effect metrics. Gauges and counters are registered series that
 * read the pool's own counts when a snapshot or exporter asks, so keeping them
 * costs nothing on the acquire / release path; only the wait-time histogram
 * is updated as waits end.
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
  const wait = Metric.histogram(MetricNames.waitMs, {
    description: "Milliseconds an acquire spent queued before it got a worker",
    boundaries: waitBoundaries,
    attributes
  })
  return {
    recordWait: (ms) => wait.updateUnsafe(ms, context),
    remove: () => {
      for (const r of registrations) r.remove()
      Metric.removeUnsafe(wait, context)
    }
  }
}

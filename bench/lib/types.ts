/**
 * The shapes a benchmark section plugs into the runner with.
 *
 * A section (the pool comparison in `bench/pool/section.ts`, the Codex worker
 * measurements in `bench/codex.ts` later) declares its contenders and its
 * measurements; the runner does everything else: warm-up, interleaving the
 * contenders round-robin, medians, the table, target verdicts and the JSON.
 */

/** Options of one `npm run bench` invocation, as the sections see them. */
export interface BenchOptions {
  /** Measured runs per measurement (the warm-up run is extra). */
  readonly runs: number
  /** Smaller sizes for a fast smoke run. */
  readonly quick: boolean
  /** Prints a progress line to stderr. */
  readonly progress: (line: string) => void
}

/** A column of the table. */
export interface MetricDef {
  readonly id: string
  /** Column header. */
  readonly label: string
  /** Unit shown in the header ("ns/op", "ops/s", "B", "µs", "ms", "x"). */
  readonly unit: string
  readonly better: "lower" | "higher"
  /** Print a ratio against the section's reference contender. Default true. */
  readonly ratio?: boolean
  /**
   * A value computed from the medians of other metrics of the same contender
   * (a ratio of two columns, for example) instead of being measured.
   */
  readonly derive?: (medians: Readonly<Record<string, number | undefined>>) => number | undefined
}

/** A correctness verdict that comes with a sample (FIFO order, nothing served after abort...). */
export interface Check {
  readonly ok: boolean
  /** Short text for the table ("exact", "VIOLATED"). */
  readonly text: string
  /** What exactly went wrong (or was verified), for the notes and the JSON. */
  readonly detail?: string
}

/** What one contender produced for one metric in one run. */
export interface Sample {
  /** Undefined when the metric is a pure check. */
  readonly value?: number | undefined
  readonly check?: Check | undefined
}

/** A contender of a section. */
export interface ContenderDef {
  readonly name: string
  readonly description: string
}

/** A measurement: one or more metrics produced together by one run. */
export interface MeasurementDef {
  readonly id: string
  readonly title: string
  readonly metrics: ReadonlyArray<MetricDef>
  /** True when `contender` takes part, or the reason it does not (printed as "n/a"). */
  readonly supports: (contender: string) => true | string
  /** One sample of every metric for `contender`. */
  readonly run: (contender: string, options: BenchOptions) => Promise<Readonly<Record<string, Sample>>>
}

/** A metric aggregated over the measured runs. */
export interface MetricResult {
  readonly samples: ReadonlyArray<number>
  readonly median: number | undefined
  readonly min: number | undefined
  readonly max: number | undefined
  /** All checks of the runs folded: failed if any failed. */
  readonly check: Check | undefined
  /** Set when the contender does not take part. */
  readonly na: string | undefined
}

/** Results of a section: `results[metricId][contender]`. */
export type SectionResults = Readonly<Record<string, Readonly<Record<string, MetricResult>>>>

/** One target and whether it was met. */
export interface Verdict {
  readonly target: string
  /** Undefined when it could not be decided (a contender filtered out, n/a). */
  readonly pass: boolean | undefined
  /** The numbers behind the verdict. */
  readonly detail: string
}

/** A group of measurements over a set of contenders, printed as one table. */
export interface Section {
  readonly name: string
  readonly title: string
  /** Contender the ratio columns divide by. */
  readonly reference?: string | undefined
  readonly contenders: ReadonlyArray<ContenderDef>
  readonly measurements: ReadonlyArray<MeasurementDef>
  /** Sizes and settings actually used, for the header and the JSON. */
  readonly describe: (options: BenchOptions) => ReadonlyArray<string>
  /** True when the section can run here, or why not (missing binary, no credentials...). */
  readonly available?: (options: BenchOptions) => Promise<true | string>
  readonly targets?: (results: SectionResults) => ReadonlyArray<Verdict>
  /** Footnotes printed under the table. */
  readonly notes?: ReadonlyArray<string>
}

/** What a section module exports. */
export interface SectionModule {
  readonly section: Section
}

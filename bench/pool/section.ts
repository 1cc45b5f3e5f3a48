/**
 * Measurements 1-6 of the issue: this library's promise facade and its
 * Effect-native API against Effect's `Pool`, generic-pool, tarn, p-limit and a
 * hand-written FIFO baseline.
 */
import { formatRatio, formatValue } from "../lib/stats.ts"
import type { BenchOptions, MeasurementDef, Sample, Section, SectionResults, Verdict } from "../lib/types.ts"
import * as E from "./effectContenders.ts"
import * as P from "./promiseScenarios.ts"
import { type PromiseContender, promiseContenders } from "./promiseContenders.ts"

const POOL_SIZE = 4

export interface Sizes {
  readonly uncontendedOps: number
  readonly callers: number
  readonly cycles: number
  readonly fifoWaiters: number
  readonly heapWaiters: number
  readonly abortSmall: number
  readonly abortLarge: number
  readonly abortSample: number
  readonly stormWaiters: number
  readonly stormTimeoutMs: number
}

export const sizes = (options: BenchOptions): Sizes =>
  options.quick
    ? {
      uncontendedOps: 20_000,
      callers: 1_000,
      cycles: 20,
      fifoWaiters: 10_000,
      heapWaiters: 10_000,
      abortSmall: 1_000,
      abortLarge: 10_000,
      abortSample: 500,
      stormWaiters: 10_000,
      stormTimeoutMs: 100
    }
    : {
      uncontendedOps: 200_000,
      callers: 1_000,
      cycles: 200,
      fifoWaiters: 10_000,
      heapWaiters: 100_000,
      abortSmall: 1_000,
      abortLarge: 100_000,
      abortSample: 500,
      stormWaiters: 100_000,
      stormTimeoutMs: 100
    }

type Kind = { readonly promise: PromiseContender } | { readonly effect: E.EffectContender }

const contenders: ReadonlyArray<{ readonly name: string; readonly description: string; readonly kind: Kind }> = [
  ...promiseContenders.map((c) => ({ name: c.name, description: c.description, kind: { promise: c } })),
  ...E.effectContenders.map((c) => ({ name: c.name, description: c.description, kind: { effect: c } }))
]
// Table order: ours first, then the others, the baseline last.
const ORDER = ["facade", "effect-api", "effect-pool", "generic-pool", "tarn", "p-limit", "baseline"]
const ordered = ORDER.map((name) => contenders.find((c) => c.name === name)!)

const kindOf = (name: string): Kind => {
  const c = contenders.find((x) => x.name === name)
  if (c === undefined) throw new Error(`unknown contender ${name}`)
  return c.kind
}

const capability = (name: string, key: "abort" | "timeout"): true | string => {
  const kind = kindOf(name)
  return "promise" in kind ? kind.promise[key] : kind.effect[key]
}

const value = (v: number): Sample => ({ value: v })

const measurements: ReadonlyArray<MeasurementDef> = [
  {
    id: "uncontended",
    title: `1. uncontended acquire + release (poolSize ${POOL_SIZE}, sequential)`,
    metrics: [{ id: "uncontended", label: "uncontended", unit: "ns/op", better: "lower" }],
    supports: () => true,
    run: async (name, options) => {
      const s = sizes(options)
      const kind = kindOf(name)
      const ns = "promise" in kind
        ? await P.uncontended(kind.promise, POOL_SIZE, s.uncontendedOps)
        : await E.uncontended(kind.effect, POOL_SIZE, s.uncontendedOps)
      return { uncontended: value(ns) }
    }
  },
  {
    id: "handoff",
    title: `2. saturated hand-off (poolSize ${POOL_SIZE}, callers x cycles)`,
    metrics: [{ id: "handoff", label: "hand-off", unit: "ops/s", better: "higher" }],
    supports: () => true,
    run: async (name, options) => {
      const s = sizes(options)
      const kind = kindOf(name)
      const ops = "promise" in kind
        ? await P.handoff(kind.promise, POOL_SIZE, s.callers, s.cycles)
        : await E.handoff(kind.effect, POOL_SIZE, s.callers, s.cycles)
      return { handoff: value(ops) }
    }
  },
  {
    id: "fifo",
    title: "3. FIFO under saturation (poolSize 1): served order = queue order",
    metrics: [{ id: "fifo", label: "FIFO", unit: "", better: "higher", ratio: false }],
    supports: () => true,
    run: async (name, options) => {
      const s = sizes(options)
      const kind = kindOf(name)
      const check = "promise" in kind
        ? await P.fifo(kind.promise, s.fifoWaiters)
        : await E.fifo(kind.effect, s.fifoWaiters)
      return { fifo: { check } }
    }
  },
  {
    id: "heap",
    title: `4. heap per queued waiter (poolSize ${POOL_SIZE}, all workers held)`,
    metrics: [{ id: "heap", label: "heap/waiter", unit: "B", better: "lower" }],
    supports: () => true,
    run: async (name, options) => {
      const s = sizes(options)
      const kind = kindOf(name)
      const bytes = "promise" in kind
        ? await P.heapPerWaiter(kind.promise, POOL_SIZE, s.heapWaiters)
        : await E.heapPerWaiter(kind.effect, POOL_SIZE, s.heapWaiters)
      return { heap: value(bytes) }
    }
  },
  {
    id: "abort",
    title: "5. abort cost per waiter, small vs large queue (O(1) shows as a flat ratio)",
    metrics: [
      { id: "abortSmall", label: "abort@small", unit: "µs", better: "lower" },
      { id: "abortLarge", label: "abort@large", unit: "µs", better: "lower" },
      {
        id: "abortFlat",
        label: "large/small",
        unit: "x",
        better: "lower",
        ratio: false,
        derive: (m) =>
          m["abortSmall"] !== undefined && m["abortLarge"] !== undefined ? m["abortLarge"] / m["abortSmall"] : undefined
      },
      { id: "abortClean", label: "abort served?", unit: "", better: "higher", ratio: false }
    ],
    supports: (name) => capability(name, "abort"),
    run: async (name, options) => {
      const s = sizes(options)
      const kind = kindOf(name)
      const one = (queued: number) =>
        "promise" in kind
          ? P.abortCost(kind.promise, POOL_SIZE, queued, s.abortSample)
          : E.abortCost(kind.effect, POOL_SIZE, queued, s.abortSample)
      const small = await one(s.abortSmall)
      const large = await one(s.abortLarge)
      const check = !small.check.ok ? small.check : large.check
      return { abortSmall: value(small.perAbortUs), abortLarge: value(large.perAbortUs), abortClean: { check } }
    }
  },
  {
    id: "storm",
    title: "6. acquire-timeout storm: time until every queued acquire has failed",
    metrics: [
      { id: "storm", label: "timeout storm", unit: "ms", better: "lower" },
      { id: "stormCheck", label: "storm check", unit: "", better: "higher", ratio: false }
    ],
    supports: (name) => capability(name, "timeout"),
    run: async (name, options) => {
      const s = sizes(options)
      const kind = kindOf(name)
      const r = "promise" in kind
        ? await P.timeoutStorm(kind.promise, POOL_SIZE, s.stormWaiters, s.stormTimeoutMs)
        : await E.timeoutStorm(kind.effect, POOL_SIZE, s.stormWaiters, s.stormTimeoutMs)
      return { storm: value(r.ms), stormCheck: { check: r.check } }
    }
  }
]

const med = (results: SectionResults, metric: string, contender: string): number | undefined =>
  results[metric]?.[contender]?.median

/** A target comparing two numbers; undecided when either is missing. */
const verdict = (
  target: string,
  a: number | undefined,
  b: number | undefined,
  test: (a: number, b: number) => boolean,
  detail: (a: number, b: number) => string
): Verdict =>
  a === undefined || b === undefined
    ? { target, pass: undefined, detail: "not measured in this run (filtered out or n/a)" }
    : { target, pass: test(a, b), detail: detail(a, b) }

const targets = (r: SectionResults): ReadonlyArray<Verdict> => [
  verdict(
    "saturated hand-off: facade >= generic-pool (ratio >= 1.0)",
    med(r, "handoff", "facade"),
    med(r, "handoff", "generic-pool"),
    (a, b) => a / b >= 1,
    (a, b) => `facade ${formatValue(a, "ops/s")} / generic-pool ${formatValue(b, "ops/s")} = ${formatRatio(a / b)}`
  ),
  verdict(
    "saturated hand-off: Effect API >= 2x Effect Pool.use",
    med(r, "handoff", "effect-api"),
    med(r, "handoff", "effect-pool"),
    (a, b) => a / b >= 2,
    (a, b) => `effect-api ${formatValue(a, "ops/s")} / effect-pool ${formatValue(b, "ops/s")} = ${formatRatio(a / b)}`
  ),
  verdict(
    "uncontended acquire + release: facade <= 2x generic-pool's time",
    med(r, "uncontended", "facade"),
    med(r, "uncontended", "generic-pool"),
    (a, b) => a / b <= 2,
    (a, b) =>
      `facade ${formatValue(a, "ns/op")} / generic-pool ${formatValue(b, "ns/op")} = ${formatRatio(a / b)}`
  ),
  verdict(
    "heap per queued waiter: facade <= 1 KB",
    med(r, "heap", "facade"),
    1024,
    (a, b) => a <= b,
    (a) => `facade ${a.toFixed(0)} B per waiter (limit 1024 B)`
  ),
  verdict(
    "abort cost: facade at large queue <= 1.5x at small",
    med(r, "abortLarge", "facade"),
    med(r, "abortSmall", "facade"),
    (a, b) => a / b <= 1.5,
    (a, b) => `facade ${a.toFixed(2)} µs vs ${b.toFixed(2)} µs = ${formatRatio(a / b)}`
  ),
  verdict(
    "abort cost: Effect API at large queue <= 1.5x at small",
    med(r, "abortLarge", "effect-api"),
    med(r, "abortSmall", "effect-api"),
    (a, b) => a / b <= 1.5,
    (a, b) => `effect-api ${a.toFixed(2)} µs vs ${b.toFixed(2)} µs = ${formatRatio(a / b)}`
  ),
  verdict(
    "timeout storm: facade no slower than generic-pool",
    med(r, "storm", "facade"),
    med(r, "storm", "generic-pool"),
    (a, b) => a <= b,
    (a, b) => `facade ${a.toFixed(1)} ms vs generic-pool ${b.toFixed(1)} ms = ${formatRatio(a / b)}`
  )
]

export const section: Section = {
  name: "pool",
  title: "Worker pool: acquire / release mechanics (measurements 1-6)",
  reference: "generic-pool",
  contenders: ordered.map(({ name, description }) => ({ name, description })),
  measurements,
  describe: (options) => {
    const s = sizes(options)
    return [
      `1. uncontended: ${s.uncontendedOps.toLocaleString("en")} sequential acquire + release, poolSize ${POOL_SIZE}`,
      `2. hand-off: ${s.callers.toLocaleString("en")} callers x ${s.cycles} cycles, poolSize ${POOL_SIZE}`,
      `3. FIFO: ${s.fifoWaiters.toLocaleString("en")} waiters on poolSize 1`,
      `4. heap: ${s.heapWaiters.toLocaleString("en")} queued waiters (heapUsed after gc, before / after)`,
      `5. abort: ${s.abortSample} waiters (5 timed batches, median) from the middle of ${s.abortSmall.toLocaleString("en")} (small) and ${
        s.abortLarge.toLocaleString("en")
      } (large) queued`,
      `6. timeout storm: ${s.stormWaiters.toLocaleString("en")} waiters, ${s.stormTimeoutMs} ms acquire timeout`
    ]
  },
  targets,
  notes: [
    "Promise contenders: `await acquire()` then `release()` (p-limit: `await limit(noop)`); a waiter is one pending acquire promise.",
    "Effect contenders: `use(body)`, each whole measurement inside one Effect.runPromise; a waiter is a fiber (forked with startImmediately, so fork order = queue order). Uncontended: body `Effect.void`. Saturated hand-off, FIFO, heap drain, abort drain: the body holds the worker across one `Effect.yieldNow`; with a body that completes synchronously the callers never queue (each runs all its cycles on an idle worker).",
    "abort: promise waiters abort an AbortSignal (tarn: its documented PendingOperation.abort()), Effect waiters are interrupted (Fiber.interruptAll); the time runs until every aborted acquire has settled. Every contender's check verifies no aborted waiter was served and everyone else was.",
    "timeout storm: the time includes queueing all waiters and runs until the last has failed. effect-pool has no acquire timeout: its uses are wrapped in Effect.timeout. The baseline supports only one timeout for all waiters.",
    "heap: process.memoryUsage().heapUsed after two forced full GCs, before and after queueing; includes everything the waiter keeps alive (its promise or fiber)."
  ]
}

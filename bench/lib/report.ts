/** Aggregation of samples and the printed report. */
import { formatRatio, formatValue, median } from "./stats.ts"
import type { Check, MetricDef, MetricResult, Sample, Section, SectionResults, Verdict } from "./types.ts"

/** Folds the samples of one metric of one contender. */
export const aggregate = (samples: ReadonlyArray<Sample>, na: string | undefined): MetricResult => {
  const values = samples.flatMap((s) => (s.value === undefined ? [] : [s.value]))
  let check: Check | undefined
  for (const s of samples) {
    if (s.check === undefined) continue
    if (check === undefined || (check.ok && !s.check.ok)) check = s.check
  }
  return {
    samples: values,
    median: median(values),
    min: values.length === 0 ? undefined : Math.min(...values),
    max: values.length === 0 ? undefined : Math.max(...values),
    check,
    na
  }
}

/** Fills in the derived metrics (ratios of other columns) of every contender. */
export const derive = (
  metrics: ReadonlyArray<MetricDef>,
  results: Record<string, Record<string, MetricResult>>,
  contenders: ReadonlyArray<string>
): void => {
  for (const m of metrics) {
    if (m.derive === undefined) continue
    const column: Record<string, MetricResult> = {}
    for (const c of contenders) {
      const medians: Record<string, number | undefined> = {}
      let na: string | undefined
      for (const other of metrics) {
        const r = results[other.id]?.[c]
        medians[other.id] = r?.median
        na ??= r?.na
      }
      const v = na === undefined ? m.derive(medians) : undefined
      column[c] = {
        samples: v === undefined ? [] : [v],
        median: v,
        min: v,
        max: v,
        check: undefined,
        na
      }
    }
    results[m.id] = column
  }
}

/** Word-wraps `text` to `width` columns, the first line after `first`, the others after `rest`. */
const wrap = (text: string, width: number, first: string, rest: string): string => {
  const lines: Array<string> = []
  let line = first
  for (const word of text.split(/\s+/)) {
    if (line.length + word.length + 1 > width && line.trim() !== "" && line !== first) {
      lines.push(line.trimEnd())
      line = rest
    }
    line += (line === first || line === rest ? "" : " ") + word
  }
  lines.push(line)
  return lines.join("\n")
}

const pad = (s: string, n: number, right = false) => (right ? s.padStart(n) : s.padEnd(n))

/** A plain-text table; the first column is left-aligned, the others right-aligned. */
export const table = (header: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<string>>): string => {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)))
  const line = (cells: ReadonlyArray<string>) => cells.map((c, i) => pad(c, widths[i]!, i > 0)).join("  ").trimEnd()
  const rule = widths.map((w) => "-".repeat(w)).join("  ")
  return [line(header), rule, ...rows.map(line)].join("\n")
}

const isCheck = (m: MetricDef) => m.unit === ""

/** The cell of a numeric metric: median, and the ratio against the reference contender. */
const cell = (m: MetricDef, r: MetricResult | undefined, ref: MetricResult | undefined, showRatio: boolean): string => {
  if (r === undefined) return "-"
  if (r.na !== undefined) return "n/a"
  if (r.median === undefined) return r.check?.ok === false ? r.check.text : "-"
  const v = formatValue(r.median, m.unit)
  if (!showRatio || m.ratio === false || ref?.median === undefined || ref.median === 0) return v
  return `${v} (${formatRatio(r.median / ref.median)})`
}

const checkCell = (r: MetricResult | undefined): string => {
  if (r === undefined) return "-"
  if (r.na !== undefined) return "n/a"
  return r.check?.text ?? "-"
}

/** The report of one section: performance table, correctness table, n/a reasons, notes, targets. */
export const renderSection = (
  section: Section,
  contenders: ReadonlyArray<string>,
  metrics: ReadonlyArray<MetricDef>,
  results: SectionResults,
  verdicts: ReadonlyArray<Verdict>,
  verbose: boolean
): string => {
  const out: Array<string> = []
  const ref = section.reference
  const numeric = metrics.filter((m) => !isCheck(m))
  const checks = metrics.filter(isCheck)
  if (numeric.length > 0) {
    const header = [
      "contender",
      ...numeric.map((m) => `${m.label}${m.unit ? ` ${m.unit === "x" ? "(x)" : m.unit}` : ""}${m.better === "higher" ? " ↑" : " ↓"}`)
    ]
    const rows = contenders.map((c) => [
      c,
      ...numeric.map((m) => cell(m, results[m.id]?.[c], ref === undefined ? undefined : results[m.id]?.[ref], c !== ref))
    ])
    out.push(table(header, rows))
    if (ref !== undefined) out.push(`(x) = ratio to ${ref} in the same run; ↑ higher is better, ↓ lower is better.`)
  }
  if (checks.length > 0) {
    out.push("")
    out.push("Correctness")
    out.push(table(["contender", ...checks.map((m) => m.label)], contenders.map((c) => [c, ...checks.map((m) => checkCell(results[m.id]?.[c]))])))
  }
  {
    const failures: Array<string> = []
    for (const m of metrics) {
      for (const c of contenders) {
        const k = results[m.id]?.[c]?.check
        if (k !== undefined && !k.ok) failures.push(`  ${c} / ${m.label}: ${k.text}: ${k.detail ?? ""}`)
      }
    }
    if (failures.length > 0) out.push("", "Failed checks:", ...failures)
  }
  const naReasons = new Map<string, Set<string>>()
  for (const m of metrics) {
    for (const c of contenders) {
      const na = results[m.id]?.[c]?.na
      if (na !== undefined) {
        const key = `${c}: ${na}`
        if (!naReasons.has(key)) naReasons.set(key, new Set())
        naReasons.get(key)!.add(m.label)
      }
    }
  }
  if (naReasons.size > 0) {
    out.push("")
    out.push("n/a:")
    for (const [reason, labels] of naReasons) out.push(`  ${reason} (${[...labels].join(", ")})`)
  }
  if (verbose && numeric.length > 0) {
    out.push("")
    out.push("Spread (min / median / max over the measured runs)")
    const rows: Array<Array<string>> = []
    for (const m of numeric) {
      if (m.derive !== undefined) continue
      for (const c of contenders) {
        const r = results[m.id]?.[c]
        if (r?.median === undefined) continue
        rows.push([
          m.label,
          c,
          formatValue(r.min!, m.unit),
          formatValue(r.median, m.unit),
          formatValue(r.max!, m.unit),
          `${(((r.max! - r.min!) / r.median) * 100).toFixed(0)}%`
        ])
      }
    }
    out.push(table(["metric", "contender", "min", "median", "max", "spread"], rows))
  }
  if (section.notes !== undefined && section.notes.length > 0) {
    out.push("")
    out.push("Notes:")
    for (const n of section.notes) out.push(wrap(n, 108, "  - ", "    "))
  }
  if (verdicts.length > 0) {
    out.push("")
    out.push("Targets")
    for (const v of verdicts) {
      const tag = v.pass === undefined ? "SKIP" : v.pass ? "PASS" : "FAIL"
      out.push(`  [${tag}] ${v.target}`)
      out.push(`         ${v.detail}`)
    }
  }
  return out.join("\n")
}

/**
 * `npm run bench`: every registered section (see `sections.ts`) in one
 * process. Per measurement: one warm-up run of every contender (discarded),
 * then `--runs` measured runs, the contenders interleaved round-robin with a
 * different starting contender each run; medians are reported.
 *
 *   node --expose-gc bench/run.ts [--runs N] [--quick] [--json FILE] [--only NAME[,NAME...]] [--verbose]
 *
 * --runs N     measured runs per measurement (default 3; --quick: 1)
 * --quick      small sizes, for a smoke run (not comparable with a full run)
 * --json FILE  also write every sample, median and verdict as JSON
 * --only NAME  keep only the named sections, measurements and/or contenders
 *              (repeatable or comma-separated; e.g. --only facade,generic-pool,handoff)
 * --verbose    also print min / median / max per metric
 *
 * Started without --expose-gc (needed to measure heap per waiter), it runs
 * itself again with the flag.
 */
import { spawnSync } from "node:child_process"
import { mkdirSync, writeFileSync } from "node:fs"
import { cpus, platform, release, totalmem } from "node:os"
import { dirname, resolve } from "node:path"
import { aggregate, derive, renderSection } from "./lib/report.ts"
import { gcNow } from "./lib/stats.ts"
import type { BenchOptions, MetricResult, Sample, Section, Verdict } from "./lib/types.ts"
import { registry } from "./sections.ts"
import { StallError, startWatchdog } from "./lib/watchdog.ts"

/** A sample taking longer than this is reported as STALLED (its contender skips the remaining runs). */
const STALL_SECONDS = 60

if (typeof globalThis.gc !== "function") {
  const child = spawnSync(process.execPath, [...process.execArgv, "--expose-gc", ...process.argv.slice(1)], {
    stdio: "inherit"
  })
  process.exit(child.status ?? 1)
}

interface Args {
  readonly runs: number
  readonly quick: boolean
  readonly json: string | undefined
  readonly only: ReadonlyArray<string>
  readonly verbose: boolean
}

const usage = () => {
  process.stdout.write(
    "usage: node --expose-gc bench/run.ts [--runs N] [--quick] [--json FILE] [--only NAME[,NAME...]] [--verbose]\n"
  )
}

const parseArgs = (argv: ReadonlyArray<string>): Args => {
  let runs: number | undefined
  let quick = false
  let json: string | undefined
  let verbose = false
  const only: Array<string> = []
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!
    const [flag, inline] = arg.startsWith("--") && arg.includes("=") ? [arg.slice(0, arg.indexOf("=")), arg.slice(arg.indexOf("=") + 1)] : [arg, undefined]
    const next = () => {
      const v = inline ?? argv[++i]
      if (v === undefined) throw new Error(`${flag} needs a value`)
      return v
    }
    switch (flag) {
      case "--runs":
        runs = Number(next())
        if (!Number.isInteger(runs) || runs < 1) throw new Error("--runs must be an integer >= 1")
        break
      case "--quick":
        quick = true
        break
      case "--json":
        json = next()
        break
      case "--only":
        only.push(...next().split(",").map((s) => s.trim()).filter((s) => s !== ""))
        break
      case "--verbose":
        verbose = true
        break
      case "--help":
      case "-h":
        usage()
        process.exit(0)
      default:
        throw new Error(`unknown argument ${arg}`)
    }
  }
  return { runs: runs ?? (quick ? 1 : 3), quick, json, only, verbose }
}

/** `items` started at `shift` (round-robin order of a run). */
const rotate = <A>(items: ReadonlyArray<A>, shift: number): Array<A> => {
  const n = items.length
  return n === 0 ? [] : items.map((_, i) => items[(i + shift) % n]!)
}

const main = async () => {
  let args: Args
  try {
    args = parseArgs(process.argv.slice(2))
  } catch (error) {
    process.stderr.write(`${(error as Error).message}\n`)
    usage()
    process.exit(2)
  }
  const started = performance.now()
  const options: BenchOptions = {
    runs: args.runs,
    quick: args.quick,
    progress: (line) => process.stderr.write(`${line}\n`)
  }
  const cpu = cpus()
  const meta = {
    date: new Date().toISOString(),
    node: process.version,
    v8: process.versions.v8,
    platform: `${platform()} ${release()}`,
    cpu: `${cpu[0]?.model ?? "unknown"} x ${cpu.length}`,
    memoryGB: Math.round(totalmem() / 2 ** 30),
    runs: args.runs,
    quick: args.quick,
    only: args.only,
    argv: process.argv.slice(2)
  }
  const out = (s: string) => process.stdout.write(`${s}\n`)
  out(`codex-worker-pool benchmark — ${meta.date}`)
  out(`node ${meta.node} (V8 ${meta.v8}), ${meta.platform}, ${meta.cpu}, ${meta.memoryGB} GB`)
  out(`${args.runs} measured run(s) per measurement after 1 warm-up run, contenders interleaved round-robin; medians${args.quick ? "; QUICK sizes (smoke run, not comparable)" : ""}`)

  // --only: a token may name a section, a measurement or a contender; each kind
  // of name filters only when at least one token is of that kind.
  const loaded: Array<{ readonly name: string; readonly description: string; readonly section: Section | undefined }> = []
  for (const entry of registry) {
    const mod = await entry.load()
    loaded.push({ name: entry.name, description: entry.description, section: mod?.section })
  }
  const known = new Set<string>()
  for (const l of loaded) {
    known.add(l.name)
    for (const m of l.section?.measurements ?? []) known.add(m.id)
    for (const c of l.section?.contenders ?? []) known.add(c.name)
  }
  const unknown = args.only.filter((t) => !known.has(t))
  if (unknown.length > 0) {
    process.stderr.write(`--only: unknown name(s) ${unknown.join(", ")}; known: ${[...known].join(", ")}\n`)
    process.exit(2)
  }
  const tokens = new Set(args.only)
  const sectionFilter = loaded.some((l) => tokens.has(l.name))
  const measurementFilter = loaded.some((l) => l.section?.measurements.some((m) => tokens.has(m.id)))
  const contenderFilter = loaded.some((l) => l.section?.contenders.some((c) => tokens.has(c.name)))

  const watchdog = startWatchdog()
  const jsonSections: Array<unknown> = []
  let anyFailure = false
  for (const { name, description, section } of loaded) {
    if (sectionFilter && !tokens.has(name)) continue
    out("")
    if (section === undefined) {
      out(`== ${name}: skipped — ${description}: module not present`)
      jsonSections.push({ name, skipped: "module not present" })
      continue
    }
    out(`== ${section.title}`)
    const available = section.available === undefined ? true : await section.available(options)
    if (available !== true) {
      out(`skipped: ${available}`)
      jsonSections.push({ name, skipped: available })
      continue
    }
    for (const line of section.describe(options)) out(`   ${line}`)
    out("Contenders:")
    for (const c of section.contenders) out(`   ${c.name.padEnd(13)} ${c.description}`)
    const contenders = section.contenders.map((c) => c.name).filter((c) => !contenderFilter || tokens.has(c))
    const measurements = section.measurements.filter((m) => !measurementFilter || tokens.has(m.id))
    const results: Record<string, Record<string, MetricResult>> = {}
    const metrics = measurements.flatMap((m) => m.metrics)

    for (const m of measurements) {
      const samples = new Map<string, Array<Readonly<Record<string, Sample>>>>()
      const record = (c: string, sample: Readonly<Record<string, Sample>>) => {
        if (!samples.has(c)) samples.set(c, [])
        samples.get(c)!.push(sample)
      }
      const participants = contenders.filter((c) => m.supports(c) === true)
      const broken = new Set<string>()
      for (let run = 0; run <= args.runs; run++) {
        const label = run === 0 ? "warm-up" : `run ${run}/${args.runs}`
        const times: Array<string> = []
        for (const c of rotate(participants, run)) {
          if (broken.has(c)) continue
          gcNow()
          const t0 = performance.now()
          try {
            const sample = await watchdog.guard(`${section.name}/${m.id}/${c} (${label})`, STALL_SECONDS, () => m.run(c, options))
            times.push(`${c} ${((performance.now() - t0) / 1000).toFixed(1)}s`)
            if (run > 0) record(c, sample)
          } catch (error) {
            // Reported in every metric of the measurement; the contender sits out the remaining runs.
            broken.add(c)
            const text = error instanceof StallError ? "STALLED" : "ERROR"
            const detail = error instanceof Error ? `${error.message}${error instanceof StallError ? "" : `\n${error.stack ?? ""}`}` : String(error)
            times.push(`${c} ${text}`)
            record(c, Object.fromEntries(m.metrics.map((metric) => [metric.id, { check: { ok: false, text, detail } }])))
          }
        }
        options.progress(`[${section.name}] ${m.id} ${label}: ${times.join(", ")}`)
      }
      for (const metric of m.metrics) {
        if (metric.derive !== undefined) continue
        const column: Record<string, MetricResult> = {}
        for (const c of contenders) {
          const supported = m.supports(c)
          column[c] = aggregate(
            (samples.get(c) ?? []).flatMap((s) => (s[metric.id] === undefined ? [] : [s[metric.id]!])),
            supported === true ? undefined : supported
          )
        }
        results[metric.id] = column
      }
      derive(m.metrics, results, contenders)
    }

    const verdicts: ReadonlyArray<Verdict> = section.targets?.(results) ?? []
    out("")
    out(renderSection(section, contenders, metrics, results, verdicts, args.verbose))
    for (const v of verdicts) if (v.pass === false) anyFailure = true
    for (const metric of metrics) {
      for (const c of contenders) if (results[metric.id]?.[c]?.check?.ok === false) anyFailure = true
    }
    jsonSections.push({
      name,
      title: section.title,
      settings: section.describe(options),
      reference: section.reference,
      contenders: section.contenders.filter((c) => contenders.includes(c.name)),
      metrics: metrics.map((m) => ({
        id: m.id,
        label: m.label,
        unit: m.unit,
        better: m.better,
        results: results[m.id]
      })),
      targets: verdicts
    })
  }

  const seconds = (performance.now() - started) / 1000
  out("")
  out(`total ${seconds.toFixed(0)} s${anyFailure ? "; some targets or checks FAILED" : ""}`)
  if (args.json !== undefined) {
    const file = resolve(args.json)
    mkdirSync(dirname(file), { recursive: true })
    writeFileSync(file, `${JSON.stringify({ meta: { ...meta, seconds }, sections: jsonSections }, null, 2)}\n`)
    out(`results written to ${file}`)
  }
  await watchdog.stop()
}

await main()
// A stalled contender may have left timers behind; they must not keep the process alive.
process.exit(0)

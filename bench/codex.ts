/**
 * Measurement 7: a pool of real `codex app-server` workers against the
 * embedded offline model server (`startModelServer` of codex-worker-pool/testing).
 *
 * - cold acquire: spawn + initialize, timed from `acquire()` to the worker
 *   (each sample invalidates the worker, so the next acquire spawns again);
 * - warm acquire: `acquire()` of an idle, initialized worker;
 * - first request after start, with `minIdle: 0` (it spawns) and `minIdle: 1`
 *   (a warm worker is waiting);
 * - shutdown of 4 busy workers (each mid-turn on a slow model response) until
 *   no process of theirs is left, with `shutdownTimeoutMs: 1` so the kill starts
 *   at once; checked through /proc.
 */
import { performance } from "node:perf_hooks"
import { createCodexWorkerPool } from "../src/node.ts"
import { nativeCodexBinary } from "../src/internal/codexBinary.ts"
import { isAlive, type ProcessIdentity, readIdentity } from "../src/internal/procfs.ts"
import { codexArgs, codexEnv, makeCodexHome, type ModelServer, startModelServer } from "../src/testing/index.ts"
import { formatValue } from "./lib/stats.ts"
import type { BenchOptions, MeasurementDef, Section, SectionResults, Verdict } from "./lib/types.ts"

const KILL_GRACE_MS = 2_000
const CONTENDER = "codex"

const percentile = (values: ReadonlyArray<number>, p: number): number => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!
}

/** A pool of real workers on a fresh CODEX_HOME, torn down by the returned function. */
const withPool = async <A>(
  server: ModelServer,
  options: { readonly poolSize: number; readonly minIdle?: number; readonly shutdownTimeoutMs?: number },
  body: (pool: ReturnType<typeof createCodexWorkerPool>) => Promise<A>
): Promise<A> => {
  const home = makeCodexHome("cwp-bench-")
  const pool = createCodexWorkerPool({
    command: nativeCodexBinary()!,
    args: codexArgs({ baseUrl: server.url }),
    env: codexEnv({ codexHome: home.path }),
    killGraceMs: KILL_GRACE_MS,
    ...options
  })
  try {
    return await body(pool)
  } finally {
    await pool.shutdown()
    home.cleanup()
  }
}

let server: ModelServer | undefined
const modelServer = async () => server ??= await startModelServer({ deltas: 4 })

const waitFor = async (predicate: () => boolean, timeoutMs: number): Promise<boolean> => {
  const deadline = Date.now() + timeoutMs
  while (!predicate()) {
    if (Date.now() > deadline) return false
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
  return true
}

const measurements: ReadonlyArray<MeasurementDef> = [
  {
    id: "acquire",
    title: "7a. cold (spawn + initialize) vs warm acquire, poolSize 1",
    metrics: [
      { id: "cold-p50", label: "cold p50", unit: "ms", better: "lower", ratio: false },
      { id: "cold-p99", label: "cold p99", unit: "ms", better: "lower", ratio: false },
      { id: "warm-p50", label: "warm p50", unit: "µs", better: "lower", ratio: false },
      { id: "warm-p99", label: "warm p99", unit: "µs", better: "lower", ratio: false }
    ],
    supports: () => true,
    run: async (_contender, options) => {
      const colds: Array<number> = []
      const warms: Array<number> = []
      await withPool(await modelServer(), { poolSize: 1 }, async (pool) => {
        for (let i = 0; i < (options.quick ? 3 : 8); i++) {
          const start = performance.now()
          const worker = await pool.acquire()
          colds.push(performance.now() - start)
          await pool.invalidate(worker)
        }
        pool.release(await pool.acquire())
        for (let i = 0; i < (options.quick ? 200 : 2_000); i++) {
          const start = performance.now()
          const worker = await pool.acquire()
          warms.push((performance.now() - start) * 1_000)
          pool.release(worker)
        }
      })
      return {
        "cold-p50": { value: percentile(colds, 50) },
        "cold-p99": { value: percentile(colds, 99) },
        "warm-p50": { value: percentile(warms, 50) },
        "warm-p99": { value: percentile(warms, 99) }
      }
    }
  },
  {
    id: "first",
    title: "7b. first request after the pool starts: minIdle 0 vs minIdle 1",
    metrics: [
      { id: "first-min0", label: "minIdle 0", unit: "ms", better: "lower", ratio: false },
      { id: "first-min1", label: "minIdle 1", unit: "ms", better: "lower", ratio: false }
    ],
    supports: () => true,
    run: async () => {
      const server = await modelServer()
      const first = async (pool: ReturnType<typeof createCodexWorkerPool>) => {
        const start = performance.now()
        pool.release(await pool.acquire())
        return performance.now() - start
      }
      const min0 = await withPool(server, { poolSize: 1 }, first)
      const min1 = await withPool(server, { poolSize: 1, minIdle: 1 }, async (pool) => {
        // The request comes a moment after start-up: long enough for the warm worker.
        await waitFor(() => pool.stats().idle === 1, 10_000)
        return first(pool)
      })
      return { "first-min0": { value: min0 }, "first-min1": { value: min1 } }
    }
  },
  {
    id: "shutdown",
    title: `7c. shutdown() of 4 busy workers until no process is left (killGraceMs ${KILL_GRACE_MS})`,
    metrics: [
      { id: "shutdown-ms", label: "shutdown", unit: "ms", better: "lower", ratio: false },
      { id: "left", label: "processes left", unit: "", better: "lower", ratio: false }
    ],
    supports: () => true,
    run: async () => {
      const server = await modelServer()
      const home = makeCodexHome("cwp-bench-")
      const pool = createCodexWorkerPool({
        command: nativeCodexBinary()!,
        args: codexArgs({ baseUrl: server.url }),
        env: codexEnv({ codexHome: home.path }),
        poolSize: 4,
        killGraceMs: KILL_GRACE_MS,
        shutdownTimeoutMs: 1
      })
      const identities: Array<ProcessIdentity> = []
      const workers = await Promise.all(Array.from({ length: 4 }, () => pool.acquire()))
      // Every worker mid-turn on a model response that would take minutes.
      await Promise.all(workers.map(async (worker) => {
        const id = readIdentity(worker.pid)
        if (id !== undefined) identities.push(id)
        const { thread } = (await worker.request("thread/start", { ephemeral: true })) as { thread: { id: string } }
        const started = new Promise<void>((resolve) => {
          const stop = worker.onMessage((m) => {
            if (m.method === "item/agentMessage/delta") {
              stop()
              resolve()
            }
          })
        })
        await worker.request("turn/start", {
          threadId: thread.id,
          input: [{ type: "text", text: "[mode:slow][delay:600000] busy", text_elements: [] }]
        })
        await started
      }))
      const start = performance.now()
      await pool.shutdown()
      const elapsed = performance.now() - start
      const left = identities.filter(isAlive).length
      home.cleanup()
      return {
        "shutdown-ms": { value: elapsed },
        left: { value: left, check: { ok: left === 0, text: left === 0 ? "none" : `${left} LEFT` } }
      }
    }
  }
]

const med = (r: SectionResults, metric: string) => r[metric]?.[CONTENDER]?.median

const targets = (r: SectionResults): ReadonlyArray<Verdict> => {
  const warm = med(r, "warm-p99")
  const shutdown = med(r, "shutdown-ms")
  const left = r["left"]?.[CONTENDER]?.check
  return [
    {
      target: "warm acquire p99 < 1 ms",
      pass: warm === undefined ? undefined : warm < 1_000,
      detail: warm === undefined ? "not measured" : `p99 ${formatValue(warm, "µs")}`
    },
    {
      target: `shutdown of 4 busy workers within killGraceMs + 1 s (${KILL_GRACE_MS + 1_000} ms), no process left`,
      pass: shutdown === undefined ? undefined : shutdown <= KILL_GRACE_MS + 1_000 && left?.ok === true,
      detail: shutdown === undefined ? "not measured" : `${formatValue(shutdown, "ms")}, processes left: ${left?.text ?? "?"}`
    }
  ]
}

export const section: Section = {
  name: "codex",
  title: "7. real Codex app-server workers (offline model server on 127.0.0.1)",
  contenders: [{ name: CONTENDER, description: "createCodexWorkerPool with the native codex binary" }],
  measurements,
  describe: (options: BenchOptions) => [
    `codex binary: ${nativeCodexBinary() ?? "not found"}`,
    `cold samples per run: ${options.quick ? 3 : 8}, warm samples per run: ${options.quick ? 200 : 2_000}`
  ],
  available: async () =>
    nativeCodexBinary() === undefined ? "the native codex binary of @openai/codex is not installed" : true,
  targets,
  notes: [
    "Workers talk to the embedded model server only; nothing leaves the machine.",
    "Shutdown: shutdownTimeoutMs 1 so the kill starts at once; the time runs until every process of the 4 trees is gone."
  ]
}

process.on("exit", () => void server?.close())

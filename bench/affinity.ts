/**
 * Measurement 9: how often a conversation's next turn lands on the worker
 * that already has its thread loaded, with and without the affinity hint
 * (`acquire({ prefer: threadId })`).
 *
 * A landing elsewhere costs a real Codex worker a `thread/resume` (and an
 * ephemeral thread exists only on the worker that started it); a worker that
 * ran an earlier turn of the thread but not the latest holds a stale copy,
 * so "its worker" is the one that ran the conversation's previous turn. The
 * workload uses cheap in-memory workers of `createWorkerPool`:
 * `conversations` conversations of `turns` turns
 * each run at once on `poolSize` workers; a turn holds its worker for 1-4
 * event-loop turns and a conversation thinks 0-8 turns between its turns
 * (a seeded PRNG, the same schedule for both contenders). The first turn of a
 * conversation can land nowhere "right" and is not counted.
 *
 * Two loads: as many conversations as workers (a free worker is usually the
 * right one), and three times as many (workers are contended: the right one
 * is often busy, and the hint never waits for it).
 */
import { createWorkerPool } from "../src/PromisePool.ts"
import type { BenchOptions, MeasurementDef, Section } from "./lib/types.ts"

const POOL_SIZE = 4

interface ThreadWorker {
  readonly id: number
}

/** A small seeded PRNG (mulberry32), so both contenders see the same schedule. */
const prng = (seed: number) => () => {
  seed = (seed + 0x6d2b79f5) | 0
  let t = seed
  t = Math.imul(t ^ (t >>> 15), t | 1)
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296
}

const ticks = async (n: number) => {
  for (let i = 0; i < n; i++) await new Promise((resolve) => setImmediate(resolve))
}

/** Runs the workload; returns the share (%) of turns after the first that landed on a worker with their thread. */
export const landingRate = async (
  prefer: boolean,
  conversations: number,
  turns: number,
  seed: number
): Promise<{ readonly rate: number; readonly resumes: number }> => {
  let next = 0
  const pool = createWorkerPool<ThreadWorker>({
    create: async () => ({ id: ++next }),
    poolSize: POOL_SIZE
  })
  let hits = 0
  let counted = 0
  let resumes = 0
  const conversation = async (c: number) => {
    const random = prng(seed * 1000 + c)
    const threadId = `thread-${c}`
    /** The worker that ran the previous turn: the one with the thread's current state. */
    let last: ThreadWorker | undefined
    for (let turn = 0; turn < turns; turn++) {
      await pool.use(async (worker) => {
        if (turn > 0) {
          counted++
          if (worker === last) hits++
          else resumes++
        }
        last = worker
        await ticks(1 + Math.floor(random() * 4))
      }, prefer ? { prefer: threadId } : undefined)
      await ticks(Math.floor(random() * 9))
    }
  }
  await Promise.all(Array.from({ length: conversations }, (_, c) => conversation(c)))
  await pool.shutdown()
  return { rate: (100 * hits) / counted, resumes }
}

const sizes = (options: BenchOptions) => ({ turns: options.quick ? 20 : 100 })

/** Schedules per sample (seeds 1..SEEDS): the workload is deterministic, so every run repeats them. */
const SEEDS = 5

const measurement = (id: string, factor: number): MeasurementDef => ({
  id,
  title: `9${factor === 1 ? "a" : "b"}. turns landing on the worker with their thread: ${factor * POOL_SIZE} conversations on poolSize ${POOL_SIZE}`,
  metrics: [
    { id: `${id}Rate`, label: `on its worker (${factor * POOL_SIZE} conv.)`, unit: "%", better: "higher", ratio: false },
    { id: `${id}Resumes`, label: `resumes (${factor * POOL_SIZE} conv.)`, unit: "turns", better: "lower", ratio: false }
  ],
  supports: () => true,
  run: async (contender, options) => {
    let rate = 0
    let resumes = 0
    for (let seed = 1; seed <= SEEDS; seed++) {
      const r = await landingRate(contender === "prefer", factor * POOL_SIZE, sizes(options).turns, seed)
      rate += r.rate / SEEDS
      resumes += r.resumes
    }
    return { [`${id}Rate`]: { value: rate }, [`${id}Resumes`]: { value: resumes } }
  }
})

export const section: Section = {
  name: "affinity",
  title: "Affinity hint: a conversation's turns landing on the worker that has its thread (measurement 9)",
  contenders: [
    { name: "prefer", description: "use(fn, { prefer: threadId })" },
    { name: "no-prefer", description: "use(fn): the most recently released idle worker" }
  ],
  measurements: [measurement("affinityP", 1), measurement("affinity3P", 3)],
  describe: (options) => [
    `9. ${sizes(options).turns} turns per conversation, a turn holds its worker 1-4 event-loop turns, 0-8 turns of ` +
    `think time between turns; ${SEEDS} seeded schedules per sample (rate: their mean, resumes: their sum); ` +
    `the first turn of each conversation is not counted`
  ],
  notes: [
    "A miss is a `thread/resume` on a real Codex worker (an ephemeral thread is lost). The hint only picks among idle workers: under contention the worker that has the thread is often busy, and the turn goes to another worker rather than wait."
  ]
}

/**
 * Measurements 1-6 for the promise-driven contenders. Each function builds a
 * fresh pool, warms it (creates are never timed), measures, verifies, and
 * closes it.
 */
import type { Check } from "../lib/types.ts"
import { gcNow, heapUsed, median } from "../lib/stats.ts"
import type { AcquireReleaseAdapter, LimitAdapter, PromiseAdapter, PromiseContender, Worker } from "./promiseContenders.ts"

const noop = (): void => {}

/** Lets pending microtasks and one macrotask turn run. */
const tick = () => new Promise<void>((resolve) => setImmediate(resolve))

/** Takes every worker (p-limit: fills every slot) and returns how to give them back. */
const holdAll = async (adapter: PromiseAdapter, size: number): Promise<() => void> => {
  if (adapter.kind === "pool") {
    const held: Array<Worker> = []
    for (let i = 0; i < size; i++) held.push(await adapter.acquire())
    return () => {
      for (const w of held) adapter.release(w)
    }
  }
  let open!: () => void
  const gate = new Promise<void>((resolve) => (open = resolve))
  for (let i = 0; i < size; i++) void adapter.run(() => gate)
  while (adapter.active() < size) await tick()
  return open
}

/** Creates every worker ahead of the timed part. */
const warm = async (adapter: PromiseAdapter, size: number): Promise<void> => {
  const release = await holdAll(adapter, size)
  release()
  await tick()
}

/** A preallocated array, so filling it later allocates nothing. */
const slots = <A>(n: number): Array<A | null> => {
  const a: Array<A | null> = []
  for (let i = 0; i < n; i++) a.push(null)
  return a
}

/** 1. Uncontended acquire + release, sequential: ns per operation. */
export const uncontended = async (contender: PromiseContender, size: number, ops: number): Promise<number> => {
  const adapter = contender.make({ size })
  await warm(adapter, size)
  const t0 = performance.now()
  if (adapter.kind === "pool") {
    for (let i = 0; i < ops; i++) {
      const w = await adapter.acquire()
      adapter.release(w)
    }
  } else {
    for (let i = 0; i < ops; i++) await adapter.run(noop)
  }
  const t1 = performance.now()
  await adapter.close()
  return ((t1 - t0) * 1e6) / ops
}

/** 2. Saturated hand-off: `callers` loops of `cycles` acquire + release each. Operations per second. */
export const handoff = async (
  contender: PromiseContender,
  size: number,
  callers: number,
  cycles: number
): Promise<number> => {
  const adapter = contender.make({ size })
  await warm(adapter, size)
  const loops: Array<Promise<void>> = []
  const t0 = performance.now()
  if (adapter.kind === "pool") {
    const loop = async (a: AcquireReleaseAdapter) => {
      for (let i = 0; i < cycles; i++) {
        const w = await a.acquire()
        a.release(w)
      }
    }
    for (let c = 0; c < callers; c++) loops.push(loop(adapter))
  } else {
    const loop = async (a: LimitAdapter) => {
      for (let i = 0; i < cycles; i++) await a.run(noop)
    }
    for (let c = 0; c < callers; c++) loops.push(loop(adapter))
  }
  await Promise.all(loops)
  const t1 = performance.now()
  await adapter.close()
  return (callers * cycles) / ((t1 - t0) / 1000)
}

/** Compares the order waiters were served in with the order they queued. */
export const orderCheck = (served: ReadonlyArray<number>, n: number): Check => {
  if (served.length !== n) {
    return { ok: false, text: "VIOLATED", detail: `${served.length} of ${n} waiters served` }
  }
  for (let i = 0; i < n; i++) {
    if (served[i] !== i) {
      return {
        ok: false,
        text: "VIOLATED",
        detail: `position ${i} served waiter #${served[i]} (expected #${i}); first 8 around it: ${
          served.slice(Math.max(0, i - 2), i + 6).join(",")
        }`
      }
    }
  }
  return { ok: true, text: "exact", detail: `${n} waiters served in queue order` }
}

/** 3. FIFO under saturation: pool of 1, `n` queued waiters, served order must be exact. */
export const fifo = async (contender: PromiseContender, n: number): Promise<Check> => {
  const adapter = contender.make({ size: 1 })
  await warm(adapter, 1)
  const release = await holdAll(adapter, 1)
  const served: Array<number> = []
  const all: Array<Promise<void>> = []
  for (let i = 0; i < n; i++) {
    if (adapter.kind === "pool") {
      const a = adapter
      all.push(a.acquire().then((w) => {
        served.push(i)
        a.release(w)
      }))
    } else {
      all.push(adapter.run(() => void served.push(i)))
    }
  }
  release()
  await Promise.all(all)
  await adapter.close()
  return orderCheck(served, n)
}

/** 4. Heap bytes per queued waiter: heapUsed after gc, before and after queueing `n` waiters. */
export const heapPerWaiter = async (contender: PromiseContender, size: number, n: number): Promise<number> => {
  const adapter = contender.make({ size })
  await warm(adapter, size)
  const release = await holdAll(adapter, size)
  const promises = slots<Promise<unknown>>(n)
  await tick()
  gcNow()
  const before = heapUsed()
  if (adapter.kind === "pool") {
    for (let i = 0; i < n; i++) promises[i] = adapter.acquire()
  } else {
    for (let i = 0; i < n; i++) promises[i] = adapter.run(noop)
  }
  gcNow()
  const after = heapUsed()
  // Drain: every waiter gets a worker and gives it back.
  if (adapter.kind === "pool") {
    const a = adapter
    for (let i = 0; i < n; i++) promises[i] = (promises[i] as Promise<Worker>).then((w) => a.release(w))
  }
  release()
  await Promise.all(promises)
  await adapter.close()
  return (after - before) / n
}

/** Batches the abort sample is timed in (the median batch counts), to keep a stray GC or JIT pause out. */
export const ABORT_BATCHES = 5

/**
 * 5. Abort cost: `queued` waiters with signals; abort `sample` from the middle,
 * in batches, each timed until its aborted acquires have settled. Microseconds
 * per abort (median batch).
 */
export const abortCost = async (
  contender: PromiseContender,
  size: number,
  queued: number,
  sample: number
): Promise<{ readonly perAbortUs: number; readonly check: Check }> => {
  const adapter = contender.make({ size })
  if (adapter.kind !== "pool") throw new Error(`${contender.name} cannot abort`)
  await warm(adapter, size)
  const release = await holdAll(adapter, size)
  const controllers = slots<AbortController>(queued)
  const all = slots<Promise<void>>(queued)
  const served: Array<number> = []
  let rejected = 0
  let target = 0
  let batchDone = () => {}
  const onReject = () => {
    if (++rejected === target) batchDone()
  }
  for (let i = 0; i < queued; i++) {
    const controller = new AbortController()
    controllers[i] = controller
    all[i] = adapter.acquire(controller.signal).then((w) => {
      served.push(i)
      adapter.release(w)
    }, onReject)
  }
  const first = Math.floor((queued - sample) / 2)
  const perBatch = Math.ceil(sample / ABORT_BATCHES)
  const times: Array<number> = []
  for (let from = first; from < first + sample; from += perBatch) {
    const to = Math.min(from + perBatch, first + sample)
    const done = new Promise<void>((resolve) => (batchDone = resolve))
    target = rejected + (to - from)
    await tick()
    gcNow()
    const t0 = performance.now()
    for (let i = from; i < to; i++) controllers[i]!.abort()
    await done
    times.push(((performance.now() - t0) * 1000) / (to - from))
  }
  release()
  await Promise.all(all)
  await adapter.close()
  return { perAbortUs: median(times)!, check: abortCheck(served, queued, first, sample) }
}

/** Nothing served to an aborted waiter, everyone else served (in order). */
export const abortCheck = (served: ReadonlyArray<number>, queued: number, first: number, sample: number): Check => {
  const bad = served.filter((i) => i >= first && i < first + sample)
  if (bad.length > 0) {
    return { ok: false, text: "SERVED ABORTED", detail: `${bad.length} aborted waiters got a worker (e.g. #${bad[0]})` }
  }
  if (served.length !== queued - sample) {
    return { ok: false, text: "LOST", detail: `${served.length} served, expected ${queued - sample}` }
  }
  return { ok: true, text: "clean", detail: `${sample} aborted, none served; the other ${served.length} served` }
}

/** 6. Timeout storm: `n` waiters with a `timeoutMs` acquire timeout; ms until all have failed. */
export const timeoutStorm = async (
  contender: PromiseContender,
  size: number,
  n: number,
  timeoutMs: number
): Promise<{ readonly ms: number; readonly check: Check }> => {
  const adapter = contender.make({ size, acquireTimeoutMs: timeoutMs })
  if (adapter.kind !== "pool") throw new Error(`${contender.name} has no acquire timeout`)
  await warm(adapter, size)
  const release = await holdAll(adapter, size)
  const all = slots<Promise<void>>(n)
  let served = 0
  let failed = 0
  const onReject = () => void failed++
  await tick()
  gcNow()
  const t0 = performance.now()
  for (let i = 0; i < n; i++) {
    all[i] = adapter.acquire().then((w) => {
      served++
      adapter.release(w)
    }, onReject)
  }
  await Promise.all(all)
  const t1 = performance.now()
  release()
  await adapter.close()
  return { ms: t1 - t0, check: stormCheck(served, failed, n) }
}

export const stormCheck = (served: number, failed: number, n: number): Check =>
  failed === n
    ? { ok: true, text: "all failed", detail: `${n} of ${n} acquires failed with a timeout` }
    : { ok: false, text: "INCOMPLETE", detail: `${failed} of ${n} failed, ${served} served` }

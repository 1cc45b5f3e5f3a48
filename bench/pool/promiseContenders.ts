/**
 * The promise-driven contenders behind one small interface, so every
 * measurement runs the same loop over each of them.
 *
 * Fair settings for all: the resource is a trivial object, min 0 / max
 * `size`, no validation hooks, FIFO settings where there are any. p-limit is
 * a concurrency limiter, not a pool: its "acquire + release" is one limited
 * call of a function that returns at once.
 */
import genericPool from "generic-pool"
import pLimit from "p-limit"
import { Pool as TarnPool } from "tarn"
import { createWorkerPool } from "../../src/PromisePool.ts"
import { FifoBaseline } from "./baseline.ts"

export interface Worker {
  readonly id: number
}

export interface PoolSettings {
  readonly size: number
  /** Acquire timeout for every acquire; 0 or absent: none. */
  readonly acquireTimeoutMs?: number | undefined
}

/** A pool driven with acquire / release. */
export interface AcquireReleaseAdapter {
  readonly kind: "pool"
  readonly acquire: (signal?: AbortSignal) => Promise<Worker>
  readonly release: (worker: Worker) => void
  readonly close: () => Promise<void>
}

/** A concurrency limiter: one call of `run` is one acquire + release. */
export interface LimitAdapter {
  readonly kind: "limit"
  readonly run: <A>(fn: () => A | PromiseLike<A>) => Promise<A>
  readonly active: () => number
  readonly close: () => Promise<void>
}

export type PromiseAdapter = AcquireReleaseAdapter | LimitAdapter

export interface PromiseContender {
  readonly name: string
  readonly description: string
  readonly make: (settings: PoolSettings) => PromiseAdapter
  /** True, or why a queued acquire cannot be withdrawn. */
  readonly abort: true | string
  /** True, or why there is no acquire timeout. */
  readonly timeout: true | string
}

const worker = (): (() => Worker) => {
  let next = 0
  return () => ({ id: next++ })
}

export const facade: PromiseContender = {
  name: "facade",
  description: "this library, promise facade (createWorkerPool: acquire / release)",
  abort: true,
  timeout: true,
  make: ({ size, acquireTimeoutMs }) => {
    const next = worker()
    const pool = createWorkerPool<Worker>({
      create: async () => next(),
      poolSize: size,
      ...(acquireTimeoutMs ? { acquireTimeoutMs } : {})
    })
    return {
      kind: "pool",
      acquire: (signal) => pool.acquire(signal === undefined ? undefined : { signal }),
      release: (w) => pool.release(w),
      close: () => pool.shutdown()
    }
  }
}

export const genericPoolContender: PromiseContender = {
  name: "generic-pool",
  description: "generic-pool 3.9 (fifo: true, min 0, no testOnBorrow)",
  abort: "no way to withdraw a queued acquire",
  timeout: true,
  make: ({ size, acquireTimeoutMs }) => {
    const next = worker()
    const pool = genericPool.createPool<Worker>(
      { create: async () => next(), destroy: async () => {} },
      { max: size, min: 0, fifo: true, ...(acquireTimeoutMs ? { acquireTimeoutMillis: acquireTimeoutMs } : {}) }
    )
    return {
      kind: "pool",
      acquire: () => pool.acquire(),
      release: (w) => void pool.release(w),
      close: async () => {
        await pool.drain()
        await pool.clear()
      }
    }
  }
}

export const tarnContender: PromiseContender = {
  name: "tarn",
  description: "tarn 3.1 (min 0, no validate; abort = PendingOperation.abort())",
  abort: true,
  timeout: true,
  make: ({ size, acquireTimeoutMs }) => {
    const next = worker()
    const pool = new TarnPool<Worker>({
      create: async () => next(),
      destroy: () => {},
      min: 0,
      max: size,
      // tarn always arms a per-acquire timer; its default is 30 s.
      ...(acquireTimeoutMs ? { acquireTimeoutMillis: acquireTimeoutMs } : {})
    })
    return {
      kind: "pool",
      acquire: (signal) => {
        const op = pool.acquire()
        if (signal !== undefined) signal.addEventListener("abort", () => op.abort(), { once: true })
        return op.promise
      },
      release: (w) => void pool.release(w),
      close: async () => {
        await pool.destroy()
      }
    }
  }
}

export const pLimitContender: PromiseContender = {
  name: "p-limit",
  description: "p-limit 7.3 (a limiter, not a pool: one limited call = acquire + release)",
  abort: "no removal of a queued call (clearQueue drops them all)",
  timeout: "no acquire timeout",
  make: ({ size }) => {
    const limit = pLimit(size)
    return {
      kind: "limit",
      run: (fn) => limit(fn),
      active: () => limit.activeCount,
      close: async () => {}
    }
  }
}

export const baseline: PromiseContender = {
  name: "baseline",
  description: "hand-written FIFO ring, direct hand-off, O(1) tombstone abort, one timer (the practical limit)",
  abort: true,
  timeout: true,
  make: ({ size, acquireTimeoutMs }) => {
    const pool = new FifoBaseline(worker(), size, acquireTimeoutMs ?? 0)
    return {
      kind: "pool",
      acquire: (signal) => pool.acquire(signal),
      release: (w) => pool.release(w),
      close: async () => pool.close()
    }
  }
}

export const promiseContenders: ReadonlyArray<PromiseContender> = [
  facade,
  genericPoolContender,
  tarnContender,
  pLimitContender,
  baseline
]

/**
 * The practical limit: a hand-written FIFO pool with direct hand-off and
 * nothing else. Waiters sit in a growable ring indexed by their absolute
 * sequence number, so an abort tombstones its slot in O(1); one timer serves
 * a uniform acquire timeout (deadlines arrive in queue order, so the head is
 * always the earliest). No options validation, metrics, idle retirement or
 * shutdown semantics beyond rejecting the waiters.
 */

export class BaselineTimeoutError extends Error {
  constructor() {
    super("acquire timed out")
  }
}

class RingWaiter<W> {
  readonly resolve: (worker: W) => void
  readonly reject: (error: unknown) => void
  readonly seq: number
  readonly at: number
  readonly signal: AbortSignal | undefined
  readonly pool: FifoBaseline<W>
  constructor(
    pool: FifoBaseline<W>,
    seq: number,
    at: number,
    signal: AbortSignal | undefined,
    resolve: (worker: W) => void,
    reject: (error: unknown) => void
  ) {
    this.pool = pool
    this.seq = seq
    this.at = at
    this.signal = signal
    this.resolve = resolve
    this.reject = reject
  }
  /** The abort listener. */
  handleEvent(): void {
    this.pool.cancel(this)
  }
}

export class FifoBaseline<W> {
  readonly #create: () => W
  readonly #size: number
  readonly #timeoutMs: number
  readonly #idle: Array<W> = []
  #created = 0
  #ring: Array<RingWaiter<W> | undefined> = new Array(1024).fill(undefined)
  #mask = 1023
  /** Absolute sequence numbers: slots `head .. tail-1` are (possibly tombstoned) waiters. */
  #head = 0
  #tail = 0
  /** Waiters not tombstoned. */
  #live = 0
  #timer: ReturnType<typeof setTimeout> | undefined = undefined

  constructor(create: () => W, size: number, timeoutMs = 0) {
    this.#create = create
    this.#size = size
    this.#timeoutMs = timeoutMs
  }

  get queued(): number {
    return this.#live
  }

  acquire(signal?: AbortSignal): Promise<W> {
    if (this.#live === 0) {
      const idle = this.#idle.pop()
      if (idle !== undefined) return Promise.resolve(idle)
      if (this.#created < this.#size) {
        this.#created++
        return Promise.resolve(this.#create())
      }
    }
    if (signal?.aborted) return Promise.reject(signal.reason)
    if (this.#tail - this.#head > this.#mask) this.#grow()
    let resolve!: (worker: W) => void
    let reject!: (error: unknown) => void
    const promise = new Promise<W>((res, rej) => {
      resolve = res
      reject = rej
    })
    const seq = this.#tail++
    const at = this.#timeoutMs > 0 ? performance.now() : 0
    const waiter = new RingWaiter(this, seq, at, signal, resolve, reject)
    this.#ring[seq & this.#mask] = waiter
    this.#live++
    signal?.addEventListener("abort", waiter, { once: true })
    if (this.#timeoutMs > 0 && this.#timer === undefined) this.#arm(this.#timeoutMs)
    return promise
  }

  release(worker: W): void {
    const ring = this.#ring
    while (this.#head < this.#tail) {
      const i = this.#head++ & this.#mask
      const waiter = ring[i]
      if (waiter === undefined) continue
      ring[i] = undefined
      this.#live--
      waiter.signal?.removeEventListener("abort", waiter)
      waiter.resolve(worker)
      return
    }
    this.#idle.push(worker)
  }

  cancel(waiter: RingWaiter<W>): void {
    const i = waiter.seq & this.#mask
    if (this.#ring[i] !== waiter) return
    this.#ring[i] = undefined
    this.#live--
    waiter.reject(waiter.signal!.reason)
  }

  close(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer)
    this.#timer = undefined
    while (this.#head < this.#tail) {
      const i = this.#head++ & this.#mask
      const waiter = this.#ring[i]
      if (waiter === undefined) continue
      this.#ring[i] = undefined
      this.#live--
      waiter.signal?.removeEventListener("abort", waiter)
      waiter.reject(new Error("pool closed"))
    }
  }

  #grow(): void {
    const old = this.#ring
    const oldMask = this.#mask
    const ring: Array<RingWaiter<W> | undefined> = new Array(old.length * 2).fill(undefined)
    const mask = ring.length - 1
    for (let s = this.#head; s < this.#tail; s++) ring[s & mask] = old[s & oldMask]
    this.#ring = ring
    this.#mask = mask
  }

  #arm(delay: number): void {
    this.#timer = setTimeout(() => this.#expire(), Math.max(0, delay))
  }

  #expire(): void {
    this.#timer = undefined
    const now = performance.now()
    const ring = this.#ring
    while (this.#head < this.#tail) {
      const i = this.#head & this.#mask
      const waiter = ring[i]
      if (waiter === undefined) {
        this.#head++
        continue
      }
      const due = waiter.at + this.#timeoutMs
      if (due > now) return this.#arm(due - now)
      ring[i] = undefined
      this.#head++
      this.#live--
      waiter.signal?.removeEventListener("abort", waiter)
      waiter.reject(new BaselineTimeoutError())
    }
  }
}

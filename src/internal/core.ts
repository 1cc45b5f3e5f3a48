/**
 * The pool's state machine: synchronous, allocation-light and independent of
 * how workers are made or how callers wait. `WorkerPool` (Effect) and the
 * promise facade both drive this one core; a `Driver` runs the asynchronous
 * parts (creating and finalizing workers, the single timer).
 *
 * Guarantees, for every interleaving of calls:
 * - at most `size` workers are idle, leased or being created at once;
 * - waiters are served strictly first in, first out, and an acquire never
 *   takes an idle worker while anyone waits (no barging);
 * - a released worker goes straight to the oldest waiter, without passing
 *   through the idle list and without a new worker being made for that waiter;
 * - a waiter that leaves (abort, interruption, timeout) is unlinked at once in
 *   O(1) (O(log n) when it has a deadline);
 * - every waiter settles exactly once: with a worker, a create failure, a
 *   timeout, a full queue or shutdown;
 * - every created worker is finalized exactly once;
 * - an idle worker retires exactly `idleTimeout` after it became idle (one
 *   timer for the whole pool, driven by the driver's clock).
 *
 * Limits: workers that are being finalized no longer count toward `size`, so
 * a replacement may start while its predecessor is still shutting down.
 *
 * @internal
 */
import { AcquireTimeoutError, PoolShutdownError, QueueFullError } from "../errors.ts"
import { DeadlineHeap, WaiterLinks, WaiterList } from "./waiters.ts"

/** What a slot is doing. */
export type SlotState = "idle" | "leased" | "finalizing" | "finalized"

/** One worker and its bookkeeping. */
export class Slot<W> {
  state: SlotState = "leased"
  /** Counts the leases of this worker, so a stale release of an earlier lease is refused. */
  lease = 0
  /** Marked broken: finalized when its lease ends instead of being reused. */
  invalid = false
  /** Clock time at which it became idle (meaningful while idle). */
  idleSince = 0
  /** Idle-list links (oldest idle first). */
  prev: Slot<W> | undefined = undefined
  next: Slot<W> | undefined = undefined
  readonly worker: W
  /** The driver's handle for finalizing this worker (a Scope, for example). */
  readonly handle: unknown
  constructor(worker: W, handle: unknown) {
    this.worker = worker
    this.handle = handle
  }
}

/**
 * Why a waiter failed: one of the pool's own errors, or whatever the driver
 * reports for a failed create (an Effect `Cause`, for the Effect driver).
 */
export type WaiterFailure = PoolShutdownError | AcquireTimeoutError | QueueFullError | { readonly createFailure: unknown }

/** A caller waiting for a worker. Subclasses decide how the answer is delivered. */
export abstract class Waiter<W> extends WaiterLinks {
  /** Clock time at which it joined the queue. */
  enqueuedAt = 0
  /** The create started on this waiter's behalf, if any. */
  create: CreateOp<W> | undefined = undefined
  /** Called once, after the waiter has left the queue, with its worker. */
  abstract succeed(slot: Slot<W>, waitedMs: number): void
  /** Called once, after the waiter has left the queue, with the reason. */
  abstract fail(failure: WaiterFailure): void
}

/** A worker being created. Its result goes to the oldest waiter (or the idle list). */
export class CreateOp<W> {
  /** The waiter that caused it, while that waiter still waits. A failure goes to it. */
  owner: Waiter<W> | undefined
  /** Created for waiters (a failure must reach one) rather than to keep `minIdle` warm. */
  readonly demand: boolean
  constructor(owner: Waiter<W> | undefined, demand: boolean) {
    this.owner = owner
    this.demand = demand
  }
}

/** The asynchronous side of the pool. */
export interface Driver<W> {
  now(): number
  /** Start making a worker; later call `core.created` or `core.createFailed` with `op`. */
  create(op: CreateOp<W>): void
  /** Start finalizing a worker; later call `core.finalized(slot)`. */
  finalize(slot: Slot<W>): void
  /** (Re)arm the pool's single timer to call `core.onTimer()` at `at`, or disarm it. */
  setTimer(at: number | undefined): void
  /** A lease began (a worker was handed to a caller). */
  leased(slot: Slot<W>): void
  /** A lease ended (released, or ended by shutdown). */
  unleased(slot: Slot<W>): void
  /** Observability hook, called after every state change (gauges). */
  changed(): void
  /** Observability hook: a waiter joined the queue. */
  enqueued(queued: number): void
  /** Observability hook: a waiter got a worker after waiting (0 when served at once). */
  handedOff(waitedMs: number, queued: number): void
}

/** Validated numeric settings, in milliseconds (0 disables a time). */
export interface CoreSettings {
  readonly size: number
  readonly maxQueue: number
  readonly acquireTimeout: number
  readonly idleTimeout: number
  readonly minIdle: number
}

/** Counters that only grow. */
export interface CoreTotals {
  created: number
  finalized: number
  createFailures: number
}

export class PoolCore<W> {
  readonly queue = new WaiterList<Waiter<W>>()
  private readonly deadlines = new DeadlineHeap<Waiter<W>>()
  /** Every slot not yet finalized, by worker, for `release(worker)` and `invalidate(worker)`. */
  readonly slots = new Map<W, Slot<W>>()
  private idleHead: Slot<W> | undefined = undefined
  private idleTail: Slot<W> | undefined = undefined
  idle = 0
  leased = 0
  creating = 0
  finalizing = 0
  closed = false
  readonly totals: CoreTotals = { created: 0, finalized: 0, createFailures: 0 }
  private timerAt: number | undefined = undefined
  private driver!: Driver<W>

  readonly settings: CoreSettings

  constructor(settings: CoreSettings) {
    this.settings = settings
  }

  /** Attaches the driver and starts warming `minIdle` workers. */
  start(driver: Driver<W>): void {
    this.driver = driver
    this.reconcile(true)
  }

  /** Workers that count toward `size`. */
  get total(): number {
    return this.idle + this.leased + this.creating
  }

  /** Takes an idle worker when nobody waits; the fast path of every acquire. */
  take(): Slot<W> | undefined {
    const slot = this.idleTail
    if (slot === undefined || this.queue.length !== 0) return undefined
    this.unlinkIdle(slot)
    slot.state = "leased"
    slot.lease++
    this.leased++
    this.driver.leased(slot)
    this.reconcile(true)
    this.driver.changed()
    return slot
  }

  /**
   * Queues a waiter (after `take` found nothing). It settles later through
   * `succeed` / `fail`, or right away when the pool is closed or the queue full.
   * `timeout` overrides the pool's acquire timeout (0: none).
   */
  enqueue(waiter: Waiter<W>, timeout: number = this.settings.acquireTimeout): void {
    if (this.closed) return waiter.fail(new PoolShutdownError())
    // A caller may run other work between its `take` and this call (a fiber
    // can yield in between): a worker that went idle meanwhile is served now.
    if (this.queue.length === 0 && this.idle !== 0) return waiter.succeed(this.take()!, 0)
    // `maxQueue` bounds the waiters left for a release: those a new worker is
    // being (or can be) created for do not count.
    if (this.total >= this.settings.size && this.queue.length - this.creating >= this.settings.maxQueue) {
      return waiter.fail(new QueueFullError({ maxQueue: this.settings.maxQueue, poolSize: this.settings.size }))
    }
    const now = this.driver.now()
    waiter.enqueuedAt = now
    this.queue.push(waiter)
    if (timeout > 0) {
      waiter.deadline = now + timeout
      this.deadlines.push(waiter)
      if (this.timerAt === undefined || waiter.deadline < this.timerAt) this.armTimer()
    }
    this.driver.enqueued(this.queue.length)
    if (this.queue.length > this.creating && this.total < this.settings.size) {
      // May complete synchronously (and hand the new worker to the head) when the driver's create does.
      this.startCreate(new CreateOp(waiter, true))
    }
    this.driver.changed()
  }

  /** Removes a waiting waiter (abort or interruption). False if it no longer waits. */
  cancel(waiter: Waiter<W>): boolean {
    if (!waiter.queued) return false
    this.unlinkWaiter(waiter)
    this.driver.changed()
    return true
  }

  /**
   * Ends a lease: the worker goes to the oldest waiter, or back to the idle
   * list, or is finalized when invalid or the pool is closed. False (and no
   * change) when the slot is not leased, or no longer under `lease`.
   */
  release(slot: Slot<W>, lease: number = slot.lease): boolean {
    if (slot.state !== "leased" || slot.lease !== lease) return false
    this.driver.unleased(slot)
    if (slot.invalid || this.closed) {
      this.leased--
      this.finalize(slot)
      this.reconcile(true)
    } else if (this.queue.length !== 0) {
      this.handOff(slot, this.queue.head!)
    } else {
      this.leased--
      this.pushIdle(slot)
    }
    this.driver.changed()
    return true
  }

  /**
   * Takes a worker out of service. An idle one is finalized now; a leased one
   * is marked and finalized when its lease ends. False if already finalizing.
   */
  invalidate(slot: Slot<W>): boolean {
    if (slot.state === "idle") {
      this.unlinkIdle(slot)
      this.finalize(slot)
      this.reconcile(true)
      this.driver.changed()
      return true
    }
    if (slot.state === "leased" && !slot.invalid) {
      slot.invalid = true
      return true
    }
    return false
  }

  /** The driver made a worker for `op`. */
  created(op: CreateOp<W>, worker: W, handle: unknown): Slot<W> {
    this.creating--
    this.totals.created++
    const slot = new Slot(worker, handle)
    this.slots.set(worker, slot)
    if (op.owner !== undefined) op.owner.create = undefined
    if (this.closed) {
      this.finalize(slot)
    } else if (this.queue.length !== 0) {
      this.leased++
      this.handOff(slot, this.queue.head!)
      // It may have been a warm-up worker: keep `minIdle` warm.
      this.reconcile(true)
    } else {
      this.pushIdle(slot)
    }
    this.driver.changed()
    return slot
  }

  /** The driver failed to make a worker for `op`. */
  createFailed(op: CreateOp<W>, failure: unknown): void {
    this.creating--
    this.totals.createFailures++
    if (!this.closed) {
      const target = op.owner ?? (op.demand ? this.queue.head : undefined)
      if (target !== undefined) {
        this.unlinkWaiter(target)
        target.fail({ createFailure: failure })
      }
      // A failed warm-up is retried on the next acquire or release, not in a loop.
      this.reconcile(op.demand)
    }
    this.driver.changed()
  }

  /** The driver finished finalizing `slot`. */
  finalized(slot: Slot<W>): void {
    if (slot.state !== "finalizing") return
    slot.state = "finalized"
    this.finalizing--
    this.totals.finalized++
    this.slots.delete(slot.worker)
    this.driver.changed()
  }

  /** The single timer fired: expire waiters and retire idle workers that are due. */
  onTimer(): void {
    this.timerAt = undefined
    const now = this.driver.now()
    let top = this.deadlines.peek()
    while (top !== undefined && top.deadline <= now) {
      const queuedAhead = this.queue.countAhead(top)
      this.unlinkWaiter(top)
      const waitedMs = now - top.enqueuedAt
      top.fail(withoutStack(() => new AcquireTimeoutError({ waitedMs, queuedAhead, poolSize: this.settings.size })))
      top = this.deadlines.peek()
    }
    const { idleTimeout, minIdle } = this.settings
    if (idleTimeout > 0) {
      let slot = this.idleHead
      while (slot !== undefined && this.idle > minIdle && slot.idleSince + idleTimeout <= now) {
        this.unlinkIdle(slot)
        this.finalize(slot)
        slot = this.idleHead
      }
    }
    this.armTimer()
    this.driver.changed()
  }

  /**
   * Closes the pool: every waiter fails with `PoolShutdownError` in queue
   * order, idle workers are finalized, leased ones will be when released, and
   * workers still being created are finalized when they arrive.
   */
  shutdown(): void {
    if (this.closed) return
    this.closed = true
    for (let w = this.queue.head; w !== undefined; w = this.queue.head) {
      this.unlinkWaiter(w)
      w.fail(withoutStack(() => new PoolShutdownError()))
    }
    for (let s = this.idleHead; s !== undefined; s = this.idleHead) {
      this.unlinkIdle(s)
      this.finalize(s)
    }
    this.armTimer()
    this.driver.changed()
  }

  /** After shutdown: finalize workers whose lease has not ended (shutdown timeout). */
  finalizeLeased(): void {
    for (const slot of this.slots.values()) {
      if (slot.state === "leased") {
        this.driver.unleased(slot)
        this.leased--
        this.finalize(slot)
      }
    }
    this.driver.changed()
  }

  /** True once closed with nothing left leased, being created or being finalized. */
  get drained(): boolean {
    return this.closed && this.leased === 0 && this.creating === 0 && this.finalizing === 0
  }

  // ---------------------------------------------------------------------------

  private handOff(slot: Slot<W>, waiter: Waiter<W>): void {
    this.unlinkWaiter(waiter)
    slot.lease++
    const waitedMs = this.driver.now() - waiter.enqueuedAt
    this.driver.handedOff(waitedMs, this.queue.length)
    this.driver.leased(slot)
    waiter.succeed(slot, waitedMs)
  }

  private unlinkWaiter(waiter: Waiter<W>): void {
    this.queue.remove(waiter)
    if (waiter.heapIndex >= 0) this.deadlines.remove(waiter)
    if (waiter.create !== undefined) {
      waiter.create.owner = undefined
      waiter.create = undefined
    }
  }

  private startCreate(op: CreateOp<W>): void {
    if (op.owner !== undefined) op.owner.create = op
    this.creating++
    this.driver.create(op)
  }

  /** Starts creates for waiters nobody is making a worker for, and to keep `minIdle` warm. */
  private reconcile(warm: boolean): void {
    if (this.closed) return
    const { size, minIdle } = this.settings
    while (this.queue.length > this.creating && this.total < size) {
      this.startCreate(new CreateOp(undefined, true))
    }
    if (warm) {
      while (this.idle + this.creating - this.queue.length < minIdle && this.total < size) {
        this.startCreate(new CreateOp(undefined, false))
      }
    }
  }

  private finalize(slot: Slot<W>): void {
    slot.state = "finalizing"
    this.finalizing++
    this.driver.finalize(slot)
  }

  private pushIdle(slot: Slot<W>): void {
    slot.state = "idle"
    slot.idleSince = this.driver.now()
    slot.next = undefined
    slot.prev = this.idleTail
    if (this.idleTail === undefined) this.idleHead = slot
    else this.idleTail.next = slot
    this.idleTail = slot
    this.idle++
    if (this.settings.idleTimeout > 0 && this.idle > this.settings.minIdle) this.armTimer()
  }

  private unlinkIdle(slot: Slot<W>): void {
    const { prev, next } = slot
    if (prev === undefined) this.idleHead = next
    else prev.next = next
    if (next === undefined) this.idleTail = prev
    else next.prev = prev
    slot.prev = slot.next = undefined
    this.idle--
  }

  /** Points the timer at the earliest deadline or idle retirement. */
  private armTimer(): void {
    let at: number | undefined = this.deadlines.peek()?.deadline
    const { idleTimeout, minIdle } = this.settings
    if (idleTimeout > 0 && this.idleHead !== undefined && this.idle > minIdle) {
      const retireAt = this.idleHead.idleSince + idleTimeout
      if (at === undefined || retireAt < at) at = retireAt
    }
    if (at !== this.timerAt) {
      this.timerAt = at
      this.driver.setTimer(at)
    }
  }
}

/**
 * Builds an error without capturing a stack trace. For the errors the pool
 * makes in bulk (a timer expiring many waiters, shutdown failing the whole
 * queue): their stack would only show the pool's internals, and capturing it
 * costs most of the time of a large timeout storm.
 */
const withoutStack = <A>(make: () => A): A => {
  const limit = Error.stackTraceLimit
  Error.stackTraceLimit = 0
  try {
    return make()
  } finally {
    Error.stackTraceLimit = limit
  }
}

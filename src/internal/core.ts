/**
 * The pool's state machine: synchronous, allocation-light and independent of
 * how workers are made or how callers wait. `WorkerPool` (Effect) and the
 * promise facade both drive this one core; a `Driver` runs the asynchronous
 * parts (creating and finalizing workers, the single timer).
 *
 * Workers belong to accounts (worker groups: for a Codex pool, one API key
 * each). A pool without accounts has one, the default account, and behaves
 * exactly as a single FIFO pool. A worker of an account only ever serves
 * callers of that account.
 *
 * Guarantees, for every interleaving of calls:
 * - at most `size` workers are idle, leased or being created at once, across
 *   all accounts, and at most `maxWorkers` of each account;
 * - a worker of account A is never handed to a caller of account B;
 * - FIFO by capacity, within an account and across accounts: each unit of
 *   capacity that frees up (a release, a finalized or failed worker) goes to
 *   the oldest waiter that can use it: the oldest waiter of the released
 *   worker's account takes the worker itself; when an older waiter of another
 *   account (under its own cap, with no worker being made for it) exists, the
 *   released worker is retired instead and a worker is made for that waiter.
 *   So no waiter is overtaken by a later waiter that the same capacity could
 *   have served, and one account's long queue cannot starve another's request;
 * - an acquire never takes an idle worker while a waiter of its own account
 *   waits (no barging), and no idle worker stays idle while a waiter of its
 *   account waits;
 * - when the pool is at `size` and a waiter of B has no worker, the oldest idle
 *   worker of another account is retired to make room (eviction);
 * - a waiter that leaves (abort, interruption, timeout) is unlinked at once in
 *   O(1) (O(log n) when it has a deadline);
 * - every waiter settles exactly once: with a worker, a create failure, a
 *   timeout, a full queue, its account's removal or shutdown;
 * - every created worker is finalized exactly once;
 * - an idle worker retires exactly `idleTimeout` after it became idle (one
 *   timer for the whole pool, driven by the driver's clock).
 *
 * Costs: with one account every operation is O(1) as before. With several,
 * choosing who gets freed capacity compares the oldest waiter of each account
 * (O(accounts)), and finding an account's first waiter no worker is being
 * made for walks at most `size` waiters. Account names are the operator's, so
 * their number is small. Taking an idle worker that was the preferred one
 * for its key walks the account's idle workers (at most `size`), to find
 * another that served the same key; workers without a key never do.
 *
 * Limits: workers that are being finalized no longer count toward `size`, so
 * a replacement may start while its predecessor is still shutting down.
 * `minIdle` applies to the default account only. An affinity preference
 * (`prefer`) only picks among idle workers: it never makes a caller wait.
 *
 * @internal
 */
import { AcquireTimeoutError, PoolShutdownError, QueueFullError } from "../errors.ts"
import { DeadlineHeap, WaiterLinks, WaiterList } from "./waiters.ts"

/** What a slot is doing. */
export type SlotState = "idle" | "leased" | "finalizing" | "finalized"

/** The name of the account a pool without accounts uses. */
export const DEFAULT_ACCOUNT = "default"

/** One worker and its bookkeeping. */
export class Slot<W> {
  state: SlotState = "leased"
  /** Counts the leases of this worker, so a stale release of an earlier lease is refused. */
  lease = 0
  /** Marked broken: finalized when its lease ends instead of being reused. */
  invalid = false
  /** Clock time at which it became idle (meaningful while idle). */
  idleSince = 0
  /** Pool-wide idle-list links (oldest idle first). */
  prev: Slot<W> | undefined = undefined
  next: Slot<W> | undefined = undefined
  /** Account idle-list links (oldest idle first). */
  aprev: Slot<W> | undefined = undefined
  anext: Slot<W> | undefined = undefined
  /** The affinity key of the lease that last held it, if any. */
  key: string | undefined = undefined
  readonly worker: W
  /** The driver's handle for finalizing this worker (a Scope, for example). */
  readonly handle: unknown
  readonly account: Account<W>
  constructor(worker: W, handle: unknown, account: Account<W>) {
    this.worker = worker
    this.handle = handle
    this.account = account
  }
}

/** An account: a group of workers started alike, and the waiters for them. */
export class Account<W> {
  readonly name: string
  /** Most workers of this account at once (idle, leased or being created). */
  readonly maxWorkers: number
  /** Removed at run time: no new acquires; workers are retired as they come back. */
  removed = false
  /** This account's waiters, oldest first. */
  readonly queue = new WaiterList<Waiter<W>>()
  idleHead: Slot<W> | undefined = undefined
  idleTail: Slot<W> | undefined = undefined
  idle = 0
  leased = 0
  creating = 0
  /** Idle workers by the affinity key they last served. */
  readonly byKey = new Map<string, Slot<W>>()
  constructor(name: string, maxWorkers: number) {
    this.name = name
    this.maxWorkers = maxWorkers
  }
  /** Workers of this account that count toward its cap. */
  get total(): number {
    return this.idle + this.leased + this.creating
  }
}

/**
 * Why a waiter failed: one of the pool's own errors, or whatever the driver
 * reports for a failed create (an Effect `Cause`, for the Effect driver).
 */
export type WaiterFailure =
  | PoolShutdownError
  | AcquireTimeoutError
  | QueueFullError
  | { readonly createFailure: unknown }
  | { readonly accountRemoved: string }

/** A caller waiting for a worker. Subclasses decide how the answer is delivered. */
export abstract class Waiter<W> extends WaiterLinks {
  /** Clock time at which it joined the queue. */
  enqueuedAt = 0
  /** Arrival order across all accounts. */
  seq = 0
  /** The account it waits for; set by `enqueue`. */
  account!: Account<W>
  /** The affinity key of the lease it asks for; the worker it gets records it. */
  key: string | undefined = undefined
  /** The create started on this waiter's behalf, if any. */
  create: CreateOp<W> | undefined = undefined
  /** Called once, after the waiter has left the queue, with its worker. */
  abstract succeed(slot: Slot<W>, waitedMs: number): void
  /** Called once, after the waiter has left the queue, with the reason. */
  abstract fail(failure: WaiterFailure): void
}

/** A worker being created. Its result goes to the oldest waiter of its account (or the idle list). */
export class CreateOp<W> {
  /** The waiter that caused it, while that waiter still waits. A failure goes to it. */
  owner: Waiter<W> | undefined
  /** Created for waiters (a failure must reach one) rather than to keep `minIdle` warm. */
  readonly demand: boolean
  /** The account the worker is made for. */
  readonly account: Account<W>
  constructor(owner: Waiter<W> | undefined, demand: boolean, account: Account<W>) {
    this.owner = owner
    this.demand = demand
    this.account = account
  }
}

/** The asynchronous side of the pool. */
export interface Driver<W> {
  now(): number
  /** Start making a worker for `op.account`; later call `core.created` or `core.createFailed` with `op`. */
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
  /** Observability hook: `waiter` joined the queue, which is now `queued` long. */
  enqueued(queued: number, waiter: Waiter<W>): void
  /** Observability hook: `waiter` is about to get a worker after waiting `waitedMs`; `queued` remain. */
  handedOff(waitedMs: number, queued: number, waiter: Waiter<W>): void
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
  private readonly deadlines = new DeadlineHeap<Waiter<W>>()
  /** Every slot not yet finalized, by worker, for `release(worker)` and `invalidate(worker)`. */
  readonly slots = new Map<W, Slot<W>>()
  /** The accounts by name; the default account always exists. */
  readonly accounts = new Map<string, Account<W>>()
  readonly defaultAccount: Account<W>
  /** Accounts with at least one waiter. */
  private readonly waiting = new Set<Account<W>>()
  private idleHead: Slot<W> | undefined = undefined
  private idleTail: Slot<W> | undefined = undefined
  /** Waiters, across accounts. */
  queued = 0
  idle = 0
  leased = 0
  creating = 0
  finalizing = 0
  closed = false
  readonly totals: CoreTotals = { created: 0, finalized: 0, createFailures: 0 }
  private seq = 0
  private timerAt: number | undefined = undefined
  private driver!: Driver<W>

  readonly settings: CoreSettings

  constructor(settings: CoreSettings, defaultMaxWorkers: number = Infinity) {
    this.settings = settings
    this.defaultAccount = new Account<W>(DEFAULT_ACCOUNT, defaultMaxWorkers)
    this.accounts.set(DEFAULT_ACCOUNT, this.defaultAccount)
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

  /**
   * Adds an account. False (and no change) when one of that name exists.
   */
  addAccount(name: string, maxWorkers: number = Infinity): boolean {
    if (this.accounts.has(name)) return false
    this.accounts.set(name, new Account<W>(name, maxWorkers))
    return true
  }

  /**
   * Removes an account: its waiters fail (in queue order), its idle workers
   * are finalized, its leased ones are finalized when released, and workers
   * still being made for it are finalized when they arrive. The default
   * account cannot be removed. False when there is no such account.
   */
  removeAccount(name: string): boolean {
    const account = this.accounts.get(name)
    if (account === undefined || account === this.defaultAccount) return false
    this.accounts.delete(name)
    account.removed = true
    for (let w = account.queue.head; w !== undefined; w = account.queue.head) {
      this.unlinkWaiter(w)
      w.fail({ accountRemoved: name })
    }
    for (let s = account.idleHead; s !== undefined; s = account.idleHead) {
      this.unlinkIdle(s)
      this.finalize(s)
    }
    for (const slot of this.slots.values()) {
      if (slot.account === account && slot.state === "leased") slot.invalid = true
    }
    this.serve()
    this.armTimer()
    this.driver.changed()
    return true
  }

  /**
   * Takes an idle worker of `account` when none of its callers waits; the
   * fast path of every acquire. With `key`, the idle worker that last served
   * that key is preferred.
   */
  take(account: Account<W> = this.defaultAccount, key?: string): Slot<W> | undefined {
    if (account.queue.length !== 0) return undefined
    let slot = account.idleTail
    if (slot === undefined) return undefined
    if (key !== undefined) {
      const preferred = account.byKey.get(key)
      if (preferred !== undefined) slot = preferred
    }
    this.unlinkIdle(slot)
    this.lease(slot, key)
    this.reconcile(true)
    this.driver.changed()
    return slot
  }

  /**
   * Queues a waiter of `account` (after `take` found nothing). It settles
   * later through `succeed` / `fail`, or right away when the pool is closed,
   * the account removed or the queue full. `timeout` overrides the pool's
   * acquire timeout (0: none).
   */
  enqueue(
    waiter: Waiter<W>,
    timeout: number = this.settings.acquireTimeout,
    account: Account<W> = this.defaultAccount
  ): void {
    if (this.closed) return waiter.fail(new PoolShutdownError())
    if (account.removed) return waiter.fail({ accountRemoved: account.name })
    waiter.account = account
    // A caller may run other work between its `take` and this call (a fiber
    // can yield in between): a worker that went idle meanwhile is served now.
    if (account.queue.length === 0 && account.idle !== 0) return waiter.succeed(this.take(account, waiter.key)!, 0)
    // `maxQueue` bounds the waiters left for a release: those a new worker is
    // being (or can be) created for do not count.
    if (this.total >= this.settings.size && this.queued - this.creating >= this.settings.maxQueue) {
      return waiter.fail(new QueueFullError({ maxQueue: this.settings.maxQueue, poolSize: this.settings.size }))
    }
    const now = this.driver.now()
    waiter.enqueuedAt = now
    waiter.seq = this.seq++
    account.queue.push(waiter)
    this.queued++
    this.waiting.add(account)
    if (timeout > 0) {
      waiter.deadline = now + timeout
      this.deadlines.push(waiter)
      if (this.timerAt === undefined || waiter.deadline < this.timerAt) this.armTimer()
    }
    this.driver.enqueued(this.queued, waiter)
    // May complete synchronously (and hand the new worker over) when the driver's create does.
    if (account.queue.length > account.creating) this.serve(waiter)
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
   * Ends a lease: the worker goes to the oldest waiter of its account, unless
   * an older waiter of another account can use the capacity (then it is
   * retired and a worker made for that waiter); else back to the idle list;
   * or finalized when invalid, its account removed, or the pool closed. False
   * (and no change) when the slot is not leased, or no longer under `lease`.
   */
  release(slot: Slot<W>, lease: number = slot.lease): boolean {
    if (slot.state !== "leased" || slot.lease !== lease) return false
    this.driver.unleased(slot)
    const account = slot.account
    if (slot.invalid || this.closed) {
      this.leased--
      account.leased--
      this.finalize(slot)
      this.reconcile(true)
    } else if (this.queued === 0) {
      this.leased--
      account.leased--
      this.pushIdle(slot)
    } else {
      const head = account.queue.head
      // One account waiting, the worker's own: the common case, with no search.
      const other = head !== undefined && this.waiting.size === 1 ? undefined : this.oldestEligible(account)
      if (head !== undefined && (other === undefined || head.seq < other.seq)) {
        this.handOff(slot, head)
      } else if (other !== undefined) {
        // An older waiter of another account gets this capacity.
        this.leased--
        account.leased--
        this.finalize(slot)
        this.serve()
      } else {
        this.leased--
        account.leased--
        this.pushIdle(slot)
      }
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
    const account = op.account
    this.creating--
    account.creating--
    this.totals.created++
    const slot = new Slot(worker, handle, account)
    this.slots.set(worker, slot)
    if (op.owner !== undefined) op.owner.create = undefined
    if (this.closed || account.removed) {
      this.finalize(slot)
      // Its capacity is free again (serve does nothing once closed).
      this.serve()
    } else if (account.queue.length !== 0) {
      this.leased++
      account.leased++
      this.handOff(slot, account.queue.head!)
      // It may have been a warm-up worker: keep `minIdle` warm.
      this.reconcile(true)
    } else {
      this.pushIdle(slot)
      // Nobody of its account waits any more: another account's waiter may need the room.
      if (this.queued !== 0) this.serve()
    }
    this.driver.changed()
    return slot
  }

  /** The driver failed to make a worker for `op`. */
  createFailed(op: CreateOp<W>, failure: unknown): void {
    const account = op.account
    this.creating--
    account.creating--
    this.totals.createFailures++
    if (!this.closed) {
      const target = op.owner ?? (op.demand ? account.queue.head : undefined)
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
      const queuedAhead = this.countAhead(top)
      this.unlinkWaiter(top)
      const waitedMs = now - top.enqueuedAt
      top.fail(withoutStack(() => new AcquireTimeoutError({ waitedMs, queuedAhead, poolSize: this.settings.size })))
      top = this.deadlines.peek()
    }
    if (this.settings.idleTimeout > 0) {
      let slot = this.firstRetirable()
      while (slot !== undefined && slot.idleSince + this.settings.idleTimeout <= now) {
        const next = slot.next
        this.unlinkIdle(slot)
        this.finalize(slot)
        slot = this.firstRetirable(next)
      }
    }
    this.armTimer()
    this.driver.changed()
  }

  /**
   * Closes the pool: every waiter fails with `PoolShutdownError` in arrival
   * order, idle workers are finalized, leased ones will be when released, and
   * workers still being created are finalized when they arrive.
   */
  shutdown(): void {
    if (this.closed) return
    this.closed = true
    for (let w = this.oldestWaiter(); w !== undefined; w = this.oldestWaiter()) {
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
        slot.account.leased--
        this.finalize(slot)
      }
    }
    this.driver.changed()
  }

  /** True once closed with nothing left leased, being created or being finalized. */
  get drained(): boolean {
    return this.closed && this.leased === 0 && this.creating === 0 && this.finalizing === 0
  }

  /** The oldest waiter of any account, or `undefined`. */
  oldestWaiter(): Waiter<W> | undefined {
    let oldest: Waiter<W> | undefined
    for (const account of this.waiting) {
      const head = account.queue.head!
      if (oldest === undefined || head.seq < oldest.seq) oldest = head
    }
    return oldest
  }

  // ---------------------------------------------------------------------------

  private lease(slot: Slot<W>, key: string | undefined): void {
    slot.state = "leased"
    slot.lease++
    slot.key = key
    this.leased++
    slot.account.leased++
    this.driver.leased(slot)
  }

  private handOff(slot: Slot<W>, waiter: Waiter<W>): void {
    this.unlinkWaiter(waiter)
    slot.lease++
    slot.key = waiter.key
    const waitedMs = this.driver.now() - waiter.enqueuedAt
    this.driver.handedOff(waitedMs, this.queued, waiter)
    this.driver.leased(slot)
    waiter.succeed(slot, waitedMs)
  }

  private unlinkWaiter(waiter: Waiter<W>): void {
    const account = waiter.account
    account.queue.remove(waiter)
    this.queued--
    if (account.queue.length === 0) this.waiting.delete(account)
    if (waiter.heapIndex >= 0) this.deadlines.remove(waiter)
    if (waiter.create !== undefined) {
      waiter.create.owner = undefined
      waiter.create = undefined
    }
  }

  /**
   * The first waiter of `account` that no worker is being made for: the
   * creates in flight will serve its oldest waiters. Walks at most `creating`.
   */
  private firstUncovered(account: Account<W>): Waiter<W> | undefined {
    let waiter = account.queue.head
    for (let n = account.creating; n > 0 && waiter !== undefined; n--) waiter = waiter.next as Waiter<W> | undefined
    return waiter
  }

  /**
   * The oldest waiter of an account other than `except` that could use freed
   * capacity: under its account's cap, with no worker being made for it.
   */
  private oldestEligible(except: Account<W> | undefined): Waiter<W> | undefined {
    let oldest: Waiter<W> | undefined
    for (const account of this.waiting) {
      if (account === except || account.total >= account.maxWorkers) continue
      const waiter = this.firstUncovered(account)
      if (waiter !== undefined && (oldest === undefined || waiter.seq < oldest.seq)) oldest = waiter
    }
    return oldest
  }

  /**
   * Gives free capacity to waiters, oldest first: starts a create for each
   * eligible waiter while the pool is under `size`, and retires the oldest idle
   * worker of another account when it is at `size`. `hint`, a waiter that
   * just joined, short-cuts the search when it is the only candidate.
   */
  private serve(hint?: Waiter<W>): void {
    if (this.closed) return
    for (;;) {
      const waiter = hint !== undefined && this.waiting.size === 1
        ? (hint.account.total < hint.account.maxWorkers && hint.account.queue.length > hint.account.creating
          ? this.firstUncovered(hint.account)
          : undefined)
        : this.oldestEligible(undefined)
      if (waiter === undefined) return
      if (this.total < this.settings.size) {
        // Creates serve an account's oldest waiters in turn; the waiter owns this
        // one (gets its failure) unless it already owns another.
        this.startCreate(new CreateOp(waiter.create === undefined ? waiter : undefined, true, waiter.account))
        continue
      }
      // At `size`: make room by retiring the oldest idle worker (of another
      // account: the waiter's own would have served it).
      const victim = this.idleHead
      if (victim === undefined) return
      this.unlinkIdle(victim)
      this.finalize(victim)
    }
  }

  private startCreate(op: CreateOp<W>): void {
    if (op.owner !== undefined) op.owner.create = op
    this.creating++
    op.account.creating++
    this.driver.create(op)
  }

  /** Serves waiters nobody is making a worker for, and keeps `minIdle` warm. */
  private reconcile(warm: boolean): void {
    if (this.closed) return
    if (this.queued !== 0) this.serve()
    if (warm) {
      const { size, minIdle } = this.settings
      const account = this.defaultAccount
      while (
        account.idle + account.creating - account.queue.length < minIdle && this.total < size &&
        account.total < account.maxWorkers
      ) {
        this.startCreate(new CreateOp(undefined, false, account))
      }
    }
  }

  private finalize(slot: Slot<W>): void {
    slot.state = "finalizing"
    this.finalizing++
    this.driver.finalize(slot)
  }

  private pushIdle(slot: Slot<W>): void {
    const account = slot.account
    slot.state = "idle"
    slot.idleSince = this.driver.now()
    slot.next = undefined
    slot.prev = this.idleTail
    if (this.idleTail === undefined) this.idleHead = slot
    else this.idleTail.next = slot
    this.idleTail = slot
    slot.anext = undefined
    slot.aprev = account.idleTail
    if (account.idleTail === undefined) account.idleHead = slot
    else account.idleTail.anext = slot
    account.idleTail = slot
    if (slot.key !== undefined) account.byKey.set(slot.key, slot)
    this.idle++
    account.idle++
    if (this.settings.idleTimeout > 0) this.armTimer()
  }

  private unlinkIdle(slot: Slot<W>): void {
    const { prev, next } = slot
    if (prev === undefined) this.idleHead = next
    else prev.next = next
    if (next === undefined) this.idleTail = prev
    else next.prev = prev
    slot.prev = slot.next = undefined
    const account = slot.account
    const { aprev, anext } = slot
    if (aprev === undefined) account.idleHead = anext
    else aprev.anext = anext
    if (anext === undefined) account.idleTail = aprev
    else anext.aprev = aprev
    slot.aprev = slot.anext = undefined
    if (slot.key !== undefined && account.byKey.get(slot.key) === slot) {
      // Another idle worker may have served the key too (two leases with the
      // same key): the most recent of them is the one to prefer now.
      let other = account.idleTail
      while (other !== undefined && other.key !== slot.key) other = other.aprev
      if (other === undefined) account.byKey.delete(slot.key)
      else account.byKey.set(slot.key, other)
    }
    this.idle--
    account.idle--
  }

  /**
   * The oldest idle worker from `from` on that idle retirement may take: the
   * default account keeps `minIdle` idle workers (its newest).
   */
  private firstRetirable(from: Slot<W> | undefined = this.idleHead): Slot<W> | undefined {
    const { minIdle } = this.settings
    const protectedDefault = this.defaultAccount.idle <= minIdle
    let slot = from
    while (slot !== undefined && protectedDefault && slot.account === this.defaultAccount) slot = slot.next
    return slot
  }

  /** How many waiters (of every account) arrived before `waiter` and still wait. */
  private countAhead(waiter: Waiter<W>): number {
    let n = waiter.account.queue.countAhead(waiter)
    if (this.waiting.size > 1) {
      for (const account of this.waiting) {
        if (account === waiter.account) continue
        for (let w = account.queue.head; w !== undefined && w.seq < waiter.seq; w = w.next as Waiter<W> | undefined) n++
      }
    }
    return n
  }

  /** Points the timer at the earliest deadline or idle retirement. */
  private armTimer(): void {
    let at: number | undefined = this.deadlines.peek()?.deadline
    if (this.settings.idleTimeout > 0) {
      const slot = this.firstRetirable()
      if (slot !== undefined) {
        const retireAt = slot.idleSince + this.settings.idleTimeout
        if (at === undefined || retireAt < at) at = retireAt
      }
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

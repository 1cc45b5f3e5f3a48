/**
 * Property tests of the pool core with several accounts: random schedules of
 * acquires (with and without an affinity key, some with a timeout), releases,
 * cancels, invalidations, creates that complete or fail in any order,
 * finalizations, clock steps, account removal and re-adding, and shutdown, on
 * a synchronous driver whose clock the schedule advances (the core's only
 * time source, as the TestClock is for `WorkerPool`).
 *
 * After every step the model checks the fairness policy (README "Accounts and
 * per-user API keys"): isolation (a worker of A never reaches a caller of B),
 * the global and per-account caps, FIFO within an account, FIFO by capacity
 * across accounts (no create or hand-off goes to a waiter while an older
 * waiter of another account could have used that capacity), work
 * conservation (no eligible waiter is left without a worker while capacity or
 * an idle worker it could use exists), affinity (an idle worker that last
 * served the key is the one handed out), and the core's counts against the
 * model's.
 */
import { describe, expect, it } from "@effect/vitest"
import { Arbitrary, Schema } from "effect"
import { AcquireTimeoutError, PoolShutdownError, QueueFullError } from "../src/errors.ts"
import { type Account, type CreateOp, type Driver, PoolCore, type Slot, Waiter, type WaiterFailure } from "../src/internal/core.ts"

const Int = (minimum: number, maximum: number) => Schema.Int.check(Schema.isBetween({ minimum, maximum }))
const Pick = Int(0, 7)
const AccountIx = Int(0, 2)

const Config = Schema.Struct({
  size: Int(1, 4),
  /** Per-account caps of accounts a, b, c (0: none). */
  caps: Schema.Tuple([Int(0, 3), Int(0, 3), Int(0, 3)]),
  minIdle: Int(0, 2),
  idleTimeout: Schema.Literals([0, 100]),
  acquireTimeout: Schema.Literals([0, 50]),
  maxQueue: Schema.Literals([0, 2])
})
type Config = typeof Config.Type

// The frequent steps appear under two tags, so schedules have more of them.
/** `key` 3 is an acquire without an affinity key. */
const AcquireFields = { account: AccountIx, key: Int(0, 3), timeout: Schema.Boolean }
const Step = Schema.Union([
  Schema.TaggedStruct("Acquire", AcquireFields),
  Schema.TaggedStruct("Acquire2", AcquireFields),
  Schema.TaggedStruct("Release2", { pick: Pick }),
  Schema.TaggedStruct("CompleteCreate2", { pick: Pick, ok: Schema.Literal(true) }),
  Schema.TaggedStruct("Burst", { account: AccountIx, count: Int(2, 4) }),
  Schema.TaggedStruct("Release", { pick: Pick }),
  Schema.TaggedStruct("Cancel", { pick: Pick }),
  Schema.TaggedStruct("Invalidate", { pick: Pick }),
  Schema.TaggedStruct("CompleteCreate", { pick: Pick, ok: Schema.Boolean }),
  Schema.TaggedStruct("CompleteFinalize", { pick: Pick }),
  Schema.TaggedStruct("Advance", { ms: Schema.Literals([1, 50, 100]) }),
  Schema.TaggedStruct("RemoveAccount", { account: Int(1, 2) }),
  Schema.TaggedStruct("AddAccount", { account: Int(1, 2) }),
  Schema.TaggedStruct("Shutdown", {})
])
type Step = typeof Step.Type

const ACCOUNTS = ["default", "b", "c"] as const

interface Worker {
  readonly id: number
  readonly account: string
}

class TestWaiter extends Waiter<Worker> {
  outcome: "waiting" | "served" | "failed" = "waiting"
  slot: Slot<Worker> | undefined
  failure: WaiterFailure | undefined
  readonly id: number
  readonly accountName: string
  readonly onServed: (waiter: TestWaiter, slot: Slot<Worker>) => void
  constructor(id: number, accountName: string, onServed: (waiter: TestWaiter, slot: Slot<Worker>) => void) {
    super()
    this.id = id
    this.accountName = accountName
    this.onServed = onServed
  }
  succeed(slot: Slot<Worker>): void {
    if (this.outcome !== "waiting") throw new Error(`waiter #${this.id} settled twice`)
    this.outcome = "served"
    this.slot = slot
    this.onServed(this, slot)
  }
  fail(failure: WaiterFailure): void {
    if (this.outcome !== "waiting") throw new Error(`waiter #${this.id} settled twice`)
    this.outcome = "failed"
    this.failure = failure
  }
}

/** Runs one schedule; throws with the trace when an invariant breaks. */
const run = (config: Config, steps: ReadonlyArray<Step>): void => {
  let now = 0
  let timerAt: number | undefined
  const creates: Array<CreateOp<Worker>> = []
  const finalizing: Array<Slot<Worker>> = []
  const held: Array<{ slot: Slot<Worker>; lease: number; key: string | undefined }> = []
  const waiters: Array<TestWaiter> = []
  const trace: Array<string> = []
  let nextWorker = 1
  let nextWaiter = 1
  /** Creates started and hand-offs made during the current step, to check FIFO by capacity. */
  let assigned: Array<TestWaiter> = []
  let inRelease = false
  const fail = (message: string): never => {
    throw new Error(`${message}\nconfig: ${JSON.stringify(config)}\ntrace:\n${trace.join("\n")}`)
  }
  const driver: Driver<Worker> = {
    now: () => now,
    create: (op) => {
      creates.push(op)
      if (op.owner !== undefined) assigned.push(op.owner as TestWaiter)
    },
    finalize: (slot) => void finalizing.push(slot),
    setTimer: (at) => {
      timerAt = at
    },
    leased: () => {},
    unleased: () => {},
    changed: () => {},
    enqueued: () => {},
    handedOff: () => {}
  }
  const core = new PoolCore<Worker>({
    size: config.size,
    maxQueue: config.maxQueue === 0 ? Infinity : config.maxQueue,
    acquireTimeout: config.acquireTimeout,
    idleTimeout: config.idleTimeout,
    minIdle: Math.min(config.minIdle, config.size)
  }, config.caps[0] === 0 ? Infinity : config.caps[0])
  const capOf = (i: number) => config.caps[i] === 0 ? Infinity : config.caps[i]!
  core.addAccount("b", capOf(1))
  core.addAccount("c", capOf(2))
  const onServed = (waiter: TestWaiter, slot: Slot<Worker>) => {
    if (slot.worker.account !== waiter.accountName) {
      fail(`isolation: worker ${slot.worker.id} of ${slot.worker.account} reached waiter #${waiter.id} of ${waiter.accountName}`)
    }
    for (const other of waiters) {
      if (other.outcome === "waiting" && other.accountName === waiter.accountName && other.seq < waiter.seq && other.queued) {
        fail(`FIFO within ${waiter.accountName}: #${waiter.id} served while older #${other.id} waits`)
      }
    }
    held.push({ slot, lease: slot.lease, key: waiter.key })
    if (inRelease) assigned.push(waiter)
  }
  core.start(driver)

  const waiting = () => waiters.filter((w) => w.outcome === "waiting" && w.queued)
  const accountOf = (name: string): Account<Worker> | undefined => core.accounts.get(name)
  /** Waiters of `account` that the creates in flight for it will serve (its oldest). */
  const uncovered = (w: TestWaiter): boolean => {
    const account = w.account
    let position = 0
    for (let x = account.queue.head; x !== undefined && x !== w; x = x.next as Waiter<Worker> | undefined) position++
    return position >= account.creating
  }
  const eligible = (w: TestWaiter) => w.account.total < w.account.maxWorkers && uncovered(w)

  const check = () => {
    // Caps.
    if (core.total > config.size) fail(`capacity: ${core.total} workers > size ${config.size}`)
    for (const account of core.accounts.values()) {
      if (account.total > account.maxWorkers) fail(`cap of ${account.name}: ${account.total} > ${account.maxWorkers}`)
    }
    // Counts against the model.
    const live = [...core.slots.values()]
    const idleSlots = live.filter((s) => s.state === "idle")
    const leasedSlots = live.filter((s) => s.state === "leased")
    if (core.idle !== idleSlots.length) fail(`idle count ${core.idle} != ${idleSlots.length}`)
    if (core.leased !== leasedSlots.length) fail(`leased count ${core.leased} != ${leasedSlots.length}`)
    if (core.creating !== creates.length) fail(`creating count ${core.creating} != ${creates.length}`)
    if (core.queued !== waiting().length) fail(`queued count ${core.queued} != ${waiting().length}`)
    for (const account of [...core.accounts.values()]) {
      const idle = idleSlots.filter((s) => s.account === account).length
      const leased = leasedSlots.filter((s) => s.account === account).length
      const creating = creates.filter((op) => op.account === account).length
      if (account.idle !== idle || account.leased !== leased || account.creating !== creating) {
        fail(`counts of ${account.name}: idle ${account.idle}/${idle}, leased ${account.leased}/${leased}, creating ${account.creating}/${creating}`)
      }
    }
    if (core.closed) {
      if (waiting().length !== 0) fail("waiters left after shutdown")
      return
    }
    // Work conservation.
    for (const w of waiting()) {
      if (w.account.idle !== 0) fail(`idle worker of ${w.accountName} while #${w.id} waits`)
      if (eligible(w)) {
        if (core.total < config.size) fail(`free capacity (${core.total}/${config.size}) while eligible #${w.id} waits`)
        if (core.idle !== 0) fail(`an idle worker could be retired for eligible #${w.id}`)
      }
    }
    // FIFO by capacity: nothing assigned in this step went past an older waiter that could have used it.
    for (const w of assigned) {
      for (const v of waiting()) {
        if (v.accountName !== w.accountName && v.seq < w.seq && eligible(v)) {
          fail(`FIFO by capacity: #${w.id} (${w.accountName}) got capacity while older #${v.id} (${v.accountName}) could use it`)
        }
      }
    }
  }

  const acquire = (accountIx: number, key: number, timeout: boolean) => {
    const name = ACCOUNTS[accountIx]!
    const account = accountOf(name)
    const w = new TestWaiter(nextWaiter++, name, onServed)
    waiters.push(w)
    w.key = key === 3 ? undefined : `k${key}`
    if (account === undefined) return
    // What affinity must pick: the most recent idle worker of the account that last served the key.
    const preferred = w.key === undefined || account.queue.length !== 0
      ? undefined
      : [...core.slots.values()].filter((s) => s.state === "idle" && s.account === account && s.key === w.key)
    const slot = core.take(account, w.key)
    if (slot !== undefined) {
      if (preferred !== undefined && preferred.length > 0 && !preferred.includes(slot)) {
        fail(`affinity: #${w.id} asked for ${w.key}; an idle worker had it, got worker ${slot.worker.id}`)
      }
      w.outcome = "served"
      w.account = account
      onServed(w, slot)
      return
    }
    core.enqueue(w, timeout ? 50 : undefined, account)
  }

  for (const step of steps) {
    assigned = []
    trace.push(`t=${now} ${JSON.stringify(step)}`)
    try {
      runStep(step)
    } catch (error) {
      if (error instanceof Error && error.message.includes("\ntrace:")) throw error
      fail(String(error))
    }
    // Leases whose worker was finalized by removal or shutdown stay "held" until released: that is fine.
    check()
  }
  function runStep(step: Step): void {
    switch (step._tag) {
      case "Acquire":
      case "Acquire2":
        acquire(step.account, step.key, step.timeout)
        break
      case "Burst":
        for (let i = 0; i < step.count; i++) acquire(step.account, 3, false)
        break
      case "Release":
      case "Release2": {
        if (held.length === 0) break
        const [h] = held.splice(step.pick % held.length, 1)
        inRelease = true
        core.release(h!.slot, h!.lease)
        inRelease = false
        break
      }
      case "Cancel": {
        const list = waiting()
        if (list.length === 0) break
        const w = list[step.pick % list.length]!
        if (core.cancel(w)) w.outcome = "failed"
        break
      }
      case "Invalidate": {
        const live = [...core.slots.values()].filter((s) => s.state === "idle" || s.state === "leased")
        if (live.length === 0) break
        core.invalidate(live[step.pick % live.length]!)
        break
      }
      case "CompleteCreate":
      case "CompleteCreate2": {
        if (creates.length === 0) break
        const [op] = creates.splice(step.pick % creates.length, 1)
        if (step.ok) core.created(op!, { id: nextWorker++, account: op!.account.name }, undefined)
        else core.createFailed(op!, new Error("create failed"))
        break
      }
      case "CompleteFinalize": {
        if (finalizing.length === 0) break
        const [slot] = finalizing.splice(step.pick % finalizing.length, 1)
        core.finalized(slot!)
        break
      }
      case "Advance":
        now += step.ms
        if (timerAt !== undefined && timerAt <= now) core.onTimer()
        break
      case "RemoveAccount": {
        core.removeAccount(ACCOUNTS[step.account]!)
        break
      }
      case "AddAccount":
        core.addAccount(ACCOUNTS[step.account]!, capOf(step.account))
        break
      case "Shutdown":
        core.shutdown()
        break
    }
  }
  // Every waiter settled or still waits; every failure is one of the pool's own.
  for (const w of waiters) {
    if (w.outcome === "failed" && w.failure !== undefined) {
      const f = w.failure
      const known = f instanceof PoolShutdownError || f instanceof AcquireTimeoutError || f instanceof QueueFullError ||
        "createFailure" in f || "accountRemoved" in f
      if (!known) fail(`#${w.id} failed with an unexpected ${String(f)}`)
    }
  }
}

const RUNS = Number(process.env["WORKER_POOL_PROP_RUNS"] ?? 1000)
const SEED = Number(process.env["WORKER_POOL_PROP_SEED"] ?? 0)
const arbitraries = {
  config: Arbitrary.schema(Config),
  steps: Arbitrary.array(Arbitrary.schema(Step), { minLength: 20, maxLength: 80 })
}

/** Schedules with idle workers to choose from: keyed acquires and releases, few waiters. */
const AffinityStep = Schema.Union([
  Schema.TaggedStruct("Acquire", AcquireFields),
  Schema.TaggedStruct("Release", { pick: Pick }),
  Schema.TaggedStruct("Release2", { pick: Pick }),
  Schema.TaggedStruct("CompleteCreate", { pick: Pick, ok: Schema.Literal(true) })
])
const affinityArbitraries = {
  config: Arbitrary.map(Arbitrary.schema(Config), (c): Config => ({ ...c, size: 4, idleTimeout: 0 })),
  steps: Arbitrary.array(Arbitrary.schema(AffinityStep), { minLength: 20, maxLength: 80 }) as Arbitrary.Arbitrary<
    Array<Step>
  >
}

describe("PoolCore with accounts (random schedules)", () => {
  it.prop(
    "affinity: an acquire with a key gets the idle worker that last served it, when one is idle",
    affinityArbitraries,
    ({ config, steps }) => {
      run(config, steps)
    },
    { arbitrary: { runs: RUNS, seed: SEED + 12 } }
  )

  it.prop(
    "isolation, caps, FIFO within and across accounts, work conservation and affinity hold at every step",
    arbitraries,
    ({ config, steps }) => {
      run(config, steps)
    },
    { arbitrary: { runs: RUNS, seed: SEED + 11 } }
  )

  /** A core on a driver that completes finalizations at once and leaves creates to the test. */
  const makeCore = (size: number, capOfDefault = Infinity) => {
    const created: Array<CreateOp<Worker>> = []
    const finalized: Array<number> = []
    const core = new PoolCore<Worker>({ size, maxQueue: Infinity, acquireTimeout: 0, idleTimeout: 0, minIdle: 0 }, capOfDefault)
    core.addAccount("b")
    core.start({
      now: () => 0,
      create: (op) => void created.push(op),
      finalize: (slot) => {
        finalized.push(slot.worker.id)
        core.finalized(slot)
      },
      setTimer: () => {},
      leased: () => {},
      unleased: () => {},
      changed: () => {},
      enqueued: () => {},
      handedOff: () => {}
    })
    let nextId = 1
    const complete = () => {
      const op = created.shift()!
      core.created(op, { id: nextId++, account: op.account.name }, undefined)
    }
    const served: Array<string> = []
    let n = 0
    const enqueue = (account: string) => {
      const w = new TestWaiter(++n, account, (waiter) => served.push(`${waiter.accountName}#${waiter.id}`))
      core.enqueue(w, 0, core.accounts.get(account)!)
      return w
    }
    return { core, created, finalized, complete, served, enqueue }
  }

  it("a single request of another account waits only for the waiters that arrived before it", () => {
    const { complete, core, created, enqueue, finalized, served } = makeCore(2)
    const early = Array.from({ length: 4 }, () => enqueue("default"))
    complete()
    complete()
    const b = enqueue("b")
    const late = Array.from({ length: 4 }, () => enqueue("default"))
    // Releases go to a's earlier waiters, then the capacity goes to b: a's worker is retired, b's is made.
    core.release(early[0]!.slot!)
    core.release(early[1]!.slot!)
    expect(served).toEqual(["default#1", "default#2", "default#3", "default#4"])
    core.release(early[2]!.slot!)
    expect(finalized).toEqual([1])
    expect(created.map((op) => op.account.name)).toEqual(["b"])
    core.release(early[3]!.slot!)
    // b already has a worker being made for it, so this release serves the oldest late waiter.
    expect(served.at(-1)).toBe("default#6")
    complete()
    expect(b.outcome).toBe("served")
    expect(b.slot!.worker.account).toBe("b")
    expect(late[0]!.outcome).toBe("served")
    expect(late[1]!.outcome).toBe("waiting")
  })

  it("with a cap on the busy account, another account's request is served at once", () => {
    const { complete, core, created, enqueue } = makeCore(2, 1)
    const a = Array.from({ length: 5 }, () => enqueue("default"))
    expect(created.map((op) => op.account.name)).toEqual(["default"])
    complete()
    const b = enqueue("b")
    expect(created.map((op) => op.account.name)).toEqual(["b"])
    complete()
    expect(b.outcome).toBe("served")
    expect(a.filter((w) => w.outcome === "served")).toHaveLength(1)
    expect(core.accounts.get("default")!.total).toBe(1)
  })

  it("an idle worker of another account is retired to make room at poolSize", () => {
    const { complete, core, created, enqueue, finalized } = makeCore(1)
    const a = enqueue("default")
    complete()
    core.release(a.slot!)
    expect(core.idle).toBe(1)
    const b = enqueue("b")
    expect(finalized).toEqual([1])
    expect(created.map((op) => op.account.name)).toEqual(["b"])
    complete()
    expect(b.slot!.worker).toEqual({ id: 2, account: "b" })
  })

  it("prefer picks the idle worker that last served the key, and never waits for a busy one", () => {
    const { complete, core, enqueue } = makeCore(3)
    const w = [enqueue("default"), enqueue("default"), enqueue("default")]
    complete()
    complete()
    complete()
    const keyed = w.map((x, i) => {
      const slot = x.slot!
      slot.key = `thread-${i}`
      return slot
    })
    // Release in order 0, 1, 2: the most recent idle is 2; preferring thread-0 takes worker 1.
    for (const slot of keyed) core.release(slot)
    expect(core.take(core.defaultAccount, "thread-0")!.worker.id).toBe(1)
    // Unknown key: most recently used idle worker.
    expect(core.take(core.defaultAccount, "thread-9")!.worker.id).toBe(3)
    // thread-0's worker is busy now: preferring it takes what is idle.
    expect(core.take(core.defaultAccount, "thread-0")!.worker.id).toBe(2)
  })

  // Found by the WorkerPool accounts property (affinity): two idle workers had served the same key; the one the
  // index pointed at was taken for another key, and the index forgot the other one.
  it("prefer finds the other idle worker that served the key when the indexed one is taken", () => {
    const { complete, core, enqueue } = makeCore(3)
    const w = [enqueue("default"), enqueue("default"), enqueue("default")]
    complete()
    complete()
    complete()
    w[0]!.slot!.key = "thread-0"
    w[1]!.slot!.key = "thread-0"
    // Idle, oldest first: worker 1 (thread-0), worker 3 (no key), worker 2 (thread-0, indexed).
    core.release(w[0]!.slot!)
    core.release(w[2]!.slot!)
    core.release(w[1]!.slot!)
    // Worker 2 goes to another thread.
    expect(core.take(core.defaultAccount, "thread-1")!.worker.id).toBe(2)
    // Worker 1 still last served thread-0: it, not the most recent idle worker (3), is handed out.
    expect(core.take(core.defaultAccount, "thread-0")!.worker.id).toBe(1)
  })
})

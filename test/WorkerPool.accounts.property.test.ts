/**
 * Property tests of `WorkerPool` with accounts over random schedules run
 * under the `TestClock`: acquires of three accounts (with and without an
 * affinity key and a timeout), bursts, releases, interruptions,
 * invalidations, failing and gated creates, clock steps, accounts removed and
 * added again at run time, and shutdown, with fibers yielding at Effect's
 * budget or after every few operations.
 *
 * The pool's core is observed at its own calls (as `helpers/schedule.ts`
 * does), so the fairness policy (README "Accounts and per-user API keys",
 * FIFO by capacity) is checked where it acts, through the Effect driver:
 *
 * - isolation: a worker made for account A (of one incarnation of A: a
 *   removed and re-added account is another) only ever reaches callers of it;
 * - caps: at most `size` workers (idle, leased or being created) across
 *   accounts, at most `maxWorkers` of each, at every core call;
 * - FIFO within an account: a waiter is served only when no older waiter of
 *   its account still waits;
 * - the wait bound, FIFO by capacity across accounts: no capacity (a create
 *   started for a waiter, or a released worker handed over) goes to a waiter
 *   while an older waiter of another account could have used it (under its
 *   account's cap, with no worker being made for it). So a waiter waits at
 *   most for the waiters that arrived before it, and for its own account's
 *   cap;
 * - work conservation: once the fibers have settled, no waiter waits beside
 *   an idle worker of its account, or while capacity it could use is free or
 *   could be freed by retiring another account's idle worker (eviction);
 * - affinity: an acquire with a key gets an idle worker that last served that
 *   key whenever one is idle;
 * - every acquire settles exactly once with a legitimate outcome (a worker,
 *   a timeout, a failed create, `AccountRemovedError` for the waiters of a
 *   removed account, `UnknownAccountError` for an acquire naming none,
 *   `PoolShutdownError`), every removal completes once its workers are
 *   finalized, and every worker is finalized exactly once.
 *
 * Each property runs a fixed seed, so a failure reproduces; it shows the
 * shrunk schedule, the violation and a trace.
 */
import { describe, expect, it } from "@effect/vitest"
import { Arbitrary, Cause, Deferred, Duration, Effect, Exit, Fiber, Scheduler, Schema, Scope } from "effect"
import { TestClock } from "effect/testing"
import {
  AccountExistsError,
  AccountRemovedError,
  AcquireTimeoutError,
  PoolShutdownError,
  UnknownAccountError
} from "../src/errors.ts"
import type { Account, PoolCore, Slot, Waiter, WaiterFailure } from "../src/internal/core.ts"
import { CoreKey, type Internals } from "../src/internal/poolInternals.ts"
import * as WorkerPool from "../src/WorkerPool.ts"
import { countingScheduler } from "./helpers/failFast.ts"

const Int = (minimum: number, maximum: number) => Schema.Int.check(Schema.isBetween({ minimum, maximum }))
const Pick = Int(0, 7)
const AccountIx = Int(0, 2)

const Config = Schema.Struct({
  size: Int(1, 4),
  /** Caps of "default", "a", "b" (0: none). */
  caps: Schema.Tuple([Int(0, 3), Int(0, 3), Int(0, 3)]),
  minIdle: Int(0, 1),
  idleTimeout: Schema.Literals([0, 100]),
  opsBeforeYield: Schema.optional(Schema.Literals([3, 4, 5, 7, 10, 16]))
})
type Config = typeof Config.Type

/** The pool's duration for a limit of the model, in milliseconds with 0 for no limit: `Duration.infinity` for 0. */
const limitOf = (ms: number): Duration.Duration => (ms === 0 ? Duration.infinity : Duration.millis(ms))

/** `prefer` 3: no key. */
const AcquireFields = { account: AccountIx, prefer: Int(0, 3), timeout: Schema.Literals([0, 50]) }
const Step = Schema.Union([
  Schema.TaggedStruct("Acquire", AcquireFields),
  Schema.TaggedStruct("Acquire2", AcquireFields),
  Schema.TaggedStruct("Burst", { account: AccountIx, count: Int(2, 4) }),
  Schema.TaggedStruct("Release", { pick: Pick }),
  Schema.TaggedStruct("Release2", { pick: Pick }),
  Schema.TaggedStruct("Interrupt", { pick: Pick }),
  Schema.TaggedStruct("Invalidate", { pick: Pick }),
  Schema.TaggedStruct("FailCreates", { count: Schema.Literals([1, 3]) }),
  Schema.TaggedStruct("CloseGate", {}),
  Schema.TaggedStruct("OpenGate", {}),
  Schema.TaggedStruct("Advance", { ms: Schema.Literals([1, 50, 100]) }),
  Schema.TaggedStruct("RemoveAccount", { account: Int(1, 2) }),
  Schema.TaggedStruct("AddAccount", { account: Int(1, 2) })
])
type Step = typeof Step.Type

const NAMES = ["default", "a", "b"] as const

interface AWorker {
  readonly id: number
  /** The account and its incarnation: "a@2" is account a as added the second time. */
  readonly owner: string
}

class CreateFailed extends Error {
  readonly attempt: number
  constructor(attempt: number) {
    super(`create #${attempt} failed`)
    this.attempt = attempt
  }
}

type Status = "waiting" | "holding" | "released" | "failed" | "interrupted"

interface Rec {
  readonly id: number
  /** The account's incarnation the acquire asked for ("" when none was live: it must fail at once). */
  readonly owner: string
  readonly account: string
  readonly prefer: string | undefined
  readonly scope: Scope.Closeable
  readonly done: Deferred.Deferred<void>
  fiber: Fiber.Fiber<void> | undefined
  status: Status
  outcomes: number
  interruptSent: boolean
  worker: AWorker | undefined
  error: unknown
  /** The waiter the core queued for it, if it queued. */
  waiter: Waiter<AWorker> | undefined
  /** Handed a worker by the core (observed at the core's call). */
  coreServed: boolean
  /** Failed by the core with the removal of its account. */
  removedWhileWaiting: boolean
}

const run = (config: Config, steps: ReadonlyArray<Step>) =>
  Effect.gen(function*() {
    const { counter, scheduler } = countingScheduler(yield* Scheduler.Scheduler, config.opsBeforeYield)
    return yield* Effect.provideService(runWith(config, steps, counter), Scheduler.Scheduler, scheduler)
  })

const runWith = (config: Config, steps: ReadonlyArray<Step>, counter: { readonly pending: number }) =>
  Effect.gen(function*() {
    const violations: Array<string> = []
    const trace: Array<string> = []
    const violate = (message: string) => void violations.push(message)
    const capOf = (ix: number) => config.caps[ix] === 0 ? undefined : config.caps[ix]

    // --- workers -----------------------------------------------------------------
    let attempts = 0
    let nextWorker = 1
    const failing = new Set<number>()
    const failingEver = new Set<number>()
    let gate: Deferred.Deferred<void> | undefined
    const gates: Array<Deferred.Deferred<void>> = []
    const created: Array<AWorker> = []
    const finalized = new Map<number, number>()
    const byId = new Map<number, AWorker>()
    const acquireOf = (owner: string) =>
      Effect.suspend(() => {
        const attempt = ++attempts
        const wait = gate === undefined ? Effect.void : Deferred.await(gate)
        return Effect.andThen(
          wait,
          Effect.acquireRelease(
            Effect.suspend(() => {
              if (failing.has(attempt)) return Effect.fail(new CreateFailed(attempt))
              const worker: AWorker = { id: nextWorker++, owner }
              created.push(worker)
              byId.set(worker.id, worker)
              return Effect.succeed(worker)
            }),
            (worker) => Effect.sync(() => void finalized.set(worker.id, (finalized.get(worker.id) ?? 0) + 1))
          )
        )
      })

    /** The live incarnation of each account ("a@1"), absent when removed. */
    const incarnation = new Map<string, number>([["default", 1], ["a", 1], ["b", 1]])
    /** The last incarnation of each account ever added. */
    const generations = new Map<string, number>([["a", 1], ["b", 1]])
    const ownerOf = (name: string) => incarnation.has(name) ? `${name}@${incarnation.get(name)}` : ""

    const poolScope = yield* Scope.make()
    const pool = yield* Scope.provide(
      WorkerPool.make({
        acquire: acquireOf("default@1"),
        size: config.size,
        maxWorkers: capOf(0),
        minIdle: Math.min(config.minIdle, config.size, capOf(0) ?? Infinity),
        idleTimeout: limitOf(config.idleTimeout),
        shutdownTimeout: "1 second",
        accounts: {
          a: { acquire: acquireOf("a@1"), maxWorkers: capOf(1) },
          b: { acquire: acquireOf("b@1"), maxWorkers: capOf(2) }
        }
      }),
      poolScope
    )
    const core: PoolCore<AWorker> = (pool as unknown as { readonly [CoreKey]: Internals<AWorker> })[CoreKey].core

    // --- the core, observed at its calls -------------------------------------------
    const recs: Array<Rec> = []
    const byFiber = new Map<Fiber.Fiber<unknown, unknown>, Rec>()
    const byWaiter = new Map<Waiter<AWorker>, Rec>()
    const currentRec = () => {
      const fiber = Fiber.getCurrent()
      return fiber === undefined ? undefined : byFiber.get(fiber)
    }
    /** Waiters still in the queue, as far as the model knows (pruned at every check). */
    const queued = new Set<Waiter<AWorker>>()
    /** The create each waiter owned when last seen. */
    const ownedCreate = new Map<Waiter<AWorker>, unknown>()
    let depth = 0
    let inRelease = 0
    /** Waiters handed capacity during the current outermost core call. */
    let assigned: Array<Waiter<AWorker>> = []

    const positionIn = (w: Waiter<AWorker>): number => {
      let n = 0
      for (let x = w.account.queue.head; x !== undefined && x !== w; x = x.next as Waiter<AWorker> | undefined) n++
      return n
    }
    /** Could use freed capacity: under its account's cap, and no create in flight covers it. */
    const eligible = (w: Waiter<AWorker>) => w.account.total < w.account.maxWorkers && positionIn(w) >= w.account.creating

    const checkCore = (what: string) => {
      // Caps, at every core call.
      if (core.total > config.size) violate(`${what}: ${core.total} workers > size ${config.size}`)
      for (const account of core.accounts.values()) {
        const cap = capOf(NAMES.indexOf(account.name as typeof NAMES[number])) ?? Infinity
        if (account.total > cap) violate(`${what}: ${account.name} has ${account.total} workers > its cap ${cap}`)
      }
      for (const w of queued) if (!w.queued) queued.delete(w)
      // New owners of creates are handed capacity.
      for (const w of queued) {
        if (w.create !== undefined && ownedCreate.get(w) !== w.create) assigned.push(w)
        ownedCreate.set(w, w.create)
      }
      // The wait bound: nobody was handed capacity an older waiter of another account could have used.
      for (const v of assigned) {
        for (const w of queued) {
          if (w.account !== v.account && w.seq < v.seq && eligible(w)) {
            violate(
              `${what}: FIFO by capacity: #${byWaiter.get(v)?.id} (${v.account.name}) got capacity while older ` +
                `#${byWaiter.get(w)?.id} (${w.account.name}) could have used it`
            )
          }
        }
      }
      assigned = []
    }

    const observe = <K extends "take" | "cancel" | "release" | "invalidate" | "created" | "createFailed" | "finalized" | "onTimer" | "shutdown" | "finalizeLeased" | "addAccount" | "removeAccount" | "enqueue">(name: K) => {
      const original = core[name] as (...args: Array<any>) => any
      ;(core as any)[name] = function(this: PoolCore<AWorker>, ...args: Array<any>) {
        depth++
        if (name === "release") inRelease++
        try {
          return original.apply(this, args)
        } finally {
          if (name === "release") inRelease--
          if (--depth === 0) checkCore(name)
        }
      }
    }

    const onCoreServed = (rec: Rec, slot: Slot<AWorker>, fromQueue: Waiter<AWorker> | undefined) => {
      if (slot.worker.owner !== rec.owner) {
        violate(`isolation: worker ${slot.worker.id} of ${slot.worker.owner} reached #${rec.id} of ${rec.owner || rec.account}`)
      }
      for (const w of queued) {
        if (w !== fromQueue && w.queued && w.account === (fromQueue?.account ?? core.accounts.get(rec.account)) &&
          (fromQueue === undefined || w.seq < fromQueue.seq)) {
          violate(`FIFO within ${rec.account}: #${rec.id} served while #${byWaiter.get(w)?.id}, queued before it, waits`)
        }
      }
      rec.coreServed = true
    }

    /** Takes with a key that an idle worker had served. */
    let preferredHits = 0
    const coreTake = core.take
    core.take = function(this: PoolCore<AWorker>, account?: Account<AWorker>, key?: string) {
      const rec = currentRec()
      const target = account ?? this.defaultAccount
      const keyed = key === undefined || target.queue.length !== 0
        ? []
        : [...this.slots.values()].filter((s) => s.state === "idle" && s.account === target && s.key === key)
      depth++
      let slot: Slot<AWorker> | undefined
      try {
        slot = coreTake.call(this, account, key)
      } finally {
        if (--depth === 0) checkCore("take")
      }
      if (slot !== undefined) {
        if (keyed.length > 0) preferredHits++
        if (keyed.length > 0 && !keyed.includes(slot)) {
          violate(`affinity: #${rec?.id} asked for ${key}; an idle worker had served it, got worker ${slot.worker.id}`)
        }
        if (rec !== undefined) onCoreServed(rec, slot, undefined)
      }
      return slot
    }
    /** Idle workers retired to make room for a waiter of another account. */
    let evictions = 0
    const coreEnqueue = core.enqueue
    core.enqueue = function(this: PoolCore<AWorker>, waiter: Waiter<AWorker>, ...rest: Array<any>) {
      const rec = currentRec()
      const idleBefore = [...this.slots.values()].filter((s) => s.state === "idle")
      if (rec !== undefined) {
        rec.waiter = waiter
        byWaiter.set(waiter, rec)
        const succeed = waiter.succeed
        const fail = waiter.fail
        waiter.succeed = function(this: Waiter<AWorker>, slot: Slot<AWorker>, waitedMs: number) {
          onCoreServed(rec, slot, this)
          if (inRelease > 0) assigned.push(this)
          return succeed.call(this, slot, waitedMs)
        }
        waiter.fail = function(this: Waiter<AWorker>, failure: WaiterFailure) {
          if ("accountRemoved" in failure) rec.removedWhileWaiting = true
          return fail.call(this, failure)
        }
      }
      depth++
      try {
        return coreEnqueue.call(this, waiter, ...rest)
      } finally {
        evictions += idleBefore.filter((s) => s.state !== "idle" && s.state !== "leased").length
        if (waiter.queued) queued.add(waiter)
        if (--depth === 0) checkCore("enqueue")
      }
    }
    for (const name of ["cancel", "release", "invalidate", "created", "createFailed", "finalized", "onTimer", "shutdown", "finalizeLeased", "addAccount", "removeAccount"] as const) {
      observe(name)
    }

    // --- acquires ---------------------------------------------------------------------
    const settle = Effect.gen(function*() {
      let rounds = 0
      do {
        yield* Effect.yieldNow
        if (++rounds > 10_000) return violate("the fibers did not settle")
      } while (counter.pending > 0)
    })
    const holding = () => recs.filter((r) => r.status === "holding")
    const waiting = () => recs.filter((r) => r.status === "waiting")
    let shutdownStarted = false

    const onAcquired = (rec: Rec, exit: Exit.Exit<AWorker, unknown>) => {
      if (++rec.outcomes > 1) violate(`#${rec.id} settled ${rec.outcomes} times`)
      if (Exit.isSuccess(exit)) {
        const worker = exit.value
        if (!rec.coreServed) violate(`#${rec.id} got worker ${worker.id} but the core never handed it one`)
        if (worker.owner !== rec.owner) violate(`isolation: #${rec.id} (${rec.owner}) holds worker of ${worker.owner}`)
        for (const other of holding()) {
          if (other.worker === worker) violate(`worker ${worker.id} held by #${other.id} and #${rec.id}`)
        }
        rec.status = "holding"
        rec.worker = worker
        return
      }
      if (Cause.hasInterrupts(exit.cause) && !Cause.hasFails(exit.cause)) {
        rec.status = "interrupted"
        if (!rec.interruptSent) violate(`#${rec.id} was interrupted without being asked to`)
        return
      }
      rec.status = "failed"
      const error = Cause.squash(exit.cause)
      rec.error = error
      const ok = error instanceof UnknownAccountError
        ? rec.owner === "" && error.account === rec.account
        : error instanceof AccountRemovedError
        ? rec.removedWhileWaiting && error.account === rec.account
        : error instanceof PoolShutdownError
        ? shutdownStarted
        : error instanceof AcquireTimeoutError
        ? error.waitedMs === 50
        : error instanceof CreateFailed
        ? failingEver.has(error.attempt)
        : false
      if (!ok) violate(`#${rec.id} (${rec.owner || rec.account}) failed with an unexpected ${String(error)}`)
    }

    const startAcquire = (accountIx: number, preferIx: number, timeout: number) =>
      Effect.gen(function*() {
        const account = NAMES[accountIx]!
        const rec: Rec = {
          id: recs.length,
          owner: ownerOf(account),
          account,
          prefer: preferIx === 3 ? undefined : `t${preferIx}`,
          scope: yield* Scope.make(),
          done: yield* Deferred.make<void>(),
          fiber: undefined,
          status: "waiting",
          outcomes: 0,
          interruptSent: false,
          worker: undefined,
          error: undefined,
          waiter: undefined,
          coreServed: false,
          removedWhileWaiting: false
        }
        recs.push(rec)
        const get = pool.getWith({
          ...(account === "default" && accountIx === 0 && rec.id % 2 === 0 ? {} : { account }),
          ...(rec.prefer === undefined ? {} : { prefer: rec.prefer }),
          timeout: limitOf(timeout)
        })
        const body = Effect.uninterruptibleMask((restore) =>
          Effect.flatMap(Effect.exit(restore(Scope.provide(get, rec.scope))), (exit) => {
            onAcquired(rec, exit)
            return Exit.isSuccess(exit) ? restore(Deferred.await(rec.done)) : Effect.void
          })
        ).pipe(Effect.ensuring(Effect.suspend(() => {
          if (rec.status === "holding") rec.status = "released"
          return Scope.close(rec.scope, Exit.void)
        })))
        const register = Effect.sync(() => void byFiber.set(Fiber.getCurrent()!, rec))
        rec.fiber = yield* Effect.forkChild(Effect.andThen(register, body))
        trace.push(`#${rec.id} acquire ${account}${rec.prefer === undefined ? "" : ` prefer ${rec.prefer}`}${timeout === 0 ? "" : ` timeout ${timeout}`}`)
        return rec
      })

    const release = (rec: Rec) =>
      Effect.gen(function*() {
        rec.status = "released"
        yield* Scope.close(rec.scope, Exit.void)
        yield* Deferred.succeed(rec.done, undefined)
      })

    const removals: Array<{ readonly name: string; readonly fiber: Fiber.Fiber<void, UnknownAccountError> }> = []

    /** Work conservation, once the fibers have settled. */
    const checkSettled = () => {
      if (core.closed) return
      for (const w of queued) {
        if (!w.queued) continue
        const rec = byWaiter.get(w)
        if (w.account.idle !== 0) violate(`#${rec?.id} waits beside an idle worker of ${w.account.name}`)
        if (eligible(w)) {
          if (core.total < config.size) violate(`#${rec?.id} (${w.account.name}) waits with capacity free (${core.total}/${config.size})`)
          if (core.idle !== 0) violate(`#${rec?.id} (${w.account.name}) waits while an idle worker could be retired for it`)
        }
      }
      for (const rec of waiting()) {
        if (rec.waiter === undefined && rec.fiber?.pollUnsafe() === undefined && counter.pending === 0) {
          violate(`#${rec.id} neither queued nor served after settling`)
        }
      }
    }

    const stepOnce = (step: Step) =>
      Effect.gen(function*() {
        switch (step._tag) {
          case "Acquire":
          case "Acquire2":
            yield* startAcquire(step.account, step.prefer, step.timeout)
            break
          case "Burst":
            for (let i = 0; i < step.count; i++) yield* startAcquire(step.account, 3, 0)
            break
          case "Release":
          case "Release2": {
            const held = holding()
            if (held.length === 0) break
            const rec = held[step.pick % held.length]!
            trace.push(`#${rec.id} releases worker ${rec.worker!.id}`)
            yield* release(rec)
            break
          }
          case "Interrupt": {
            const candidates = recs.filter((r) => r.status === "waiting" || r.status === "holding")
            if (candidates.length === 0) break
            const rec = candidates[step.pick % candidates.length]!
            trace.push(`#${rec.id} interrupted (${rec.status})`)
            rec.interruptSent = true
            yield* Fiber.interrupt(rec.fiber!)
            break
          }
          case "Invalidate": {
            const live = created.filter((w) => !finalized.has(w.id))
            if (live.length === 0) break
            const worker = live[step.pick % live.length]!
            trace.push(`invalidate worker ${worker.id}`)
            yield* pool.invalidate(worker)
            break
          }
          case "FailCreates":
            for (let i = 1; i <= step.count; i++) {
              failing.add(attempts + i)
              failingEver.add(attempts + i)
            }
            trace.push(`next ${step.count} create(s) fail`)
            break
          case "CloseGate":
            gate = yield* Deferred.make<void>()
            gates.push(gate)
            trace.push(`gate closed`)
            break
          case "OpenGate": {
            const g = gates.shift()
            if (g === undefined) break
            if (gate === g) gate = undefined
            trace.push(`gate opened`)
            yield* Deferred.succeed(g, undefined)
            break
          }
          case "Advance":
            trace.push(`advance ${step.ms} ms`)
            yield* TestClock.adjust(Duration.millis(step.ms))
            break
          case "RemoveAccount": {
            const name = NAMES[step.account]!
            trace.push(`remove ${name}`)
            const wasLive = incarnation.has(name)
            incarnation.delete(name)
            const fiber = yield* Effect.forkChild(pool.removeAccount(name), { startImmediately: true })
            if (wasLive) removals.push({ name, fiber })
            else {
              const exit = yield* Fiber.await(fiber)
              if (!(Exit.isFailure(exit) && Cause.squash(exit.cause) instanceof UnknownAccountError)) {
                violate(`removing ${name} twice did not fail with UnknownAccountError`)
              }
            }
            break
          }
          case "AddAccount": {
            const name = NAMES[step.account]!
            const live = incarnation.has(name)
            const next = generations.get(name)! + 1
            trace.push(`add ${name}${live ? " (exists)" : ` as ${name}@${next}`}`)
            const exit = yield* Effect.exit(pool.addAccount(name, { acquire: acquireOf(`${name}@${next}`), maxWorkers: capOf(step.account) }))
            if (live) {
              if (!(Exit.isFailure(exit) && Cause.squash(exit.cause) instanceof AccountExistsError)) {
                violate(`adding live ${name} did not fail with AccountExistsError`)
              }
            } else {
              if (Exit.isFailure(exit)) violate(`adding ${name} failed: ${Cause.pretty(exit.cause)}`)
              incarnation.set(name, next)
              generations.set(name, next)
            }
            break
          }
        }
      })

    const counts = () =>
      [...core.accounts.values()].map((a) => `${a.name}: ${a.leased}L ${a.idle}I ${a.creating}C ${a.queue.length}Q`).join(", ")

    yield* settle
    checkSettled()
    for (const step of steps) {
      if (violations.length > 0) break
      yield* stepOnce(step)
      yield* settle
      checkSettled()
      trace.push(`  ${counts()}`)
    }

    // --- the end: everything released, nothing left waiting, shutdown -----------------
    if (violations.length === 0) {
      trace.push(`end: open gates, stop failures, release everything`)
      for (const g of gates.splice(0)) yield* Deferred.succeed(g, undefined)
      gate = undefined
      failing.clear()
      yield* settle
      for (let round = 0; round <= recs.length && (holding().length > 0 || waiting().length > 0); round++) {
        for (const rec of holding()) yield* release(rec)
        yield* settle
      }
      const left = waiting()
      if (left.length > 0) violate(`${left.map((r) => `#${r.id}`).join(", ")} still wait with nothing held`)
      for (const { fiber, name } of removals) {
        if (fiber.pollUnsafe() === undefined) violate(`the removal of ${name} has not completed with nothing held`)
      }
      shutdownStarted = true
      yield* Scope.close(poolScope, Exit.void)
      yield* settle
      for (const rec of recs) {
        if (rec.outcomes !== 1) violate(`#${rec.id} settled ${rec.outcomes} times (${rec.status})`)
      }
      for (const worker of created) {
        if (finalized.get(worker.id) !== 1) violate(`worker ${worker.id} finalized ${finalized.get(worker.id) ?? 0} times`)
      }
    }
    if (violations.length > 0) {
      throw new Error(`${violations.join("\n")}\nconfig: ${JSON.stringify(config)}\ntrace:\n${trace.slice(-80).join("\n")}`)
    }
    return {
      acquires: recs.length,
      served: recs.filter((r) => r.worker !== undefined).length,
      removedWhileWaiting: recs.filter((r) => r.error instanceof AccountRemovedError).length,
      unknownAccount: recs.filter((r) => r.error instanceof UnknownAccountError).length,
      evictions,
      preferredHits
    }
  })

const RUNS = Number(process.env["WORKER_POOL_PROP_RUNS"] ?? 300)
const SEED = Number(process.env["WORKER_POOL_PROP_SEED"] ?? 0)
const arbitraries = {
  config: Arbitrary.schema(Config),
  steps: Arbitrary.array(Arbitrary.schema(Step), { minLength: 10, maxLength: 50 })
}

describe("WorkerPool with accounts (random schedules, TestClock)", () => {
  it.effect.prop(
    "isolation, caps, FIFO within and across accounts (the wait bound), work conservation, affinity, settlement",
    arbitraries,
    ({ config, steps }) => Effect.asVoid(run(config, steps)),
    { timeout: 120_000, arbitrary: { runs: RUNS, size: 50, seed: SEED + 21 } }
  )

  /** Schedules with idle workers to choose from: keyed acquires and releases. */
  const AffinityStep = Schema.Union([
    Schema.TaggedStruct("Acquire", AcquireFields),
    Schema.TaggedStruct("Release", { pick: Pick }),
    Schema.TaggedStruct("Release2", { pick: Pick })
  ])
  it.effect.prop(
    "affinity: an acquire with a key gets the idle worker that last served it, when one is idle",
    {
      config: Arbitrary.map(Arbitrary.schema(Config), (c): Config => ({ ...c, size: 4, idleTimeout: 0 })),
      steps: Arbitrary.array(Arbitrary.schema(AffinityStep), { minLength: 10, maxLength: 50 }) as Arbitrary.Arbitrary<
        Array<Step>
      >
    },
    ({ config, steps }) => Effect.asVoid(run(config, steps)),
    { timeout: 120_000, arbitrary: { runs: RUNS, size: 50, seed: SEED + 22 } }
  )

  // Guards the generator: the property is only as good as the cases it reaches.
  it.effect("the generated schedules serve, evict, prefer, remove accounts under waiters, name unknown accounts", () =>
    Effect.gen(function*() {
      const samples = yield* Arbitrary.sampleEffect(Arbitrary.all(arbitraries), { count: 100, size: 50, seed: 5 })
      const totals = { acquires: 0, served: 0, removedWhileWaiting: 0, unknownAccount: 0, evictions: 0, preferredHits: 0 }
      for (const { config, steps } of samples) {
        const summary = yield* run(config, steps).pipe(Effect.provide(TestClock.layer()))
        totals.acquires += summary.acquires
        totals.served += summary.served
        totals.removedWhileWaiting += summary.removedWhileWaiting
        totals.unknownAccount += summary.unknownAccount
        totals.evictions += summary.evictions
        totals.preferredHits += summary.preferredHits
      }
      console.log(totals)
      for (const [key, value] of Object.entries(totals)) expect([key, value > 0]).toEqual([key, true])
    }), 120_000)
})

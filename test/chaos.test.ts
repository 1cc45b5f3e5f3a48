/**
 * Chaos: a Codex pool (the promise facade, as the AI SDK provider uses it) of
 * fake app-servers under random faults at once, with callers that abort, time
 * out, invalidate and release at random, in bursts past `maxQueue`.
 *
 * Faults, per spawn (test/fixtures/fake-app-server.mjs `--chaos-dir`, plan in
 * helpers/chaos.ts): exit before `initialize`, slow spawns (some past
 * `spawnTimeoutMs`), MCP-like children in other process groups and sessions,
 * SIGTERM ignored, crashes at random moments (startup, idle, busy) and
 * mid-turn, requests never answered, garbage lines, malformed responses (the
 * five shapes), stdin that breaks while the process lives on.
 *
 * In about a third of the rounds the pool is shut down in the middle of the
 * chaos, with calls in flight and more arriving.
 *
 * Invariants, each round:
 * - every library call settles (a watchdog of `CHAOS_SETTLE_MS`, 10 s by
 *   default, names the call that did not);
 * - every failure is an instance of an error class of src/errors.ts (named
 *   after it, with a message), or exactly the abort reason or error object
 *   the caller itself used; misuse errors (`PoolOptionsError`,
 *   `WorkerNotLeasedError`) count as violations, since these callers never
 *   misuse the pool;
 * - the pool never hands out (acquire, use) a worker that already failed a
 *   request because it is gone (`ChannelClosedError`, `WorkerCrashedError`, `WorkerStdioError`, `ProtocolError`,
 *   `LeaseTimeoutError`);
 * - once the faults stop, the pool serves normally: uses complete whole turns
 *   (after a shutdown in the middle of the chaos: an acquire fails at once
 *   with `PoolShutdownError`);
 * - `stats()` returns to rest: busy 0, queued 0, creating 0;
 * - after `shutdown()`, no process of any worker tree is alive, read from
 *   `/proc` by the round's marker (zombies count as dead), and no host-exit
 *   hook is left registered;
 * - across rounds, nothing of a finished round stays reachable: the pool and
 *   every worker handle are collected by a full GC (WeakRefs), and (with 6
 *   rounds or more) the retained heap does not trend upwards.
 *
 * Why those memory checks cannot flake: a WeakRef to an object that nothing
 * references is cleared by a full, forced collection (`gc()`, run in a later
 * job than any deref), whatever the timing; and the round has ended (its
 * calls settled, its pool shut down, its timers cleared) before it is checked.
 * The heap figure is noisier (JIT code, vitest's own bookkeeping), so it is
 * only judged over many rounds, by the least-squares slope of the bytes
 * retained after a forced GC at the end of each round (the first, warm-up
 * round left out), against a budget far above that noise and far below what
 * a leaked pool per round costs.
 *
 * Knobs: `CHAOS_SEED` (else random; every failure message prints it, and the
 * seed that replays the failing round alone), `CHAOS_ROUNDS` (default 2, so
 * that `npm test` stays quick; `npm run soak` runs many), `CHAOS_PHASE_MS`
 * (how long each round's chaos phase starts new flows, default 2000), `CHAOS_SETTLE_MS`,
 * `CHAOS_VERBOSE` (print each round's options, counts and call outcomes).
 * A seed replays the same decisions (options, faults per spawn number, each
 * caller's choices); real processes keep their own timing, so a failure
 * reproduces often, not always.
 */
import { afterEach, describe, expect, it } from "@effect/vitest"
import { randomInt } from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import type { CodexPromiseWorkerPool, CodexWorkerHandle } from "../src/CodexPromisePool.ts"
import { createCodexWorkerPool } from "../src/node.ts"
import {
  ChannelClosedError,
  LeaseTimeoutError,
  PoolShutdownError,
  ProtocolError,
  WorkerCrashedError,
  WorkerStdioError
} from "../src/errors.ts"
import * as ExitHooks from "../src/internal/exitHooks.ts"
import { calm, Calls, makePlan, retainedBytes, Rng, roundSeed, spawnLog, fullGc, writePlan } from "./helpers/chaos.ts"
import { fakePoolOptions, killByMarker, liveByMarker, newMarker, statFields, waitUntil } from "./helpers/procs.ts"

const ROUNDS = Math.max(1, Number(process.env["CHAOS_ROUNDS"] ?? 2))
const SEED = process.env["CHAOS_SEED"] === undefined ? randomInt(2 ** 32) : Number(process.env["CHAOS_SEED"]) >>> 0
const SETTLE_MS = Number(process.env["CHAOS_SETTLE_MS"] ?? 10_000)
/** How long each round's chaos phase starts new flows, in ms. */
const PHASE_MS = Number(process.env["CHAOS_PHASE_MS"] ?? 2_000)
/** Print each round's options, counts and call outcomes. */
const VERBOSE = process.env["CHAOS_VERBOSE"] !== undefined
/** Judge the heap's trend only over this many rounds or more. */
const HEAP_MIN_ROUNDS = 6
/** Most bytes per round the retained heap may grow by, on the least-squares trend. */
const HEAP_BUDGET_PER_ROUND = 512 * 1024

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

const markers: Array<string> = []
afterEach(async () => {
  // Safety net only: each round asserts on its own that nothing survived.
  for (const marker of markers.splice(0)) await killByMarker(marker)
})

/**
 * How many of `refs` are still reachable after a full GC. A short-lived library timer (a kill's last wait, a
 * crash report's bounded wait for the exit status) may still hold an object just after a round: retried for up
 * to 3 s, which cannot hide a leak (a leaked object stays reachable for good).
 */
const reachable = async (refs: ReadonlyArray<WeakRef<object>>): Promise<number> => {
  const deadline = Date.now() + 3_000
  for (;;) {
    await fullGc()
    const kept = refs.filter((ref) => ref.deref() !== undefined).length
    if (kept === 0 || Date.now() > deadline) return kept
    await sleep(250)
  }
}

/** What a round leaves behind for the cross-round checks. */
interface RoundResult {
  readonly refs: ReadonlyArray<WeakRef<object>>
  readonly summary: string
}

type TurnEnd = "completed" | "closed" | "timeout" | "aborted"

/**
 * Waits (caller-side, not a library call) for the end of the turn of
 * `threadId` on `worker`: `turn/completed`, the worker closing, `signal`, or
 * `ms` of real time. `cancel` stops waiting.
 */
const waitTurn = (worker: CodexWorkerHandle, threadId: string, ms: number, signal?: AbortSignal) => {
  let cancel = () => {}
  const ended = new Promise<TurnEnd>((resolve) => {
    let done = false
    let offMessage = () => {}
    let offClose = () => {}
    const finish = (end: TurnEnd) => {
      if (done) return
      done = true
      clearTimeout(timer)
      offMessage()
      offClose()
      signal?.removeEventListener("abort", onAbort)
      resolve(end)
    }
    const onAbort = () => finish("aborted")
    const timer = setTimeout(() => finish("timeout"), ms)
    cancel = () => finish("timeout")
    signal?.addEventListener("abort", onAbort, { once: true })
    offMessage = worker.onMessage((message) => {
      if (message.method === "turn/completed" && (message.params as { threadId?: unknown })?.threadId === threadId) {
        finish("completed")
      }
    })
    offClose = worker.onClose(() => finish("closed"))
    if (done) {
      offMessage()
      offClose()
    }
  })
  return { ended, cancel: () => cancel() }
}

const threadIdOf = (result: unknown): string | undefined => {
  const id = (result as { thread?: { id?: unknown } } | undefined)?.thread?.id
  return typeof id === "string" ? id : undefined
}

const input = (text: string) => [{ type: "text", text, text_elements: [] }]

/** Everything a caller needs. */
interface Round {
  readonly pool: CodexPromiseWorkerPool
  readonly calls: Calls
  readonly refs: Array<WeakRef<object>>
  /** The pool's `acquireTimeoutMs`. */
  readonly acquireTimeoutMs: number
  /** Workers (by their `initializeResult`, one object per process) that failed a request because they are gone. */
  readonly dead: WeakMap<object, string>
}

/** Errors that say a worker is out of service for good: its channel closed, its process died or was killed. */
const gone = (error: unknown) =>
  error instanceof ChannelClosedError || error instanceof WorkerCrashedError || error instanceof LeaseTimeoutError ||
  error instanceof WorkerStdioError || error instanceof ProtocolError

/** The pool must never hand out a worker that already failed a request because it is gone. */
const handedOut = (round: Round, name: string, how: string, worker: CodexWorkerHandle): void => {
  round.refs.push(new WeakRef(worker))
  const key = worker.initializeResult as object
  const why = round.dead.get(key)
  if (why !== undefined) {
    round.calls.violations.push(`${name}: ${how} handed out worker pid ${worker.pid}, which had already failed a request with ${why}`)
  }
}

/** A request on `worker`: a failure saying the worker is gone marks it dead. */
const requestOn = <A>(round: Round, worker: CodexWorkerHandle, request: Promise<A>): Promise<A> =>
  request.catch((error: unknown) => {
    if (gone(error) && typeof worker.initializeResult === "object" && worker.initializeResult !== null) {
      round.dead.set(worker.initializeResult, `${(error as Error).name}: ${(error as Error).message.slice(0, 160)}`)
    }
    throw error
  })

/** One caller of the chaos phase: a random flow of library calls, with its own generator. */
const caller = async (round: Round, name: string, seed: number): Promise<void> => {
  const { calls, pool } = round
  const rng = new Rng(seed)
  const own = new Set<unknown>()
  const track = <A>(label: string, call: () => Promise<A>) => calls.track(name, label, own, call)
  const request = <A>(worker: CodexWorkerHandle, label: string, call: () => Promise<A>) =>
    track(label, () => requestOn(round, worker, call()))
  const controller = rng.chance(0.4) ? new AbortController() : undefined
  let abortTimer: ReturnType<typeof setTimeout> | undefined
  if (controller !== undefined && rng.chance(0.7)) {
    const reason = new Error(`${name} aborts`)
    own.add(reason)
    abortTimer = setTimeout(() => controller.abort(reason), rng.int(0, 800))
  }
  const aborts = abortTimer !== undefined
  // Every wait in the queue is bounded (by the pool's acquireTimeoutMs, the caller's, or its abort), so that a
  // legitimate wait behind slow leases never comes near the settle watchdog.
  const acquireTimeout = aborts || round.acquireTimeoutMs > 0
    ? rng.pick([undefined, undefined, 200, 1_000, 3_000])
    : rng.pick([200, 1_000, 3_000])
  const acquireOptions = { signal: controller?.signal, timeoutMs: acquireTimeout }
  const requestTimeout = () => rng.pick([150, 400, 1_000])
  const flow = rng.pick(["turn", "turn", "strict", "acquire", "acquire", "throw", "invalidate"] as const)
  try {
    switch (flow) {
      case "turn": {
        // A thread and a turn; waits for its end, interrupts it or gives up at random.
        await track("use (turn)", () =>
          pool.use(async (worker, signal) => {
            handedOut(round, name, "use (turn)", worker)
            const options = { signal, timeoutMs: aborts && rng.chance(0.5) ? undefined : requestTimeout() }
            const threadId = threadIdOf(
              await request(worker, "request thread/start", () => worker.request("thread/start", { ephemeral: true }, options))
            )
            if (threadId === undefined) return
            const turn = waitTurn(worker, threadId, rng.int(100, 800), signal)
            try {
              await request(worker, "request turn/start", () =>
                worker.request("turn/start", { threadId, input: input(name) }, options))
            } catch (error) {
              turn.cancel()
              throw error
            }
            const end = await turn.ended
            if (end === "timeout" && rng.chance(0.5)) {
              await request(worker, "request turn/interrupt", () =>
                worker.request("turn/interrupt", { threadId, turnId: "unknown" }, { timeoutMs: 300 }))
            }
            if (rng.chance(0.1)) {
              const error = new Error(`${name} gives up`)
              own.add(error)
              throw error
            }
          }, acquireOptions))
        break
      }
      case "strict": {
        // A request with no timeout and no signal: `thread/start` is always answered (maybe malformed), or the
        // worker dies or is finalized, so the request must settle on its own.
        await track("use (strict)", () =>
          pool.use(async (worker) => {
            handedOut(round, name, "use (strict)", worker)
            await request(worker, "request thread/start (no timeout)", () =>
              worker.request("thread/start", { ephemeral: true }))
          }, acquireOptions))
        break
      }
      case "acquire": {
        // Acquire, a request or two, then release or invalidate.
        const worker = await track("acquire", () => pool.acquire(acquireOptions))
        handedOut(round, name, "acquire", worker)
        for (let i = rng.int(0, 2); i > 0; i--) {
          await request(worker, "request thread/start", () =>
            worker.request("thread/start", { ephemeral: true }, { timeoutMs: requestTimeout() })).catch(() => {})
        }
        await sleep(rng.int(0, 300))
        if (rng.chance(0.15)) await track("invalidate", () => pool.invalidate(worker))
        else calls.trackSync(name, "release", own, () => pool.release(worker))
        break
      }
      case "throw": {
        // A use body that throws, synchronously or not: the use rejects with exactly that error.
        const error = new Error(`${name} throws`)
        own.add(error)
        const sync = rng.chance(0.5)
        const body = sync
          ? (): Promise<void> => {
            throw error
          }
          : async (): Promise<void> => {
            throw error
          }
        await track(`use (throws ${sync ? "synchronously" : "asynchronously"})`, () => pool.use(body, acquireOptions))
        break
      }
      case "invalidate": {
        // A request with no bound at all, then the worker is invalidated under it: the request must settle.
        const worker = await track("acquire", () => pool.acquire(acquireOptions))
        handedOut(round, name, "acquire", worker)
        const pending = request(worker, "request thread/resume (no timeout), then invalidate", () =>
          worker.request("thread/resume", { threadId: "t" })).catch(() => {})
        await sleep(rng.int(0, 200))
        await track("invalidate", () => pool.invalidate(worker))
        await pending
        break
      }
    }
  } catch {
    // Each call's outcome was checked where it was tracked.
  } finally {
    clearTimeout(abortTimer)
  }
}

/** A use after the faults stopped: it must complete a whole turn. */
const serviceUse = async (round: Round, name: string, violations: Array<string>): Promise<void> => {
  try {
    const end = await round.calls.track(name, "use (after the faults stopped)", new Set(), () =>
      round.pool.use(async (worker) => {
        handedOut(round, name, "use (after the faults stopped)", worker)
        const threadId = threadIdOf(await worker.request("thread/start", { ephemeral: true }, { timeoutMs: 5_000 }))
        if (threadId === undefined) return "no thread id"
        const turn = waitTurn(worker, threadId, 5_000)
        await worker.request("turn/start", { threadId, input: input(name) }, { timeoutMs: 5_000 })
        return await turn.ended
      }, { timeoutMs: 0 }))
    if (end !== "completed") violations.push(`after the faults stopped, ${name}'s turn ended: ${end}`)
  } catch (error) {
    violations.push(
      `after the faults stopped, ${name} failed: ${error instanceof Error ? `${error.name}: ${error.message}` : String(error)}`
    )
  }
}

/** A live process of the round, described for a failure message. */
const describeProcess = (pid: number, cmdline: ReadonlyArray<string>): string => {
  const stat = statFields(pid)
  return `pid ${pid} (state ${stat?.state}, ppid ${stat?.ppid}, pgrp ${stat?.pgrp}, session ${stat?.session}): ` +
    cmdline.filter((arg) => !arg.startsWith("--cwp-marker=")).join(" ").slice(0, 160)
}

const runRound = async (seed: number, index: number, hooksBefore: number): Promise<RoundResult> => {
  const rng = new Rng(seed)
  const marker = newMarker()
  markers.push(marker)
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "cwp-chaos-"))
  const violations: Array<string> = []
  const spawnTimeoutMs = 3_000
  const poolSize = rng.int(1, 3)
  const maxQueue = rng.pick([0, 1, 2, 4, 8, undefined])
  const options = {
    poolSize,
    maxQueue,
    minIdle: rng.chance(0.3) ? 1 : 0,
    acquireTimeoutMs: rng.pick([0, 400, 1_500]),
    idleTimeoutMs: rng.pick([0, 250, 1_000, 60_000]),
    leaseTimeoutMs: rng.pick([0, 4_000]),
    shutdownTimeoutMs: 2_000,
    spawnTimeoutMs,
    killGraceMs: 150,
    processScanIntervalMs: 100,
    name: `chaos-${seed}`
  }
  writePlan(dir, makePlan(rng, 40, spawnTimeoutMs))
  const calls = new Calls(SETTLE_MS)
  const refs: Array<WeakRef<object>> = []
  const dead = new WeakMap<object, string>()
  let pool: CodexPromiseWorkerPool | undefined = createCodexWorkerPool(
    fakePoolOptions(marker, [`--chaos-dir=${dir}`, "--delta-delay-ms=15"], options)
  )
  refs.push(new WeakRef(pool))
  const round: Round = { pool, calls, refs, dead, acquireTimeoutMs: options.acquireTimeoutMs }
  const phase = (name: string) => `${name} (${JSON.stringify(pool?.stats())})`
  let log = ""
  try {
    // --- shutdown: nothing of any worker tree survives it (checked the moment it resolves).
    const shutdown = async (label: string) => {
      await calls.track("test", label, new Set(), () => pool!.shutdown()).catch(() => {})
      const survivors = liveByMarker(marker)
      if (survivors.length > 0) {
        const gone = await waitUntil(() => liveByMarker(marker).length === 0, { timeoutMs: 2_000 })
        violations.push(
          `after ${label} resolved, ${survivors.length} process(es) of the worker trees were alive ` +
            `(${gone ? "gone within 2 s: killed late" : "still alive 2 s later: leaked"}):\n    ` +
            survivors.map((p) => describeProcess(p.pid, p.cmdline)).join("\n    ")
        )
      }
      const s = pool!.stats()
      if (!s.closed || s.busy + s.idle + s.creating + s.finalizing + s.queued + s.processes !== 0) {
        violations.push(`stats() after ${label}: ${JSON.stringify(s)}`)
      }
      if (ExitHooks.registeredCount() !== hooksBefore) {
        violations.push(`${ExitHooks.registeredCount() - hooksBefore} host-exit hook(s) still registered after ${label}`)
      }
    }

    // --- chaos: callers that loop over random flows for the phase, plus bursts past maxQueue; in some rounds the
    // pool is shut down in the middle of it all.
    const flows: Array<Promise<void>> = []
    const end = Date.now() + PHASE_MS
    const shutdownAt = rng.chance(0.3) ? rng.int(100, PHASE_MS) : undefined
    let midChaos: Promise<void> | undefined
    const shutdownTimer = shutdownAt === undefined
      ? undefined
      : setTimeout(() => (midChaos = shutdown(`shutdown() ${shutdownAt} ms into the chaos`)), shutdownAt)
    const steady = poolSize + rng.int(0, 2)
    for (let i = 0; i < steady; i++) {
      const seed = rng.seed()
      flows.push((async () => {
        const own = new Rng(seed)
        for (let k = 0; Date.now() < end; k++) {
          await caller(round, `caller ${i} flow ${k}`, own.seed())
          await sleep(own.int(0, 50))
        }
      })())
    }
    for (let wave = 0; Date.now() < end; wave++) {
      await sleep(rng.int(200, 600))
      const burst = rng.int(1, poolSize + (maxQueue ?? 4) + 2)
      for (let i = 0; i < burst; i++) flows.push(caller(round, `burst ${wave} caller ${i}`, rng.seed()))
    }
    await Promise.all(flows)
    clearTimeout(shutdownTimer)
    await midChaos
    await calls.drain()
    log += `${phase("after the chaos")}\n`
    if (midChaos !== undefined) {
      // Shut down: an acquire fails at once with PoolShutdownError.
      const error = await pool.acquire().then(() => "a worker", (e: unknown) => e)
      if (!(error instanceof PoolShutdownError)) violations.push(`an acquire after shutdown ended with ${String(error)}`)
    } else {
      // --- the faults stop: the pool must serve normally.
      calm(dir)
      // Crashes already under way surface (the pool takes their workers out of service) within a few ms.
      await sleep(300)
      await waitUntil(() => pool!.stats().creating === 0, { timeoutMs: 5_000 })
      const service: Array<Promise<void>> = []
      for (let i = 0; i < poolSize; i++) {
        service.push((async () => {
          for (let k = 0; k < 2; k++) await serviceUse(round, `service use ${i}.${k}`, violations)
        })())
      }
      await Promise.all(service)
      await calls.drain()
      log += `${phase("after the service check")}\n`

      // --- at rest.
      const atRest = () => {
        const s = pool!.stats()
        return s.busy === 0 && s.queued === 0 && s.creating === 0
      }
      if (!(await waitUntil(atRest, { timeoutMs: 3_000 }))) {
        violations.push(`stats() not at rest: ${JSON.stringify(pool.stats())}`)
      }
      await shutdown("shutdown()")
    }
  } finally {
    await pool.shutdown().catch(() => {})
    await killByMarker(marker)
  }
  violations.unshift(...calls.violations)
  const outcomes = [...calls.outcomes].sort(([a], [b]) => a.localeCompare(b)).map(([k, n]) => `${k} ×${n}`)
  const spawns = spawnLog(dir)
  fs.rmSync(dir, { recursive: true, force: true })
  const summary = `options ${JSON.stringify(options)}\n${log}outcomes:\n  ${outcomes.join("\n  ")}\n` +
    `spawns:\n  ${spawns.join("\n  ")}`
  if (violations.length > 0) {
    throw new Error(
      `chaos round ${index} (seed ${seed}; replay it alone: CHAOS_SEED=${seed} CHAOS_ROUNDS=1) broke ` +
        `${violations.length} invariant(s):\n  ${violations.slice(0, 30).join("\n  ")}\n${summary}`
    )
  }
  pool = undefined
  return { refs, summary }
}

describe("chaos", () => {
  it(
    `a Codex pool of fake app-servers under random faults serves, settles, recovers and cleans up (CHAOS_SEED=${SEED}, ${ROUNDS} round(s))`,
    async () => {
      // Effect logs every garbage line and failed worker; keep them out of the output (and of vitest's memory).
      const console = globalThis.console
      const saved = { log: console.log, error: console.error, warn: console.warn }
      let logged = 0
      console.log = console.error = console.warn = () => void logged++
      const heap: Array<number> = []
      const hooksBefore = ExitHooks.registeredCount()
      let previous: ReadonlyArray<WeakRef<object>> = []
      try {
        for (let r = 0; r < ROUNDS; r++) {
          const seed = roundSeed(SEED, r)
          const prefix = `CHAOS_SEED=${SEED}, round ${r} (round seed ${seed})`
          let result: RoundResult
          try {
            result = await runRound(seed, r, hooksBefore)
          } catch (error) {
            throw new Error(`${prefix}: ${error instanceof Error ? error.message : String(error)}`)
          }
          // Nothing of the previous round may still be reachable.
          expect(await reachable(previous), `${prefix}: objects of the previous round (its pool, worker handles) still reachable`)
            .toBe(0)
          previous = result.refs
          heap.push(await retainedBytes())
          if (ROUNDS > 1 || VERBOSE) {
            saved.log.call(
              console,
              `chaos ${prefix}: ok, ${(heap.at(-1)! / 2 ** 20).toFixed(1)} MiB retained${VERBOSE ? `\n${result.summary}` : ""}`
            )
          }
        }
        expect(await reachable(previous), `CHAOS_SEED=${SEED}: the last round's objects still reachable`).toBe(0)
        if (heap.length >= HEAP_MIN_ROUNDS) {
          // Least-squares slope over the rounds after the first (warm-up).
          const ys = heap.slice(1)
          const n = ys.length
          const meanX = (n - 1) / 2
          const meanY = ys.reduce((a, b) => a + b, 0) / n
          let num = 0
          let den = 0
          ys.forEach((y, x) => {
            num += (x - meanX) * (y - meanY)
            den += (x - meanX) ** 2
          })
          const slope = num / den
          expect(
            slope,
            `CHAOS_SEED=${SEED}: retained heap grows by ${Math.round(slope / 1024)} KiB per round: ${
              heap.map((b) => (b / 2 ** 20).toFixed(1)).join(", ")
            } MiB`
          ).toBeLessThan(HEAP_BUDGET_PER_ROUND)
        }
      } finally {
        Object.assign(console, saved)
        if (logged > 0 && ROUNDS > 1) console.log(`chaos: ${logged} log line(s) from the pool were silenced`)
      }
    },
    ROUNDS * (2 * SETTLE_MS + 30_000)
  )
})

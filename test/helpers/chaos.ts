/**
 * The parts of the chaos suite (test/chaos.test.ts) that are not the round
 * itself: a seeded generator, the fault plan the fake app-server reads
 * (`--chaos-dir`, see test/fixtures/fake-app-server.mjs), the tracking of
 * every library call (each must settle, and fail only with a named error of
 * the library or the caller's own abort reason or error), and a forced
 * garbage collection for the leak checks.
 *
 * Reproducibility: everything random comes from the seed (the pool's options,
 * the plan of faults per spawn number, each caller's choices from a generator
 * of its own), so a seed replays the same decisions; the timing of real
 * processes still varies, so a failing seed reproduces often, not always.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import * as v8 from "node:v8"
import * as vm from "node:vm"
import * as Errors from "../../src/errors.ts"

// -----------------------------------------------------------------------------
// Seeded generator
// -----------------------------------------------------------------------------

/** mulberry32: small, fast, good enough for test decisions. */
export class Rng {
  #state: number
  constructor(seed: number) {
    this.#state = seed >>> 0
  }
  /** In [0, 1). */
  next(): number {
    this.#state = (this.#state + 0x6d2b79f5) >>> 0
    let t = this.#state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  /** An integer in [min, max]. */
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1))
  }
  chance(p: number): boolean {
    return this.next() < p
  }
  pick<A>(items: ReadonlyArray<A>): A {
    return items[Math.floor(this.next() * items.length)]!
  }
  /** A fresh 32-bit seed, for a generator of its own. */
  seed(): number {
    return Math.floor(this.next() * 4294967296) >>> 0
  }
}

/** The seed of round `round` of a run seeded `seed`: round 0 is the seed itself, so `CHAOS_ROUNDS=1` replays it. */
export const roundSeed = (seed: number, round: number): number =>
  round === 0 ? seed >>> 0 : new Rng((seed ^ Math.imul(round, 0x9e3779b1)) >>> 0).seed()

// -----------------------------------------------------------------------------
// The fault plan
// -----------------------------------------------------------------------------

/** The faults of one spawn, as the fake app-server reads them from plan.json. */
export interface Faults {
  readonly seed: number
  readonly exitBeforeInitialize?: true
  readonly spawnDelayMs?: number
  readonly mcpChildren?: true
  readonly ignoreSigterm?: true
  readonly crashAfterMs?: number
  readonly crashMidTurnAfter?: number
  readonly hangRate?: number
  readonly garbageRate?: number
  readonly malformedRate?: number
  readonly closeStdinAfterMs?: number
}

/**
 * Faults for spawns 0..count-1: about one in five runs clean, the others get one
 * or two faults. `spawnTimeoutMs` decides which slow spawns time out.
 */
export const makePlan = (rng: Rng, count: number, spawnTimeoutMs: number): Array<Faults> => {
  const kinds: ReadonlyArray<(f: Record<string, unknown>) => void> = [
    (f) => (f["exitBeforeInitialize"] = true),
    (f) => (f["spawnDelayMs"] = rng.chance(0.25) ? spawnTimeoutMs + 300 : rng.int(50, 500)),
    // Half of them die while their children start, before answering `initialize`.
    (f) => {
      f["mcpChildren"] = true
      if (rng.chance(0.5)) f["crashAfterMs"] = rng.int(30, 400)
    },
    (f) => (f["ignoreSigterm"] = true),
    // Startup (often before `initialize` is answered), or later: idle or busy.
    (f) => (f["crashAfterMs"] = rng.chance(0.5) ? rng.int(0, 150) : rng.int(150, 1_500)),
    (f) => (f["crashMidTurnAfter"] = rng.int(0, 2)),
    (f) => (f["hangRate"] = rng.pick([0.3, 0.6, 1])),
    (f) => (f["garbageRate"] = rng.pick([0.2, 0.5, 0.9])),
    (f) => (f["malformedRate"] = rng.pick([0.2, 0.5])),
    (f) => (f["closeStdinAfterMs"] = rng.int(100, 1_200))
  ]
  const plan: Array<Faults> = []
  for (let i = 0; i < count; i++) {
    const faults: Record<string, unknown> = { seed: rng.seed() }
    if (!rng.chance(0.2)) {
      const n = rng.chance(0.7) ? 1 : 2
      for (let k = 0; k < n; k++) rng.pick(kinds)(faults)
    }
    plan.push(faults as unknown as Faults)
  }
  return plan
}

/** Writes the plan where the fake app-server reads it. */
export const writePlan = (dir: string, plan: ReadonlyArray<Faults>): void =>
  fs.writeFileSync(path.join(dir, "plan.json"), JSON.stringify(plan))

/** Stops every fault: new spawns get none, running workers stop injecting them. */
export const calm = (dir: string): void => fs.writeFileSync(path.join(dir, "calm"), "")

/** What each spawn claimed (spawn number, pid, faults), for failure messages. */
export const spawnLog = (dir: string): Array<string> =>
  fs.readdirSync(dir).filter((f) => f.startsWith("spawn-"))
    .map((f) => Number(f.slice("spawn-".length)))
    .sort((a, b) => a - b)
    .map((n) => {
      let text = ""
      try {
        text = fs.readFileSync(path.join(dir, `spawn-${n}`), "utf8")
      } catch {
        // being written
      }
      return `spawn ${n}: ${text}`
    })

// -----------------------------------------------------------------------------
// Library calls: every one settles, with a legitimate outcome
// -----------------------------------------------------------------------------

/** The error classes a call may legitimately fail with (misuse errors excluded: these callers never misuse). */
const misuse: ReadonlyArray<unknown> = [Errors.PoolOptionsError, Errors.WorkerNotLeasedError]
const libraryErrors = (Object.values(Errors) as ReadonlyArray<unknown>).filter(
  (value): value is new(...args: Array<any>) => Error =>
    typeof value === "function" && value.prototype instanceof Error && !misuse.includes(value)
)

/** A library error: an instance of one of the classes of src/errors.ts, named after its class, with a message. */
export const isLibraryError = (error: unknown): boolean =>
  libraryErrors.some((c) => error instanceof c) &&
  (error as Error).name === (error as { _tag?: string })._tag &&
  typeof (error as Error).message === "string" && (error as Error).message.length > 0

/** Rejects a call that never settled, so that its caller's flow can end; recorded as a violation. */
export class Unsettled extends Error {
  override readonly name = "Unsettled"
}

const describe = (error: unknown): string =>
  error instanceof Error
    ? `${error.constructor.name}(${error.name}): ${error.message.split("\n")[0]!.slice(0, 200)}`
    : `${typeof error} ${JSON.stringify(error)?.slice(0, 200)}`

/** The record of a round's library calls. */
export class Calls {
  readonly violations: Array<string> = []
  readonly outcomes = new Map<string, number>()
  #pending = new Set<Promise<unknown>>()
  readonly settleMs: number
  constructor(settleMs: number) {
    this.settleMs = settleMs
  }

  /**
   * Tracks a library call made by `caller` (whose own abort reasons and
   * errors are in `own`): it must settle within `settleMs`, and a rejection
   * must be a library error or one of `own`. Returns a promise that settles
   * like the call, or rejects with `Unsettled` once `settleMs` have passed.
   */
  track<A>(caller: string, label: string, own: ReadonlySet<unknown>, call: () => Promise<A>): Promise<A> {
    let promise: Promise<A>
    try {
      promise = call()
    } catch (error) {
      promise = Promise.reject(error)
    }
    const tracked = new Promise<A>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.violations.push(`${caller}: ${label} did not settle within ${this.settleMs} ms`)
        reject(new Unsettled(`${label} did not settle`))
      }, this.settleMs)
      promise.then(
        (value) => {
          clearTimeout(timer)
          this.count(`${label}: ok`)
          resolve(value)
        },
        (error: unknown) => {
          clearTimeout(timer)
          this.check(caller, label, own, error)
          reject(error)
        }
      )
    })
    this.#pending.add(tracked)
    const forget = () => void this.#pending.delete(tracked)
    tracked.then(forget, forget)
    return tracked
  }

  /** A synchronous library call (`release`): a throw must be a library error. */
  trackSync<A>(caller: string, label: string, own: ReadonlySet<unknown>, call: () => A): A | undefined {
    try {
      const value = call()
      this.count(`${label}: ok`)
      return value
    } catch (error) {
      this.check(caller, label, own, error)
      return undefined
    }
  }

  check(caller: string, label: string, own: ReadonlySet<unknown>, error: unknown): void {
    if (error instanceof Unsettled) {
      // A call inside this one never settled: already reported.
      this.count(`${label}: gave up on an inner call`)
    } else if (own.has(error)) {
      this.count(`${label}: caller's own reason`)
    } else if (isLibraryError(error)) {
      this.count(`${label}: ${(error as Error).name}`)
    } else {
      this.violations.push(`${caller}: ${label} failed with ${describe(error)}, neither a library error nor the caller's own`)
    }
  }

  count(key: string): void {
    this.outcomes.set(key, (this.outcomes.get(key) ?? 0) + 1)
  }

  /** Calls tracked and not yet settled (each ends within `settleMs` of its start). */
  get pending(): number {
    return this.#pending.size
  }

  /** Waits until every tracked call has settled or been given up on. */
  async drain(): Promise<void> {
    while (this.#pending.size > 0) await Promise.allSettled([...this.#pending])
  }
}

// -----------------------------------------------------------------------------
// Memory
// -----------------------------------------------------------------------------

let gcFunction: (() => void) | undefined

/**
 * A full, synchronous garbage collection. Uses `global.gc` when the process
 * runs with --expose-gc; otherwise turns the flag on and takes `gc` from a new
 * context (V8 installs it there once the flag is set).
 */
export const fullGc = async (): Promise<void> => {
  if (gcFunction === undefined) {
    const global = globalThis as { gc?: () => void }
    if (global.gc === undefined) v8.setFlagsFromString("--expose-gc")
    gcFunction = global.gc ?? (vm.runInNewContext("gc") as () => void)
  }
  // WeakRef targets dereferenced in this job stay alive until it ends: collect in a later one, twice (finalizers,
  // weak callbacks).
  for (let i = 0; i < 2; i++) {
    await new Promise((resolve) => setImmediate(resolve))
    gcFunction()
  }
}

/** Heap in use plus memory outside the heap that JS objects hold (`external`, which includes buffers), after a full GC. */
export const retainedBytes = async (): Promise<number> => {
  await fullGc()
  const usage = process.memoryUsage()
  return usage.heapUsed + usage.external
}

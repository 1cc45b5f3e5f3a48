/**
 * A `CodexWorkerPool` whose workers are scripted in-process fakes, for
 * testing code that depends on the pool without codex (no binary, no model,
 * no processes).
 *
 * It is the real pool: the same `WorkerPool` core and the same Codex pool
 * assembly (FIFO queue, hand-off, abort, acquire / lease / idle timeouts,
 * `maxQueue`, `minIdle`, crash invalidation, shutdown, metrics), with only
 * the worker constructor swapped for `FakeCodexWorker.make`. So a test sees
 * the queueing, timeout and shutdown semantics of production, and pool time
 * runs on Effect's `Clock` (`TestClock` drives it in the Effect variants).
 *
 * - `layerTest(options)`: the `CodexWorkerPool` service plus `FakeCodexWorkers`
 *   (the fakes spawned so far), as a scoped layer.
 * - `makeTest(options)`: both in the current scope.
 * - `createTestCodexWorkerPool(options)`: the promise facade
 *   (`createCodexWorkerPool`) over fakes, with a `fakes` property.
 * Options are the pool's (`CodexWorkerPool.Options`, times as `Duration.Input`s,
 * for `layerTest` and `makeTest`; `CodexWorkerPoolOptions`, times in `...Ms`
 * milliseconds, for `createTestCodexWorkerPool`), without the process options
 * (`command`, `args`, `env`, `cwd`, `codexHome`, `killGrace` / `killGraceMs`,
 * `processScanInterval` / `processScanIntervalMs`, `watchdog`: nothing is
 * spawned), plus `script`: what every worker does (see `FakeWorkerScript`,
 * `textTurns`). `clientInfo` and `capabilities` are sent in the fake's
 * `initialize` (visible in `received`); `spawnTimeout` (`spawnTimeoutMs`)
 * bounds it.
 *
 * Limits: process-level behaviour is not simulated (tree kills, exit hooks,
 * the watchdog, `residentBytes`); `stats().processes` counts one per open
 * fake. The fakes do only what the script says.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { CodexWorkerPool } from "codex-worker-pool"
 * import { layerTest, textTurns } from "codex-worker-pool/testing"
 *
 * const program = Effect.gen(function*() {
 *   const pool = yield* CodexWorkerPool.CodexWorkerPool
 *   return yield* pool.use((worker) => worker.request("thread/start", {}))
 * }).pipe(Effect.provide(layerTest({ poolSize: 1, script: textTurns() })))
 * ```
 *
 * @since 0.1.0
 */
import { Context, Effect, Layer } from "effect"
import * as ChildProcessSpawner from "effect/process/ChildProcessSpawner"
import type * as Scope from "effect/Scope"
import { type CodexPromiseWorkerPool, type CodexWorkerPoolOptions, makeCodexPromisePool } from "../CodexPromisePool.ts"
import * as CodexWorkerPool from "../CodexWorkerPool.ts"
import { PoolOptionsError } from "../errors.ts"
import { type MakeWorker, WorkerFactory } from "../internal/codexPool.ts"
import * as FakeCodexWorker from "./FakeCodexWorker.ts"

/**
 * Options of a test pool made with `layerTest` or `makeTest`: the service's
 * (`CodexWorkerPool.Options`, times as `Duration.Input`s), without the process
 * options, plus the fake workers' script.
 *
 * @since 0.1.0
 * @category models
 */
export interface TestOptions extends
  Omit<
    CodexWorkerPool.Options,
    "command" | "args" | "env" | "cwd" | "codexHome" | "killGrace" | "processScanInterval" | "watchdog"
  >
{
  /** What every fake worker does. Default: answer `initialize` only. */
  readonly script?: FakeCodexWorker.FakeWorkerScript | undefined
}

/**
 * Options of `createTestCodexWorkerPool`: the promise facade's
 * (`CodexWorkerPoolOptions`, times as `...Ms` milliseconds), without the
 * process options, plus the fake workers' script.
 *
 * @since 0.2.0
 * @category models
 */
export interface TestCodexWorkerPoolOptions extends
  Omit<
    CodexWorkerPoolOptions,
    "command" | "args" | "env" | "cwd" | "codexHome" | "killGraceMs" | "processScanIntervalMs" | "watchdog"
  >
{
  /** What every fake worker does. Default: answer `initialize` only. */
  readonly script?: FakeCodexWorker.FakeWorkerScript | undefined
}

/**
 * The fake workers a test pool has spawned.
 *
 * @since 0.1.0
 * @category models
 */
export interface FakeWorkers {
  /** Every fake that finished `initialize`, in spawn order, open or closed (a live array). */
  readonly all: ReadonlyArray<FakeCodexWorker.FakeWorker>
  /** How many spawns were attempted, failed ones included. */
  readonly attempts: number
  /** The fakes that are still open. */
  readonly open: () => ReadonlyArray<FakeCodexWorker.FakeWorker>
  /** The fake with this pid (`worker.pid` of a leased worker), if any. */
  readonly byPid: (pid: number) => FakeCodexWorker.FakeWorker | undefined
}

/**
 * The service giving a test access to the fakes of the `layerTest` pool.
 *
 * @since 0.1.0
 * @category services
 */
export class FakeCodexWorkers extends Context.Service<FakeCodexWorkers, FakeWorkers>()(
  "codex-worker-pool/testing/FakeCodexWorkers"
) {}

const processOptions = [
  "command",
  "args",
  "env",
  "cwd",
  "codexHome",
  "killGrace",
  "killGraceMs",
  "processScanInterval",
  "processScanIntervalMs",
  "watchdog"
] as const

/** Splits the script off and rejects the process options, naming them. */
const split = <O extends { readonly script?: FakeCodexWorker.FakeWorkerScript | undefined }>(options: O): {
  readonly script: FakeCodexWorker.FakeWorkerScript
  readonly pool: Omit<O, "script">
} => {
  if (typeof options !== "object" || options === null) {
    throw new PoolOptionsError({ message: `Invalid test pool options: expected an object, got ${String(options)}.` })
  }
  const { script, ...pool } = options
  const present = processOptions.filter((name) => name in pool)
  if (present.length > 0) {
    throw new PoolOptionsError({
      message: `Invalid test pool options: ${present.map((name) => `${name}: not used by fake workers`).join("; ")}. ` +
        "A test pool spawns no process; remove these options."
    })
  }
  if (script !== undefined && (typeof script !== "object" || script === null)) {
    throw new PoolOptionsError({ message: `Invalid test pool options: script: expected an object, got ${String(script)}.` })
  }
  return { script: script ?? {}, pool }
}

/**
 * The process spawner of a test pool: its type asks for one, fake workers
 * never use it. So the testing entry needs no platform package.
 */
const noSpawner: Layer.Layer<ChildProcessSpawner.ChildProcessSpawner> = Layer.succeed(
  ChildProcessSpawner.ChildProcessSpawner,
  ChildProcessSpawner.make(() => Effect.die(new Error("A test pool's fake workers spawn no process.")))
)

/** A fake worker factory and the registry of what it made. */
const makeFactory = (script: FakeCodexWorker.FakeWorkerScript): { readonly make: MakeWorker; readonly fakes: FakeWorkers } => {
  const all: Array<FakeCodexWorker.FakeWorker> = []
  let attempts = 0
  const fakes: FakeWorkers = {
    all,
    get attempts() {
      return attempts
    },
    open: () => all.filter((fake) => !fake.closed),
    byPid: (pid) => all.find((fake) => fake.pid === pid)
  }
  const make: MakeWorker = (options) =>
    Effect.suspend(() => FakeCodexWorker.make(script, options, ++attempts)).pipe(
      Effect.map(({ fake, worker }) => {
        all.push(fake)
        return worker
      })
    )
  return { make, fakes }
}

/**
 * Makes a test pool in the current scope: the `CodexWorkerPool` service over
 * fake workers, and the registry of the fakes. Closing the scope shuts it
 * down. Bad options are a defect (`PoolOptionsError` naming the option).
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeTest = (
  options: TestOptions = {}
): Effect.Effect<{ readonly pool: CodexWorkerPool.Service; readonly fakes: FakeWorkers }, never, Scope.Scope> =>
  Effect.suspend(() => {
    const { pool: poolOptions, script } = split(options)
    const factory = makeFactory(script)
    return CodexWorkerPool.make(poolOptions).pipe(
      Effect.provideService(WorkerFactory, factory.make),
      Effect.provide(noSpawner),
      Effect.map((pool) => ({ pool, fakes: factory.fakes }))
    )
  })

/**
 * The test pool as a scoped layer: `CodexWorkerPool` (fake workers) and
 * `FakeCodexWorkers`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerTest = (options: TestOptions = {}): Layer.Layer<CodexWorkerPool.CodexWorkerPool | FakeCodexWorkers> =>
  Layer.effectContext(
    Effect.map(makeTest(options), ({ fakes, pool }) =>
      Context.make(CodexWorkerPool.CodexWorkerPool, pool).pipe(Context.add(FakeCodexWorkers, fakes)))
  )

/**
 * A test pool driven with promises.
 *
 * @since 0.1.0
 * @category models
 */
export interface TestCodexPromiseWorkerPool extends CodexPromiseWorkerPool {
  /** The fakes this pool has spawned. */
  readonly fakes: FakeWorkers
}

/**
 * The promise facade (`createCodexWorkerPool`) over fake workers: same pool,
 * same guarantees, no processes. Bad options throw `PoolOptionsError`.
 *
 * @example
 * ```ts
 * import { createCodexProvider } from "codex-worker-pool/ai-sdk"
 * import { createTestCodexWorkerPool, textTurns } from "codex-worker-pool/testing"
 *
 * const pool = createTestCodexWorkerPool({ poolSize: 1, script: textTurns() })
 * const model = createCodexProvider({ pool })("fake-model")
 * // ... exercise your chat server ...
 * await pool.shutdown()
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const createTestCodexWorkerPool = (options: TestCodexWorkerPoolOptions = {}): TestCodexPromiseWorkerPool => {
  const { pool: poolOptions, script } = split(options)
  const factory = makeFactory(script)
  const pool = makeCodexPromisePool(poolOptions, noSpawner, factory.make)
  Object.defineProperty(pool, "fakes", { value: factory.fakes, enumerable: true })
  return pool as TestCodexPromiseWorkerPool
}

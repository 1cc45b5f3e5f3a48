/**
 * The `codex-worker-pool/node` entry (src/node.ts) against the fake
 * app-server: its promise facade and its service layer spawn real processes
 * with Node's spawner and leave none behind. (The pool's behaviour is tested
 * in CodexPromisePool.test.ts and CodexWorkerPool.test.ts; this pins that the
 * entry assembles it.)
 */
import { afterEach, beforeEach, describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import * as CodexWorker from "../src/CodexWorker.ts"
import * as CodexWorkerPool from "../src/CodexWorkerPool.ts"
import { createCodexWorkerPool, layerChildProcessSpawner, layerCodexWorkerPool } from "../src/node.ts"
import { fakePoolOptions, fakeServiceOptions, isLivePid, killByMarker, liveByMarker, newMarker, waitUntil } from "./helpers/procs.ts"

let marker = ""
beforeEach(() => {
  marker = newMarker()
})
afterEach(async () => {
  // Safety net only: every test asserts on its own that nothing survived.
  await killByMarker(marker)
})

const noMarkedProcessLeft = () => waitUntil(() => liveByMarker(marker).length === 0)

describe("codex-worker-pool/node", () => {
  it("createCodexWorkerPool spawns with Node, runs a request, and shutdown leaves no process", async () => {
    const pool = createCodexWorkerPool(fakePoolOptions(marker, [], { poolSize: 1 }))
    const { pid, result } = await pool.use(async (worker) => ({
      pid: worker.pid,
      result: await worker.request("thread/start", { ephemeral: true })
    }))
    expect(result).toMatchObject({ thread: { id: expect.any(String), ephemeral: true } })
    expect(liveByMarker(marker).map((p) => p.pid)).toEqual([pid])
    expect(pool.stats()).toMatchObject({ workers: 1, idle: 1, processes: 1 })

    await pool.shutdown()
    expect(isLivePid(pid)).toBe(false)
    expect(pool.stats()).toMatchObject({ workers: 0, finalized: 1, closed: true, processes: 0 })
    expect(await noMarkedProcessLeft()).toBe(true)
  })

  it.effect("layerCodexWorkerPool provides the service; closing it leaves no process", () =>
    Effect.gen(function*() {
      let pid = 0
      const result = yield* Effect.gen(function*() {
        const pool = yield* CodexWorkerPool.CodexWorkerPool
        return yield* pool.use((worker) => {
          pid = worker.pid
          return worker.call("thread/start", { ephemeral: true })
        })
      }).pipe(Effect.provide(layerCodexWorkerPool(fakeServiceOptions(marker, [], { poolSize: 1 }))))
      expect(result.thread.ephemeral).toBe(true)
      expect(pid).toBeGreaterThan(0)
      expect(isLivePid(pid)).toBe(false)
      expect(yield* Effect.promise(noMarkedProcessLeft)).toBe(true)
    }))

  it.effect("layerChildProcessSpawner is what CodexWorker.make needs", () =>
    Effect.gen(function*() {
      const pid = yield* Effect.scoped(Effect.gen(function*() {
        const worker = yield* CodexWorker.make(fakeServiceOptions(marker))
        yield* worker.call("thread/start", {})
        return worker.pid
      }))
      expect(isLivePid(pid)).toBe(false)
      expect(yield* Effect.promise(noMarkedProcessLeft)).toBe(true)
    }).pipe(Effect.provide(layerChildProcessSpawner)))
})

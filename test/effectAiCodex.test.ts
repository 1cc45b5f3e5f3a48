/**
 * The effect/ai language model (`CodexLanguageModel`) over the REAL `codex
 * app-server` binary: `layerCodexWorkerPool` from the node entry, run offline
 * against the mock model server (`startModelServer`, `codexProcessOptions`).
 *
 * What it pins: a `generateText` and a `streamText` through effect/ai get
 * codex's answer and usage; a stream the consumer stops reading mid-turn
 * interrupts the turn and the worker is back (and reused) when the stream's
 * scope has closed; once the program that provided the layers ends, none of
 * the test's codex processes is alive.
 *
 * Process hygiene: a marker on the codex command line and a fresh CODEX_HOME
 * per test; /proc (not the pool's bookkeeping) is checked for survivors;
 * afterEach SIGKILLs marked survivors by PID. Every wait is bounded.
 *
 * Limits: needs the native codex binary and Linux /proc. A slow turn is a
 * `[mode:slow] [delay:60000]` prompt: one delta, then a pause no test waits out.
 */
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "@effect/vitest"
import { Effect, Layer, Stream } from "effect"
import { LanguageModel } from "effect/ai"
import * as CodexWorkerPool from "../src/CodexWorkerPool.ts"
import { CodexLanguageModel } from "../src/effect-ai/index.ts"
import { layerCodexWorkerPool } from "../src/node.ts"
import { type CodexHome, codexProcessOptions, makeCodexHome, type ModelServer, startModelServer } from "../src/testing/index.ts"
import { codexBinaryPath, findMarkedProcesses, killMarkedProcesses, makeMarker, markerArg } from "./helpers/codex.ts"

const SLOW = "[mode:slow] [delay:60000]"

let server: ModelServer
let marker = ""
let home: CodexHome

beforeAll(async () => {
  server = await startModelServer({ deltas: 4 })
})

afterAll(async () => {
  await server?.close()
})

beforeEach(() => {
  marker = makeMarker("effectai")
  home = makeCodexHome()
})

afterEach(async () => {
  await killMarkedProcesses(marker)
  home.cleanup()
})

/** The model over a real pool of one codex worker, marked for this test. */
const layer = () =>
  CodexLanguageModel.layer({
    model: "mock-model",
    threadDefaults: { ephemeral: true, approvalPolicy: "never", sandbox: "read-only" }
  }).pipe(
    Layer.provideMerge(layerCodexWorkerPool({
      command: codexBinaryPath(),
      ...codexProcessOptions({ baseUrl: server.url, codexHome: home.path, config: [markerArg(marker)] }),
      poolSize: 1,
      shutdownTimeout: "1 second"
    }))
  )

describe("effect/ai model over the real codex binary", () => {
  it.live("answers, streams, interrupts a stream stopped mid-turn, and leaves no process when the program ends", () => {
    const prompt = (text: string) => `${text} (${marker})`
    return Effect.gen(function*() {
      const pool = yield* CodexWorkerPool.CodexWorkerPool
      const response = yield* LanguageModel.generateText({ prompt: prompt("hello") })
      expect(response.text).toBe(`Echo: ${prompt("hello")}`)
      expect(response.finishReason).toBe("stop")
      expect(response.usage.inputTokens.total).toBeGreaterThan(0)

      const streamed = yield* Stream.runCollect(LanguageModel.streamText({ prompt: prompt("stream") }))
      expect(streamed.flatMap((part) => part.type === "text-delta" ? [part.delta] : []).join("")).toBe(
        `Echo: ${prompt("stream")}`
      )

      // The slow turn sends one delta and pauses: stop reading there.
      const partial = yield* LanguageModel.streamText({ prompt: prompt(`slow ${SLOW}`) }).pipe(
        Stream.takeUntil((part) => part.type === "text-delta"),
        Stream.runCollect
      )
      expect(partial.at(-1)?.type).toBe("text-delta")
      expect(yield* pool.stats).toMatchObject({ busy: 0, idle: 1, created: 1 })

      // The interrupted worker serves the next call.
      expect((yield* LanguageModel.generateText({ prompt: prompt("next") })).text).toBe(`Echo: ${prompt("next")}`)
      expect(yield* pool.stats).toMatchObject({ created: 1, finalized: 0 })
      expect(findMarkedProcesses(marker).length).toBeGreaterThan(0)
    }).pipe(
      Effect.provide(layer()),
      Effect.andThen(Effect.sync(() => expect(findMarkedProcesses(marker)).toEqual([])))
    )
  }, 60_000)
})

/**
 * Micro-benchmark of the `codex.request` span (not part of `npm run bench`):
 * one JSON-RPC request over an in-memory transport (the response is fed back
 * as soon as the request line is written), without a tracer installed (the
 * channel then makes no span), with a tracer installed (one span per request),
 * and, for reference, what a span made unconditionally with `Effect.withSpan`
 * costs when no tracer is installed (Effect's native tracer).
 *
 *   node bench/requestSpan.ts
 */
import { type Cause, Effect, Queue, Stream, Tracer } from "effect"
import * as JsonRpc from "../src/internal/jsonRpc.ts"

const N = 50_000
const ROUNDS = 9

const program = Effect.gen(function*() {
  const input = yield* Queue.unbounded<string, Cause.Done>()
  const channel = yield* JsonRpc.make<never, never, never>({
    input: Stream.fromQueue(input),
    write: (line) =>
      Effect.sync(() => {
        const { id } = JSON.parse(line) as { readonly id: number }
        Queue.offerUnsafe(input, `{"id":${id},"result":{}}`)
      }),
    requestSpan: { name: "codex.request", attributes: { "codex.pid": 1 } }
  })
  const request = channel.request("thread/start", { ephemeral: true })
  const unconditional = Effect.withSpan(request, "codex.request", {
    attributes: { "rpc.method": "thread/start", "codex.pid": 1 }
  })
  const loop = (effect: Effect.Effect<unknown, unknown>, n: number) =>
    Effect.suspend(() => {
      let i = 0
      return Effect.whileLoop({ while: () => i++ < n, body: () => effect, step: () => {} })
    })
  let spans = 0
  const tracer = Tracer.make({
    span: (options) => {
      spans++
      return new Tracer.NativeSpan(options)
    }
  })
  const variants: ReadonlyArray<readonly [string, (n: number) => Effect.Effect<unknown, unknown>]> = [
    ["no tracer installed (no span made)", (n) => loop(request, n)],
    ["tracer installed (one span per request)", (n) => Effect.withTracer(loop(request, n), tracer)],
    ["reference: Effect.withSpan, no tracer installed", (n) => loop(unconditional, n)]
  ]
  const samples = new Map<string, Array<number>>()
  for (let round = 0; round < ROUNDS; round++) {
    for (let v = 0; v < variants.length; v++) {
      // A different variant first each round, each after a warm-up of its own.
      const [name, run] = variants[(v + round) % variants.length]!
      yield* run(N / 10)
      const start = process.hrtime.bigint()
      yield* run(N)
      const us = Number(process.hrtime.bigint() - start) / N / 1000
      samples.set(name, [...(samples.get(name) ?? []), us])
    }
  }
  for (const [name, xs] of samples) {
    const sorted = [...xs].sort((a, b) => a - b)
    console.log(
      `${name.padEnd(50)} median ${sorted[Math.floor(sorted.length / 2)]!.toFixed(2)} us/request` +
        `  (min ${sorted[0]!.toFixed(2)})`
    )
  }
  console.log(`spans made by the installed tracer: ${spans} (expected ${Math.round(ROUNDS * N * 1.1)})`)
})

await Effect.runPromise(Effect.scoped(program))

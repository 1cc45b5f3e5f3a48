/**
 * `node examples/tracing.ts`: the pool's spans, printed by a console tracer.
 *
 * Runs a pool of one real `codex app-server` worker configured for an offline
 * model server on 127.0.0.1 (nothing leaves the machine), and two jobs at once,
 * each under a span of its own: the first waits for the worker to be spawned,
 * the second for the first to hand the worker over. Every span is printed
 * when it ends; the tree of all of them is printed at the end.
 *
 * Any Effect tracer works the same way: an OpenTelemetry exporter
 * (`effect/observability/OtlpTracer`, `@effect/opentelemetry`) instead of
 * `ConsoleTracer` below sends the same spans to Jaeger, Tempo, Honeycomb...
 */
import { Effect, Layer, Option, Tracer } from "effect"
import { CodexWorkerPool } from "../src/index.ts"
import { layerCodexWorkerPool } from "../src/node.ts"
import { codexProcessOptions, makeCodexHome, startModelServer } from "../src/testing/index.ts"

/** A tracer that prints each span when it ends, and keeps them all. */
const spans: Array<Tracer.NativeSpan> = []
const ConsoleTracer = Tracer.make({
  span: (options) => {
    const span = new Tracer.NativeSpan(options)
    spans.push(span)
    const end = span.end.bind(span)
    span.end = (endTime, exit) => {
      end(endTime, exit)
      const ms = Number(endTime - span.startTime) / 1e6
      const attributes = Object.fromEntries(span.attributes)
      console.log(`span ${span.name} ${ms.toFixed(1)} ms ${exit._tag}`, attributes)
    }
    return span
  }
})

const server = await startModelServer()
const codexHome = makeCodexHome("codex-worker-pool-tracing-")

const program = Effect.gen(function*() {
  const pool = yield* CodexWorkerPool.CodexWorkerPool
  const job = (n: number) =>
    pool.use((worker) => worker.call("thread/start", { ephemeral: true })).pipe(Effect.withSpan(`job ${n}`))
  yield* Effect.forEach([1, 2], job, { concurrency: "unbounded", discard: true })
})

const PoolLive = layerCodexWorkerPool({
  poolSize: 1,
  codexHome: codexHome.path,
  ...codexProcessOptions({ baseUrl: server.url, apiKey: "offline" })
})

try {
  // The tracer is installed around the pool's layer too: construction and the
  // kills at shutdown are traced.
  await Effect.runPromise(
    program.pipe(Effect.provide(PoolLive), Effect.provide(Layer.succeed(Tracer.Tracer, ConsoleTracer)))
  )
} finally {
  await server.close()
  codexHome.cleanup()
}

// The tree: each span under its parent, in the order they started.
const childrenOf = (parent: Tracer.NativeSpan | undefined) =>
  spans.filter((span) => Option.getOrUndefined(span.parent) === parent)
const print = (span: Tracer.NativeSpan, depth: number): void => {
  const ms = span.status._tag === "Ended" ? Number(span.status.endTime - span.startTime) / 1e6 : NaN
  const pid = span.attributes.get("codex.pid")
  const method = span.attributes.get("rpc.method")
  const detail = [method, pid === undefined ? undefined : `pid ${pid}`].filter((x) => x !== undefined).join(", ")
  console.log(`${"  ".repeat(depth)}${span.name}${detail === "" ? "" : ` (${detail})`} ${ms.toFixed(1)} ms`)
  for (const child of childrenOf(span)) print(child, depth + 1)
}
console.log("\nTrace trees:")
for (const root of childrenOf(undefined)) print(root, 0)

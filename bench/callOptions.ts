/**
 * Micro-benchmark of per-call option validation (not part of `npm run bench`):
 * the hand-rolled check the pool runs on every acquire / request that passes
 * options, against a Schema decode per call with the schema built once.
 *
 *   node bench/callOptions.ts
 */
import { Schema } from "effect"
import { AbortSignalSchema, checkAcquireOptions, Millis } from "../src/internal/options.ts"
import { createWorkerPool } from "../src/PromisePool.ts"

const N = 2_000_000
const signal = new AbortController().signal
const inputs: ReadonlyArray<[string, unknown]> = [
  ["no options", undefined],
  ["{ timeoutMs }", { timeoutMs: 50 }],
  ["{ signal, timeoutMs }", { signal, timeoutMs: 50 }]
]

const time = (label: string, f: (input: unknown) => unknown, input: unknown) => {
  let sink = 0
  for (let i = 0; i < N / 10; i++) if (f(input) !== undefined) sink++
  const start = process.hrtime.bigint()
  for (let i = 0; i < N; i++) if (f(input) !== undefined) sink++
  const ns = Number(process.hrtime.bigint() - start) / N
  console.log(`${label.padEnd(66)} ${ns.toFixed(1).padStart(7)} ns/call${sink > 0 ? " (rejected!)" : ""}`)
}

const schema = Schema.Struct({ signal: Schema.optional(AbortSignalSchema), timeoutMs: Schema.optional(Millis) })
const is = Schema.is(schema)
const decode = Schema.decodeUnknownExit(schema, { onExcessProperty: "error" })
const viaIs = (u: unknown) => u === undefined || is(u) ? undefined : "bad"
const viaDecode = (u: unknown) => u === undefined || decode(u)._tag === "Success" ? undefined : "bad"

for (const [name, input] of inputs) {
  time(`hand-rolled check, ${name}`, checkAcquireOptions, input)
  time(`Schema.is (built once), ${name}`, viaIs, input)
  time(`Schema decode, excess = error (built once), ${name}`, viaDecode, input)
}

// End to end: acquire + release of an idle worker, with and without options.
const pool = createWorkerPool({ create: async () => ({}), poolSize: 1 })
pool.release(await pool.acquire())
const M = 500_000
for (const [name, input] of inputs) {
  const options = input as { timeoutMs?: number } | undefined
  for (let i = 0; i < M / 10; i++) pool.release(await pool.acquire(options))
  const start = process.hrtime.bigint()
  for (let i = 0; i < M; i++) pool.release(await pool.acquire(options))
  const ns = Number(process.hrtime.bigint() - start) / M
  console.log(`${`PromisePool acquire + release, ${name}`.padEnd(66)} ${ns.toFixed(1).padStart(7)} ns/call`)
}
await pool.shutdown()

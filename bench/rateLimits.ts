/**
 * Measurement 8: rate-limit admission (`RateLimits`), side by side with
 * `rate-limiter-flexible`, on the memory store and on Redis over loopback (a
 * real `redis-server` started for the run on a free port, as the tests do).
 *
 * - 8a admission: the cost of one admission of an account with a
 *   requests-per-minute and a tokens-per-minute limit that are never reached
 *   (p50 / p99 of single calls, timer overhead included). Ours: `admitUnsafe`
 *   (FIFO, token buckets for RPM and TPM, adaptive 429 state on Redis);
 *   rate-limiter-flexible: `consume` on an RPM and a TPM limiter.
 * - 8b facade: what admission adds to the uncontended facade path:
 *   `acquire` + `release` of a promise pool (one idle worker) with and without
 *   an admission per call: admit, then settle after a usage notification
 *   equal to the estimate (nothing to refund: the usual case), or settle of a
 *   call that ran no turn (everything given back: rate-limiter-flexible's
 *   `reward`); the difference per call.
 * - 8c saturated: calls offered far above the limit, admitted through the
 *   pool (admit, lease a worker, release, settle): admitted calls per second
 *   against the configured rate (what the bucket refills), after its burst.
 * - 8d round trips (Redis): Redis commands per admission (`INFO commandstats`)
 *   and the admission's p50 against a PING's p50 on its own connection.
 *
 * Targets: memory-store admission adds under 2 µs per call to the facade
 * path; the Redis store costs one round trip per admission.
 */
import * as net from "node:net"
import { performance } from "node:perf_hooks"
import { createClient } from "redis"
import { RateLimiterMemory, RateLimiterRedis } from "rate-limiter-flexible"
import { createWorkerPool } from "../src/PromisePool.ts"
import * as RateLimits from "../src/RateLimits.ts"
import { findRedisServer, type RedisServer, startRedis } from "../test/helpers/redis.ts"
import { formatValue } from "./lib/stats.ts"
import type { BenchOptions, MeasurementDef, Section, SectionResults, Verdict } from "./lib/types.ts"

const HUGE_RPM = 1e12
/** Latency the proxy of 8d adds in each direction. */
const PROXY_DELAY_MS = 5
const HUGE_TPM = 1e15
const ESTIMATE = 1_000

const percentile = (values: ReadonlyArray<number>, p: number): number => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!
}

let redis: RedisServer | undefined
const redisServer = async (): Promise<RedisServer> => redis ??= await startRedis(findRedisServer()!)
process.on("exit", () => redis?.killSync())

const contenders = [
  { name: "effect-mem", description: "RateLimits (Effect RateLimiterStore, memory): admitUnsafe" },
  { name: "rlf-mem", description: "rate-limiter-flexible RateLimiterMemory: consume on an RPM and a TPM limiter" },
  { name: "effect-redis", description: "RateLimits on Redis (loopback): admitUnsafe" },
  { name: "rlf-redis", description: "rate-limiter-flexible RateLimiterRedis (node-redis): consume on an RPM and a TPM limiter" }
] as const

type Contender = (typeof contenders)[number]["name"]

/** One admission of a call, for each contender; `close` frees what it made. */
interface Admitter {
  readonly admit: () => unknown
  /** rate-limiter-flexible: gives back what one admission took (`reward`). */
  readonly giveBack: () => Promise<unknown>
  readonly close: () => Promise<void>
}

let keySeq = 0

const makeAdmitter = async (contender: Contender, url?: string): Promise<Admitter> => {
  const key = `bench-${process.pid}-${keySeq++}`
  const redisUrl = async () => url ?? (await redisServer()).url
  switch (contender) {
    case "effect-mem":
    case "effect-redis": {
      const store = contender === "effect-redis"
        ? { redisUrl: await redisUrl(), prefix: `${key}:`, connectTimeoutMs: 2_000 }
        : undefined
      const { service, close } = RateLimits.makeUnsafe(
        { limits: { default: { requestsPerMinute: HUGE_RPM, tokensPerMinute: HUGE_TPM } }, storeTimeoutMs: 5_000 },
        store
      )
      const deadline = Date.now() + 10_000
      while (service.degraded()) {
        if (Date.now() > deadline) throw new Error("Redis did not answer within 10 s")
        await new Promise((resolve) => setTimeout(resolve, 10))
      }
      return {
        admit: () => {
          const r = service.admitUnsafe({ estimatedTokens: ESTIMATE })
          return r instanceof RateLimits.Reservation ? r : r.then((reservation) => reservation)
        },
        giveBack: async () => {},
        close
      }
    }
    case "rlf-mem": {
      const rpm = new RateLimiterMemory({ points: HUGE_RPM, duration: 60, keyPrefix: `${key}-rpm` })
      const tpm = new RateLimiterMemory({ points: HUGE_TPM, duration: 60, keyPrefix: `${key}-tpm` })
      return {
        admit: () => Promise.all([rpm.consume("default", 1), tpm.consume("default", ESTIMATE)]),
        giveBack: () => Promise.all([rpm.reward("default", 1), tpm.reward("default", ESTIMATE)]),
        close: async () => {}
      }
    }
    case "rlf-redis": {
      const client = createClient({ url: await redisUrl(), disableOfflineQueue: true })
      await client.connect()
      const rpm = new RateLimiterRedis({ storeClient: client, useRedisPackage: true, points: HUGE_RPM, duration: 60, keyPrefix: `${key}-rpm` })
      const tpm = new RateLimiterRedis({ storeClient: client, useRedisPackage: true, points: HUGE_TPM, duration: 60, keyPrefix: `${key}-tpm` })
      return {
        admit: () => Promise.all([rpm.consume("default", 1), tpm.consume("default", ESTIMATE)]),
        giveBack: () => Promise.all([rpm.reward("default", 1), tpm.reward("default", ESTIMATE)]),
        close: async () => {
          await client.close()
        }
      }
    }
  }
}

/** Times `count` sequential admissions one by one, in µs. */
const timeAdmissions = async (admitter: Admitter, count: number): Promise<Array<number>> => {
  const times: Array<number> = []
  for (let i = 0; i < count; i++) {
    const t0 = performance.now()
    const result = admitter.admit()
    if (result instanceof Promise) await result
    times.push((performance.now() - t0) * 1_000)
  }
  return times
}

/** A TCP proxy to 127.0.0.1:`port` that delays every chunk by `delayMs` in each direction. */
const delayProxy = async (port: number, delayMs: number) => {
  const sockets = new Set<net.Socket>()
  const server = net.createServer((inbound) => {
    const outbound = net.connect({ host: "127.0.0.1", port })
    sockets.add(inbound).add(outbound)
    const pipe = (from: net.Socket, to: net.Socket) => {
      from.on("data", (chunk) => setTimeout(() => to.destroyed || to.write(chunk), delayMs))
      from.on("close", () => setTimeout(() => to.destroy(), delayMs))
      from.on("error", () => to.destroy())
    }
    pipe(inbound, outbound)
    pipe(outbound, inbound)
  })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()))
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy()
        server.close(() => resolve())
      })
  }
}

const isRedis = (c: string) => c.endsWith("-redis")
const redisMissing = () => findRedisServer() === undefined ? "redis-server not found (see README \"Testing\")" : true

const measurements: ReadonlyArray<MeasurementDef> = [
  {
    id: "admission",
    title: "8a. one admission (RPM + TPM limits never reached): single-call latency",
    metrics: [
      { id: "adm-p50", label: "p50", unit: "µs", better: "lower" },
      { id: "adm-p99", label: "p99", unit: "µs", better: "lower" }
    ],
    supports: (c) => isRedis(c) ? redisMissing() : true,
    run: async (contender, options) => {
      const admitter = await makeAdmitter(contender as Contender)
      try {
        const n = isRedis(contender) ? (options.quick ? 500 : 3_000) : (options.quick ? 5_000 : 50_000)
        await timeAdmissions(admitter, Math.min(1_000, n)) // warm up (JIT, script cache)
        const times = await timeAdmissions(admitter, n)
        return { "adm-p50": { value: percentile(times, 50) }, "adm-p99": { value: percentile(times, 99) } }
      } finally {
        await admitter.close()
      }
    }
  },
  {
    id: "facade",
    title: "8b. added to the uncontended facade path: acquire + release with and without an admission per call",
    metrics: [
      { id: "plain", label: "pool only", unit: "µs", better: "lower", ratio: false },
      { id: "added", label: "+ admit, settle (used = estimate)", unit: "µs", better: "lower" },
      { id: "added-refund", label: "+ admit, settle (no turn: all back)", unit: "µs", better: "lower" }
    ],
    supports: (c) => c === "effect-mem" || c === "rlf-mem" ? true : "measured in memory only (8d covers Redis)",
    run: async (contender, options) => {
      const pool = createWorkerPool({ create: async () => ({}), poolSize: 1 })
      const admitter = await makeAdmitter(contender as Contender)
      const n = options.quick ? 20_000 : 200_000
      const usage = {
        threadId: "",
        turnId: "t",
        tokenUsage: { total: { totalTokens: 0 }, last: { totalTokens: ESTIMATE, inputTokens: ESTIMATE } }
      }
      try {
        // mode 0: pool only; 1: the call used its estimate; 2: the call ran no turn (rate-limiter-flexible: reward).
        const loop = async (mode: 0 | 1 | 2) => {
          const t0 = performance.now()
          for (let i = 0; i < n; i++) {
            let reservation: unknown
            if (mode > 0) {
              reservation = admitter.admit()
              if (reservation instanceof Promise) reservation = await reservation
            }
            const worker = await pool.acquire()
            pool.release(worker)
            if (reservation instanceof RateLimits.Reservation) {
              if (mode === 1) reservation.onNotification("thread/tokenUsage/updated", usage)
              reservation.settle()
            } else if (mode === 2) {
              await admitter.giveBack()
            }
          }
          return ((performance.now() - t0) * 1_000) / n
        }
        await loop(0)
        await loop(1)
        await loop(2)
        const plain = Math.min(await loop(0), await loop(0))
        const used = Math.min(await loop(1), await loop(1))
        const refund = Math.min(await loop(2), await loop(2))
        return {
          plain: { value: plain },
          added: { value: Math.max(0, used - plain) },
          "added-refund": { value: Math.max(0, refund - plain) }
        }
      } finally {
        await admitter.close()
        await pool.shutdown()
      }
    }
  },
  {
    id: "saturated",
    title: "8c. saturated limit: admitted calls per second through a pool (admit, lease, release, settle)",
    metrics: [
      { id: "rate", label: "admitted/s", unit: "/s", better: "higher", ratio: false },
      { id: "limit", label: "limit/s", unit: "/s", better: "higher", ratio: false },
      { id: "share", label: "of limit", unit: "x", better: "higher", ratio: false }
    ],
    supports: (c) =>
      c.startsWith("rlf") ? "consume refuses instead of waiting (its RateLimiterQueue waits; not measured here)" : isRedis(c) ? redisMissing() : true,
    run: async (contender, options) => {
      // 6000 requests per minute = 100 per second; measured after the burst of 6000.
      const rpm = 6_000
      const seconds = options.quick ? 1 : 3
      const store = contender === "effect-redis" ? { redisUrl: (await redisServer()).url, prefix: `sat-${keySeq++}:` } : undefined
      const { service, close } = RateLimits.makeUnsafe({ limits: { default: { requestsPerMinute: rpm } } }, store)
      const pool = createWorkerPool({ create: async () => ({}), poolSize: 4 })
      try {
        while (service.degraded()) await new Promise((resolve) => setTimeout(resolve, 10))
        // Use up the burst capacity first (each call ran a turn: it keeps its charge).
        for (let i = 0; i < rpm; i++) {
          const reservation = await service.admitUnsafe({})
          reservation.onNotification("turn/started", {})
          reservation.settle()
          if (i % 500 === 0) await new Promise((resolve) => setImmediate(resolve))
        }
        // What refilled meanwhile is admitted at once when the callers start:
        // admissions of the first `skip` seconds are not counted.
        const skip = 0.5
        const admittedAt: Array<number> = []
        let stop = false
        const started = performance.now()
        const worker = async () => {
          while (!stop) {
            const reservation = await service.admitUnsafe({})
            if (stop) {
              reservation.cancel()
              break
            }
            await pool.use(async () => {})
            reservation.onNotification("turn/started", {})
            reservation.settle()
            admittedAt.push(performance.now())
          }
        }
        const clients = Array.from({ length: 50 }, worker)
        await new Promise((resolve) => setTimeout(resolve, (seconds + skip) * 1_000))
        stop = true
        const ended = performance.now()
        await Promise.race([Promise.all(clients), new Promise((resolve) => setTimeout(resolve, 2_000))])
        const counted = admittedAt.filter((t) => t >= started + skip * 1_000 && t <= ended).length
        const rate = counted / ((ended - started) / 1_000 - skip)
        return { rate: { value: rate }, limit: { value: rpm / 60 }, share: { value: rate / (rpm / 60) } }
      } finally {
        await close()
        await pool.shutdown()
      }
    }
  },
  {
    id: "roundtrips",
    title: `8d. Redis round trips: Lua scripts per admission; admission p50 over PING p50 through a proxy adding ${PROXY_DELAY_MS} ms each way`,
    metrics: [
      { id: "commands", label: "scripts/admission", unit: "cmd", better: "lower", ratio: false },
      { id: "ping", label: "PING p50", unit: "ms", better: "lower", ratio: false },
      { id: "admission", label: "admission p50", unit: "ms", better: "lower", ratio: false },
      { id: "rtt", label: "round trips", unit: "x", better: "lower", ratio: false }
    ],
    supports: (c) => isRedis(c) ? redisMissing() : "Redis only",
    run: async (contender, options) => {
      const server = await redisServer()
      const client = createClient({ url: server.url })
      await client.connect()
      const proxy = await delayProxy(server.port, PROXY_DELAY_MS)
      const direct = await makeAdmitter(contender as Contender)
      const slow = await makeAdmitter(contender as Contender, `redis://127.0.0.1:${proxy.port}`)
      const slowClient = createClient({ url: `redis://127.0.0.1:${proxy.port}` })
      await slowClient.connect()
      try {
        const n = options.quick ? 300 : 2_000
        await timeAdmissions(direct, 200)
        // Commands a script runs are counted too, under their own names: count the scripts.
        const calls = async () => {
          const stats = await client.sendCommand(["INFO", "commandstats"]) as string
          let total = 0
          for (const match of stats.matchAll(/cmdstat_(evalsha|eval):calls=(\d+)/g)) total += Number(match[2])
          return total
        }
        const before = await calls()
        await timeAdmissions(direct, n)
        const after = await calls()
        const m = options.quick ? 20 : 60
        await timeAdmissions(slow, 5)
        const admissions = await timeAdmissions(slow, m)
        const pings: Array<number> = []
        for (let i = 0; i < m; i++) {
          const t0 = performance.now()
          await slowClient.ping()
          pings.push((performance.now() - t0) * 1_000)
        }
        const ping = percentile(pings, 50) / 1_000
        const admission = percentile(admissions, 50) / 1_000
        return {
          commands: { value: (after - before) / n },
          ping: { value: ping },
          admission: { value: admission },
          rtt: { value: admission / ping }
        }
      } finally {
        await slowClient.close()
        await client.close()
        await direct.close()
        await slow.close()
        await proxy.close()
      }
    }
  }
]

const med = (r: SectionResults, metric: string, contender: string) => r[metric]?.[contender]?.median

const targets = (r: SectionResults): ReadonlyArray<Verdict> => {
  const added = med(r, "added", "effect-mem")
  const rtt = med(r, "rtt", "effect-redis")
  return [
    {
      target: "memory-store admission adds < 2 µs per call to the uncontended facade path (admit + settle, usage = estimate)",
      pass: added === undefined ? undefined : added < 2,
      detail: added === undefined ? "not measured" : `added ${formatValue(added, "µs")} per call`
    },
    {
      target: `Redis store: one round trip per admission (admission p50 <= 1.5 x PING p50 with ${PROXY_DELAY_MS} ms added each way)`,
      pass: rtt === undefined ? undefined : rtt <= 1.5,
      detail: rtt === undefined
        ? "not measured"
        : `admission p50 = ${rtt.toFixed(2)} x PING p50; its ${med(r, "commands", "effect-redis")?.toFixed(1) ?? "?"} scripts are sent together`
    }
  ]
}

export const section: Section = {
  name: "ratelimits",
  title: "8. rate-limit admission: RateLimits (Effect RateLimiter) vs rate-limiter-flexible, memory and Redis",
  reference: "rlf-mem",
  contenders,
  measurements,
  describe: (options: BenchOptions) => [
    `redis-server: ${findRedisServer() ?? "not found (Redis contenders are n/a)"}`,
    `limits never reached in 8a/8b: ${HUGE_RPM} requests and ${HUGE_TPM} tokens per minute; estimate 1000 tokens`,
    `8c: 6000 requests per minute after its burst, 50 callers, ${options.quick ? 1 : 3} s`
  ],
  targets,
  notes: [
    "8a times single calls with performance.now(); the timer's own cost (well under 1 µs) is included.",
    "Ours on Redis sends its token-bucket and adaptive-limiter scripts (EVALSHA) together: one round trip; rate-limiter-flexible sends EVAL with the script text.",
    "rate-limiter-flexible's consume takes or refuses (no waiting), so 8c measures ours only."
  ]
}

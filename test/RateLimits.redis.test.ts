/**
 * Rate-limit admission against a real `redis-server` (no mock): the harness
 * (`helpers/redis.ts`) starts one per test on a free loopback port and stops
 * it by PID.
 *
 * - Two processes, each with a real pool (the promise facade over fake
 *   workers) on the same Redis key and a small RPM limit, admit exactly the
 *   limit together through `pool.use`; calls past it fail with
 *   `RateLimitedError` within their short `timeoutMs`.
 * - A 429 cooldown and workspace usage reported by one instance reach another.
 * - Killing Redis mid-run: calls in flight settle within the store timeout on
 *   the local limiter (`limit / instances`), nothing hangs; restarting Redis
 *   restores sharing.
 * - Redis down at start: admission starts degraded and switches to the shared
 *   store once Redis answers.
 *
 * Waits are bounded (`within`); assertions never depend on how long something
 * took beyond those bounds. Without a redis-server the tests are skipped
 * loudly (failed with CI=true); see README "Testing".
 */
import { spawn } from "node:child_process"
import { createInterface } from "node:readline"
import { fileURLToPath } from "node:url"
import { Effect } from "effect"
import { afterEach, describe, expect, it } from "vitest"
import { RateLimitedError } from "../src/errors.ts"
import * as RateLimits from "../src/RateLimits.ts"
import { type RedisServer, redisCommand, redisServer, startRedis } from "./helpers/redis.ts"
import { killByMarker, liveByMarker, markerArg, newMarker } from "./helpers/procs.ts"
import { until, within } from "./helpers/wait.ts"

const binary = redisServer("test/RateLimits.redis.test.ts")
const hostScript = fileURLToPath(new URL("./fixtures/rate-limit-host.ts", import.meta.url))

const cleanups: Array<() => Promise<unknown>> = []
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => {})
})

const redis = async (): Promise<RedisServer> => {
  const server = await startRedis(binary!)
  cleanups.push(() => server.stop())
  cleanups.push(() => killByMarker(server.marker))
  return server
}

/** An admission service on `server` (its own connection), closed after the test. */
const service = (server: RedisServer, options: RateLimits.Options, prefix = "cwp-test:") => {
  const made = RateLimits.makeUnsafe(
    { storeTimeoutMs: 300, probeIntervalMs: 100, ...options },
    { redisUrl: server.url, prefix, connectTimeoutMs: 500 }
  )
  cleanups.push(() => within(made.close(), "closing an admission service", 5_000))
  return made.service
}

const shared = (s: RateLimits.Service, what: string) => until(() => !s.degraded(), what, 10_000)

/** Settles to "admitted", or "refused" for a `RateLimitedError`. */
const outcome = (admission: RateLimits.Reservation | Promise<RateLimits.Reservation>) =>
  Promise.resolve(admission).then(
    () => "admitted" as const,
    (error: unknown) => (error instanceof RateLimitedError ? "refused" as const : Promise.reject(error))
  )

describe.skipIf(binary === undefined)("RateLimits on a real redis-server", { timeout: 30_000 }, () => {
  it("two processes sharing a key and a small limit together admit no more than the limit (through their pools)", async () => {
    const server = await redis()
    const marker = newMarker()
    cleanups.push(() => killByMarker(marker))
    const rpm = 6
    const hosts = [0, 1].map(() => {
      const child = spawn(process.execPath, [
        hostScript,
        `--url=${server.url}`,
        `--rpm=${rpm}`,
        "--calls=12",
        "--timeout=1000",
        markerArg(marker)
      ], { stdio: ["pipe", "pipe", "inherit"] })
      const lines: Array<any> = []
      const listeners = new Set<() => void>()
      createInterface({ input: child.stdout! }).on("line", (line) => {
        // Log lines (Effect's console logger) are not JSON.
        if (line.startsWith("{")) lines.push(JSON.parse(line))
        for (const listener of listeners) listener()
      })
      const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)))
      const waitFor = (predicate: () => boolean, what: string) =>
        within(new Promise<void>((resolve) => {
          const check = () => predicate() && resolve()
          listeners.add(check)
          check()
        }), what, 15_000)
      return { child, lines, exited, waitFor }
    })
    await Promise.all(hosts.map((h) => h.waitFor(() => h.lines.some((l) => l.ready), "a host to connect to Redis")))
    const start = Date.now()
    for (const host of hosts) host.child.stdin!.write("go\n")
    await Promise.all(hosts.map((h) => h.waitFor(() => h.lines.some((l) => l.done), "a host's admissions")))
    expect(await within(Promise.all(hosts.map((h) => h.exited)), "the hosts to exit", 10_000)).toEqual([0, 0])
    const results = hosts.flatMap((h) => h.lines.filter((l) => l.call !== undefined))
    expect(results.length).toBe(24)
    expect(results.filter((r) => r.outcome !== "admitted" && r.outcome !== "refused")).toEqual([])
    // The bucket holds 6 and refills one every 10 s; every call is settled within its 1 s timeout of "go".
    const admitted = results.filter((r) => r.outcome === "admitted")
    expect(admitted.every((r) => r.at - start < 10_000)).toBe(true)
    expect(admitted.length).toBe(rpm)
    // Both pools stayed on the shared store throughout (a local limiter would admit 3 each).
    expect(hosts.map((h) => h.lines.find((l) => l.done)?.degraded)).toEqual([false, false])
    expect(liveByMarker(marker)).toEqual([])
  })

  it("a 429 cooldown and workspace usage reported by one instance reach another", async () => {
    const server = await redis()
    const one = service(server, { name: "one" })
    const two = service(server, { name: "two" })
    await shared(one, "instance one to connect")
    await shared(two, "instance two to connect")
    const r = await one.admitUnsafe({ workspace: "acme" })
    r.onNotification("thread/tokenUsage/updated", {
      threadId: "th-1",
      turnId: "t",
      tokenUsage: { total: { totalTokens: 700 }, last: { totalTokens: 700, inputTokens: 600, cachedInputTokens: 100, outputTokens: 100 } }
    })
    r.onNotification("error", {
      error: {
        message: "Reconnecting... 1/2",
        codexErrorInfo: { responseStreamDisconnected: { httpStatusCode: null } },
        additionalDetails: "rate limit exceeded: Please try again in 1.5s."
      },
      willRetry: true
    })
    r.settle()
    await within(flush(one), "instance one's store updates", 5_000)
    const usage = await runUsage(two, "acme")
    expect(usage.minute).toMatchObject({ requests: 1, inputTokens: 600, cachedInputTokens: 100, outputTokens: 100, totalTokens: 700 })
    expect(usage.degraded).toBe(false)
    // Instance two has not seen the 429 itself, yet waits for the cooldown kept in Redis.
    expect(two.cooldownRemaining("default")).toBe(0)
    const asked = Date.now()
    const refused = await outcome(two.admitUnsafe({ timeoutMs: 500 }))
    expect(refused).toBe("refused")
    await within(Promise.resolve(two.admitUnsafe({ timeoutMs: 5_000 })), "instance two's admission after the cooldown", 5_000)
    expect(Date.now() - asked).toBeGreaterThanOrEqual(1_000)
  })

  it("killing Redis mid-run: calls settle on the local limiter without a hang; restarting it restores sharing", async () => {
    const server = await redis()
    const options: RateLimits.Options = { limits: { default: { requestsPerMinute: 4 } }, instances: 2 }
    const one = service(server, options)
    const two = service(server, options)
    await shared(one, "instance one to connect")
    await shared(two, "instance two to connect")
    expect(await outcome(one.admitUnsafe({ timeoutMs: 1_000 }))).toBe("admitted")

    // Crash Redis while calls are in flight: each settles within the store timeout (300 ms) plus slack.
    const inFlight = [one.admitUnsafe({ timeoutMs: 60_000 }), one.admitUnsafe({ timeoutMs: 60_000 })]
    await server.kill()
    const more = [one.admitUnsafe({ timeoutMs: 1_000 }), two.admitUnsafe({ timeoutMs: 1_000 })]
    const settled = await within(Promise.all([...inFlight, ...more].map(outcome)), "calls while Redis is down", 3_000)
    expect(settled.every((o) => o === "admitted" || o === "refused")).toBe(true)
    expect(one.degraded()).toBe(true)
    expect(two.degraded()).toBe(true)
    expect((await runUsage(one, "x")).degraded).toBe(true)
    // Never open: locally 4 / 2 = 2 per minute per instance.
    const burst = await within(Promise.all(Array.from({ length: 4 }, () => outcome(one.admitUnsafe({ timeoutMs: 1_000 })))), "a burst", 3_000)
    expect(burst.filter((o) => o === "admitted").length).toBeLessThanOrEqual(2)

    await server.restart()
    await shared(one, "instance one to return to Redis")
    await shared(two, "instance two to return to Redis")
    // The restarted Redis is empty: 4 requests shared by both. A local limiter would give each 2 only.
    const first = await within(Promise.all([1, 2, 3].map(() => outcome(one.admitUnsafe({ timeoutMs: 1_000 })))), "admissions on one", 3_000)
    expect(first).toEqual(["admitted", "admitted", "admitted"])
    expect(await outcome(two.admitUnsafe({ timeoutMs: 1_000 }))).toBe("admitted")
    expect(await outcome(two.admitUnsafe({ timeoutMs: 1_000 }))).toBe("refused")
    expect(await redisCommand(server.port, "EXISTS cwp-test:rpm:default")).toBe(":1")
  })

  it("Redis down at start: admission starts degraded and uses Redis once it answers", async () => {
    const server = await redis()
    await server.kill()
    const one = service(server, { limits: { default: { requestsPerMinute: 2 } }, instances: 2 })
    expect(one.degraded()).toBe(true)
    expect(await within(outcome(one.admitUnsafe({ timeoutMs: 1_000 })), "an admission without Redis", 3_000)).toBe("admitted")
    await server.restart()
    await shared(one, "the first connection to Redis")
    expect(await outcome(one.admitUnsafe({ timeoutMs: 1_000 }))).toBe("admitted")
    expect(await redisCommand(server.port, "EXISTS cwp-test:rpm:default")).toBe(":1")
  })
})

const flush = (s: RateLimits.Service) => Effect.runPromise(s.flush)
const runUsage = (s: RateLimits.Service, workspace: string) => Effect.runPromise(s.usage(workspace))

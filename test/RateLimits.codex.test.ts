/**
 * Rate-limit admission end to end with the REAL `codex app-server` binary:
 * the test wires admission around a pooled worker by hand (admit, feed every
 * notification of the lease to the reservation, settle) and drives turns
 * against the offline model server, behind a small front that answers chosen
 * model requests with HTTP 429 (with `retry-after: 1`, or without).
 *
 * What it pins: usage is charged from codex's real `thread/tokenUsage/updated`
 * notifications (the estimate settles to them; the workspace counters show
 * them); a 429 without `retry-after` fails the turn and puts the account in
 * cooldown (the default one: codex does not pass the header on), so the next
 * admission with a shorter timeout is refused at once; a 429 with
 * `retry-after` that codex retries by itself (stream_max_retries 1) reports a
 * cooldown and the turn still completes, settled to its real usage.
 *
 * The same end to end through the pool's own admission (`createCodexWorkerPool`
 * with `rateLimits`, calls with `workspace` / `estimatedTokens`): a real
 * turn's usage shows in `pool.usage(workspace)` after release; a 429 without
 * `retry-after` makes the next `pool.acquire` with a short `timeoutMs` fail
 * with `RateLimitedError { limit: "cooldown" }`.
 *
 * Process hygiene as in realCodexPool.test.ts: marker, fresh CODEX_HOME,
 * shutdown, /proc check, SIGKILL of marked survivors by PID.
 */
import * as http from "node:http"
import type { AddressInfo } from "node:net"
import { Effect } from "effect"
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest"
import type { AcquireOptions, CodexPromiseWorkerPool, CodexWorkerHandle, CodexWorkerPoolOptions } from "../src/CodexPromisePool.ts"
import { RateLimitedError } from "../src/errors.ts"
import { createCodexWorkerPool } from "../src/node.ts"
import * as RateLimits from "../src/RateLimits.ts"
import {
  type CodexHome,
  codexEnv,
  makeCodexHome,
  MODEL_SERVER_API_KEY_ENV as MOCK_API_KEY_ENV
} from "../src/testing/codexConfig.ts"
import { type ModelServer, startModelServer } from "../src/testing/ModelServer.ts"
import {
  codexBinaryPath,
  findMarkedProcesses,
  killMarkedProcesses,
  makeMarker,
  markedCodexArgs
} from "./helpers/codex.ts"
import { within } from "./helpers/wait.ts"

const WAIT_MS = 15_000

type Answer = "ok" | "429" | "429-retry-after"

/**
 * An HTTP front of the model server: model requests are answered by the
 * next entry of `plan` ("ok": passed on to the model server), then "ok".
 */
interface Front {
  readonly url: string
  readonly plan: Array<Answer>
  readonly answered: Array<Answer>
  close(): Promise<void>
}

const startFront = async (backend: ModelServer): Promise<Front> => {
  const plan: Array<Answer> = []
  const answered: Array<Answer> = []
  const server = http.createServer((req, res) => {
    const chunks: Array<Buffer> = []
    req.on("data", (chunk: Buffer) => chunks.push(chunk))
    req.on("end", () => {
      const answer = req.url?.endsWith("/responses") ? plan.shift() ?? "ok" : "ok"
      answered.push(answer)
      if (answer !== "ok") {
        res.writeHead(429, {
          "content-type": "application/json",
          ...(answer === "429-retry-after" ? { "retry-after": "1" } : {})
        })
        res.end(JSON.stringify({
          error: { message: "Rate limit reached for requests. Please try again in 1s.", type: "requests", code: "rate_limit_exceeded" }
        }))
        return
      }
      const forward = http.request(
        { host: "127.0.0.1", port: backend.port, path: req.url, method: req.method, headers: req.headers },
        (upstream) => {
          res.writeHead(upstream.statusCode ?? 502, upstream.headers)
          upstream.pipe(res)
        }
      )
      forward.on("error", () => res.destroy())
      forward.end(Buffer.concat(chunks))
    })
  })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()))
  const port = (server.address() as AddressInfo).port
  return {
    url: `http://127.0.0.1:${port}/v1`,
    plan,
    answered,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      })
  }
}

let backend: ModelServer
let front: Front
let marker = ""
let home: CodexHome
const closers: Array<() => Promise<unknown>> = []

beforeAll(async () => {
  backend = await startModelServer({ usage: () => ({ input_tokens: 100, output_tokens: 20, total_tokens: 120 }) })
  front = await startFront(backend)
})

afterAll(async () => {
  await front?.close()
  await backend?.close()
})

beforeEach(() => {
  marker = makeMarker("ratelimits")
  home = makeCodexHome()
  front.plan.length = 0
})

afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await within(close(), "closing", WAIT_MS).catch(() => {})
  await killMarkedProcesses(marker)
  home.cleanup()
})

/**
 * A pool of one real codex worker whose provider retries a streamed 429 once
 * (when it has `retry-after`); `limits`: the pool's rate-limit options.
 */
const makePool = (
  limits: Pick<CodexWorkerPoolOptions, "rateLimits" | "rateLimitOptions"> = {}
): CodexPromiseWorkerPool => {
  const provider = `{name="Mock",base_url="${front.url}",env_key="${MOCK_API_KEY_ENV}",` +
    `wire_api="responses",request_max_retries=0,stream_max_retries=1}`
  const pool = createCodexWorkerPool({
    command: codexBinaryPath(),
    args: markedCodexArgs(front.url, marker, { config: [`model_providers.mock=${provider}`] }),
    env: codexEnv({ codexHome: home.path }),
    poolSize: 1,
    ...limits
  })
  closers.push(() => pool.shutdown())
  return pool
}

const makeLimits = (options: RateLimits.Options) => {
  const { service, close } = RateLimits.makeUnsafe(options)
  closers.push(close)
  return service
}

/** What a pool does around one call: admit, lease, feed notifications to the reservation, settle. */
const runTurn = async (
  pool: CodexPromiseWorkerPool,
  limits: RateLimits.Service,
  request: RateLimits.AdmitRequest,
  text: string
): Promise<{ readonly reservation: RateLimits.Reservation; readonly status: string }> => {
  const reservation = await limits.admitUnsafe(request)
  try {
    const status = await pool.use(async (worker: CodexWorkerHandle) => {
      let resolveDone: (status: string) => void = () => {}
      const done = new Promise<string>((resolve) => (resolveDone = resolve))
      const stop = worker.onMessage((message) => {
        if (!("method" in message) || message.method === undefined) return
        reservation.onNotification(message.method, message.params)
        if (message.method === "turn/completed") resolveDone((message.params as any)?.turn?.status)
      })
      try {
        const { thread } = await worker.request("thread/start", { ephemeral: true }) as { thread: { id: string } }
        await worker.request("turn/start", { threadId: thread.id, input: [{ type: "text", text, text_elements: [] }] })
        return await within(done, "turn/completed", WAIT_MS)
      } finally {
        stop()
      }
    })
    return { reservation, status }
  } finally {
    reservation.settle()
    await Effect.runPromise(limits.flush)
  }
}

/** One turn through the pool's own admission (`pool.use` with `options`); its final status. */
const poolTurn = (pool: CodexPromiseWorkerPool, options: AcquireOptions, text: string): Promise<string> =>
  pool.use(async (worker: CodexWorkerHandle) => {
    let resolveDone: (status: string) => void = () => {}
    const done = new Promise<string>((resolve) => (resolveDone = resolve))
    const stop = worker.onMessage((message) => {
      if ("method" in message && message.method === "turn/completed") resolveDone((message.params as any)?.turn?.status)
    })
    try {
      const { thread } = await worker.request("thread/start", { ephemeral: true }) as { thread: { id: string } }
      await worker.request("turn/start", { threadId: thread.id, input: [{ type: "text", text, text_elements: [] }] })
      return await within(done, "turn/completed", WAIT_MS)
    } finally {
      stop()
    }
  }, options)

describe("RateLimits with the real codex binary", { timeout: 40_000 }, () => {
  it("charges the usage codex reports in thread/tokenUsage/updated and counts it for the workspace", async () => {
    const pool = makePool()
    const limits = makeLimits({ limits: { default: { requestsPerMinute: 100, tokensPerMinute: 100_000 } } })
    const { reservation, status } = await runTurn(pool, limits, { workspace: "acme", estimatedTokens: 5_000 }, "hello")
    expect(status).toBe("completed")
    expect(reservation.requests).toBe(1)
    expect(reservation.tokens).toBe(120)
    // The 5000 reserved settled to the 120 codex reported.
    expect(reservation.chargedTokens).toBe(120)
    const usage = await Effect.runPromise(limits.usage("acme"))
    expect(usage.minute).toMatchObject({ requests: 1, inputTokens: 100, outputTokens: 20, totalTokens: 120 })
    await within(pool.shutdown(), "shutdown", WAIT_MS)
    expect(findMarkedProcesses(marker)).toEqual([])
  })

  it("a 429 without retry-after fails the turn and puts the account in cooldown for every later call", async () => {
    const pool = makePool()
    const limits = makeLimits({ limits: { default: { tokensPerMinute: 100_000 } }, defaultCooldownMs: 4_000 })
    front.plan.push("429")
    const { reservation, status } = await runTurn(pool, limits, { estimatedTokens: 5_000 }, "first")
    expect(status).toBe("failed")
    expect(reservation.rateLimited).toBe(true)
    expect(reservation.failed).toBe(true)
    // A failed turn keeps what it was charged.
    expect(reservation.chargedTokens).toBe(5_000)
    expect(limits.cooldownRemaining("default")).toBeGreaterThan(2_000)
    const refused = await Promise.resolve(limits.admitUnsafe({ timeoutMs: 500 })).then(() => undefined, (e) => e)
    expect(refused).toBeInstanceOf(RateLimitedError)
    expect(refused).toMatchObject({ limit: "cooldown", account: "default" })
    await within(pool.shutdown(), "shutdown", WAIT_MS)
    expect(findMarkedProcesses(marker)).toEqual([])
  })

  it("a 429 with retry-after that codex retries reports a cooldown; the turn completes and settles to its usage", async () => {
    const pool = makePool()
    const limits = makeLimits({ limits: { default: { tokensPerMinute: 100_000 } }, defaultCooldownMs: 3_000 })
    front.plan.push("429-retry-after")
    const { reservation, status } = await runTurn(pool, limits, { estimatedTokens: 5_000 }, "second")
    expect(front.answered.slice(-2)).toEqual(["429-retry-after", "ok"])
    expect(status).toBe("completed")
    expect(reservation.rateLimited).toBe(true)
    expect(reservation.tokens).toBe(120)
    expect(reservation.chargedTokens).toBe(120)
    expect(limits.cooldownRemaining("default")).toBeGreaterThan(0)
    await within(pool.shutdown(), "shutdown", WAIT_MS)
    expect(findMarkedProcesses(marker)).toEqual([])
  })

  it("through the pool: a real turn's usage (thread/tokenUsage/updated) shows in pool.usage(workspace) after release", async () => {
    const pool = makePool({ rateLimits: { requestsPerMinute: 100, tokensPerMinute: 100_000 } })
    expect(await poolTurn(pool, { workspace: "acme", estimatedTokens: 5_000 }, "hello")).toBe("completed")
    const usage = await pool.usage("acme")
    // What codex reported, not the 5000 estimated.
    expect(usage.minute).toMatchObject({ requests: 1, inputTokens: 100, outputTokens: 20, totalTokens: 120 })
    expect(usage.day).toMatchObject({ requests: 1, totalTokens: 120 })
    expect((await pool.usage("other")).minute).toMatchObject({ requests: 0, totalTokens: 0 })
    await within(pool.shutdown(), "shutdown", WAIT_MS)
    expect(findMarkedProcesses(marker)).toEqual([])
  })

  it("through the pool: a 429 without retry-after puts the account in cooldown; the next acquire with a short timeout is refused", async () => {
    const pool = makePool({ rateLimits: { tokensPerMinute: 100_000 }, rateLimitOptions: { defaultCooldownMs: 4_000 } })
    front.plan.push("429")
    expect(await poolTurn(pool, { estimatedTokens: 5_000 }, "first")).toBe("failed")
    expect(front.answered).toContain("429")
    const refused = await pool.acquire({ timeoutMs: 500 }).then(() => undefined, (e) => e)
    expect(refused).toBeInstanceOf(RateLimitedError)
    expect(refused).toMatchObject({ limit: "cooldown", account: "default" })
    await within(pool.shutdown(), "shutdown", WAIT_MS)
    expect(findMarkedProcesses(marker)).toEqual([])
  })
})

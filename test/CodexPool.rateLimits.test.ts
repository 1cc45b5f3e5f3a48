/**
 * Rate limits through the Codex pools (the Effect service and the promise
 * facade, on fake workers): admission before a worker is taken, bounded by
 * the acquire timeout, FIFO per account, abortable; tokens charged from the
 * lease's notifications and settled when it ends; a 429 `error` notification
 * cools the account down; workspace limits refuse without taking a worker.
 * Effect tests run on the `TestClock`; facade tests never wait for a limit
 * (they abort, or their budget is shorter than the announced wait).
 *
 * No process is started anywhere in this file.
 */
import { describe, expect, it } from "@effect/vitest"
import { generateText } from "ai"
import { createCodexProvider } from "../src/ai-sdk/index.ts"
import { textTurns } from "../src/testing/textTurns.ts"
import { Effect, Exit, Fiber, Scope } from "effect"
import { TestClock } from "effect/testing"
import type * as CodexWorkerPool from "../src/CodexWorkerPool.ts"
import { PoolOptionsError, RateLimitedError, WorkspaceLimitError } from "../src/errors.ts"
import { createTestCodexWorkerPool, makeTest } from "../src/testing/TestCodexWorkerPool.ts"
import type { FakeWorkers } from "../src/testing/TestCodexWorkerPool.ts"

/** The `thread/tokenUsage/updated` notification of one model request of `tokens` tokens. */
const tokenUsage = (threadId: string, total: number, tokens: number) => ({
  threadId,
  turnId: "turn",
  tokenUsage: {
    total: { totalTokens: total, inputTokens: total, cachedInputTokens: 0, cacheWriteInputTokens: 0, outputTokens: 0, reasoningOutputTokens: 0 },
    last: { totalTokens: tokens, inputTokens: tokens, cachedInputTokens: 0, cacheWriteInputTokens: 0, outputTokens: 0, reasoningOutputTokens: 0 },
    modelContextWindow: 200_000
  }
})

/** The `error` notification codex sends when the API answered 429 and it gave up. */
const error429 = {
  error: {
    message: "exceeded retry limit, last status: 429 Too Many Requests",
    codexErrorInfo: { responseTooManyFailedAttempts: { httpStatusCode: 429 } },
    additionalDetails: null,
    misalignment: null
  },
  willRetry: false,
  threadId: "th",
  turnId: "turn"
}

const failureOf = <A, E>(exit: Exit.Exit<A, E>): unknown =>
  Exit.isFailure(exit) ? exit.cause.reasons.find((r) => r._tag === "Fail")?.["error" as never] : undefined

/** A facade call that runs a turn. */
const facadeTurn = (pool: ReturnType<typeof createTestCodexWorkerPool>, options = {}) =>
  pool.use(async (worker) => {
    pool.fakes.byPid(worker.pid)!.notify("turn/started", turnStarted)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }, options)

/** Leases a worker in a scope of its own; returns it and the release. */
const lease = (pool: CodexWorkerPool.Service, options: CodexWorkerPool.AcquireOptions = {}) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const worker = yield* pool.getWith(options).pipe(Scope.provide(scope))
    return { worker, release: Scope.close(scope, Exit.void) }
  })

/** The fake behind a leased worker. */
const fakeOf = (fakes: FakeWorkers, pid: number) => fakes.byPid(pid)!

/** Lets forked fibers run (no pool time passes). */
const settle = Effect.gen(function*() {
  for (let i = 0; i < 20; i++) yield* Effect.yieldNow
})

const turnStarted = { threadId: "th", turn: { id: "turn", items: [], status: "inProgress", error: null } }

/**
 * A call that runs a turn (a lease whose worker reports `turn/started`; a
 * lease without one is given back everything, as a call that never ran).
 */
const turn = (pool: CodexWorkerPool.Service, fakes: FakeWorkers, options: CodexWorkerPool.AcquireOptions = {}) =>
  Effect.scoped(Effect.flatMap(pool.getWith(options), (worker) =>
    Effect.andThen(Effect.sync(() => fakeOf(fakes, worker.pid).notify("turn/started", turnStarted)), settle)))

describe("Codex pool rate limits (Effect service)", () => {
  it.effect("a throttled call holds no worker, and calls are admitted FIFO per account", () =>
    Effect.gen(function*() {
      const { fakes, pool } = yield* makeTest({ poolSize: 2, rateLimits: { requestsPerMinute: 1 } })
      const first = yield* lease(pool)
      fakeOf(fakes, first.worker.pid).notify("turn/started", turnStarted)
      yield* settle
      const order: Array<number> = []
      const waiters = yield* Effect.forEach([1, 2], (n) =>
        Effect.forkChild(Effect.scoped(Effect.tap(pool.get, (worker) =>
          Effect.andThen(Effect.sync(() => {
            order.push(n)
            fakeOf(fakes, worker.pid).notify("turn/started", turnStarted)
          }), settle)))))
      yield* settle
      const stats = yield* pool.stats
      expect(stats.busy).toBe(1) // the first lease only: the throttled calls hold nothing
      expect(stats.queued).toBe(0)
      expect(order).toEqual([])
      yield* first.release
      yield* TestClock.adjust("60 seconds")
      yield* settle
      expect(order).toEqual([1])
      yield* TestClock.adjust("60 seconds")
      yield* Effect.forEach(waiters, Fiber.join)
      expect(order).toEqual([1, 2])
    }))

  it.effect("a call whose announced wait exceeds its acquire timeout fails at once with RateLimitedError", () =>
    Effect.gen(function*() {
      const { fakes, pool } = yield* makeTest({ poolSize: 1, rateLimits: { requestsPerMinute: 1 }, acquireTimeout: "10 seconds" })
      yield* turn(pool, fakes)
      const exit = yield* Effect.exit(Effect.scoped(pool.get))
      const error = failureOf(exit)
      expect(error).toBeInstanceOf(RateLimitedError)
      expect(error).toMatchObject({ limit: "rpm", account: "default" })
      // Per call: a budget long enough waits instead.
      const fiber = yield* Effect.forkChild(Effect.scoped(pool.getWith({ timeout: "2 minutes" })))
      yield* settle
      yield* TestClock.adjust("60 seconds")
      expect(Exit.isSuccess(yield* Fiber.await(fiber))).toBe(true)
    }))

  it.effect("interrupting a throttled call takes nothing and gives its place back", () =>
    Effect.gen(function*() {
      const { fakes, pool } = yield* makeTest({ poolSize: 1, rateLimits: { requestsPerMinute: 1 } })
      yield* turn(pool, fakes)
      const waiting = yield* Effect.forkChild(Effect.scoped(pool.get))
      yield* settle
      yield* Fiber.interrupt(waiting)
      const stats = yield* pool.stats
      expect(stats.busy + stats.queued).toBe(0)
      // The next call is admitted as soon as the minute refills, not a minute later.
      const next = yield* Effect.forkChild(Effect.scoped(pool.get))
      yield* settle
      yield* TestClock.adjust("60 seconds")
      expect(Exit.isSuccess(yield* Fiber.await(next))).toBe(true)
    }))

  it.effect("tokens are charged from the lease's notifications and show in usage(workspace)", () =>
    Effect.gen(function*() {
      const { fakes, pool } = yield* makeTest({ poolSize: 1, rateLimits: { tokensPerMinute: 100_000 } })
      const { release, worker } = yield* lease(pool, { workspace: "acme", estimatedTokens: 1_000 })
      const fake = fakeOf(fakes, worker.pid)
      fake.notify("thread/tokenUsage/updated", tokenUsage("th-1", 300, 300))
      fake.notify("thread/tokenUsage/updated", tokenUsage("th-1", 1_000, 700))
      yield* settle
      yield* release
      const usage = yield* pool.usage("acme")
      expect(usage.minute).toMatchObject({ requests: 2, totalTokens: 1_000 })
      expect(usage.day).toMatchObject({ requests: 2, totalTokens: 1_000 })
      // Released: what the worker reports for its next holder is not charged to acme.
      fake.notify("thread/tokenUsage/updated", tokenUsage("th-1", 2_000, 1_000))
      yield* settle
      expect((yield* pool.usage("acme")).minute.totalTokens).toBe(1_000)
    }))

  it.effect("a 429 error notification cools the account down: the next call waits", () =>
    Effect.gen(function*() {
      const { fakes, pool } = yield* makeTest({
        poolSize: 1,
        rateLimits: { requestsPerMinute: 1_000 },
        rateLimitOptions: { defaultCooldownMs: 5_000 }
      })
      const { release, worker } = yield* lease(pool)
      fakeOf(fakes, worker.pid).notify("error", error429)
      yield* settle
      yield* release
      let admitted = false
      const next = yield* Effect.forkChild(Effect.scoped(Effect.tap(pool.get, () => Effect.sync(() => admitted = true))))
      yield* settle
      expect(admitted).toBe(false)
      yield* TestClock.adjust("5 seconds")
      yield* Fiber.join(next)
      expect(admitted).toBe(true)
    }))

  it.effect("a workspace at its limit is refused with WorkspaceLimitError without taking a worker", () =>
    Effect.gen(function*() {
      const { fakes, pool } = yield* makeTest({ poolSize: 1, workspaceLimits: { acme: { requestsPerMinute: 1 } } })
      yield* turn(pool, fakes, { workspace: "acme" })
      const exit = yield* Effect.exit(Effect.scoped(pool.getWith({ workspace: "acme" })))
      expect(failureOf(exit)).toBeInstanceOf(WorkspaceLimitError)
      expect(fakes.attempts).toBe(1)
      expect((yield* pool.stats).busy).toBe(0)
      // Other workspaces go on.
      yield* Effect.scoped(pool.getWith({ workspace: "other" }))
    }))

  it.effect("accounts have independent limits", () =>
    Effect.gen(function*() {
      const { fakes, pool } = yield* makeTest({
        poolSize: 2,
        rateLimits: { requestsPerMinute: 1 },
        accounts: { acme: { rateLimits: { requestsPerMinute: 1 } }, free: {} },
        acquireTimeout: "1 second"
      })
      yield* turn(pool, fakes)
      // The default account is spent; acme and free are not.
      yield* turn(pool, fakes, { account: "acme" })
      yield* turn(pool, fakes, { account: "free" })
      yield* turn(pool, fakes, { account: "free" })
      expect(failureOf(yield* Effect.exit(Effect.scoped(pool.getWith({ account: "acme" }))))).toMatchObject({
        _tag: "RateLimitedError",
        account: "acme"
      })
      // Added at run time with limits of its own.
      yield* pool.addAccount("late", { rateLimits: { requestsPerMinute: 1 } })
      yield* turn(pool, fakes, { account: "late" })
      expect(failureOf(yield* Effect.exit(Effect.scoped(pool.getWith({ account: "late" }))))).toMatchObject({
        _tag: "RateLimitedError",
        account: "late"
      })
    }))

  it.effect("a pool without rate-limit options takes the new call options and has no usage", () =>
    Effect.gen(function*() {
      const { pool } = yield* makeTest({ poolSize: 1 })
      yield* Effect.scoped(pool.getWith({ workspace: "acme", estimatedTokens: 10 }))
      expect(failureOf(yield* Effect.exit(pool.usage("acme")))).toBeInstanceOf(PoolOptionsError)
      // An account with limits needs a pool made with rate limits.
      const exit = yield* Effect.exit(pool.addAccount("acme", { rateLimits: { requestsPerMinute: 1 } }))
      expect(Exit.isFailure(exit) && String(exit.cause)).toContain("rateLimits")
    }))
})

describe("Codex pool rate limits (promise facade)", () => {
  it("a throttled acquire holds no worker; aborting it takes nothing and refunds", async () => {
    const pool = createTestCodexWorkerPool({ poolSize: 1, rateLimits: { requestsPerMinute: 1 } })
    try {
      await facadeTurn(pool)
      const controller = new AbortController()
      const waiting = pool.acquire({ signal: controller.signal })
      await new Promise((resolve) => setTimeout(resolve, 20))
      expect(pool.stats()).toMatchObject({ busy: 0, idle: 1, queued: 0 })
      controller.abort(new Error("gave up"))
      await expect(waiting).rejects.toThrow("gave up")
      expect(pool.stats()).toMatchObject({ busy: 0, idle: 1 })
    } finally {
      await pool.shutdown()
    }
  })

  it("fails at once with RateLimitedError when the announced wait exceeds timeoutMs", async () => {
    const pool = createTestCodexWorkerPool({ poolSize: 1, rateLimits: { requestsPerMinute: 1 }, acquireTimeoutMs: 60_000 })
    try {
      await facadeTurn(pool)
      const started = Date.now()
      const error = await pool.acquire({ timeoutMs: 1_000 }).catch((e) => e)
      expect(error).toBeInstanceOf(RateLimitedError)
      expect(error).toMatchObject({ limit: "rpm", account: "default" })
      expect(Date.now() - started).toBeLessThan(500)
      // The pool-wide acquireTimeoutMs is the budget when the call names none: a minute is enough to wait.
      const controller = new AbortController()
      const waiting = pool.acquire({ signal: controller.signal })
      await new Promise((resolve) => setTimeout(resolve, 20))
      controller.abort(new Error("stop"))
      await expect(waiting).rejects.toThrow("stop")
    } finally {
      await pool.shutdown()
    }
  })

  it("charges the lease's tokens to its workspace when released, and reports 429s", async () => {
    const pool = createTestCodexWorkerPool({
      poolSize: 1,
      rateLimits: { tokensPerMinute: 1_000_000 },
      workspaceLimits: { acme: { tokensPerMinute: 500 } },
      acquireTimeoutMs: 1_000
    })
    try {
      const worker = await pool.acquire({ workspace: "acme", estimatedTokens: 10 })
      const fake = pool.fakes.byPid(worker.pid)!
      fake.notify("thread/tokenUsage/updated", tokenUsage("th-1", 600, 600))
      await new Promise((resolve) => setTimeout(resolve, 10))
      pool.release(worker)
      const usage = await pool.usage("acme")
      expect(usage.minute).toMatchObject({ requests: 1, totalTokens: 600 })
      // Over its token limit: refused without a worker.
      await expect(pool.acquire({ workspace: "acme" })).rejects.toBeInstanceOf(WorkspaceLimitError)
      expect(pool.stats().busy).toBe(0)
      // A 429 reported by the lease cools the account down past this call's budget.
      await pool.use(async (w) => {
        pool.fakes.byPid(w.pid)!.notify("error", { ...error429, error: { ...error429.error, additionalDetails: "Please try again in 30s." } })
        await new Promise((resolve) => setTimeout(resolve, 10))
      })
      await expect(pool.acquire({ timeoutMs: 1_000 })).rejects.toMatchObject({ _tag: "RateLimitedError", limit: "cooldown" })
    } finally {
      await pool.shutdown()
    }
  })

  it("a pool without rate-limit options accepts workspace and estimatedTokens and has no usage", async () => {
    const pool = createTestCodexWorkerPool({ poolSize: 1 })
    try {
      await pool.use(async () => {}, { workspace: "acme", estimatedTokens: 5 })
      await expect(pool.usage("acme")).rejects.toBeInstanceOf(PoolOptionsError)
      await expect(pool.acquire({ estimatedTokens: -1 })).rejects.toThrow("estimatedTokens")
    } finally {
      await pool.shutdown()
    }
  })
})

describe("Codex pool rate limits (AI SDK provider)", () => {
  it("passes providerOptions.codex.workspace and estimatedTokens to admission", async () => {
    const pool = createTestCodexWorkerPool({
      poolSize: 1,
      script: textTurns(),
      rateLimits: { tokensPerMinute: 1_000_000 }
    })
    try {
      const codex = createCodexProvider({ pool })
      const { text } = await generateText({
        model: codex("fake-model"),
        prompt: "hello",
        providerOptions: { codex: { workspace: "acme", estimatedTokens: 50 } }
      })
      expect(text).toContain("hello")
      const usage = await pool.usage("acme")
      expect(usage.minute.requests).toBe(1)
      expect(usage.minute.totalTokens).toBeGreaterThan(0)
      // A bad estimate is refused by the settings schema, naming it.
      await expect(generateText({
        model: codex("fake-model"),
        prompt: "hello",
        providerOptions: { codex: { estimatedTokens: -1 } }
      })).rejects.toThrow("estimatedTokens")
    } finally {
      await pool.shutdown()
    }
  })
})

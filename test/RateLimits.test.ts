/**
 * Rate-limit admission with the memory store under the `TestClock`: the
 * requests-per-minute and tokens-per-minute token buckets, reservations
 * settled from codex's usage notifications, refunds, FIFO order among
 * throttled calls, interruption and abort while throttled, the 429 cooldown,
 * workspace usage, limits and warnings, the local fallback when a shared store
 * stops answering, metrics, options and shutdown.
 *
 * Every wait is driven by `TestClock.adjust`; no test sleeps for real.
 */
import { describe, expect, it } from "@effect/vitest"
import { Clock, Effect, Exit, Fiber, Layer, Logger, Metric, Scope } from "effect"
import { PrometheusMetrics } from "effect/observability"
import { TestClock } from "effect/testing"
import { PoolOptionsError, PoolShutdownError, RateLimitedError, WorkspaceLimitError } from "../src/errors.ts"
import { type AdmissionStore, makeMemoryStore, StoreUnavailable } from "../src/internal/admissionStore.ts"
import * as RateLimits from "../src/RateLimits.ts"

/** Lets forked fibers run until they block. */
const settle = Effect.gen(function*() {
  for (let i = 0; i < 10; i++) yield* Effect.yieldNow
})

const make = (options: RateLimits.Options) => RateLimits.make(options).pipe(Effect.provide(RateLimits.layerStoreMemory))

type Admitted = Array<readonly [name: string, at: number]>

/** Forks an admission that records its name and the clock time when it is admitted. */
const forkAdmit = (
  limits: RateLimits.Service,
  request: RateLimits.AdmitRequest,
  log: Admitted,
  name: string
) =>
  Effect.forkChild(
    limits.admit(request).pipe(
      Effect.tap(() => Effect.clockWith((clock) => Effect.sync(() => void log.push([name, clock.currentTimeMillisUnsafe()]))))
    )
  )

const now = Clock.currentTimeMillis

interface Breakdown {
  readonly totalTokens: number
  readonly inputTokens?: number
  readonly cachedInputTokens?: number
  readonly outputTokens?: number
  readonly reasoningOutputTokens?: number
}

/** A `thread/tokenUsage/updated` notification: `last` is one model request, `total` the thread's sum. */
const usage = (threadId: string, total: number, last: Breakdown) =>
  [
    "thread/tokenUsage/updated",
    {
      threadId,
      turnId: "turn",
      tokenUsage: {
        total: { totalTokens: total, inputTokens: 0, cachedInputTokens: 0, cacheWriteInputTokens: 0, outputTokens: 0, reasoningOutputTokens: 0 },
        last: {
          inputTokens: last.totalTokens,
          cachedInputTokens: 0,
          cacheWriteInputTokens: 0,
          outputTokens: 0,
          reasoningOutputTokens: 0,
          ...last
        },
        modelContextWindow: 200_000
      }
    }
  ] as const

const turnCompleted = (status: "completed" | "failed" | "interrupted") =>
  ["turn/completed", { threadId: "th", turn: { id: "turn", status, error: null } }] as const

/** The `error` notification codex sends when the API answered 429 and it gave up. */
const error429 = (additionalDetails: string | null = null) =>
  [
    "error",
    {
      error: {
        message: "exceeded retry limit, last status: 429 Too Many Requests",
        codexErrorInfo: { responseTooManyFailedAttempts: { httpStatusCode: 429 } },
        additionalDetails,
        misalignment: null
      },
      willRetry: false,
      threadId: "th",
      turnId: "turn"
    }
  ] as const

const failureOf = <A, E>(exit: Exit.Exit<A, E>): unknown =>
  Exit.isFailure(exit) ? exit.cause.reasons.find((r) => r._tag === "Fail")?.["error" as never] : undefined

/** The current value of a series, by name and attributes. */
const series = (name: string, attributes: Record<string, string> = {}) =>
  Effect.map(Metric.snapshot, (snapshots) =>
    snapshots.find((s) =>
      s.id === name && Object.entries(attributes).every(([k, v]) => (s.attributes as Record<string, unknown> | undefined)?.[k] === v)
    )?.state as any)

describe("RateLimits", { timeout: 20_000 }, () => {
  describe("requests per minute", () => {
    it.effect("admits up to the limit at once, then one call per refill interval", () =>
      Effect.gen(function*() {
        const limits = yield* make({ limits: { default: { requestsPerMinute: 3 } } })
        const log: Admitted = []
        for (const name of ["a", "b", "c", "d", "e"]) yield* forkAdmit(limits, {}, log, name)
        yield* settle
        expect(log).toEqual([["a", 0], ["b", 0], ["c", 0]])
        yield* TestClock.adjust(19_999)
        expect(log.length).toBe(3)
        yield* TestClock.adjust(1)
        expect(log.at(-1)).toEqual(["d", 20_000])
        yield* TestClock.adjust(20_000)
        expect(log.at(-1)).toEqual(["e", 40_000])
        expect(limits.waiting("default")).toBe(0)
      }))

    it.effect("a call whose announced wait exceeds its timeout fails at once with RateLimitedError and is charged nothing", () =>
      Effect.gen(function*() {
        const limits = yield* make({ limits: { default: { requestsPerMinute: 1 } } })
        yield* limits.admit({})
        const start = yield* now
        const exit = yield* Effect.exit(limits.admit({ timeoutMs: 30_000 }))
        expect(yield* now).toBe(start)
        const error = failureOf(exit)
        expect(error).toBeInstanceOf(RateLimitedError)
        expect(error).toMatchObject({ limit: "rpm", account: "default", retryAfterMs: 60_000, budgetMs: 30_000 })
        expect((error as RateLimitedError).message).toContain("timeoutMs")
        // The refused call took nothing: the next call waits one interval, not two.
        const log: Admitted = []
        yield* forkAdmit(limits, {}, log, "next")
        yield* TestClock.adjust(60_000)
        expect(log).toEqual([["next", 60_000]])
      }))

    it.effect("throttled calls are admitted in arrival order", () =>
      Effect.gen(function*() {
        const limits = yield* make({ limits: { default: { requestsPerMinute: 2 } } })
        const log: Admitted = []
        for (let i = 0; i < 8; i++) {
          yield* forkAdmit(limits, {}, log, `c${i}`)
          yield* TestClock.adjust(1_000)
        }
        yield* TestClock.adjust(300_000)
        expect(log.map(([name]) => name)).toEqual(["c0", "c1", "c2", "c3", "c4", "c5", "c6", "c7"])
        const times = log.map(([, at]) => at)
        expect(times).toEqual([...times].sort((a, b) => a - b))
      }))

    it.effect("a later call does not overtake an earlier one even when a refund frees a slot for it", () =>
      Effect.gen(function*() {
        const limits = yield* make({ limits: { default: { requestsPerMinute: 1 } } })
        const first = yield* limits.admit({})
        const log: Admitted = []
        yield* forkAdmit(limits, {}, log, "early")
        yield* settle
        // `first` never ran: its request goes back, and a newcomer could take it.
        first.cancel()
        yield* forkAdmit(limits, {}, log, "late")
        yield* TestClock.adjust(600_000)
        expect(log.map(([name]) => name)).toEqual(["early", "late"])
        expect(log[0]![1]).toBeLessThanOrEqual(log[1]![1])
      }))

    it.effect("a call is refused at once when the calls ahead of it are admitted after its deadline", () =>
      Effect.gen(function*() {
        const limits = yield* make({ limits: { default: { requestsPerMinute: 2, tokensPerMinute: 4_000 } } })
        const first = yield* limits.admit({ estimatedTokens: 3_000 })
        const log: Admitted = []
        yield* forkAdmit(limits, { estimatedTokens: 8_000 }, log, "big") // due at 105 s
        yield* settle
        first.cancel()
        // Its own buckets would let it in at 60 s, but "big" goes first at 105 s: past its 90 s.
        const exit = yield* Effect.exit(limits.admit({ estimatedTokens: 0, timeoutMs: 90_000 }))
        expect(failureOf(exit)).toMatchObject({ _tag: "RateLimitedError", limit: "tpm", retryAfterMs: 105_000, budgetMs: 90_000 })
        yield* TestClock.adjust(105_000)
        expect(log).toEqual([["big", 105_000]])
      }))

    it.effect("interrupting a throttled call removes it and gives its request back", () =>
      Effect.gen(function*() {
        const limits = yield* make({ limits: { default: { requestsPerMinute: 1 } } })
        yield* limits.admit({})
        const waiting = yield* Effect.forkChild(limits.admit({}))
        yield* settle
        expect(limits.waiting("default")).toBe(1)
        yield* Fiber.interrupt(waiting)
        expect(limits.waiting("default")).toBe(0)
        const log: Admitted = []
        yield* forkAdmit(limits, {}, log, "next")
        yield* TestClock.adjust(60_000)
        expect(log).toEqual([["next", 60_000]])
      }))

    it.effect("aborting the signal of a throttled admitUnsafe rejects with its reason and gives everything back", () =>
      Effect.gen(function*() {
        const limits = yield* make({ limits: { default: { requestsPerMinute: 1, tokensPerMinute: 10_000 } } })
        const first = limits.admitUnsafe({ estimatedTokens: 1_000 })
        expect(first).toBeInstanceOf(RateLimits.Reservation)
        const controller = new AbortController()
        const pending = limits.admitUnsafe({ estimatedTokens: 9_000 }, controller.signal)
        expect(pending).toBeInstanceOf(Promise)
        controller.abort(new Error("caller gave up"))
        const outcome = yield* Effect.promise(() => (pending as Promise<unknown>).then(() => "admitted", (e) => e))
        expect(outcome).toEqual(new Error("caller gave up"))
        expect(limits.waiting("default")).toBe(0)
        // Both the request and the 9000 tokens went back: 9000 tokens fit at once after one request interval.
        const log: Admitted = []
        yield* forkAdmit(limits, { estimatedTokens: 9_000 }, log, "next")
        yield* TestClock.adjust(60_000)
        expect(log).toEqual([["next", 60_000]])
      }))

    it.effect("accounts do not wait for each other", () =>
      Effect.gen(function*() {
        const limits = yield* make({ limits: { a: { requestsPerMinute: 1 }, b: { requestsPerMinute: 1 } } })
        const log: Admitted = []
        yield* forkAdmit(limits, { key: "a" }, log, "a1")
        yield* forkAdmit(limits, { key: "a" }, log, "a2")
        yield* forkAdmit(limits, { key: "b" }, log, "b1")
        yield* forkAdmit(limits, { key: "unlimited" }, log, "u1")
        yield* settle
        expect(log).toEqual([["a1", 0], ["b1", 0], ["u1", 0]])
        yield* TestClock.adjust(60_000)
        expect(log.at(-1)).toEqual(["a2", 60_000])
      }))

    it.effect("setLimits changes the limits of later admissions", () =>
      Effect.gen(function*() {
        const limits = yield* make({})
        for (let i = 0; i < 5; i++) yield* limits.admit({ key: "k" })
        limits.setLimits("k", { requestsPerMinute: 1 })
        expect(limits.limitsOf("k")).toEqual({ requestsPerMinute: 1, tokensPerMinute: undefined })
        yield* limits.admit({ key: "k" })
        const exit = yield* Effect.exit(limits.admit({ key: "k", timeoutMs: 1_000 }))
        expect(failureOf(exit)).toBeInstanceOf(RateLimitedError)
      }))
  })

  describe("tokens per minute", () => {
    it.effect("reserves the estimate at admission (default estimate when none is given)", () =>
      Effect.gen(function*() {
        const limits = yield* make({ limits: { default: { tokensPerMinute: 10_000 } }, defaultEstimatedTokens: 4_000 })
        const log: Admitted = []
        yield* forkAdmit(limits, {}, log, "a")
        yield* forkAdmit(limits, {}, log, "b")
        yield* forkAdmit(limits, {}, log, "c")
        yield* settle
        expect(log.map(([name]) => name)).toEqual(["a", "b"])
        // 2000 tokens are missing; the bucket refills 10000 per minute: 12 s.
        yield* TestClock.adjust(12_000)
        expect(log.at(-1)).toEqual(["c", 12_000])
      }))

    it.effect("a call over the limit fails at once with limit tpm when its timeout is shorter than the wait", () =>
      Effect.gen(function*() {
        const limits = yield* make({ limits: { default: { tokensPerMinute: 10_000 } } })
        yield* limits.admit({ estimatedTokens: 10_000 })
        const exit = yield* Effect.exit(limits.admit({ estimatedTokens: 5_000, timeoutMs: 10_000 }))
        expect(failureOf(exit)).toMatchObject({ _tag: "RateLimitedError", limit: "tpm", retryAfterMs: 30_000 })
      }))

    it.effect("settling gives back an over-estimate", () =>
      Effect.gen(function*() {
        const limits = yield* make({ limits: { default: { tokensPerMinute: 10_000 } } })
        const a = yield* limits.admit({ estimatedTokens: 4_000 })
        yield* limits.admit({ estimatedTokens: 4_000 })
        a.onNotification(...usage("t1", 1_000, { totalTokens: 1_000 }))
        a.onNotification(...turnCompleted("completed"))
        a.settle()
        yield* limits.flush
        expect(a.tokens).toBe(1_000)
        expect(a.chargedTokens).toBe(1_000)
        // 10000 - 1000 - 4000 = 5000 left: 4000 fit at once.
        const log: Admitted = []
        yield* forkAdmit(limits, { estimatedTokens: 4_000 }, log, "c")
        yield* settle
        expect(log).toEqual([["c", 0]])
      }))

    it.effect("usage beyond the estimate is charged as it is reported", () =>
      Effect.gen(function*() {
        const limits = yield* make({ limits: { default: { tokensPerMinute: 10_000 } } })
        const a = yield* limits.admit({ estimatedTokens: 1_000 })
        a.onNotification(...usage("t1", 9_000, { totalTokens: 9_000 }))
        yield* limits.flush
        expect(a.chargedTokens).toBe(9_000)
        const log: Admitted = []
        yield* forkAdmit(limits, { estimatedTokens: 2_000 }, log, "b")
        yield* settle
        expect(log).toEqual([])
        // 1000 tokens missing: 6 s.
        yield* TestClock.adjust(6_000)
        expect(log).toEqual([["b", 6_000]])
        a.settle()
      }))

    it.effect("a refund never fills the bucket past its capacity", () =>
      Effect.gen(function*() {
        const limits = yield* make({ limits: { default: { tokensPerMinute: 10_000 } } })
        const a = yield* limits.admit({ estimatedTokens: 4_000 })
        // Long turn: the bucket is full again when it ends with an over-estimate of 3500.
        yield* TestClock.adjust(120_000)
        a.onNotification(...usage("t1", 500, { totalTokens: 500 }))
        a.settle()
        yield* limits.flush
        const log: Admitted = []
        yield* forkAdmit(limits, { estimatedTokens: 4_000 }, log, "b")
        yield* forkAdmit(limits, { estimatedTokens: 4_000 }, log, "c")
        yield* forkAdmit(limits, { estimatedTokens: 4_000 }, log, "d")
        yield* settle
        // Capacity is 10000, not 13500: the third waits.
        expect(log.map(([name]) => name)).toEqual(["b", "c"])
      }))

    it.effect("a failed turn keeps what it was charged", () =>
      Effect.gen(function*() {
        const limits = yield* make({ limits: { default: { tokensPerMinute: 10_000 } } })
        const a = yield* limits.admit({ estimatedTokens: 8_000 })
        a.onNotification("turn/started", { threadId: "th", turn: { id: "turn" } })
        a.onNotification(...turnCompleted("failed"))
        a.settle()
        yield* limits.flush
        expect(a.failed).toBe(true)
        const exit = yield* Effect.exit(limits.admit({ estimatedTokens: 8_000, timeoutMs: 1_000 }))
        expect(failureOf(exit)).toMatchObject({ _tag: "RateLimitedError", limit: "tpm" })
      }))

    it.effect("a lease that ran no turn, and a cancelled reservation, get everything back", () =>
      Effect.gen(function*() {
        const limits = yield* make({ limits: { default: { requestsPerMinute: 1, tokensPerMinute: 10_000 } } })
        const a = yield* limits.admit({ estimatedTokens: 10_000 })
        a.settle()
        const b = yield* limits.admit({ estimatedTokens: 10_000 })
        b.cancel()
        b.cancel()
        yield* limits.flush
        const c = yield* limits.admit({ estimatedTokens: 10_000, timeoutMs: 1 })
        expect(c.waitedMs).toBe(0)
      }))

    it.effect("each model request of a turn counts one more request toward the RPM limit", () =>
      Effect.gen(function*() {
        const limits = yield* make({ limits: { default: { requestsPerMinute: 3 } } })
        const a = yield* limits.admit({})
        a.onNotification(...usage("t1", 100, { totalTokens: 100 }))
        a.onNotification(...usage("t1", 250, { totalTokens: 150 }))
        a.onNotification(...usage("t1", 300, { totalTokens: 50 }))
        a.onNotification(...turnCompleted("completed"))
        a.settle()
        yield* limits.flush
        expect(a.requests).toBe(3)
        expect(a.tokens).toBe(300)
        // Three requests used: the next call waits one refill interval.
        const log: Admitted = []
        yield* forkAdmit(limits, {}, log, "b")
        yield* TestClock.adjust(20_000)
        expect(log).toEqual([["b", 20_000]])
      }))

    it.effect("figures codex repeats (same thread total, as on a failed turn) are not charged again", () =>
      Effect.gen(function*() {
        const limits = yield* make({ limits: { default: { requestsPerMinute: 10, tokensPerMinute: 100_000 } } })
        const a = yield* limits.admit({ estimatedTokens: 1 })
        a.onNotification(...usage("t1", 5_000, { totalTokens: 5_000 }))
        a.settle()
        const b = yield* limits.admit({ estimatedTokens: 1 })
        b.onNotification(...usage("t1", 5_000, { totalTokens: 5_000 }))
        b.onNotification(...turnCompleted("failed"))
        b.settle()
        expect(a.tokens).toBe(5_000)
        expect(b.tokens).toBe(0)
        expect(b.requests).toBe(0)
      }))
  })

  describe("429 cooldown", () => {
    it.effect("reportRateLimited holds back new admissions for the wait; a shorter timeout fails at once", () =>
      Effect.gen(function*() {
        const limits = yield* make({})
        limits.reportRateLimited("default", 1_500)
        expect(limits.cooldownRemaining("default")).toBe(1_500)
        const refused = yield* Effect.exit(limits.admit({ timeoutMs: 1_000 }))
        expect(failureOf(refused)).toMatchObject({ _tag: "RateLimitedError", limit: "cooldown", retryAfterMs: 1_500 })
        const log: Admitted = []
        yield* forkAdmit(limits, {}, log, "a")
        yield* forkAdmit(limits, { key: "other" }, log, "other")
        yield* TestClock.adjust(1_499)
        expect(log).toEqual([["other", 0]])
        yield* TestClock.adjust(1)
        expect(log).toEqual([["other", 0], ["a", 1_500]])
      }))

    it.effect("without a wait in the report, defaultCooldownMs applies", () =>
      Effect.gen(function*() {
        const limits = yield* make({ defaultCooldownMs: 5_000 })
        limits.reportRateLimited("default")
        const log: Admitted = []
        yield* forkAdmit(limits, {}, log, "a")
        yield* TestClock.adjust(4_999)
        expect(log).toEqual([])
        yield* TestClock.adjust(1)
        expect(log).toEqual([["a", 5_000]])
      }))

    it.effect("calls already waiting are held back too, and refused when the cooldown outlasts their timeout", () =>
      Effect.gen(function*() {
        const limits = yield* make({ limits: { default: { requestsPerMinute: 1 } } })
        yield* limits.admit({})
        const log: Admitted = []
        yield* forkAdmit(limits, {}, log, "patient") // due at 60 s
        const short = yield* Effect.forkChild(Effect.exit(limits.admit({ timeoutMs: 130_000 }))) // due at 120 s
        yield* settle
        expect(limits.waiting("default")).toBe(2)
        yield* TestClock.adjust(10_000)
        limits.reportRateLimited("default", 125_000) // until 135 s
        const refused = yield* Fiber.join(short)
        expect(failureOf(refused)).toMatchObject({ _tag: "RateLimitedError", limit: "cooldown", retryAfterMs: 125_000 })
        yield* TestClock.adjust(124_999)
        expect(log).toEqual([])
        yield* TestClock.adjust(1)
        expect(log).toEqual([["patient", 135_000]])
      }))

    it.effect("an error notification with HTTP 429 puts the key in cooldown for the wait its message names", () =>
      Effect.gen(function*() {
        const limits = yield* make({ defaultCooldownMs: 60_000 })
        const a = yield* limits.admit({})
        a.onNotification(...error429("rate limit exceeded: Please try again in 1.5s."))
        a.onNotification(...turnCompleted("failed"))
        a.settle()
        expect(a.rateLimited).toBe(true)
        expect(limits.cooldownRemaining("default")).toBe(1_500)
        const log: Admitted = []
        yield* forkAdmit(limits, {}, log, "b")
        yield* TestClock.adjust(1_500)
        expect(log).toEqual([["b", 1_500]])
      }))

    it.effect("a 429 that codex retried by itself: the turn that then completes settles to its real usage", () =>
      Effect.gen(function*() {
        const limits = yield* make({ limits: { default: { tokensPerMinute: 10_000 } } })
        const a = yield* limits.admit({ estimatedTokens: 8_000 })
        a.onNotification("error", {
          error: {
            message: "Reconnecting... 1/2",
            codexErrorInfo: { responseStreamDisconnected: { httpStatusCode: 429 } },
            additionalDetails: null
          },
          willRetry: true
        })
        a.onNotification(...usage("t1", 120, { totalTokens: 120 }))
        a.onNotification(...turnCompleted("completed"))
        a.settle()
        yield* limits.flush
        expect(a.rateLimited).toBe(true)
        expect(a.chargedTokens).toBe(120)
      }))

    it.effect("the cooldown is kept in the store: another service on the same store waits it out", () =>
      Effect.gen(function*() {
        const store = yield* Layer.build(RateLimits.layerStoreMemory)
        const one = yield* RateLimits.make({ name: "one" }).pipe(Effect.provideContext(store))
        const two = yield* RateLimits.make({ name: "two" }).pipe(Effect.provideContext(store))
        yield* one.admit({})
        one.reportRateLimited("default", 2_000)
        yield* one.flush
        expect(two.cooldownRemaining("default")).toBe(0)
        const log: Admitted = []
        yield* forkAdmit(two, {}, log, "two")
        yield* settle
        expect(log).toEqual([])
        yield* TestClock.adjust(2_000)
        yield* settle
        expect(log).toEqual([["two", 2_000]])
      }))
  })

  describe("workspaces", () => {
    it.effect("usage(workspace) reports the requests and tokens of the current minute and UTC day", () =>
      Effect.gen(function*() {
        const limits = yield* make({})
        const a = yield* limits.admit({ workspace: "acme" })
        a.onNotification(...usage("t1", 1_000, { totalTokens: 1_000, inputTokens: 800, cachedInputTokens: 300, outputTokens: 200, reasoningOutputTokens: 50 }))
        a.onNotification(...usage("t1", 1_500, { totalTokens: 500, inputTokens: 400, outputTokens: 100 }))
        a.settle()
        yield* limits.admit({ workspace: "other" })
        yield* limits.flush
        const acme = yield* limits.usage("acme")
        expect(acme.minute).toEqual({
          requests: 2,
          inputTokens: 1_200,
          cachedInputTokens: 300,
          outputTokens: 300,
          reasoningTokens: 50,
          totalTokens: 1_500
        })
        expect(acme.day).toEqual(acme.minute)
        expect(acme.degraded).toBe(false)
        yield* TestClock.adjust(60_000)
        const later = yield* limits.usage("acme")
        expect(later.minute.requests).toBe(0)
        expect(later.day.requests).toBe(2)
        expect((yield* limits.usage("other")).day.requests).toBe(1)
      }))

    it.effect("a workspace at its requestsPerMinute is refused until the minute ends; another is not delayed", () =>
      Effect.gen(function*() {
        const limits = yield* make({
          limits: { default: { requestsPerMinute: 100 } },
          workspaceLimits: { small: { requestsPerMinute: 2 } }
        })
        yield* TestClock.adjust(10_000)
        yield* limits.admit({ workspace: "small" })
        yield* limits.admit({ workspace: "small" })
        const exit = yield* Effect.exit(limits.admit({ workspace: "small" }))
        const error = failureOf(exit) as WorkspaceLimitError
        expect(error).toBeInstanceOf(WorkspaceLimitError)
        expect(error).toMatchObject({ workspace: "small", limit: "requestsPerMinute", used: 2, max: 2, retryAfterMs: 50_000 })
        const big = yield* limits.admit({ workspace: "big", timeoutMs: 1 })
        expect(big.waitedMs).toBe(0)
        // The refused call took neither a request of the key nor one of the workspace.
        expect((yield* limits.usage("small")).minute.requests).toBe(2)
        yield* TestClock.adjust(50_000)
        yield* limits.admit({ workspace: "small" })
      }))

    it.effect("token limits refuse once the window's tokens reached the limit; workspaceLimits may be a function", () =>
      Effect.gen(function*() {
        const limits = yield* make({
          workspaceLimits: (workspace) => workspace.startsWith("free-") ? { tokensPerDay: 1_000 } : undefined
        })
        const a = yield* limits.admit({ workspace: "free-1" })
        a.onNotification(...usage("t1", 1_000, { totalTokens: 1_000 }))
        a.settle()
        yield* limits.flush
        const exit = yield* Effect.exit(limits.admit({ workspace: "free-1" }))
        expect(failureOf(exit)).toMatchObject({ _tag: "WorkspaceLimitError", limit: "tokensPerDay", used: 1_000, max: 1_000 })
        yield* limits.admit({ workspace: "paid-1" })
        yield* limits.admit({ workspace: "free-2" })
      }))

    it.effect("crossing the warning share logs and counts a warning once per window", () => {
      const warnings: Array<string> = []
      const logger = Logger.make((options) => {
        if (options.logLevel === "Warn") warnings.push(String(options.message))
      })
      return Effect.gen(function*() {
        const limits = yield* make({ workspaceLimits: { acme: { requestsPerMinute: 10 } }, workspaceWarnAt: 0.5 })
        for (let i = 0; i < 4; i++) yield* limits.admit({ workspace: "acme" })
        yield* settle
        expect(warnings).toEqual([])
        for (let i = 0; i < 4; i++) yield* limits.admit({ workspace: "acme" })
        yield* settle
        expect(warnings.length).toBe(1)
        expect(warnings[0]).toContain(`workspace "acme" has used 5 of its requestsPerMinute limit (10)`)
        expect(yield* series("worker_pool_workspace_limit_warnings_total", { workspace: "acme", limit: "requestsPerMinute" }))
          .toMatchObject({ count: 1 })
        yield* TestClock.adjust(60_000)
        for (let i = 0; i < 5; i++) yield* limits.admit({ workspace: "acme" })
        yield* settle
        expect(warnings.length).toBe(2)
      }).pipe(
        Effect.provideService(Metric.MetricRegistry, new Map()),
        Effect.provide(Logger.layer([logger]))
      )
    })

    it.effect("workspace series beyond maxWorkspaceSeries are counted as _other", () =>
      Effect.gen(function*() {
        const limits = yield* make({ maxWorkspaceSeries: 2, workspaceLimits: { configured: { requestsPerDay: 100 } } })
        for (const workspace of ["configured", "w1", "w2", "w3", "w4"]) {
          const r = yield* limits.admit({ workspace })
          r.onNotification(...usage(`thread-${workspace}`, 10, { totalTokens: 10, inputTokens: 10 }))
          r.settle()
        }
        const names = (yield* Metric.snapshot)
          .filter((s) => s.id === "worker_pool_workspace_requests_total")
          .map((s) => (s.attributes as Record<string, string>)["workspace"])
        expect(names.sort()).toEqual(["_other", "configured", "w1", "w2"])
        expect(yield* series("worker_pool_workspace_requests_total", { workspace: "_other" })).toMatchObject({ count: 2 })
      }).pipe(Effect.provideService(Metric.MetricRegistry, new Map())))
  })

  describe("a shared store that stops answering", () => {
    /** A real memory store behind a switch: while `down`, no call answers. */
    const switchable = Effect.gen(function*() {
      const inner = yield* makeMemoryStore
      const state = { down: false }
      const gate = <A, E>(effect: Effect.Effect<A, E>) => Effect.suspend(() => state.down ? Effect.never : effect)
      const store: AdmissionStore = {
        kind: "redis",
        limiter: {
          fixedWindow: (o) => gate(inner.limiter.fixedWindow(o)),
          tokenBucket: (o) => gate(inner.limiter.tokenBucket(o)),
          adaptiveConsume: (o) => gate(inner.limiter.adaptiveConsume(o)),
          adaptiveFeedback: (o) => gate(inner.limiter.adaptiveFeedback(o))
        },
        counters: {
          incr: (...args) => gate(inner.counters.incr(...args)),
          read: (...args) => gate(inner.counters.read(...args))
        },
        probe: Effect.suspend(() => state.down ? Effect.fail(new StoreUnavailable({ reason: "down" })) : Effect.void),
        cooledKeys: undefined
      }
      return { store, state }
    })

    it.effect("times out after storeTimeoutMs, admits on a local limiter at limit / instances, and returns when it answers", () =>
      Effect.gen(function*() {
        const { store, state } = yield* switchable
        const limits = yield* RateLimits.make({
          limits: { default: { requestsPerMinute: 6 } },
          instances: 3,
          storeTimeoutMs: 200,
          probeIntervalMs: 1_000
        }).pipe(Effect.provideService(RateLimits.RateLimitsStore, store))
        yield* limits.admit({})
        state.down = true
        const log: Admitted = []
        yield* forkAdmit(limits, {}, log, "during-outage")
        yield* TestClock.adjust(199)
        expect(log).toEqual([])
        yield* TestClock.adjust(1)
        // The call was not lost: it ran again on the local limiter.
        expect(log).toEqual([["during-outage", 200]])
        expect(limits.degraded()).toBe(true)
        expect(yield* series("worker_pool_rate_limit_store_degraded")).toEqual({ value: 1 })
        // Local limit: 6 / 3 = 2 per minute.
        yield* limits.admit({})
        const exit = yield* Effect.exit(limits.admit({ timeoutMs: 1_000 }))
        expect(failureOf(exit)).toMatchObject({ _tag: "RateLimitedError", limit: "rpm", retryAfterMs: 30_000 })
        state.down = false
        yield* TestClock.adjust(1_000)
        expect(limits.degraded()).toBe(false)
        expect(yield* series("worker_pool_rate_limit_store_degraded")).toEqual({ value: 0 })
        expect(yield* series("worker_pool_rate_limit_store_degradations_total")).toMatchObject({ count: 1 })
        // Back on the shared buckets: 6 per minute, one used before the outage.
        for (let i = 0; i < 5; i++) yield* limits.admit({ timeoutMs: 1 })
      }).pipe(Effect.provideService(Metric.MetricRegistry, new Map())))
  })

  describe("metrics", () => {
    it.effect("record admission waits, throttled and refused calls and cooldowns, in Prometheus text too", () =>
      Effect.gen(function*() {
        const limits = yield* make({ limits: { default: { requestsPerMinute: 1 } }, name: "chat" })
        yield* limits.admit({})
        const log: Admitted = []
        yield* forkAdmit(limits, {}, log, "b")
        yield* settle
        expect(yield* series("worker_pool_admission_waiting", { pool: "chat", account: "default" })).toEqual({ value: 1 })
        yield* TestClock.adjust(60_000)
        yield* Effect.exit(limits.admit({ timeoutMs: 1 }))
        limits.reportRateLimited("default", 10)
        expect(yield* series("worker_pool_admission_wait_ms", { account: "default" })).toMatchObject({ count: 2, sum: 60_000 })
        expect(yield* series("worker_pool_admission_throttled_total", { limit: "rpm" })).toMatchObject({ count: 1 })
        expect(yield* series("worker_pool_admission_rejected_total", { reason: "rpm" })).toMatchObject({ count: 1 })
        expect(yield* series("worker_pool_rate_limit_cooldowns_total", { account: "default" })).toMatchObject({ count: 1 })
        const text = yield* PrometheusMetrics.format()
        expect(text).toContain(`worker_pool_admission_rejected_total{pool="chat",account="default",reason="rpm"} 1`)
        expect(text).toContain("worker_pool_admission_wait_ms_bucket")
      }).pipe(Effect.provideService(Metric.MetricRegistry, new Map())))
  })

  describe("options", () => {
    it.effect("bad options fail with PoolOptionsError naming the option", () =>
      Effect.gen(function*() {
        const bad = [
          [{ limits: { default: { requestsPerMinute: 0 } } }, "limits.default.requestsPerMinute"],
          [{ limits: { default: { tokensPerMinute: Number.NaN } } }, "limits.default.tokensPerMinute"],
          [{ workspaceWarnAt: 1.5 }, "workspaceWarnAt"],
          [{ instances: 0 }, "instances"],
          [{ workspaceLimits: { a: { tokensPerDay: -1 } } }, "workspaceLimits"],
          [{ defaultCooldownMs: -5 }, "defaultCooldownMs"],
          [{ requestsPerMinute: 5 }, "requestsPerMinute: unknown option"]
        ] as const
        for (const [options, name] of bad) {
          const exit = yield* Effect.exit(make(options as never))
          const error = failureOf(exit)
          expect(error).toBeInstanceOf(PoolOptionsError)
          expect((error as PoolOptionsError).message).toContain(name)
        }
        expect(() => RateLimits.makeUnsafe({}, { redisUrl: "http://x" })).toThrow(/redisUrl/)
      }))

    it.effect("bad call options fail with PoolOptionsError and change nothing", () =>
      Effect.gen(function*() {
        const limits = yield* make({ limits: { default: { requestsPerMinute: 1 } } })
        const exit = yield* Effect.exit(limits.admit({ estimatedTokens: -1, timeoutMs: Number.NaN }))
        expect((failureOf(exit) as PoolOptionsError).message).toMatch(/estimatedTokens.*timeoutMs/)
        const ok = yield* limits.admit({ timeoutMs: 1 })
        expect(ok.waitedMs).toBe(0)
      }))
  })

  describe("shutdown", () => {
    it.effect("closing the scope fails waiting calls with PoolShutdownError; later admissions fail at once", () =>
      Effect.gen(function*() {
        const scope = yield* Scope.make()
        const limits = yield* make({ limits: { default: { requestsPerMinute: 1 } } }).pipe(Scope.provide(scope))
        yield* limits.admit({})
        const waiting = yield* Effect.forkChild(Effect.exit(limits.admit({})))
        yield* settle
        yield* Scope.close(scope, Exit.void)
        expect(failureOf(yield* Fiber.join(waiting))).toBeInstanceOf(PoolShutdownError)
        expect(failureOf(yield* Effect.exit(limits.admit({ key: "x" })))).toBeInstanceOf(PoolShutdownError)
      }))
  })
})



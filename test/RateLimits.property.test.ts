/**
 * Property tests of rate-limit admission over random schedules run under the
 * `TestClock` with the memory store: calls of two accounts with random token
 * estimates and timeouts, clock steps, interruptions of waiting calls,
 * settles (with random usage, extra model requests, failed turns, no turn)
 * and cancels of admitted calls, and 429 reports.
 *
 * After the schedule the clock runs on until every call has settled, and the
 * record of what happened is checked against:
 * - FIFO: per account, calls are admitted in arrival order;
 * - limits: by any time t, the requests (tokens) admitted for an account are
 *   at most its capacity, plus what the bucket refilled since the first
 *   admission, plus what was given back before t (token bucket bound);
 * - timeouts: no call is admitted after its deadline; a call is refused only
 *   when the wait announced to it (by the limiter, or a 429 cooldown) is
 *   longer than what is left of its budget, and then at once, with
 *   `budgetMs` exactly what was left;
 * - cooldown: after a 429 report, no call of that account is admitted before
 *   the cooldown ends;
 * - liveness and settlement: every call settles exactly once, none is left
 *   waiting, and no interrupted call is admitted.
 *
 * Each property runs a fixed seed; RATE_LIMITS_PROP_RUNS / _SEED explore further.
 */
import { describe, expect, it } from "@effect/vitest"
import { Arbitrary, Clock, Effect, Exit, Fiber, Schema } from "effect"
import { TestClock } from "effect/testing"
import { RateLimitedError } from "../src/errors.ts"
import * as RateLimits from "../src/RateLimits.ts"

const RUNS = Number(process.env["RATE_LIMITS_PROP_RUNS"] ?? 200)
const SEED = Number(process.env["RATE_LIMITS_PROP_SEED"] ?? 0)

const Int = (minimum: number, maximum: number) => Schema.Int.check(Schema.isBetween({ minimum, maximum }))
const Account = Schema.Literals(["a", "b"])
const Pick = Int(0, 9)

const Config = Schema.Struct({
  rpm: Schema.Literals([1, 2, 5]),
  tpm: Schema.Literals([4_000, 10_000, 30_000])
})

const Step = Schema.Union([
  Schema.TaggedStruct("Admit", {
    account: Account,
    tokens: Schema.Literals([0, 1_000, 3_000, 8_000]),
    timeout: Schema.Literals([0, 0, 5_000, 30_000, 90_000])
  }),
  Schema.TaggedStruct("Admit2", { account: Account, tokens: Schema.Literals([500, 2_000]), timeout: Schema.Literals([0, 20_000]) }),
  Schema.TaggedStruct("Advance", { ms: Schema.Literals([1, 500, 5_000, 20_000, 60_000]) }),
  Schema.TaggedStruct("Interrupt", { pick: Pick }),
  Schema.TaggedStruct("Settle", {
    pick: Pick,
    used: Schema.Literals([0, 100, 2_000, 9_000]),
    requests: Int(0, 3),
    failed: Schema.Boolean
  }),
  Schema.TaggedStruct("Cancel", { pick: Pick }),
  Schema.TaggedStruct("Report429", { account: Account, ms: Schema.Literals([500, 5_000, 40_000]) })
])
type Step = typeof Step.Type

const arbitraries = {
  config: Arbitrary.schema(Config),
  steps: Arbitrary.array(Arbitrary.schema(Step), { maxLength: 40 })
}

interface Call {
  readonly id: number
  readonly account: "a" | "b"
  readonly tokens: number
  readonly arrivedAt: number
  readonly deadline: number
  fiber?: Fiber.Fiber<void>
  outcome?: {
    readonly kind: "admitted" | "refused" | "interrupted" | "other"
    readonly at: number
    readonly seq: number
    readonly error?: RateLimitedError
  }
  reservation?: RateLimits.Reservation
  done?: boolean
}

/** A give-back of `requests` and `tokens` for an account at time `at`. */
interface GiveBack {
  readonly account: string
  readonly at: number
  readonly requests: number
  readonly tokens: number
}

const settle = Effect.gen(function*() {
  for (let i = 0; i < 10; i++) yield* Effect.yieldNow
})

const run = (config: typeof Config.Type, steps: ReadonlyArray<Step>) =>
  Effect.gen(function*() {
    const limits = yield* RateLimits.make({
      limits: { a: { requestsPerMinute: config.rpm, tokensPerMinute: config.tpm }, b: { requestsPerMinute: config.rpm, tokensPerMinute: config.tpm } }
    }).pipe(Effect.provide(RateLimits.layerStoreMemory))
    const calls: Array<Call> = []
    const givebacks: Array<GiveBack> = []
    const reports: Array<{ readonly account: string; readonly at: number; readonly until: number; readonly seq: number }> = []
    let seq = 0
    const now = () => Clock.currentTimeMillis

    const admit = (account: "a" | "b", tokens: number, timeout: number) =>
      Effect.gen(function*() {
        const t = yield* now()
        const call: Call = { id: calls.length, account, tokens, arrivedAt: t, deadline: timeout === 0 ? Infinity : t + timeout }
        calls.push(call)
        call.fiber = yield* Effect.forkChild(
          Effect.onExit(limits.admit({ key: account, estimatedTokens: tokens, timeoutMs: timeout }), (exit) =>
            Effect.clockWith((clock) =>
              Effect.sync(() => {
                const at = clock.currentTimeMillisUnsafe()
                const kind = Exit.isSuccess(exit)
                  ? "admitted"
                  : Exit.hasInterrupts(exit)
                  ? "interrupted"
                  : exit.cause.reasons.some((r) => r._tag === "Fail" && r.error instanceof RateLimitedError)
                  ? "refused"
                  : "other"
                if (call.outcome !== undefined) throw new Error(`call ${call.id} settled twice`)
                const error = Exit.isFailure(exit)
                  ? exit.cause.reasons.find((r) => r._tag === "Fail")?.["error" as never] as RateLimitedError | undefined
                  : undefined
                call.outcome = error === undefined ? { kind, at, seq: seq++ } : { kind, at, seq: seq++, error }
                if (Exit.isSuccess(exit)) call.reservation = exit.value
              })
            )).pipe(Effect.asVoid, Effect.ignore)
        )
        yield* settle
      })
    const waiting = () => calls.filter((c) => c.outcome === undefined)
    const open = () => calls.filter((c) => c.reservation !== undefined && !c.done)

    for (const step of steps) {
      switch (step._tag) {
        case "Admit":
        case "Admit2":
          yield* admit(step.account, step.tokens, step.timeout)
          break
        case "Advance":
          yield* TestClock.adjust(step.ms)
          yield* settle
          break
        case "Interrupt": {
          const list = waiting()
          if (list.length === 0) break
          yield* Fiber.interrupt(list[step.pick % list.length]!.fiber!)
          yield* settle
          break
        }
        case "Settle": {
          const list = open()
          if (list.length === 0) break
          const call = list[step.pick % list.length]!
          const r = call.reservation!
          const at = yield* now()
          let total = 0
          for (let i = 0; i < step.requests; i++) {
            total += step.used
            r.onNotification("thread/tokenUsage/updated", {
              threadId: `thread-${call.id}`,
              turnId: "t",
              tokenUsage: { total: { totalTokens: total }, last: { totalTokens: step.used, inputTokens: step.used } }
            })
          }
          if (step.failed) r.onNotification("turn/completed", { turn: { status: "failed" } })
          const before = r.chargedTokens
          r.settle()
          call.done = true
          if (!step.failed && step.requests === 0) {
            givebacks.push({ account: call.account, at, requests: 1, tokens: call.tokens })
          } else if (!step.failed && step.requests > 0 && step.used * step.requests < before) {
            givebacks.push({ account: call.account, at, requests: 0, tokens: before - step.used * step.requests })
          }
          yield* settle
          break
        }
        case "Cancel": {
          const list = open()
          if (list.length === 0) break
          const call = list[step.pick % list.length]!
          call.reservation!.cancel()
          call.done = true
          givebacks.push({ account: call.account, at: yield* now(), requests: 1, tokens: call.tokens })
          yield* settle
          break
        }
        case "Report429": {
          const at = yield* now()
          const until = Math.max(at + step.ms, ...reports.filter((r) => r.account === step.account).map((r) => r.until))
          reports.push({ account: step.account, at, until, seq: seq++ })
          limits.reportRateLimited(step.account, step.ms)
          yield* settle
          break
        }
      }
    }
    // Let everything settle: the longest wait is bounded by the tokens and cooldowns queued.
    for (let i = 0; i < 200 && waiting().length > 0; i++) {
      yield* TestClock.adjust(60_000)
      yield* settle
    }

    // --- liveness and settlement
    expect(waiting().map((c) => c.id)).toEqual([])
    expect(limits.waiting("a") + limits.waiting("b")).toBe(0)
    for (const call of calls) expect(call.outcome!.kind).not.toBe("other")

    for (const account of ["a", "b"] as const) {
      const mine = calls.filter((c) => c.account === account)
      const admitted = mine.filter((c) => c.outcome!.kind === "admitted")
      // --- FIFO: admission order (seq) follows arrival order (id)
      const bySeq = [...admitted].sort((x, y) => x.outcome!.seq - y.outcome!.seq).map((c) => c.id)
      expect(bySeq).toEqual(admitted.map((c) => c.id))
      // --- timeouts
      for (const c of mine) {
        if (c.outcome!.kind === "admitted") expect(c.outcome!.at).toBeLessThanOrEqual(c.deadline)
        if (c.outcome!.kind === "refused") {
          // Refused when the announced wait outlasted what was left of its budget, not later.
          const { retryAfterMs, budgetMs } = c.outcome!.error!
          expect(budgetMs).toBe(c.deadline - c.outcome!.at)
          expect(retryAfterMs, `call ${c.id} refused at ${c.outcome!.at}`).toBeGreaterThan(budgetMs)
          expect(c.outcome!.at).toBeLessThanOrEqual(c.deadline)
        }
      }
      // --- cooldown: an admission after a report waits it out
      for (const r of reports.filter((r) => r.account === account)) {
        for (const c of admitted) {
          if (c.outcome!.seq > r.seq) expect(c.outcome!.at, `call ${c.id} admitted in a cooldown`).toBeGreaterThanOrEqual(
            Math.max(...reports.filter((q) => q.account === account && q.seq < c.outcome!.seq).map((q) => q.until))
          )
        }
      }
      // --- limits: token bucket bound
      if (admitted.length > 0) {
        // The bucket is full when first used (the first arrival) and refills from then on.
        const first = Math.min(...mine.map((c) => c.arrivedAt))
        for (const c of admitted) {
          const t = c.outcome!.at
          const upTo = admitted.filter((d) => d.outcome!.at <= t)
          const back = givebacks.filter((g) => g.account === account && g.at <= t)
          const requests = upTo.length
          const requestBound = config.rpm + Math.floor((t - first) * config.rpm / 60_000) +
            back.reduce((n, g) => n + g.requests, 0)
          expect(requests, `requests admitted by ${t}`).toBeLessThanOrEqual(requestBound)
          const tokens = upTo.reduce((n, d) => n + d.tokens, 0)
          const tokenBound = config.tpm + Math.floor((t - first) * config.tpm / 60_000) + back.reduce((n, g) => n + g.tokens, 0)
          expect(tokens, `tokens admitted by ${t}`).toBeLessThanOrEqual(tokenBound)
        }
      }
    }
    // --- interrupted calls were never admitted (their outcome is the interruption itself)
    for (const call of calls.filter((c) => c.outcome!.kind === "interrupted")) expect(call.reservation).toBeUndefined()
  })

describe("RateLimits properties (random schedules, TestClock, memory store)", () => {
  it.effect.prop(
    "FIFO per account, limits, timeouts, cooldowns and settlement hold for every schedule",
    arbitraries,
    ({ config, steps }) => run(config, steps),
    { timeout: 120_000, arbitrary: { runs: RUNS, size: 40, seed: SEED + 11 } }
  )
})

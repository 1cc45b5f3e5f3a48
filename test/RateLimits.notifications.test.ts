/**
 * The pure readers of codex notifications behind rate-limit admission, on the
 * shapes real codex-cli 0.169.0 sent against a model server answering HTTP 429
 * (with and without `retry-after`, `stream_max_retries` 0 and 2) and a
 * streamed `response.failed` with code `rate_limit_exceeded` (recorded once,
 * copied here verbatim but for ids and times).
 */
import { describe, expect, it } from "vitest"
import { rateLimitSignalOf, retryAfterMsOf, tokenUsageOf } from "../src/RateLimits.ts"

/** 429 with `retry-after` while codex retries (stream_max_retries 2). */
const retrying429 = {
  error: {
    message: "Reconnecting... 1/2",
    codexErrorInfo: { responseStreamDisconnected: { httpStatusCode: 429 } },
    additionalDetails: "exceeded retry limit, last status: 429 Too Many Requests",
    misalignment: null
  },
  willRetry: true,
  threadId: "th",
  turnId: "tu"
}

/** 429 without `retry-after`: codex gives up at once. */
const final429 = {
  error: {
    message: "exceeded retry limit, last status: 429 Too Many Requests",
    codexErrorInfo: { responseTooManyFailedAttempts: { httpStatusCode: 429 } },
    additionalDetails: null,
    misalignment: null
  },
  willRetry: false,
  threadId: "th",
  turnId: "tu"
}

/** A streamed `response.failed` with `rate_limit_exceeded`: no status code, the server's text in additionalDetails. */
const streamedRateLimit = {
  error: {
    message: "Reconnecting... 1/2",
    codexErrorInfo: { responseStreamDisconnected: { httpStatusCode: null } },
    additionalDetails: "rate limit exceeded: Rate limit reached for gpt-5 on tokens per min (TPM). Please try again in 20ms.",
    misalignment: null
  },
  willRetry: true,
  threadId: "th",
  turnId: "tu"
}

const server500 = {
  error: {
    message: "exceeded retry limit, last status: 500 Internal Server Error",
    codexErrorInfo: { responseTooManyFailedAttempts: { httpStatusCode: 500 } },
    additionalDetails: "rate limit text in a 500 is not a 429",
    misalignment: null
  },
  willRetry: false,
  threadId: "th",
  turnId: "tu"
}

const tokenUsage = {
  threadId: "th",
  turnId: "tu",
  tokenUsage: {
    total: { totalTokens: 240, inputTokens: 200, cachedInputTokens: 0, cacheWriteInputTokens: 0, outputTokens: 40, reasoningOutputTokens: 0 },
    last: { totalTokens: 120, inputTokens: 100, cachedInputTokens: 30, cacheWriteInputTokens: 0, outputTokens: 20, reasoningOutputTokens: 5 },
    modelContextWindow: 258400
  }
}

describe("RateLimits notifications", () => {
  it("recognises every 429 shape codex sends, with the wait its text names", () => {
    expect(rateLimitSignalOf("error", retrying429)).toEqual({
      retryAfterMs: undefined,
      willRetry: true,
      message: "Reconnecting... 1/2 (exceeded retry limit, last status: 429 Too Many Requests)"
    })
    expect(rateLimitSignalOf("error", final429)).toMatchObject({ retryAfterMs: undefined, willRetry: false })
    expect(rateLimitSignalOf("error", streamedRateLimit)).toMatchObject({ retryAfterMs: 20, willRetry: true })
    expect(rateLimitSignalOf("error", { ...final429, error: { ...final429.error, codexErrorInfo: "rateLimitExceeded" } }))
      .toMatchObject({ retryAfterMs: undefined })
    expect(rateLimitSignalOf("error", {
      ...final429,
      error: { ...final429.error, codexErrorInfo: { httpConnectionFailed: { httpStatusCode: 429 } }, additionalDetails: "Please try again in 6m0s." }
    })).toMatchObject({ retryAfterMs: 360_000 })
  })

  it("ignores other errors, other methods and malformed params", () => {
    expect(rateLimitSignalOf("error", server500)).toBeUndefined()
    expect(rateLimitSignalOf("error", { ...final429, error: { ...final429.error, codexErrorInfo: "usageLimitExceeded", message: "usage limit" } }))
      .toBeUndefined()
    expect(rateLimitSignalOf("error", { ...final429, error: { ...final429.error, codexErrorInfo: "unauthorized", message: "401" } }))
      .toBeUndefined()
    expect(rateLimitSignalOf("turn/completed", final429)).toBeUndefined()
    expect(rateLimitSignalOf("error", null)).toBeUndefined()
    expect(rateLimitSignalOf("error", { error: "x" })).toBeUndefined()
  })

  it("reads the waits OpenAI and others write", () => {
    expect(retryAfterMsOf("Please try again in 1.5s.")).toBe(1_500)
    expect(retryAfterMsOf("Please try again in 20ms")).toBe(20)
    expect(retryAfterMsOf("try again in 1m30.5s")).toBe(90_500)
    expect(retryAfterMsOf("Try again in 2h")).toBe(7_200_000)
    expect(retryAfterMsOf("Retry-After: 3")).toBe(3_000)
    expect(retryAfterMsOf("please retry after 250 ms")).toBe(250)
    expect(retryAfterMsOf("retry after 2 seconds")).toBe(2_000)
    expect(retryAfterMsOf("Rate limit reached")).toBeUndefined()
  })

  it("reads one model request's usage and the thread total from thread/tokenUsage/updated", () => {
    expect(tokenUsageOf("thread/tokenUsage/updated", tokenUsage)).toEqual({
      threadId: "th",
      totalTokens: 240,
      last: { totalTokens: 120, inputTokens: 100, cachedInputTokens: 30, outputTokens: 20, reasoningOutputTokens: 5 }
    })
    expect(tokenUsageOf("thread/tokenUsage/updated", { tokenUsage: { last: { inputTokens: -5, outputTokens: "x" } } }))
      .toEqual({ threadId: "", totalTokens: 0, last: { totalTokens: 0, inputTokens: 0, cachedInputTokens: 0, outputTokens: 0, reasoningOutputTokens: 0 } })
    expect(tokenUsageOf("item/completed", tokenUsage)).toBeUndefined()
    expect(tokenUsageOf("thread/tokenUsage/updated", { tokenUsage: null })).toBeUndefined()
  })
})

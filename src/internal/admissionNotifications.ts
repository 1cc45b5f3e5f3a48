/**
 * Pure readers of the codex app-server notifications that rate-limit
 * admission cares about (shapes observed with codex-cli 0.169.0):
 *
 * - `thread/tokenUsage/updated` {threadId, turnId, tokenUsage: {total, last}}:
 *   sent after each model request of a turn; `last` is that request's usage,
 *   `total` the thread's running sum. On a failed turn codex may send the
 *   previous figures again (same `total`): {@link tokenUsageOf} returns both so
 *   the caller can drop such repeats.
 * - `error` {error: {message, codexErrorInfo, additionalDetails}, willRetry}:
 *   {@link rateLimitSignalOf} recognises an HTTP 429 in any of the shapes codex
 *   uses: `{responseStreamDisconnected: {httpStatusCode: 429}}` (codex is
 *   retrying after a `retry-after` header), `{responseTooManyFailedAttempts:
 *   {httpStatusCode: 429}}` (it gave up), any other variant carrying
 *   `httpStatusCode: 429`, the string code `"rateLimitExceeded"`, and a
 *   streamed `response.failed` with code `rate_limit_exceeded`, which codex
 *   reports with `httpStatusCode: null` and the server's text ("rate limit
 *   exceeded: ... Please try again in 20ms.") in `additionalDetails`.
 *
 * The wait is read from the text when it says one ("try again in 1.5s",
 * "Please try again in 20ms", "try again in 1m30s", "retry after 2 seconds").
 * Codex does not pass the `retry-after` header on, so a 429 it retries by
 * itself carries no wait: the caller applies its default cooldown.
 *
 * Limits: `usageLimitExceeded` (a ChatGPT plan's quota) is not treated as a
 * rate limit: waiting a few seconds does not help there.
 *
 * @internal
 */

/** A token-usage breakdown as codex reports it (every field a number >= 0). */
export interface TokenUsageBreakdown {
  readonly totalTokens: number
  readonly inputTokens: number
  readonly cachedInputTokens: number
  readonly outputTokens: number
  readonly reasoningOutputTokens: number
}

/** What a `thread/tokenUsage/updated` notification says. */
export interface TokenUsageUpdate {
  readonly threadId: string
  /** Usage of the model request that just finished. */
  readonly last: TokenUsageBreakdown
  /** The thread's running total (used to recognise repeats). */
  readonly totalTokens: number
}

/** A rate-limit (HTTP 429) report read from an `error` notification. */
export interface RateLimitSignal {
  /** The wait the message names, in ms; undefined when it names none. */
  readonly retryAfterMs: number | undefined
  /** Codex retries the request by itself (`willRetry`). */
  readonly willRetry: boolean
  /** The message, for logs. */
  readonly message: string
}

const isRecord = (u: unknown): u is Record<string, unknown> => typeof u === "object" && u !== null

const count = (u: unknown): number => typeof u === "number" && Number.isFinite(u) && u > 0 ? u : 0

const breakdownOf = (u: unknown): TokenUsageBreakdown | undefined => {
  if (!isRecord(u)) return undefined
  const inputTokens = count(u["inputTokens"])
  const outputTokens = count(u["outputTokens"])
  const totalTokens = typeof u["totalTokens"] === "number" ? count(u["totalTokens"]) : inputTokens + outputTokens
  return {
    totalTokens,
    inputTokens,
    cachedInputTokens: count(u["cachedInputTokens"]),
    outputTokens,
    reasoningOutputTokens: count(u["reasoningOutputTokens"])
  }
}

/**
 * Reads a `thread/tokenUsage/updated` notification; undefined for any other
 * method or a malformed one.
 */
export const tokenUsageOf = (method: string, params: unknown): TokenUsageUpdate | undefined => {
  if (method !== "thread/tokenUsage/updated" || !isRecord(params)) return undefined
  const usage = params["tokenUsage"]
  if (!isRecord(usage)) return undefined
  const last = breakdownOf(usage["last"])
  if (last === undefined) return undefined
  const total = breakdownOf(usage["total"])
  return {
    threadId: typeof params["threadId"] === "string" ? params["threadId"] : "",
    last,
    totalTokens: total?.totalTokens ?? 0
  }
}

const UNIT_MS: Record<string, number> = { ms: 1, s: 1_000, sec: 1_000, second: 1_000, seconds: 1_000, m: 60_000, min: 60_000, h: 3_600_000 }

const TRY_AGAIN = /try again in\s+((?:\d+(?:\.\d+)?\s*(?:ms|h|m|s)\s*)+)/i
const PART = /(\d+(?:\.\d+)?)\s*(ms|h|m|s)/gi
const RETRY_AFTER = /retry[- ]after[:\s]+(\d+(?:\.\d+)?)\s*(ms|seconds?|sec|s)?\b/i

/**
 * The wait named in a rate-limit message, in ms: "try again in 1.5s",
 * "20ms", "1m30.5s", "2h", or "retry after 3 seconds" / "Retry-After: 3".
 * Undefined when the text names none.
 */
export const retryAfterMsOf = (text: string): number | undefined => {
  const tryAgain = TRY_AGAIN.exec(text)
  if (tryAgain !== null) {
    let total = 0
    for (const part of tryAgain[1]!.matchAll(PART)) total += Number(part[1]) * UNIT_MS[part[2]!.toLowerCase()]!
    return total
  }
  const retryAfter = RETRY_AFTER.exec(text)
  if (retryAfter !== null) return Number(retryAfter[1]) * UNIT_MS[(retryAfter[2] ?? "s").toLowerCase()]!
  return undefined
}

const RATE_LIMIT_TEXT = /rate[ _-]?limit|too many requests|\b429\b/i

const is429Info = (info: unknown): boolean => {
  if (info === "rateLimitExceeded") return true
  if (!isRecord(info)) return false
  for (const value of Object.values(info)) {
    if (isRecord(value) && value["httpStatusCode"] === 429) return true
  }
  return false
}

/**
 * Reads an `error` notification: a {@link RateLimitSignal} when it reports an
 * HTTP 429 (see the module header for the shapes), undefined otherwise (other
 * errors, other methods, malformed params).
 */
export const rateLimitSignalOf = (method: string, params: unknown): RateLimitSignal | undefined => {
  if (method !== "error" || !isRecord(params)) return undefined
  const error = params["error"]
  if (!isRecord(error)) return undefined
  const message = typeof error["message"] === "string" ? error["message"] : ""
  const details = typeof error["additionalDetails"] === "string" ? error["additionalDetails"] : ""
  const info = error["codexErrorInfo"]
  // A streamed `response.failed` with `rate_limit_exceeded` has no status code:
  // only its text says it. The text alone counts only when no other status is given.
  const statusGiven = isRecord(info) &&
    Object.values(info).some((v) => isRecord(v) && typeof v["httpStatusCode"] === "number")
  const byText = !statusGiven && (typeof info !== "string" || info === "other") &&
    (RATE_LIMIT_TEXT.test(details) || RATE_LIMIT_TEXT.test(message))
  if (!is429Info(info) && !byText) return undefined
  return {
    retryAfterMs: retryAfterMsOf(details) ?? retryAfterMsOf(message),
    willRetry: params["willRetry"] === true,
    message: details === "" ? message : `${message} (${details})`
  }
}

/** The status of a `turn/completed` notification, or undefined for any other method. */
export const turnStatusOf = (method: string, params: unknown): string | undefined => {
  if (method !== "turn/completed" || !isRecord(params)) return undefined
  const turn = params["turn"]
  return isRecord(turn) && typeof turn["status"] === "string" ? turn["status"] : undefined
}

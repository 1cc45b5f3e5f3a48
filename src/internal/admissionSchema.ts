/**
 * The Schemas of rate-limit options, shared by `RateLimits` (its own options)
 * and the Codex pools (`rateLimits`, `workspaceLimits`, `rateLimitOptions`,
 * `rateLimitStore`), so both refuse the same values with the same messages.
 *
 * @internal
 */
import { Schema } from "effect"
import { Function, IntAtLeast } from "./options.ts"

const PositiveFinite = Schema.Finite.check(Schema.isGreaterThan(0))

/** Requests and tokens per minute of one key. */
export const LimitsSchema = Schema.Struct({
  requestsPerMinute: Schema.optional(PositiveFinite),
  tokensPerMinute: Schema.optional(PositiveFinite)
})

/** Limits of one workspace. */
export const WorkspaceLimitsSchema = Schema.Struct({
  requestsPerMinute: Schema.optional(PositiveFinite),
  requestsPerDay: Schema.optional(PositiveFinite),
  tokensPerMinute: Schema.optional(PositiveFinite),
  tokensPerDay: Schema.optional(PositiveFinite)
})

/** `workspaceLimits`: a record of limits per workspace, or a function returning them. */
export const WorkspaceLimitsOption = Schema.Union([Schema.Record(Schema.String, WorkspaceLimitsSchema), Function])

/** How admission works beside the limits. */
export const SettingsFields = {
  defaultEstimatedTokens: Schema.optional(Schema.Finite.check(Schema.isGreaterThanOrEqualTo(0))),
  defaultCooldownMs: Schema.optional(PositiveFinite),
  workspaceWarnAt: Schema.optional(PositiveFinite.check(Schema.isLessThanOrEqualTo(1))),
  maxWorkspaceSeries: Schema.optional(IntAtLeast(0)),
  instances: Schema.optional(IntAtLeast(1)),
  storeTimeoutMs: Schema.optional(PositiveFinite),
  probeIntervalMs: Schema.optional(PositiveFinite)
}

/** A shared Redis store. */
export const StoreOptionsSchema = Schema.Struct({
  redisUrl: Schema.String.check(
    Schema.makeFilter((s: string) => /^rediss?:\/\/./.test(s) || "Expected a redis:// or rediss:// URL")
  ),
  prefix: Schema.optional(Schema.String),
  connectTimeoutMs: Schema.optional(PositiveFinite)
})

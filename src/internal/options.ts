/**
 * Validation of pool options with Schema. Unknown options are rejected and
 * every message names the option at fault, so a typo fails at construction
 * instead of being ignored.
 *
 * @internal
 */
import { Duration, Option, Redacted, Schema } from "effect"
import { PoolOptionsError } from "../errors.ts"

/** The `Duration` of `u` when it is a `Duration.Input` (a number counts as milliseconds), else `undefined`. */
const durationOf = (u: unknown): Duration.Duration | undefined => {
  if (u === undefined || u === null || typeof u === "boolean" || typeof u === "function") return undefined
  if (typeof u === "number" && Number.isNaN(u)) return undefined
  const d = Duration.fromInput(u as Duration.Input)
  return Option.isSome(d) ? d.value : undefined
}

/**
 * A limit of time: a `Duration.Input` > 0, `Duration.infinity` for no limit.
 * Zero is refused: it used to mean "no limit" (and still does in the promise
 * facades' `...Ms` options), so a zero here is most likely a leftover.
 */
const isTimeout = (u: unknown): u is Duration.Input => {
  if (typeof u === "number") return u > 0 // NaN fails this too
  const d = durationOf(u)
  return d !== undefined && Duration.isGreaterThan(d, Duration.zero)
}

/** Schema of a limit of time: a duration > 0, `Duration.infinity` meaning no limit. */
export const Timeout = Schema.declare(isTimeout, {
  expected: "a duration > 0 (Duration.infinity for no limit)"
})

/** A duration >= 0, infinite or not. */
const isDurationInput = (u: unknown): u is Duration.Input => {
  if (typeof u === "number") return u >= 0 // NaN fails this too
  const d = durationOf(u)
  return d !== undefined && !Duration.isNegative(d)
}

/** Schema of a duration >= 0 (`Duration.infinity` allowed). */
export const DurationInput = Schema.declare(isDurationInput, {
  expected: "a duration >= 0 (Duration.infinity for no limit)"
})

/** Schema of a finite duration >= 0. */
export const FiniteDuration = Schema.declare(
  (u: unknown): u is Duration.Input => {
    if (typeof u === "number") return u >= 0 && u !== Infinity
    const d = durationOf(u)
    return d !== undefined && !Duration.isNegative(d) && Duration.isFinite(d)
  },
  { expected: "a finite duration >= 0" }
)

/** A time in milliseconds: a finite or infinite number >= 0 (not NaN, not a numeric string). */
const isMillis = (u: unknown): u is number => typeof u === "number" && u >= 0

/** Schema of a time in milliseconds: a finite or infinite number >= 0 (not NaN). */
export const Millis = Schema.declare(isMillis, { expected: "a number of milliseconds >= 0 (not NaN)" })

/**
 * An `AbortSignal` of this realm. Duck-typed look-alikes are refused: the
 * promise facade hands the signal to `AbortSignal.any`, which rejects them.
 */
const isAbortSignal = (u: unknown): u is AbortSignal => u instanceof AbortSignal

/** Schema of an `AbortSignal`. */
export const AbortSignalSchema = Schema.declare(isAbortSignal, { expected: "an AbortSignal" })

/** Schema of an integer >= `min`. */
export const IntAtLeast = (min: number) => Schema.Int.check(Schema.isGreaterThanOrEqualTo(min))

/** Schema of a count that may be unbounded: an integer >= 0, or `Infinity`. */
export const CountOrInfinity = Schema.Number.check(
  Schema.makeFilter((n: number) =>
    n === Infinity || (Number.isInteger(n) && n >= 0) || "Expected an integer >= 0 or Infinity"
  )
)

/** Schema of a function (the options that are callbacks). */
export const Function = Schema.declare(
  (u: unknown): u is (...args: ReadonlyArray<never>) => unknown => typeof u === "function",
  { expected: "a function" }
)

/**
 * Decodes `input` with `schema`, throwing a `PoolOptionsError` that lists each
 * bad option as `name: problem`, followed by the bad value unless `secret`
 * says the option may hold one (environment variables: API keys).
 */
export const decodeOptions = <S extends Schema.Top>(
  what: string,
  schema: S,
  input: unknown,
  secret: (path: ReadonlyArray<PropertyKey>) => boolean = noSecrets
): S["Type"] => {
  if (typeof input !== "object" || input === null) {
    throw new PoolOptionsError({ message: `Invalid ${what} options: expected an object, got ${String(input)}.` })
  }
  const standard = Schema.toStandardSchemaV1(schema as any, {
    parseOptions: { onExcessProperty: "error", errors: "all" }
  } as any) as {
    readonly "~standard": {
      readonly validate: (u: unknown) =>
        | { readonly value: S["Type"] }
        | { readonly issues: ReadonlyArray<{ readonly path: ReadonlyArray<PropertyKey>; readonly message: string }> }
    }
  }
  const result = standard["~standard"].validate(input)
  if ("value" in result) return result.value
  const seen = new Set<string>()
  const lines: Array<string> = []
  for (const issue of result.issues) {
    const name = issue.path.map(String).join(".") || "(options)"
    const excess = issue.message === "Expected no excess property"
    const value = excess || secret(issue.path) ? absent : valueAt(input, issue.path)
    const message = excess ? "unknown option" : value === absent ? issue.message : `${issue.message}, got ${describe(value)}`
    const line = `${name}: ${message}`
    if (!seen.has(line)) {
      seen.add(line)
      lines.push(line)
    }
  }
  throw new PoolOptionsError({ message: `Invalid ${what} options: ${lines.join("; ")}.` })
}

const absent: unique symbol = Symbol("absent")

const noSecrets = () => false

/** True for a path inside an `env` option (at any depth): its values may be secrets. */
export const underEnv = (path: ReadonlyArray<PropertyKey>): boolean => path.includes("env")

/** The value at `path` in `input`, or `absent` when a key on the way is missing. */
const valueAt = (input: unknown, path: ReadonlyArray<PropertyKey>): unknown => {
  let value = input
  for (const key of path) {
    if (typeof value !== "object" || value === null || !(key in value)) return absent
    value = (value as Record<PropertyKey, unknown>)[key]
  }
  return value
}

/** A short description of a bad value for an error message. */
const describe = (u: unknown): string => {
  switch (typeof u) {
    case "string":
      return JSON.stringify(u.length > 40 ? `${u.slice(0, 40)}…` : u)
    case "function":
      return "a function"
    case "bigint":
      return `${u}n`
    case "object": {
      if (u === null) return "null"
      if (Duration.isDuration(u)) return `a Duration (${Duration.format(u)})`
      if (Array.isArray(u)) return "an array"
      const name = Object.getPrototypeOf(u)?.constructor?.name
      return typeof name === "string" && name !== "" && name !== "Object" ? `a ${name}` : "an object"
    }
    default:
      return String(u)
  }
}

/**
 * Validates the options of one call (an acquire, a request) without building
 * anything when they are fine: `fields` maps each known option to a check of
 * its value (`undefined` always passes). Only when an option is unknown or
 * fails its check is `schema` (the same rules) decoded, to make the
 * `PoolOptionsError` naming each bad option. Returns that error, or
 * `undefined`.
 *
 * Why by hand: with options present this check costs 10-20 ns, `Schema.is`
 * with the schema built once 80-120 ns, a decode refusing unknown keys
 * 300-360 ns, while a whole acquire + release of an idle worker costs about
 * 110 ns (`node bench/callOptions.ts`).
 */
const callOptionsChecker = (
  what: string,
  schema: Schema.Top,
  fields: Readonly<Record<string, (u: unknown) => boolean>>
) => {
  const checks: Record<string, (u: unknown) => boolean> = Object.assign(Object.create(null), fields)
  return (options: unknown): PoolOptionsError | undefined => {
    if (options === undefined) return undefined
    if (typeof options === "object" && options !== null) {
      let ok = true
      for (const key in options) {
        const check = checks[key]
        const value = (options as Record<string, unknown>)[key]
        if (check === undefined || (value !== undefined && !check(value))) {
          ok = false
          break
        }
      }
      if (ok) return undefined
    }
    try {
      decodeOptions(what, schema, options)
    } catch (error) {
      if (error instanceof PoolOptionsError) return error
      throw error
    }
    // Only inherited enumerable keys failed the quick check; the schema reads own keys.
    return undefined
  }
}

const isString = (u: unknown): u is string => typeof u === "string"

/** A count of tokens: a finite number >= 0. */
const isTokens = (u: unknown): u is number => typeof u === "number" && u >= 0 && u !== Infinity

/** Schema of a count of tokens (`estimatedTokens`). */
const Tokens = Schema.declare(isTokens, { expected: "a finite number >= 0" })

/**
 * Checks the options of a promise acquire or `use`: `signal`, `timeoutMs`,
 * `account`, `prefer`, and the rate-limit ones `workspace` and
 * `estimatedTokens` (read by a Codex pool with rate limits, ignored by others).
 */
export const checkAcquireOptions = callOptionsChecker(
  "acquire",
  Schema.Struct({
    signal: Schema.optional(AbortSignalSchema),
    timeoutMs: Schema.optional(Millis),
    account: Schema.optional(Schema.String),
    prefer: Schema.optional(Schema.String),
    workspace: Schema.optional(Schema.String),
    estimatedTokens: Schema.optional(Tokens)
  }),
  {
    signal: isAbortSignal,
    timeoutMs: isMillis,
    account: isString,
    prefer: isString,
    workspace: isString,
    estimatedTokens: isTokens
  }
)

/** Checks the options of a Codex handle's `request`: `signal`, `timeoutMs`. */
export const checkRequestOptions = callOptionsChecker(
  "request",
  Schema.Struct({ signal: Schema.optional(AbortSignalSchema), timeoutMs: Schema.optional(Millis) }),
  { signal: isAbortSignal, timeoutMs: isMillis }
)

/**
 * Checks the options of an Effect `getWith` / `use`: `timeout`, `account`,
 * `prefer`, and the rate-limit ones `workspace` and `estimatedTokens` (read by
 * a Codex pool with rate limits, ignored by others).
 */
export const checkEffectAcquireOptions = callOptionsChecker(
  "acquire",
  Schema.Struct({
    timeout: Schema.optional(Timeout),
    account: Schema.optional(Schema.String),
    prefer: Schema.optional(Schema.String),
    workspace: Schema.optional(Schema.String),
    estimatedTokens: Schema.optional(Tokens)
  }),
  { timeout: isTimeout, account: isString, prefer: isString, workspace: isString, estimatedTokens: isTokens }
)

/** Milliseconds of a validated duration; `Infinity` stays `Infinity`. */
export const toMillis = (input: Duration.Input): number => Duration.toMillis(Duration.fromInputUnsafe(input))

/**
 * The milliseconds the core works with for a validated limit of time
 * (`Timeout`): `undefined` gives `fallback`, and no limit (`Duration.infinity`)
 * is 0, as the core has it.
 */
export const timeoutMillis = (input: Duration.Input | undefined, fallback: number): number => {
  if (input === undefined) return fallback
  const ms = typeof input === "number" ? input : toMillis(input)
  return ms === Infinity ? 0 : ms
}

/**
 * The `Duration` of a promise facade's `...Ms` option: `undefined` stays
 * absent, and 0 or `Infinity` (the facades' "no limit") is
 * `Duration.infinity`. The one mapping from the facades' times to the
 * Effect API's.
 */
export const durationOfMs = (ms: number | undefined): Duration.Duration | undefined =>
  ms === undefined ? undefined : ms === 0 || ms === Infinity ? Duration.infinity : Duration.millis(ms)

/** An environment variable's value: a string, or a `Redacted` one (a secret). */
const EnvValue = Schema.declare(
  (u: unknown): u is string | Redacted.Redacted<string> =>
    typeof u === "string" || (Redacted.isRedacted(u) && typeof Redacted.value(u) === "string"),
  { expected: "a string or a Redacted string" }
)

/**
 * Schema of an `env` option: variables to set (a string or a `Redacted`
 * string) or remove (`undefined`). Decode it with {@link underEnv} as the
 * secret-path predicate, so that a message never shows a value.
 */
export const EnvSchema = Schema.Record(Schema.String, Schema.UndefinedOr(EnvValue))

/** The fields of `CodexWorker.ProcessOptions`, shared by `CodexWorker.make` and the Codex pool. */
export const ProcessOptionsFields = {
  command: Schema.optional(Schema.String.check(Schema.isNonEmpty())),
  args: Schema.optional(Schema.Array(Schema.String)),
  env: Schema.optional(EnvSchema),
  cwd: Schema.optional(Schema.String),
  codexHome: Schema.optional(Schema.String),
  spawnTimeout: Schema.optional(Timeout),
  killGrace: Schema.optional(FiniteDuration),
  processScanInterval: Schema.optional(Timeout),
  // Up to V8's longest string (2^29 - 24 characters): a longer line could not be decoded at all.
  maxLineBytes: Schema.optional(IntAtLeast(1024).check(Schema.isLessThanOrEqualTo(2 ** 29 - 24))),
  clientInfo: Schema.optional(Schema.Struct({
    name: Schema.String,
    version: Schema.String,
    title: Schema.optional(Schema.String)
  })),
  capabilities: Schema.optional(Schema.Unknown)
}

const ProcessOptionsSchema = Schema.Struct(ProcessOptionsFields)

/**
 * Validates the options of `CodexWorker.make` (throwing a `PoolOptionsError`
 * naming the bad option) and returns its times in milliseconds: `Infinity`
 * for no limit.
 */
export const processSettings = (options: unknown): {
  readonly spawnTimeoutMs: number
  readonly graceMs: number
  readonly scanIntervalMs: number
} => {
  // `env` values may be API keys: a message never shows them.
  const o = decodeOptions("CodexWorker", ProcessOptionsSchema, options, underEnv)
  return {
    spawnTimeoutMs: o.spawnTimeout === undefined ? 30_000 : toMillis(o.spawnTimeout),
    graceMs: o.killGrace === undefined ? 2_000 : toMillis(o.killGrace),
    scanIntervalMs: o.processScanInterval === undefined ? 1_000 : toMillis(o.processScanInterval)
  }
}

/**
 * Validation of pool options with Schema. Unknown options are rejected and
 * every message names the option at fault, so a typo fails at construction
 * instead of being ignored.
 *
 * @internal
 */
import { Duration, Option, Schema } from "effect"
import { PoolOptionsError } from "../errors.ts"

/** A duration in milliseconds or any `Duration.Input`; negative and NaN are refused. */
const isDurationInput = (u: unknown): u is Duration.Input => {
  if (typeof u === "number") return u >= 0 // NaN fails this too
  if (u === undefined || u === null || typeof u === "boolean" || typeof u === "function") return false
  const d = Duration.fromInput(u as Duration.Input)
  return Option.isSome(d) && !Duration.isNegative(d.value)
}

/** Schema of a non-negative duration (milliseconds or `Duration.Input`). */
export const DurationInput = Schema.declare(isDurationInput, {
  expected: "a duration >= 0 (milliseconds or a Duration)"
})

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
 * bad option as `name: problem`.
 */
export const decodeOptions = <S extends Schema.Top>(
  what: string,
  schema: S,
  input: unknown
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
    const value = excess ? absent : valueAt(input, issue.path)
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

/** Checks the options of a promise acquire or `use`: `signal`, `timeoutMs`. */
export const checkAcquireOptions = callOptionsChecker(
  "acquire",
  Schema.Struct({ signal: Schema.optional(AbortSignalSchema), timeoutMs: Schema.optional(Millis) }),
  { signal: isAbortSignal, timeoutMs: isMillis }
)

/** Checks the options of a Codex handle's `request`: `signal`, `timeoutMs`. */
export const checkRequestOptions = callOptionsChecker(
  "request",
  Schema.Struct({ signal: Schema.optional(AbortSignalSchema), timeoutMs: Schema.optional(Millis) }),
  { signal: isAbortSignal, timeoutMs: isMillis }
)

/** Checks the options of an Effect `getWith` / `use`: `timeout`. */
export const checkEffectAcquireOptions = callOptionsChecker(
  "acquire",
  Schema.Struct({ timeout: Schema.optional(DurationInput) }),
  { timeout: isDurationInput }
)

/** Milliseconds of a validated duration; `Infinity` stays `Infinity`. */
export const toMillis = (input: Duration.Input): number => Duration.toMillis(Duration.fromInputUnsafe(input))

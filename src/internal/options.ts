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

/** Schema of a time in milliseconds: a finite or infinite number >= 0 (not NaN). */
export const Millis = Schema.Number.check(
  Schema.makeFilter((n: number) => n >= 0 || "Expected a number of milliseconds >= 0 (not NaN)")
)

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
    const message = issue.message === "Expected no excess property" ? "unknown option" : issue.message
    const line = `${name}: ${message}`
    if (!seen.has(line)) {
      seen.add(line)
      lines.push(line)
    }
  }
  throw new PoolOptionsError({ message: `Invalid ${what} options: ${lines.join("; ")}.` })
}

/** Milliseconds of a validated duration; `Infinity` stays `Infinity`. */
export const toMillis = (input: Duration.Input): number => Duration.toMillis(Duration.fromInputUnsafe(input))

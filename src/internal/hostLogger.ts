/**
 * The promise facades' logging: an Effect `Logger` that hands every line to
 * a host's logger (`debug` / `info` / `warn` / `error`, each called with a
 * message and structured fields), and the services that put it, with the
 * minimum level, under everything a pool runs.
 *
 * Fields of a line: the log annotations of the fiber that wrote it (`pool`,
 * `pool_id`, a worker's `pid`...), the plain objects logged with the message
 * (`{ queued, waitedMs }`), `error` for another value logged with it (or
 * `errors` for several), and `cause`, the pretty-printed `Cause`, when one was
 * logged. A host logger that throws loses that line and nothing else.
 *
 * `PoolLogger` is declared here (`PromisePool` re-exports it) so that this
 * module imports no public one.
 *
 * @internal
 */
import { Cause, Effect, Logger, type LogLevel, References, Schema } from "effect"
import { Function } from "./options.ts"

/**
 * A host's logger, to route the pool's log lines to. Each method gets the
 * line's message and its structured fields: `pool` and `pool_id` (the pool's
 * name and its metrics id), the line's own values (`queued`, `waitedMs`),
 * `pid` for a Codex worker's lines, `error` and `cause` (pretty-printed) for
 * failures. `console` fits, and so do most logging libraries. A method that
 * throws loses that line, never breaks the pool.
 *
 * @since 0.1.0
 * @category models
 */
export interface PoolLogger {
  debug(message: string, fields: Readonly<Record<string, unknown>>): void
  info(message: string, fields: Readonly<Record<string, unknown>>): void
  warn(message: string, fields: Readonly<Record<string, unknown>>): void
  error(message: string, fields: Readonly<Record<string, unknown>>): void
}

/**
 * Schema of a host logger: an object with the four methods (found on it or
 * its prototype); anything else on it (a `console`, a pino logger) is allowed.
 */
export const PoolLoggerSchema = Schema.StructWithRest(
  Schema.Struct({ debug: Function, info: Function, warn: Function, error: Function }),
  [Schema.Record(Schema.String, Schema.Unknown)]
)

/** The host method for an Effect log level. */
const methodOf = (level: LogLevel.LogLevel): keyof PoolLogger => {
  switch (level) {
    case "Trace":
    case "Debug":
      return "debug"
    case "Warn":
      return "warn"
    case "Error":
    case "Fatal":
      return "error"
    default:
      return "info"
  }
}

const isPlainObject = (u: unknown): u is Record<string, unknown> => {
  if (typeof u !== "object" || u === null) return false
  const proto = Object.getPrototypeOf(u)
  return proto === Object.prototype || proto === null
}

/** An Effect logger writing to `host`. */
export const toEffectLogger = (host: PoolLogger): Logger.Logger<unknown, void> =>
  Logger.make((options) => {
    try {
      const fields: Record<string, unknown> = { ...options.fiber.getRef(References.CurrentLogAnnotations) }
      const texts: Array<string> = []
      let extras: Array<unknown> | undefined
      for (const part of Array.isArray(options.message) ? options.message : [options.message]) {
        if (typeof part === "string") texts.push(part)
        else if (isPlainObject(part)) Object.assign(fields, part)
        else (extras ??= []).push(part)
      }
      if (extras !== undefined) {
        if (extras.length === 1) fields.error = extras[0]
        else fields.errors = extras
      }
      if (options.cause.reasons.length > 0) fields.cause = Cause.pretty(options.cause)
      host[methodOf(options.logLevel)](texts.join(" "), fields)
    } catch {
      // The host's logger failed: the pool goes on without that line.
    }
  })

/** How a facade logs: `debug` lowers the minimum level to Debug; `logger` replaces Effect's loggers. */
export interface Logging {
  readonly debug: boolean
  readonly logger: PoolLogger | undefined
}

/**
 * Runs `effect` (a pool's construction: everything the pool forks keeps these
 * services) with the facade's minimum log level and, when given, the host's
 * logger instead of Effect's. With `debug` off, debug lines are dropped where
 * they are written, before any logger sees them.
 */
export const withLogging = (logging: Logging) => <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> => {
  const leveled = Effect.provideService(effect, References.MinimumLogLevel, logging.debug ? "Debug" : "Info")
  return logging.logger === undefined
    ? leveled
    : Effect.provideService(leveled, References.CurrentLoggers, new Set([toEffectLogger(logging.logger)]))
}

/**
 * An in-memory tracer for tests: every span it makes is an Effect
 * `NativeSpan` kept in `spans`, in creation order, with its parent, its
 * attributes, its events and its status (start and end times, exit).
 */
import { Effect, Option, Tracer } from "effect"

export interface SpanRecorder {
  readonly tracer: Tracer.Tracer
  readonly spans: Array<Tracer.NativeSpan>
  /** The spans named `name`, in creation order. */
  readonly named: (name: string) => Array<Tracer.NativeSpan>
  /** The one span named `name` (throws when there are none or several). */
  readonly only: (name: string) => Tracer.NativeSpan
  /** Runs `effect` with this tracer installed. */
  readonly traced: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
}

export const makeSpanRecorder = (): SpanRecorder => {
  const spans: Array<Tracer.NativeSpan> = []
  const tracer = Tracer.make({
    span: (options) => {
      const span = new Tracer.NativeSpan(options)
      spans.push(span)
      return span
    }
  })
  const named = (name: string) => spans.filter((span) => span.name === name)
  return {
    tracer,
    spans,
    named,
    only: (name) => {
      const found = named(name)
      if (found.length !== 1) {
        throw new Error(`expected one span named ${name}, got ${found.length}: ${spans.map((s) => s.name).join(", ")}`)
      }
      return found[0]!
    },
    traced: (effect) => Effect.withTracer(effect, tracer)
  }
}

/** The parent of `span`, when it is a span (not an external one). */
export const parentOf = (span: Tracer.AnySpan): Tracer.AnySpan | undefined =>
  span._tag === "Span" ? Option.getOrUndefined(span.parent) : undefined

/** The attributes of `span` as a plain object. */
export const attributesOf = (span: Tracer.Span): Record<string, unknown> => Object.fromEntries(span.attributes)

/** How long `span` lasted, in milliseconds (`undefined` while it runs). */
export const durationMs = (span: Tracer.Span): number | undefined =>
  span.status._tag === "Ended" ? Number(span.status.endTime - span.status.startTime) / 1e6 : undefined

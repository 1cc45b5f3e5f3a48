/**
 * What the modules that make spans share: whether a fiber's spans are
 * recorded at all, and how background work leaves the span it was started
 * under.
 *
 * @internal
 */
import * as Context from "effect/Context"
import type * as Fiber from "effect/Fiber"
import * as Tracer from "effect/Tracer"

/**
 * Whether `fiber` has a tracer that records spans. With none installed,
 * Effect's native tracer makes spans that no one can see: the per-request and
 * per-wait spans are then not made at all, so they cost nothing.
 */
export const isTraced = (fiber: Fiber.Fiber<unknown, unknown>): boolean => {
  const cache = fiber.cache
  return cache.tracerEnabled && cache.tracer !== undefined && cache.tracer !== Tracer.nativeTracer
}

/**
 * `context` without its current span, for fibers that outlive the work that
 * started them (a pool's timers and creates, a worker's crash watcher): what
 * they trace starts a trace of its own instead of growing a finished one.
 */
export const withoutParentSpan = <R>(context: Context.Context<R>): Context.Context<R> =>
  Context.omit(Tracer.ParentSpan)(context) as Context.Context<R>

/** Span option for hot paths: the call site inside this library tells a user nothing. */
export const noStackTrace = { captureStackTrace: false } as const

/**
 * Fail-fast runs for pool tests on the `TestClock`: a test (or one property
 * run) that waits for something that will never happen fails at once, naming
 * what is blocked, instead of hanging until vitest's timeout and then again in
 * teardown (where the pool's shutdown waits, on a clock nobody advances any
 * more, for a lease or a create that never ends).
 *
 * How: the body runs in a fiber of its own, on a scheduler that counts the
 * tasks scheduled and not yet run. Under the `TestClock` nothing but those
 * tasks wakes a fiber (no real timer, no I/O), so when the body has not ended
 * and no task is pending across a few real macrotasks (time for promise
 * callbacks to land), every fiber is suspended for
 * good: the run fails as blocked. A bound in real time catches a livelock
 * (fibers that keep running without the body ending). Teardown gets the same
 * treatment: the body's scope is closed in a fiber of its own, watched the
 * same way.
 *
 * Limits: for tests whose fibers are only woken by each other and by the
 * `TestClock`. A test that waits for real time, a real process or I/O would
 * look blocked: run it live instead. The fibers of a blocked run are left
 * suspended (interrupting them could block too); they hold no timer or
 * process.
 */
import { Cause, Effect, Exit, Fiber, Scheduler, Scope } from "effect"

/** Counts of a {@link countingScheduler}. */
export interface SchedulerCounter {
  /** Tasks scheduled and not yet run. */
  readonly pending: number
}

/**
 * Wraps `parent` to count the tasks scheduled and not yet run, and optionally
 * to make fibers yield after `opsBeforeYield` operations.
 */
export const countingScheduler = (parent: Scheduler.Scheduler, opsBeforeYield?: number | undefined) => {
  const counter = { pending: 0 }
  const scheduler: Scheduler.Scheduler = {
    executionMode: parent.executionMode,
    shouldYield: (fiber) =>
      opsBeforeYield === undefined ? parent.shouldYield(fiber) : fiber.currentOpCount >= opsBeforeYield,
    makeDispatcher() {
      const dispatcher = parent.makeDispatcher()
      return {
        scheduleTask(task, priority) {
          counter.pending++
          dispatcher.scheduleTask(() => {
            counter.pending--
            task()
          }, priority)
        },
        flush: () => dispatcher.flush()
      }
    }
  }
  return { scheduler, counter: counter as SchedulerCounter }
}

/**
 * Waits one real macrotask (`setImmediate`: promise callbacks and other
 * schedulers' batches run first), or less if `fiber` ends meanwhile.
 */
const turn = (fiber: Fiber.Fiber<unknown, unknown>) =>
  Effect.callback<void>((resume) => {
    let done = false
    const wake = () => {
      if (done) return
      done = true
      clearImmediate(handle)
      removeObserver()
      resume(Effect.void)
    }
    const handle = setImmediate(wake)
    const removeObserver = fiber.addObserver(wake)
    return Effect.sync(() => {
      done = true
      clearImmediate(handle)
      removeObserver()
    })
  })

/** How many consecutive idle observations, a macrotask apart, make a fiber blocked. */
const IDLE_CHECKS = 3

/** What {@link watch} saw. */
export type Watched<A, E> =
  | { readonly _tag: "Done"; readonly exit: Exit.Exit<A, E> }
  | { readonly _tag: "Blocked" }
  | { readonly _tag: "Livelock"; readonly ms: number }

/**
 * Waits for `fiber` (running on the counting scheduler of `counter`) to end,
 * or until it is blocked (it has not ended and nothing is scheduled) or has
 * run for `liveMs` of real time.
 */
export const watch = <A, E>(
  fiber: Fiber.Fiber<A, E>,
  counter: SchedulerCounter,
  liveMs: number
): Effect.Effect<Watched<A, E>> =>
  Effect.gen(function*() {
    const start = Date.now()
    let idle = 0
    for (;;) {
      const exit = fiber.pollUnsafe()
      if (exit !== undefined) return { _tag: "Done", exit } as const
      if (counter.pending === 0) {
        if (++idle >= IDLE_CHECKS) return { _tag: "Blocked" } as const
      } else {
        idle = 0
      }
      const ms = Date.now() - start
      if (ms > liveMs) return { _tag: "Livelock", ms } as const
      yield* turn(fiber)
    }
  })

/** Options of {@link failFast}. */
export interface FailFastOptions {
  /** Real-time bound on the body, then on teardown, against livelocks. Default 10 s. */
  readonly liveMs?: number | undefined
  /** Names the run in failure messages. */
  readonly name?: string | undefined
  /** More to say when the run blocks (a trace, a seed). */
  readonly describe?: (() => string) | undefined
}

const problem = (name: string, what: string, watched: Watched<unknown, unknown>, more: string): Error =>
  new Error(
    (watched._tag === "Blocked"
      ? `${name}: ${what} is blocked: it has not ended and no fiber can run (it waits for something that ` +
        `never happens: a waiter that is never served or failed, a timer that never fires, a lease that never ` +
        `ends, or a forked child that cannot be interrupted)`
      : `${name}: ${what} kept running for ${(watched as { ms: number }).ms} ms of real time without ending ` +
        `(a livelock?)`) + (more === "" ? "" : `\n${more}`)
  )

/**
 * Runs `body` with its own scope so that it fails fast instead of hanging:
 * a blocked or livelocked body fails with an error saying so, and so does a
 * teardown (closing the body's scope, where the pool shuts down) that cannot
 * complete. For `it.effect` tests on the `TestClock` (see the module header).
 */
export const failFast = <A, E, R>(
  body: Effect.Effect<A, E, R>,
  options: FailFastOptions = {}
): Effect.Effect<A, E, Exclude<R, Scope.Scope>> =>
  Effect.gen(function*() {
    const liveMs = options.liveMs ?? 10_000
    const name = options.name ?? "test"
    const more = () => options.describe?.() ?? ""
    const { counter, scheduler } = countingScheduler(yield* Scheduler.Scheduler)
    const scope = yield* Scope.make()
    const onCounting = <X, Y, Z>(effect: Effect.Effect<X, Y, Z>) =>
      Effect.forkDetach(Effect.provideService(effect, Scheduler.Scheduler, scheduler))
    const bodyFiber = yield* onCounting(Scope.provide(body, scope))
    const ran = yield* watch(bodyFiber, counter, liveMs)
    if (ran._tag !== "Done") {
      bodyFiber.interruptUnsafe()
      return yield* Effect.die(problem(name, "the body", ran, more()))
    }
    const closer = yield* onCounting(Scope.close(scope, ran.exit))
    const closed = yield* watch(closer, counter, liveMs)
    if (closed._tag !== "Done") {
      const error = problem(name, "teardown (closing the body's scope: the pool's shutdown)", closed, more())
      if (Exit.isFailure(ran.exit)) return yield* Effect.failCause(Cause.combine(ran.exit.cause, Cause.die(error)))
      return yield* Effect.die(error)
    }
    return yield* ran.exit
  }) as Effect.Effect<A, E, Exclude<R, Scope.Scope>>

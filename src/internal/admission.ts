/**
 * Rate-limit admission: the engine behind `RateLimits`. A call asks to be
 * admitted for a key (an account: one API key) before it takes a worker, and
 * gets a {@link Reservation} that it feeds the leased worker's notifications
 * and settles when the lease ends.
 *
 * How a call is admitted:
 * 1. Per key, a local FIFO: calls are processed one at a time in arrival
 *    order. If the call names a workspace with limits, its request is counted
 *    in the workspace's minute and day counters first, and the call is refused
 *    at once with `WorkspaceLimitError` when that goes past a limit (nothing of
 *    the key is touched, so a workspace at its limit never takes a slot of the
 *    key; on Redis that check is one extra round trip, for such workspaces
 *    only, and a workspace refused once is refused locally until its window
 *    ends). Then the key's requests-per-minute (1 request) and
 *    tokens-per-minute (the estimate) are taken from Effect's
 *    `RateLimiterStore` token buckets (`allowOverflow`: the bucket reserves
 *    the call's place and the debt says how long it must wait, exactly as
 *    `RateLimiter.consume` with `onExceeded: "delay"` computes it; we call the
 *    store directly with refill intervals computed once per key, since
 *    `consume` recomputes its Durations on every call and costs about three
 *    times more), together with Effect's adaptive limiter (`adaptiveConsume`),
 *    which carries the 429 cooldown. Against Redis these are started in the
 *    same tick, so node-redis writes them together: one round trip.
 * 2. If the announced wait (or the admission of the calls ahead of it, which
 *    go first) ends after the call's deadline, the call is refused at once
 *    with `RateLimitedError` and what it took is given back.
 * 3. Otherwise the call waits for its time, and is admitted only after every
 *    earlier call of the key: a later call never overtakes an earlier one.
 *    One timer per key serves all its waiting calls; a waiting call holds no
 *    worker. With the memory store and nothing queued, all of this happens
 *    synchronously in the call: no fiber is left behind.
 *
 * While it waits a call can be interrupted (or its signal aborted): it leaves
 * the queue at once and everything it took is given back.
 *
 * Tokens are charged from what codex reports: the reservation reads each
 * `thread/tokenUsage/updated` of its lease (`last` is one model request):
 * every request after the first counts one more toward the key's RPM, and
 * tokens beyond what was reserved are charged as they are reported. When the
 * lease ends, `settle` gives back an over-estimate (never more than was
 * charged); a turn that failed (or ended without reporting usage) keeps what
 * it was charged; a lease that ran no turn at all gets everything back. A
 * repeat of earlier figures (codex resends the previous turn's usage on a
 * failed turn: same thread total) is ignored.
 *
 * 429 cooldown: `reportRateLimited` (or the reservation, on an `error`
 * notification carrying HTTP 429) feeds Effect's adaptive limiter
 * (`adaptiveFeedback` with status 429 and the wait: the one the message
 * names, else `defaultCooldownMs`). Its cooldown phase is kept in the store,
 * so every instance's next admissions for the key wait it out; this instance
 * also holds back its own waiting calls at once (and refuses those whose
 * deadline comes first). After the cooldown the adaptive limiter learns the
 * rate the key sustained until the next 429 and paces at it for that window
 * (Effect's design; its state expires a minute later).
 *
 * What is not Effect's (and why):
 * - Refunds. Effect's store cannot un-consume; a negative take adds tokens
 *   back but does not cap them at the bucket's capacity. So a refund is at
 *   most what the reservation charged, and when the bucket then holds more
 *   than its capacity the surplus is taken again at once (in memory both
 *   happen in one synchronous step; on Redis another instance may see the
 *   surplus for one round trip).
 * - On a memory store, charges and refunds are owed and carried by the key's
 *   next take (a charge added to it; a refund given back, capped, just
 *   before it) instead of run on their own: one store call per admission.
 *   Only takes read the buckets, so nothing can tell the difference.
 * - The FIFO and the timer in front of the store.
 * - Usage counters per workspace and workspace limits: see
 *   `admissionStore.ts`. Workspace limits are quotas over calendar windows of
 *   those counters, so the share that triggers the warning and the 100% that
 *   refuses are the figures `usage(workspace)` reports. Token limits are
 *   soft: a call is refused once the window's tokens reached the limit; the
 *   turn that crosses it runs to its end.
 *
 * Degraded mode (shared store only): every store call is bounded by
 * `storeTimeoutMs`. When one fails or times out, admission switches to a
 * local in-memory limiter at `limit / instances` of every key limit, logs it,
 * sets the `..._store_degraded` gauge, and re-runs the call there (the call is
 * not lost); a probe every `probeIntervalMs` switches back once the store
 * answers. It never admits without a limit. A store whose connection is still
 * being made starts in that mode. While degraded, usage counters are local
 * too, and a refund of a charge made on the shared store is dropped
 * (conservative). What was admitted locally during an outage is not charged
 * to the shared store afterwards: right after it comes back, a key can see up
 * to that much more than its limit within the minute.
 *
 * Limits: FIFO holds among the calls of one instance; across instances the
 * shared store admits in the order it sees the calls, not in arrival order.
 * Cooldowns are recorded under the epoch of the adaptive limiter a call was
 * admitted in; a 429 reported for an older epoch is ignored by the store (it
 * still holds back this instance). A waiting call's time is fixed when it is
 * taken: a refund or a cancelled call ahead of it does not bring it forward.
 *
 * @internal
 */
import { Clock, Context, Duration, Effect, Fiber, FiberSet, Scope } from "effect"
import type * as RateLimiter from "effect/persistence/RateLimiter"
import { PoolOptionsError, PoolShutdownError, RateLimitedError, WorkspaceLimitError } from "../errors.ts"
import { type AccountSeries, AdmissionMetrics } from "./admissionMetrics.ts"
import { rateLimitSignalOf, tokenUsageOf, turnStatusOf } from "./admissionNotifications.ts"
import { type AdmissionStore, makeMemoryStore, StoreUnavailable, together } from "./admissionStore.ts"

const MINUTE = 60_000
const DAY = 86_400_000
const MINUTE_WINDOW = Duration.minutes(1)
const MAX_COOLDOWN_MS = 3_600_000
/** Threads whose last usage total is remembered (to drop repeats). */
const MAX_THREADS = 10_000

/** Requests and tokens per minute of one key; undefined: no limit. */
export interface KeyLimits {
  readonly requestsPerMinute?: number | undefined
  readonly tokensPerMinute?: number | undefined
}

/** Limits of one workspace; undefined: no limit. */
export interface WorkspaceLimits {
  readonly requestsPerMinute?: number | undefined
  readonly requestsPerDay?: number | undefined
  readonly tokensPerMinute?: number | undefined
  readonly tokensPerDay?: number | undefined
}

type WorkspaceLimitName = keyof WorkspaceLimits

/** Validated settings of the engine. */
export interface AdmissionConfig {
  /** Names the service in metrics (`pool` attribute) and logs. */
  readonly name: string
  readonly limits: Readonly<Record<string, KeyLimits>>
  readonly defaultEstimatedTokens: number
  readonly defaultCooldownMs: number
  readonly workspaceLimits: ((workspace: string) => WorkspaceLimits | undefined) | undefined
  /** Workspaces that always get their own metric series. */
  readonly configuredWorkspaces: ReadonlyArray<string>
  readonly workspaceWarnAt: number
  readonly maxWorkspaceSeries: number
  readonly instances: number
  readonly storeTimeoutMs: number
  readonly probeIntervalMs: number
}

/** What one call asks to be admitted for. */
export interface AdmitRequest {
  /** The key (account name); default "default". */
  readonly key?: string | undefined
  readonly workspace?: string | undefined
  /** Tokens reserved at admission; default `defaultEstimatedTokens`. */
  readonly estimatedTokens?: number | undefined
  /** The call's budget in ms from now; 0, undefined or Infinity: none. */
  readonly timeoutMs?: number | undefined
}

/** Usage figures of one window. */
export interface UsageFigures {
  readonly requests: number
  readonly inputTokens: number
  readonly cachedInputTokens: number
  readonly outputTokens: number
  readonly reasoningTokens: number
  readonly totalTokens: number
}

/** A workspace's usage in the current minute and UTC day, and its limits. */
export interface WorkspaceUsage {
  readonly workspace: string
  readonly minute: UsageFigures
  readonly day: UsageFigures
  readonly limits: WorkspaceLimits | undefined
  /** Read from the local fallback store (the shared one was unreachable): this instance's figures only. */
  readonly degraded: boolean
}

type AdmitError = RateLimitedError | WorkspaceLimitError | PoolShutdownError | PoolOptionsError
type Where = "shared" | "local"

/** What was consumed for a call, so that it can be given back. */
interface Charge {
  where: Where
  requests: number
  tokens: number
  /** Counted in the workspace counters (minute and day) at admission. */
  workspaceRequest: boolean
  epoch: number
}

const FIELDS = ["requests", "input", "cached", "output", "reasoning", "total"] as const

class KeyState {
  requestsPerMinute: number | undefined
  tokensPerMinute: number | undefined
  head: Entry | undefined = undefined
  tail: Entry | undefined = undefined
  /** First entry not yet processed by the pump (state "queued"). */
  pending: Entry | undefined = undefined
  waiting = 0
  pumping = false
  timer: Fiber.Fiber<void> | undefined = undefined
  timerAt = 0
  /** Local knowledge of the cooldown (from reports and the store). */
  cooldownUntil = 0
  epoch = 0
  readonly name: string
  readonly series: AccountSeries
  /** Token buckets on the shared store (or the only store). */
  shared: Buckets = NO_BUCKETS
  /** Token buckets of the local fallback (`limit / instances`). */
  local: Buckets = NO_BUCKETS
  /**
   * Charges (positive) and refunds (negative) owed to the key's buckets on
   * an in-memory store, by `where`: applied with its next take (see
   * `Admission.#owe`).
   */
  readonly owed = { shared: { requests: 0, tokens: 0 }, local: { requests: 0, tokens: 0 } }
  constructor(name: string, limits: KeyLimits | undefined, series: AccountSeries, instances: number) {
    this.name = name
    this.series = series
    this.setLimits(limits, instances)
  }
  setLimits(limits: KeyLimits | undefined, instances: number): void {
    this.requestsPerMinute = limits?.requestsPerMinute
    this.tokensPerMinute = limits?.tokensPerMinute
    const bucket = (kind: string, limit: number | undefined, scale: number) =>
      limit === undefined ? undefined : new Bucket(`${kind}:${this.name}`, limit * scale)
    this.shared = { rpm: bucket("rpm", this.requestsPerMinute, 1), tpm: bucket("tpm", this.tokensPerMinute, 1) }
    this.local = {
      rpm: bucket("rpm", this.requestsPerMinute, 1 / instances),
      tpm: bucket("tpm", this.tokensPerMinute, 1 / instances)
    }
  }
}

/**
 * A token bucket of `limit` tokens per minute, with the refill interval
 * Effect's `RateLimiter.consume` would compute (`window / limit`), computed
 * once instead of on every call.
 */
class Bucket {
  readonly key: string
  readonly limit: number
  readonly refill: Duration.Duration
  readonly refillMs: number
  constructor(key: string, limit: number) {
    this.key = key
    this.limit = limit
    this.refill = Duration.divideUnsafe(MINUTE_WINDOW, limit)
    this.refillMs = Duration.toMillis(this.refill)
  }
  /**
   * Takes `tokens` (negative: gives them back) with `onExceeded: "delay"`
   * semantics; answers the remaining tokens and the delay, exactly as
   * `RateLimiter.consume` derives it from the store's answer.
   */
  take(store: AdmissionStore, tokens: number): Effect.Effect<Taken, RateLimiter.RateLimiterError> {
    return this.#memo(store, tokens, 0, () =>
      Effect.map(
        store.limiter.tokenBucket({ key: this.key, tokens, limit: this.limit, refillRate: this.refill, allowOverflow: true }),
        ([remaining, elapsedMillis]): Taken => ({
          remaining,
          delayMs: Math.max(0, Math.ceil(-remaining) * this.refillMs - elapsedMillis)
        })
      ))
  }
  /**
   * `take`, where a negative `tokens` gives tokens back: when the bucket then
   * holds more than its capacity (Effect's store does not cap a negative
   * take), the surplus is taken again at once.
   */
  takeCapped(store: AdmissionStore, tokens: number): Effect.Effect<Taken, RateLimiter.RateLimiterError> {
    if (tokens >= 0) return this.take(store, tokens)
    return this.#memo(store, tokens, 1, () =>
      Effect.flatMap(this.take(store, tokens), (taken) =>
        taken.remaining > this.limit
          ? Effect.as(this.take(store, taken.remaining - this.limit), FULL)
          : Effect.succeed(taken)))
  }
  /**
   * Takes `tokens` after what is `owed`: a charge (positive) is added to the
   * take; a refund (negative) is given back first, capped at capacity, then
   * `tokens` taken.
   */
  takeOwing(store: AdmissionStore, tokens: number, owed: number): Effect.Effect<Taken, RateLimiter.RateLimiterError> {
    if (owed >= 0) return this.take(store, tokens + owed)
    return Effect.flatMap(this.takeCapped(store, owed), () => this.take(store, tokens))
  }
  // The same takes recur (one request, the default estimate, their refunds):
  // their Effects are built once. Effects are descriptions; running one twice
  // runs the store call twice.
  #memoStore: AdmissionStore | undefined = undefined
  readonly #memos = new Map<number, Effect.Effect<Taken, RateLimiter.RateLimiterError>>()
  #memo(
    store: AdmissionStore,
    tokens: number,
    kind: number,
    make: () => Effect.Effect<Taken, RateLimiter.RateLimiterError>
  ): Effect.Effect<Taken, RateLimiter.RateLimiterError> {
    if (store !== this.#memoStore || this.#memos.size >= 16) {
      this.#memos.clear()
      this.#memoStore = store
    }
    const id = kind === 0 ? tokens : -tokens - 0.5
    let effect = this.#memos.get(id)
    if (effect === undefined) {
      effect = make()
      this.#memos.set(id, effect)
    }
    return effect
  }
}

const FULL: Taken = { remaining: Number.POSITIVE_INFINITY, delayMs: 0 }

interface Taken {
  readonly remaining: number
  readonly delayMs: number
}

interface Buckets {
  readonly rpm: Bucket | undefined
  readonly tpm: Bucket | undefined
}

const NO_BUCKETS: Buckets = { rpm: undefined, tpm: undefined }

/** What the store answered for one call. */
interface ConsumeResult {
  readonly rpm: Taken | undefined
  readonly tpm: Taken | undefined
  readonly adaptive: RateLimiter.AdaptiveConsumeResult | undefined
  readonly charge: Charge
}

/** Counter values of the current minute (`m`) and UTC day (`d`) of a workspace. */
interface WindowCounts {
  readonly now: number
  readonly minute: number
  readonly day: number
  readonly m: Record<string, number>
  readonly d: Record<string, number>
}

const succeedUndefined = Effect.succeed(undefined)


const REQUESTS_AND_TOKENS: ReadonlyArray<string> = ["requests", "total"]
const ONE_REQUEST: Readonly<Record<string, number>> = { requests: 1 }
const EMPTY: ReadonlyArray<string> = []

type Outcome = { readonly ok: true; readonly value: Reservation } | { readonly ok: false; readonly error: AdmitError }

class Entry {
  state: "queued" | "consuming" | "scheduled" | "done" = "queued"
  prev: Entry | undefined = undefined
  next: Entry | undefined = undefined
  admitAt = 0
  limitedBy: "rpm" | "tpm" | "cooldown" | undefined = undefined
  cancelled = false
  charge: Charge | undefined = undefined
  workspaceCounted = false
  outcome: Outcome | undefined = undefined
  onDone: ((outcome: Outcome) => void) | undefined = undefined
  readonly key: KeyState
  readonly workspace: string | undefined
  readonly estimate: number
  readonly startedAt: number
  readonly deadline: number
  constructor(key: KeyState, workspace: string | undefined, estimate: number, startedAt: number, deadline: number) {
    this.key = key
    this.workspace = workspace
    this.estimate = estimate
    this.startedAt = startedAt
    this.deadline = deadline
  }
}

/** The engine. One per admission service; see the module header. */
export class Admission {
  readonly config: AdmissionConfig
  readonly metrics: AdmissionMetrics
  readonly #shared: AdmissionStore | undefined
  readonly #local: AdmissionStore
  readonly #clock: Clock.Clock
  readonly #run: <A, E>(effect: Effect.Effect<A, E>) => Fiber.Fiber<A, E>
  readonly #runForkNow: <A, E>(effect: Effect.Effect<A, E>) => Fiber.Fiber<A, E>
  readonly #ops: FiberSet.FiberSet<unknown, unknown>
  readonly #keys = new Map<string, KeyState>()
  readonly #threadTotals = new Map<string, number>()
  readonly #blocked = new Map<string, { readonly until: number; readonly error: WorkspaceLimitError }>()
  readonly #warned = new Map<string, number>()
  #degraded = false
  #closed = false

  constructor(options: {
    readonly config: AdmissionConfig
    readonly store: AdmissionStore
    readonly local: AdmissionStore
    readonly context: Context.Context<never>
    readonly run: <A, E>(effect: Effect.Effect<A, E>) => Fiber.Fiber<A, E>
    readonly ops: FiberSet.FiberSet<unknown, unknown>
  }) {
    this.config = options.config
    this.#shared = options.store.kind === "memory" ? undefined : options.store
    this.#local = options.store.kind === "memory" ? options.store : options.local
    this.#clock = Context.get(options.context, Clock.Clock)
    this.#run = options.run
    this.#runForkNow = Effect.runForkWith(options.context)
    this.#ops = options.ops
    this.metrics = new AdmissionMetrics(
      options.context,
      options.config.name,
      options.config.maxWorkspaceSeries,
      options.config.configuredWorkspaces
    )
  }

  // ---------------------------------------------------------------------------
  // Store routing and degraded mode

  /** True while the shared store is unreachable and the local limiter is used. */
  get degraded(): boolean {
    return this.#degraded
  }

  /**
   * Runs `f` on the shared store (bounded by `storeTimeoutMs`), or on the
   * local one while degraded or when the shared one fails (`where` is then
   * "local": use the buckets at `limit / instances`). Never fails.
   */
  #onStore<A>(f: (store: AdmissionStore, where: Where) => Effect.Effect<A, unknown>): Effect.Effect<A> {
    const shared = this.#shared
    // With no shared store the local one holds the full limits ("shared" buckets).
    if (shared === undefined) return Effect.orDie(f(this.#local, "shared"))
    const local = () => Effect.orDie(f(this.#local, "local"))
    if (this.#degraded) return local()
    return f(shared, "shared").pipe(
      Effect.timeoutOrElse({
        duration: Duration.millis(this.config.storeTimeoutMs),
        orElse: () =>
          Effect.fail(new StoreUnavailable({ reason: `no answer within storeTimeoutMs (${this.config.storeTimeoutMs} ms)` }))
      }),
      Effect.catch((error) => {
        this.#enterDegraded(error)
        return local()
      })
    )
  }

  /**
   * Starts in degraded mode when the shared store is not connected yet (it
   * connects in the background; the connection logs if it cannot).
   */
  start(): void {
    if (this.#shared?.connected !== undefined && !this.#shared.connected()) {
      this.#degraded = true
      this.metrics.degraded.value = 1
      this.#run(this.#probe(false))
    }
  }

  #enterDegraded(error: unknown): void {
    this.metrics.storeErrors.value++
    if (this.#degraded || this.#closed) return
    this.#degraded = true
    this.metrics.degraded.value = 1
    this.metrics.degradations.value++
    const reason = describeStoreError(error)
    this.#run(
      Effect.logWarning(
        `Rate limits (${this.config.name}): the shared store is unreachable (${reason}); admitting with a local ` +
          `limiter at 1/${this.config.instances} of every limit until it answers again.`
      ).pipe(Effect.andThen(this.#probe(true)))
    )
  }

  /**
   * Probes the shared store every `probeIntervalMs` until it answers, then
   * leaves degraded mode (and says so when `announce`: not for the first
   * connection, which the store logs itself if it was slow).
   */
  #probe(announce: boolean): Effect.Effect<void> {
    const shared = this.#shared!
    const once: Effect.Effect<boolean> = Effect.sleep(Duration.millis(this.config.probeIntervalMs)).pipe(
      Effect.andThen(shared.probe),
      Effect.timeoutOrElse({
        duration: Duration.millis(this.config.probeIntervalMs + this.config.storeTimeoutMs),
        orElse: () => Effect.fail(new StoreUnavailable({ reason: "probe timed out" }))
      }),
      Effect.as(true),
      Effect.catch(() => Effect.succeed(false))
    )
    const loop: Effect.Effect<void> = Effect.flatMap(once, (ok) => {
      if (!ok) return loop
      this.#degraded = false
      this.metrics.degraded.value = 0
      return announce
        ? Effect.logInfo(`Rate limits (${this.config.name}): the shared store answers again; admission uses it again.`)
        : Effect.void
    })
    return loop
  }

  // ---------------------------------------------------------------------------
  // Keys

  #key(name: string): KeyState {
    let key = this.#keys.get(name)
    if (key === undefined) {
      const limits = Object.hasOwn(this.config.limits, name) ? this.config.limits[name] : undefined
      key = new KeyState(name, limits, this.metrics.account(name), this.config.instances)
      this.#keys.set(name, key)
    }
    return key
  }

  /** Sets (or, with undefined, removes) the limits of `key` for later admissions. */
  setLimits(name: string, limits: KeyLimits | undefined): void {
    this.#key(name).setLimits(limits, this.config.instances)
  }

  /** The limits of `key` now. */
  limitsOf(name: string): KeyLimits {
    const key = this.#keys.get(name)
    if (key === undefined) return (Object.hasOwn(this.config.limits, name) ? this.config.limits[name] : undefined) ?? {}
    return { requestsPerMinute: key.requestsPerMinute, tokensPerMinute: key.tokensPerMinute }
  }

  // ---------------------------------------------------------------------------
  // Admission

  /**
   * Starts the admission of a call. The returned entry may already be
   * settled (`outcome`), synchronously, when the store is in memory and the
   * call does not have to wait; otherwise `onDone` is called later.
   */
  #enqueue(request: AdmitRequest): Entry | Outcome {
    if (this.#closed) return { ok: false, error: new PoolShutdownError() }
    const bad = badRequest(request)
    if (bad !== undefined) return { ok: false, error: bad }
    const key = this.#key(request.key ?? "default")
    const now = this.#clock.currentTimeMillisUnsafe()
    const timeout = request.timeoutMs
    const deadline = timeout === undefined || timeout === 0 || timeout === Infinity ? Infinity : now + timeout
    const entry = new Entry(
      key,
      request.workspace,
      request.estimatedTokens ?? this.config.defaultEstimatedTokens,
      now,
      deadline
    )
    // Known cooldown past the deadline: refuse before touching the store.
    if (key.cooldownUntil > deadline) {
      return this.#refuse(entry, "cooldown", key.cooldownUntil - now, deadline - now)
    }
    const first = key.head === undefined
    entry.prev = key.tail
    if (first) key.head = entry
    else key.tail!.next = entry
    key.tail = entry
    if (key.pending === undefined) key.pending = entry
    key.waiting++
    key.series.waiting.value++
    if (key.pumping) return entry
    key.pumping = true
    // Fast path: nothing queued, no workspace check, a store that answers
    // synchronously (memory): consume and decide in this call, no fiber left.
    if (
      first && key.cooldownUntil <= now && (this.#shared === undefined || this.#degraded) &&
      (entry.workspace === undefined || this.#limitsOf(entry.workspace) === undefined)
    ) {
      entry.state = "consuming"
      const fiber = this.#runNow(this.#consume(entry))
      const exit = fiber.pollUnsafe()
      if (exit !== undefined && exit._tag === "Success") {
        const hold = this.#apply(entry, exit.value, now)
        if (hold === undefined && key.pending === undefined) {
          key.pumping = false
          return entry
        }
        this.#run(hold === undefined ? this.#pump(key) : Effect.andThen(hold, this.#pump(key)))
        return entry
      }
      // Not synchronous after all (or failed): let the pump finish it.
      this.#run(Effect.flatMap(Fiber.join(fiber), (result) => this.#apply(entry, result) ?? Effect.void).pipe(
        Effect.catchCause((cause) => this.#failed(entry, cause)),
        Effect.andThen(this.#pump(key))
      ))
      return entry
    }
    this.#run(this.#pump(key))
    return entry
  }

  /** Runs `effect` now; tracked by `flush` only if it does not complete synchronously. */
  #runNow<A>(effect: Effect.Effect<A>): Fiber.Fiber<A> {
    const fiber = this.#runForkNow(effect)
    if (fiber.pollUnsafe() === undefined) FiberSet.addUnsafe(this.#ops, fiber)
    return fiber
  }

  /** Admits a call: an Effect that waits for its turn; interrupting it gives everything back. */
  admit(request: AdmitRequest): Effect.Effect<Reservation, AdmitError> {
    return Effect.suspend(() => {
      const entry = this.#enqueue(request)
      if (!(entry instanceof Entry)) return fromOutcome(entry)
      if (entry.outcome !== undefined) return fromOutcome(entry.outcome)
      return Effect.callback<Reservation, AdmitError>((resume) => {
        // The entry may have settled while this fiber yielded.
        if (entry.outcome !== undefined) return resume(fromOutcome(entry.outcome))
        entry.onDone = (outcome) => resume(fromOutcome(outcome))
        return Effect.sync(() => this.#cancel(entry))
      })
    })
  }

  /**
   * Admits a call for promise code: the reservation itself when it is
   * admitted at once (memory store, no wait), else a promise. Aborting
   * `signal` while it waits removes it (everything is given back) and rejects
   * with `signal.reason`.
   */
  admitUnsafe(request: AdmitRequest, signal?: AbortSignal): Reservation | Promise<Reservation> {
    if (signal?.aborted) return Promise.reject(signal.reason)
    const entry = this.#enqueue(request)
    if (!(entry instanceof Entry)) return entry.ok ? entry.value : Promise.reject(entry.error)
    if (entry.outcome !== undefined) return entry.outcome.ok ? entry.outcome.value : Promise.reject(entry.outcome.error)
    return new Promise<Reservation>((resolve, reject) => {
      const onAbort = () => {
        if (this.#cancel(entry)) reject(signal!.reason)
      }
      entry.onDone = (outcome) => {
        signal?.removeEventListener("abort", onAbort)
        if (outcome.ok) resolve(outcome.value)
        else reject(outcome.error)
      }
      signal?.addEventListener("abort", onAbort, { once: true })
    })
  }

  #settleEntry(entry: Entry, outcome: Outcome): void {
    this.#unlink(entry)
    entry.state = "done"
    entry.outcome = outcome
    const onDone = entry.onDone
    entry.onDone = undefined
    onDone?.(outcome)
  }

  #unlink(entry: Entry): void {
    const key = entry.key
    if (entry.state === "done") return
    if (key.pending === entry) key.pending = entry.next
    if (entry.prev === undefined) key.head = entry.next
    else entry.prev.next = entry.next
    if (entry.next === undefined) key.tail = entry.prev
    else entry.next.prev = entry.prev
    entry.prev = entry.next = undefined
    key.waiting--
    key.series.waiting.value--
  }

  /** The caller gave up. Returns false when the entry had already settled. */
  #cancel(entry: Entry): boolean {
    if (entry.state === "done") return false
    entry.cancelled = true
    if (entry.state === "consuming") return true // the pump gives it back when the store answers
    this.#finishCancelled(entry)
    return true
  }

  #refuse(entry: Entry, limit: "rpm" | "tpm" | "cooldown", waitMs: number, budgetMs: number): Outcome {
    entry.key.series.rejected[limit].value++
    return {
      ok: false,
      error: new RateLimitedError({ limit, account: entry.key.name, retryAfterMs: waitMs, budgetMs })
    }
  }

  #failed(entry: Entry, cause: unknown): Effect.Effect<void> {
    return Effect.suspend(() => {
      if (entry.state !== "done") this.#settleEntry(entry, { ok: false, error: new PoolShutdownError() })
      return this.#closed ? Effect.void : Effect.logError("Rate limits: admission failed unexpectedly", cause)
    })
  }

  /** Processes the key's calls one at a time, in arrival order (stage 1). */
  #pump(key: KeyState): Effect.Effect<void> {
    const step: Effect.Effect<void> = Effect.suspend(() => {
      const entry = key.pending
      if (entry === undefined || this.#closed) {
        key.pumping = false
        return Effect.void
      }
      return this.#process(entry).pipe(
        Effect.catchCause((cause) => this.#failed(entry, cause)),
        Effect.andThen(step)
      )
    })
    return step
  }

  #process(entry: Entry): Effect.Effect<void> {
    return Effect.suspend(() => {
      const key = entry.key
      if (entry.cancelled) {
        this.#finishCancelled(entry)
        return Effect.void
      }
      entry.state = "consuming"
      // A cooldown this instance knows of: wait it out before consuming.
      const now = this.#clock.currentTimeMillisUnsafe()
      if (key.cooldownUntil > now) {
        entry.state = "queued"
        return this.#holdForCooldown(key, entry, now)
      }
      const limits = entry.workspace !== undefined && !entry.workspaceCounted
        ? this.#limitsOf(entry.workspace)
        : undefined
      // Built when it runs: the workspace step below decides what it counts.
      const consume = Effect.suspend(() => this.#consume(entry)).pipe(
        Effect.flatMap((result) => this.#apply(entry, result) ?? Effect.void)
      )
      if (limits === undefined) return consume
      return Effect.flatMap(this.#admitWorkspace(entry.workspace!, limits, now), (refused) => {
        if (refused === undefined) {
          entry.workspaceCounted = true
          return consume
        }
        key.series.rejected.workspace.value++
        if (entry.cancelled) this.#finishCancelled(entry)
        else this.#settleEntry(entry, { ok: false, error: refused })
        return Effect.void
      })
    })
  }

  /**
   * Consumes the call's request and tokens from the key's limiters and asks
   * the adaptive limiter (429 cooldown); counts the request of a workspace
   * without limits. One store round trip.
   */
  #consume(entry: Entry): Effect.Effect<ConsumeResult> {
    const key = entry.key
    const countWorkspace = entry.workspace !== undefined && !entry.workspaceCounted ? entry.workspace : undefined
    return this.#onStore((store, where): Effect.Effect<ConsumeResult, unknown> => {
      const { rpm, tpm } = where === "shared" ? key.shared : key.local
      const tokens = tpm === undefined ? 0 : entry.estimate
      // On a memory store, what the key owes (charges, refunds) goes with this take.
      const owed = where === "shared" ? key.owed.shared : key.owed.local
      const owedRequests = owed.requests
      const owedTokens = owed.tokens
      owed.requests = owed.tokens = 0
      const rpmOp = rpm === undefined ? succeedUndefined : rpm.takeOwing(store, 1, owedRequests)
      const tpmOp = tpm === undefined ? succeedUndefined : tpm.takeOwing(store, tokens, owedTokens)
      const adaptiveOp = store.cooledKeys !== undefined && !store.cooledKeys.has(key.name)
        ? succeedUndefined
        : store.limiter.adaptiveConsume({
          key: `429:${key.name}`,
          tokens: 1,
          fallbackLimit: key.requestsPerMinute ?? 1,
          fallbackWindow: MINUTE_WINDOW
        })
      const workspaceOp = countWorkspace === undefined
        ? succeedUndefined
        : this.#workspaceIncr(store, countWorkspace, ONE_REQUEST, EMPTY)
      const result = (
        r: Taken | undefined,
        t: Taken | undefined,
        a: RateLimiter.AdaptiveConsumeResult | undefined
      ): ConsumeResult => ({
        rpm: r,
        tpm: t,
        adaptive: a,
        charge: {
          where,
          requests: rpm === undefined ? 0 : 1,
          tokens,
          workspaceRequest: countWorkspace !== undefined || entry.workspaceCounted,
          epoch: a?.epoch ?? key.epoch
        }
      })
      if (store.kind === "memory") {
        // Synchronous store: one after the other, without the cost of `Effect.all`.
        if (adaptiveOp === succeedUndefined && workspaceOp === succeedUndefined) {
          return Effect.flatMap(rpmOp, (r) => Effect.map(tpmOp, (t) => result(r, t, undefined)))
        }
        return Effect.flatMap(rpmOp, (r) =>
          Effect.flatMap(tpmOp, (t) =>
            Effect.flatMap(adaptiveOp, (a) => Effect.as(workspaceOp, result(r, t, a)))))
      }
      // Sent together: one round trip.
      return Effect.map(
        together([rpmOp, tpmOp, adaptiveOp, workspaceOp]),
        ([r, t, a]) => result(r, t, a)
      )
    })
  }

  /**
   * Decides on a call from what the store answered: refuse it, schedule it
   * (and admit it if its time has come), or, in a cooldown, give the slot
   * back and return the wait the pump must hold for.
   */
  #apply(entry: Entry, result: ConsumeResult, now = this.#clock.currentTimeMillisUnsafe()): Effect.Effect<void> | undefined {
    const key = entry.key
    const charge = result.charge
    if (charge.workspaceRequest) entry.workspaceCounted = true
    const adaptive = result.adaptive
    if (adaptive !== undefined) key.epoch = adaptive.epoch
    const adaptiveDelay = adaptive === undefined ? 0 : Duration.toMillis(adaptive.delay)
    if (adaptive?.phase === "cooldown" && adaptiveDelay > 0) {
      // Another instance (or an earlier call) hit a 429: give the slot back and wait.
      this.#giveBack(key, { ...charge, workspaceRequest: false }, undefined)
      key.cooldownUntil = Math.max(key.cooldownUntil, now + adaptiveDelay)
      entry.state = "queued"
      return this.#holdForCooldown(key, entry, now)
    }
    entry.charge = charge
    if (entry.cancelled) {
      this.#finishCancelled(entry)
      return undefined
    }
    const rpmDelay = result.rpm === undefined ? 0 : result.rpm.delayMs
    const tpmDelay = result.tpm === undefined ? 0 : result.tpm.delayMs
    let wait = rpmDelay
    let limitedBy: "rpm" | "tpm" | "cooldown" = "rpm"
    if (tpmDelay > wait) {
      wait = tpmDelay
      limitedBy = "tpm"
    }
    if (adaptiveDelay > wait) {
      wait = adaptiveDelay
      limitedBy = "cooldown"
    }
    // FIFO: it cannot be admitted before the calls ahead of it (all scheduled by now).
    const ahead = entry.prev
    if (ahead !== undefined && ahead.state === "scheduled" && ahead.admitAt - now > wait) {
      wait = ahead.admitAt - now
      limitedBy = ahead.limitedBy ?? limitedBy
    }
    if (now + wait > entry.deadline) {
      this.#giveBack(key, charge, entry.workspaceCounted ? entry.workspace : undefined)
      this.#settleEntry(entry, this.#refuse(entry, limitedBy, wait, entry.deadline - now))
      return undefined
    }
    entry.state = "scheduled"
    entry.admitAt = now + wait
    entry.limitedBy = wait > 0 ? limitedBy : undefined
    if (key.pending === entry) key.pending = entry.next
    this.#drain(key, now)
    return undefined
  }

  /**
   * The key is cooling down until `key.cooldownUntil`: refuse every queued
   * call (from `entry` on) whose deadline comes first, then sleep; the pump
   * then processes `entry` again.
   */
  #holdForCooldown(key: KeyState, entry: Entry, now: number): Effect.Effect<void> {
    return Effect.suspend(() => {
      const until = key.cooldownUntil
      for (let e: Entry | undefined = entry; e !== undefined;) {
        const next: Entry | undefined = e.next
        if (e.state === "queued" && e.deadline < until) {
          if (e.cancelled) this.#finishCancelled(e)
          else {
            this.#giveBack(key, undefined, e.workspaceCounted ? e.workspace : undefined)
            this.#settleEntry(e, this.#refuse(e, "cooldown", until - now, e.deadline - now))
          }
        }
        e = next
      }
      return Effect.sleep(Duration.millis(Math.max(0, until - now)))
    })
  }

  #finishCancelled(entry: Entry): void {
    const key = entry.key
    const wasHead = key.head === entry
    this.#unlink(entry)
    entry.state = "done"
    entry.onDone = undefined
    this.#giveBack(key, entry.charge, entry.workspaceCounted ? entry.workspace : undefined)
    if (wasHead) this.#drain(key)
  }

  /** Admits the key's scheduled calls whose time has come, in order (stage 2). */
  #drain(key: KeyState, now = this.#clock.currentTimeMillisUnsafe()): void {
    for (let head = key.head; head !== undefined && head.state === "scheduled"; head = key.head) {
      const at = Math.max(head.admitAt, key.cooldownUntil)
      if (at > now) {
        this.#arm(key, at, now)
        return
      }
      this.#admitEntry(head, now)
    }
  }

  #arm(key: KeyState, at: number, now: number): void {
    if (key.timer !== undefined) {
      if (key.timerAt <= at) return
      const old = key.timer
      this.#run(Fiber.interrupt(old))
    }
    key.timerAt = at
    const timer = this.#run(
      Effect.sleep(Duration.millis(at - now)).pipe(
        Effect.andThen(Effect.sync(() => {
          if (key.timer === timer) key.timer = undefined
          this.#drain(key)
        }))
      )
    )
    if (timer.pollUnsafe() === undefined) key.timer = timer
  }

  #admitEntry(entry: Entry, now: number): void {
    const key = entry.key
    const waited = now - entry.startedAt
    key.series.wait.record(waited)
    if (entry.limitedBy !== undefined) key.series.throttled[entry.limitedBy].value++
    const reservation = new Reservation(this, key, entry.workspace, entry.estimate, waited, entry.charge!)
    this.#settleEntry(entry, { ok: true, value: reservation })
  }

  // ---------------------------------------------------------------------------
  // Charges and refunds

  /** Gives back a call's charge (never more than it consumed) in the background. */
  #giveBack(key: KeyState, charge: Charge | undefined, workspace: string | undefined): void {
    if (workspace !== undefined) this.#countWorkspace(workspace, { requests: -1 }, false)
    if (charge === undefined || (charge.requests === 0 && charge.tokens === 0)) return
    this.#refund(key, charge.where, charge.requests, charge.tokens)
  }

  /** Adds back `requests` and `tokens` to the key's buckets on `where`, capped at capacity. */
  #refund(key: KeyState, where: Where, requests: number, tokens: number): void {
    const shared = this.#shared
    // A charge on the shared store is not given back while it is unreachable.
    if (where === "shared" && shared !== undefined && this.#degraded) return
    const store = where === "shared" && shared !== undefined ? shared : this.#local
    if (store.kind === "memory") return this.#owe(key, where, -requests, -tokens)
    const { rpm, tpm } = where === "shared" ? key.shared : key.local
    const rpmOp = rpm === undefined || requests <= 0 ? Effect.void : rpm.takeCapped(store, -requests)
    const tpmOp = tpm === undefined || tokens <= 0 ? Effect.void : tpm.takeCapped(store, -tokens)
    this.#background(this.#bounded(together([rpmOp, tpmOp])))
  }

  /**
   * On an in-memory store a charge or refund is owed instead of run: the
   * key's next take carries it (one store call instead of two). Only this
   * process reads the buckets, and it reads them only by taking, so nothing
   * can observe the difference (another service sharing the same memory
   * store sees the adjustment with this one's next admission: later, never
   * more permissive than the limits).
   */
  #owe(key: KeyState, where: Where, requests: number, tokens: number): void {
    const owed = where === "shared" ? key.owed.shared : key.owed.local
    if (key.requestsPerMinute !== undefined) owed.requests += requests
    if (key.tokensPerMinute !== undefined) owed.tokens += tokens
  }

  /** Charges `requests` and `tokens` more to the key's buckets on the current store. */
  charge(key: KeyState, requests: number, tokens: number): void {
    if (requests <= 0 && tokens <= 0) return
    const shared = this.#shared
    if (shared === undefined) return this.#owe(key, "shared", requests, tokens)
    if (this.#degraded) return this.#owe(key, "local", requests, tokens)
    this.#background(this.#onStore((store, where) => {
      if (store.kind === "memory") return Effect.sync(() => this.#owe(key, where, requests, tokens))
      const { rpm, tpm } = where === "shared" ? key.shared : key.local
      const rpmOp = rpm === undefined || requests <= 0 ? Effect.void : rpm.take(store, requests)
      const tpmOp = tpm === undefined || tokens <= 0 ? Effect.void : tpm.take(store, tokens)
      return together([rpmOp, tpmOp])
    }).pipe(Effect.asVoid))
  }

  #bounded<A>(effect: Effect.Effect<A, unknown>): Effect.Effect<void> {
    return effect.pipe(
      Effect.timeoutOrElse({
        duration: Duration.millis(this.config.storeTimeoutMs),
        orElse: () => Effect.fail(new StoreUnavailable({ reason: "timed out" }))
      }),
      Effect.asVoid,
      Effect.catch((error) => Effect.sync(() => this.#enterDegraded(error)))
    )
  }

  /** Runs a store update in the background (tracked by `flush`). */
  #background(effect: Effect.Effect<void>): void {
    if (this.#closed) return
    this.#runNow(effect)
  }

  /** Waits until every background store update has finished. */
  get flush(): Effect.Effect<void> {
    return FiberSet.awaitEmpty(this.#ops)
  }

  // ---------------------------------------------------------------------------
  // 429 cooldown

  /**
   * The key answered HTTP 429: it cools down for `retryAfterMs` (default
   * `defaultCooldownMs`), here at once and, through the store, on every
   * instance.
   */
  reportRateLimited(name: string, retryAfterMs?: number | undefined, epoch?: number | undefined): void {
    if (this.#closed) return
    const key = this.#key(name)
    const ms = Math.min(
      MAX_COOLDOWN_MS,
      Math.max(1, retryAfterMs !== undefined && Number.isFinite(retryAfterMs) && retryAfterMs > 0 ? retryAfterMs : this.config.defaultCooldownMs)
    )
    const now = this.#clock.currentTimeMillisUnsafe()
    key.cooldownUntil = Math.max(key.cooldownUntil, now + ms)
    this.#local.cooledKeys?.add(key.name)
    key.series.cooldowns.value++
    this.#background(
      this.#onStore((store) =>
        store.limiter.adaptiveFeedback({
          key: `429:${key.name}`,
          epoch: epoch ?? key.epoch,
          tokens: 1,
          status: 429,
          retryAfter: Duration.millis(ms)
        })
      ).pipe(
        Effect.andThen(Effect.logWarning(
          `Rate limits (${this.config.name}): account "${key.name}" answered HTTP 429; its calls wait ${ms} ms.`
        ))
      )
    )
    // Waiting calls that cannot make it before their deadline now are refused and given back.
    for (let e = key.head; e !== undefined;) {
      const next = e.next
      if ((e.state === "scheduled" || e.state === "queued") && e.deadline < key.cooldownUntil) {
        this.#giveBack(key, e.charge, e.workspaceCounted ? e.workspace : undefined)
        this.#settleEntry(e, this.#refuse(e, "cooldown", key.cooldownUntil - now, e.deadline - now))
      }
      e = next
    }
    this.#drain(key)
  }

  /** Milliseconds the key still cools down, as this instance knows it (0: not cooling down). */
  cooldownRemaining(name: string): number {
    const key = this.#keys.get(name)
    return key === undefined ? 0 : Math.max(0, key.cooldownUntil - this.#clock.currentTimeMillisUnsafe())
  }

  /** Calls of the key waiting for admission on this instance. */
  waiting(name: string): number {
    return this.#keys.get(name)?.waiting ?? 0
  }

  // ---------------------------------------------------------------------------
  // Workspaces

  #limitsOf(workspace: string): WorkspaceLimits | undefined {
    const fn = this.config.workspaceLimits
    if (fn === undefined) return undefined
    let limits: WorkspaceLimits | undefined
    try {
      limits = fn(workspace)
    } catch (error) {
      this.#run(Effect.logError(`Rate limits: workspaceLimits("${workspace}") threw; no limits applied`, error))
      return undefined
    }
    return limits === undefined || limits === null ? undefined : sanitizeWorkspaceLimits(limits)
  }

  /**
   * Adds `fields` to the workspace's counters of the current minute and UTC
   * day on `store`; answers `read` of both, and the windows.
   */
  #workspaceIncr(
    store: AdmissionStore,
    workspace: string,
    fields: Readonly<Record<string, number>>,
    read: ReadonlyArray<string>
  ): Effect.Effect<WindowCounts, StoreUnavailable> {
    return Effect.suspend(() => {
      const now = this.#clock.currentTimeMillisUnsafe()
      const minute = Math.floor(now / MINUTE)
      const day = Math.floor(now / DAY)
      const m = store.counters.incr(minuteKey(workspace, minute), fields, 2 * MINUTE, read)
      const d = store.counters.incr(dayKey(workspace, day), fields, 2 * DAY, read)
      return Effect.map(
        store.kind === "memory" ? Effect.all([m, d]) : together([m, d]),
        ([m, d]): WindowCounts => ({ now, minute, day, m, d })
      )
    })
  }

  /**
   * Counts the call's request in a workspace with limits; a
   * `WorkspaceLimitError` (and the request given back) when that passes one.
   */
  #admitWorkspace(workspace: string, limits: WorkspaceLimits, now: number): Effect.Effect<WorkspaceLimitError | undefined> {
    const blocked = this.#blocked.get(workspace)
    if (blocked !== undefined) {
      if (blocked.until > now) {
        this.metrics.workspace(workspace).rejected(blocked.error.limit).value++
        return Effect.succeed(
          new WorkspaceLimitError({ ...blocked.error, retryAfterMs: blocked.until - now })
        )
      }
      this.#blocked.delete(workspace)
    }
    return this.#onStore((store) => this.#workspaceIncr(store, workspace, ONE_REQUEST, REQUESTS_AND_TOKENS)).pipe(
      Effect.map((counts) => {
        const { now, minute, day, m, d } = counts
        const checks: ReadonlyArray<readonly [WorkspaceLimitName, number, number | undefined, number, boolean]> = [
          ["requestsPerMinute", m["requests"]!, limits.requestsPerMinute, (minute + 1) * MINUTE - now, true],
          ["requestsPerDay", d["requests"]!, limits.requestsPerDay, (day + 1) * DAY - now, true],
          ["tokensPerMinute", m["total"]!, limits.tokensPerMinute, (minute + 1) * MINUTE - now, false],
          ["tokensPerDay", d["total"]!, limits.tokensPerDay, (day + 1) * DAY - now, false]
        ]
        for (const [limit, used, max, retryAfterMs, counted] of checks) {
          if (max === undefined) continue
          // Requests: this call's own request is in `used`; tokens: the window's so far.
          if (counted ? used > max : used >= max) {
            this.#countWorkspace(workspace, { requests: -1 }, false)
            const error = new WorkspaceLimitError({
              workspace,
              limit,
              used: counted ? used - 1 : used,
              max,
              retryAfterMs
            })
            if (this.#blocked.size >= 1_000) this.#pruneBlocked(now)
            this.#blocked.set(workspace, { until: now + retryAfterMs, error })
            this.metrics.workspace(workspace).rejected(limit).value++
            return error
          }
        }
        this.#checkWarnings(workspace, limits, counts)
        return undefined
      })
    )
  }

  #pruneBlocked(now: number): void {
    for (const [workspace, blocked] of this.#blocked) if (blocked.until <= now) this.#blocked.delete(workspace)
    if (this.#blocked.size >= 1_000) this.#blocked.clear()
  }

  /** Adds to the workspace's minute and day counters in the background; checks warnings when asked. */
  #countWorkspace(workspace: string, fields: Readonly<Record<string, number>>, warn: boolean): void {
    const limits = warn ? this.#limitsOf(workspace) : undefined
    this.#background(
      this.#onStore((store) =>
        this.#workspaceIncr(store, workspace, fields, limits === undefined ? EMPTY : REQUESTS_AND_TOKENS)
      ).pipe(Effect.map((counts) => {
        if (limits !== undefined) this.#checkWarnings(workspace, limits, counts)
      }))
    )
  }

  #checkWarnings(workspace: string, limits: WorkspaceLimits, counts: WindowCounts): void {
    const { minute, day, m, d } = counts
    const share = this.config.workspaceWarnAt
    const check = (limit: WorkspaceLimitName, used: number | undefined, max: number | undefined, window: number) => {
      if (max === undefined || used === undefined || used < share * max) return
      const id = `${workspace}\u0000${limit}`
      if (this.#warned.get(id) === window) return
      if (this.#warned.size >= 10_000) this.#warned.clear()
      this.#warned.delete(id)
      this.#warned.set(id, window)
      this.metrics.workspace(workspace).warnings(limit).value++
      this.#run(Effect.logWarning(
        `Rate limits (${this.config.name}): workspace "${workspace}" has used ${used} of its ${limit} limit ` +
          `(${max}); calls are refused at 100%.`
      ))
    }
    check("requestsPerMinute", m["requests"], limits.requestsPerMinute, minute)
    check("requestsPerDay", d["requests"], limits.requestsPerDay, day)
    check("tokensPerMinute", m["total"], limits.tokensPerMinute, minute)
    check("tokensPerDay", d["total"], limits.tokensPerDay, day)
  }

  /** Records one model request's usage for a workspace (counters and metrics). */
  recordWorkspaceUsage(
    workspace: string,
    extraRequest: boolean,
    usage: { readonly input: number; readonly cached: number; readonly output: number; readonly reasoning: number; readonly total: number }
  ): void {
    const series = this.metrics.workspace(workspace)
    series.requests.value++
    series.tokens.input.value += usage.input
    series.tokens.cached_input.value += usage.cached
    series.tokens.output.value += usage.output
    series.tokens.reasoning.value += usage.reasoning
    this.#countWorkspace(workspace, {
      requests: extraRequest ? 1 : 0,
      input: usage.input,
      cached: usage.cached,
      output: usage.output,
      reasoning: usage.reasoning,
      total: usage.total
    }, true)
  }

  /** A model request that failed without reporting usage: counted in the metrics only. */
  countFailedRequest(workspace: string): void {
    this.metrics.workspace(workspace).requests.value++
  }

  /** Gives back a workspace request counted at admission. */
  uncountWorkspaceRequest(workspace: string): void {
    this.#countWorkspace(workspace, { requests: -1 }, false)
  }

  /** A workspace's usage this minute and this UTC day (from the store all instances share). */
  usage(workspace: string): Effect.Effect<WorkspaceUsage> {
    return Effect.suspend(() => {
      const now = this.#clock.currentTimeMillisUnsafe()
      const minute = Math.floor(now / MINUTE)
      const day = Math.floor(now / DAY)
      return this.#onStore((store, where) =>
        together([
          store.counters.read(minuteKey(workspace, minute), FIELDS),
          store.counters.read(dayKey(workspace, day), FIELDS)
        ]).pipe(
          Effect.map(([m, d]): WorkspaceUsage => ({
            workspace,
            minute: figures(m),
            day: figures(d),
            limits: this.#limitsOf(workspace),
            degraded: where === "local" && this.#shared !== undefined
          }))
        )
      )
    })
  }

  // ---------------------------------------------------------------------------
  // Usage bookkeeping

  /** False when this total was already seen for the thread (codex repeats figures on a failed turn). */
  freshUsage(threadId: string, total: number): boolean {
    if (threadId === "" || total <= 0) return true
    const seen = this.#threadTotals.get(threadId)
    if (seen !== undefined && total <= seen) return false
    this.#threadTotals.delete(threadId)
    this.#threadTotals.set(threadId, total)
    if (this.#threadTotals.size > MAX_THREADS) {
      const oldest = this.#threadTotals.keys().next().value
      if (oldest !== undefined) this.#threadTotals.delete(oldest)
    }
    return true
  }

  /** Gives back what a reservation charged (`requests` and `tokens`), on the store it charged. */
  refund(key: KeyState, where: Where, requests: number, tokens: number): void {
    if (requests > 0 || tokens > 0) this.#refund(key, where, requests, tokens)
  }

  // ---------------------------------------------------------------------------
  // Shutdown

  /** Fails every waiting call with `PoolShutdownError`; later admissions fail at once. */
  close(): void {
    if (this.#closed) return
    this.#closed = true
    for (const key of this.#keys.values()) {
      for (let e = key.head; e !== undefined;) {
        const next = e.next
        this.#settleEntry(e, { ok: false, error: new PoolShutdownError() })
        e = next
      }
    }
    this.metrics.remove()
  }
}

/**
 * What one admitted call holds: what it was charged, and what its lease used.
 * Feed it the leased worker's notifications (`onNotification`) and end it with
 * `settle()` when the lease ends (or `cancel()` when the call never ran). All
 * methods are synchronous; store updates run in the background.
 *
 * @since 0.2.0
 * @category models
 */
export class Reservation {
  /** The key (account) it was admitted for. */
  readonly account: string
  readonly workspace: string | undefined
  /** Tokens reserved at admission. */
  readonly estimatedTokens: number
  /** How long the call waited for admission, ms (with a shared store, its round trips included). */
  readonly waitedMs: number
  /** Model requests reported so far (`thread/tokenUsage/updated`). */
  requests = 0
  /** Tokens reported so far (sum of `last.totalTokens`). */
  tokens = 0
  /** The turn failed (`turn/completed` with status "failed"). */
  failed = false
  /** An `error` notification reported HTTP 429. */
  rateLimited = false
  #turnStarted = false
  #open = true
  readonly #admission: Admission
  readonly #key: KeyState
  readonly #charge: Charge

  constructor(admission: Admission, key: KeyState, workspace: string | undefined, estimate: number, waitedMs: number, charge: Charge) {
    this.#admission = admission
    this.#key = key
    this.account = key.name
    this.workspace = workspace
    this.estimatedTokens = estimate
    this.waitedMs = waitedMs
    this.#charge = charge
  }

  /** Still open (neither settled nor cancelled). */
  get open(): boolean {
    return this.#open
  }

  /** Tokens charged so far for this call (the estimate, plus what usage added). */
  get chargedTokens(): number {
    return this.#charge.tokens
  }

  /**
   * Reads one notification of the leased worker: `thread/tokenUsage/updated`
   * (usage charged), `error` with HTTP 429 (cooldown reported), `turn/started`
   * and `turn/completed` (whether a turn ran, and failed). Others are ignored,
   * and so is everything after `settle` / `cancel`.
   */
  onNotification(method: string, params: unknown): void {
    if (!this.#open) return
    switch (method) {
      case "thread/tokenUsage/updated": {
        const usage = tokenUsageOf(method, params)
        if (usage === undefined || !this.#admission.freshUsage(usage.threadId, usage.totalTokens)) return
        this.requests++
        this.tokens += usage.last.totalTokens
        this.#turnStarted = true
        const extraRequest = this.requests > 1
        const tpmCharged = this.#key.tokensPerMinute === undefined ? 0 : this.#charge.tokens
        const extraTokens = this.#key.tokensPerMinute === undefined ? 0 : Math.max(0, this.tokens - tpmCharged)
        if (this.#key.requestsPerMinute !== undefined && extraRequest) this.#charge.requests++
        this.#charge.tokens += extraTokens
        this.#admission.charge(this.#key, extraRequest ? 1 : 0, extraTokens)
        if (this.workspace !== undefined) {
          const last = usage.last
          this.#admission.recordWorkspaceUsage(this.workspace, extraRequest, {
            input: last.inputTokens,
            cached: last.cachedInputTokens,
            output: last.outputTokens,
            reasoning: last.reasoningOutputTokens,
            total: last.totalTokens
          })
        }
        return
      }
      case "error": {
        const signal = rateLimitSignalOf(method, params)
        if (signal === undefined) return
        this.rateLimited = true
        this.#turnStarted = true
        this.#admission.reportRateLimited(this.account, signal.retryAfterMs, this.#charge.epoch)
        return
      }
      case "turn/started":
        this.#turnStarted = true
        return
      case "turn/completed":
        this.#turnStarted = true
        if (turnStatusOf(method, params) === "failed") this.failed = true
        return
    }
  }

  /**
   * The lease ended: an over-estimate is given back (never more than was
   * charged); a failed turn (or one that ended without reporting usage, a
   * 429 codex gave up on included) keeps what it was charged; a lease that
   * ran no turn gets everything back. Idempotent.
   */
  settle(): void {
    if (!this.#open) return
    this.#open = false
    if (this.failed || (this.requests === 0 && this.#turnStarted)) {
      // A request was made (and failed, or ended without reporting usage): keep the charge.
      if (this.requests === 0 && this.workspace !== undefined) this.#admission.countFailedRequest(this.workspace)
      return
    }
    if (this.requests > 0) {
      const overEstimate = this.#key.tokensPerMinute === undefined ? 0 : Math.max(0, this.#charge.tokens - this.tokens)
      this.#charge.tokens -= overEstimate
      this.#admission.refund(this.#key, this.#charge.where, 0, overEstimate)
      return
    }
    this.#giveAllBack()
  }

  /** The call never ran (it got no worker, or was aborted after admission): everything is given back. Idempotent. */
  cancel(): void {
    if (!this.#open) return
    this.#open = false
    this.#giveAllBack()
  }

  #giveAllBack(): void {
    const { requests, tokens } = this.#charge
    this.#charge.requests = 0
    this.#charge.tokens = 0
    this.#admission.refund(this.#key, this.#charge.where, requests, tokens)
    if (this.#charge.workspaceRequest && this.workspace !== undefined) {
      this.#charge.workspaceRequest = false
      this.#admission.uncountWorkspaceRequest(this.workspace)
    }
  }
}

/** What went wrong with a store call, in a few words (the innermost cause's message). */
const describeStoreError = (error: unknown): string => {
  const parts: Array<string> = []
  let current: unknown = error
  for (let depth = 0; depth < 5 && current !== undefined && current !== null; depth++) {
    const record = current as { readonly message?: unknown; readonly reason?: unknown; readonly cause?: unknown }
    const text = current instanceof StoreUnavailable
      ? current.reason
      : typeof record.message === "string" ? record.message : undefined
    if (text !== undefined && text !== "" && !parts.includes(text)) parts.push(text)
    current = typeof record.reason === "object" ? record.reason : record.cause
  }
  return parts.length === 0 ? String(error) : parts.join(": ")
}

const fromOutcome = (outcome: Outcome): Effect.Effect<Reservation, AdmitError> =>
  outcome.ok ? Effect.succeed(outcome.value) : Effect.fail(outcome.error)

const minuteKey = (workspace: string, minute: number) => `usage:${encodeURIComponent(workspace)}:m:${minute}`
const dayKey = (workspace: string, day: number) => `usage:${encodeURIComponent(workspace)}:d:${day}`

const figures = (values: Record<string, number>): UsageFigures => ({
  requests: Math.max(0, values["requests"] ?? 0),
  inputTokens: values["input"] ?? 0,
  cachedInputTokens: values["cached"] ?? 0,
  outputTokens: values["output"] ?? 0,
  reasoningTokens: values["reasoning"] ?? 0,
  totalTokens: values["total"] ?? 0
})

const positive = (n: unknown): number | undefined => typeof n === "number" && n > 0 && Number.isFinite(n) ? n : undefined

/** Keeps only valid limits (finite numbers > 0) of what a `workspaceLimits` function returned. */
export const sanitizeWorkspaceLimits = (limits: WorkspaceLimits): WorkspaceLimits | undefined => {
  const out = {
    requestsPerMinute: positive(limits.requestsPerMinute),
    requestsPerDay: positive(limits.requestsPerDay),
    tokensPerMinute: positive(limits.tokensPerMinute),
    tokensPerDay: positive(limits.tokensPerDay)
  }
  return Object.values(out).every((v) => v === undefined) ? undefined : out
}

const badRequest = (request: AdmitRequest): PoolOptionsError | undefined => {
  const problems: Array<string> = []
  const { estimatedTokens, timeoutMs, workspace, key } = request
  if (estimatedTokens !== undefined && !(typeof estimatedTokens === "number" && estimatedTokens >= 0 && Number.isFinite(estimatedTokens))) {
    problems.push(`estimatedTokens: Expected a finite number >= 0, got ${String(estimatedTokens)}`)
  }
  if (timeoutMs !== undefined && !(typeof timeoutMs === "number" && timeoutMs >= 0)) {
    problems.push(`timeoutMs: Expected a number of milliseconds >= 0 (not NaN), got ${String(timeoutMs)}`)
  }
  if (workspace !== undefined && (typeof workspace !== "string" || workspace === "")) {
    problems.push(`workspace: Expected a non-empty string, got ${JSON.stringify(workspace)}`)
  }
  if (key !== undefined && (typeof key !== "string" || key === "")) {
    problems.push(`key: Expected a non-empty string, got ${JSON.stringify(key)}`)
  }
  return problems.length === 0 ? undefined : new PoolOptionsError({ message: `Invalid call options: ${problems.join("; ")}.` })
}

/**
 * Builds the engine in the current scope: background fibers are interrupted
 * and waiting calls fail with `PoolShutdownError` when the scope closes.
 */
export const makeAdmission = (
  config: AdmissionConfig,
  store: AdmissionStore
): Effect.Effect<Admission, never, Scope.Scope> =>
  Effect.gen(function*() {
    const context = yield* Effect.context<never>()
    const fibers = yield* FiberSet.make<unknown, unknown>()
    const ops = yield* FiberSet.make<unknown, unknown>()
    const run = yield* FiberSet.runtime(fibers)<never>()
    const local = store.kind === "memory" ? store : yield* makeMemoryStore
    const admission = new Admission({
      config,
      store,
      local,
      context,
      run: run as <A, E>(effect: Effect.Effect<A, E>) => Fiber.Fiber<A, E>,
      ops
    })
    admission.start()
    // Runs first on close (finalizers run in reverse): settle the waiters, then
    // let pending store updates finish (bounded), then the fibers are interrupted.
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => admission.close()).pipe(
        Effect.andThen(admission.flush.pipe(Effect.timeoutOption(Duration.millis(config.storeTimeoutMs))))
      )
    )
    return admission
  })

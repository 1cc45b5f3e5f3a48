/**
 * Where rate-limit admission keeps its state: Effect's own
 * `effect/persistence/RateLimiter` (its `RateLimiterStore`, in memory or on
 * Redis) for the per-key limits and the 429 cooldown, and, in the same place,
 * the per-workspace usage counters.
 *
 * - Memory (`makeMemoryStore`): Effect's `RateLimiter.layerStoreMemory` and a
 *   Map of counters; every call completes synchronously, time comes from the
 *   `Clock` (so `TestClock` drives it).
 * - Redis (`makeRedisStore`): Effect's `RateLimiter.makeStoreRedis` (its Lua
 *   scripts) over a `Redis` service, and counters as Redis hashes.
 * - A Redis connection of our own (`makeRedisConnection`), for callers that
 *   only give a URL: node-redis through `@effect/platform-node/NodeRedis`
 *   with `disableOfflineQueue: true` (a command sent while the connection is
 *   down fails at once instead of waiting in node-redis' offline queue, which
 *   is unbounded in time), a connect timeout, and a reconnect strategy that
 *   never gives up once connected (NodeRedis' default stops on a socket
 *   timeout and would leave the client closed for good). The first connection
 *   is made in the background and retried every `retryMs`, so building the
 *   store never waits for Redis and never fails: until Redis answers, every
 *   call fails at once with `StoreUnavailable` and admission runs on its local
 *   fallback (see `admission.ts`). `@effect/platform-node/NodeRedis` (and so
 *   the `redis` package) is loaded only when such a connection is made.
 *
 * Why counters are not Effect's limiter: `RateLimiterStore` has no operation
 * that reads a count without consuming, and its counts are not calendar
 * windows, so usage "this minute / today" per workspace is kept in plain
 * counters: Redis `HINCRBY` / `HMGET` / `PEXPIRE` (no Lua), sent together so
 * they cost one round trip; in memory, a Map swept of expired windows.
 *
 * Limits: counter windows are calendar minutes and UTC days of each
 * instance's clock, so instances whose clocks disagree count a request near a
 * boundary in different windows. Counter updates are not atomic across
 * fields (each field is).
 *
 * @internal
 */
import { Clock, Context, Data, Duration, Effect, Fiber, Layer, References, Scope } from "effect"
import * as RateLimiter from "effect/persistence/RateLimiter"
import * as Redis from "effect/persistence/Redis"

/** A store call failed, timed out, or the store is not connected. */
export class StoreUnavailable extends Data.TaggedError("StoreUnavailable")<{
  readonly reason: string
  readonly cause?: unknown
}> {}

/** Counters kept in hashes: increments and reads of numeric fields. */
export interface CounterStore {
  /**
   * Adds `fields` to the hash `key` (which expires `ttlMs` after the last
   * change) and returns the values of `read` after the change (0 if unset).
   */
  readonly incr: (
    key: string,
    fields: Readonly<Record<string, number>>,
    ttlMs: number,
    read: ReadonlyArray<string>
  ) => Effect.Effect<Record<string, number>, StoreUnavailable>
  /** The values of `read` in the hash `key` (0 if unset). */
  readonly read: (key: string, read: ReadonlyArray<string>) => Effect.Effect<Record<string, number>, StoreUnavailable>
}

/** One place where admission state lives. */
export interface AdmissionStore {
  /** "memory" (this process only) or "redis" (shared by every instance using it). */
  readonly kind: "memory" | "redis"
  /** Effect's `RateLimiterStore` (token buckets and the adaptive 429 state). */
  readonly limiter: RateLimiter.RateLimiterStore["Service"]
  readonly counters: CounterStore
  /** A cheap call that succeeds when the store answers. */
  readonly probe: Effect.Effect<void, StoreUnavailable>
  /**
   * Memory stores only: the keys a 429 was reported for, so admission can
   * skip the adaptive limiter for the others (it holds no state for them).
   * Undefined: always ask the adaptive limiter.
   */
  readonly cooledKeys: Set<string> | undefined
  /** False until a connection of our own is made (undefined: always usable). */
  readonly connected?: (() => boolean) | undefined
}

/**
 * The store rate-limit admission uses: Effect's `RateLimiterStore` plus the
 * usage counters, in memory (the default) or on Redis.
 *
 * @since 0.2.0
 * @category services
 */
export class RateLimitsStore extends Context.Service<RateLimitsStore, AdmissionStore>()(
  "codex-worker-pool/RateLimitsStore"
) {}

const toStoreUnavailable = (what: string) => (cause: unknown): StoreUnavailable =>
  cause instanceof StoreUnavailable ? cause : new StoreUnavailable({ reason: `${what} failed`, cause })

/** A fresh in-memory store (never shared with another one). */
export const makeMemoryStore: Effect.Effect<AdmissionStore> = Effect.gen(function*() {
  const scope = yield* Scope.make()
  const context = yield* Layer.buildWithMemoMap(RateLimiter.layerStoreMemory, Layer.makeMemoMapUnsafe(), scope)
  const limiter = Context.get(context, RateLimiter.RateLimiterStore)
  const counters = new Map<string, { values: Record<string, number>; expiresAt: number }>()
  let writes = 0
  const live = (key: string, now: number) => {
    const entry = counters.get(key)
    if (entry === undefined) return undefined
    if (entry.expiresAt <= now) {
      counters.delete(key)
      return undefined
    }
    return entry
  }
  const sweep = (now: number) => {
    for (const [key, entry] of counters) if (entry.expiresAt <= now) counters.delete(key)
  }
  const pick = (values: Record<string, number> | undefined, read: ReadonlyArray<string>) => {
    const out: Record<string, number> = {}
    for (const field of read) out[field] = values?.[field] ?? 0
    return out
  }
  return {
    kind: "memory",
    limiter,
    counters: {
      incr: (key, fields, ttlMs, read) =>
        Effect.clockWith((clock) =>
          Effect.sync(() => {
            const now = clock.currentTimeMillisUnsafe()
            if (++writes % 1024 === 0) sweep(now)
            let entry = live(key, now)
            if (entry === undefined) {
              entry = { values: {}, expiresAt: 0 }
              counters.set(key, entry)
            }
            for (const field in fields) entry.values[field] = (entry.values[field] ?? 0) + fields[field]!
            entry.expiresAt = now + ttlMs
            return pick(entry.values, read)
          })
        ),
      read: (key, read) => Effect.clockWith((clock) => Effect.sync(() => pick(live(key, clock.currentTimeMillisUnsafe())?.values, read)))
    },
    probe: Effect.void,
    cooledKeys: new Set()
  } satisfies AdmissionStore
})

const numberOf = (u: unknown): number => {
  const n = typeof u === "number" ? u : typeof u === "string" ? Number(u) : 0
  return Number.isFinite(n) ? n : 0
}

/**
 * A store on `redis`: Effect's Redis `RateLimiterStore` (keys under
 * `prefix`) and counters as hashes under `${prefix}usage:`.
 */
export const makeRedisStore = (redis: Redis.Redis["Service"], prefix: string): Effect.Effect<AdmissionStore> =>
  Effect.gen(function*() {
    const limiter = yield* RateLimiter.makeStoreRedis({ prefix }).pipe(Effect.provideService(Redis.Redis, redis))
    const hmget = (key: string, read: ReadonlyArray<string>) =>
      redis.send<ReadonlyArray<unknown>>("HMGET", key, ...read).pipe(Effect.map((values) => {
        const out: Record<string, number> = {}
        read.forEach((field, i) => out[field] = numberOf(values?.[i]))
        return out
      }))
    return {
      kind: "redis",
      limiter,
      counters: {
        incr: (key, fields, ttlMs, read) => {
          const commands: Array<Effect.Effect<unknown, Redis.RedisError>> = []
          for (const field in fields) {
            const n = Math.round(fields[field]!)
            if (n !== 0) commands.push(redis.send("HINCRBY", key, field, String(n)))
          }
          commands.push(redis.send("PEXPIRE", key, String(Math.max(1, Math.ceil(ttlMs)))))
          const reading = read.length === 0 ? Effect.succeed({}) : hmget(key, read)
          // Sent together: node-redis writes them in one batch, one round trip.
          return together([together(commands), reading]).pipe(
            Effect.map(([, values]) => values as Record<string, number>),
            Effect.mapError(toStoreUnavailable("Redis counter update"))
          )
        },
        read: (key, read) => hmget(key, read).pipe(Effect.mapError(toStoreUnavailable("Redis counter read")))
      },
      probe: redis.send("PING").pipe(Effect.asVoid, Effect.mapError(toStoreUnavailable("Redis PING"))),
      cooledKeys: undefined
    } satisfies AdmissionStore
  })

/** Settings of {@link makeRedisConnection}. */
export interface RedisConnectionOptions {
  /** `redis://[[user]:password@]host[:port][/db]` or `rediss://...`. */
  readonly url: string
  /** Prefix of every key. */
  readonly prefix: string
  /** Longest wait for a TCP connection, ms. */
  readonly connectTimeoutMs: number
  /** Pause between attempts of the first connection, ms. */
  readonly retryMs: number
}

/**
 * A Redis store over a connection of our own (see the module header): built
 * at once, connected in the background, closed with the scope.
 */
export const makeRedisConnection = (
  options: RedisConnectionOptions
): Effect.Effect<AdmissionStore, never, Scope.Scope> =>
  Effect.gen(function*() {
    const parent = yield* Effect.scope
    let current: AdmissionStore | undefined
    let closed = false
    const notConnected = Effect.fail(new StoreUnavailable({ reason: `Redis at ${redact(options.url)} is not connected yet` }))

    const connect = Effect.gen(function*() {
      const NodeRedis = yield* Effect.promise(() => import("@effect/platform-node/NodeRedis"))
      const scope = yield* Scope.fork(parent)
      let connectedOnce = false
      const layer = NodeRedis.layer({
        url: options.url,
        disableOfflineQueue: true,
        socket: {
          connectTimeout: options.connectTimeoutMs,
          // Before the first connection: fail at once (we retry ourselves).
          // After: reconnect for ever, backing off up to 1 s.
          reconnectStrategy: (retries: number, cause: Error) =>
            connectedOnce && !closed ? Math.min(50 * 2 ** retries, 1_000) : cause
        }
      })
      const context = yield* Layer.buildWithScope(layer, scope).pipe(
        // NodeRedis logs every socket error of every reconnection attempt as a
        // warning; admission logs the outage once (degraded mode), so its own
        // client only logs errors.
        Effect.provideService(References.MinimumLogLevel, "Error"),
        Effect.timeout(Duration.millis(options.connectTimeoutMs + 1_000)),
        Effect.onError(() => Scope.close(scope, undefined as never))
      )
      connectedOnce = true
      const client = Context.get(context, NodeRedis.NodeRedis).client
      // Runs before NodeRedis' own finalizer (`close()`, which waits for
      // in-flight commands): `destroy()` fails them at once instead.
      yield* Scope.addFinalizer(scope, Effect.sync(() => {
        closed = true
        if (client.isOpen) client.destroy()
      }))
      current = yield* makeRedisStore(Context.get(context, Redis.Redis), options.prefix)
    })

    let attempts = 0
    const connectLoop: Effect.Effect<void> = connect.pipe(
      Effect.catchCause((cause) => {
        const message = `Rate-limit store: cannot connect to Redis at ${redact(options.url)}; admission uses its ` +
          `local fallback limiter and retries every ${options.retryMs} ms.`
        return (attempts++ === 0 ? Effect.logWarning(message, cause) : Effect.logDebug(message, cause)).pipe(
          Effect.andThen(Effect.sleep(Duration.millis(options.retryMs))),
          Effect.andThen(Effect.suspend(() => connectLoop))
        )
      }),
      Effect.andThen(Effect.suspend(() =>
        attempts > 0 ? Effect.logInfo(`Rate-limit store: connected to Redis at ${redact(options.url)}.`) : Effect.void
      ))
    )
    yield* Effect.forkIn(connectLoop, parent)
    yield* Scope.addFinalizer(parent, Effect.sync(() => {
      closed = true
    }))

    const limiter: RateLimiter.RateLimiterStore["Service"] = {
      fixedWindow: (o) => current === undefined ? notConnectedLimiter : current.limiter.fixedWindow(o),
      tokenBucket: (o) => current === undefined ? notConnectedLimiter : current.limiter.tokenBucket(o),
      adaptiveConsume: (o) => current === undefined ? notConnectedLimiter : current.limiter.adaptiveConsume(o),
      adaptiveFeedback: (o) => current === undefined ? notConnectedLimiter : current.limiter.adaptiveFeedback(o)
    }
    return {
      kind: "redis",
      limiter,
      counters: {
        incr: (key, fields, ttlMs, read) => current === undefined ? notConnected : current.counters.incr(key, fields, ttlMs, read),
        read: (key, read) => current === undefined ? notConnected : current.counters.read(key, read)
      },
      probe: Effect.suspend(() => current === undefined ? notConnected : current.probe),
      cooledKeys: undefined,
      connected: () => current !== undefined
    }
  })

const notConnectedLimiter = Effect.fail(
  new RateLimiter.RateLimiterError({
    reason: new RateLimiter.RateLimitStoreError({ message: "Redis is not connected yet" })
  })
)

/**
 * Runs `effects` concurrently, each started at once in this tick (not on the
 * scheduler's next turn, as `Effect.all` does), so that node-redis sends all
 * their commands in one write: one round trip. Results in order.
 */
export const together = <const T extends ReadonlyArray<Effect.Effect<any, any>>>(
  effects: T
): Effect.Effect<{ -readonly [K in keyof T]: Effect.Success<T[K]> }, Effect.Error<T[number]>> =>
  Effect.flatMap(
    Effect.forEach(
      effects as ReadonlyArray<Effect.Effect<unknown, unknown>>,
      (effect) => Effect.forkChild(effect, { startImmediately: true })
    ),
    (fibers: ReadonlyArray<Fiber.Fiber<unknown, unknown>>) =>
      Effect.onInterrupt(Fiber.joinAll(fibers), () => Fiber.interruptAll(fibers))
  ) as any

/** The URL without its password, for logs and errors. */
export const redact = (url: string): string => url.replace(/\/\/([^:@/]*):([^@/]*)@/, "//$1:***@")

/** The current time of the clock in `context`, ms. */
export const nowOf = (context: Context.Context<never>): number => Context.get(context, Clock.Clock).currentTimeMillisUnsafe()

/**
 * The errors a pool can fail with, gathered in one module.
 *
 * Each is a tagged class (`_tag` equals the class name, so `Effect.catchTag`
 * works) and a real `Error` subclass whose `name` is the class name, so the
 * promise facade can throw them as they are. Every message says what happened
 * and what to do about it.
 *
 * @since 0.1.0
 */
import { Data } from "effect"

/**
 * The pool was shut down: every queued waiter fails with it, and so does every
 * acquire made afterwards. Create a new pool to go on.
 *
 * @since 0.1.0
 * @category errors
 */
export class PoolShutdownError extends Data.TaggedError("PoolShutdownError")<{
  readonly message: string
}> {
  constructor() {
    super({ message: "Worker pool has been shut down. Create a new pool to acquire workers again." })
  }
}

/**
 * A waiter spent longer than its acquire timeout in the queue. It carries how
 * long it waited, how many waiters were still ahead of it, and the pool size.
 *
 * @since 0.1.0
 * @category errors
 */
export class AcquireTimeoutError extends Data.TaggedError("AcquireTimeoutError")<{
  readonly message: string
  readonly waitedMs: number
  readonly queuedAhead: number
  readonly poolSize: number
}> {
  constructor(props: { readonly waitedMs: number; readonly queuedAhead: number; readonly poolSize: number }) {
    super({
      ...props,
      message: `Timed out after ${props.waitedMs} ms waiting for a worker: ${props.queuedAhead} ` +
        `waiter(s) were still ahead and all ${props.poolSize} worker(s) were busy. ` +
        `poolSize may be too small for this load, or leases are held too long.`
    })
  }
}

/**
 * The queue already held `maxQueue` waiters, so this acquire was refused at
 * once instead of waiting.
 *
 * @since 0.1.0
 * @category errors
 */
export class QueueFullError extends Data.TaggedError("QueueFullError")<{
  readonly message: string
  readonly maxQueue: number
  readonly poolSize: number
}> {
  constructor(props: { readonly maxQueue: number; readonly poolSize: number }) {
    super({
      ...props,
      message: `The acquire queue is full (maxQueue: ${props.maxQueue}, poolSize: ${props.poolSize}). ` +
        `Retry later, raise maxQueue, or raise poolSize.`
    })
  }
}

/**
 * `release` (or `invalidate`) was given a worker that this pool has not leased
 * out at the moment: released twice, or never acquired from this pool. The
 * pool is left unchanged.
 *
 * @since 0.1.0
 * @category errors
 */
export class WorkerNotLeasedError extends Data.TaggedError("WorkerNotLeasedError")<{
  readonly message: string
  readonly operation: "release" | "invalidate"
}> {
  constructor(props: { readonly operation: "release" | "invalidate" }) {
    super({
      ...props,
      message: `${props.operation}() was given a worker that is not currently leased from this pool ` +
        `(already released, invalidated, or never acquired from it). Nothing was changed.`
    })
  }
}

/**
 * The options given to a pool constructor are invalid. The message names the
 * option and says what it must be.
 *
 * @since 0.1.0
 * @category errors
 */
export class PoolOptionsError extends Data.TaggedError("PoolOptionsError")<{
  readonly message: string
}> {}

/**
 * The app-server answered a request with a JSON-RPC error response. It carries
 * the request's `method`, and the server's `code`, `serverMessage` and `data`.
 *
 * @since 0.1.0
 * @category errors
 */
export class JsonRpcError extends Data.TaggedError("JsonRpcError")<{
  readonly message: string
  readonly method: string
  readonly code: number
  readonly serverMessage: string
  readonly data: unknown
}> {
  constructor(props: {
    readonly method: string
    readonly code: number
    readonly serverMessage: string
    readonly data?: unknown
  }) {
    super({
      method: props.method,
      code: props.code,
      serverMessage: props.serverMessage,
      data: props.data,
      message: `The codex app-server rejected "${props.method}" with error ${props.code}: ` +
        `${props.serverMessage.length > 300 ? `${props.serverMessage.slice(0, 300)}…` : props.serverMessage}. ` +
        `Check the method's parameters (see \`codex app-server generate-ts\`) or the worker's state.`
    })
  }
}

/**
 * A request got no response within its timeout. The request was abandoned: a
 * response arriving later is ignored.
 *
 * @since 0.1.0
 * @category errors
 */
export class RequestTimeoutError extends Data.TaggedError("RequestTimeoutError")<{
  readonly message: string
  readonly method: string
  readonly timeoutMs: number
}> {
  constructor(props: { readonly method: string; readonly timeoutMs: number }) {
    super({
      ...props,
      message: `The codex app-server did not answer "${props.method}" within ${props.timeoutMs} ms; ` +
        `the request was abandoned. Raise the timeout, or check that the worker is healthy.`
    })
  }
}

/**
 * The JSON-RPC channel to a worker is closed, so a request could not be sent
 * or will never be answered. `reason` says why it closed.
 *
 * @since 0.1.0
 * @category errors
 */
export class ChannelClosedError extends Data.TaggedError("ChannelClosedError")<{
  readonly message: string
  readonly reason: string
}> {
  constructor(props: { readonly reason: string }) {
    super({
      ...props,
      message: `The JSON-RPC channel to the codex worker is closed (${props.reason}). ` +
        `Nothing more can be sent over it: use another worker.`
    })
  }
}

/**
 * The codex app-server process of a worker exited while it was in use. It
 * carries the exit `code` or `signal` and the last lines the process wrote to
 * stderr. The pool replaces the worker.
 *
 * @since 0.1.0
 * @category errors
 */
export class WorkerCrashedError extends Data.TaggedError("WorkerCrashedError")<{
  readonly message: string
  readonly pid: number
  readonly code: number | null
  readonly signal: string | null
  readonly stderrTail: ReadonlyArray<string>
}> {
  constructor(props: {
    readonly pid: number
    readonly code: number | null
    readonly signal: string | null
    readonly stderrTail: ReadonlyArray<string>
  }) {
    const how = props.signal !== null
      ? `was killed by ${props.signal}`
      : props.code !== null
      ? `exited with code ${props.code}`
      : "exited"
    const stderr = props.stderrTail.length === 0
      ? "It wrote nothing to stderr."
      : `Last stderr lines:\n${props.stderrTail.map((line) => `  ${line}`).join("\n")}`
    super({
      ...props,
      message: `The codex worker process (pid ${props.pid}) exited unexpectedly: it ${how}. ` +
        `The pool replaces the worker; retry on a new one. ${stderr}`
    })
  }
}

/**
 * The codex app-server process could not be started (for example, the command
 * does not exist). It carries the `command` and the underlying `cause`.
 *
 * @since 0.1.0
 * @category errors
 */
export class WorkerSpawnError extends Data.TaggedError("WorkerSpawnError")<{
  readonly message: string
  readonly command: string
  readonly cause: unknown
}> {
  constructor(props: { readonly command: string; readonly cause: unknown }) {
    const cause = typeof props.cause === "string"
      ? props.cause
      : props.cause instanceof Error
      ? props.cause.cause instanceof Error
        ? `${props.cause.message} (${props.cause.cause.message})`
        : props.cause.message
      : String(props.cause)
    super({
      ...props,
      message: `Could not start the codex worker process "${props.command}": ${cause}. ` +
        `Check the \`command\` option, and that @openai/codex is installed (npm install @openai/codex).`
    })
  }
}

/**
 * A lease was held longer than `leaseTimeoutMs`: the worker was taken out of
 * service (for a codex worker, its process tree was killed) and its pending
 * requests failed with this error. Release the worker; if turns legitimately
 * run that long, raise `leaseTimeoutMs`.
 *
 * @since 0.1.0
 * @category errors
 */
export class LeaseTimeoutError extends Data.TaggedError("LeaseTimeoutError")<{
  readonly message: string
  readonly leaseTimeoutMs: number
  readonly pid: number | undefined
}> {
  constructor(props: { readonly leaseTimeoutMs: number; readonly pid?: number | undefined }) {
    const worker = props.pid === undefined ? "the worker" : `codex worker pid ${props.pid}`
    super({
      leaseTimeoutMs: props.leaseTimeoutMs,
      pid: props.pid,
      message: `The lease on ${worker} was held longer than leaseTimeoutMs (${props.leaseTimeoutMs} ms), ` +
        `so the worker was taken out of service and its processes killed. Release it and acquire another; ` +
        `raise leaseTimeoutMs if turns legitimately run this long.`
    })
  }
}

/**
 * A call was refused by rate-limit admission because the wait the limiter
 * announced for its API key (`account`) is longer than what is left of the
 * call's budget (`acquireTimeoutMs` / `timeoutMs`). `limit` names the limit
 * that made it wait: `"rpm"` (requests per minute), `"tpm"` (tokens per
 * minute) or `"cooldown"` (the key answered HTTP 429 and is cooling down).
 * Nothing was charged for the call. Retry after `retryAfterMs`, give the call
 * a longer timeout, or raise the key's limits.
 *
 * @since 0.2.0
 */
export class RateLimitedError extends Data.TaggedError("RateLimitedError")<{
  readonly message: string
  readonly limit: "rpm" | "tpm" | "cooldown"
  readonly account: string
  readonly retryAfterMs: number
  readonly budgetMs: number
}> {
  constructor(props: {
    readonly limit: "rpm" | "tpm" | "cooldown"
    readonly account: string
    readonly retryAfterMs: number
    readonly budgetMs: number
  }) {
    const what = props.limit === "rpm"
      ? "its requests-per-minute limit"
      : props.limit === "tpm"
      ? "its tokens-per-minute limit"
      : "a cooldown after the API answered HTTP 429"
    super({
      ...props,
      message: `Rate limited: account "${props.account}" is at ${what}; the call would have to wait ` +
        `${Math.ceil(props.retryAfterMs)} ms but only ${Math.max(0, Math.floor(props.budgetMs))} ms were left of its ` +
        `timeout, so it was refused at once (nothing was charged). Retry after ${Math.ceil(props.retryAfterMs)} ms, ` +
        `allow a longer timeoutMs / acquireTimeoutMs, or raise the account's rateLimits.`
    })
  }
}

/**
 * A call named a `workspace` that has reached 100% of one of its limits
 * (`workspaceLimits`), so it was refused at once; other workspaces are not
 * affected. `limit` names the exhausted limit, `used` and `max` its figures;
 * the window resets after `retryAfterMs`.
 *
 * @since 0.2.0
 */
export class WorkspaceLimitError extends Data.TaggedError("WorkspaceLimitError")<{
  readonly message: string
  readonly workspace: string
  readonly limit: "requestsPerMinute" | "requestsPerDay" | "tokensPerMinute" | "tokensPerDay"
  readonly used: number
  readonly max: number
  readonly retryAfterMs: number
}> {
  constructor(props: {
    readonly workspace: string
    readonly limit: "requestsPerMinute" | "requestsPerDay" | "tokensPerMinute" | "tokensPerDay"
    readonly used: number
    readonly max: number
    readonly retryAfterMs: number
  }) {
    super({
      ...props,
      message: `Workspace "${props.workspace}" has reached its ${props.limit} limit (${props.used} of ${props.max}), ` +
        `so the call was refused. The window resets in ${Math.ceil(props.retryAfterMs)} ms; retry then, or raise ` +
        `this workspace's limit in workspaceLimits.`
    })
  }
}

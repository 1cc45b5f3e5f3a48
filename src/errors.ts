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
 * A lease that has ended was used: `release` (or `invalidate`) was given a
 * worker this pool has not leased out at the moment (released twice, or never
 * acquired from this pool), or a Codex worker handle whose lease has ended
 * (released, invalidated, or the end of its `use`) was asked to `request`,
 * `notify`, `respond` or `respondError`. Nothing was changed and nothing was
 * sent: the worker may already serve another caller.
 *
 * @since 0.1.0
 * @category errors
 */
export class WorkerNotLeasedError extends Data.TaggedError("WorkerNotLeasedError")<{
  readonly message: string
  readonly operation: "release" | "invalidate" | "request" | "notify" | "respond" | "respondError"
}> {
  constructor(props: {
    readonly operation: "release" | "invalidate" | "request" | "notify" | "respond" | "respondError"
  }) {
    super({
      ...props,
      message: props.operation === "release" || props.operation === "invalidate"
        ? `${props.operation}() was given a worker that is not currently leased from this pool ` +
          `(already released, invalidated, or never acquired from it). Nothing was changed.`
        : `${props.operation}() was called on a worker handle whose lease has ended (released, invalidated, ` +
          `or its use() returned); the worker may serve another caller now. Nothing was sent: acquire a worker again.`
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
 * the request's `method`, and the server's `code`, `serverMessage` and `data`;
 * any other fields of the error object are kept in `extra` (empty when there
 * are none).
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
  readonly extra: Readonly<Record<string, unknown>>
}> {
  constructor(props: {
    readonly method: string
    readonly code: number
    readonly serverMessage: string
    readonly data?: unknown
    readonly extra?: Readonly<Record<string, unknown>> | undefined
  }) {
    super({
      method: props.method,
      code: props.code,
      serverMessage: props.serverMessage,
      data: props.data,
      extra: props.extra ?? {},
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
 * The app-server broke the JSON-RPC protocol, so the worker was taken out of
 * service: its pending requests fail with this error and its process tree is
 * killed. `kind` says how:
 * - `"MalformedResponse"`: it answered a pending request (`method`) with a
 *   response of the wrong shape (both `result` and `error`, neither, or an
 *   `error` that is not `{ code: number, message: string }`);
 * - `"LineTooLong"`: it wrote a stdout line longer than `maxLineBytes`
 *   (`method` is `undefined`).
 * `reason` says what was wrong and `preview` shows the start of the line.
 *
 * @since 0.1.0
 * @category errors
 */
export class ProtocolError extends Data.TaggedError("ProtocolError")<{
  readonly message: string
  readonly kind: "MalformedResponse" | "LineTooLong"
  readonly method: string | undefined
  readonly reason: string
  readonly preview: string
  readonly pid: number | undefined
}> {
  constructor(props: {
    readonly kind: "MalformedResponse" | "LineTooLong"
    readonly method?: string | undefined
    readonly reason: string
    readonly preview: string
    readonly pid?: number | undefined
  }) {
    const server = props.pid === undefined ? "The codex app-server" : `The codex app-server (pid ${props.pid})`
    const what = props.kind === "MalformedResponse"
      ? `${server} sent a malformed response to "${props.method}" (${props.reason})`
      : `${server} broke the JSON-RPC protocol: ${props.reason}`
    const hint = props.kind === "MalformedResponse"
      ? "If this repeats, check that this codex version speaks the app-server protocol this library expects."
      : "Raise maxLineBytes if messages this large are legitimate."
    super({
      kind: props.kind,
      method: props.method,
      reason: props.reason,
      preview: props.preview,
      pid: props.pid,
      message: `${what}. The line began: ${props.preview}. The worker was taken out of service and its ` +
        `processes killed; retry on a new one. ${hint}`
    })
  }
}

/**
 * The stdio pipes of a worker's codex process broke while the process was
 * still running: writing to its stdin failed (it closed its stdin), or its
 * stdout ended or could not be read. Nothing can be exchanged with it any
 * more, so the worker was taken out of service and its process tree killed.
 *
 * @since 0.1.0
 * @category errors
 */
export class WorkerStdioError extends Data.TaggedError("WorkerStdioError")<{
  readonly message: string
  readonly pid: number
  readonly stream: "stdin" | "stdout"
  readonly detail: string
}> {
  constructor(props: { readonly pid: number; readonly stream: "stdin" | "stdout"; readonly detail: string }) {
    super({
      ...props,
      message: `The ${props.stream} pipe of the codex worker process (pid ${props.pid}) broke while the process ` +
        `was still running: ${props.detail}. The worker was taken out of service and its processes killed; ` +
        `retry on a new one.`
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
 * Which step of starting a codex worker failed; {@link WorkerSpawnError}'s
 * message gives the hint that fits it.
 *
 * - `"StartFailed"`: the process could not be started (command not found or
 *   not executable, `cwd` inaccessible);
 * - `"CodexHome"`: the `codexHome` directory did not exist and could not be
 *   created, or is not a directory;
 * - `"ExitedEarly"`: the process started but exited (or closed its stdout)
 *   before answering `initialize`; its last stderr lines usually say why;
 * - `"InitializeFailed"`: the server answered `initialize` with an error, or
 *   the channel to it failed;
 * - `"Timeout"`: no answer to `initialize` within `spawnTimeout` (`spawnTimeoutMs`).
 *
 * @since 0.1.0
 * @category errors
 */
export type WorkerSpawnReason = "StartFailed" | "CodexHome" | "ExitedEarly" | "InitializeFailed" | "Timeout"

const describeCause = (cause: unknown): string =>
  typeof cause === "string"
    ? cause
    : cause instanceof Error
    ? cause.cause instanceof Error
      ? `${cause.message} (${cause.cause.message})`
      : cause.message
    : String(cause)

const stderrSummary = (stderrTail: ReadonlyArray<string>): string =>
  stderrTail.length === 0
    ? "It wrote nothing to stderr."
    : `Last stderr lines:\n${stderrTail.map((line) => `  ${line}`).join("\n")}`

/**
 * A codex worker could not be started: the process did not start, or it did
 * not complete the `initialize` handshake. It carries the `command`, the
 * failed step (`reason`, see {@link WorkerSpawnReason}), the process id when
 * there was a process, its last stderr lines, and the underlying `cause` (a
 * {@link WorkerCrashedError} when the process exited early). Whatever the
 * step, nothing of the process tree is left running.
 *
 * @since 0.1.0
 * @category errors
 */
export class WorkerSpawnError extends Data.TaggedError("WorkerSpawnError")<{
  readonly message: string
  readonly command: string
  readonly reason: WorkerSpawnReason
  readonly pid: number | undefined
  readonly stderrTail: ReadonlyArray<string>
  readonly cause: unknown
}> {
  constructor(props: {
    readonly command: string
    readonly cause: unknown
    /** Default `"StartFailed"`. */
    readonly reason?: WorkerSpawnReason | undefined
    readonly pid?: number | undefined
    /** Default: the cause's when it is a `WorkerCrashedError`, else none. */
    readonly stderrTail?: ReadonlyArray<string> | undefined
  }) {
    const reason = props.reason ?? "StartFailed"
    const crash = props.cause instanceof WorkerCrashedError ? props.cause : undefined
    const pid = props.pid ?? crash?.pid
    const stderrTail = props.stderrTail ?? crash?.stderrTail ?? []
    const proc = `The codex worker process "${props.command}"${pid === undefined ? "" : ` (pid ${pid})`}`
    let message: string
    switch (reason) {
      case "StartFailed":
        message = `Could not start the codex worker process "${props.command}": ${describeCause(props.cause)}. ` +
          `Check the \`command\` option, and that @openai/codex is installed (npm install @openai/codex).`
        break
      case "CodexHome":
        message = `Could not start a codex worker: ${describeCause(props.cause)}. ` +
          `Point the \`codexHome\` option at a directory this process can create and write.`
        break
      case "ExitedEarly": {
        const how = crash === undefined
          ? `failed: ${describeCause(props.cause)}`
          : crash.signal !== null
          ? `was killed by ${crash.signal}`
          : crash.code !== null
          ? `exited with code ${crash.code}`
          : "closed its stdout"
        message = `${proc} ${how} before answering initialize. Its stderr usually says why; check the ` +
          `\`args\`, \`env\`, \`cwd\` and \`codexHome\` options and codex's config.toml. ${stderrSummary(stderrTail)}`
        break
      }
      case "InitializeFailed":
        message = `${proc} failed the initialize handshake: ${describeCause(props.cause)}. Check the ` +
          `\`clientInfo\` and \`capabilities\` options, and that this codex speaks the app-server protocol ` +
          `(codex app-server 0.169 or later). ${stderrSummary(stderrTail)}`
        break
      case "Timeout":
        message = `${proc} did not answer initialize: ${describeCause(props.cause)}. If codex is only slow to ` +
          `start (first run, slow disk, busy machine), raise \`spawnTimeout\` ` +
          `(\`spawnTimeoutMs\` in createCodexWorkerPool); otherwise check that \`args\` ` +
          `start the app server on stdio ("app-server"). ${stderrSummary(stderrTail)}`
        break
    }
    super({ command: props.command, reason, pid, stderrTail, cause: props.cause, message })
  }
}

/**
 * A lease was held longer than the pool's `leaseTimeout` (`leaseTimeoutMs` in
 * the promise facades): the worker was taken out of service (for a codex
 * worker, its process tree was killed) and its pending requests failed with
 * this error. Release the worker; if turns legitimately run that long, raise
 * that option. `leaseTimeoutMs` is the limit in milliseconds.
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
      message: `The lease on ${worker} was held longer than leaseTimeout (${props.leaseTimeoutMs} ms), ` +
        `so the worker was taken out of service and its processes killed. Release it and acquire another; ` +
        `raise leaseTimeout (leaseTimeoutMs in createCodexWorkerPool) if turns legitimately run this long.`
    })
  }
}

/**
 * The app-server answered a request, but its result does not match the
 * Schema the caller decodes it with (`CodexWorker.requestSchema`). It carries
 * the request's `method`, the Schema's `issue` as text, and the `result` as
 * received. The worker is fine; the server may run a codex version other than
 * the one the Schema was written for.
 *
 * @since 0.1.0
 * @category errors
 */
export class ResponseDecodeError extends Data.TaggedError("ResponseDecodeError")<{
  readonly message: string
  readonly method: string
  readonly issue: string
  readonly result: unknown
}> {
  constructor(props: { readonly method: string; readonly issue: string; readonly result: unknown }) {
    super({
      ...props,
      message: `The codex app-server's result for "${props.method}" does not match the expected schema: ` +
        `${props.issue.length > 500 ? `${props.issue.slice(0, 500)}…` : props.issue}. ` +
        `The worker may run a codex version other than the one the schema was written for: check the schema ` +
        `against \`codex app-server generate-ts\` of that version.`
    })
  }
}

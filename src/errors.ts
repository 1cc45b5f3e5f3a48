/**
 * The errors a pool can fail with, gathered in one module.
 *
 * Each is a `Schema.TaggedError` class: a real `Error` subclass (so the
 * promise facade throws them as they are) whose `_tag` and `name` equal the
 * class name (so `Effect.catchTag` works, and `yield*` fails with it), whose
 * `message` says what happened and what to do about it, and which is also a
 * Schema of itself, so it crosses RPC, HttpApi and cluster boundaries:
 * `Schema.encodeUnknownSync(AcquireTimeoutError)(error)` gives a JSON-safe
 * object with `_tag`, `message` and the fields, and decoding that gives an
 * `AcquireTimeoutError` again. {@link CodexWorkerPoolError} is the union of
 * them all, for an RPC's or an HttpApi endpoint's error channel.
 *
 * What crosses the wire: `_tag`, `message` (as it was built, never rebuilt
 * on the other side) and every field; never the `stack`. A field that is
 * `undefined` is left out, and decodes as `undefined` again
 * ({@link UndefinedAsAbsent}). The fields whose content is `unknown`:
 * - `JsonRpcError.data` and `ResponseDecodeError.result` came off the JSON-RPC
 *   wire, so they cross as the JSON they are ({@link JsonValue}); a value that
 *   is not JSON (only if you built the error yourself) crosses as Effect's
 *   JSON rendering of it.
 * - `WorkerSpawnError.cause` crosses as a defect ({@link DefectValue},
 *   `Schema.Defect()`): an `Error` becomes `{ name, message, cause? }` and
 *   decodes as a plain `Error` with that name and message (not the original
 *   class, no stack); any other value crosses as its JSON. The spawn error's
 *   own fields (`pid`, `stderrTail`, `reason`) cross in full.
 *
 * Every error follows one pattern; follow it for a new one (the block
 * compiles in this module, whose helpers it uses; it is not a user example):
 *
 * ```text
 * export class SomethingFailedError extends Schema.TaggedError<SomethingFailedError>()("SomethingFailedError", {
 *   message: Schema.String, // always, first: built by the constructor, carried as is over the wire
 *   method: Schema.String, // then every field with its Schema
 *   pid: UndefinedAsAbsent(Schema.Number), // a field of type `T | undefined`
 *   data: JsonValue, // a field of type `unknown`: JsonValue (JSON off the wire) or DefectValue (a cause)
 *   extra: Schema.Record(Schema.String, UnknownJson) // JSON inside another Schema: UnknownJson
 * }) {
 *   constructor(
 *     props: {
 *       readonly method: string
 *       readonly pid?: number | undefined
 *       readonly data?: unknown
 *       readonly extra?: Readonly<Record<string, unknown>> | undefined
 *     },
 *     options?: Schema.MakeOptions // always, and always passed on to super
 *   ) {
 *     super({
 *       method: props.method,
 *       pid: props.pid,
 *       data: props.data,
 *       extra: props.extra ?? {},
 *       message: `The codex app-server failed "${props.method}". Say what to do about it.`
 *     }, options)
 *   }
 * }
 * ```
 *
 * - The class name, its tag and its `Schema.TaggedError<Self>` argument are
 *   the same name, so `_tag` and `name` are the class name.
 * - The constructor takes the fields without `_tag` and `message`, keeps the
 *   argument shape callers already use, computes the message, and passes
 *   `options` on to `super`. Decoding calls it with the decoded fields
 *   (message included) and an `options` that makes `super` keep those as
 *   they are, so the message received is the message kept (test "the message
 *   crosses as it was built"). Keep it free of side effects and total on its
 *   fields.
 * - An error without fields takes `(_props?: {}, options?)`, so
 *   `new PoolShutdownError()` still works. An error whose message the caller
 *   writes (`PoolOptionsError`) has no constructor of its own.
 * - Add the class to {@link CodexWorkerPoolError} and a case to
 *   `test/errors.test.ts` (fixed input, message word for word, fields; the
 *   round trips and `catchTag` come with the case). Define it in this module:
 *   the union is built when this module loads, so a class of a module that
 *   imports this one could not be listed in it.
 *
 * Cost: the constructor checks its input against the fields' Schemas (a
 * Schema class always does; `disableChecks` skips only refinements, and no
 * public option skips the rest). Built without a stack, as the core builds
 * `AcquireTimeoutError` and `PoolShutdownError` in bulk, an error costs about
 * 1.5 times what a `Data.TaggedError` did (roughly +0.3 to +2 µs per error,
 * depending on load): a timeout storm of 10,000 waiters takes some 20 ms more
 * than it did, still well under generic-pool's. Built with a stack, the stack
 * dominates and the check hardly shows.
 *
 * @since 0.1.0
 */
import { Formatter, Option, Schema, SchemaTransformation } from "effect"

const toJson = (value: unknown): Schema.Json => {
  try {
    return JSON.parse(Formatter.formatJson(value)) as Schema.Json
  } catch {
    return Formatter.format(value)
  }
}

/**
 * The Schema of an error field of type `T | undefined` (a required key, as a
 * plain class field would be): `undefined` is encoded as an absent key (JSON
 * has no `undefined`) and an absent key decoded as `undefined`, so the field
 * is an own property of the error on either side of the wire, as it was
 * built.
 *
 * @since 0.1.0
 * @category schemas
 */
export const UndefinedAsAbsent = <S extends Schema.Top>(schema: S) =>
  Schema.optionalKey(schema).pipe(
    Schema.decodeTo(
      Schema.UndefinedOr(Schema.toType(schema)),
      SchemaTransformation.transformOptional<S["Type"] | undefined, S["Type"]>({
        decode: (value) => Option.some(Option.getOrUndefined(value)),
        encode: (value) => Option.filter(value, (v): v is S["Type"] => v !== undefined)
      })
    )
  )

/**
 * A value typed `unknown` that is JSON (what the app-server sent), encoded as
 * that JSON: encoding leaves JSON as it is and renders anything else with
 * `Formatter.formatJson` (or, failing that, as text); decoding leaves the JSON
 * as it is. Not a field on its own (see {@link JsonValue}); use it inside
 * other Schemas, e.g. `Schema.Record(Schema.String, UnknownJson)`.
 *
 * @since 0.1.0
 * @category schemas
 */
export const UnknownJson: Schema.Codec<unknown, Schema.Json> = Schema.Json.pipe(
  Schema.decodeTo(
    Schema.Unknown,
    SchemaTransformation.transform<unknown, Schema.Json>({ decode: (json) => json, encode: toJson })
  )
)

/**
 * The Schema of an error field whose content is any JSON value, typed
 * `unknown`: what the app-server sent (`JsonRpcError.data`,
 * `ResponseDecodeError.result`). {@link UnknownJson}, leaving out an
 * `undefined` value (an absent key decodes as `undefined`). The constructors
 * do not check it.
 *
 * @since 0.1.0
 * @category schemas
 */
export const JsonValue = UndefinedAsAbsent(UnknownJson)

/**
 * The Schema of an error field typed `unknown` that holds a cause
 * (`WorkerSpawnError.cause`): `Schema.Defect()`, leaving out an `undefined`
 * value. An `Error` is encoded as `{ name, message, cause? }` (no stack) and
 * decoded as a plain `Error` with that name and message; anything else is
 * encoded as its JSON and decoded as it is. The constructors do not check it.
 *
 * @since 0.1.0
 * @category schemas
 */
export const DefectValue = UndefinedAsAbsent(Schema.Defect())

/**
 * The pool was shut down: every queued waiter fails with it, and so does every
 * acquire made afterwards. Create a new pool to go on.
 *
 * @since 0.1.0
 * @category errors
 */
export class PoolShutdownError extends Schema.TaggedError<PoolShutdownError>()("PoolShutdownError", {
  message: Schema.String
}) {
  constructor(_props?: {}, options?: Schema.MakeOptions) {
    super({ message: "Worker pool has been shut down. Create a new pool to acquire workers again." }, options)
  }
}

/**
 * A waiter spent longer than its acquire timeout in the queue. It carries how
 * long it waited, how many waiters were still ahead of it, and the pool size.
 *
 * @since 0.1.0
 * @category errors
 */
export class AcquireTimeoutError extends Schema.TaggedError<AcquireTimeoutError>()("AcquireTimeoutError", {
  message: Schema.String,
  waitedMs: Schema.Number,
  queuedAhead: Schema.Number,
  poolSize: Schema.Number
}) {
  constructor(
    props: { readonly waitedMs: number; readonly queuedAhead: number; readonly poolSize: number },
    options?: Schema.MakeOptions
  ) {
    super({
      ...props,
      message: `Timed out after ${props.waitedMs} ms waiting for a worker: ${props.queuedAhead} ` +
        `waiter(s) were still ahead and all ${props.poolSize} worker(s) were busy. ` +
        `poolSize may be too small for this load, or leases are held too long.`
    }, options)
  }
}

/**
 * The queue already held `maxQueue` waiters, so this acquire was refused at
 * once instead of waiting.
 *
 * @since 0.1.0
 * @category errors
 */
export class QueueFullError extends Schema.TaggedError<QueueFullError>()("QueueFullError", {
  message: Schema.String,
  maxQueue: Schema.Number,
  poolSize: Schema.Number
}) {
  constructor(props: { readonly maxQueue: number; readonly poolSize: number }, options?: Schema.MakeOptions) {
    super({
      ...props,
      message: `The acquire queue is full (maxQueue: ${props.maxQueue}, poolSize: ${props.poolSize}). ` +
        `Retry later, raise maxQueue, or raise poolSize.`
    }, options)
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
export class WorkerNotLeasedError extends Schema.TaggedError<WorkerNotLeasedError>()("WorkerNotLeasedError", {
  message: Schema.String,
  operation: Schema.Literals(["release", "invalidate", "request", "notify", "respond", "respondError"])
}) {
  constructor(
    props: { readonly operation: "release" | "invalidate" | "request" | "notify" | "respond" | "respondError" },
    options?: Schema.MakeOptions
  ) {
    super({
      ...props,
      message: props.operation === "release" || props.operation === "invalidate"
        ? `${props.operation}() was given a worker that is not currently leased from this pool ` +
          `(already released, invalidated, or never acquired from it). Nothing was changed.`
        : `${props.operation}() was called on a worker handle whose lease has ended (released, invalidated, ` +
          `or its use() returned); the worker may serve another caller now. Nothing was sent: acquire a worker again.`
    }, options)
  }
}

/**
 * An acquire named an account the pool does not have (never added, or
 * removed). Nothing was queued. Add the account first (`accounts` option or
 * `addAccount`), or check the name.
 *
 * @since 0.1.0
 * @category errors
 */
export class UnknownAccountError extends Schema.TaggedError<UnknownAccountError>()("UnknownAccountError", {
  message: Schema.String,
  account: Schema.String
}) {
  constructor(props: { readonly account: string }, options?: Schema.MakeOptions) {
    super({
      account: props.account,
      message: `The worker pool has no account named ${JSON.stringify(props.account)}. ` +
        `Add it (the accounts option or addAccount) before acquiring for it, or check the name.`
    }, options)
  }
}

/**
 * The account an acquire waited for was removed (`removeAccount`) before a
 * worker was handed over. Its workers are being retired. Add the account
 * again to go on serving it.
 *
 * @since 0.1.0
 * @category errors
 */
export class AccountRemovedError extends Schema.TaggedError<AccountRemovedError>()("AccountRemovedError", {
  message: Schema.String,
  account: Schema.String
}) {
  constructor(props: { readonly account: string }, options?: Schema.MakeOptions) {
    super({
      account: props.account,
      message: `The account ${JSON.stringify(props.account)} was removed from the worker pool while this acquire ` +
        `waited; its workers are being retired. Add the account again to serve it.`
    }, options)
  }
}

/**
 * `addAccount` was given the name of an account the pool already has.
 * Nothing was changed. To change an account's settings (a new key), remove it
 * and add it again.
 *
 * @since 0.1.0
 * @category errors
 */
export class AccountExistsError extends Schema.TaggedError<AccountExistsError>()("AccountExistsError", {
  message: Schema.String,
  account: Schema.String
}) {
  constructor(props: { readonly account: string }, options?: Schema.MakeOptions) {
    super({
      account: props.account,
      message: `The worker pool already has an account named ${JSON.stringify(props.account)}; nothing was changed. ` +
        `To change its settings, remove it (removeAccount) and add it again.`
    }, options)
  }
}

/**
 * The options given to a pool constructor are invalid. The message names the
 * option and says what it must be.
 *
 * @since 0.1.0
 * @category errors
 */
export class PoolOptionsError extends Schema.TaggedError<PoolOptionsError>()("PoolOptionsError", {
  message: Schema.String
}) {}

/**
 * The app-server answered a request with a JSON-RPC error response. It carries
 * the request's `method`, and the server's `code`, `serverMessage` and `data`;
 * any other fields of the error object are kept in `extra` (empty when there
 * are none).
 *
 * @since 0.1.0
 * @category errors
 */
export class JsonRpcError extends Schema.TaggedError<JsonRpcError>()("JsonRpcError", {
  message: Schema.String,
  method: Schema.String,
  code: Schema.Number,
  serverMessage: Schema.String,
  data: JsonValue,
  extra: Schema.Record(Schema.String, UnknownJson)
}) {
  constructor(props: {
    readonly method: string
    readonly code: number
    readonly serverMessage: string
    readonly data?: unknown
    readonly extra?: Readonly<Record<string, unknown>> | undefined
  }, options?: Schema.MakeOptions) {
    super({
      method: props.method,
      code: props.code,
      serverMessage: props.serverMessage,
      data: props.data,
      extra: props.extra ?? {},
      message: `The codex app-server rejected "${props.method}" with error ${props.code}: ` +
        `${props.serverMessage.length > 300 ? `${props.serverMessage.slice(0, 300)}…` : props.serverMessage}. ` +
        `Check the method's parameters (see \`codex app-server generate-ts\`) or the worker's state.`
    }, options)
  }
}

/**
 * A request got no response within its timeout. The request was abandoned: a
 * response arriving later is ignored.
 *
 * @since 0.1.0
 * @category errors
 */
export class RequestTimeoutError extends Schema.TaggedError<RequestTimeoutError>()("RequestTimeoutError", {
  message: Schema.String,
  method: Schema.String,
  timeoutMs: Schema.Number
}) {
  constructor(props: { readonly method: string; readonly timeoutMs: number }, options?: Schema.MakeOptions) {
    super({
      ...props,
      message: `The codex app-server did not answer "${props.method}" within ${props.timeoutMs} ms; ` +
        `the request was abandoned. Raise the timeout, or check that the worker is healthy.`
    }, options)
  }
}

/**
 * The JSON-RPC channel to a worker is closed, so a request could not be sent
 * or will never be answered. `reason` says why it closed.
 *
 * @since 0.1.0
 * @category errors
 */
export class ChannelClosedError extends Schema.TaggedError<ChannelClosedError>()("ChannelClosedError", {
  message: Schema.String,
  reason: Schema.String
}) {
  constructor(props: { readonly reason: string }, options?: Schema.MakeOptions) {
    super({
      ...props,
      message: `The JSON-RPC channel to the codex worker is closed (${props.reason}). ` +
        `Nothing more can be sent over it: use another worker.`
    }, options)
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
export class ProtocolError extends Schema.TaggedError<ProtocolError>()("ProtocolError", {
  message: Schema.String,
  kind: Schema.Literals(["MalformedResponse", "LineTooLong"]),
  method: UndefinedAsAbsent(Schema.String),
  reason: Schema.String,
  preview: Schema.String,
  pid: UndefinedAsAbsent(Schema.Number)
}) {
  constructor(props: {
    readonly kind: "MalformedResponse" | "LineTooLong"
    readonly method?: string | undefined
    readonly reason: string
    readonly preview: string
    readonly pid?: number | undefined
  }, options?: Schema.MakeOptions) {
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
    }, options)
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
export class WorkerStdioError extends Schema.TaggedError<WorkerStdioError>()("WorkerStdioError", {
  message: Schema.String,
  pid: Schema.Number,
  stream: Schema.Literals(["stdin", "stdout"]),
  detail: Schema.String
}) {
  constructor(
    props: { readonly pid: number; readonly stream: "stdin" | "stdout"; readonly detail: string },
    options?: Schema.MakeOptions
  ) {
    super({
      ...props,
      message: `The ${props.stream} pipe of the codex worker process (pid ${props.pid}) broke while the process ` +
        `was still running: ${props.detail}. The worker was taken out of service and its processes killed; ` +
        `retry on a new one.`
    }, options)
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
export class WorkerCrashedError extends Schema.TaggedError<WorkerCrashedError>()("WorkerCrashedError", {
  message: Schema.String,
  pid: Schema.Number,
  code: Schema.NullOr(Schema.Number),
  signal: Schema.NullOr(Schema.String),
  stderrTail: Schema.Array(Schema.String)
}) {
  constructor(props: {
    readonly pid: number
    readonly code: number | null
    readonly signal: string | null
    readonly stderrTail: ReadonlyArray<string>
  }, options?: Schema.MakeOptions) {
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
    }, options)
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
export type WorkerSpawnReason = typeof WorkerSpawnReason.Type

/**
 * The Schema of {@link WorkerSpawnReason}.
 *
 * @since 0.1.0
 * @category schemas
 */
export const WorkerSpawnReason = Schema.Literals(["StartFailed", "CodexHome", "ExitedEarly", "InitializeFailed", "Timeout"])

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
export class WorkerSpawnError extends Schema.TaggedError<WorkerSpawnError>()("WorkerSpawnError", {
  message: Schema.String,
  command: Schema.String,
  reason: WorkerSpawnReason,
  pid: UndefinedAsAbsent(Schema.Number),
  stderrTail: Schema.Array(Schema.String),
  cause: DefectValue
}) {
  constructor(props: {
    readonly command: string
    readonly cause: unknown
    /** Default `"StartFailed"`. */
    readonly reason?: WorkerSpawnReason | undefined
    readonly pid?: number | undefined
    /** Default: the cause's when it is a `WorkerCrashedError`, else none. */
    readonly stderrTail?: ReadonlyArray<string> | undefined
  }, options?: Schema.MakeOptions) {
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
    super({ command: props.command, reason, pid, stderrTail, cause: props.cause, message }, options)
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
export class LeaseTimeoutError extends Schema.TaggedError<LeaseTimeoutError>()("LeaseTimeoutError", {
  message: Schema.String,
  leaseTimeoutMs: Schema.Number,
  pid: UndefinedAsAbsent(Schema.Number)
}) {
  constructor(props: { readonly leaseTimeoutMs: number; readonly pid?: number | undefined }, options?: Schema.MakeOptions) {
    const worker = props.pid === undefined ? "the worker" : `codex worker pid ${props.pid}`
    super({
      leaseTimeoutMs: props.leaseTimeoutMs,
      pid: props.pid,
      message: `The lease on ${worker} was held longer than leaseTimeout (${props.leaseTimeoutMs} ms), ` +
        `so the worker was taken out of service and its processes killed. Release it and acquire another; ` +
        `raise leaseTimeout (leaseTimeoutMs in createCodexWorkerPool) if turns legitimately run this long.`
    }, options)
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
export class ResponseDecodeError extends Schema.TaggedError<ResponseDecodeError>()("ResponseDecodeError", {
  message: Schema.String,
  method: Schema.String,
  issue: Schema.String,
  result: JsonValue
}) {
  constructor(
    props: { readonly method: string; readonly issue: string; readonly result: unknown },
    options?: Schema.MakeOptions
  ) {
    super({
      ...props,
      message: `The codex app-server's result for "${props.method}" does not match the expected schema: ` +
        `${props.issue.length > 500 ? `${props.issue.slice(0, 500)}…` : props.issue}. ` +
        `The worker may run a codex version other than the one the schema was written for: check the schema ` +
        `against \`codex app-server generate-ts\` of that version.`
    }, options)
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
 * @category errors
 */
export class RateLimitedError extends Schema.TaggedError<RateLimitedError>()("RateLimitedError", {
  message: Schema.String,
  limit: Schema.Literals(["rpm", "tpm", "cooldown"]),
  account: Schema.String,
  retryAfterMs: Schema.Number,
  budgetMs: Schema.Number
}) {
  constructor(
    props: {
      readonly limit: "rpm" | "tpm" | "cooldown"
      readonly account: string
      readonly retryAfterMs: number
      readonly budgetMs: number
    },
    options?: Schema.MakeOptions
  ) {
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
    }, options)
  }
}

/**
 * A call named a `workspace` that has reached 100% of one of its limits
 * (`workspaceLimits`), so it was refused at once; other workspaces are not
 * affected. `limit` names the exhausted limit, `used` and `max` its figures;
 * the window resets after `retryAfterMs`.
 *
 * @since 0.2.0
 * @category errors
 */
export class WorkspaceLimitError extends Schema.TaggedError<WorkspaceLimitError>()("WorkspaceLimitError", {
  message: Schema.String,
  workspace: Schema.String,
  limit: Schema.Literals(["requestsPerMinute", "requestsPerDay", "tokensPerMinute", "tokensPerDay"]),
  used: Schema.Number,
  max: Schema.Number,
  retryAfterMs: Schema.Number
}) {
  constructor(
    props: {
      readonly workspace: string
      readonly limit: "requestsPerMinute" | "requestsPerDay" | "tokensPerMinute" | "tokensPerDay"
      readonly used: number
      readonly max: number
      readonly retryAfterMs: number
    },
    options?: Schema.MakeOptions
  ) {
    super({
      ...props,
      message: `Workspace "${props.workspace}" has reached its ${props.limit} limit (${props.used} of ${props.max}), ` +
        `so the call was refused. The window resets in ${Math.ceil(props.retryAfterMs)} ms; retry then, or raise ` +
        `this workspace's limit in workspaceLimits.`
    }, options)
  }
}

/**
 * Every error of this library, as one Schema (a union discriminated by
 * `_tag`) and one type: put it in an RPC's or an HttpApi endpoint's error
 * channel to carry the pool's errors across, e.g.
 * `Rpc.make("Run", { success: RunResult, error: CodexWorkerPoolError })`.
 *
 * @since 0.1.0
 * @category schemas
 */
export const CodexWorkerPoolError = Schema.Union([
  PoolShutdownError,
  AcquireTimeoutError,
  QueueFullError,
  WorkerNotLeasedError,
  UnknownAccountError,
  AccountRemovedError,
  AccountExistsError,
  PoolOptionsError,
  JsonRpcError,
  RequestTimeoutError,
  ChannelClosedError,
  WorkerCrashedError,
  WorkerSpawnError,
  LeaseTimeoutError,
  ResponseDecodeError,
  ProtocolError,
  WorkerStdioError,
  RateLimitedError,
  WorkspaceLimitError
])

/**
 * Any error of this library; see the {@link CodexWorkerPoolError} Schema.
 *
 * @since 0.1.0
 * @category models
 */
export type CodexWorkerPoolError = typeof CodexWorkerPoolError.Type

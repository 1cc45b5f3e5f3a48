/**
 * One `codex app-server` worker: a child process speaking newline-delimited
 * JSON-RPC over stdio, initialized once, whose whole process tree is killed
 * when it ends.
 *
 * Guarantees:
 * - `initialize` is sent exactly once per process and its result cached in
 *   `initializeResult` (the server refuses a second one), followed by
 *   `initialized`; a spawn that fails, exits before answering, or does not
 *   answer within `spawnTimeout` fails with `WorkerSpawnError` naming the
 *   command, the failed step (`reason`) and the last stderr lines;
 * - `codexHome`, when given, is created (with its parents, mode 0700) if it
 *   does not exist, since codex exits at start without it; a relative one is
 *   taken relative to `cwd`. One that cannot be created fails the spawn with
 *   `WorkerSpawnError` (reason `"CodexHome"`) naming it, before any process;
 * - the tree is tracked from the moment the process exists: scanned at spawn,
 *   every 10 ms until `initialize` is answered (a codex that dies during the
 *   handshake re-parents its children at once), then every
 *   `processScanInterval`. It is killed on every failed spawn (exit,
 *   timeout, interruption) exactly as on every other end of a worker;
 * - when the process exits, every pending request fails at once with one
 *   `WorkerCrashedError` (exit code or signal and the last 50 stderr lines,
 *   each cut at 2 KiB), whichever pipe noticed first (stdout ending, or a
 *   write to stdin failing); later requests fail at once, `closed` resolves,
 *   and the descendants it leaves behind are killed;
 * - when a pipe breaks while the process still runs (it closed its stdin, its
 *   stdout ended or could not be read; told apart from a crash by waiting up
 *   to 1 s for the exit), the worker ends the same way with
 *   `WorkerStdioError`, and its whole tree is killed;
 * - when the server breaks the protocol (a malformed response to a pending
 *   request, a stdout line longer than `maxLineBytes`), the worker ends the
 *   same way with `ProtocolError`, and its whole tree is killed;
 * - when the worker's scope closes (idle retirement, invalidate, lease
 *   timeout, shutdown) the whole tree is killed: SIGTERM to codex's process
 *   group and to every descendant recorded in other groups or sessions (MCP
 *   servers, sandboxes), `killGrace` of grace, then SIGKILL; bounded by
 *   `killGrace` + about 1 s. Descendants are found by walking `/proc` while
 *   the worker lives (see above, and before each kill), each recorded with its
 *   start time so that a reused PID is never signalled;
 * - while the worker lives its tree is registered with the host-exit hooks:
 *   if the host exits without shutting down, the tree is SIGKILLed;
 * - spans: `make` runs under `CodexWorker.spawn` (`codex.command`,
 *   `codex.pid`), the handshake under its child `CodexWorker.initialize`;
 *   each request runs under a `codex.request` span (kind `client`: `rpc.method`,
 *   `rpc.jsonrpc.request_id`, `codex.pid`, and `error.type` when it fails), a
 *   child of the caller's span, made only when the caller's fiber has a tracer
 *   installed; the tree kill runs under `ProcessTree.kill` (`codex.pid`, how
 *   many processes got SIGTERM, whether SIGKILL followed, survivors), a child
 *   of the span of the fiber that called `terminate`, or a trace of its own
 *   when the worker's scope closed or it crashed.
 *
 * Limits: a line written just before codex closes its stdin can be lost
 * without an error (the pipe accepted it): the break shows at the next write,
 * so a request in flight at that moment waits for its timeout or the lease
 * timeout. A descendant started and re-parented (its parent died) between two
 * scans is not recorded, unless it stayed in codex's process group. During
 * the handshake that window is one scan interval, 10 ms. Measured on a 2-core
 * Linux machine with a launcher that starts a child in a new session and exits
 * D ms later: 50% of the children escaped at D = 0, 15% at 5 ms, none from
 * 8 ms on. A scan of a 20-thread codex takes about 0.15 ms, so the fast scans
 * cost about 1.5% of a core during the ~125 ms handshake of codex 0.169.
 * After the handshake the window is `processScanInterval`. A blocked event
 * loop delays scans and widens the window. When the host process is SIGKILLed
 * nothing of ours runs: codex exits on stdin EOF, its descendants in other
 * groups may not (see the watchdog option of the pool). Linux only for
 * descendant tracking (`/proc`).
 *
 * @since 0.1.0
 */
import * as fs from "node:fs"
import * as path from "node:path"
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import type { ChildProcessSpawner } from "effect/process/ChildProcessSpawner"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import type * as Stream from "effect/Stream"
import type * as CodexProtocol from "./CodexProtocol.ts"
import {
  ChannelClosedError,
  type JsonRpcError,
  type LeaseTimeoutError,
  ProtocolError,
  type RequestTimeoutError,
  ResponseDecodeError,
  WorkerCrashedError,
  WorkerSpawnError,
  WorkerStdioError
} from "./errors.ts"
import * as AppServerProcess from "./internal/appServerProcess.ts"
import { defaultCodexCommand } from "./internal/codexBinary.ts"
import { processSettings } from "./internal/options.ts"
import * as ExitHooks from "./internal/exitHooks.ts"
import * as JsonRpc from "./internal/jsonRpc.ts"
import * as ProcessTree from "./internal/processTree.ts"
import { withoutParentSpan } from "./internal/tracing.ts"
import { decodeResult, trackClose } from "./internal/workerClose.ts"
import type { Watchdog } from "./internal/watchdog.ts"

export type {
  IncomingMessage,
  IncomingNotification,
  IncomingRequest,
  JsonRpcErrorObject,
  JsonRpcId
} from "./internal/jsonRpc.ts"

/**
 * How a codex process is started. Times are `Duration.Input`s (`"30 seconds"`,
 * `Duration.seconds(2)`, or a number of milliseconds). Bad options are a
 * defect (`PoolOptionsError` naming the option).
 *
 * @since 0.1.0
 * @category models
 */
export interface ProcessOptions {
  /** Executable. Default: the native binary of `@openai/codex` when installed, else `codex` on PATH. */
  readonly command?: string | undefined
  /** Arguments. Default `["app-server"]`. */
  readonly args?: ReadonlyArray<string> | undefined
  /**
   * Environment variables set on top of this process's (`undefined` removes
   * one). A value may be `Redacted` (an API key): it is unwrapped only for
   * the spawn, so it never shows in logs, errors or inspected options.
   */
  readonly env?: Readonly<Record<string, string | Redacted.Redacted<string> | undefined>> | undefined
  /** Working directory of the process. */
  readonly cwd?: string | undefined
  /**
   * Sets `CODEX_HOME`: the directory codex keeps its config, sessions and logs
   * in. Created (with its parents, mode 0700) when missing; a relative path is
   * taken relative to `cwd`.
   */
  readonly codexHome?: string | undefined
  /**
   * Longest time from spawn to the answer to `initialize`. Default 30 seconds;
   * `Duration.infinity`: no limit. Must be > 0.
   */
  readonly spawnTimeout?: Duration.Input | undefined
  /**
   * Grace between SIGTERM and SIGKILL when a worker's tree is killed. Default
   * 2 seconds; zero: SIGKILL at once. Must be finite: kills are bounded.
   */
  readonly killGrace?: Duration.Input | undefined
  /**
   * How often the worker's descendants are looked up in `/proc`. Default 1 second;
   * `Duration.infinity`: only at spawn and before each kill. Must be > 0.
   * From spawn until `initialize` is answered they are looked up every 10 ms
   * (or this interval, when shorter).
   */
  readonly processScanInterval?: Duration.Input | undefined
  /**
   * Longest line codex may write to stdout, in bytes. A longer line ends the
   * worker with `ProtocolError`. Default 67108864 (64 MiB).
   */
  readonly maxLineBytes?: number | undefined
  /** `clientInfo` sent with `initialize`. Default `{ name: "codex-worker-pool", version }`. */
  readonly clientInfo?: { readonly name: string; readonly version: string; readonly title?: string | undefined } | undefined
  /** `capabilities` sent with `initialize`. Default `null`. */
  readonly capabilities?: unknown
}

/**
 * How a worker's process ended.
 *
 * @since 0.1.0
 * @category models
 */
export interface CloseInfo {
  /** Exit code, when the process exited by itself (a crash); null when the pool closed the worker. */
  readonly code: number | null
  /** The signal that ended it, for a crash; null when the pool closed the worker. */
  readonly signal: string | null
  /**
   * Why the channel closed: a crash, a pipe broken while the process ran, a
   * protocol error, a lease timeout, or a normal finalization (`ChannelClosedError`).
   */
  readonly error: WorkerCrashedError | WorkerStdioError | ProtocolError | LeaseTimeoutError | ChannelClosedError
}

/**
 * Everything a request to a worker can fail with.
 *
 * @since 0.1.0
 * @category errors
 */
export type RequestError =
  | JsonRpcError
  | RequestTimeoutError
  | ChannelClosedError
  | WorkerCrashedError
  | WorkerStdioError
  | ProtocolError
  | LeaseTimeoutError

/**
 * Options of one request.
 *
 * @since 0.1.0
 * @category models
 */
export interface RequestOptions {
  /** Fail with `RequestTimeoutError` if no response arrives in time. No limit by default. */
  readonly timeout?: Duration.Input | undefined
}

/**
 * A running, initialized codex app-server.
 *
 * @since 0.1.0
 * @category models
 */
export interface CodexWorker {
  /** The codex process id. */
  readonly pid: number
  /** The server's answer to `initialize` (sent once per process). */
  readonly initializeResult: CodexProtocol.InitializeResponse
  /** Sends a request and waits for its result. Interrupting the fiber abandons it. */
  readonly request: (
    method: string,
    params?: unknown,
    options?: { readonly timeout?: Duration.Input | undefined }
  ) => Effect.Effect<unknown, RequestError>
  /**
   * Sends a request of the pinned app-server protocol, typed: `params` must
   * have the method's params type (optional when it takes none) and the
   * result has its result type, e.g. `v2.ThreadStartResponse` for
   * `"thread/start"` (see `CodexProtocol`). Static types only: the result is
   * not checked at runtime (use `requestSchema` for that).
   */
  readonly call: <M extends CodexProtocol.ClientRequestMethod>(
    method: M,
    ...args: CodexProtocol.RequestArgs<M, RequestOptions>
  ) => Effect.Effect<CodexProtocol.RequestResult<M>, RequestError>
  /**
   * Sends a request and decodes its result with `schema`; a result that does
   * not match fails with `ResponseDecodeError` (method and issue). `params`
   * is typed when `method` is one of the pinned protocol's.
   */
  readonly requestSchema: <A, M extends string>(
    method: M,
    params: M extends CodexProtocol.ClientRequestMethod ? CodexProtocol.RequestParams<M> : unknown,
    schema: Schema.Decoder<A>,
    options?: RequestOptions | undefined
  ) => Effect.Effect<A, RequestError | ResponseDecodeError>
  /** Sends a notification. */
  readonly notify: (method: string, params?: unknown) => Effect.Effect<void, RequestError>
  /** Answers a server request (approvals, tool calls) with a result. */
  readonly respond: (id: JsonRpc.JsonRpcId, result: unknown) => Effect.Effect<void, RequestError>
  /** Answers a server request with an error. */
  readonly respondError: (id: JsonRpc.JsonRpcId, error: JsonRpc.JsonRpcErrorObject) => Effect.Effect<void, RequestError>
  /** Every notification and server request from now until the worker closes. */
  readonly messages: Stream.Stream<JsonRpc.IncomingMessage>
  /** Calls `listener` synchronously for every notification and server request; returns the unsubscribe. */
  readonly subscribe: (listener: (message: JsonRpc.IncomingMessage) => void) => () => void
  /** Calls `listener` once when the worker closes (at once if it already has); returns the unsubscribe. */
  readonly onClose: (listener: (info: CloseInfo) => void) => () => void
  /** Waits until the worker has closed. */
  readonly closed: Effect.Effect<CloseInfo>
  /** How the worker closed, or `undefined` while it is open. */
  readonly closeInfo: () => CloseInfo | undefined
  /** Live processes in the worker's tree (codex and its descendants). */
  readonly processCount: () => number
  /** Resident memory of the worker's tree, in bytes. */
  readonly residentBytes: () => number
  /**
   * Takes the worker down now: pending and later requests fail with `error`,
   * and its whole process tree is killed. Waits for the kill.
   */
  readonly terminate: (error: WorkerCrashedError | LeaseTimeoutError | ChannelClosedError) => Effect.Effect<void>
}

const VERSION = "0.2.0"

const liveClock = Clock.Clock.defaultValue()

// What went wrong, briefly: a PlatformError's message names the call and the
// whole command line; its cause says what happened ("write EPIPE").
const describe = (error: unknown): string =>
  error instanceof Error ? (error.cause instanceof Error ? error.cause.message : error.message) : String(error)

/** How often a worker's tree is scanned from spawn until `initialize` is answered. */
const HANDSHAKE_SCAN_MS = 10

/**
 * Makes sure `dir` is a directory, creating it (and its parents, mode 0700)
 * when it does not exist: codex exits at start when `CODEX_HOME` is missing.
 * Plain `node:fs`: Effect's `FileSystem` would add a requirement to `make`.
 */
const ensureCodexHome = (command: string, dir: string): Effect.Effect<void, WorkerSpawnError> =>
  Effect.flatMap(
    Effect.promise(async (): Promise<string | undefined> => {
      try {
        const stat = await fs.promises.stat(dir)
        return stat.isDirectory() ? undefined : `codexHome "${dir}" is not a directory`
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code
        if (code !== "ENOENT" && code !== "ENOTDIR") {
          return `codexHome "${dir}" is not accessible (${(error as Error).message})`
        }
      }
      try {
        await fs.promises.mkdir(dir, { recursive: true, mode: 0o700 })
        return undefined
      } catch (error) {
        return `codexHome "${dir}" does not exist and could not be created (${(error as Error).message})`
      }
    }),
    (problem) =>
      problem === undefined ? Effect.void : Effect.fail(new WorkerSpawnError({ command, reason: "CodexHome", cause: problem }))
  )

/**
 * Spawns and initializes a worker in the current scope; closing the scope
 * kills its whole process tree. It spawns with the `ChildProcessSpawner` in
 * the context: on Node, `layerChildProcessSpawner` from
 * `codex-worker-pool/node`.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { CodexWorker } from "codex-worker-pool"
 * import { layerChildProcessSpawner } from "codex-worker-pool/node"
 *
 * const program = Effect.scoped(Effect.gen(function*() {
 *   const worker = yield* CodexWorker.make({ codexHome: "/tmp/codex-home" })
 *   const { thread } = yield* worker.call("thread/start", { ephemeral: true })
 *   return thread.id
 * })).pipe(Effect.provide(layerChildProcessSpawner))
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  options: ProcessOptions = {},
  /** @internal The pool's opt-in watchdog, which must learn this worker's tree. */
  watchdog?: Watchdog | undefined
): Effect.Effect<CodexWorker, WorkerSpawnError, ChildProcessSpawner | Scope.Scope> =>
  Effect.gen(function*() {
    const { graceMs, scanIntervalMs, spawnTimeoutMs } = processSettings(options)
    const command = options.command ?? defaultCodexCommand()
    yield* Effect.annotateCurrentSpan("codex.command", command)
    // Absolute, so that codex (started in `cwd`) and the mkdir below mean the same directory.
    const codexHome = options.codexHome === undefined ? undefined : path.resolve(options.cwd ?? "", options.codexHome)
    if (codexHome !== undefined) yield* ensureCodexHome(command, codexHome)
    const env = plainEnv(codexHome === undefined ? options.env : { ...options.env, CODEX_HOME: codexHome })

    /** Tracks a freshly spawned process: its tree, the exit hooks, the watchdog, and the memoized kill. */
    const track = (proc: AppServerProcess.AppServerProcess) => {
      const tree = ProcessTree.ProcessTree.fromPid(proc.pid)
      tree.refresh()
      const unregisterExitHook = ExitHooks.register(tree)
      const untrack = watchdog?.track(tree)
      let killing: Promise<void> | undefined
      // The services of the fiber that called `terminate`, once one did.
      let terminatedBy: Context.Context<never> | undefined
      // Memoized: a crash and the finalizers may all ask for the kill. It runs
      // with the services of the fiber that terminated the worker, else of the
      // first that asks (its tracer and logger, and its span: the
      // `ProcessTree.kill` span is a child of that fiber's), but on the live
      // clock: real processes need real time even under a TestClock.
      const killTree = Effect.withFiber((fiber) => {
        if (killing === undefined) {
          killing = Effect.runPromiseWith(Context.add(terminatedBy ?? fiber.context, Clock.Clock, liveClock))(
            ProcessTree.kill(tree, { graceMs }).pipe(Effect.annotateSpans("codex.pid", proc.pid), Effect.asVoid)
          )
        }
        return Effect.promise(() => killing!)
      })
      const terminatedIn = (context: Context.Context<never>) => {
        terminatedBy ??= context
      }
      const killAndReap = killTree.pipe(
        Effect.andThen(Effect.timeoutOption(proc.exit, "1 second")),
        Effect.ensuring(Effect.sync(() => {
          unregisterExitHook()
          untrack?.()
        }))
      )
      return { proc, tree, killTree, killAndReap, terminatedIn }
    }
    // Finalizers run with the services they were registered with, and a fiber
    // forked here keeps them: the spawn's span is not theirs (a kill on scope
    // close or after a crash starts a trace of its own).
    const finalizing = Effect.updateContext<never, never>(withoutParentSpan<never>)
    // Spawn and tracking in one uninterruptible step, and the kill registered
    // with it: every failed spawn kills the tree, like every other end of a
    // worker. This release runs last on scope close, before Effect's own.
    const { killAndReap, killTree, proc, terminatedIn, tree } = yield* Effect.acquireRelease(
      Effect.map(
        AppServerProcess.spawn({
          command,
          args: options.args ?? ["app-server"],
          env,
          cwd: options.cwd,
          maxLineBytes: options.maxLineBytes,
          // Our own tree kill runs first; Effect's group sweep after it only
          // has leftovers to deal with.
          forceKillAfter: "100 millis"
        }),
        track
      ),
      (tracked) => finalizing(tracked.killAndReap)
    )
    yield* Effect.annotateCurrentSpan("codex.pid", proc.pid)
    // Until `initialize` is answered, scan often: a descendant must be seen
    // before it can be re-parented, and a codex that dies during the handshake
    // re-parents all of its children at once. On the live clock too.
    const handshakeScan = yield* Effect.forkScoped(Effect.provideService(
      ProcessTree.refreshEvery(tree, Math.min(HANDSHAKE_SCAN_MS, scanIntervalMs)),
      Clock.Clock,
      Clock.Clock.defaultValue()
    ))

    // A pipe broke (`stream`, `detail` says how): a crash if the process has
    // exited or exits within 1 s, else the process still runs but cannot be
    // talked to. Waits run on the live clock: real processes need real time
    // even under a TestClock.
    const transportError = (stream: "stdin" | "stdout", detail: string) =>
      Effect.gen(function*() {
        const status = yield* Effect.timeoutOption(proc.exit, "1 second")
        if (Option.isNone(status)) return new WorkerStdioError({ pid: proc.pid, stream, detail })
        yield* Effect.timeoutOption(proc.stderrClosed, "200 millis")
        return new WorkerCrashedError({
          pid: proc.pid,
          code: status.value.code,
          signal: status.value.signal,
          stderrTail: yield* proc.stderrTail
        })
      }).pipe(Effect.provideService(Clock.Clock, liveClock))
    const channel = yield* JsonRpc.make<WorkerCrashedError | WorkerStdioError | LeaseTimeoutError>({
      input: proc.stdoutLines,
      write: proc.write,
      writeFailed: proc.stdinFailed,
      onInputEnd: (exit) => {
        if (Exit.isSuccess(exit)) return transportError("stdout", "its stdout ended")
        const error = Cause.findErrorOption(exit.cause)
        return Option.isSome(error) && error.value instanceof ProtocolError
          ? Effect.succeed(error.value)
          : transportError("stdout", `reading its stdout failed: ${describe(Cause.squash(exit.cause))}`)
      },
      onWriteFailure: (error) => transportError("stdin", `writing to its stdin failed: ${describe(error)}`),
      requestSpan: { name: "codex.request", attributes: { "codex.pid": proc.pid } }
    })

    // Runs first on scope close: stop the channel, then kill the whole tree.
    yield* Effect.addFinalizer(() =>
      channel.shutdown(
        new ChannelClosedError({ reason: "the worker was finalized (idle retirement, invalidate or shutdown)" })
      ).pipe(Effect.andThen(killAndReap), finalizing)
    )

    // Synchronous, before pending requests fail: whoever reacts to a failed
    // request finds the worker already out of service. A listener's failure is
    // logged with the worker maker's logger (the pool's).
    const closing = trackClose(channel, {
      toInfo: (error): CloseInfo =>
        error._tag === "WorkerCrashedError"
          ? { code: error.code, signal: error.signal, error }
          : { code: null, signal: null, error },
      logContext: yield* Effect.context<never>(),
      label: "codex worker"
    })
    // Whatever ended the channel, nothing of this worker may outlive it.
    yield* Effect.forkScoped(finalizing(Effect.andThen(channel.closed, killTree)))
    yield* Effect.forkScoped(ProcessTree.refreshEvery(tree, scanIntervalMs))

    const handshakeFailed = (error: RequestError | WorkerSpawnError) =>
      error._tag === "WorkerSpawnError"
        ? Effect.fail(error)
        : error._tag === "WorkerCrashedError"
        ? Effect.fail(new WorkerSpawnError({ command, reason: "ExitedEarly", cause: error }))
        : Effect.flatMap(proc.stderrTail, (stderrTail) =>
          Effect.fail(
            new WorkerSpawnError({ command, reason: "InitializeFailed", pid: proc.pid, stderrTail, cause: error })
          ))
    const initializeResult = yield* channel.request("initialize", {
      clientInfo: options.clientInfo ?? { name: "codex-worker-pool", version: VERSION },
      capabilities: options.capabilities ?? null
    }).pipe(
      Effect.timeoutOrElse({
        duration: Duration.millis(spawnTimeoutMs),
        orElse: () =>
          Effect.flatMap(proc.stderrTail, (stderrTail) =>
            Effect.fail(
              new WorkerSpawnError({
                command,
                reason: "Timeout",
                pid: proc.pid,
                stderrTail,
                cause: `no answer to initialize within spawnTimeout (${spawnTimeoutMs} ms)`
              })
            ))
      }),
      Effect.tap(() => channel.notify("initialized")),
      Effect.catch(handshakeFailed),
      Effect.withSpan("CodexWorker.initialize", { attributes: { "codex.pid": proc.pid } })
    )
    yield* Fiber.interrupt(handshakeScan)
    tree.refresh()

    const worker: CodexWorker = {
      pid: proc.pid,
      initializeResult: initializeResult as CodexProtocol.InitializeResponse,
      request: (method, params, requestOptions) => channel.request(method, params, requestOptions),
      call: channel.request as CodexWorker["call"],
      requestSchema: (method, params, schema, requestOptions) =>
        Effect.flatMap(channel.request(method, params, requestOptions), decodeResult(method, schema)),
      notify: channel.notify,
      respond: channel.respond,
      respondError: channel.respondError,
      messages: channel.messages,
      subscribe: channel.subscribe,
      onClose: closing.onClose,
      closed: closing.closed,
      closeInfo: closing.closeInfo,
      processCount: () => tree.liveCount(),
      residentBytes: () => tree.residentBytes(),
      // The kill is this caller's, whichever fiber gets to it first (the
      // crash watcher wakes up as the channel closes).
      terminate: (error) =>
        Effect.withFiber((fiber) => {
          terminatedIn(fiber.context)
          return Effect.andThen(channel.shutdown(error), killTree)
        })
    }
    return worker
  }).pipe(Effect.withSpan("CodexWorker.spawn"))

/** The environment with its `Redacted` values revealed, for the spawn only. */
const plainEnv = (
  env: Readonly<Record<string, string | Redacted.Redacted<string> | undefined>> | undefined
): Record<string, string | undefined> | undefined => {
  if (env === undefined) return undefined
  return Object.fromEntries(
    Object.entries(env).map(([name, value]) => [name, Redacted.isRedacted(value) ? Redacted.value(value) : value])
  )
}


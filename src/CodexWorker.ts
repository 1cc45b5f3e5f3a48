/**
 * One `codex app-server` worker: a child process speaking newline-delimited
 * JSON-RPC over stdio, initialized once, whose whole process tree is killed
 * when it ends.
 *
 * Guarantees:
 * - `initialize` is sent exactly once per process and its result cached in
 *   `initializeResult` (the server refuses a second one), followed by
 *   `initialized`; a spawn that fails, exits before answering, or does not
 *   answer within `spawnTimeoutMs` fails with `WorkerSpawnError` naming the
 *   command and the cause, and leaves no process behind;
 * - when the process exits, every pending request fails at once with one
 *   `WorkerCrashedError` (exit code or signal and the last 50 stderr lines,
 *   each cut at 2 KiB),
 *   whichever pipe noticed first (stdout ending, or a write to stdin failing);
 *   later requests fail at once, `closed` resolves, and the descendants it
 *   leaves behind are killed;
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
 *   servers, sandboxes), `killGraceMs` of grace, then SIGKILL; bounded by
 *   `killGraceMs` + about 1 s. Descendants are found by walking `/proc` while
 *   the worker lives (every `processScanIntervalMs` and before each kill),
 *   each recorded with its start time so that a reused PID is never signalled;
 * - while the worker lives its tree is registered with the host-exit hooks:
 *   if the host exits without shutting down, the tree is SIGKILLed.
 *
 * Limits: a line written just before codex closes its stdin can be lost
 * without an error (the pipe accepted it): the break shows at the next write,
 * so a request in flight at that moment waits for its timeout or the lease
 * timeout. A descendant started and re-parented between two scans is not
 * recorded (codex's own process group still catches it when it stays in that
 * group). When the host process is SIGKILLed nothing of ours runs: codex exits
 * on stdin EOF, its descendants in other groups may not (see the watchdog
 * option of the pool). Linux only for descendant tracking (`/proc`).
 *
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import type { ChildProcessSpawner } from "effect/process/ChildProcessSpawner"
import type * as Scope from "effect/Scope"
import type * as Stream from "effect/Stream"
import {
  ChannelClosedError,
  type JsonRpcError,
  type LeaseTimeoutError,
  ProtocolError,
  type RequestTimeoutError,
  WorkerCrashedError,
  WorkerSpawnError,
  WorkerStdioError
} from "./errors.ts"
import * as AppServerProcess from "./internal/appServerProcess.ts"
import { defaultCodexCommand } from "./internal/codexBinary.ts"
import * as ExitHooks from "./internal/exitHooks.ts"
import * as JsonRpc from "./internal/jsonRpc.ts"
import * as ProcessTree from "./internal/processTree.ts"
import type { Watchdog } from "./internal/watchdog.ts"

export type {
  IncomingMessage,
  IncomingNotification,
  IncomingRequest,
  JsonRpcErrorObject,
  JsonRpcId
} from "./internal/jsonRpc.ts"

/**
 * How a codex process is started.
 *
 * @since 0.1.0
 * @category models
 */
export interface ProcessOptions {
  /** Executable. Default: the native binary of `@openai/codex` when installed, else `codex` on PATH. */
  readonly command?: string | undefined
  /** Arguments. Default `["app-server"]`. */
  readonly args?: ReadonlyArray<string> | undefined
  /** Environment variables set on top of this process's (`undefined` removes one). */
  readonly env?: Readonly<Record<string, string | undefined>> | undefined
  /** Working directory of the process. */
  readonly cwd?: string | undefined
  /** Sets `CODEX_HOME`: the directory codex keeps its config, sessions and logs in. */
  readonly codexHome?: string | undefined
  /** Longest time from spawn to the answer to `initialize`. Default 30000 ms. */
  readonly spawnTimeoutMs?: number | undefined
  /** Grace between SIGTERM and SIGKILL when a worker's tree is killed. Default 2000 ms. */
  readonly killGraceMs?: number | undefined
  /** How often the worker's descendants are looked up in `/proc`. Default 1000 ms. */
  readonly processScanIntervalMs?: number | undefined
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
 * A running, initialized codex app-server.
 *
 * @since 0.1.0
 * @category models
 */
export interface CodexWorker {
  /** The codex process id. */
  readonly pid: number
  /** The server's answer to `initialize` (sent once per process). */
  readonly initializeResult: unknown
  /** Sends a request and waits for its result. Interrupting the fiber abandons it. */
  readonly request: (
    method: string,
    params?: unknown,
    options?: { readonly timeout?: Duration.Input | undefined }
  ) => Effect.Effect<unknown, RequestError>
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

const VERSION = "0.1.0"

const liveClock = Clock.Clock.defaultValue()

// What went wrong, briefly: a PlatformError's message names the call and the
// whole command line; its cause says what happened ("write EPIPE").
const describe = (error: unknown): string =>
  error instanceof Error ? (error.cause instanceof Error ? error.cause.message : error.message) : String(error)

/**
 * Spawns and initializes a worker in the current scope; closing the scope
 * kills its whole process tree.
 *
 * @example
 * ```ts
 * const program = Effect.scoped(Effect.gen(function*() {
 *   const worker = yield* CodexWorker.make({ codexHome: "/tmp/codex-home" })
 *   const { thread } = (yield* worker.request("thread/start", { ephemeral: true })) as { thread: { id: string } }
 *   return thread.id
 * })).pipe(Effect.provide(CodexWorker.layerNode))
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
    const command = options.command ?? defaultCodexCommand()
    const spawnTimeoutMs = options.spawnTimeoutMs ?? 30_000
    const graceMs = options.killGraceMs ?? 2_000
    const env = options.codexHome === undefined ? options.env : { ...options.env, CODEX_HOME: options.codexHome }
    const spawnError = (cause: unknown) => new WorkerSpawnError({ command, cause })

    const proc = yield* AppServerProcess.spawn({
      command,
      args: options.args ?? ["app-server"],
      env,
      cwd: options.cwd,
      maxLineBytes: options.maxLineBytes,
      // Our own tree kill runs first (finalizer below); Effect's group sweep
      // after it only has leftovers to deal with.
      forceKillAfter: "100 millis"
    })
    const tree = ProcessTree.ProcessTree.fromPid(proc.pid)
    const unregisterExitHook = ExitHooks.register(tree)
    const untrack = watchdog?.track(tree)
    const unregister = () => {
      unregisterExitHook()
      untrack?.()
    }
    let killing: Promise<void> | undefined
    // Memoized: a crash and the finalizer may both ask for the kill. It runs on
    // the live clock: real processes need real time even under a TestClock.
    const killTree = Effect.suspend(() => {
      if (killing === undefined) killing = Effect.runPromise(ProcessTree.kill(tree, { graceMs }).pipe(Effect.asVoid))
      return Effect.promise(() => killing!)
    })

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
      onWriteFailure: (error) => transportError("stdin", `writing to its stdin failed: ${describe(error)}`)
    })

    // Runs first on scope close: stop the channel, then kill the whole tree.
    yield* Effect.addFinalizer(() =>
      channel.shutdown(
        new ChannelClosedError({ reason: "the worker was finalized (idle retirement, invalidate or shutdown)" })
      ).pipe(
        Effect.andThen(killTree),
        Effect.andThen(Effect.timeoutOption(proc.exit, "1 second")),
        Effect.ensuring(Effect.sync(unregister))
      )
    )

    let closeInfo: CloseInfo | undefined
    const closedDeferred = Deferred.makeUnsafe<CloseInfo>()
    const closeListeners = new Set<(info: CloseInfo) => void>()
    // Synchronous, before pending requests fail: whoever reacts to a failed
    // request finds the worker already out of service.
    channel.onClose((error) => {
      const info: CloseInfo = error._tag === "WorkerCrashedError"
        ? { code: error.code, signal: error.signal, error }
        : { code: null, signal: null, error }
      closeInfo = info
      for (const listener of closeListeners) {
        try {
          listener(info)
        } catch (cause) {
          Effect.runFork(Effect.logWarning("codex worker: an onClose listener threw", cause))
        }
      }
      closeListeners.clear()
      Deferred.doneUnsafe(closedDeferred, Effect.succeed(info))
    })
    // Whatever ended the channel, nothing of this worker may outlive it.
    yield* Effect.forkScoped(Effect.andThen(channel.closed, killTree))
    yield* Effect.forkScoped(ProcessTree.refreshEvery(tree, options.processScanIntervalMs ?? 1_000))

    const initializeResult = yield* channel.request("initialize", {
      clientInfo: options.clientInfo ?? { name: "codex-worker-pool", version: VERSION },
      capabilities: options.capabilities ?? null
    }).pipe(
      Effect.timeoutOrElse({
        duration: Duration.millis(spawnTimeoutMs),
        orElse: () => Effect.fail(spawnError(`no answer to initialize within spawnTimeoutMs (${spawnTimeoutMs} ms)`))
      }),
      Effect.tap(() => channel.notify("initialized")),
      Effect.mapError((error) => error._tag === "WorkerSpawnError" ? error : spawnError(error))
    )
    tree.refresh()

    const worker: CodexWorker = {
      pid: proc.pid,
      initializeResult,
      request: (method, params, requestOptions) => channel.request(method, params, requestOptions),
      notify: channel.notify,
      respond: channel.respond,
      respondError: channel.respondError,
      messages: channel.messages,
      subscribe: channel.subscribe,
      onClose: (listener) => {
        if (closeInfo !== undefined) {
          listener(closeInfo)
          return () => {}
        }
        closeListeners.add(listener)
        return () => void closeListeners.delete(listener)
      },
      closed: Deferred.await(closedDeferred),
      closeInfo: () => closeInfo,
      processCount: () => tree.liveCount(),
      residentBytes: () => tree.residentBytes(),
      terminate: (error) => Effect.andThen(channel.shutdown(error), killTree)
    }
    return worker
  })

/**
 * The Node implementation of the process spawner a worker needs.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerNode = AppServerProcess.layerNode

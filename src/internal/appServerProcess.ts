/**
 * One `codex app-server` child process, spawned with Effect's `ChildProcess`
 * (effect/process) in a Scope: its stdout as a stream of lines, a serialized
 * writer for its stdin, the tail of its stderr, and its exit status.
 *
 * Guarantees:
 * - a spawn failure (command not found, inaccessible `cwd`, ...) is a typed
 *   `WorkerSpawnError` naming the command, never a defect;
 * - `stdoutLines` splits on "\n" only (a trailing "\r" is dropped), across
 *   chunk boundaries, with UTF-8 decoded across chunk boundaries too, and emits
 *   a last line that has no newline when stdout ends;
 * - stderr is always drained (a full pipe never blocks the child); its last
 *   `stderrLines` lines are kept and each line is logged at debug level;
 * - `write` calls never interleave: each `text` reaches stdin whole and in call
 *   order. Up to 256 writes are buffered, after which `write` waits;
 * - `exit` resolves once, when the process has exited, even when awaited after
 *   the scope has closed.
 *
 * What Effect's ChildProcess does (effect 4.1, @effect/platform-node-shared
 * NodeChildProcessSpawner), read from its source and checked with the fixture:
 * - Spawn: `node:child_process.spawn` with `detached: true` on Linux/macOS
 *   (the child leads its own process group, pgid = pid, so a terminal's Ctrl-C
 *   does not reach it), `shell: false`, `stdio: pipe` x3. `cwd` is checked with
 *   `FileSystem.access` first, so the Node layer needs FileSystem and Path (see
 *   `layerChildProcessSpawner` in src/node.ts). `env` replaces the environment
 *   unless `extendEnv: true`
 *   (Effect's default is `false`; this module defaults it to `true`); with no
 *   `env` the child inherits `process.env`. The spawn effect resolves on Node's
 *   "spawn" event and fails with a `PlatformError` on "error" (`NotFound` with
 *   the ENOENT error as `cause`); this module maps that to `WorkerSpawnError`.
 * - `pid` is on the handle (`handle.pid`).
 * - Exit: `handle.exitCode` resolves with the code; when a signal killed the
 *   process it FAILS with a `PlatformError` whose `cause` is an `Error` saying
 *   "Process interrupted due to receipt of signal: 'SIGTERM'". The signal is not
 *   exposed otherwise, so this module parses it from that message ("UNKNOWN" if
 *   the wording ever changes).
 * - Scope close (the release of `spawn`), with the default `detached: true`:
 *   - still running: `killSignal` (default SIGTERM) to the whole group
 *     (`kill(-pid)`); without `forceKillAfter` it then waits for the leader
 *     with NO time limit plus up to 1 s for the rest of the group and never
 *     escalates; with `forceKillAfter` it waits that long for the group, sends
 *     SIGKILL to the group and waits up to 1 s more;
 *   - exited with code 0, or with a non-zero code: the same group termination
 *     for whatever is left of the group (ESRCH when nothing is, which ends it);
 *   - killed by a signal: nothing.
 *   Also, the moment the leader exits with a non-zero code, the group gets
 *   `killSignal` (no wait). Zombies count as alive for these waits
 *   (`kill(-pgid, 0)` succeeds on them) and PID 1 on these machines does not
 *   reliably reap orphans, so a dead grandchild left in the group can make
 *   scope close take up to `forceKillAfter` + 1 s (measured with the fixture:
 *   1.3-1.7 s with the 2 s default, 1.5 s with 500 ms; 2-16 ms without a
 *   grandchild). Descendants in other
 *   groups or sessions (codex's MCP servers, bubblewrap sandboxes) are never
 *   reached.
 * - With `detached: false` the child stays in our process group (Ctrl-C
 *   reaches it) and the release handles only the leader: SIGTERM if running,
 *   SIGKILL after `forceKillAfter`, nothing once it has exited, no group waits
 *   (measured: a few ms even with a grandchild, `forceKillAfter` for a child
 *   ignoring SIGTERM). Its descendants are then not signalled at all: pair it with a
 *   whole-tree kill (processTree.ts).
 * - `handle.kill({ killSignal, forceKillAfter })` runs the same termination on
 *   demand; {@link AppServerProcess.kill} exposes it.
 * - Turning Effect's kill off: only `handle.unref` does (the release then skips
 *   a running or cleanly exited process, but still terminates the group after a
 *   non-zero exit, and the child no longer keeps Node alive); not used here.
 *   To do a whole-tree kill first, kill the tree and await `exit` BEFORE closing
 *   the scope: the release then finds the leader gone and only sweeps its group
 *   (see the zombie cost above, or use `detached: false` to skip the sweep).
 *   `forceKillAfter` defaults to 2 s here, so scope close can never hang.
 * - Closing the scope also ends stdin (this module's writer fiber is
 *   interrupted before the release runs, which destroys the pipe); the
 *   app-server exits on stdin EOF.
 *
 * Limits: `stdoutLines` can be run once (one reader; it must be read, or the
 * child blocks on a full pipe). `stderrTail` may miss lines the process wrote
 * just before exiting until `stderrClosed` resolves; a descendant that keeps
 * stderr open delays that, so bound the wait. Linux and macOS only (Windows
 * kill semantics differ and are untested).
 *
 * @internal
 */
import * as Cause from "effect/Cause"
import * as Deferred from "effect/Deferred"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as PlatformError from "effect/PlatformError"
import * as ChildProcess from "effect/process/ChildProcess"
import type { ChildProcessSpawner } from "effect/process/ChildProcessSpawner"
import * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { WorkerSpawnError } from "../errors.ts"

/** Options of {@link spawn}. */
export interface AppServerProcessOptions {
  /** The executable (a path, or a name looked up in PATH). */
  readonly command: string
  readonly args?: ReadonlyArray<string> | undefined
  /** Variables to set; `undefined` removes a variable. */
  readonly env?: Readonly<Record<string, string | undefined>> | undefined
  /** Start from `process.env` and apply `env` on top. Default `true`. */
  readonly extendEnv?: boolean | undefined
  readonly cwd?: string | undefined
  /** How many of the last stderr lines to keep. Default 50. */
  readonly stderrLines?: number | undefined
  /**
   * When the scope closes while the process runs: how long to wait after
   * SIGTERM to its process group before sending SIGKILL. Default 2 seconds.
   */
  readonly forceKillAfter?: Duration.Input | undefined
  /**
   * Start the process in its own process group (Effect's default on Linux and
   * macOS, and the default here). With `false` it stays in this process's group
   * and Effect's scope-close handling signals only the process itself; see the
   * module header.
   */
  readonly detached?: boolean | undefined
}

/** How a process ended: `code` when it exited, `signal` when a signal killed it. */
export interface ExitStatus {
  readonly code: number | null
  readonly signal: string | null
}

/** A running app-server process. Everything in it is bound to the scope of {@link spawn}. */
export interface AppServerProcess {
  readonly pid: number
  /** stdout, one element per line, without the newline. Run it once. */
  readonly stdoutLines: Stream.Stream<string, PlatformError.PlatformError>
  /**
   * Writes `text` to stdin exactly as given (include the "\n"). Fails if stdin
   * was closed with `closeStdin` or writing to it failed earlier.
   */
  readonly write: (text: string) => Effect.Effect<void, PlatformError.PlatformError>
  /** Ends stdin once everything written before has been flushed. Idempotent. */
  readonly closeStdin: Effect.Effect<void>
  /** The last stderr lines, oldest first. */
  readonly stderrTail: Effect.Effect<ReadonlyArray<string>>
  /** Resolves when stderr has closed and all of it is in `stderrTail`. */
  readonly stderrClosed: Effect.Effect<void>
  /** Waits for the process to exit. */
  readonly exit: Effect.Effect<ExitStatus>
  /** The exit status if the process has exited, else `undefined`. */
  readonly exitStatus: Effect.Effect<ExitStatus | undefined>
  /**
   * Effect's process-group termination: `signal` (default SIGTERM) to the
   * group, SIGKILL after `forceKillAfter` (default: the spawn option). Waits
   * for the group to be gone. Errors (already gone) are ignored.
   */
  readonly kill: (options?: {
    readonly signal?: ChildProcess.Signal | undefined
    readonly forceKillAfter?: Duration.Input | undefined
  }) => Effect.Effect<void>
}

/**
 * Splits a stream of text on "\n" (dropping a "\r" before it), keeping partial
 * lines across chunks without re-copying them, and emits a last unterminated line.
 */
export const splitLines = <E, R>(self: Stream.Stream<string, E, R>): Stream.Stream<string, E, R> =>
  Stream.suspend(() => {
    let pieces: Array<string> = []
    const finish = (piece: string): string => {
      const line = pieces.length === 0 ? piece : pieces.join("") + piece
      pieces = []
      return line.endsWith("\r") ? line.slice(0, -1) : line
    }
    return Stream.mapAccum(self, () => undefined, (state, chunk: string) => {
      const lines: Array<string> = []
      let start = 0
      let newline = chunk.indexOf("\n")
      while (newline !== -1) {
        lines.push(finish(chunk.slice(start, newline)))
        start = newline + 1
        newline = chunk.indexOf("\n", start)
      }
      if (start < chunk.length) pieces.push(chunk.slice(start))
      return [state, lines] as const
    }, { onHalt: () => pieces.length === 0 ? [] : [finish("")] })
  })

const signalPattern = /signal: '([A-Z0-9]+)'/

const toExitStatus = (exit: Exit.Exit<number, PlatformError.PlatformError>): ExitStatus => {
  if (Exit.isSuccess(exit)) return { code: exit.value, signal: null }
  const error = Cause.squash(exit.cause)
  const inner = error instanceof PlatformError.PlatformError && error.cause instanceof Error ? error.cause : error
  const text = inner instanceof Error ? inner.message : String(inner)
  return { code: null, signal: signalPattern.exec(text)?.[1] ?? "UNKNOWN" }
}

const stdinClosedError = (description: string) =>
  PlatformError.systemError({ _tag: "BadResource", module: "ChildProcess", method: "write", description })

/**
 * Spawns the process. Its pipes, reader fibers and the process itself belong
 * to the current scope; see the module header for what closing it does.
 */
export const spawn = (
  options: AppServerProcessOptions
): Effect.Effect<AppServerProcess, WorkerSpawnError, ChildProcessSpawner | Scope.Scope> =>
  Effect.gen(function*() {
    const forceKillAfter = options.forceKillAfter ?? "2 seconds"
    const command = ChildProcess.make(options.command, options.args ?? [], {
      env: options.env,
      extendEnv: options.extendEnv ?? true,
      cwd: options.cwd,
      stdin: "pipe",
      stdout: "pipe",
      stderr: "pipe",
      forceKillAfter,
      detached: options.detached
    })
    const spawnError = (cause: unknown) =>
      new WorkerSpawnError({ command: options.command, cause })
    const handle = yield* command.pipe(
      Effect.mapError(spawnError),
      Effect.catchDefect((defect) => Effect.fail(spawnError(defect)))
    )
    const pid: number = handle.pid

    return yield* Effect.gen(function*() {
      // --- exit status: watched by a detached fiber, so `exit` resolves even
      // after the scope closed (it only awaits Node's "exit" event).
      const exitDeferred = Deferred.makeUnsafe<ExitStatus>()
      let exitStatus: ExitStatus | undefined = undefined
      yield* Effect.forkDetach(
        Effect.flatMap(Effect.exit(handle.exitCode), (exit) => {
          exitStatus = toExitStatus(exit)
          return Deferred.succeed(exitDeferred, exitStatus)
        })
      )

      // --- stderr: drained into a ring buffer, each line logged at debug level.
      const capacity = Math.max(0, Math.floor(options.stderrLines ?? 50))
      const ring: Array<string> = []
      let ringStart = 0
      const remember = (line: string) => {
        if (capacity === 0) return
        if (ring.length < capacity) {
          ring.push(line)
        } else {
          ring[ringStart] = line
          ringStart = (ringStart + 1) % capacity
        }
      }
      const stderrClosed = Deferred.makeUnsafe<void>()
      yield* handle.stderr.pipe(
        Stream.decodeText,
        splitLines,
        Stream.runForEach((line) => {
          remember(line)
          return Effect.logDebug(`codex app-server stderr: ${line}`)
        }),
        Effect.catch((error) => Effect.logDebug("codex app-server: reading stderr failed", error)),
        Effect.ensuring(Deferred.succeed(stderrClosed, undefined)),
        Effect.forkScoped
      )

      // --- stdin: one writer fiber fed by a bounded queue, so writes stay whole
      // and ordered, and `closeStdin` can end the pipe after a flush.
      const stdinQueue = yield* Queue.bounded<Uint8Array, Cause.Done>(256)
      let stdinFailure: PlatformError.PlatformError | undefined = undefined
      yield* Stream.fromQueue(stdinQueue).pipe(
        Stream.run(handle.stdin),
        Effect.catch((error) =>
          Effect.sync(() => {
            stdinFailure = error
          }).pipe(
            Effect.andThen(Effect.logDebug("codex app-server: writing to stdin failed", error)),
            // Keep taking, so that writers waiting for room are released (and then fail).
            Effect.andThen(Stream.runDrain(Stream.fromQueue(stdinQueue)))
          )
        ),
        Effect.forkScoped
      )
      const encoder = new TextEncoder()
      const write = (text: string): Effect.Effect<void, PlatformError.PlatformError> =>
        Effect.suspend(() => {
          if (stdinFailure !== undefined) return Effect.fail(stdinFailure)
          return Effect.flatMap(Queue.offer(stdinQueue, encoder.encode(text)), (accepted) =>
            accepted
              ? Effect.void
              : Effect.fail(stdinFailure ?? stdinClosedError(`stdin of process ${pid} has been closed`)))
        })

      return {
        pid,
        stdoutLines: splitLines(Stream.decodeText(handle.stdout)),
        write,
        closeStdin: Effect.asVoid(Queue.end(stdinQueue)),
        stderrTail: Effect.sync(() => ring.slice(ringStart).concat(ring.slice(0, ringStart))),
        stderrClosed: Deferred.await(stderrClosed),
        exit: Deferred.await(exitDeferred),
        exitStatus: Effect.sync(() => exitStatus),
        kill: (killOptions) =>
          handle.kill({
            killSignal: killOptions?.signal,
            forceKillAfter: killOptions?.forceKillAfter ?? forceKillAfter
          }).pipe(Effect.catch((error) => Effect.logDebug(`codex app-server: kill of ${pid} failed`, error)))
      } satisfies AppServerProcess
    }).pipe(Effect.annotateLogs({ pid }))
  })

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
 * - lines are bounded: a stdout line longer than `maxLineBytes` (default
 *   64 MiB) fails `stdoutLines` with a `ProtocolError` as soon as it passes
 *   the limit (the lines before it are emitted first); a stderr line keeps at
 *   most its first `stderrLineBytes` (default 2 KiB) plus a marker with its
 *   length. Bytes past a limit are counted and dropped as they arrive, so
 *   memory per process stays bounded by these limits whatever the child writes;
 * - stderr is always drained (a full pipe never blocks the child): a defect
 *   while handling a line is dropped and reading goes on; if reading stderr
 *   itself fails, a marker line is added to the tail and the process is
 *   terminated (it would block on its next write). Its last `stderrLines`
 *   lines are kept and each line is logged at debug level;
 * - `write` calls never interleave: each `text` reaches stdin whole and in call
 *   order. Up to 256 writes are buffered, after which `write` waits. When
 *   writing to stdin fails (the child closed it or died), `stdinFailed`
 *   resolves with the error, and every waiting and later `write` fails with it;
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
 * child blocks on a full pipe). A write the pipe accepted just before the child
 * closed its stdin is lost without an error: `stdinFailed` only resolves when
 * a later write fails. `stderrTail` may miss lines the process wrote
 * just before exiting until `stderrClosed` resolves; a descendant that keeps
 * stderr open delays that, so bound the wait. Linux and macOS only (Windows
 * kill semantics differ and are untested).
 *
 * @internal
 */
import * as Arr from "effect/Array"
import * as Cause from "effect/Cause"
import * as Channel from "effect/Channel"
import * as Deferred from "effect/Deferred"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as PlatformError from "effect/PlatformError"
import * as ChildProcess from "effect/process/ChildProcess"
import type { ChildProcessSpawner } from "effect/process/ChildProcessSpawner"
import * as Pull from "effect/Pull"
import * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as Option from "effect/Option"
import { ProtocolError, WorkerSpawnError } from "../errors.ts"

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
   * Longest stdout line, in bytes. A longer line fails `stdoutLines` with a
   * `ProtocolError` as soon as it passes the limit. Default
   * {@link defaultMaxLineBytes} (64 MiB).
   */
  readonly maxLineBytes?: number | undefined
  /**
   * Longest stderr line kept, in bytes: a longer one keeps its first
   * `stderrLineBytes` bytes and a marker with its length. Default
   * {@link defaultStderrLineBytes} (2 KiB).
   */
  readonly stderrLineBytes?: number | undefined
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

/**
 * The default longest stdout line: 64 MiB. Codex messages can legitimately be
 * large (a turn's diff, a command's aggregated output, an image sent as a data
 * URL echoed back in a user message item, a resumed thread's history), so the
 * bound is generous; it exists to stop a runaway line from growing the heap
 * without end, and sits well below V8's string limit (about 512 Mi characters).
 */
export const defaultMaxLineBytes = 64 * 1024 * 1024

/** The default longest stderr line kept: 2 KiB (stderr only feeds diagnostics). */
export const defaultStderrLineBytes = 2048

/** How a process ended: `code` when it exited, `signal` when a signal killed it. */
export interface ExitStatus {
  readonly code: number | null
  readonly signal: string | null
}

/** A running app-server process. Everything in it is bound to the scope of {@link spawn}. */
export interface AppServerProcess {
  readonly pid: number
  /**
   * stdout, one element per line, without the newline. Run it once. Fails
   * with a `ProtocolError` on a line longer than `maxLineBytes`.
   */
  readonly stdoutLines: Stream.Stream<string, PlatformError.PlatformError | ProtocolError>
  /**
   * Queues `text` for stdin exactly as given (include the "\n"). Fails if stdin
   * was closed with `closeStdin` or writing to it failed earlier; a failure of
   * the actual write, after this returned, is reported by `stdinFailed`.
   */
  readonly write: (text: string) => Effect.Effect<void, PlatformError.PlatformError>
  /** Resolves with the error once writing to stdin has failed; never resolves otherwise. */
  readonly stdinFailed: Effect.Effect<PlatformError.PlatformError>
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

/** Options of {@link splitLines}. */
export interface SplitLinesOptions<E2> {
  /** Longest line, in bytes, without its terminator. */
  readonly maxLineBytes: number
  /**
   * What becomes of a longer line. `"truncate"`: its first `maxLineBytes`
   * bytes are kept and emitted, when the line ends, followed by a marker giving
   * its length; the rest is discarded as it arrives. A function: the stream
   * fails with the error it returns as soon as the line passes the limit,
   * newline or not; it is given the start of the line, decoded.
   */
  readonly onLongLine: "truncate" | ((head: string) => E2)
}

const previewBytes = 200
const newlineByte = 10
const carriageReturnByte = 13

/**
 * Splits a byte stream on "\n" (dropping a "\r" before it) and decodes each
 * line as UTF-8 (a line boundary never cuts a character, so no decoder state
 * spans chunks), emitting a last unterminated line when the stream ends.
 *
 * Memory stays bounded by `maxLineBytes`: a line that fits in one chunk is
 * decoded from that chunk without copying; the unterminated rest of a chunk is
 * copied once (so it does not pin the chunk) and joined once when its line
 * ends; bytes of an overlong line past the limit are only counted, never kept
 * nor decoded. With a failing `onLongLine`, the lines before the overlong one
 * are emitted first, then the stream fails without pulling more input.
 */
export const splitLines = <E, R, E2 = never>(
  self: Stream.Stream<Uint8Array, E, R>,
  options: SplitLinesOptions<E2>
): Stream.Stream<string, E | E2, R> =>
  self.channel.pipe(Channel.pipeTo(splitLinesChannel<E, E2>(options)), Stream.fromChannel)

const splitLinesChannel = <E, E2>(options: SplitLinesOptions<E2>) =>
  Channel.fromTransform((upstream: Pull.Pull<Arr.NonEmptyReadonlyArray<Uint8Array>, E, unknown>) =>
    Effect.sync(() => {
      const max = Math.max(0, Math.floor(options.maxLineBytes))
      const onLongLine = options.onLongLine
      const decoder = new TextDecoder()
      // The current unterminated line: the pieces kept (at most `max` bytes in
      // all) and how many bytes it has had so far, kept or not.
      let pieces: Array<Uint8Array> = []
      let kept = 0
      let seen = 0
      // Set once a line is too long (failing mode): the next pull fails with it.
      let failure: { readonly error: E2 } | undefined = undefined
      let done: { readonly leftover: unknown } | undefined = undefined

      const join = (): Uint8Array => {
        if (pieces.length === 1) return pieces[0]!
        const bytes = new Uint8Array(kept)
        let offset = 0
        for (const piece of pieces) {
          bytes.set(piece, offset)
          offset += piece.length
        }
        return bytes
      }
      const decodeLine = (bytes: Uint8Array): string =>
        decoder.decode(
          bytes.length > 0 && bytes[bytes.length - 1] === carriageReturnByte ? bytes.subarray(0, -1) : bytes
        )
      // The start of the current line, `part` included, decoded for an error message.
      const head = (part: Uint8Array): string => {
        const bytes = new Uint8Array(Math.min(previewBytes, kept + part.length))
        let offset = 0
        for (const piece of [...pieces, part]) {
          if (offset >= bytes.length) break
          const n = Math.min(piece.length, bytes.length - offset)
          bytes.set(piece.subarray(0, n), offset)
          offset += n
        }
        return seen > bytes.length ? `${decoder.decode(bytes)}…` : decoder.decode(bytes)
      }
      // Adds `part` to the current line; false when that makes it too long (failing mode).
      const append = (part: Uint8Array, copy: boolean): boolean => {
        seen += part.length
        if (seen > max && onLongLine !== "truncate") {
          failure = { error: onLongLine(head(part)) }
          return false
        }
        const room = max - kept
        if (room <= 0 || part.length === 0) return true
        const piece = part.length > room ? part.subarray(0, room) : part
        pieces.push(copy ? new Uint8Array(piece) : piece)
        kept += piece.length
        return true
      }
      // Ends the current line and returns it.
      const finish = (): string => {
        const bytes = pieces.length === 0 ? new Uint8Array(0) : join()
        const line = seen > max
          ? `${decoder.decode(bytes)}… [line truncated: ${seen} bytes, limit ${max}]`
          : decodeLine(bytes)
        pieces = []
        kept = 0
        seen = 0
        return line
      }
      const split = (chunks: Arr.NonEmptyReadonlyArray<Uint8Array>): Array<string> => {
        const lines: Array<string> = []
        for (const chunk of chunks) {
          let start = 0
          let newline = chunk.indexOf(newlineByte)
          while (newline !== -1) {
            const part = chunk.subarray(start, newline)
            if (seen === 0 && part.length <= max) {
              lines.push(decodeLine(part))
            } else {
              if (!append(part, false)) return lines
              lines.push(finish())
            }
            start = newline + 1
            newline = chunk.indexOf(newlineByte, start)
          }
          if (start < chunk.length && !append(chunk.subarray(start), true)) return lines
        }
        return lines
      }

      const pull: Pull.Pull<Arr.NonEmptyReadonlyArray<string>, E | E2, unknown> = Effect.suspend(() => {
        if (failure !== undefined) return Effect.fail(failure.error)
        if (done !== undefined) return Cause.done(done.leftover)
        return Pull.matchEffect(upstream, {
          onSuccess: (chunks) => {
            const lines = split(chunks)
            return Arr.isReadonlyArrayNonEmpty(lines) ? Effect.succeed(lines) : pull
          },
          onFailure: Effect.failCause,
          onDone: (leftover) => {
            done = { leftover }
            return seen === 0 ? Cause.done(leftover) : Effect.succeed(Arr.of(finish()))
          }
        })
      })
      return pull
    })
  )

const signalPattern = /signal: '([A-Z0-9]+)'/

const toExitStatus = (exit: Exit.Exit<number, PlatformError.PlatformError>): ExitStatus => {
  if (Exit.isSuccess(exit)) return { code: exit.value, signal: null }
  const error = Cause.squash(exit.cause)
  const inner = error instanceof PlatformError.PlatformError && error.cause instanceof Error ? error.cause : error
  const text = inner instanceof Error ? inner.message : String(inner)
  return { code: null, signal: signalPattern.exec(text)?.[1] ?? "UNKNOWN" }
}

const describeCause = (cause: Cause.Cause<unknown>): string => {
  const error = Cause.squash(cause)
  return error instanceof Error ? error.message : String(error)
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
    const maxLineBytes = options.maxLineBytes ?? defaultMaxLineBytes
    const stderrLineBytes = options.stderrLineBytes ?? defaultStderrLineBytes
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

      const kill = (killOptions?: Parameters<AppServerProcess["kill"]>[0]): Effect.Effect<void> =>
        handle.kill({
          killSignal: killOptions?.signal,
          forceKillAfter: killOptions?.forceKillAfter ?? forceKillAfter
        }).pipe(Effect.catch((error) => Effect.logDebug(`codex app-server: kill of ${pid} failed`, error)))

      // --- stderr: drained into a ring buffer of bounded lines, each line
      // logged at debug level. A defect while handling a line is swallowed so
      // that the pipe keeps being read; if reading itself fails, the process is
      // terminated, since it would block on its next write to a full pipe.
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
      const onStderrLine = (line: string): Effect.Effect<void> =>
        Effect.sync(() => remember(line)).pipe(
          Effect.andThen(Effect.logDebug(`codex app-server stderr: ${line}`)),
          Effect.catchCause((cause) => Cause.hasInterruptsOnly(cause) ? Effect.failCause(cause) : Effect.void)
        )
      const stderrBroke = (cause: Cause.Cause<unknown>) =>
        Effect.gen(function*() {
          remember(`[codex-worker-pool: reading stderr failed (${describeCause(cause)}); the process was terminated]`)
          yield* Deferred.succeed(stderrClosed, undefined)
          yield* Effect.logWarning("codex app-server: reading stderr failed; terminating the process", cause)
          if (exitStatus === undefined) yield* kill()
        }).pipe(Effect.catchCause(() => Effect.void))
      yield* splitLines(handle.stderr, { maxLineBytes: stderrLineBytes, onLongLine: "truncate" }).pipe(
        Stream.runForEach(onStderrLine),
        Effect.catchCause((cause) => Cause.hasInterruptsOnly(cause) ? Effect.failCause(cause) : stderrBroke(cause)),
        Effect.ensuring(Deferred.succeed(stderrClosed, undefined)),
        Effect.forkScoped
      )

      // --- stdin: one writer fiber fed by a bounded queue, so writes stay whole
      // and ordered, and `closeStdin` can end the pipe after a flush. When
      // writing fails, the queue is shut down (waiting and later writes fail)
      // and `stdinFailed` resolves.
      const stdinQueue = yield* Queue.bounded<Uint8Array, Cause.Done>(256)
      let stdinFailure: PlatformError.PlatformError | undefined = undefined
      const stdinFailed = Deferred.makeUnsafe<PlatformError.PlatformError>()
      yield* Stream.fromQueue(stdinQueue).pipe(
        Stream.run(handle.stdin),
        Effect.catchCause((cause) => {
          if (Cause.hasInterruptsOnly(cause)) return Effect.failCause(cause)
          const error = Option.getOrElse(
            Cause.findErrorOption(cause),
            () => stdinClosedError(`writing to stdin of process ${pid} died: ${describeCause(cause)}`)
          )
          return Effect.sync(() => {
            stdinFailure = error
            Queue.shutdownUnsafe(stdinQueue)
            Deferred.doneUnsafe(stdinFailed, Effect.succeed(error))
          }).pipe(Effect.andThen(Effect.logDebug("codex app-server: writing to stdin failed", error)))
        }),
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
        stdoutLines: splitLines(handle.stdout, {
          maxLineBytes,
          onLongLine: (head) =>
            new ProtocolError({
              kind: "LineTooLong",
              reason: `it wrote a stdout line longer than maxLineBytes (${maxLineBytes} bytes)`,
              preview: head,
              pid
            })
        }),
        write,
        stdinFailed: Deferred.await(stdinFailed),
        closeStdin: Effect.asVoid(Queue.end(stdinQueue)),
        stderrTail: Effect.sync(() => ring.slice(ringStart).concat(ring.slice(0, ringStart))),
        stderrClosed: Deferred.await(stderrClosed),
        exit: Deferred.await(exitDeferred),
        exitStatus: Effect.sync(() => exitStatus),
        kill
      } satisfies AppServerProcess
    }).pipe(Effect.annotateLogs({ pid }))
  })

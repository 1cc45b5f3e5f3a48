/**
 * Real-process tests of appServerProcess.ts against test/fixtures/echo-lines.mjs.
 * Every process carries a unique marker argument; after each test any marked
 * process still alive is killed by PID (a zombie counts as dead).
 */
import { afterEach, describe, expect, it } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Logger from "effect/Logger"
import * as Queue from "effect/Queue"
import * as References from "effect/References"
import type { ChildProcessSpawner } from "effect/process/ChildProcessSpawner"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { fileURLToPath } from "node:url"
import { ProtocolError, WorkerSpawnError } from "../src/errors.ts"
import * as AppServerProcess from "../src/internal/appServerProcess.ts"
import { layerChildProcessSpawner } from "../src/node.ts"
import { findMarkedProcesses, isAlive, killMarkedProcesses, makeMarker } from "./helpers/codex.ts"

const fixture = fileURLToPath(new URL("./fixtures/echo-lines.mjs", import.meta.url))

const markers: Array<string> = []
afterEach(async () => {
  const leftovers = markers.splice(0)
  for (const marker of leftovers) await killMarkedProcesses(marker)
})

/** A fresh marker, remembered for the after-test sweep. */
const newMarker = (): string => {
  const marker = makeMarker("asp")
  markers.push(marker)
  return marker
}

/** Spawns the fixture (`node echo-lines.mjs MARKER ...flags`). */
const spawnFixture = (
  marker: string,
  options: Partial<AppServerProcess.AppServerProcessOptions> & { readonly flags?: ReadonlyArray<string> } = {}
) =>
  AppServerProcess.spawn({
    ...options,
    command: process.execPath,
    args: [fixture, marker, ...(options.flags ?? [])]
  })

/** Reads stdout lines into a queue, so a test can take them one by one; the queue ends with stdout. */
const readLines = (proc: AppServerProcess.AppServerProcess) =>
  Effect.gen(function*() {
    const lines = yield* Queue.unbounded<string, Cause.Done>()
    yield* proc.stdoutLines.pipe(
      Stream.runForEach((line) => Queue.offer(lines, line)),
      Effect.ensuring(Queue.end(lines)),
      Effect.forkScoped
    )
    return lines
  })

/** Real processes: every test is bounded well below the suite timeout. */
const live = <A, E>(effect: Effect.Effect<A, E, Scope.Scope | ChildProcessSpawner>) =>
  effect.pipe(Effect.provide(layerChildProcessSpawner), Effect.timeout("15 seconds"))

describe("appServerProcess", () => {
  it.live("echoes written lines back as stdout lines", () =>
    live(Effect.gen(function*() {
      const proc = yield* spawnFixture(newMarker())
      const lines = yield* readLines(proc)
      yield* proc.write("hello\n")
      yield* proc.write("{\"id\":1}\n")
      expect(yield* Queue.take(lines)).toBe("hello")
      expect(yield* Queue.take(lines)).toBe("{\"id\":1}")
      expect(proc.pid).toBeGreaterThan(0)
    })))

  it.live("splits lines across chunk boundaries, including inside a UTF-8 character", () =>
    live(Effect.gen(function*() {
      const proc = yield* spawnFixture(newMarker())
      const lines = yield* readLines(proc)
      yield* proc.write("chunked\n")
      expect(yield* Queue.take(lines)).toBe("{\"text\":\"h\u00e9llo w\u00f6rld \u2713\"}")
      expect(yield* Queue.take(lines)).toBe("second line")
      expect(yield* Queue.take(lines)).toBe("third")
    })))

  it.live("emits a last line that has no newline when stdout ends", () =>
    live(Effect.gen(function*() {
      const proc = yield* spawnFixture(newMarker())
      const lines = yield* readLines(proc)
      yield* proc.write("first\n")
      yield* proc.write("partial-exit the end\n")
      expect(yield* Queue.collect(lines)).toEqual(["first", "the end"])
    })))

  it.live("keeps only the last N stderr lines", () =>
    live(Effect.gen(function*() {
      const proc = yield* spawnFixture(newMarker(), { stderrLines: 10 })
      const lines = yield* readLines(proc)
      yield* proc.write("stderr 120\n")
      expect(yield* Queue.take(lines)).toBe("stderr done")
      yield* proc.closeStdin
      yield* proc.stderrClosed
      expect(yield* proc.stderrTail).toEqual(Array.from({ length: 10 }, (_, i) => `stderr ${111 + i}`))
    })))

  it.live("reports the exit code", () =>
    live(Effect.gen(function*() {
      const proc = yield* spawnFixture(newMarker())
      expect(yield* proc.exitStatus).toBeUndefined()
      yield* proc.write("exit 3\n")
      expect(yield* proc.exit).toEqual({ code: 3, signal: null })
      expect(yield* proc.exitStatus).toEqual({ code: 3, signal: null })
    })))

  it.live("reports the signal that killed the process", () =>
    live(Effect.gen(function*() {
      const proc = yield* spawnFixture(newMarker())
      yield* proc.write("kill SIGKILL\n")
      expect(yield* proc.exit).toEqual({ code: null, signal: "SIGKILL" })
    })))

  it.live("passes env on top of the parent's environment by default", () =>
    live(Effect.gen(function*() {
      const proc = yield* spawnFixture(newMarker(), { env: { CWP_TEST_VALUE: "forty-two" } })
      const lines = yield* readLines(proc)
      yield* proc.write("env CWP_TEST_VALUE\n")
      yield* proc.write("env PATH\n")
      expect(yield* Queue.take(lines)).toBe("forty-two")
      expect(yield* Queue.take(lines)).toBe(process.env.PATH ?? "<unset>")
    })))

  it.live("fails with WorkerSpawnError when the command does not exist", () =>
    live(Effect.gen(function*() {
      const command = "/nonexistent/codex-worker-pool-test-binary"
      const error = yield* Effect.flip(AppServerProcess.spawn({ command, args: [newMarker()] }))
      expect(error).toBeInstanceOf(WorkerSpawnError)
      expect(error.command).toBe(command)
      expect(error.message).toContain(command)
      expect(error.message).toContain("ENOENT")
    })))

  it.live("fails with WorkerSpawnError when cwd does not exist", () =>
    live(Effect.gen(function*() {
      const error = yield* Effect.flip(spawnFixture(newMarker(), { cwd: "/nonexistent/codex-worker-pool-cwd" }))
      expect(error).toBeInstanceOf(WorkerSpawnError)
      expect(error.message).toContain(process.execPath)
    })))

  it.live("ends the echo process when stdin is closed, and refuses later writes", () =>
    live(Effect.gen(function*() {
      const proc = yield* spawnFixture(newMarker())
      const lines = yield* readLines(proc)
      yield* proc.write("last words\n")
      yield* proc.closeStdin
      expect(yield* proc.exit).toEqual({ code: 0, signal: null })
      expect(yield* Queue.collect(lines)).toEqual(["last words"])
      const error = yield* Effect.flip(proc.write("too late\n"))
      expect(error.message).toContain("closed")
    })))

  it.live("closing the scope leaves no marked process alive", () =>
    live(Effect.gen(function*() {
      const marker = newMarker()
      const { grandchild, proc } = yield* Effect.scoped(Effect.gen(function*() {
        const proc = yield* spawnFixture(marker)
        const lines = yield* readLines(proc)
        yield* proc.write("spawn-child\n")
        const grandchild = Number(yield* Queue.take(lines))
        expect(isAlive(proc.pid)).toBe(true)
        expect(isAlive(grandchild)).toBe(true)
        return { grandchild, proc }
      }))
      yield* proc.exit
      expect(isAlive(proc.pid)).toBe(false)
      expect(isAlive(grandchild)).toBe(false)
      expect(findMarkedProcesses(marker)).toEqual([])
    })))

  it.live("closing the scope escalates to SIGKILL when SIGTERM is ignored", () =>
    live(Effect.gen(function*() {
      const marker = newMarker()
      const proc = yield* Effect.scoped(Effect.gen(function*() {
        const proc = yield* spawnFixture(marker, {
          flags: ["--ignore-sigterm", "--ignore-eof"],
          forceKillAfter: "300 millis"
        })
        const lines = yield* readLines(proc)
        yield* proc.write("spawn-child\n")
        yield* Queue.take(lines)
        return proc
      }))
      expect(yield* proc.exit).toEqual({ code: null, signal: "SIGKILL" })
      expect(findMarkedProcesses(marker)).toEqual([])
    })))

  it.live("kill sends SIGTERM to the process group and waits for it", () =>
    live(Effect.gen(function*() {
      const marker = newMarker()
      const proc = yield* spawnFixture(marker)
      const lines = yield* readLines(proc)
      yield* proc.write("spawn-child\n")
      const grandchild = Number(yield* Queue.take(lines))
      yield* proc.kill()
      expect(yield* proc.exit).toEqual({ code: null, signal: "SIGTERM" })
      expect(isAlive(grandchild)).toBe(false)
      expect(findMarkedProcesses(marker)).toEqual([])
    })))

  it.live("with detached: false, closing the scope signals only the process itself", () =>
    live(Effect.gen(function*() {
      const marker = newMarker()
      const { grandchild, proc } = yield* Effect.scoped(Effect.gen(function*() {
        const proc = yield* spawnFixture(marker, { detached: false })
        const lines = yield* readLines(proc)
        yield* proc.write("spawn-child\n")
        const grandchild = Number(yield* Queue.take(lines))
        return { grandchild, proc }
      }))
      yield* proc.exit
      expect(isAlive(proc.pid)).toBe(false)
      // Not in a group of its own, so nothing reached the grandchild; the after-test sweep ends it.
      expect(isAlive(grandchild)).toBe(true)
    })))
  it.live("a stdout line longer than maxLineBytes fails stdoutLines with ProtocolError after the lines before it", () =>
    live(Effect.gen(function*() {
      const proc = yield* spawnFixture(newMarker(), { maxLineBytes: 4096 })
      const seen: Array<string> = []
      const reading = yield* Effect.forkChild(Effect.flip(
        Stream.runForEach(proc.stdoutLines, (line) => Effect.sync(() => seen.push(line)))
      ))
      yield* proc.write("first\n")
      yield* proc.write("bytes 4096 stdout nl\n")
      // 4097 bytes, and no newline: the failure does not wait for the end of the line.
      yield* proc.write("bytes 4097 stdout\n")
      const error = yield* Fiber.join(reading).pipe(Effect.timeout("5 seconds"))
      expect(error).toBeInstanceOf(ProtocolError)
      if (!(error instanceof ProtocolError)) return
      expect(error.kind).toBe("LineTooLong")
      expect(error.pid).toBe(proc.pid)
      expect(error.message).toContain("maxLineBytes (4096 bytes)")
      expect(error.preview.startsWith("x".repeat(200))).toBe(true)
      expect(error.preview.length).toBeLessThan(210)
      expect(seen).toEqual(["first", "x".repeat(4096), "bytes done"])
      // The process did not exit: a long line is not a crash.
      expect(yield* proc.exitStatus).toBeUndefined()
    })))

  it.live("200 MB of stderr without a newline keep the heap bounded and the tail short; the process goes on", () =>
    live(Effect.gen(function*() {
      const proc = yield* spawnFixture(newMarker(), { stderrLines: 5 })
      const lines = yield* readLines(proc)
      const before = process.memoryUsage().heapUsed
      yield* proc.write("bytes 200000000 stderr\n")
      expect(yield* Queue.take(lines).pipe(Effect.timeout("20 seconds"))).toBe("bytes done")
      const grown = process.memoryUsage().heapUsed - before
      // The old splitter kept all 200 MB of the pending line as strings on the heap.
      expect(grown).toBeLessThan(64 * 1024 * 1024)
      // Still drained and still answering.
      yield* proc.write("stderr 2\n")
      expect(yield* Queue.take(lines)).toBe("stderr done")
      yield* proc.closeStdin
      yield* proc.stderrClosed
      const tail = yield* proc.stderrTail
      // "stderr 1" ended the long line.
      expect(tail).toHaveLength(2)
      expect(tail[0]!.startsWith("x".repeat(2048))).toBe(true)
      expect(tail[0]).toContain("[line truncated: 200000008 bytes, limit 2048]")
      expect(tail[0]!.length).toBeLessThan(2200)
      expect(tail[1]).toBe("stderr 2")
    })))

  it.live("stderr keeps being drained when handling a line throws", () =>
    live(Effect.gen(function*() {
      let thrown = 0
      const proc = yield* spawnFixture(newMarker()).pipe(
        Effect.provideService(
          References.CurrentLoggers,
          new Set([Logger.make((options) => {
            if (String(options.message).includes("stderr")) {
              thrown++
              throw new Error("logger bug")
            }
          })])
        ),
        Effect.provideService(References.MinimumLogLevel, "Debug")
      )
      const lines = yield* readLines(proc)
      // About 650 KB of stderr: far more than a pipe holds, so the writer blocks unless it is read.
      yield* proc.write("stderr 60000\n")
      expect(yield* Queue.take(lines).pipe(Effect.timeout("10 seconds"))).toBe("stderr done")
      expect(thrown).toBeGreaterThan(0)
    })))

  it.live("when the child closes its stdin, stdinFailed resolves and later writes fail", () =>
    live(Effect.gen(function*() {
      const proc = yield* spawnFixture(newMarker())
      const lines = yield* readLines(proc)
      yield* proc.write("close-stdin\n")
      expect(yield* Queue.take(lines)).toBe("stdin closed")
      const failed = yield* Effect.forkChild(proc.stdinFailed)
      // The write is queued; the pipe then refuses it.
      yield* proc.write("nobody reads this\n")
      const error = yield* Fiber.join(failed).pipe(Effect.timeout("5 seconds"))
      expect(error.cause).toMatchObject({ code: "EPIPE" })
      expect(yield* Effect.flip(proc.write("later\n"))).toBe(error)
      expect(yield* proc.exitStatus).toBeUndefined()
    })))

  describe("splitLines", () => {
    const encoder = new TextEncoder()
    const bytes = (...parts: ReadonlyArray<string | Uint8Array>) =>
      Stream.fromIterable(parts.map((part) => typeof part === "string" ? encoder.encode(part) : part))

    it.effect("splits across chunks, decodes characters cut by a chunk, drops \\r, and keeps a last unterminated line", () =>
      Effect.gen(function*() {
        const check = encoder.encode("\u2713")
        const lines = yield* Stream.runCollect(AppServerProcess.splitLines(
          bytes("a\r\nb", "c\n", check.subarray(0, 1), check.subarray(1), "\n\nlast"),
          { maxLineBytes: 100, onLongLine: "truncate" }
        ))
        expect(lines).toEqual(["a", "bc", "\u2713", "", "last"])
      }))

    it.effect("truncates a long line to its first maxLineBytes bytes and says how long it was", () =>
      Effect.gen(function*() {
        const lines = yield* Stream.runCollect(AppServerProcess.splitLines(
          bytes("0123456789", "abcdef\nshort\n", "y".repeat(30)),
          { maxLineBytes: 8, onLongLine: "truncate" }
        ))
        expect(lines).toEqual([
          "01234567… [line truncated: 16 bytes, limit 8]",
          "short",
          "yyyyyyyy… [line truncated: 30 bytes, limit 8]"
        ])
      }))

    it.effect("with a failing onLongLine, emits the lines before the long one, then fails without reading on", () =>
      Effect.gen(function*() {
        const seen: Array<string> = []
        const exit = yield* Stream.runForEach(
          AppServerProcess.splitLines(Stream.concat(bytes("one\ntwo\n0123", "456789"), Stream.never), {
            maxLineBytes: 8,
            onLongLine: (head) => new Error(`too long: ${head}`)
          }),
          (line) => Effect.sync(() => seen.push(line))
        ).pipe(Effect.exit)
        expect(seen).toEqual(["one", "two"])
        expect(Exit.isFailure(exit)).toBe(true)
        expect(String(Exit.isFailure(exit) ? Cause.squash(exit.cause) : "")).toContain("too long: 0123456789")
      }))
  })
})

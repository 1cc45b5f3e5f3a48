/**
 * Real-process tests of appServerProcess.ts against test/fixtures/echo-lines.mjs.
 * Every process carries a unique marker argument; after each test any marked
 * process still alive is killed by PID (a zombie counts as dead).
 */
import { afterEach, describe, expect, it } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Queue from "effect/Queue"
import type { ChildProcessSpawner } from "effect/process/ChildProcessSpawner"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { fileURLToPath } from "node:url"
import { WorkerSpawnError } from "../src/errors.ts"
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
})

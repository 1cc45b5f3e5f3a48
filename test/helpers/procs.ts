/**
 * Test helpers for real processes: every process a test starts carries a
 * unique `--cwp-marker=<marker>` argument, is found again through
 * `/proc/PID/cmdline`, and is ended by PID, never by name or group.
 *
 * A zombie's cmdline is empty, so `findByMarker` cannot see zombies: that is
 * fine, a zombie is dead. (PID 1 on these machines does not reap orphans, so
 * killed grandchildren may stay zombies for ever.)
 */
import { type ChildProcess, spawn } from "node:child_process"
import { randomBytes } from "node:crypto"
import * as fs from "node:fs"
import { fileURLToPath } from "node:url"

/** Absolute path of the fake app-server fixture. */
export const fakeAppServerPath = fileURLToPath(new URL("../fixtures/fake-app-server.mjs", import.meta.url))

/** A fresh marker, unique to one test. */
export const newMarker = (): string => `cwp-${process.pid}-${randomBytes(6).toString("hex")}`

/** The command-line argument that carries `marker`. */
export const markerArg = (marker: string): string => `--cwp-marker=${marker}`

export interface MarkedProcess {
  readonly pid: number
  /** Field 3 of /proc/PID/stat: R, S, D, T, Z, ... */
  readonly state: string
  readonly cmdline: ReadonlyArray<string>
}

/** Fields of /proc/PID/stat, parsed independently of the code under test. */
export const statFields = (pid: number): { state: string; ppid: number; pgrp: number; session: number } | undefined => {
  try {
    const text = fs.readFileSync(`/proc/${pid}/stat`, "utf8")
    const fields = text.slice(text.lastIndexOf(")") + 2).split(" ")
    return { state: fields[0]!, ppid: Number(fields[1]), pgrp: Number(fields[2]), session: Number(fields[3]) }
  } catch {
    return undefined
  }
}

/** Every process whose command line contains `marker` (zombies have none, so they are not listed). */
export const findByMarker = (marker: string): Array<MarkedProcess> => {
  const found: Array<MarkedProcess> = []
  for (const entry of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue
    const pid = Number(entry)
    if (pid === process.pid) continue
    let raw: string
    try {
      raw = fs.readFileSync(`/proc/${pid}/cmdline`, "utf8")
    } catch {
      continue
    }
    if (!raw.includes(marker)) continue
    const stat = statFields(pid)
    if (stat === undefined) continue
    found.push({ pid, state: stat.state, cmdline: raw.split("\0").filter((arg) => arg !== "") })
  }
  return found
}

/** Marked processes that are alive (not zombies). */
export const liveByMarker = (marker: string): Array<MarkedProcess> =>
  findByMarker(marker).filter((p) => p.state !== "Z" && p.state !== "X")

/** True when the process `pid` exists and is not a zombie. */
export const isLivePid = (pid: number): boolean => {
  const state = statFields(pid)?.state
  return state !== undefined && state !== "Z" && state !== "X"
}

/**
 * Polls `predicate` every `intervalMs` until it holds or `timeoutMs` passed.
 * Resolves to whether it held: assert on the result.
 */
export const waitUntil = async (
  predicate: () => boolean,
  options: { readonly timeoutMs?: number; readonly intervalMs?: number } = {}
): Promise<boolean> => {
  const { intervalMs = 25, timeoutMs = 5_000 } = options
  const deadline = Date.now() + timeoutMs
  for (;;) {
    if (predicate()) return true
    if (Date.now() >= deadline) return false
    await new Promise((resolve) => setTimeout(resolve, intervalMs))
  }
}

/**
 * SIGKILLs every live marked process by PID (safety net for afterEach), then
 * waits up to 2 s for them to be gone. Returns how many it had to kill.
 */
export const killByMarker = async (marker: string): Promise<number> => {
  const survivors = liveByMarker(marker)
  for (const { pid } of survivors) {
    try {
      process.kill(pid, "SIGKILL")
    } catch {
      // already gone
    }
  }
  await waitUntil(() => liveByMarker(marker).length === 0, { timeoutMs: 2_000 })
  return survivors.length
}

/**
 * The pids of the MCP-like children (group, pgroup, session) named in the fake
 * app-server's "mcp-children ready [...]" stderr line, e.g. in a
 * `WorkerSpawnError`'s `stderrTail`; empty when there is no such line.
 */
export const mcpChildrenIn = (stderrLines: ReadonlyArray<string>): Array<number> => {
  for (const line of stderrLines) {
    const match = /mcp-children ready (\[.*\])/.exec(line)
    if (match !== null) return JSON.parse(match[1]!)
  }
  return []
}

export interface FakeAppServer {
  readonly child: ChildProcess
  readonly pid: number
  /** Pids of the MCP-like children (group, pgroup, session), when started with `--mcp-children`. */
  readonly mcpChildren: ReadonlyArray<number>
  /** Resolves with the exit code and signal once the process has exited. */
  readonly exited: Promise<{ readonly code: number | null; readonly signal: NodeJS.Signals | null }>
}

/**
 * Starts the fake app-server detached (own process group and session, like
 * Effect's ChildProcess) with the marker and `args`. Resolves once it logged
 * "listening" (SIGTERM handler installed) or, with `--mcp-children`, once the
 * three children are ready too (their signal handlers installed).
 */
export const spawnFakeAppServer = (
  marker: string,
  args: ReadonlyArray<string> = ["--mcp-children"]
): Promise<FakeAppServer> =>
  new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [fakeAppServerPath, markerArg(marker), ...args], {
      detached: true,
      stdio: ["pipe", "pipe", "pipe"]
    })
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((done) =>
      child.once("exit", (code, signal) => done({ code, signal }))
    )
    child.stdout.resume()
    const withChildren = args.includes("--mcp-children")
    let stderr = ""
    child.stderr.setEncoding("utf8")
    child.stderr.on("data", (chunk: string) => {
      stderr += chunk
      const match = /mcp-children ready (\[.*\])/.exec(stderr)
      if (withChildren ? match !== null : /: listening$/m.test(stderr)) {
        resolve({ child, pid: child.pid!, mcpChildren: match === null ? [] : JSON.parse(match[1]!), exited })
      }
    })
    child.once("error", reject)
    void exited.then(({ code, signal }) => reject(new Error(`fake app-server exited early (${code ?? signal}): ${stderr}`)))
  })

/**
 * Options of the promise facade (`createCodexWorkerPool`, times in `...Ms`)
 * that run the fake app-server with `marker` and `flags`, with a short kill
 * grace so tests end quickly. For the Effect API see `fakeServiceOptions`.
 */
export const fakePoolOptions = <O extends object>(
  marker: string,
  flags: ReadonlyArray<string> = [],
  options?: O
) => ({
  command: process.execPath,
  args: [fakeAppServerPath, markerArg(marker), ...flags],
  killGraceMs: 300,
  ...options
})

/**
 * `fakePoolOptions` for the Effect API (`CodexWorkerPool.Options`,
 * `CodexWorker.ProcessOptions`: times as durations).
 */
export const fakeServiceOptions = <O extends object>(
  marker: string,
  flags: ReadonlyArray<string> = [],
  options?: O
) => ({
  command: process.execPath,
  args: [fakeAppServerPath, markerArg(marker), ...flags],
  killGrace: "300 millis" as const,
  ...options
})

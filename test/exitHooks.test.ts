import { afterEach, beforeEach, describe, expect, it } from "@effect/vitest"
import { type ChildProcess, spawn } from "node:child_process"
import { fileURLToPath } from "node:url"
import { register, registeredCount } from "../src/internal/exitHooks.ts"
import { ProcessTree } from "../src/internal/processTree.ts"
import { startWatchdog } from "../src/internal/watchdog.ts"
import { isLivePid, killByMarker, liveByMarker, markerArg, newMarker, waitUntil } from "./helpers/procs.ts"

const hostScript = fileURLToPath(new URL("./fixtures/exit-host.ts", import.meta.url))

let marker = ""
beforeEach(() => {
  marker = newMarker()
})
afterEach(async () => {
  await killByMarker(marker)
  expect(liveByMarker(marker)).toEqual([])
})

interface Host {
  readonly child: ChildProcess
  readonly pid: number
  readonly ready: { readonly members: Array<number>; readonly watchdogPid?: number }
  readonly exited: Promise<{ readonly code: number | null; readonly signal: NodeJS.Signals | null } | "still running">
  /** Resolves once the host printed `line` on stdout. */
  readonly printed: (line: string) => Promise<boolean>
  /** The lines printed on stdout so far. */
  readonly lines: () => Array<string>
}

/**
 * Starts test/fixtures/exit-host.ts (which starts the fake app-server with its
 * three MCP-like children and registers the tree) and waits for its ready line.
 */
const startHost = async (args: ReadonlyArray<string>): Promise<Host> => {
  const child = spawn(process.execPath, [hostScript, markerArg(marker), ...args], { stdio: ["pipe", "pipe", "pipe"] })
  // Resolves with how the host exited, or "still running" after 10 s.
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null } | "still running">((resolve) => {
    const timer = setTimeout(() => resolve("still running"), 10_000)
    child.once("exit", (code, signal) => {
      clearTimeout(timer)
      resolve({ code, signal })
    })
  })
  let stdout = ""
  let stderr = ""
  child.stdout!.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk))
  child.stderr!.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk))
  const printed = (line: string) => waitUntil(() => stdout.split("\n").includes(line), { timeoutMs: 10_000 })
  const started = await waitUntil(() => stdout.includes("\n"), { timeoutMs: 10_000 })
  if (!started) throw new Error(`exit-host did not start: ${stderr}`)
  const ready = JSON.parse(stdout.slice(0, stdout.indexOf("\n")))
  return { child, pid: child.pid!, ready, exited, printed, lines: () => stdout.split("\n") }
}

/** Marked processes still alive, the host itself excluded. */
const treeSurvivors = (host: Host) => liveByMarker(marker).filter((p) => p.pid !== host.pid)

const allGone = (host: Host) => waitUntil(() => treeSurvivors(host).length === 0)

describe("exit hooks in a host process", () => {
  it("host process.exit without shutdown leaves no marked process", async () => {
    const host = await startHost(["--mode=exit"])
    expect(host.ready.members).toHaveLength(4)
    expect(await host.exited).toEqual({ code: 0, signal: null })
    expect(await allGone(host)).toBe(true)
  })

  it("host whose event loop runs empty leaves no marked process", async () => {
    const host = await startHost(["--mode=drain"])
    expect(await host.exited).toEqual({ code: 0, signal: null })
    expect(await allGone(host)).toBe(true)
  })

  it("host dying of an uncaught exception leaves no marked process", async () => {
    const host = await startHost(["--mode=throw"])
    expect(await host.exited).toEqual({ code: 1, signal: null })
    expect(await allGone(host)).toBe(true)
  })

  it("host SIGTERM kills trees and the host still exits with signal SIGTERM", async () => {
    const host = await startHost([])
    host.child.kill("SIGTERM")
    expect(await host.exited).toEqual({ code: null, signal: "SIGTERM" })
    expect(await allGone(host)).toBe(true)
  })

  it("host SIGINT kills trees and the host still exits with signal SIGINT", async () => {
    const host = await startHost([])
    host.child.kill("SIGINT")
    expect(await host.exited).toEqual({ code: null, signal: "SIGINT" })
    expect(await allGone(host)).toBe(true)
  })

  it("a host with its own SIGTERM listener is not forced to exit and its later exit kills the trees", async () => {
    const host = await startHost(["--own-sigterm-listener"])
    host.child.kill("SIGTERM")
    expect(await host.printed("host-sigterm")).toBe(true)
    host.child.stdin!.write("ping\n")
    expect(await host.printed("pong")).toBe(true)
    expect(isLivePid(host.pid)).toBe(true)
    // The trees are left to the host's own (graceful) shutdown...
    expect(treeSurvivors(host).length).toBeGreaterThan(0)
    // ...and the signal is not re-raised for the host's listener to see twice.
    expect(host.lines().filter((line) => line === "host-sigterm")).toHaveLength(1)
    host.child.stdin!.write("exit\n")
    expect(await host.exited).toEqual({ code: 0, signal: null })
    expect(await allGone(host)).toBe(true)
  })

  it("without the watchdog, a SIGKILLed host leaves descendants outside codex's group alive (known limit)", async () => {
    const host = await startHost([])
    const [root, ...descendants] = host.ready.members
    host.child.kill("SIGKILL")
    await host.exited
    // codex (the fake) exits on stdin EOF; the MCP-like children are nobody's to kill.
    expect(await waitUntil(() => !isLivePid(root!))).toBe(true)
    expect(treeSurvivors(host).map((p) => p.pid).sort()).toEqual(descendants.sort())
  })

  it("with the watchdog, a SIGKILLed host leaves no marked process", async () => {
    const host = await startHost(["--watchdog"])
    expect(host.ready.watchdogPid).toBeGreaterThan(0)
    host.child.kill("SIGKILL")
    expect(await host.exited).toEqual({ code: null, signal: "SIGKILL" })
    // Nothing marked survives: neither the tree nor the watchdog itself.
    expect(await allGone(host)).toBe(true)
  })

  it("the watchdog exits when its host exits normally", async () => {
    const host = await startHost(["--watchdog", "--mode=exit"])
    expect(await host.exited).toEqual({ code: 0, signal: null })
    expect(await allGone(host)).toBe(true)
  })
})

describe("watchdog", () => {
  it("a stopped watchdog exits without killing what it tracked", async () => {
    const sleeper = spawn(process.execPath, ["-e", "setInterval(() => {}, 60_000)", "--", markerArg(marker)], {
      detached: true,
      stdio: "ignore"
    })
    await new Promise((resolve) => sleeper.once("spawn", resolve))
    const watchdog = startWatchdog({ args: [markerArg(marker)] })
    watchdog.track(ProcessTree.fromPid(sleeper.pid!))
    watchdog.stop()
    expect(await waitUntil(() => !isLivePid(watchdog.pid!))).toBe(true)
    expect(isLivePid(sleeper.pid!)).toBe(true)
  })

  it("a tree untracked before the host is SIGKILLed is left alone by the watchdog", async () => {
    const host = await startHost(["--watchdog", "--untrack"])
    const [root, ...descendants] = host.ready.members
    host.child.kill("SIGKILL")
    await host.exited
    expect(await waitUntil(() => !isLivePid(host.ready.watchdogPid!) && !isLivePid(root!))).toBe(true)
    expect(treeSurvivors(host).map((p) => p.pid).sort()).toEqual(descendants.sort())
  })
})

describe("exit hook registry", () => {
  const events = ["exit", "SIGTERM", "SIGINT", "SIGHUP"] as const
  const counts = () => events.map((event) => process.listenerCount(event))

  it("hooks are installed once and removed when the last tree unregisters", () => {
    // A tree of a process that does not exist: registering must not need a live one.
    const tree = ProcessTree.fromIdentity({ pid: 2 ** 22 + 1, startTime: "0" })
    const before = counts()
    const unregisterA = register(tree)
    const withOne = counts()
    const unregisterB = register(ProcessTree.fromIdentity({ pid: 2 ** 22 + 2, startTime: "0" }))
    expect(counts()).toEqual(withOne)
    expect(registeredCount()).toBe(2)

    unregisterA()
    unregisterA()
    expect(counts()).toEqual(withOne)
    unregisterB()
    expect(registeredCount()).toBe(0)
    expect(counts()).toEqual(before)
    expect(withOne.map((count, i) => count - before[i]!)).toEqual([1, 1, 1, 1])
  })
})

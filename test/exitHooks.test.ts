import { afterEach, beforeEach, describe, expect, it } from "@effect/vitest"
import { type ChildProcess, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"
import { register, registeredCount } from "../src/internal/exitHooks.ts"
import { ProcessTree } from "../src/internal/processTree.ts"
import { startWatchdog } from "../src/internal/watchdog.ts"
import { isLivePid, killByMarker, liveByMarker, markerArg, newMarker, waitUntil } from "./helpers/procs.ts"

const hostScript = fileURLToPath(new URL("./fixtures/exit-host.ts", import.meta.url))
const poolHostScript = fileURLToPath(new URL("./fixtures/codex-pool-host.ts", import.meta.url))

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
  readonly ready: {
    readonly members: Array<number>
    readonly trees: Array<Array<number>>
    readonly watchdogPid?: number
  }
  readonly exited: Promise<{ readonly code: number | null; readonly signal: NodeJS.Signals | null } | "still running">
  /** Resolves once the host printed `line` on stdout. */
  readonly printed: (line: string) => Promise<boolean>
  /** The lines printed on stdout so far. */
  readonly lines: () => Array<string>
}

/**
 * Starts test/fixtures/exit-host.ts (which starts the fake app-server with its
 * three MCP-like children and registers the tree), or `script`, and waits for
 * its ready line.
 */
const startHost = async (args: ReadonlyArray<string>, script = hostScript): Promise<Host> => {
  const child = spawn(process.execPath, [script, markerArg(marker), ...args], { stdio: ["pipe", "pipe", "pipe"] })
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
  if (!started) throw new Error(`${path.basename(script)} did not start: ${stderr}`)
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

/**
 * A copy of exitHooks.ts in `dir` whose registry key names another version, as
 * a future release that changes the registry would: it keeps its own registry
 * and hooks beside this one's.
 */
const otherVersionCopy = (dir: string): string => {
  const source = fs.readFileSync(fileURLToPath(new URL("../src/internal/exitHooks.ts", import.meta.url)), "utf8")
  const key = `"codex-worker-pool/exit-hooks/v1"`
  const processTreeImport = `"./processTree.ts"`
  expect(source).toContain(key)
  expect(source).toContain(processTreeImport)
  const processTreeUrl = pathToFileURL(fileURLToPath(new URL("../src/internal/processTree.ts", import.meta.url))).href
  const file = path.join(dir, "exitHooks.ts")
  fs.writeFileSync(
    file,
    source.replace(key, `"codex-worker-pool/exit-hooks/v2"`).replace(processTreeImport, JSON.stringify(processTreeUrl))
  )
  return file
}

/** SIGTERMs a host whose graceful shutdown waits for "finish", and checks nothing is cut short. */
const gracefulRunsUndisturbed = async (host: Host) => {
  host.child.kill("SIGTERM")
  expect(await host.printed("graceful-start")).toBe(true)
  // Our listener ran in the same emit: had it re-raised, the host would be dead by now.
  host.child.stdin!.write("ping\n")
  expect(await host.printed("pong")).toBe(true)
  expect(isLivePid(host.pid)).toBe(true)
  expect(treeSurvivors(host).map((p) => p.pid).sort()).toEqual([...host.ready.members].sort())
  host.child.stdin!.write("finish\n")
  expect(await host.printed("graceful-done")).toBe(true)
  expect(await host.exited).toEqual({ code: 7, signal: null })
  expect(await allGone(host)).toBe(true)
}

describe("exit hooks beside the host's own listeners", () => {
  it("a host's process.once SIGTERM listener added before the pool runs its graceful shutdown undisturbed", async () => {
    await gracefulRunsUndisturbed(await startHost(["--host-sigterm=once-before"]))
  })

  it("a once SIGTERM listener the host prepends after the pool is seen too", async () => {
    await gracefulRunsUndisturbed(await startHost(["--host-sigterm=once-prepended-after"]))
  })

  it("a second SIGTERM after the host's once listener fired ends the host by SIGTERM, trees first", async () => {
    const host = await startHost(["--host-sigterm=once-before"])
    host.child.kill("SIGTERM")
    expect(await host.printed("graceful-start")).toBe(true)
    host.child.stdin!.write("ping\n")
    expect(await host.printed("pong")).toBe(true)
    host.child.kill("SIGTERM")
    expect(await host.exited).toEqual({ code: null, signal: "SIGTERM" })
    expect(await allGone(host)).toBe(true)
  })

  it("a pool host shutting down on SIGTERM with a once listener (close-with-grace style) is not cut short", async () => {
    const host = await startHost(["--graceful-once"], poolHostScript)
    expect(treeSurvivors(host).length).toBeGreaterThan(0)
    host.child.kill("SIGTERM")
    expect(await host.printed("graceful-start")).toBe(true)
    // The pool's own shutdown killed every tree, and the host is still there to go on.
    expect(await host.printed("graceful-done")).toBe(true)
    expect(isLivePid(host.pid)).toBe(true)
    expect(treeSurvivors(host)).toEqual([])
    host.child.stdin!.write("exit\n")
    expect(await host.exited).toEqual({ code: 0, signal: null })
  })

  // Node ends with the code given to process.exit even when an exit listener throws.
  it("an exit listener of the host added before the pool that throws does not spare the trees", async () => {
    const host = await startHost(["--exit-listener=throw", "--mode=exit"])
    expect(await host.exited).toEqual({ code: 0, signal: null })
    expect(await allGone(host)).toBe(true)
  })

  it("an exit listener of the host added before the pool that calls process.exit does not spare the trees", async () => {
    const host = await startHost(["--exit-listener=exit", "--mode=exit"])
    expect(await host.exited).toEqual({ code: 9, signal: null })
    expect(await allGone(host)).toBe(true)
  })

  it("a throwing exit listener the host prepends after the pool does not spare the trees", async () => {
    const host = await startHost(["--exit-listener-prepended-after=throw"])
    host.child.stdin!.write("exit\n")
    expect(await host.exited).toEqual({ code: 0, signal: null })
    expect(await allGone(host)).toBe(true)
  })
})

describe("exit hooks with several loaded copies of the library", () => {
  it("two copies with a tree each and no host listener: SIGTERM kills both trees and the host dies by SIGTERM", async () => {
    const host = await startHost(["--copy=query"])
    expect(host.ready.trees.map((tree) => tree.length)).toEqual([4, 4])
    host.child.kill("SIGTERM")
    expect(await host.exited).toEqual({ code: null, signal: "SIGTERM" })
    expect(await allGone(host)).toBe(true)
  })

  it("two copies with a tree each: SIGINT kills both trees and the host dies by SIGINT", async () => {
    const host = await startHost(["--copy=query"])
    host.child.kill("SIGINT")
    expect(await host.exited).toEqual({ code: null, signal: "SIGINT" })
    expect(await allGone(host)).toBe(true)
  })

  it("a copy with another registry version keeps its own hooks: SIGTERM kills every copy's tree", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "cwp-exit-hooks-"))
    try {
      const host = await startHost(["--copy=query", `--copy=${otherVersionCopy(dir)}`])
      expect(host.ready.trees.map((tree) => tree.length)).toEqual([4, 4, 4])
      host.child.kill("SIGTERM")
      expect(await host.exited).toEqual({ code: null, signal: "SIGTERM" })
      expect(await allGone(host)).toBe(true)
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })

  it("two copies with a tree each: a host exit kills both trees", async () => {
    const host = await startHost(["--copy=query", "--mode=exit"])
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
  const events = ["exit", "SIGTERM", "SIGINT", "SIGHUP", "newListener"] as const
  const counts = () => events.map((event) => process.listenerCount(event))
  const isOurs = (listener: unknown) =>
    (listener as { [key: symbol]: unknown })[Symbol.for("codex-worker-pool/exit-hooks/listener")] === true
  // Trees of processes that do not exist: registering must not need a live one.
  const deadTree = (n: number) => ProcessTree.fromIdentity({ pid: 2 ** 22 + n, startTime: "0" })

  it("hooks are installed once, in front of every other listener, and removed when the last tree unregisters", () => {
    const before = counts()
    const unregisterA = register(deadTree(1))
    const withOne = counts()
    for (const event of ["exit", "SIGTERM", "SIGINT", "SIGHUP"]) {
      expect(isOurs(process.rawListeners(event)[0])).toBe(true)
    }
    const unregisterB = register(deadTree(2))
    expect(counts()).toEqual(withOne)
    expect(registeredCount()).toBe(2)

    unregisterA()
    unregisterA()
    expect(counts()).toEqual(withOne)
    unregisterB()
    expect(registeredCount()).toBe(0)
    expect(counts()).toEqual(before)
    expect(withOne.map((count, i) => count - before[i]!)).toEqual([1, 1, 1, 1, 1])
  })

  it("every loaded copy shares one set of hooks, removed when the last tree of any copy leaves", async () => {
    const specifier = "../src/internal/exitHooks.ts?copy=2"
    const copy = (await import(specifier)) as { register: typeof register; registeredCount: typeof registeredCount }
    expect(copy.register).not.toBe(register)
    const before = counts()
    const unregisterA = register(deadTree(1))
    const withOne = counts()
    const unregisterB = copy.register(deadTree(2))
    expect(counts()).toEqual(withOne)
    expect([registeredCount(), copy.registeredCount()]).toEqual([2, 2])
    // The copy that installed the hooks leaves first: they stay for the other's tree.
    unregisterA()
    expect(counts()).toEqual(withOne)
    expect(copy.registeredCount()).toBe(1)
    unregisterB()
    expect(counts()).toEqual(before)
  })

  it("a listener the host prepends later finds ours back in front of it", async () => {
    const unregister = register(deadTree(1))
    const withOne = counts()
    const hostListener = () => {}
    process.prependListener("SIGHUP", hostListener)
    expect(process.rawListeners("SIGHUP")[0]).toBe(hostListener)
    await new Promise((resolve) => setImmediate(resolve))
    expect(isOurs(process.rawListeners("SIGHUP")[0])).toBe(true)
    expect(process.rawListeners("SIGHUP")[1]).toBe(hostListener)
    expect(process.listenerCount("SIGHUP")).toBe(withOne[3]! + 1)
    process.removeListener("SIGHUP", hostListener)
    unregister()
    expect(process.listenerCount("SIGHUP")).toBe(withOne[3]! - 1)
  })
})

import { afterEach, beforeEach, describe, expect, it } from "@effect/vitest"
import { Effect, Fiber } from "effect"
import { TestClock } from "effect/testing"
import { type ChildProcess, spawn } from "node:child_process"
import * as fs from "node:fs"
import { childrenOf, parseStat, readIdentity, readStat } from "../src/internal/procfs.ts"
import {
  descendantsOf,
  isAlive,
  kill,
  KILL_WAIT_MS,
  killSync,
  ProcessTree,
  refreshEvery,
  signal
} from "../src/internal/processTree.ts"
import {
  isLivePid,
  liveByMarker,
  killByMarker,
  markerArg,
  newMarker,
  spawnFakeAppServer,
  statFields,
  waitUntil
} from "./helpers/procs.ts"

let marker = ""
beforeEach(() => {
  marker = newMarker()
})
afterEach(async () => {
  await killByMarker(marker)
  expect(liveByMarker(marker)).toEqual([])
})

const IDLE = "setInterval(() => {}, 60_000)"

/** Starts `node -e code -- --cwp-marker=...` and resolves once it is running. */
const spawnNode = (code: string, options: { readonly detached?: boolean } = {}): Promise<ChildProcess> =>
  new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["-e", code, "--", markerArg(marker)], {
      detached: options.detached ?? false,
      stdio: "ignore"
    })
    child.once("spawn", () => resolve(child))
    child.once("error", reject)
  })

const until = (predicate: () => boolean, timeoutMs = 5_000) =>
  Effect.promise(() => waitUntil(predicate, { timeoutMs }))

describe("procfs", () => {
  it("parseStat takes the fields after the last closing parenthesis", () => {
    const stat = parseStat("42 (a) b (c)) S 7 42 40 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 123456 0 0\n")
    expect(stat).toEqual({ pid: 42, state: "S", ppid: 7, pgrp: 42, session: 40, startTime: "123456" })
  })

  it("readIdentity reads a live process whose command name has spaces and parentheses", async () => {
    // process.title rewrites both comm and cmdline: keep the marker in it.
    const child = await spawnNode(`process.title = "p) q (${markerArg(marker)}"; ${IDLE}`)
    const pid = child.pid!
    expect(await waitUntil(() => readText(`/proc/${pid}/comm`).startsWith("p) q ("))).toBe(true)

    expect(readStat(pid)).toMatchObject({ pid, ppid: process.pid, state: expect.stringMatching(/^[RS]$/) })
    const identity = readIdentity(pid)
    expect(identity?.startTime).toMatch(/^\d+$/)
    expect(isAlive(identity!)).toBe(true)
  })

  it("isAlive is false for a zombie and for a live pid with another start time", async () => {
    // The background node exits at once; the exec'd node never reaps it, so it stays a zombie.
    const m = markerArg(marker)
    const node = JSON.stringify(process.execPath)
    const sh = spawn("sh", ["-c", `${node} -e 0 -- ${m} & exec ${node} -e '${IDLE}' -- ${m}`], { stdio: "ignore" })
    const parent = sh.pid!
    expect(await waitUntil(() => childrenOf(parent).some((pid) => readStat(pid)?.state === "Z"))).toBe(true)
    const zombie = readIdentity(childrenOf(parent).find((pid) => readStat(pid)?.state === "Z")!)!

    expect(isAlive(zombie)).toBe(false)
    const live = readIdentity(parent)!
    expect(isAlive(live)).toBe(true)
    expect(isAlive({ pid: parent, startTime: `${Number(live.startTime) + 1}` })).toBe(false)
  })

  it("descendantsOf finds children in the root's group, in another group and in another session", async () => {
    const server = await spawnFakeAppServer(marker)
    const [group, pgroup, session] = server.mcpChildren
    const root = statFields(server.pid)!
    expect(statFields(group!)).toMatchObject({ pgrp: server.pid, session: root.session })
    expect(statFields(pgroup!)).toMatchObject({ pgrp: pgroup, session: root.session })
    expect(statFields(session!)).toMatchObject({ pgrp: session, session })

    expect(descendantsOf(server.pid).map((id) => id.pid).sort()).toEqual([...server.mcpChildren].sort())
  })
})

describe("ProcessTree", () => {
  it("refresh records descendants and keeps them after they are re-parented to init", async () => {
    const server = await spawnFakeAppServer(marker)
    const tree = ProcessTree.fromPid(server.pid)
    expect(tree.members().map((id) => id.pid)).toEqual([server.pid])
    expect(tree.refresh().map((id) => id.pid).sort()).toEqual([...server.mcpChildren].sort())

    process.kill(server.pid, "SIGKILL")
    await server.exited
    expect(server.mcpChildren.every((pid) => statFields(pid)?.ppid !== server.pid)).toBe(true)
    tree.refresh()
    expect(tree.members()).toHaveLength(4)
    expect(tree.liveMembers().map((id) => id.pid).sort()).toEqual([...server.mcpChildren].sort())
  })

  it("refresh tells subscribers only about newly recorded processes", async () => {
    const server = await spawnFakeAppServer(marker)
    const tree = ProcessTree.fromPid(server.pid)
    const batches: Array<Array<number>> = []
    const unsubscribe = tree.subscribe((added) => batches.push(added.map((id) => id.pid)))
    tree.refresh()
    tree.refresh()
    unsubscribe()
    expect(batches.map((pids) => pids.sort())).toEqual([[...server.mcpChildren].sort()])
  })

  it("residentBytes sums the live members and drops to 0 once they are dead", async () => {
    const server = await spawnFakeAppServer(marker)
    const tree = ProcessTree.fromPid(server.pid)
    tree.refresh()
    expect(tree.residentBytes()).toBeGreaterThan(4 * 1024 * 1024)
    killSync(tree)
    expect(await waitUntil(() => tree.liveCount() === 0)).toBe(true)
    expect(tree.residentBytes()).toBe(0)
  })

  it("a root that does not lead a process group gets no group signal", async () => {
    const child = await spawnNode(IDLE)
    const tree = ProcessTree.fromPid(child.pid!)
    expect(tree.processGroup).toBeUndefined()
    expect(tree.ownsProcessGroup()).toBe(false)
    signal(tree, "SIGKILL")
    expect(await waitUntil(() => !isLivePid(child.pid!))).toBe(true)
  })

  it.live("refreshEvery records descendants without an explicit refresh", () =>
    Effect.gen(function*() {
      const server = yield* Effect.promise(() => spawnFakeAppServer(marker))
      const tree = ProcessTree.fromPid(server.pid)
      const fiber = yield* Effect.forkChild(refreshEvery(tree, "20 millis"))
      expect(yield* until(() => tree.members().length === 4)).toBe(true)
      yield* Fiber.interrupt(fiber)
    }))
})

describe("kill", () => {
  it.live("kill ends the process group and descendants in other groups and sessions", () =>
    Effect.gen(function*() {
      const server = yield* Effect.promise(() => spawnFakeAppServer(marker))
      const tree = ProcessTree.fromPid(server.pid)
      const outcome = yield* kill(tree, { graceMs: 2_000 })
      expect(outcome.survivors).toBe(0)
      expect(liveByMarker(marker)).toEqual([])
    }))

  it.live("kill escalates to SIGKILL after the grace period for processes that ignore SIGTERM", () =>
    Effect.gen(function*() {
      const server = yield* Effect.promise(() => spawnFakeAppServer(marker))
      const tree = ProcessTree.fromPid(server.pid)
      const outcome = yield* kill(tree, { graceMs: 200 })
      expect(outcome).toEqual({ escalated: true, survivors: 0 })
      // The root got SIGTERM first (it exits 0 on SIGTERM); the two that ignore it needed SIGKILL.
      expect(yield* Effect.promise(() => server.exited)).toEqual({ code: 0, signal: null })
      expect(liveByMarker(marker)).toEqual([])
    }))

  it.live("kill does not escalate when everything exits on SIGTERM", () =>
    Effect.gen(function*() {
      const server = yield* Effect.promise(() => spawnFakeAppServer(marker, []))
      const outcome = yield* kill(ProcessTree.fromPid(server.pid), { graceMs: 5_000 })
      expect(outcome).toEqual({ escalated: false, survivors: 0 })
      expect(yield* Effect.promise(() => server.exited)).toEqual({ code: 0, signal: null })
    }))

  it.effect("kill is bounded by graceMs plus KILL_WAIT_MS", () =>
    Effect.gen(function*() {
      const server = yield* Effect.promise(() => spawnFakeAppServer(marker))
      const tree = ProcessTree.fromPid(server.pid)
      const graceMs = 60_000
      const fiber = yield* Effect.forkChild(kill(tree, { graceMs }))
      yield* TestClock.adjust(graceMs + KILL_WAIT_MS)
      // On the TestClock no real time passed, yet the kill has finished and escalated.
      expect(fiber.pollUnsafe()).toBeDefined()
      expect((yield* Fiber.join(fiber)).escalated).toBe(true)
      expect(yield* TestClock.withLive(until(() => liveByMarker(marker).length === 0))).toBe(true)
    }))

  it.live("interrupting kill during the grace period SIGKILLs what is left", () =>
    Effect.gen(function*() {
      const server = yield* Effect.promise(() => spawnFakeAppServer(marker))
      const tree = ProcessTree.fromPid(server.pid)
      const fiber = yield* Effect.forkChild(kill(tree, { graceMs: 60_000 }))
      expect(yield* until(() => !isLivePid(server.pid))).toBe(true)
      expect(yield* until(() => liveByMarker(marker).length === 2)).toBe(true) // the two that ignore SIGTERM
      yield* Fiber.interrupt(fiber)
      expect(yield* until(() => liveByMarker(marker).length === 0)).toBe(true)
    }))

  it.live("a recorded descendant re-parented to init is still killed", () =>
    Effect.gen(function*() {
      const server = yield* Effect.promise(() => spawnFakeAppServer(marker))
      const tree = ProcessTree.fromPid(server.pid)
      tree.refresh()
      process.kill(server.pid, "SIGKILL")
      yield* Effect.promise(() => server.exited)
      expect(liveByMarker(marker)).toHaveLength(3)

      const outcome = yield* kill(tree, { graceMs: 200 })
      expect(outcome.survivors).toBe(0)
      expect(liveByMarker(marker)).toEqual([])
    }))

  it.live("a reused PID with a different start time is not signalled", () =>
    Effect.gen(function*() {
      // A live group leader we own, seen through an identity with another start time.
      const child = yield* Effect.promise(() => spawnNode(IDLE, { detached: true }))
      const real = readIdentity(child.pid!)!
      const tree = ProcessTree.fromIdentity({ pid: real.pid, startTime: `${Number(real.startTime) - 1}` })
      expect(tree.liveCount()).toBe(0)

      signal(tree, "SIGKILL")
      killSync(tree)
      yield* kill(tree, { graceMs: 50 })
      expect(isAlive(real)).toBe(true)
      expect(statFields(real.pid)?.state).not.toBe("Z")
    }))

  it.live("killSync SIGKILLs the whole tree without a grace period", () =>
    Effect.gen(function*() {
      const server = yield* Effect.promise(() => spawnFakeAppServer(marker))
      killSync(ProcessTree.fromPid(server.pid))
      expect(yield* Effect.promise(() => server.exited)).toEqual({ code: null, signal: "SIGKILL" })
      expect(yield* until(() => liveByMarker(marker).length === 0)).toBe(true)
    }))
})

function readText(path: string): string {
  try {
    return fs.readFileSync(path, "utf8")
  } catch {
    return ""
  }
}

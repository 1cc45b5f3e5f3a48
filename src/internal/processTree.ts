/**
 * Whole-process-tree cleanup for one worker on Linux.
 *
 * A `ProcessTree` is created for the worker's direct child (codex), which is
 * spawned detached, so its pid is also the id of a process group we created.
 * Codex starts MCP servers in their own process groups and sandboxed commands
 * in their own sessions, so a signal to codex's group does not reach them, and
 * when codex dies they are re-parented to init, where no walk from codex can
 * find them. So the tree *remembers*: every `refresh()` walks the children of
 * the root and of every recorded member still alive, and keeps every process
 * it ever saw. `kill` then signals the root's group and each recorded member.
 *
 * Guarantees:
 * - Every signal to a single process is guarded by its start time, so a pid
 *   reused by an unrelated process is never signalled. The process group is
 *   only signalled while its id is still held by the root (alive or zombie)
 *   or by a live recorded member: Linux does not hand out a pid that is in use
 *   as a process-group id, so the group is still the one we created.
 * - `kill` is bounded: SIGTERM, up to `graceMs` for everything to exit, SIGKILL
 *   to the survivors, then at most `KILL_WAIT_MS` more. Zombies count as dead.
 *
 * Limits (not guaranteed):
 * - A descendant that was started *and* re-parented (its parent died) between
 *   two refreshes is never seen, unless it stayed in the root's process group.
 *   Refresh after spawn, periodically, and right before killing.
 * - A process that moved to another group or session and whose recorded
 *   ancestors all died before it was seen is out of reach, as is anything that
 *   escaped via a double fork between refreshes.
 * - A pid can be reused in the microseconds between the liveness check and
 *   `kill(2)`; Node exposes no pidfd to close that window.
 * - A process in uninterruptible sleep (state D) may outlive SIGKILL for a
 *   while; `kill` reports it in `survivors` rather than waiting for it.
 * - Linux only: elsewhere a tree is empty and killing it does nothing.
 *
 * @since 0.1.0
 */
import { Clock, Effect } from "effect"
import type { Duration } from "effect"
import {
  descendantsOf,
  isAlive,
  liveStatOf,
  type ProcessIdentity,
  readIdentity,
  residentBytesOf,
  statOf
} from "./procfs.ts"

export { childrenOf, descendantsOf, isAlive, type ProcessIdentity, readIdentity } from "./procfs.ts"

/** How long `kill` waits for processes to disappear after SIGKILL. */
export const KILL_WAIT_MS = 1_000

/** How often `kill` looks at `/proc` while waiting. */
const POLL_MS = 25

const keyOf = (id: ProcessIdentity): string => `${id.pid}:${id.startTime}`

/**
 * The processes started under one root: the root itself and every descendant
 * seen by a `refresh()` so far, including those since re-parented elsewhere.
 *
 * @since 0.1.0
 * @category models
 */
export class ProcessTree {
  /** The root (codex), or `undefined` when it was already gone at creation. */
  readonly root: ProcessIdentity | undefined
  /**
   * The process group the root leads (its pid), or `undefined` when the root
   * is not a group leader: then no group is ever signalled, as it would be
   * someone else's (possibly ours).
   */
  readonly processGroup: number | undefined
  readonly #members = new Map<string, ProcessIdentity>()
  readonly #listeners = new Set<(added: ReadonlyArray<ProcessIdentity>) => void>()

  /** Tracks the process that has `pid` now. Prefer `fromIdentity` when the identity was read earlier. */
  static fromPid(pid: number): ProcessTree {
    return new ProcessTree(readIdentity(pid))
  }

  /** Tracks the process `root` names; a tree whose root is already gone is empty. */
  static fromIdentity(root: ProcessIdentity): ProcessTree {
    return new ProcessTree(root)
  }

  private constructor(root: ProcessIdentity | undefined) {
    const stat = root === undefined ? undefined : statOf(root)
    this.root = stat === undefined ? undefined : root
    this.processGroup = stat !== undefined && stat.pgrp === stat.pid ? stat.pid : undefined
    if (this.root !== undefined && isAlive(this.root)) this.#members.set(keyOf(this.root), this.root)
  }

  /**
   * Walks the children of the root and of every live recorded member, and
   * records every live process found. Earlier records are kept. Returns the
   * newly recorded identities (also passed to `subscribe` listeners).
   */
  refresh(): ReadonlyArray<ProcessIdentity> {
    const added: Array<ProcessIdentity> = []
    const walked = new Set<string>()
    for (const member of [...this.#members.values()]) {
      // A member found under an earlier member in this pass was walked with it.
      if (walked.has(keyOf(member)) || !isAlive(member)) continue
      for (const id of descendantsOf(member.pid)) {
        const key = keyOf(id)
        walked.add(key)
        if (this.#members.has(key)) continue
        this.#members.set(key, id)
        added.push(id)
      }
    }
    if (added.length > 0) {
      for (const listener of this.#listeners) {
        try {
          listener(added)
        } catch {
          // An observer (the watchdog feed) must never stand between a tree and its kill.
        }
      }
    }
    return added
  }

  /** Every process recorded so far, live or not, root first. */
  members(): ReadonlyArray<ProcessIdentity> {
    return [...this.#members.values()]
  }

  /** Recorded processes still alive (same start time, not zombies). */
  liveMembers(): ReadonlyArray<ProcessIdentity> {
    return this.members().filter(isAlive)
  }

  /** How many recorded processes are still alive. */
  liveCount(): number {
    return this.liveMembers().length
  }

  /** Sum of the resident memory (VmRSS) of the live recorded processes, in bytes. */
  residentBytes(): number {
    let total = 0
    for (const member of this.#members.values()) total += residentBytesOf(member)
    return total
  }

  /**
   * Calls `listener` with the identities each later `refresh()` records (its
   * exceptions are ignored). Returns an unsubscribe function.
   */
  subscribe(listener: (added: ReadonlyArray<ProcessIdentity>) => void): () => void {
    this.#listeners.add(listener)
    return () => {
      this.#listeners.delete(listener)
    }
  }

  /** True while the process-group id is still held by the root (even as a zombie) or a live recorded member. */
  ownsProcessGroup(): boolean {
    const group = this.processGroup
    if (group === undefined || this.root === undefined) return false
    if (statOf(this.root) !== undefined) return true
    return this.members().some((member) => liveStatOf(member)?.pgrp === group)
  }
}

const send = (target: number, sig: NodeJS.Signals): void => {
  try {
    process.kill(target, sig)
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ESRCH") throw error
  }
}

/**
 * Sends `sig` to the root's process group (only while `tree` still owns it)
 * and to every live recorded member outside that group, each checked against
 * its start time just before, so no process gets the signal twice. Processes
 * that are already gone are skipped silently.
 *
 * @since 0.1.0
 * @category killing
 */
export const signal = (tree: ProcessTree, sig: NodeJS.Signals): void => {
  const group = tree.processGroup !== undefined && tree.ownsProcessGroup() ? tree.processGroup : undefined
  if (group !== undefined) send(-group, sig)
  for (const member of tree.members()) {
    const stat = liveStatOf(member)
    if (stat !== undefined && stat.pgrp !== group) send(member.pid, sig)
  }
}

/**
 * What `kill` did.
 *
 * @since 0.1.0
 * @category models
 */
export interface KillOutcome {
  /** True when something was still alive after the grace period and got SIGKILL. */
  readonly escalated: boolean
  /** Recorded processes still alive when `kill` gave up waiting (normally 0). */
  readonly survivors: number
}

const waitUntilGone = (tree: ProcessTree, ms: number): Effect.Effect<boolean> =>
  Effect.gen(function*() {
    const deadline = (yield* Clock.currentTimeMillis) + ms
    while (tree.liveCount() > 0) {
      const left = deadline - (yield* Clock.currentTimeMillis)
      if (left <= 0) return false
      yield* Effect.sleep(Math.min(POLL_MS, left))
    }
    return true
  })

/**
 * Ends the whole tree: refresh, SIGTERM everything, wait up to `graceMs` for
 * every recorded process to exit, then refresh and SIGKILL the survivors and
 * wait at most `KILL_WAIT_MS` more. Never fails; takes at most about
 * `graceMs + KILL_WAIT_MS`.
 *
 * Time comes from `Clock`, so it runs on the `TestClock` in tests. If the
 * fiber is interrupted while waiting, everything left is SIGKILLed at once.
 *
 * Runs under a `ProcessTree.kill` span: `process.pid` (the root's),
 * `process_tree.processes` (recorded processes alive when SIGTERM was sent),
 * then `process_tree.escalated` (SIGKILL was needed) and
 * `process_tree.survivors`.
 *
 * @since 0.1.0
 * @category killing
 */
export const kill = (
  tree: ProcessTree,
  options: { readonly graceMs: number }
): Effect.Effect<KillOutcome> =>
  Effect.gen(function*() {
    tree.refresh()
    yield* Effect.annotateCurrentSpan("process_tree.processes", tree.liveCount())
    signal(tree, "SIGTERM")
    if (yield* waitUntilGone(tree, options.graceMs)) return { escalated: false, survivors: 0 }
    killSync(tree)
    yield* waitUntilGone(tree, KILL_WAIT_MS)
    return { escalated: true, survivors: tree.liveCount() }
  }).pipe(
    Effect.tap((outcome) =>
      Effect.annotateCurrentSpan({
        "process_tree.escalated": outcome.escalated,
        "process_tree.survivors": outcome.survivors
      })
    ),
    Effect.onInterrupt(() => Effect.sync(() => killSync(tree))),
    Effect.withSpan("ProcessTree.kill", { attributes: tree.root === undefined ? {} : { "process.pid": tree.root.pid } })
  )

/**
 * Refreshes and SIGKILLs the whole tree synchronously, without waiting. For
 * exit hooks, where nothing asynchronous runs any more.
 *
 * @since 0.1.0
 * @category killing
 */
export const killSync = (tree: ProcessTree): void => {
  tree.refresh()
  signal(tree, "SIGKILL")
}

/**
 * Refreshes `tree` every `interval`, for ever: fork it for the worker's
 * lifetime so that descendants are recorded before they can be re-parented.
 *
 * @since 0.1.0
 * @category combinators
 */
export const refreshEvery = (tree: ProcessTree, interval: Duration.Input): Effect.Effect<never> =>
  Effect.forever(Effect.andThen(Effect.sleep(interval), Effect.sync(() => tree.refresh())))

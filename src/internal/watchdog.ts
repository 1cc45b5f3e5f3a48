/**
 * Opt-in safety net for a host that is SIGKILLed: a small watchdog process
 * that learns the identities of every tracked tree's processes and, when its
 * stdin reaches EOF without a "bye" (the host died), SIGKILLs those still
 * alive, with their descendants. See `watchdogMain.ts` for the process side.
 *
 * - The watchdog is started with `process.execPath` and no inherited
 *   `execArgv` or environment, detached (own session, so terminal signals
 *   and a kill of the host's group leave it alone) and unref'd, so it never
 *   keeps the host alive. It runs `watchdogMain.js` next to this module in a
 *   build, `watchdogMain.ts` when run from source.
 * - It knows what the host told it: identities are sent when a tree is
 *   tracked and on each `refresh()` that records new processes. A process
 *   started after the last refresh is still found if a tracked ancestor is
 *   alive when the host dies (the watchdog walks descendants then).
 * - Each kill is guarded by start time, so a reused pid is never signalled.
 * - It costs one Node process (about 45 MB RSS) per `startWatchdog()`; share
 *   one between pools.
 * - If the watchdog itself is killed, nothing replaces it; writes to a dead
 *   watchdog are dropped silently.
 *
 * @since 0.1.0
 */
import { spawn } from "node:child_process"
import { fileURLToPath } from "node:url"
import type { ProcessIdentity } from "./procfs.ts"
import type { ProcessTree } from "./processTree.ts"

/**
 * A running watchdog process.
 *
 * @since 0.1.0
 * @category models
 */
export interface Watchdog {
  /** Pid of the watchdog process (undefined if it could not be started). */
  readonly pid: number | undefined
  /**
   * Sends the tree's current members and every later refresh to the
   * watchdog. Returns a function that stops tracking and makes the watchdog
   * forget the tree (call it once the tree was killed normally).
   */
  readonly track: (tree: ProcessTree) => () => void
  /** Tells the watchdog to exit without killing anything. Idempotent. */
  readonly stop: () => void
}

const mainScript = (): string => {
  const extension = import.meta.url.endsWith(".ts") ? ".ts" : ".js"
  return fileURLToPath(new URL(`./watchdogMain${extension}`, import.meta.url))
}

/**
 * Starts a watchdog process. `args` are appended to its command line (a tag to
 * recognise it by in `ps`, for example).
 *
 * @since 0.1.0
 * @category constructors
 */
export const startWatchdog = (options: { readonly args?: ReadonlyArray<string> | undefined } = {}): Watchdog => {
  const child = spawn(process.execPath, [mainScript(), ...(options.args ?? [])], {
    cwd: "/",
    env: {},
    detached: true,
    stdio: ["pipe", "ignore", "ignore"]
  })
  child.on("error", () => {})
  child.stdin.on("error", () => {})
  child.unref()
  let stopped = false

  const write = (message: {
    readonly op: "track" | "forget" | "bye"
    readonly processes?: ReadonlyArray<ProcessIdentity>
    readonly group?: ProcessIdentity | undefined
  }): void => {
    if (!stopped && child.stdin.writable) child.stdin.write(`${JSON.stringify(message)}\n`)
  }

  return {
    pid: child.pid,
    track: (tree) => {
      const group = tree.processGroup === undefined ? undefined : tree.root
      write({ op: "track", processes: tree.members(), group })
      const unsubscribe = tree.subscribe((added) => write({ op: "track", processes: added }))
      let tracking = true
      return () => {
        if (!tracking) return
        tracking = false
        unsubscribe()
        write({ op: "forget", processes: tree.members(), group })
      }
    },
    stop: () => {
      write({ op: "bye" })
      stopped = true
      child.stdin.end()
    }
  }
}

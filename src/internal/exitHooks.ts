/**
 * Host-exit safety: while at least one process tree is registered, the host
 * process kills every registered tree when it exits, so workers do not
 * outlive a host that ends without shutting its pools down.
 *
 * - One set of hooks per loaded copy of this module, however many pools: a
 *   `process.on("exit")` listener and SIGTERM/SIGINT/SIGHUP listeners,
 *   installed with the first registered tree and removed with the last.
 * - On exit (end of the event loop, `process.exit`, an uncaught exception),
 *   every registered tree is SIGKILLed synchronously (`killSync`): nothing
 *   asynchronous runs any more, so there is no grace period.
 * - On SIGTERM/SIGINT/SIGHUP, if our listener is the only one for that
 *   signal, the host is about to die by it: every registered tree is
 *   SIGKILLed, our listeners are removed and the signal is raised again, so
 *   the host dies exactly as it would have without us (default action, exit
 *   status 128 + n). If the host has listeners of its own (Effect's
 *   `NodeRuntime.runMain`, a server's graceful stop), the signal does not end
 *   the host by itself: the trees are left to the host's own shutdown, which
 *   kills them gracefully, and the exit hook still covers a later exit.
 * - Node resets every signal disposition to the default at startup (even
 *   under `nohup` or in a background job, only SIGPIPE and SIGXFSZ stay
 *   ignored), so without listeners these three signals are fatal to the host:
 *   re-raising reproduces exactly that.
 *
 * What cannot be done: when the host is SIGKILLed (or the OOM killer picks
 * it) no code of ours runs. Codex still exits when its stdin reaches EOF, but
 * descendants it put in other process groups or sessions (MCP servers,
 * sandboxed commands) may live on. The opt-in watchdog (`watchdog.ts`), a
 * separate process, covers that case.
 *
 * @since 0.1.0
 */
import { killSync, type ProcessTree } from "./processTree.ts"

const SIGNALS = ["SIGTERM", "SIGINT", "SIGHUP"] as const

const trees = new Set<ProcessTree>()
const installed = new Map<string, (...args: Array<any>) => void>()

const killAll = (): void => {
  for (const tree of trees) {
    try {
      killSync(tree)
    } catch {
      // Keep going: one unexpected failure must not spare the other trees.
    }
  }
}

const onSignal = (sig: NodeJS.Signals): void => {
  if (process.listenerCount(sig) === 1) {
    killAll()
    uninstall()
    trees.clear()
    process.kill(process.pid, sig)
  }
}

const install = (): void => {
  installed.set("exit", killAll)
  for (const sig of SIGNALS) installed.set(sig, onSignal)
  for (const [event, listener] of installed) process.on(event, listener)
}

const uninstall = (): void => {
  for (const [event, listener] of installed) process.removeListener(event, listener)
  installed.clear()
}

/**
 * Kills `tree` synchronously if the host exits or is ended by SIGTERM, SIGINT
 * or SIGHUP while it is registered. Returns the function that unregisters it
 * (idempotent); call it once the tree has been killed normally.
 *
 * @since 0.1.0
 * @category exit safety
 */
export const register = (tree: ProcessTree): (() => void) => {
  if (installed.size === 0) install()
  trees.add(tree)
  return () => {
    if (!trees.delete(tree)) return
    if (trees.size === 0) uninstall()
  }
}

/**
 * How many trees are registered now.
 *
 * @since 0.1.0
 * @category getters
 */
export const registeredCount = (): number => trees.size

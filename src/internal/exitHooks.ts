/**
 * Host-exit safety: while at least one process tree is registered, the host
 * process kills every registered tree when it exits, so workers do not
 * outlive a host that ends without shutting its pools down.
 *
 * - One set of hooks per process, however many pools and however many loaded
 *   copies of this module (two versions of the library in one `node_modules`
 *   tree, a bundled and an unbundled copy): the registry lives on
 *   `globalThis` under `Symbol.for("codex-worker-pool/exit-hooks/v1")` and
 *   holds every copy's trees. The first registered tree installs an `exit`
 *   listener, SIGTERM/SIGINT/SIGHUP listeners and a `newListener` listener
 *   (see below); the last tree to leave, whichever copy registered it,
 *   removes them. Nothing is touched at import.
 * - Every listener of ours carries the property
 *   `Symbol.for("codex-worker-pool/exit-hooks/listener")`, whatever the
 *   registry's version, so no copy mistakes another copy's listener for one
 *   of the host's. (A future version whose registry layout differs uses a new
 *   key, installs its own hooks beside these, and still recognises them.)
 * - Ours run first: they are added with `prependListener`, and when the host
 *   later adds a listener for one of these events (even with
 *   `prependListener`), ours are moved back in front in a microtask. So a
 *   host `exit` listener that throws or calls `process.exit` cannot skip
 *   ours, and a host's `process.once` signal listener (which Node removes
 *   just before calling it) is still registered when ours looks for it.
 * - On exit (end of the event loop, `process.exit`, an uncaught exception),
 *   every registered tree is SIGKILLed synchronously (`killSync`): nothing
 *   asynchronous runs any more, so there is no grace period.
 * - On SIGTERM/SIGINT/SIGHUP, if no listener but ours (of any copy) is
 *   registered for that signal, the host is about to die by it: every
 *   registered tree is SIGKILLed, our listeners are removed and the signal is
 *   raised again, so the host dies exactly as it would have without us
 *   (default action, exit status 128 + n). If the host has listeners of its
 *   own, `on` or `once` (Effect's `NodeRuntime.runMain`, `close-with-grace`,
 *   a server's graceful stop), the signal does not end the host by itself:
 *   the trees are left to the host's own shutdown, which kills them
 *   gracefully, and the exit hook still covers a later exit. A second signal
 *   after a `once` listener has fired finds no host listener, so it ends the
 *   host the default way, trees first.
 * - Node resets every signal disposition to the default at startup (even
 *   under `nohup` or in a background job, only SIGPIPE and SIGXFSZ stay
 *   ignored), so without listeners these three signals are fatal to the host:
 *   re-raising reproduces exactly that.
 *
 * Limits:
 * - A host listener prepended in the same synchronous run as the event itself
 *   (`process.prependListener("exit", f); process.exit()`) runs before ours,
 *   since the microtask that moves ours back in front has not run yet. If it
 *   throws or calls `process.exit`, ours is skipped. Signals are always
 *   emitted from the event loop, after that microtask.
 * - Another library's "act only if alone" signal listener counts as a host
 *   listener, and it counts ours the same way. `signal-exit` (pulled in by
 *   `ora`, `execa`, `write-file-atomic`, ...) re-raises only when its own
 *   listeners are the only ones: with it loaded and no real host listener,
 *   SIGTERM/SIGINT/SIGHUP end neither it nor us, so the host keeps running
 *   until something else ends it (the exit hook still covers that end).
 * - When the host is SIGKILLed (or the OOM killer picks it) no code of ours
 *   runs. Codex still exits when its stdin reaches EOF, but descendants it put
 *   in other process groups or sessions (MCP servers, sandboxed commands) may
 *   live on. The opt-in watchdog (`watchdog.ts`), a separate process, covers
 *   that case.
 *
 * @since 0.1.0
 */
import { killSync, type ProcessTree } from "./processTree.ts"

const SIGNALS = ["SIGTERM", "SIGINT", "SIGHUP"] as const

type Listener = (...args: Array<any>) => void

/** `process` with untyped event names (its own overloads only take known ones). */
const events: NodeJS.EventEmitter = process

/** The property every listener of ours carries, in every copy and registry version. */
const OURS = Symbol.for("codex-worker-pool/exit-hooks/listener")

/** Where the registry lives on `globalThis`. Change the version when `Registry` changes shape or meaning. */
const REGISTRY = Symbol.for("codex-worker-pool/exit-hooks/v1")

/**
 * State shared by every loaded copy of this module (same key, same layout).
 * Listeners installed by one copy serve the trees of all.
 */
interface Registry {
  /** One synchronous kill per registered tree, from every copy. */
  readonly kills: Set<() => void>
  /** The listeners installed now, by event (`exit`, the signals, `newListener`); empty when none are. */
  readonly listeners: Map<string, Listener>
}

let cached: Registry | undefined

/** The process-wide registry, created by the first copy that needs it (no side effect at import). */
const registry = (): Registry => {
  if (cached !== undefined) return cached
  const global = globalThis as { [REGISTRY]?: Registry }
  if (global[REGISTRY] === undefined) {
    Object.defineProperty(globalThis, REGISTRY, {
      value: { kills: new Set(), listeners: new Map() } satisfies Registry,
      enumerable: false,
      writable: false,
      configurable: false
    })
  }
  return (cached = global[REGISTRY]!)
}

const tagged = (listener: Listener): Listener => Object.defineProperty(listener, OURS, { value: true })

const isOurs = (listener: Function): boolean => (listener as { [OURS]?: unknown })[OURS] === true

const killAll = (): void => {
  for (const kill of registry().kills) {
    try {
      kill()
    } catch {
      // Keep going: one unexpected failure must not spare the other trees.
    }
  }
}

const exitListener = (): Listener => tagged(() => killAll())

const signalListener = (sig: NodeJS.Signals): Listener =>
  tagged(() => {
    // Ours runs first, so a host's `once` wrapper is still listed here.
    if (process.rawListeners(sig).some((listener) => !isOurs(listener))) return
    killAll()
    registry().kills.clear()
    uninstall()
    process.kill(process.pid, sig)
  })

const listenerFor = (event: string): Listener =>
  event === "exit" ? exitListener() : signalListener(event as NodeJS.Signals)

/** Puts our listener for `event` back in front of the host's (a fresh one, so it is never listed twice). */
const moveToFront = (event: string): void => {
  const current = registry().listeners.get(event)
  if (current === undefined || events.rawListeners(event)[0] === current) return
  const fresh = listenerFor(event)
  registry().listeners.set(event, fresh)
  // Added before the old one leaves, so a signal never finds zero listeners
  // (Node would restore its default action meanwhile).
  events.prependListener(event, fresh)
  events.removeListener(event, current)
}

const onNewListener = tagged((event: string | symbol, listener: Function) => {
  if (typeof event !== "string" || event === "newListener" || isOurs(listener)) return
  if (registry().listeners.has(event)) queueMicrotask(() => moveToFront(event))
})

const install = (): void => {
  const { listeners } = registry()
  for (const event of ["exit", ...SIGNALS]) listeners.set(event, listenerFor(event))
  for (const [event, listener] of listeners) events.prependListener(event, listener)
  listeners.set("newListener", onNewListener)
  events.on("newListener", onNewListener)
}

const uninstall = (): void => {
  const { listeners } = registry()
  for (const [event, listener] of listeners) events.removeListener(event, listener)
  listeners.clear()
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
  const { kills, listeners } = registry()
  const kill = () => killSync(tree)
  if (listeners.size === 0) install()
  kills.add(kill)
  return () => {
    if (!kills.delete(kill)) return
    if (kills.size === 0) uninstall()
  }
}

/**
 * How many trees are registered now, by every loaded copy of this module.
 *
 * @since 0.1.0
 * @category getters
 */
export const registeredCount = (): number => registry().kills.size

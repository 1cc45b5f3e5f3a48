/**
 * Test helpers for the real `codex app-server` run offline. The codex
 * configuration and the model server themselves are part of the package
 * (src/testing: `codexArgs`, `codexEnv`, `makeCodexHome`, `startModelServer`);
 * what is here is test-only: the path of the native binary, a marker for a
 * test's codex processes, and /proc-based lookups to find and end them.
 *
 * Guarantees: the marker rides on a real, harmless config key
 * (`shell_environment_policy.set.CWP_MARKER`), so codex raises no
 * "unrecognized configuration" warning, and it also shows up in the
 * environment of any command codex itself runs. The process helpers only
 * ever signal PIDs whose command line contains the marker.
 *
 * Limits: Linux only (native binary layout, /proc); tested with codex-cli
 * 0.169.0. No dependencies beyond node built-ins.
 */
import { readdirSync, readFileSync } from "node:fs"
import { nativeCodexBinary } from "../../src/internal/codexBinary.ts"
import { codexArgs, type CodexArgsOptions } from "../../src/testing/codexConfig.ts"

/**
 * Absolute path of the native codex binary. `CODEX_BINARY` in the environment
 * wins; otherwise the library's own lookup (the platform package of
 * `@openai/codex`). Throws with a hint if missing.
 */
export const codexBinaryPath = (): string => {
  const fromEnv = process.env["CODEX_BINARY"]
  if (fromEnv !== undefined && fromEnv !== "") return fromEnv
  const found = nativeCodexBinary()
  if (found === undefined) {
    throw new Error(
      "codex: native binary not found. Run `npm install` (it is an optional dependency of @openai/codex) " +
        "or set CODEX_BINARY."
    )
  }
  return found
}

/**
 * The `-c` override that carries a marker: pass it in `codexArgs({ config: [markerArg(marker)] })`
 * (exported so tests can search for it).
 */
export const markerArg = (marker: string): string => `shell_environment_policy.set.CWP_MARKER=${JSON.stringify(marker)}`

/** `codexArgs` for the model server at `baseUrl` (`server.url`), with the override carrying `marker`. */
export const markedCodexArgs = (
  baseUrl: string,
  marker: string,
  options: Omit<CodexArgsOptions, "baseUrl"> = {}
): Array<string> => codexArgs({ ...options, baseUrl, config: [markerArg(marker), ...(options.config ?? [])] })

/** A unique marker for one test's processes. */
export const makeMarker = (label = "t"): string =>
  `cwp-${label}-${process.pid}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`

/** Status of a process read from /proc. */
export interface ProcInfo {
  readonly pid: number
  /** The state letter from /proc/PID/stat (`R`, `S`, `Z`, ...). */
  readonly state: string
  readonly cmdline: ReadonlyArray<string>
}

/** Reads /proc/PID; `undefined` if the process is gone. */
export const procInfo = (pid: number): ProcInfo | undefined => {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
    // comm may contain spaces and parentheses: the state follows the last ")".
    const state = stat.slice(stat.lastIndexOf(")") + 2).split(" ")[0] ?? "?"
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").filter((part) => part !== "")
    return { pid, state, cmdline }
  } catch {
    return undefined
  }
}

/** True if the process exists and is not a zombie. */
export const isAlive = (pid: number): boolean => {
  const info = procInfo(pid)
  return info !== undefined && info.state !== "Z" && info.state !== "X"
}

/** Live (non-zombie) processes whose command line contains `marker`, found by scanning /proc. */
export const findMarkedProcesses = (marker: string): Array<ProcInfo> => {
  const found: Array<ProcInfo> = []
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue
    const pid = Number(entry)
    if (pid === process.pid) continue
    const info = procInfo(pid)
    if (info === undefined || info.state === "Z" || info.state === "X") continue
    if (info.cmdline.some((part) => part.includes(marker))) found.push(info)
  }
  return found
}

/** Direct children of a process, from /proc/PID/task/TID/children. */
export const childPids = (pid: number): Array<number> => {
  const children: Array<number> = []
  try {
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      const text = readFileSync(`/proc/${pid}/task/${tid}/children`, "utf8").trim()
      if (text !== "") children.push(...text.split(/\s+/).map(Number))
    }
  } catch {
    // process is gone
  }
  return children
}

/**
 * Sends SIGKILL to every live process carrying `marker`, then waits (bounded)
 * until none is left alive. Returns the PIDs it signalled.
 */
export const killMarkedProcesses = async (marker: string, timeoutMs = 5_000): Promise<Array<number>> => {
  const signalled: Array<number> = []
  for (const info of findMarkedProcesses(marker)) {
    try {
      process.kill(info.pid, "SIGKILL")
      signalled.push(info.pid)
    } catch {
      // already gone
    }
  }
  const deadline = Date.now() + timeoutMs
  while (findMarkedProcesses(marker).length > 0 && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
  return signalled
}


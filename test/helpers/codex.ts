/**
 * Helpers for running the real `codex app-server` offline against the mock
 * model server (test/fixtures/modelServer.ts).
 *
 * What it provides: the path of the native codex binary, the argument list
 * and environment for a run that talks only to 127.0.0.1, a throwaway
 * CODEX_HOME, and /proc-based lookups to find and end the processes a test
 * started (by the marker it put on their command line).
 *
 * Guarantees: the args never reach a network host other than the given base
 * URL (remote features and analytics are switched off, retries are 0); the
 * marker rides on a real, harmless config key
 * (`shell_environment_policy.set.CWP_MARKER`), so codex raises no
 * "unrecognized configuration" warning, and it also shows up in the
 * environment of any command codex itself would run. The process helpers only
 * ever signal PIDs whose command line contains the marker.
 *
 * Limits: Linux only (native binary layout, /proc); tested with codex-cli
 * 0.169.0. No dependencies beyond node built-ins.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { nativeCodexBinary } from "../../src/internal/codexBinary.ts"

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

/** Settings for {@link codexArgs}. */
export interface CodexArgsOptions {
  /** Model server base URL ending in `/v1`, e.g. `ModelServer.url`. */
  readonly baseUrl: string
  /** A unique string put on the command line so the process can be found in /proc. */
  readonly marker?: string
  /** Model name sent to the server; default `"mock-model"`. */
  readonly model?: string
  /** More `-c key=value` overrides, appended last (so they win). */
  readonly config?: ReadonlyArray<string>
}

/** Name of the environment variable that carries the model server's API key. */
export const MOCK_API_KEY_ENV = "MOCK_API_KEY"

/** The `-c` override that carries a marker (exported so tests can search for it). */
export const markerArg = (marker: string): string => `shell_environment_policy.set.CWP_MARKER=${tomlString(marker)}`

/**
 * Arguments for an offline `codex app-server` on stdio: model provider `mock`
 * at `baseUrl` (Responses wire API, no retries), remote plugins/apps/tool
 * suggestions and analytics off, shell snapshots off (otherwise every thread
 * runs the user's login shell, `bash -lc`, as a child of codex), and the
 * marker if given.
 */
export const codexArgs = (options: CodexArgsOptions): Array<string> => {
  const provider = `{name="Mock",base_url=${tomlString(options.baseUrl)},env_key="${MOCK_API_KEY_ENV}",` +
    `wire_api="responses",request_max_retries=0,stream_max_retries=0}`
  const args = [
    "app-server",
    "-c",
    `model=${tomlString(options.model ?? "mock-model")}`,
    "-c",
    "model_provider=mock",
    "-c",
    `model_providers.mock=${provider}`,
    "-c",
    "features.plugins=false",
    "-c",
    "features.apps=false",
    "-c",
    "features.remote_plugin=false",
    "-c",
    "features.tool_suggest=false",
    "-c",
    "analytics.enabled=false",
    "-c",
    "features.shell_snapshot=false"
  ]
  if (options.marker !== undefined) args.push("-c", markerArg(options.marker))
  for (const override of options.config ?? []) args.push("-c", override)
  return args
}

/** Environment for codex: the current one plus `CODEX_HOME`, the mock API key and `extra`. */
export const codexEnv = (
  options: { readonly codexHome: string; readonly apiKey?: string; readonly extra?: Record<string, string> }
): Record<string, string> => {
  const env: Record<string, string> = {}
  for (const [key, value] of Object.entries(process.env)) if (value !== undefined) env[key] = value
  env["CODEX_HOME"] = options.codexHome
  env[MOCK_API_KEY_ENV] = options.apiKey ?? "mock-key"
  return { ...env, ...options.extra }
}

/** A temporary CODEX_HOME; `cleanup()` removes it (idempotent, never throws). */
export interface CodexHome {
  readonly path: string
  cleanup(): void
}

/** Creates a fresh, empty CODEX_HOME under the OS temp dir. */
export const makeCodexHome = (prefix = "cwp-codex-home-"): CodexHome => {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix))
  return {
    path: dir,
    cleanup: () => {
      try {
        rmSync(dir, { recursive: true, force: true, maxRetries: 3 })
      } catch {
        // best effort
      }
    }
  }
}

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

const tomlString = (value: string): string => JSON.stringify(value)

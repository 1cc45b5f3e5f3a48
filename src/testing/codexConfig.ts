/**
 * How to run the real `codex app-server` offline against the model server
 * (`startModelServer`): the command-line arguments, the environment and a
 * throwaway `CODEX_HOME`.
 *
 * Guarantees: with these arguments codex talks to the given base URL only.
 * The model provider `mock` uses the Responses wire API at `baseUrl` with the
 * API key from `MOCK_API_KEY`; remote plugins, apps, tool suggestions and
 * analytics are off, and so are shell snapshots (otherwise every thread runs
 * the user's login shell as a child of codex). Retries are 0 unless asked
 * for, so a failure reaches the client after exactly one model request.
 * Every setting is a `-c key=value` override: nothing is written to
 * `CODEX_HOME`, and later `config` overrides win.
 *
 * Limits: checked with codex-cli 0.169.0 on Linux; other versions may rename
 * a key (codex ignores an unknown key with a `configWarning` notification).
 * Codex still runs `lsb_release` at start-up. A `CODEX_HOME` under the OS temp
 * directory makes codex skip its helper binaries (a stderr warning), which no
 * offline turn needs.
 *
 * @example
 * ```ts
 * import { createCodexWorkerPool } from "codex-worker-pool/node"
 * import { codexProcessOptions, makeCodexHome, startModelServer } from "codex-worker-pool/testing"
 *
 * const server = await startModelServer()
 * const home = makeCodexHome()
 * const pool = createCodexWorkerPool({ ...codexProcessOptions({ baseUrl: server.url, codexHome: home.path }), poolSize: 2 })
 * // ... run turns ...
 * await pool.shutdown()
 * await server.close()
 * home.cleanup()
 * ```
 *
 * @since 0.1.0
 */
import { mkdtempSync, rmSync } from "node:fs"
import * as os from "node:os"
import * as path from "node:path"

/**
 * Name of the environment variable codex reads the model server's API key
 * from (the provider's `env_key`).
 *
 * @since 0.1.0
 * @category constants
 */
export const MODEL_SERVER_API_KEY_ENV = "MOCK_API_KEY"

/**
 * Settings of {@link codexArgs}.
 *
 * @since 0.1.0
 * @category models
 */
export interface CodexArgsOptions {
  /** Model server base URL ending in `/v1`, e.g. `ModelServer.url`. */
  readonly baseUrl: string
  /** Model name codex sends (`body.model`); default `"mock-model"`. */
  readonly model?: string | undefined
  /**
   * Retries of the provider: `request` (`request_max_retries`: failed HTTP
   * requests other than 429) and `stream` (`stream_max_retries`: dropped
   * streams, and 429s that carry `retry-after`). Default 0 each.
   */
  readonly retries?: { readonly request?: number | undefined; readonly stream?: number | undefined } | undefined
  /** The provider's `stream_idle_timeout_ms`: how long codex waits for the next SSE event. Default: codex's (300 s). */
  readonly streamIdleTimeoutMs?: number | undefined
  /** More `-c key=value` overrides, appended last (so they win). */
  readonly config?: ReadonlyArray<string> | undefined
}

const count = (name: string, value: number | undefined, fallback: number): number => {
  if (value === undefined) return fallback
  if (!Number.isInteger(value) || value < 0) throw new TypeError(`codexArgs: ${name} must be an integer >= 0, got ${value}`)
  return value
}

/** A TOML string literal (JSON's escaping is valid TOML for these values). */
const tomlString = (value: string): string => JSON.stringify(value)

/**
 * The `-c` overrides (without the `-c`) that point codex at the model server.
 *
 * @since 0.1.0
 * @category constructors
 */
export const codexConfigOverrides = (options: CodexArgsOptions): Array<string> => {
  if (typeof options.baseUrl !== "string" || options.baseUrl === "") {
    throw new TypeError("codexArgs: baseUrl must be the model server's URL, e.g. server.url")
  }
  const idle = options.streamIdleTimeoutMs === undefined
    ? ""
    : `,stream_idle_timeout_ms=${count("streamIdleTimeoutMs", options.streamIdleTimeoutMs, 0)}`
  const provider = `{name="Mock",base_url=${tomlString(options.baseUrl)},env_key="${MODEL_SERVER_API_KEY_ENV}",` +
    `wire_api="responses",request_max_retries=${count("retries.request", options.retries?.request, 0)},` +
    `stream_max_retries=${count("retries.stream", options.retries?.stream, 0)}${idle}}`
  return [
    `model=${tomlString(options.model ?? "mock-model")}`,
    "model_provider=mock",
    `model_providers.mock=${provider}`,
    "features.plugins=false",
    "features.apps=false",
    "features.remote_plugin=false",
    "features.tool_suggest=false",
    "analytics.enabled=false",
    "features.shell_snapshot=false",
    ...(options.config ?? [])
  ]
}

/**
 * Arguments for an offline `codex app-server` on stdio talking to the model
 * server at `baseUrl`: `["app-server", "-c", override, ...]`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const codexArgs = (options: CodexArgsOptions): Array<string> => [
  "app-server",
  ...codexConfigOverrides(options).flatMap((override) => ["-c", override])
]

/**
 * The environment variables codex needs on top of the current ones: the
 * model server's API key (default `"mock-key"`; the server records it as
 * `authorization: Bearer <key>`) and, if given, `CODEX_HOME`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const codexEnv = (
  options: { readonly apiKey?: string | undefined; readonly codexHome?: string | undefined } = {}
): Record<string, string> => ({
  [MODEL_SERVER_API_KEY_ENV]: options.apiKey ?? "mock-key",
  ...(options.codexHome === undefined ? {} : { CODEX_HOME: options.codexHome })
})

/**
 * Process options for `createCodexWorkerPool` / `CodexWorkerPool.layer` that
 * run codex against the model server: `args`, `env` (the API key) and
 * `codexHome` when given. Spread them into the pool's options; they set no
 * times, so they fit both the facade's `...Ms` options and the Effect API's
 * durations.
 *
 * @since 0.1.0
 * @category constructors
 */
export const codexProcessOptions = (
  options: CodexArgsOptions & { readonly apiKey?: string | undefined; readonly codexHome?: string | undefined }
): {
  readonly args: Array<string>
  readonly env: Record<string, string>
  readonly codexHome?: string
} => ({
  args: codexArgs(options),
  env: codexEnv({ apiKey: options.apiKey }),
  ...(options.codexHome === undefined ? {} : { codexHome: options.codexHome })
})

/**
 * A temporary `CODEX_HOME` directory. `cleanup()` removes it (idempotent, never
 * throws); so does `using home = makeCodexHome()` at the end of its block.
 *
 * @since 0.1.0
 * @category models
 */
export interface CodexHome extends Disposable {
  readonly path: string
  cleanup(): void
}

/**
 * Creates a fresh, empty `CODEX_HOME` under the OS temp directory.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeCodexHome = (prefix = "codex-worker-pool-home-"): CodexHome => {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix))
  const cleanup = () => {
    try {
      rmSync(dir, { recursive: true, force: true, maxRetries: 3 })
    } catch {
      // best effort: a process may still hold a file open
    }
  }
  return { path: dir, cleanup, [Symbol.dispose]: cleanup }
}

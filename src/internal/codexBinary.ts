/**
 * Finds the codex executable: the native binary shipped by `@openai/codex`'s
 * platform package when it is installed (spawning it directly avoids the Node
 * launcher process in between), else `codex` on PATH.
 *
 * @internal
 */
import { existsSync } from "node:fs"
import { createRequire } from "node:module"
import * as path from "node:path"

const TARGETS: Record<string, { readonly pkg: string; readonly triple: string }> = {
  "linux-x64": { pkg: "@openai/codex-linux-x64", triple: "x86_64-unknown-linux-musl" },
  "linux-arm64": { pkg: "@openai/codex-linux-arm64", triple: "aarch64-unknown-linux-musl" },
  "darwin-x64": { pkg: "@openai/codex-darwin-x64", triple: "x86_64-apple-darwin" },
  "darwin-arm64": { pkg: "@openai/codex-darwin-arm64", triple: "aarch64-apple-darwin" }
}

/** The native codex binary of the installed `@openai/codex`, or `undefined`. */
export const nativeCodexBinary = (): string | undefined => {
  const target = TARGETS[`${process.platform}-${process.arch}`]
  if (target === undefined) return undefined
  const require = createRequire(import.meta.url)
  const resolvers: Array<() => NodeJS.Require> = [
    () => require,
    // pnpm keeps the platform package next to @openai/codex only.
    () => createRequire(require.resolve("@openai/codex/package.json"))
  ]
  for (const resolver of resolvers) {
    try {
      const pkg = resolver().resolve(`${target.pkg}/package.json`)
      const binary = path.join(path.dirname(pkg), "vendor", target.triple, "bin", "codex")
      if (existsSync(binary)) return binary
    } catch {
      // not installed where this resolver looks
    }
  }
  return undefined
}

/** The command a worker runs by default. */
export const defaultCodexCommand = (): string => nativeCodexBinary() ?? "codex"

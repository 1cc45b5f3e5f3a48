/**
 * The package's shape: which entries may load `@effect/platform-node`, and how
 * `effect` and `@effect/platform-node` are declared.
 *
 * - package.json: both are peer dependencies (so a user's own copy is the one
 *   used: one Effect runtime), with dev copies for the tests, and never
 *   `dependencies`; `@effect/platform-node` is optional, since only the
 *   `./node` entry needs it.
 * - Statically: the import graph of every entry but `./node` (the `import` /
 *   `export ... from` specifiers of its source files, type-only ones
 *   included, following relative ones) has no specifier starting with
 *   `@effect/platform-node`.
 * - At runtime, in a child Node process (test/fixtures/load-entry.ts): with
 *   every `@effect/platform-node` specifier made unresolvable, those entries
 *   import, and `createTestCodexWorkerPool` of the testing entry runs a turn
 *   and shuts down; the `./node` entry, loaded the same way, fails on it (the
 *   hook sees what it must).
 * - The `./effect-ai` entry also imports with `ai` and `@ai-sdk/*`
 *   unresolvable: it uses the AI SDK model's code but only the types of
 *   those optional peers.
 *
 * Entries are read from package.json's `exports`: `./dist/X.js` is built from
 * `src/X.ts`.
 */
import { describe, expect, it } from "@effect/vitest"
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"

const root = fileURLToPath(new URL("..", import.meta.url))
const loadEntry = fileURLToPath(new URL("./fixtures/load-entry.ts", import.meta.url))
const packageJson = JSON.parse(fs.readFileSync(path.join(root, "package.json"), "utf8"))

/** The entries that may load `@effect/platform-node`. */
const nodeEntries = new Set(["./node"])

const isPlatformNode = (specifier: string) => specifier.startsWith("@effect/platform-node")

/** Each code entry of `exports` and the source file it is built from. */
const entries: ReadonlyArray<{ readonly name: string; readonly source: string }> = Object.entries(
  packageJson.exports as Record<string, string | { readonly default: string }>
).flatMap(([name, target]) => {
  const file = typeof target === "string" ? target : target.default
  const match = /^\.\/dist\/(.+)\.js$/.exec(file)
  return match === null ? [] : [{ name, source: path.join(root, "src", `${match[1]}.ts`) }]
})

// Static `import` / `export ... from` statements (they start a line in this
// code base; examples in doc comments start with " * "), and dynamic imports.
const staticSpecifier = /^(?:import|export)\b(?:[\w\s{},*$]*?\bfrom)?\s*["']([^"']+)["']/gm
const dynamicSpecifier = /\bimport\(\s*["']([^"']+)["']\s*\)/g

/**
 * Dynamic imports of `@effect/platform-node` that the root may reach, each
 * loaded only by a feature that needs Node anyway: the Redis connection that
 * `RateLimits.layerStoreRedisUrl` makes from a URL (`NodeRedis` is Effect's only
 * Redis client). The runtime test below shows that importing an entry loads
 * none of them.
 */
const allowedDynamic = new Set(["@effect/platform-node/NodeRedis (in src/internal/admissionStore.ts)"])

/** The import graph of `entry`: every source file reached and every non-relative specifier found. */
const importGraph = (entry: string) => {
  const files = new Set<string>()
  const external = new Map<string, string>()
  const visit = (file: string): void => {
    if (files.has(file)) return
    files.add(file)
    const text = fs.readFileSync(file, "utf8")
    for (const pattern of [staticSpecifier, dynamicSpecifier]) {
      for (const [, specifier] of text.matchAll(pattern)) {
        if (pattern === dynamicSpecifier && allowedDynamic.has(`${specifier} (in ${path.relative(root, file)})`)) {
          continue
        }
        if (specifier!.startsWith(".")) {
          const target = path.resolve(path.dirname(file), specifier!.replace(/\.js$/, ".ts"))
          if (!fs.existsSync(target)) throw new Error(`${file}: cannot follow "${specifier}"`)
          visit(target)
        } else if (!external.has(specifier!)) {
          external.set(specifier!, path.relative(root, file))
        }
      }
    }
  }
  visit(entry)
  return { files, external }
}

interface Loaded {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}

/** Runs test/fixtures/load-entry.ts on `source` in a child Node process (bounded). */
const load = (source: string, flags: ReadonlyArray<string> = []): Promise<Loaded> =>
  new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [loadEntry, source, ...flags], { stdio: ["ignore", "pipe", "pipe"] })
    let stdout = ""
    let stderr = ""
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => stdout += chunk)
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => stderr += chunk)
    const timer = setTimeout(() => {
      child.kill("SIGKILL")
      reject(new Error(`load-entry ${source} did not finish within 20 s; stderr: ${stderr}`))
    }, 20_000)
    child.on("error", reject)
    child.on("close", (code) => {
      clearTimeout(timer)
      resolve({ code, stdout, stderr })
    })
  })

/** The resolved URLs and result of a successful load (fails the test with its stderr otherwise). */
const loaded = ({ code, stderr, stdout }: Loaded): { readonly resolved: Array<string>; readonly result: any } => {
  expect({ code, stderr: code === 0 ? "" : stderr }).toEqual({ code: 0, stderr: "" })
  return JSON.parse(stdout.trim().split("\n").at(-1)!)
}

const sourceUrl = (...parts: Array<string>) => pathToFileURL(path.join(root, ...parts)).href

describe("package.json", () => {
  it("effect and @effect/platform-node are peer dependencies with dev copies, never dependencies", () => {
    expect(packageJson.dependencies?.effect).toBeUndefined()
    expect(packageJson.dependencies?.["@effect/platform-node"]).toBeUndefined()
    expect(packageJson.peerDependencies).toMatchObject({ effect: "^4.1.0", "@effect/platform-node": "^4.1.0" })
    expect(packageJson.devDependencies).toMatchObject({ effect: "^4.1.0", "@effect/platform-node": "^4.1.0" })
    // Only `./node` needs the Node platform: a user of the rest is not made to install it.
    expect(packageJson.peerDependenciesMeta?.["@effect/platform-node"]).toEqual({ optional: true })
    expect(packageJson.peerDependenciesMeta?.effect).toBeUndefined()
  })

  it("exports ./node, and every entry's types and code come from an existing source file", () => {
    expect(packageJson.exports["./node"]).toEqual({ types: "./dist/node.d.ts", default: "./dist/node.js" })
    expect(entries.map((entry) => entry.name)).toEqual(expect.arrayContaining([".", "./node", "./testing"]))
    for (const { name, source } of entries) {
      expect(fs.existsSync(source), `${name}: ${source}`).toBe(true)
      const target = packageJson.exports[name]
      expect(target.types, name).toBe(target.default.replace(/\.js$/, ".d.ts"))
    }
  })
})

describe("entries and @effect/platform-node", () => {
  it("no entry but ./node imports @effect/platform-node in its import graph (but for allowed lazy imports)", () => {
    const offenders: Record<string, Array<string>> = {}
    for (const { name, source } of entries) {
      if (nodeEntries.has(name)) continue
      const { external } = importGraph(source)
      const found = [...external].filter(([specifier]) => isPlatformNode(specifier))
      if (found.length > 0) offenders[name] = found.map(([specifier, file]) => `${specifier} (in ${file})`)
    }
    expect(offenders).toEqual({})
  })

  it("the walk reaches what it must: the root graph spans the process code, ./node's reaches the platform", () => {
    const rootGraph = importGraph(path.join(root, "src/index.ts"))
    // The process spawning module, where the Node layer used to live, is in the root graph.
    expect(rootGraph.files).toContain(path.join(root, "src/internal/appServerProcess.ts"))
    expect([...rootGraph.external.keys()]).toContain("effect/process/ChildProcess")
    const nodeGraph = importGraph(path.join(root, "src/node.ts"))
    expect([...nodeGraph.external.keys()].filter(isPlatformNode)).toEqual([
      "@effect/platform-node/NodeChildProcessSpawner",
      "@effect/platform-node/NodeFileSystem",
      "@effect/platform-node/NodePath"
    ])
  })

  it("at runtime, every entry but ./node imports with @effect/platform-node unresolvable", async () => {
    const results = await Promise.all(
      entries.filter(({ name }) => !nodeEntries.has(name)).map(async ({ name, source }) => ({
        name,
        ...loaded(await load(source))
      }))
    )
    for (const { name, resolved, result } of results) {
      expect(resolved.filter((url) => url.includes("/@effect/platform-node")), name).toEqual([])
      expect(resolved, name).toContain(pathToFileURL(entries.find((entry) => entry.name === name)!.source).href)
      expect((result as Array<string>).length, name).toBeGreaterThan(0)
    }
    const rootResult = results.find(({ name }) => name === ".")!
    expect(rootResult.resolved).toContain(sourceUrl("src", "internal", "appServerProcess.ts"))
    expect(rootResult.result).toEqual(expect.arrayContaining(["CodexWorker", "CodexWorkerPool", "createWorkerPool"]))
    expect(rootResult.result).not.toContain("createCodexWorkerPool")
  })

  it("at runtime, createTestCodexWorkerPool runs a turn and shuts down with @effect/platform-node unresolvable", async () => {
    const { resolved, result } = loaded(await load(path.join(root, "src/testing/index.ts"), ["--use-test-pool"]))
    expect(result).toMatchObject({ threadId: "string", stats: { created: 1, finalized: 1, closed: true } })
    expect(resolved.filter((url) => url.includes("/@effect/platform-node"))).toEqual([])
  })

  it("at runtime, the ./effect-ai entry imports with ai and @ai-sdk/* unresolvable too (type-only use)", async () => {
    const { resolved, result } = loaded(await load(path.join(root, "src/effect-ai/index.ts"), ["--block-ai-sdk"]))
    expect(result).toEqual(["CodexLanguageModel", "CodexTool"])
    expect(resolved.filter((url) => /\/node_modules\/(ai|@ai-sdk)\//.test(url))).toEqual([])
    // The hook does block them: a module that loads `ai` fails with it.
    const blocked = await load(path.join(root, "test/fixtures/imports-ai.ts"), ["--block-ai-sdk"])
    expect(blocked.code).toBe(1)
    expect(blocked.stderr).toContain("blocked: ai ")
  })

  it("at runtime, the ./node entry fails to load when @effect/platform-node is unresolvable (the hook sees it)", async () => {
    const { code, stderr } = await load(path.join(root, "src/node.ts"))
    expect(code).toBe(1)
    expect(stderr).toContain("blocked: @effect/platform-node/")
  })
})

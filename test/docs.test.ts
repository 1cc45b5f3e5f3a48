/**
 * Docs that compile: the package is packed and installed in a scratch project
 * (test/helpers/docs.ts), and every TypeScript block of README.md and of the
 * doc comments in src/ must type-check there against the packed types, with a
 * user's compiler settings; every `codex-worker-pool` subpath the exports map
 * declares or a block imports must load with Node from that project.
 *
 * Blocks marked `no-check` are intentionally partial; the test lists them so
 * they stay few.
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import * as fs from "node:fs"
import * as path from "node:path"
import {
  type DocBlock,
  docCommentBlocks,
  documentationBlocks,
  markdownBlocks,
  packageImportsOf,
  packAndInstall,
  repoRoot,
  type Scratch,
  typeCheckBlocks,
  unresolvable
} from "./helpers/docs.ts"

/** Blocks that are intentionally partial (`ts no-check`), by location. Keep this short. */
const NO_CHECK: ReadonlyArray<string> = []

describe("documentation blocks", () => {
  it("are found in markdown and in doc comments, with their lines, margins stripped", () => {
    const markdown = ["# Title", "", "```ts", "const a = 1", "  indented()", "```", "", "```sh", "ls", "```",
      "```ts no-check", "partial(", "```"].join("\n")
    expect(markdownBlocks("X.md", markdown)).toEqual([
      { source: "X.md", line: 4, info: "ts", code: "const a = 1\n  indented()\n", noCheck: false },
      { source: "X.md", line: 12, info: "ts no-check", code: "partial(\n", noCheck: true }
    ])
    const source = ["/**", " * Header.", " *", " * ```ts", " * import { a } from \"b\"", " *", " * if (a) {", " *   a()",
      " * }", " * ```", " */", "export const x = 1", "  /**", "   * @example", "   * ```typescript", "   * x", "   * ```",
      "   */"].join("\n")
    expect(docCommentBlocks("src/X.ts", source)).toEqual([
      { source: "src/X.ts", line: 5, info: "ts", code: "import { a } from \"b\"\n\nif (a) {\n  a()\n}\n", noCheck: false },
      { source: "src/X.ts", line: 16, info: "typescript", code: "x\n", noCheck: false }
    ])
    expect(() => markdownBlocks("Y.md", "```ts\nnever closed")).toThrow("Y.md:1: a code fence is never closed")
  })

  it("cover the README and the headers of the public modules", () => {
    const blocks = documentationBlocks()
    const sources = new Set(blocks.map((block) => block.source))
    for (const source of ["README.md", "src/WorkerPool.ts", "src/PromisePool.ts", "src/CodexWorker.ts", "src/transport.ts"]) {
      expect(sources).toContain(source)
    }
    expect(blocks.filter((block) => block.noCheck).map((block) => `${block.source}:${block.line}`)).toEqual(NO_CHECK)
  })
})

describe("the packed package", () => {
  let scratch: Scratch | undefined
  beforeAll(() => {
    scratch = packAndInstall()
  }, 180_000)
  afterAll(() => {
    scratch?.remove()
    // The temporary directory is gone; dist/ (the build npm pack made) stays, as after `npm pack`.
  })

  it("contains the built entry points and no test file", () => {
    const installed = path.join(scratch!.dir, "node_modules", "codex-worker-pool")
    const manifest = JSON.parse(fs.readFileSync(path.join(installed, "package.json"), "utf8"))
    for (const [subpath, target] of Object.entries<Record<string, string> | string>(manifest.exports)) {
      const files = typeof target === "string" ? [target] : Object.values(target)
      for (const file of files) expect(fs.existsSync(path.join(installed, file)), `${subpath}: ${file}`).toBe(true)
    }
    const all = fs.readdirSync(installed, { recursive: true, encoding: "utf8" })
    expect(all.filter((file) => file.includes(".test."))).toEqual([])
    expect(all.some((file) => file.startsWith("src"))).toBe(false)
  })

  it("type-checks every TypeScript block of the README and of the module headers", () => {
    const blocks: ReadonlyArray<DocBlock> = documentationBlocks().filter((block) => !block.noCheck)
    expect(typeCheckBlocks(scratch!, blocks)).toEqual([])
  }, 120_000)

  it("loads every exported subpath, and every one the docs import, with Node", () => {
    const manifest = JSON.parse(fs.readFileSync(path.join(repoRoot, "package.json"), "utf8"))
    const exported = Object.keys(manifest.exports)
      .filter((subpath) => subpath !== "./package.json")
      .map((subpath) => subpath === "." ? "codex-worker-pool" : `codex-worker-pool/${subpath.slice(2)}`)
    expect(exported).toContain("codex-worker-pool/transport")
    const documented = documentationBlocks().flatMap((block) => packageImportsOf(block.code))
    expect(documented).toContain("codex-worker-pool/transport")
    expect(unresolvable(scratch!, Array.from(new Set([...exported, ...documented])))).toEqual([])
  }, 60_000)

  it("the declarations of codex-worker-pool/effect-ai never refer to ai or @ai-sdk/* (optional peers)", () => {
    const installed = path.join(scratch!.dir, "node_modules", "codex-worker-pool")
    const files = new Set<string>()
    const external = new Set<string>()
    const specifier = /^(?:import|export)\b[^"']*?from\s*["']([^"']+)["']/gm
    const visit = (file: string): void => {
      if (files.has(file)) return
      files.add(file)
      for (const [, spec] of fs.readFileSync(file, "utf8").matchAll(specifier)) {
        if (spec!.startsWith(".")) visit(path.resolve(path.dirname(file), spec!.replace(/\.(ts|js)$/, ".d.ts")))
        else external.add(spec!)
      }
    }
    visit(path.join(installed, "dist", "effect-ai", "index.d.ts"))
    // The walk reaches the AI SDK model's settings (the per-call settings are its schema).
    expect([...files].some((file) => file.endsWith(path.join("dist", "ai-sdk", "settings.d.ts")))).toBe(true)
    expect([...external].filter((name) => name === "ai" || name.startsWith("ai/") || name.startsWith("@ai-sdk/")))
      .toEqual([])
  })
})

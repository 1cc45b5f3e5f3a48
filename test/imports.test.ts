/**
 * The import graph of `src` has no cycle: every module's dependencies point
 * one way (public modules import internal ones, never the reverse through a
 * chain). Type-only imports and re-exports count: a cycle of types still ties
 * the modules together.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { describe, expect, it } from "vitest"

const srcDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../src")

const sourceFiles = (dir: string): Array<string> =>
  fs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const file = path.join(dir, entry.name)
    if (entry.isDirectory()) return sourceFiles(file)
    return entry.name.endsWith(".ts") && !entry.name.endsWith(".d.ts") ? [file] : []
  })

/** `from "x"`, `import "x"` and `import("x")`, comments left out. */
const specifierPattern = /(?:\bfrom\s*|\bimport\s*\(?\s*)["']([^"']+)["']/g

/** The `src` modules `file` imports (relative specifiers only). */
export const importsOf = (file: string, text: string): Array<string> => {
  const code = text.replace(/\/\*[\s\S]*?\*\//g, "").replace(/^\s*\/\/.*$/gm, "")
  const found = new Set<string>()
  for (const match of code.matchAll(specifierPattern)) {
    const specifier = match[1]!
    if (!specifier.startsWith(".")) continue
    let target = path.resolve(path.dirname(file), specifier)
    if (target.endsWith(".js")) target = target.slice(0, -3) + ".ts"
    if (!target.endsWith(".ts")) target = fs.existsSync(target + ".ts") ? target + ".ts" : path.join(target, "index.ts")
    found.add(target)
  }
  return Array.from(found)
}

/** The strongly connected components of more than one module (or a module importing itself): the cycles. */
export const cyclesOf = (graph: ReadonlyMap<string, ReadonlyArray<string>>): Array<Array<string>> => {
  // Tarjan's algorithm.
  let counter = 0
  const index = new Map<string, number>()
  const low = new Map<string, number>()
  const stack: Array<string> = []
  const onStack = new Set<string>()
  const cycles: Array<Array<string>> = []
  const visit = (node: string): void => {
    index.set(node, counter)
    low.set(node, counter)
    counter++
    stack.push(node)
    onStack.add(node)
    for (const next of graph.get(node) ?? []) {
      if (!index.has(next)) {
        visit(next)
        low.set(node, Math.min(low.get(node)!, low.get(next)!))
      } else if (onStack.has(next)) {
        low.set(node, Math.min(low.get(node)!, index.get(next)!))
      }
    }
    if (low.get(node) === index.get(node)) {
      const component: Array<string> = []
      let member: string
      do {
        member = stack.pop()!
        onStack.delete(member)
        component.push(member)
      } while (member !== node)
      if (component.length > 1 || (graph.get(node) ?? []).includes(node)) cycles.push(component.sort())
    }
  }
  for (const node of graph.keys()) if (!index.has(node)) visit(node)
  return cycles
}

describe("imports", () => {
  it("finds a cycle when there is one", () => {
    const graph = new Map([["a", ["b"]], ["b", ["c"]], ["c", ["a"]], ["d", ["a"]], ["e", ["e"]]])
    expect(cyclesOf(graph)).toEqual([["a", "b", "c"], ["e"]])
    expect(cyclesOf(new Map([["a", ["b"]], ["b", []], ["c", ["a", "b"]]]))).toEqual([])
  })

  it("reads every kind of import, type-only ones included", () => {
    const file = path.join(srcDir, "internal", "x.ts")
    const text = [
      `import type { A } from "../A.ts"`,
      `import { type B, c } from "./b.ts"`,
      `export type { D } from "../D.ts"`,
      `export * from "./e.ts"`,
      `const f = () => import("./f.ts")`,
      `import "./g.ts"`,
      `import { Effect } from "effect"`,
      `// import { H } from "./h.ts"`
    ].join("\n")
    expect(importsOf(file, text).map((target) => path.relative(srcDir, target)).sort()).toEqual([
      "A.ts",
      "D.ts",
      path.join("internal", "b.ts"),
      path.join("internal", "e.ts"),
      path.join("internal", "f.ts"),
      path.join("internal", "g.ts")
    ])
  })

  it("src has no import cycle", () => {
    const files = sourceFiles(srcDir)
    const graph = new Map(files.map((file) => [file, importsOf(file, fs.readFileSync(file, "utf8"))]))
    for (const targets of graph.values()) {
      for (const target of targets) expect(files, `an import of a module that does not exist`).toContain(target)
    }
    const cycles = cyclesOf(graph).map((cycle) => cycle.map((file) => path.relative(srcDir, file)))
    expect(cycles).toEqual([])
  })
})

/**
 * Helpers for checking that the documentation compiles as a user would
 * compile it: the package is packed (`npm pack`, which builds `dist/`),
 * installed in a scratch project, and every TypeScript block of the README and
 * of the doc comments in `src/` becomes a file of that project, type-checked by
 * the repository's `tsc` with a user's settings (NodeNext, strict).
 *
 * A block is a fenced code block whose info string starts with `ts` or
 * `typescript`. One whose info string also says `no-check` is skipped (and
 * listed by the test). Blocks import from `codex-worker-pool` and its subpaths
 * as users do; the names they leave to the reader (`request`, `signal`,
 * `openConnection`, the provider package of the transport example, ...) are
 * declared in {@link PRELUDE}.
 *
 * Installing is offline: the tarball is extracted into
 * `node_modules/codex-worker-pool`, and the package's dependencies and peer
 * dependencies (and `@types/node`) are symlinked from the repository's
 * `node_modules`, so a dependency the package forgot to declare is missing
 * there as it would be for a user.
 */
import { execFileSync, spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"

/** The repository's root directory. */
export const repoRoot = fileURLToPath(new URL("../../", import.meta.url))

/** One fenced TypeScript block of the docs. */
export interface DocBlock {
  /** Where it is: a path relative to the repository root. */
  readonly source: string
  /** The line (1-based) of the block's first code line in `source`. */
  readonly line: number
  /** The fence's info string, e.g. `ts` or `ts no-check`. */
  readonly info: string
  readonly code: string
  /** The info string says `no-check`: the block is intentionally partial. */
  readonly noCheck: boolean
}

const FENCE = /^(\s*)```(.*)$/

/**
 * The fenced TypeScript blocks of `lines` (each with its 1-based line number
 * in the file), as they are in markdown and in doc comments once their ` * `
 * margin is stripped.
 */
const blocksOf = (source: string, lines: ReadonlyArray<readonly [number, string]>): Array<DocBlock> => {
  const blocks: Array<DocBlock> = []
  let open: { info: string; indent: number; start: number; code: Array<string> } | undefined
  for (const [line, text] of lines) {
    const fence = FENCE.exec(text)
    if (open === undefined) {
      if (fence !== null) open = { info: fence[2]!.trim(), indent: fence[1]!.length, start: line + 1, code: [] }
      continue
    }
    if (fence !== null && fence[2]!.trim() === "") {
      const language = open.info.split(/\s+/)[0]!
      if (language === "ts" || language === "typescript") {
        blocks.push({
          source,
          line: open.start,
          info: open.info,
          code: open.code.join("\n") + "\n",
          noCheck: open.info.split(/\s+/).includes("no-check")
        })
      }
      open = undefined
      continue
    }
    open.code.push(text.slice(Math.min(open.indent, text.length - text.trimStart().length)))
  }
  if (open !== undefined) throw new Error(`${source}:${open.start - 1}: a code fence is never closed`)
  return blocks
}

/** The TypeScript blocks of a markdown file. */
export const markdownBlocks = (source: string, text: string): Array<DocBlock> =>
  blocksOf(source, text.split("\n").map((line, index) => [index + 1, line] as const))

/** The TypeScript blocks inside the `/** ... *\/` comments of a source file. */
export const docCommentBlocks = (source: string, text: string): Array<DocBlock> => {
  const lines = text.split("\n")
  const blocks: Array<DocBlock> = []
  for (let index = 0; index < lines.length; index++) {
    if (!lines[index]!.trimStart().startsWith("/**")) continue
    const comment: Array<readonly [number, string]> = []
    for (; index < lines.length; index++) {
      const line = lines[index]!
      const end = line.includes("*/")
      // Strip the margin: indentation, "*", and one space after it.
      const body = line.replace(/^\s*\/\*\*/, "").replace(/\*\/.*$/, "").replace(/^\s*\* ?/, "")
      comment.push([index + 1, body])
      if (end) break
    }
    blocks.push(...blocksOf(source, comment))
  }
  return blocks
}

/** Every `.ts` file under `dir`, relative to the repository root, sorted. */
const sourceFiles = (dir: string): Array<string> =>
  fs.readdirSync(path.join(repoRoot, dir), { recursive: true, encoding: "utf8" })
    .filter((file) => file.endsWith(".ts"))
    .map((file) => path.join(dir, file))
    .sort()

/** The TypeScript blocks of README.md and of the doc comments of every file under `src/`. */
export const documentationBlocks = (): Array<DocBlock> => [
  ...markdownBlocks("README.md", fs.readFileSync(path.join(repoRoot, "README.md"), "utf8")),
  ...sourceFiles("src").flatMap((file) => docCommentBlocks(file, fs.readFileSync(path.join(repoRoot, file), "utf8")))
]

/**
 * The placeholders the blocks leave to the reader, declared once for all of
 * them (a block is a module: what it declares itself shadows these).
 */
export const PRELUDE = `// Placeholders of the documentation's examples.

/** A connection of the reader's own, for the generic pool's examples. */
declare class Connection {
  query(sql: string, options?: { readonly signal?: AbortSignal }): Promise<Array<unknown>>
  close(): Promise<void>
}
declare function openConnection(options?: { readonly signal?: AbortSignal }): Promise<Connection>

/** The request a server handler is answering. */
declare const request: Request
declare const req: Request
/** An abort signal of the caller's. */
declare const signal: AbortSignal

/** The provider the transport is for, reduced to what the examples use (its 0.5.1 interface). */
declare module "@janole/ai-sdk-provider-codex-asp" {
  type JsonRpcId = string | number
  type JsonRpcMessage =
    | { id: JsonRpcId; method: string; params?: unknown }
    | { method: string; params?: unknown }
    | { id: JsonRpcId; result: unknown }
    | { id: JsonRpcId; error: { code: number; message: string; data?: unknown } }
  interface CodexTransportEventMap {
    message: (message: JsonRpcMessage) => void
    error: (error: unknown) => void
    close: (code: number | null, signal: NodeJS.Signals | null) => void
  }
  interface CodexTransport {
    connect(): Promise<void>
    disconnect(): Promise<void>
    sendMessage(message: JsonRpcMessage): Promise<void>
    sendNotification(method: string, params?: unknown): Promise<void>
    on<K extends keyof CodexTransportEventMap>(event: K, listener: CodexTransportEventMap[K]): () => void
  }
  interface CodexProviderSettings {
    defaultModel?: string
    transportFactory?: (context: { signal?: AbortSignal; threadId?: string }) => CodexTransport
  }
  export function createCodexAppServer(settings?: CodexProviderSettings): (modelId: string) => import("@ai-sdk/provider").LanguageModelV3
}
`

/** The compiler options of the scratch project: what a user of Node ESM would have. */
const TSCONFIG = {
  compilerOptions: {
    target: "ES2022",
    module: "NodeNext",
    moduleResolution: "NodeNext",
    strict: true,
    noEmit: true,
    types: ["node"],
    skipLibCheck: false
  },
  include: ["prelude.d.ts", "blocks/*.ts"]
}

/** A scratch project with the packed package installed. */
export interface Scratch {
  readonly dir: string
  /** The tarball `npm pack` made. */
  readonly tarball: string
  /** Removes the scratch directory. */
  readonly remove: () => void
}

const run = (command: string, args: ReadonlyArray<string>, cwd: string): string => {
  const result = spawnSync(command, args, { cwd, encoding: "utf8", env: { ...process.env, npm_config_update_notifier: "false" } })
  if (result.status !== 0) {
    throw new Error(
      `${command} ${args.join(" ")} failed (${result.status ?? result.signal}):\n${result.stdout}\n${result.stderr}`
    )
  }
  return result.stdout
}

/**
 * Packs the package (a fresh build: `dist/` is removed first, so nothing stale
 * is packed) and installs the tarball in a new scratch directory.
 */
export const packAndInstall = (): Scratch => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "cwp-docs-"))
  const remove = () => fs.rmSync(dir, { recursive: true, force: true })
  try {
    fs.rmSync(path.join(repoRoot, "dist"), { recursive: true, force: true })
    const packDir = path.join(dir, "pack")
    fs.mkdirSync(packDir)
    run("npm", ["pack", "--pack-destination", packDir], repoRoot)
    const tarballs = fs.readdirSync(packDir).filter((file) => file.endsWith(".tgz"))
    if (tarballs.length !== 1) throw new Error(`npm pack made ${tarballs.length} tarballs: ${tarballs.join(", ")}`)
    const tarball = path.join(packDir, tarballs[0]!)

    const installed = path.join(dir, "node_modules", "codex-worker-pool")
    fs.mkdirSync(installed, { recursive: true })
    execFileSync("tar", ["-xzf", tarball, "-C", installed, "--strip-components=1"])
    const manifest = JSON.parse(fs.readFileSync(path.join(repoRoot, "package.json"), "utf8"))
    const dependencies = [
      ...Object.keys(manifest.dependencies ?? {}),
      ...Object.keys(manifest.peerDependencies ?? {}),
      "@types/node"
    ]
    for (const name of dependencies) {
      const link = path.join(dir, "node_modules", name)
      fs.mkdirSync(path.dirname(link), { recursive: true })
      fs.symlinkSync(path.join(repoRoot, "node_modules", name), link, "dir")
    }
    fs.writeFileSync(
      path.join(dir, "package.json"),
      JSON.stringify({ name: "docs-scratch", private: true, type: "module" }, null, 2)
    )
    fs.writeFileSync(path.join(dir, "tsconfig.json"), JSON.stringify(TSCONFIG, null, 2))
    fs.writeFileSync(path.join(dir, "prelude.d.ts"), PRELUDE)
    fs.mkdirSync(path.join(dir, "blocks"))
    return { dir, tarball, remove }
  } catch (error) {
    remove()
    throw error
  }
}

/** The file name of `block` in the scratch project. */
const fileNameOf = (block: DocBlock): string => `${block.source.replace(/[^A-Za-z0-9]+/g, "_")}_L${block.line}.ts`

/**
 * A diagnostic in the declarations of another package (`skipLibCheck` is off
 * so that the package's own `.d.ts` files are checked; others' are not ours
 * to fix: `@ai-sdk/provider` refers to `json-schema` types without depending
 * on them).
 */
const isThirdParty = (diagnostic: string): boolean =>
  /node_modules\//.test(diagnostic.split("(")[0]!) && !diagnostic.includes("node_modules/codex-worker-pool/")

/**
 * Writes `blocks` into the scratch project, type-checks it, and returns every
 * diagnostic with the location in the docs it comes from
 * (`README.md:57:12: error TS2304: ...`); empty when everything compiles.
 */
export const typeCheckBlocks = (scratch: Scratch, blocks: ReadonlyArray<DocBlock>): Array<string> => {
  const byFile = new Map<string, DocBlock>()
  for (const block of blocks) {
    const file = fileNameOf(block)
    byFile.set(file, block)
    // `export {}`: every block is a module, even one without imports.
    fs.writeFileSync(path.join(scratch.dir, "blocks", file), `${block.code}export {}\n`)
  }
  const tsc = path.join(repoRoot, "node_modules", ".bin", "tsc")
  const result = spawnSync(tsc, ["-p", scratch.dir, "--pretty", "false"], { cwd: scratch.dir, encoding: "utf8" })
  if (result.status === 0) return []
  const output = `${result.stdout}${result.stderr}`.trim()
  const diagnostics = output.split("\n").filter((line) => /error TS\d+/.test(line))
  if (diagnostics.length === 0) throw new Error(`tsc failed without diagnostics (${result.status}): ${output}`)
  return diagnostics.filter((line) => !isThirdParty(line)).map((line) => {
    const match = /^blocks\/([^(]+)\((\d+),(\d+)\): (.*)$/.exec(line.trim())
    const block = match === null ? undefined : byFile.get(match[1]!)
    return block === undefined
      ? line.trim()
      : `${block.source}:${block.line + Number(match![2]) - 1}:${match![3]}: ${match![4]}`
  })
}

/**
 * Imports each of `specifiers` with Node from the scratch project, as a user's
 * program would; returns the ones that fail, with Node's error.
 */
export const unresolvable = (scratch: Scratch, specifiers: ReadonlyArray<string>): Array<string> => {
  const script = `
    const failures = []
    for (const specifier of ${JSON.stringify(specifiers)}) {
      try {
        await import(specifier)
      } catch (error) {
        failures.push(specifier + ": " + (error.code ?? error.name) + ": " + error.message.split("\\n")[0])
      }
    }
    console.log(JSON.stringify(failures))
  `
  const output = run(process.execPath, ["--input-type=module", "-e", script], scratch.dir)
  return JSON.parse(output.trim().split("\n").at(-1)!)
}

/** The `codex-worker-pool` specifiers `code` imports (`from "..."` and `import("...")`). */
export const packageImportsOf = (code: string): Array<string> =>
  Array.from(code.matchAll(/(?:from\s+|import\s*\(\s*)["'](codex-worker-pool(?:\/[^"']*)?)["']/g), (m) => m[1]!)

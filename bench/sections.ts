/**
 * The registry of benchmark sections, run in this order.
 *
 * A section is a module exporting `section: Section` (see `lib/types.ts`).
 * Optional modules are loaded only when their file exists: measurement 7 (a
 * pool of real Codex app-server workers) belongs in `bench/codex.ts`, which
 * does not exist yet; until it does, the runner prints that the section was
 * skipped and why, and reports no numbers for it.
 */
import { existsSync } from "node:fs"
import type { SectionModule } from "./lib/types.ts"

export interface SectionEntry {
  readonly name: string
  readonly description: string
  /** The module, or undefined when an optional module is absent. */
  readonly load: () => Promise<SectionModule | undefined>
}

/** Imports `path` (relative to this directory) if the file exists. */
const optional = (path: string) => async (): Promise<SectionModule | undefined> => {
  const url = new URL(path, import.meta.url)
  if (!existsSync(url)) return undefined
  return (await import(url.href)) as SectionModule
}

export const registry: ReadonlyArray<SectionEntry> = [
  {
    name: "pool",
    description: "measurements 1-6: acquire / release mechanics against Effect Pool, generic-pool, tarn, p-limit, baseline",
    load: () => import("./pool/section.ts")
  },
  {
    name: "ratelimits",
    description: "measurement 8: rate-limit admission vs rate-limiter-flexible, memory and Redis",
    load: () => import("./rateLimits.ts")
  },
  {
    name: "affinity",
    description: "measurement 9: turns landing on the worker that has their thread, with and without prefer",
    load: () => import("./affinity.ts")
  },
  {
    name: "codex",
    description: "measurement 7: real Codex app-server workers (bench/codex.ts, exporting `section: Section`)",
    load: optional("./codex.ts")
  }
]

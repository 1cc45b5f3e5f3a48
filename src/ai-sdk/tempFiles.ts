/**
 * The temporary files of one call: image bytes written for codex to read as
 * `localImage` inputs.
 *
 * Guarantees: the files live in one directory of their own under the OS temp
 * dir (mode 0700, files 0600), made on the first write; `dispose()` removes
 * it with everything in it, synchronously, is idempotent and never throws; a
 * write that finishes after `dispose()` removes what it wrote and rejects, so
 * nothing outlives the call on any path.
 *
 * Limits: a process killed with SIGKILL leaves the directory behind (nothing
 * in-process runs then); it is named `codex-worker-pool-ai-sdk-*`.
 *
 * @since 0.1.0
 */
import { rmSync } from "node:fs"
import { mkdtemp, writeFile } from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"

const extensions: Readonly<Record<string, string>> = {
  "image/png": ".png",
  "image/jpeg": ".jpg",
  "image/jpg": ".jpg",
  "image/gif": ".gif",
  "image/webp": ".webp",
  "image/bmp": ".bmp",
  "image/tiff": ".tiff",
  "image/svg+xml": ".svg"
}

/** Temporary files removed together by `dispose()`. */
export class TempFiles {
  #dir: Promise<string> | undefined
  #made: string | undefined
  #count = 0
  #disposed = false

  /** The directory, once made (for tests). */
  get directory(): string | undefined {
    return this.#made
  }

  /** Writes `data` to a new file named after its media type and resolves with its absolute path. */
  async write(data: Uint8Array, mediaType: string): Promise<string> {
    if (this.#disposed) throw new Error("The call has ended: its temporary files are gone.")
    const dir = await (this.#dir ??= mkdtemp(path.join(os.tmpdir(), "codex-worker-pool-ai-sdk-")).then((made) => {
      this.#made = made
      if (this.#disposed) rmSync(made, { recursive: true, force: true })
      return made
    }))
    const file = path.join(dir, `input-${++this.#count}${extensions[mediaType.toLowerCase()] ?? ".bin"}`)
    if (this.#disposed) throw new Error("The call has ended: its temporary files are gone.")
    await writeFile(file, data, { mode: 0o600 })
    if (this.#disposed) {
      rmSync(dir, { recursive: true, force: true })
      throw new Error("The call has ended: its temporary files are gone.")
    }
    return file
  }

  /** Removes the directory and everything in it. */
  dispose(): void {
    if (this.#disposed) return
    this.#disposed = true
    if (this.#made === undefined) return
    try {
      rmSync(this.#made, { recursive: true, force: true })
    } catch {
      // best effort: nothing else can be done here
    }
  }
}

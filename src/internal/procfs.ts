/**
 * Dependency-free readers of Linux `/proc`: process identities, liveness and
 * parent/child links. Shared by the process-tree module and by the watchdog
 * process, which must start fast and therefore imports nothing but `node:fs`.
 *
 * Guarantees and limits:
 * - A process is identified by its pid *and* its start time (field 22 of
 *   `/proc/PID/stat`, in clock ticks since boot). A pid that was reused by an
 *   unrelated process has a different start time, so it never matches an
 *   identity recorded earlier.
 * - Every read is a snapshot: a process can exit, and its pid can even be
 *   reused, right after it was read. Callers re-check identities just before
 *   acting on them; the window that remains between a check and a `kill(2)` is
 *   a few microseconds (Node offers no pidfd to close it).
 * - A zombie (state `Z`, or `X`) counts as dead: it runs no code and holds no
 *   memory. On machines whose init does not reap orphans they stay forever.
 * - Children are listed from `/proc/PID/task/TID/children` of every thread
 *   (a multi-threaded parent such as codex forks from any thread). On kernels
 *   built without CONFIG_PROC_CHILDREN, a full scan of `/proc/*\/stat` is used.
 * - Linux only. Elsewhere every reader returns "no such process".
 *
 * @since 0.1.0
 */
import * as fs from "node:fs"

/**
 * A process, identified so that a reused pid cannot be mistaken for it.
 *
 * @since 0.1.0
 * @category models
 */
export interface ProcessIdentity {
  readonly pid: number
  /** Field 22 of `/proc/PID/stat` (start time in clock ticks since boot), kept as text. */
  readonly startTime: string
}

/**
 * The fields of `/proc/PID/stat` this library uses.
 *
 * @since 0.1.0
 * @category models
 */
export interface ProcessStat {
  readonly pid: number
  /** One letter: R, S, D, T, t, Z, X, ... */
  readonly state: string
  readonly ppid: number
  readonly pgrp: number
  readonly session: number
  readonly startTime: string
}

/**
 * Parses the text of `/proc/PID/stat`. The command name (field 2) is in
 * parentheses and may itself contain spaces and parentheses, so the other
 * fields are taken after the *last* `)`.
 *
 * @since 0.1.0
 * @category parsing
 */
export const parseStat = (text: string): ProcessStat | undefined => {
  const close = text.lastIndexOf(")")
  if (close < 0) return undefined
  const pid = Number.parseInt(text, 10)
  // After ") ": field 3 (state) is at index 0, so field n is at index n - 3.
  const fields = text.slice(close + 2).trim().split(" ")
  if (!Number.isInteger(pid) || fields.length < 20) return undefined
  return {
    pid,
    state: fields[0]!,
    ppid: Number(fields[1]),
    pgrp: Number(fields[2]),
    session: Number(fields[3]),
    startTime: fields[19]!
  }
}

const readText = (path: string): string | undefined => {
  try {
    return fs.readFileSync(path, "utf8")
  } catch {
    return undefined
  }
}

/**
 * Reads `/proc/PID/stat`, or `undefined` when there is no such process.
 *
 * @since 0.1.0
 * @category getters
 */
export const readStat = (pid: number): ProcessStat | undefined => {
  const text = readText(`/proc/${pid}/stat`)
  return text === undefined ? undefined : parseStat(text)
}

/**
 * The identity of the process that has `pid` now (zombies included), or
 * `undefined` when there is none.
 *
 * @since 0.1.0
 * @category getters
 */
export const readIdentity = (pid: number): ProcessIdentity | undefined => {
  const stat = readStat(pid)
  return stat === undefined ? undefined : { pid, startTime: stat.startTime }
}

/** True for states of a process that has exited. */
const isDeadState = (state: string): boolean => state === "Z" || state === "X" || state === "x"

/**
 * The current stat of the process `id` names, or `undefined` when that pid is
 * gone or now belongs to another process (different start time). Zombies are
 * returned: they still hold their pid, process group and session ids.
 *
 * @since 0.1.0
 * @category getters
 */
export const statOf = (id: ProcessIdentity): ProcessStat | undefined => {
  const stat = readStat(id.pid)
  return stat !== undefined && stat.startTime === id.startTime ? stat : undefined
}

/**
 * Like `statOf`, but `undefined` for a zombie too.
 *
 * @since 0.1.0
 * @category getters
 */
export const liveStatOf = (id: ProcessIdentity): ProcessStat | undefined => {
  const stat = statOf(id)
  return stat === undefined || isDeadState(stat.state) ? undefined : stat
}

/**
 * True when the process `id` names still exists, has the same start time, and
 * is not a zombie.
 *
 * @since 0.1.0
 * @category getters
 */
export const isAlive = (id: ProcessIdentity): boolean => liveStatOf(id) !== undefined

let hasChildrenFiles: boolean | undefined

const childrenFilesSupported = (): boolean => {
  if (hasChildrenFiles === undefined) {
    hasChildrenFiles = fs.existsSync(`/proc/${process.pid}/task/${process.pid}/children`)
  }
  return hasChildrenFiles
}

const numericEntries = (dir: string): Array<string> => {
  try {
    return fs.readdirSync(dir).filter((name) => /^\d+$/.test(name))
  } catch {
    return []
  }
}

/**
 * The pids of the current children of `pid` (zombies included), in no
 * particular order. Empty when `pid` does not exist.
 *
 * @since 0.1.0
 * @category getters
 */
export const childrenOf = (pid: number): Array<number> => {
  const children = new Set<number>()
  if (childrenFilesSupported()) {
    for (const tid of numericEntries(`/proc/${pid}/task`)) {
      const text = readText(`/proc/${pid}/task/${tid}/children`) ?? ""
      for (const word of text.split(" ")) {
        if (word !== "" && word !== "\n") children.add(Number(word))
      }
    }
  } else {
    for (const entry of numericEntries("/proc")) {
      if (readStat(Number(entry))?.ppid === pid) children.add(Number(entry))
    }
  }
  return [...children]
}

/**
 * The identities of every live descendant of `pid` (children, their children,
 * ...), found by walking child links now. A child is only recorded when its
 * stat still names `parent` as its parent, so a pid that was reused between
 * the two reads is skipped. Zombies are skipped: they have no children.
 *
 * @since 0.1.0
 * @category getters
 */
export const descendantsOf = (pid: number): Array<ProcessIdentity> => {
  const found: Array<ProcessIdentity> = []
  const seen = new Set<number>([pid])
  const pending = [pid]
  while (pending.length > 0) {
    const parent = pending.pop()!
    for (const child of childrenOf(parent)) {
      if (seen.has(child)) continue
      seen.add(child)
      const stat = readStat(child)
      if (stat === undefined || stat.ppid !== parent || isDeadState(stat.state)) continue
      found.push({ pid: child, startTime: stat.startTime })
      pending.push(child)
    }
  }
  return found
}

/**
 * Resident memory of the process `id` names, in bytes (VmRSS), or 0 when it is
 * gone, reused or a zombie.
 *
 * @since 0.1.0
 * @category getters
 */
export const residentBytesOf = (id: ProcessIdentity): number => {
  const status = readText(`/proc/${id.pid}/status`)
  const match = status === undefined ? null : /^VmRSS:\s+(\d+)\s+kB$/m.exec(status)
  // Read the status first, then confirm the identity: a reused pid is never counted.
  return match !== null && isAlive(id) ? Number(match[1]) * 1024 : 0
}

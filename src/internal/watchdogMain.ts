/**
 * The watchdog process (entry point, started by `watchdog.ts` with
 * `process.execPath`). It outlives a host that was SIGKILLed and kills what
 * the host's workers left behind.
 *
 * It reads one JSON object per line on stdin:
 *   {"op":"track","processes":[{"pid":1,"startTime":"2"}],"group":{"pid":1,"startTime":"2"}}
 *   {"op":"forget","processes":[...],"group":{...}}
 *   {"op":"bye"}
 * `group` (optional) is a group leader whose process group we created.
 *
 * On "bye" it exits at once. On EOF (the host is gone without saying bye) it
 * walks the descendants of every tracked live process, SIGKILLs each tracked
 * group while its id is still held by its leader or a live tracked member,
 * SIGKILLs every tracked and found process (each checked against its start
 * time), and exits. It imports only `procfs.ts` and node builtins, so it
 * starts fast and runs as plain JS once compiled.
 *
 * @since 0.1.0
 */
import { descendantsOf, isAlive, liveStatOf, type ProcessIdentity, statOf } from "./procfs.ts"

interface Message {
  readonly op: "track" | "forget" | "bye"
  readonly processes?: ReadonlyArray<ProcessIdentity>
  readonly group?: ProcessIdentity
}

const keyOf = (id: ProcessIdentity): string => `${id.pid}:${id.startTime}`
const tracked = new Map<string, ProcessIdentity>()
const groups = new Map<string, ProcessIdentity>()

const send = (target: number): void => {
  try {
    process.kill(target, "SIGKILL")
  } catch {
    // Gone already, or not ours to signal: nothing more to do.
  }
}

const killEverything = (): void => {
  const targets = new Map(tracked)
  for (const id of tracked.values()) {
    if (isAlive(id)) for (const child of descendantsOf(id.pid)) targets.set(keyOf(child), child)
  }
  const live = [...targets.values()].filter(isAlive)
  for (const leader of groups.values()) {
    const held = statOf(leader) !== undefined || live.some((id) => liveStatOf(id)?.pgrp === leader.pid)
    if (held) send(-leader.pid)
  }
  for (const id of live) if (isAlive(id)) send(id.pid)
}

const apply = (message: Message): void => {
  if (message.op === "bye") process.exit(0)
  const update = (map: Map<string, ProcessIdentity>, id: ProcessIdentity) =>
    message.op === "track" ? map.set(keyOf(id), id) : map.delete(keyOf(id))
  for (const id of message.processes ?? []) update(tracked, id)
  if (message.group !== undefined) update(groups, message.group)
}

// Detached in its own session: terminal hang-ups and Ctrl-C are not ours to act on.
process.on("SIGHUP", () => {})
process.on("SIGINT", () => {})

let buffered = ""
process.stdin.setEncoding("utf8")
process.stdin.on("data", (chunk: string) => {
  buffered += chunk
  let newline: number
  while ((newline = buffered.indexOf("\n")) >= 0) {
    const line = buffered.slice(0, newline)
    buffered = buffered.slice(newline + 1)
    try {
      apply(JSON.parse(line) as Message)
    } catch {
      // A malformed line cannot come from our host; ignore it.
    }
  }
})
const hostGone = (): void => {
  killEverything()
  process.exit(0)
}
process.stdin.on("end", hostGone)
process.stdin.on("error", hostGone)

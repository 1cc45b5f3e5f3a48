/**
 * Keeps a stuck contender from hanging `npm run bench`.
 *
 * `guard` races a sample against a timer, so a sample that never settles
 * (a lost wake-up, an emptied event loop) is reported as STALLED and the run
 * goes on. A sample stuck in a synchronous loop starves that timer too, so a
 * worker thread watches a deadline in shared memory and, past it, prints what
 * was running and kills the process.
 */
import { Worker } from "node:worker_threads"

const WATCHER = `
const { workerData } = require("node:worker_threads")
const { writeSync } = require("node:fs")
const deadline = new Float64Array(workerData.deadline)
const label = new Uint8Array(workerData.label)
setInterval(() => {
  const at = deadline[0]
  if (at > 0 && Date.now() > at) {
    const end = label.indexOf(0)
    const what = new TextDecoder().decode(label.subarray(0, end < 0 ? label.length : end))
    writeSync(2, "\\nbench watchdog: " + what + " has blocked the main thread past its deadline " +
      "(a synchronous loop; no result can be reported). Killing the benchmark.\\n")
    process.kill(process.pid, "SIGKILL")
  }
}, 500)
`

export class StallError extends Error {
  constructor(label: string, seconds: number) {
    super(`${label} did not finish within ${seconds} s`)
  }
}

export interface Watchdog {
  /** Runs `task`, rejecting with `StallError` after `seconds`; a blocked main thread is killed a bit later. */
  readonly guard: <A>(label: string, seconds: number, task: () => Promise<A>) => Promise<A>
  readonly stop: () => Promise<void>
}

export const startWatchdog = (): Watchdog => {
  const deadline = new Float64Array(new SharedArrayBuffer(8))
  const labelBytes = new Uint8Array(new SharedArrayBuffer(256))
  const worker = new Worker(WATCHER, {
    eval: true,
    workerData: { deadline: deadline.buffer, label: labelBytes.buffer }
  })
  worker.unref()
  const setLabel = (label: string) => {
    labelBytes.fill(0)
    labelBytes.set(new TextEncoder().encode(label).subarray(0, labelBytes.length - 1))
  }
  return {
    guard: async (label, seconds, task) => {
      setLabel(label)
      deadline[0] = Date.now() + (seconds + 30) * 1000
      let timer: ReturnType<typeof setTimeout> | undefined
      try {
        return await Promise.race([
          task(),
          new Promise<never>((_, reject) => {
            timer = setTimeout(() => reject(new StallError(label, seconds)), seconds * 1000)
          })
        ])
      } finally {
        clearTimeout(timer)
        deadline[0] = 0
      }
    },
    stop: () => worker.terminate().then(() => {})
  }
}

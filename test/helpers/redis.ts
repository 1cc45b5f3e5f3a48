/**
 * A real `redis-server` for integration tests: started on a free loopback
 * port with a throwaway directory, no persistence, and the test's marker on
 * its command line; stopped by its PID (SIGTERM, bounded wait, SIGKILL).
 *
 * Where the binary comes from: `REDIS_SERVER` in the environment, else
 * `redis-server` on the PATH or in /usr/bin, /usr/local/bin, /usr/sbin. On
 * Debian: `apt-get install -y --no-install-recommends redis-server` (CI does
 * this in `.ci/run`; stop the system service it may start, tests start their
 * own). When none is found, `redisServer` says so loudly and the Redis tests
 * are skipped; with `CI=true` the test file fails instead.
 *
 * The marker rides in the path of the config file; `set-proc-title no` keeps
 * Redis from overwriting its command line, so `/proc` still shows it. A guard
 * shell (`/bin/sh`, carrying the marker too) SIGKILLs the server within half
 * a second if the process that started it dies without stopping it.
 *
 * Limits: a free port is found by binding 127.0.0.1:0 and closing it, so
 * another process could take it before Redis does (the start then fails with
 * the log). Linux only (`/proc`).
 */
import { type ChildProcess, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import { isLivePid, newMarker, waitUntil } from "./procs.ts"

/** The redis-server binary, or undefined when none can be found. */
export const findRedisServer = (): string | undefined => {
  const fromEnv = process.env["REDIS_SERVER"]
  if (fromEnv !== undefined && fromEnv !== "") return fromEnv
  const dirs = [...(process.env["PATH"] ?? "").split(path.delimiter), "/usr/bin", "/usr/local/bin", "/usr/sbin"]
  for (const dir of dirs) {
    if (dir === "") continue
    const candidate = path.join(dir, "redis-server")
    try {
      fs.accessSync(candidate, fs.constants.X_OK)
      return candidate
    } catch {
      // not here
    }
  }
  return undefined
}

const MISSING = "redis-server was not found (set REDIS_SERVER, or on Debian: " +
  "apt-get install -y --no-install-recommends redis-server; see README \"Testing\")"

/**
 * The redis-server binary for a test file. Missing: throws with `CI=true`,
 * otherwise warns loudly (the caller skips its Redis tests) and returns undefined.
 */
export const redisServer = (file: string): string | undefined => {
  const found = findRedisServer()
  if (found !== undefined) return found
  if (process.env["CI"] === "true") throw new Error(`${file}: ${MISSING}. CI must run the Redis tests.`)
  const line = "!".repeat(100)
  process.stderr.write(`\n${line}\n!!! ${file}: SKIPPING the Redis integration tests: ${MISSING}.\n${line}\n\n`)
  return undefined
}

/** A free TCP port on 127.0.0.1 (bound and released). */
export const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const server = net.createServer()
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const port = (server.address() as net.AddressInfo).port
      server.close(() => resolve(port))
    })
  })

/** Sends one inline command and resolves with the first reply line, or rejects within `timeoutMs`. */
export const redisCommand = (port: number, command: string, timeoutMs = 1_000): Promise<string> =>
  new Promise((resolve, reject) => {
    const socket = net.connect({ host: "127.0.0.1", port })
    let data = ""
    const timer = setTimeout(() => {
      socket.destroy()
      reject(new Error(`redis ${command}: no answer within ${timeoutMs} ms`))
    }, timeoutMs)
    socket.on("connect", () => socket.write(`${command}\r\n`))
    socket.on("data", (chunk) => {
      data += chunk.toString("utf8")
      const end = data.indexOf("\r\n")
      if (end < 0) return
      clearTimeout(timer)
      socket.destroy()
      resolve(data.slice(0, end))
    })
    socket.on("error", (error) => {
      clearTimeout(timer)
      reject(error)
    })
  })

/** A running redis-server of one test. */
export interface RedisServer {
  readonly url: string
  readonly port: number
  readonly marker: string
  /** PID of the current process (changes on `restart`). */
  pid(): number
  /** SIGKILLs the server now (a crash); resolves once the process is gone. */
  kill(): Promise<void>
  /** Starts it again on the same port (empty: no persistence). */
  restart(): Promise<void>
  /** Stops it (SIGTERM, bounded wait, SIGKILL) and removes its directory. Idempotent. */
  stop(): Promise<void>
  /** SIGKILLs it and removes its directory at once (for an `exit` handler). */
  killSync(): void
}

const READY_MS = 10_000
const STOP_MS = 5_000

/** Starts redis-server `binary` on a free loopback port; resolves once it answers PING. */
export const startRedis = async (binary: string): Promise<RedisServer> => {
  const marker = newMarker()
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `${marker}-`))
  const port = await freePort()
  const config = path.join(dir, "redis.conf")
  fs.writeFileSync(
    config,
    [
      `port ${port}`,
      "bind 127.0.0.1",
      "protected-mode yes",
      `dir ${dir}`,
      "save \"\"",
      "appendonly no",
      "daemonize no",
      "set-proc-title no",
      "loglevel warning",
      `logfile ${path.join(dir, "redis.log")}`
    ].join("\n") + "\n"
  )
  let child: { readonly pid: number; readonly guard: ChildProcess } | undefined
  let exited: Promise<void> = Promise.resolve()

  const launch = async () => {
    // A guard shell runs redis-server and SIGKILLs it if this process dies
    // without stopping it (a killed test worker or benchmark); it prints the
    // server's PID, which `stop` and `kill` signal.
    const guard = spawn("/bin/sh", [
      "-c",
      `"$0" "$1" & r=$!; echo $r; while kill -0 ${process.pid} 2>/dev/null && kill -0 $r 2>/dev/null; do sleep 0.5; done; ` +
      `kill -9 $r 2>/dev/null; wait $r 2>/dev/null`,
      binary,
      config
    ], { stdio: ["ignore", "pipe", "ignore"] })
    const pid = await new Promise<number>((resolve, reject) => {
      let out = ""
      guard.stdout!.on("data", (chunk: Buffer) => {
        out += chunk.toString("utf8")
        if (out.includes("\n")) resolve(Number(out.trim()))
      })
      guard.once("error", reject)
      guard.once("exit", () => reject(new Error(`could not start ${binary}`)))
    })
    const process_ = { pid, guard }
    child = process_
    exited = new Promise<void>((resolve) => guard.once("exit", () => resolve()))
    const spawnError = new Promise<Error>((resolve) => guard.once("error", resolve))
    const ready = waitFor(async () => (await redisCommand(port, "PING", 500).catch(() => "")) === "+PONG", READY_MS)
    const first = await Promise.race([ready.then(() => undefined), spawnError])
    if (first instanceof Error) throw new Error(`could not start ${binary}: ${first.message}`)
    if (!(await ready)) {
      signal(pid, "SIGKILL")
      const log = fs.existsSync(path.join(dir, "redis.log")) ? fs.readFileSync(path.join(dir, "redis.log"), "utf8") : ""
      throw new Error(`redis-server on port ${port} did not answer PING within ${READY_MS} ms. Log:\n${log}`)
    }
  }

  const killNow = async (how: NodeJS.Signals) => {
    const current = child
    if (current === undefined || current.guard.exitCode !== null || current.guard.signalCode !== null) return
    signal(current.pid, how)
    const timer = new Promise<"timeout">((resolve) => setTimeout(() => resolve("timeout"), STOP_MS).unref())
    if ((await Promise.race([exited, timer])) === "timeout" && isLivePid(current.pid)) {
      signal(current.pid, "SIGKILL")
      await exited
    }
  }

  await launch()
  let stopped = false
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    marker,
    pid: () => child!.pid,
    kill: () => killNow("SIGKILL"),
    restart: async () => {
      await killNow("SIGKILL")
      await launch()
    },
    stop: async () => {
      if (stopped) return
      stopped = true
      await killNow("SIGTERM")
      fs.rmSync(dir, { recursive: true, force: true })
    },
    killSync: () => {
      stopped = true
      if (child !== undefined) signal(child.pid, "SIGKILL")
      fs.rmSync(dir, { recursive: true, force: true })
    }
  }
}

const signal = (pid: number, how: NodeJS.Signals) => {
  try {
    process.kill(pid, how)
  } catch {
    // already gone
  }
}

const waitFor = async (check: () => Promise<boolean>, timeoutMs: number): Promise<boolean> => {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (await check()) return true
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
  return false
}

export { waitUntil }

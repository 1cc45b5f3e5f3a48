/**
 * Accounts with the REAL `codex app-server` binary against the offline model
 * server: each account's workers send that account's own API key (the
 * server records the `Authorization` header of every model request), and an
 * eviction at `poolSize` kills the evicted codex process.
 *
 * The key reaches codex as the model provider's `env_key` (`MOCK_API_KEY`,
 * see `src/testing/codexConfig.ts`), given per account as a `Redacted` value.
 *
 * Process hygiene as in realCodexPool.test.ts: a marker on every codex
 * command line, a fresh CODEX_HOME, and /proc checked for survivors at the end.
 * Limits: needs the native codex binary and Linux /proc; every wait is bounded.
 */
import { Redacted } from "effect"
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest"
import { type CodexPromiseWorkerPool, type CodexWorkerHandle, createCodexWorkerPool } from "../src/node.ts"
import type { IncomingMessage } from "../src/CodexWorker.ts"
import { type ModelServer, startModelServer } from "../src/testing/ModelServer.ts"
import { codexEnv, type CodexHome, makeCodexHome, MODEL_SERVER_API_KEY_ENV } from "../src/testing/codexConfig.ts"
import { codexBinaryPath, findMarkedProcesses, isAlive, killMarkedProcesses, makeMarker, markedCodexArgs } from "./helpers/codex.ts"
import { until, within } from "./helpers/wait.ts"

const WAIT_MS = 15_000
const TEST_TIMEOUT_MS = 60_000

let server: ModelServer
let marker = ""
const homes: Array<CodexHome> = []
let pool: CodexPromiseWorkerPool | undefined

beforeAll(async () => {
  server = await startModelServer({ deltas: 2 })
})
afterAll(async () => {
  await server?.close()
})
beforeEach(() => {
  marker = makeMarker("accounts")
})
afterEach(async () => {
  if (pool !== undefined) await within(pool.shutdown(), "pool shutdown", WAIT_MS).catch(() => {})
  pool = undefined
  await killMarkedProcesses(marker)
  for (const home of homes.splice(0)) home.cleanup()
})

const newHome = () => {
  const home = makeCodexHome()
  homes.push(home)
  return home
}

/** Runs one turn on a new ephemeral thread; resolves with `turn/completed`'s status. */
const runTurn = async (worker: CodexWorkerHandle, text: string): Promise<string> => {
  let completed!: (status: string) => void
  const done = new Promise<string>((resolve) => (completed = resolve))
  let threadId = ""
  const stop = worker.onMessage((message: IncomingMessage) => {
    const params = (message.params ?? {}) as any
    if (message.method === "turn/completed" && params.threadId === threadId) completed(String(params.turn?.status))
  })
  try {
    const { thread } = (await worker.request("thread/start", {
      ephemeral: true,
      approvalPolicy: "never",
      sandbox: "read-only"
    })) as { thread: { id: string } }
    threadId = thread.id
    await worker.request("turn/start", { threadId, input: [{ type: "text", text, text_elements: [] }] })
    return await within(done, `turn/completed of "${text}"`, WAIT_MS)
  } finally {
    stop()
  }
}

describe("real codex with accounts", () => {
  it("each account's workers send the account's own key; eviction kills the evicted codex", {
    timeout: TEST_TIMEOUT_MS
  }, async () => {
    const home = newHome()
    const betaHome = newHome()
    pool = createCodexWorkerPool({
      command: codexBinaryPath(),
      args: markedCodexArgs(server.url, marker),
      env: codexEnv({ codexHome: home.path, apiKey: "key-default" }),
      poolSize: 2,
      accounts: {
        acme: { env: { [MODEL_SERVER_API_KEY_ENV]: Redacted.make("key-acme") } },
        beta: { env: { [MODEL_SERVER_API_KEY_ENV]: Redacted.make("key-beta") }, codexHome: betaHome.path }
      }
    })
    const prompt = (account: string, n: number) => `turn ${n} of ${account} (${marker})`
    const authorizationOf = (text: string) => server.requests.find((request) => request.userText === text)?.authorization

    // acme and beta at once: two codex processes, one per account.
    const pids: Record<string, number> = {}
    await Promise.all(["acme", "beta"].map((account) =>
      pool!.use(async (worker) => {
        pids[account] = worker.pid
        expect(await runTurn(worker, prompt(account, 1))).toBe("completed")
      }, { account })
    ))
    expect(pids["acme"]).not.toBe(pids["beta"])
    expect(authorizationOf(prompt("acme", 1))).toBe("Bearer key-acme")
    expect(authorizationOf(prompt("beta", 1))).toBe("Bearer key-beta")

    // The pool is at poolSize with both idle: the default account's caller evicts the oldest idle worker.
    await pool.use(async (worker) => {
      expect(await runTurn(worker, prompt("default", 1))).toBe("completed")
    })
    expect(authorizationOf(prompt("default", 1))).toBe("Bearer key-default")
    await until(() => Object.values(pids).some((pid) => !isAlive(pid)), "the evicted codex to be gone", WAIT_MS)
    const evicted = Object.entries(pids).filter(([, pid]) => !isAlive(pid))
    expect(evicted).toHaveLength(1)
    expect(pool.stats()).toMatchObject({ workers: 2, created: 3 })

    // The account whose worker was evicted gets a new process, with its own key again.
    const [evictedAccount] = evicted[0]!
    await pool.use(async (worker) => {
      expect(worker.pid).not.toBe(pids[evictedAccount])
      expect(await runTurn(worker, prompt(evictedAccount, 2))).toBe("completed")
    }, { account: evictedAccount })
    expect(authorizationOf(prompt(evictedAccount, 2))).toBe(`Bearer key-${evictedAccount}`)

    // Every model request of this test carried the key of the account that made it.
    const mine = server.requests.filter((request) => request.userText.endsWith(`(${marker})`))
    expect(mine).toHaveLength(4)
    for (const request of mine) {
      const account = /of (\w+) \(/.exec(request.userText)![1]!
      expect(request.authorization).toBe(`Bearer key-${account}`)
    }

    await within(pool.shutdown(), "pool shutdown", WAIT_MS)
    await until(() => findMarkedProcesses(marker).length === 0, "no codex process left", WAIT_MS)
    expect(findMarkedProcesses(marker)).toEqual([])
  })
})

/**
 * The AI SDK model passes the thread a call continues to the pool as the
 * affinity hint `prefer`, so that the idle worker that has the thread loaded
 * gets the call: it continues the thread directly, with no `thread/resume`.
 * Runs on the real pool over scripted fake workers (`codex-worker-pool/testing`).
 */
import { generateText, type ModelMessage } from "ai"
import { afterEach, describe, expect, it } from "vitest"
import { createCodexProvider } from "../src/ai-sdk/index.ts"
import { createTestCodexWorkerPool, type TestCodexPromiseWorkerPool } from "../src/testing/TestCodexWorkerPool.ts"
import { textTurns } from "../src/testing/textTurns.ts"

const pools: Array<TestCodexPromiseWorkerPool> = []
afterEach(async () => {
  for (const pool of pools.splice(0)) await pool.shutdown()
})

const resumes = (pool: TestCodexPromiseWorkerPool) =>
  pool.fakes.all.reduce((n, fake) => n + fake.requestsOf("thread/resume").length, 0)

describe("AI SDK model and the pool's affinity hint", () => {
  it("a conversation's next call lands on the idle worker that has its thread, not on the most recently used one", async () => {
    const pool = createTestCodexWorkerPool({ poolSize: 2, script: textTurns({ reply: ({ text }) => `re: ${text}` }) })
    pools.push(pool)
    const model = createCodexProvider({ pool })("fake-model")
    // Two conversations at once: each gets its own worker (the second call cannot wait for the first).
    const [a, b] = await Promise.all([
      generateText({ model, prompt: "first of A" }),
      generateText({ model, prompt: "first of B" })
    ])
    expect(pool.stats()).toMatchObject({ workers: 2, busy: 0, idle: 2 })
    const threadOfA = a.providerMetadata?.["codex"]?.["threadId"]
    expect(threadOfA).toBeDefined()
    expect(b.providerMetadata?.["codex"]?.["threadId"]).not.toBe(threadOfA)

    // A goes on. Whichever worker was released last, A's call is handed the one that ran A.
    for (const text of ["second of A", "third of A"]) {
      const messages: Array<ModelMessage> = [...a.response.messages, { role: "user", content: text }]
      const next = await generateText({ model, messages })
      expect(next.providerMetadata?.["codex"]?.["threadId"]).toBe(threadOfA)
    }
    expect(resumes(pool)).toBe(0)
    expect(pool.stats().created).toBe(2)
  })
})

describe("createCodexWorkerPool setAffinity", () => {
  it("records a key learned during the lease, so a later prefer gets that idle worker; a dead handle is ignored", async () => {
    const pool = createTestCodexWorkerPool({ poolSize: 2, script: textTurns() })
    pools.push(pool)
    const first = await pool.acquire()
    const second = await pool.acquire()
    pool.setAffinity(first, "thread-1")
    pool.release(first)
    pool.release(second)
    // The most recently released (second) would be handed out without the hint.
    const preferred = await pool.acquire({ prefer: "thread-1" })
    expect(preferred.pid).toBe(first.pid)
    pool.release(preferred)
    const plain = await pool.acquire()
    expect(plain.pid).toBe(first.pid) // most recent idle now
    pool.release(plain)
    // A handle whose lease ended changes nothing.
    pool.setAffinity(second, "thread-2")
    const other = await pool.acquire({ prefer: "thread-2" })
    expect(other.pid).toBe(first.pid)
    pool.release(other)
  })
})

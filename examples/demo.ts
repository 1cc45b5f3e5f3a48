/**
 * `npm start`: the library doing its job, with no setup.
 *
 * Starts an offline model server on 127.0.0.1 (a stand-in for the OpenAI
 * Responses API), a pool of real `codex app-server` workers, and sends a batch
 * of concurrent prompts through the AI SDK model. More prompts than workers:
 * the rest wait in the FIFO queue, one is aborted while queued. Live progress
 * per request, then a summary: waits, run times, FIFO order, spawned vs
 * reused workers, and the processes left alive after shutdown (must be 0).
 * Then one more prompt shows what the AI SDK model makes of Codex at work:
 * its reasoning, a shell command it runs (a provider-executed tool call, with
 * the output streaming in and the final result), and its answer. Offline, the
 * model server is scripted to reason and to call `exec_command`. A last
 * prompt gives the model an AI SDK function tool (`lookupTicket`, executed
 * here): Codex calls it, the step ends with the tool call while the turn
 * waits parked on its worker (`stats().parked`), and the next step brings
 * the result back into the same turn. Offline, the model server calls the
 * tool, then answers with what it returned.
 *
 * Rate limits: the prompts above are charged to workspace "acme"; then 16
 * prompts of an account "metered" (requestsPerMinute 15: a burst of 15, then
 * one request every 4 s) show admission: 15 are admitted at once and queue
 * for the workers, the 16th waits about 4 s for admission while the workers
 * sit idle (a throttled call holds no worker), and a table shows each
 * workspace's usage this minute.
 *
 * Flags: --pool-size N (2), --requests N (6), --abort K (request K is aborted
 * while queued; 0: none; default the last), --openai (talk to the real
 * OpenAI service with OPENAI_API_KEY instead of the local model server),
 * --model NAME (with --openai), --metrics (print every metric of the pool in
 * Prometheus text before shutdown), --help.
 */
import { parseArgs } from "node:util"
import { generateText, jsonSchema, stepCountIs, streamText, tool } from "ai"
import { Effect } from "effect"
import * as PrometheusMetrics from "effect/observability/PrometheusMetrics"
import { type CodexWorkerHandle, createCodexWorkerPool } from "../src/node.ts"
import { createCodexProvider } from "../src/ai-sdk/index.ts"
import { isAlive, type ProcessIdentity, readIdentity } from "../src/internal/procfs.ts"
import { codexProcessOptions, makeCodexHome, Reply, startModelServer } from "../src/testing/index.ts"

const { values: flags } = parseArgs({
  options: {
    "pool-size": { type: "string", default: "2" },
    requests: { type: "string", default: "6" },
    abort: { type: "string" },
    openai: { type: "boolean", default: false },
    model: { type: "string", default: "gpt-5.1-codex-mini" },
    metrics: { type: "boolean", default: false },
    help: { type: "boolean", default: false }
  }
})

if (flags.help) {
  console.log(`Usage: npm start -- [options]

Runs a pool of real codex app-server workers and sends concurrent prompts
through the AI SDK model, showing the FIFO queue at work.

  --pool-size N   workers (codex processes) in the pool          (default 2)
  --requests N    prompts sent at once                            (default 6)
  --abort K       abort prompt K while it waits in the queue,
                  0 for none                                      (default: the last)
  --openai        use the real OpenAI service (needs OPENAI_API_KEY)
                  instead of the embedded offline model server
  --model NAME    model for --openai                              (default gpt-5.1-codex-mini)
  --metrics       print every metric of the pool (Prometheus text) before shutdown
  --help          this text`)
  process.exit(0)
}

const positiveInt = (name: string, text: string | undefined, min: number): number => {
  const n = Number(text)
  if (!Number.isInteger(n) || n < min) {
    console.error(`--${name} must be an integer >= ${min}, got ${text}`)
    process.exit(2)
  }
  return n
}
const poolSize = positiveInt("pool-size", flags["pool-size"], 1)
const requests = positiveInt("requests", flags.requests, 1)
const abortIndex = flags.abort === undefined ? (requests > poolSize ? requests : 0) : positiveInt("abort", flags.abort, 0)
if (flags.openai && process.env["OPENAI_API_KEY"] === undefined) {
  console.error("--openai needs OPENAI_API_KEY in the environment.")
  process.exit(2)
}

const started = performance.now()
const now = () => Math.round(performance.now() - started)
const log = (id: number, text: string) => console.log(`${String(now()).padStart(6)} ms  #${id}  ${text}`)

type Outcome = "done" | "aborted" | "failed"
interface Row {
  readonly id: number
  readonly prompt: string
  queuedAt: number
  acquiredAt?: number
  finishedAt?: number
  pid?: number
  outcome?: Outcome
  text: string
}

const main = async () => {
  const server = flags.openai ? undefined : await startModelServer({
    deltas: 8,
    slowDelayMs: 40,
    mode: "slow",
    // The last part of the demo: reason, run a command, then answer.
    respond: (request) => {
      if (request.userText.startsWith(TOOL_PROMPT)) {
        if (request.toolOutputs.length > 0) {
          return Reply.text(`Ticket T-7: ${String(request.toolOutputs[0]!.output)}.`, { deltas: 6, delayMs: 40 })
        }
        return Reply.functionCall("lookupTicket", { id: "T-7" })
      }
      if (!request.userText.startsWith(ACTIONS_PROMPT)) return undefined
      if (request.toolOutputs.length > 0) {
        return Reply.text("The directory holds the project's sources, tests and examples.", { deltas: 6, delayMs: 40 })
      }
      return [
        Reply.reasoning(["The user wants to know what is here. ", "Listing the directory is the quickest way."], {
          delayMs: 40
        }),
        Reply.shellCommand("ls")
      ]
    }
  })
  const codexHome = makeCodexHome("codex-worker-pool-demo-")
  const pool = createCodexWorkerPool({
    poolSize,
    codexHome: codexHome.path,
    ...(server === undefined ? {} : codexProcessOptions({ baseUrl: server.url, apiKey: "demo" })),
    // AI SDK function tools reach Codex as dynamic tools, which need the experimental API.
    capabilities: { experimentalApi: true },
    name: "demo",
    // Rate limits of the API key of the account "metered" (the default account has none).
    accounts: { metered: { rateLimits: { requestsPerMinute: METERED_RPM } } }
  })
  const model = server === undefined ? flags.model : "mock-model"
  console.log(
    `codex-worker-pool demo: ${requests} prompts, poolSize ${poolSize}, ` +
      (server === undefined ? `OpenAI model ${model}` : `offline model server ${server.url}`) +
      (abortIndex > 0 ? `, prompt #${abortIndex} aborted while queued` : "")
  )

  const seen = new Map<number, ProcessIdentity>()
  const acquireOrder: Array<number> = []
  const rows: Array<Row> = []
  const run = async (id: number): Promise<void> => {
    const row: Row = { id, prompt: `Prompt ${id}: say something short.`, queuedAt: now(), text: "" }
    rows.push(row)
    const controller = new AbortController()
    // The model leases through this wrapper, so the demo can see when each request gets its worker.
    const codex = createCodexProvider({
      pool: {
        acquire: async (options) => {
          const acquiring = pool.acquire({ ...options, workspace: "acme" })
          const { queued } = pool.stats()
          if (queued > 0 && row.acquiredAt === undefined) log(id, `queued (position ${queued} in the queue)`)
          const worker: CodexWorkerHandle = await acquiring
          row.acquiredAt = now()
          row.pid = worker.pid
          acquireOrder.push(id)
          const identity = readIdentity(worker.pid)
          if (identity !== undefined && !seen.has(worker.pid)) seen.set(worker.pid, identity)
          log(id, `got worker pid ${worker.pid} after waiting ${row.acquiredAt - row.queuedAt} ms; streaming`)
          return worker
        },
        release: (worker) => pool.release(worker),
        invalidate: (worker) => pool.invalidate(worker)
      },
      threadDefaults: { ephemeral: true, approvalPolicy: "never", sandbox: "read-only" }
    })
    log(id, "sent")
    if (id === abortIndex) {
      setTimeout(() => {
        if (row.acquiredAt === undefined) log(id, "aborting while queued")
        controller.abort()
      }, 30)
    }
    try {
      const result = streamText({ model: codex(model), prompt: row.prompt, abortSignal: controller.signal })
      for await (const delta of result.textStream) row.text += delta
      row.finishedAt = now()
      if (controller.signal.aborted) throw controller.signal.reason
      row.outcome = "done"
      log(id, `done in ${row.finishedAt - (row.acquiredAt ?? row.queuedAt)} ms: ${JSON.stringify(row.text)}`)
    } catch (error) {
      row.finishedAt = now()
      row.outcome = controller.signal.aborted ? "aborted" : "failed"
      log(
        id,
        row.outcome === "failed"
          ? `failed: ${(error as Error).message}`
          : row.acquiredAt === undefined
          ? "aborted while queued: it never got a worker"
          : "aborted mid-stream"
      )
    }
  }

  await Promise.all(Array.from({ length: requests }, (_, i) => run(i + 1)))
  const stats = pool.stats()
  const actionsShown = await showActions(createCodexProvider({
    pool,
    threadDefaults: { ephemeral: true, approvalPolicy: "never", sandbox: "read-only" },
    callDefaults: { effort: "low", summary: "auto" }
  })(model))
  const toolShown = await showToolCall(pool, createCodexProvider({
    pool,
    threadDefaults: { ephemeral: true, approvalPolicy: "never", sandbox: "read-only" }
  })(model))
  const rateLimitsShown = await showRateLimits(pool, model)
  if (flags.metrics) {
    console.log("\nMetrics (Prometheus text):")
    console.log(Effect.runSync(PrometheusMetrics.format()))
  }
  await pool.shutdown()
  await server?.close()
  codexHome.cleanup()

  // Summary
  const ordered = [...rows].sort((a, b) => a.id - b.id)
  console.log("\n  #  outcome   wait ms   run ms  worker")
  for (const row of ordered) {
    const wait = row.acquiredAt === undefined ? "-" : String(row.acquiredAt - row.queuedAt)
    const runMs = row.acquiredAt === undefined || row.finishedAt === undefined ? "-" : String(row.finishedAt - row.acquiredAt)
    console.log(
      `${String(row.id).padStart(3)}  ${(row.outcome ?? "?").padEnd(8)} ${wait.padStart(7)}  ${runMs.padStart(7)}  ${row.pid ?? "-"}`
    )
  }
  const waits = ordered.filter((r) => r.acquiredAt !== undefined).map((r) => r.acquiredAt! - r.queuedAt).sort((a, b) => a - b)
  const pct = (p: number) => waits.length === 0 ? 0 : waits[Math.min(waits.length - 1, Math.ceil((p / 100) * waits.length) - 1)]!
  const served = ordered.filter((r) => r.acquiredAt !== undefined).map((r) => r.id)
  const fifo = acquireOrder.join(",") === served.join(",")
  const survivors = [...seen.values()].filter(isAlive)
  const completed = ordered.filter((r) => r.outcome === "done").length
  console.log(`
wait p50 ${pct(50)} ms, p95 ${pct(95)} ms
FIFO order held: ${fifo ? "yes" : "NO"} (workers handed out in order ${acquireOrder.join(", ")})
workers spawned ${stats.created}, reused for ${completed - stats.created} of ${completed} completed prompts
aborted while queued: ${ordered.filter((r) => r.outcome === "aborted").length}, failed: ${ordered.filter((r) => r.outcome === "failed").length}
processes left alive after shutdown: ${survivors.length}`)
  process.exitCode =
    fifo && survivors.length === 0 && actionsShown && toolShown && rateLimitsShown && ordered.every((r) => r.outcome !== "failed") ? 0 : 1
}

const ACTIONS_PROMPT = "What is in the current directory?"
const TOOL_PROMPT = "Is ticket T-7 still open? Look it up."

/** One prompt through the AI SDK model, printing its reasoning, Codex's command and the answer as they stream. */
const showActions = async (model: ReturnType<ReturnType<typeof createCodexProvider>>): Promise<boolean> => {
  console.log(`\nCodex at work, through the AI SDK model: ${JSON.stringify(ACTIONS_PROMPT)}`)
  let inText = false
  let sawReasoning = false
  let sawTool = false
  const line = (text: string) => {
    if (inText) process.stdout.write("\n")
    inText = false
    if (text !== "") console.log(text)
  }
  try {
    const result = streamText({ model, prompt: ACTIONS_PROMPT, providerOptions: { codex: { cwd: process.cwd() } } })
    for await (const part of result.fullStream) {
      switch (part.type) {
        case "reasoning-start":
          line("")
          process.stdout.write("  reasoning: ")
          inText = true
          break
        case "reasoning-delta":
          sawReasoning = true
          process.stdout.write(part.text)
          inText = true
          break
        case "tool-call":
          sawTool = true
          line(`  tool call ${part.toolName} (provider-executed: ${part.providerExecuted === true}): ${JSON.stringify(part.input)}`)
          break
        case "tool-result": {
          const output = part.output as { status?: string; exitCode?: number | null; output?: string | null }
          const lines = (output.output ?? "").trim().split("\n").filter((l) => l !== "")
          const head = `${lines.length} lines: ${lines.slice(0, 6).join(" ")}${lines.length > 6 ? " ..." : ""}`
          line(
            output.status === "inProgress"
              ? `  tool output so far (streaming): ${head}`
              : `  tool result: ${output.status}, exit code ${output.exitCode ?? "-"}, ${head}`
          )
          break
        }
        case "tool-error":
          line(`  tool error: ${JSON.stringify(part.error)}`)
          break
        case "text-start":
          line("")
          process.stdout.write("  answer: ")
          inText = true
          break
        case "text-delta":
          process.stdout.write(part.text)
          inText = true
          break
        case "error":
          line(`  error: ${String((part.error as Error)?.message ?? part.error)}`)
          break
      }
    }
    line(`  reasoning shown: ${sawReasoning ? "yes" : "no"}, tool call shown: ${sawTool ? "yes" : "no"}`)
    return flags.openai || (sawReasoning && sawTool)
  } catch (error) {
    line(`  failed: ${(error as Error).message}`)
    return false
  }
}

/**
 * One prompt with an AI SDK function tool: the step that ends with the tool
 * call, the parked worker, the tool running here, and the answer of the next
 * step (the same Codex turn, on the same worker).
 */
const showToolCall = async (
  pool: { stats(): { readonly parked: number; readonly busy: number } },
  model: ReturnType<ReturnType<typeof createCodexProvider>>
): Promise<boolean> => {
  console.log(`\nAn AI SDK function tool, through the AI SDK model: ${JSON.stringify(TOOL_PROMPT)}`)
  let called = false
  let parkedWhileRunning = 0
  let answer = ""
  try {
    const result = streamText({
      model,
      prompt: TOOL_PROMPT,
      tools: {
        lookupTicket: tool({
          description: "Looks a support ticket up by its id",
          inputSchema: jsonSchema<{ id: string }>({
            type: "object",
            properties: { id: { type: "string" } },
            required: ["id"]
          }),
          execute: async ({ id }) => {
            parkedWhileRunning = pool.stats().parked
            console.log(`  the tool runs here: lookupTicket(${JSON.stringify(id)}); the turn waits parked ` +
              `(stats().parked = ${parkedWhileRunning}, busy = ${pool.stats().busy})`)
            return "open, waiting for the customer"
          }
        })
      },
      stopWhen: stepCountIs(3),
      onStepFinish: (step) => console.log(`  step ${step.stepNumber + 1} finished: ${step.finishReason}`)
    })
    for await (const part of result.fullStream) {
      if (part.type === "tool-call") {
        called = true
        console.log(`  tool call ${part.toolName} (provider-executed: ${part.providerExecuted === true}): ${JSON.stringify(part.input)}`)
      }
      if (part.type === "tool-result") console.log(`  tool result: ${JSON.stringify(part.output)}`)
      if (part.type === "text-delta") answer += part.text
      if (part.type === "error") console.log(`  error: ${String((part.error as Error)?.message ?? part.error)}`)
    }
    console.log(`  answer: ${answer}`)
    console.log(`  parked leases now: ${pool.stats().parked}`)
    return flags.openai || (called && parkedWhileRunning === 1 && answer.includes("open"))
  } catch (error) {
    console.log(`  failed: ${(error as Error).message}`)
    return false
  }
}

/** Requests per minute of the account "metered": a burst of 15, then one every 4 s. */
const METERED_RPM = 15

/**
 * METERED_RPM + 1 prompts of the account "metered" at once: the burst is
 * admitted at once (and queues for the workers), the last waits about
 * 60 / METERED_RPM s for admission, holding no worker; then the usage of
 * each workspace this minute.
 */
const showRateLimits = async (pool: ReturnType<typeof createCodexWorkerPool>, model: string): Promise<boolean> => {
  const count = METERED_RPM + 1
  console.log(
    `\nRate limits: account "metered" at ${METERED_RPM} requests per minute ` +
      `(a burst of ${METERED_RPM}, then one every ${60 / METERED_RPM} s), ${count} prompts at once`
  )
  const t0 = performance.now()
  const admittedAt: Array<number> = []
  const codex = createCodexProvider({
    pool: {
      acquire: async (options) => {
        const worker = await pool.acquire(options)
        admittedAt.push(Math.round(performance.now() - t0))
        return worker
      },
      release: (worker) => pool.release(worker),
      invalidate: (worker) => pool.invalidate(worker)
    },
    threadDefaults: { ephemeral: true, approvalPolicy: "never", sandbox: "read-only" }
  })
  const prompt = (n: number) =>
    generateText({
      model: codex(model),
      prompt: `Metered prompt ${n}: say something short.`,
      providerOptions: { codex: { account: "metered", workspace: "globex" } }
    })
  try {
    const burst = Array.from({ length: METERED_RPM }, (_, i) => prompt(i + 1))
    const last = prompt(count)
    await Promise.all(burst)
    const burstDone = Math.round(performance.now() - t0)
    console.log(`  prompts 1-${METERED_RPM}: admitted at once, ran on ${pool.stats().processes} workers, done after ${burstDone} ms`)
    if (admittedAt.length === METERED_RPM) {
      const stats = pool.stats()
      console.log(`  prompt ${count} still waits for admission: busy ${stats.busy}, idle ${stats.idle} (a throttled call holds no worker)`)
    }
    await last
    const waited = admittedAt[admittedAt.length - 1]!
    console.log(`  prompt ${count}: admitted after ${waited} ms (waited for the next request of the bucket)`)
    console.log("\n  workspace  requests  tokens (this minute)")
    for (const workspace of ["acme", "globex"]) {
      const usage = await pool.usage(workspace)
      console.log(`  ${workspace.padEnd(9)}  ${String(usage.minute.requests).padStart(8)}  ${usage.minute.totalTokens}`)
    }
    return flags.openai || waited >= 3_000
  } catch (error) {
    console.log(`  failed: ${(error as Error).message}`)
    return false
  }
}

main().catch((error) => {
  console.error(error)
  process.exitCode = 1
})

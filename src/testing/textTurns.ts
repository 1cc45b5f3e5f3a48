/**
 * A codex-like thread and turn script for fake workers: enough of the
 * app-server protocol for code that starts threads and streams text turns
 * (a chat server, the AI SDK provider) to run against the fake pool.
 *
 * Methods it answers, with the shapes codex 0.169 uses (trimmed to the fields
 * that matter):
 * - `thread/start` -> `{ thread: { id, ... }, model, ... }`, then a
 *   `thread/started` notification;
 * - `thread/resume` `{ threadId }` -> `{ thread }` for a thread any worker of
 *   the same script started (threads live in the script, like codex's
 *   `CODEX_HOME`), else error -32600 "thread not found";
 * - `turn/start` `{ threadId, input }` -> `{ turn: { id, status: "inProgress" } }`,
 *   then `turn/started`, `item/started` (agentMessage), N x
 *   `item/agentMessage/delta`, `item/completed`, `thread/tokenUsage/updated`
 *   and `turn/completed` (status "completed"); a reply `{ error }` gives an
 *   `error` notification and `turn/completed` with status "failed";
 * - `turn/interrupt` `{ threadId, turnId }` -> `{}` and `turn/completed` with
 *   status "interrupted" while the turn waits for its reply, else error
 *   -32600 "no active turn to interrupt".
 * Any method in `methods` is added (or replaces one of these).
 *
 * Guarantees: the turn's notifications come after the `turn/start` response,
 * in the order above; ids are unique per script (`thread-N`, `turn-N`,
 * `msg-N`); the deltas concatenate to the reply text.
 *
 * Limits: text only: no reasoning, tool calls, approvals or images (script
 * those with `FakeWorker.notify` / `request` in your own `methods`); no
 * steering (a second `turn/start` while one runs starts another turn); token
 * counts are made up.
 *
 * @since 0.1.0
 */
import type { FakeWorker, FakeWorkerScript, MethodHandler } from "./FakeCodexWorker.ts"
import { rpcError } from "./FakeCodexWorker.ts"

/**
 * How a scripted turn ends: with `text`, or failed with `error` as its message.
 *
 * @since 0.1.0
 * @category models
 */
export type TurnOutcome = string | { readonly text: string } | { readonly error: string }

/**
 * What the reply function gets for one turn.
 *
 * @since 0.1.0
 * @category models
 */
export interface TurnRequest {
  readonly threadId: string
  readonly turnId: string
  /** The `text` of the turn's `text` inputs, joined with newlines. */
  readonly text: string
  /** The `turn/start` params as received. */
  readonly params: unknown
  /** The worker running the turn. */
  readonly worker: FakeWorker
}

/**
 * Options of {@link textTurns}.
 *
 * @since 0.1.0
 * @category models
 */
export interface TextTurnsOptions {
  /** The turn's outcome; may be async (a promise that waits lets a test interrupt the turn). Default `Echo: <text>`. */
  readonly reply?: ((turn: TurnRequest) => TurnOutcome | Promise<TurnOutcome>) | undefined
  /** Deltas per reply; default 3. */
  readonly deltas?: number | undefined
  /** More handlers, added to (or replacing) the thread and turn methods. */
  readonly methods?: Readonly<Record<string, MethodHandler>> | undefined
}

const isRecord = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value)

const inputText = (params: unknown): string => {
  const input = isRecord(params) ? params["input"] : undefined
  if (!Array.isArray(input)) return ""
  return input
    .flatMap((item: unknown) => (isRecord(item) && item["type"] === "text" && typeof item["text"] === "string" ? [item["text"]] : []))
    .join("\n")
}

const split = (text: string, count: number): Array<string> => {
  const chars = Array.from(text)
  const n = Math.max(1, Math.min(count, chars.length))
  const pieces: Array<string> = []
  let start = 0
  for (let i = 0; i < n && start < chars.length; i++) {
    const end = Math.round(((i + 1) * chars.length) / n)
    pieces.push(chars.slice(start, end).join(""))
    start = end
  }
  return pieces
}

/**
 * A fake-worker script that answers thread and turn methods like codex,
 * streaming each turn's reply as agent message deltas.
 *
 * @example
 * ```ts
 * import { createTestCodexWorkerPool, textTurns } from "codex-worker-pool/testing"
 *
 * const pool = createTestCodexWorkerPool({
 *   poolSize: 1,
 *   script: textTurns({ reply: ({ text }) => text === "fail" ? { error: "model down" } : `You said: ${text}` })
 * })
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const textTurns = (options: TextTurnsOptions = {}): FakeWorkerScript => {
  const deltas = options.deltas ?? 3
  if (!Number.isInteger(deltas) || deltas < 1) throw new TypeError(`textTurns: deltas must be an integer >= 1, got ${deltas}`)
  const reply = options.reply ?? (({ text }: TurnRequest) => `Echo: ${text}`)
  const threads = new Map<string, { readonly id: string }>()
  const activeTurns = new Map<string, { readonly threadId: string; readonly worker: FakeWorker; ended: boolean }>()
  let counter = 0
  const now = () => Math.floor(Date.now() / 1000)

  const threadOf = (id: string) => ({
    id,
    ephemeral: false,
    modelProvider: "fake",
    model: "fake-model",
    status: { type: "idle" },
    turns: [],
    preview: ""
  })
  const turnOf = (id: string, status: string, extra: Record<string, unknown> = {}) => ({
    id,
    rootTurnId: id,
    items: [],
    itemsView: "notLoaded",
    status,
    error: null,
    startedAt: now(),
    completedAt: null,
    durationMs: null,
    ...extra
  })

  const finish = (turnId: string, notify: () => void) => {
    const turn = activeTurns.get(turnId)
    if (turn === undefined || turn.ended) return
    turn.ended = true
    activeTurns.delete(turnId)
    if (!turn.worker.closed) notify()
  }

  const runTurn = async (request: TurnRequest) => {
    const { threadId, turnId, worker } = request
    await Promise.resolve() // after the turn/start response
    worker.notify("thread/status/changed", { threadId, status: { type: "active", activeFlags: [] } })
    worker.notify("turn/started", { threadId, turn: turnOf(turnId, "inProgress") })
    let outcome: TurnOutcome
    try {
      outcome = await reply(request)
    } catch (error) {
      outcome = { error: error instanceof Error ? error.message : String(error) }
    }
    finish(turnId, () => {
      if (typeof outcome === "object" && "error" in outcome) {
        const error = { message: outcome.error, codexErrorInfo: "other", additionalDetails: null }
        worker.notify("error", { error, willRetry: false, threadId, turnId })
        worker.notify("thread/status/changed", { threadId, status: { type: "idle" } })
        worker.notify("turn/completed", {
          threadId,
          turn: turnOf(turnId, "failed", { error, completedAt: now() })
        })
        return
      }
      const text = typeof outcome === "string" ? outcome : outcome.text
      const itemId = `msg-${++counter}`
      const pieces = split(text, deltas)
      worker.notify("item/started", {
        item: { type: "agentMessage", id: itemId, text: "", phase: null },
        threadId,
        turnId,
        startedAtMs: Date.now()
      })
      for (const delta of pieces) worker.notify("item/agentMessage/delta", { threadId, turnId, itemId, delta })
      const item = { type: "agentMessage", id: itemId, text, phase: null }
      worker.notify("item/completed", { item, threadId, turnId, completedAtMs: Date.now() })
      const usage = {
        totalTokens: 10 + pieces.length,
        inputTokens: 10,
        cachedInputTokens: 0,
        cacheWriteInputTokens: 0,
        outputTokens: pieces.length,
        reasoningOutputTokens: 0
      }
      worker.notify("thread/tokenUsage/updated", {
        threadId,
        turnId,
        tokenUsage: { total: usage, last: usage, modelContextWindow: null }
      })
      worker.notify("thread/status/changed", { threadId, status: { type: "idle" } })
      worker.notify("turn/completed", {
        threadId,
        turn: turnOf(turnId, "completed", { items: [item], itemsView: "summary", completedAt: now() })
      })
    })
  }

  const methods: Record<string, MethodHandler> = {
    "thread/start": (_params, worker) => {
      const id = `thread-${++counter}`
      threads.set(id, { id })
      queueMicrotask(() => worker.notify("thread/started", { thread: threadOf(id) }))
      return { thread: threadOf(id), model: "fake-model", modelProvider: "fake" }
    },
    "thread/resume": (params) => {
      const threadId = isRecord(params) ? params["threadId"] : undefined
      if (typeof threadId !== "string" || !threads.has(threadId)) {
        throw rpcError(-32600, `thread not found: ${String(threadId)}`)
      }
      return { thread: threadOf(threadId), model: "fake-model", modelProvider: "fake" }
    },
    "turn/start": (params, worker) => {
      const threadId = isRecord(params) ? params["threadId"] : undefined
      if (typeof threadId !== "string" || !threads.has(threadId)) {
        throw rpcError(-32600, `thread not found: ${String(threadId)}`)
      }
      const turnId = `turn-${++counter}`
      activeTurns.set(turnId, { threadId, worker, ended: false })
      void runTurn({ threadId, turnId, text: inputText(params), params, worker })
      return { turn: turnOf(turnId, "inProgress", { startedAt: null }) }
    },
    "turn/interrupt": (params, worker) => {
      const turnId = isRecord(params) ? params["turnId"] : undefined
      const turn = typeof turnId === "string" ? activeTurns.get(turnId) : undefined
      if (turn === undefined || typeof turnId !== "string") throw rpcError(-32600, "no active turn to interrupt")
      queueMicrotask(() =>
        finish(turnId, () => {
          worker.notify("thread/status/changed", { threadId: turn.threadId, status: { type: "idle" } })
          worker.notify("turn/completed", {
            threadId: turn.threadId,
            turn: turnOf(turnId, "interrupted", { completedAt: now() })
          })
        })
      )
      return {}
    },
    ...options.methods
  }
  return { methods }
}

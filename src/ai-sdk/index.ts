/**
 * An AI SDK language model (`LanguageModelV3`, for `ai` 6 and 7) that runs
 * each call as one Codex turn on a worker leased from a Codex worker pool,
 * and shows what Codex does: its text, its reasoning, and its own actions
 * (commands, file changes, MCP tools, web searches, dynamic tools) as
 * provider-executed tool calls.
 *
 * Guarantees:
 * - a call beyond the pool's capacity waits in its FIFO queue; aborting the
 *   call's `abortSignal` while queued takes no worker and rejects with the
 *   signal's reason (the AbortError);
 * - the worker is released exactly once on every path: finish, failed turn,
 *   consumer cancel, abort mid-stream (after `turn/interrupt` and a bounded
 *   wait for the interrupted `turn/completed`), and worker crash;
 * - a worker that dies mid-turn ends the stream at once with its
 *   `WorkerCrashedError`; a worker whose interrupt is not confirmed within
 *   `interruptTimeoutMs` is invalidated rather than reused;
 * - every server request is answered (approvals through `approvals`, default
 *   decline; permissions, user input and MCP elicitations through their
 *   callbacks, with safe defaults), so a turn never hangs on one;
 * - per-call settings (`providerOptions.codex`) are validated with Schema
 *   before a worker is leased; a bad field fails with a `PoolOptionsError`
 *   naming it;
 * - images reach Codex as image inputs; a call's temporary files are removed
 *   when it ends, on every path;
 * - AI SDK function tools (`tools` with JSON schemas) are offered to Codex as
 *   dynamic tools when a thread starts. When Codex calls them, the step ends
 *   with `tool-calls` (all calls of one model response in one step) and the
 *   turn waits, parked on its leased worker, for the next call of the
 *   conversation to bring the results: that call continues the same turn on
 *   the same worker, without a new lease (tools with and without `execute`
 *   alike). A parked turn that gets no results within `toolResultTimeoutMs`
 *   (default 60 s), or whose call is aborted, is interrupted and its worker
 *   released; results that come later start a new turn that gets them as
 *   text. The pool counts parked leases in `stats().parked`.
 *
 * Threads: each call starts a thread (`thread/start`, with `threadDefaults`)
 * unless `providerOptions.codex.threadId` names one, or the prompt's last
 * assistant message carries a thread id in its provider metadata (which this
 * model writes on every part and on `finish`): then it continues that thread
 * and sends only the messages after it. A worker that has the thread loaded
 * continues it directly; another one asks for `thread/resume`; a thread that
 * cannot be resumed (an ephemeral thread that lived on another worker) is
 * replaced by a new one that gets the whole conversation, unless the thread
 * was named explicitly (then the call fails). System messages become a new
 * thread's `developerInstructions`. `account`, `workspace` and `estimatedTokens` go to the
 * pool's `acquire`; the thread is not passed as an affinity hint yet.
 *
 * Limits: sampling settings (temperature, topP, ...) and provider-defined
 * tools are not passed to Codex; each is reported as an "unsupported"
 * warning. Function tools need a pool whose workers announce the
 * experimental API (`capabilities: { experimentalApi: true }`; Codex refuses
 * `dynamicTools` otherwise), and are fixed when a thread starts: a continued
 * thread keeps its tools. A call with tools whose caller never sends the
 * results (e.g. `streamText` with the default `stopWhen` of one step) keeps
 * the worker until `toolResultTimeoutMs`. Token usage is
 * reported only for completed turns. Reasoning needs a model that reasons and
 * `effort` / `summary` settings. See `streamParts.ts` for how `streamText`
 * treats streamed tool output.
 *
 * Modules: `settings.ts` (the per-call settings schema), `promptInput.ts`
 * (prompt to turn input), `tempFiles.ts`, `streamParts.ts` (item events to
 * stream parts), `usage.ts`, `approvals.ts` (server requests),
 * `toolParking.ts` (AI SDK tools across steps: tool specs, result answers,
 * the parked turns), `turn.ts` (one turn's lifecycle over its steps),
 * `model.ts` (the language model).
 *
 * @example
 * ```ts
 * import { streamText } from "ai"
 * import { createCodexWorkerPool } from "codex-worker-pool/node"
 * import { createCodexProvider } from "codex-worker-pool/ai-sdk"
 *
 * const pool = createCodexWorkerPool({ poolSize: 2 })
 * const codex = createCodexProvider({
 *   pool,
 *   threadDefaults: { ephemeral: true, approvalPolicy: "never" },
 *   callDefaults: { effort: "medium", summary: "auto" }
 * })
 * const result = streamText({ model: codex("gpt-5.1-codex"), prompt: "List the files here" })
 * for await (const part of result.fullStream) {
 *   if (part.type === "reasoning-delta") process.stdout.write(part.text)
 *   if (part.type === "tool-call") console.log("codex runs", part.toolName, part.input)
 *   if (part.type === "text-delta") process.stdout.write(part.text)
 * }
 * await pool.shutdown()
 * ```
 *
 * @example
 * ```ts
 * import { jsonSchema, stepCountIs, streamText, tool } from "ai"
 * import { createCodexWorkerPool } from "codex-worker-pool/node"
 * import { createCodexProvider } from "codex-worker-pool/ai-sdk"
 *
 * // Function tools reach Codex as dynamic tools, which need the experimental API.
 * const pool = createCodexWorkerPool({ poolSize: 2, capabilities: { experimentalApi: true } })
 * const codex = createCodexProvider({ pool, threadDefaults: { ephemeral: true }, toolResultTimeoutMs: 30_000 })
 * const result = streamText({
 *   model: codex("gpt-5.1-codex"),
 *   prompt: "Is ticket T-7 still open?",
 *   tools: {
 *     lookupTicket: tool({
 *       description: "Looks a ticket up",
 *       inputSchema: jsonSchema<{ id: string }>({
 *         type: "object",
 *         properties: { id: { type: "string" } },
 *         required: ["id"]
 *       }),
 *       execute: async ({ id }) => ({ id, status: "open" })
 *     })
 *   },
 *   // Each tool round trip is one more step; the turn waits on its worker in between.
 *   stopWhen: stepCountIs(4)
 * })
 * console.log(await result.text)
 * await pool.shutdown()
 * ```
 *
 * @since 0.1.0
 */
import type { LanguageModelV3 } from "@ai-sdk/provider"
import { Schema } from "effect"
import { PoolOptionsError } from "../errors.ts"
import { decodeOptions, Millis } from "../internal/options.ts"
import { type ServerRequestHandlers, ServerRequestCallbackFields } from "./approvals.ts"
import { CodexLanguageModel } from "./model.ts"
import type { ImageInputMode } from "./promptInput.ts"
import { type CodexCallOptions, parseCallOptions } from "./settings.ts"
import { ToolParking } from "./toolParking.ts"
import { ANNOUNCED_CALL_GRACE_MS, type CodexPoolLike, type ThreadDefaults, type Turn } from "./turn.ts"

export type {
  ApprovalDecision,
  ApprovalRequest,
  ServerRequestContext,
  ServerRequestHandlers
} from "./approvals.ts"
export type { ImageInputMode } from "./promptInput.ts"
export { CallOptionsSchema, type CodexAcquireOptions, type CodexCallOptions } from "./settings.ts"
export { mcpToolName, PRELIMINARY_OUTPUT_LIMIT, toolNames } from "./streamParts.ts"
export type { CodexPoolLike, ThreadDefaults } from "./turn.ts"

/**
 * Options of {@link createCodexProvider}.
 *
 * @since 0.1.0
 * @category models
 */
export interface CodexProviderOptions extends ServerRequestHandlers {
  /** The pool the model leases workers from. */
  readonly pool: CodexPoolLike
  /** Sent with every `thread/start` (and `thread/resume`): cwd, approvalPolicy, sandbox, ephemeral, ... */
  readonly threadDefaults?: ThreadDefaults | undefined
  /** Per-call settings of every call (`providerOptions.codex` overrides them field by field). */
  readonly callDefaults?: CodexCallOptions | undefined
  /** How long to wait for an interrupted turn to end before invalidating the worker. Default 5000 ms. */
  readonly interruptTimeoutMs?: number | undefined
  /**
   * How long a server-request callback (`approvals`, `permissions`, ...) may
   * take before the safe default is sent instead. Default 300000 ms (5 min);
   * `Infinity` waits as long as the turn lasts.
   */
  readonly serverRequestTimeoutMs?: number | undefined
  /**
   * How long a turn waits, parked on its worker, for the results of the AI
   * SDK tool calls its step ended with (the next call of the conversation
   * brings them). After that the turn is interrupted and the worker
   * released; results that come later start a new turn that gets them as
   * text. Default 60000 ms; at most 2147483647 (a timer's limit).
   */
  readonly toolResultTimeoutMs?: number | undefined
  /** How image bytes reach Codex: a temporary `localImage` file (default) or an inline data URL. */
  readonly imageInput?: ImageInputMode | undefined
  /**
   * Send streamed command output and MCP progress as preliminary tool results
   * (default true); see the module header of `streamParts.ts` for how
   * `streamText` lists them. Per call: `providerOptions.codex.streamToolOutput`.
   */
  readonly streamToolOutput?: boolean | undefined
}

/**
 * A provider: call it with a model id to get a language model.
 *
 * @since 0.1.0
 * @category models
 */
export interface CodexProvider {
  (modelId: string): LanguageModelV3
  languageModel(modelId: string): LanguageModelV3
}

const isPool = (u: unknown): u is CodexPoolLike =>
  typeof u === "object" && u !== null && typeof (u as CodexPoolLike).acquire === "function" &&
  typeof (u as CodexPoolLike).release === "function" && typeof (u as CodexPoolLike).invalidate === "function"

const isObject = (u: unknown): u is object => typeof u === "object" && u !== null && !Array.isArray(u)

/** A timer's delay: a number of milliseconds > 0 that `setTimeout` takes as is (finite, at most 2^31 - 1). */
const TimerMillis = Schema.declare(
  (u: unknown): u is number => typeof u === "number" && u > 0 && u <= 2_147_483_647,
  { expected: "a number of milliseconds > 0 and <= 2147483647" }
)

const ProviderOptionsSchema = Schema.Struct({
  pool: Schema.declare(isPool, { expected: "a pool from createCodexWorkerPool" }),
  threadDefaults: Schema.optional(Schema.declare(isObject, { expected: "an object of thread/start params" })),
  callDefaults: Schema.optional(Schema.Unknown),
  interruptTimeoutMs: Schema.optional(Millis),
  serverRequestTimeoutMs: Schema.optional(Millis),
  toolResultTimeoutMs: Schema.optional(TimerMillis),
  imageInput: Schema.optional(Schema.Literals(["localImage", "dataUrl"])),
  streamToolOutput: Schema.optional(Schema.Boolean),
  ...ServerRequestCallbackFields
})

/**
 * Creates the provider. Bad options throw a `PoolOptionsError` naming the option.
 *
 * @since 0.1.0
 * @category constructors
 */
export const createCodexProvider = (options: CodexProviderOptions): CodexProvider => {
  if (!isPool((options as { pool?: unknown } | undefined)?.pool)) {
    throw new PoolOptionsError({
      message: "Invalid createCodexProvider options: pool: Expected a pool from createCodexWorkerPool."
    })
  }
  decodeOptions("createCodexProvider", ProviderOptionsSchema, options)
  const callDefaults = parseCallOptions("createCodexProvider options: callDefaults", options.callDefaults)
  const settings = {
    pool: options.pool,
    loadedThreads: new WeakMap(),
    threadDefaults: options.threadDefaults ?? {},
    interruptTimeoutMs: options.interruptTimeoutMs ?? 5_000,
    serverRequestTimeoutMs: options.serverRequestTimeoutMs ?? 300_000,
    toolResultTimeoutMs: options.toolResultTimeoutMs ?? 60_000,
    announcedCallGraceMs: ANNOUNCED_CALL_GRACE_MS,
    parking: new ToolParking<Turn>(),
    handlers: {
      approvals: options.approvals,
      permissions: options.permissions,
      userInput: options.userInput,
      elicitation: options.elicitation,
      chatgptAuthTokens: options.chatgptAuthTokens
    },
    // Calls of dynamic tools that are not AI SDK tools of the call (threadDefaults.dynamicTools): unsupported.
    toolCalls: undefined,
    imageInput: options.imageInput ?? "localImage",
    callDefaults,
    streamToolOutput: options.streamToolOutput ?? true
  }
  const languageModel = (modelId: string): LanguageModelV3 => new CodexLanguageModel(modelId, settings)
  return Object.assign((modelId: string) => languageModel(modelId), { languageModel })
}

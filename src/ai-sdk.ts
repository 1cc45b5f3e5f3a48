/**
 * An AI SDK language model (`LanguageModelV3`, for `ai` 6 and 7) that runs
 * each call as one Codex turn on a worker leased from a Codex worker pool.
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
 * - approval requests are answered by `approvals` (default: decline), so a
 *   turn never hangs on one; dynamic tool calls are answered as unsupported.
 *
 * Threads: each call starts a thread (`thread/start`, with `threadDefaults`)
 * unless the prompt's last assistant message carries a thread id in its
 * provider metadata (`providerOptions.codex.threadId`, which this model writes
 * on every text part and on `finish`): then it continues that thread and
 * sends only the messages after it. A worker that has the thread loaded
 * continues it directly; another one asks for `thread/resume`; a thread that
 * cannot be resumed (an ephemeral thread that lived on another worker) is
 * replaced by a new one that gets the whole conversation. System messages
 * become a new thread's `developerInstructions`.
 *
 * Limits: text in, text out. Files, tool definitions and sampling settings
 * (temperature, topP, ...) are not passed to Codex; each is reported as an
 * "unsupported" warning. Token usage is taken from the turn's last
 * `thread/tokenUsage/updated` and only for completed turns.
 *
 * @example
 * ```ts
 * import { streamText } from "ai"
 * import { createCodexWorkerPool } from "codex-worker-pool/node"
 * import { createCodexProvider } from "codex-worker-pool/ai-sdk"
 *
 * const pool = createCodexWorkerPool({ poolSize: 2 })
 * const codex = createCodexProvider({ pool, threadDefaults: { ephemeral: true, approvalPolicy: "never" } })
 * const result = streamText({ model: codex("gpt-5.1-codex"), prompt: "Say hi" })
 * for await (const text of result.textStream) process.stdout.write(text)
 * await pool.shutdown()
 * ```
 *
 * @since 0.1.0
 */
import type {
  LanguageModelV3,
  LanguageModelV3CallOptions,
  LanguageModelV3Content,
  LanguageModelV3FinishReason,
  LanguageModelV3Prompt,
  LanguageModelV3StreamPart,
  LanguageModelV3Usage,
  SharedV3ProviderMetadata,
  SharedV3Warning
} from "@ai-sdk/provider"
import type { CodexWorkerHandle } from "./CodexPromisePool.ts"
import type * as CodexProtocol from "./CodexProtocol.ts"
import type { IncomingMessage } from "./CodexWorker.ts"
import { JsonRpcError, PoolOptionsError } from "./errors.ts"

/**
 * What the model needs of a pool: `createCodexWorkerPool`'s facade.
 *
 * @since 0.1.0
 * @category models
 */
export interface CodexPoolLike {
  acquire(options?: { readonly signal?: AbortSignal | undefined }): Promise<CodexWorkerHandle>
  release(worker: CodexWorkerHandle): void
  invalidate(worker: CodexWorkerHandle): Promise<void>
}

/**
 * An approval the server asks for, and the answer.
 *
 * @since 0.1.0
 * @category models
 */
export type ApprovalDecision = "accept" | "acceptForSession" | "decline" | "cancel"

/**
 * Options of {@link createCodexProvider}.
 *
 * @since 0.1.0
 * @category models
 */
export interface CodexProviderOptions {
  /** The pool the model leases workers from. */
  readonly pool: CodexPoolLike
  /** Sent with every `thread/start` (and `thread/resume`): cwd, approvalPolicy, sandbox, ephemeral, ... */
  readonly threadDefaults?: Readonly<Record<string, unknown>> | undefined
  /** How long to wait for an interrupted turn to end before invalidating the worker. Default 5000 ms. */
  readonly interruptTimeoutMs?: number | undefined
  /** Answers approval requests (commands, file changes). Default: always "decline". */
  readonly approvals?:
    | ((request: { readonly method: string; readonly params: unknown }) => ApprovalDecision | Promise<ApprovalDecision>)
    | undefined
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

/**
 * Creates the provider.
 *
 * @since 0.1.0
 * @category constructors
 */
export const createCodexProvider = (options: CodexProviderOptions): CodexProvider => {
  if (typeof options?.pool?.acquire !== "function" || typeof options.pool.release !== "function") {
    throw new PoolOptionsError({
      message: "Invalid createCodexProvider options: pool: Expected a pool from createCodexWorkerPool."
    })
  }
  const interruptTimeoutMs = options.interruptTimeoutMs ?? 5_000
  if (!(interruptTimeoutMs >= 0)) {
    throw new PoolOptionsError({
      message: `Invalid createCodexProvider options: interruptTimeoutMs: Expected a number >= 0, got ${interruptTimeoutMs}.`
    })
  }
  const settings: Settings = {
    pool: options.pool,
    loadedThreads: new WeakMap(),
    threadDefaults: options.threadDefaults ?? {},
    interruptTimeoutMs,
    approvals: options.approvals ?? (() => "decline")
  }
  const languageModel = (modelId: string): LanguageModelV3 => new CodexLanguageModel(modelId, settings)
  return Object.assign((modelId: string) => languageModel(modelId), { languageModel })
}

interface Settings {
  readonly pool: CodexPoolLike
  /** Threads each worker has loaded (by `workerKey`: a handle is per lease): continued without `thread/resume`. */
  readonly loadedThreads: WeakMap<object, Set<string>>
  readonly threadDefaults: Readonly<Record<string, unknown>>
  readonly interruptTimeoutMs: number
  readonly approvals: NonNullable<CodexProviderOptions["approvals"]>
}

const emptyUsage = (): LanguageModelV3Usage => ({
  inputTokens: { total: undefined, noCache: undefined, cacheRead: undefined, cacheWrite: undefined },
  outputTokens: { total: undefined, text: undefined, reasoning: undefined }
})

interface TokenBreakdown {
  readonly inputTokens?: number
  readonly cachedInputTokens?: number
  readonly cacheWriteInputTokens?: number
  readonly outputTokens?: number
  readonly reasoningOutputTokens?: number
}

const toUsage = (last: TokenBreakdown): LanguageModelV3Usage => {
  const input = last.inputTokens
  const cached = last.cachedInputTokens
  const output = last.outputTokens
  const reasoning = last.reasoningOutputTokens
  return {
    inputTokens: {
      total: input,
      noCache: input !== undefined && cached !== undefined ? input - cached : undefined,
      cacheRead: cached,
      cacheWrite: last.cacheWriteInputTokens
    },
    outputTokens: {
      total: output,
      text: output !== undefined && reasoning !== undefined ? output - reasoning : undefined,
      reasoning
    },
    raw: { ...last } as Record<string, number>
  }
}

/** The thread id a previous answer of this model left in the prompt, and where it was. */
const findThread = (prompt: LanguageModelV3Prompt): { readonly threadId: string; readonly index: number } | undefined => {
  for (let i = prompt.length - 1; i >= 0; i--) {
    const message = prompt[i]!
    if (message.role !== "assistant") continue
    const fromMessage = threadIdIn(message.providerOptions)
    if (fromMessage !== undefined) return { threadId: fromMessage, index: i }
    for (const part of message.content) {
      const fromPart = threadIdIn(part.providerOptions)
      if (fromPart !== undefined) return { threadId: fromPart, index: i }
    }
    return undefined
  }
  return undefined
}

const threadIdIn = (options: unknown): string | undefined => {
  const codex = (options as { codex?: { threadId?: unknown } } | undefined)?.codex
  return typeof codex?.threadId === "string" ? codex.threadId : undefined
}

const textOf = (message: LanguageModelV3Prompt[number]): string =>
  typeof message.content === "string"
    ? message.content
    : message.content.map((part) => (part.type === "text" || part.type === "reasoning" ? part.text : "")).join("")

/** The text a turn sends: the new messages, as a transcript when there is more than one. */
const turnText = (messages: LanguageModelV3Prompt): string => {
  const relevant = messages.filter((m) => m.role === "user" || m.role === "assistant")
  if (relevant.length === 1) return textOf(relevant[0]!)
  return relevant.map((m) => `${m.role === "user" ? "User" : "Assistant"}: ${textOf(m)}`).join("\n\n")
}

const warningsFor = (options: LanguageModelV3CallOptions): Array<SharedV3Warning> => {
  const warnings: Array<SharedV3Warning> = []
  const unsupported = [
    "maxOutputTokens",
    "temperature",
    "stopSequences",
    "topP",
    "topK",
    "presencePenalty",
    "frequencyPenalty",
    "seed"
  ] as const
  for (const feature of unsupported) {
    if (options[feature] !== undefined) warnings.push({ type: "unsupported", feature })
  }
  if (options.tools !== undefined && options.tools.length > 0) {
    warnings.push({ type: "unsupported", feature: "tools", details: "Codex runs its own tools; AI SDK tools are not passed." })
  }
  if (options.responseFormat?.type === "json") warnings.push({ type: "unsupported", feature: "responseFormat" })
  if (options.prompt.some((m) => Array.isArray(m.content) && m.content.some((p) => p.type === "file"))) {
    warnings.push({ type: "unsupported", feature: "file parts", details: "Only text is sent to Codex." })
  }
  return warnings
}

class CodexLanguageModel implements LanguageModelV3 {
  readonly specificationVersion = "v3" as const
  readonly provider = "codex"
  readonly modelId: string
  readonly supportedUrls = {}
  readonly #settings: Settings

  constructor(modelId: string, settings: Settings) {
    this.modelId = modelId
    this.#settings = settings
  }

  async doGenerate(options: LanguageModelV3CallOptions) {
    const { stream } = await this.doStream(options)
    const content: Array<LanguageModelV3Content> = []
    let finishReason: LanguageModelV3FinishReason = { unified: "other", raw: undefined }
    let usage = emptyUsage()
    let providerMetadata: SharedV3ProviderMetadata | undefined
    let warnings: Array<SharedV3Warning> = []
    const texts = new Map<string, { text: string }>()
    const reader = stream.getReader()
    for (;;) {
      const { done, value: part } = await reader.read()
      if (done) break
      switch (part.type) {
        case "stream-start":
          warnings = part.warnings
          break
        case "text-start": {
          // Keep the part's metadata: it carries the thread id a later call resumes.
          const text = {
            type: "text" as const,
            text: "",
            ...(part.providerMetadata === undefined ? {} : { providerMetadata: part.providerMetadata })
          }
          texts.set(part.id, text)
          content.push(text)
          break
        }
        case "text-delta":
          texts.get(part.id)!.text += part.delta
          break
        case "error":
          throw part.error
        case "finish":
          finishReason = part.finishReason
          usage = part.usage
          providerMetadata = part.providerMetadata
          break
      }
    }
    return {
      content,
      finishReason,
      usage,
      warnings,
      ...(providerMetadata === undefined ? {} : { providerMetadata })
    }
  }

  async doStream(options: LanguageModelV3CallOptions) {
    const settings = this.#settings
    const signal = options.abortSignal
    const worker = await settings.pool.acquire({ signal })
    const turn = new Turn(worker, settings, this.modelId, options)
    return { stream: turn.stream, request: { body: turn.requestBody } }
  }
}

/**
 * One call: a turn on a leased worker, exposed as a stream of AI SDK parts.
 *
 * Phases: "starting" (thread and turn requests in flight), "running" (the
 * turn is known), "done". An abort while starting is acted on when the
 * request in flight returns, so the worker is never released mid-request.
 */
class Turn {
  readonly stream: ReadableStream<LanguageModelV3StreamPart>
  readonly requestBody: unknown
  #controller!: ReadableStreamDefaultController<LanguageModelV3StreamPart>
  #phase: "starting" | "running" | "done" = "starting"
  #threadId: string | undefined
  #turnId: string | undefined
  /** The consumer no longer reads: the stream was closed, errored or cancelled. */
  #closed = false
  #aborting = false
  #released = false
  #usage = emptyUsage()
  #errorMessage: string | undefined
  #openText = new Set<string>()
  /** Set while waiting for an interrupted turn to end. */
  #interrupted: (() => void) | undefined
  readonly #cleanups: Array<() => void> = []
  readonly #worker: CodexWorkerHandle
  readonly #settings: Settings
  readonly #signal: AbortSignal | undefined

  constructor(worker: CodexWorkerHandle, settings: Settings, modelId: string, options: LanguageModelV3CallOptions) {
    this.#worker = worker
    this.#settings = settings
    this.#signal = options.abortSignal
    const found = findThread(options.prompt)
    const newMessages = found === undefined ? options.prompt : options.prompt.slice(found.index + 1)
    const system = options.prompt.filter((m) => m.role === "system").map(textOf).join("\n\n")
    const text = turnText(newMessages)
    // If the thread cannot be resumed, a new one gets the whole conversation.
    const transcript = found === undefined ? text : turnText(options.prompt)
    this.requestBody = { threadId: found?.threadId, text }
    this.stream = new ReadableStream<LanguageModelV3StreamPart>({
      start: (controller) => {
        this.#controller = controller
        controller.enqueue({ type: "stream-start", warnings: warningsFor(options) })
        void this.#run(modelId, found?.threadId, system, text, transcript)
      },
      cancel: () => this.#abort(new Error("The stream was cancelled by its consumer."))
    })
  }

  get #providerMetadata(): SharedV3ProviderMetadata {
    return { codex: this.#threadId === undefined ? {} : { threadId: this.#threadId } }
  }

  async #run(
    modelId: string,
    resumeId: string | undefined,
    system: string,
    text: string,
    transcript: string
  ): Promise<void> {
    const worker = this.#worker
    this.#cleanups.push(
      worker.onMessage((message) => this.#onMessage(message)),
      worker.onClose((event) => {
        this.#fail(event.error ?? new Error("The codex worker was closed by its pool (shutdown) during the turn."))
      })
    )
    const signal = this.#signal
    if (signal !== undefined) {
      const onAbort = () => this.#abort(signal.reason)
      signal.addEventListener("abort", onAbort, { once: true })
      this.#cleanups.push(() => signal.removeEventListener("abort", onAbort))
      if (signal.aborted) {
        // Aborted just as the worker was handed over: nothing is in flight yet.
        this.#abort(signal.reason)
        return this.#release()
      }
    }
    try {
      const loaded = this.#loadedThreads()
      const threadId = await this.#openThread(modelId, resumeId, system, loaded)
      if (threadId === undefined) text = transcript // the old thread is gone: start over with everything
      this.#threadId = threadId ?? await this.#startThread(modelId, system)
      loaded.add(this.#threadId)
      if (this.#aborting) return this.#release() // no turn was started
      const started = await worker.request("turn/start", {
        threadId: this.#threadId,
        model: modelId,
        input: [{ type: "text", text, text_elements: [] }]
      })
      this.#turnId ??= started.turn.id
      if (this.#phase !== "starting") return // the turn already ended
      this.#phase = "running"
      if (this.#aborting) this.#interrupt()
    } catch (error) {
      this.#fail(error)
    }
  }

  #loadedThreads(): Set<string> {
    const all = this.#settings.loadedThreads
    const key = this.#worker.workerKey
    let loaded = all.get(key)
    if (loaded === undefined) all.set(key, loaded = new Set())
    return loaded
  }

  /**
   * The thread to continue: `resumeId` itself when this worker has it loaded,
   * else what `thread/resume` answers; `undefined` when there is none to
   * continue or it cannot be resumed (an ephemeral thread of another worker).
   */
  async #openThread(
    modelId: string,
    resumeId: string | undefined,
    system: string,
    loaded: Set<string>
  ): Promise<string | undefined> {
    if (resumeId === undefined) return this.#startThread(modelId, system)
    if (loaded.has(resumeId)) return resumeId
    try {
      const resumed = await this.#worker.request("thread/resume", { ...this.#settings.threadDefaults, threadId: resumeId })
      return resumed.thread.id
    } catch (error) {
      if (error instanceof JsonRpcError) return undefined
      throw error
    }
  }

  async #startThread(modelId: string, system: string): Promise<string> {
    const started = await this.#worker.request("thread/start", {
      model: modelId,
      ...(system === "" ? {} : { developerInstructions: system }),
      ...this.#settings.threadDefaults
    })
    return started.thread.id
  }

  #onMessage(incoming: IncomingMessage): void {
    if (this.#phase === "done") return
    if (incoming._tag === "Request") {
      void this.#answer(incoming.id, incoming.method, incoming.params ?? {})
      return
    }
    // Typed by the pinned protocol, not checked: fields are still read defensively.
    const message = incoming as CodexProtocol.ServerNotificationMessage
    // A worker serves one call at a time: everything on our thread is ours.
    const threadId = (message.params as { readonly threadId?: unknown } | null | undefined)?.threadId
    if (this.#threadId !== undefined && threadId !== undefined && threadId !== this.#threadId) return
    switch (message.method) {
      case "turn/started":
        this.#turnId ??= message.params?.turn?.id
        break
      case "item/agentMessage/delta": {
        const id = String(message.params?.itemId)
        if (!this.#openText.has(id)) {
          this.#openText.add(id)
          this.#enqueue({ type: "text-start", id, providerMetadata: this.#providerMetadata })
        }
        const delta = String(message.params?.delta)
        this.#enqueue({ type: "text-delta", id, delta, providerMetadata: this.#providerMetadata })
        break
      }
      case "item/completed": {
        const item = message.params?.item
        if (item?.type === "agentMessage" && this.#openText.delete(String(item.id))) {
          this.#enqueue({ type: "text-end", id: String(item.id), providerMetadata: this.#providerMetadata })
        }
        break
      }
      case "thread/tokenUsage/updated": {
        const last = message.params?.tokenUsage?.last
        if (last !== undefined) this.#usage = toUsage(last)
        break
      }
      case "error":
        this.#errorMessage = message.params?.error?.message ?? "Codex reported an error"
        break
      case "turn/completed":
        this.#completed(message.params?.turn ?? {})
        break
    }
  }

  async #answer(id: string | number, method: string, params: unknown): Promise<void> {
    const worker = this.#worker
    try {
      if (method.endsWith("/requestApproval")) {
        await worker.respond(id, { decision: await this.#settings.approvals({ method, params }) })
      } else if (method === "item/tool/call") {
        await worker.respond(id, {
          contentItems: [{ type: "inputText", text: "This tool is not available through the AI SDK provider." }],
          success: false
        } satisfies CodexProtocol.ServerRequestResult<"item/tool/call">)
      } else {
        await worker.respondError(id, { code: -32601, message: `The client does not handle ${method}.` })
      }
    } catch {
      // The worker closed: onClose ends the stream.
    }
  }

  #completed(turn: { readonly status?: string; readonly error?: { readonly message?: string } | null }): void {
    this.#phase = "done"
    if (this.#interrupted !== undefined) return this.#interrupted()
    for (const id of this.#openText) this.#enqueue({ type: "text-end", id, providerMetadata: this.#providerMetadata })
    this.#openText.clear()
    const status = turn.status ?? "completed"
    if (status === "failed") {
      const message = turn.error?.message ?? this.#errorMessage ?? "The Codex turn failed"
      this.#enqueue({ type: "error", error: new Error(`Codex turn failed: ${message}`) })
    }
    const unified: LanguageModelV3FinishReason["unified"] = status === "completed"
      ? "stop"
      : status === "interrupted"
      ? "other"
      : "error"
    // Usage of a turn that did not complete may repeat the previous turn's: report none.
    this.#finish(unified, status, status === "completed" ? this.#usage : emptyUsage())
    this.#release()
  }

  /** A request failed or the worker died: end the stream with `error` and give the worker back. */
  #fail(error: unknown): void {
    if (this.#phase === "done") return
    this.#phase = "done"
    this.#interrupted?.()
    this.#enqueue({ type: "error", error })
    this.#finish("error", undefined, emptyUsage())
    this.#release() // a crashed worker is not returned to service
  }

  /** Abort or consumer cancel: error the stream, then stop the turn before giving the worker back. */
  #abort(reason: unknown): void {
    if (this.#aborting || this.#phase === "done") return
    this.#aborting = true
    if (!this.#closed) {
      this.#closed = true
      try {
        this.#controller.error(reason)
      } catch {
        // the consumer cancelled: the stream is already closed
      }
    }
    // While starting, #run acts on the abort when its request returns.
    if (this.#phase === "running") this.#interrupt()
  }

  /** Sends `turn/interrupt` and releases once the turn has ended, or invalidates after `interruptTimeoutMs`. */
  #interrupt(): void {
    const confirmed = new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), this.#settings.interruptTimeoutMs)
      this.#interrupted = () => {
        clearTimeout(timer)
        resolve(true)
      }
    })
    // Running: #run has set both ids.
    this.#worker.request("turn/interrupt", { threadId: this.#threadId!, turnId: this.#turnId! }).catch(() => {
      // No active turn (it just ended) or the worker died: either way it is over.
      this.#interrupted?.()
    })
    void confirmed.then((ok) => {
      this.#interrupted = undefined
      this.#phase = "done"
      if (ok) this.#release()
      else this.#invalidate()
    })
  }

  #finish(unified: LanguageModelV3FinishReason["unified"], raw: string | undefined, usage: LanguageModelV3Usage): void {
    this.#enqueue({ type: "finish", finishReason: { unified, raw }, usage, providerMetadata: this.#providerMetadata })
    if (!this.#closed) {
      this.#closed = true
      this.#controller.close()
    }
  }

  #enqueue(part: LanguageModelV3StreamPart): void {
    if (!this.#closed) this.#controller.enqueue(part)
  }

  #release(): void {
    if (this.#released) return
    this.#released = true
    for (const cleanup of this.#cleanups) cleanup()
    this.#settings.pool.release(this.#worker)
  }

  #invalidate(): void {
    if (this.#released) return
    this.#released = true
    for (const cleanup of this.#cleanups) cleanup()
    void this.#settings.pool.invalidate(this.#worker)
  }
}

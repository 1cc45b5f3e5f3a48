/**
 * One AI SDK call as one Codex turn on a leased worker, exposed as a stream
 * of `LanguageModelV3StreamPart`s.
 *
 * Guarantees:
 * - the worker is released exactly once on every path: finish, failed turn,
 *   failed request, consumer cancel, abort mid-stream (after `turn/interrupt`
 *   and a bounded wait for the interrupted `turn/completed`), and crash; a
 *   worker whose interrupt is not confirmed within `interruptTimeoutMs` is
 *   invalidated instead of reused;
 * - a worker that dies (or is closed by its pool) mid-turn ends the stream at
 *   once with its error;
 * - only notifications of this call's thread and turn count: a late
 *   `turn/completed` of an earlier turn cannot end this call (notifications
 *   that arrive before the turn id is known wait for it);
 * - every server request is answered (see `approvals.ts`), and whatever is
 *   still pending is answered with its default before the worker is given
 *   back or the turn is interrupted;
 * - the call's temporary files are removed when the worker is given back, on
 *   every path;
 * - an action still open when the turn ends gets an error result.
 *
 * Phases: "starting" (thread and turn requests in flight), "running" (the
 * turn is known), "done". An abort while starting is acted on when the
 * request in flight returns, so the worker is never released mid-request.
 *
 * @since 0.1.0
 */
import type {
  LanguageModelV3FinishReason,
  LanguageModelV3StreamPart,
  LanguageModelV3Usage,
  SharedV3ProviderMetadata,
  SharedV3Warning
} from "@ai-sdk/provider"
import type { CodexWorkerHandle } from "../CodexPromisePool.ts"
import type * as CodexProtocol from "../CodexProtocol.ts"
import type { IncomingMessage } from "../CodexWorker.ts"
import { JsonRpcError } from "../errors.ts"
import { type ServerRequestHandlers, ServerRequests } from "./approvals.ts"
import { type ImageInputMode, materialize, type PromptPlan } from "./promptInput.ts"
import { type CodexAcquireOptions, type CodexCallOptions, turnParams } from "./settings.ts"
import { StreamPartMapper } from "./streamParts.ts"
import { TempFiles } from "./tempFiles.ts"
import type { ToolCallHandler } from "./toolParking.ts"
import { emptyUsage, TurnUsage } from "./usage.ts"

/**
 * What the model needs of a pool: `createCodexWorkerPool`'s facade.
 *
 * @since 0.1.0
 * @category models
 */
export interface CodexPoolLike {
  acquire(options?: CodexAcquireOptions): Promise<CodexWorkerHandle>
  release(worker: CodexWorkerHandle): void
  invalidate(worker: CodexWorkerHandle): Promise<void>
}

/**
 * Params sent with every `thread/start` (and `thread/resume`): cwd,
 * approvalPolicy, sandbox, ephemeral, dynamicTools, ...
 *
 * @since 0.1.0
 * @category models
 */
export type ThreadDefaults = Readonly<Omit<Partial<CodexProtocol.v2.ThreadStartParams>, "model">>

/** The provider's settings, shared by its calls. */
export interface ProviderSettings {
  readonly pool: CodexPoolLike
  /** Threads each worker has loaded (by `workerKey`: a handle is per lease): continued without `thread/resume`. */
  readonly loadedThreads: WeakMap<object, Set<string>>
  readonly threadDefaults: ThreadDefaults
  readonly interruptTimeoutMs: number
  readonly serverRequestTimeoutMs: number
  readonly handlers: ServerRequestHandlers
  readonly toolCalls: ToolCallHandler | undefined
  readonly imageInput: ImageInputMode
}

/** What one call asks for, validated before the worker was leased. */
export interface TurnRequest {
  readonly modelId: string
  readonly settings: CodexCallOptions
  readonly plan: PromptPlan
  /** The thread to continue (explicit `threadId`, or the prompt's). */
  readonly resumeId: string | undefined
  /** `threadId` was given: a thread that cannot be resumed fails the call instead of starting over. */
  readonly explicitThread: boolean
  readonly outputSchema: NonNullable<CodexProtocol.v2.TurnStartParams["outputSchema"]> | undefined
  readonly warnings: ReadonlyArray<SharedV3Warning>
  readonly includeRawChunks: boolean
  readonly streamToolOutput: boolean
  readonly signal: AbortSignal | undefined
}

/** The thread id and turn id of a notification's params, when it has them. */
const idsOf = (params: unknown): { readonly threadId?: unknown; readonly turnId?: unknown } => {
  if (typeof params !== "object" || params === null) return {}
  const p = params as { threadId?: unknown; turnId?: unknown; turn?: { id?: unknown } | null; conversationId?: unknown }
  return { threadId: p.threadId ?? p.conversationId, turnId: p.turnId ?? p.turn?.id }
}

/**
 * One call: a turn on a leased worker, exposed as a stream of AI SDK parts.
 *
 * @since 0.1.0
 * @category models
 */
export class Turn {
  readonly stream: ReadableStream<LanguageModelV3StreamPart>
  #controller!: ReadableStreamDefaultController<LanguageModelV3StreamPart>
  #phase: "starting" | "running" | "done" = "starting"
  #threadId: string | undefined
  #turnId: string | undefined
  /** The consumer no longer reads: the stream was closed, errored or cancelled. */
  #closed = false
  #aborting = false
  #released = false
  #metadataSent = false
  readonly #usage = new TurnUsage()
  #errorMessage: string | undefined
  /** Notifications of our thread that came before the turn id was known. */
  readonly #early: Array<CodexProtocol.ServerNotificationMessage> = []
  /** Set while waiting for an interrupted turn to end. */
  #interrupted: (() => void) | undefined
  readonly #cleanups: Array<() => void> = []
  readonly #files = new TempFiles()
  readonly #mapper: StreamPartMapper
  readonly #requests: ServerRequests
  readonly #worker: CodexWorkerHandle
  readonly #settings: ProviderSettings
  readonly #request: TurnRequest

  constructor(worker: CodexWorkerHandle, settings: ProviderSettings, request: TurnRequest) {
    this.#worker = worker
    this.#settings = settings
    this.#request = request
    this.#mapper = new StreamPartMapper({
      metadata: (itemId) => this.#metadata(itemId),
      streamToolOutput: request.streamToolOutput
    })
    this.#requests = new ServerRequests({
      responder: worker,
      handlers: settings.handlers,
      toolCalls: settings.toolCalls,
      timeoutMs: settings.serverRequestTimeoutMs,
      onError: (error) => this.#enqueue({ type: "error", error })
    })
    this.stream = new ReadableStream<LanguageModelV3StreamPart>({
      start: (controller) => {
        this.#controller = controller
        controller.enqueue({ type: "stream-start", warnings: [...request.warnings] })
        void this.#run()
      },
      cancel: () => this.#abort(new Error("The stream was cancelled by its consumer."))
    })
  }

  /** The directory of this call's temporary files, once made (for tests). */
  get tempDirectory(): string | undefined {
    return this.#files.directory
  }

  #metadata(itemId?: string): SharedV3ProviderMetadata {
    const codex: Record<string, string> = {}
    if (this.#threadId !== undefined) codex["threadId"] = this.#threadId
    if (itemId !== undefined) codex["itemId"] = itemId
    return { codex }
  }

  async #run(): Promise<void> {
    const worker = this.#worker
    const request = this.#request
    this.#cleanups.push(
      worker.onMessage((message) => this.#onMessage(message)),
      worker.onClose((event) => {
        this.#fail(event.error ?? new Error("The codex worker was closed by its pool (shutdown) during the turn."))
      })
    )
    const signal = request.signal
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
      const continued = await this.#openThread(loaded)
      this.#threadId = continued ?? await this.#startThread()
      loaded.add(this.#threadId)
      if (this.#aborting) return this.#release() // no turn was started
      // A thread that could not be continued gets the whole conversation.
      const segments = continued === undefined ? request.plan.transcriptInput : request.plan.newInput
      const input = await materialize(segments, this.#files, this.#settings.imageInput)
      if (this.#aborting || this.#phase !== "starting") return this.#release()
      const started = await worker.request("turn/start", {
        threadId: this.#threadId,
        input,
        ...turnParams(request.settings, request.modelId, request.outputSchema)
      })
      this.#knowTurn(started.turn.id)
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
   * The thread to continue: the one asked for when this worker has it
   * loaded, else what `thread/resume` answers; `undefined` when there is
   * none to continue, or it cannot be resumed (an ephemeral thread of
   * another worker) and was not asked for explicitly.
   */
  async #openThread(loaded: Set<string>): Promise<string | undefined> {
    const resumeId = this.#request.resumeId
    if (resumeId === undefined) return undefined
    if (loaded.has(resumeId)) return resumeId
    try {
      const resumed = await this.#worker.request("thread/resume", {
        ...(this.#settings.threadDefaults as Record<string, unknown>),
        threadId: resumeId
      })
      return resumed.thread.id
    } catch (error) {
      if (error instanceof JsonRpcError && !this.#request.explicitThread) return undefined
      throw error
    }
  }

  async #startThread(): Promise<string> {
    const system = this.#request.plan.system
    const started = await this.#worker.request("thread/start", {
      model: this.#request.settings.model ?? this.#request.modelId,
      ...(system === "" ? {} : { developerInstructions: system }),
      ...this.#settings.threadDefaults
    })
    return started.thread.id
  }

  /** Records the turn id (from `turn/started` or the `turn/start` answer) and replays what waited for it. */
  #knowTurn(turnId: string): void {
    if (this.#turnId !== undefined) return
    this.#turnId = turnId
    this.#enqueue({ type: "response-metadata", id: turnId, modelId: this.#request.settings.model ?? this.#request.modelId })
    for (const message of this.#early.splice(0)) this.#onNotification(message)
  }

  #onMessage(incoming: IncomingMessage): void {
    // Typed by the pinned protocol, not checked: fields are still read defensively.
    const message = incoming as CodexProtocol.ServerMessage
    const { threadId } = idsOf(message.params)
    const ours = threadId === undefined || (this.#threadId !== undefined && threadId === this.#threadId)
    if (message._tag === "Request") {
      if (ours && this.#request.includeRawChunks) this.#enqueue({ type: "raw", rawValue: message.raw })
      // A worker serves one call at a time: every request is answered, our own through the callbacks.
      this.#requests.handle(message, ours && this.#phase !== "done")
      return
    }
    if (this.#phase === "done") return
    if (this.#threadId === undefined || threadId !== this.#threadId) return
    if (this.#request.includeRawChunks) this.#enqueue({ type: "raw", rawValue: message.raw })
    this.#onNotification(message)
  }

  #onNotification(message: CodexProtocol.ServerNotificationMessage): void {
    if (this.#phase === "done") return
    if (message.method === "serverRequest/resolved") return this.#requests.resolved(message.params.requestId)
    if (message.method === "turn/started" && this.#turnId === undefined) this.#knowTurn(message.params.turn.id)
    const { turnId } = idsOf(message.params)
    if (turnId !== undefined) {
      if (this.#turnId === undefined) return void this.#early.push(message)
      if (turnId !== this.#turnId) return // an earlier turn's late notification
    }
    switch (message.method) {
      case "turn/started":
        return
      case "thread/tokenUsage/updated":
        return this.#usage.add(message.params.tokenUsage?.last)
      case "error":
        this.#errorMessage = message.params.error?.message ?? "Codex reported an error"
        return
      case "turn/completed":
        return this.#completed(message.params.turn)
      default:
        for (const part of this.#mapper.map(message)) this.#enqueue(part)
    }
  }

  #completed(turn: { readonly status?: string; readonly error?: { readonly message?: string } | null }): void {
    this.#phase = "done"
    if (this.#interrupted !== undefined) return this.#interrupted()
    const status = turn.status ?? "completed"
    for (const part of this.#mapper.finish(status)) this.#enqueue(part)
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
    this.#finish(unified, status, status === "completed" ? this.#usage.toUsage() : emptyUsage())
    this.#release()
  }

  /** A request failed or the worker died: end the stream with `error` and give the worker back. */
  #fail(error: unknown): void {
    if (this.#phase === "done") return
    this.#phase = "done"
    this.#interrupted?.()
    for (const part of this.#mapper.finish("failed")) this.#enqueue(part)
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
    // Nothing may keep the turn waiting while it is being stopped.
    this.#requests.settleAll()
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
    const codex: Record<string, string> = {}
    if (this.#threadId !== undefined) codex["threadId"] = this.#threadId
    if (this.#turnId !== undefined) codex["turnId"] = this.#turnId
    this.#enqueue({ type: "finish", finishReason: { unified, raw }, usage, providerMetadata: { codex } })
    if (!this.#closed) {
      this.#closed = true
      this.#controller.close()
    }
  }

  #enqueue(part: LanguageModelV3StreamPart): void {
    if (part.type === "response-metadata") {
      if (this.#metadataSent) return
      this.#metadataSent = true
    }
    if (!this.#closed) this.#controller.enqueue(part)
  }

  /** Everything a lease holds besides the worker: listeners, pending requests, temporary files. */
  #letGo(): boolean {
    if (this.#released) return false
    this.#released = true
    this.#requests.settleAll()
    for (const cleanup of this.#cleanups) cleanup()
    this.#files.dispose()
    return true
  }

  #release(): void {
    if (!this.#letGo()) return
    try {
      this.#settings.pool.release(this.#worker)
    } catch {
      // The lease had already ended (lease timeout, shutdown): the pool owns the worker again.
    }
  }

  #invalidate(): void {
    if (!this.#letGo()) return
    this.#settings.pool.invalidate(this.#worker).catch(() => {
      // The lease had already ended: nothing left to invalidate.
    })
  }
}

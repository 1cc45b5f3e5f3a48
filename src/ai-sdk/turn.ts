/**
 * One Codex turn on a leased worker, exposed to the AI SDK as one stream of
 * `LanguageModelV3StreamPart`s per step.
 *
 * A turn without AI SDK tools is one step: one call, one stream, one lease.
 * A turn in which Codex calls an AI SDK tool (see `toolParking.ts`) ends its
 * step with finish reason `tool-calls` and parks: the lease and the pending
 * `item/tool/call` requests stay, until the next call of the conversation
 * brings the results (`resume`: a new stream, the same turn, the same
 * lease), `toolResultTimeoutMs` passes, or the call is aborted.
 *
 * Guarantees:
 * - the worker is released exactly once on every path: finish, failed turn,
 *   failed request, consumer cancel, abort mid-stream or while parked (after
 *   `turn/interrupt` and a bounded wait for the interrupted `turn/completed`),
 *   a parked turn's timeout (the same), and crash; a worker whose interrupt
 *   is not confirmed within `interruptTimeoutMs` is invalidated instead of
 *   reused;
 * - park and resume are one lease: no acquire between the steps, so a call
 *   waiting in the pool's queue does not get the worker in between; the pool
 *   counts the lease as parked (`markParked`) while it waits;
 * - a step ends on tool calls once Codex's model response is complete and
 *   every call of an AI SDK tool in it has reached the client, so the calls
 *   of one response are one step (Codex sends a thread started with AI SDK
 *   tools its raw response events for this); a call that arrives after its
 *   step ended opens the next step;
 * - a worker that dies (or is closed by its pool) mid-turn ends the stream at
 *   once with its error; one that dies while parked is released at once;
 * - only notifications of this turn's thread and turn count: a late
 *   `turn/completed` of an earlier (interrupted, timed-out) turn cannot end
 *   this one (notifications that arrive before the turn id is known wait
 *   for it);
 * - every server request is answered (see `approvals.ts`); a parked call
 *   that gets no result (timeout, abort, a next step without it) is answered
 *   with `success: false` and a text saying why, and whatever is still
 *   pending is answered with its default before the worker is given back or
 *   the turn is interrupted;
 * - the turn's temporary files are removed when the worker is given back, on
 *   every path;
 * - an action still open when the turn ends gets an error result.
 *
 * Phases: "starting" (thread and turn requests in flight), "running" (the
 * turn is known), "parked" (between steps), "done". An abort while starting
 * is acted on when the request in flight returns, so the worker is never
 * released mid-request. A step may end (and park) while the `turn/start`
 * answer is still on its way, once `turn/started` named the turn.
 *
 * Limits: AI SDK tools are offered on `thread/start` only (Codex takes them
 * nowhere else): a continued thread keeps the tools it was started with, and
 * a call's tools it lacks are reported as an `unsupported` warning. A thread
 * resumed on another worker (`thread/resume`) keeps its tools but not the
 * raw response events, so there each call of an AI SDK tool is a step of
 * its own. When a model response is complete but a call it announced has not
 * arrived within `ANNOUNCED_CALL_GRACE_MS` (1 s), the step ends without it.
 *
 * @since 0.1.0
 */
import type {
  LanguageModelV3FinishReason,
  LanguageModelV3FunctionTool,
  LanguageModelV3StreamPart,
  LanguageModelV3ToolResultPart,
  LanguageModelV3Usage,
  SharedV3ProviderMetadata,
  SharedV3Warning
} from "@ai-sdk/provider"
import type { CodexWorkerHandle } from "../CodexPromisePool.ts"
import type * as CodexProtocol from "../CodexProtocol.ts"
import type { IncomingMessage } from "../CodexWorker.ts"
import { JsonRpcError } from "../errors.ts"
import type { JsonRpcId } from "../internal/jsonRpc.ts"
import { type ServerRequestHandlers, ServerRequests } from "./approvals.ts"
import { type ImageInputMode, materialize, type PromptPlan } from "./promptInput.ts"
import { type CodexAcquireOptions, type CodexCallOptions, turnParams } from "./settings.ts"
import { StreamPartMapper } from "./streamParts.ts"
import { TempFiles } from "./tempFiles.ts"
import {
  dynamicToolSpecs,
  failedToolCall,
  isJsonText,
  type Parked,
  type ToolCallHandler,
  type ToolParking,
  toolResultAnswer
} from "./toolParking.ts"
import { emptyUsage, TurnUsage } from "./usage.ts"

type Part = LanguageModelV3StreamPart

/**
 * How long a step that Codex's complete model response would end waits for
 * a call of an AI SDK tool the response announced but that has not reached
 * the client yet (it normally follows within milliseconds): the provider's
 * `announcedCallGraceMs`.
 */
export const ANNOUNCED_CALL_GRACE_MS = 1_000

/**
 * What the model needs of a pool: `createCodexWorkerPool`'s facade.
 * `markParked` (optional) lets the pool count the leases that wait between
 * two steps (`stats().parked`); `setAffinity` (optional) tells it which
 * thread the lease serves, so that the conversation's next call (`prefer`)
 * gets this worker when it is idle.
 *
 * @since 0.1.0
 * @category models
 */
export interface CodexPoolLike {
  acquire(options?: CodexAcquireOptions): Promise<CodexWorkerHandle>
  release(worker: CodexWorkerHandle): void
  invalidate(worker: CodexWorkerHandle): Promise<void>
  markParked?(worker: CodexWorkerHandle, parked: boolean): void
  setAffinity?(worker: CodexWorkerHandle, key: string): void
}

/**
 * Params sent with every `thread/start` (and `thread/resume`): cwd,
 * approvalPolicy, sandbox, ephemeral, dynamicTools, ...
 *
 * @since 0.1.0
 * @category models
 */
export type ThreadDefaults = Readonly<Omit<Partial<CodexProtocol.v2.ThreadStartParams>, "model">>

/** What this provider knows of a thread a worker has loaded. */
export interface ThreadTools {
  /** The AI SDK tools the thread was started with (their names). */
  readonly clientTools: ReadonlySet<string>
  /** Whether the thread sends raw response events (`experimentalRawEvents`). */
  readonly rawEvents: boolean
}

/** The provider's settings, shared by its calls. */
export interface ProviderSettings {
  readonly pool: CodexPoolLike
  /**
   * Threads each worker has loaded (by `workerKey`: a handle is per lease),
   * continued without `thread/resume`, with their tools.
   */
  readonly loadedThreads: WeakMap<object, Map<string, ThreadTools>>
  readonly threadDefaults: ThreadDefaults
  readonly interruptTimeoutMs: number
  readonly serverRequestTimeoutMs: number
  /** How long a parked turn waits for its tool results. */
  readonly toolResultTimeoutMs: number
  /** How long a step waits for an announced call that has not arrived (`ANNOUNCED_CALL_GRACE_MS`). */
  readonly announcedCallGraceMs: number
  /** The parked turns of this provider. */
  readonly parking: ToolParking<Turn>
  readonly handlers: ServerRequestHandlers
  readonly toolCalls: ToolCallHandler | undefined
  readonly imageInput: ImageInputMode
}

/** What one step of a call asks for: its stream's settings. */
export interface StepRequest {
  readonly warnings: ReadonlyArray<SharedV3Warning>
  readonly includeRawChunks: boolean
  readonly streamToolOutput: boolean
  readonly signal: AbortSignal | undefined
}

/** What one call asks for, validated before the worker was leased. */
export interface TurnRequest extends StepRequest {
  readonly modelId: string
  readonly settings: CodexCallOptions
  readonly plan: PromptPlan
  /** The thread to continue (explicit `threadId`, or the prompt's). */
  readonly resumeId: string | undefined
  /** `threadId` was given: a thread that cannot be resumed fails the call instead of starting over. */
  readonly explicitThread: boolean
  readonly outputSchema: NonNullable<CodexProtocol.v2.TurnStartParams["outputSchema"]> | undefined
  /** The AI SDK function tools of the call, offered to a new thread. */
  readonly tools: ReadonlyArray<LanguageModelV3FunctionTool>
}

/** The thread id and turn id of a notification's params, when it has them. */
const idsOf = (params: unknown): { readonly threadId?: unknown; readonly turnId?: unknown } => {
  if (typeof params !== "object" || params === null) return {}
  const p = params as { threadId?: unknown; turnId?: unknown; turn?: { id?: unknown } | null; conversationId?: unknown }
  return { threadId: p.threadId ?? p.conversationId, turnId: p.turnId ?? p.turn?.id }
}

/** A pending `item/tool/call` of an AI SDK tool. */
interface ClientCall {
  readonly requestId: JsonRpcId
  /** Its `tool-call` part reached a step's stream (else it waits in the parked buffer). */
  emitted: boolean
}

const noTools: ThreadTools = { clientTools: new Set(), rawEvents: false }

/**
 * One turn: a call on a leased worker, and the calls that continue it after
 * tool results, exposed as one stream of AI SDK parts per step.
 *
 * @since 0.1.0
 * @category models
 */
export class Turn implements Parked {
  /** The first step's stream. */
  readonly stream: ReadableStream<Part>
  #controller!: ReadableStreamDefaultController<Part>
  #step: StepRequest
  /** Warnings of the step, sent with its `stream-start` (before its first other part). */
  #stepWarnings: Array<SharedV3Warning> = []
  #stepStarted = false
  #phase: "starting" | "running" | "parked" | "done" = "starting"
  #threadId: string | undefined
  #turnId: string | undefined
  /** The consumer of the current step no longer reads: the stream was closed, errored or cancelled. */
  #closed = false
  /** The turn is being stopped (abort, cancel, timeout). */
  #aborting = false
  #released = false
  #metadataSent = false
  readonly #usage = new TurnUsage()
  #errorMessage: string | undefined
  /** Notifications of our thread that came before the turn id was known. */
  readonly #early: Array<CodexProtocol.ServerNotificationMessage> = []
  /** Set while waiting for an interrupted turn to end. */
  #interrupted: (() => void) | undefined
  /** Listeners of the lease (worker messages and close). */
  readonly #cleanups: Array<() => void> = []
  /** Removes the current step's abort listener. */
  #unwatch: (() => void) | undefined
  readonly #files = new TempFiles()
  readonly #mapper: StreamPartMapper
  readonly #requests: ServerRequests
  readonly #worker: CodexWorkerHandle
  readonly #settings: ProviderSettings
  readonly #request: TurnRequest
  // AI SDK tools
  #clientTools: ReadonlySet<string> = noTools.clientTools
  #rawEvents = false
  /** Pending calls of AI SDK tools, by call id. */
  readonly #calls = new Map<string, ClientCall>()
  /** Every call id of an AI SDK tool that reached the client. */
  readonly #seenCalls = new Set<string>()
  /** Calls the current model response announced that have not reached the client yet. */
  readonly #expected = new Set<string>()
  /** The current model response is complete (`rawResponse/completed`). */
  #responseDone = false
  #grace: ReturnType<typeof setTimeout> | undefined
  #parkTimer: ReturnType<typeof setTimeout> | undefined
  #markedParked = false
  /** Parts produced while parked, for the next step. */
  #buffer: Array<Part> | undefined

  constructor(worker: CodexWorkerHandle, settings: ProviderSettings, request: TurnRequest) {
    this.#worker = worker
    this.#settings = settings
    this.#request = request
    this.#step = request
    this.#mapper = new StreamPartMapper({
      metadata: (itemId) => this.#metadata(itemId),
      streamToolOutput: () => this.#step.streamToolOutput,
      isClientTool: (namespace, tool) => this.#isClientTool(namespace, tool)
    })
    this.#requests = new ServerRequests({
      responder: worker,
      handlers: settings.handlers,
      toolCalls: settings.toolCalls,
      timeoutMs: settings.serverRequestTimeoutMs,
      onError: (error) => this.#enqueue({ type: "error", error })
    })
    this.stream = this.#open(request, () => void this.#run())
  }

  /** The directory of this call's temporary files, once made (for tests). */
  get tempDirectory(): string | undefined {
    return this.#files.directory
  }

  /** The turn's thread (known once it runs; a parked turn has it). */
  get threadId(): string {
    return this.#threadId ?? ""
  }

  /** The calls whose results the turn waits for: those its last step showed. */
  get parkedCallIds(): ReadonlySet<string> {
    const ids = new Set<string>()
    for (const [id, call] of this.#calls) if (call.emitted) ids.add(id)
    return ids
  }

  /**
   * Continues a parked turn in a new step: answers its pending calls with
   * `results` (a call without one gets a failed answer), and streams the
   * rest of the turn. The caller took the turn from the registry.
   */
  resume(step: StepRequest, results: ReadonlyArray<LanguageModelV3ToolResultPart>): ReadableStream<Part> {
    this.#unpark()
    const answers = new Map<string, CodexProtocol.ServerRequestResult<"item/tool/call">>()
    const warnings = [...step.warnings]
    for (const result of results) {
      const answer = toolResultAnswer(result.output)
      answers.set(result.toolCallId, answer.result)
      warnings.push(...answer.warnings)
    }
    return this.#open({ ...step, warnings }, () => {
      const buffered = this.#buffer ?? []
      this.#buffer = undefined
      if (this.#phase !== "parked") {
        // It ended while being taken (a crash): nothing to continue.
        this.#enqueue({ type: "error", error: new Error("The parked Codex turn ended before its tool results arrived.") })
        this.#finish("error", undefined, emptyUsage())
        return
      }
      this.#phase = "running"
      if (!this.#watch(step.signal)) return
      this.#sendMetadata()
      for (const [callId, call] of [...this.#calls]) {
        if (!call.emitted) continue
        this.#requests.answer(
          call.requestId,
          answers.get(callId) ?? failedToolCall("No result for this tool call was given in the next step.")
        )
      }
      for (const part of buffered) this.#enqueue(part)
      this.#checkStep()
    })
  }

  /** Stops a parked turn whose conversation went on without its results: interrupt, then release. */
  cancel(reason: string): void {
    if (this.#phase === "parked") this.#stopParked(reason)
  }

  #metadata(itemId?: string): SharedV3ProviderMetadata {
    const codex: Record<string, string> = {}
    if (this.#threadId !== undefined) codex["threadId"] = this.#threadId
    if (itemId !== undefined) codex["itemId"] = itemId
    return { codex }
  }

  /** Opens a step's stream; `started` runs once its controller is set (at once). */
  #open(step: StepRequest, started: () => void): ReadableStream<Part> {
    return new ReadableStream<Part>({
      start: (controller) => {
        this.#controller = controller
        this.#step = step
        this.#stepWarnings = [...step.warnings]
        this.#stepStarted = false
        this.#closed = false
        this.#metadataSent = false
        started()
      },
      cancel: () => this.#abort(new Error("The stream was cancelled by its consumer."))
    })
  }

  /** Listens to the step's abort signal (instead of the previous step's); false when it has aborted already. */
  #watch(signal: AbortSignal | undefined): boolean {
    this.#unwatch?.()
    this.#unwatch = undefined
    if (signal === undefined) return true
    if (signal.aborted) {
      this.#abort(signal.reason)
      return false
    }
    const onAbort = () => this.#abort(signal.reason)
    signal.addEventListener("abort", onAbort, { once: true })
    this.#unwatch = () => signal.removeEventListener("abort", onAbort)
    return true
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
    // Aborted just as the worker was handed over: nothing is in flight yet.
    if (!this.#watch(request.signal)) return this.#release()
    try {
      const loaded = this.#loadedThreads()
      const names = new Set(request.tools.map((tool) => tool.name))
      const continued = await this.#openThread(loaded)
      let tools: ThreadTools
      if (continued === undefined) {
        this.#threadId = await this.#startThread()
        tools = { clientTools: names, rawEvents: names.size > 0 }
      } else {
        this.#threadId = continued
        // A thread resumed from elsewhere keeps its tools (assumed the call's), not its raw events.
        tools = loaded.get(continued) ?? { clientTools: names, rawEvents: false }
      }
      loaded.set(this.#threadId, tools)
      try {
        this.#settings.pool.setAffinity?.(this.#worker, this.#threadId)
      } catch {
        // An affinity hint is never worth failing a turn for.
      }
      this.#useTools(tools, names)
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
      if (this.#phase !== "starting") return // the turn already ended, or its first step did (parked)
      this.#phase = "running"
      if (this.#aborting) this.#interrupt()
      else this.#checkStep() // calls that came before the turn id was known
    } catch (error) {
      this.#fail(error)
    }
  }

  #loadedThreads(): Map<string, ThreadTools> {
    const all = this.#settings.loadedThreads
    const key = this.#worker.workerKey
    let loaded = all.get(key)
    if (loaded === undefined) all.set(key, loaded = new Map())
    return loaded
  }

  /** The call's tools that the thread has are the client's; the others are reported. */
  #useTools(tools: ThreadTools, names: ReadonlySet<string>): void {
    const client = new Set<string>()
    const missing: Array<string> = []
    for (const name of names) {
      if (tools.clientTools.has(name)) client.add(name)
      else missing.push(name)
    }
    this.#clientTools = client
    this.#rawEvents = tools.rawEvents
    if (missing.length > 0) {
      this.#stepWarnings.push({
        type: "unsupported",
        feature: "tools",
        details: `The continued Codex thread was started without the tools ${missing.join(", ")}: Codex takes ` +
          "tools only when a thread starts, so they are not offered. Start a new conversation to offer them."
      })
    }
  }

  #isClientTool(namespace: string | null | undefined, tool: string): boolean {
    return (namespace === null || namespace === undefined || namespace === "") && this.#clientTools.has(tool)
  }

  /**
   * The thread to continue: the one asked for when this worker has it
   * loaded, else what `thread/resume` answers; `undefined` when there is
   * none to continue, or it cannot be resumed (an ephemeral thread of
   * another worker) and was not asked for explicitly.
   */
  async #openThread(loaded: ReadonlyMap<string, ThreadTools>): Promise<string | undefined> {
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
    const request = this.#request
    const system = request.plan.system
    const defaults = this.#settings.threadDefaults
    let tools: Pick<CodexProtocol.v2.ThreadStartParams, "dynamicTools" | "experimentalRawEvents"> = {}
    if (request.tools.length > 0) {
      // The call's tools win over `threadDefaults.dynamicTools` of the same name.
      const names = new Set(request.tools.map((tool) => tool.name))
      tools = {
        dynamicTools: [
          ...(defaults.dynamicTools ?? []).filter((tool) => !names.has(tool.name)),
          ...dynamicToolSpecs(request.tools)
        ],
        experimentalRawEvents: true
      }
    }
    const started = await this.#worker.request("thread/start", {
      model: request.settings.model ?? request.modelId,
      ...(system === "" ? {} : { developerInstructions: system }),
      ...defaults,
      ...tools
    })
    return started.thread.id
  }

  /** Records the turn id (from `turn/started` or the `turn/start` answer) and replays what waited for it. */
  #knowTurn(turnId: string): void {
    if (this.#turnId !== undefined) return
    this.#turnId = turnId
    this.#sendMetadata()
    for (const message of this.#early.splice(0)) this.#onNotification(message)
  }

  #sendMetadata(): void {
    if (this.#turnId === undefined) return
    this.#enqueue({
      type: "response-metadata",
      id: this.#turnId,
      modelId: this.#request.settings.model ?? this.#request.modelId
    })
  }

  #onMessage(incoming: IncomingMessage): void {
    // Typed by the pinned protocol, not checked: fields are still read defensively.
    const message = incoming as CodexProtocol.ServerMessage
    const { threadId, turnId } = idsOf(message.params)
    const ours = threadId === undefined || (this.#threadId !== undefined && threadId === this.#threadId)
    if (message._tag === "Request") {
      if (ours && this.#step.includeRawChunks) this.#enqueue({ type: "raw", rawValue: message.raw })
      if (ours && message.method === "item/tool/call" && this.#takesCall(message.params, turnId)) {
        return this.#clientCall(message)
      }
      // A worker serves one call at a time: every request is answered, our own through the callbacks.
      this.#requests.handle(message, ours && this.#phase !== "done")
      return
    }
    if (this.#phase === "done") return
    if (this.#threadId === undefined || threadId !== this.#threadId) return
    if (this.#step.includeRawChunks) this.#enqueue({ type: "raw", rawValue: message.raw })
    this.#onNotification(message)
  }

  /** Whether an `item/tool/call` is a call of one of the call's AI SDK tools, in this turn, for the client. */
  #takesCall(params: CodexProtocol.ServerRequestParams<"item/tool/call">, turnId: unknown): boolean {
    if (this.#aborting || this.#phase === "done") return false
    if (this.#turnId !== undefined && turnId !== this.#turnId) return false
    return this.#isClientTool(params.namespace, params.tool)
  }

  /** A call of an AI SDK tool: held (no timeout) until a step brings its result, shown as a `tool-call`. */
  #clientCall(message: CodexProtocol.ServerRequestMessage<"item/tool/call">): void {
    const params = message.params
    const callId = params.callId
    if (this.#seenCalls.has(callId)) return this.#requests.handle(message, false) // a repeated call id
    const signal = this.#requests.hold(message)
    const call: ClientCall = { requestId: message.id, emitted: false }
    this.#calls.set(callId, call)
    this.#seenCalls.add(callId)
    this.#expected.delete(callId)
    // Answered (by a step, a timeout, the turn's end) or withdrawn: no longer pending.
    signal.addEventListener("abort", () => {
      if (this.#calls.get(callId) === call) this.#calls.delete(callId)
    }, { once: true })
    this.#enqueue(this.#mapper.clientCall(params))
    this.#checkStep()
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
      case "rawResponseItem/completed":
        return this.#announced(message.params.item)
      case "rawResponse/completed":
        this.#responseDone = true
        return this.#checkStep()
      default:
        for (const part of this.#mapper.map(message)) this.#enqueue(part)
    }
  }

  /** An output item of the model's response: a call of an AI SDK tool is on its way to the client. */
  #announced(item: CodexProtocol.ResponseItem): void {
    if (item.type !== "function_call") return
    if (!this.#isClientTool(item.namespace, item.name)) return
    // Codex answers a call whose arguments are not JSON itself, without the client.
    if (!isJsonText(item.arguments) || this.#seenCalls.has(item.call_id)) return
    this.#expected.add(item.call_id)
    this.#responseDone = false
  }

  /**
   * Whether the step can end now: the turn runs (or its `turn/start` answer
   * is still on its way but codex already said which turn it is) and nobody
   * is stopping it.
   */
  #steppable(): boolean {
    const known = this.#phase === "running" || (this.#phase === "starting" && this.#turnId !== undefined)
    return known && !this.#closed && !this.#aborting
  }

  /** Ends the step on tool calls once the calls of the model's response have reached the client. */
  #checkStep(): void {
    if (!this.#steppable()) return
    let waiting = false
    for (const call of this.#calls.values()) {
      if (call.emitted) {
        waiting = true
        break
      }
    }
    if (!waiting) return
    if (this.#rawEvents) {
      if (!this.#responseDone) return
      if (this.#expected.size > 0) {
        this.#grace ??= setTimeout(() => {
          this.#grace = undefined
          this.#endStep()
        }, this.#settings.announcedCallGraceMs)
        return
      }
    }
    this.#endStep()
  }

  /** Finishes the step with `tool-calls` and parks the turn until the next step brings the results. */
  #endStep(): void {
    if (this.#grace !== undefined) clearTimeout(this.#grace)
    this.#grace = undefined
    if (!this.#steppable()) return
    for (const part of this.#mapper.endStep()) this.#enqueue(part)
    this.#finish("tool-calls", "tool-calls", this.#usage.take())
    this.#phase = "parked"
    this.#buffer = []
    this.#settings.parking.park(this)
    this.#markParked(true)
    const timeoutMs = this.#settings.toolResultTimeoutMs
    this.#parkTimer = setTimeout(() => {
      this.#parkTimer = undefined
      if (this.#phase !== "parked") return
      this.#stopParked(
        `No result for this tool call arrived within toolResultTimeoutMs (${timeoutMs} ms): the turn was interrupted.`
      )
    }, timeoutMs)
  }

  #markParked(parked: boolean): void {
    if (this.#markedParked === parked) return
    this.#markedParked = parked
    try {
      this.#settings.pool.markParked?.(this.#worker, parked)
    } catch {
      // The lease had already ended: nothing is parked.
    }
  }

  /** Leaves the registry and the pool's parked count (idempotent). */
  #unpark(): void {
    if (this.#parkTimer !== undefined) clearTimeout(this.#parkTimer)
    this.#parkTimer = undefined
    this.#settings.parking.remove(this)
    this.#markParked(false)
  }

  /** Ends a parked turn nobody will continue: its calls get `text`, then interrupt and release. */
  #stopParked(text: string): void {
    this.#unpark()
    this.#buffer = undefined
    this.#aborting = true
    this.#phase = "running"
    for (const call of [...this.#calls.values()]) this.#requests.answer(call.requestId, failedToolCall(text))
    this.#interrupt()
  }

  #completed(turn: { readonly status?: string; readonly error?: { readonly message?: string } | null }): void {
    const parked = this.#phase === "parked"
    this.#phase = "done"
    if (this.#interrupted !== undefined) return this.#interrupted()
    if (parked) return this.#release() // nobody reads: the next step finds no parked turn
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
    this.#finish(unified, status, status === "completed" ? this.#usage.take() : emptyUsage())
    this.#release()
  }

  /** A request failed or the worker died: end the stream with `error` and give the worker back. */
  #fail(error: unknown): void {
    if (this.#phase === "done") return
    const parked = this.#phase === "parked"
    this.#phase = "done"
    this.#interrupted?.()
    if (parked) return this.#release()
    for (const part of this.#mapper.finish("failed")) this.#enqueue(part)
    this.#enqueue({ type: "error", error })
    this.#finish("error", undefined, emptyUsage())
    this.#release() // a crashed worker is not returned to service
  }

  /** Abort or consumer cancel: error the stream, then stop the turn before giving the worker back. */
  #abort(reason: unknown): void {
    if (this.#aborting || this.#phase === "done") return
    if (this.#phase === "parked") {
      return this.#stopParked("The AI SDK call was aborted before this tool call's result arrived.")
    }
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

  #enqueue(part: Part): void {
    if (this.#buffer !== undefined) {
      // Parked: the next step shows it.
      this.#buffer.push(part)
      return
    }
    if (part.type === "response-metadata") {
      if (this.#metadataSent) return
      this.#metadataSent = true
    }
    if (this.#closed) return
    if (!this.#stepStarted) {
      this.#stepStarted = true
      this.#controller.enqueue({ type: "stream-start", warnings: this.#stepWarnings })
    }
    if (part.type === "tool-call") {
      const call = this.#calls.get(part.toolCallId)
      if (call !== undefined) call.emitted = true
    }
    this.#controller.enqueue(part)
  }

  /** Everything a lease holds besides the worker: listeners, pending requests, timers, temporary files. */
  #letGo(): boolean {
    if (this.#released) return false
    this.#released = true
    this.#unpark()
    this.#buffer = undefined
    if (this.#grace !== undefined) clearTimeout(this.#grace)
    this.#grace = undefined
    this.#unwatch?.()
    this.#unwatch = undefined
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

/**
 * Answers to the requests the app-server sends the client during a turn:
 * approvals, permission requests, user-input questions, MCP elicitations,
 * dynamic tool calls, and the rest of the pinned protocol's `ServerRequest`.
 *
 * Guarantees:
 * - every method of the generated `ServerRequest` union is answered with the
 *   shape its schema requires; the switch is exhaustive, so a method a newer
 *   codex adds fails compilation until it is handled here;
 * - the safe default, when no callback is given, the callback throws or
 *   returns something unusable, or `timeoutMs` passes: decline
 *   (command/file-change approvals, `{denied}` for the legacy ones), grant no
 *   permissions (for this turn), no answers to user-input questions, decline
 *   an elicitation, `success: false` for a dynamic tool call, the current
 *   time for `currentTime/read`, and a JSON-RPC error for token refresh and
 *   attestation (which only the client's own sign-in could answer);
 * - each request is answered exactly once: `settleAll()` answers whatever is
 *   still pending with its default (the turn is ending), `resolved()` drops
 *   one codex has withdrawn (`serverRequest/resolved`), and each callback's
 *   `signal` aborts then; a request the turn `hold`s (a call of an AI SDK
 *   tool, answered by a later step) has no timeout and is answered through
 *   `answer`, or with its default by `settleAll`;
 * - requests of another thread get the default without calling a callback.
 *
 * Limits: a callback error is reported through `onError` (the model makes it
 * an `error` stream part) after the default answer went out. A response the
 * worker can no longer take (it died) is dropped: the turn ends with the
 * crash anyway.
 *
 * @since 0.1.0
 */
import { Schema } from "effect"
import type * as CodexProtocol from "../CodexProtocol.ts"
import type { JsonRpcErrorObject, JsonRpcId } from "../internal/jsonRpc.ts"
import { Function } from "../internal/options.ts"

/** The option Schemas of the server-request callbacks, for the models' option validation. */
export const ServerRequestCallbackFields = {
  approvals: Schema.optional(Function),
  permissions: Schema.optional(Function),
  userInput: Schema.optional(Function),
  elicitation: Schema.optional(Function),
  chatgptAuthTokens: Schema.optional(Function)
}

type ToolCallParams = CodexProtocol.ServerRequestParams<"item/tool/call">
type ToolCallResult = CodexProtocol.ServerRequestResult<"item/tool/call">

/**
 * Answers a dynamic tool call, or returns `undefined` for a tool it does not
 * know. `signal` aborts when the call's turn ends.
 *
 * @since 0.1.0
 * @category models
 */
export type ToolCallHandler = (
  params: ToolCallParams,
  context: { readonly signal: AbortSignal }
) => ToolCallResult | Promise<ToolCallResult> | undefined

/** The qualified name of a dynamic tool: `namespace__tool`, or the tool's name. */
export const dynamicToolName = (namespace: string | null | undefined, tool: string): string =>
  namespace === null || namespace === undefined || namespace === "" ? tool : `${namespace}__${tool}`

/**
 * The answer to a call of a tool nobody implements here.
 *
 * @since 0.1.0
 * @category constructors
 */
export const unsupportedToolCall = (params: ToolCallParams): ToolCallResult => ({
  success: false,
  contentItems: [{
    type: "inputText",
    text: `The tool "${dynamicToolName(params.namespace, params.tool)}" is not available: ` +
      "the AI SDK provider has no implementation of it."
  }]
})

/**
 * The answer to an approval request (command execution or file change).
 *
 * @since 0.1.0
 * @category models
 */
export type ApprovalDecision = "accept" | "acceptForSession" | "decline" | "cancel"

const decisions: ReadonlySet<unknown> = new Set<ApprovalDecision>(["accept", "acceptForSession", "decline", "cancel"])

/**
 * An approval codex asks for: a command or a file change (and their legacy
 * v1 forms, which codex 0.169 still declares).
 *
 * @since 0.1.0
 * @category models
 */
export type ApprovalRequest =
  | {
    readonly method: "item/commandExecution/requestApproval"
    readonly params: CodexProtocol.ServerRequestParams<"item/commandExecution/requestApproval">
  }
  | {
    readonly method: "item/fileChange/requestApproval"
    readonly params: CodexProtocol.ServerRequestParams<"item/fileChange/requestApproval">
  }
  | { readonly method: "execCommandApproval"; readonly params: CodexProtocol.ServerRequestParams<"execCommandApproval"> }
  | { readonly method: "applyPatchApproval"; readonly params: CodexProtocol.ServerRequestParams<"applyPatchApproval"> }

/**
 * What a callback gets besides the request: `signal` aborts when the turn
 * ends or the request times out (its answer is then no longer used).
 *
 * @since 0.1.0
 * @category models
 */
export interface ServerRequestContext {
  readonly signal: AbortSignal
}

type Answer<M extends CodexProtocol.ServerRequestMethod> =
  | CodexProtocol.ServerRequestResult<M>
  | Promise<CodexProtocol.ServerRequestResult<M>>

/**
 * The callbacks that answer server requests; each is optional and has a safe default.
 *
 * @since 0.1.0
 * @category models
 */
export interface ServerRequestHandlers {
  /** Command and file-change approvals. Default: `"decline"`. */
  readonly approvals?:
    | ((request: ApprovalRequest, context: ServerRequestContext) => ApprovalDecision | Promise<ApprovalDecision>)
    | undefined
  /** `item/permissions/requestApproval`. Default: grant nothing, for this turn. */
  readonly permissions?:
    | ((
      params: CodexProtocol.ServerRequestParams<"item/permissions/requestApproval">,
      context: ServerRequestContext
    ) => Answer<"item/permissions/requestApproval">)
    | undefined
  /** `item/tool/requestUserInput` (questions for the user). Default: no answers. */
  readonly userInput?:
    | ((
      params: CodexProtocol.ServerRequestParams<"item/tool/requestUserInput">,
      context: ServerRequestContext
    ) => Answer<"item/tool/requestUserInput">)
    | undefined
  /** `mcpServer/elicitation/request` (an MCP server asks the user). Default: decline. */
  readonly elicitation?:
    | ((
      params: CodexProtocol.ServerRequestParams<"mcpServer/elicitation/request">,
      context: ServerRequestContext
    ) => Answer<"mcpServer/elicitation/request">)
    | undefined
  /** `account/chatgptAuthTokens/refresh`. Default: a JSON-RPC error (the client holds no tokens). */
  readonly chatgptAuthTokens?:
    | ((
      params: CodexProtocol.ServerRequestParams<"account/chatgptAuthTokens/refresh">,
      context: ServerRequestContext
    ) => Answer<"account/chatgptAuthTokens/refresh">)
    | undefined
}

/** A response: a result, or a JSON-RPC error. */
export type Response = { readonly result: unknown } | { readonly error: JsonRpcErrorObject }

const legacyDecision = (decision: ApprovalDecision): CodexProtocol.ReviewDecision => {
  switch (decision) {
    case "accept":
      return "approved"
    case "acceptForSession":
      return "approved_for_session"
    case "decline":
      return { denied: { rejection: "Declined by the client." } }
    case "cancel":
      return "abort"
  }
}

const decisionResult = (method: ApprovalRequest["method"], decision: ApprovalDecision): unknown =>
  method === "execCommandApproval" || method === "applyPatchApproval"
    ? ({ decision: legacyDecision(decision) } satisfies CodexProtocol.ServerRequestResult<"execCommandApproval">)
    : ({ decision } satisfies CodexProtocol.ServerRequestResult<"item/fileChange/requestApproval">)

const unhandled = (method: string, what: string): Response => ({
  error: { code: -32000, message: `The AI SDK provider does not ${what} (${method}).` }
})

/**
 * The safe answer to a request, with no callback involved.
 *
 * @since 0.1.0
 * @category constructors
 */
export const defaultResponse = (request: CodexProtocol.ServerRequestMessage): Response => {
  switch (request.method) {
    case "item/commandExecution/requestApproval":
    case "item/fileChange/requestApproval":
    case "execCommandApproval":
    case "applyPatchApproval":
      return { result: decisionResult(request.method, "decline") }
    case "item/permissions/requestApproval":
      return {
        result: { permissions: {}, scope: "turn" } satisfies CodexProtocol.ServerRequestResult<
          "item/permissions/requestApproval"
        >
      }
    case "item/tool/requestUserInput":
      return { result: { answers: {} } satisfies CodexProtocol.ServerRequestResult<"item/tool/requestUserInput"> }
    case "mcpServer/elicitation/request":
      return {
        result: { action: "decline", content: null, _meta: null } satisfies CodexProtocol.ServerRequestResult<
          "mcpServer/elicitation/request"
        >
      }
    case "item/tool/call":
      return { result: unsupportedToolCall(request.params) }
    case "currentTime/read":
      return {
        result: { currentTimeAt: Math.floor(Date.now() / 1000) } satisfies CodexProtocol.ServerRequestResult<
          "currentTime/read"
        >
      }
    case "account/chatgptAuthTokens/refresh":
      return unhandled(request.method, "hold ChatGPT tokens")
    case "attestation/generate":
      return unhandled(request.method, "generate attestations")
    default: {
      // A method the pinned protocol does not have: compilation fails here when codex adds one.
      const never: never = request
      const method = (never as { readonly method: string }).method
      return { error: { code: -32601, message: `The AI SDK provider does not handle ${method}.` } }
    }
  }
}

/** Runs the callback for `request`; `undefined` when there is none (the default applies). */
const callbackFor = (
  request: CodexProtocol.ServerRequestMessage,
  handlers: ServerRequestHandlers,
  toolCalls: ToolCallHandler | undefined,
  context: ServerRequestContext
): Promise<Response> | undefined => {
  const result = (value: unknown): Response => ({ result: value })
  switch (request.method) {
    case "item/commandExecution/requestApproval":
    case "item/fileChange/requestApproval":
    case "execCommandApproval":
    case "applyPatchApproval": {
      const approvals = handlers.approvals
      if (approvals === undefined) return undefined
      const method = request.method
      return Promise.resolve(approvals({ method, params: request.params } as ApprovalRequest, context)).then(
        (decision) => {
          if (!decisions.has(decision)) {
            throw new TypeError(
              `approvals returned ${JSON.stringify(decision)} for ${method}; expected "accept", ` +
                `"acceptForSession", "decline" or "cancel". The request was declined.`
            )
          }
          return result(decisionResult(method, decision))
        }
      )
    }
    case "item/permissions/requestApproval":
      return handlers.permissions === undefined
        ? undefined
        : Promise.resolve(handlers.permissions(request.params, context)).then(result)
    case "item/tool/requestUserInput":
      return handlers.userInput === undefined
        ? undefined
        : Promise.resolve(handlers.userInput(request.params, context)).then(result)
    case "mcpServer/elicitation/request":
      return handlers.elicitation === undefined
        ? undefined
        : Promise.resolve(handlers.elicitation(request.params, context)).then(result)
    case "account/chatgptAuthTokens/refresh":
      return handlers.chatgptAuthTokens === undefined
        ? undefined
        : Promise.resolve(handlers.chatgptAuthTokens(request.params, context)).then(result)
    case "item/tool/call": {
      const answered = toolCalls?.(request.params, context)
      return answered === undefined ? undefined : Promise.resolve(answered).then(result)
    }
    case "currentTime/read":
    case "attestation/generate":
      return undefined
    default: {
      const never: never = request
      return never
    }
  }
}

/** What `ServerRequests` answers through (a leased worker's handle). */
export interface Responder {
  respond(id: JsonRpcId, result: unknown): Promise<void>
  respondError(id: JsonRpcId, error: JsonRpcErrorObject): Promise<void>
}

/**
 * The server requests of one turn: answers each exactly once.
 *
 * @since 0.1.0
 * @category models
 */
export class ServerRequests {
  readonly #pending = new Map<
    JsonRpcId,
    { readonly request: CodexProtocol.ServerRequestMessage; readonly controller: AbortController; timer?: NodeJS.Timeout }
  >()
  readonly #responder: Responder
  readonly #handlers: ServerRequestHandlers
  readonly #toolCalls: ToolCallHandler | undefined
  readonly #timeoutMs: number
  readonly #onError: (error: unknown) => void

  constructor(options: {
    readonly responder: Responder
    readonly handlers: ServerRequestHandlers
    readonly toolCalls: ToolCallHandler | undefined
    /** After this long without a callback's answer, the default is sent. */
    readonly timeoutMs: number
    readonly onError: (error: unknown) => void
  }) {
    this.#responder = options.responder
    this.#handlers = options.handlers
    this.#toolCalls = options.toolCalls
    this.#timeoutMs = options.timeoutMs
    this.#onError = options.onError
  }

  /** The requests still waiting for their answer. */
  get pending(): number {
    return this.#pending.size
  }

  /** Answers `request`: through its callback when `own` (this turn's), else with the default at once. */
  handle(request: CodexProtocol.ServerRequestMessage, own: boolean): void {
    const id = request.id
    if (this.#pending.has(id)) return
    const controller = new AbortController()
    const entry: { request: CodexProtocol.ServerRequestMessage; controller: AbortController; timer?: NodeJS.Timeout } = {
      request,
      controller
    }
    this.#pending.set(id, entry)
    let running: Promise<Response> | undefined
    try {
      running = own ? callbackFor(request, this.#handlers, this.#toolCalls, { signal: controller.signal }) : undefined
    } catch (error) {
      this.#onError(error)
    }
    if (running === undefined) return this.#settle(id, defaultResponse(request))
    if (Number.isFinite(this.#timeoutMs)) {
      entry.timer = setTimeout(() => this.#settle(id, defaultResponse(request)), this.#timeoutMs)
    }
    running.then(
      (response) => this.#settle(id, response),
      (error: unknown) => {
        if (!this.#pending.has(id)) return // answered already (turn ended, timeout): the error no longer matters
        this.#onError(error)
        this.#settle(id, defaultResponse(request))
      }
    )
  }

  /**
   * Registers `request` as pending without a callback or a timeout: it is
   * answered later through `answer`, or with its default by `settleAll`. The
   * signal aborts once it is answered or withdrawn.
   */
  hold(request: CodexProtocol.ServerRequestMessage): AbortSignal {
    const existing = this.#pending.get(request.id)
    if (existing !== undefined) return existing.controller.signal
    const controller = new AbortController()
    this.#pending.set(request.id, { request, controller })
    return controller.signal
  }

  /** Answers pending request `id` with `result` now; a no-op when it is no longer pending. */
  answer(id: JsonRpcId, result: unknown): void {
    this.#settle(id, { result })
  }

  /** Codex withdrew request `id` (`serverRequest/resolved`): no answer is sent. */
  resolved(id: JsonRpcId): void {
    const entry = this.#pending.get(id)
    if (entry === undefined) return
    this.#pending.delete(id)
    if (entry.timer !== undefined) clearTimeout(entry.timer)
    entry.controller.abort()
  }

  /** Answers every pending request with its default now (the turn is ending). */
  settleAll(): void {
    for (const [id, entry] of [...this.#pending]) this.#settle(id, defaultResponse(entry.request))
  }

  #settle(id: JsonRpcId, response: Response): void {
    const entry = this.#pending.get(id)
    if (entry === undefined) return
    this.#pending.delete(id)
    if (entry.timer !== undefined) clearTimeout(entry.timer)
    entry.controller.abort()
    const sent = "error" in response
      ? this.#responder.respondError(id, response.error)
      : this.#responder.respond(id, response.result)
    sent.catch(() => {
      // The worker closed: its close ends the turn.
    })
  }
}

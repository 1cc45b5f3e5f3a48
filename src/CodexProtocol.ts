/**
 * The codex app-server protocol as TypeScript types, and the helpers that type
 * requests and messages with them.
 *
 * The types are generated from the pinned `@openai/codex` binary by
 * `npm run generate:protocol` (`codex app-server generate-ts --experimental`,
 * checked in under `src/protocol/generated/`, whose README names the codex
 * version); a test fails while they differ from what the installed binary
 * generates. Every type codex exports is re-exported here: the stable v1 ones
 * at the top level (`InitializeParams`, `ClientRequest`, `ServerNotification`,
 * ...) and the v2 ones under `v2` (`v2.ThreadStartParams`, `v2.ThreadItem`, ...).
 *
 * On top of them:
 * - `RequestParams<M>` / `RequestResult<M>`: params and result of a client
 *   request method (what `CodexWorker.call` and the promise handle's typed
 *   `request` use);
 * - `NotificationParams<M>`, `ServerRequestParams<M>`, `ServerRequestResult<M>`
 *   for what the server sends and what the client answers;
 * - `ServerMessage`: a worker's `IncomingMessage` typed by method, so a
 *   `switch (message.method)` narrows `message.params`; `isNotification` and
 *   `isServerRequest` narrow one message by its method.
 *
 * Limits: these are static types of the pinned version, not runtime checks.
 * A codex of another version may send other shapes, and a message whose
 * method is not in the pinned protocol matches no case of a `switch`. To check
 * a result at runtime, decode it with a Schema (`CodexWorker.requestSchema`).
 * Result types are paired with their method by name (`ThreadStartParams` ->
 * `ThreadStartResponse`), with a short list of exceptions kept by the
 * generator, which fails when a method pairs with nothing.
 *
 * @example
 * ```ts
 * import type { CodexProtocol } from "codex-worker-pool"
 *
 * const onMessage = (message: CodexProtocol.ServerMessage) => {
 *   switch (message.method) {
 *     case "item/agentMessage/delta":
 *       process.stdout.write(message.params.delta)
 *       break
 *     case "turn/completed":
 *       console.log(message.params.turn.status)
 *       break
 *   }
 * }
 * ```
 *
 * @since 0.1.0
 */
import type { IncomingMessage, JsonRpcId } from "./internal/jsonRpc.ts"
import type { ClientRequest } from "./protocol/generated/ClientRequest.ts"
import type { ClientRequestResults, ServerRequestResults } from "./protocol/generated/methods.ts"
import type { ServerNotification } from "./protocol/generated/ServerNotification.ts"
import type { ServerRequest } from "./protocol/generated/ServerRequest.ts"

export type * from "./protocol/generated/index.ts"
export type { ClientRequestResults, ServerRequestResults } from "./protocol/generated/methods.ts"

/**
 * The methods a client can call on the app-server (`"thread/start"`, `"turn/start"`, ...).
 *
 * @since 0.1.0
 * @category models
 */
export type ClientRequestMethod = ClientRequest["method"]

/**
 * The params of client request method `M`; `undefined` is part of it when the
 * params may be left out.
 *
 * @since 0.1.0
 * @category models
 */
export type RequestParams<M extends ClientRequestMethod> = Extract<ClientRequest, { readonly method: M }>["params"]

/**
 * The result of client request method `M` (e.g. `v2.ThreadStartResponse` for `"thread/start"`).
 *
 * @since 0.1.0
 * @category models
 */
export type RequestResult<M extends ClientRequestMethod> = ClientRequestResults[M]

/**
 * The arguments after the method of a typed request: the params, optional
 * when the method accepts none, then `Options`.
 *
 * @since 0.1.0
 * @category models
 */
export type RequestArgs<M extends ClientRequestMethod, Options> = undefined extends RequestParams<M>
  ? [params?: RequestParams<M>, options?: Options]
  : [params: RequestParams<M>, options?: Options]

/**
 * The notification methods the app-server sends (`"turn/completed"`, ...).
 *
 * @since 0.1.0
 * @category models
 */
export type ServerNotificationMethod = ServerNotification["method"]

/**
 * The params of server notification `M` (e.g. `v2.TurnCompletedNotification` for `"turn/completed"`).
 *
 * @since 0.1.0
 * @category models
 */
export type NotificationParams<M extends ServerNotificationMethod> = Extract<
  ServerNotification,
  { readonly method: M }
>["params"]

/**
 * The request methods the app-server sends to the client (approvals, `"item/tool/call"`, ...).
 *
 * @since 0.1.0
 * @category models
 */
export type ServerRequestMethod = ServerRequest["method"]

/**
 * The params of server request `M`.
 *
 * @since 0.1.0
 * @category models
 */
export type ServerRequestParams<M extends ServerRequestMethod> = Extract<
  ServerRequest,
  { readonly method: M }
>["params"]

/**
 * What the client answers server request `M` with (e.g. `v2.DynamicToolCallResponse` for `"item/tool/call"`).
 *
 * @since 0.1.0
 * @category models
 */
export type ServerRequestResult<M extends ServerRequestMethod> = ServerRequestResults[M]

/**
 * A worker's incoming notification (`IncomingNotification`) typed by its method.
 *
 * @since 0.1.0
 * @category models
 */
export type ServerNotificationMessage<M extends ServerNotificationMethod = ServerNotificationMethod> = M extends
  ServerNotificationMethod ? {
    readonly _tag: "Notification"
    readonly method: M
    readonly params: NotificationParams<M>
    readonly raw: Readonly<Record<string, unknown>>
  }
  : never

/**
 * A worker's incoming server request (`IncomingRequest`) typed by its method.
 *
 * @since 0.1.0
 * @category models
 */
export type ServerRequestMessage<M extends ServerRequestMethod = ServerRequestMethod> = M extends
  ServerRequestMethod ? {
    readonly _tag: "Request"
    readonly id: JsonRpcId
    readonly method: M
    readonly params: ServerRequestParams<M>
    readonly raw: Readonly<Record<string, unknown>>
  }
  : never

/**
 * A worker's incoming message as the pinned protocol describes it: switching
 * on `method` narrows `params`. Obtain one from an `IncomingMessage` with
 * `isNotification` / `isServerRequest`, or by a cast when you accept that the
 * server speaks the pinned version (no runtime check is made either way).
 *
 * @since 0.1.0
 * @category models
 */
export type ServerMessage = ServerNotificationMessage | ServerRequestMessage

/**
 * True when `message` is notification `method`; narrows its params to that
 * notification's type. Checks the tag and the method name only, not the params.
 *
 * @example
 * ```ts
 * import { CodexProtocol, type CodexWorker } from "codex-worker-pool"
 *
 * const logTurnEnds = (worker: CodexWorker.CodexWorker) =>
 *   worker.subscribe((message) => {
 *     if (CodexProtocol.isNotification(message, "turn/completed")) console.log(message.params.turn.status)
 *   })
 * ```
 *
 * @since 0.1.0
 * @category guards
 */
export const isNotification = <M extends ServerNotificationMethod>(
  message: IncomingMessage,
  method: M
): message is ServerNotificationMessage<M> => message._tag === "Notification" && message.method === method

/**
 * True when `message` is server request `method`; narrows its params to that
 * request's type. Checks the tag and the method name only, not the params.
 *
 * @since 0.1.0
 * @category guards
 */
export const isServerRequest = <M extends ServerRequestMethod>(
  message: IncomingMessage,
  method: M
): message is ServerRequestMessage<M> => message._tag === "Request" && message.method === method

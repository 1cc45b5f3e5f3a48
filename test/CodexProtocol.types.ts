/**
 * Type-level tests of the typed requests and messages, checked by
 * `tsc --noEmit` (the first step of `npm test`); vitest does not run this
 * file, and nothing in it is ever executed. Each `@ts-expect-error` line must
 * fail to compile (tsc reports an unused directive otherwise) and each
 * `expectTypeOf` must hold.
 */
import type { Effect } from "effect"
import { Schema } from "effect"
import { expectTypeOf } from "vitest"
import type { CodexWorkerHandle } from "../src/CodexPromisePool.ts"
import * as CodexProtocol from "../src/CodexProtocol.ts"
import type * as CodexWorker from "../src/CodexWorker.ts"
import type { ResponseDecodeError } from "../src/errors.ts"

declare const worker: CodexWorker.CodexWorker
declare const handle: CodexWorkerHandle
declare const message: CodexWorker.IncomingMessage

// Every client request and server request method has a result type, and nothing else does.
expectTypeOf<Exclude<CodexProtocol.ClientRequestMethod, keyof CodexProtocol.ClientRequestResults>>().toBeNever()
expectTypeOf<Exclude<keyof CodexProtocol.ClientRequestResults, CodexProtocol.ClientRequestMethod>>().toBeNever()
expectTypeOf<Exclude<CodexProtocol.ServerRequestMethod, keyof CodexProtocol.ServerRequestResults>>().toBeNever()

// Params and results by method.
expectTypeOf<CodexProtocol.RequestParams<"thread/start">>().toEqualTypeOf<CodexProtocol.v2.ThreadStartParams>()
expectTypeOf<CodexProtocol.RequestResult<"thread/start">>().toEqualTypeOf<CodexProtocol.v2.ThreadStartResponse>()
expectTypeOf<CodexProtocol.RequestResult<"initialize">>().toEqualTypeOf<CodexProtocol.InitializeResponse>()
expectTypeOf<CodexProtocol.RequestResult<"config/batchWrite">>().toEqualTypeOf<CodexProtocol.v2.ConfigWriteResponse>()
expectTypeOf<CodexProtocol.NotificationParams<"turn/completed">>()
  .toEqualTypeOf<CodexProtocol.v2.TurnCompletedNotification>()
expectTypeOf<CodexProtocol.ServerRequestResult<"item/tool/call">>()
  .toEqualTypeOf<CodexProtocol.v2.DynamicToolCallResponse>()

// CodexWorker.call: typed params, typed result.
expectTypeOf(worker.call("thread/start", { ephemeral: true })).toEqualTypeOf<
  Effect.Effect<CodexProtocol.v2.ThreadStartResponse, CodexWorker.RequestError>
>()
expectTypeOf(worker.call("turn/interrupt", { threadId: "t", turnId: "u" }, { timeout: "1 second" })).toEqualTypeOf<
  Effect.Effect<CodexProtocol.v2.TurnInterruptResponse, CodexWorker.RequestError>
>()
// A method that takes no params needs none.
expectTypeOf(worker.call("account/logout")).toEqualTypeOf<
  Effect.Effect<CodexProtocol.v2.LogoutAccountResponse, CodexWorker.RequestError>
>()
// @ts-expect-error a wrong param type
worker.call("thread/start", { ephemeral: "yes" })
// @ts-expect-error a missing required param (turnId)
worker.call("turn/interrupt", { threadId: "t" })
// @ts-expect-error missing params of a method that needs them
worker.call("turn/start")
// @ts-expect-error a method the pinned protocol does not have
worker.call("thread/teleport", {})
// The untyped form is unchanged.
expectTypeOf(worker.request("anything/goes", { x: 1 })).toEqualTypeOf<Effect.Effect<unknown, CodexWorker.RequestError>>()
expectTypeOf(worker.initializeResult).toEqualTypeOf<CodexProtocol.InitializeResponse>()

// CodexWorker.requestSchema: the schema's type, a typed decode error, params typed for known methods.
const ThreadId = Schema.Struct({ thread: Schema.Struct({ id: Schema.String }) })
expectTypeOf(worker.requestSchema("thread/start", {}, ThreadId)).toEqualTypeOf<
  Effect.Effect<{ readonly thread: { readonly id: string } }, CodexWorker.RequestError | ResponseDecodeError>
>()
expectTypeOf(worker.requestSchema("not/in/protocol", { any: "thing" }, Schema.Number)).toEqualTypeOf<
  Effect.Effect<number, CodexWorker.RequestError | ResponseDecodeError>
>()
// @ts-expect-error a wrong param type for a method of the pinned protocol
worker.requestSchema("thread/start", { ephemeral: "yes" }, ThreadId)

// The promise handle: typed when the method and params are the protocol's, unknown otherwise.
expectTypeOf(handle.request("thread/start", { ephemeral: true })).toEqualTypeOf<
  Promise<CodexProtocol.v2.ThreadStartResponse>
>()
expectTypeOf(handle.request("account/logout")).toEqualTypeOf<Promise<CodexProtocol.v2.LogoutAccountResponse>>()
expectTypeOf(handle.request("anything/goes", { x: 1 })).toEqualTypeOf<Promise<unknown>>()

// Messages: a switch on the method narrows the params.
const typed = message as CodexProtocol.ServerMessage
switch (typed.method) {
  case "turn/completed":
    expectTypeOf(typed.params).toEqualTypeOf<CodexProtocol.v2.TurnCompletedNotification>()
    expectTypeOf(typed._tag).toEqualTypeOf<"Notification">()
    break
  case "item/tool/call":
    expectTypeOf(typed.params).toEqualTypeOf<CodexProtocol.v2.DynamicToolCallParams>()
    expectTypeOf(typed.id).toEqualTypeOf<string | number>()
    break
  // @ts-expect-error not a method of the pinned protocol
  case "thread/teleported":
    break
}
if (CodexProtocol.isNotification(message, "item/agentMessage/delta")) {
  expectTypeOf(message.params).toEqualTypeOf<CodexProtocol.v2.AgentMessageDeltaNotification>()
}
if (CodexProtocol.isServerRequest(message, "item/fileChange/requestApproval")) {
  expectTypeOf(message.params).toEqualTypeOf<CodexProtocol.v2.FileChangeRequestApprovalParams>()
}

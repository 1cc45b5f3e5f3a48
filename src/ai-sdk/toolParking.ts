/**
 * Codex's calls of client ("dynamic") tools, `item/tool/call`: where the
 * model decides who answers them.
 *
 * Today every such call is answered at once with `success: false` and a text
 * saying the tool is not available: the AI SDK's function tools are not yet
 * handed to Codex, and a tool that `threadDefaults.dynamicTools` declares has
 * no implementation on this side. The call still shows in the stream as a
 * provider-executed tool call with its (failed) result.
 *
 * The seam: `ToolCallHandler`. Function tools across steps (a later task)
 * plug in here: a handler that parks a call of a known AI SDK tool until the
 * next step brings its result returns that result; one that does not know the
 * tool returns `undefined`, and the call gets the unsupported answer below.
 *
 * Guarantees: every `item/tool/call` gets an answer of the schema's shape
 * (`DynamicToolCallResponse`), so a turn never waits on one.
 *
 * @since 0.1.0
 */
import type * as CodexProtocol from "../CodexProtocol.ts"

type Params = CodexProtocol.ServerRequestParams<"item/tool/call">
type Result = CodexProtocol.ServerRequestResult<"item/tool/call">

/**
 * Answers a dynamic tool call, or returns `undefined` for a tool it does not
 * know. `signal` aborts when the call's turn ends.
 *
 * @since 0.1.0
 * @category models
 */
export type ToolCallHandler = (
  params: Params,
  context: { readonly signal: AbortSignal }
) => Result | Promise<Result> | undefined

/** The qualified name of a dynamic tool: `namespace__tool`, or the tool's name. */
export const dynamicToolName = (namespace: string | null | undefined, tool: string): string =>
  namespace === null || namespace === undefined || namespace === "" ? tool : `${namespace}__${tool}`

/**
 * The answer to a call of a tool nobody implements here.
 *
 * @since 0.1.0
 * @category constructors
 */
export const unsupportedToolCall = (params: Params): Result => ({
  success: false,
  contentItems: [{
    type: "inputText",
    text: `The tool "${dynamicToolName(params.namespace, params.tool)}" is not available: ` +
      "the AI SDK provider has no implementation of it."
  }]
})

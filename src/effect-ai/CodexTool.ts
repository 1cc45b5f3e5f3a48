/**
 * Codex's own actions as provider-defined tools of `effect/ai`: commands,
 * file changes, web searches, image views, plan updates, MCP tool calls and
 * dynamic tool calls. Codex runs them itself, inside its turn; these
 * definitions only let a response show them.
 *
 * Why they are needed: `effect/ai` decodes a response against the request's
 * toolkit, and a tool part of a tool the toolkit does not declare fails the
 * call (`InvalidOutputError`). So `CodexLanguageModel` adds a Codex action to
 * a response (a `tool-call` and its `tool-result`, both
 * `providerExecuted: true`) only when the request's toolkit declares its
 * tool; pass {@link toolkit} (all of them) or a `Toolkit.make` of the ones
 * you want. They need no handler, so the toolkit is passed as it is.
 *
 * Parameters and results (the same values as the AI SDK model's tool parts):
 * - `CodexCommandExecution`: `{ command, cwd }` -> `{ status, exitCode, output, durationMs }`;
 * - `CodexFileChange`: `{ changes: [{ path, kind, movePath?, diff }] }` -> `{ status, changes: [{ path, kind }] }`;
 * - `CodexWebSearch`: `{ query, action }` -> `{ status, results }`;
 * - `CodexViewImage`: `{ path }` -> `{ status }`;
 * - `CodexUpdatePlan`: `{ explanation, plan: [{ step, status }] }` -> `{ status, plan }`;
 * - `CodexMcpToolCall`: `{ server, tool, arguments }` -> `{ status, result, error, durationMs }`;
 * - `CodexDynamicToolCall` (a tool of `threadDefaults.dynamicTools`):
 *   `{ tool, arguments }` (`tool` is `namespace__tool`, or the tool's name) ->
 *   `{ status, success, contentItems, durationMs }`.
 *
 * A result is a failure (`isFailure: true`) when the action did not complete
 * (`failed`, `declined`, a dynamic tool answering `success: false`, or an
 * action still open when the turn ended: then `error` says why). Streamed
 * command output and MCP progress arrive as preliminary results
 * (`preliminary: true`, `status: "inProgress"`, `output` cut to its last
 * 16384 characters with `outputTruncated: true`, or `progress`) in
 * `streamText`, before the final one.
 *
 * Limits: a dynamic tool whose name is one of the names above, or starts with
 * `mcp__`, is shown as that tool. Result fields codex does not send are absent.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { LanguageModel } from "effect/ai"
 * import { CodexTool } from "codex-worker-pool/effect-ai"
 *
 * const program = Effect.gen(function*() {
 *   const response = yield* LanguageModel.generateText({ prompt: "Run the tests", toolkit: CodexTool.toolkit })
 *   for (const call of response.toolCalls) console.log("codex ran", call.name, call.params)
 *   return response.text
 * })
 * ```
 *
 * @since 0.1.0
 */
import { Schema } from "effect"
import { Tool, Toolkit } from "effect/ai"

/**
 * The provider names of Codex's actions: what the model matches a toolkit's
 * tools by (`tool.providerName`).
 *
 * @since 0.1.0
 * @category constants
 */
export const providerNames = {
  commandExecution: "codex_command_execution",
  fileChange: "codex_file_change",
  webSearch: "codex_web_search",
  viewImage: "codex_view_image",
  updatePlan: "codex_update_plan",
  mcpToolCall: "codex_mcp_tool_call",
  dynamicToolCall: "codex_dynamic_tool_call"
} as const

const OptionalNumber = Schema.optional(Schema.NullOr(Schema.Number))
const OptionalString = Schema.optional(Schema.NullOr(Schema.String))

/** Fields every result may carry: why an action still open at the end of the turn failed. */
const Ended = { error: OptionalString }

/**
 * The result of a command: final, or preliminary (streamed output so far).
 *
 * @since 0.1.0
 * @category schemas
 */
export const CommandExecutionResult = Schema.Struct({
  status: Schema.String,
  exitCode: OptionalNumber,
  output: OptionalString,
  outputTruncated: Schema.optional(Schema.Boolean),
  durationMs: OptionalNumber,
  ...Ended
})

/**
 * A command Codex ran (`commandExecution` items).
 *
 * @since 0.1.0
 * @category tools
 */
export const CommandExecution = Tool.providerDefined({
  id: "codex.command_execution",
  customName: "CodexCommandExecution",
  providerName: providerNames.commandExecution,
  parameters: Schema.Struct({ command: Schema.String, cwd: Schema.String }),
  success: CommandExecutionResult,
  failure: CommandExecutionResult
})()

const FileChangeKind = Schema.String

/**
 * The result of a file change.
 *
 * @since 0.1.0
 * @category schemas
 */
export const FileChangeResult = Schema.Struct({
  status: Schema.String,
  changes: Schema.optional(Schema.Array(Schema.Struct({ path: Schema.String, kind: FileChangeKind }))),
  ...Ended
})

/**
 * A patch Codex applied (`fileChange` items).
 *
 * @since 0.1.0
 * @category tools
 */
export const FileChange = Tool.providerDefined({
  id: "codex.file_change",
  customName: "CodexFileChange",
  providerName: providerNames.fileChange,
  parameters: Schema.Struct({
    changes: Schema.Array(Schema.Struct({
      path: Schema.String,
      kind: FileChangeKind,
      movePath: Schema.optional(Schema.String),
      diff: Schema.String
    }))
  }),
  success: FileChangeResult,
  failure: FileChangeResult
})()

/**
 * The result of a web search.
 *
 * @since 0.1.0
 * @category schemas
 */
export const WebSearchResult = Schema.Struct({
  status: Schema.String,
  results: Schema.optional(Schema.NullOr(Schema.Array(Schema.Unknown))),
  ...Ended
})

/**
 * A web search Codex ran (`webSearch` items); a page it opened is also a
 * `source` part.
 *
 * @since 0.1.0
 * @category tools
 */
export const WebSearch = Tool.providerDefined({
  id: "codex.web_search",
  customName: "CodexWebSearch",
  providerName: providerNames.webSearch,
  parameters: Schema.Struct({ query: OptionalString, action: Schema.optional(Schema.Unknown) }),
  success: WebSearchResult,
  failure: WebSearchResult
})()

/**
 * The result of an image view.
 *
 * @since 0.1.0
 * @category schemas
 */
export const ViewImageResult = Schema.Struct({ status: Schema.String, ...Ended })

/**
 * An image Codex looked at (`imageView` items).
 *
 * @since 0.1.0
 * @category tools
 */
export const ViewImage = Tool.providerDefined({
  id: "codex.view_image",
  customName: "CodexViewImage",
  providerName: providerNames.viewImage,
  parameters: Schema.Struct({ path: Schema.String }),
  success: ViewImageResult,
  failure: ViewImageResult
})()

const PlanStep = Schema.Struct({ step: Schema.String, status: Schema.String })

/**
 * The result of a plan update.
 *
 * @since 0.1.0
 * @category schemas
 */
export const UpdatePlanResult = Schema.Struct({
  status: Schema.String,
  plan: Schema.optional(Schema.Array(PlanStep)),
  ...Ended
})

/**
 * A plan Codex wrote or updated (`turn/plan/updated`).
 *
 * @since 0.1.0
 * @category tools
 */
export const UpdatePlan = Tool.providerDefined({
  id: "codex.update_plan",
  customName: "CodexUpdatePlan",
  providerName: providerNames.updatePlan,
  parameters: Schema.Struct({ explanation: OptionalString, plan: Schema.Array(PlanStep) }),
  success: UpdatePlanResult,
  failure: UpdatePlanResult
})()

/**
 * The result of an MCP tool call: final, or preliminary (`progress`).
 *
 * @since 0.1.0
 * @category schemas
 */
export const McpToolCallResult = Schema.Struct({
  status: Schema.String,
  result: Schema.optional(Schema.Unknown),
  progress: Schema.optional(Schema.String),
  durationMs: OptionalNumber,
  ...Ended
})

/**
 * A tool of an MCP server Codex called (`mcpToolCall` items), whatever the
 * server and tool.
 *
 * @since 0.1.0
 * @category tools
 */
export const McpToolCall = Tool.providerDefined({
  id: "codex.mcp_tool_call",
  customName: "CodexMcpToolCall",
  providerName: providerNames.mcpToolCall,
  parameters: Schema.Struct({ server: Schema.String, tool: Schema.String, arguments: Schema.Unknown }),
  success: McpToolCallResult,
  failure: McpToolCallResult
})()

/**
 * The result of a dynamic tool call.
 *
 * @since 0.1.0
 * @category schemas
 */
export const DynamicToolCallResult = Schema.Struct({
  status: Schema.String,
  success: Schema.optional(Schema.NullOr(Schema.Boolean)),
  contentItems: Schema.optional(Schema.NullOr(Schema.Array(Schema.Unknown))),
  durationMs: OptionalNumber,
  ...Ended
})

/**
 * A call of a tool declared in `threadDefaults.dynamicTools`
 * (`dynamicToolCall` items). Nothing on this side implements such a tool
 * yet: codex gets `success: false` (see the AI SDK model's `toolParking.ts`).
 *
 * @since 0.1.0
 * @category tools
 */
export const DynamicToolCall = Tool.providerDefined({
  id: "codex.dynamic_tool_call",
  customName: "CodexDynamicToolCall",
  providerName: providerNames.dynamicToolCall,
  parameters: Schema.Struct({ tool: Schema.String, arguments: Schema.Unknown }),
  success: DynamicToolCallResult,
  failure: DynamicToolCallResult
})()

/**
 * Every Codex action: pass it as a request's `toolkit` to see all of them in
 * the response.
 *
 * @since 0.1.0
 * @category toolkits
 */
export const toolkit = Toolkit.make(
  CommandExecution,
  FileChange,
  WebSearch,
  ViewImage,
  UpdatePlan,
  McpToolCall,
  DynamicToolCall
)

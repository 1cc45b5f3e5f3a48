/**
 * `codex-worker-pool/testing`: what a user needs to test code that depends
 * on the pool.
 *
 * With the real codex binary, offline (e.g. in CI):
 * - `startModelServer`: an offline OpenAI Responses API on 127.0.0.1,
 *   scripted with `Reply` parts (text, reasoning, function calls, failures,
 *   429s), recording every request it receives;
 * - `codexArgs` / `codexEnv` / `codexProcessOptions` / `makeCodexHome`: the
 *   codex configuration that talks to it and nothing else.
 *
 * @since 0.1.0
 */
export * as Reply from "./Reply.ts"
export type { ModelUsage } from "./Reply.ts"
export {
  defaultReply,
  defaultUsage,
  lastUserText,
  type ModelRequest,
  type ModelRequestContext,
  type ModelServer,
  type ModelServerMode,
  modelServerModes,
  type ModelServerOptions,
  parseDirectives,
  type PromptDirectives,
  type RecordedModelRequest,
  splitIntoDeltas,
  startModelServer,
  type ToolOutput,
  type UnexpectedRequest
} from "./ModelServer.ts"
export {
  codexArgs,
  type CodexArgsOptions,
  codexConfigOverrides,
  codexEnv,
  type CodexHome,
  codexProcessOptions,
  makeCodexHome,
  MODEL_SERVER_API_KEY_ENV
} from "./codexConfig.ts"

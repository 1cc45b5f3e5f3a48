/**
 * `codex-worker-pool/testing`: what a user needs to test code that depends
 * on the pool.
 *
 * Without codex:
 * - `layerTest` / `makeTest` / `createTestCodexWorkerPool`: the real pool
 *   over scripted in-process fake workers (`FakeWorkerScript`: answer methods,
 *   emit notifications, send server requests, crash on demand);
 * - `textTurns`: a codex-like thread/turn script for those fakes.
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
export * as FakeCodexWorker from "./FakeCodexWorker.ts"
export {
  type CrashOptions,
  type FakeWorker,
  type FakeWorkerScript,
  FakeRpcError,
  type MethodHandler,
  type ReceivedMessage,
  rpcError
} from "./FakeCodexWorker.ts"
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
export {
  createTestCodexWorkerPool,
  FakeCodexWorkers,
  type FakeWorkers,
  layerTest,
  makeTest,
  type TestCodexPromiseWorkerPool,
  type TestCodexWorkerPoolOptions,
  type TestOptions
} from "./TestCodexWorkerPool.ts"
export { textTurns, type TextTurnsOptions, type TurnOutcome, type TurnRequest } from "./textTurns.ts"

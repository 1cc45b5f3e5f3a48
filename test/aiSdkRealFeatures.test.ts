/**
 * What the AI SDK model shows of Codex beyond text, against the REAL
 * `codex app-server` binary and the offline model server
 * (`codex-worker-pool/testing`), scripted with `Reply` parts to stream
 * reasoning, call `exec_command` and `apply_patch`, call a dynamic tool, and
 * answer with JSON.
 *
 * What it pins: `streamText` and `generateText` show reasoning, a command
 * execution as a provider-executed tool call with its streamed and final
 * result, and the answer; usage reports reasoning tokens; an image reaches
 * the model request as an `input_image` (and its temporary file is gone after
 * the call); `generateObject` / `Output.object` send a `json_schema` format and
 * return the answer parsed; real approval requests (`untrusted`) go through
 * the `approvals` callback; a file change shows its path and diff; a dynamic
 * tool call is answered as unsupported.
 *
 * Process hygiene: every test marks its codex processes, uses a fresh
 * CODEX_HOME, shuts its pool down and checks /proc for survivors.
 *
 * Limits: needs the native codex binary and Linux /proc. The model server
 * reports made-up token counts.
 */
import { generateObject, generateText, jsonSchema, Output, streamText } from "ai"
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest"
import { type CodexPromiseWorkerPool, createCodexWorkerPool } from "../src/node.ts"
import type * as CodexWorkerPool from "../src/CodexWorkerPool.ts"
import { type CodexProviderOptions, createCodexProvider } from "../src/ai-sdk/index.ts"
import { codexEnv, type CodexHome, makeCodexHome } from "../src/testing/codexConfig.ts"
import { type ModelServer, startModelServer } from "../src/testing/ModelServer.ts"
import * as Reply from "../src/testing/Reply.ts"
import {
  codexBinaryPath,
  findMarkedProcesses,
  killMarkedProcesses,
  makeMarker,
  markedCodexArgs
} from "./helpers/codex.ts"
import { within as withinMs } from "./helpers/wait.ts"

const WAIT_MS = 15_000
const TEST_TIMEOUT_MS = 40_000
const within = <A>(promise: PromiseLike<A>, what: string) => withinMs(promise, what, WAIT_MS)

const PNG = Buffer.from(
  "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==",
  "base64"
)
const COMMAND = "for i in 1 2 3; do echo line $i; sleep 0.3; done"

/** The model's first reply for each `[script:NAME]` prompt; a request after a tool output gets text. */
const scripts: Readonly<Record<string, Reply.Reply>> = {
  command: [Reply.reasoning("Counting **lines**", { deltas: 1 }), Reply.shellCommand(COMMAND)],
  approval: Reply.shellCommand("echo approved"),
  patch: Reply.applyPatch("*** Begin Patch\n*** Add File: note.txt\n+from codex\n*** End Patch\n"),
  tool: Reply.functionCall("lookup_ticket", { id: "T-7" }),
  json: Reply.text("{\"name\":\"Ada\",\"age\":36}"),
  look: Reply.text("I see a pixel.")
}

let server: ModelServer
let marker = ""
let home: CodexHome
const pools: Array<CodexPromiseWorkerPool> = []

beforeAll(async () => {
  server = await startModelServer({
    respond: (request) => {
      if (request.toolOutputs.length > 0) return Reply.text("All done.", { deltas: 2 })
      const name = /\[script:(\w+)\]/.exec(request.userText)?.[1]
      return name === undefined ? undefined : scripts[name]
    },
    usage: (_request, _text, deltas) => ({
      input_tokens: 100,
      output_tokens: 10 + deltas,
      total_tokens: 110 + deltas,
      output_tokens_details: { reasoning_tokens: 7 }
    })
  })
})

afterAll(async () => {
  await server?.close()
})

beforeEach(() => {
  marker = makeMarker("aisdk-real")
  home = makeCodexHome()
})

afterEach(async () => {
  for (const pool of pools.splice(0)) await within(pool.shutdown(), "pool shutdown").catch(() => {})
  await killMarkedProcesses(marker)
  home.cleanup()
})

const prompt = (script: string, text = "go"): string => `${text} [script:${script}] (${marker})`

/** The first model request whose last user message contains `text`. */
const modelRequest = (text: string) => server.requests.find((request) => request.userText.includes(text))

const setup = (
  providerOptions: Omit<CodexProviderOptions, "pool"> = {},
  poolOptions: CodexWorkerPool.Options = {}
) => {
  const pool = createCodexWorkerPool({
    command: codexBinaryPath(),
    args: markedCodexArgs(server.url, marker),
    env: codexEnv({ codexHome: home.path }),
    poolSize: 1,
    shutdownTimeoutMs: 1_000,
    ...poolOptions
  })
  pools.push(pool)
  const model = createCodexProvider({
    pool,
    threadDefaults: { ephemeral: true, approvalPolicy: "never", sandbox: "read-only" },
    ...providerOptions
  })("mock-model")
  return { pool, model }
}

const shutdownAndCheck = async (pool: CodexPromiseWorkerPool): Promise<void> => {
  await within(pool.shutdown(), "pool shutdown")
  expect(findMarkedProcesses(marker)).toEqual([])
}

const collect = (result: { readonly fullStream: AsyncIterable<any> }) =>
  within(
    (async () => {
      const parts: Array<any> = []
      for await (const part of result.fullStream) parts.push(part)
      return parts
    })(),
    "the stream to end"
  )

describe("AI SDK over real codex: reasoning and Codex's actions", () => {
  it("streamText shows reasoning, the command as a provider-executed tool call with streamed and final output, and the answer", {
    timeout: TEST_TIMEOUT_MS
  }, async () => {
    const { pool, model } = setup()
    const text = prompt("command")
    const result = streamText({
      model,
      prompt: text,
      providerOptions: { codex: { effort: "high", summary: "detailed" } }
    })
    const parts = await collect(result)
    expect(parts.filter((p) => p.type === "error")).toEqual([])
    expect(parts.filter((p) => p.type === "reasoning-delta").map((p) => p.text).join("")).toBe("Counting **lines**")
    const call = parts.find((p) => p.type === "tool-call")
    expect(call).toMatchObject({ toolName: "codex_command_execution", providerExecuted: true, dynamic: true })
    expect(call.input.command).toContain(COMMAND)
    const results = parts.filter((p) => p.type === "tool-result")
    // Output streamed while the command ran (preliminary results), then the final result with all of it.
    expect(results.length).toBeGreaterThan(1)
    expect(results.at(-1)).toMatchObject({ output: { status: "completed", exitCode: 0, output: "line 1\nline 2\nline 3\n" } })
    expect(await result.text).toBe("All done.")
    // The settings reached the model request.
    expect((modelRequest(text)!.body as { reasoning: unknown }).reasoning).toEqual({ effort: "high", summary: "detailed" })
    expect(pool.stats()).toMatchObject({ busy: 0, idle: 1 })
    await shutdownAndCheck(pool)
  })

  it("generateText returns the reasoning, the tool call with its final result, and usage with reasoning tokens", {
    timeout: TEST_TIMEOUT_MS
  }, async () => {
    const { pool, model } = setup()
    const result = await within(generateText({ model, prompt: prompt("command") }), "the call")
    expect(result.reasoningText).toBe("Counting **lines**")
    expect(result.toolCalls).toMatchObject([{ toolName: "codex_command_execution", providerExecuted: true, dynamic: true }])
    expect(result.toolResults).toHaveLength(1)
    expect(result.toolResults[0]).toMatchObject({ output: { status: "completed", exitCode: 0 } })
    expect(result.text).toBe("All done.")
    // Two model requests (before and after the command), each 7 reasoning tokens.
    expect(result.usage.outputTokenDetails?.reasoningTokens).toBe(14)
    expect(result.usage.inputTokens).toBe(200)
    await shutdownAndCheck(pool)
  })

  it("a file change shows its path and diff; a dynamic tool call is answered as unsupported", {
    timeout: TEST_TIMEOUT_MS
  }, async () => {
    const cwd = mkdtempSync(path.join(os.tmpdir(), "aisdk-real-cwd-"))
    try {
      const { pool, model } = setup(
        {
          threadDefaults: {
            ephemeral: true,
            approvalPolicy: "never",
            sandbox: "workspace-write",
            cwd,
            dynamicTools: [{
              type: "function",
              name: "lookup_ticket",
              description: "Looks up a ticket",
              inputSchema: { type: "object", properties: { id: { type: "string" } }, required: ["id"] }
            }]
          }
        },
        // Dynamic tools need the experimental API.
        { capabilities: { experimentalApi: true, requestAttestation: false } }
      )
      // Codex offers apply_patch to the models it knows: the per-call model override picks one.
      const patched = await within(
        generateText({ model, prompt: prompt("patch"), providerOptions: { codex: { model: "gpt-5.5" } } }),
        "the patch call"
      )
      expect(patched.toolCalls).toMatchObject([{
        toolName: "codex_file_change",
        input: { changes: [{ path: path.join(cwd, "note.txt"), kind: "add", diff: "from codex\n" }] }
      }])
      expect(patched.toolResults[0]).toMatchObject({ output: { status: "completed" } })
      expect(readFileSync(path.join(cwd, "note.txt"), "utf8")).toBe("from codex\n")

      const text = prompt("tool")
      const parts = await collect(streamText({ model, prompt: text }))
      expect(parts.find((p) => p.type === "tool-call")).toMatchObject({
        toolName: "lookup_ticket",
        providerExecuted: true,
        dynamic: true,
        input: { id: "T-7" }
      })
      expect(parts.find((p) => p.type === "tool-error")).toMatchObject({ error: { success: false } })
      // Codex gave the model our answer as the tool's output.
      const followUp = server.requests.find((r) => r.userText.includes(text) && r.toolOutputs.length > 0)!
      expect(JSON.stringify(followUp.toolOutputs[0]!.output)).toContain("is not available")
      await shutdownAndCheck(pool)
    } finally {
      rmSync(cwd, { recursive: true, force: true })
    }
  })
})

describe("AI SDK over real codex: input and output formats", () => {
  it("an image reaches the model request as an input_image, and its temporary file is gone after the call", {
    timeout: TEST_TIMEOUT_MS
  }, async () => {
    const { pool, model } = setup()
    const text = prompt("look", "What is in this image?")
    const tempBefore = new Set(readdirSync(os.tmpdir()).filter((name) => name.startsWith("codex-worker-pool-ai-sdk-")))
    const result = await within(
      generateText({
        model,
        messages: [{ role: "user", content: [{ type: "text", text }, { type: "image", image: PNG, mediaType: "image/png" }] }]
      }),
      "the call"
    )
    expect(result.text).toBe("I see a pixel.")
    expect(modelRequest(text)!.images).toEqual([`data:image/png;base64,${PNG.toString("base64")}`])
    const tempAfter = readdirSync(os.tmpdir()).filter((name) =>
      name.startsWith("codex-worker-pool-ai-sdk-") && !tempBefore.has(name)
    )
    expect(tempAfter).toEqual([])
    await shutdownAndCheck(pool)
  })

  it("generateObject and Output.object send the schema as a json_schema format and return the parsed answer", {
    timeout: TEST_TIMEOUT_MS
  }, async () => {
    const { pool, model } = setup()
    const schema = jsonSchema<{ name: string; age: number }>({
      type: "object",
      properties: { name: { type: "string" }, age: { type: "number" } },
      required: ["name", "age"],
      additionalProperties: false
    })
    const objectText = prompt("json", "a person")
    const object = await within(generateObject({ model, schema, prompt: objectText }), "generateObject")
    expect(object.object).toEqual({ name: "Ada", age: 36 })
    const format = (modelRequest(objectText)!.body as { text: { format: any } }).text.format
    expect(format).toMatchObject({
      type: "json_schema",
      strict: true,
      schema: { type: "object", properties: { name: { type: "string" }, age: { type: "number" } } }
    })

    const outputText = prompt("json", "another person")
    const output = await within(generateText({ model, output: Output.object({ schema }), prompt: outputText }), "Output.object")
    expect(output.output).toEqual({ name: "Ada", age: 36 })
    expect((modelRequest(outputText)!.body as { text: { format: any } }).text.format.type).toBe("json_schema")
    await shutdownAndCheck(pool)
  })
})

describe("AI SDK over real codex: approvals", () => {
  it("codex's approval requests go to the approvals callback: accepted commands run, the default declines", {
    timeout: TEST_TIMEOUT_MS
  }, async () => {
    const asked: Array<string> = []
    const accepting = setup({
      threadDefaults: { ephemeral: true, approvalPolicy: "untrusted", sandbox: "read-only" },
      approvals: (request) => {
        asked.push(request.method === "item/commandExecution/requestApproval" ? String(request.params.command) : request.method)
        return "accept"
      }
    })
    const accepted = await within(generateText({ model: accepting.model, prompt: prompt("approval") }), "the accepted call")
    expect(asked).toEqual(["/bin/bash -c 'echo approved'"])
    expect(accepted.toolResults[0]).toMatchObject({ output: { status: "completed", exitCode: 0, output: "approved\n" } })
    await shutdownAndCheck(accepting.pool)

    const declining = setup({ threadDefaults: { ephemeral: true, approvalPolicy: "untrusted", sandbox: "read-only" } })
    const parts = await collect(streamText({ model: declining.model, prompt: prompt("approval", "again") }))
    expect(parts.find((p) => p.type === "tool-error")).toMatchObject({
      toolName: "codex_command_execution",
      error: { status: "declined" }
    })
    await shutdownAndCheck(declining.pool)
  })
})


/**
 * The AI SDK model's settings (`src/ai-sdk/settings.ts`) and provider options
 * (`createCodexProvider`): validation with messages that name the field, and
 * how settings become `turn/start` params and lease options.
 */
import { describe, expect, it } from "vitest"
import { createCodexProvider } from "../src/ai-sdk/index.ts"
import { acquireOptions, parseCallOptions, sandboxPolicyOf, turnParams } from "../src/ai-sdk/settings.ts"
import { PoolOptionsError } from "../src/errors.ts"

const pool = { acquire: async () => ({}) as never, release: () => {}, invalidate: async () => {} }

const message = (f: () => unknown): string => {
  try {
    f()
  } catch (error) {
    expect(error).toBeInstanceOf(PoolOptionsError)
    return (error as Error).message
  }
  throw new Error("expected a PoolOptionsError")
}

describe("providerOptions.codex", () => {
  it("accepts every setting of the protocol's shape", () => {
    const settings = {
      effort: "xhigh",
      summary: "concise",
      model: "gpt-5.5",
      cwd: "/work",
      sandboxPolicy: { type: "externalSandbox", networkAccess: "enabled" },
      approvalPolicy: {
        granular: {
          sandbox_approval: true,
          rules: false,
          skill_approval: false,
          request_permissions: true,
          mcp_elicitations: false
        }
      },
      personality: "friendly",
      workspace: "w",
      account: "a",
      threadId: "t",
      streamToolOutput: false
    }
    expect(parseCallOptions("providerOptions.codex", settings)).toEqual(settings)
    expect(parseCallOptions("providerOptions.codex", undefined)).toEqual({})
  })

  it("a bad value fails naming the field and the values it takes", () => {
    expect(message(() => parseCallOptions("providerOptions.codex", { effort: "max" }))).toBe(
      "Invalid providerOptions.codex: effort: Expected \"none\" | \"minimal\" | \"low\" | \"medium\" | \"high\" | \"xhigh\" | \"ultra\"."
    )
    expect(message(() => parseCallOptions("providerOptions.codex", { sandbox: "readOnly" }))).toMatch(
      /^Invalid providerOptions\.codex: sandbox: Expected "read-only" \| "workspace-write" \| "danger-full-access"/
    )
    expect(message(() => parseCallOptions("providerOptions.codex", { sandboxPolicy: { type: "readOnly" } }))).toMatch(
      /sandboxPolicy\.networkAccess: Missing key/
    )
    expect(message(() => parseCallOptions("providerOptions.codex", { cwd: "" }))).toMatch(/cwd: Expected a non-empty string/)
  })

  it("unknown fields, several errors at once, and non-objects", () => {
    expect(message(() => parseCallOptions("providerOptions.codex", { efort: "low", summary: 1 }))).toMatch(
      /^Invalid providerOptions\.codex: (efort: unknown option; summary: .*|summary: .*; efort: unknown option)\.$/
    )
    expect(message(() => parseCallOptions("providerOptions.codex", "low"))).toBe(
      "Invalid providerOptions.codex: expected an object, got \"low\"."
    )
  })

  it("sandbox and sandboxPolicy together are refused", () => {
    expect(message(() =>
      parseCallOptions("providerOptions.codex", { sandbox: "read-only", sandboxPolicy: { type: "dangerFullAccess" } })
    )).toBe("Invalid providerOptions.codex: sandbox: Expected either sandbox or sandboxPolicy, not both.")
  })

  it("become turn/start params: only what is set, the model id by default, sandbox as its policy", () => {
    expect(turnParams({}, "m", undefined)).toEqual({ model: "m" })
    expect(turnParams({ sandbox: "read-only", effort: "low", model: "o" }, "m", { type: "object" })).toEqual({
      model: "o",
      effort: "low",
      sandboxPolicy: { type: "readOnly", networkAccess: false },
      outputSchema: { type: "object" }
    })
    expect(sandboxPolicyOf("danger-full-access")).toEqual({ type: "dangerFullAccess" })
  })

  it("become lease options: account and workspace only when set, and the continued thread as prefer", () => {
    const signal = new AbortController().signal
    expect(acquireOptions(signal, {})).toEqual({ signal })
    expect(acquireOptions(signal, { account: "a", workspace: "w", threadId: "t" })).toEqual({
      signal,
      account: "a",
      workspace: "w"
    })
    expect(acquireOptions(signal, { threadId: "t" }, "t")).toEqual({ signal, prefer: "t" })
    expect(acquireOptions(signal, { workspace: "w", estimatedTokens: 2_000 })).toEqual({
      signal,
      workspace: "w",
      estimatedTokens: 2_000
    })
  })
})

describe("createCodexProvider options", () => {
  it("refuses a missing pool, bad numbers, unknown options, and bad callDefaults, naming each", () => {
    expect(message(() => createCodexProvider({} as never))).toMatch(
      /^Invalid createCodexProvider options: pool: .*a pool from createCodexWorkerPool/
    )
    expect(message(() => createCodexProvider({ pool, interruptTimeoutMs: -1 }))).toMatch(
      /interruptTimeoutMs: Expected a number of milliseconds >= 0/
    )
    expect(message(() => createCodexProvider({ pool, imageInput: "url" as never }))).toMatch(
      /imageInput: Expected "localImage" \| "dataUrl"/
    )
    expect(message(() => createCodexProvider({ pool, approval: () => "accept" } as never))).toMatch(
      /approval: unknown option/
    )
    expect(message(() => createCodexProvider({ pool, approvals: "decline" as never }))).toMatch(/approvals: .*a function/)
    expect(message(() => createCodexProvider({ pool, callDefaults: { effort: "max" as never } }))).toMatch(
      /^Invalid createCodexProvider options: callDefaults: effort: /
    )
  })

  it("accepts a complete set of options", () => {
    const codex = createCodexProvider({
      pool,
      threadDefaults: { ephemeral: true, approvalPolicy: "never", sandbox: "read-only" },
      callDefaults: { effort: "low", summary: "auto" },
      interruptTimeoutMs: 1_000,
      serverRequestTimeoutMs: Infinity,
      imageInput: "dataUrl",
      streamToolOutput: false,
      approvals: () => "decline",
      permissions: () => ({ permissions: {}, scope: "turn" }),
      userInput: () => ({ answers: {} }),
      elicitation: () => ({ action: "cancel", content: null, _meta: null }),
      chatgptAuthTokens: () => ({ accessToken: "", chatgptAccountId: "", chatgptPlanType: null })
    })
    const model = codex("m")
    expect(model).toMatchObject({ specificationVersion: "v3", provider: "codex", modelId: "m" })
    expect(codex.languageModel("m").modelId).toBe("m")
  })

  it("declares only file: image URLs as supported, so the AI SDK downloads http(s) images", async () => {
    const model = createCodexProvider({ pool })("m")
    const supported = await model.supportedUrls
    expect(Object.keys(supported)).toEqual(["image/*"])
    const [pattern] = supported["image/*"]!
    expect(pattern!.test("file:///tmp/a.png")).toBe(true)
    expect(pattern!.test("https://example.com/a.png")).toBe(false)
    expect(pattern!.test("data:image/png;base64,AAAA")).toBe(false)
  })
})

/**
 * Tests of the offline codex configuration (src/testing/codexConfig.ts) as
 * data: the overrides it produces and the throwaway CODEX_HOME. That codex
 * accepts them is pinned by the real-codex tests (ModelServer.codex.test.ts,
 * realCodexSmoke.test.ts).
 */
import { existsSync, writeFileSync } from "node:fs"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import {
  codexArgs,
  codexConfigOverrides,
  codexEnv,
  codexProcessOptions,
  makeCodexHome,
  MODEL_SERVER_API_KEY_ENV
} from "../../src/testing/codexConfig.ts"

const provider = (args: ReadonlyArray<string>) => args.find((arg) => arg.startsWith("model_providers.mock="))

describe("codexArgs", () => {
  it("runs app-server with every setting as a -c override: the mock provider at the base url, remote features off", () => {
    const args = codexArgs({ baseUrl: "http://127.0.0.1:1234/v1" })
    expect(args[0]).toBe("app-server")
    expect(args.filter((_, i) => i % 2 === 1).every((flag) => flag === "-c")).toBe(true)
    expect(args).toContain('model="mock-model"')
    expect(args).toContain("model_provider=mock")
    expect(provider(args)).toBe(
      'model_providers.mock={name="Mock",base_url="http://127.0.0.1:1234/v1",env_key="MOCK_API_KEY",' +
        'wire_api="responses",request_max_retries=0,stream_max_retries=0}'
    )
    for (const off of ["features.plugins", "features.apps", "features.remote_plugin", "features.tool_suggest"]) {
      expect(args).toContain(`${off}=false`)
    }
    expect(args).toContain("analytics.enabled=false")
    expect(args).toContain("features.shell_snapshot=false")
  })

  it("sets the model, the retries and the stream idle timeout, and appends extra overrides last", () => {
    const overrides = codexConfigOverrides({
      baseUrl: "http://x/v1",
      model: "gpt-test",
      retries: { request: 1, stream: 3 },
      streamIdleTimeoutMs: 500,
      config: ['model="wins"']
    })
    expect(overrides[0]).toBe('model="gpt-test"')
    expect(provider(overrides)).toContain("request_max_retries=1,stream_max_retries=3,stream_idle_timeout_ms=500}")
    expect(overrides.at(-1)).toBe('model="wins"')
  })

  it("rejects a missing base url and bad retry counts", () => {
    expect(() => codexArgs({ baseUrl: "" })).toThrow(/baseUrl/)
    expect(() => codexArgs({ baseUrl: "http://x/v1", retries: { stream: -1 } })).toThrow(/retries.stream/)
    expect(() => codexArgs({ baseUrl: "http://x/v1", retries: { request: 1.5 } })).toThrow(/retries.request/)
  })
})

describe("codexEnv and codexProcessOptions", () => {
  it("codexEnv gives only the variables to add: the API key (default mock-key) and CODEX_HOME if asked", () => {
    expect(codexEnv()).toEqual({ [MODEL_SERVER_API_KEY_ENV]: "mock-key" })
    expect(codexEnv({ apiKey: "sk-1", codexHome: "/tmp/h" })).toEqual({ MOCK_API_KEY: "sk-1", CODEX_HOME: "/tmp/h" })
  })

  it("codexProcessOptions gives pool options: args, the key and codexHome", () => {
    expect(codexProcessOptions({ baseUrl: "http://x/v1", apiKey: "k", codexHome: "/tmp/h" })).toEqual({
      args: codexArgs({ baseUrl: "http://x/v1" }),
      env: { MOCK_API_KEY: "k" },
      codexHome: "/tmp/h"
    })
    expect(codexProcessOptions({ baseUrl: "http://x/v1" })).not.toHaveProperty("codexHome")
  })
})

describe("makeCodexHome", () => {
  it("creates an empty directory that cleanup removes, idempotently", () => {
    const home = makeCodexHome()
    expect(existsSync(home.path)).toBe(true)
    writeFileSync(path.join(home.path, "config.toml"), "")
    home.cleanup()
    expect(existsSync(home.path)).toBe(false)
    home.cleanup()
  })

  it("is removed at the end of a using block", () => {
    let dir = ""
    {
      using home = makeCodexHome()
      dir = home.path
      expect(existsSync(dir)).toBe(true)
    }
    expect(existsSync(dir)).toBe(false)
  })
})

/**
 * Prompt to turn input (`src/ai-sdk/promptInput.ts`) and the call's temporary
 * files (`src/ai-sdk/tempFiles.ts`): which thread a prompt continues, what is
 * new to it, how messages, images and files become codex `UserInput`s, the
 * warnings for what is not sent, and files that never outlive their call.
 */
import type { LanguageModelV3Prompt } from "@ai-sdk/provider"
import { existsSync, readFileSync, statSync } from "node:fs"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { findThread, materialize, planInput } from "../src/ai-sdk/promptInput.ts"
import { TempFiles } from "../src/ai-sdk/tempFiles.ts"

const user = (text: string): LanguageModelV3Prompt[number] => ({ role: "user", content: [{ type: "text", text }] })
const assistant = (text: string, threadId?: string): LanguageModelV3Prompt[number] => ({
  role: "assistant",
  content: [{ type: "text", text, ...(threadId === undefined ? {} : { providerOptions: { codex: { threadId } } }) }]
})

describe("which thread a prompt continues", () => {
  it("the thread in the last assistant message's metadata, and only the messages after it are new", () => {
    const prompt: LanguageModelV3Prompt = [
      { role: "system", content: "Be brief." },
      user("first"),
      assistant("answer", "T1"),
      user("second")
    ]
    expect(findThread(prompt)).toEqual({ threadId: "T1", index: 2 })
    const plan = planInput(prompt)
    expect(plan.system).toBe("Be brief.")
    expect(plan.newInput).toEqual([{ type: "text", text: "second" }])
    expect(plan.transcriptInput).toEqual([{ type: "text", text: "User: first\n\nAssistant: answer\n\nUser: second" }])
  })

  it("an assistant message without a thread id ends the search (it was another model's)", () => {
    expect(findThread([user("a"), assistant("x", "T1"), user("b"), assistant("y"), user("c")])).toBeUndefined()
  })

  it("an explicit threadId wins; when the prompt names another thread, all of the prompt is new", () => {
    const prompt = [user("first"), assistant("answer", "T1"), user("second")]
    expect(planInput(prompt, "T1").newInput).toEqual([{ type: "text", text: "second" }])
    expect(planInput(prompt, "T2").found).toBeUndefined()
    expect(planInput(prompt, "T2").newInput).toEqual([{
      type: "text",
      text: "User: first\n\nAssistant: answer\n\nUser: second"
    }])
  })

  it("reasoning and Codex's tool parts are not replayed in a transcript", () => {
    const plan = planInput([
      user("q"),
      {
        role: "assistant",
        content: [
          { type: "reasoning", text: "thinking" },
          { type: "tool-call", toolCallId: "c", toolName: "codex_command_execution", input: {}, providerExecuted: true },
          { type: "text", text: "a" }
        ]
      },
      user("q2")
    ])
    expect(plan.newInput).toEqual([{ type: "text", text: "User: q\n\nAssistant: a\n\nUser: q2" }])
    expect(plan.warnings).toEqual([])
  })

  it("tool results (no parked turn takes them) are sent as text naming the tool, its input and call id", () => {
    const call = (id: string) => ({ type: "tool-call" as const, toolCallId: id, toolName: "weather", input: { city: id } })
    const result = (id: string, output: any) => ({ type: "tool-result" as const, toolCallId: id, toolName: "weather", output })
    const prompt: LanguageModelV3Prompt = [
      user("q"),
      { role: "assistant", content: [call("a"), call("b"), call("c"), call("d")], providerOptions: { codex: { threadId: "T1" } } },
      {
        role: "tool",
        content: [
          result("a", { type: "text", value: "sunny" }),
          result("b", { type: "json", value: { temp: 21 } }),
          result("c", { type: "error-text", value: "no such city" }),
          result("d", { type: "execution-denied", reason: "not allowed" })
        ]
      }
    ]
    const plan = planInput(prompt)
    expect(plan.found).toEqual({ threadId: "T1", index: 1 })
    expect(plan.newInput).toEqual([{
      type: "text",
      text: [
        `The tool call weather with input {"city":"a"} (call id a) returned: sunny`,
        `The tool call weather with input {"city":"b"} (call id b) returned: {"temp":21}`,
        `The tool call weather with input {"city":"c"} (call id c) failed: no such city`,
        `The tool call weather with input {"city":"d"} (call id d) was denied: not allowed`
      ].join("\n")
    }])
    expect(plan.warnings).toEqual([])
    // A new thread gets the whole conversation, the results labelled as the tool's.
    expect(plan.transcriptInput).toEqual([{
      type: "text",
      text: expect.stringMatching(/^User: q\n\nTool: The tool call weather with input \{"city":"a"\}/)
    }])
  })

  it("a content tool result keeps its images in place; other files are a note and a warning", () => {
    const plan = planInput([{
      role: "tool",
      content: [{
        type: "tool-result",
        toolCallId: "c1",
        toolName: "shot",
        output: {
          type: "content",
          value: [
            { type: "text", text: "here:" },
            { type: "image-data", data: "iVBORw==", mediaType: "image/png" },
            { type: "file-data", data: "JVBERg==", mediaType: "application/pdf" }
          ]
        }
      }]
    }])
    expect(plan.newInput).toEqual([
      { type: "text", text: "The tool call shot (call id c1) returned: here:" },
      { type: "imageBytes", data: Buffer.from("iVBORw==", "base64"), mediaType: "image/png" },
      { type: "text", text: " [a file of type application/pdf, not sent]" }
    ])
    expect(plan.warnings).toMatchObject([{ type: "unsupported", feature: "tool result files of type application/pdf" }])
  })
})

describe("files in the prompt", () => {
  const png = new Uint8Array([0x89, 0x50, 0x4e, 0x47])
  const withFile = (data: Uint8Array | string | URL, mediaType: string, filename?: string) =>
    planInput([{
      role: "user",
      content: [
        { type: "text", text: "see" },
        { type: "file", data, mediaType, ...(filename === undefined ? {} : { filename }) },
        { type: "text", text: "thanks" }
      ]
    }])

  it("images stay in place between the texts: bytes, base64, file: and data: URLs", () => {
    expect(withFile(png, "image/png").newInput).toEqual([
      { type: "text", text: "see" },
      { type: "imageBytes", data: png, mediaType: "image/png" },
      { type: "text", text: "thanks" }
    ])
    expect(withFile(Buffer.from(png).toString("base64"), "image/jpeg").newInput[1]).toEqual({
      type: "imageBytes",
      data: Buffer.from(png),
      mediaType: "image/jpeg"
    })
    expect(withFile(new URL("file:///tmp/x.png"), "image/png").newInput[1]).toEqual({
      type: "imagePath",
      path: "/tmp/x.png"
    })
    expect(withFile(new URL("data:image/png;base64,AAAA"), "image/png").newInput[1]).toEqual({
      type: "imageUrl",
      url: "data:image/png;base64,AAAA"
    })
  })

  it("a remote image URL is not sent (codex refuses it), with a warning that says why", () => {
    const plan = withFile(new URL("https://example.com/cat.png"), "image/png")
    expect(plan.newInput).toEqual([{ type: "text", text: "seethanks" }])
    expect(plan.warnings).toMatchObject([{ type: "unsupported", feature: "image URL https:" }])
  })

  it("text files are inlined with their name and media type; others are unsupported warnings", () => {
    expect(withFile(Buffer.from("a \"quoted\" line"), "text/plain", "a&b.txt").newInput).toEqual([{
      type: "text",
      text: "see<file name=\"a&amp;b.txt\" media-type=\"text/plain\">\na \"quoted\" line\n</file>thanks"
    }])
    const pdf = withFile(Buffer.from("%PDF"), "application/pdf")
    expect(pdf.newInput).toEqual([{ type: "text", text: "seethanks" }])
    expect(pdf.warnings).toMatchObject([{ type: "unsupported", feature: "file parts of type application/pdf" }])
  })

  it("materialize writes image bytes to a temporary file (0600 in a 0700 dir) that dispose removes", async () => {
    const files = new TempFiles()
    const input = await materialize(withFile(png, "image/png").newInput, files, "localImage")
    expect(input[0]).toEqual({ type: "text", text: "see", text_elements: [] })
    const image = input[1] as { type: "localImage"; path: string }
    expect(image.type).toBe("localImage")
    expect(new Uint8Array(readFileSync(image.path))).toEqual(png)
    expect(statSync(image.path).mode & 0o777).toBe(0o600)
    expect(statSync(path.dirname(image.path)).mode & 0o777).toBe(0o700)
    files.dispose()
    expect(existsSync(path.dirname(image.path))).toBe(false)
    files.dispose() // idempotent
  })

  it("materialize inlines bytes as a data URL in dataUrl mode and writes nothing", async () => {
    const files = new TempFiles()
    const input = await materialize(withFile(png, "image/png").newInput, files, "dataUrl")
    expect(input[1]).toEqual({ type: "image", url: `data:image/png;base64,${Buffer.from(png).toString("base64")}` })
    expect(files.directory).toBeUndefined()
  })

  it("a write that finishes after dispose removes its file and rejects", async () => {
    const files = new TempFiles()
    const writing = files.write(png, "image/png")
    files.dispose()
    await expect(writing).rejects.toThrow(/temporary files are gone/)
    expect(files.directory === undefined || !existsSync(files.directory)).toBe(true)
    await expect(files.write(png, "image/png")).rejects.toThrow(/temporary files are gone/)
  })
})

/**
 * The AI SDK prompt as a Codex turn's input (`UserInput[]`): which thread
 * the prompt continues, which messages are new to it, the system text, and
 * the files.
 *
 * Guarantees:
 * - the thread a prompt continues is the one in the provider metadata of its
 *   last assistant message (`providerOptions.codex.threadId`, which the model
 *   writes on every part); only the messages after it are new;
 * - a conversation of one new message is sent as its text; several are sent
 *   as a transcript (`User: ...`, `Assistant: ...`), with images and files in
 *   place;
 * - image file parts (bytes, base64 or `data:`/`file:` URLs) become image
 *   inputs: `file:` URLs a `localImage` of that path, bytes a `localImage` of
 *   a temporary file (see `TempFiles`) or, with `imageInput: "dataUrl"`, an
 *   inline data URL; `text/*` files are inlined as text in a `<file>` block;
 * - results of AI SDK tools (`tool` messages) that no parked turn takes
 *   (see `toolParking.ts`: it timed out, or lived in another process) are
 *   sent as text, each naming its tool, input and call id, with the images
 *   of `content` results as image inputs;
 * - whatever is not sent gets an `unsupported` warning, never silence:
 *   remote image URLs (the AI SDK downloads them first, as the model's
 *   `supportedUrls` leaves them out), other media types;
 * - nothing touches the disk until `materialize`, which runs on a leased
 *   worker and whose files are removed when the call ends.
 *
 * Limits: assistant reasoning, tool calls and Codex's own tool parts are not
 * replayed in a transcript (a thread that is continued has them already; a
 * tool result names its call).
 *
 * @since 0.1.0
 */
import type {
  LanguageModelV3FilePart,
  LanguageModelV3Prompt,
  LanguageModelV3ToolResultPart,
  SharedV3Warning
} from "@ai-sdk/provider"
import { fileURLToPath } from "node:url"
import type * as CodexProtocol from "../CodexProtocol.ts"
import type { TempFiles } from "./tempFiles.ts"

type UserInput = CodexProtocol.v2.UserInput

/**
 * How image bytes reach codex: a temporary file read as `localImage`
 * (codex reads, checks and resizes it), or an inline `data:` URL.
 *
 * @since 0.1.0
 * @category models
 */
export type ImageInputMode = "localImage" | "dataUrl"

/** A piece of a turn's input before it is written out. */
export type InputSegment =
  | { readonly type: "text"; readonly text: string }
  | { readonly type: "imageBytes"; readonly data: Uint8Array; readonly mediaType: string }
  | { readonly type: "imagePath"; readonly path: string }
  | { readonly type: "imageUrl"; readonly url: string }

/** What a prompt asks of a turn. */
export interface PromptPlan {
  /** The system messages, for a new thread's `developerInstructions` ("" when none). */
  readonly system: string
  /** The thread the prompt's metadata continues, and the index of the assistant message naming it. */
  readonly found: { readonly threadId: string; readonly index: number } | undefined
  /** The input for the thread the prompt continues: the messages after `found` (all when none). */
  readonly newInput: ReadonlyArray<InputSegment>
  /** The input for a new thread that must get the whole conversation. */
  readonly transcriptInput: ReadonlyArray<InputSegment>
  readonly warnings: ReadonlyArray<SharedV3Warning>
}

/** The thread id in a part's or message's provider metadata. */
export const threadIdIn = (options: unknown): string | undefined => {
  const codex = (options as { codex?: { threadId?: unknown } } | undefined)?.codex
  return typeof codex?.threadId === "string" ? codex.threadId : undefined
}

/** The thread id a previous answer of this model left in the prompt, and where it was. */
export const findThread = (
  prompt: LanguageModelV3Prompt
): { readonly threadId: string; readonly index: number } | undefined => {
  for (let i = prompt.length - 1; i >= 0; i--) {
    const message = prompt[i]!
    if (message.role !== "assistant") continue
    const fromMessage = threadIdIn(message.providerOptions)
    if (fromMessage !== undefined) return { threadId: fromMessage, index: i }
    for (const part of message.content) {
      const fromPart = threadIdIn(part.providerOptions)
      if (fromPart !== undefined) return { threadId: fromPart, index: i }
    }
    return undefined
  }
  return undefined
}

/** Collects warnings once each. */
class Warnings {
  readonly list: Array<SharedV3Warning> = []
  readonly #seen = new Set<string>()
  add(warning: SharedV3Warning): void {
    const key = JSON.stringify(warning)
    if (this.#seen.has(key)) return
    this.#seen.add(key)
    this.list.push(warning)
  }
}

/** Builds segments, merging adjacent text. */
class Segments {
  readonly list: Array<InputSegment> = []
  #text = ""
  text(text: string): void {
    this.#text += text
  }
  other(segment: InputSegment): void {
    this.#flush()
    this.list.push(segment)
  }
  done(): Array<InputSegment> {
    this.#flush()
    return this.list
  }
  #flush(): void {
    if (this.#text !== "") this.list.push({ type: "text", text: this.#text })
    this.#text = ""
  }
}

const bytesOf = (data: Uint8Array | string): Uint8Array =>
  typeof data === "string" ? Buffer.from(data, "base64") : data

const textOf = (data: Uint8Array | string): string => Buffer.from(bytesOf(data)).toString("utf8")

const attribute = (value: string): string => value.replace(/&/g, "&amp;").replace(/"/g, "&quot;")

/** Adds a file part to `segments`, or a warning saying why it is not sent. */
const addFile = (part: LanguageModelV3FilePart, segments: Segments, warnings: Warnings): void => {
  const mediaType = part.mediaType.toLowerCase()
  const data = part.data
  if (mediaType === "image" || mediaType.startsWith("image/")) {
    if (data instanceof URL) {
      if (data.protocol === "file:") return segments.other({ type: "imagePath", path: fileURLToPath(data) })
      if (data.protocol === "data:") return segments.other({ type: "imageUrl", url: data.href })
      return warnings.add({
        type: "unsupported",
        feature: `image URL ${data.protocol}`,
        details: "The Codex app-server refuses remote image URLs; pass the image's bytes (the AI SDK downloads " +
          "http(s) URLs itself unless they are declared supported)."
      })
    }
    const type = mediaType === "image" || mediaType === "image/*" ? "image/png" : mediaType
    return segments.other({ type: "imageBytes", data: bytesOf(data), mediaType: type })
  }
  if (mediaType.startsWith("text/")) {
    if (data instanceof URL) {
      return warnings.add({
        type: "unsupported",
        feature: `text file URL ${data.protocol}`,
        details: "Text files are inlined from their content; pass the bytes."
      })
    }
    const name = part.filename === undefined ? "" : ` name="${attribute(part.filename)}"`
    return segments.text(`<file${name} media-type="${attribute(part.mediaType)}">\n${textOf(data)}\n</file>`)
  }
  warnings.add({
    type: "unsupported",
    feature: `file parts of type ${part.mediaType}`,
    details: "Codex takes images (sent as image inputs) and text/* files (inlined as text); this file is not sent."
  })
}

const json = (value: unknown): string => {
  const text = JSON.stringify(value)
  return text === undefined ? String(value) : text
}

/** Adds an image of a tool result (base64 bytes or a URL), or a warning. */
const addResultImage = (
  image: { readonly data: string; readonly mediaType: string } | { readonly url: string },
  segments: Segments,
  warnings: Warnings
): void => {
  if ("data" in image) return segments.other({ type: "imageBytes", data: bytesOf(image.data), mediaType: image.mediaType })
  if (image.url.startsWith("data:")) return segments.other({ type: "imageUrl", url: image.url })
  warnings.add({
    type: "unsupported",
    feature: "tool result image URLs",
    details: "The Codex app-server refuses remote image URLs in its input; a tool result's image URL is not sent."
  })
}

/**
 * A tool result as text (and images): what the model needs to know when the
 * turn that asked for it is gone. `calls` holds the inputs of the prompt's
 * tool calls, by id.
 */
const addToolResult = (
  part: LanguageModelV3ToolResultPart,
  calls: ReadonlyMap<string, unknown>,
  segments: Segments,
  warnings: Warnings
): void => {
  const input = calls.has(part.toolCallId) ? ` with input ${json(calls.get(part.toolCallId))}` : ""
  const call = `The tool call ${part.toolName}${input} (call id ${part.toolCallId})`
  const output = part.output
  switch (output.type) {
    case "text":
      return segments.text(`${call} returned: ${output.value}`)
    case "json":
      return segments.text(`${call} returned: ${json(output.value)}`)
    case "error-text":
      return segments.text(`${call} failed: ${output.value}`)
    case "error-json":
      return segments.text(`${call} failed: ${json(output.value)}`)
    case "execution-denied":
      return segments.text(`${call} was denied${output.reason === undefined ? "." : `: ${output.reason}`}`)
    case "content": {
      segments.text(`${call} returned:`)
      for (const item of output.value) {
        switch (item.type) {
          case "text":
            segments.text(` ${item.text}`)
            break
          case "image-data":
            addResultImage({ data: item.data, mediaType: item.mediaType }, segments, warnings)
            break
          case "image-url":
            addResultImage({ url: item.url }, segments, warnings)
            break
          case "file-data":
            if (item.mediaType.toLowerCase().startsWith("image/")) {
              addResultImage({ data: item.data, mediaType: item.mediaType }, segments, warnings)
              break
            }
            segments.text(` [a file of type ${item.mediaType}, not sent]`)
            warnings.add({
              type: "unsupported",
              feature: `tool result files of type ${item.mediaType}`,
              details: "Codex takes text and images in a tool result; the file is not sent."
            })
            break
          default:
            segments.text(` [a ${item.type} part, not sent]`)
            warnings.add({
              type: "unsupported",
              feature: `tool result parts of type ${item.type}`,
              details: "Codex takes text and images in a tool result; the part is not sent."
            })
        }
      }
      return
    }
  }
}

/** The content of one message as segments; `label` prefixes it in a transcript. */
const addMessage = (
  message: LanguageModelV3Prompt[number],
  label: string | undefined,
  calls: ReadonlyMap<string, unknown>,
  segments: Segments,
  warnings: Warnings
): void => {
  if (label !== undefined) segments.text(`${label}: `)
  if (message.role === "system") return segments.text(message.content)
  let first = true
  for (const part of message.content) {
    switch (part.type) {
      case "text":
        segments.text(part.text)
        break
      case "file":
        if (message.role === "user") addFile(part, segments, warnings)
        break
      case "tool-result":
        // Codex's own (provider-executed) results need no replay; an AI SDK tool's result is sent as text.
        if (message.role === "tool") {
          if (!first) segments.text("\n")
          first = false
          addToolResult(part, calls, segments, warnings)
        }
        break
      default:
        // reasoning, Codex's tool calls, tool approval responses: not replayed
        break
    }
  }
}

const labels = { user: "User", assistant: "Assistant", tool: "Tool" } as const

/** The inputs of the prompt's tool calls, by call id. */
const callInputs = (prompt: LanguageModelV3Prompt): Map<string, unknown> => {
  const calls = new Map<string, unknown>()
  for (const message of prompt) {
    if (message.role !== "assistant") continue
    for (const part of message.content) if (part.type === "tool-call") calls.set(part.toolCallId, part.input)
  }
  return calls
}

/** The input of `messages`: one message as is, several as a labelled transcript. */
const inputOf = (
  messages: LanguageModelV3Prompt,
  calls: ReadonlyMap<string, unknown>,
  warnings: Warnings
): Array<InputSegment> => {
  // Messages with something to send (an assistant message of tool calls only has nothing).
  const relevant = messages.filter((m): m is Exclude<typeof m, { role: "system" }> =>
    m.role === "user" ||
    (m.role === "assistant" && m.content.some((part) => part.type === "text")) ||
    (m.role === "tool" && m.content.some((part) => part.type === "tool-result"))
  )
  const segments = new Segments()
  relevant.forEach((message, index) => {
    if (index > 0) segments.text("\n\n")
    addMessage(message, relevant.length === 1 ? undefined : labels[message.role], calls, segments, warnings)
  })
  return segments.done()
}

/**
 * Plans a turn's input from a prompt: nothing is written anywhere yet.
 *
 * `explicitThreadId` (the call's `providerOptions.codex.threadId`) wins over
 * the thread named in the prompt's metadata; when the two differ, every
 * message of the prompt is new to the thread.
 */
export const planInput = (prompt: LanguageModelV3Prompt, explicitThreadId?: string): PromptPlan => {
  const warnings = new Warnings()
  const metadata = findThread(prompt)
  const found = explicitThreadId === undefined || metadata?.threadId === explicitThreadId ? metadata : undefined
  const newMessages = found === undefined ? prompt : prompt.slice(found.index + 1)
  const system = prompt.filter((m) => m.role === "system").map((m) => m.content as string).join("\n\n")
  const calls = callInputs(prompt)
  const newInput = inputOf(newMessages, calls, warnings)
  const transcriptInput = found === undefined ? newInput : inputOf(prompt, calls, warnings)
  return { system, found, newInput, transcriptInput, warnings: warnings.list }
}

/**
 * Writes the input out: image bytes to `files` (or inline data URLs), text
 * as codex's `text` inputs.
 */
export const materialize = async (
  segments: ReadonlyArray<InputSegment>,
  files: TempFiles,
  mode: ImageInputMode
): Promise<Array<UserInput>> => {
  const input: Array<UserInput> = []
  for (const segment of segments) {
    switch (segment.type) {
      case "text":
        input.push({ type: "text", text: segment.text, text_elements: [] })
        break
      case "imagePath":
        input.push({ type: "localImage", path: segment.path })
        break
      case "imageUrl":
        input.push({ type: "image", url: segment.url })
        break
      case "imageBytes":
        input.push(
          mode === "dataUrl"
            ? { type: "image", url: `data:${segment.mediaType};base64,${Buffer.from(segment.data).toString("base64")}` }
            : { type: "localImage", path: await files.write(segment.data, segment.mediaType) }
        )
        break
    }
  }
  return input
}

/** A short description of segments for `request.body` (no image bytes). */
export const describeInput = (segments: ReadonlyArray<InputSegment>): Array<unknown> =>
  segments.map((segment) =>
    segment.type === "imageBytes"
      ? { type: "image", mediaType: segment.mediaType, bytes: segment.data.byteLength }
      : segment
  )

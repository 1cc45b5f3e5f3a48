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
 * - whatever is not sent gets an `unsupported` warning, never silence:
 *   remote image URLs (the AI SDK downloads them first, as the model's
 *   `supportedUrls` leaves them out), other media types, tool results;
 * - nothing touches the disk until `materialize`, which runs on a leased
 *   worker and whose files are removed when the call ends.
 *
 * Limits: assistant reasoning and Codex's own tool parts are not replayed in
 * a transcript (a thread that is continued has them already); the roles
 * `tool` and the AI SDK's client tool results are not sent (function tools
 * across steps are a later addition, see `toolParking.ts`).
 *
 * @since 0.1.0
 */
import type {
  LanguageModelV3FilePart,
  LanguageModelV3Prompt,
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

/** The content of one message as segments; `label` prefixes it in a transcript. */
const addMessage = (
  message: LanguageModelV3Prompt[number],
  label: string | undefined,
  segments: Segments,
  warnings: Warnings
): void => {
  if (label !== undefined) segments.text(`${label}: `)
  if (message.role === "system") return segments.text(message.content)
  for (const part of message.content) {
    switch (part.type) {
      case "text":
        segments.text(part.text)
        break
      case "file":
        if (message.role === "user") addFile(part, segments, warnings)
        break
      case "tool-result":
        // Codex's own (provider-executed) results need no replay; a client tool's result cannot be sent yet.
        if (message.role === "tool") {
          warnings.add({
            type: "unsupported",
            feature: "tool results",
            details: "Results of AI SDK tools are not sent to Codex; Codex runs its own tools."
          })
        }
        break
      default:
        // reasoning, Codex's tool calls, tool approval responses: not replayed
        break
    }
  }
}

/** The input of `messages`: one message as is, several as a labelled transcript. */
const inputOf = (messages: LanguageModelV3Prompt, warnings: Warnings): Array<InputSegment> => {
  const relevant = messages.filter((m) => m.role === "user" || m.role === "assistant")
  for (const message of messages) {
    if (message.role === "tool") addMessage(message, undefined, new Segments(), warnings)
  }
  const segments = new Segments()
  relevant.forEach((message, index) => {
    if (index > 0) segments.text("\n\n")
    addMessage(message, relevant.length === 1 ? undefined : message.role === "user" ? "User" : "Assistant", segments, warnings)
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
  const newInput = inputOf(newMessages, warnings)
  const transcriptInput = found === undefined ? newInput : inputOf(prompt, warnings)
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

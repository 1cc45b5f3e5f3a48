/**
 * Token usage of a turn, from codex's `thread/tokenUsage/updated`
 * notifications, as the AI SDK's `LanguageModelV3Usage`.
 *
 * Guarantees: the usage of a turn is the sum of the `last` breakdowns of the
 * notifications that carry the turn's id (codex sends one after each model
 * request, so a turn that ran a command sums two or more); reasoning tokens
 * are reported as `outputTokens.reasoning`, text tokens as the rest; cached
 * input as `cacheRead`.
 *
 * A turn that runs over several steps (AI SDK tools, see `toolParking.ts`)
 * reports at each step what arrived since the previous one. Codex reports a
 * model request's usage only once the tool calls it made are answered, so a
 * step that ends on tool calls usually reports none, and the next step
 * reports that request too.
 *
 * Limits: only meaningful for a turn that completed. On a failed turn codex
 * may repeat the previous turn's figures (see notes/real-codex.md), so the
 * model reports no usage for turns that did not complete.
 *
 * @since 0.1.0
 */
import type { LanguageModelV3Usage } from "@ai-sdk/provider"
import type * as CodexProtocol from "../CodexProtocol.ts"

type Breakdown = CodexProtocol.v2.TokenUsageBreakdown

/** The usage of nothing: every count unknown. */
export const emptyUsage = (): LanguageModelV3Usage => ({
  inputTokens: { total: undefined, noCache: undefined, cacheRead: undefined, cacheWrite: undefined },
  outputTokens: { total: undefined, text: undefined, reasoning: undefined }
})

/** Adds up the `last` breakdowns of one turn. */
export class TurnUsage {
  #sum: Breakdown | undefined

  /** Adds the breakdown of one model request. */
  add(last: Breakdown | null | undefined): void {
    if (last === null || last === undefined) return
    const sum = this.#sum
    this.#sum = sum === undefined ? { ...last } : {
      totalTokens: sum.totalTokens + last.totalTokens,
      inputTokens: sum.inputTokens + last.inputTokens,
      cachedInputTokens: sum.cachedInputTokens + last.cachedInputTokens,
      cacheWriteInputTokens: sum.cacheWriteInputTokens + last.cacheWriteInputTokens,
      outputTokens: sum.outputTokens + last.outputTokens,
      reasoningOutputTokens: sum.reasoningOutputTokens + last.reasoningOutputTokens
    }
  }

  /** The sum so far as AI SDK usage, then starts over (a step's usage: what came since the last step). */
  take(): LanguageModelV3Usage {
    const usage = this.toUsage()
    this.#sum = undefined
    return usage
  }

  /** The sum as AI SDK usage (`raw` holds codex's summed breakdown); empty if nothing was added. */
  toUsage(): LanguageModelV3Usage {
    const sum = this.#sum
    if (sum === undefined) return emptyUsage()
    const num = (n: number | undefined) => (typeof n === "number" && Number.isFinite(n) ? n : undefined)
    const input = num(sum.inputTokens)
    const cached = num(sum.cachedInputTokens)
    const output = num(sum.outputTokens)
    const reasoning = num(sum.reasoningOutputTokens)
    return {
      inputTokens: {
        total: input,
        noCache: input !== undefined && cached !== undefined ? input - cached : undefined,
        cacheRead: cached,
        cacheWrite: num(sum.cacheWriteInputTokens)
      },
      outputTokens: {
        total: output,
        text: output !== undefined && reasoning !== undefined ? output - reasoning : undefined,
        reasoning
      },
      raw: { ...sum }
    }
  }
}

/**
 * The AI SDK model's settings: the per-call `providerOptions.codex` (and the
 * provider's `callDefaults`, same shape), validated with Schema, and how they
 * become `turn/start` params and the pool lease's options.
 *
 * Guarantees:
 * - a bad field fails at once, before any worker is leased, with a
 *   `PoolOptionsError` whose message names it:
 *   `Invalid providerOptions.codex: effort: Expected "none" | "minimal" | ...`;
 * - unknown fields are refused (a typo is never ignored);
 * - the accepted values are those of the pinned protocol's `TurnStartParams`
 *   (checked at compile time against the generated types), so a validated
 *   setting has the shape codex expects.
 *
 * Limits: values are checked for shape only. Whether the model knows an
 * effort, or a `cwd` exists, is codex's business (a missing `cwd` is
 * accepted by codex 0.169). `effort` is a free string in the protocol; the
 * list below is the set codex documents today. `turn/start` overrides apply
 * to the turn and to later turns of the same thread (codex's rule), so a
 * continued thread keeps the previous call's settings unless overridden.
 *
 * @since 0.1.0
 */
import { Schema } from "effect"
import type * as CodexProtocol from "../CodexProtocol.ts"
import { PoolOptionsError } from "../errors.ts"

type TurnStartParams = CodexProtocol.v2.TurnStartParams

const NonEmptyString = Schema.String.check(Schema.makeFilter((s: string) => s !== "" || "Expected a non-empty string"))

const SandboxMode = Schema.Literals(["read-only", "workspace-write", "danger-full-access"])

const SandboxPolicy = Schema.Union([
  Schema.Struct({ type: Schema.Literal("dangerFullAccess") }),
  Schema.Struct({ type: Schema.Literal("readOnly"), networkAccess: Schema.Boolean }),
  Schema.Struct({ type: Schema.Literal("externalSandbox"), networkAccess: Schema.Literals(["restricted", "enabled"]) }),
  Schema.Struct({
    type: Schema.Literal("workspaceWrite"),
    writableRoots: Schema.Array(Schema.String),
    networkAccess: Schema.Boolean,
    excludeTmpdirEnvVar: Schema.Boolean,
    excludeSlashTmp: Schema.Boolean
  })
])

const ApprovalPolicy = Schema.Union([
  Schema.Literals(["untrusted", "on-request", "never"]),
  Schema.Struct({
    granular: Schema.Struct({
      sandbox_approval: Schema.Boolean,
      rules: Schema.Boolean,
      skill_approval: Schema.Boolean,
      request_permissions: Schema.Boolean,
      mcp_elicitations: Schema.Boolean
    })
  })
])

/**
 * Schema of `providerOptions.codex` (every field optional, unknown fields refused).
 *
 * @since 0.1.0
 * @category schemas
 */
export const CallOptionsSchema = Schema.Struct({
  /** Reasoning effort of the turn (codex's `turn/start.effort`). */
  effort: Schema.optional(Schema.Literals(["none", "minimal", "low", "medium", "high", "xhigh", "ultra"])),
  /** Reasoning summary of the turn; reasoning parts need it (and `effort`). */
  summary: Schema.optional(Schema.Literals(["auto", "concise", "detailed", "none"])),
  /** Overrides the model id for this call. */
  model: Schema.optional(NonEmptyString),
  /** Working directory of the turn. */
  cwd: Schema.optional(NonEmptyString),
  /** Sandbox mode, shorthand for the matching `sandboxPolicy`; not with `sandboxPolicy`. */
  sandbox: Schema.optional(SandboxMode),
  /** Sandbox policy of the turn. */
  sandboxPolicy: Schema.optional(SandboxPolicy),
  /** When codex asks for approvals (answered by the provider's `approvals`). */
  approvalPolicy: Schema.optional(ApprovalPolicy),
  /** Codex's personality setting (deprecated by codex, still accepted). */
  personality: Schema.optional(Schema.Literals(["none", "friendly", "pragmatic"])),
  /**
   * The workspace the call is charged to (passed to the pool's `acquire`: a
   * pool with rate limits counts its usage and applies `workspaceLimits`).
   */
  workspace: Schema.optional(NonEmptyString),
  /**
   * Tokens the pool's rate limits reserve for the call at admission (passed
   * to the pool's `acquire`); default the pool's `defaultEstimatedTokens`.
   */
  estimatedTokens: Schema.optional(Schema.Finite.check(Schema.isGreaterThanOrEqualTo(0))),
  /** The account the lease should come from (passed to the pool's `acquire`). */
  account: Schema.optional(NonEmptyString),
  /** Continues this thread (instead of the one the prompt's metadata names, or a new one). */
  threadId: Schema.optional(NonEmptyString),
  /**
   * Whether streamed tool output (command output, MCP progress) goes out as
   * preliminary tool results; default the provider's `streamToolOutput`.
   */
  streamToolOutput: Schema.optional(Schema.Boolean)
})

/**
 * The per-call settings: `providerOptions: { codex: { ... } }` of an AI SDK call.
 *
 * @since 0.1.0
 * @category models
 */
export type CodexCallOptions = typeof CallOptionsSchema.Type

// The schema's values are the protocol's: a compile-time check against the generated types.
type Check<T extends true> = T
type Settable<K extends keyof TurnStartParams> = NonNullable<TurnStartParams[K]>
type ReadonlyArrays<T> = T extends unknown ? { readonly [K in keyof T]: T[K] extends Array<infer E> ? ReadonlyArray<E> : T[K] }
  : never
export type _CallOptionsMatchProtocol = [
  Check<NonNullable<CodexCallOptions["effort"]> extends Settable<"effort"> ? true : false>,
  Check<NonNullable<CodexCallOptions["summary"]> extends Settable<"summary"> ? true : false>,
  Check<NonNullable<CodexCallOptions["personality"]> extends Settable<"personality"> ? true : false>,
  Check<NonNullable<CodexCallOptions["approvalPolicy"]> extends Settable<"approvalPolicy"> ? true : false>,
  Check<NonNullable<CodexCallOptions["sandbox"]> extends CodexProtocol.v2.SandboxMode ? true : false>,
  Check<NonNullable<CodexCallOptions["sandboxPolicy"]> extends ReadonlyArrays<Settable<"sandboxPolicy">> ? true : false>
]

const standard = Schema.toStandardSchemaV1(CallOptionsSchema as any, {
  parseOptions: { onExcessProperty: "error", errors: "all" }
} as any) as {
  readonly "~standard": {
    readonly validate: (u: unknown) =>
      | { readonly value: CodexCallOptions }
      | { readonly issues: ReadonlyArray<{ readonly path: ReadonlyArray<PropertyKey>; readonly message: string }> }
  }
}

/**
 * Validates per-call settings (`what` names them in the message, e.g.
 * `"providerOptions.codex"`). `undefined` is no settings.
 *
 * @throws PoolOptionsError naming each bad field.
 * @since 0.1.0
 * @category constructors
 */
export const parseCallOptions = (what: string, input: unknown): CodexCallOptions => {
  if (input === undefined || input === null) return {}
  if (typeof input !== "object" || Array.isArray(input)) {
    throw new PoolOptionsError({ message: `Invalid ${what}: expected an object, got ${JSON.stringify(input)}.` })
  }
  const result = standard["~standard"].validate(input)
  if ("issues" in result) {
    const lines = [...new Set(result.issues.map((issue) => {
      const name = issue.path.map(String).join(".") || "(options)"
      const message = issue.message === "Expected no excess property" ? "unknown option" : issue.message
      return `${name}: ${message}`
    }))]
    throw new PoolOptionsError({ message: `Invalid ${what}: ${lines.join("; ")}.` })
  }
  const value = result.value
  if (value.sandbox !== undefined && value.sandboxPolicy !== undefined) {
    throw new PoolOptionsError({
      message: `Invalid ${what}: sandbox: Expected either sandbox or sandboxPolicy, not both.`
    })
  }
  return value
}

/** The sandbox policy a sandbox mode stands for (what codex makes of `thread/start.sandbox`). */
export const sandboxPolicyOf = (mode: CodexProtocol.v2.SandboxMode): CodexProtocol.v2.SandboxPolicy => {
  switch (mode) {
    case "read-only":
      return { type: "readOnly", networkAccess: false }
    case "workspace-write":
      return {
        type: "workspaceWrite",
        writableRoots: [],
        networkAccess: false,
        excludeTmpdirEnvVar: false,
        excludeSlashTmp: false
      }
    case "danger-full-access":
      return { type: "dangerFullAccess" }
  }
}

/**
 * The `turn/start` params the settings stand for (without `threadId` and
 * `input`); only the fields that are set.
 *
 * @since 0.1.0
 * @category getters
 */
export const turnParams = (
  settings: CodexCallOptions,
  modelId: string,
  outputSchema: NonNullable<TurnStartParams["outputSchema"]> | undefined
): Omit<TurnStartParams, "threadId" | "input"> => {
  const sandboxPolicy = settings.sandboxPolicy ??
    (settings.sandbox === undefined ? undefined : sandboxPolicyOf(settings.sandbox))
  return {
    model: settings.model ?? modelId,
    ...(settings.effort === undefined ? {} : { effort: settings.effort }),
    ...(settings.summary === undefined ? {} : { summary: settings.summary }),
    ...(settings.personality === undefined ? {} : { personality: settings.personality }),
    ...(settings.cwd === undefined ? {} : { cwd: settings.cwd }),
    ...(settings.approvalPolicy === undefined ? {} : { approvalPolicy: settings.approvalPolicy }),
    ...(sandboxPolicy === undefined ? {} : { sandboxPolicy: sandboxPolicy as CodexProtocol.v2.SandboxPolicy }),
    ...(outputSchema === undefined ? {} : { outputSchema })
  }
}

/**
 * The options of a pool's `acquire` for a call: the abort signal, and the
 * account and workspace the pool may honour.
 *
 * @since 0.1.0
 * @category models
 */
export interface CodexAcquireOptions {
  readonly signal?: AbortSignal | undefined
  /** The account a worker should belong to (a pool with accounts honours it). */
  readonly account?: string | undefined
  /** The workspace the call is charged to (a pool with rate limits honours it). */
  readonly workspace?: string | undefined
  /** Tokens reserved at admission (a pool with rate limits honours it). */
  readonly estimatedTokens?: number | undefined
  /**
   * An affinity hint: the thread this call continues, so that an idle worker
   * that has it loaded is preferred (it never makes the call wait).
   */
  readonly prefer?: string | undefined
}

/**
 * The lease options of a call: `account`, `workspace` and `estimatedTokens` only when set (a
 * pool that does not take them refuses the call with a `PoolOptionsError`
 * naming the option, rather than ignoring them), and `prefer`, the thread the
 * call continues, when there is one.
 */
export const acquireOptions = (
  signal: AbortSignal | undefined,
  settings: CodexCallOptions,
  threadId?: string | undefined
): CodexAcquireOptions => ({
  signal,
  ...(threadId === undefined ? {} : { prefer: threadId }),
  ...(settings.account === undefined ? {} : { account: settings.account }),
  ...(settings.workspace === undefined ? {} : { workspace: settings.workspace }),
  ...(settings.estimatedTokens === undefined ? {} : { estimatedTokens: settings.estimatedTokens })
})

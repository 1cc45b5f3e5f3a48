/**
 * The errors of `src/errors.ts`: each keeps its `_tag`, `name`, fields and
 * message wording (the expected messages below are the ones the errors built
 * before they became Schema classes), is an `Error` and an instance of its
 * class, is caught by `Effect.catchTag` and fails a generator when yielded,
 * and, being a Schema of itself, crosses a JSON boundary and comes back as an
 * equal instance of its class, alone and through the `CodexWorkerPoolError`
 * union.
 */
import { describe, expect, expectTypeOf, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import { Rpc } from "effect/rpc"
import * as Schema from "effect/Schema"
import {
  AccountExistsError,
  AccountRemovedError,
  AcquireTimeoutError,
  ChannelClosedError,
  CodexWorkerPoolError,
  JsonRpcError,
  LeaseTimeoutError,
  PoolOptionsError,
  PoolShutdownError,
  ProtocolError,
  QueueFullError,
  RateLimitedError,
  RequestTimeoutError,
  ResponseDecodeError,
  UnknownAccountError,
  WorkerCrashedError,
  WorkerNotLeasedError,
  WorkerSpawnError,
  WorkerStdioError,
  WorkspaceLimitError
} from "../src/errors.ts"

type ErrorClass = Schema.Codec<any, any> & (new(...args: ReadonlyArray<any>) => CodexWorkerPoolError)

interface Case {
  readonly label: string
  readonly Class: ErrorClass
  readonly make: () => CodexWorkerPoolError
  /** The message, word for word. */
  readonly message: string
  /** The fields besides `_tag` and `message`, as built. */
  readonly fields: Readonly<Record<string, unknown>>
  /** The fields after a JSON round trip, where they differ from `fields`. */
  readonly wireFields?: Readonly<Record<string, unknown>>
}

const crash = () =>
  new WorkerCrashedError({ pid: 4242, code: 1, signal: null, stderrTail: ["error: bad config", "at line 3"] })
const crashMessage = "The codex worker process (pid 4242) exited unexpectedly: it exited with code 1. The pool " +
  "replaces the worker; retry on a new one. Last stderr lines:\n  error: bad config\n  at line 3"
const checkMsg = "Check the method's parameters (see `codex app-server generate-ts`) or the worker's state."
const lease = "so the worker was taken out of service and its processes killed. Release it and acquire another; " +
  "raise leaseTimeout (leaseTimeoutMs in createCodexWorkerPool) if turns legitimately run this long."

const cases: ReadonlyArray<Case> = [
  {
    label: "PoolShutdownError",
    Class: PoolShutdownError,
    make: () => new PoolShutdownError(),
    message: "Worker pool has been shut down. Create a new pool to acquire workers again.",
    fields: {}
  },
  {
    label: "AcquireTimeoutError",
    Class: AcquireTimeoutError,
    make: () => new AcquireTimeoutError({ waitedMs: 250, queuedAhead: 3, poolSize: 2 }),
    message: "Timed out after 250 ms waiting for a worker: 3 waiter(s) were still ahead and all 2 worker(s) were " +
      "busy. poolSize may be too small for this load, or leases are held too long.",
    fields: { waitedMs: 250, queuedAhead: 3, poolSize: 2 }
  },
  {
    label: "QueueFullError",
    Class: QueueFullError,
    make: () => new QueueFullError({ maxQueue: 100, poolSize: 4 }),
    message: "The acquire queue is full (maxQueue: 100, poolSize: 4). Retry later, raise maxQueue, or raise poolSize.",
    fields: { maxQueue: 100, poolSize: 4 }
  },
  {
    label: "WorkerNotLeasedError (release)",
    Class: WorkerNotLeasedError,
    make: () => new WorkerNotLeasedError({ operation: "release" }),
    message: "release() was given a worker that is not currently leased from this pool (already released, " +
      "invalidated, or never acquired from it). Nothing was changed.",
    fields: { operation: "release" }
  },
  {
    label: "WorkerNotLeasedError (request)",
    Class: WorkerNotLeasedError,
    make: () => new WorkerNotLeasedError({ operation: "request" }),
    message: "request() was called on a worker handle whose lease has ended (released, invalidated, or its use() " +
      "returned); the worker may serve another caller now. Nothing was sent: acquire a worker again.",
    fields: { operation: "request" }
  },
  {
    label: "UnknownAccountError",
    Class: UnknownAccountError,
    make: () => new UnknownAccountError({ account: "acme" }),
    message: "The worker pool has no account named \"acme\". Add it (the accounts option or addAccount) before " +
      "acquiring for it, or check the name.",
    fields: { account: "acme" }
  },
  {
    label: "AccountRemovedError",
    Class: AccountRemovedError,
    make: () => new AccountRemovedError({ account: "acme" }),
    message: "The account \"acme\" was removed from the worker pool while this acquire waited; its workers are " +
      "being retired. Add the account again to serve it.",
    fields: { account: "acme" }
  },
  {
    label: "AccountExistsError",
    Class: AccountExistsError,
    make: () => new AccountExistsError({ account: "acme" }),
    message: "The worker pool already has an account named \"acme\"; nothing was changed. To change its settings, " +
      "remove it (removeAccount) and add it again.",
    fields: { account: "acme" }
  },
  {
    label: "PoolOptionsError",
    Class: PoolOptionsError,
    make: () => new PoolOptionsError({ message: "Invalid WorkerPool options: size: must be a positive integer, got 0." }),
    message: "Invalid WorkerPool options: size: must be a positive integer, got 0.",
    fields: {}
  },
  {
    label: "JsonRpcError (with data)",
    Class: JsonRpcError,
    make: () =>
      new JsonRpcError({
        method: "turn/start",
        code: -32602,
        serverMessage: "invalid params",
        data: { field: "input", message: "required" },
        extra: { retryable: false, details: ["a", 1, null] }
      }),
    message: `The codex app-server rejected "turn/start" with error -32602: invalid params. ${checkMsg}`,
    // `data` with a string `message` stays a plain object (a defect Schema would turn it into an Error)
    fields: {
      method: "turn/start",
      code: -32602,
      serverMessage: "invalid params",
      data: { field: "input", message: "required" },
      extra: { retryable: false, details: ["a", 1, null] }
    }
  },
  {
    label: "JsonRpcError (no data, long server message)",
    Class: JsonRpcError,
    make: () => new JsonRpcError({ method: "thread/start", code: -32600, serverMessage: "x".repeat(301) }),
    message: `The codex app-server rejected "thread/start" with error -32600: ${"x".repeat(300)}…. ${checkMsg}`,
    fields: { method: "thread/start", code: -32600, serverMessage: "x".repeat(301), data: undefined, extra: {} }
  },
  {
    label: "RequestTimeoutError",
    Class: RequestTimeoutError,
    make: () => new RequestTimeoutError({ method: "thread/start", timeoutMs: 5000 }),
    message: "The codex app-server did not answer \"thread/start\" within 5000 ms; the request was abandoned. " +
      "Raise the timeout, or check that the worker is healthy.",
    fields: { method: "thread/start", timeoutMs: 5000 }
  },
  {
    label: "ChannelClosedError",
    Class: ChannelClosedError,
    make: () => new ChannelClosedError({ reason: "the process exited" }),
    message: "The JSON-RPC channel to the codex worker is closed (the process exited). Nothing more can be sent " +
      "over it: use another worker.",
    fields: { reason: "the process exited" }
  },
  {
    label: "WorkerCrashedError (exit code)",
    Class: WorkerCrashedError,
    make: crash,
    message: crashMessage,
    fields: { pid: 4242, code: 1, signal: null, stderrTail: ["error: bad config", "at line 3"] }
  },
  {
    label: "WorkerCrashedError (signal)",
    Class: WorkerCrashedError,
    make: () => new WorkerCrashedError({ pid: 7, code: null, signal: "SIGKILL", stderrTail: [] }),
    message: "The codex worker process (pid 7) exited unexpectedly: it was killed by SIGKILL. The pool replaces " +
      "the worker; retry on a new one. It wrote nothing to stderr.",
    fields: { pid: 7, code: null, signal: "SIGKILL", stderrTail: [] }
  },
  {
    label: "WorkerSpawnError (ExitedEarly, cause a WorkerCrashedError)",
    Class: WorkerSpawnError,
    make: () => new WorkerSpawnError({ command: "codex", reason: "ExitedEarly", cause: crash() }),
    message: "The codex worker process \"codex\" (pid 4242) exited with code 1 before answering initialize. Its " +
      "stderr usually says why; check the `args`, `env`, `cwd` and `codexHome` options and codex's config.toml. " +
      "Last stderr lines:\n  error: bad config\n  at line 3",
    fields: { command: "codex", reason: "ExitedEarly", pid: 4242, stderrTail: ["error: bad config", "at line 3"] },
    // the cause crosses as a defect: a plain Error with the crash's name and message
    wireFields: { cause: { name: "WorkerCrashedError", message: crashMessage } }
  },
  {
    label: "WorkerSpawnError (StartFailed, cause an Error)",
    Class: WorkerSpawnError,
    make: () => new WorkerSpawnError({ command: "no-such-codex", cause: new Error("spawn no-such-codex ENOENT") }),
    message: "Could not start the codex worker process \"no-such-codex\": spawn no-such-codex ENOENT. Check the " +
      "`command` option, and that @openai/codex is installed (npm install @openai/codex).",
    fields: { command: "no-such-codex", reason: "StartFailed", pid: undefined, stderrTail: [] },
    wireFields: { cause: { name: "Error", message: "spawn no-such-codex ENOENT" } }
  },
  {
    label: "WorkerSpawnError (Timeout, cause a string)",
    Class: WorkerSpawnError,
    make: () =>
      new WorkerSpawnError({
        command: "codex",
        reason: "Timeout",
        pid: 99,
        cause: "no answer within spawnTimeoutMs (2000 ms)"
      }),
    message: "The codex worker process \"codex\" (pid 99) did not answer initialize: no answer within " +
      "spawnTimeoutMs (2000 ms). If codex is only slow to start (first run, slow disk, busy machine), raise " +
      "`spawnTimeout` (`spawnTimeoutMs` in createCodexWorkerPool); otherwise check that `args` start the app server on stdio (\"app-server\"). It wrote " +
      "nothing to stderr.",
    fields: {
      command: "codex",
      reason: "Timeout",
      pid: 99,
      stderrTail: [],
      cause: "no answer within spawnTimeoutMs (2000 ms)"
    }
  },
  {
    label: "LeaseTimeoutError (pid)",
    Class: LeaseTimeoutError,
    make: () => new LeaseTimeoutError({ leaseTimeoutMs: 60000, pid: 4242 }),
    message: `The lease on codex worker pid 4242 was held longer than leaseTimeout (60000 ms), ${lease}`,
    fields: { leaseTimeoutMs: 60000, pid: 4242 }
  },
  {
    label: "LeaseTimeoutError (no pid)",
    Class: LeaseTimeoutError,
    make: () => new LeaseTimeoutError({ leaseTimeoutMs: 1000 }),
    message: `The lease on the worker was held longer than leaseTimeout (1000 ms), ${lease}`,
    fields: { leaseTimeoutMs: 1000, pid: undefined }
  },
  {
    label: "ResponseDecodeError",
    Class: ResponseDecodeError,
    make: () =>
      new ResponseDecodeError({ method: "thread/start", issue: "Missing key at [\"thread\"]", result: { threadId: "t1" } }),
    message: "The codex app-server's result for \"thread/start\" does not match the expected schema: Missing key " +
      "at [\"thread\"]. The worker may run a codex version other than the one the schema was written for: check " +
      "the schema against `codex app-server generate-ts` of that version.",
    fields: { method: "thread/start", issue: "Missing key at [\"thread\"]", result: { threadId: "t1" } }
  },
  {
    label: "ProtocolError (MalformedResponse)",
    Class: ProtocolError,
    make: () =>
      new ProtocolError({
        kind: "MalformedResponse",
        method: "thread/start",
        reason: "error is not an object",
        preview: "{\"id\":1,\"error\":\"boom\"}",
        pid: 4242
      }),
    message: "The codex app-server (pid 4242) sent a malformed response to \"thread/start\" (error is not an " +
      "object). The line began: {\"id\":1,\"error\":\"boom\"}. The worker was taken out of service and its " +
      "processes killed; retry on a new one. If this repeats, check that this codex version speaks the " +
      "app-server protocol this library expects.",
    fields: {
      kind: "MalformedResponse",
      method: "thread/start",
      reason: "error is not an object",
      preview: "{\"id\":1,\"error\":\"boom\"}",
      pid: 4242
    }
  },
  {
    label: "ProtocolError (LineTooLong, no pid)",
    Class: ProtocolError,
    make: () => new ProtocolError({ kind: "LineTooLong", reason: "a line exceeded 1024 bytes", preview: "{\"x\"" }),
    message: "The codex app-server broke the JSON-RPC protocol: a line exceeded 1024 bytes. The line began: " +
      "{\"x\". The worker was taken out of service and its processes killed; retry on a new one. Raise " +
      "maxLineBytes if messages this large are legitimate.",
    fields: { kind: "LineTooLong", method: undefined, reason: "a line exceeded 1024 bytes", preview: "{\"x\"", pid: undefined }
  },
  {
    label: "WorkerStdioError",
    Class: WorkerStdioError,
    make: () => new WorkerStdioError({ pid: 4242, stream: "stdin", detail: "write EPIPE" }),
    message: "The stdin pipe of the codex worker process (pid 4242) broke while the process was still running: " +
      "write EPIPE. The worker was taken out of service and its processes killed; retry on a new one.",
    fields: { pid: 4242, stream: "stdin", detail: "write EPIPE" }
  },
  {
    label: "RateLimitedError",
    Class: RateLimitedError,
    make: () => new RateLimitedError({ limit: "tpm", account: "acme", retryAfterMs: 1500.2, budgetMs: 999.7 }),
    message: "Rate limited: account \"acme\" is at its tokens-per-minute limit; the call would have to wait 1501 ms " +
      "but only 999 ms were left of its timeout, so it was refused at once (nothing was charged). Retry after " +
      "1501 ms, allow a longer timeoutMs / acquireTimeoutMs, or raise the account's rateLimits.",
    fields: { limit: "tpm", account: "acme", retryAfterMs: 1500.2, budgetMs: 999.7 }
  },
  {
    label: "WorkspaceLimitError",
    Class: WorkspaceLimitError,
    make: () =>
      new WorkspaceLimitError({ workspace: "w1", limit: "requestsPerDay", used: 100, max: 100, retryAfterMs: 3600000 }),
    message: "Workspace \"w1\" has reached its requestsPerDay limit (100 of 100), so the call was refused. The " +
      "window resets in 3600000 ms; retry then, or raise this workspace's limit in workspaceLimits.",
    fields: { workspace: "w1", limit: "requestsPerDay", used: 100, max: 100, retryAfterMs: 3600000 }
  }
]

/** Through JSON text, as a wire would carry it. */
const throughJson = (value: unknown): unknown => JSON.parse(JSON.stringify(value))

const expectFields = (error: CodexWorkerPoolError, fields: Readonly<Record<string, unknown>>) => {
  for (const [key, value] of Object.entries(fields)) {
    // an own property even when undefined, as a plain class field is
    expect(Object.hasOwn(error, key), key).toBe(true)
    const actual = (error as unknown as Record<string, unknown>)[key]
    if (key === "cause" && typeof value === "object" && value !== null) {
      // a cause that crossed the wire: an Error with the original's name and message
      expect(actual).toBeInstanceOf(Error)
      expect({ name: (actual as Error).name, message: (actual as Error).message }).toStrictEqual(value)
    } else {
      expect(actual, key).toStrictEqual(value)
    }
  }
}

/** What the receiving side must see: the same class, tag, name, message and fields. */
const expectSame = (decoded: unknown, c: Case) => {
  expect(decoded).toBeInstanceOf(c.Class)
  expect(decoded).toBeInstanceOf(Error)
  const error = decoded as CodexWorkerPoolError
  const original = c.make()
  expect(error._tag).toBe(original._tag)
  expect(error.name).toBe(original._tag)
  expect(error.message).toBe(c.message)
  expectFields(error, { ...c.fields, ...c.wireFields })
}

describe("errors", () => {
  it("the cases cover every member of CodexWorkerPoolError", () => {
    const tags = CodexWorkerPoolError.members.map((member) => (member as unknown as { identifier: string }).identifier)
    expect(new Set(cases.map((c) => c.make()._tag))).toStrictEqual(new Set(tags))
    expect(tags).toHaveLength(19)
  })

  describe.each(cases)("$label", (c) => {
    it("keeps its _tag, name, message wording and fields, and is an Error of its class", () => {
      const error = c.make()
      expect(error._tag).toBe(c.Class.name)
      expect(error.name).toBe(c.Class.name)
      expect(error.message).toBe(c.message)
      expect(error).toBeInstanceOf(Error)
      expect(error).toBeInstanceOf(c.Class)
      expectFields(error, c.fields)
      expect(String(error)).toBe(`${c.Class.name}: ${c.message}`)
    })

    it("crosses JSON through its own Schema and comes back an equal instance of its class", () => {
      const encoded = Schema.encodeUnknownSync(c.Class)(c.make())
      const wire = throughJson(encoded)
      expect(wire).toStrictEqual(encoded) // what the Schema encodes is JSON already (an undefined field is absent)
      expect((wire as { _tag: string; message: string })._tag).toBe(c.Class.name)
      expect((wire as { _tag: string; message: string }).message).toBe(c.message)
      expectSame(Schema.decodeUnknownSync(c.Class)(wire), c)
    })

    it("crosses JSON through Schema.toCodecJson (as RPC and HttpApi carry it)", () => {
      const codec = Schema.toCodecJson(c.Class)
      const wire = throughJson(Schema.encodeUnknownSync(codec)(c.make()))
      expectSame(Schema.decodeUnknownSync(codec)(wire), c)
    })

    it("crosses JSON through the CodexWorkerPoolError union", () => {
      const codec = Schema.toCodecJson(CodexWorkerPoolError)
      const wire = throughJson(Schema.encodeUnknownSync(codec)(c.make()))
      expectSame(Schema.decodeUnknownSync(codec)(wire), c)
      // and the union decodes what the class's own Schema encoded
      expectSame(
        Schema.decodeUnknownSync(CodexWorkerPoolError)(throughJson(Schema.encodeUnknownSync(c.Class)(c.make()))),
        c
      )
    })

    it.effect("is caught by Effect.catchTag, and fails the generator when yielded", () =>
      Effect.gen(function*() {
        const error = c.make()
        const fail: Effect.Effect<never, CodexWorkerPoolError> = Effect.fail(error)
        const caught = yield* fail.pipe(Effect.catchTag(error._tag, (e) => Effect.succeed(e)))
        expect(caught).toBe(error)
        const yielded = yield* Effect.flip(Effect.gen(function*() {
          return yield* error
        }))
        expect(yielded).toBe(error)
      }))
  })

  it.effect("catchTag narrows the union to the class and its fields", () =>
    Effect.gen(function*() {
      const fail: Effect.Effect<string, CodexWorkerPoolError> = Effect.fail(
        new AcquireTimeoutError({ waitedMs: 5, queuedAhead: 0, poolSize: 1 })
      )
      const result = yield* fail.pipe(
        Effect.catchTag("QueueFullError", (e) => Effect.succeed(`full ${e.maxQueue}`)),
        Effect.catchTag("AcquireTimeoutError", (e) => Effect.succeed(`waited ${e.waitedMs} ms`))
      )
      expect(result).toBe("waited 5 ms")
    }))

  it("an undefined field is absent on the wire and undefined again after it; JSON null stays null", () => {
    const without = new JsonRpcError({ method: "m", code: 1, serverMessage: "s" })
    const encoded = Schema.encodeUnknownSync(Schema.toCodecJson(JsonRpcError))(without)
    expect(Object.hasOwn(encoded as object, "data")).toBe(false)
    const decoded = Schema.decodeUnknownSync(JsonRpcError)(throughJson(encoded))
    expect(Object.hasOwn(decoded, "data")).toBe(true)
    expect(decoded.data).toBeUndefined()
    const withNull = new JsonRpcError({ method: "m", code: 1, serverMessage: "s", data: null })
    const nullWire = throughJson(Schema.encodeUnknownSync(Schema.toCodecJson(JsonRpcError))(withNull))
    expect(nullWire).toMatchObject({ data: null })
    expect(Schema.decodeUnknownSync(JsonRpcError)(nullWire).data).toBeNull()
  })

  it("the fields keep their types", () => {
    expectTypeOf<AcquireTimeoutError["waitedMs"]>().toEqualTypeOf<number>()
    expectTypeOf<WorkerNotLeasedError["operation"]>().toEqualTypeOf<
      "release" | "invalidate" | "request" | "notify" | "respond" | "respondError"
    >()
    expectTypeOf<JsonRpcError["data"]>().toEqualTypeOf<unknown>()
    expectTypeOf<WorkerCrashedError["code"]>().toEqualTypeOf<number | null>()
    expectTypeOf<WorkerCrashedError["signal"]>().toEqualTypeOf<string | null>()
    expectTypeOf<WorkerCrashedError["stderrTail"]>().toEqualTypeOf<ReadonlyArray<string>>()
    expectTypeOf<WorkerSpawnError["reason"]>().toEqualTypeOf<
      "StartFailed" | "CodexHome" | "ExitedEarly" | "InitializeFailed" | "Timeout"
    >()
    expectTypeOf<WorkerSpawnError["pid"]>().toEqualTypeOf<number | undefined>()
    expectTypeOf<WorkerSpawnError["cause"]>().toEqualTypeOf<unknown>()
    expectTypeOf<LeaseTimeoutError["pid"]>().toEqualTypeOf<number | undefined>()
    expectTypeOf<ResponseDecodeError["result"]>().toEqualTypeOf<unknown>()
    expectTypeOf<PoolShutdownError["message"]>().toEqualTypeOf<string>()
    // required keys, as the plain class fields were
    expectTypeOf<{} extends Pick<LeaseTimeoutError, "pid"> ? true : false>().toEqualTypeOf<false>()
    expectTypeOf<CodexWorkerPoolError["_tag"]>().toEqualTypeOf<
      | "PoolShutdownError"
      | "AcquireTimeoutError"
      | "QueueFullError"
      | "WorkerNotLeasedError"
      | "UnknownAccountError"
      | "AccountRemovedError"
      | "AccountExistsError"
      | "PoolOptionsError"
      | "JsonRpcError"
      | "RequestTimeoutError"
      | "ChannelClosedError"
      | "WorkerCrashedError"
      | "WorkerSpawnError"
      | "LeaseTimeoutError"
      | "ResponseDecodeError"
      | "ProtocolError"
      | "WorkerStdioError"
      | "RateLimitedError"
      | "WorkspaceLimitError"
    >()
  })

  it("JsonRpcError data that is not JSON crosses as JSON, the error intact", () => {
    const circular: Record<string, unknown> = { id: 1n, at: new Date(0) }
    circular["self"] = circular
    const error = new JsonRpcError({ method: "m", code: 1, serverMessage: "s", data: circular })
    const encoded = Schema.encodeUnknownSync(JsonRpcError)(error)
    const wire = throughJson(encoded)
    expect(wire).toStrictEqual(encoded)
    const decoded = Schema.decodeUnknownSync(JsonRpcError)(wire)
    expect(decoded).toBeInstanceOf(JsonRpcError)
    expect(decoded.message).toBe(error.message)
    expect(decoded.data).toStrictEqual({ id: "1n", at: "1970-01-01T00:00:00.000Z" })
  })

  it("an RPC whose error channel is CodexWorkerPoolError carries each error as its JSON serialization does", () => {
    // RpcServer encodes an exit with Schema.toCodecJson(Rpc.exitSchema(rpc)), RpcClient decodes it the same way
    const rpc = Rpc.make("Run", { success: Schema.String, error: CodexWorkerPoolError })
    const codec = Schema.toCodecJson(Rpc.exitSchema(rpc))
    for (const c of cases) {
      const wire = throughJson(Schema.encodeUnknownSync(codec)(Exit.fail(c.make())))
      const exit = Schema.decodeUnknownSync(codec)(wire)
      expect(Exit.isFailure(exit), c.label).toBe(true)
      expectSame(Option.getOrUndefined(Exit.findErrorOption(exit)), c)
    }
  })

  it("the message crosses as it was built: the receiving side does not rebuild it from the fields", () => {
    // e.g. a sender on another version of this library, whose wording differs
    const wire = { _tag: "AcquireTimeoutError", message: "Worded elsewhere.", waitedMs: 1, queuedAhead: 0, poolSize: 1 }
    const decoded = Schema.decodeUnknownSync(AcquireTimeoutError)(wire)
    expect(decoded).toBeInstanceOf(AcquireTimeoutError)
    expect(decoded.message).toBe("Worded elsewhere.")
    expect(Schema.decodeUnknownSync(CodexWorkerPoolError)(wire).message).toBe("Worded elsewhere.")
  })

  it("decoding rejects a payload whose fields do not match, and a tag the union does not know", () => {
    const good = throughJson(Schema.encodeUnknownSync(AcquireTimeoutError)(
      new AcquireTimeoutError({ waitedMs: 1, queuedAhead: 0, poolSize: 1 })
    )) as Record<string, unknown>
    expect(() => Schema.decodeUnknownSync(AcquireTimeoutError)({ ...good, waitedMs: "soon" })).toThrow(/waitedMs/)
    expect(() => Schema.decodeUnknownSync(AcquireTimeoutError)({ ...good, _tag: "QueueFullError" })).toThrow()
    expect(() => Schema.decodeUnknownSync(CodexWorkerPoolError)({ ...good, _tag: "NoSuchError" })).toThrow()
    expect(() =>
      Schema.decodeUnknownSync(WorkerNotLeasedError)({ _tag: "WorkerNotLeasedError", message: "m", operation: "x" })
    ).toThrow(/operation/)
  })
})

/**
 * The promise facade of the Codex worker pool, for the AI SDK provider and
 * other code not written in Effect. Same pool, same guarantees as
 * `CodexWorkerPool`; a worker is a small handle over one app-server process.
 *
 * The handle is what a provider's transport needs (connect / disconnect /
 * sendMessage / sendNotification / on message, error, close):
 * - `request` resolves with the result, or rejects with `JsonRpcError`
 *   (server error: `code`, `message`, `data`), `WorkerCrashedError` (the process
 *   died), `LeaseTimeoutError`, `RequestTimeoutError`, or `signal.reason`;
 * - `onMessage` delivers every notification and server request;
 * - `onClose` fires once when the process exits or its channel breaks, so a
 *   consumer streaming a turn with no request in flight notices a crash at once.
 * Releasing a crashed worker is allowed and does not return it to service.
 *
 * @example
 * ```ts
 * import { createCodexWorkerPool } from "codex-worker-pool"
 *
 * const pool = createCodexWorkerPool({ poolSize: 2, codexHome: "/var/lib/app/codex" })
 * const threadId = await pool.use(async (worker, signal) => {
 *   const { thread } = (await worker.request("thread/start", { ephemeral: true }, { signal })) as any
 *   return thread.id as string
 * })
 * await pool.shutdown()
 * ```
 *
 * @since 0.1.0
 */
import { Cause, Effect, Exit, identity, Layer, Scope } from "effect"
import type * as CodexWorker from "./CodexWorker.ts"
import { layerNode } from "./CodexWorker.ts"
import type * as CodexWorkerPool from "./CodexWorkerPool.ts"
import { PoolOptionsError } from "./errors.ts"
import type { JsonRpcErrorObject, JsonRpcId } from "./internal/jsonRpc.ts"
import { makeParts, type MakeWorker, processStats, validate, WorkerFactory } from "./internal/codexPool.ts"
import { CoreKey, type Internals } from "./internal/poolInternals.ts"
import { type AcquireOptions, PromisePool, type PromiseWorkerPool } from "./PromisePool.ts"
import type * as WorkerPool from "./WorkerPool.ts"

/**
 * How a worker's process ended, as `onClose` reports it.
 *
 * @since 0.1.0
 * @category models
 */
export interface CloseEvent {
  readonly code: number | null
  readonly signal: string | null
  /** Set when the worker did not end normally: a crash or a lease timeout. */
  readonly error?: Error | undefined
}

/**
 * A leased Codex worker, driven with promises.
 *
 * @since 0.1.0
 * @category models
 */
export interface CodexWorkerHandle {
  /** The codex process id. */
  readonly pid: number
  /** The server's answer to `initialize`, sent once when the process started. */
  readonly initializeResult: unknown
  /** Sends a request and resolves with its result. */
  request(
    method: string,
    params?: unknown,
    options?: { readonly signal?: AbortSignal | undefined; readonly timeoutMs?: number | undefined }
  ): Promise<unknown>
  /** Sends a notification. */
  notify(method: string, params?: unknown): Promise<void>
  /** Answers a server request (an approval, a tool call). */
  respond(id: JsonRpcId, result: unknown): Promise<void>
  /** Answers a server request with an error. */
  respondError(id: JsonRpcId, error: JsonRpcErrorObject): Promise<void>
  /** Calls `listener` for every notification and server request; returns the unsubscribe. */
  onMessage(listener: (message: CodexWorker.IncomingMessage) => void): () => void
  /** Calls `listener` once when the process exits or the channel breaks; returns the unsubscribe. */
  onClose(listener: (event: CloseEvent) => void): () => void
}

/**
 * A Codex worker pool driven with promises.
 *
 * @since 0.1.0
 * @category models
 */
export interface CodexPromiseWorkerPool extends PromiseWorkerPool<CodexWorkerHandle> {
  /** The counts now, with live processes and their resident memory. */
  stats(): CodexWorkerPool.Stats
}

/**
 * Options of {@link createCodexWorkerPool}: those of `CodexWorkerPool`.
 *
 * @since 0.1.0
 * @category models
 */
export type CodexWorkerPoolOptions = CodexWorkerPool.Options

const WorkerKey: unique symbol = Symbol.for("codex-worker-pool/CodexWorkerHandle/worker")

/** Runs `effect`, settling with its value, its failure, or `signal.reason` on abort. */
const toPromise = <A, E>(effect: Effect.Effect<A, E>, signal?: AbortSignal): Promise<A> => {
  if (signal?.aborted) return Promise.reject(signal.reason)
  return new Promise<A>((resolve, reject) => {
    const fiber = Effect.runFork(effect)
    const onAbort = () => {
      reject(signal!.reason)
      fiber.interruptUnsafe()
    }
    signal?.addEventListener("abort", onAbort, { once: true })
    fiber.addObserver((exit) => {
      signal?.removeEventListener("abort", onAbort)
      if (Exit.isSuccess(exit)) resolve(exit.value)
      else if (!Cause.hasInterruptsOnly(exit.cause)) reject(Cause.squash(exit.cause))
    })
  })
}

const makeHandle = (worker: CodexWorker.CodexWorker): CodexWorkerHandle & { readonly [WorkerKey]: CodexWorker.CodexWorker } => ({
  [WorkerKey]: worker,
  pid: worker.pid,
  initializeResult: worker.initializeResult,
  request: (method, params, options) => {
    const timeoutMs = options?.timeoutMs
    if (timeoutMs !== undefined && !(timeoutMs >= 0)) {
      return Promise.reject(new PoolOptionsError({
        message: `Invalid request options: timeoutMs: Expected a number of milliseconds >= 0, got ${timeoutMs}.`
      }))
    }
    return toPromise(
      worker.request(method, params, { timeout: timeoutMs === undefined || timeoutMs === 0 ? undefined : timeoutMs }),
      options?.signal
    )
  },
  notify: (method, params) => toPromise(worker.notify(method, params)),
  respond: (id, result) => toPromise(worker.respond(id, result)),
  respondError: (id, error) => toPromise(worker.respondError(id, error)),
  onMessage: (listener) => worker.subscribe(listener),
  onClose: (listener) =>
    worker.onClose((info) =>
      listener({
        code: info.code,
        signal: info.signal,
        error: info.error._tag === "ChannelClosedError" ? undefined : info.error
      })
    )
})

class CodexPromisePool extends PromisePool<CodexWorkerHandle> implements CodexPromiseWorkerPool {
  readonly #workers: ReadonlySet<CodexWorker.CodexWorker>
  constructor(
    internals: Internals<CodexWorkerHandle>,
    scope: Scope.Closeable,
    workers: ReadonlySet<CodexWorker.CodexWorker>
  ) {
    super(internals, scope)
    this.#workers = workers
  }
  override stats(): CodexWorkerPool.Stats {
    return { ...super.stats(), ...processStats(this.#workers) }
  }
}

/**
 * Creates a pool of Codex app-server workers driven with promises. Bad options
 * throw a `PoolOptionsError` naming the option. Workers are spawned on demand
 * (or ahead of it with `minIdle`); `shutdown()` kills every worker tree.
 *
 * @since 0.1.0
 * @category constructors
 */
export const createCodexWorkerPool = (
  options: CodexWorkerPoolOptions = {},
  /** @internal The test pool's fake workers (src/testing); real processes when absent. */
  makeWorker?: MakeWorker | undefined
): CodexPromiseWorkerPool => {
  const settings = validate(options)
  const scope = Scope.makeUnsafe()
  try {
    const context = Effect.runSync(Scope.provide(Layer.build(layerNode), scope))
    const parts = Effect.runSync(
      makeParts<CodexWorkerHandle>(settings, {
        wrap: makeHandle,
        unwrap: (handle) => (handle as ReturnType<typeof makeHandle>)[WorkerKey]
      }).pipe(
        makeWorker === undefined ? identity : Effect.provideService(WorkerFactory, makeWorker),
        Scope.provide(scope),
        Effect.provideContext(context)
      )
    )
    const pool = parts.pool as WorkerPool.WorkerPool<CodexWorkerHandle, unknown> & {
      readonly [CoreKey]: Internals<CodexWorkerHandle>
    }
    return new CodexPromisePool(pool[CoreKey], scope, parts.workers)
  } catch (error) {
    Effect.runFork(Scope.close(scope, Exit.void))
    throw error
  }
}

export type { AcquireOptions }

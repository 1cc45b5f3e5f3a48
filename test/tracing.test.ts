/**
 * Spans and the context logs are written in: the pool's `WorkerPool.acquire`
 * span (only for an acquire that finds no idle worker), the spans of a
 * worker's life (`CodexWorker.spawn`, `CodexWorker.initialize`,
 * `codex.request`, `ProcessTree.kill`) and of construction (`WorkerPool.make`,
 * `CodexWorkerPool.make`), and the queue / hand-off debug lines, written by
 * the waiting caller's fiber.
 *
 * Spans are collected by an in-memory tracer (test/helpers/spans.ts). Pool
 * time is the TestClock's; the real-process test runs the fake app-server
 * with its own marker and checks /proc that nothing of it survives.
 */
import { afterEach, beforeEach, describe, expect, it } from "@effect/vitest"
import { Cause, Effect, Exit, Fiber, Logger, Queue, References, Scope, Stream } from "effect"
import { TestClock } from "effect/testing"
import * as CodexWorker from "../src/CodexWorker.ts"
import * as CodexWorkerPool from "../src/CodexWorkerPool.ts"
import {
  AccountRemovedError,
  ChannelClosedError,
  JsonRpcError,
  RequestTimeoutError,
  WorkerSpawnError
} from "../src/errors.ts"
import * as JsonRpc from "../src/internal/jsonRpc.ts"
import { layerChildProcessSpawner } from "../src/node.ts"
import * as WorkerPool from "../src/WorkerPool.ts"
import { fakeServiceOptions, killByMarker, liveByMarker, newMarker, waitUntil } from "./helpers/procs.ts"
import { makeResources } from "./helpers/resources.ts"
import { attributesOf, durationMs, makeSpanRecorder, parentOf } from "./helpers/spans.ts"

/** Lets forked fibers run until they block. */
const settle = Effect.gen(function*() {
  for (let i = 0; i < 10; i++) yield* Effect.yieldNow
})

/** Leases a worker in a scope of its own; returns it and the release. */
const lease = <W, E>(pool: WorkerPool.WorkerPool<W, E>) =>
  Effect.gen(function*() {
    const scope = yield* Scope.fork(yield* Effect.scope)
    const worker = yield* Scope.provide(pool.get, scope)
    return { worker, release: Scope.close(scope, Exit.void) }
  })

let names = 0
/** A pool name no other pool of this file uses (its pool_id is then `<name>#1`). */
const uniqueName = (what: string) => `tracing-${what}-${++names}`

describe("WorkerPool.acquire span", () => {
  it.effect("an acquire served by an idle worker makes no span; one that waits makes one", () => {
    const rec = makeSpanRecorder()
    return rec.traced(Effect.gen(function*() {
      const pool = yield* WorkerPool.make({ acquire: makeResources().acquire, size: 1, name: uniqueName("fast") })
      // The first acquire finds no worker: it waits for the create.
      yield* pool.use(() => Effect.void)
      expect(rec.named("WorkerPool.acquire")).toHaveLength(1)
      // Every later one takes the idle worker at once: no span, through `use` or `get`.
      for (let i = 0; i < 5; i++) yield* pool.use(() => Effect.void)
      yield* Effect.scoped(pool.get)
      yield* Effect.scoped(pool.getWith({ timeout: "1 second" }))
      expect(rec.named("WorkerPool.acquire")).toHaveLength(1)
    }))
  })

  it.effect("a waiting acquire's span is a child of the caller's, carries pool, pool_id, queued, waitedMs and outcome, and ends at the hand-off", () => {
    const rec = makeSpanRecorder()
    const name = uniqueName("wait")
    return rec.traced(Effect.gen(function*() {
      const pool = yield* WorkerPool.make({ acquire: makeResources().acquire, size: 1, name })
      const first = yield* lease(pool)
      const seenInside: Array<string> = []
      const waiter = yield* Effect.forkChild(
        pool.use(() =>
          Effect.gen(function*() {
            seenInside.push((yield* Effect.currentSpan).name)
            yield* Effect.sleep("100 millis")
          })
        ).pipe(Effect.withSpan("user"))
      )
      yield* settle
      yield* TestClock.adjust("30 millis")
      yield* first.release
      yield* settle
      yield* TestClock.adjust("100 millis")
      yield* Fiber.join(waiter)

      const [cold, waited] = rec.named("WorkerPool.acquire")
      expect(cold).toBeDefined()
      expect(parentOf(waited!)).toBe(rec.only("user"))
      expect(attributesOf(waited!)).toEqual({
        pool: name,
        pool_id: `${name}#1`,
        queued: 1,
        waitedMs: 30,
        outcome: "acquired"
      })
      // The wait only: not the 100 ms the caller then held the worker.
      expect(durationMs(waited!)).toBe(30)
      // What the caller does with the worker runs under its own span.
      expect(seenInside).toEqual(["user"])
    }))
  })

  it.effect("the queue and hand-off lines are events of the acquire span", () => {
    const rec = makeSpanRecorder()
    return rec.traced(Effect.gen(function*() {
      const pool = yield* WorkerPool.make({ acquire: makeResources().acquire, size: 1, name: uniqueName("event") })
      yield* pool.use(() => Effect.void)
      const span = rec.only("WorkerPool.acquire")
      expect(span.events.map(([message]) => message)).toEqual([
        expect.stringContaining("worker-pool: acquire queued"),
        expect.stringContaining("worker-pool: worker handed to waiter")
      ])
    }).pipe(
      Effect.provideService(References.CurrentLoggers, new Set([Logger.tracerLogger])),
      Effect.provideService(References.MinimumLogLevel, "Debug")
    ))
  })

  it.effect("a waiting acquire that fails or is interrupted says how in outcome", () => {
    const rec = makeSpanRecorder()
    const outcome = (span: { readonly attributes: ReadonlyMap<string, unknown> }) => ({
      outcome: span.attributes.get("outcome"),
      waitedMs: span.attributes.get("waitedMs")
    })
    return rec.traced(Effect.gen(function*() {
      // Timeout.
      const timed = yield* WorkerPool.make({
        acquire: makeResources().acquire,
        size: 1,
        acquireTimeout: "50 millis",
        name: uniqueName("timeout")
      })
      yield* lease(timed)
      const timedOut = yield* Effect.forkChild(Effect.exit(timed.use(() => Effect.void)))
      yield* settle
      yield* TestClock.adjust("50 millis")
      expect(Exit.isFailure(yield* Fiber.join(timedOut))).toBe(true)

      // Interrupted.
      const busy = yield* WorkerPool.make({ acquire: makeResources().acquire, size: 1, name: uniqueName("interrupt") })
      yield* lease(busy)
      const interrupted = yield* Effect.forkChild(busy.use(() => Effect.void))
      yield* settle
      yield* TestClock.adjust("10 millis")
      yield* Fiber.interrupt(interrupted)

      // The create for it failed.
      const resources = makeResources()
      resources.failing.add(1)
      const failing = yield* WorkerPool.make({ acquire: resources.acquire, size: 1, name: uniqueName("create") })
      yield* Effect.exit(failing.use(() => Effect.void))

      // Refused at once: the queue is full.
      const full = yield* WorkerPool.make({
        acquire: makeResources().acquire,
        size: 1,
        maxQueue: 0,
        name: uniqueName("full")
      })
      yield* lease(full)
      yield* Effect.exit(full.use(() => Effect.void))

      // Shut down while waiting.
      const closing = yield* WorkerPool.make({
        acquire: makeResources().acquire,
        size: 1,
        shutdownTimeout: "1 second",
        name: uniqueName("shutdown")
      })
      yield* lease(closing)
      const shutOut = yield* Effect.forkChild(Effect.exit(closing.use(() => Effect.void)))
      yield* settle
      yield* Effect.forkChild(closing.shutdown)
      yield* settle
      expect(Exit.isFailure(yield* Fiber.join(shutOut))).toBe(true)

      // Its account was removed while it waited.
      const removing = yield* WorkerPool.make({
        acquire: makeResources().acquire,
        size: 2,
        accounts: { a: { acquire: makeResources().acquire, maxWorkers: 1 } },
        name: uniqueName("removed")
      })
      yield* Scope.provide(removing.getWith({ account: "a" }), yield* Scope.fork(yield* Effect.scope))
      const removedOut = yield* Effect.forkChild(Effect.exit(removing.use(() => Effect.void, { account: "a" })))
      yield* settle
      yield* TestClock.adjust("20 millis")
      yield* Effect.forkChild(removing.removeAccount("a"))
      yield* settle
      const removed = yield* Fiber.join(removedOut)
      expect(Exit.isFailure(removed) && Cause.squash(removed.cause)).toBeInstanceOf(AccountRemovedError)

      const spans = rec.named("WorkerPool.acquire").filter((span) => span.attributes.get("outcome") !== "acquired")
      expect(spans.map(outcome)).toEqual([
        { outcome: "timeout", waitedMs: 50 },
        { outcome: "interrupted", waitedMs: 10 },
        { outcome: "create_failed", waitedMs: 0 },
        { outcome: "queue_full", waitedMs: undefined },
        { outcome: "shutdown", waitedMs: 0 },
        { outcome: "account_removed", waitedMs: 20 }
      ])
      // Each ended with the acquire's own exit.
      expect(spans.map((span) => span.status._tag === "Ended" && Exit.isFailure(span.status.exit))).toEqual([
        true,
        true,
        true,
        true,
        true,
        true
      ])
      const interruptedSpan = spans[1]!
      expect(
        interruptedSpan.status._tag === "Ended" && Exit.isFailure(interruptedSpan.status.exit) &&
          Cause.hasInterruptsOnly(interruptedSpan.status.exit.cause)
      ).toBe(true)
    }))
  })

  it.effect("a worker made for a waiting acquire is made under its span; the pool's own work is under no span", () => {
    const rec = makeSpanRecorder()
    const name = uniqueName("create-parent")
    const madeFor = (resources: ReturnType<typeof makeResources>) => Effect.withSpan(resources.acquire, "make-resource")
    return rec.traced(Effect.gen(function*() {
      // Kept warm by the pool (no caller asked for it): not under the construction's span.
      yield* WorkerPool.make({ acquire: madeFor(makeResources()), size: 1, minIdle: 1, name: uniqueName("warm") }).pipe(
        Effect.withSpan("startup")
      )
      yield* settle
      const warm = rec.only("make-resource")
      expect(parentOf(warm)).toBeUndefined()
      expect(parentOf(rec.only("WorkerPool.make"))).toBe(rec.only("startup"))

      // Made because an acquire waited: under that acquire's span.
      const pool = yield* WorkerPool.make({ acquire: madeFor(makeResources()), size: 1, name })
      yield* lease(pool)
      const [, made] = rec.named("make-resource")
      expect(parentOf(made!)).toBe(rec.only("WorkerPool.acquire"))
      expect(attributesOf(rec.named("WorkerPool.make")[1]!)).toEqual({ pool: name, pool_id: `${name}#1` })
    }))
  })
})

describe("pool lines in the caller's context", () => {
  interface Line {
    readonly level: string
    readonly message: unknown
    readonly annotations: Record<string, unknown>
    readonly fiber: number
  }
  const recorder = () => {
    const lines: Array<Line> = []
    const logger = Logger.make((options) => {
      lines.push({
        level: options.logLevel,
        message: options.message,
        annotations: { ...options.fiber.getRef(References.CurrentLogAnnotations) },
        fiber: options.fiber.id
      })
    })
    return { lines, logger }
  }

  it.effect("the queue and hand-off lines are written by the waiting fiber: its logger, level and annotations apply", () => {
    const { lines, logger } = recorder()
    const name = uniqueName("caller-logs")
    return Effect.gen(function*() {
      // The pool is made at the default level (Info) with Effect's default logger.
      const pool = yield* WorkerPool.make({ acquire: makeResources().acquire, size: 1, name })
      const first = yield* lease(pool)
      const caller = yield* Effect.forkChild(
        Effect.gen(function*() {
          const self = yield* Effect.fiber
          yield* pool.use(() => Effect.void)
          return self.id
        }).pipe(
          Effect.annotateLogs({ request: "r-1" }),
          Effect.provideService(References.CurrentLoggers, new Set([logger])),
          Effect.provideService(References.MinimumLogLevel, "Debug")
        )
      )
      yield* settle
      yield* TestClock.adjust("20 millis")
      yield* first.release
      const callerId = yield* Fiber.join(caller)
      const annotations = { request: "r-1", pool: name, pool_id: `${name}#1` }
      expect(lines).toEqual([
        { level: "Debug", message: ["worker-pool: acquire queued", { queued: 1 }], annotations, fiber: callerId },
        {
          level: "Debug",
          message: ["worker-pool: worker handed to waiter", { waitedMs: 20, queued: 0 }],
          annotations,
          fiber: callerId
        }
      ])
    })
  })

  it.effect("a caller above Debug gets no queue line, even from a pool made at Debug", () => {
    const { lines, logger } = recorder()
    return Effect.gen(function*() {
      const pool = yield* WorkerPool.make({ acquire: makeResources().acquire, size: 1, name: uniqueName("quiet") })
        .pipe(Effect.provideService(References.MinimumLogLevel, "Debug"))
      const first = yield* lease(pool)
      const caller = yield* Effect.forkChild(pool.use(() => Effect.void))
      yield* settle
      yield* first.release
      yield* Fiber.join(caller)
      expect(lines.filter((line) => line.level === "Debug")).toEqual([])
    }).pipe(Effect.provideService(References.CurrentLoggers, new Set([logger])))
  })
})

describe("codex.request span", () => {
  const makeTransport = (requestSpan?: JsonRpc.MakeOptions<never, never, never>["requestSpan"]) =>
    Effect.gen(function*() {
      const input = yield* Queue.unbounded<string, Cause.Done>()
      const writes = yield* Queue.unbounded<string>()
      const channel = yield* JsonRpc.make<never, never, never>({
        input: Stream.fromQueue(input),
        write: (line) => Effect.sync(() => void Queue.offerUnsafe(writes, line)),
        requestSpan
      })
      const send = (message: unknown) => Queue.offer(input, JSON.stringify(message))
      const nextWrite = Effect.map(Queue.take(writes), (line) => JSON.parse(line) as { readonly id: number })
      return { channel, send, nextWrite }
    })

  it.effect("each request has a span under the caller's, with the method, its id and the owner's attributes; a failure adds error.type", () => {
    const rec = makeSpanRecorder()
    return rec.traced(Effect.gen(function*() {
      const { channel, nextWrite, send } = yield* makeTransport({
        name: "codex.request",
        attributes: { "codex.pid": 4242 }
      })
      const answered = yield* Effect.forkChild(Effect.withSpan(channel.request("thread/start", {}), "user"))
      yield* send({ id: (yield* nextWrite).id, result: {} })
      yield* Fiber.join(answered)

      const refused = yield* Effect.forkChild(Effect.flip(channel.request("turn/start", {})))
      yield* send({ id: (yield* nextWrite).id, error: { code: -32600, message: "bad request" } })
      expect(yield* Fiber.join(refused)).toBeInstanceOf(JsonRpcError)

      const slow = yield* Effect.forkChild(Effect.flip(channel.request("slow", {}, { timeout: "1 second" })))
      yield* nextWrite
      yield* TestClock.adjust("1 second")
      expect(yield* Fiber.join(slow)).toBeInstanceOf(RequestTimeoutError)

      yield* channel.close("done")
      expect(yield* Effect.flip(channel.request("late"))).toBeInstanceOf(ChannelClosedError)

      const spans = rec.named("codex.request")
      const common = { "codex.pid": 4242, "rpc.system": "jsonrpc" }
      expect(spans.map(attributesOf)).toEqual([
        { ...common, "rpc.method": "thread/start", "rpc.jsonrpc.request_id": 1 },
        {
          ...common,
          "rpc.method": "turn/start",
          "rpc.jsonrpc.request_id": 2,
          "error.type": "JsonRpcError",
          "rpc.jsonrpc.error_code": -32600
        },
        { ...common, "rpc.method": "slow", "rpc.jsonrpc.request_id": 3, "error.type": "RequestTimeoutError" },
        { ...common, "rpc.method": "late", "error.type": "ChannelClosedError" }
      ])
      expect(parentOf(spans[0]!)).toBe(rec.only("user"))
      expect(spans.map((span) => [span.kind, span.status._tag])).toEqual(Array(4).fill(["client", "Ended"]))
      expect(durationMs(spans[2]!)).toBe(1_000)
    }))
  })

  it.effect("without an owner's name the span is jsonrpc.request; with tracing disabled there is none", () => {
    const rec = makeSpanRecorder()
    return rec.traced(Effect.gen(function*() {
      const { channel, nextWrite, send } = yield* makeTransport()
      const request = (method: string) =>
        Effect.gen(function*() {
          const fiber = yield* Effect.forkChild(channel.request(method))
          yield* send({ id: (yield* nextWrite).id, result: null })
          yield* Fiber.join(fiber)
        })
      yield* request("traced")
      yield* Effect.withTracerEnabled(request("untraced"), false)
      expect(rec.spans.map((span) => [span.name, span.attributes.get("rpc.method")])).toEqual([
        ["jsonrpc.request", "traced"]
      ])
    }))
  })
})

describe("a Codex pool's spans (real processes)", () => {
  let marker = ""
  beforeEach(() => {
    marker = newMarker()
  })
  afterEach(async () => {
    await killByMarker(marker)
  })

  it.effect("construction, the spawn under the acquire that waited for it, the request under the caller, the kill", () => {
    const rec = makeSpanRecorder()
    const name = uniqueName("codex")
    return rec.traced(Effect.gen(function*() {
      const scope = yield* Scope.make()
      const pool = yield* Scope.provide(CodexWorkerPool.make(fakeServiceOptions(marker, [], { name })), scope)
      const pid = yield* pool.use((worker) => Effect.as(worker.request("cwp/received", {}), worker.pid)).pipe(
        Effect.withSpan("user")
      )
      yield* Scope.close(scope, Exit.void)
      expect(yield* Effect.promise(() => waitUntil(() => liveByMarker(marker).length === 0))).toBe(true)

      const user = rec.only("user")
      const acquire = rec.only("WorkerPool.acquire")
      const spawn = rec.only("CodexWorker.spawn")
      const initialize = rec.only("CodexWorker.initialize")
      const requests = rec.named("codex.request")
      const kill = rec.only("ProcessTree.kill")

      expect(parentOf(rec.only("WorkerPool.make"))).toBe(rec.only("CodexWorkerPool.make"))
      expect(attributesOf(rec.only("CodexWorkerPool.make"))).toEqual({ pool: name })
      expect(parentOf(acquire)).toBe(user)
      expect(parentOf(spawn)).toBe(acquire)
      expect(attributesOf(spawn)).toEqual({ "codex.command": process.execPath, "codex.pid": pid })
      expect(parentOf(initialize)).toBe(spawn)
      expect(attributesOf(initialize)).toEqual({ "codex.pid": pid })
      expect(requests.map((span) => [span.attributes.get("rpc.method"), parentOf(span)])).toEqual([
        ["initialize", initialize],
        ["cwp/received", user]
      ])
      expect(requests.every((span) => span.attributes.get("codex.pid") === pid)).toBe(true)
      // The kill ran when the pool's scope closed, outside any caller's span.
      expect(parentOf(kill)).toBeUndefined()
      expect(attributesOf(kill)).toEqual({
        "codex.pid": pid,
        "process.pid": pid,
        "process_tree.processes": 1,
        "process_tree.escalated": false,
        "process_tree.survivors": 0
      })
      expect(rec.spans.every((span) => span.status._tag === "Ended")).toBe(true)
    }).pipe(Effect.provide(layerChildProcessSpawner)))
  })

  it.effect("a terminate's kill is under the caller's span; a failed spawn's span ends with its WorkerSpawnError", () => {
    const rec = makeSpanRecorder()
    return rec.traced(Effect.gen(function*() {
      const pid = yield* Effect.scoped(Effect.gen(function*() {
        const worker = yield* CodexWorker.make(fakeServiceOptions(marker))
        yield* worker.terminate(new ChannelClosedError({ reason: "test" })).pipe(Effect.withSpan("user"))
        return worker.pid
      }))
      const kill = rec.only("ProcessTree.kill")
      expect(parentOf(kill)).toBe(rec.only("user"))
      expect(kill.attributes.get("codex.pid")).toBe(pid)

      const failed = yield* Effect.flip(Effect.scoped(CodexWorker.make(fakeServiceOptions(marker, ["--exit-before-initialize"]))))
      expect(failed).toBeInstanceOf(WorkerSpawnError)
      const [, spawn] = rec.named("CodexWorker.spawn")
      const exit = spawn!.status._tag === "Ended" ? spawn!.status.exit : undefined
      expect(exit !== undefined && Exit.isFailure(exit) && Cause.squash(exit.cause)).toBe(failed)
      expect(yield* Effect.promise(() => waitUntil(() => liveByMarker(marker).length === 0))).toBe(true)
    }).pipe(Effect.provide(layerChildProcessSpawner)))
  })
})

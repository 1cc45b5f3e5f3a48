/**
 * The waiting room: an intrusive FIFO list of waiters plus a binary min-heap
 * of their deadlines.
 *
 * Guarantees: enqueue, dequeue of the head and removal of any waiter are O(1)
 * in the list; the heap makes adding and removing a deadline O(log n) and
 * finding the earliest O(1). Both structures store their links in the waiter
 * itself, so a waiter costs no allocation beyond its own object.
 *
 * Limits: a waiter may be in at most one list and one heap at a time; the
 * caller keeps that invariant (the pool does).
 *
 * @internal
 */

/** Links a waiter carries; the pool's waiter classes extend this. */
export class WaiterLinks {
  prev: WaiterLinks | undefined = undefined
  next: WaiterLinks | undefined = undefined
  /** Position in the deadline heap, -1 when not in it. */
  heapIndex = -1
  /** Absolute deadline in clock milliseconds; only meaningful while `heapIndex >= 0`. */
  deadline = 0
  /** Insertion number in the heap, to keep equal deadlines in FIFO order. */
  heapSeq = 0
  /** True while linked into a list. */
  queued = false
}

/** An intrusive doubly linked FIFO list. */
export class WaiterList<A extends WaiterLinks> {
  head: A | undefined = undefined
  tail: A | undefined = undefined
  length = 0

  push(node: A): void {
    node.queued = true
    node.prev = this.tail
    node.next = undefined
    if (this.tail === undefined) this.head = node
    else this.tail.next = node
    this.tail = node
    this.length++
  }

  shift(): A | undefined {
    const node = this.head
    if (node !== undefined) this.remove(node)
    return node
  }

  remove(node: A): void {
    const { prev, next } = node
    if (prev === undefined) this.head = next as A | undefined
    else prev.next = next
    if (next === undefined) this.tail = prev as A | undefined
    else next.prev = prev
    node.prev = node.next = undefined
    node.queued = false
    this.length--
  }

  /** How many nodes stand before `node` (walks towards the head). */
  countAhead(node: A): number {
    let n = 0
    for (let p = node.prev; p !== undefined; p = p.prev) n++
    return n
  }
}

/** A binary min-heap of waiters ordered by `deadline`, ties broken by insertion order. */
export class DeadlineHeap<A extends WaiterLinks> {
  private readonly items: Array<A> = []
  private seq = 0

  get size(): number {
    return this.items.length
  }

  peek(): A | undefined {
    return this.items[0]
  }

  push(node: A): void {
    const items = this.items
    node.heapIndex = items.length
    node.heapSeq = this.seq++
    items.push(node)
    this.up(node.heapIndex)
  }

  pop(): A | undefined {
    const top = this.items[0]
    if (top !== undefined) this.remove(top)
    return top
  }

  remove(node: A): void {
    const items = this.items
    const i = node.heapIndex
    if (i < 0) return
    const last = items.pop()!
    node.heapIndex = -1
    if (last === node) return
    items[i] = last
    last.heapIndex = i
    if (!this.up(i)) this.down(i)
  }

  /** Moves the item at `i` up; true if it moved. */
  private up(i: number): boolean {
    const items = this.items
    const node = items[i]!
    const start = i
    while (i > 0) {
      const parent = (i - 1) >> 1
      const p = items[parent]!
      if (!before(node, p)) break
      items[i] = p
      p.heapIndex = i
      i = parent
    }
    items[i] = node
    node.heapIndex = i
    return i !== start
  }

  private down(i: number): void {
    const items = this.items
    const n = items.length
    const node = items[i]!
    for (;;) {
      const left = 2 * i + 1
      if (left >= n) break
      const right = left + 1
      const child = right < n && before(items[right]!, items[left]!) ? right : left
      const c = items[child]!
      if (!before(c, node)) break
      items[i] = c
      c.heapIndex = i
      i = child
    }
    items[i] = node
    node.heapIndex = i
  }
}

const before = (a: WaiterLinks, b: WaiterLinks): boolean =>
  a.deadline < b.deadline || (a.deadline === b.deadline && a.heapSeq < b.heapSeq)

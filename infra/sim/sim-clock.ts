// The simulator's world clock: one queue of timed events on simulated milliseconds, one seeded PRNG
// (mulberry32), and a trace whose hash identifies a run (two runs of one seed must produce the same
// hash: that is what "replayable" means, and a test asserts it). Everything in a simulated run,
// network, storage, faults, clients and the real coordinator's timers, is an event here; nothing
// reads the wall clock or Math.random.
//
// Between two events the run yields to the host event loop with setImmediate, which runs only after
// every pending microtask: the promise chains of the real code (a put's fsync, a quorum's replies)
// finish in the same order every time, because nothing else (no real I/O, no real timer) is pending.

import { createHash, type Hash } from 'node:crypto'
import { assert } from '../../coordinator/assert.ts'
import type { Runtime, SocketFactory } from '../../coordinator/runtime.ts'
import { faultLimits } from '../fault-limits.ts'

interface Timer { readonly at: number; readonly seq: number; readonly fn: () => void; cancelled: boolean }

/** A uniform [0, 1) generator from `seed` (mulberry32); tests use it too, as test/seed.ts seededRandom. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

export class SimClock {
  now = 0
  events = 0
  readonly random: () => number
  private seq = 0
  private readonly heap: Timer[] = []
  private readonly hash: Hash = createHash('sha256')
  /** The last few trace lines, printed when a run fails. */
  private readonly tail: string[] = []

  constructor(readonly seed: number) {
    this.random = mulberry32(seed)
  }

  /** An integer in [min, max]. */
  int(min: number, max: number): number {
    return min + Math.floor(this.random() * (max - min + 1))
  }

  chance(permille: number): boolean {
    return this.random() * 1000 < permille
  }

  pick<T>(items: readonly T[]): T {
    assert(items.length > 0, 'pick from nothing')
    return items[Math.floor(this.random() * items.length)]!
  }

  at(delayMs: number, fn: () => void): Timer {
    const t: Timer = { at: this.now + Math.max(0, delayMs), seq: this.seq++, fn, cancelled: false }
    this.push(t)
    return t
  }

  cancel(t: unknown): void {
    if (t && typeof t === 'object' && 'cancelled' in t) (t as Timer).cancelled = true
  }

  /** A line of the trace: hashed, and kept among the last few. */
  trace(line: string): void {
    const stamped = `${this.now} ${line}`
    this.hash.update(stamped + '\n')
    this.tail.push(stamped)
    if (this.tail.length > faultLimits.simTraceTailEvents) this.tail.shift()
  }

  traceHash(): string { return this.hash.copy().digest('hex').slice(0, 16) }
  traceTail(): readonly string[] { return this.tail }

  /** Runs events until `done()` or the queue empties or `untilMs` passes; false when the event budget ran out. */
  async run(untilMs: number, done: () => boolean = () => false): Promise<boolean> {
    while (!done()) {
      const t = this.heap[0]
      if (!t || t.at > untilMs) { this.now = Math.max(this.now, untilMs); return true }
      this.pop()
      if (t.cancelled) continue
      if (++this.events > faultLimits.simEventsMax) return false
      this.now = t.at
      t.fn()
      await new Promise<void>(r => setImmediate(r))
    }
    return true
  }

  /** A Runtime (coordinator/runtime.ts) on this clock, whose sockets `connect` makes. */
  runtime(connect: SocketFactory): Runtime {
    return {
      now: () => this.now,
      setTimeout: (fn, ms) => this.at(ms, fn),
      clearTimeout: h => this.cancel(h),
      tick: fn => { this.at(0, fn) },
      random: this.random,
      connect,
    }
  }

  /** Resolves after `ms` simulated milliseconds. */
  sleep(ms: number): Promise<void> {
    return new Promise(r => { this.at(ms, r) })
  }

  private push(t: Timer): void {
    const h = this.heap
    h.push(t)
    let i = h.length - 1
    while (i > 0) {
      const p = (i - 1) >> 1
      if (!before(h[i]!, h[p]!)) break
      ;[h[i], h[p]] = [h[p]!, h[i]!]
      i = p
    }
  }

  private pop(): void {
    const h = this.heap
    const last = h.pop()!
    if (h.length === 0) return
    h[0] = last
    let i = 0
    for (;;) {
      const l = 2 * i + 1, r = l + 1
      let m = i
      if (l < h.length && before(h[l]!, h[m]!)) m = l
      if (r < h.length && before(h[r]!, h[m]!)) m = r
      if (m === i) break
      ;[h[i], h[m]] = [h[m]!, h[i]!]
      i = m
    }
  }
}

function before(a: Timer, b: Timer): boolean {
  return a.at < b.at || (a.at === b.at && a.seq < b.seq)
}

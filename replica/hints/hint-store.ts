// The hint store of a fallback replica (Dynamo's hinted handoff, DeCandia 2007 section 4.6): writes
// it accepted for an absent owner, kept apart from its own data until they are handed back. One
// hint per (owner, key) holds the whole stored state (a DVV set, encoded), so replaying it is a
// `replicate` of that state and never a new stamp; a newer write for the same pair is merged into
// it by the caller (replica-service.ts) before `add`.
//
// The index lives in memory and is rebuilt from the hint log (hint-log.ts) at start. It is bounded
// per owner and in total, in hints and in bytes, and by an age window (limits.ts, after Cassandra's
// max_hint_window): at a bound `add` refuses with HintRefused, counts it and logs it (at most one
// line per owner and reason per interval), so the coordinator counts only real acks. The log is
// kept short: a segment is deleted once none of its records is a live hint, oldest first (a del
// record is only needed while an older segment still holds its put), and past hintSegmentsMax the
// live hints of the oldest segment are written again at the end so that segment can go.

import { KvError } from '../../coordinator/errors.ts'
import { limits } from '../../coordinator/limits.ts'
import type { HintLogPort, HintLogProblem, LoadedHintRecord } from './hint-log.ts'

/** The bounds of a store; main.ts may lower them (flags), never raise them past limits.ts. */
export interface HintBounds {
  readonly perTargetMax: number
  readonly bytesPerTargetMax: number
  readonly totalMax: number
  readonly bytesTotalMax: number
  readonly windowMs: number
}

export const defaultHintBounds: HintBounds = {
  perTargetMax: limits.hintsPerTargetMax,
  bytesPerTargetMax: limits.hintBytesPerTargetMax,
  totalMax: limits.hintsTotalMax,
  bytesTotalMax: limits.hintBytesTotalMax,
  windowMs: limits.hintWindowMs,
}

/** One pending hint. Replaced (never mutated but for `segment` and `sending`) when a write merges in. */
export interface Hint {
  readonly target: string
  readonly key: string
  readonly state: Uint8Array
  /** When the owner's first pending hint for this key came (kept across merges). */
  readonly at: number
  /** Bytes it counts against the bounds: its state and its key. */
  readonly bytes: number
  /** The log segment its put record is durable in; -1 until then. */
  segment: number
  /** No longer in the index (replaced, replayed or dropped): it counts in no segment. */
  retired: boolean
  /** A replay of it awaits the owner's ack. */
  sending: boolean
}

interface TargetHints {
  /** In order of age (`at`), oldest first: the window check and expiry read the first ones. */
  hints: Map<string, Hint>
  bytes: number
}

export type HintRefusal = 'target-count' | 'target-bytes' | 'total-count' | 'total-bytes' | 'window' | 'io'

export interface HintStoreCounters {
  accepted: number
  refused: number
  replayed: number
  /** Hints deleted undelivered: their owner refused the state for what it is. */
  dropped: number
  /** Records the log could not read at open (torn or corrupt): dropped, never replayed. */
  corruptSegments: number
  /** Hints deleted unreplayed because they outlived their TTL (the tombstone grace). */
  expired: number
}

export interface HintStoreOptions {
  readonly log: HintLogPort
  readonly now: () => number
  readonly bounds?: HintBounds
  readonly logLine?: (msg: string, fields: Record<string, unknown>) => void
}

export class HintStore {
  readonly counters: HintStoreCounters = { accepted: 0, refused: 0, replayed: 0, dropped: 0, corruptSegments: 0, expired: 0 }
  private readonly byTarget = new Map<string, TargetHints>()
  private count = 0
  private bytes = 0
  /** Live hints per log segment. */
  private readonly live = new Map<number, number>()
  private readonly bounds: HintBounds
  private readonly refusalLoggedAt = new Map<string, number>()
  private collecting: Promise<void> | undefined
  private ioFailed: Error | undefined

  constructor(private readonly opts: HintStoreOptions) {
    this.bounds = opts.bounds ?? defaultHintBounds
  }

  /**
   * Rebuilds the index from the records an open read back. When the log had a torn or corrupt
   * segment, every live hint is written again and the old segments are deleted, so the damage is
   * reported once and never read again.
   */
  async load(records: readonly LoadedHintRecord[], problems: readonly HintLogProblem[]): Promise<void> {
    for (const r of records) {
      const prev = this.byTarget.get(r.target)?.hints.get(r.key)
      if (prev) this.unindex(prev)
      if (r.op === 'del') continue
      const hint: Hint = { target: r.target, key: r.key, state: r.state, at: r.at, bytes: r.state.byteLength + r.key.length, segment: r.segment, retired: false, sending: false }
      this.index(hint)
      this.live.set(r.segment, (this.live.get(r.segment) ?? 0) + 1)
    }
    // The log's order is not the hints' age (a rewritten hint moves to the end): put each owner's
    // hints in order of age, which the window check and expiry rely on.
    for (const t of this.byTarget.values()) t.hints = new Map([...t.hints].sort((a, b) => a[1].at - b[1].at))
    for (const p of problems) {
      this.counters.corruptSegments++
      this.opts.logLine?.(p.torn ? 'hint log: torn tail cut off (never acknowledged)' : 'hint log: corrupt record, the rest of its segment is not replayed',
        { file: p.file, offset: p.offset })
    }
    if (problems.length > 0) {
      const old = this.opts.log.segments().filter(s => s !== this.opts.log.current())
      await Promise.all([...this.all()].map(h => this.rewrite(h)))
      for (const seq of old) { this.live.delete(seq); await this.opts.log.drop(seq) }
    }
    await this.collect()
  }

  /** The hint for (target, key), if one is pending. */
  get(target: string, key: string): Hint | undefined {
    return this.byTarget.get(target)?.hints.get(key)
  }

  /**
   * Keeps `state` (the merge of the pending hint and what arrived) for `target`, replacing the
   * pending hint for the key. Returns the refusal when a bound forbids it; otherwise the index holds
   * it at once (a read in the same turn sees it) and the promise resolves once it is durable.
   */
  add(target: string, key: string, state: Uint8Array): KvError | Promise<void> {
    const t = this.byTarget.get(target)
    const prev = t?.hints.get(key)
    const bytes = state.byteLength + key.length
    const now = this.opts.now()
    const refusal = this.refusal(target, t, prev, bytes, now)
    if (refusal) return this.refuse(target, refusal)
    const hint: Hint = { target, key, state, at: prev?.at ?? now, bytes, segment: -1, retired: false, sending: false }
    // In place: the key keeps its position, so each owner's hints stay in order of age (the window
    // check and expiry read the oldest first). Deleting and re-adding would move it to the end.
    if (prev) this.replace(prev, hint)
    else this.index(hint)
    this.counters.accepted++
    return this.persist(hint)
  }

  /** Up to `max` hints for `target` not being replayed now, oldest first. */
  due(target: string, max: number): Hint[] {
    const out: Hint[] = []
    const t = this.byTarget.get(target)
    if (!t) return out
    for (const h of t.hints.values()) {
      if (out.length >= max) break
      if (!h.sending) out.push(h)
    }
    return out
  }

  /** `hint` was handed off (its owner's durable ack): delete it, unless a newer write replaced it. */
  handedOff(hint: Hint): void {
    this.counters.replayed++
    this.remove(hint)
  }

  /**
   * Deletes, oldest first and at most `max`, the hints that arrived before `cutoff` (their TTL has
   * passed) and are not being replayed now; returns how many. The first hint of a (target, key)
   * keeps its time when newer writes merge into it, so a hint is as old as the oldest write it holds.
   */
  expire(cutoff: number, max: number): number {
    let n = 0
    for (const t of this.byTarget.values()) {
      // Deleting the entry being visited is safe in a Map iteration.
      for (const h of t.hints.values()) {
        if (n >= max || h.at >= cutoff) break
        if (h.sending) continue
        this.counters.expired++
        this.remove(h)
        n++
      }
      if (n >= max) break
    }
    return n
  }

  /** `hint` can never be delivered (its owner refuses the state): delete it. */
  drop(hint: Hint): void {
    this.counters.dropped++
    this.remove(hint)
  }

  private remove(hint: Hint): void {
    if (hint.retired) return
    this.unindex(hint)
    this.opts.log.append({ op: 'del', at: hint.at, target: hint.target, key: hint.key, state: new Uint8Array(0) })
      .then(() => this.collect(), e => this.failed(e))
  }

  /** Owners with pending hints, and how many and how many bytes each. */
  pending(): Map<string, { hints: number; bytes: number; oldestAt: number }> {
    const out = new Map<string, { hints: number; bytes: number; oldestAt: number }>()
    for (const [target, t] of this.byTarget) {
      const first = t.hints.values().next().value
      if (first) out.set(target, { hints: t.hints.size, bytes: t.bytes, oldestAt: first.at })
    }
    return out
  }

  stats(): { hints: number; bytes: number; segments: number } {
    return { hints: this.count, bytes: this.bytes, segments: this.opts.log.segments().length }
  }

  async close(): Promise<void> {
    await this.collecting
    await this.opts.log.close()
  }

  private *all(): Iterable<Hint> {
    for (const t of this.byTarget.values()) yield* t.hints.values()
  }

  private refusal(target: string, t: TargetHints | undefined, prev: Hint | undefined, bytes: number, now: number): HintRefusal | undefined {
    const b = this.bounds
    if (this.ioFailed) return 'io'
    const grow = prev ? 0 : 1
    const growBytes = bytes - (prev?.bytes ?? 0)
    if (t) {
      const oldest = t.hints.values().next().value
      if (oldest && now - oldest.at > b.windowMs) return 'window'
      if (t.hints.size + grow > b.perTargetMax) return 'target-count'
      if (t.bytes + growBytes > b.bytesPerTargetMax) return 'target-bytes'
    } else if (bytes > b.bytesPerTargetMax) {
      return 'target-bytes'
    }
    if (this.count + grow > b.totalMax) return 'total-count'
    if (this.bytes + growBytes > b.bytesTotalMax) return 'total-bytes'
    void target
    return undefined
  }

  private refuse(target: string, reason: HintRefusal): KvError {
    this.counters.refused++
    const now = this.opts.now()
    const tag = `${target}\u0000${reason}`
    const last = this.refusalLoggedAt.get(tag)
    if (last === undefined || now - last >= limits.hintRefusedLogIntervalMs) {
      // One line per owner and reason per interval: a flood of refusals must not flood the log.
      if (this.refusalLoggedAt.size >= limits.ringNodesMax) this.refusalLoggedAt.clear()
      this.refusalLoggedAt.set(tag, now)
      this.opts.logLine?.('hint refused', { target, reason, refusedTotal: this.counters.refused, ...this.stats() })
    }
    const why = reason === 'io' ? `its hint log failed: ${this.ioFailed?.message ?? ''}` : `its hint store is at its ${reason} bound`
    return new KvError({ kind: 'HintRefused', target, reason }, `this fallback keeps no hint for ${target}: ${why}`)
  }

  private index(h: Hint): void {
    let t = this.byTarget.get(h.target)
    if (!t) { t = { hints: new Map(), bytes: 0 }; this.byTarget.set(h.target, t) }
    t.hints.set(h.key, h)
    t.bytes += h.bytes
    this.count++
    this.bytes += h.bytes
  }

  /** Puts `next` in the place of `prev` (same owner and key): Map.set on a present key keeps its position. */
  private replace(prev: Hint, next: Hint): void {
    const t = this.byTarget.get(prev.target)!
    t.hints.set(next.key, next)
    t.bytes += next.bytes - prev.bytes
    this.bytes += next.bytes - prev.bytes
    prev.retired = true
    if (prev.segment >= 0) this.live.set(prev.segment, (this.live.get(prev.segment) ?? 1) - 1)
  }

  private unindex(h: Hint): void {
    const t = this.byTarget.get(h.target)
    if (!t || t.hints.get(h.key) !== h) return
    t.hints.delete(h.key)
    t.bytes -= h.bytes
    if (t.hints.size === 0) this.byTarget.delete(h.target)
    this.count--
    this.bytes -= h.bytes
    h.retired = true
    if (h.segment >= 0) this.live.set(h.segment, (this.live.get(h.segment) ?? 1) - 1)
  }

  /** Appends the put record of `hint`; resolves once durable. */
  private persist(hint: Hint): Promise<void> {
    return this.opts.log.append({ op: 'put', at: hint.at, target: hint.target, key: hint.key, state: hint.state }).then(seq => {
      hint.segment = seq
      if (!hint.retired) this.live.set(seq, (this.live.get(seq) ?? 0) + 1)
      if (this.opts.log.segments().length > 1) void this.collect()
    }, e => {
      this.failed(e)
      this.unindex(hint)
      throw new KvError({ kind: 'HintRefused', target: hint.target, reason: 'io' }, `the hint log failed: ${(e as Error).message}`, { cause: e })
    })
  }

  /** Writes `hint` again at the end of the log (it moves out of an old segment). */
  private async rewrite(hint: Hint): Promise<void> {
    const seq = await this.opts.log.append({ op: 'put', at: hint.at, target: hint.target, key: hint.key, state: hint.state })
    // Retired meanwhile: unindex already took it out of its old segment's count, and the new record is dead.
    if (hint.retired) return
    if (hint.segment >= 0) this.live.set(hint.segment, (this.live.get(hint.segment) ?? 1) - 1)
    hint.segment = seq
    this.live.set(seq, (this.live.get(seq) ?? 0) + 1)
  }

  private failed(e: unknown): void {
    if (this.ioFailed) return
    this.ioFailed = e as Error
    this.opts.logLine?.('hint log failed: new hints are refused until restart', { error: (e as Error).message })
  }

  /** Deletes old segments with no live hint, oldest first; past hintSegmentsMax moves the oldest's hints. One run at a time. */
  collect(): Promise<void> {
    this.collecting ??= this.collectNow().catch(e => this.failed(e)).finally(() => { this.collecting = undefined })
    return this.collecting
  }

  private async collectNow(): Promise<void> {
    const log = this.opts.log
    for (let rounds = 0; rounds < limits.hintSegmentsMax * 2; rounds++) {
      const oldest = log.segments()[0]
      if (oldest === undefined || oldest === log.current()) return
      if ((this.live.get(oldest) ?? 0) > 0) {
        if (log.segments().length <= limits.hintSegmentsMax) return
        await Promise.all([...this.all()].filter(h => h.segment === oldest).map(h => this.rewrite(h)))
        if ((this.live.get(oldest) ?? 0) > 0) return
      }
      this.live.delete(oldest)
      await log.drop(oldest)
    }
  }
}

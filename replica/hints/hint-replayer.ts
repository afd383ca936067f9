// Hands hints back (Dynamo's hinted handoff, DeCandia 2007 section 4.6): every hintReplayIntervalMs
// it looks for owners with pending hints that `isReachable` says are back, and sends each hint's
// stored state to its owner as a `replicate` (the state as it was acknowledged, never a new stamp).
// A hint is deleted only after the owner's ack, which a replica sends after its WAL fsync. If the
// ring changed and the owner no longer holds the key's partition, the hint goes to the key's current
// primaries instead, all of which must ack. A state an owner refuses for what it is (BadRequest,
// TooLarge, TooManySiblings) can never be delivered: it is dropped, counted and logged.
//
// A hint older than ttlMs (the tombstone grace) is deleted unreplayed, counted and logged: its
// value's tombstone may have been reaped meanwhile, and replaying it would resurrect the key.
//
// Rate-limited by a token bucket (hintReplayPerSecond) and at most hintReplayInflightMax replays
// in flight; an owner that fails a replay is left alone for hintReplayBackoffMs. Time and the
// network come in through the options, so a simulator can drive it.

import { KvError } from '../../coordinator/errors.ts'
import { limits } from '../../coordinator/limits.ts'
import { preferenceList, type Ring } from '../../coordinator/ring/ring.ts'
import type { Hint, HintStore } from './hint-store.ts'

export interface HintReplayerOptions {
  readonly store: HintStore
  readonly ring: () => Ring
  /** Whether `node` can be reached now (membership's failure detector, or a stand-in). */
  readonly isReachable: (node: string) => boolean
  /** Sends `replicate { key, state }` to `node`; resolves on its (durable) ack. */
  readonly send: (node: string, key: string, state: Uint8Array) => Promise<void>
  readonly now: () => number
  readonly setTimeout: (fn: () => void, ms: number) => unknown
  readonly clearTimeout: (handle: unknown) => void
  readonly logLine?: (msg: string, fields: Record<string, unknown>) => void
  /**
   * A hint older than this is deleted unreplayed: the replica's tombstone grace. A hint that old
   * may hold a value whose tombstone every primary has reaped meanwhile, and replaying it would
   * bring the key back (Cassandra gives hints gc_grace_seconds as their TTL for the same reason).
   */
  readonly ttlMs: number
}

/** Errors that say the replayed state itself cannot be stored, on any replica. */
function isRefusal(e: unknown): boolean {
  return e instanceof KvError && (e.kind === 'BadRequest' || e.kind === 'TooLarge' || e.kind === 'TooManySiblings')
}

const bucketMax = Math.max(1, Math.ceil((limits.hintReplayPerSecond * limits.hintReplayIntervalMs * 2) / 1000))

export class HintReplayer {
  private tokens = bucketMax
  private refilledAt: number
  private inflight = 0
  private readonly backoffUntil = new Map<string, number>()
  private timer: unknown
  private stopped = false

  constructor(private readonly opts: HintReplayerOptions) {
    this.refilledAt = opts.now()
  }

  start(): void {
    this.schedule()
  }

  stop(): void {
    this.stopped = true
    this.opts.clearTimeout(this.timer)
  }

  get replaysInflight(): number { return this.inflight }

  private schedule(): void {
    if (this.stopped) return
    this.timer = this.opts.setTimeout(() => { this.round(); this.schedule() }, limits.hintReplayIntervalMs)
  }

  /** One pass over the owners with pending hints. Public so tests and a simulator can step it. */
  round(): void {
    const now = this.opts.now()
    this.tokens = Math.min(bucketMax, this.tokens + ((now - this.refilledAt) * limits.hintReplayPerSecond) / 1000)
    this.refilledAt = now
    const expired = this.opts.store.expire(now - this.opts.ttlMs, limits.hintExpiresPerRoundMax)
    if (expired > 0) this.opts.logLine?.('hints expired unreplayed: older than the tombstone grace', { hints: expired, ttlMs: this.opts.ttlMs })
    const ring = this.opts.ring()
    for (const target of this.opts.store.pending().keys()) {
      const budget = Math.min(Math.floor(this.tokens), limits.hintReplayInflightMax - this.inflight)
      if (budget <= 0) return
      if ((this.backoffUntil.get(target) ?? 0) > now) continue
      const inRing = ring.nodes.some(n => n.id === target)
      // An owner that left the ring is never reachable again; its hints go to the current primaries.
      if (inRing && !this.opts.isReachable(target)) continue
      for (const hint of this.opts.store.due(target, budget)) {
        const primaries = preferenceList(ring, hint.key).primaries
        this.replay(hint, inRing && primaries.includes(target) ? [target] : [...primaries])
      }
    }
  }

  private replay(hint: Hint, to: readonly string[]): void {
    hint.sending = true
    this.inflight++
    this.tokens--
    Promise.all(to.map(node => this.opts.send(node, hint.key, hint.state))).then(
      () => this.opts.store.handedOff(hint),
      e => {
        if (isRefusal(e)) {
          this.opts.logLine?.('hint dropped: its owner refuses the state', { target: hint.target, error: (e as Error).message })
          this.opts.store.drop(hint)
          return
        }
        if (this.backoffUntil.size >= limits.ringNodesMax) this.backoffUntil.clear()
        this.backoffUntil.set(hint.target, this.opts.now() + limits.hintReplayBackoffMs)
      },
    ).finally(() => {
      hint.sending = false
      this.inflight--
    })
  }
}

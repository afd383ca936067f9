// The old owner's last step of a handoff: deleting the partitions this replica no longer holds
// (docs/handoff.md, "Dropping what was handed off"). After a ring switch moves partition P off this
// replica, its copy of P is invisible to anti-entropy (only primaries exchange P), so tombstones
// reaped on the current owners do not reach it; if P ever came back, its stale live values would
// be among the primaries again and anti-entropy would copy them out: deleted keys would resurrect.
// Riak's vnode deletes its data after ownership handoff for the same reason (riak_core_vnode).
//
// What to drop is derived, not remembered: the anti-entropy trees index every key this replica
// stores (kept current on each write, rebuilt from storage at start), so a partition is pending
// when its tree holds keys and this replica does not hold it in its current view (not a primary,
// not receiving it, not named by the plan, not sending it). A crash mid-drop leaves the rest of the
// keys in storage; the rebuild finds them and the drop resumes, with no progress file to lose.
//
// The view must be one that switched, not a stale one: nothing is dropped until membership has
// heard from a peer since this process started (a replica restarted with an old MEMBERSHIP.json
// may have missed a plan that gives P back), and a partition must have been pending for
// handoffDropDelayMs under the same ring version first. Each slice re-checks, in the turn it
// deletes, that P is still not held, and stops the drop if any write landed in P since the drop
// began (a handoff batch of a plan this replica has not heard of yet means P is coming back); a
// stopped partition is not tried again under the same ring version. Hints live in their own store
// and are never touched.
//
// Bounded: one partition at a time, handoffDropKeysPerSlice keys per turn, at most
// handoffDropKeysPerSecond. Time comes from the injected Runtime.

import { limits } from '../../coordinator/limits.ts'
import type { Runtime } from '../../coordinator/runtime.ts'
import type { Log } from '../storage/engine-types.ts'

/** What a drop needs from anti-entropy (replica/aae/anti-entropy.ts), which indexes the stored keys. */
export interface DropStore {
  isReady(): boolean
  storedPartitions(): number[]
  keysIn(partition: number): number
  watchWrites(partition: number): void
  unwatchWrites(partition: number): void
  writtenSince(partition: number): boolean
  dropSlice(partition: number, max: number): number
}

/** What a drop needs from membership and handoff. */
export interface DropOwnership {
  /**
   * The ring version of this replica's view once a peer has confirmed it since start (a gossip
   * exchange); undefined before that, or while it has no ring.
   */
  confirmedRingVersion(): number | undefined
  /** Whether this replica holds `partition` in its view: primary, receiving, in the plan, or sending it. */
  holds(partition: number): boolean
}

export interface PartitionDropperOptions {
  readonly store: DropStore
  readonly ownership: DropOwnership
  readonly runtime: Pick<Runtime, 'now' | 'setTimeout' | 'clearTimeout'>
  readonly log: Log
  /** Default limits.handoffDropKeysPerSecond. */
  readonly keysPerSecond?: number
  /** Default limits.handoffDropDelayMs. */
  readonly delayMs?: number
}

export interface DropCounters {
  keysDropped: number
  partitionsDropped: number
  /** Drops stopped because a write landed in the partition or it became this replica's again. */
  stopped: number
}

export interface DropStatus {
  /** Partitions stored here but no longer held, under a confirmed view. */
  readonly pending: number[]
  /** The partition being deleted now and the keys deleted of it so far. */
  readonly dropping: { readonly partition: number; readonly keysDropped: number } | null
  readonly keysDropped: number
  readonly partitionsDropped: number
  readonly stopped: number
}

export class PartitionDropper {
  readonly counters: DropCounters = { keysDropped: 0, partitionsDropped: 0, stopped: 0 }
  private readonly keysPerSecond: number
  private readonly delayMs: number
  /** When each pending partition became pending, and under which ring version. */
  private readonly since = new Map<number, { at: number; version: number }>()
  /** Partitions whose drop a write stopped, and the ring version then: not tried again under it. */
  private readonly stoppedUnder = new Map<number, number>()
  private running: Promise<void> | undefined
  private again = false
  private current: { partition: number; keysDropped: number } | undefined
  private timer: unknown
  /** Ends the current sleep; a kick() may end it only when `wakeable` (close() always does). */
  private wake: (() => void) | undefined
  private wakeable = false
  private closed = false

  constructor(private readonly opts: PartitionDropperOptions) {
    this.keysPerSecond = opts.keysPerSecond ?? limits.handoffDropKeysPerSecond
    this.delayMs = opts.delayMs ?? limits.handoffDropDelayMs
  }

  /** The partitions waiting to be dropped, under the current confirmed view (none before one). */
  pending(): number[] {
    const version = this.opts.ownership.confirmedRingVersion()
    if (version === undefined || !this.opts.store.isReady()) return []
    return this.opts.store.storedPartitions().filter(p => !this.opts.ownership.holds(p) && this.stoppedUnder.get(p) !== version)
  }

  status(): DropStatus {
    return { pending: this.pending(), dropping: this.current ? { ...this.current } : null, ...this.counters }
  }

  /** Looks again: after a membership change, a first peer heard, or the trees rebuilt. */
  kick(): void {
    if (this.closed) return
    if (this.running) { this.again = true; if (this.wakeable) this.wake?.(); return }
    this.running = this.run().catch(e => this.opts.log('drop failed', { error: (e as Error)?.message })).finally(() => {
      this.running = undefined
      if (this.again && !this.closed) { this.again = false; this.kick() }
    })
  }

  async close(): Promise<void> {
    this.closed = true
    // Ends any sleep (its promise resolves, so the run sees `closed` and returns).
    this.wake?.()
    await this.running
  }

  private async run(): Promise<void> {
    // Each round drops one partition or waits for one to be due; a partition can be pending again
    // only after a membership change, so the rounds are bounded by twice the partitions.
    for (let round = 0; round < 2 * limits.partitionsMax && !this.closed; round++) {
      this.again = false
      const version = this.opts.ownership.confirmedRingVersion()
      const pending = this.pending()
      const now = this.opts.runtime.now()
      const pendingSet = new Set(pending)
      for (const p of [...this.since.keys()]) if (!pendingSet.has(p)) this.since.delete(p)
      if (version === undefined || pending.length === 0) return
      let due: number | undefined
      let waitMs = Infinity
      for (const p of pending) {
        let s = this.since.get(p)
        if (s === undefined || s.version !== version) { s = { at: now, version }; this.since.set(p, s) }
        const left = s.at + this.delayMs - now
        if (left <= 0) { due = p; break }
        waitMs = Math.min(waitMs, left)
      }
      if (due === undefined) { await this.sleep(waitMs); continue }
      await this.drop(due, version)
    }
  }

  /** Deletes partition `p` slice by slice while it stays not held and unwritten. */
  private async drop(p: number, version: number): Promise<void> {
    const { store, ownership, log } = this.opts
    const total = store.keysIn(p)
    const slicesMax = Math.ceil(total / limits.handoffDropKeysPerSlice) + 1
    this.current = { partition: p, keysDropped: 0 }
    store.watchWrites(p)
    log('dropping a partition this replica no longer holds', { partition: p, keys: total, ringVersion: version })
    try {
      for (let slice = 0; slice < slicesMax && !this.closed; slice++) {
        // Checked in the turn that deletes: no write accepted for p is ever deleted after it.
        const why = store.writtenSince(p) ? 'a write for it was accepted'
          : ownership.holds(p) ? 'it is this replica\'s again'
          : ownership.confirmedRingVersion() === undefined ? 'the ring view is not confirmed' : undefined
        if (why !== undefined) {
          this.counters.stopped++
          this.stoppedUnder.set(p, ownership.confirmedRingVersion() ?? version)
          log('drop stopped', { partition: p, why, keysDropped: this.current.keysDropped })
          return
        }
        const n = store.dropSlice(p, limits.handoffDropKeysPerSlice)
        this.current.keysDropped += n
        this.counters.keysDropped += n
        const finished = store.keysIn(p) === 0
        if (finished) {
          this.counters.partitionsDropped++
          log('partition dropped', { partition: p, keys: this.current.keysDropped, ringVersion: version })
        }
        // The rate holds across partitions too: the next slice, of this partition or the next,
        // waits for the keys this one deleted.
        await this.sleep(Math.ceil((n * 1000) / this.keysPerSecond), false)
        if (finished) return
      }
    } finally {
      store.unwatchWrites(p)
      this.current = undefined
    }
  }

  /** Waits `ms`; a kick() cuts the wait short when `wakeable` (not between slices: the rate holds). */
  private sleep(ms: number, wakeable = true): Promise<void> {
    return new Promise<void>(ok => {
      const done = (): void => { this.wake = undefined; this.wakeable = false; this.opts.runtime.clearTimeout(this.timer); ok() }
      this.wake = done
      this.wakeable = wakeable
      this.timer = this.opts.runtime.setTimeout(done, Math.max(0, ms), { background: true })
    })
  }
}

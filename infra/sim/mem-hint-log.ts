// An in-memory hint log for the simulator, implementing HintLogPort (replica/hints/hint-log.ts) on
// a replica's MemDisk with the real log's contract: an append resolves only after the group fsync
// that covers it; every open starts a new segment; a crash keeps every fsynced record, then a random
// prefix of the records not yet fsynced, and may tear the last of those, which the next open reports
// as a problem (the store then rewrites its live hints and drops the damaged segments), as a torn
// tail read back from a file would be. A full disk fails the next fsync and every append after it.
// Segments never roll over by size here (a run writes a few kilobytes of hints, far below
// hintSegmentBytes), so a segment is one replica incarnation's appends.

import type { HintLogPort, HintLogProblem, HintRecord, LoadedHintRecord } from '../../replica/hints/hint-log.ts'
import { faultLimits } from '../fault-limits.ts'
import type { MemDisk } from './mem-engine.ts'
import type { SimClock } from './sim-clock.ts'

interface Queued { readonly rec: HintRecord; readonly resolve: (seq: number) => void; readonly reject: (e: Error) => void }

export class MemHintLog implements HintLogPort {
  private queue: Queued[] = []
  private fsyncTimer: unknown
  private failed: Error | undefined
  private readonly generation: number

  private constructor(private readonly disk: MemDisk, private readonly clock: SimClock, private readonly paused: () => boolean,
    private readonly name: string, private readonly seq: number) {
    this.generation = disk.generation
  }

  /** Opens the log on `disk`: what its segments hold, in order, and the torn ones as problems. */
  static open(disk: MemDisk, clock: SimClock, paused: () => boolean, name: string): { log: MemHintLog; records: LoadedHintRecord[]; problems: HintLogProblem[] } {
    const records: LoadedHintRecord[] = []
    const problems: HintLogProblem[] = []
    const segments = [...disk.hintSegments.keys()].sort((a, b) => a - b)
    for (const segment of segments) {
      const recs = disk.hintSegments.get(segment)!
      for (const r of recs) records.push({ ...r, segment })
      if (disk.hintTorn.has(segment)) problems.push({ file: `hints/${segment}`, offset: recs.length, torn: true })
    }
    const seq = (segments[segments.length - 1] ?? 0) + 1
    disk.hintSegments.set(seq, [])
    return { log: new MemHintLog(disk, clock, paused, name, seq), records, problems }
  }

  current(): number { return this.seq }
  segments(): readonly number[] { return [...this.disk.hintSegments.keys()].sort((a, b) => a - b) }

  append(rec: HintRecord): Promise<number> {
    if (this.failed) return Promise.reject(this.failed)
    return new Promise<number>((resolve, reject) => {
      this.queue.push({ rec: { ...rec, state: Uint8Array.from(rec.state) }, resolve, reject })
      this.fsyncTimer ??= this.clock.at(this.clock.int(0, faultLimits.simFsyncMsMax), () => this.fsync())
    })
  }

  private fsync(): void {
    this.fsyncTimer = undefined
    if (this.disk.generation !== this.generation) return
    if (this.paused()) { this.fsyncTimer = this.clock.at(faultLimits.simFsyncMsMax, () => this.fsync()); return }
    const batch = this.queue
    this.queue = []
    if (this.disk.full) {
      this.failed = new Error('ENOSPC: no space left on device (simulated hint log)')
      this.clock.trace(`${this.name} hint fsync failed: disk full (${batch.length} records)`)
      for (const q of batch) q.reject(this.failed)
      return
    }
    const segment = this.disk.hintSegments.get(this.seq)
    // Dropped by a store that collects while appends are queued: never the current segment, so a bug.
    if (segment === undefined) { for (const q of batch) q.reject(new Error(`hint segment ${this.seq} is gone`)); return }
    for (const q of batch) segment.push(q.rec)
    for (const q of batch) q.resolve(this.seq)
  }

  drop(seq: number): Promise<void> {
    if (this.disk.generation === this.generation && seq !== this.seq) {
      this.disk.hintSegments.delete(seq)
      this.disk.hintTorn.delete(seq)
    }
    return Promise.resolve()
  }

  close(): Promise<void> { return Promise.resolve() }

  /** Hints pending on disk (put records not followed by a del of the same owner and key), for the checker. */
  static pendingOnDisk(disk: MemDisk): number {
    const live = new Set<string>()
    for (const seq of [...disk.hintSegments.keys()].sort((a, b) => a - b)) {
      for (const r of disk.hintSegments.get(seq)!) {
        const id = `${r.target}\u0000${r.key}`
        if (r.op === 'put') live.add(id); else live.delete(id)
      }
    }
    return live.size
  }

  /** The process died: a random prefix of the unsynced records reached the disk, the last maybe torn. Call before the engine's crash. */
  crash(): void {
    this.clock.cancel(this.fsyncTimer)
    const unsynced = this.queue
    this.queue = []
    const segment = this.disk.hintSegments.get(this.seq)
    if (this.disk.full || unsynced.length === 0 || segment === undefined) return
    let kept = this.clock.int(0, unsynced.length)
    let torn = false
    if (kept > 0 && this.clock.chance(500)) { kept--; torn = true }
    for (const q of unsynced.slice(0, kept)) segment.push(q.rec)
    if (torn) this.disk.hintTorn.add(this.seq)
    this.clock.trace(`${this.name} crash: ${unsynced.length} unsynced hint records, ${kept} survive${torn ? ', the next torn' : ''}`)
  }
}

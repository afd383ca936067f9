// An in-memory storage engine for the simulator, implementing the Engine interface of
// replica/storage/engine-types.ts with the real engine's durability contract: a put is visible to
// get() at once and its promise resolves only after the (group-commit) fsync that covers it. A crash
// keeps every fsynced write, then a random prefix of the writes not yet fsynced (they may have
// reached the disk without an ack), and may tear the last of those (the WAL's CRC drops a torn
// record on replay). A full disk fails the next fsync and every write after it, as ENOSPC does, until
// the replica restarts with space freed. Timing and choices come from the SimClock.

import { KvError } from '../../coordinator/errors.ts'
import type { HintRecord } from '../../replica/hints/hint-log.ts'
import type { Engine, EngineManifest, EngineStats, PutOptions, ScanResult, ValueWriter } from '../../replica/storage/engine-types.ts'
import { faultLimits } from '../fault-limits.ts'
import type { SimClock } from './sim-clock.ts'

interface Pending { readonly key: string; readonly value: Uint8Array; readonly resolve: () => void; readonly reject: (e: Error) => void }

const emptyManifest: EngineManifest = { version: 1, tables: [], nextTableId: 1, walSegmentMin: 0 }

/** The disk of one simulated replica: survives crashes of the engines opened on it. */
export class MemDisk {
  readonly durable = new Map<string, Uint8Array>()
  /** The hint log's segments (mem-hint-log.ts): each one's fsynced records, in order. */
  readonly hintSegments = new Map<number, HintRecord[]>()
  /** Segments whose last record was torn by a crash: the next open reports them. */
  readonly hintTorn = new Set<number>()
  full = false
  /** Bumped by each crash: an engine of an older generation never touches the disk again. */
  generation = 0
}

export class MemEngine implements Engine {
  private readonly visible: Map<string, Uint8Array>
  private pending: Pending[] = []
  private fsyncTimer: unknown
  private failed: string | undefined
  private readonly generation: number

  constructor(private readonly disk: MemDisk, private readonly clock: SimClock, private readonly merge: (older: Uint8Array, newer: Uint8Array) => Uint8Array,
    private readonly paused: () => boolean, private readonly name: string) {
    this.visible = new Map(disk.durable)
    this.generation = disk.generation
  }

  get(key: string): Uint8Array | undefined {
    return this.visible.get(key)
  }

  refusal(): KvError | undefined {
    if (this.failed === undefined) return undefined
    // The only failure simulated is a full disk (fsync below): as the real engine (engine.ts
    // failedError), a typed refusal, which the SDK takes as "not written here" and stamps elsewhere.
    return new KvError({ kind: 'StorageFull', bytes: 0, bytesMax: 0 }, `the disk is full: storage engine failed earlier (${this.failed}); refusing writes until restarted`)
  }

  put(key: string, value: Uint8Array | ValueWriter, opts?: PutOptions): Promise<void> {
    const refused = this.refusal()
    if (refused !== undefined) return Promise.reject(refused)
    let bytes: Uint8Array
    if (value instanceof Uint8Array) bytes = Uint8Array.from(value)
    else { const b = Buffer.alloc(value.bytes); value.write(b, 0); bytes = b }
    const old = this.visible.get(key)
    const next = old !== undefined && opts?.supersedes !== true ? this.merge(old, bytes) : bytes
    this.visible.set(key, next)
    return new Promise<void>((resolve, reject) => {
      this.pending.push({ key, value: next, resolve, reject })
      this.fsyncTimer ??= this.clock.at(this.clock.int(0, faultLimits.simFsyncMsMax), () => this.fsync())
    })
  }

  private fsync(): void {
    this.fsyncTimer = undefined
    if (this.disk.generation !== this.generation) return
    // A paused process does not run its fsync: try again later.
    if (this.paused()) { this.fsyncTimer = this.clock.at(faultLimits.simFsyncMsMax, () => this.fsync()); return }
    const batch = this.pending
    this.pending = []
    if (this.disk.full) {
      this.failed = 'ENOSPC: no space left on device (simulated)'
      this.clock.trace(`${this.name} fsync failed: disk full (${batch.length} writes)`)
      for (const p of batch) p.reject(new KvError({ kind: 'Internal' }, `storage: ${this.failed}`))
      return
    }
    for (const p of batch) this.disk.durable.set(p.key, p.value)
    for (const p of batch) p.resolve()
  }

  /** The process died: what reached the disk stays; this engine is dead. */
  crash(): void {
    this.clock.cancel(this.fsyncTimer)
    const unsynced = this.pending
    this.pending = []
    if (!this.disk.full && unsynced.length > 0) {
      let kept = this.clock.int(0, unsynced.length)
      // The last record that reached the disk may be torn: its CRC fails and replay stops before it.
      if (kept > 0 && this.clock.chance(500)) kept--
      for (const p of unsynced.slice(0, kept)) this.disk.durable.set(p.key, p.value)
      this.clock.trace(`${this.name} crash: ${unsynced.length} unsynced writes, ${kept} survive`)
    }
    this.disk.generation++
  }

  scan(prefix: string, opts: { limit: number; after?: string }): ScanResult {
    const keys = [...this.visible.keys()].filter(k => k.startsWith(prefix) && (opts.after === undefined || k > opts.after)).sort()
    const page = keys.slice(0, opts.limit)
    const entries = page.map(k => [k, this.visible.get(k)!] as const)
    return keys.length > opts.limit ? { entries, cursor: page[page.length - 1]! } : { entries }
  }

  flush(): Promise<void> { return Promise.resolve() }
  compact(): Promise<void> { return Promise.resolve() }
  manifest(): EngineManifest { return emptyManifest }
  onManifest(): () => void { return () => undefined }
  stats(): EngineStats {
    return { keysApprox: this.visible.size, memtableBytes: 0, tableBytes: 0, tables: 0, walBytes: 0, flushes: 0, compactions: 0 }
  }
  failure(): string | undefined { return this.failed }
  close(): Promise<void> { return Promise.resolve() }
}

// The storage engine: an LSM tree (O'Neil et al. 1996) in memory, made durable by a WAL and by
// SSTables on local disk, shaped like goleveldb: journal (wal.ts), memdb (memtable.ts), table
// (table-*.ts, bloom.ts), manifest (manifest.ts) and compaction (compaction.ts), in the directory
// layout of disk-layout.ts; this file owns them and runs the write path, the read path, flushes and
// compactions.
//
// Write path: put encodes a WAL record, appends it to the open group (group commit), stores the
// value in the active memtable (visible at once) and returns the group's promise, which resolves
// after the fsync covering the record. A full memtable is frozen: the WAL rotates to a new segment,
// and a serial flush builds a table from it in event-loop slices.
//
// Durability order (what makes SIGKILL at any point safe):
//   1. table file durable: write tables/<id>.sst.tmp, fsync, rename, fsync tables/
//   2. the WAL records the table holds are durable (the rotated segment's last group fsynced)
//   3. manifest durable: MANIFEST.json names the table and walSegmentMin = the rotation boundary
//   4. only then: WAL segments below walSegmentMin, or compacted-away tables, are deleted
// open() trusts only the manifest: it deletes table files it does not name, verifies every table it
// names, then replays WAL segments >= walSegmentMin into the memtable.
//
// Read path: merge the active memtable, the frozen memtables and the tables (bloom filters skip most),
// folding versions oldest first with opts.merge. Key order is JavaScript string order everywhere.

import { crc32c } from '@node-rs/crc32'
import { statfsSync } from 'node:fs'
import { mkdir, readdir, readFile, unlink } from 'node:fs/promises'
import { join } from 'node:path'
import { assert } from '../../coordinator/assert.ts'
import { KvError } from '../../coordinator/errors.ts'
import { mergeTables, pickCompaction, sliceYielder, trimSliced } from './compaction.ts'
import type { YieldIfDue } from './compaction.ts'
import type { Engine, EngineManifest, EngineOptions, EngineStats, PutOptions, ScanResult, Log, StorageLatency, TableInfo, ValueWriter } from './engine-types.ts'
import { LatencyHistogram } from '../../coordinator/metrics/histogram.ts'
import { tableFileName, tableId, tablePath, tablesDir as tablesDirOf, walDir as walDirOf } from './disk-layout.ts'
import { writeFileAtomic } from './file-util.ts'
import { emptyManifest, loadManifest, writeManifest } from './manifest.ts'
import { Memtable } from './memtable.ts'
import type { Merge } from './memtable.ts'
import { storageLimits } from './storage-limits.ts'
import { bloomHash } from './bloom.ts'
import { TableBuilder } from './table-builder.ts'
import { Table } from './table-reader.ts'
import type { TableIterator } from './table-reader.ts'
import { encodeWalRecord, replayWal, walRecordHeaderBytes, WalWriter } from './wal.ts'

/** Used and total bytes of the file system holding `dir` (zeros when it cannot be read). */
function diskUsage(dir: string): { bytes: number; bytesMax: number } {
  try {
    const s = statfsSync(dir)
    return { bytes: Math.max(0, (s.blocks - s.bavail) * s.bsize), bytesMax: s.blocks * s.bsize }
  } catch {
    return { bytes: 0, bytesMax: 0 }
  }
}

export { tablePath } from './disk-layout.ts'

/** Reads a live table's bytes for the snapshotter (the file is immutable once named by a manifest). */
export function readTableFile(dir: string, table: Pick<TableInfo, 'file'>): Promise<Buffer> {
  return readFile(tablePath(dir, table))
}

interface LiveTable {
  readonly info: TableInfo
  readonly table: Table
}

interface Frozen {
  readonly mem: Memtable
  /** WAL segment at which later records start; the memtable's records are all below it. */
  readonly boundary: number
  readonly durable: Promise<void>
}

class Aborted extends Error {}

function validateOptions(opts: EngineOptions): number {
  assert(typeof opts.dir === 'string' && opts.dir.length > 0, 'EngineOptions.dir must be a non-empty path')
  assert(typeof opts.merge === 'function', 'EngineOptions.merge must be a function')
  const m = opts.memtableBytesMax ?? storageLimits.memtableBytesDefault
  assert(Number.isSafeInteger(m) && m >= storageLimits.memtableBytesMin && m <= storageLimits.memtableBytesMax,
    `memtableBytesMax must be an integer in [${storageLimits.memtableBytesMin}, ${storageLimits.memtableBytesMax}], got ${m}`)
  const g = opts.obsoleteTableGraceMs
  assert(g === undefined || (Number.isFinite(g) && g >= 0), `obsoleteTableGraceMs must be a non-negative number, got ${g}`)
  return m
}

export async function openEngine(opts: EngineOptions): Promise<Engine> {
  const memtableBytesMax = validateOptions(opts)
  const fsync = opts.fsync ?? true
  const log: Log = opts.log ?? (() => {})
  const dir = opts.dir
  const tablesDir = tablesDirOf(dir)
  const walDir = walDirOf(dir)
  await mkdir(tablesDir, { recursive: true })
  await mkdir(walDir, { recursive: true })

  const manifest = (await loadManifest(dir)) ?? emptyManifest()
  const named = new Set(manifest.tables.map((t) => t.file))
  for (const name of await readdir(tablesDir)) {
    if (!named.has(name)) {
      log('storage: deleting table file no manifest names', { file: name })
      await unlink(join(tablesDir, name))
    }
  }
  const tables: LiveTable[] = []
  for (const info of manifest.tables) {
    const file = tablePath(dir, info)
    let buf: Buffer
    try {
      buf = await readFile(file)
    } catch (e) {
      throw new KvError({ kind: 'Corruption', file, offset: 0 }, `table ${file} named by the manifest cannot be read`, { cause: e })
    }
    const table = Table.open(file, buf, true)
    if (buf.length !== info.bytes || crc32c(buf) !== info.crc32c) {
      throw new KvError({ kind: 'Corruption', file, offset: 0 }, `table ${file} differs from the manifest (size or crc32c)`)
    }
    assert(table.keys === info.keys, `table ${file} key count differs from the manifest`)
    tables.push({ info, table })
  }

  const merge = opts.merge
  const active = new Memtable(merge)
  const replay = await replayWal(walDir, manifest.walSegmentMin, (k, v) => active.put(k, v), log)
  const lastSeq = replay.segments.length > 0 ? replay.segments[replay.segments.length - 1]! : -1
  const firstSeq = Math.max(manifest.walSegmentMin, lastSeq + 1, 1)
  // Zero-fill WAL segments in steps of a fraction of the memtable (a segment holds about one
  // memtable's records), capped; tiny test memtables thus do not write megabytes of zeros per segment.
  const { pageBytes, walPreallocateStepsPerMemtable } = storageLimits
  const preallocate = Math.min(storageLimits.walPreallocateBytes, Math.floor(memtableBytesMax / walPreallocateStepsPerMemtable / pageBytes) * pageBytes)
  const wal = new WalWriter(walDir, firstSeq, fsync, log, replay.segmentBytes, preallocate)
  log('storage: opened', { dir, tables: tables.length, walRecords: replay.records, walBytes: replay.bytes, keys: active.size })
  const engine = new LsmEngine(dir, merge, memtableBytesMax, fsync, log, manifest, tables, active, wal,
    opts.obsoleteTableGraceMs ?? storageLimits.obsoleteTableGraceMs, opts.settle)
  if (active.bytes >= memtableBytesMax) engine.freezeInBackground()
  return engine
}

/** A uniform cursor over a memtable or a table, for scans. */
interface Source {
  key: string | undefined
  value: Uint8Array
  next(): void
}

class MemtableSource implements Source {
  key: string | undefined
  value: Uint8Array = new Uint8Array(0)
  private readonly keys: readonly string[]
  private i: number
  constructor(private readonly mem: Memtable, from: string) {
    this.keys = mem.sortedKeys()
    this.i = mem.seek(from)
    this.load()
  }
  next(): void {
    this.i++
    this.load()
  }
  private load(): void {
    this.key = this.keys[this.i]
    if (this.key !== undefined) this.value = this.mem.get(this.key)!
  }
}

class LsmEngine implements Engine {
  private active: Memtable
  /** Newest first. */
  private frozen: Frozen[] = []
  /** Newest first. */
  private tables: LiveTable[]
  private nextTableId: number
  private walSegmentMin: number
  private durableManifest: EngineManifest
  private manifestChain: Promise<void> = Promise.resolve()
  private flushChain: Promise<void> = Promise.resolve()
  private compactChain: Promise<void> = Promise.resolve()
  private autoCompactQueued = false
  private readonly listeners = new Set<(m: EngineManifest) => void>()
  private readonly obsoleteTimers = new Set<ReturnType<typeof setTimeout>>()
  private failed: unknown
  private closing = false
  private flushes = 0
  private compactions = 0
  private readonly found: Uint8Array[] = []
  private readonly keyScratch = Buffer.allocUnsafe(4 * storageLimits.keyBytesMax)
  /** Past this the active memtable refuses puts while the flush backlog is full. */
  private readonly activeBytesHardMax: number
  /** The file system's usage when a write first found the disk full (read once: the engine stays failed). */
  private diskFull: { bytes: number; bytesMax: number } | undefined
  readonly latency: StorageLatency = {
    walFsync: new LatencyHistogram(), flush: new LatencyHistogram(), flushSlice: new LatencyHistogram(),
    compaction: new LatencyHistogram(), compactionSlice: new LatencyHistogram(),
  }

  constructor(
    private readonly dir: string,
    private readonly merge: Merge,
    private readonly memtableBytesMax: number,
    private readonly fsync: boolean,
    private readonly log: Log,
    manifest: EngineManifest,
    tables: LiveTable[],
    active: Memtable,
    private readonly wal: WalWriter,
    private readonly obsoleteGraceMs: number,
    private readonly settle: ((value: Uint8Array) => Uint8Array | undefined) | undefined,
  ) {
    this.durableManifest = manifest
    this.tables = tables
    this.nextTableId = manifest.nextTableId
    this.walSegmentMin = manifest.walSegmentMin
    this.active = active
    this.activeBytesHardMax = Math.max(memtableBytesMax * storageLimits.activeMemtableGrowthMax, storageLimits.activeMemtableBytesFloor)
    wal.fsyncLatency = this.latency.walFsync
  }

  get lastFsyncMs(): number {
    return this.wal.lastFsyncMs
  }

  // ---- writes ----

  refusal(): KvError | undefined {
    if (this.closing) return new KvError({ kind: 'Unavailable' }, 'storage engine is closed')
    // A failed WAL refuses here too, before anything is written: the put would otherwise land in the
    // memtable (visible to reads) only to be rejected by the WAL, and the anti-entropy tree, which
    // asks this first, would count it.
    if (this.failureCause() !== undefined) return this.failedError()
    if (this.frozen.length >= storageLimits.frozenMemtablesMax && this.active.bytes >= this.activeBytesHardMax) {
      return new KvError({ kind: 'Overloaded', retryAfterMs: storageLimits.overloadedRetryAfterMs },
        `${this.frozen.length} memtables are waiting to be flushed and the active one is full; retry shortly`)
    }
    return undefined
  }

  put(key: string, value: Uint8Array | ValueWriter, opts?: PutOptions): Promise<void> {
    const refused = this.refusal()
    if (refused !== undefined) return Promise.reject(refused)
    let record: Buffer
    try {
      record = encodeWalRecord(key, value)
    } catch (e) {
      return Promise.reject(e)
    }
    const done = this.wal.append(record)
    // The memtable keeps a view of the value inside the WAL record: no second copy, and the caller
    // may reuse its buffer.
    this.active.put(key, record.subarray(walRecordHeaderBytes + record.readUInt16LE(8)), opts?.supersedes === true)
    // With the flush backlog full, the active memtable grows past its bound (up to the hard bound)
    // instead of freezing, so a burst slows to flush speed rather than failing.
    if (this.active.bytes >= this.memtableBytesMax && this.frozen.length < storageLimits.frozenMemtablesMax) {
      this.freezeInBackground()
    }
    return done
  }

  flush(): Promise<void> {
    if (this.failure() !== undefined) return Promise.reject(this.failedError())
    if (this.active.size > 0) return this.freeze()
    return this.flushChain
  }

  failure(): string | undefined {
    const f = this.failureCause()
    return f === undefined ? undefined : String((f as Error)?.message ?? f)
  }

  /** What stopped the engine taking writes: a failed flush or compaction, or a failed WAL write. */
  private failureCause(): unknown {
    return this.failed ?? this.wal.failure()
  }

  /**
   * Why writes are refused after a failure: StorageFull (507) when the disk or quota is full, with
   * the file system's used and total bytes, so a client sees a typed refusal it can act on (the SDK
   * stamps at the next replica); Internal for anything else (an I/O error). Refused before writing,
   * so either way the write is not in this replica.
   */
  private failedError(): KvError {
    const cause = this.failureCause()
    const code = (cause as NodeJS.ErrnoException | undefined)?.code
    const message = `storage engine failed earlier (${this.failure()}); refusing writes until restarted`
    if (code === 'ENOSPC' || code === 'EDQUOT') {
      this.diskFull ??= diskUsage(this.dir)
      return new KvError({ kind: 'StorageFull', ...this.diskFull }, `the disk is full: ${message}`, { cause })
    }
    return new KvError({ kind: 'Internal' }, message, { cause })
  }

  /** Freezes the active memtable and queues its flush; errors are recorded, not thrown here. */
  freezeInBackground(): void {
    this.freeze().catch(() => {})
  }

  private freeze(): Promise<void> {
    if (this.active.size === 0) return this.flushChain
    const mem = this.active
    mem.freeze()
    this.active = new Memtable(this.merge)
    const { boundary, durable } = this.wal.rotate()
    durable.catch(() => {})
    const entry: Frozen = { mem, boundary, durable }
    this.frozen.unshift(entry)
    const p = this.flushChain.then(() => this.flushOne(entry))
    this.flushChain = p.catch((e) => this.background(e, 'flush'))
    return p
  }

  private background(e: unknown, what: string): void {
    if (e instanceof Aborted) return
    if (this.failed === undefined) {
      this.failed = e
      this.log(`storage: ${what} failed; refusing further writes`, { error: String(e) })
    }
  }

  private yielder(slices: LatencyHistogram): YieldIfDue {
    return sliceYielder(storageLimits.backgroundSliceMs, () => {
      if (this.closing) throw new Aborted('closing')
    }, slices)
  }

  private async flushOne(entry: Frozen): Promise<void> {
    if (this.failed !== undefined) throw this.failed
    if (this.closing) throw new Aborted('closing')
    const started = performance.now()
    const y = this.yielder(this.latency.flushSlice)
    const keys = await entry.mem.sortKeysSliced(y)
    const builder = new TableBuilder(entry.mem.bytes)
    for (let i = 0; i < keys.length; i++) {
      const k = keys[i]!
      builder.add(k, entry.mem.get(k)!)
      if ((i & 63) === 63) {
        const w = y()
        if (w !== undefined) await w
      }
    }
    const buf = await trimSliced(await builder.finishSliced(y), y)
    const info = await this.writeTable(buf, builder, 0)
    await entry.durable
    // Commit: reads switch from the frozen memtable to the table in one step, then the manifest.
    this.tables.unshift({ info, table: builder.toTable(info.file, buf) })
    const i = this.frozen.indexOf(entry)
    assert(i === this.frozen.length - 1, 'flushes must commit oldest first')
    this.frozen.splice(i, 1)
    assert(entry.boundary >= this.walSegmentMin, 'WAL boundary went backwards')
    this.walSegmentMin = entry.boundary
    const m = await this.persistManifest()
    this.flushes++
    this.latency.flush.recordMs(performance.now() - started)
    this.log('storage: flushed', { table: info.file, keys: info.keys, bytes: info.bytes, ms: Math.round(performance.now() - started) })
    this.notify(m)
    await this.wal.deleteBelow(entry.boundary)
    if (this.active.bytes >= this.memtableBytesMax && this.frozen.length < storageLimits.frozenMemtablesMax) this.freezeInBackground()
    this.autoCompact()
  }

  private async writeTable(buf: Buffer, builder: TableBuilder, tier: number): Promise<TableInfo> {
    const id = tableId(this.nextTableId++)
    const info: TableInfo = { id, file: tableFileName(id), bytes: buf.length, keys: builder.keys, crc32c: builder.crc32c, tier }
    await writeFileAtomic(tablePath(this.dir, info), buf, this.fsync)
    return info
  }

  private currentManifest(): EngineManifest {
    return { version: 1, tables: this.tables.map((t) => t.info), nextTableId: this.nextTableId, walSegmentMin: this.walSegmentMin }
  }

  /** Writes the in-memory state as the manifest (serially); resolves with what was made durable. */
  private persistManifest(): Promise<EngineManifest> {
    const p = this.manifestChain.then(async () => {
      const m = this.currentManifest()
      await writeManifest(this.dir, m, this.fsync)
      this.durableManifest = m
      return m
    })
    this.manifestChain = p.then(() => {}, () => {})
    return p
  }

  private notify(m: EngineManifest): void {
    for (const l of this.listeners) {
      try {
        l(m)
      } catch (e) {
        this.log('storage: manifest listener threw', { error: String(e) })
      }
    }
  }

  // ---- compaction ----

  compact(): Promise<void> {
    const p = this.compactChain.then(() => this.compactOnce())
    this.compactChain = p.then(() => {}, (e) => this.background(e, 'compaction'))
    return p.then(() => {})
  }

  private autoCompact(): void {
    if (this.autoCompactQueued || this.closing) return
    this.autoCompactQueued = true
    const p = this.compactChain.then(async () => {
      this.autoCompactQueued = false
      while (!this.closing && (await this.compactOnce())) { /* until no tier is due */ }
    })
    this.compactChain = p.then(() => {}, (e) => this.background(e, 'compaction'))
  }

  /** One compaction round; false when no tier was due. */
  private async compactOnce(): Promise<boolean> {
    if (this.failed !== undefined) throw this.failed
    if (this.closing) return false
    const pick = pickCompaction(this.tables.map((t) => t.info))
    if (pick === undefined) return false
    const started = performance.now()
    const inputs = this.tables.slice(pick.start, pick.start + pick.count)
    this.log('storage: compaction started', { tier: pick.tier, inputs: inputs.map((t) => t.info.file) })
    // Only a round that includes the oldest table may settle values: nothing older is left for them.
    const oldest = pick.start + pick.count === this.tables.length
    const { buf, builder } = await mergeTables(inputs.map((t) => t.table), this.merge, this.yielder(this.latency.compactionSlice), oldest ? this.settle : undefined)
    const info = await this.writeTable(buf, builder, pick.tier + 1)
    // Flushes may have added newer tables meanwhile; the inputs are still adjacent because only
    // compaction removes tables and one runs at a time.
    const at = this.tables.indexOf(inputs[0]!)
    assert(at >= 0, 'compaction inputs vanished')
    for (let k = 0; k < inputs.length; k++) assert(this.tables[at + k] === inputs[k], 'compaction inputs no longer adjacent')
    this.tables.splice(at, inputs.length, { info, table: builder.toTable(info.file, buf) })
    const m = await this.persistManifest()
    this.compactions++
    this.latency.compaction.recordMs(performance.now() - started)
    const inBytes = inputs.reduce((s, t) => s + t.info.bytes, 0)
    this.log('storage: compacted', { tier: pick.tier, inputs: inputs.map((t) => t.info.file), output: info.file, inBytes, outBytes: info.bytes, ms: Math.round(performance.now() - started) })
    this.notify(m)
    await this.deleteObsolete(inputs.map((t) => t.info))
    return true
  }

  /**
   * Deletes table files no durable manifest names any more, after the grace period (a snapshot
   * upload may be reading them). Timers do not keep the process alive; close() cancels them, and the
   * next open deletes whatever is left.
   */
  private async deleteObsolete(infos: TableInfo[]): Promise<void> {
    const run = async (): Promise<void> => {
      for (const info of infos) {
        await unlink(tablePath(this.dir, info)).catch((e: NodeJS.ErrnoException) => {
          if (e.code !== 'ENOENT') this.log('storage: deleting an obsolete table failed', { file: info.file, error: String(e) })
        })
      }
    }
    if (this.obsoleteGraceMs === 0) return run()
    const timer = setTimeout(() => {
      this.obsoleteTimers.delete(timer)
      void run()
    }, this.obsoleteGraceMs)
    timer.unref()
    this.obsoleteTimers.add(timer)
  }

  // ---- reads ----

  get(key: string): Uint8Array | undefined {
    const found = this.found
    found.length = 0
    const a = this.active.get(key)
    if (a !== undefined) found.push(a)
    for (const f of this.frozen) {
      const v = f.mem.get(key)
      if (v !== undefined) found.push(v)
    }
    const tables = this.tables
    if (tables.length > 0 && key.length <= storageLimits.keyBytesMax) {
      // The hash and the UTF-8 bytes are computed once, and only when some table's key range holds
      // the key (time-ordered keys put most tables out of range).
      // The scratch buffer is passed with its used length: no per-get view is allocated.
      let hash = 0
      let n = -1
      const kb = this.keyScratch
      for (let i = 0; i < tables.length; i++) {
        const t = tables[i]!.table
        if (!t.inRange(key)) continue
        if (n < 0) {
          n = kb.write(key, 0, 'utf8')
          if (n > storageLimits.keyBytesMax) break
          hash = bloomHash(key)
        }
        const v = t.get(key, hash, kb, n)
        if (v !== undefined) found.push(v)
      }
    }
    if (found.length <= 1) return found[0]
    let v = found[found.length - 1]!
    for (let i = found.length - 2; i >= 0; i--) v = this.merge(v, found[i]!)
    return v
  }

  scan(prefix: string, opts: { limit: number; after?: string }): ScanResult {
    assert(Number.isSafeInteger(opts.limit) && opts.limit >= 1, `scan limit must be a positive integer, got ${opts.limit}`)
    const after = opts.after
    const from = after !== undefined && after > prefix ? after : prefix
    // Newest first, so that folding from the end sees older versions first.
    const sources: Source[] = [new MemtableSource(this.active, from)]
    for (const f of this.frozen) sources.push(new MemtableSource(f.mem, from))
    for (const t of this.tables) sources.push(t.table.iterator(from) as TableIterator)
    if (after !== undefined) {
      for (const s of sources) if (s.key === after) s.next()
    }
    const entries: Array<readonly [string, Uint8Array]> = []
    for (;;) {
      let min: string | undefined
      for (const s of sources) {
        const k = s.key
        if (k !== undefined && (min === undefined || k < min)) min = k
      }
      if (min === undefined || !min.startsWith(prefix)) return { entries }
      if (entries.length === opts.limit) return { entries, cursor: entries[entries.length - 1]![0] }
      let v: Uint8Array | undefined
      for (let i = sources.length - 1; i >= 0; i--) {
        const s = sources[i]!
        if (s.key === min) {
          v = v === undefined ? s.value : this.merge(v, s.value)
          s.next()
        }
      }
      entries.push([min, v!])
    }
  }

  manifest(): EngineManifest {
    return this.durableManifest
  }

  onManifest(listener: (m: EngineManifest) => void): () => void {
    this.listeners.add(listener)
    return () => { this.listeners.delete(listener) }
  }

  stats(): EngineStats {
    let keys = this.active.size
    for (const f of this.frozen) keys += f.mem.size
    let tableBytes = 0
    for (const t of this.tables) {
      keys += t.info.keys
      tableBytes += t.info.bytes
    }
    let memtableBytes = this.active.bytes
    for (const f of this.frozen) memtableBytes += f.mem.bytes
    return {
      keysApprox: keys,
      memtableBytes,
      tableBytes,
      tables: this.tables.length,
      walBytes: this.wal.bytes,
      flushes: this.flushes,
      compactions: this.compactions,
    }
  }

  /** Waits for acknowledged puts' fsyncs and stops background work; the WAL covers the memtable. */
  async close(): Promise<void> {
    if (this.closing) return
    this.closing = true
    await this.flushChain.catch(() => {})
    await this.compactChain.catch(() => {})
    await this.manifestChain
    for (const t of this.obsoleteTimers) clearTimeout(t)
    this.obsoleteTimers.clear()
    await this.wal.close()
  }
}

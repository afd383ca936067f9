// Continuous S3 snapshots of one replica's storage engine (docs/storage.md "S3 snapshots").
//
// After each engine manifest change (a flush or a compaction committed), the snapshotter uploads
// the tables the new manifest names that the store does not hold yet, and only then writes a
// snapshot manifest naming them (snapshot-manifest.ts): the manifest is what a restore trusts, so it
// must never name a table that is not there. SSTables are immutable, so after the first upload only
// new tables travel, as in RocksDB's BackupEngine and Cassandra's incremental backups.
//
// One loop does all S3 work, so uploads, manifest writes and garbage collection never race:
// - Coalescing: manifests that arrive during an upload are not queued; when the upload ends the loop
//   takes the newest one only (tables the intermediate ones named may already be compacted away).
// - S3 trouble never blocks or loses writes: the engine goes on writing its WAL and tables locally;
//   a failed round is retried after an exponential, jittered backoff (bounded delay; the loop keeps
//   trying as long as there is something to upload, because giving up would lose the snapshot). The
//   local cost is bounded instead: bytesPending (table bytes not yet uploaded + WAL bytes) above the
//   budget makes overBudget() true, and the replica then refuses writes with StorageFull.
// - Garbage: objects that no kept manifest (the newest `manifestsKept`) or the upload in progress
//   needs are deleted only after they have been unneeded for a grace period, since a restore on
//   another machine may be reading an older manifest's tables. The clock of that grace starts at
//   this process's first sighting, so a restart only delays deletion, never hastens it.

import { open, readFile, stat } from 'node:fs/promises'
import { crc32c } from '@node-rs/crc32'
import { setMaxListeners } from 'node:events'
import { assert } from '../../coordinator/assert.ts'
import { KvError } from '../../coordinator/errors.ts'
import { tablePath } from '../storage/disk-layout.ts'
import type { Engine, EngineManifest, Log, TableInfo } from '../storage/engine-types.ts'
import { crc32cHex } from '../storage/file-util.ts'
import type { ObjectStore } from './object-store.ts'
import {
  decodeSnapshotManifest, encodeSnapshotManifest, manifestKey, manifestSeqOf, manifestsPrefix,
  snapshotManifestVersion, tableKey, tablesPrefix, type SnapshotManifest,
} from './snapshot-manifest.ts'
import { snapshotLimits as L } from './snapshot-limits.ts'
import { backoffDelayMs } from '../../coordinator/backoff.ts'
import { sleep } from '../abortable-sleep.ts'

export interface SnapshotterOptions {
  engine: Engine
  store: ObjectStore
  cluster: string
  node: string
  incarnation: number
  /** The engine's directory: table files are read from where disk-layout.ts's tablePath puts them. */
  dataDir: string
  log: Log
  clock?: { now(): number }
  /** Uniform in [0, 1), for backoff jitter. */
  random?: () => number
  gcGraceMs?: number
  gcIntervalMs?: number
  manifestsKept?: number
  bytesPendingBudget?: number
  backoffMsMin?: number
  backoffMsMax?: number
  snapshotNowTimeoutMs?: number
  /** Tables at least this large go by multipart upload. */
  multipartThresholdBytes?: number
  partBytes?: number
}

export interface SnapshotState {
  /** When the newest manifest this process wrote was created (ms since epoch), or null. */
  readonly lastManifestAt: number | null
  readonly lastManifestSeq: number | null
  /** Table bytes the newest engine manifest names that are not in S3, plus the engine's WAL bytes. */
  readonly bytesPending: number
  readonly bytesPendingBudget: number
  readonly uploading: boolean
  readonly lastError: string | null
  readonly consecutiveFailures: number
}

export interface SnapshotSummary {
  readonly seq: number
  readonly key: string
  readonly createdAt: number
  readonly tables: number
  /** Bytes of all the tables the manifest names. */
  readonly bytes: number
  /** Bytes uploaded in the round that wrote it (tables not already in the store). */
  readonly bytesUploaded: number
  readonly durationMs: number
}

interface Waiter {
  gen: number
  resolve: (s: SnapshotSummary) => void
  reject: (e: unknown) => void
}

/** A table named by the manifest being uploaded is gone from disk: a newer manifest replaced it. */
class TableGoneError extends Error {}

export class Snapshotter {
  private readonly engine: Engine
  private readonly store: ObjectStore
  private readonly cluster: string
  private readonly node: string
  private readonly incarnation: number
  private readonly dataDir: string
  private readonly log: Log
  private readonly clock: { now(): number }
  private readonly random: () => number
  private readonly gcGraceMs: number
  private readonly manifestsKept: number
  private readonly budget: number
  private readonly backoffMsMin: number
  private readonly backoffMsMax: number
  private readonly snapshotNowTimeoutMs: number
  private readonly multipartThresholdBytes: number
  private readonly partBytes: number

  /** Table file -> CRC32C of the object the store holds under its name. */
  private readonly uploaded = new Map<string, number>()
  /** Manifest seq -> table files it names, for the manifests this process knows. */
  private readonly manifests = new Map<number, ReadonlySet<string>>()
  /** Object key -> when it was first seen unneeded (grace period start). */
  private readonly unneededSince = new Map<string, number>()

  private latest: EngineManifest
  /** Bumped on every new target; uploadedGen catches up to it. */
  private latestGen = 0
  private uploadedGen = 0
  private initialized = false
  private lastSeq = 0
  private lastManifestAt: number | null = null
  private lastManifestSeq: number | null = null
  private lastSummary: SnapshotSummary | undefined
  private uploading = false
  private lastError: unknown = undefined
  private consecutiveFailures = 0
  private gcDue = false
  private running: Promise<void> | undefined
  private closed = false
  private readonly abort = new AbortController()
  private readonly waiters: Waiter[] = []
  private readonly unsubscribe: () => void
  private readonly gcTimer: NodeJS.Timeout

  constructor(opts: SnapshotterOptions) {
    this.engine = opts.engine
    this.store = opts.store
    this.cluster = opts.cluster
    this.node = opts.node
    this.incarnation = opts.incarnation
    this.dataDir = opts.dataDir
    this.log = opts.log
    this.clock = opts.clock ?? { now: () => Date.now() }
    this.random = opts.random ?? Math.random
    this.gcGraceMs = opts.gcGraceMs ?? L.gcGraceMsDefault
    this.manifestsKept = opts.manifestsKept ?? L.manifestsKeptDefault
    this.budget = opts.bytesPendingBudget ?? L.bytesPendingBudgetDefault
    this.backoffMsMin = opts.backoffMsMin ?? L.uploadBackoffMsMin
    this.backoffMsMax = opts.backoffMsMax ?? L.uploadBackoffMsMax
    this.snapshotNowTimeoutMs = opts.snapshotNowTimeoutMs ?? L.snapshotNowTimeoutMsDefault
    this.multipartThresholdBytes = opts.multipartThresholdBytes ?? L.multipartThresholdBytes
    this.partBytes = opts.partBytes ?? L.multipartPartBytesDefault
    assert(/^[A-Za-z0-9._-]+$/.test(this.cluster) && /^[A-Za-z0-9._-]+$/.test(this.node),
      `cluster and node must be plain names (letters, digits, . _ -), got "${this.cluster}", "${this.node}"`)
    assert(Number.isSafeInteger(this.incarnation) && this.incarnation >= 0, 'incarnation is a non-negative integer')
    assert(this.gcGraceMs >= 0, 'gcGraceMs >= 0')
    assert(this.manifestsKept >= 1 && this.manifestsKept <= L.manifestsKeptMax, `manifestsKept must be 1..${L.manifestsKeptMax}`)
    assert(this.budget > 0, 'bytesPendingBudget > 0')
    assert(this.backoffMsMin > 0 && this.backoffMsMin <= this.backoffMsMax, 'backoff min <= max')
    assert(this.partBytes >= L.multipartPartBytesMin, `partBytes must be at least ${L.multipartPartBytesMin}`)
    assert(this.multipartThresholdBytes >= this.partBytes, 'multipartThresholdBytes >= partBytes')

    this.latest = this.engine.manifest()
    // Tables already on disk at start are uploaded (unless the store has them); an engine with no
    // table yet has nothing worth a manifest, and an empty manifest would shadow an older useful one.
    if (this.latest.tables.length > 0) this.latestGen = 1
    // One close() signal is shared by every upload in flight (parts of several tables at once):
    // more listeners than Node's default warning threshold of 10 is expected, not a leak.
    setMaxListeners(L.abortListenersMax, this.abort.signal)
    this.unsubscribe = this.engine.onManifest((m) => {
      this.latest = m
      this.latestGen++
      this.kick()
    })
    this.gcTimer = setInterval(() => { this.gcDue = true; this.kick() }, opts.gcIntervalMs ?? L.gcIntervalMsDefault)
    this.gcTimer.unref()
    this.kick()
  }

  state(): SnapshotState {
    return {
      lastManifestAt: this.lastManifestAt,
      lastManifestSeq: this.lastManifestSeq,
      bytesPending: this.bytesPending(),
      bytesPendingBudget: this.budget,
      uploading: this.uploading,
      lastError: this.lastError === undefined ? null : describe(this.lastError),
      consecutiveFailures: this.consecutiveFailures,
    }
  }

  bytesPending(): number {
    let bytes = this.engine.stats().walBytes
    for (const t of this.engine.manifest().tables) if (this.uploaded.get(t.file) !== t.crc32c) bytes += t.bytes
    return bytes
  }

  /** True when the replica should refuse writes (KvError StorageFull) until S3 catches up. */
  overBudget(): boolean {
    return this.bytesPending() > this.budget
  }

  /** Throws KvError StorageFull when over budget; for the replica's write path. */
  assertWithinBudget(): void {
    const bytes = this.bytesPending()
    if (bytes > this.budget) {
      throw new KvError({ kind: 'StorageFull', bytes, bytesMax: this.budget },
        `${bytes} bytes are waiting for S3 (budget ${this.budget}): writes are refused until snapshots catch up` +
        (this.lastError === undefined ? '' : `; last S3 error: ${describe(this.lastError)}`))
    }
  }

  /** Flushes the engine, uploads, and resolves once a manifest covering every write so far is in S3. */
  async snapshotNow(): Promise<SnapshotSummary> {
    if (this.closed) throw new KvError({ kind: 'Unavailable' }, 'snapshotter is closed')
    await this.engine.flush()
    // Always a new manifest, even when the flush had nothing to write: the caller asked for one.
    this.latest = this.engine.manifest()
    const gen = ++this.latestGen
    const done = new Promise<SnapshotSummary>((resolve, reject) => this.waiters.push({ gen, resolve, reject }))
    this.kick()
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new KvError({ kind: 'Unavailable' },
        `snapshot not in S3 after ${this.snapshotNowTimeoutMs} ms (${this.consecutiveFailures} failed rounds` +
        `${this.lastError === undefined ? '' : `, last: ${describe(this.lastError)}`}); uploads go on in the background`,
        { cause: this.lastError })), this.snapshotNowTimeoutMs)
    })
    try {
      return await Promise.race([done, timeout])
    } finally {
      clearTimeout(timer)
    }
  }

  /** Stops timers and any S3 request in flight; pending snapshotNow() calls reject. */
  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    this.unsubscribe()
    clearInterval(this.gcTimer)
    this.abort.abort(new KvError({ kind: 'Unavailable' }, 'snapshotter closed'))
    for (const w of this.waiters.splice(0)) w.reject(new KvError({ kind: 'Unavailable' }, 'snapshotter closed'))
    await this.running
  }

  // -------------------------------------------------------------------------------------------

  private kick(): void {
    if (this.closed || this.running !== undefined) return
    this.running = this.loop().finally(() => {
      this.running = undefined
      // Work that arrived while the loop was deciding to stop.
      if (!this.closed && (this.uploadedGen < this.latestGen || this.gcDue)) this.kick()
    })
  }

  private async loop(): Promise<void> {
    while (!this.closed) {
      try {
        if (!this.initialized) await this.init()
        if (this.uploadedGen < this.latestGen) {
          const gen = this.latestGen
          this.uploading = true
          const summary = await this.uploadOnce(this.latest)
          this.uploadedGen = gen
          this.lastSummary = summary
          this.resolveWaiters(gen, summary)
          this.gcDue = true
        } else if (this.gcDue) {
          this.gcDue = false
          await this.gc()
        } else {
          break
        }
        this.uploading = false
        this.consecutiveFailures = 0
        this.lastError = undefined
      } catch (e) {
        this.uploading = false
        if (this.closed) break
        if (e instanceof TableGoneError && this.uploadedGen < this.latestGen && this.latest.tables.every((t) => t.file !== e.message)) {
          continue // compaction replaced the table: go straight on with the newer manifest
        }
        this.consecutiveFailures++
        this.lastError = e
        const delayMs = backoffDelayMs({ minMs: this.backoffMsMin, maxMs: this.backoffMsMax, jitter: 'equal' }, this.consecutiveFailures, this.random)
        this.log('snapshot upload failed, retrying', {
          error: describe(e), consecutiveFailures: this.consecutiveFailures, delayMs, bytesPending: this.bytesPending(),
        })
        // close() aborts the wait; the loop then sees `closed` and ends.
        await sleep(delayMs, this.abort.signal).catch(() => undefined)
      }
    }
    this.uploading = false
  }

  /** Learns what the store already holds: the highest seq, and the tables of the kept manifests. */
  private async init(): Promise<void> {
    const signal = this.abort.signal
    const seqs = (await this.store.list(manifestsPrefix(this.cluster, this.node), { signal }))
      .map(manifestSeqOf).filter((s): s is number => s !== undefined).sort((a, b) => b - a)
    this.lastSeq = seqs[0] ?? 0
    for (const seq of seqs.slice(0, this.manifestsKept)) {
      const m = await this.readManifest(seq)
      if (m === undefined) continue
      for (const t of m.engine.tables) this.uploaded.set(t.file, t.crc32c)
    }
    this.initialized = true
    this.log('snapshotter ready', { store: this.store.description, lastSeq: this.lastSeq, tablesKnown: this.uploaded.size })
  }

  private async readManifest(seq: number): Promise<SnapshotManifest | undefined> {
    const bytes = await this.store.get(manifestKey(this.cluster, this.node, seq), { signal: this.abort.signal })
    if (bytes === undefined) return undefined
    try {
      const m = decodeSnapshotManifest(bytes)
      this.manifests.set(seq, new Set(m.engine.tables.map((t) => t.file)))
      return m
    } catch (e) {
      this.log('snapshot manifest unreadable, ignored', { seq, error: describe(e) })
      return undefined
    }
  }

  private async uploadOnce(target: EngineManifest): Promise<SnapshotSummary> {
    // A failed engine's manifest is not all that was acknowledged (the rest is in its WAL, which a
    // restart replays): publishing it as a snapshot would tell a restore it is complete.
    const failure = this.engine.failure()
    if (failure !== undefined) throw new KvError({ kind: 'Internal' }, `storage engine failed (${failure}): no snapshot is published until it is restarted`)
    const started = this.clock.now()
    let bytesUploaded = 0
    // A few tables in flight at once: per-request latency, not bandwidth, dominates small tables.
    const todo = target.tables.filter((t) => this.uploaded.get(t.file) !== t.crc32c)
    let next = 0
    const worker = async (): Promise<void> => {
      while (next < todo.length) {
        const t = todo[next++]
        if (t === undefined) break
        await this.uploadTable(t)
        this.uploaded.set(t.file, t.crc32c)
        bytesUploaded += t.bytes
      }
    }
    await Promise.all(Array.from({ length: Math.min(L.uploadTablesInflightMax, todo.length) }, worker))
    const seq = this.lastSeq + 1
    const createdAt = this.clock.now()
    const manifest: SnapshotManifest = {
      version: snapshotManifestVersion,
      seq,
      createdAt,
      cluster: this.cluster,
      node: this.node,
      incarnation: this.incarnation,
      engine: target,
      tableSizes: Object.fromEntries(target.tables.map((t) => [t.file, t.bytes])),
    }
    const key = manifestKey(this.cluster, this.node, seq)
    await this.store.put(key, encodeSnapshotManifest(manifest), { signal: this.abort.signal })
    this.lastSeq = seq
    this.lastManifestAt = createdAt
    this.lastManifestSeq = seq
    this.manifests.set(seq, new Set(target.tables.map((t) => t.file)))
    const summary: SnapshotSummary = {
      seq, key, createdAt, tables: target.tables.length,
      bytes: target.tables.reduce((n, t) => n + t.bytes, 0), bytesUploaded, durationMs: this.clock.now() - started,
    }
    this.log('snapshot manifest uploaded', { ...summary })
    return summary
  }

  /** Verifies the local file against the manifest's size and CRC32C, then uploads it. */
  private async uploadTable(t: TableInfo): Promise<void> {
    const path = tablePath(this.dataDir, t)
    const key = tableKey(this.cluster, this.node, t.file)
    const signal = this.abort.signal
    let size: number
    try {
      size = (await stat(path)).size
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new TableGoneError(t.file)
      throw e
    }
    if (size !== t.bytes) {
      throw new KvError({ kind: 'Corruption', file: path, offset: Math.min(size, t.bytes) },
        `table ${path} has ${size} bytes, its manifest says ${t.bytes}: not uploaded`)
    }
    if (size < this.multipartThresholdBytes) {
      const bytes = await readFile(path)
      this.checkCrc(path, crc32c(bytes), t)
      await this.store.put(key, bytes, { signal })
    } else {
      // Large tables: one streaming pass for the CRC, then multipart from the file, part by part.
      this.checkCrc(path, await fileCrc32c(path, size), t)
      await this.store.putLarge(key, { path, bytes: size }, { partBytes: this.partBytes, signal })
    }
  }

  private checkCrc(path: string, actual: number, t: TableInfo): void {
    if (actual !== t.crc32c) {
      throw new KvError({ kind: 'Corruption', file: path, offset: 0 },
        `table ${path} CRC32C is ${crc32cHex(actual)}, its manifest says ${crc32cHex(t.crc32c)}: not uploaded`)
    }
  }

  private async gc(): Promise<void> {
    const signal = this.abort.signal
    const now = this.clock.now()
    const manifestKeys = await this.store.list(manifestsPrefix(this.cluster, this.node), { signal })
    const bySeq = new Map<number, string>()
    for (const k of manifestKeys) { const s = manifestSeqOf(k); if (s !== undefined) bySeq.set(s, k) }
    const keep = [...bySeq.keys()].sort((a, b) => b - a).slice(0, this.manifestsKept)
    const needed = new Set(this.latest.tables.map((t) => t.file))
    for (const seq of keep) {
      let files = this.manifests.get(seq)
      if (files === undefined) {
        await this.readManifest(seq)
        files = this.manifests.get(seq)
        // A kept manifest we cannot read: keep everything rather than guess.
        if (files === undefined) return
      }
      for (const f of files) needed.add(f)
    }
    const candidates = new Set<string>()
    for (const [seq, key] of bySeq) if (!keep.includes(seq)) candidates.add(key)
    const tPrefix = tablesPrefix(this.cluster, this.node)
    for (const key of await this.store.list(tPrefix, { signal })) {
      if (!needed.has(key.slice(tPrefix.length))) candidates.add(key)
    }
    for (const key of this.unneededSince.keys()) if (!candidates.has(key)) this.unneededSince.delete(key)
    const doomed: string[] = []
    for (const key of candidates) {
      const since = this.unneededSince.get(key)
      if (since === undefined) this.unneededSince.set(key, now)
      else if (now - since >= this.gcGraceMs) doomed.push(key)
    }
    if (doomed.length === 0) return
    await this.store.delete(doomed, { signal })
    for (const key of doomed) {
      this.unneededSince.delete(key)
      if (key.startsWith(tPrefix)) this.uploaded.delete(key.slice(tPrefix.length))
      const seq = manifestSeqOf(key)
      if (seq !== undefined) this.manifests.delete(seq)
    }
    this.log('snapshot garbage deleted', { objects: doomed.length })
  }

  private resolveWaiters(gen: number, summary: SnapshotSummary): void {
    for (let i = this.waiters.length - 1; i >= 0; i--) {
      const w = this.waiters[i]
      if (w !== undefined && w.gen <= gen) {
        this.waiters.splice(i, 1)
        w.resolve(summary)
      }
    }
  }

  /** The summary of the newest manifest this process wrote. */
  lastSnapshot(): SnapshotSummary | undefined {
    return this.lastSummary
  }
}

async function fileCrc32c(path: string, size: number): Promise<number> {
  const fh = await open(path, 'r')
  try {
    const buf = Buffer.allocUnsafe(Math.min(size, L.restoreChunkBytes))
    let crc = 0
    let pos = 0
    while (pos < size) {
      const { bytesRead } = await fh.read(buf, 0, Math.min(buf.byteLength, size - pos), pos)
      if (bytesRead === 0) break
      crc = crc32c(buf.subarray(0, bytesRead), crc)
      pos += bytesRead
    }
    return crc
  } finally {
    await fh.close()
  }
}

function describe(e: unknown): string {
  return e instanceof Error ? e.message : String(e)
}

// The contract between the replica service, the storage engine (replica/storage/) and the S3
// snapshotter (replica/snapshot/). The engine stores opaque bytes per key and combines two versions
// of a key with an injected `merge` (the replica passes DVV sync over its encoded states), so the
// engine knows nothing of versions and the snapshotter knows nothing of the engine's internals
// beyond the files named in its manifest.
//
// The directory under EngineOptions.dir is owned by the engine (the snapshotter's restore fills it
// before the engine is opened); its file names are in disk-layout.ts: the manifest, replaced
// atomically, the immutable tables it names (others are garbage), and the WAL segments.

import type { KvError } from '../../coordinator/errors.ts'
import type { LatencyHistogram } from '../../coordinator/metrics/histogram.ts'

/** Structured logging: a message and its fields (the replica prints them as one JSON line). */
export type Log = (msg: string, fields?: Record<string, unknown>) => void

export interface EngineOptions {
  dir: string
  /** Combine two versions of one key, `older` first. Commutative, associative, idempotent. */
  merge: (older: Uint8Array, newer: Uint8Array) => Uint8Array
  /**
   * Applied to each value a compaction writes when its inputs include the oldest table (so no
   * older version of the key remains): returns the value to keep, or undefined to drop the key.
   * The replica settles reaped keys this way (state-codec.ts settleStored). Default: keep as is.
   */
  settle?: (value: Uint8Array) => Uint8Array | undefined
  /** Freeze and flush the memtable when it holds this many bytes. */
  memtableBytesMax?: number
  /** false only in benchmarks that measure the cost of fsync itself. */
  fsync?: boolean
  log?: Log
  /**
   * Milliseconds a compacted-away table file stays on disk before it is deleted, so that a snapshot
   * upload reading it meanwhile does not fail; default storageLimits.obsoleteTableGraceMs (60 s).
   * 0 deletes at once. Files left at close are deleted at the next open (no manifest names them).
   */
  obsoleteTableGraceMs?: number
}

export interface PutOptions {
  /**
   * The caller guarantees that `value` already descends (includes) whatever the engine holds for
   * the key, i.e. merge(old, value) would equal `value`: the memtable then stores `value` without
   * calling `merge` against the memtable's current version. Reads still merge across tables, so a
   * wrong hint cannot lose a version that is in a table, only one written since the last flush.
   * Default false (the engine merges).
   */
  readonly supersedes?: boolean
}

export interface TableInfo {
  /** Zero-padded, increasing: "000012". */
  readonly id: string
  /** File name relative to `${dir}/tables/`: `${id}.sst`. */
  readonly file: string
  readonly bytes: number
  readonly keys: number
  /** CRC32C of the whole file, so a restore can verify a download. */
  readonly crc32c: number
  /** Size tier / compaction level the table belongs to. */
  readonly tier: number
}

export interface EngineManifest {
  readonly version: 1
  /** Live tables, newest first. */
  readonly tables: readonly TableInfo[]
  readonly nextTableId: number
  /** WAL segments with a lower sequence are fully covered by the tables above. */
  readonly walSegmentMin: number
}

export interface EngineStats {
  readonly keysApprox: number
  readonly memtableBytes: number
  readonly tableBytes: number
  readonly tables: number
  readonly walBytes: number
  readonly flushes: number
  readonly compactions: number
}

export interface ScanResult {
  readonly entries: ReadonlyArray<readonly [key: string, value: Uint8Array]>
  /** Pass as `after` to continue; absent when the scan reached the end of the prefix. */
  readonly cursor?: string
}

/**
 * A value given as its exact size and a function that writes it at `offset` of `buf`: the engine
 * calls it once, on the WAL record it keeps, so the caller's encoding lands there with no
 * intermediate buffer.
 */
export interface ValueWriter {
  readonly bytes: number
  write(buf: Buffer, offset: number): void
}

/**
 * Where the engine's time goes, for the replica's /metrics (docs/performance.md): each WAL group's
 * fdatasync, each memtable flush and compaction from start to commit, and each slice of their work
 * between two event-loop yields (what a flush or compaction holds the replica's loop for).
 */
export interface StorageLatency {
  readonly walFsync: LatencyHistogram
  readonly flush: LatencyHistogram
  readonly flushSlice: LatencyHistogram
  readonly compaction: LatencyHistogram
  readonly compactionSlice: LatencyHistogram
}

export interface Engine {
  /** Latency histograms (the LSM engine keeps them; other engines may not). */
  readonly latency?: StorageLatency
  /** The last WAL group's fsync (ms): read when a put resolves, the fsync that made it durable. */
  readonly lastFsyncMs?: number
  /** Merged value across memtable and tables, newest first; undefined when never written. */
  get(key: string): Uint8Array | undefined
  /**
   * Visible to get() as soon as this returns (the promise is created synchronously); the promise
   * resolves only after the fsync that covers the WAL record (group commit).
   */
  put(key: string, value: Uint8Array | ValueWriter, opts?: PutOptions): Promise<void>
  /**
   * The error put would refuse a write with right now (closed, failed, overloaded), or undefined.
   * Work that must go with a write in the same turn (the anti-entropy tree, which trusts that what
   * it was told is stored) asks first, so that a refused write leaves nothing behind.
   */
  refusal(): KvError | undefined
  scan(prefix: string, opts: { limit: number; after?: string }): ScanResult
  /** Freeze the memtable and write it as a table now; resolves when the manifest names it. */
  flush(): Promise<void>
  /** Run one size-tiered compaction round now if any tier is due; resolves when committed. */
  compact(): Promise<void>
  manifest(): EngineManifest
  /** Called after each flush or compaction commits a new manifest. */
  onManifest(listener: (m: EngineManifest) => void): () => void
  stats(): EngineStats
  /**
   * Why the engine refuses writes (a flush, compaction or WAL write failed: disk full, I/O error),
   * or undefined while it works. A restart replays the WAL and tries again.
   */
  failure(): string | undefined
  close(): Promise<void>
}

// Every bound of the storage engine (replica/storage/), in one place, with the relations between
// them asserted when this module loads (TigerBeetle's constants.zig). The WAL group-commit bounds are
// shared with the replica's write path and therefore live in coordinator/limits.ts; they are re-exported
// here so the engine reads all of its bounds from one module. Bounds derived from others are computed
// from them here, never spelled again as numbers.

import { assert } from '../../coordinator/assert.ts'
import { limits } from '../../coordinator/limits.ts'

const KiB = 1024
const MiB = 1024 * KiB
const entryBytesMax = 64 * MiB
/** A WAL record's bytes before its key: crc32c(4) len(4) keyLen(2) (the layout is in wal.ts). */
const walRecordHeaderBytes = 10
const walRecordBytesMax = walRecordHeaderBytes + limits.keyBytesMax + entryBytesMax

export const storageLimits = {
  /** Records one WAL write+fsync may cover (group commit). */
  walGroupRecordsMax: limits.walGroupRecordsMax,
  /** Bytes one WAL write+fsync may cover; a single larger record forms a group of its own. */
  walGroupBytesMax: limits.walGroupBytesMax,
  /**
   * Longest a record waits before its group is started. The WAL starts a group on the next turn of
   * the event loop when idle, and right after the previous fsync when busy, so this is an upper bound
   * that the timer only enforces when something delays the turn.
   */
  walGroupWaitMs: limits.walGroupWaitMs,
  /** Largest key, in UTF-8 bytes (the record and table entry store its length in 2 bytes). */
  keyBytesMax: limits.keyBytesMax,
  /**
   * Largest value one WAL record or table entry holds (a 4-byte length). Well above the largest
   * state a replica admits (limits.stateBytesMax), so that whatever the memtable merges from
   * admitted records, or from records an older version admitted, can always be flushed, compacted
   * and replayed: an entry the table builder refused used to stop every write for good.
   */
  entryBytesMax,
  /** Header bytes of a WAL record; the record bounds below are derived from it. */
  walRecordHeaderBytes,

  /** Default size at which the active memtable is frozen and flushed. */
  memtableBytesDefault: 64 * MiB,
  /** Smallest memtable a caller may configure (tests use tiny ones to force flushes). */
  memtableBytesMin: 4 * KiB,
  memtableBytesMax: 256 * MiB,
  /** Accounted per memtable entry on top of key and value bytes (Map slot, strings, views). */
  memtableEntryOverheadBytes: 64,
  /** Frozen memtables waiting for their flush; beyond this the active memtable keeps growing. */
  frozenMemtablesMax: 4,
  /**
   * While the flush backlog is full, the active memtable may grow to this many times its bound
   * (or activeMemtableBytesFloor, whichever is larger) before puts are refused with Overloaded.
   */
  activeMemtableGrowthMax: 2,
  activeMemtableBytesFloor: 32 * MiB,
  /** What a put refused with Overloaded (flush backlog full) tells the caller to wait. */
  overloadedRetryAfterMs: 10,
  /** Keys sorted per slice when a frozen memtable is sorted for its flush (between event-loop yields). */
  memtableSortRunKeys: 4096,

  /** Target size of an SSTable data block (a block holds at least one entry). */
  tableBlockBytes: 4 * KiB,
  /** Smallest buffer a table builder starts with (it doubles as needed). */
  tableBuildBytesMin: 4 * KiB,
  /** Bloom filter bits per key and probes: 10 bits, k = 7 gives about 0.8 % false positives. */
  bloomBitsPerKey: 10,
  bloomProbes: 7,
  /** Most probes a table's bloom block may declare; a table claiming more is corrupt. */
  bloomProbesMax: 30,
  /** SSTables live in one Buffer and use 32-bit offsets; compaction never builds one larger. */
  tableBytesMax: 2 * 1024 * MiB - 1,
  /** Bytes copied per slice when a built table is trimmed of its growth slack. */
  tableTrimSliceBytes: 4 * MiB,

  /** Size-tiered compaction: a tier with this many contiguous tables is merged into the next tier. */
  compactionFanIn: 4,
  /** Most tables one compaction merges. */
  compactionFanInMax: 8,
  /** Highest tier; tables there are never compacted further. */
  tierMax: 16,
  /**
   * How long a table file that a compaction made obsolete stays on disk after the manifest that drops
   * it is durable, so that a snapshot upload reading it at that moment does not hit ENOENT. Files
   * still there at the next open are deleted then (no manifest names them).
   */
  obsoleteTableGraceMs: 60_000,
  /** Longest a flush or compaction runs before yielding to the event loop (setImmediate). */
  backgroundSliceMs: 2,

  /** Longest a WAL record may be (header + key + value). */
  walRecordBytesMax,
  /**
   * Longest a WAL group frame's payload may be: a full group, or one record larger than a group
   * (which forms a group of its own). Replay rejects longer lengths without reading them.
   */
  walGroupFrameBytesMax: limits.walGroupBytesMax + walRecordBytesMax,
  /**
   * WAL segments are zero-filled ahead of the writes in steps of this many bytes, so that the
   * fdatasync of a group flushes only data blocks: with the file size and block map already
   * durable it skips the inode and metadata writes an appending write needs (2.0x faster here).
   */
  walPreallocateBytes: 8 * MiB,
  /**
   * The engine zero-fills in steps of at most 1/this of its memtable, whole pages (a segment holds
   * about one memtable's records), so that tiny test memtables do not write megabytes of zeros per
   * segment; a memtable too small for one page per step is not preallocated at all.
   */
  walPreallocateStepsPerMemtable: 4,
  /** The first zero-fill step of a new segment, awaited before its first group is written. */
  walFirstPreallocateBytes: 1 * MiB,
  /** Zeros written (and compared, at replay) per call: the memory the zero fill holds. */
  walZeroChunkBytes: 1 * MiB,
  /** Zero-fill steps end on page boundaries (4 KiB, the usual Linux page), so that no page is half filled. */
  pageBytes: 4 * KiB,
  /** Buffers one writev takes at most (IOV_MAX on Linux); longer lists go in parts. */
  writevBuffersMax: 1024,
} as const

assert(storageLimits.walGroupRecordsMax >= 1 && storageLimits.walGroupBytesMax >= 64 * 1024,
  'WAL group bounds too small to batch anything')
assert(storageLimits.walGroupFrameBytesMax < 2 ** 32, 'group frame length must fit the 4-byte length field')
assert(storageLimits.walPreallocateBytes >= storageLimits.walFirstPreallocateBytes &&
  storageLimits.walPreallocateBytes % storageLimits.pageBytes === 0 && storageLimits.walFirstPreallocateBytes % storageLimits.pageBytes === 0,
  'WAL preallocation steps must be whole pages, the first no larger than the rest')
assert(storageLimits.walZeroChunkBytes >= storageLimits.pageBytes && storageLimits.walPreallocateStepsPerMemtable >= 1,
  'WAL zero fill out of range')
assert(storageLimits.walGroupWaitMs >= 0 && storageLimits.walGroupWaitMs <= 100, 'WAL group wait out of range')
assert(storageLimits.keyBytesMax < 1 << 16, 'key length must fit the 2-byte length field')
assert(storageLimits.entryBytesMax < 2 ** 32, 'value length must fit the 4-byte length field')
assert(storageLimits.entryBytesMax >= 2 * limits.stateBytesMax, 'an entry must hold well more than the largest admitted state')
assert(storageLimits.memtableBytesMin <= storageLimits.memtableBytesDefault &&
  storageLimits.memtableBytesDefault <= storageLimits.memtableBytesMax, 'memtable default outside [min, max]')
assert(storageLimits.tableBytesMax < 2 ** 32, 'table offsets are 32-bit')
assert(storageLimits.tableBlockBytes >= 512 && storageLimits.tableBlockBytes <= MiB, 'block size out of range')
assert(storageLimits.tableBuildBytesMin >= 1 && storageLimits.tableTrimSliceBytes >= storageLimits.pageBytes &&
  storageLimits.memtableSortRunKeys >= 1, 'table build and slice sizes out of range')
assert(storageLimits.compactionFanIn >= 2 && storageLimits.compactionFanIn <= storageLimits.compactionFanInMax,
  'compaction fan-in must be in [2, fanInMax]')
assert(storageLimits.frozenMemtablesMax >= 1, 'at least one memtable must be able to flush')
assert(storageLimits.activeMemtableGrowthMax >= 1 && storageLimits.activeMemtableBytesFloor >= storageLimits.walGroupBytesMax,
  'the active memtable must be able to take at least one full WAL group past its bound')
assert(storageLimits.memtableBytesMax * storageLimits.activeMemtableGrowthMax * 2 < storageLimits.tableBytesMax,
  'a grown memtable must still fit one table')
assert(storageLimits.bloomProbes >= 1 && storageLimits.bloomProbes <= storageLimits.bloomProbesMax && storageLimits.bloomBitsPerKey >= 1,
  'bloom parameters out of range')
assert(storageLimits.bloomProbesMax < 256, 'the probe count must fit its 1-byte field')
assert(storageLimits.obsoleteTableGraceMs >= 0, 'obsolete table grace must not be negative')
assert(storageLimits.overloadedRetryAfterMs >= 1, 'a retry hint must be positive')
assert(storageLimits.writevBuffersMax >= 1, 'writev takes at least one buffer')
assert(storageLimits.backgroundSliceMs >= 1, 'background slice must be at least 1 ms')

export type StorageLimits = typeof storageLimits

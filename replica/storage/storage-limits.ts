// Every bound of the storage engine (replica/storage/), in one place, with the relations between
// them asserted when this module loads (TigerBeetle's constants.zig). The WAL group-commit bounds are
// shared with the replica's write path and therefore live in coordinator/limits.ts; they are re-exported
// here so the engine reads all of its bounds from one module.

import { assert } from '../../coordinator/assert.ts'
import { limits } from '../../coordinator/limits.ts'

const entryBytesMax = 64 * 1024 * 1024

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

  /** Default size at which the active memtable is frozen and flushed. */
  memtableBytesDefault: 64 * 1024 * 1024,
  /** Smallest memtable a caller may configure (tests use tiny ones to force flushes). */
  memtableBytesMin: 4 * 1024,
  memtableBytesMax: 256 * 1024 * 1024,
  /** Accounted per memtable entry on top of key and value bytes (Map slot, strings, views). */
  memtableEntryOverheadBytes: 64,
  /** Frozen memtables waiting for their flush; beyond this the active memtable keeps growing. */
  frozenMemtablesMax: 4,
  /**
   * While the flush backlog is full, the active memtable may grow to this many times its bound
   * (or activeMemtableBytesFloor, whichever is larger) before puts are refused with Overloaded.
   */
  activeMemtableGrowthMax: 2,
  activeMemtableBytesFloor: 32 * 1024 * 1024,

  /** Target size of an SSTable data block (a block holds at least one entry). */
  tableBlockBytes: 4 * 1024,
  /** Bloom filter bits per key and probes: 10 bits, k = 7 gives about 0.8 % false positives. */
  bloomBitsPerKey: 10,
  bloomProbes: 7,
  /** Most probes a table's bloom block may declare; a table claiming more is corrupt. */
  bloomProbesMax: 30,
  /** SSTables live in one Buffer and use 32-bit offsets; compaction never builds one larger. */
  tableBytesMax: 2 * 1024 * 1024 * 1024 - 1,

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
  walRecordBytesMax: 10 + limits.keyBytesMax + entryBytesMax,
  /**
   * Longest a WAL group frame's payload may be: a full group, or one record larger than a group
   * (which forms a group of its own). Replay rejects longer lengths without reading them.
   */
  walGroupFrameBytesMax: limits.walGroupBytesMax + 10 + limits.keyBytesMax + entryBytesMax,
  /**
   * WAL segments are zero-filled ahead of the writes in steps of this many bytes, so that the
   * fdatasync of a group flushes only data blocks: with the file size and block map already
   * durable it skips the inode and metadata writes an appending write needs (2.0x faster here).
   */
  walPreallocateBytes: 8 * 1024 * 1024,
} as const

assert(storageLimits.walGroupRecordsMax >= 1 && storageLimits.walGroupBytesMax >= 64 * 1024,
  'WAL group bounds too small to batch anything')
assert(storageLimits.walGroupFrameBytesMax >= storageLimits.walGroupBytesMax + storageLimits.walRecordBytesMax,
  'a group frame must hold a full group or the largest record')
assert(storageLimits.walGroupFrameBytesMax < 2 ** 32, 'group frame length must fit the 4-byte length field')
assert(storageLimits.walPreallocateBytes >= 1024 * 1024 && storageLimits.walPreallocateBytes % 4096 === 0,
  'WAL preallocation step must be whole pages, at least 1 MiB')
assert(storageLimits.walGroupWaitMs >= 0 && storageLimits.walGroupWaitMs <= 100, 'WAL group wait out of range')
assert(storageLimits.keyBytesMax < 1 << 16, 'key length must fit the 2-byte length field')
assert(storageLimits.entryBytesMax < 2 ** 32, 'value length must fit the 4-byte length field')
assert(storageLimits.entryBytesMax >= 2 * limits.stateBytesMax, 'an entry must hold well more than the largest admitted state')
assert(storageLimits.walRecordBytesMax >= 10 + storageLimits.keyBytesMax + storageLimits.entryBytesMax,
  'a WAL record must hold the largest key and value')
assert(storageLimits.memtableBytesMin <= storageLimits.memtableBytesDefault &&
  storageLimits.memtableBytesDefault <= storageLimits.memtableBytesMax, 'memtable default outside [min, max]')
assert(storageLimits.tableBytesMax < 2 ** 32, 'table offsets are 32-bit')
assert(storageLimits.tableBlockBytes >= 512 && storageLimits.tableBlockBytes <= 1024 * 1024, 'block size out of range')
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
assert(storageLimits.backgroundSliceMs >= 1, 'background slice must be at least 1 ms')

export type StorageLimits = typeof storageLimits

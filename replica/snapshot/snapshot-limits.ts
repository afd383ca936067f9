// Every bound of the S3 snapshot path (object store client, snapshotter, restore) in one place,
// like coordinator/limits.ts for the rest of ringkv. Relations between them are asserted when this
// module loads, so a bad edit fails at start-up rather than in the middle of an outage. Runtime
// options may lower a limit (tests use tiny grace periods and budgets), never raise a hard maximum.

import { assert } from '../../coordinator/assert.ts'

const MiB = 1024 * 1024

export const snapshotLimits = {
  // One S3 request (object-store client).
  /** Attempts per S3 request, the first included, before a transient failure becomes a KvError. */
  s3AttemptsMax: 4,
  s3BackoffMsMin: 50,
  s3BackoffMsMax: 2_000,
  s3ConnectTimeoutMs: 2_000,
  /** Whole-request timeout; a 5 MiB part on loopback takes well under a second. */
  s3RequestTimeoutMs: 60_000,
  /** S3 caps DeleteObjects at 1000 keys and ListObjectsV2 at 1000 keys per page. */
  deleteBatchKeysMax: 1000,
  listPageKeysMax: 1000,
  /** Pages one list() may walk (10 M keys): a bound, not an expectation. */
  listPagesMax: 10_000,
  /** S3 refuses parts under 5 MiB (except the last) and more than 10 000 parts. */
  multipartPartBytesMin: 5 * MiB,
  multipartPartBytesDefault: 8 * MiB,
  multipartPartsMax: 10_000,
  /** Bodies at least this large go through multipart upload. */
  multipartThresholdBytes: 16 * MiB,
  /** Parts of one upload in flight at once (memory: this x part size). */
  multipartPartsInflightMax: 4,

  // Snapshotter.
  /** Backoff between failed upload rounds; the round itself retries until S3 is back. */
  uploadBackoffMsMin: 200,
  uploadBackoffMsMax: 30_000,
  /** Tables uploaded at once; large ones also have multipartPartsInflightMax parts each in flight. */
  uploadTablesInflightMax: 3,
  /** Objects no manifest needs are deleted only after this long (a restore may be reading them). */
  gcGraceMsDefault: 10 * 60_000,
  gcIntervalMsDefault: 60_000,
  /** Newest manifests kept (with their tables) besides the current one, for a restore in flight. */
  manifestsKeptDefault: 3,
  manifestsKeptMax: 100,
  /** Table and WAL bytes not yet in S3 above which the replica refuses writes (StorageFull). */
  bytesPendingBudgetDefault: 1024 * MiB,
  /** snapshotNow() gives up (Unavailable) after this long; uploads go on in the background. */
  snapshotNowTimeoutMsDefault: 60_000,
  /**
   * Listeners the snapshotter's one close() signal may have: every part of every upload in flight
   * listens to it, so more than Node's default warning threshold (10) is expected, not a leak.
   */
  abortListenersMax: 1024,
  /**
   * How long the replica reuses its answer to "is the snapshot backlog over budget" (which reads
   * engine stats) before asking the snapshotter again, so the check is not paid per write.
   */
  writeGateRefreshMs: 5,
  /** Most memory the snapshot path holds in buffers at once, uploading or restoring. */
  bufferedBytesMax: 256 * MiB,

  // Restore.
  /** Tables downloaded at once. */
  restoreDownloadsInflightMax: 4,
  /** Tables are downloaded in ranged chunks of this size, so memory does not grow with table size. */
  restoreChunkBytes: 8 * MiB,
  /** Attempts per table download when its CRC32C does not match (a torn transfer). */
  restoreTableAttemptsMax: 3,
} as const

const L = snapshotLimits
assert(L.s3AttemptsMax >= 1, 's3AttemptsMax must allow at least one attempt')
assert(L.s3BackoffMsMin > 0 && L.s3BackoffMsMin <= L.s3BackoffMsMax, 's3 backoff min <= max')
assert(L.s3ConnectTimeoutMs < L.s3RequestTimeoutMs, 'connect timeout below request timeout')
assert(L.deleteBatchKeysMax >= 1 && L.deleteBatchKeysMax <= 1000, 'S3 DeleteObjects takes at most 1000 keys')
assert(L.listPageKeysMax >= 1 && L.listPageKeysMax <= 1000, 'S3 ListObjectsV2 returns at most 1000 keys')
assert(L.multipartPartBytesMin === 5 * MiB, 'S3 minimum part size is 5 MiB')
assert(L.multipartPartBytesDefault >= L.multipartPartBytesMin, 'default part size at least the S3 minimum')
assert(L.multipartThresholdBytes >= L.multipartPartBytesDefault, 'multipart only for bodies above one part')
assert(L.multipartPartsInflightMax >= 1, 'at least one part in flight')
assert(L.uploadBackoffMsMin > 0 && L.uploadBackoffMsMin <= L.uploadBackoffMsMax, 'upload backoff min <= max')
assert(L.uploadTablesInflightMax >= 1, 'at least one table upload in flight')
assert(L.uploadTablesInflightMax * L.multipartPartsInflightMax * L.multipartPartBytesDefault <= L.bufferedBytesMax, 'upload memory bounded')
assert(L.abortListenersMax >= L.uploadTablesInflightMax * (L.multipartPartsInflightMax + 1), 'every upload in flight may listen for close()')
assert(L.writeGateRefreshMs >= 0 && L.writeGateRefreshMs < L.uploadBackoffMsMin, 'the write gate must notice a budget change before the next upload round')
assert(L.gcIntervalMsDefault <= L.gcGraceMsDefault, 'gc runs at least once per grace period')
assert(L.manifestsKeptDefault >= 1 && L.manifestsKeptDefault <= L.manifestsKeptMax, 'keep 1..max manifests')
assert(L.restoreChunkBytes >= 1 * MiB, 'restore chunks of at least 1 MiB')
assert(L.restoreDownloadsInflightMax * L.restoreChunkBytes <= L.bufferedBytesMax, 'restore memory bounded')
assert(L.restoreTableAttemptsMax >= 1, 'at least one download attempt')

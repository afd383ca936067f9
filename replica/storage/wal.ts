// The write-ahead log (goleveldb's journal): every put is appended here before it is acknowledged,
// and replayed into the memtable on open. Appends are group-committed: records accumulate in an open
// group while the previous group is being written, and each group is one write plus one fdatasync,
// so under load groups form by themselves and at low load a record costs one write+fsync. A put's
// promise is its group's promise; it resolves only after the fsync that covers the record.
//
// Segments are `wal/<seq>.log` with an 8-digit zero-padded sequence (disk-layout.ts). The engine
// rotates to a new segment when it freezes a memtable, so a segment's records all belong to
// memtables at or before one flush; the segment is deleted only once a durable manifest names
// tables holding them (manifest.walSegmentMin).
//
// Segment layout, version 2 (little-endian):
//   magic "RKVWAL02"(8), then groups: groupMagic "RWG1"(4) len(4) crc32c(4) records(len), then zeros
// A group is what one write+fdatasync covered; its crc32c covers the len field and the records.
// Segments are zero-filled ahead of the writes (storageLimits.walPreallocateBytes), as etcd's WAL
// does, so a group's fdatasync does not also have to write the inode and block map (2x faster).
// Record layout (the same in version 1 segments, which hold records from offset 0 with no header):
//   crc32c(4) len(4) keyLen(2) key(keyLen, UTF-8) value(len - 2 - keyLen)
// crc32c covers bytes [4, 8 + len): the length field and the payload, so a damaged length is caught.
//
// Replay: zeros after the last group are unused preallocation. A group that fails its check at the
// end of the last segment, with no valid group after it, is a torn write from a crash before its
// fdatasync returned (so none of its records was acknowledged): it is cut off and logged. Groups are
// written one after another, each only after the previous one's fdatasync, so only the last group
// can be torn: a bad group anywhere else, or a bad record inside a good group, is corruption and
// stops the open. Preallocation is why groups need their own frame: in a preallocated file the
// pages of a torn write can reach the disk in any order, leaving a hole of zeros before valid
// records, which per-record checks alone would call corruption. (A bit flipped in the last group
// after its fsync looks the same as a torn write and loses that group here; the other replicas
// hold those writes.)

import { crc32c } from '@node-rs/crc32'
import { open, readdir, readFile, truncate, unlink } from 'node:fs/promises'
import type { FileHandle } from 'node:fs/promises'
import { join } from 'node:path'
import { assert } from '../../coordinator/assert.ts'
import type { LatencyHistogram } from '../../coordinator/metrics/histogram.ts'
import { KvError } from '../../coordinator/errors.ts'
import { tmpSuffix, walSegmentName, walSegmentSeqOf } from './disk-layout.ts'
import type { Log, ValueWriter } from './engine-types.ts'
import { fdatasyncFd, fsyncDir, writevAllSync } from './file-util.ts'
import { storageLimits } from './storage-limits.ts'

/** crc32c(4) len(4) keyLen(2); the number lives in storage-limits.ts, which derives the record bounds from it. */
export const walRecordHeaderBytes = storageLimits.walRecordHeaderBytes
/** First bytes of a version-2 segment. */
const segmentMagic = Buffer.from('RKVWAL02', 'latin1')
/** First bytes of a group frame: a record inside a group starts with its CRC, never (but by 2^-32) with this. */
const groupMagic = Buffer.from('RWG1', 'latin1')
const groupHeaderBytes = 12
const zeroChunk = Buffer.alloc(storageLimits.walZeroChunkBytes)
const pageBytes = storageLimits.pageBytes


/** Encodes one record; the caller may keep `value` views into the returned buffer. */
export function encodeWalRecord(key: string, value: Uint8Array | ValueWriter): Buffer {
  const keyBytes = Buffer.byteLength(key, 'utf8')
  if (keyBytes > storageLimits.keyBytesMax) {
    throw new KvError({ kind: 'TooLarge', bytes: keyBytes, bytesMax: storageLimits.keyBytesMax }, `key of ${keyBytes} bytes exceeds ${storageLimits.keyBytesMax}`)
  }
  const valueBytes = value instanceof Uint8Array ? value.byteLength : value.bytes
  if (valueBytes > storageLimits.entryBytesMax) {
    throw new KvError({ kind: 'TooLarge', bytes: valueBytes, bytesMax: storageLimits.entryBytesMax }, `value of ${valueBytes} bytes exceeds ${storageLimits.entryBytesMax}`)
  }
  const len = 2 + keyBytes + valueBytes
  const rec = Buffer.allocUnsafe(8 + len)
  rec[4] = len & 0xff
  rec[5] = (len >>> 8) & 0xff
  rec[6] = (len >>> 16) & 0xff
  rec[7] = len >>> 24
  rec[8] = keyBytes & 0xff
  rec[9] = keyBytes >>> 8
  // An ASCII key (UTF-8 length = UTF-16 length) encodes the same as latin1, which is cheaper.
  const written = rec.write(key, walRecordHeaderBytes, keyBytes, keyBytes === key.length ? 'latin1' : 'utf8')
  assert(written === keyBytes, 'key encoding length changed')
  if (value instanceof Uint8Array) rec.set(value, walRecordHeaderBytes + keyBytes)
  else value.write(rec, walRecordHeaderBytes + keyBytes)
  const crc = crc32c(rec.subarray(4))
  rec[0] = crc & 0xff
  rec[1] = (crc >>> 8) & 0xff
  rec[2] = (crc >>> 16) & 0xff
  rec[3] = crc >>> 24
  return rec
}

/** End offset of the valid record at `off` (ending by `end`), or -1 when the bytes there are not a valid record. */
function validRecordEnd(buf: Buffer, off: number, end = buf.length): number {
  if (off + walRecordHeaderBytes > end) return -1
  const len = buf.readUInt32LE(off + 4)
  if (len < 2 || len > storageLimits.walRecordBytesMax || off + 8 + len > end) return -1
  if (crc32c(buf.subarray(off + 4, off + 8 + len)) !== buf.readUInt32LE(off)) return -1
  const keyLen = buf.readUInt16LE(off + 8)
  if (keyLen > len - 2) return -1
  return off + 8 + len
}

/** End offset of the valid group frame at `off`, or -1. */
function validGroupEnd(buf: Buffer, off: number): number {
  if (off + groupHeaderBytes > buf.length || buf.compare(groupMagic, 0, 4, off, off + 4) !== 0) return -1
  const len = buf.readUInt32LE(off + 4)
  if (len < walRecordHeaderBytes || len > storageLimits.walGroupFrameBytesMax || off + groupHeaderBytes + len > buf.length) return -1
  const crc = crc32c(buf.subarray(off + groupHeaderBytes, off + groupHeaderBytes + len), crc32c(buf.subarray(off + 4, off + 8)))
  if (crc !== buf.readUInt32LE(off + 8)) return -1
  return off + groupHeaderBytes + len
}

function validGroupAfter(buf: Buffer, from: number): boolean {
  for (let at = buf.indexOf(groupMagic, from); at >= 0; at = buf.indexOf(groupMagic, at + 1)) {
    if (validGroupEnd(buf, at) >= 0) return true
  }
  return false
}

function zerosFrom(buf: Buffer, off: number): boolean {
  for (let at = off; at < buf.length; at += zeroChunk.length) {
    const end = Math.min(buf.length, at + zeroChunk.length)
    if (buf.compare(zeroChunk, 0, end - at, at, end) !== 0) return false
  }
  return true
}

/** The 12-byte frame header of a group holding `records` (`bytes` in all). */
function groupHeader(records: readonly Buffer[], bytes: number): Buffer {
  const h = Buffer.allocUnsafe(groupHeaderBytes)
  groupMagic.copy(h, 0)
  h.writeUInt32LE(bytes, 4)
  let crc = crc32c(h.subarray(4, 8))
  for (const r of records) crc = crc32c(r, crc)
  h.writeUInt32LE(crc, 8)
  return h
}

export interface WalReplayResult {
  /** Segments found, ascending, at or above walSegmentMin. */
  readonly segments: number[]
  readonly records: number
  readonly bytes: number
}

/**
 * Deletes segments below `segmentMin`, then replays the rest in order, calling `onRecord` for each
 * record (values are views into the segment's buffer). Truncates a torn tail of the last segment.
 */
export async function replayWal(
  walDir: string, segmentMin: number, onRecord: (key: string, value: Uint8Array) => void, log: Log,
): Promise<WalReplayResult & { segmentBytes: Map<number, number> }> {
  const names = await readdir(walDir)
  const seqs: number[] = []
  for (const name of names) {
    const seq = walSegmentSeqOf(name)
    if (seq === undefined) {
      if (name.endsWith(tmpSuffix)) await unlink(join(walDir, name))
      continue
    }
    if (seq < segmentMin) {
      log('wal: deleting segment covered by tables', { file: name })
      await unlink(join(walDir, name))
    } else {
      seqs.push(seq)
    }
  }
  seqs.sort((a, b) => a - b)
  let records = 0
  let bytes = 0
  const segmentBytes = new Map<number, number>()
  for (let i = 0; i < seqs.length; i++) {
    const seq = seqs[i]!
    const file = join(walDir, walSegmentName(seq))
    const buf = await readFile(file)
    const last = i === seqs.length - 1
    const emit = (off: number, end: number): void => {
      const keyLen = buf.readUInt16LE(off + 8)
      const key = buf.toString('utf8', off + walRecordHeaderBytes, off + walRecordHeaderBytes + keyLen)
      onRecord(key, buf.subarray(off + walRecordHeaderBytes + keyLen, end))
      records++
    }
    let off: number
    if (buf.length >= segmentMagic.length && buf.compare(segmentMagic, 0, segmentMagic.length, 0, segmentMagic.length) === 0) {
      off = segmentMagic.length
      while (off < buf.length) {
        const end = validGroupEnd(buf, off)
        if (end < 0) {
          if (!zerosFrom(buf, off)) await cutTornTail(file, off, buf.length, last && !validGroupAfter(buf, off + 1), 'group', log)
          break
        }
        for (let r = off + groupHeaderBytes; r < end;) {
          const recordEnd = validRecordEnd(buf, r, end)
          if (recordEnd < 0) throw new KvError({ kind: 'Corruption', file, offset: r }, `WAL record at ${file}:${r} fails its checksum or framing inside a valid group`)
          emit(r, recordEnd)
          r = recordEnd
        }
        off = end
      }
    } else {
      off = await replayVersion1(buf, file, last, emit, log)
    }
    segmentBytes.set(seq, off)
    bytes += off
  }
  return { segments: seqs, records, bytes, segmentBytes }
}

/**
 * At a frame that fails its check: when it is a torn tail (`torn`: the last segment, nothing valid
 * after it) the file is cut there and the cut logged; anything else is corruption, thrown.
 */
async function cutTornTail(file: string, off: number, size: number, torn: boolean, what: 'group' | 'record', log: Log): Promise<void> {
  if (!torn) {
    throw new KvError({ kind: 'Corruption', file, offset: off },
      `WAL ${what} at ${file}:${off} fails its checksum or framing, and it is not a torn tail (valid ${what}s follow it, or a later segment exists)`)
  }
  log('wal: truncating torn tail', { file, offset: off, bytes: size - off })
  await truncate(file, off)
}

/** Replays a version-1 segment (records from offset 0, no groups); returns the end of its valid records. */
async function replayVersion1(buf: Buffer, file: string, last: boolean, emit: (off: number, end: number) => void, log: Log): Promise<number> {
  let off = 0
  while (off < buf.length) {
    const end = validRecordEnd(buf, off)
    if (end < 0) {
      await cutTornTail(file, off, buf.length, last && !validRecordAfter(buf, off + 1), 'record', log)
      break
    }
    emit(off, end)
    off = end
  }
  return off
}

function validRecordAfter(buf: Buffer, from: number): boolean {
  for (let off = from; off + walRecordHeaderBytes <= buf.length; off++) {
    if (validRecordEnd(buf, off) >= 0) return true
  }
  return false
}

interface Group {
  readonly seq: number
  readonly records: Buffer[]
  bytes: number
  readonly promise: Promise<void>
  resolve: () => void
  reject: (e: unknown) => void
}

/** The appending side of the WAL: group commit onto the current segment, rotation at flush. */
export class WalWriter {
  private seq: number
  private fileSeq = -1
  private fh: FileHandle | undefined
  private openGroup: Group | undefined
  private readonly sealed: Group[] = []
  private lastGroup: Promise<void> = Promise.resolve()
  private writing = false
  private kickScheduled = false
  /** Write offset in the current segment file. */
  private pos = 0
  /** Bytes of the current segment file that are zero-filled and durable. */
  private allocated = 0
  /** The zero-fill running in the background, if any. */
  private extending: Promise<void> | undefined
  /** Set when zero-filling failed (e.g. ENOSPC): groups are then plain appends. */
  private preallocateFailed = false
  private failed: unknown
  private closed = false
  /** Bytes per live segment, for stats and for deleting covered segments. */
  readonly segmentBytes: Map<number, number>
  /** Where each group's fdatasync time goes, when the engine watches (its /metrics histogram). */
  fsyncLatency: LatencyHistogram | undefined
  /**
   * How long the last group's fdatasync took (ms). A put's promise resolves right after its group's
   * fsync, before the next group's can end, so a caller reading this then sees its own group's.
   */
  lastFsyncMs = 0

  constructor(
    private readonly walDir: string,
    firstSeq: number,
    private readonly fsync: boolean,
    private readonly log: Log,
    segmentBytes: Map<number, number>,
    /** Zero-fill step (0: append without preallocating); see storageLimits.walPreallocateBytes. */
    private readonly preallocateBytes = 0,
  ) {
    assert(preallocateBytes >= 0 && preallocateBytes % pageBytes === 0, `WAL preallocation step ${preallocateBytes} is not whole pages`)
    this.seq = firstSeq
    this.segmentBytes = segmentBytes
  }

  get currentSeq(): number {
    return this.seq
  }

  get bytes(): number {
    let n = 0
    for (const b of this.segmentBytes.values()) n += b
    return n
  }

  /** The write or fsync failure that stopped appends, if any. */
  failure(): unknown {
    return this.failed
  }

  /** Appends a record to the open group; the promise resolves after the fsync that covers it. */
  append(record: Buffer): Promise<void> {
    if (this.failed !== undefined) return Promise.reject(this.failed)
    assert(!this.closed, 'WAL append after close')
    let g = this.openGroup
    if (g !== undefined && (g.records.length >= storageLimits.walGroupRecordsMax ||
        g.bytes + record.length > storageLimits.walGroupBytesMax)) {
      this.seal()
      g = undefined
    }
    if (g === undefined) g = this.newGroup()
    g.records.push(record)
    g.bytes += record.length
    if (!this.writing && !this.kickScheduled) {
      // Start the group on the next turn so that puts issued in this turn share its fsync.
      this.kickScheduled = true
      setImmediate(() => {
        this.kickScheduled = false
        void this.pump()
      })
    }
    return g.promise
  }

  /**
   * Starts a new segment for later records. Returns the new segment's sequence (every record before
   * this call is in a lower one) and a promise that resolves once those records are durable.
   */
  rotate(): { boundary: number; durable: Promise<void> } {
    this.seal()
    const durable = this.lastGroup
    this.seq += 1
    return { boundary: this.seq, durable }
  }

  /** Deletes segments below `segmentMin` (their records are in tables named by a durable manifest). */
  async deleteBelow(segmentMin: number): Promise<void> {
    for (const seq of [...this.segmentBytes.keys()]) {
      if (seq >= segmentMin) continue
      assert(seq !== this.fileSeq || this.seq > seq, 'deleting the segment being written')
      this.segmentBytes.delete(seq)
      await unlink(join(this.walDir, walSegmentName(seq))).catch((e: NodeJS.ErrnoException) => {
        if (e.code !== 'ENOENT') throw e
      })
    }
  }

  /** Waits for every appended record to be durable, then closes the segment. */
  async close(): Promise<void> {
    this.seal()
    await this.lastGroup.catch(() => {})
    while (this.writing || this.sealed.length > 0) await new Promise((r) => setImmediate(r))
    await this.extending
    this.closed = true
    if (this.fh !== undefined) await this.fh.close()
    this.fh = undefined
  }

  private newGroup(): Group {
    let resolve!: () => void
    let reject!: (e: unknown) => void
    const promise = new Promise<void>((res, rej) => { resolve = res; reject = rej })
    const g: Group = { seq: this.seq, records: [], bytes: 0, promise, resolve, reject }
    this.openGroup = g
    this.lastGroup = promise
    return g
  }

  private seal(): void {
    const g = this.openGroup
    if (g === undefined) return
    this.openGroup = undefined
    this.sealed.push(g)
  }

  private async pump(): Promise<void> {
    if (this.writing) return
    this.writing = true
    try {
      for (;;) {
        if (this.sealed.length === 0) this.seal()
        const g = this.sealed.shift()
        if (g === undefined) break
        try {
          if (g.seq !== this.fileSeq) await this.switchSegment(g.seq)
          const fd = this.fh!.fd
          const frameBytes = groupHeaderBytes + g.bytes
          // Never write where a zero-fill still in flight could land after us.
          if (this.extending !== undefined && this.pos + frameBytes > this.allocated) await this.extending
          // The write goes straight into the page cache from this thread (a memcpy of at most a
          // group); only the fdatasync, which waits for the disk, goes to libuv's pool. So a group
          // costs one thread-pool round trip instead of two: on a busy 2-core machine each round
          // trip also waits for this thread to be scheduled again, and that wait was part of every
          // write's latency.
          writevAllSync(fd, [groupHeader(g.records, g.bytes), ...g.records], frameBytes, this.pos)
          this.pos += frameBytes
          this.preallocate()
          if (this.fsync) {
            const t0 = performance.now()
            await fdatasyncFd(fd)
            this.lastFsyncMs = performance.now() - t0
            this.fsyncLatency?.recordMs(this.lastFsyncMs)
          }
          this.segmentBytes.set(g.seq, this.pos)
        } catch (e) {
          this.fail(e, g)
          return
        }
        g.resolve()
      }
    } finally {
      this.writing = false
    }
  }

  private async switchSegment(seq: number): Promise<void> {
    assert(seq > this.fileSeq, `WAL segments must advance: ${this.fileSeq} -> ${seq}`)
    await this.extending
    if (this.fh !== undefined) await this.fh.close()
    this.fh = undefined
    const name = walSegmentName(seq)
    // 'wx': a fresh segment never reuses a file, so records of two sessions never interleave.
    this.fh = await open(join(this.walDir, name), 'wx')
    writevAllSync(this.fh.fd, [segmentMagic], segmentMagic.length, 0)
    this.pos = segmentMagic.length
    this.allocated = 0
    // A short first step, awaited (a few ms per segment, in the same pump turn that opens it), so
    // that the segment's first groups get cheap fsyncs too; later steps run in the background.
    this.preallocate(Math.min(this.preallocateBytes, storageLimits.walFirstPreallocateBytes))
    await this.extending
    if (this.fsync) await fsyncDir(this.walDir)
    this.fileSeq = seq
    if (!this.segmentBytes.has(seq)) this.segmentBytes.set(seq, 0)
    this.log('wal: segment opened', { file: name })
  }

  /**
   * Zero-fills the next walPreallocateBytes of the segment in the background once the writes are
   * within half a step of the filled end, then makes it durable (size and block map included), so
   * that later group fdatasyncs flush data blocks only. Groups never wait for it unless they would
   * reach past the filled end while it runs (see pump).
   */
  private preallocate(step = this.preallocateBytes): void {
    if (step === 0 || this.extending !== undefined || this.preallocateFailed || this.pos + step / 2 < this.allocated) return
    const fh = this.fh!
    const from = Math.max(this.allocated, this.pos)
    // End on a page boundary, so that no page is half zero-filled.
    const to = Math.ceil((from + step) / pageBytes) * pageBytes
    const fill = async (): Promise<void> => {
      for (let at = from; at < to; at += zeroChunk.length) {
        const n = Math.min(zeroChunk.length, to - at)
        let done = 0
        while (done < n) done += (await fh.write(zeroChunk, done, n - done, at + done)).bytesWritten
      }
      if (this.fsync) await fh.datasync()
    }
    this.extending = fill().then(
      () => { if (this.fh === fh) this.allocated = to },
      (e: unknown) => { this.preallocateFailed = true; this.log('wal: zero-filling the segment failed; appending without preallocation', { error: String(e) }) },
    ).finally(() => { this.extending = undefined })
  }

  private fail(e: unknown, g: Group): void {
    this.failed = e
    this.log('wal: write failed; refusing further appends', { error: String(e) })
    // The records of these groups are already in the memtable: their outcome is unknown to the
    // caller (Internal, not a refusal), and they vanish at the restart that recovers the replica.
    const err = new KvError({ kind: 'Internal' },
      `the WAL write failed, so this write is not durable here (it may be visible until the replica restarts): ${String((e as Error)?.message ?? e)}`, { cause: e })
    g.reject(err)
    for (const s of this.sealed.splice(0)) s.reject(err)
    this.openGroup?.reject(err)
    this.openGroup = undefined
  }
}

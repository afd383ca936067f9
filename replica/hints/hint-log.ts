// The hint log: the durable half of a replica's hint store (hint-store.ts), kept in its own files
// under `hints/` (disk-layout.ts), apart from the WAL and tables that hold the replica's own data.
// It is append-only: a hint is a `put` record carrying the whole stored state (DVV) for one
// (owner, key), a handed-off or dropped hint a `del` record; replaying the records in order rebuilds
// the index. Appends are group-committed as the WAL's are (wal.ts): records queue while the previous
// group is written, and each group is one write plus one fdatasync, so a hint is acknowledged only
// once it is on disk and concurrent hints share the fsync.
//
// Segment layout (little-endian): magic "RKVHNT01"(8), then records:
//   crc32c(4) len(4) op(1) at(8, float64 ms) targetLen(2) target keyLen(2) key state(rest)
// crc32c covers bytes [4, 8 + len): the length field and the payload, so a damaged length is caught.
// `op` is 1 (put) or 2 (del, no state); `at` is when the owner's first pending hint for the key came.
//
// Every open starts a new segment, so a segment is never appended to after a crash. Reading stops
// at the first record that fails its check in a segment: a torn tail (a crash mid-write, never
// acknowledged) or corruption; either way nothing after it in that segment is replayed as a hint,
// and the problem is reported so the store can rewrite its live hints and drop the damaged file.

import { crc32c } from '@node-rs/crc32'
import { mkdir, open, readdir, readFile, unlink, type FileHandle } from 'node:fs/promises'
import { join } from 'node:path'
import { assert } from '../../coordinator/assert.ts'
import { limits } from '../../coordinator/limits.ts'
import { hintSegmentName, hintSegmentSeqOf, hintsDir } from '../storage/disk-layout.ts'
import { fdatasyncFd, fsyncDir, writevAllSync } from '../storage/file-util.ts'

const segmentMagic = Buffer.from('RKVHNT01', 'latin1')
const recordHeaderBytes = 8
/** op(1) at(8) targetLen(2) keyLen(2) */
const payloadFixedBytes = 13
const opPut = 1
const opDel = 2
/** A record's payload: the largest state with its key and owner name, and the fixed fields. */
const recordBytesMax = payloadFixedBytes + limits.stateBytesMax + limits.keyBytesMax * 4 + limits.nameCharsMax * 4

export interface HintRecord {
  readonly op: 'put' | 'del'
  readonly at: number
  readonly target: string
  readonly key: string
  /** The encoded state (state-codec.ts); empty for `del`. */
  readonly state: Uint8Array
}

/** A record read back, with the segment it came from. */
export interface LoadedHintRecord extends HintRecord { readonly segment: number }

/** A segment whose records stop before its end: where, and whether it looks torn (the last segment). */
export interface HintLogProblem { readonly file: string; readonly offset: number; readonly torn: boolean }

/** What the store needs from its log (a simulator can pass an in-memory one). */
export interface HintLogPort {
  /** Appends `rec`; resolves with the segment it is durable in, once its group's fdatasync returned. */
  append(rec: HintRecord): Promise<number>
  /** The segment appends go to now. */
  current(): number
  /** Segments on disk, ascending (the current one included). */
  segments(): readonly number[]
  /** Deletes segment `seq` (never the current one). */
  drop(seq: number): Promise<void>
  close(): Promise<void>
}

export function encodeHintRecord(rec: HintRecord): Buffer {
  const target = Buffer.from(rec.target, 'utf8')
  const key = Buffer.from(rec.key, 'utf8')
  const state = rec.op === 'put' ? rec.state : new Uint8Array(0)
  const len = payloadFixedBytes + target.length + key.length + state.byteLength
  assert(len <= recordBytesMax && target.length <= 0xffff && key.length <= 0xffff, `hint record of ${len} bytes`)
  const buf = Buffer.allocUnsafe(recordHeaderBytes + len)
  buf.writeUInt32LE(len, 4)
  let at = recordHeaderBytes
  buf[at++] = rec.op === 'put' ? opPut : opDel
  buf.writeDoubleLE(rec.at, at); at += 8
  buf.writeUInt16LE(target.length, at); at += 2
  target.copy(buf, at); at += target.length
  buf.writeUInt16LE(key.length, at); at += 2
  key.copy(buf, at); at += key.length
  buf.set(state, at)
  buf.writeUInt32LE(crc32c(buf.subarray(4)), 0)
  return buf
}

const strict = new TextDecoder('utf-8', { fatal: true })

/** The record at `off`, or undefined when the bytes there are not a whole valid record. */
export function decodeHintRecord(buf: Buffer, off: number): { rec: HintRecord; end: number } | undefined {
  if (off + recordHeaderBytes > buf.length) return undefined
  const len = buf.readUInt32LE(off + 4)
  if (len < payloadFixedBytes || len > recordBytesMax || off + recordHeaderBytes + len > buf.length) return undefined
  const end = off + recordHeaderBytes + len
  if (crc32c(buf.subarray(off + 4, end)) !== buf.readUInt32LE(off)) return undefined
  let at = off + recordHeaderBytes
  const op = buf[at++]
  if (op !== opPut && op !== opDel) return undefined
  const time = buf.readDoubleLE(at); at += 8
  if (!Number.isFinite(time)) return undefined
  const targetLen = buf.readUInt16LE(at); at += 2
  if (at + targetLen + 2 > end) return undefined
  let target: string
  let key: string
  try {
    target = strict.decode(buf.subarray(at, at + targetLen)); at += targetLen
    const keyLen = buf.readUInt16LE(at); at += 2
    if (at + keyLen > end) return undefined
    key = strict.decode(buf.subarray(at, at + keyLen)); at += keyLen
  } catch {
    return undefined
  }
  if (target.length === 0 || key.length === 0) return undefined
  if (op === opDel && at !== end) return undefined
  return { rec: { op: op === opPut ? 'put' : 'del', at: time, target, key, state: buf.subarray(at, end) }, end }
}

interface Queued { readonly buf: Buffer; readonly resolve: (seq: number) => void; readonly reject: (e: Error) => void }

/** The log on disk. Open it with openHintLog. */
export class HintLog implements HintLogPort {
  private queue: Queued[] = []
  private writing = false
  private failed: Error | undefined
  private closed = false

  constructor(
    private readonly dir: string,
    private fh: FileHandle,
    private seq: number,
    private size: number,
    private readonly onDisk: number[],
  ) {}

  current(): number { return this.seq }
  segments(): readonly number[] { return this.onDisk }

  append(rec: HintRecord): Promise<number> {
    if (this.failed) return Promise.reject(this.failed)
    if (this.closed) return Promise.reject(new Error('hint log closed'))
    const buf = encodeHintRecord(rec)
    return new Promise<number>((resolve, reject) => {
      this.queue.push({ buf, resolve, reject })
      if (!this.writing) void this.flush()
    })
  }

  /** Writes queued records in groups of at most hintGroupRecordsMax, one fdatasync each. */
  private async flush(): Promise<void> {
    this.writing = true
    while (this.queue.length > 0 && !this.failed) {
      const group = this.queue.splice(0, limits.hintGroupRecordsMax)
      try {
        if (this.size >= limits.hintSegmentBytes) await this.rotate()
        let bytes = 0
        for (const q of group) bytes += q.buf.length
        writevAllSync(this.fh.fd, group.map(q => q.buf), bytes, this.size)
        this.size += bytes
        await fdatasyncFd(this.fh.fd)
        for (const q of group) q.resolve(this.seq)
      } catch (e) {
        // After a failed write or fsync nothing more is appended: what reached the disk is unknown
        // (the kernel may have dropped the dirty pages), so every hint from now on is refused.
        this.failed = e as Error
        for (const q of [...group, ...this.queue.splice(0)]) q.reject(this.failed)
      }
    }
    this.writing = false
  }

  private async rotate(): Promise<void> {
    const seq = this.seq + 1
    const fh = await createSegment(this.dir, seq)
    const old = this.fh
    this.fh = fh
    this.seq = seq
    this.size = segmentMagic.length
    this.onDisk.push(seq)
    await old.close()
  }

  async drop(seq: number): Promise<void> {
    assert(seq !== this.seq, 'the current hint segment is never dropped')
    const i = this.onDisk.indexOf(seq)
    if (i < 0) return
    this.onDisk.splice(i, 1)
    await unlink(join(this.dir, hintSegmentName(seq))).catch(() => undefined)
    await fsyncDir(this.dir)
  }

  async close(): Promise<void> {
    this.closed = true
    while (this.writing) await new Promise(r => setImmediate(r))
    await this.fh.close()
  }
}

/** Creates segment `seq` holding just its magic, durable with its directory entry. */
async function createSegment(dir: string, seq: number): Promise<FileHandle> {
  const fh = await open(join(dir, hintSegmentName(seq)), 'wx')
  try {
    await fh.write(segmentMagic, 0, segmentMagic.length, 0)
    await fh.datasync()
  } catch (e) {
    await fh.close().catch(() => undefined)
    throw e
  }
  await fsyncDir(dir)
  return fh
}

export interface OpenedHintLog {
  readonly log: HintLog
  /** Every valid record, in log order. */
  readonly records: LoadedHintRecord[]
  readonly problems: HintLogProblem[]
}

/**
 * Opens (creating) `dataDir/hints/`, reads every segment in order and starts a new one. Records
 * after a bad one in a segment are not returned (see the file comment); `problems` says where.
 */
export async function openHintLog(dataDir: string): Promise<OpenedHintLog> {
  const dir = hintsDir(dataDir)
  await mkdir(dir, { recursive: true })
  const seqs = (await readdir(dir)).map(hintSegmentSeqOf).filter((s): s is number => s !== undefined).sort((a, b) => a - b)
  const records: LoadedHintRecord[] = []
  const problems: HintLogProblem[] = []
  for (let i = 0; i < seqs.length; i++) {
    const seq = seqs[i]!
    const file = join(dir, hintSegmentName(seq))
    const buf = await readFile(file)
    if (buf.length < segmentMagic.length || buf.compare(segmentMagic, 0, segmentMagic.length, 0, segmentMagic.length) !== 0) {
      problems.push({ file, offset: 0, torn: buf.length < segmentMagic.length && i === seqs.length - 1 })
      continue
    }
    let off = segmentMagic.length
    while (off < buf.length) {
      const got = decodeHintRecord(buf, off)
      if (got === undefined) {
        // Looks torn: in the last segment, the record claims more bytes than the file holds (a
        // crash mid-write). Either way nothing from here on is read.
        const claimed = off + recordHeaderBytes <= buf.length ? off + recordHeaderBytes + buf.readUInt32LE(off + 4) : Infinity
        problems.push({ file, offset: off, torn: i === seqs.length - 1 && claimed > buf.length })
        break
      }
      records.push({ ...got.rec, state: Uint8Array.prototype.slice.call(got.rec.state), segment: seq })
      off = got.end
    }
  }
  const next = (seqs.at(-1) ?? 0) + 1
  const fh = await createSegment(dir, next)
  return { log: new HintLog(dir, fh, next, segmentMagic.length, [...seqs, next]), records, problems }
}

// The SSTable builder: takes entries in strictly increasing key order (a sorted frozen memtable, or
// a compaction's merge), writes data blocks as it goes, and finish() appends the index, the bloom
// filter (always the current format version, bloom.ts) and the footer in the layout of
// table-format.ts, keeping a running CRC32C of the whole file for the manifest. The finish can run in
// slices (finishSliced) so that a table of millions of keys never blocks puts; toTable() hands the
// result to the reader without re-parsing it.

import { crc32c } from '@node-rs/crc32'
import { assert } from '../../coordinator/assert.ts'
import { bloomAddV2, bloomBlockBytes, bloomBlocksFor, bloomHash } from './bloom.ts'
import { ByteSink } from './byte-sink.ts'
import { storageLimits } from './storage-limits.ts'
import { footerBytes, tableMagic as magic, tableVersion } from './table-format.ts'
import { indexDigits } from './table-index.ts'
import type { IndexDigits } from './table-index.ts'
import { Table } from './table-reader.ts'

/** Builds one table from entries added in strictly increasing key order. */
export class TableBuilder {
  private readonly sink: ByteSink
  private lastKey: string | undefined
  private blockStart = 0
  private readonly blockOffsets: number[] = []
  private readonly blockFirstKeys: string[] = []
  private hashes = new Uint32Array(1024)
  /** CRC32C of the bytes finished so far (continued block by block, so finish() stays short). */
  private fileCrc = 0
  keys = 0

  constructor(capacityHint: number) {
    this.sink = new ByteSink(capacityHint)
  }

  /** CRC32C of the whole table; valid after finish(). */
  get crc32c(): number {
    return this.fileCrc
  }

  get bytes(): number {
    return this.sink.len
  }

  add(key: string, value: Uint8Array): void {
    assert(this.lastKey === undefined || this.lastKey < key, () => `table keys out of order: ${JSON.stringify(this.lastKey)} then ${JSON.stringify(key)}`)
    const keyLen = Buffer.byteLength(key, 'utf8')
    assert(keyLen <= storageLimits.keyBytesMax && value.byteLength <= storageLimits.entryBytesMax, 'entry exceeds limits')
    const s = this.sink
    if (s.len === this.blockStart) {
      this.blockOffsets.push(this.blockStart)
      this.blockFirstKeys.push(key)
    }
    s.ensure(6 + keyLen + value.byteLength + 4)
    s.buf.writeUInt16LE(keyLen, s.len)
    s.buf.writeUInt32LE(value.byteLength, s.len + 2)
    s.buf.write(key, s.len + 6, keyLen, 'utf8')
    s.buf.set(value, s.len + 6 + keyLen)
    s.len += 6 + keyLen + value.byteLength
    if (this.keys === this.hashes.length) {
      const next = new Uint32Array(this.hashes.length * 2)
      next.set(this.hashes)
      this.hashes = next
    }
    this.hashes[this.keys++] = bloomHash(key)
    this.lastKey = key
    if (s.len - this.blockStart >= storageLimits.tableBlockBytes) this.endBlock()
  }

  private endBlock(): void {
    const s = this.sink
    if (s.len === this.blockStart) return
    const crc = crc32c(s.buf.subarray(this.blockStart, s.len))
    s.ensure(4)
    s.buf.writeUInt32LE(crc, s.len)
    s.len += 4
    this.fileCrc = crc32c(s.buf.subarray(this.blockStart, s.len), this.fileCrc)
    this.blockStart = s.len
  }

  /** Writes index, bloom and footer; returns the whole table (verified by Table.open's checks). */
  finish(): Buffer {
    const steps = this.finishSteps()
    for (let r = steps.next(); r.done !== true; r = steps.next()) { /* run to the end */ }
    return this.finished!
  }

  /**
   * finish() in slices: yields to the event loop (through `yieldIfDue`) inside the index, bloom and
   * sparse-index loops, so a table of millions of keys never blocks puts for more than a slice.
   */
  async finishSliced(yieldIfDue: () => Promise<void> | undefined): Promise<Buffer> {
    const steps = this.finishSteps()
    for (let r = steps.next(); r.done !== true; r = steps.next()) {
      const w = yieldIfDue()
      if (w !== undefined) await w
    }
    return this.finished!
  }

  /** The work of finish(), yielding every few thousand rows so that the caller may pause. */
  private *finishSteps(): Generator<void, void, void> {
    this.endBlock()
    const s = this.sink
    const indexOffset = s.len
    s.ensure(4)
    s.buf.writeUInt32LE(this.blockOffsets.length, s.len)
    s.len += 4
    for (let i = 0; i < this.blockOffsets.length; i++) {
      const key = this.blockFirstKeys[i]!
      const keyLen = Buffer.byteLength(key, 'utf8')
      s.ensure(6 + keyLen)
      s.buf.writeUInt32LE(this.blockOffsets[i]!, s.len)
      s.buf.writeUInt16LE(keyLen, s.len + 4)
      s.buf.write(key, s.len + 6, keyLen, 'utf8')
      s.len += 6 + keyLen
      if ((i & 4095) === 4095) yield
    }
    s.ensure(4)
    s.buf.writeUInt32LE(crc32c(s.buf.subarray(indexOffset, s.len)), s.len)
    s.len += 4

    const bloomOffset = s.len
    // Version 2 blocked bloom: a whole number of 512-bit blocks (see bloom.ts).
    const blocks = bloomBlocksFor(this.keys)
    const nbytes = blocks * bloomBlockBytes
    s.ensure(1 + nbytes + 4)
    s.buf[s.len] = storageLimits.bloomProbes
    const bitsStart = s.len + 1
    s.buf.fill(0, bitsStart, bitsStart + nbytes)
    for (let i = 0; i < this.keys; i++) {
      bloomAddV2(s.buf, bitsStart, blocks, storageLimits.bloomProbes, this.hashes[i]!)
      if ((i & 16383) === 16383) yield
    }
    s.len = bitsStart + nbytes
    s.buf.writeUInt32LE(crc32c(s.buf.subarray(bloomOffset, s.len)), s.len)
    s.len += 4

    s.ensure(footerBytes)
    const f = s.len
    s.buf.writeUInt32LE(indexOffset, f)
    s.buf.writeUInt32LE(bloomOffset, f + 4)
    s.buf.writeUInt32LE(this.keys, f + 8)
    s.buf.writeUInt32LE(this.blockOffsets.length, f + 12)
    s.buf.writeUInt32LE(tableVersion, f + 16)
    magic.copy(s.buf, f + 20)
    s.buf.writeUInt32LE(crc32c(s.buf.subarray(f, f + 28)), f + 28)
    s.len += footerBytes
    this.fileCrc = crc32c(s.buf.subarray(indexOffset, s.len), this.fileCrc)
    assert(s.len <= storageLimits.tableBytesMax, `table of ${s.len} bytes exceeds ${storageLimits.tableBytesMax}`)
    this.finished = s.buf.subarray(0, s.len)
    // The numeric sparse index for toTable(), computed here so that it is sliced too.
    const n = this.blockFirstKeys.length
    const d = indexDigits(this.blockFirstKeys, this.lastKey, undefined, 0, 0)
    for (let i = 0; i < n; i += 8192) {
      indexDigits(this.blockFirstKeys, this.lastKey, d, i, Math.min(n, i + 8192))
      yield
    }
    this.digits = d
    this.blockOffsetsArray = Uint32Array.from(this.blockOffsets)
  }

  private finished: Buffer | undefined
  private digits: IndexDigits | undefined
  private blockOffsetsArray: Uint32Array | undefined

  /**
   * The table just built, for reads, without re-parsing its index. `buf` is finish()'s result or a
   * copy of it (trimmed of growth slack).
   */
  toTable(file: string, buf: Buffer): Table {
    assert(this.finished !== undefined && buf.length === this.finished.length, 'toTable before finish')
    return Table.fromParts(file, buf, this.keys, this.blockOffsetsArray!, this.blockFirstKeys, this.lastKey, this.digits)
  }
}

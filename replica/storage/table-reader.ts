// The SSTable reader: a verified, immutable table in memory (the file's Buffer), answering point
// gets and ordered iteration. open() checks a file completely before it is served (checksums,
// framing, key order, index and key count; table-format.ts has the layout), so damage is reported
// as KvError Corruption naming the offset, never as a wrong answer. A get goes: key range check,
// bloom filter of the table's format version (bloom.ts), numeric sparse index (table-index.ts),
// then a scan of one data block comparing UTF-8 bytes. This is the read hot path: every get that
// reaches the tables runs it once per table whose key range holds the key.

import { crc32c } from '@node-rs/crc32'
import { assert } from '../../coordinator/assert.ts'
import { KvError } from '../../coordinator/errors.ts'
import { bloomBlockBytes, bloomMayContainV1, bloomMayContainV2 } from './bloom.ts'
import { storageLimits } from './storage-limits.ts'
import { footerBytes, tableMagic as magic, tableVersionsReadable } from './table-format.ts'
import { indexArrays, indexDigits, indexTopStride as importedIndexTopStride, keyDigits } from './table-index.ts'
import type { IndexDigits } from './table-index.ts'

/** The search loop reads a constant of this module, not an import binding (a cell V8 may not fold). */
const indexTopStride = importedIndexTopStride

/** The last key of the block [start, end) (entries only, without the crc). */
function lastKeyOf(buf: Buffer, start: number, end: number): string | undefined {
  let q = start
  let key: string | undefined
  while (q < end) {
    const keyLen = buf.readUInt16LE(q)
    const valueLen = buf.readUInt32LE(q + 2)
    const next = q + 6 + keyLen + valueLen
    if (next >= end) key = buf.toString('utf8', q + 6, q + 6 + keyLen)
    q = next
  }
  return key
}

function corrupt(file: string, offset: number, what: string): KvError {
  return new KvError({ kind: 'Corruption', file, offset }, `SSTable ${file} corrupt at offset ${offset}: ${what}`)
}

/** A verified, immutable table in memory. */
export class Table {
  /** Smallest and largest key (undefined for an empty table): gets outside the range skip the bloom. */
  readonly minKey: string | undefined
  readonly maxKey: string | undefined
  /**
   * The sparse index as numbers (table-index.ts): every key of the table shares its first
   * `prefixLen` UTF-16 code units (the common prefix of minKey and maxKey); idx holds, interleaved
   * as idx[2i], idx[2i + 1], the next 3 + 3 code units of each block's first key (see keyDigits).
   */
  private readonly prefixLen: number
  private readonly idx: Float64Array
  /**
   * Every indexTopStride-th pair of idx (blocks 0, S, 2S, ...): a small array that stays in cache,
   * so the search over idx touches only one stride of it (a few lines) instead of log2(blocks).
   */
  private readonly idxTop: Float64Array

  private constructor(
    readonly file: string,
    readonly buf: Buffer,
    readonly keys: number,
    private readonly blockOffsets: Uint32Array,
    private readonly firstKeys: string[],
    private readonly indexOffset: number,
    private readonly bloomBitsStart: number,
    private readonly bloomBits: number,
    private readonly bloomProbes: number,
    maxKey: string | undefined,
    digits: IndexDigits | undefined,
    private readonly version: number,
  ) {
    this.minKey = firstKeys[0]
    this.maxKey = maxKey
    const d = digits ?? indexDigits(firstKeys, maxKey)
    this.prefixLen = d.prefixLen
    const { idx, idxTop } = indexArrays(d)
    this.idx = idx
    this.idxTop = idxTop
  }

  /** Verifies every checksum, the framing and the key order; throws KvError Corruption naming the offset. */
  static open(file: string, buf: Buffer, verifyBlocks = true): Table {
    if (buf.length < footerBytes + 4 + 1 + 4) throw corrupt(file, 0, `file of ${buf.length} bytes is too short`)
    const f = buf.length - footerBytes
    if (crc32c(buf.subarray(f, f + 28)) !== buf.readUInt32LE(f + 28)) throw corrupt(file, f, 'footer checksum mismatch')
    if (!buf.subarray(f + 20, f + 28).equals(magic)) throw corrupt(file, f + 20, 'bad magic')
    const version = buf.readUInt32LE(f + 16)
    if (!(tableVersionsReadable as readonly number[]).includes(version)) {
      throw corrupt(file, f + 16, `unknown table format version ${version} (this build reads ${tableVersionsReadable.join(', ')})`)
    }
    const indexOffset = buf.readUInt32LE(f)
    const bloomOffset = buf.readUInt32LE(f + 4)
    const keys = buf.readUInt32LE(f + 8)
    const blocks = buf.readUInt32LE(f + 12)
    if (!(indexOffset + 8 <= bloomOffset && bloomOffset + 5 <= f)) throw corrupt(file, f, 'region offsets out of order')

    if (crc32c(buf.subarray(indexOffset, bloomOffset - 4)) !== buf.readUInt32LE(bloomOffset - 4)) {
      throw corrupt(file, indexOffset, 'index checksum mismatch')
    }
    if (crc32c(buf.subarray(bloomOffset, f - 4)) !== buf.readUInt32LE(f - 4)) {
      throw corrupt(file, bloomOffset, 'bloom checksum mismatch')
    }
    const probes = buf[bloomOffset]!
    if (probes < 1 || probes > storageLimits.bloomProbesMax) throw corrupt(file, bloomOffset, `bad bloom probe count ${probes}`)

    if (buf.readUInt32LE(indexOffset) !== blocks) throw corrupt(file, indexOffset, 'index count differs from footer')
    const blockOffsets = new Uint32Array(blocks)
    const firstKeys = new Array<string>(blocks)
    let p = indexOffset + 4
    for (let i = 0; i < blocks; i++) {
      if (p + 6 > bloomOffset - 4) throw corrupt(file, p, 'index row runs past the index')
      blockOffsets[i] = buf.readUInt32LE(p)
      const keyLen = buf.readUInt16LE(p + 4)
      if (p + 6 + keyLen > bloomOffset - 4) throw corrupt(file, p, 'index key runs past the index')
      firstKeys[i] = buf.toString('utf8', p + 6, p + 6 + keyLen)
      p += 6 + keyLen
    }
    if (p !== bloomOffset - 4) throw corrupt(file, p, 'index has trailing bytes')

    // Data blocks: checksum, framing, first key, and strict key order across the whole table.
    let count = 0
    let last: string | undefined
    for (let i = 0; verifyBlocks && i < blocks; i++) {
      const start = blockOffsets[i]!
      const end = i + 1 < blocks ? blockOffsets[i + 1]! : indexOffset
      if (i === 0 && start !== 0) throw corrupt(file, start, 'first block not at offset 0')
      if (!(start + 4 < end && end <= indexOffset)) throw corrupt(file, start, 'block bounds out of order')
      if (crc32c(buf.subarray(start, end - 4)) !== buf.readUInt32LE(end - 4)) throw corrupt(file, start, 'data block checksum mismatch')
      let q = start
      while (q < end - 4) {
        if (q + 6 > end - 4) throw corrupt(file, q, 'entry header runs past its block')
        const keyLen = buf.readUInt16LE(q)
        const valueLen = buf.readUInt32LE(q + 2)
        if (q + 6 + keyLen + valueLen > end - 4) throw corrupt(file, q, 'entry runs past its block')
        const key = buf.toString('utf8', q + 6, q + 6 + keyLen)
        if (q === start && key !== firstKeys[i]) throw corrupt(file, q, 'block first key differs from the index')
        if (last !== undefined && !(last < key)) throw corrupt(file, q, 'keys out of order')
        last = key
        count++
        q += 6 + keyLen + valueLen
      }
    }
    if (blocks === 0 && indexOffset !== 0) throw corrupt(file, 0, 'data without blocks')
    if (verifyBlocks && count !== keys) throw corrupt(file, f + 8, `footer says ${keys} keys, blocks hold ${count}`)
    const nbytes = f - 4 - (bloomOffset + 1)
    if (version === 2 && (nbytes === 0 || nbytes % bloomBlockBytes !== 0)) throw corrupt(file, bloomOffset, `bloom of ${nbytes} bytes is not whole 64-byte blocks`)
    const maxKey = verifyBlocks ? last : lastKeyOf(buf, blocks > 0 ? blockOffsets[blocks - 1]! : 0, indexOffset - 4)
    return new Table(file, buf, keys, blockOffsets, firstKeys, indexOffset, bloomOffset + 1, nbytes * 8, probes, maxKey, undefined, version)
  }

  /** @internal A table whose parts the builder already knows (it asserted their order while adding). */
  static fromParts(file: string, buf: Buffer, keys: number, blockOffsets: Uint32Array, firstKeys: string[], maxKey: string | undefined,
    digits?: IndexDigits): Table {
    const f = buf.length - footerBytes
    const indexOffset = buf.readUInt32LE(f)
    const bloomOffset = buf.readUInt32LE(f + 4)
    assert(buf.readUInt32LE(f + 8) === keys && buf.readUInt32LE(f + 12) === blockOffsets.length, 'built table footer mismatch')
    const nbytes = f - 4 - (bloomOffset + 1)
    return new Table(file, buf, keys, blockOffsets, firstKeys, indexOffset, bloomOffset + 1, nbytes * 8, buf[bloomOffset]!, maxKey, digits, buf.readUInt32LE(f + 16))
  }

  get bytes(): number {
    return this.buf.length
  }

  /** Whether `key` lies within [minKey, maxKey] (false for an empty table). */
  inRange(key: string): boolean {
    const min = this.minKey
    return min !== undefined && key >= min && key <= this.maxKey!
  }

  mayContain(hash: number): boolean {
    return this.version === 1
      ? bloomMayContainV1(this.buf, this.bloomBitsStart, this.bloomBits, this.bloomProbes, hash)
      : bloomMayContainV2(this.buf, this.bloomBitsStart, this.bloomBits, this.bloomProbes, hash)
  }

  /** Index of the last block whose first key <= key, or -1. */
  private blockFor(key: string): number {
    const keys = this.firstKeys
    const n = keys.length
    if (n === 0 || key < keys[0]!) return -1
    if (key > this.maxKey!) return n - 1
    // minKey <= key <= maxKey, so key shares the table's common prefix.
    const p = this.prefixLen
    const kh = keyDigits(key, p)
    const kl = keyDigits(key, p + 3)
    // a = first block whose digits are >= the key's; b = first block whose digits are > the key's.
    // Blocks before a have first keys < key, blocks from b on have first keys > key.
    let a = this.searchDigits(kh, kl, false)
    let b = a
    if (b < n && this.idx[2 * b] === kh && this.idx[2 * b + 1] === kl) b = this.searchDigits(kh, kl, true)
    // Strings only among blocks whose digits tie with the key's.
    while (a < b) {
      const mid = (a + b) >>> 1
      if (keys[mid]! <= key) a = mid + 1
      else b = mid
    }
    return a - 1
  }

  /**
   * The first block whose digit pair is >= (kh, kl), or > it when `after`; n if none. Searches
   * idxTop for the stride, then idx within it.
   */
  private searchDigits(kh: number, kl: number, after: boolean): number {
    const top = this.idxTop
    let lo = 0
    let hi = top.length >>> 1
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      const h = top[2 * mid]!
      if (h < kh || (h === kh && (after ? top[2 * mid + 1]! <= kl : top[2 * mid + 1]! < kl))) lo = mid + 1
      else hi = mid
    }
    // Block lo * stride (if any) is past the bound and block (lo - 1) * stride is before it.
    const n = this.blockOffsets.length
    const idx = this.idx
    let a = lo === 0 ? 0 : (lo - 1) * indexTopStride + 1
    let e = Math.min(n, lo * indexTopStride)
    while (a < e) {
      const mid = (a + e) >>> 1
      const h = idx[2 * mid]!
      if (h < kh || (h === kh && (after ? idx[2 * mid + 1]! <= kl : idx[2 * mid + 1]! < kl))) a = mid + 1
      else e = mid
    }
    return a
  }

  private blockEnd(i: number): number {
    return (i + 1 < this.blockOffsets.length ? this.blockOffsets[i + 1]! : this.indexOffset) - 4
  }

  /**
   * The value stored for `key` (a view into the table), or undefined. `keyBytes[0, keyLen)` is key as
   * UTF-8 (a scratch buffer may be passed with its used length, so callers need no per-get view).
   */
  get(key: string, hash: number, keyBytes: Uint8Array, keyLen = keyBytes.length): Uint8Array | undefined {
    const min = this.minKey
    if (min === undefined || key < min || key > this.maxKey!) return undefined
    if (!this.mayContain(hash)) return undefined
    const b = this.blockFor(key)
    if (b < 0) return undefined
    const buf = this.buf
    const end = this.blockEnd(b)
    const n = keyLen
    let q = this.blockOffsets[b]!
    while (q < end) {
      const keyLen = buf.readUInt16LE(q)
      const valueLen = buf.readUInt32LE(q + 2)
      if (keyLen === n) {
        let i = 0
        const k = q + 6
        while (i < n && buf[k + i] === keyBytes[i]) i++
        if (i === n) return buf.subarray(k + n, k + n + valueLen)
      }
      q += 6 + keyLen + valueLen
    }
    return undefined
  }

  /** An iterator positioned at the first key >= `from` (or the first key). */
  iterator(from?: string): TableIterator {
    const it = new TableIterator(this)
    if (from === undefined) it.start(0, this.blockOffsets.length > 0 ? this.blockOffsets[0]! : 0)
    else {
      const b = Math.max(0, this.blockFor(from))
      it.start(b, this.blockOffsets.length > 0 ? this.blockOffsets[b]! : 0)
      while (it.key !== undefined && it.key < from) it.next()
    }
    return it
  }

  /** @internal */
  blockCount(): number {
    return this.blockOffsets.length
  }
  /** @internal */
  blockStart(i: number): number {
    return this.blockOffsets[i]!
  }
  /** @internal */
  blockEndOf(i: number): number {
    return this.blockEnd(i)
  }
}

/** Walks a table's entries in key order. `key` is undefined once past the end. */
export class TableIterator {
  key: string | undefined
  value: Uint8Array = new Uint8Array(0)
  private block = 0
  private pos = 0
  private end = 0

  constructor(private readonly table: Table) {}

  start(block: number, pos: number): void {
    this.block = block
    this.pos = pos
    this.end = block < this.table.blockCount() ? this.table.blockEndOf(block) : 0
    this.load()
  }

  next(): void {
    this.load()
  }

  private load(): void {
    const t = this.table
    while (this.pos >= this.end) {
      this.block++
      if (this.block >= t.blockCount()) {
        this.key = undefined
        return
      }
      this.pos = t.blockStart(this.block)
      this.end = t.blockEndOf(this.block)
    }
    const buf = t.buf
    const keyLen = buf.readUInt16LE(this.pos)
    const valueLen = buf.readUInt32LE(this.pos + 2)
    const k = this.pos + 6
    this.key = buf.toString('utf8', k, k + keyLen)
    this.value = buf.subarray(k + keyLen, k + keyLen + valueLen)
    this.pos = k + keyLen + valueLen
  }
}

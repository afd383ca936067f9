// SSTables (goleveldb's table/): immutable sorted runs of key/value entries, built from a frozen
// memtable or by compaction, written once to `tables/<id>.sst` and kept in memory as the file's
// Buffer for reads. Every region carries a CRC32C; a table is fully verified (checksums, framing, key
// order, index and key count) when built and again when opened, so a flipped bit anywhere is
// reported as KvError Corruption { file, offset } at open and never served.
//
// Layout (integers little-endian, offsets from the start of the file):
//   data block*   entry* crc32c(4)                 ~tableBlockBytes of entries; crc over the entries
//     entry       keyLen(2) valueLen(4) key(keyLen, UTF-8) value(valueLen)
//   index block   count(4) { offset(4) keyLen(2) firstKey(keyLen) }*count crc32c(4)
//                 one row per data block: where it starts and its first key (sparse index)
//   bloom block   probes(1) bits(n) crc32c(4)       ~bloomBitsPerKey bits per key, double hashing;
//                 version 2: n is a whole number of 64-byte blocks, a key's probes all in one block
//   footer(32)    indexOffset(4) bloomOffset(4) keys(4) blocks(4) version(4) magic(8) crc32c(4)
//                 crc over the footer's first 28 bytes
// Regions are contiguous: data [0, indexOffset), index [indexOffset, bloomOffset),
// bloom [bloomOffset, size - 32), footer [size - 32, size). Key order is JavaScript string order
// (see memtable.ts). The bloom filter is Bloom 1970 with Kirsch–Mitzenmacher double hashing
// (h1 + i*h2), as in LevelDB's bloom.cc; since format version 2 it is blocked (Putze et al. 2007):
// one cache line per probe instead of k. Version 1 tables (whole-array probes) are still read.

import { crc32c } from '@node-rs/crc32'
import { assert } from '../../coordinator/assert.ts'
import { KvError } from '../../coordinator/errors.ts'
import { storageLimits } from './storage-limits.ts'

const magic = Buffer.from('RINGKVT1', 'latin1')
/**
 * 2: blocked bloom filter (all probes of a key in one 64-byte block). 1: classic bloom over the
 * whole bit array; still read (open() picks the probe function by version), never written.
 */
export const tableVersion = 2
const tableVersionsReadable = [1, 2] as const
/** Bits per bloom block of version 2 (one 64-byte cache line). */
const bloomBlockBits = 512
/** Blocks per row of Table.idxTop (32 index pairs = 512 bytes of Table.idx per stride). */
const indexTopStride = 32
const footerBytes = 32

/** 32-bit FNV-1a over UTF-16 code units, finished with murmur3's fmix32 for avalanche. */
export function bloomHash(key: string): number {
  let h = 0x811c9dc5
  for (let i = 0; i < key.length; i++) {
    h ^= key.charCodeAt(i)
    h = Math.imul(h, 0x01000193)
  }
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2ae35)
  h ^= h >>> 16
  return h >>> 0
}

/** Version 1: k probes spread over the whole array (up to k cache misses per table probed). */
function bloomMayContainV1(bits: Buffer, start: number, nbits: number, probes: number, hash: number): boolean {
  let h = hash
  const delta = ((h >>> 17) | (h << 15)) >>> 0
  for (let i = 0; i < probes; i++) {
    const bit = h % nbits
    if ((bits[start + (bit >>> 3)]! & (1 << (bit & 7))) === 0) return false
    h = (h + delta) >>> 0
  }
  return true
}

/**
 * Version 2, a blocked bloom filter (Putze, Sanders, Singler 2007): the hash's high bits pick one
 * 512-bit block (multiply-shift range reduction), and the k probes, by double hashing on a remix of
 * the hash, all fall inside it, so a probe costs one cache line (two when the block straddles).
 */
function bloomBlockOf(hash: number, blocks: number): number {
  return Math.floor((hash / 4294967296) * blocks)
}
function bloomInner(hash: number): number {
  let g = Math.imul(hash ^ (hash >>> 15), 0x2c1b3c6d)
  g ^= g >>> 12
  g = Math.imul(g, 0x297a2d39)
  g ^= g >>> 15
  return g >>> 0
}
function bloomMayContainV2(bits: Buffer, start: number, nbits: number, probes: number, hash: number): boolean {
  const base = start + bloomBlockOf(hash, nbits / bloomBlockBits) * (bloomBlockBits / 8)
  let g = bloomInner(hash)
  const delta = ((g >>> 17) | (g << 15)) | 1
  for (let i = 0; i < probes; i++) {
    const bit = g & (bloomBlockBits - 1)
    if ((bits[base + (bit >>> 3)]! & (1 << (bit & 7))) === 0) return false
    g = (g + delta) | 0
  }
  return true
}

/** A growable output buffer; `capacity` is a hint that avoids re-copies when the size is known. */
class ByteSink {
  buf: Buffer
  len = 0
  constructor(capacity: number) {
    this.buf = Buffer.allocUnsafeSlow(Math.max(4096, capacity))
  }
  ensure(n: number): void {
    if (this.len + n <= this.buf.length) return
    let cap = this.buf.length * 2
    while (cap < this.len + n) cap *= 2
    const next = Buffer.allocUnsafeSlow(cap)
    this.buf.copy(next, 0, 0, this.len)
    this.buf = next
  }
}

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
    // Version 2 blocked bloom: a whole number of 512-bit blocks (see bloomMayContainV2).
    const blocks = Math.max(1, Math.ceil(this.keys * storageLimits.bloomBitsPerKey / bloomBlockBits))
    const nbytes = blocks * (bloomBlockBits / 8)
    s.ensure(1 + nbytes + 4)
    s.buf[s.len] = storageLimits.bloomProbes
    const bitsStart = s.len + 1
    s.buf.fill(0, bitsStart, bitsStart + nbytes)
    for (let i = 0; i < this.keys; i++) {
      const h = this.hashes[i]!
      const base = bitsStart + bloomBlockOf(h, blocks) * (bloomBlockBits / 8)
      let g = bloomInner(h)
      const delta = ((g >>> 17) | (g << 15)) | 1
      for (let p = 0; p < storageLimits.bloomProbes; p++) {
        const bit = g & (bloomBlockBits - 1)
        s.buf[base + (bit >>> 3)]! |= 1 << (bit & 7)
        g = (g + delta) | 0
      }
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
  private digits: { prefixLen: number; hi: Float64Array; lo: Float64Array } | undefined
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

/**
 * Three UTF-16 code units of `key` from `at` as one number, each as (unit + 1) in 17 bits and 0 past
 * the end: if a <= b as strings then keyDigits(a, i) <= keyDigits(b, i) for keys sharing [0, i).
 */
export function keyDigits(key: string, at: number): number {
  const n = key.length
  const c0 = at < n ? key.charCodeAt(at) + 1 : 0
  const c1 = at + 1 < n ? key.charCodeAt(at + 1) + 1 : 0
  const c2 = at + 2 < n ? key.charCodeAt(at + 2) + 1 : 0
  return (c0 * 131072 + c1) * 131072 + c2
}

function commonPrefixLen(a: string, b: string): number {
  const n = Math.min(a.length, b.length)
  let i = 0
  while (i < n && a.charCodeAt(i) === b.charCodeAt(i)) i++
  return i
}

/** The numeric sparse index of a table (see Table.idx); `from`/`to` let a builder compute it in slices. */
export function indexDigits(firstKeys: readonly string[], maxKey: string | undefined,
  into?: { prefixLen: number; hi: Float64Array; lo: Float64Array }, from = 0, to = firstKeys.length): { prefixLen: number; hi: Float64Array; lo: Float64Array } {
  const n = firstKeys.length
  const d = into ?? { prefixLen: n === 0 ? 0 : commonPrefixLen(firstKeys[0]!, maxKey!), hi: new Float64Array(n), lo: new Float64Array(n) }
  const p = d.prefixLen
  for (let i = from; i < to; i++) {
    const k = firstKeys[i]!
    d.hi[i] = keyDigits(k, p)
    d.lo[i] = keyDigits(k, p + 3)
  }
  return d
}

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
   * The sparse index as numbers, for a binary search that touches two contiguous typed arrays instead
   * of scattered strings: every key of the table shares its first `prefixLen` UTF-16 code units (the
   * common prefix of minKey and maxKey); idx holds, interleaved as idx[2i], idx[2i + 1], the next 3 + 3 code units of each block's
   * first key (see keyDigits). The number pairs are ordered like the strings (non-strictly), so the
   * search narrows to the blocks whose pair equals the key's, and compares strings only among those.
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
    digits: { prefixLen: number; hi: Float64Array; lo: Float64Array } | undefined,
    private readonly version: number,
  ) {
    this.minKey = firstKeys[0]
    this.maxKey = maxKey
    const d = digits ?? indexDigits(firstKeys, maxKey)
    this.prefixLen = d.prefixLen
    // Interleaved (hi, lo) pairs: one binary-search step touches one cache line, not two.
    const n = d.hi.length
    const idx = new Float64Array(2 * n)
    for (let i = 0; i < n; i++) {
      idx[2 * i] = d.hi[i]!
      idx[2 * i + 1] = d.lo[i]!
    }
    this.idx = idx
    const m = Math.ceil(n / indexTopStride)
    const top = new Float64Array(2 * m)
    for (let j = 0; j < m; j++) {
      top[2 * j] = idx[2 * j * indexTopStride]!
      top[2 * j + 1] = idx[2 * j * indexTopStride + 1]!
    }
    this.idxTop = top
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
    if (probes < 1 || probes > 30) throw corrupt(file, bloomOffset, `bad bloom probe count ${probes}`)

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
    if (version === 2 && (nbytes === 0 || nbytes % (bloomBlockBits / 8) !== 0)) throw corrupt(file, bloomOffset, `bloom of ${nbytes} bytes is not whole 64-byte blocks`)
    const maxKey = verifyBlocks ? last : lastKeyOf(buf, blocks > 0 ? blockOffsets[blocks - 1]! : 0, indexOffset - 4)
    return new Table(file, buf, keys, blockOffsets, firstKeys, indexOffset, bloomOffset + 1, nbytes * 8, probes, maxKey, undefined, version)
  }

  /** @internal A table whose parts the builder already knows (it asserted their order while adding). */
  static fromParts(file: string, buf: Buffer, keys: number, blockOffsets: Uint32Array, firstKeys: string[], maxKey: string | undefined,
    digits?: { prefixLen: number; hi: Float64Array; lo: Float64Array }): Table {
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

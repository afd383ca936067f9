// Key -> partition. The hash space [0, 2^32) is cut into Q equal, contiguous arcs (Q a power of
// two), and a key belongs to the arc its hash falls in: partition = top log2(Q) bits of the hash.
// This is Dynamo's strategy 3 (DeCandia 2007, section 6.2): because Q is fixed, a key's partition
// never changes when nodes come and go; only the partition -> node map (claim.ts) does.
//
// The hash is SHA-256 of the key's UTF-8 bytes, from @noble/hashes: audited, pure JS, and the same
// bytes in Node, browsers and Workers (no node:crypto here; WebCrypto's digest is async). It runs
// once per request (under 1 µs for a short key), so the encoder, its scratch buffer and the hasher
// are reused. The hash is part of the wire contract: every client and replica must compute the same
// partition for a key, so changing it is a data migration, not a refactor.

import { sha256 } from '@noble/hashes/sha2.js'
import { assert } from '../assert.ts'
import { limits } from '../limits.ts'

const encoder = new TextEncoder()
/** Scratch for encodeInto; UTF-8 takes at most 3 bytes per UTF-16 code unit. Grown on demand. */
let scratch = new Uint8Array(3 * limits.keyBytesMax)

/** True for 1, 2, 4, ... 2^30. (Bitwise ops wrap above 2^31, so larger numbers are refused.) */
export function isPowerOfTwo(x: number): boolean {
  return Number.isInteger(x) && x >= 1 && x <= 2 ** 30 && (x & (x - 1)) === 0
}

/** log2(partitions); partitions must be a power of two. */
export function partitionBits(partitions: number): number {
  // No message closure: this runs for every key routed or written.
  if (!isPowerOfTwo(partitions)) assert(false, `partitions must be a power of two, got ${partitions}`)
  return 31 - Math.clz32(partitions)
}

// One hasher reused for every key: `sha256(bytes)` builds a hasher, its buffers and two DataViews
// per call, which was most of its 2.1 µs for a short key; resetting one from a pristine copy
// (`_cloneInto`, the library's own clone path) and digesting into a kept buffer takes 0.8-0.9 µs.
// Safe because hashing never yields: no other call can interleave. partition-hash.test.ts checks it
// against `sha256()` on many keys.
const pristine = sha256.create()
const hasher = sha256.create()
const digest = new Uint8Array(32)

// The last key hashed and its hash: a replica's write hashes its key for the ownership check and
// again for the anti-entropy tree, in the same turn, and the second costs a string compare.
let memoKey: string | undefined
let memoHash = 0

/** The top 32 bits of SHA-256(UTF-8(key)), as an unsigned integer: the key's point on the ring. */
export function keyHash32(key: string): number {
  if (key === memoKey) return memoHash
  memoHash = sha256Top32(key)
  memoKey = key
  return memoHash
}

function sha256Top32(key: string): number {
  if (key.length * 3 > scratch.length) scratch = new Uint8Array(key.length * 3)
  // ASCII keys (the usual ones) are copied by hand: TextEncoder.encodeInto's call costs more than
  // the copy for a short key. Any other code unit hands the whole key to encodeInto.
  let written = 0
  for (let i = 0; i < key.length; i++) {
    const c = key.charCodeAt(i)
    if (c >= 0x80) { written = -1; break }
    scratch[i] = c
  }
  if (written < 0) written = encoder.encodeInto(key, scratch).written
  else written = key.length
  pristine._cloneInto(hasher)
  hasher.update(scratch.subarray(0, written))
  hasher.digestInto(digest)
  return ((digest[0]! << 24) | (digest[1]! << 16) | (digest[2]! << 8) | digest[3]!) >>> 0
}

/** The partition whose arc holds the 32-bit hash `hash32`: its top log2(partitions) bits. */
export function partitionOfHash(hash32: number, partitions: number): number {
  const bits = partitionBits(partitions)
  // JS shifts count mod 32, so `>>> 32` would be a no-op: one partition is the whole ring.
  return bits === 0 ? 0 : hash32 >>> (32 - bits)
}

/** The partition a key belongs to, for a ring of `partitions` equal arcs. */
export function partitionOfKey(partitions: number, key: string): number {
  return partitionOfHash(keyHash32(key), partitions)
}

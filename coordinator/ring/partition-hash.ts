// Key -> partition. The hash space [0, 2^32) is cut into Q equal, contiguous arcs (Q a power of
// two), and a key belongs to the arc its hash falls in: partition = top log2(Q) bits of the hash.
// This is Dynamo's strategy 3 (DeCandia 2007, section 6.2): because Q is fixed, a key's partition
// never changes when nodes come and go; only the partition -> node map (claim.ts) does.
//
// The hash is the first 32 bits of SHA-256 of the key's UTF-8 bytes: the same in Node, browsers
// and Workers (no node:crypto here; WebCrypto's digest is async). It runs for every request in the
// client and for every write in a replica (anti-entropy's tree), so it is computed here, in place,
// allocating nothing: @noble/hashes, which this used before, allocated about 300 bytes a call (a
// subarray view, a DataView and the state array of its digest), and in a replica under a put load
// that garbage was a tenth of the young-generation collections. Only the first state word is
// read out. This is not a security function (the ring hash needs spread and agreement, no secret);
// authentication keeps @noble/hashes (coordinator/auth). ring.test.ts checks it against
// node:crypto on many keys, short and long, ASCII and not. The hash is part of the wire contract:
// every client and replica must compute the same partition for a key, so changing it is a data
// migration, not a refactor.

import { assert } from '../assert.ts'
import { limits } from '../limits.ts'

const encoder = new TextEncoder()
/** Scratch for encodeInto; UTF-8 takes at most 3 bytes per UTF-16 code unit. Grown on demand. */
let scratch = new Uint8Array(3 * limits.keyBytesMax + 72)

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
  // Room for the UTF-8 bytes, the 0x80 byte and the 8-byte length, in whole 64-byte blocks.
  if (key.length * 3 + 72 > scratch.length) scratch = new Uint8Array(key.length * 3 + 72)
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
  return sha256FirstWord(scratch, written)
}

/** SHA-256's round constants (FIPS 180-4, 4.2.2). */
const K = Int32Array.from([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
])
/** The message schedule, reused. */
const W = new Int32Array(64)

/**
 * The first 32-bit word of SHA-256 (FIPS 180-4) of `bytes[0, len)`, as an unsigned integer. Pads
 * the message in place, so `bytes` must have room for whole 64-byte blocks past `len` + 9.
 */
function sha256FirstWord(bytes: Uint8Array, len: number): number {
  const end = (((len + 8) >>> 6) + 1) << 6
  bytes[len] = 0x80
  bytes.fill(0, len + 1, end - 4)
  // The length in bits, big-endian, in the last 8 bytes (keys are far below 2^29 bytes: the high word is 0).
  const bits = len * 8
  bytes[end - 4] = bits >>> 24
  bytes[end - 3] = bits >>> 16
  bytes[end - 2] = bits >>> 8
  bytes[end - 1] = bits
  let h0 = 0x6a09e667, h1 = 0xbb67ae85 | 0, h2 = 0x3c6ef372, h3 = 0xa54ff53a | 0
  let h4 = 0x510e527f, h5 = 0x9b05688c | 0, h6 = 0x1f83d9ab, h7 = 0x5be0cd19
  for (let off = 0; off < end; off += 64) {
    for (let t = 0; t < 16; t++) {
      const i = off + t * 4
      W[t] = (bytes[i]! << 24) | (bytes[i + 1]! << 16) | (bytes[i + 2]! << 8) | bytes[i + 3]!
    }
    for (let t = 16; t < 64; t++) {
      const x = W[t - 15]!
      const y = W[t - 2]!
      const s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)
      const s1 = ((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10)
      W[t] = (W[t - 16]! + s0 + W[t - 7]! + s1) | 0
    }
    let a = h0, b = h1, c = h2, d = h3, e = h4, f = h5, g = h6, h = h7
    for (let t = 0; t < 64; t++) {
      const S1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7))
      const t1 = (h + S1 + ((e & f) ^ (~e & g)) + K[t]! + W[t]!) | 0
      const S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10))
      const t2 = (S0 + ((a & b) ^ (a & c) ^ (b & c))) | 0
      h = g; g = f; f = e; e = (d + t1) | 0
      d = c; c = b; b = a; a = (t1 + t2) | 0
    }
    h0 = (h0 + a) | 0; h1 = (h1 + b) | 0; h2 = (h2 + c) | 0; h3 = (h3 + d) | 0
    h4 = (h4 + e) | 0; h5 = (h5 + f) | 0; h6 = (h6 + g) | 0; h7 = (h7 + h) | 0
  }
  return h0 >>> 0
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

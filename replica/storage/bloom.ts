// The SSTable bloom filters (Bloom 1970) with Kirsch–Mitzenmacher double hashing (h1 + i*h2), as
// in LevelDB's bloom.cc: the hash every get computes once per key, the version-2 writer the table
// builder uses, and the probe functions of both versions the table reader picks from by the table's
// format version (table-format.ts). A filter lives in a table's bloom block: probes(1) bits(n)
// crc32c(4); this module defines the bits.
//
//   version 1  n = ceil(max(64, keys * bitsPerKey) / 8) bytes; the k probes of a key spread over
//              all n*8 bits (bit = h mod n*8, h += delta): up to k cache misses per table probed.
//              No longer written; tables of this version are still read.
//   version 2  blocked (Putze, Sanders, Singler 2007): n is a whole number of 512-bit blocks; the
//              hash's high bits pick one block and all k probes fall inside it: one cache line.

import { fmix32 } from '../../coordinator/hash32.ts'
import { storageLimits } from './storage-limits.ts'

/** Bits per bloom block of version 2 (one 64-byte cache line). */
export const bloomBlockBits = 512
export const bloomBlockBytes = bloomBlockBits / 8

/** 32-bit FNV-1a over UTF-16 code units, finished with murmur3's fmix32 for avalanche. */
export function bloomHash(key: string): number {
  let h = 0x811c9dc5
  for (let i = 0; i < key.length; i++) {
    h ^= key.charCodeAt(i)
    h = Math.imul(h, 0x01000193)
  }
  return fmix32(h)
}

/** Version 1: k probes spread over the whole array (up to k cache misses per table probed). */
export function bloomMayContainV1(bits: Buffer, start: number, nbits: number, probes: number, hash: number): boolean {
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
export function bloomMayContainV2(bits: Buffer, start: number, nbits: number, probes: number, hash: number): boolean {
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

/** Blocks of a version-2 filter for `keys` keys: ~bloomBitsPerKey bits per key, at least one block. */
export function bloomBlocksFor(keys: number): number {
  return Math.max(1, Math.ceil(keys * storageLimits.bloomBitsPerKey / bloomBlockBits))
}

/**
 * Sets the `probes` bits of `hash` in the version-2 filter of `blocks` blocks whose bits start at
 * `bits[start]` (zeroed by the caller); bloomMayContainV2 then finds it.
 */
export function bloomAddV2(bits: Buffer, start: number, blocks: number, probes: number, hash: number): void {
  const base = start + bloomBlockOf(hash, blocks) * (bloomBlockBits / 8)
  let g = bloomInner(hash)
  const delta = ((g >>> 17) | (g << 15)) | 1
  for (let p = 0; p < probes; p++) {
    const bit = g & (bloomBlockBits - 1)
    bits[base + (bit >>> 3)]! |= 1 << (bit & 7)
    g = (g + delta) | 0
  }
}

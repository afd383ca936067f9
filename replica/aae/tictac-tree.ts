// A Tictac-style Merkle tree over the keys of one partition on one replica (Merkle 1987; the
// XOR-of-hashes form is Martin Sumner's Tictac AAE for Riak, docs/anti-entropy.md).
//
// Each key lands in one segment (leaf), chosen by low bits of its ring hash (keyHash32, whose top
// bits choose the partition). A key contributes hash(key, causal history, tombstone flags) to its
// segment, and a segment's hash is the XOR of its keys' contributions; a branch is the XOR of its
// segments, the root is the list of branch hashes. XOR makes an update O(1): XOR the key's old
// contribution out and the new one in, with no rescan and no order to keep, and two replicas'
// trees differ exactly in the segments where some key's causal history differs (up to 32-bit hash
// collisions). Values are not hashed: a dot names one value (dvv.ts), so the dots and the vector
// say everything a merge would change.
//
// The tree also keeps each key's segment and contribution (key-index.ts: typed arrays, not a Map),
// so that an update needs no read of the old state's hash and an exchange can list the keys of a
// differing segment.
// Pure: no I/O, no clock; the replica (anti-entropy.ts) owns one per partition it holds.

import { assert } from '../../coordinator/assert.ts'
import { limits } from '../../coordinator/limits.ts'
import { compareStrings, type DvvSet } from '../../coordinator/version/dvv.ts'
import { KeyIndex } from './key-index.ts'
import { murmur3 } from '../../coordinator/hash32.ts'

/** Branches under the root and segments under each branch; depth 2 (root -> branches -> segments). */
export interface TreeShape { readonly width: number; readonly depth: number }

export const treeShape: TreeShape = { width: limits.aaeTreeWidth, depth: 2 }
export const segmentsPerTree = limits.aaeTreeWidth * limits.aaeTreeWidth
/** A segment's branch is its top bits: segment >>> branchShift. */
const branchShift = Math.log2(limits.aaeTreeWidth)

export function sameShape(a: TreeShape, b: TreeShape): boolean {
  return a.width === b.width && a.depth === b.depth
}

/** The segment of a key, from its 32-bit ring hash: the low bits (the partition has the top ones). */
export function segmentOfHash(hash32: number): number {
  return hash32 & (segmentsPerTree - 1)
}

/**
 * The key's contribution: the top 30 bits of MurmurHash3 (x86, 32-bit) over a canonical spelling
 * of the key and its causal history: the version vector (actors sorted) and each sibling's dot with a tombstone flag.
 * Every string is length-prefixed, so no actor name can make two histories spell alike. Never 0
 * for a stored state, so "absent" and "present" always differ (0 is what an absent key adds).
 *
 * Not a cryptographic hash, on purpose: a contribution is 30 bits, and 2^30 tries find a collision
 * for any hash cut that short, so SHA-256 would buy no safety, only cost: it ran on every write of
 * every replica and took about 40 times as long (docs/anti-entropy.md). What a contribution needs
 * is spread (each output bit depends on every input bit), which Murmur3's mixing gives.
 */
export function stateHash(key: string, state: DvvSet): number {
  let s = `${key.length}:${key}|`
  const actors = Object.keys(state.vv).sort(compareStrings)
  for (const a of actors) s += `${a.length}:${a}${state.vv[a]},`
  s += '|'
  for (const x of state.siblings) s += `${x.actor.length}:${x.actor}${x.counter}${x.value === null ? 't' : 'v'},`
  // 30 bits (see TictacTree.keys); never 0.
  const h = murmur3(s) >>> 2
  return h === 0 ? 1 : h
}

export class TictacTree {
  /** Segment hashes. */
  readonly leaves = new Uint32Array(segmentsPerTree)
  /** Branch hashes: the root's entries. */
  readonly branches = new Uint32Array(limits.aaeTreeWidth)
  /**
   * Each key's segment and contribution (absent keys contribute 0), in typed arrays rather than a
   * Map of strings, which every major GC had to mark (key-index.ts says what it cost).
   */
  private readonly keys = new KeyIndex()

  /** Keys the tree holds. */
  get size(): number { return this.keys.size }

  /** Sets `key`'s contribution (0 removes it), XORing the old one out and the new one in. */
  set(segment: number, key: string, hash: number): void {
    // Checked without building a message closure: this runs on every write.
    if (!(segment >= 0 && segment < segmentsPerTree && Number.isInteger(segment))) assert(false, `segment ${segment} outside the tree`)
    const old = this.keys.set(key, segment, hash)
    if (old === hash) return
    const delta = old ^ hash
    this.leaves[segment] = this.leaves[segment]! ^ delta
    const b = segment >>> branchShift
    this.branches[b] = this.branches[b]! ^ delta
  }

  /** The key's contribution, 0 when absent. */
  get(key: string): number {
    return this.keys.get(key)
  }

  /** Up to `max` of the tree's keys, in no particular order (a drop deletes a partition slice by slice). */
  someKeys(max: number): string[] {
    return this.keys.someKeys(max)
  }

  /** The keys of `segment`, sorted (JavaScript string order, the engine's). */
  keysOf(segment: number): string[] {
    return this.keysOfSegments([segment]).get(segment)!
  }

  /**
   * The keys of each named segment, each list sorted: one walk over the tree's keys, whose segments
   * the index keeps (exchanges only, which name up to aaeSegmentsPerFetchMax segments at a time).
   */
  keysOfSegments(segments: readonly number[]): Map<number, string[]> {
    const out = new Map<number, string[]>(segments.map(s => [s, []]))
    this.keys.forEach((key, segment) => { out.get(segment)?.push(key) })
    for (const list of out.values()) list.sort(compareStrings)
    return out
  }

  /** The leaves under branch `b`. */
  leavesOf(b: number): Uint32Array {
    return this.leaves.subarray(b * limits.aaeTreeWidth, (b + 1) * limits.aaeTreeWidth)
  }
}

/** Hash words as big-endian bytes (the wire form). */
export function wordsToBytes(words: Uint32Array): Uint8Array {
  const out = new Uint8Array(words.length * 4)
  const v = new DataView(out.buffer)
  for (let i = 0; i < words.length; i++) v.setUint32(i * 4, words[i]!)
  return out
}

/** Big-endian bytes as hash words; the length is a multiple of 4 (the wire schema checks it). */
export function bytesToWords(bytes: Uint8Array): Uint32Array {
  assert(bytes.byteLength % 4 === 0, 'hash bytes not a multiple of 4')
  const out = new Uint32Array(bytes.byteLength / 4)
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  for (let i = 0; i < out.length; i++) out[i] = v.getUint32(i * 4)
  return out
}

/** Indices where two equally long word arrays differ. */
export function differing(a: Uint32Array, b: Uint32Array): number[] {
  assert(a.length === b.length, 'comparing hash arrays of different lengths')
  const out: number[] = []
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) out.push(i)
  return out
}

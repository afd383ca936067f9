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
// The caller passes a key's old contribution with its new one: the write path has just read the
// key's stored state to merge into it, so hashing that state again costs a fraction of a
// microsecond on data already in the cache, where looking the contribution up in a table would
// cost two cold cache lines a write (measured: docs/anti-entropy.md, "What it costs the put path").
// The tree also keeps the set of its keys (key-index.ts: typed arrays, not a Set, placed by the
// key's ring hash), touched only when a key comes or goes, so that an exchange can list the keys of
// a differing segment and a drop can find a partition's keys.
//
// Trusting the caller's old contribution means a tree that once disagreed with storage (a bug, or
// a write accounted and then lost with its engine) would stay wrong in that segment. An exchange
// repairs that: serving a segment's keys reads all of their states in one turn, and the server then
// sets the segment's hash from them (anti-entropy.ts, keysPage; counted in /metrics).
// Pure: no I/O, no clock; the replica (anti-entropy.ts) owns one per partition it holds.

import { assert } from '../../coordinator/assert.ts'
import { limits } from '../../coordinator/limits.ts'
import { compareStrings, type DvvSet } from '../../coordinator/version/dvv.ts'
import { KeyIndex } from './key-index.ts'
import { fmix32, murmurBlock } from '../../coordinator/hash32.ts'

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

/** Seeds that keep a vector entry, a live dot and a tombstone dot of the same actor and counter apart. */
const seedVector = 0x6a09e667
const seedLive = 0xbb67ae85
const seedDeleted = 0x3c6ef372

/** One (actor, counter) pair: MurmurHash3 blocks over the actor's code units, then the counter's two halves. */
function entryHash(seed: number, actor: string, counter: number): number {
  let h = seed
  for (let i = 0; i < actor.length; i++) h = murmurBlock(h, actor.charCodeAt(i))
  h = murmurBlock(h, counter >>> 0)
  h = murmurBlock(h, Math.floor(counter / 0x1_0000_0000))
  return fmix32(h ^ actor.length)
}

/**
 * The key's contribution, from its 32-bit ring hash and its causal history: the version vector's
 * entries and each sibling's dot with a tombstone flag. 30 bits, never 0 for a stored state, so
 * "absent" and "present" always differ (0 is what an absent key adds).
 *
 * Each entry is hashed alone (MurmurHash3's block mix and finalizer, coordinator/hash32.ts) and the
 * entries are summed, so the order of a vector's actors or of the siblings does not matter and
 * nothing is sorted, spelled or allocated: this runs on every write of every replica. (It used to
 * build a string of the sorted history and hash that, and the string was half of the tree's cost
 * on the write path: docs/anti-entropy.md, "What it costs the put path".) Distinct entries sum to
 * the same total only by a 32-bit accident, and the key enters through its ring hash, so two keys
 * of one segment with one history do not cancel out.
 *
 * Not a cryptographic hash, on purpose: a contribution is 30 bits, and 2^30 tries find a collision
 * for any hash cut that short, so SHA-256 would buy no safety, only cost. What a contribution needs
 * is spread (each output bit depends on every input bit), which Murmur3's mixing gives. Every
 * replica must compute it alike: replicas running an older spelling disagree on every segment, and
 * their exchanges then list keys and find nothing to repair until all of them run the same one.
 */
export function stateHash(keyHash: number, state: DvvSet): number {
  let vector = 0
  const vv = state.vv
  for (const actor in vv) vector = (vector + entryHash(seedVector, actor, vv[actor]!)) | 0
  let dots = 0
  const siblings = state.siblings
  for (let i = 0; i < siblings.length; i++) {
    const x = siblings[i]!
    dots = (dots + entryHash(x.value === null ? seedDeleted : seedLive, x.actor, x.counter)) | 0
  }
  const h = fmix32(murmurBlock(murmurBlock(murmurBlock(0, keyHash), vector), dots) ^ siblings.length) >>> 2
  return h === 0 ? 1 : h
}

/** What a key in `state` adds to its segment: 0 for a state with no siblings (absent, or reaped). */
export function contribution(keyHash: number, state: DvvSet): number {
  return state.siblings.length === 0 ? 0 : stateHash(keyHash, state)
}

export class TictacTree {
  /** Segment hashes. */
  readonly leaves = new Uint32Array(segmentsPerTree)
  /** Branch hashes: the root's entries. */
  readonly branches = new Uint32Array(limits.aaeTreeWidth)
  /** The keys with a nonzero contribution, in typed arrays rather than a Set of strings (key-index.ts). */
  private readonly keys = new KeyIndex()

  /** Keys the tree holds. */
  get size(): number { return this.keys.size }

  /**
   * Changes `key`'s contribution from `old` to `hash` (contribution(): 0 for absent), XORing the
   * old one out and the new one in. `keyHash` is the key's ring hash (keyHash32), which names its
   * segment and places it in the key set. The key set changes only when a key comes (old 0) or goes
   * (hash 0). `old` must be what the tree was last told for the key: the write path passes the
   * contribution of the state it merged into.
   */
  set(keyHash: number, key: string, old: number, hash: number): void {
    if (old === hash) return
    if (old === 0) this.keys.add(key, keyHash)
    else if (hash === 0) this.keys.delete(key, keyHash)
    this.xor(segmentOfHash(keyHash), old ^ hash)
  }

  /**
   * Removes `key`, whose contribution is `old`, from the tree and from its key set even if the two
   * disagree (a drop must empty the set whatever storage held, or it would list the key for ever).
   */
  remove(keyHash: number, key: string, old: number): void {
    this.keys.delete(key, keyHash)
    this.xor(segmentOfHash(keyHash), old)
  }

  /** Sets a segment's hash (an exchange found what its keys add up to); true when it changed. */
  correct(segment: number, hash: number): boolean {
    const delta = this.leaves[segment]! ^ hash
    if (delta === 0) return false
    this.xor(segment, delta)
    return true
  }

  /** Up to `max` of the tree's keys, in no particular order (a drop deletes a partition slice by slice). */
  someKeys(max: number): string[] {
    return this.keys.someKeys(max)
  }

  /**
   * The keys of each named segment with their ring hashes, each list sorted by key (JavaScript
   * string order, the engine's): one walk over the tree's keys, whose ring hashes the set keeps
   * (exchanges only, which name up to aaeSegmentsPerFetchMax segments at a time).
   */
  keysOfSegments(segments: readonly number[]): Map<number, Array<{ readonly key: string; readonly hash: number }>> {
    const out = new Map<number, Array<{ key: string; hash: number }>>(segments.map(s => [s, []]))
    this.keys.forEach((key, hash) => { out.get(segmentOfHash(hash))?.push({ key, hash }) })
    for (const list of out.values()) list.sort((x, y) => compareStrings(x.key, y.key))
    return out
  }

  /** The leaves under branch `b`. */
  leavesOf(b: number): Uint32Array {
    return this.leaves.subarray(b * limits.aaeTreeWidth, (b + 1) * limits.aaeTreeWidth)
  }

  private xor(segment: number, delta: number): void {
    this.leaves[segment] = this.leaves[segment]! ^ delta
    const b = segment >>> branchShift
    this.branches[b] = this.branches[b]! ^ delta
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

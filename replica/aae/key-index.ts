// The keys of one anti-entropy tree (tictac-tree.ts), each with its segment and its 30-bit
// contribution, kept outside the JavaScript heap's object graph: an open-addressing hash table in
// typed arrays, with the keys' UTF-16 code units in one growable arena.
//
// Why not a Map<string, number>: the tree must remember every key a replica stores (an update XORs
// the key's old contribution out, and an exchange lists the keys of a differing segment), and a Map
// keeps each key as a string object in old space. Every major GC then marks every key, and every
// new key pays the map's growth and write barriers: measured in a put benchmark, anti-entropy's
// write hook with the Map cost about 15 % of the replicas' CPU, most of it GC and map lookups
// (docs/anti-entropy.md, "Cost and rate"). Typed arrays hold no references, so GC skips their
// contents, and a lookup is a hash, a probe and a compare of code units.
//
// Layout: capacity (a power of two) slots of 4 words each, in one Int32Array, so that a lookup
// touches one cache line for the slot and one for the key's code units. This runs on every write,
// between a frame's decoding and a log append that have long since pushed these arrays out of the
// caches: timed inside a replica under a put load, an update with the slot's fields in four
// separate arrays took 2.4 µs, and a loop that thrashes the caches between updates reproduces that
// (docs/anti-entropy.md).
// - word 0: 0 (empty), -1 (deleted) or 1 + the arena offset of the key's record, which is
//   [length, ...code units];
// - word 1: the caller's hash of the key, which filters compares;
// - word 2: the key's contribution (value);
// - word 3: the key's segment.
// A deletion leaves a tombstone slot and dead arena space; both are reclaimed when the table is
// rebuilt (on growth, or when tombstones or dead space pass half of what is in use).
// Pure: no I/O, no clock.

import { assert } from '../../coordinator/assert.ts'
import { limits } from '../../coordinator/limits.ts'

const EMPTY = 0
const DELETED = -1
const initialCapacity = 16
const initialArenaUnits = 256
/** Words per slot: reference, hash, value, segment. */
const W = 4

export class KeyIndex {
  private table = new Int32Array(initialCapacity * W)
  /** Slots (table.length / W), a power of two. */
  private capacity = initialCapacity
  private arena = new Uint16Array(initialArenaUnits)
  private arenaUsed = 0
  /** Arena units held by deleted keys' records. */
  private dead = 0
  private live = 0
  private tombstones = 0

  /** Keys held. */
  get size(): number { return this.live }

  /** The key's value, 0 when absent; `hash` is the key's hash (see set). */
  get(key: string, hash: number): number {
    const at = this.find(key, hash | 0)
    return at < 0 ? 0 : this.table[at + 2]! >>> 0
  }

  /**
   * Sets `key`'s segment and value (value 0 removes the key) and returns its old value (0 when it
   * was absent). Values are nonzero 32-bit unsigned integers. `hash` places the key in the table:
   * any well-spread 32-bit hash of the key, the same one for a key every time (the tree passes the
   * key's ring hash, which the write path has already computed, so the index hashes nothing).
   */
  set(key: string, hash: number, segment: number, value: number): number {
    const h = hash | 0
    const t = this.table
    const at = this.find(key, h)
    if (at >= 0) {
      const old = t[at + 2]! >>> 0
      if (value === 0) {
        this.dead += 1 + key.length
        t[at] = DELETED
        t[at + 2] = 0
        this.live--
        this.tombstones++
        if (this.tombstones * 2 > this.capacity || this.dead * 2 > this.arenaUsed + 1) this.rebuild(this.capacity)
      } else {
        t[at + 2] = value
        t[at + 3] = segment
      }
      return old
    }
    if (value === 0) return 0
    // A new key: make room first (live + tombstones stay under 3/4 of the slots).
    if ((this.live + this.tombstones + 1) * 4 > this.capacity * 3) this.rebuild(this.live * 2 + 2 > this.capacity ? this.capacity * 2 : this.capacity)
    this.insert(key, h, segment, value)
    return 0
  }

  /** Calls `fn` with every key, its segment and value, in slot order. */
  forEach(fn: (key: string, segment: number, value: number) => void): void {
    const t = this.table
    for (let at = 0; at < t.length; at += W) {
      const s = t[at]!
      if (s > 0) fn(this.keyAt(s - 1), t[at + 3]!, t[at + 2]! >>> 0)
    }
  }

  /** Up to `max` keys, in slot order. */
  someKeys(max: number): string[] {
    const out: string[] = []
    const t = this.table
    for (let at = 0; at < t.length && out.length < max; at += W) {
      const s = t[at]!
      if (s > 0) out.push(this.keyAt(s - 1))
    }
    return out
  }

  /** The table offset of the slot holding `key`, or -1. */
  private find(key: string, h: number): number {
    const t = this.table
    const mask = this.capacity - 1
    for (let i = h & mask, probes = 0; probes <= mask; i = (i + 1) & mask, probes++) {
      const at = i * W
      const s = t[at]!
      if (s === EMPTY) return -1
      if (s > 0 && t[at + 1] === h && this.keyEquals(s - 1, key)) return at
    }
    return -1
  }

  private keyEquals(at: number, key: string): boolean {
    const arena = this.arena
    if (arena[at] !== key.length) return false
    for (let j = 0; j < key.length; j++) if (arena[at + 1 + j] !== key.charCodeAt(j)) return false
    return true
  }

  private keyAt(at: number): string {
    return String.fromCharCode.apply(null, this.arena.subarray(at + 1, at + 1 + this.arena[at]!) as unknown as number[])
  }

  /** Puts a key known to be absent into the first free slot of its probe sequence. */
  private insert(key: string, h: number, segment: number, value: number): void {
    if (!(key.length <= limits.keyBytesMax)) assert(false, `key of ${key.length} code units in the anti-entropy index`)
    const need = this.arenaUsed + 1 + key.length
    if (need > this.arena.length) {
      let size = this.arena.length * 2
      while (size < need) size *= 2
      const grown = new Uint16Array(size)
      grown.set(this.arena.subarray(0, this.arenaUsed))
      this.arena = grown
    }
    const ref = this.arenaUsed
    this.arena[ref] = key.length
    for (let j = 0; j < key.length; j++) this.arena[ref + 1 + j] = key.charCodeAt(j)
    this.arenaUsed = need
    const t = this.table
    const mask = this.capacity - 1
    let i = h & mask
    while (t[i * W]! > 0) i = (i + 1) & mask
    const at = i * W
    if (t[at] === DELETED) this.tombstones--
    t[at] = ref + 1
    t[at + 1] = h
    t[at + 2] = value
    t[at + 3] = segment
    this.live++
  }

  /** Rebuilds the table with `capacity` slots and a compacted arena: tombstones and dead space go. */
  private rebuild(capacity: number): void {
    const { table: old, arena } = this
    const t = new Int32Array(capacity * W)
    this.table = t
    this.capacity = capacity
    let units = initialArenaUnits
    while (units < this.arenaUsed - this.dead) units *= 2
    this.arena = new Uint16Array(units)
    this.arenaUsed = 0
    this.dead = 0
    this.live = 0
    this.tombstones = 0
    const mask = capacity - 1
    for (let k = 0; k < old.length; k += W) {
      const s = old[k]!
      if (s <= 0) continue
      const from = s - 1
      const len = arena[from]!
      const ref = this.arenaUsed
      this.arena.set(arena.subarray(from, from + 1 + len), ref)
      this.arenaUsed += 1 + len
      const h = old[k + 1]!
      let i = h & mask
      while (t[i * W] !== EMPTY) i = (i + 1) & mask
      const at = i * W
      t[at] = ref + 1
      t[at + 1] = h
      t[at + 2] = old[k + 2]!
      t[at + 3] = old[k + 3]!
      this.live++
    }
  }
}

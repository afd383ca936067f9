// The keys of one anti-entropy tree (tictac-tree.ts), kept outside the JavaScript heap's object
// graph: a set in an open-addressing hash table of typed arrays, with the keys' UTF-16 code units
// in one growable arena.
//
// Why a set of keys at all: an exchange lists the keys of a differing segment, and a drop deletes a
// partition's keys slice by slice, so the tree must know every key a replica stores. It does not
// keep their contributions: the write path has the key's old state in hand, so the caller hashes
// it (tictac-tree.ts), and an update of a key the tree already holds does not touch this table.
//
// Why not a Set<string>: a Set keeps each key as a string object in old space. Every major GC then
// marks every key, and every new key pays the set's growth and write barriers: measured in a put
// benchmark, anti-entropy's write hook with a Map cost about 15 % of the replicas' CPU, most of it
// GC and map lookups (docs/anti-entropy.md). Typed arrays hold no references, so GC skips their
// contents, and a lookup is a hash, a probe and a compare of code units.
//
// Layout: capacity (a power of two) slots of 2 words each, in one Int32Array:
// - word 0: 0 (empty), -1 (deleted) or 1 + the arena offset of the key's record, which is
//   [length, ...code units];
// - word 1: the caller's hash of the key, which filters compares (and which the tree reads the
//   key's segment from).
// A deletion leaves a tombstone slot and dead arena space; both are reclaimed when the table is
// rebuilt (on growth, or when tombstones or dead space pass half of what is in use).
// Pure: no I/O, no clock.

import { assert } from '../../coordinator/assert.ts'
import { limits } from '../../coordinator/limits.ts'

const EMPTY = 0
const DELETED = -1
const initialCapacity = 16
const initialArenaUnits = 256
/** Words per slot: reference, hash. */
const W = 2

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

  /**
   * Whether `key` is held. `hash` places the key in the table: any well-spread 32-bit hash of the
   * key, the same one for a key every time (the tree passes the key's ring hash, which the write
   * path has already computed, so the index hashes nothing).
   */
  has(key: string, hash: number): boolean {
    return this.find(key, hash | 0) >= 0
  }

  /** Adds `key` (see has for `hash`); false when it was already held. */
  add(key: string, hash: number): boolean {
    const h = hash | 0
    if (this.find(key, h) >= 0) return false
    // Make room first (live + tombstones stay under 3/4 of the slots).
    if ((this.live + this.tombstones + 1) * 4 > this.capacity * 3) this.rebuild(this.live * 2 + 2 > this.capacity ? this.capacity * 2 : this.capacity)
    this.insert(key, h)
    return true
  }

  /** Removes `key` (see has for `hash`); false when it was not held. */
  delete(key: string, hash: number): boolean {
    const at = this.find(key, hash | 0)
    if (at < 0) return false
    this.dead += 1 + key.length
    this.table[at] = DELETED
    this.live--
    this.tombstones++
    if (this.tombstones * 2 > this.capacity || this.dead * 2 > this.arenaUsed + 1) this.rebuild(this.capacity)
    return true
  }

  /** Calls `fn` with every key and its hash, in slot order. */
  forEach(fn: (key: string, hash: number) => void): void {
    const t = this.table
    for (let at = 0; at < t.length; at += W) {
      const s = t[at]!
      if (s > 0) fn(this.keyAt(s - 1), t[at + 1]! >>> 0)
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
  private insert(key: string, h: number): void {
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
      this.live++
    }
  }
}

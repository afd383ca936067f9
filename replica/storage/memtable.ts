// The memtable (goleveldb's memdb): the newest writes, in memory, sorted on demand. A Map gives O(1)
// point lookups and puts; keys inserted since the last sort wait in an unsorted tail that is sorted
// and merged into the sorted array when a scan or a flush needs order. Puts therefore cost one Map
// operation and no per-put allocation beyond the key's slot; order costs O(n + m log m) per scan.
//
// Key order, everywhere in the engine (memtable, SSTables, scans, compaction): JavaScript string
// order, i.e. by UTF-16 code units (`a < b`). It equals UTF-8 byte order except between a
// surrogate pair and a code point in U+E000..U+FFFF; one order used consistently is what matters.
//
// A put to an existing key stores merge(old, new) (the replica passes DVV sync). When the byte count
// reaches the bound, the engine freezes the memtable (read-only, still served) and flushes it.

import { assert } from '../../coordinator/assert.ts'
import { storageLimits } from './storage-limits.ts'

export type Merge = (older: Uint8Array, newer: Uint8Array) => Uint8Array

export class Memtable {
  private readonly map = new Map<string, Uint8Array>()
  private sorted: string[] = []
  private unsorted: string[] = []
  private frozenFlag = false
  /** Approximate memory held: key + value bytes + a fixed overhead per entry. */
  bytes = 0
  /**
   * Smallest and largest key held (undefined while empty). get() answers keys outside the range
   * without probing the Map: with time-ordered keys most gets miss most memtables, and a Map miss
   * on a large memtable costs cache misses, where two string compares do not.
   */
  private minKey: string | undefined
  private maxKey: string | undefined

  constructor(private readonly merge: Merge) {}

  get size(): number {
    return this.map.size
  }

  get frozen(): boolean {
    return this.frozenFlag
  }

  /**
   * Stores `value` for `key`, merged with the version already here unless `supersedes` (the caller
   * guarantees merge(old, value) = value; see PutOptions.supersedes).
   */
  put(key: string, value: Uint8Array, supersedes = false): void {
    assert(!this.frozenFlag, 'put into a frozen memtable')
    const map = this.map
    const old = map.get(key)
    if (old === undefined) {
      map.set(key, value)
      this.unsorted.push(key)
      if (this.minKey === undefined || key < this.minKey) this.minKey = key
      if (this.maxKey === undefined || key > this.maxKey) this.maxKey = key
      this.bytes += key.length + value.byteLength + storageLimits.memtableEntryOverheadBytes
    } else if (supersedes) {
      map.set(key, value)
      this.bytes += value.byteLength - old.byteLength
    } else {
      const merged = this.merge(old, value)
      map.set(key, merged)
      this.bytes += merged.byteLength - old.byteLength
    }
  }

  get(key: string): Uint8Array | undefined {
    const min = this.minKey
    if (min === undefined || key < min || key > this.maxKey!) return undefined
    return this.map.get(key)
  }

  freeze(): void {
    this.frozenFlag = true
  }

  /** All keys in order (sorts the unsorted tail first). */
  sortedKeys(): readonly string[] {
    if (this.unsorted.length > 0) {
      const tail = this.unsorted.sort()
      this.unsorted = []
      this.sorted = this.sorted.length === 0 ? tail : mergeSorted(this.sorted, tail)
    }
    return this.sorted
  }

  /**
   * Sorts the keys in slices that yield to the event loop, for flushing a large frozen memtable
   * without a long pause. Afterwards sortedKeys() is free.
   */
  async sortKeysSliced(yieldIfDue: () => Promise<void> | undefined): Promise<readonly string[]> {
    if (this.unsorted.length === 0) return this.sorted
    const runLen = storageLimits.memtableSortRunKeys
    let runs: string[][] = []
    for (let i = 0; i < this.unsorted.length; i += runLen) {
      runs.push(this.unsorted.slice(i, i + runLen).sort())
      await yieldIfDue()
    }
    if (this.sorted.length > 0) runs.push(this.sorted)
    while (runs.length > 1) {
      const next: string[][] = []
      for (let i = 0; i < runs.length; i += 2) {
        const a = runs[i]!
        const b = runs[i + 1]
        next.push(b === undefined ? a : mergeSorted(a, b))
        await yieldIfDue()
      }
      runs = next
    }
    this.sorted = runs[0] ?? []
    this.unsorted = []
    return this.sorted
  }

  /** Index of the first key >= `key` in sortedKeys(). */
  seek(key: string): number {
    const keys = this.sortedKeys()
    let lo = 0
    let hi = keys.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if (keys[mid]! < key) lo = mid + 1
      else hi = mid
    }
    return lo
  }
}

function mergeSorted(a: readonly string[], b: readonly string[]): string[] {
  const out = new Array<string>(a.length + b.length)
  let i = 0
  let j = 0
  let k = 0
  while (i < a.length && j < b.length) {
    const x = a[i]!
    const y = b[j]!
    if (x < y) { out[k++] = x; i++ } else { out[k++] = y; j++ }
  }
  while (i < a.length) out[k++] = a[i++]!
  while (j < b.length) out[k++] = b[j++]!
  return out
}

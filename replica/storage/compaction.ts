// Size-tiered compaction (as in Cassandra's STCS and the "tiered" LSM of Jagadish et al. 1997):
// a flushed table enters tier 0; when a tier holds compactionFanIn or more tables side by side in
// the newest-first list, the oldest of them (up to compactionFanInMax) are merged into one table of
// the next tier, which takes their place in the list. Tables of one tier are of similar size because
// each came from the same number of merges of memtable-sized tables. Merging combines every version
// of a key with the engine's merge (older first), so the result answers every read exactly as its
// inputs did; the engine never interprets values (tombstones are just values to it).
//
// The merge runs in slices of at most backgroundSliceMs and yields to the event loop between them,
// so puts and gets keep flowing while a compaction runs (p99 put latency during compaction is in
// bench/storage-bench.ts).

import type { LatencyHistogram } from '../../coordinator/metrics/histogram.ts'
import { assert } from '../../coordinator/assert.ts'
import type { TableInfo } from './engine-types.ts'
import type { Merge } from './memtable.ts'
import { storageLimits } from './storage-limits.ts'
import { TableBuilder } from './table-builder.ts'
import type { Table, TableIterator } from './table-reader.ts'

export interface CompactionPick {
  /** Index of the newest input in the newest-first table list. */
  readonly start: number
  readonly count: number
  readonly tier: number
}

/** The compaction due now, if any: the lowest tier with a long enough run of adjacent tables. */
export function pickCompaction(tables: readonly TableInfo[]): CompactionPick | undefined {
  let best: CompactionPick | undefined
  let i = 0
  while (i < tables.length) {
    const tier = tables[i]!.tier
    let j = i
    while (j < tables.length && tables[j]!.tier === tier) j++
    const run = j - i
    if (run >= storageLimits.compactionFanIn && tier < storageLimits.tierMax && (best === undefined || tier < best.tier)) {
      // Merge the oldest tables of the run; the newer ones wait for the next round.
      let count = Math.min(run, storageLimits.compactionFanInMax)
      let bytes = 0
      for (let k = j - count; k < j; k++) bytes += tables[k]!.bytes
      while (count > storageLimits.compactionFanIn && bytes > storageLimits.tableBytesMax / 2) {
        bytes -= tables[j - count]!.bytes
        count--
      }
      if (bytes <= storageLimits.tableBytesMax / 2) best = { start: j - count, count, tier }
    }
    i = j
  }
  return best
}

/** Resolves when the caller should continue; undefined when the current slice still has time. */
export type YieldIfDue = () => Promise<void> | undefined

export function sliceYielder(sliceMs: number, checkAbort: () => void, slices?: LatencyHistogram): YieldIfDue {
  let deadline = performance.now() + sliceMs
  return () => {
    const now = performance.now()
    if (now < deadline) return undefined
    // The slice began sliceMs before its deadline: that is how long it held the event loop.
    slices?.recordMs(now - deadline + sliceMs)
    return new Promise<void>((resolve) => setImmediate(resolve)).then(() => {
      checkAbort()
      deadline = performance.now() + sliceMs
    })
  }
}

/**
 * Merges `inputs` (newest first) into one table. Versions of one key are folded oldest first with
 * `merge`. Returns the table's bytes, verified by the builder's order asserts and checksums.
 */
export async function mergeTables(inputs: readonly Table[], merge: Merge, yieldIfDue: YieldIfDue,
  settle?: (value: Uint8Array) => Uint8Array | undefined): Promise<{ buf: Buffer; builder: TableBuilder }> {
  assert(inputs.length >= 1, 'compaction without inputs')
  let capacity = 0
  for (const t of inputs) capacity += t.bytes
  const builder = new TableBuilder(capacity)
  const its: TableIterator[] = inputs.map((t) => t.iterator())
  let n = 0
  let droppedFirst: [string, Uint8Array] | undefined
  for (;;) {
    let min: string | undefined
    for (const it of its) {
      const k = it.key
      if (k !== undefined && (min === undefined || k < min)) min = k
    }
    if (min === undefined) break
    let value: Uint8Array | undefined
    // Oldest input last in the list: fold from the end so merge sees `older` first.
    for (let i = its.length - 1; i >= 0; i--) {
      const it = its[i]!
      if (it.key === min) {
        value = value === undefined ? it.value : merge(value, it.value)
        it.next()
      }
    }
    // `settle` (only when the oldest table is an input) may rewrite a value or drop the key; one
    // dropped key is kept aside so that a table never ends up empty.
    const settled = settle === undefined ? value! : settle(value!)
    if (settled !== undefined) builder.add(min, settled)
    else if (builder.keys === 0) droppedFirst = [min, value!]
    if ((++n & 63) === 0) {
      const y = yieldIfDue()
      if (y !== undefined) await y
    }
  }
  if (builder.keys === 0 && droppedFirst !== undefined) builder.add(droppedFirst[0], droppedFirst[1])
  const buf = await trimSliced(await builder.finishSliced(yieldIfDue), yieldIfDue)
  return { buf, builder }
}

/**
 * Drops a built table's growth slack (merged duplicates leave the output smaller than its inputs)
 * by copying it into an exact-size buffer in slices, so a large copy never stalls the event loop.
 */
export async function trimSliced(buf: Buffer, yieldIfDue: YieldIfDue): Promise<Buffer> {
  if (buf.buffer.byteLength - buf.length <= buf.length / 8) return buf
  const out = Buffer.allocUnsafeSlow(buf.length)
  const slice = storageLimits.tableTrimSliceBytes
  for (let off = 0; off < buf.length; off += slice) {
    buf.copy(out, off, off, Math.min(buf.length, off + slice))
    const y = yieldIfDue()
    if (y !== undefined) await y
  }
  return out
}

// Preference lists: which nodes hold a key. From the key's partition, walk the ring clockwise and
// collect distinct owners; the first n are the key's primaries (its replicas), the rest, in walk
// order, are fallbacks that stand in for down primaries during a sloppy quorum and keep a hint for
// them (DeCandia 2007, sections 4.3 and 4.6). As in riak_core_apl, these are pure functions of the
// ring, the key and the set of up nodes; a process that tracks liveness passes `up` in.
//
// A ring is immutable, so the list for each partition is computed once and cached per ring.

import { assert } from '../assert.ts'
import { partitionOfKey } from './partition-hash.ts'
import type { PreferenceList, Ring } from './ring.ts'

/** Where a replica of a write goes: a node, and the down primary it stands in for, if any. */
export interface SloppyTarget {
  readonly node: string
  /** Set when `node` is a fallback: the id of the down primary the write is meant for. */
  readonly hintFor?: string
}

const cache = new WeakMap<Ring, (PreferenceList | undefined)[]>()

/**
 * The primaries and fallbacks of `key` on `ring`. The list does not depend on `up`: a down primary
 * stays a primary (the coordinator decides whether to wait, fail, or use a fallback via
 * sloppyTargets). `up` is accepted so callers can pass the same (ring, key, up) to both. With fewer
 * than n nodes there are fewer than n primaries and no fallbacks.
 */
export function preferenceList(ring: Ring, key: string, up?: ReadonlySet<string>): PreferenceList {
  void up
  return preferenceListOfPartition(ring, partitionOfKey(ring.partitions, key))
}

/** The preference list of partition `partition` (see preferenceList). */
export function preferenceListOfPartition(ring: Ring, partition: number): PreferenceList {
  assert(Number.isInteger(partition) && partition >= 0 && partition < ring.partitions,
    () => `partition ${partition} outside 0..${ring.partitions - 1}`)
  let lists = cache.get(ring)
  if (lists === undefined) {
    lists = new Array<PreferenceList | undefined>(ring.partitions)
    cache.set(ring, lists)
  }
  const cached = lists[partition]
  if (cached !== undefined) return cached
  const list = walk(ring, partition)
  lists[partition] = list
  return list
}

function walk(ring: Ring, partition: number): PreferenceList {
  const distinct: string[] = []
  const seen = new Set<string>()
  for (let i = 0; i < ring.partitions && seen.size < ring.nodes.length; i++) {
    const owner = ring.owners[(partition + i) % ring.partitions]
    assert(owner !== undefined, 'owners cover every partition')
    if (!seen.has(owner)) {
      seen.add(owner)
      distinct.push(owner)
    }
  }
  return Object.freeze({
    partition,
    primaries: Object.freeze(distinct.slice(0, ring.n)),
    fallbacks: Object.freeze(distinct.slice(ring.n)),
  })
}

/**
 * The one choice of fallbacks for down primaries (Dynamo's sloppy quorum), used by reads and writes
 * alike: each primary that `isUp` is its own slot's target; when `sloppy`, each down primary's slot
 * takes the next up fallback not used yet, in walk order, which carries `hintFor` = that primary;
 * a slot with no fallback left has no target. `spare` holds the up fallbacks left over, in walk
 * order: a write refills a slot from there when its target fails (write-quorum.ts).
 */
export function sloppyTargets(pl: PreferenceList, isUp: (node: string) => boolean, sloppy: boolean): SloppyTargets {
  const spare = sloppy ? pl.fallbacks.filter(isUp) : []
  const slots: SloppySlot[] = []
  const down: string[] = []
  for (const owner of pl.primaries) {
    if (isUp(owner)) { slots.push({ owner, target: { node: owner } }); continue }
    down.push(owner)
    const fallback = spare.shift()
    slots.push({ owner, target: fallback === undefined ? undefined : { node: fallback, hintFor: owner } })
  }
  return { slots, spare, down }
}

/** One primary's place in a sloppy quorum: the primary, and who answers for it (none: nobody). */
export interface SloppySlot {
  readonly owner: string
  readonly target: SloppyTarget | undefined
}

export interface SloppyTargets {
  /** One slot per primary, in primary order. */
  readonly slots: readonly SloppySlot[]
  /** Up fallbacks no slot took, in walk order (a write takes them when a target fails). */
  readonly spare: string[]
  /** Primaries `isUp` said were down. */
  readonly down: readonly string[]
}

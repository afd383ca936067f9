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
 * Where to send the n replicas of a write when some primaries may be down (Dynamo's sloppy quorum):
 * each up primary is a target as itself; each down primary is replaced by the next up fallback not
 * used yet, which carries `hintFor` = that primary. Primaries with no fallback left are dropped, so
 * the result has at most n targets, in primary order.
 */
export function sloppyTargets(pl: PreferenceList, up: ReadonlySet<string>): SloppyTarget[] {
  const targets: SloppyTarget[] = []
  let next = 0
  for (const primary of pl.primaries) {
    if (up.has(primary)) {
      targets.push({ node: primary })
      continue
    }
    while (next < pl.fallbacks.length && !up.has(pl.fallbacks[next]!)) next++
    const fallback = pl.fallbacks[next]
    if (fallback === undefined) continue
    targets.push({ node: fallback, hintFor: primary })
    next++
  }
  return targets
}

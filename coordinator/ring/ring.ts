// The ring: Q fixed, equal partitions of the hash space, each owned by one node, after Dynamo's
// strategy 3 (DeCandia 2007, section 6.2) and Riak's ring, which refine consistent hashing
// (Karger 1997). A key hashes to one partition for ever (partition-hash.ts); membership changes
// only reassign partitions (claim.ts); a key's replicas are the first n distinct owners clockwise
// from its partition (preference-list.ts).
//
// A Ring value is immutable and versioned: a membership change makes a new ring from the previous
// one (version + 1), moving as few partitions as balance needs. Rings travel between nodes and
// clients, so one that arrives from the network goes through validateRing before use.
//
// n may exceed the number of nodes: the ring is still valid, and preference lists then hold every
// node once as a primary, with no fallbacks (a one-node dev cluster with n = 3 works, unreplicated).

import { badRequest } from '../errors.ts'
import { limits } from '../limits.ts'
import { claim, claimConfigIssues } from './claim.ts'
import { partitionOfKey } from './partition-hash.ts'

export { claim, spacingViolations } from './claim.ts'
export { preferenceList, preferenceListOfPartition, sloppyTargets, type SloppySlot, type SloppyTarget, type SloppyTargets } from './preference-list.ts'

export interface RingNode { readonly id: string; readonly url: string; readonly zone?: string }
export interface Ring {
  readonly version: number
  readonly partitions: number
  readonly n: number
  readonly nodes: readonly RingNode[]
  /** owners[p] = id of the node that claims partition p. */
  readonly owners: readonly string[]
}
export interface PreferenceList { readonly partition: number; readonly primaries: readonly string[]; readonly fallbacks: readonly string[] }

/**
 * A new ring for `nodes` (sorted by id). With `previous`, partitions and n default to the previous
 * ring's, the partition count must not change, ownership moves as little as balance requires, and
 * the version is previous.version + 1; without it, partitions defaults to limits.partitionsDefault,
 * n to limits.nDefault, and the version is 1. Throws KvError BadRequest on invalid config.
 */
export function createRing(opts: { nodes: readonly RingNode[]; partitions?: number; n?: number; previous?: Ring }): Ring {
  const { previous } = opts
  if (previous !== undefined) validateRing(previous)
  const partitions = opts.partitions ?? previous?.partitions ?? limits.partitionsDefault
  const n = opts.n ?? previous?.n ?? limits.nDefault

  const issues = nodeIssues(opts.nodes)
  const ids = opts.nodes.map((node) => node.id)
  issues.push(...claimConfigIssues(partitions, ids, n))
  if (previous !== undefined && previous.partitions !== partitions) {
    issues.push(`partitions cannot change from ${previous.partitions} to ${partitions}: ` +
      'a key would move to another partition; keep the previous count')
  }
  if (issues.length > 0) throw badRequest(...issues)

  const nodes = [...opts.nodes]
    .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
    .map((node): RingNode => Object.freeze(node.zone === undefined
      ? { id: node.id, url: node.url }
      : { id: node.id, url: node.url, zone: node.zone }))
  const owners = claim(partitions, ids, n, previous?.owners)
  return Object.freeze({
    version: previous === undefined ? 1 : previous.version + 1,
    partitions,
    n,
    nodes: Object.freeze(nodes),
    owners: Object.freeze(owners),
  })
}

/** The partition `key` belongs to: the top log2(Q) bits of SHA-256 of its UTF-8 bytes. */
export function partitionOf(ring: Ring, key: string): number {
  return partitionOfKey(ring.partitions, key)
}

/**
 * Checks a ring that arrived from elsewhere (a peer, a client, a file): shape, limits, unique nodes,
 * one known owner per partition, every node owning at least one partition. Throws KvError
 * BadRequest listing what is wrong.
 */
export function validateRing(ring: Ring): void {
  const r = ring as unknown
  if (typeof r !== 'object' || r === null) throw badRequest(`a ring must be an object, got ${r === null ? 'null' : typeof r}`)
  const { version, partitions, n, nodes, owners } = r as Record<string, unknown>
  const issues: string[] = []
  if (!Number.isSafeInteger(version) || (version as number) < 1) {
    issues.push(`ring version must be a positive integer, got ${JSON.stringify(version)}`)
  }
  if (!Array.isArray(nodes)) {
    issues.push(`ring nodes must be an array, got ${typeof nodes}`)
    throw badRequest(...issues)
  }
  issues.push(...nodeIssues(nodes as unknown[]))
  const ids = (nodes as unknown[]).map((node) => (node as { id?: unknown } | null)?.id as string)
  issues.push(...claimConfigIssues(partitions as number, ids, n as number))
  if (!Array.isArray(owners)) {
    issues.push(`ring owners must be an array, got ${typeof owners}`)
  } else {
    if (owners.length !== partitions) {
      issues.push(`ring owners must list one owner per partition: ${owners.length} owners for ${String(partitions)} partitions`)
    }
    const known = new Set(ids)
    const unowned = new Set(ids)
    const unknown: string[] = []
    owners.forEach((o: unknown, p) => {
      if (typeof o === 'string' && known.has(o)) unowned.delete(o)
      else unknown.push(`${p}: ${JSON.stringify(o)}`)
    })
    if (unknown.length > 0) {
      issues.push(`ring owners must be node ids; ${unknown.length} are not (partition: owner) ` +
        unknown.slice(0, 8).join(', ') + (unknown.length > 8 ? ', ...' : ''))
    }
    if (unowned.size > 0 && unknown.length === 0) {
      issues.push(`every ring node must own a partition; ${[...unowned].join(', ')} own none`)
    }
  }
  if (issues.length > 0) throw badRequest(...issues)
}

function nodeIssues(nodes: readonly unknown[]): string[] {
  const issues: string[] = []
  nodes.forEach((node, i) => {
    if (typeof node !== 'object' || node === null) {
      issues.push(`node ${i} must be an object with id and url, got ${JSON.stringify(node)}`)
      return
    }
    const { id, url, zone } = node as Record<string, unknown>
    const name = typeof id === 'string' && id !== '' ? `"${id}"` : `${i}`
    if (typeof url !== 'string' || url === '') issues.push(`node ${name} needs a url, got ${JSON.stringify(url)}`)
    if (zone !== undefined && typeof zone !== 'string') issues.push(`node ${name} zone must be a string, got ${JSON.stringify(zone)}`)
  })
  return issues
}

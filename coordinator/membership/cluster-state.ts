// Cluster state: what every replica gossips (docs/membership.md). Three parts, each a join
// semilattice, so that the gossip merge is commutative, associative, idempotent and monotone and any
// two replicas that have exchanged the same states hold the same state, whatever the order:
//
// - members: per node id, its url, status (joining, valid, leaving, left, removed), a generation
//   `gen` bumped by whoever changes the entry, and the transfers it reports done. Two entries for one
//   id merge to the greater under a total order (gen, then status, then url, then done), so an entry
//   never goes back, and concurrent edits at one gen resolve the same way everywhere.
// - heartbeats: per node id, a counter only that node bumps; merge is max (Cassandra's heartbeat
//   version). Increases feed the phi-accrual detectors (phi-detector.ts).
// - ring: owners, and the plan in progress (target owners and the transfers it needs). Only the
//   claimant changes it (claimant.ts); versions are compared as (version, claimant), then by content,
//   a total order, so two claimants that acted concurrently (a changeover) resolve to one ring
//   everywhere. This is Riak's single claimant (riak_core_claimant) with a scalar version in place
//   of its vclock and rvsn: ownership has a single writer, so a vector would only ever be a chain.
//
// Pure functions over immutable values; no clock, no randomness, no I/O.

import { assert } from '../assert.ts'
import { badRequest } from '../errors.ts'
import { limits } from '../limits.ts'
import type { Ring, RingNode } from '../ring/ring.ts'

export const memberStatuses = ['joining', 'valid', 'leaving', 'left', 'removed'] as const
export type MemberStatus = (typeof memberStatuses)[number]
const statusRank: Record<MemberStatus, number> = { joining: 0, valid: 1, leaving: 2, left: 3, removed: 4 }

/** Transfers of plan `plan` (indexes into its list) that this member, their sender, finished. */
export interface Done { readonly plan: number; readonly transfers: readonly number[] }

export interface Member {
  readonly id: string
  readonly url: string
  readonly status: MemberStatus
  readonly gen: number
  readonly done: Done | null
}

/** One partition's data moving to a node entering its preference list, sent by `from`. */
export interface Transfer { readonly partition: number; readonly from: string; readonly to: string }

/** A change of ownership in progress: made at ring version `version`, applied once every transfer is done. */
export interface Plan { readonly version: number; readonly owners: readonly string[]; readonly transfers: readonly Transfer[] }

export interface RingState {
  readonly version: number
  readonly claimant: string
  readonly partitions: number
  readonly n: number
  readonly owners: readonly string[]
  readonly plan: Plan | null
}

export interface ClusterState {
  /** Sorted by id, each id once. */
  readonly members: readonly Member[]
  /** Sorted by id, each id once. */
  readonly heartbeats: readonly (readonly [string, number])[]
  readonly ring: RingState | null
}

export const emptyState: ClusterState = Object.freeze({ members: [], heartbeats: [], ring: null })

function cmp(a: string | number, b: string | number): number {
  return a < b ? -1 : a > b ? 1 : 0
}

function cmpNumbers(a: readonly number[], b: readonly number[]): number {
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    const c = cmp(a[i]!, b[i]!)
    if (c !== 0) return c
  }
  return cmp(a.length, b.length)
}

function cmpDone(a: Done | null, b: Done | null): number {
  if (a === null || b === null) return a === b ? 0 : a === null ? -1 : 1
  return cmp(a.plan, b.plan) || cmpNumbers(a.transfers, b.transfers)
}

/** The total order two entries of one member merge by. */
export function compareMembers(a: Member, b: Member): number {
  return cmp(a.gen, b.gen) || cmp(statusRank[a.status], statusRank[b.status]) || cmp(a.url, b.url) || cmpDone(a.done, b.done)
}

function cmpStrings(a: readonly string[], b: readonly string[]): number {
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    const c = cmp(a[i]!, b[i]!)
    if (c !== 0) return c
  }
  return cmp(a.length, b.length)
}

function cmpPlan(a: Plan | null, b: Plan | null): number {
  if (a === null || b === null) return a === b ? 0 : a === null ? -1 : 1
  const c = cmp(a.version, b.version) || cmpStrings(a.owners, b.owners) || cmp(a.transfers.length, b.transfers.length)
  if (c !== 0) return c
  for (let i = 0; i < a.transfers.length; i++) {
    const x = a.transfers[i]!, y = b.transfers[i]!
    const d = cmp(x.partition, y.partition) || cmp(x.from, y.from) || cmp(x.to, y.to)
    if (d !== 0) return d
  }
  return 0
}

/** The total order rings merge by: version, then claimant, then content (only forged rings get that far). */
export function compareRings(a: RingState | null, b: RingState | null): number {
  if (a === null || b === null) return a === b ? 0 : a === null ? -1 : 1
  return cmp(a.version, b.version) || cmp(a.claimant, b.claimant) || cmp(a.partitions, b.partitions) ||
    cmp(a.n, b.n) || cmpStrings(a.owners, b.owners) || cmpPlan(a.plan, b.plan)
}

/** Merges two id-sorted lists, keeping for each id the greater entry under `compare`. */
function mergeSorted<T>(a: readonly T[], b: readonly T[], id: (x: T) => string, compare: (x: T, y: T) => number): T[] {
  const out: T[] = []
  let i = 0, j = 0
  while (i < a.length || j < b.length) {
    const x = a[i], y = b[j]
    if (y === undefined || (x !== undefined && id(x) < id(y))) { out.push(x!); i++; continue }
    if (x === undefined || id(y) < id(x)) { out.push(y); j++; continue }
    out.push(compare(x, y) >= 0 ? x : y)
    i++; j++
  }
  return out
}

/** The gossip merge: the least state that holds both (a join in each of the three semilattices). */
export function mergeStates(a: ClusterState, b: ClusterState): ClusterState {
  if (a === b) return a
  return {
    members: mergeSorted(a.members, b.members, m => m.id, compareMembers),
    heartbeats: mergeSorted(a.heartbeats, b.heartbeats, h => h[0], (x, y) => cmp(x[1], y[1])),
    ring: compareRings(a.ring, b.ring) >= 0 ? a.ring : b.ring,
  }
}

/** True when `b` holds everything `a` does: merging `a` into `b` changes nothing. */
export function dominates(b: ClusterState, a: ClusterState): boolean {
  return statesEqual(mergeStates(b, a), b)
}

export function statesEqual(a: ClusterState, b: ClusterState): boolean {
  if (a === b) return true
  if (a.members.length !== b.members.length || a.heartbeats.length !== b.heartbeats.length) return false
  for (let i = 0; i < a.members.length; i++) {
    const x = a.members[i]!, y = b.members[i]!
    if (x.id !== y.id || compareMembers(x, y) !== 0) return false
  }
  for (let i = 0; i < a.heartbeats.length; i++) {
    const x = a.heartbeats[i]!, y = b.heartbeats[i]!
    if (x[0] !== y[0] || x[1] !== y[1]) return false
  }
  return compareRings(a.ring, b.ring) === 0
}

export function memberOf(state: ClusterState, id: string): Member | undefined {
  // Member lists are short (at most ringNodesMax) and sorted: binary search.
  let lo = 0, hi = state.members.length - 1
  while (lo <= hi) {
    const mid = (lo + hi) >> 1
    const m = state.members[mid]!
    if (m.id === id) return m
    if (m.id < id) lo = mid + 1
    else hi = mid - 1
  }
  return undefined
}

export function heartbeatOf(state: ClusterState, id: string): number {
  return state.heartbeats.find(h => h[0] === id)?.[1] ?? 0
}

/** `state` with member `id` replaced by (or added as) `next` at the next generation. */
export function withMember(state: ClusterState, next: Omit<Member, 'gen'>): ClusterState {
  const old = memberOf(state, next.id)
  const gen = (old?.gen ?? 0) + 1
  assert(gen <= limits.membershipCounterMax, 'member generation overflow')
  const entry: Member = { ...next, gen }
  const members = old === undefined
    ? [...state.members, entry].sort((x, y) => cmp(x.id, y.id))
    : state.members.map(m => (m.id === next.id ? entry : m))
  return { ...state, members }
}

/** `state` with the heartbeat of `id` one higher. */
export function withHeartbeat(state: ClusterState, id: string): ClusterState {
  const now = heartbeatOf(state, id) + 1
  const heartbeats = state.heartbeats.some(h => h[0] === id)
    ? state.heartbeats.map(h => (h[0] === id ? [id, now] as const : h))
    : [...state.heartbeats, [id, now] as const].sort((x, y) => cmp(x[0], y[0]))
  return { ...state, heartbeats }
}

/**
 * The cluster a static start (`--nodes`) describes: every node valid, ring version 1 as createRing
 * computes it, the lowest id as claimant. Every node of such a start computes this same state.
 */
export function initialState(ring: Ring): ClusterState {
  const members = [...ring.nodes].sort((a, b) => cmp(a.id, b.id)).map((n): Member => ({ id: n.id, url: n.url, status: 'valid', gen: 1, done: null }))
  return {
    members,
    heartbeats: [],
    ring: { version: ring.version, claimant: members[0]!.id, partitions: ring.partitions, n: ring.n, owners: ring.owners, plan: null },
  }
}

/** The Ring (ring.ts) the data plane serves: the current owners, the nodes among them, their urls. */
export function ringOf(state: ClusterState): Ring | undefined {
  const r = state.ring
  if (r === null) return undefined
  const ids = [...new Set(r.owners)].sort()
  const nodes: RingNode[] = ids.map(id => ({ id, url: memberOf(state, id)?.url ?? '' }))
  return { version: r.version, partitions: r.partitions, n: r.n, nodes, owners: r.owners }
}

/**
 * Checks a state that arrived by gossip against what this replica holds, beyond its schema: bounds
 * of counters, sorted unique ids, a ring whose owners and plan name members only, a version that
 * does not leap, and no node unknown here that claims partitions the local ring and plan never gave
 * it. Throws KvError BadRequest naming every problem. `trusting`: the
 * replica has no state of its own yet (a join, a fresh start), so it takes the peer's view whole.
 */
export function checkIncoming(local: ClusterState, incoming: ClusterState, trusting: boolean): void {
  const issues: string[] = []
  for (let i = 1; i < incoming.members.length; i++) {
    if (!(incoming.members[i - 1]!.id < incoming.members[i]!.id)) { issues.push('members must be sorted by id, each once'); break }
  }
  for (let i = 1; i < incoming.heartbeats.length; i++) {
    if (!(incoming.heartbeats[i - 1]![0] < incoming.heartbeats[i]![0])) { issues.push('heartbeats must be sorted by id, each once'); break }
  }
  const merged = mergeStates(local, incoming)
  const r = incoming.ring
  if (r !== null) {
    if (r.owners.length !== r.partitions) issues.push(`ring owners must list one owner per partition: ${r.owners.length} for ${r.partitions}`)
    const lr = local.ring
    if (lr !== null && !trusting) {
      if (r.version > lr.version + limits.ringVersionGapMax) {
        issues.push(`ring version ${r.version} leaps more than ${limits.ringVersionGapMax} past this replica's ${lr.version}`)
      }
      if (r.partitions !== lr.partitions) issues.push(`ring partitions cannot change from ${lr.partitions} to ${r.partitions}`)
    }
    // Owners and plan nodes must be members. A removed or left one is fine: the ring keeps a removed
    // node's partitions until the plan that refills them switches, and a plan names it until the
    // claimant drops the plan.
    const bad = new Set<string>()
    for (const o of r.owners) if (memberOf(merged, o) === undefined) bad.add(o)
    if (r.plan) {
      if (r.plan.owners.length !== r.partitions) issues.push('plan owners must list one owner per partition')
      for (const o of r.plan.owners) if (memberOf(merged, o) === undefined) bad.add(o)
      for (const t of r.plan.transfers) {
        if (!(t.partition < r.partitions)) issues.push(`plan transfer of partition ${t.partition} outside 0..${r.partitions - 1}`)
        for (const id of [t.from, t.to]) if (memberOf(merged, id) === undefined) bad.add(id)
      }
    }
    if (bad.size > 0) issues.push(`the ring and its plan must name members only: ${[...bad].slice(0, 8).join(', ')} are not`)
    if (lr !== null && !trusting && compareRings(r, lr) > 0) {
      // A node this replica has never heard of may not arrive owning partitions: a join goes through
      // `joining` and the claimant's plan first, and both reach every replica by gossip.
      const known = new Set<string>([...lr.owners, ...(lr.plan?.owners ?? [])])
      for (const m of local.members) known.add(m.id)
      const unknown = [...new Set(r.owners)].filter(o => !known.has(o))
      if (unknown.length > 0) issues.push(`unknown nodes claim partitions: ${unknown.slice(0, 8).join(', ')}`)
    }
  }
  if (issues.length > 0) throw badRequest(...issues.map(i => `gossip: ${i}`))
}

// The claimant: the one member that changes ownership (Riak's riak_core_claimant). It is the lowest
// id among valid members (leaving ones when none is valid), which every replica computes alike from
// its member list. Each tick it looks at the cluster state and, if something is to do, returns the
// next state:
//
// 1. No plan in progress, and the nodes that should own partitions (valid and joining members) are
//    not the ones that do: plan. Target owners come from claim (claim.ts: a new node takes its share,
//    a leaving or removed node's partitions go to the others, nothing else moves); every node that
//    enters a partition's preference list gets a transfer of that partition, sent by a node that
//    held it (the one dropping out of the list when it is alive, else any surviving replica).
// 2. A plan whose every transfer its sender reported done: switch. The owners become the plan's,
//    joining members that now own partitions become valid, leaving ones that own none become left.
//    So a partition changes owner only once the data it needs has arrived (Dynamo section 4.9).
// 3. A plan that names a node since removed or left cannot finish: drop it (the next tick replans).
//
// Every change is a new ring version from this claimant. Pure: state in, state out.

import { limits } from '../limits.ts'
import { claim, claimConfigIssues } from '../ring/claim.ts'
import { preferenceListOfPartition } from '../ring/preference-list.ts'
import type { Ring } from '../ring/ring.ts'
import { memberOf, withMember, type ClusterState, type Member, type Plan, type RingState, type Transfer } from './cluster-state.ts'

/** The member that may change the ring, or undefined when there is none. */
export function claimantOf(state: ClusterState): string | undefined {
  let leaving: string | undefined
  for (const m of state.members) {
    if (m.status === 'valid') return m.id
    if (m.status === 'leaving' && leaving === undefined) leaving = m.id
  }
  return leaving
}

function ringFor(r: RingState, owners: readonly string[]): Ring {
  return { version: r.version, partitions: r.partitions, n: r.n, nodes: [...new Set(owners)].sort().map(id => ({ id, url: '' })), owners }
}

/** The transfers that take the preference lists of `from` owners to those of `to` owners. */
export function transfersBetween(r: RingState, fromOwners: readonly string[], toOwners: readonly string[], alive: (id: string) => boolean): Transfer[] {
  const before = ringFor(r, fromOwners)
  const after = ringFor(r, toOwners)
  const out: Transfer[] = []
  for (let p = 0; p < r.partitions; p++) {
    const old = preferenceListOfPartition(before, p).primaries
    const next = preferenceListOfPartition(after, p).primaries
    for (const to of next) {
      if (old.includes(to)) continue
      const sources = old.filter(s => alive(s) && s !== to)
      const from = sources.find(s => !next.includes(s)) ?? sources[0]
      // Every replica of the partition is gone: nothing is left to copy.
      if (from !== undefined) out.push({ partition: p, from, to })
    }
  }
  return out
}

function isGone(m: Member | undefined): boolean {
  return m === undefined || m.status === 'left' || m.status === 'removed'
}

/** True when every transfer of `plan` is reported done by its sender. */
export function planDone(state: ClusterState, plan: Plan): boolean {
  const doneBy = new Map<string, Set<number>>()
  for (const m of state.members) {
    if (m.done !== null && m.done.plan === plan.version) doneBy.set(m.id, new Set(m.done.transfers))
  }
  return plan.transfers.every((t, i) => doneBy.get(t.from)?.has(i) === true)
}

/** What the claimant `self` does next, or undefined when it is not the claimant or nothing is to do. */
export function claimantStep(state: ClusterState, self: string): ClusterState | undefined {
  const r = state.ring
  if (r === null || claimantOf(state) !== self) return undefined
  const bump = (ring: Omit<RingState, 'version' | 'claimant'>): RingState => ({ ...ring, version: r.version + 1, claimant: self })
  if (r.version + 1 > limits.membershipCounterMax) return undefined

  if (r.plan !== null) {
    const plan = r.plan
    const named = new Set<string>([...plan.owners, ...plan.transfers.flatMap(t => [t.from, t.to])])
    if ([...named].some(id => isGone(memberOf(state, id)))) {
      return { ...state, ring: bump({ partitions: r.partitions, n: r.n, owners: r.owners, plan: null }) }
    }
    if (!planDone(state, plan)) return undefined
    return settle({ ...state, ring: bump({ partitions: r.partitions, n: r.n, owners: plan.owners, plan: null }) }, true)
  }

  const wanted = state.members.filter(m => m.status === 'valid' || m.status === 'joining').map(m => m.id)
  const owning = new Set(r.owners)
  const same = wanted.length === owning.size && wanted.every(id => owning.has(id))
  if (same || wanted.length === 0 || claimConfigIssues(r.partitions, wanted, r.n).length > 0) return settle(state, false)
  // claim keeps every partition whose owner is still wanted and gives the others away.
  const owners = claim(r.partitions, wanted, r.n, r.owners)
  const alive = (id: string) => !isGone(memberOf(state, id))
  const transfers = transfersBetween(r, r.owners, owners, alive)
  if (transfers.length > limits.planTransfersMax) return undefined
  if (transfers.length === 0) return settle({ ...state, ring: bump({ partitions: r.partitions, n: r.n, owners, plan: null }) }, true)
  const plan: Plan = { version: r.version + 1, owners, transfers }
  return { ...state, ring: bump({ partitions: r.partitions, n: r.n, owners: r.owners, plan }) }
}

/**
 * Member statuses that follow from the ring: joining members that own partitions are valid, leaving
 * ones that neither own nor are planned to own any have left. Undefined when nothing changed.
 */
function settle(state: ClusterState, changed: boolean): ClusterState | undefined {
  const r = state.ring
  if (r === null) return undefined
  const owning = new Set(r.owners)
  const planned = new Set(r.plan?.owners ?? [])
  let next = state
  for (const m of state.members) {
    if (m.status === 'joining' && owning.has(m.id)) next = withMember(next, { ...m, status: 'valid' })
    else if (m.status === 'leaving' && !owning.has(m.id) && !planned.has(m.id)) next = withMember(next, { ...m, status: 'left' })
  }
  return changed || next !== state ? next : undefined
}

// Claim: which node owns each of the Q partitions. Consistent hashing (Karger 1997) puts keys and
// nodes on one circle so that a membership change moves only the keys near the changed node. Dynamo
// (DeCandia 2007, section 6.2, strategy 3) and Riak's ring keep the circle but cut it into Q fixed,
// equal partitions and hand whole partitions to nodes: balance no longer depends on where random
// tokens happen to land, and a partition is the unit of handoff. This file decides that assignment,
// with three goals, in this order:
//
// 1. Balance: every node owns floor(Q/k) or ceil(Q/k) of the Q partitions (k nodes). Always met.
// 2. Replica spread (Riak's target_n_val): a key's replicas live on the owners of n consecutive
//    partitions, so any n consecutive partitions (wrapping) should have n distinct owners.
// 3. Minimal movement: from a previous assignment, only the partitions that must move do. A new node
//    takes exactly its share, from the nodes above their new share; a departed node's partitions go
//    to the nodes below theirs; nobody else's partitions move.
//
// Fresh claim (no previous ring): think of an endless round robin over the sorted node ids, cut into
// m = ceil(Q/k) whole rounds of k slots. Reading all m*k slots gives perfect spacing (any k slots in a
// row are distinct, and the cut falls on a round boundary) but m*k - Q slots too many. So we delete
// s = m*k - Q slots, at most one per node, spread evenly around the circle: a window of n partitions
// then spans at most n + 1 slots, which are still distinct whenever k > n. With k <= n spacing
// cannot always be met (k = n = 3, Q = 256 needs Q divisible by 3), so plain round robin is used; its
// n - 1 bad windows at the wrap are the fewest possible for k = n.
//
// Incremental claim (previous ring): keep every partition whose owner is still a node, give each node
// a target (floor or ceil of Q/k, the ceil going to those that already own the most), hand orphaned
// partitions to nodes below target, then let nodes still below target (the new ones) take partitions
// from nodes above target. Choices prefer partitions where the move creates no spacing violation (or
// removes one), and a new node aims at evenly spaced points on the circle so its partitions spread.
//
// Deterministic: the output depends only on (Q, the set of node ids, n, previous). No randomness.

import { assert } from '../assert.ts'
import { badRequest } from '../errors.ts'
import { limits } from '../limits.ts'
import { isPowerOfTwo } from './partition-hash.ts'

/** Human-readable problems with a claim configuration; empty when it is valid. */
export function claimConfigIssues(partitions: number, nodeIds: readonly string[], n: number): string[] {
  const issues: string[] = []
  if (!Number.isInteger(partitions) || partitions < 1 || partitions > limits.partitionsMax) {
    issues.push(`partitions must be an integer between 1 and ${limits.partitionsMax}, got ${partitions}`)
  } else if (!isPowerOfTwo(partitions)) {
    issues.push(`partitions must be a power of two, got ${partitions}`)
  }
  if (!Number.isInteger(n) || n < 1 || n > limits.nMax) {
    issues.push(`n (replicas per key) must be an integer between 1 and ${limits.nMax}, got ${n}`)
  }
  if (nodeIds.length === 0) issues.push('a ring needs at least one node, got none')
  const seen = new Set<string>()
  for (const id of nodeIds) {
    if (typeof id !== 'string' || id === '') issues.push(`node ids must be non-empty strings, got ${JSON.stringify(id)}`)
    else if (seen.has(id)) issues.push(`node ids must be unique, got "${id}" more than once`)
    seen.add(id)
  }
  if (Number.isInteger(partitions) && nodeIds.length > partitions) {
    issues.push(`${nodeIds.length} nodes cannot share ${partitions} partitions: every node needs one; use more partitions`)
  }
  return issues
}

/**
 * Assigns an owner to each of `partitions` partitions: returns owners[p] for every p. With
 * `previous` (the owners of the ring being replaced, same partition count), moves as few
 * partitions as balance requires. Throws KvError BadRequest on invalid input.
 */
export function claim(partitions: number, nodeIds: readonly string[], n: number, previous?: readonly string[]): string[] {
  const issues = claimConfigIssues(partitions, nodeIds, n)
  if (previous !== undefined && previous.length !== partitions) {
    issues.push(`previous owners cover ${previous.length} partitions but the ring has ${partitions}: ` +
      'the partition count of a ring cannot change')
  }
  if (issues.length > 0) throw badRequest(...issues)

  const ids = [...nodeIds].sort()
  const alive = new Set(ids)
  const owners = previous !== undefined && previous.some((o) => alive.has(o))
    ? claimIncremental(partitions, ids, n, previous)
    : claimFresh(partitions, ids, n)

  assert(owners.length === partitions, 'claim must cover every partition')
  const counts = countOwners(owners)
  const floor = Math.floor(partitions / ids.length)
  for (const id of ids) {
    const c = counts.get(id) ?? 0
    assert(c === floor || c === floor + 1, () => `claim left ${id} with ${c} partitions, want ${floor} or ${floor + 1}`)
  }
  return owners
}

/**
 * Windows of n consecutive partitions (wrapping) whose owners are fewer than min(n, nodes) distinct
 * nodes: each is a key range with two replicas on one node. 0 is the goal; see claim() for when it
 * cannot be met.
 */
export function spacingViolations(owners: readonly string[], n: number): number {
  const q = owners.length
  const want = Math.min(n, new Set(owners).size, q)
  let bad = 0
  const inWindow = new Map<string, number>()
  const add = (id: string, delta: number): void => {
    const c = (inWindow.get(id) ?? 0) + delta
    if (c === 0) inWindow.delete(id)
    else inWindow.set(id, c)
  }
  for (let i = 0; i < want; i++) add(owners[i % q]!, 1)
  for (let p = 0; p < q; p++) {
    if (inWindow.size < want) bad++
    add(owners[p]!, -1)
    add(owners[(p + want) % q]!, 1)
  }
  return bad
}

function countOwners(owners: readonly (string | undefined)[]): Map<string, number> {
  const counts = new Map<string, number>()
  for (const o of owners) if (o !== undefined) counts.set(o, (counts.get(o) ?? 0) + 1)
  return counts
}

function claimFresh(partitions: number, ids: readonly string[], n: number): string[] {
  const k = ids.length
  const owners: string[] = []
  if (k <= n) {
    for (let p = 0; p < partitions; p++) owners.push(ids[p % k]!)
    return owners
  }
  // m rounds of k slots, minus `skips` slots, one per round where possible, in distinct residues
  // (so distinct nodes lose one each). Residues run downwards so the last deletion and the first
  // one, which meet across the wrap, are as far apart as the others.
  const rounds = Math.ceil(partitions / k)
  const skips = rounds * k - partitions
  assert(skips >= 0 && skips < k, 'skips must be fewer than one per node')
  const skipped = new Set<number>()
  for (let i = 0; i < skips; i++) skipped.add(Math.floor((i * rounds) / skips) * k + (skips - 1 - i))
  for (let slot = 0; slot < rounds * k; slot++) {
    if (!skipped.has(slot)) owners.push(ids[slot % k]!)
  }
  return owners
}

function claimIncremental(partitions: number, ids: readonly string[], n: number, previous: readonly string[]): string[] {
  const k = ids.length
  const alive = new Set(ids)
  const owners: (string | undefined)[] = previous.map((o) => (alive.has(o) ? o : undefined))
  const counts = countOwners(owners)
  const count = (id: string): number => counts.get(id) ?? 0
  const bump = (id: string, delta: number): void => { counts.set(id, count(id) + delta) }
  // Same owner within `reach` partitions of each other puts two replicas of some key on one node.
  const reach = Math.min(n, k) - 1

  // Targets: the ceil shares go to the nodes that own the most already, so they keep what they have.
  const floor = Math.floor(partitions / k)
  const target = new Map<string, number>()
  const byCount = [...ids].sort((a, b) => count(b) - count(a) || (a < b ? -1 : a > b ? 1 : 0))
  byCount.forEach((id, i) => target.set(id, floor + (i < partitions % k ? 1 : 0)))
  const want = (id: string): number => target.get(id)! - count(id)

  const conflicts = (p: number, id: string): number => {
    let c = 0
    for (let d = 1; d <= reach; d++) {
      if (owners[(p + d) % partitions] === id) c++
      if (owners[(p - d + partitions) % partitions] === id) c++
    }
    return c
  }

  // Orphans (owner left): to the node below target with the fewest conflicts, then the largest
  // deficit, then the smallest id.
  for (let p = 0; p < partitions; p++) {
    if (owners[p] !== undefined) continue
    let best: string | undefined
    let bestConflicts = Infinity
    for (const id of ids) {
      if (want(id) <= 0) continue
      const c = conflicts(p, id)
      if (c < bestConflicts || (c === bestConflicts && want(id) > want(best!))) {
        best = id
        bestConflicts = c
      }
    }
    assert(best !== undefined, 'targets sum to Q, so some node is below target while a partition is unowned')
    owners[p] = best
    bump(best, 1)
  }

  // Nodes below target take from nodes above it. Each aims at evenly spaced centres (offset per node
  // so two new nodes do not chase the same partitions) and picks, near each centre, the partition
  // whose move is best for spacing, then the owner furthest above target, then the nearest.
  const score = (p: number, id: string, center: number): [number, number, number] | undefined => {
    const from = owners[p]!
    if (from === id || want(from) >= 0) return undefined
    const dist = Math.min((p - center + partitions) % partitions, (center - p + partitions) % partitions)
    return [conflicts(p, id) - conflicts(p, from), want(from), dist]
  }
  const better = (a: [number, number, number], b: [number, number, number] | undefined): boolean =>
    b === undefined || a[0] < b[0] || (a[0] === b[0] && (a[1] < b[1] || (a[1] === b[1] && a[2] < b[2])))

  ids.forEach((id, index) => {
    const need = want(id)
    for (let j = 0; j < need; j++) {
      const center = Math.floor(((j + index / k) * partitions) / need) % partitions
      const radius = Math.max(1, Math.floor(partitions / (2 * need)))
      let bestP = -1
      let bestScore: [number, number, number] | undefined
      const consider = (p: number): void => {
        const s = score(p, id, center)
        if (s !== undefined && better(s, bestScore)) { bestP = p; bestScore = s }
      }
      for (let d = -radius; d <= radius; d++) consider((center + d + partitions) % partitions)
      if (bestP < 0) for (let p = 0; p < partitions; p++) consider(p)
      assert(bestP >= 0, 'targets sum to Q, so some node is above target while another is below')
      bump(owners[bestP]!, -1)
      owners[bestP] = id
      bump(id, 1)
    }
  })

  return owners.map((o) => {
    assert(o !== undefined, 'every partition has an owner after claim')
    return o
  })
}

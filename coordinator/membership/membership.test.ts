// The membership core without a transport: the gossip merge is a join (commutative, associative,
// idempotent, monotone; property tests over arbitrary states), the claimant plans a join, a leave
// and a remove and switches ownership only once every transfer is reported done, incoming gossip
// that is forged is refused, and the phi detector rises for a silent peer and not for a live one.

import assert from 'node:assert/strict'
import { test } from 'node:test'
import fc from 'fast-check'
import { testSeed } from '../../test/seed.ts'
import { limits } from '../limits.ts'
import { createRing, preferenceListOfPartition } from '../ring/ring.ts'
import { claimantOf, claimantStep, planDone } from './claimant.ts'
import {
  checkIncoming, dominates, initialState, memberOf, memberStatuses, mergeStates, ringOf, statesEqual, withMember,
  type ClusterState, type Member, type RingState,
} from './cluster-state.ts'
import { Membership } from './membership.ts'
import { PhiDetector } from './phi-detector.ts'

const ids = ['a', 'b', 'c', 'd', 'e']
const memberArb: fc.Arbitrary<Member> = fc.record({
  id: fc.constantFrom(...ids),
  url: fc.constantFrom('ws://x:1', 'ws://x:2'),
  status: fc.constantFrom(...memberStatuses),
  gen: fc.nat(4),
  done: fc.option(fc.record({ plan: fc.nat(3), transfers: fc.uniqueArray(fc.nat(5)).map(a => a.sort((x, y) => x - y)) }), { nil: null }),
})
const ringArb: fc.Arbitrary<RingState> = fc.record({
  version: fc.nat(5),
  claimant: fc.constantFrom(...ids),
  partitions: fc.constant(4),
  n: fc.constant(2),
  owners: fc.array(fc.constantFrom(...ids), { minLength: 4, maxLength: 4 }),
  plan: fc.option(fc.record({
    version: fc.nat(5),
    owners: fc.array(fc.constantFrom(...ids), { minLength: 4, maxLength: 4 }),
    transfers: fc.array(fc.record({ partition: fc.nat(3), from: fc.constantFrom(...ids), to: fc.constantFrom(...ids) }), { maxLength: 3 }),
  }), { nil: null }),
})
const stateArb: fc.Arbitrary<ClusterState> = fc.record({
  members: fc.uniqueArray(memberArb, { selector: m => m.id }).map(ms => ms.sort((x, y) => (x.id < y.id ? -1 : 1))),
  heartbeats: fc.uniqueArray(fc.tuple(fc.constantFrom(...ids), fc.nat(9)), { selector: h => h[0] })
    .map(hs => hs.sort((x, y) => (x[0] < y[0] ? -1 : 1)) as (readonly [string, number])[]),
  ring: fc.option(ringArb, { nil: null }),
})

test('gossip merge is commutative, associative, idempotent and monotone', () => {
  const seed = testSeed('membership merge')
  fc.assert(fc.property(stateArb, stateArb, stateArb, (a, b, c) => {
    assert.ok(statesEqual(mergeStates(a, b), mergeStates(b, a)), 'commutative')
    assert.ok(statesEqual(mergeStates(mergeStates(a, b), c), mergeStates(a, mergeStates(b, c))), 'associative')
    assert.ok(statesEqual(mergeStates(a, a), a), 'idempotent')
    const ab = mergeStates(a, b)
    assert.ok(dominates(ab, a) && dominates(ab, b), 'monotone: the merge holds both')
    // Each member entry and the ring only ever move up.
    for (const m of a.members) assert.ok(memberOf(ab, m.id)!.gen >= m.gen)
    assert.ok((ab.ring?.version ?? -1) >= (a.ring?.version ?? -1))
  }), { seed, numRuns: 500 })
})

function cluster(nodes: string[], partitions = 16, n = 3): ClusterState {
  return initialState(createRing({ nodes: nodes.map(id => ({ id, url: `ws://h/${id}` })), partitions, n }))
}

/** Runs the claimant to a fixpoint, reporting every transfer done as soon as it is planned. */
function settleAll(s0: ClusterState): { state: ClusterState; plans: number } {
  let s = s0
  let plans = 0
  for (let i = 0; i < 20; i++) {
    const c = claimantOf(s)!
    const next = claimantStep(s, c)
    if (next === undefined) {
      const plan = s.ring!.plan
      if (plan === null || planDone(s, plan)) return { state: s, plans }
      const byFrom = new Map<string, number[]>()
      plan.transfers.forEach((t, i) => byFrom.set(t.from, [...(byFrom.get(t.from) ?? []), i]))
      for (const [from, transfers] of byFrom) s = withMember(s, { ...memberOf(s, from)!, done: { plan: plan.version, transfers } })
      continue
    }
    if (next.ring!.plan !== null && s.ring!.plan === null) plans++
    s = next
  }
  assert.fail('the claimant did not settle')
}

test('join: planned, switched only when every transfer is done, the new node valid and owning its share', () => {
  let s = cluster(['n1', 'n2', 'n3'])
  s = withMember(s, { id: 'n4', url: 'ws://h/n4', status: 'joining', done: null })
  const planned = claimantStep(s, 'n1')!
  assert.ok(planned.ring!.plan, 'a plan')
  assert.deepEqual(planned.ring!.owners, s.ring!.owners, 'owners unchanged while transfers run')
  assert.equal(claimantStep(planned, 'n2'), undefined, 'only the claimant acts')
  assert.equal(claimantStep(planned, 'n1'), undefined, 'nothing to do until transfers are done')
  for (const t of planned.ring!.plan!.transfers) assert.equal(t.to, 'n4')
  const { state } = settleAll(planned)
  assert.equal(memberOf(state, 'n4')!.status, 'valid')
  const owned = state.ring!.owners.filter(o => o === 'n4').length
  assert.equal(owned, 4, 'a quarter of 16 partitions')
  assert.ok(state.ring!.version > planned.ring!.version)
  // Every preference list that gained n4 had a transfer.
  const ring = ringOf(state)!
  const before = ringOf(s)!
  const got = new Set(planned.ring!.plan!.transfers.map(t => t.partition))
  for (let p = 0; p < 16; p++) {
    const gained = preferenceListOfPartition(ring, p).primaries.includes('n4') && !preferenceListOfPartition(before, p).primaries.includes('n4')
    assert.equal(gained, got.has(p), `partition ${p}`)
  }
})

test('leave: the leaving node sends its partitions away, then is left and owns nothing', () => {
  let s = cluster(['n1', 'n2', 'n3', 'n4'])
  s = withMember(s, { ...memberOf(s, 'n2')!, status: 'leaving' })
  const planned = claimantStep(s, 'n1')!
  assert.ok(planned.ring!.plan!.transfers.length > 0)
  const { state } = settleAll(planned)
  assert.equal(memberOf(state, 'n2')!.status, 'left')
  assert.ok(!state.ring!.owners.includes('n2'))
})

test('remove: a dead node\'s partitions are refilled from surviving replicas', () => {
  let s = cluster(['n1', 'n2', 'n3', 'n4'])
  s = withMember(s, { ...memberOf(s, 'n1')!, status: 'removed' })
  assert.equal(claimantOf(s), 'n2', 'the claimant moves on from a removed node')
  const planned = claimantStep(s, 'n2')!
  for (const t of planned.ring!.plan!.transfers) assert.notEqual(t.from, 'n1', 'never from the removed node')
  const { state } = settleAll(planned)
  assert.ok(!state.ring!.owners.includes('n1'))
  assert.equal(memberOf(state, 'n1')!.status, 'removed')
})

test('a plan that names a node since removed is dropped and replanned', () => {
  let s = cluster(['n1', 'n2', 'n3'])
  s = withMember(s, { id: 'n4', url: 'ws://h/n4', status: 'joining', done: null })
  const planned = claimantStep(s, 'n1')!
  const dead = withMember(planned, { ...memberOf(planned, 'n4')!, status: 'removed' })
  const dropped = claimantStep(dead, 'n1')!
  assert.equal(dropped.ring!.plan, null)
  assert.deepEqual(dropped.ring!.owners, s.ring!.owners)
})

test('incoming gossip: forged versions, unknown owners and unsorted members are refused', () => {
  const local = cluster(['n1', 'n2', 'n3'])
  const r = local.ring!
  const leap = { ...local, ring: { ...r, version: r.version + limits.ringVersionGapMax + 1 } }
  assert.throws(() => checkIncoming(local, leap, false), (e: any) => e.kind === 'BadRequest' && /leaps/.test(e.message))
  const evil = withMember(local, { id: 'evil', url: 'ws://h/evil', status: 'valid', done: null })
  const owners = r.owners.map((o, i) => (i % 2 ? 'evil' : o))
  const claim = { ...evil, ring: { ...r, version: r.version + 1, owners } }
  assert.throws(() => checkIncoming(local, claim, false), (e: any) => e.kind === 'BadRequest' && /unknown nodes claim/.test(e.message))
  const ghost = { ...local, ring: { ...r, version: r.version + 1, owners: r.owners.map(() => 'ghost') } }
  assert.throws(() => checkIncoming(local, ghost, false), (e: any) => /members only/.test(e.message))
  // A removed node still owning partitions (its refill not switched yet) is a member: accepted.
  checkIncoming(local, withMember(local, { ...memberOf(local, 'n3')!, status: 'removed' }), false)
  const unsorted = { ...local, members: [...local.members].reverse() }
  assert.throws(() => checkIncoming(local, unsorted, false), (e: any) => /sorted/.test(e.message))
  // A joiner takes its seed's state whole.
  checkIncoming({ members: [], heartbeats: [], ring: null }, claim, true)
})

test('Membership: duplicate ids and gossip from removed nodes are refused; the state is unchanged', () => {
  const s = cluster(['n1', 'n2', 'n3'])
  let t = 0
  const m = new Membership({ self: 'n1', url: 'ws://h/n1', now: () => t, random: () => 0.5, initial: s, phiThreshold: 8, phi: { samplesMax: 100, minStdMs: 100, acceptablePauseMs: 1000, firstIntervalMs: 1000 } })
  const dup = withMember(s, { id: 'n2', url: 'ws://elsewhere', status: 'joining', done: null })
  // The duplicate sends its own view: n2 at another url.
  const dupView: ClusterState = { members: [memberOf(dup, 'n2')!], heartbeats: [], ring: null }
  assert.throws(() => m.receive(dupView, 'n2'), (e: any) => e.kind === 'BadRequest' && /already a member/.test(e.message))
  assert.ok(statesEqual(m.state, s))
  m.setStatus('n3', 'removed')
  assert.throws(() => m.receive(s, 'n3'), (e: any) => /removed/.test(e.message))
  t += 1
})

test('phi: low for a peer beating on time, past 8 for one that went silent', () => {
  const d = new PhiDetector({ samplesMax: 1000, minStdMs: 200, acceptablePauseMs: 2000, firstIntervalMs: 1000 })
  let t = 0
  for (let i = 0; i < 50; i++) { d.heartbeat(t); t += 1000 }
  assert.ok(d.phi(t - 1000 + 1500) < 1, `phi ${d.phi(t - 500)}`)
  assert.ok(d.phi(t - 1000 + 10_000) > 8, `phi ${d.phi(t - 1000 + 10_000)}`)
  assert.ok(d.phi(t - 1000 + 1e9) > 8, 'and stays up, never NaN')
})

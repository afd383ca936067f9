// Simulated gossip, in one process, with the real membership module (seeded): N replicas, each
// round every replica sends its state to one random peer and merges the reply (push-pull), as the
// replica's gossip loop does. Prints how many rounds a change made at one replica takes to reach
// every replica, for 10, 100 and 1000 replicas (the aim: within 2 x log2(N)), and the false
// positives of phi at threshold 8 when heartbeats arrive with jitter and nobody fails.

import assert from 'node:assert/strict'
import { test } from 'node:test'
import { seededRandom, testSeed } from '../../test/seed.ts'
import { limits } from '../limits.ts'
import { memberOf, withMember, type ClusterState, type Member } from './cluster-state.ts'
import { Membership } from './membership.ts'
import { PhiDetector } from './phi-detector.ts'

const phi = { samplesMax: limits.phiSamplesMax, minStdMs: limits.phiMinStdMs, acceptablePauseMs: limits.phiAcceptablePauseMs, firstIntervalMs: limits.gossipIntervalMsDefault }

function simulate(size: number, random: () => number): number {
  const members: Member[] = Array.from({ length: size }, (_, i) => ({ id: `n${String(i).padStart(4, '0')}`, url: `ws://sim/${i}`, status: 'valid' as const, gen: 1, done: null }))
  const initial: ClusterState = { members, heartbeats: [], ring: null }
  let now = 0
  const nodes = members.map(m => new Membership({ self: m.id, url: m.url, now: () => now, random, initial, phiThreshold: 8, phi, plan: false }))
  const byId = new Map(nodes.map(n => [n.self, n]))
  // The change: one replica marks another leaving (as `ringkv leave` does).
  const origin = nodes[Math.floor(random() * size)]!
  const target = members[Math.floor(random() * size)]!.id
  origin.update(s => withMember(s, { ...memberOf(s, target)!, status: 'leaving' }))
  const seen = (n: Membership) => memberOf(n.state, target)!.status === 'leaving'
  for (let round = 1; round <= 10 * Math.ceil(Math.log2(size)); round++) {
    now += limits.gossipIntervalMsDefault
    // Every replica picks its peer from the state it had at the start of the round, in random order.
    const order = [...nodes].sort(() => random() - 0.5)
    for (const n of order) {
      const peer = n.tick()
      if (peer === undefined) continue
      const p = byId.get(peer)!
      const reply = p.receive(n.state, n.self)
      n.receive(reply, p.self)
    }
    if (nodes.every(seen)) return round
  }
  return Infinity
}

test('gossip: rounds until every replica has seen a change, for 10, 100 and 1000 replicas', () => {
  const seed = testSeed('gossip simulation')
  const random = seededRandom(seed)
  for (const size of [10, 100, 1000]) {
    const rounds = simulate(size, random)
    const aim = 2 * Math.log2(size)
    console.log(`gossip ${size} replicas: every replica saw the change after ${rounds} rounds (aim <= ${aim.toFixed(1)})`)
    assert.ok(Number.isFinite(rounds), `${size} replicas never converged`)
    // The aim is printed; the assertion is a looser bound that still fails on a broken merge.
    assert.ok(rounds <= 3 * Math.log2(size) + 2, `${size} replicas took ${rounds} rounds`)
  }
})

test('phi at threshold 8: false positives under jittered heartbeats, none failing', () => {
  const seed = testSeed('phi false positives')
  const random = seededRandom(seed)
  // A heartbeat every interval, each delayed by up to 1.5 intervals of jitter (gossip relays them),
  // sometimes (1 in 50) a stall of up to 3 intervals (a GC pause, a busy event loop).
  let checks = 0
  let suspected = 0
  for (let peer = 0; peer < 20; peer++) {
    const d = new PhiDetector(phi)
    let t = 0
    let next = 0
    for (let beat = 0; beat < 2000; beat++) {
      const interval = limits.gossipIntervalMsDefault
      const jitter = random() * 1.5 * interval
      const stall = random() < 0.02 ? random() * 3 * interval : 0
      next = beat * interval + jitter + stall
      // Check phi every 100 ms of silence up to the next heartbeat.
      for (; t < next; t += 100) {
        if (d.started) { checks++; if (d.phi(t) >= 8) suspected++ }
      }
      d.heartbeat(Math.max(next, t))
    }
  }
  const rate = suspected / checks
  console.log(`phi >= 8 on ${suspected} of ${checks} checks of live peers (${(rate * 100).toFixed(4)} %), heartbeats every ${limits.gossipIntervalMsDefault} ms with up to 1.5 intervals of jitter and 2 % stalls of up to 3`)
  assert.ok(rate < 0.001, `false positive rate ${rate}`)
  // And a peer that stops is suspected within a bounded time.
  const d = new PhiDetector(phi)
  for (let i = 0; i < 100; i++) d.heartbeat(i * 1000 + random() * 500)
  let t = 100_000
  while (d.phi(t) < 8 && t < 200_000) t += 100
  console.log(`a silent peer crosses phi 8 after ${((t - 99_500) / 1000).toFixed(1)} s of silence (about)`)
  assert.ok(t < 200_000)
})

// The quorum state machines driven by hand: every path through stamp, replicate, fallback
// substitution, failure and expiry, with the outcome and the QuorumError's counts checked.

import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import { QuorumError } from '../errors.ts'
import { update, EMPTY, type DvvSet } from '../version/dvv.ts'
import { ReadQuorum, type ReadOutcome } from './read-quorum.ts'
import { WriteQuorum, type WriteAction, type WriteOutcome } from './write-quorum.ts'
import { propertyParams } from '../../test/seed.ts'

const fcParams = propertyParams('quorum properties')

const v = (s: string) => new TextEncoder().encode(s)
const stamped: DvvSet = update(EMPTY, {}, 'a.1', v('x'))
// A call, not a property read, so the assert-narrowing of an earlier `q.outcome.status` check
// does not stick to later reads.
function outcome<T extends WriteOutcome | ReadOutcome>(q: { outcome: T }): T { return q.outcome }
const up = (down: string[]) => (n: string) => !down.includes(n)
/** A write driven to its end: ok exactly with W durable acks, else failed counting them; strict acks only from primaries. */
function assertSettled(q: WriteQuorum, w: number, acks: ReadonlySet<string>, sloppy: boolean): void {
  const o = outcome(q)
  if (acks.size >= w) assert.equal(o.status, 'ok')
  else { assert.equal(o.status, 'failed'); assert.equal(o.status === 'failed' && o.error.acked, acks.size) }
  if (!sloppy) for (const n of acks) assert.ok(['a', 'b', 'c'].includes(n))
}

describe('WriteQuorum', () => {
  it('stamps at the first primary, replicates to the rest, succeeds at W', () => {
    const q = new WriteQuorum({ w: 2, primaries: ['a', 'b', 'c'], fallbacks: ['d'], isUp: up([]), sloppy: true })
    assert.deepEqual(q.start(), [{ kind: 'stamp', target: { node: 'a' } }])
    const reps = q.onStamped('a', stamped)
    assert.deepEqual(reps.map(r => r.target.node), ['b', 'c'])
    assert.equal(q.outcome.status, 'pending')
    q.onReplicated('c')
    const o = outcome(q)
    assert.equal(o.status, 'ok')
    assert.deepEqual(o.status === 'ok' && [...o.acked].sort(), ['a', 'c'])
  })

  it('moves the stamp to the next primary when the first fails, and refills from fallbacks with a hint', () => {
    const q = new WriteQuorum({ w: 3, primaries: ['a', 'b', 'c'], fallbacks: ['d', 'e'], isUp: up([]), sloppy: true })
    q.start()
    assert.deepEqual(q.onFailed('a'), [{ kind: 'stamp', target: { node: 'b' } }])
    const reps = q.onStamped('b', stamped)
    assert.deepEqual(reps.map(r => r.target), [{ node: 'd', hintFor: 'a' }, { node: 'c' }])
    assert.deepEqual(q.onFailed('c'), [{ kind: 'replicate', target: { node: 'e', hintFor: 'c' }, state: stamped }])
    q.onReplicated('d')
    assert.equal(q.outcome.status, 'pending')
    q.onReplicated('e')
    assert.equal(q.outcome.status, 'ok')
  })

  it('substitutes fallbacks for primaries known to be down before sending anything, and stamps at a primary', () => {
    const q = new WriteQuorum({ w: 2, primaries: ['a', 'b', 'c'], fallbacks: ['d', 'e'], isUp: up(['a', 'd']), sloppy: true })
    assert.deepEqual(q.start(), [{ kind: 'stamp', target: { node: 'b' } }])
    assert.deepEqual(q.onStamped('b', stamped).map(r => r.target), [{ node: 'e', hintFor: 'a' }, { node: 'c' }])
  })

  it('never stamps at a fallback: with every primary down the write fails without sending', () => {
    const q = new WriteQuorum({ w: 1, primaries: ['a', 'b', 'c'], fallbacks: ['d', 'e', 'f'], isUp: up(['a', 'b', 'c']), sloppy: true })
    assert.deepEqual(q.start(), [])
    const o = outcome(q)
    assert.equal(o.status, 'failed')
    assert.match(o.status === 'failed' ? o.error.message : '', /no primary was left to stamp/)
    const q2 = new WriteQuorum({ w: 2, primaries: ['a', 'b', 'c'], fallbacks: ['d', 'e'], isUp: up(['b', 'c']), sloppy: true })
    assert.deepEqual(q2.start(), [{ kind: 'stamp', target: { node: 'a' } }])
    assert.deepEqual(q2.onFailed('a'), [])
    assert.equal(q2.outcome.status, 'failed')
  })

  it('with a strict quorum uses no fallbacks and fails with the ack count', () => {
    const q = new WriteQuorum({ w: 3, primaries: ['a', 'b', 'c'], fallbacks: ['d'], isUp: up(['c']), sloppy: false })
    q.start()
    const reps = q.onStamped('a', stamped)
    assert.deepEqual(reps.map(r => r.target.node), ['b'])
    q.onReplicated('b')
    const o = outcome(q)
    assert.equal(o.status, 'failed')
    assert.ok(o.status === 'failed' && o.error instanceof QuorumError)
    assert.equal(o.status === 'failed' && o.error.acked, 2)
    assert.equal(o.status === 'failed' && o.error.required, 3)
  })

  it('fails with 0 acks when no node can stamp, and expire() fails a pending write', () => {
    const q = new WriteQuorum({ w: 1, primaries: ['a'], fallbacks: [], isUp: up([]), sloppy: true })
    q.start()
    q.onFailed('a')
    assert.equal(q.outcome.status, 'failed')
    const q2 = new WriteQuorum({ w: 2, primaries: ['a', 'b'], fallbacks: [], isUp: up([]), sloppy: true })
    q2.start(); q2.onStamped('a', stamped)
    q2.expire()
    const o = outcome(q2)
    assert.ok(o.status === 'failed' && o.error.acked === 1)
  })

  it('early stamp: replicates on the early state, counts the stamper only on its durable ack', () => {
    const q = new WriteQuorum({ w: 2, primaries: ['a', 'b', 'c'], fallbacks: ['d'], isUp: up([]), sloppy: true })
    q.start()
    assert.deepEqual(q.onStamped('a', stamped, false).map(r => r.target.node), ['b', 'c'])
    q.onReplicated('b')
    assert.equal(q.outcome.status, 'pending', 'the stamper has not made it durable yet')
    q.onStampDurable('a')
    const o = outcome(q)
    assert.deepEqual(o.status === 'ok' && [...o.acked].sort(), ['a', 'b'])
    // W can also be met by the other two before the stamper's fsync ends.
    const q2 = new WriteQuorum({ w: 2, primaries: ['a', 'b', 'c'], fallbacks: [], isUp: up([]), sloppy: false })
    q2.start()
    q2.onStamped('a', stamped, false)
    q2.onReplicated('c')
    q2.onReplicated('b')
    const o2 = outcome(q2)
    assert.deepEqual(o2.status === 'ok' && [...o2.acked].sort(), ['b', 'c'])
  })

  it('early stamp: a stamper that fails after its early state is a failed replica, never a second stamp', () => {
    const q = new WriteQuorum({ w: 3, primaries: ['a', 'b', 'c'], fallbacks: ['d'], isUp: up([]), sloppy: true })
    q.start()
    q.onStamped('a', stamped, false)
    // Its slot goes to the fallback, which takes the same state with a hint for it.
    assert.deepEqual(q.onFailed('a'), [{ kind: 'replicate', target: { node: 'd', hintFor: 'a' }, state: stamped }])
    assert.deepEqual(q.onStampDurable('a'), [], 'a late ack from the failed stamper changes nothing')
    q.onReplicated('b')
    q.onReplicated('c')
    assert.equal(q.outcome.status, 'pending')
    q.onReplicated('d')
    const o = outcome(q)
    assert.deepEqual(o.status === 'ok' && [...o.acked].sort(), ['b', 'c', 'd'])
    // Strict, with no fallback: the write fails naming the stamper, with the acks it got.
    const q2 = new WriteQuorum({ w: 3, primaries: ['a', 'b', 'c'], fallbacks: [], isUp: up([]), sloppy: false })
    q2.start()
    q2.onStamped('a', stamped, false)
    q2.onReplicated('b')
    assert.deepEqual(q2.onFailed('a'), [])
    assert.equal(q2.outcome.status, 'pending', 'c is still in flight')
    q2.onReplicated('c')
    const o2 = outcome(q2)
    assert.ok(o2.status === 'failed' && o2.error.acked === 2 && o2.error.failures.has('a'))
  })

  it('property: with early stamps, settles exactly when W durable acks are reached or no longer reachable', () => {
    type Event = WriteAction | { readonly kind: 'durable'; readonly target: { readonly node: string } }
    fc.assert(fc.property(
      fc.integer({ min: 1, max: 3 }), fc.array(fc.integer({ min: 0, max: 2 }), { minLength: 16, maxLength: 16 }), fc.boolean(), fc.integer({ min: 0, max: 3 }), fc.nat(),
      (w, outcomes, sloppy, fallbackCount, order) => {
        const nodes = ['a', 'b', 'c', 'd', 'e', 'f'].slice(0, 3 + fallbackCount)
        const q = new WriteQuorum({ w, primaries: nodes.slice(0, 3), fallbacks: nodes.slice(3), isUp: up([]), sloppy })
        let queue: Event[] = q.start()
        let i = 0
        let stateOut = false
        const acks = new Set<string>()
        while (queue.length > 0) {
          // Events are taken in an order the seed picks, so durable acks and replicates interleave.
          const at = (order + i) % queue.length
          const a = queue.splice(at, 1)[0]!
          // 0: fails; 1: succeeds; 2: a stamp answers early and its durable ack comes later (or fails).
          const r = outcomes[i++ % outcomes.length]!
          let next: Event[]
          if (a.kind === 'stamp') {
            if (r === 0) next = q.onFailed(a.target.node)
            else if (r === 1) { stateOut = true; acks.add(a.target.node); next = q.onStamped(a.target.node, stamped) }
            else { stateOut = true; next = [...q.onStamped(a.target.node, stamped, false), { kind: 'durable', target: a.target }] }
          } else if (a.kind === 'durable') {
            if (r === 0) next = q.onFailed(a.target.node)
            else { acks.add(a.target.node); next = q.onStampDurable(a.target.node) }
          } else {
            if (r === 0) next = q.onFailed(a.target.node)
            else { acks.add(a.target.node); next = q.onReplicated(a.target.node) }
          }
          // Once a state is out, no second stamp is ever asked for.
          if (stateOut) assert.ok(next.every(e => e.kind !== 'stamp'), 'a second stamp after the state was out')
          queue = queue.concat(next)
        }
        assertSettled(q, w, acks, sloppy)
      }), fcParams({ numRuns: 500 }))
  })

  it('property: settles exactly when W acks are reached or no longer reachable', () => {
    fc.assert(fc.property(
      fc.integer({ min: 1, max: 3 }), fc.array(fc.boolean(), { minLength: 16, maxLength: 16 }), fc.boolean(), fc.integer({ min: 0, max: 3 }),
      (w, succeed, sloppy, fallbackCount) => {
        const nodes = ['a', 'b', 'c', 'd', 'e', 'f'].slice(0, 3 + fallbackCount)
        const q = new WriteQuorum({ w, primaries: nodes.slice(0, 3), fallbacks: nodes.slice(3), isUp: up([]), sloppy })
        let queue: WriteAction[] = q.start()
        let i = 0
        const acks = new Set<string>()
        while (queue.length > 0) {
          const a = queue.shift()!
          const ok = succeed[i++ % succeed.length]!
          if (ok) acks.add(a.target.node)
          const next = a.kind === 'stamp' ? (ok ? q.onStamped(a.target.node, stamped) : q.onFailed(a.target.node))
            : (ok ? q.onReplicated(a.target.node) : q.onFailed(a.target.node))
          queue = queue.concat(next)
        }
        assertSettled(q, w, acks, sloppy)
      }), fcParams({ numRuns: 500 }))
  })
})

describe('ReadQuorum', () => {
  it('answers at R replies with the merge, and names stale primaries for repair', () => {
    const newer = update(stamped, stamped.vv, 'a.1', v('y'))
    const q = new ReadQuorum({ r: 2, targets: ['a', 'b', 'c'], primaries: new Set(['a', 'b', 'c']) })
    assert.deepEqual(q.start(), ['a', 'b', 'c'])
    q.onReply('a', newer)
    assert.equal(q.outcome.status, 'pending')
    q.onReply('b', null)
    const o = outcome(q)
    assert.ok(o.status === 'ok' && o.state === newer)
    assert.equal(q.complete, false)
    q.onReply('c', stamped)
    assert.equal(q.complete, true)
    assert.deepEqual(q.repairs().map(r => r.node).sort(), ['b', 'c'])
  })

  it('fails when too few targets can answer, counting the replies', () => {
    const q = new ReadQuorum({ r: 2, targets: ['a', 'b', 'c'], primaries: new Set(['a', 'b', 'c']) })
    q.start()
    q.onReply('a', null)
    q.onFailed('b')
    assert.equal(q.outcome.status, 'pending')
    q.onFailed('c')
    const o = outcome(q)
    assert.ok(o.status === 'failed' && o.error instanceof QuorumError && o.error.acked === 1 && o.error.required === 2)
  })

  it('does not repair fallbacks', () => {
    const q = new ReadQuorum({ r: 2, targets: ['a', 'd'], primaries: new Set(['a', 'b', 'c']) })
    q.start(); q.onReply('a', stamped); q.onReply('d', null)
    assert.deepEqual(q.repairs(), [])
  })

  it('asking R first: answers from those, complete without the spare, repairs only those that replied', () => {
    const q = new ReadQuorum({ r: 2, targets: ['b', 'a', 'c'], primaries: new Set(['a', 'b', 'c']), ask: 2 })
    assert.deepEqual(q.start(), ['b', 'a'])
    assert.equal(q.spares, 1)
    q.onReply('b', stamped)
    assert.equal(q.complete, false)
    q.onReply('a', null)
    assert.equal(outcome(q).status, 'ok')
    assert.deepEqual(q.takeAsks(), [])
    assert.equal(q.complete, true, 'the spare is never asked once the read is answered')
    assert.deepEqual(q.repairs().map(r => r.node), ['a'])
    assert.deepEqual(q.speculate(), [], 'nothing to speculate on after the answer')
  })

  it('asking R first: a failure asks one spare, a second one fails the read', () => {
    const q = new ReadQuorum({ r: 2, targets: ['a', 'b', 'c', 'd'], primaries: new Set(['a', 'b', 'c']), ask: 2 })
    q.start()
    q.onFailed('a')
    assert.deepEqual(q.takeAsks(), ['c'])
    assert.deepEqual(q.takeAsks(), [], 'each spare is handed out once')
    q.onReply('b', null)
    assert.deepEqual(q.takeAsks(), [])
    q.onFailed('c')
    assert.deepEqual(q.takeAsks(), ['d'])
    q.onReply('d', stamped)
    const o = outcome(q)
    assert.ok(o.status === 'ok' && o.state === stamped)
    assert.deepEqual(o.status === 'ok' && [...o.replied].sort(), ['b', 'd'])
  })

  it('asking R first: speculate() asks every spare, once', () => {
    const q = new ReadQuorum({ r: 2, targets: ['a', 'b', 'c', 'd'], primaries: new Set(['a', 'b', 'c']), ask: 2 })
    q.start()
    q.onReply('a', null)
    assert.deepEqual(q.speculate(), ['c', 'd'])
    assert.deepEqual(q.speculate(), [])
    assert.equal(q.spares, 0)
    q.onReply('d', stamped)
    assert.equal(outcome(q).status, 'ok')
    assert.equal(q.complete, false, 'b and c were asked and may still answer')
    q.onFailed('b'); q.onReply('c', null)
    assert.equal(q.complete, true)
  })

  it('asking R first: a deadline before the spare was needed names it as not asked', () => {
    const q = new ReadQuorum({ r: 2, targets: ['a', 'b', 'c'], primaries: new Set(['a', 'b', 'c']), ask: 2 })
    q.start()
    q.onReply('a', null)
    q.expire(100)
    const o = outcome(q)
    assert.ok(o.status === 'failed' && o.error instanceof QuorumError)
    const e = o.status === 'failed' ? o.error as QuorumError : undefined
    assert.equal(e?.failures.get('b')?.message, 'no reply within 100 ms')
    assert.match(e?.failures.get('c')?.message ?? '', /not asked: the read ended before the 2 asked first needed it/)
  })

  it('property: asking R first settles as asking all would, asks no node twice, and never stalls', () => {
    fc.assert(fc.property(
      fc.integer({ min: 1, max: 4 }), fc.array(fc.boolean(), { minLength: 4, maxLength: 4 }), fc.array(fc.nat(), { minLength: 12, maxLength: 12 }),
      fc.integer({ min: 1, max: 4 }),
      (r, answers, picks, ask) => {
        const targets = ['a', 'b', 'c', 'd']
        const q = new ReadQuorum({ r, targets, primaries: new Set(['a', 'b', 'c']), ask })
        const asked = new Set<string>()
        const outstanding: string[] = []
        const take = (nodes: readonly string[]) => {
          for (const n of nodes) { assert.ok(!asked.has(n), `${n} asked twice`); asked.add(n); outstanding.push(n) }
        }
        take(q.start())
        let i = 0
        while (outstanding.length > 0) {
          const pick = picks[i++ % picks.length]!
          // Now and then the speculation timer fires instead of a reply arriving.
          if (pick % 5 === 4) take(q.speculate())
          const n = outstanding.splice(pick % outstanding.length, 1)[0]!
          if (answers[targets.indexOf(n)]) q.onReply(n, stamped)
          else q.onFailed(n)
          take(q.takeAsks())
          if (outstanding.length === 0) assert.notEqual(q.outcome.status, 'pending', 'nothing outstanding, nothing more asked, and still pending')
        }
        const replying = answers.filter(Boolean).length
        assert.equal(outcome(q).status, replying >= r ? 'ok' : 'failed')
        assert.equal(q.complete || q.outcome.status === 'failed', true)
        if (replying >= r && ask >= 4) assert.equal(asked.size, 4)
      }), fcParams({ numRuns: 500 }))
  })
})

// A failed quorum names every replica that did not do its part, and why: the error it answered,
// a timeout, known down and skipped ("down: backing off"), or not asked. Hand-driven cases, and a
// property over random runs (prints its seed, test/seed.ts; RINGKV_SEED=<n> replays it).

import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import { KvError, QuorumError } from '../errors.ts'
import { update, EMPTY, type DvvSet } from '../version/dvv.ts'
import { ReadQuorum } from './read-quorum.ts'
import { WriteQuorum, type WriteAction } from './write-quorum.ts'
import { propertyParams } from '../../test/seed.ts'

const fcParams = propertyParams('quorum-failures properties')

const stamped: DvvSet = update(EMPTY, {}, 'a.1', new TextEncoder().encode('x'))
const up = (down: string[]) => (n: string) => !down.includes(n)
const downError = (node: string) => new KvError({ kind: 'Unavailable', node }, `${node}: down, backing off after: connection lost`)
const timedOut = (node: string) => new KvError({ kind: 'Timeout', timeoutMs: 333 }, `put to ${node} timed out after 333 ms`)

function failedWith(o: { status: string; error?: QuorumError }): QuorumError {
  assert.equal(o.status, 'failed')
  assert.ok(o.error instanceof QuorumError)
  return o.error
}

function kinds(e: QuorumError): Record<string, string> {
  return Object.fromEntries([...e.failures].map(([n, f]) => [n, (f as KvError).kind]))
}

describe('WriteQuorum failure map', () => {
  it('names a skipped (down) primary, a failed stamp and one that timed out at the deadline', () => {
    const q = new WriteQuorum({ w: 2, primaries: ['a', 'b', 'c'], fallbacks: [], isUp: up(['a']), whyDown: downError, sloppy: false })
    assert.deepEqual(q.start(), [{ kind: 'stamp', target: { node: 'b' } }])
    const bFailed = timedOut('b')
    assert.deepEqual(q.onFailed('b', bFailed), [{ kind: 'stamp', target: { node: 'c' } }])
    q.expire(1000)
    const e = failedWith(q.outcome as never)
    assert.deepEqual(kinds(e), { a: 'Unavailable', b: 'Timeout', c: 'Timeout' })
    assert.match(e.failures.get('a')!.message, /down, backing off/)
    assert.equal(e.failures.get('b'), bFailed, 'the very error the transport gave')
    assert.match(e.failures.get('c')!.message, /no reply within 1000 ms/)
    assert.deepEqual(e.data.failures.c, { kind: 'Timeout', timeoutMs: 1000, message: 'no reply within 1000 ms' })
    for (const node of ['a', 'b', 'c']) assert.match(e.message, new RegExp(`${node}: `))
    assert.match(e.message, /0 of 2 required replicas acknowledged \(none\)/)
  })

  it('names the replicas that did not ack after a stamp, and not the ones that did', () => {
    const q = new WriteQuorum({ w: 3, primaries: ['a', 'b', 'c'], fallbacks: [], isUp: up([]), sloppy: true })
    q.start()
    q.onStamped('a', stamped)
    q.onFailed('b', timedOut('b'))
    q.expire(2000)
    const e = failedWith(q.outcome as never)
    assert.deepEqual(kinds(e), { b: 'Timeout', c: 'Timeout' })
    assert.equal(e.acked, 1)
    assert.deepEqual(e.replicas, ['a'])
  })

  it('names the stamp that failed and the primary down once W is out of reach, and not the one that acked', () => {
    // Strict quorum, c down: the stamp at a fails, b stamps, and W=3 is out of reach.
    const q = new WriteQuorum({ w: 3, primaries: ['a', 'b', 'c'], fallbacks: [], isUp: up(['c']), whyDown: downError, sloppy: false })
    q.start()
    assert.deepEqual(q.onFailed('a', timedOut('a')), [{ kind: 'stamp', target: { node: 'b' } }])
    q.onStamped('b', stamped)
    const e = failedWith(q.outcome as never)
    assert.deepEqual(kinds(e), { a: 'Timeout', c: 'Unavailable' })
    assert.deepEqual(e.replicas, ['b'])
  })

  it('names a target never asked because the deadline came while waiting for the stamp', () => {
    const q = new WriteQuorum({ w: 3, primaries: ['a', 'b', 'c'], fallbacks: [], isUp: up([]), sloppy: true })
    q.start()
    q.onFailed('a', timedOut('a'))
    q.expire(900)
    const e = failedWith(q.outcome as never)
    assert.deepEqual(kinds(e), { a: 'Timeout', b: 'Timeout', c: 'Timeout' })
    assert.match(e.failures.get('b')!.message, /no reply within 900 ms/)
    assert.match(e.failures.get('c')!.message, /not asked within 900 ms: the write had no stamped state/)
  })

  it('property: a failed write names every primary and every fallback it tried that did not ack', () => {
    fc.assert(fc.property(
      fc.integer({ min: 1, max: 3 }), fc.boolean(), fc.subarray(['a', 'b', 'c', 'd', 'e']),
      fc.array(fc.constantFrom('ack', 'fail', 'silent'), { minLength: 12, maxLength: 12 }),
      (w, sloppy, down, script) => {
        const q = new WriteQuorum({ w, primaries: ['a', 'b', 'c'], fallbacks: ['d', 'e'], isUp: up(down), whyDown: downError, sloppy })
        const tried = new Set<string>()
        let queue: WriteAction[] = q.start()
        let step = 0
        while (queue.length > 0 && step < script.length) {
          const a = queue.shift()!
          tried.add(a.target.node)
          const what = script[step++]
          if (what === 'ack') queue.push(...(a.kind === 'stamp' ? q.onStamped(a.target.node, stamped) : q.onReplicated(a.target.node)))
          else if (what === 'fail') queue.push(...q.onFailed(a.target.node, timedOut(a.target.node)))
        }
        for (const a of queue) tried.add(a.target.node)
        q.expire(500)
        const o = q.outcome
        if (o.status !== 'failed') return
        const acked = new Set(o.error.replicas)
        for (const node of ['a', 'b', 'c', ...tried]) {
          if (acked.has(node)) continue
          const why = o.error.failures.get(node)
          assert.ok(why instanceof KvError, `${node} not named: ${o.error.message}`)
          assert.ok(o.error.data.failures[node]?.message, `${node} has no message in data`)
          assert.ok(o.error.message.includes(`${node}: `), `${node} not in message ${o.error.message}`)
        }
        for (const node of acked) assert.ok(!o.error.failures.has(node), `${node} acked yet named`)
      }), fcParams({ numRuns: 500 }))
  })
})

describe('ReadQuorum failure map', () => {
  it('names a replica skipped as down, and the ones not asked because R was out of reach', () => {
    const q = new ReadQuorum({ r: 3, targets: ['a', 'c'], primaries: new Set(['a', 'b', 'c']), skipped: new Map([['b', downError('b')]]) })
    assert.deepEqual(q.start(), [], 'nothing is asked when R cannot be met')
    const e = failedWith(q.outcome as never)
    assert.deepEqual(kinds(e), { a: 'Unavailable', b: 'Unavailable', c: 'Unavailable' })
    assert.match(e.failures.get('b')!.message, /down, backing off/)
    assert.match(e.failures.get('a')!.message, /not asked: only 2 replicas are up, and R=3/)
    assert.match(e.message, /read quorum not met: 0 of 3 required replicas replied \(none\); failed: b: Unavailable/)
  })

  it('names the failed replica with its error and the silent one with a timeout', () => {
    const q = new ReadQuorum({ r: 2, targets: ['a', 'b', 'c'], primaries: new Set(['a', 'b', 'c']) })
    q.start()
    q.onReply('a', null)
    q.onFailed('b', new KvError({ kind: 'Unavailable', node: 'b' }, 'b (ws://127.0.0.1:1): connection lost'))
    q.expire(750)
    const e = failedWith(q.outcome as never)
    assert.deepEqual(kinds(e), { b: 'Unavailable', c: 'Timeout' })
    assert.equal(e.acked, 1)
    assert.deepEqual(e.data.failures.c, { kind: 'Timeout', timeoutMs: 750, message: 'no reply within 750 ms' })
  })

  it('names replicas still pending when R became impossible', () => {
    const q = new ReadQuorum({ r: 3, targets: ['a', 'b', 'c'], primaries: new Set(['a', 'b', 'c']) })
    q.start()
    q.onFailed('a', timedOut('a'))
    const e = failedWith(q.outcome as never)
    assert.deepEqual(Object.keys(kinds(e)).sort(), ['a', 'b', 'c'])
    assert.match(e.failures.get('c')!.message, /no reply yet when the read gave up/)
  })

  it('a reply whose merge throws records nothing, so it can count as that replica failing', () => {
    const q = new ReadQuorum({ r: 2, targets: ['a', 'b'], primaries: new Set(['a', 'b']) })
    q.start()
    q.onReply('a', stamped)
    // A state the merge cannot take (here a malformed one; in life one over a bound).
    assert.throws(() => q.onReply('b', { vv: null, siblings: null } as never))
    assert.equal(q.outcome.status, 'pending')
    q.onFailed('b', new KvError({ kind: 'TooLarge', bytes: 5000, bytesMax: 4096 }, 'merge too large'))
    assert.deepEqual(kinds(failedWith(q.outcome as never)), { b: 'TooLarge' })
  })
})

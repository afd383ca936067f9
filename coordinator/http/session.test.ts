// The session codec and the causal floor without processes: round trips, the key and size bounds
// (oldest keys drop out first), merging a key seen twice, tampering refused before decoding, and a
// ReadQuorum that waits past R for a reply that covers the floor (asking the replicas it had not
// asked yet), or fails SessionNotMet.

import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { KvError } from '../errors.ts'
import { limits } from '../limits.ts'
import { ReadQuorum } from '../quorum/read-quorum.ts'
import { update, EMPTY } from '../version/dvv.ts'
import { emptySession, floorOf, SessionCodec, sessionKeyFrom, withKey } from './session.ts'

/** The outcome, read through a call (TypeScript narrows a getter read twice as if it could not change). */
const outcome = (q: ReadQuorum) => q.outcome
const codec = new SessionCodec(sessionKeyFrom('test'))

describe('session codec', () => {
  it('round-trips, newest first, merging a key seen again', () => {
    let s = withKey(emptySession, 'a', { n1: 1 })
    s = withKey(s, 'b', { n2: 5 })
    s = withKey(s, 'a', { n2: 2 })
    const back = codec.decode(codec.encode(s))
    assert.deepEqual(floorOf(back, 'a'), { n1: 1, n2: 2 })
    assert.deepEqual(floorOf(back, 'b'), { n2: 5 })
    assert.equal(floorOf(back, 'c'), undefined)
    assert.deepEqual(codec.decode(codec.encode(emptySession)), emptySession)
  })

  it('keeps the newest sessionKeysMax keys, and drops old ones to fit sessionCharsMax', () => {
    let s = emptySession
    for (let i = 0; i < limits.sessionKeysMax + 10; i++) s = withKey(s, `k${i}`, { n1: i + 1 })
    assert.equal(s.entries.length, limits.sessionKeysMax)
    assert.equal(floorOf(s, 'k0'), undefined)
    assert.deepEqual(floorOf(s, `k${limits.sessionKeysMax + 9}`), { n1: limits.sessionKeysMax + 10 })
    // Wide vectors: a few keys fill the characters; the newest survives.
    let wide = emptySession
    const vv = Object.fromEntries(Array.from({ length: 60 }, (_, i) => [`actor-${String(i).padStart(3, '0')}.1764000000000`, limits.counterMax]))
    for (let i = 0; i < 10; i++) wide = withKey(wide, `w${i}`, vv)
    const text = codec.encode(wide)
    assert.ok(text.length <= limits.sessionCharsMax, `${text.length}`)
    const back = codec.decode(text)
    assert.ok(back.entries.length < 10 && back.entries.length >= 1)
    assert.deepEqual(floorOf(back, 'w9'), vv)
  })

  it('refuses tampered, foreign and oversized sessions as BadRequest', () => {
    const text = codec.encode(withKey(emptySession, 'a', { n1: 1 }))
    const other = new SessionCodec(sessionKeyFrom('other'))
    const cases = [text.slice(1), text + 'A', text.replace('.', '..'), 'x', '', '.', `${text.split('.')[0]}.`, other.encode(withKey(emptySession, 'a', { n1: 1 })), 'A'.repeat(limits.sessionCharsMax + 1)]
    for (const c of cases) assert.throws(() => codec.decode(c), (e: unknown) => e instanceof KvError && e.kind === 'BadRequest', JSON.stringify(c.slice(0, 30)))
  })
})

describe('ReadQuorum with a causal floor', () => {
  const old = update(EMPTY, {}, 'n1.1', new Uint8Array([1]))
  const fresh = update(old, old.vv, 'n2.1', new Uint8Array([2]))
  const opts = { r: 1, targets: ['a', 'b', 'c'], primaries: new Set(['a', 'b', 'c']), floor: fresh.vv }

  it('waits past R for a reply that covers the floor', () => {
    const q = new ReadQuorum(opts)
    q.start()
    q.onReply('a', old)
    assert.equal(q.outcome.status, 'pending')
    q.onReply('b', fresh)
    const o = outcome(q)
    assert.ok(o.status === 'ok' && o.state?.vv['n2.1'] === 1)
  })

  it('fails SessionNotMet when every target answered without covering it, or at the deadline', () => {
    const q = new ReadQuorum(opts)
    q.start()
    q.onReply('a', old)
    q.onReply('b', null)
    q.onFailed('c')
    const o = outcome(q)
    assert.ok(o.status === 'failed' && o.error.kind === 'SessionNotMet')
    const q2 = new ReadQuorum(opts)
    q2.start()
    q2.onReply('a', old)
    q2.expire(100)
    const o2 = outcome(q2)
    assert.ok(o2.status === 'failed' && o2.error.kind === 'SessionNotMet' && o2.error.data.kind === 'SessionNotMet' && o2.error.data.timeoutMs === 100)
    // Too few replies for R is still a quorum failure.
    const q3 = new ReadQuorum({ ...opts, r: 2 })
    q3.start()
    q3.onFailed('a'); q3.onFailed('b')
    const o3 = outcome(q3)
    assert.ok(o3.status === 'failed' && o3.error.kind === 'QuorumNotMet')
  })

  it('asking R first: asks the spares once those asked answered without covering it', () => {
    const q = new ReadQuorum({ ...opts, ask: 1 })
    assert.deepEqual(q.start(), ['a'])
    q.onReply('a', old)
    assert.equal(q.outcome.status, 'pending')
    assert.deepEqual(q.takeAsks(), ['b', 'c'])
    q.onReply('c', null)
    assert.equal(q.outcome.status, 'pending')
    q.onReply('b', fresh)
    assert.equal(outcome(q).status, 'ok')
    assert.equal(q.complete, true)
  })
})

// The one rule for stored states (state-bounds.ts): each bound refuses exactly the states that break
// it and make it worse, with the typed error a caller can act on; dots of a replica's own actor that it
// never issued, and dots with two values, are refused; and sync stays a join (commutative, associative,
// idempotent) even over states that disagree about a dot's value.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import { KvError } from '../errors.ts'
import { limits } from '../limits.ts'
import { decodeContext, encodeContext } from './context.ts'
import { EMPTY, equals, sync, update, type DvvSet } from './dvv.ts'
import { boundsError, contextTextBytes, ownDotsError, syncForWrite } from './state-bounds.ts'
import { propertyParams } from '../../test/seed.ts'

const fcParams = propertyParams('state-bounds properties')

const enc = new TextEncoder()
const bytes = (s: string): Uint8Array => enc.encode(s)
const kindOf = (e: KvError | undefined): string | undefined => e?.kind

// Sizes only matter for the byte bound, which these tests pass explicitly.
const small = 100

test('siblings: the write that would make siblingsMax + 1 is refused with TooManySiblings and a context that resolves', () => {
  let s = EMPTY
  for (let i = 0; i < limits.siblingsMax; i++) s = update(s, {}, 'a.1', bytes(`v${i}`))
  assert.equal(boundsError(EMPTY, 0, s, small), undefined, 'siblingsMax itself is allowed')
  const over = update(s, {}, 'a.1', bytes('one too many'))
  const e = boundsError(s, small, over, small)
  assert.equal(kindOf(e), 'TooManySiblings')
  const data = e!.data as Extract<KvError['data'], { kind: 'TooManySiblings' }>
  assert.equal(data.siblings, limits.siblingsMax + 1)
  assert.equal(data.siblingsMax, limits.siblingsMax)
  // The context it carries covers every stored sibling: a write with it resolves them to one.
  const resolved = update(s, decodeContext(data.context), 'a.1', bytes('merged'))
  assert.equal(resolved.siblings.length, 1)
  assert.equal(boundsError(s, small, resolved, small), undefined)
})

test('siblings: a key already over the bound is not held to it by a write that does not add siblings', () => {
  let s = EMPTY
  for (let i = 0; i < limits.siblingsMax + 5; i++) s = update(s, {}, 'a.1', bytes(`v${i}`))
  assert.equal(boundsError(s, small, s, small), undefined, 'the same state again (idempotent replicate)')
  assert.equal(kindOf(boundsError(s, small, update(s, {}, 'a.1', bytes('more')), small)), 'TooManySiblings')
})

test('counters: a stamp past counterMax is refused, never an overflow or an assertion', () => {
  const stored: DvvSet = { vv: { 'a.1': limits.counterMax }, siblings: [{ actor: 'a.1', counter: limits.counterMax, value: bytes('x') }] }
  const next = update(stored, stored.vv, 'a.1', bytes('y'))
  assert.equal(next.vv['a.1'], limits.counterMax + 1)
  assert.equal(kindOf(boundsError(stored, small, next, small)), 'BadRequest')
  assert.equal(boundsError(EMPTY, 0, stored, small), undefined, 'counterMax itself is allowed')
})

test('bytes: a state over stateBytesMax is refused with TooLarge unless it shrinks', () => {
  const s = update(EMPTY, {}, 'a.1', bytes('x'))
  const e = boundsError(EMPTY, 0, s, limits.stateBytesMax + 1)
  assert.equal(kindOf(e), 'TooLarge')
  assert.deepEqual(e!.data, { kind: 'TooLarge', bytes: limits.stateBytesMax + 1, bytesMax: limits.stateBytesMax })
  assert.equal(boundsError(s, limits.stateBytesMax + 10, s, limits.stateBytesMax + 5), undefined)
})

test('context: a vector whose context would not fit contextBytesMax is refused', () => {
  const vv: Record<string, number> = {}
  // 128-character actors: ~175 bytes of context text each, so about 24 fit in 4096.
  const names = Array.from({ length: 40 }, (_, i) => `${String(i).padStart(3, '0')}.${'x'.repeat(124)}`).sort()
  let fits = 0
  for (const name of names) {
    vv[name] = 1
    const n = contextTextBytes(vv)
    let exact: number
    try { exact = encodeContext(vv).length } catch (e) { exact = (e as KvError & { data: { bytes: number } }).data.bytes }
    assert.ok(n >= exact, `contextTextBytes ${n} is never below the real length ${exact}`)
    if (n > limits.contextBytesMax) assert.equal(n, exact, 'near the limit it is exact')
    if (n <= limits.contextBytesMax) fits++
  }
  assert.ok(fits > 0 && fits < names.length)
  const state: DvvSet = { vv, siblings: [] }
  assert.equal(kindOf(boundsError(EMPTY, 0, state, small)), 'TooLarge')
})

test('own dots: a context or state claiming a dot this replica never issued is refused', () => {
  const stored = update(EMPTY, {}, 'me.1', bytes('x')) // issued (me.1, 1)
  assert.equal(ownDotsError({ 'me.1': 1 }, stored, 'me.1', 'the context'), undefined)
  assert.equal(ownDotsError({ 'other.1': 99 }, stored, 'me.1', 'the context'), undefined, 'other actors are not ours to judge')
  const e = ownDotsError({ 'me.1': 2 }, stored, 'me.1', 'the context')
  assert.equal(kindOf(e), 'BadRequest')
  assert.match(e!.message, /never|issued at most/)
  assert.equal(kindOf(ownDotsError({ 'me.1': 1 }, EMPTY, 'me.1', 'the replicated state')), 'BadRequest')
})

test('a dot with two values is refused on the write path, stored state unchanged', () => {
  const stored: DvvSet = { vv: { 'a.1': 1 }, siblings: [{ actor: 'a.1', counter: 1, value: bytes('x') }] }
  const forged: DvvSet = { vv: { 'a.1': 1 }, siblings: [{ actor: 'a.1', counter: 1, value: bytes('y') }] }
  assert.throws(() => syncForWrite(stored, forged), (e) => e instanceof KvError && e.kind === 'BadRequest' && /two values|different value/.test(e.message))
  assert.ok(equals(syncForWrite(stored, stored), stored))
})

test('property: sync is a join even when states disagree about a dot\'s value', () => {
  // Few actors, counters and values, so dots collide often.
  const stateArb = fc.array(fc.record({ actor: fc.constantFrom('a.1', 'b.1'), counter: fc.integer({ min: 1, max: 3 }), value: fc.option(fc.constantFrom('p', 'q', 'r'), { nil: null }) }), { maxLength: 4 })
    .chain(sibs => fc.record({ extra: fc.record({ 'a.1': fc.integer({ min: 0, max: 3 }), 'b.1': fc.integer({ min: 0, max: 3 }) }) }).map(({ extra }) => {
      const bySort = new Map<string, { actor: string; counter: number; value: Uint8Array | null }>()
      for (const s of sibs) bySort.set(`${s.actor}:${s.counter}`, { actor: s.actor, counter: s.counter, value: s.value === null ? null : bytes(s.value) })
      const siblings = [...bySort.values()].sort((x, y) => (x.actor < y.actor ? -1 : x.actor > y.actor ? 1 : x.counter - y.counter))
      const vv: Record<string, number> = {}
      for (const actor of ['a.1', 'b.1']) {
        const top = Math.max(extra[actor as 'a.1'], ...siblings.filter(s => s.actor === actor).map(s => s.counter))
        if (top > 0) vv[actor] = top
      }
      return { vv, siblings } as DvvSet
    }))
  fc.assert(fc.property(stateArb, stateArb, stateArb, (a, b, c) => {
    assert.ok(equals(sync(a, b), sync(b, a)), 'commutative')
    assert.ok(equals(sync(sync(a, b), c), sync(a, sync(b, c))), 'associative')
    assert.ok(equals(sync(a, a), a), 'idempotent')
  }), fcParams({ numRuns: 2000 }))
})

// Tests for context.ts: the causal context as an opaque token. Round trips are property-tested, and
// the encoder is checked against an independent one (msgpackr + Node's Buffer base64url, which the
// runtime-neutral code must not use but a test may). Garbage must fail as KvError BadRequest only.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import { pack } from 'msgpackr'
import { decodeContext, encodeContext } from './context.ts'
import { EMPTY, context, update, type VersionVector } from './dvv.ts'
import { KvError } from '../errors.ts'
import { limits } from '../limits.ts'
import { propertyParams } from '../../test/seed.ts'

const fcParams = propertyParams('context properties')

const isBadRequest = (e: unknown): boolean => e instanceof KvError && e.kind === 'BadRequest'
const token = (x: unknown): string => Buffer.from(pack(x)).toString('base64url')

const actorArb = fc.oneof(
  fc.string({ minLength: 1, maxLength: 12 }),
  fc.string({ minLength: 1, maxLength: 8, unit: 'grapheme' }),
  fc.tuple(fc.string({ minLength: 1, maxLength: 8 }), fc.nat(1000)).map(([node, inc]) => `${node}.${inc}`),
).filter((a) => a !== '__proto__')
const counterArb = fc.oneof(fc.integer({ min: 1, max: 300 }), fc.integer({ min: 1, max: limits.counterMax }))
const vvArb: fc.Arbitrary<VersionVector> = fc.dictionary(actorArb, counterArb, { maxKeys: 24, size: 'max' })

test('the empty vector is the empty string, and back', () => {
  assert.equal(encodeContext({}), '')
  assert.deepEqual(decodeContext(''), {})
})

test('a context taken from a state round-trips and is header- and cookie-safe', () => {
  const s = update(update(EMPTY, {}, 'node-a.3', new Uint8Array([1])), {}, 'node-b.1', null)
  const text = encodeContext(context(s))
  assert.match(text, /^[A-Za-z0-9_-]+$/)
  assert.deepEqual(decodeContext(text), { 'node-a.3': 1, 'node-b.1': 1 })
})

test('property: decode(encode(vv)) is vv, keys sorted; the token matches an independent encoder', () => {
  fc.assert(fc.property(vvArb, (vv) => {
    const text = encodeContext(vv)
    assert.match(text, /^[A-Za-z0-9_-]*$/)
    const sorted = Object.keys(vv).sort()
    assert.equal(text, sorted.length === 0 ? '' : token(sorted.map((a) => [a, vv[a]])))
    const back = decodeContext(text)
    assert.deepEqual(back, { ...vv }) // fc.dictionary may build null-prototype objects; decode builds plain ones
    assert.deepEqual(Object.keys(back), Object.keys(Object.fromEntries(sorted.map((a) => [a, 0]))))
    assert.equal(encodeContext(back), text)
    // Insertion order does not matter: the same vector is always the same token.
    assert.equal(encodeContext(Object.fromEntries(Object.entries(vv).reverse())), text)
  }), fcParams({ numRuns: 1000 }))
})

test('property: arbitrary text decodes to a valid vector or fails with BadRequest, nothing else', () => {
  const textArb = fc.oneof(
    fc.string({ maxLength: 64 }),
    fc.stringMatching(/^[A-Za-z0-9_-]{1,64}$/),
    fc.uint8Array({ maxLength: 48 }).map((b) => Buffer.from(b).toString('base64url')),
    fc.anything().map((x) => token(x)),
  )
  let accepted = 0
  fc.assert(fc.property(textArb, (text) => {
    let vv: VersionVector
    try {
      vv = decodeContext(text)
    } catch (e) {
      assert.ok(isBadRequest(e), `expected BadRequest, got ${String(e)}`)
      return
    }
    accepted++
    for (const [actor, counter] of Object.entries(vv)) {
      assert.ok(actor.length > 0 && Number.isSafeInteger(counter) && counter > 0)
    }
    assert.deepEqual(decodeContext(encodeContext(vv)), vv)
  }), fcParams({ numRuns: 1000 }))
  assert.ok(accepted > 0, 'the generator should produce some valid contexts (at least "")')
})

test('garbage is refused with KvError BadRequest and a clear message', () => {
  const cases: [string, string, RegExp][] = [
    ['non-alphabet characters', 'ab!c', /base64url/],
    ['standard base64 padding', token([['a', 1]]) + '=', /base64url/],
    ['standard base64 alphabet', 'ab+/', /base64url/],
    ['a lone trailing character', token([['a', 1]]) + 'A', /base64url|MessagePack/],
    ['length 1 mod 4', 'A', /base64url/],
    ['the never-used MessagePack byte', Buffer.from([0xc1]).toString('base64url'), /not valid/],
    ['truncated MessagePack', Buffer.from([0x92, 0xa1]).toString('base64url'), /MessagePack/],
    ['trailing bytes', Buffer.concat([Buffer.from(pack([['a', 1]])), Buffer.from([1])]).toString('base64url'), /MessagePack/],
    ['a map, not a list', token({ a: 1 }), /list/],
    ['a bare number', token(7), /list/],
    ['an empty list', token([]), /empty/],
    ['an entry that is not a pair', token([['a', 1, 2]]), /pair/],
    ['a non-string actor', token([[1, 2]]), /actor/],
    ['an empty actor', token([['', 2]]), /actor/],
    ['__proto__ as actor', token([['__proto__', 2]]), /actor/],
    ['a negative counter', token([['a', -1]]), /counter/],
    ['a zero counter', token([['a', 0]]), /counter/],
    ['a fractional counter', token([['a', 1.5]]), /counter/],
    ['a string counter', token([['a', '1']]), /counter/],
    ['an unsafe counter', token([['a', 2 ** 60]]), /counter/],
    ['a 64-bit counter', Buffer.from([0x91, 0x92, 0xa1, 0x61, 0xcf, 0, 0, 0, 0, 0, 0, 0, 5]).toString('base64url'), /counter/],
    ['unsorted actors', token([['b', 1], ['a', 1]]), /sorted/],
    ['a repeated actor', token([['a', 1], ['a', 2]]), /unique/],
    ['too long', 'A'.repeat(limits.contextBytesMax + 4), /contextBytesMax/],
  ]
  for (const [name, text, message] of cases) {
    assert.throws(() => decodeContext(text), (e: unknown) => {
      assert.ok(isBadRequest(e), `${name}: expected BadRequest, got ${String(e)}`)
      assert.match((e as Error).message, message, name)
      return true
    }, name)
  }
  // Counter-check: the valid neighbour of these cases is accepted, so the refusals are not blanket.
  assert.deepEqual(decodeContext(token([['a', 1], ['b', 2]])), { a: 1, b: 2 })
})

test('too many actors is refused on decode; a context too large to carry is refused on encode', () => {
  const many = Array.from({ length: limits.vectorActorsMax + 1 }, (_, i) => [String.fromCodePoint(0x4e00 + i), 1])
  assert.throws(() => decodeContext(token(many)), (e) => isBadRequest(e) && /vectorActorsMax|contextBytesMax/.test(String(e)))
  const big: VersionVector = Object.fromEntries(Array.from({ length: 400 }, (_, i) => [`node-${i}.1`, 1_000_000 + i]))
  assert.throws(() => encodeContext(big), (e) => e instanceof KvError && e.kind === 'TooLarge')
  assert.throws(() => encodeContext({ a: 0 }), isBadRequest)
})

// The hand-written state encoder against msgpackr, the reference it must match byte for byte (so
// states stored before and after it compare equal), and decode(encode(s)) = s.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import { Packr } from 'msgpackr'
import { actorIssue, type DvvSet } from '../coordinator/version/dvv.ts'
import { decodeState, encodeState, stateWriter } from './state-codec.ts'

const packr = new Packr({ useRecords: false })

function reference(state: DvvSet): Uint8Array {
  const vv: Array<string | number> = []
  for (const actor of Object.keys(state.vv)) vv.push(actor, state.vv[actor]!)
  const sibs: Array<string | number | Uint8Array | null> = []
  for (const s of state.siblings) sibs.push(s.actor, s.counter, s.value)
  return packr.pack([vv, sibs])
}

// Lengths and magnitudes on both sides of every msgpack header boundary.
// Only actors dvv.validate accepts (no `__proto__`, no lone surrogates) reach the codec.
const actor = fc.oneof(
  fc.string({ minLength: 1, maxLength: 40 }),
  fc.string({ unit: 'grapheme', minLength: 1, maxLength: 90 }),
  fc.constantFrom('n1.1764085123456', 'a'.repeat(31), 'a'.repeat(32), 'é'.repeat(16), 'x'.repeat(255), 'y'.repeat(256), 'z'.repeat(70000)),
).filter(a => actorIssue(a) === null)
const counter = fc.oneof(
  fc.integer({ min: 1, max: 300 }),
  fc.constantFrom(127, 128, 255, 256, 65535, 65536, 2 ** 32 - 1, 2 ** 32, Number.MAX_SAFE_INTEGER),
  fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }),
)
const value = fc.oneof(
  fc.constant(null),
  fc.uint8Array({ maxLength: 300 }),
  fc.constantFrom(255, 256, 65535, 65536).map(n => new Uint8Array(n).fill(n & 0xff)),
)
const state: fc.Arbitrary<DvvSet> = fc.record({
  vv: fc.dictionary(actor, counter, { maxKeys: 20 }),
  siblings: fc.array(fc.record({ actor, counter, value }), { maxLength: 20 }),
})

test('encodeState writes exactly the bytes msgpackr writes, and decodes back to the same state', () => {
  fc.assert(fc.property(state, s => {
    const mine = Buffer.from(encodeState(s))
    assert.deepEqual(mine, Buffer.from(reference(s)))
    const back = decodeState(mine)
    assert.deepEqual(back.vv, { ...s.vv })
    assert.deepEqual(back.siblings.map(x => [x.actor, x.counter, x.value && Buffer.from(x.value)]), s.siblings.map(x => [x.actor, x.counter, x.value && Buffer.from(x.value)]))
  }), { numRuns: 300 })
})

test('stateWriter writes at an offset inside a larger buffer and touches nothing around it', () => {
  fc.assert(fc.property(state, fc.nat({ max: 64 }), (s, at) => {
    const w = stateWriter(s)
    const buf = Buffer.alloc(at + w.bytes + 16, 0xee)
    w.write(buf, at)
    assert.ok(buf.subarray(0, at).every(b => b === 0xee) && buf.subarray(at + w.bytes).every(b => b === 0xee))
    assert.deepEqual(buf.subarray(at, at + w.bytes), Buffer.from(reference(s)))
  }), { numRuns: 100 })
})

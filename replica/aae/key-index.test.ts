// The anti-entropy key index (key-index.ts) against a Map model: random sets and removals over a
// pool of keys (short, long, non-ASCII, with lone surrogates of UTF-16 too), enough of them to grow
// the table and to rebuild it for tombstones and dead arena space; after each run every key's value
// and segment, the size and the listing agree with the model. Seeded (RINGKV_SEED replays).

import assert from 'node:assert/strict'
import { test } from 'node:test'
import fc from 'fast-check'
import { testSeed } from '../../test/seed.ts'
import { murmur3 } from '../../coordinator/hash32.ts'
import { KeyIndex } from './key-index.ts'

const keyArb = fc.oneof(
  fc.string({ minLength: 1, maxLength: 8 }),
  fc.string({ unit: 'binary', minLength: 1, maxLength: 40 }),
  fc.string({ minLength: 200, maxLength: 512 }),
)
const opsArb = fc.uniqueArray(keyArb, { minLength: 1, maxLength: 300 }).chain(keys => fc.tuple(
  fc.constant(keys),
  fc.array(fc.tuple(fc.nat(keys.length - 1), fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 2 ** 30 - 1 })), fc.nat(4095)), { minLength: 1, maxLength: 2000 }),
))

test('the key index agrees with a Map through sets, removals, growth and rebuilds', () => {
  const seed = testSeed('key index model')
  fc.assert(fc.property(opsArb, ([keys, ops]) => {
    const index = new KeyIndex()
    const model = new Map<string, { value: number; segment: number }>()
    for (const [k, value, segment] of ops) {
      const key = keys[k]!
      const old = index.set(key, murmur3(key), segment, value)
      assert.equal(old, model.get(key)?.value ?? 0, 'set returns the old value')
      if (value === 0) model.delete(key)
      else model.set(key, { value, segment })
    }
    assert.equal(index.size, model.size)
    for (const key of keys) assert.equal(index.get(key, murmur3(key)), model.get(key)?.value ?? 0)
    const listed = new Map<string, { value: number; segment: number }>()
    index.forEach((key, segment, value) => { assert.ok(!listed.has(key), 'listed once'); listed.set(key, { value, segment }) })
    assert.deepEqual(listed, model)
    assert.equal(index.someKeys(5).length, Math.min(5, model.size))
  }), { seed, numRuns: 150 })
})

test('the key index stays small under churn: a million sets and removals over 1,000 keys', () => {
  const index = new KeyIndex()
  for (let i = 0; i < 1_000_000; i++) index.set(`key-${i % 1000}`, murmur3(`key-${i % 1000}`), i % 4096, i % 3 === 0 ? 0 : (i % 1000) + 1)
  assert.equal(index.size, [...Array(1000).keys()].filter(k => (999_000 + k) % 3 !== 0).length)
  // Capacity follows the live keys, not the churn: nothing here may hold a million entries' worth.
  const sizes = index as unknown as { capacity: number; arena: Uint16Array }
  assert.ok(sizes.capacity <= 4096, `slots ${sizes.capacity}`)
  assert.ok(sizes.arena.length <= 65536, `arena ${sizes.arena.length}`)
})

// The anti-entropy key index (key-index.ts) against a Set model: random adds and deletes over a
// pool of keys (short, long, non-ASCII, with lone surrogates of UTF-16 too), enough of them to grow
// the table and to rebuild it for tombstones and dead arena space; after each run membership, the
// size and the listing (each key once, with its hash) agree with the model. Seeded (RINGKV_SEED
// replays).

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
  fc.array(fc.tuple(fc.nat(keys.length - 1), fc.boolean()), { minLength: 1, maxLength: 2000 }),
))

test('the key index agrees with a Set through adds, deletes, growth and rebuilds', () => {
  const seed = testSeed('key index model')
  fc.assert(fc.property(opsArb, ([keys, ops]) => {
    const index = new KeyIndex()
    const model = new Set<string>()
    for (const [k, add] of ops) {
      const key = keys[k]!
      if (add) {
        assert.equal(index.add(key, murmur3(key)), !model.has(key), 'add says whether the key was new')
        model.add(key)
      } else {
        assert.equal(index.delete(key, murmur3(key)), model.has(key), 'delete says whether the key was held')
        model.delete(key)
      }
    }
    assert.equal(index.size, model.size)
    for (const key of keys) assert.equal(index.has(key, murmur3(key)), model.has(key))
    const listed = new Set<string>()
    index.forEach((key, hash) => {
      assert.ok(!listed.has(key), 'listed once')
      assert.equal(hash, murmur3(key) >>> 0, 'listed with its hash')
      listed.add(key)
    })
    assert.deepEqual(listed, model)
    assert.equal(index.someKeys(5).length, Math.min(5, model.size))
  }), { seed, numRuns: 150 })
})

test('the key index stays small under churn: a million adds and deletes over 1,000 keys', () => {
  const index = new KeyIndex()
  for (let i = 0; i < 1_000_000; i++) {
    const key = `key-${i % 1000}`
    if (i % 3 === 0) index.delete(key, murmur3(key))
    else index.add(key, murmur3(key))
  }
  assert.equal(index.size, [...Array(1000).keys()].filter(k => (999_000 + k) % 3 !== 0).length)
  // Capacity follows the live keys, not the churn: nothing here may hold a million entries' worth.
  const sizes = index as unknown as { capacity: number; arena: Uint16Array }
  assert.ok(sizes.capacity <= 4096, `slots ${sizes.capacity}`)
  assert.ok(sizes.arena.length <= 65536, `arena ${sizes.arena.length}`)
})

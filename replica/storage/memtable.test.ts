// Memtable against a Map model: puts with merge, point reads, order, and sliced sorting.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import { Memtable } from './memtable.ts'
import { testSeed } from '../../test/seed.ts'
import { bytesEqual, unionMerge } from '../../test/storage/util.ts'

const keyArb = fc.string({ unit: fc.constantFrom('a', 'b', 'c', '/', 'é', '\u{1F600}'), maxLength: 5 })

test('memtable agrees with a Map model under random puts', () => {
  const seed = testSeed('memtable agrees with a Map model')
  fc.assert(fc.property(fc.array(fc.tuple(keyArb, fc.uint8Array({ maxLength: 3 })), { maxLength: 200, size: 'max' }), fc.boolean(), (ops, midSort) => {
    const mem = new Memtable(unionMerge)
    const model = new Map<string, Uint8Array>()
    ops.forEach(([k, v], i) => {
      mem.put(k, v)
      const old = model.get(k)
      model.set(k, old === undefined ? v : unionMerge(old, v))
      if (midSort && i % 17 === 0) mem.sortedKeys()
    })
    assert.equal(mem.size, model.size)
    for (const [k, v] of model) assert.ok(bytesEqual(mem.get(k), v), `value of ${k}`)
    const expected = [...model.keys()].sort()
    assert.deepEqual(mem.sortedKeys(), expected)
    for (const k of expected) assert.equal(mem.sortedKeys()[mem.seek(k)], k)
  }), { numRuns: 200, seed })
})

test('sliced sort equals a plain sort and yields', async () => {
  const mem = new Memtable(unionMerge)
  const keys: string[] = []
  for (let i = 0; i < 20000; i++) {
    const k = `k${(i * 7919) % 20000}`
    keys.push(k)
    mem.put(k, new Uint8Array([1]))
  }
  mem.sortedKeys() // some sorted, some not
  for (let i = 0; i < 5000; i++) mem.put(`z${i}`, new Uint8Array([2]))
  let yields = 0
  const sorted = await mem.sortKeysSliced(() => { yields++; return undefined })
  assert.ok(yields > 1)
  assert.deepEqual([...sorted], [...new Set([...keys, ...Array.from({ length: 5000 }, (_, i) => `z${i}`)])].sort())
})

test('frozen memtable refuses puts and byte count tracks merges', () => {
  const mem = new Memtable(unionMerge)
  mem.put('a', new Uint8Array([1, 2]))
  const b1 = mem.bytes
  mem.put('a', new Uint8Array([3]))
  assert.equal(mem.bytes, b1 + 1)
  mem.freeze()
  assert.throws(() => mem.put('b', new Uint8Array([1])), /frozen/)
  assert.ok(bytesEqual(mem.get('a'), new Uint8Array([1, 2, 3])))
})

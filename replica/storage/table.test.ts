// SSTable builder and reader against a Map model, bloom false-positive rate, and bit-flip
// detection in every region (data block, index, bloom, footer).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import { KvError } from '../../coordinator/errors.ts'
import { bloomHash } from './bloom.ts'
import { TableBuilder } from './table-builder.ts'
import { Table } from './table-reader.ts'
import { seededRandom, testSeed } from '../../test/seed.ts'
import { bytesEqual } from '../../test/storage/util.ts'

function build(entries: Array<[string, Uint8Array]>): Buffer {
  const b = new TableBuilder(1024)
  for (const [k, v] of entries) b.add(k, v)
  return b.finish()
}

function lookup(t: Table, key: string): Uint8Array | undefined {
  return t.get(key, bloomHash(key), Buffer.from(key, 'utf8'))
}

const keyArb = fc.string({ unit: fc.constantFrom('a', 'b', 'c', '/', 'é', '\u{1F600}', '0'), maxLength: 8 })

test('table agrees with a Map model: gets, misses and iteration from any key', () => {
  const seed = testSeed('table agrees with a Map model')
  fc.assert(fc.property(fc.dictionary(keyArb, fc.uint8Array({ maxLength: 700 }), { maxKeys: 150, size: 'max' }), fc.array(keyArb, { maxLength: 20 }), (dict, probes) => {
    const model = new Map(Object.entries(dict))
    const entries = [...model.entries()].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
    const buf = build(entries)
    const t = Table.open('t.sst', buf)
    assert.equal(t.keys, model.size)
    for (const [k, v] of model) assert.ok(bytesEqual(lookup(t, k), v), `get ${k}`)
    for (const p of probes) {
      assert.ok(bytesEqual(lookup(t, p), model.get(p)), `probe ${p}`)
      const it = t.iterator(p)
      const expected = entries.filter(([k]) => k >= p)
      const got: string[] = []
      while (it.key !== undefined) { got.push(it.key); it.next() }
      assert.deepEqual(got, expected.map(([k]) => k))
    }
  }), { numRuns: 150, seed })
})

test('builder asserts key order', () => {
  const b = new TableBuilder(0)
  b.add('b', new Uint8Array(1))
  assert.throws(() => b.add('a', new Uint8Array(1)), /out of order/)
  assert.throws(() => b.add('b', new Uint8Array(1)), /out of order/)
})

test('bloom filter: about 1 % false positives, no false negatives', () => {
  const entries: Array<[string, Uint8Array]> = []
  for (let i = 0; i < 20000; i++) entries.push([`user:${String(i).padStart(8, '0')}`, new Uint8Array(0)])
  const t = Table.open('t.sst', build(entries))
  for (const [k] of entries) assert.ok(t.mayContain(bloomHash(k)))
  let fp = 0
  const n = 50000
  for (let i = 0; i < n; i++) if (t.mayContain(bloomHash(`other:${i}`))) fp++
  const rate = fp / n
  assert.ok(rate < 0.02, `false positive rate ${rate}`)
})

test('a flipped bit anywhere is detected at open and names the offset', () => {
  const random = seededRandom(testSeed('table bit flips'))
  const entries: Array<[string, Uint8Array]> = []
  for (let i = 0; i < 300; i++) entries.push([`k${String(i).padStart(5, '0')}`, new Uint8Array(100).fill(i & 255)])
  const good = build(entries)
  Table.open('t.sst', good)
  const footer = good.length - 32
  const indexOffset = good.readUInt32LE(footer)
  const bloomOffset = good.readUInt32LE(footer + 4)
  const regions: Array<[string, number, number]> = [
    ['data', 0, indexOffset], ['index', indexOffset, bloomOffset], ['bloom', bloomOffset, footer], ['footer', footer, good.length],
  ]
  for (const [name, start, end] of regions) {
    for (let trial = 0; trial < 40; trial++) {
      const bad = Buffer.from(good)
      const pos = start + Math.floor(random() * (end - start))
      bad[pos]! ^= 1 << Math.floor(random() * 8)
      assert.throws(() => Table.open('x.sst', bad), (e: unknown) => {
        assert.ok(e instanceof KvError && e.data.kind === 'Corruption', `flip in ${name} at ${pos}: ${String(e)}`)
        assert.equal(e.data.file, 'x.sst')
        assert.ok(e.data.offset >= 0 && e.data.offset <= pos + 32, `offset ${e.data.offset} for a flip at ${pos}`)
        return true
      }, `flip in ${name} at ${pos} not detected`)
    }
  }
})

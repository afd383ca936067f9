// Version-1 SSTables (whole-array bloom filter) are no longer written but must still be read: a
// replica upgraded in place opens the tables it wrote before. Checked three ways: the version-1
// bloom probe against a minimal version-1 filter builder (the old writer's loop, kept here), that
// builder against a file the old writer itself made (test/storage/fixtures/table-v1.sst, see
// make-table-v1.ts), and the file through Table.open and through the engine, compaction included.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { copyFileSync, readFileSync } from 'node:fs'
import { mkdir, readFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { crc32c } from '@node-rs/crc32'
import fc from 'fast-check'
import { KvError } from '../../coordinator/errors.ts'
import { testSeed } from '../../test/seed.ts'
import { tableV1Entries } from '../../test/storage/fixtures/table-v1-contents.ts'
import { bytesEqual, newerWins, tempDir } from '../../test/storage/util.ts'
import { bloomHash, bloomMayContainV1 } from './bloom.ts'
import { tablePath, tablesDir } from './disk-layout.ts'
import { openEngine } from './engine.ts'
import { writeManifest } from './manifest.ts'
import { Table } from './table-reader.ts'

const fixture = fileURLToPath(new URL('../../test/storage/fixtures/table-v1.sst', import.meta.url))
/** The bloom parameters the version-1 writer used (and the fixture was written with). */
const v1BitsPerKey = 10
const v1Probes = 7
const footerBytes = 32

/** A version-1 filter, built as the version-1 TableBuilder.finish did: bits only (no probes byte, no crc). */
function bloomV1(keys: readonly string[]): Buffer {
  const nbits = Math.max(64, keys.length * v1BitsPerKey)
  const nbytes = Math.ceil(nbits / 8)
  const bits = Buffer.alloc(nbytes)
  const totalBits = nbytes * 8
  for (const key of keys) {
    let h = bloomHash(key)
    const delta = ((h >>> 17) | (h << 15)) >>> 0
    for (let p = 0; p < v1Probes; p++) {
      const bit = h % totalBits
      bits[bit >>> 3]! |= 1 << (bit & 7)
      h = (h + delta) >>> 0
    }
  }
  return bits
}

function lookup(t: Table, key: string): Uint8Array | undefined {
  return t.get(key, bloomHash(key), Buffer.from(key, 'utf8'))
}

test('version-1 bloom probe finds every key of a version-1 filter', () => {
  const seed = testSeed('version-1 bloom: no false negatives')
  fc.assert(fc.property(fc.uniqueArray(fc.string({ maxLength: 12 }), { maxLength: 400 }), (keys) => {
    const bits = bloomV1(keys)
    for (const k of keys) assert.ok(bloomMayContainV1(bits, 0, bits.length * 8, v1Probes, bloomHash(k)), `key ${JSON.stringify(k)}`)
  }), { numRuns: 200, seed })
})

test('version-1 bloom probe: about 1 % false positives over 20 000 keys (it is not a constant true)', () => {
  const keys = Array.from({ length: 20000 }, (_, i) => `user:${String(i).padStart(8, '0')}`)
  const bits = bloomV1(keys)
  let fp = 0
  const n = 50000
  for (let i = 0; i < n; i++) if (bloomMayContainV1(bits, 0, bits.length * 8, v1Probes, bloomHash(`other:${i}`))) fp++
  assert.ok(fp / n < 0.02, `false positive rate ${fp / n}`)
  assert.ok(fp > 0, 'no false positive at all: the probe cannot be reading the filter the way it was built')
})

test('the fixture is a version-1 table whose bloom bits are what the version-1 builder makes', () => {
  const buf = readFileSync(fixture)
  const f = buf.length - footerBytes
  assert.equal(buf.readUInt32LE(f + 16), 1, 'footer version')
  const bloomOffset = buf.readUInt32LE(f + 4)
  assert.equal(buf[bloomOffset], v1Probes)
  const bits = buf.subarray(bloomOffset + 1, f - 4)
  assert.ok(bits.equals(bloomV1(tableV1Entries().map(([k]) => k))), 'bloom bits differ from the version-1 builder')
})

test('a version-1 table file opens and reads: every key, misses, iteration, and damage is still caught', () => {
  const buf = readFileSync(fixture)
  const entries = tableV1Entries()
  const model = new Map(entries)
  for (const verify of [true, false]) {
    const t = Table.open('table-v1.sst', buf, verify)
    assert.equal(t.keys, entries.length)
    assert.equal(t.minKey, entries[0]![0])
    assert.equal(t.maxKey, entries.at(-1)![0])
    for (const [k, v] of entries) {
      assert.ok(t.mayContain(bloomHash(k)), `bloom misses ${k}`)
      assert.ok(bytesEqual(lookup(t, k), v), `get ${k}`)
    }
    for (const miss of ['user:00001', 'user:000010', 'é/00000', 'a', '', 'zzz', 'user:', '\u{1F600}/00003']) {
      assert.equal(lookup(t, miss), model.get(miss), `miss ${JSON.stringify(miss)}`)
    }
    for (const from of [undefined, '', 'a00100', 'user:00250', 'é', '\u{1F600}/00499', '\u{FFFF}']) {
      const it = t.iterator(from)
      const got: string[] = []
      while (it.key !== undefined) {
        assert.ok(bytesEqual(it.value, model.get(it.key)), `iterated value of ${it.key}`)
        got.push(it.key)
        it.next()
      }
      assert.deepEqual(got, entries.map(([k]) => k).filter((k) => from === undefined || k >= from), `iterator from ${JSON.stringify(from)}`)
    }
  }
  const f = buf.length - footerBytes
  const bloomOffset = buf.readUInt32LE(f + 4)
  for (const pos of [100, buf.readUInt32LE(f) + 10, bloomOffset + 20, f + 2]) {
    const bad = Buffer.from(buf)
    bad[pos]! ^= 0x08
    assert.throws(() => Table.open('bad.sst', bad), (e: unknown) => e instanceof KvError && e.data.kind === 'Corruption', `flip at ${pos}`)
  }
})

test('the engine opens a directory holding a version-1 table, and compacts it into version 2', async () => {
  const { dir, cleanup } = tempDir('table-v1')
  try {
    const buf = readFileSync(fixture)
    const entries = tableV1Entries()
    await mkdir(tablesDir(dir), { recursive: true })
    const info = { id: '000001', file: '000001.sst', bytes: buf.length, keys: entries.length, crc32c: crc32c(buf), tier: 0 }
    copyFileSync(fixture, tablePath(dir, info))
    await writeManifest(dir, { version: 1, tables: [info], nextTableId: 2, walSegmentMin: 0 }, true)

    let e = await openEngine({ dir, merge: newerWins, obsoleteTableGraceMs: 0 })
    for (const [k, v] of entries) assert.ok(bytesEqual(e.get(k), v), `get ${k} from the version-1 table`)
    // Three more tier-0 tables (each overwriting some keys) make four: compaction merges all of them.
    for (let r = 0; r < 3; r++) {
      await Promise.all(entries.filter((_, i) => i % 5 === r).map(([k]) => e.put(k, Buffer.from(`new ${r} ${k}`))))
      await e.flush()
    }
    await e.compact()
    const m = e.manifest()
    assert.equal(m.tables.length, 1, JSON.stringify(m))
    assert.equal(m.tables[0]!.tier, 1)
    const merged = await readFile(tablePath(dir, m.tables[0]!))
    assert.equal(merged.readUInt32LE(merged.length - footerBytes + 16), 2, 'the compacted table is written in version 2')
    const expect = (i: number, k: string, v: Uint8Array): Uint8Array => (i % 5 < 3 ? Buffer.from(`new ${i % 5} ${k}`) : v)
    await e.close()
    e = await openEngine({ dir, merge: newerWins })
    entries.forEach(([k, v], i) => assert.ok(bytesEqual(e.get(k), expect(i, k, v)), `get ${k} after compaction and reopen`))
    await e.close()
  } finally {
    cleanup()
  }
})

// The whole engine against a Map model under random puts, flushes, compactions, reopens and scans
// with cursors, for an order-insensitive merge (set union, like DVV sync) and an order-sensitive one
// (newer wins); plus corruption at open, torn WAL tails, and manifest listeners.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { appendFileSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import fc from 'fast-check'
import { KvError } from '../../coordinator/errors.ts'
import type { Engine, EngineManifest } from './engine-types.ts'
import { openEngine, readTableFile } from './engine.ts'
import type { Merge } from './memtable.ts'
import { testSeed } from '../../test/seed.ts'
import { bytesEqual, newerWins, tempDir, unionMerge, walDataEnd, walGroupOffsets } from '../../test/storage/util.ts'

type Op =
  | { t: 'put'; key: string; value: Uint8Array }
  | { t: 'flush' }
  | { t: 'compact' }
  | { t: 'reopen' }
  | { t: 'scan'; prefix: string; limit: number }

const keyArb = fc.tuple(fc.constantFrom('a/', 'b/', 'ab/', '', 'é/'), fc.integer({ min: 0, max: 40 })).map(([p, i]) => `${p}${i}`)
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 20, arbitrary: fc.record({ t: fc.constant('put' as const), key: keyArb, value: fc.uint8Array({ minLength: 1, maxLength: 40 }) }) },
  { weight: 2, arbitrary: fc.constant({ t: 'flush' as const }) },
  { weight: 1, arbitrary: fc.constant({ t: 'compact' as const }) },
  { weight: 1, arbitrary: fc.constant({ t: 'reopen' as const }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('scan' as const), prefix: fc.constantFrom('a', 'a/', 'b/', '', 'é', 'zz'), limit: fc.integer({ min: 1, max: 7 }) }) },
)

async function checkAgainstModel(merge: Merge, ops: Op[]): Promise<void> {
  const { dir, cleanup } = tempDir('engine')
  const model = new Map<string, Uint8Array>()
  const open = () => openEngine({ dir, merge, memtableBytesMax: 4096, fsync: false })
  let e: Engine = await open()
  try {
    const pending: Array<Promise<void>> = []
    for (const op of ops) {
      switch (op.t) {
        case 'put': {
          pending.push(e.put(op.key, op.value))
          const old = model.get(op.key)
          model.set(op.key, old === undefined ? op.value : merge(old, op.value))
          assert.ok(bytesEqual(e.get(op.key), model.get(op.key)), `get after put ${op.key}`)
          break
        }
        case 'flush': await e.flush(); break
        case 'compact': await e.compact(); break
        case 'reopen':
          await Promise.all(pending.splice(0))
          await e.close()
          e = await open()
          break
        case 'scan': {
          const expected = [...model.keys()].filter((k) => k.startsWith(op.prefix)).sort()
          const got: string[] = []
          let after: string | undefined
          for (let pages = 0; pages < 1000; pages++) {
            const r = e.scan(op.prefix, after === undefined ? { limit: op.limit } : { limit: op.limit, after })
            assert.ok(r.entries.length <= op.limit)
            for (const [k, v] of r.entries) {
              got.push(k)
              assert.ok(bytesEqual(v, model.get(k)), `scan value of ${k}`)
            }
            if (r.cursor === undefined) break
            assert.equal(r.cursor, r.entries[r.entries.length - 1]![0])
            after = r.cursor
          }
          assert.deepEqual(got, expected)
          break
        }
      }
    }
    await Promise.all(pending)
    for (const [k, v] of model) assert.ok(bytesEqual(e.get(k), v), `final get ${k}`)
    assert.equal(e.get('never-written'), undefined)
    await e.close()
    e = await open()
    for (const [k, v] of model) assert.ok(bytesEqual(e.get(k), v), `get after final reopen ${k}`)
  } finally {
    await e.close()
    cleanup()
  }
}

test('engine agrees with a Map model (set-union merge)', async () => {
  const seed = testSeed('engine model, set-union merge')
  await fc.assert(fc.asyncProperty(fc.array(opArb, { minLength: 50, maxLength: 250, size: 'max' }), (ops) => checkAgainstModel(unionMerge, ops)), { numRuns: 50, seed })
})

test('engine agrees with a Map model (newer-wins merge: version order matters)', async () => {
  const seed = testSeed('engine model, newer-wins merge')
  await fc.assert(fc.asyncProperty(fc.array(opArb, { minLength: 50, maxLength: 250, size: 'max' }), (ops) => checkAgainstModel(newerWins, ops)), { numRuns: 50, seed })
})

test('many flushes trigger compactions; manifest listeners fire; files match the manifest', async () => {
  const { dir, cleanup } = tempDir('engine')
  const e = await openEngine({ dir, merge: newerWins, memtableBytesMax: 8192, obsoleteTableGraceMs: 0 })
  try {
    const seen: EngineManifest[] = []
    e.onManifest((m) => seen.push(m))
    const ps: Array<Promise<void>> = []
    for (let i = 0; i < 3000; i++) {
      ps.push(e.put(`k${i % 700}`, Buffer.from(`v${i}`)))
      if (i % 100 === 99) await Promise.all(ps.splice(0))
    }
    await e.flush()
    for (let i = 0; i < 5; i++) await e.compact()
    const s = e.stats()
    assert.ok(s.flushes >= 10 && s.compactions >= 1, JSON.stringify(s))
    assert.ok(seen.length >= s.flushes + s.compactions - 1)
    const m = e.manifest()
    assert.deepEqual(readdirSync(join(dir, 'tables')).sort(), m.tables.map((t) => t.file).sort())
    for (const t of m.tables) assert.equal((await readTableFile(dir, t)).length, t.bytes)
    for (let i = 2300; i < 3000; i++) assert.equal(Buffer.from(e.get(`k${i % 700}`)!).toString(), `v${i}`)
    assert.equal(readdirSync(join(dir, 'wal')).length <= 1, true, 'flushed WAL segments are deleted')
  } finally {
    await e.close()
    cleanup()
  }
})

test('a flipped bit in a table file fails the open with Corruption naming the file', async () => {
  const { dir, cleanup } = tempDir('engine')
  try {
    let e = await openEngine({ dir, merge: newerWins, memtableBytesMax: 1 << 20 })
    for (let i = 0; i < 500; i++) void e.put(`k${i}`, new Uint8Array(64).fill(i & 255))
    await e.flush()
    const t = e.manifest().tables[0]!
    await e.close()
    const file = join(dir, 'tables', t.file)
    const good = readFileSync(file)
    for (const pos of [10, Math.floor(good.length / 2), good.length - 40, good.length - 1]) {
      const bad = Buffer.from(good)
      bad[pos]! ^= 4
      writeFileSync(file, bad)
      await assert.rejects(openEngine({ dir, merge: newerWins }), (err: unknown) => {
        assert.ok(err instanceof KvError && err.data.kind === 'Corruption', String(err))
        assert.equal(err.data.file, file)
        assert.ok(err.data.offset <= pos)
        return true
      })
    }
    writeFileSync(file, good)
    e = await openEngine({ dir, merge: newerWins })
    assert.equal(e.get('k7')![0], 7)
    await e.close()
  } finally {
    cleanup()
  }
})

test('WAL: a torn tail is truncated on reopen and every acknowledged put survives; a mid-log flip is corruption', async () => {
  const { dir, cleanup } = tempDir('engine')
  try {
    let e = await openEngine({ dir, merge: newerWins })
    // Ten batches, each awaited: ten WAL groups.
    for (let b = 0; b < 10; b++) {
      const ps: Array<Promise<void>> = []
      for (let i = b * 20; i < b * 20 + 20; i++) ps.push(e.put(`k${i}`, Buffer.from(`value-${i}`)))
      await Promise.all(ps)
    }
    await e.close()
    const walDir = join(dir, 'wal')
    const seg = join(walDir, readdirSync(walDir).sort().at(-1)!)
    const acked = walDataEnd(readFileSync(seg))
    // The segment is zero-filled past its data; junk at its very end is a torn write.
    assert.ok(statSync(seg).size > acked)
    appendFileSync(seg, Buffer.from([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]))
    const logs: string[] = []
    e = await openEngine({ dir, merge: newerWins, log: (m, f) => logs.push(`${m} ${JSON.stringify(f)}`) })
    assert.ok(logs.some((l) => l.includes('truncating torn tail') && l.includes(`"offset":${acked}`)), logs.join('\n'))
    for (let i = 0; i < 200; i++) assert.equal(Buffer.from(e.get(`k${i}`)!).toString(), `value-${i}`)
    await e.close()
    assert.equal(statSync(seg).size, acked)
    const bad = readFileSync(seg)
    const groups = walGroupOffsets(bad)
    assert.equal(groups.length, 10)
    bad[groups[3]! + 40]! ^= 1
    writeFileSync(seg, bad)
    await assert.rejects(openEngine({ dir, merge: newerWins }), (err: unknown) =>
      err instanceof KvError && err.data.kind === 'Corruption' && err.data.file === seg && err.data.offset === groups[3])
  } finally {
    cleanup()
  }
})

test('unreferenced table files and tmp files are deleted at open', async () => {
  const { dir, cleanup } = tempDir('engine')
  try {
    let e = await openEngine({ dir, merge: newerWins })
    await e.put('a', Buffer.from('1'))
    await e.flush()
    await e.close()
    writeFileSync(join(dir, 'tables', '000099.sst'), 'garbage')
    writeFileSync(join(dir, 'tables', '000100.sst.tmp'), 'garbage')
    writeFileSync(join(dir, 'MANIFEST.json.tmp'), 'garbage')
    e = await openEngine({ dir, merge: newerWins })
    assert.deepEqual(readdirSync(join(dir, 'tables')), ['000001.sst'])
    assert.equal(Buffer.from(e.get('a')!).toString(), '1')
    await e.close()
  } finally {
    cleanup()
  }
})

test('put validates key and value sizes', async () => {
  const { dir, cleanup } = tempDir('engine')
  const e = await openEngine({ dir, merge: newerWins })
  try {
    await assert.rejects(e.put('x'.repeat(600), new Uint8Array(1)), (err: unknown) => err instanceof KvError && err.kind === 'TooLarge')
    assert.equal(e.get('x'.repeat(600)), undefined)
  } finally {
    await e.close()
    cleanup()
  }
})

test('compacted-away table files stay for the grace period, then go; leftovers are deleted at open', async () => {
  const { dir, cleanup } = tempDir('engine')
  const fill = async (e: Engine): Promise<void> => {
    for (let r = 0; r < 6; r++) {
      const ps: Array<Promise<void>> = []
      for (let i = 0; i < 50; i++) ps.push(e.put(`k${r}-${i}`, Buffer.from(`v${r}-${i}`)))
      await Promise.all(ps)
      await e.flush()
    }
    for (let i = 0; i < 3; i++) await e.compact()
  }
  try {
    let e = await openEngine({ dir, merge: newerWins, obsoleteTableGraceMs: 300 })
    await fill(e)
    assert.ok(e.stats().compactions >= 1)
    const live = e.manifest().tables.map((t) => t.file).sort()
    const onDisk = () => readdirSync(join(dir, 'tables')).sort()
    const obsolete = onDisk().filter((f) => !live.includes(f))
    assert.ok(obsolete.length >= 4, `obsolete files kept during the grace period: ${onDisk().join(',')}`)
    await new Promise((r) => setTimeout(r, 600))
    assert.deepEqual(onDisk(), live)
    // Default grace (60 s): still there at close, deleted by the next open.
    await e.put('z', Buffer.from('1'))
    await fill(e)
    const live2 = e.manifest().tables.map((t) => t.file).sort()
    await e.close()
    e = await openEngine({ dir, merge: newerWins })
    assert.deepEqual(onDisk(), live2)
    assert.equal(Buffer.from(e.get('k5-49')!).toString(), 'v5-49')
    await e.close()
  } finally {
    cleanup()
  }
})

test('put with supersedes stores the value without merging in the memtable; default merges', async () => {
  const { dir, cleanup } = tempDir('engine')
  let merges = 0
  const counting: Merge = (a, b) => { merges++; return unionMerge(a, b) }
  const e = await openEngine({ dir, merge: counting })
  try {
    await e.put('a', Uint8Array.from([1]))
    await e.put('a', Uint8Array.from([1, 2]), { supersedes: true })
    assert.equal(merges, 0)
    assert.deepEqual([...e.get('a')!], [1, 2])
    await e.put('a', Uint8Array.from([3]))
    assert.equal(merges, 1)
    assert.deepEqual([...e.get('a')!], [1, 2, 3])
    // Across a flush, reads still merge the table's version with the memtable's.
    await e.flush()
    await e.put('a', Uint8Array.from([1, 2, 3, 4]), { supersedes: true })
    assert.deepEqual([...e.get('a')!], [1, 2, 3, 4])
  } finally {
    await e.close()
    cleanup()
  }
})

test('an entry merged past the old 8 MiB cap flushes, and a reopen replays and flushes it again (finding 1)', async () => {
  const { mergeStates, encodeState, decodeState } = await import('../state-codec.ts')
  const { dir, cleanup } = tempDir('engine-big-entry')
  try {
    let e = await openEngine({ dir, merge: mergeStates, fsync: false })
    // Twelve 1 MiB siblings from different actors, each put on its own, merged by the memtable.
    const value = new Uint8Array(1024 * 1024).fill(3)
    for (let i = 0; i < 12; i++) {
      const actor = `a${String(i).padStart(2, '0')}.1`
      await e.put('k', encodeState({ vv: { [actor]: 1 }, siblings: [{ actor, counter: 1, value }] }))
    }
    assert.equal(decodeState(e.get('k')!).siblings.length, 12)
    await e.close()
    // Reopen: WAL replay merges the 12 records again; the flush that used to fail now succeeds.
    e = await openEngine({ dir, merge: mergeStates, fsync: false })
    await e.flush()
    assert.equal(e.failure(), undefined)
    assert.ok(e.stats().tables >= 1)
    assert.equal(decodeState(e.get('k')!).siblings.length, 12)
    await e.put('other', new Uint8Array([1]))
    await e.close()
  } finally {
    cleanup()
  }
})

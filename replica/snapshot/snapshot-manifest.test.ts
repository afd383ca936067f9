// The snapshot manifest round-trips, and the engine manifest inside it passes exactly the engine's
// own rules (storage/manifest.ts): each broken engine manifest is refused by decodeSnapshotManifest
// with the same problem the engine names when it loads MANIFEST.json, and nothing the engine would
// accept is refused. A restore therefore never writes a MANIFEST.json the engine then refuses.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { KvError } from '../../coordinator/errors.ts'
import type { EngineManifest } from '../storage/engine-types.ts'
import { validateManifest } from '../storage/manifest.ts'
import { decodeSnapshotManifest, encodeSnapshotManifest, snapshotManifestVersion, type SnapshotManifest } from './snapshot-manifest.ts'

const engine: EngineManifest = {
  version: 1,
  tables: [
    { id: '000007', file: '000007.sst', bytes: 4096, keys: 10, crc32c: 0xffffffff, tier: 0 },
    { id: '000003', file: '000003.sst', bytes: 100, keys: 1, crc32c: 0, tier: 1 },
  ],
  nextTableId: 8,
  walSegmentMin: 5,
}

function snapshot(e: unknown): SnapshotManifest {
  return {
    version: snapshotManifestVersion, seq: 4, createdAt: 1_700_000_000_000, cluster: 'c', node: 'n1', incarnation: 2,
    engine: e as EngineManifest, tableSizes: { '000007.sst': 4096, '000003.sst': 100 },
  }
}

test('a snapshot manifest round-trips, its engine manifest byte for byte', () => {
  const m = snapshot(engine)
  const back = decodeSnapshotManifest(encodeSnapshotManifest(m))
  assert.deepEqual(back, m)
  assert.equal(JSON.stringify(back.engine), JSON.stringify(engine), 'field order kept (restore writes it as MANIFEST.json)')
})

test('a broken engine manifest is refused with the engine\'s own words', () => {
  const table = engine.tables[0]!
  const cases: Array<[string, unknown]> = [
    ['file outside tables/', { ...engine, tables: [{ ...table, file: '../../NODE.json' }] }],
    ['file not named by its id', { ...engine, tables: [{ ...table, file: '000008.sst' }] }],
    ['id not digits', { ...engine, tables: [{ ...table, id: 'x7', file: 'x7.sst' }] }],
    ['id not below nextTableId', { ...engine, nextTableId: 7 }],
    ['id listed twice', { ...engine, tables: [table, table] }],
    ['crc32c above 32 bits', { ...engine, tables: [{ ...table, crc32c: 2 ** 32 }] }],
    ['negative bytes', { ...engine, tables: [{ ...table, bytes: -1 }] }],
    ['nextTableId 0', { ...engine, tables: [], nextTableId: 0 }],
    ['walSegmentMin not an integer', { ...engine, walSegmentMin: 1.5 }],
    ['unknown version', { ...engine, version: 2 }],
    ['engine not an object', 7],
  ]
  for (const [what, bad] of cases) {
    let problem = ''
    assert.throws(() => validateManifest('MANIFEST.json', bad), (e: unknown) => {
      assert.ok(e instanceof KvError && e.data.kind === 'Corruption', `${what}: ${String(e)}`)
      problem = e.message.replace('manifest MANIFEST.json is invalid: ', '')
      return true
    }, `${what}: the engine accepts it`)
    assert.throws(() => decodeSnapshotManifest(encodeSnapshotManifest(snapshot(bad))), (e: unknown) => {
      assert.ok(e instanceof Error)
      assert.equal(e.message, `invalid snapshot manifest: engine: ${problem}`, what)
      return true
    }, `${what}: the snapshot manifest accepts it`)
  }
  // Without the field the schema refuses it before the engine's rules run.
  const { engine: _, ...noEngine } = snapshot(engine)
  assert.throws(() => decodeSnapshotManifest(new TextEncoder().encode(JSON.stringify(noEngine))), /invalid snapshot manifest: engine/)
})

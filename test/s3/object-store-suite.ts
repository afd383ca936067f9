// The one conformance suite every ObjectStore backend passes (Replicache's runAll(name, factory),
// Hono's runTest({ newRouter })): the embedded s3rver (s3rver.test.ts) and any external
// S3-compatible endpoint: Swift's s3api in CI, MinIO for deployments (external-s3.test.ts).
// It covers the object operations the snapshot path uses and then the whole snapshot/restore cycle
// with the real storage engine: write, snapshot, wipe the data directory, restore, read every key.
//
// Every run works under a fresh random prefix and deletes what it wrote, so it can share a
// long-lived bucket with other runs. The prefix stays random even when RINGKV_SEED replays a run
// (two replays must not share objects); the bytes written come from the printed seed.

import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { seededBytes, seededRandom, testSeed } from '../seed.ts'
import { isKvError } from '../../coordinator/errors.ts'
import type { ObjectStore } from '../../replica/snapshot/object-store.ts'
import { restoreFromSnapshot } from '../../replica/snapshot/restore.ts'
import { manifestsPrefix, tablesPrefix } from '../../replica/snapshot/snapshot-manifest.ts'
import { Snapshotter } from '../../replica/snapshot/snapshotter.ts'

export interface ObjectStoreFixture {
  /** A client of the store under test; small page and batch sizes force pagination and batching. */
  makeStore(opts?: { listPageKeys?: number; deleteBatchKeys?: number }): ObjectStore
  /** A client of the same kind whose endpoint nothing listens on. */
  makeUnreachableStore(): ObjectStore
  close(): Promise<void>
}

const MiB = 1024 * 1024
const enc = new TextEncoder()
const dec = new TextDecoder()

export function runObjectStoreSuite(name: string, setup: () => Promise<ObjectStoreFixture>): void {
  describe(`object store conformance: ${name}`, () => {
    let fx: ObjectStoreFixture
    let store: ObjectStore
    const root = `suite-${Date.now().toString(36)}-${randomBytes(4).toString('hex')}`
    const random = seededRandom(testSeed(`object store conformance: ${name}`))
    const randomBytesSeeded = (n: number): Buffer => seededBytes(random, n)
    const k = (s: string): string => `${root}/${s}`

    before(async () => {
      fx = await setup()
      store = fx.makeStore()
    })

    after(async () => {
      if (store !== undefined) await store.delete(await store.list(`${root}/`)).catch(() => {})
      await fx?.close()
    })

    it('put then get returns the same bytes, and put overwrites', async () => {
      const bytes = randomBytesSeeded(3000)
      await store.put(k('a/one'), bytes)
      assert.deepEqual(Buffer.from((await store.get(k('a/one')))!), bytes)
      await store.put(k('a/one'), enc.encode('second'))
      assert.equal(dec.decode(await store.get(k('a/one'))), 'second')
      await store.put(k('a/empty'), new Uint8Array(0))
      assert.equal((await store.get(k('a/empty')))?.byteLength, 0)
    })

    it('get and getRange of a missing key are undefined, not errors', async () => {
      assert.equal(await store.get(k('missing/nothing-here')), undefined)
      assert.equal(await store.getRange(k('missing/nothing-here'), 0, 9), undefined)
    })

    it('getRange returns exactly the inclusive byte range', async () => {
      const bytes = randomBytesSeeded(10_000)
      await store.put(k('range/obj'), bytes)
      assert.deepEqual(Buffer.from((await store.getRange(k('range/obj'), 0, 0))!), bytes.subarray(0, 1))
      assert.deepEqual(Buffer.from((await store.getRange(k('range/obj'), 1234, 5677))!), bytes.subarray(1234, 5678))
      assert.deepEqual(Buffer.from((await store.getRange(k('range/obj'), 9990, 9999))!), bytes.subarray(9990))
    })

    it('list by prefix walks every page, in order, and nothing outside the prefix', async () => {
      const keys = Array.from({ length: 31 }, (_, i) => k(`list/p/${String(i).padStart(3, '0')}`))
      for (const key of keys) await store.put(key, enc.encode(key))
      await store.put(k('list/q/outside'), enc.encode('x'))
      await store.put(k('list/pp'), enc.encode('x')) // shares the string prefix "list/p" but not "list/p/"
      const paged = fx.makeStore({ listPageKeys: 4 })
      assert.deepEqual(await paged.list(k('list/p/')), keys)
      assert.deepEqual(await store.list(k('list/p/')), keys)
      assert.deepEqual(await paged.list(k('list/none/')), [])
    })

    it('delete removes keys in batches; missing keys are fine', async () => {
      const keys = Array.from({ length: 23 }, (_, i) => k(`del/${String(i).padStart(3, '0')}`))
      for (const key of keys) await store.put(key, enc.encode(key))
      const batched = fx.makeStore({ deleteBatchKeys: 5 })
      await batched.delete([...keys.slice(0, 20), k('del/never-existed')])
      assert.deepEqual(await store.list(k('del/')), keys.slice(20))
      await batched.delete([])
      await store.delete(keys.slice(20))
      assert.deepEqual(await store.list(k('del/')), [])
    })

    it('multipart upload of 12 MiB with 5 MiB parts, from memory and from a file', async () => {
      const bytes = randomBytesSeeded(12 * MiB)
      await store.putLarge(k('big/mem'), bytes, { partBytes: 5 * MiB })
      const got = await store.get(k('big/mem'))
      assert.equal(got?.byteLength, bytes.byteLength)
      assert.ok(Buffer.from(got!).equals(bytes), 'multipart object equals its body')
      // A range across the first part boundary.
      assert.deepEqual(Buffer.from((await store.getRange(k('big/mem'), 5 * MiB - 10, 5 * MiB + 9))!), bytes.subarray(5 * MiB - 10, 5 * MiB + 10))

      const dir = await mkdtemp(join(tmpdir(), 'ringkv-suite-'))
      try {
        await writeFile(join(dir, 'big.bin'), bytes)
        await store.putLarge(k('big/file'), { path: join(dir, 'big.bin'), bytes: bytes.byteLength }, { partBytes: 5 * MiB })
        assert.ok(Buffer.from((await store.get(k('big/file')))!).equals(bytes), 'multipart from a file equals the file')
      } finally {
        await rm(dir, { recursive: true, force: true })
      }
    })

    it('snapshot/restore cycle: write, snapshot, wipe the data directory, restore, read every key', async (t) => {
      const { openEngine } = await import('../../replica/storage/engine.ts')
      const merge = (_older: Uint8Array, newer: Uint8Array): Uint8Array => newer
      const dataDir = await mkdtemp(join(tmpdir(), 'ringkv-snap-'))
      const cluster = root
      const node = 'node-a'
      const logs: string[] = []
      const log = (msg: string): void => { logs.push(msg) }
      let engine = await openEngine({ dir: dataDir, merge, memtableBytesMax: 1 * MiB })
      let snap: Snapshotter | undefined
      try {
        // A 5 MiB multipart threshold makes the biggest tables go by multipart upload; no grace
        // period and one kept manifest, so garbage collection can be seen within the test.
        snap = new Snapshotter({
          engine, store, cluster, node, incarnation: 7, dataDir, log,
          multipartThresholdBytes: 5 * MiB, partBytes: 5 * MiB, backoffMsMin: 20, backoffMsMax: 200,
          gcGraceMs: 0, gcIntervalMs: 50, manifestsKept: 1,
        })
        const expected = new Map<string, Uint8Array>()
        const keys = 6000
        // Rounds of concurrent puts, so the WAL's group commit covers many writes per fsync.
        const putAll = async (entries: Array<[string, Uint8Array]>): Promise<void> => {
          for (let i = 0; i < entries.length; i += 256) {
            await Promise.all(entries.slice(i, i + 256).map(([key, value]) => engine.put(key, value)))
          }
          for (const [key, value] of entries) expected.set(key, value)
        }
        await putAll(Array.from({ length: keys }, (_, i) => [`user:${String(i).padStart(6, '0')}`, randomBytesSeeded(1024)]))
        // Overwrites of some keys (newer wins).
        await putAll(Array.from({ length: Math.ceil(keys / 7) }, (_, j) => [`user:${String(j * 7).padStart(6, '0')}`, enc.encode(`v2-${j * 7}`)]))
        const summary = await snap.snapshotNow()
        assert.ok(summary.tables >= 1, 'the manifest names at least one table')
        assert.equal(snap.state().lastManifestSeq, summary.seq)
        assert.equal(snap.state().consecutiveFailures, 0)
        const engineTables = engine.manifest().tables
        // Tables that compaction replaced are deleted by garbage collection, and old manifests too.
        const storedTables = async (): Promise<Set<string | undefined>> =>
          new Set((await store.list(tablesPrefix(cluster, node))).map((x) => x.split('/').at(-1)))
        const want = new Set(engineTables.map((x) => x.file))
        const manifestCount = async (): Promise<number> => (await store.list(manifestsPrefix(cluster, node))).length
        for (const started = Date.now(); Date.now() - started < 10_000;) {
          if ((await storedTables()).size === want.size && await manifestCount() === 1) break
          await new Promise((r) => setTimeout(r, 50))
        }
        assert.deepEqual(await storedTables(), want)
        assert.equal(await manifestCount(), 1)
        t.diagnostic(`snapshot: ${summary.tables} tables, ${(summary.bytes / MiB).toFixed(1)} MiB, seq ${summary.seq}`)

        // Throughput, reported not asserted: a fresh node name uploads every table from scratch,
        // against raw puts of the same files to the same endpoint in the same run.
        const bench = new Snapshotter({ engine, store, cluster, node: 'node-bench', incarnation: 1, dataDir, log })
        const benchStarted = performance.now()
        const benchSummary = await bench.snapshotNow()
        const snapMs = performance.now() - benchStarted
        await bench.close()
        const rawStarted = performance.now()
        for (const table of engineTables) {
          const bytes = await readFile(join(dataDir, 'tables', table.file))
          await store.put(`${root}/raw/${table.file}`, bytes)
        }
        const rawMs = performance.now() - rawStarted
        const mbps = (bytes: number, ms: number): string => (bytes / MiB / (ms / 1000)).toFixed(1)
        t.diagnostic(`upload: snapshot ${mbps(benchSummary.bytesUploaded, snapMs)} MiB/s ` +
          `(${(benchSummary.bytesUploaded / MiB).toFixed(1)} MiB in ${snapMs.toFixed(0)} ms, incl. CRC check and manifest), ` +
          `raw PutObject ${mbps(benchSummary.bytes, rawMs)} MiB/s (${rawMs.toFixed(0)} ms)`)
        await snap.close()
        snap = undefined
        await engine.close()

        await rm(dataDir, { recursive: true, force: true })
        const restored = await restoreFromSnapshot({ store, cluster, node, dataDir, log })
        assert.ok(restored.restored, 'a snapshot was found')
        assert.equal(restored.incarnation, 7)
        assert.equal(restored.manifest.seq, summary.seq)
        assert.ok(restored.behindMs >= 0 && restored.behindMs < 60_000, `behindMs ${restored.behindMs}`)
        assert.deepEqual((await readdir(join(dataDir, 'tables'))).sort(), engineTables.map((x) => x.file).sort())

        engine = await openEngine({ dir: dataDir, merge })
        for (const [key, value] of expected) {
          const got = engine.get(key)
          assert.ok(got !== undefined, `${key} restored`)
          assert.ok(Buffer.from(got).equals(Buffer.from(value)), `${key} has its newest value`)
        }
        // Nothing to restore for a node that never snapshotted.
        const empty = await mkdtemp(join(tmpdir(), 'ringkv-snap-'))
        assert.deepEqual(await restoreFromSnapshot({ store, cluster, node: 'node-none', dataDir: empty, log }), { restored: false })
        await rm(empty, { recursive: true, force: true })
      } finally {
        await snap?.close()
        await engine.close().catch(() => {}) // closing twice is fine
        await rm(dataDir, { recursive: true, force: true })
      }
    })

    it('an unreachable endpoint gives a typed Unavailable error, not a crash', async () => {
      const dead = fx.makeUnreachableStore()
      for (const op of [
        () => dead.put('x/y', enc.encode('z')),
        () => dead.get('x/y'),
        () => dead.list('x/'),
        () => dead.delete(['x/y']),
      ]) {
        await assert.rejects(op, (e: unknown) => {
          assert.ok(isKvError(e), `a KvError, got ${String(e)}`)
          assert.equal(e.kind, 'Unavailable')
          assert.ok(e.cause !== undefined, 'the SDK error is kept as cause')
          assert.match(e.message, /S3 \w+/)
          return true
        })
      }
    })
  })
}

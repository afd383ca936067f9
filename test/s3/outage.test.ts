// S3 outage under write load (issue 3): the embedded s3rver is stopped while writes go on; writes
// keep succeeding, the snapshotter's state shows the growing backlog and the error, and the
// local budget trips; when the server is back on the same port and directory the snapshot catches up
// by itself (a manifest newer than the outage appears, the backlog drains), and a restore from it
// holds every acknowledged write.

import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { isKvError } from '../../coordinator/errors.ts'
import type { Engine } from '../../replica/storage/engine-types.ts'
import { openEngine } from '../../replica/storage/engine.ts'
import { startEmbeddedS3, type EmbeddedS3 } from '../../infra/embedded-s3.ts'
import { restoreFromSnapshot } from '../../replica/snapshot/restore.ts'
import { S3ObjectStore } from '../../replica/snapshot/s3-store.ts'
import { decodeSnapshotManifest, manifestsPrefix } from '../../replica/snapshot/snapshot-manifest.ts'
import { Snapshotter } from '../../replica/snapshot/snapshotter.ts'
import { seededBytes, seededRandom, testSeed } from '../seed.ts'

const KiB = 1024
const merge = (_older: Uint8Array, newer: Uint8Array): Uint8Array => newer

async function until(what: string, cond: () => boolean | Promise<boolean>, timeoutMs: number): Promise<void> {
  const started = Date.now()
  while (!(await cond())) {
    if (Date.now() - started > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

test('S3 outage: writes go on, state shows the backlog, the snapshot catches up after', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'ringkv-outage-'))
  const s3Dir = join(root, 's3')
  const dataDir = join(root, 'data')
  const cluster = 'outage'
  const node = 'n1'
  let s3: EmbeddedS3 | undefined = await startEmbeddedS3({ directory: s3Dir, bucket: 'ringkv-outage' })
  const port = s3.port
  const config = s3.config
  const store = new S3ObjectStore(config, { backoffMsMin: 20, backoffMsMax: 100 })
  let engine: Engine | undefined
  let snap: Snapshotter | undefined
  try {
    engine = await openEngine({ dir: dataDir, merge, memtableBytesMax: 256 * KiB })
    const logs: string[] = []
    snap = new Snapshotter({
      engine, store, cluster, node, incarnation: 1, dataDir, log: (msg) => { logs.push(msg) },
      backoffMsMin: 50, backoffMsMax: 400, bytesPendingBudget: 1024 * KiB, gcGraceMs: 60_000,
    })
    const e = engine
    const s = snap

    // Writes in rounds of 64 concurrent puts (group commit); every acknowledged write is remembered.
    const acked = new Map<string, Uint8Array>()
    const random = seededRandom(testSeed('S3 outage values'))
    let seq = 0
    const writeFor = async (ms: number): Promise<void> => {
      const until = Date.now() + ms
      while (Date.now() < until && seq < 200_000) {
        const round: Array<Promise<void>> = []
        for (let i = 0; i < 64; i++) {
          const key = `k${String(seq++ % 20_000).padStart(6, '0')}`
          const value = seededBytes(random, 512)
          round.push(e.put(key, value).then(() => { acked.set(key, value) }))
        }
        await Promise.all(round) // a write that failed would fail the test here
      }
    }

    await writeFor(800)
    await until('a first manifest', () => s.state().lastManifestSeq !== null, 10_000)
    t.diagnostic(`before outage: ${acked.size} keys, ${JSON.stringify(s.state())}`)

    // Outage.
    await s3.close()
    s3 = undefined
    const outageAt = Date.now()
    const pendingAtOutage = s.state().bytesPending
    let sawOverBudget = false
    const ackedBefore = seq
    for (let i = 0; i < 6; i++) {
      await writeFor(400)
      sawOverBudget ||= s.overBudget()
    }
    const during = s.state()
    t.diagnostic(`during outage: ${seq - ackedBefore} writes acked, ${JSON.stringify(during)}`)
    assert.ok(seq - ackedBefore > 1000, 'writes went on during the outage')
    assert.ok(during.bytesPending > pendingAtOutage, `bytesPending grew: ${pendingAtOutage} -> ${during.bytesPending}`)
    assert.ok(during.lastError !== null, 'lastError names the S3 trouble')
    assert.ok(during.consecutiveFailures >= 1, 'failed rounds are counted')
    assert.ok(sawOverBudget, 'the local budget tripped (the replica would refuse writes with StorageFull)')
    assert.ok(s.overBudget(), 'still over budget while S3 is down')
    assert.throws(() => s.assertWithinBudget(), (err: unknown) => isKvError(err) && err.kind === 'StorageFull')

    // Back, on the same port and directory.
    s3 = await startEmbeddedS3({ directory: s3Dir, port, bucket: 'ringkv-outage' })
    const backAt = Date.now()
    await writeFor(300)
    await e.flush()
    const newestCreatedAt = async (): Promise<number> => {
      const keys = await store.list(manifestsPrefix(cluster, node))
      const last = keys.at(-1)
      if (last === undefined) return 0
      const bytes = await store.get(last)
      if (bytes === undefined) return 0
      try {
        return decodeSnapshotManifest(bytes).createdAt
      } catch {
        // s3rver writes objects in place: a GET racing the manifest's PUT can see part of it.
        return 0
      }
    }
    await until('a manifest newer than the outage', async () => (await newestCreatedAt()) > backAt, 30_000)
    await until('the backlog to drain', () => s.state().bytesPending <= e.stats().walBytes && !s.overBudget(), 30_000)
    const after = s.state()
    t.diagnostic(`caught up ${Date.now() - backAt} ms after restart: ${JSON.stringify(after)}`)
    assert.ok(after.lastManifestAt !== null && after.lastManifestAt > outageAt)
    assert.equal(after.consecutiveFailures, 0)
    assert.equal(after.lastError, null)

    // Every acknowledged write is in the snapshot.
    await s.snapshotNow()
    await s.close()
    snap = undefined
    await e.close()
    engine = undefined
    const restoreDir = join(root, 'restored')
    const restored = await restoreFromSnapshot({ store, cluster, node, dataDir: restoreDir, log: () => {} })
    assert.ok(restored.restored)
    const back = await openEngine({ dir: restoreDir, merge })
    try {
      for (const [key, value] of acked) {
        const got = back.get(key)
        assert.ok(got !== undefined && Buffer.from(got).equals(Buffer.from(value)), `${key} survived the outage`)
      }
    } finally {
      await back.close()
    }
    t.diagnostic(`restored ${acked.size} keys from seq ${restored.manifest.seq}`)
  } finally {
    await snap?.close()
    await engine?.close()
    store.destroy()
    await s3?.close()
    await rm(root, { recursive: true, force: true })
  }
})

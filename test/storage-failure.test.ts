// Health that tells the truth when storage fails: replicas whose data directories sit on a small
// tmpfs fill it up under writes. The replica that hits ENOSPC must say `read-only` on /health (503,
// with the reason) instead of `ok`, refuse writes with a typed StorageFull, refuse to publish a
// snapshot, and keep serving reads; once space is freed, a restart replays its WAL and it takes
// writes again, with every acknowledged write intact.
// (Runs as root, as CI does: it mounts a tmpfs.)

import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { createClient } from '../client/index.ts'
import { KvError } from '../coordinator/errors.ts'
import { startCluster, type Cluster } from '../infra/cluster.ts'
import { eventually } from './helpers.ts'

describe('storage failure', () => {
  let dir: string
  let cluster: Cluster
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'ringkv-enospc-'))
    // Big enough that, once the filler below is removed, three restarted replicas fit with their
    // ~11 MiB of WAL each plus a new segment's 8 MiB preallocation (walPreallocateBytes): at 48 MiB
    // a replica restarted after recovery filled the disk again (1 run in 3 or so).
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=128m', 'tmpfs', dir])
    cluster = await startCluster({ dataDir: dir, basePort: 17271, httpPort: 0, partitions: 64, s3: 'embedded' })
  })
  after(async () => {
    await cluster?.stop()
    execFileSync('umount', ['-l', dir])
    rmSync(dir, { recursive: true, force: true })
  })

  it('says read-only with the reason, publishes no snapshot, and recovers on restart once space is freed', async () => {
    const kv = createClient({ seeds: cluster.seeds, timeoutMs: 3000 })
    const acked = new Map<string, string>()
    const value = 'v'.repeat(32 * 1024)
    const put = async (key: string): Promise<boolean> => {
      try { await kv.put(key, `${key}:${value}`); acked.set(key, `${key}:${value}`); return true } catch { return false }
    }
    for (let i = 0; i < 20; i++) assert.ok(await put(`before${i}`), 'writes work before the disk fills')
    // Leave about 3 MiB free, then write until replicas refuse.
    execFileSync('sh', ['-c', `avail=$(df --output=avail -k ${dir} | tail -1); dd if=/dev/zero of=${dir}/filler bs=1k count=$((avail - 3072)) status=none || true`])
    let failures = 0
    for (let i = 0; i < 400 && failures < 20; i++) if (!await put(`k${i}`)) failures++
    assert.ok(failures > 0, 'the disk filled up')
    const healthOf = async (r: { id: string; httpUrl: string }) => {
      const res = await fetch(`${r.httpUrl}/health`)
      return { id: r.id, code: res.status, body: await res.json() as { status: string; reasons: string[] } }
    }
    const healths = await Promise.all(cluster.replicas.map(healthOf))
    const failed = healths.filter(h => h.body.status === 'read-only')
    assert.ok(failed.length > 0, `some replica reports read-only: ${JSON.stringify(healths.map(h => [h.id, h.code, h.body.status]))}`)
    for (const h of failed) {
      assert.equal(h.code, 503)
      assert.ok(h.body.reasons.some(r => /storage failed|ENOSPC|no space/i.test(r)), `reason named: ${h.body.reasons.join('; ')}`)
      // No snapshot is published from a replica whose storage failed.
      const snap = await fetch(`${cluster.replica(h.id).httpUrl}/admin/snapshot`, { method: 'POST' })
      assert.notEqual(snap.status, 200, 'snapshot refused')
      assert.match(await snap.text(), /storage/)
    }
    // A write to a replica whose disk is full is refused with a typed StorageFull (507) naming the
    // full disk, not an Internal error: refused before writing, so the SDK may stamp elsewhere.
    const probe = await kv.put('probe', 'x', { w: 3 }).then(() => undefined, (e: unknown) => e)
    assert.ok(probe instanceof KvError, `a W=3 write fails while a replica is read-only: ${String(probe)}`)
    const refusals = (probe.data as { failures?: Record<string, { kind: string; message: string }> }).failures ?? {}
    for (const h of failed) {
      assert.equal(refusals[h.id]?.kind, 'StorageFull', `${h.id}'s refusal: ${JSON.stringify(refusals[h.id])} (${probe.message})`)
      assert.match(refusals[h.id]!.message, /disk is full/)
    }
    // Reads still work.
    const [firstKey, firstValue] = [...acked][0]!
    assert.equal((await kv.getString(firstKey, { r: 1 })).values[0], firstValue)
    // Free the space and restart the failed replicas: they replay and take writes again. A replica
    // that was still ok above may have filled up since (read repair, hints and anti-entropy write
    // too): it is restarted as well.
    rmSync(join(dir, 'filler'))
    const failedSince = await Promise.all(cluster.replicas.filter(r => !failed.some(h => h.id === r.id)).map(healthOf))
    for (const h of [...failed, ...failedSince.filter(h => h.body.status === 'read-only')]) {
      const r = cluster.replica(h.id)
      await r.kill('SIGKILL')
      await r.start()
      const res = await fetch(`${r.httpUrl}/health`)
      assert.equal(res.status, 200)
    }
    // Each try writes with the context of a read, so that failed tries (stored on the replicas that
    // took them) do not pile up as siblings until the key refuses writes.
    await eventually(async () => kv.put('after', 'ok', { w: 3, context: (await kv.get('after')).context }), 'writes at W=3 after recovery')
    for (const [key, v] of acked) assert.equal((await kv.getString(key, { r: 2 })).values[0], v, `acknowledged ${key} kept`)
    await kv.close()
  })
})

// Anti-entropy between real replica processes (ports 18300-18329): a replica killed while 3,000 keys
// are written gets every one of them back from anti-entropy alone (nobody reads them); and with a
// short tombstone grace, a replica that missed a delete brings nothing back when it returns, before
// or after the grace, and the tombstone is then reaped everywhere. Each replica is read directly
// (rawConnection), so no read repair can be what brought the data. `ringkv repair` runs it on demand.

import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { after, before, describe, it } from 'node:test'
import { createClient, type KvClient } from '../client/index.ts'
import { keyHash32, partitionOfHash } from '../coordinator/ring/partition-hash.ts'
import { isDeleted, values as valuesOf } from '../coordinator/version/dvv.ts'
import { dec, enc, eventually, rawConnection, testCluster } from './helpers.ts'
import { treeShape } from '../replica/aae/tictac-tree.ts'

async function metric(httpUrl: string, name: string): Promise<number> {
  const text = await (await fetch(`${httpUrl}/metrics`)).text()
  let sum = 0
  let found = false
  for (const line of text.split('\n')) {
    if (!line.startsWith(name + '{')) continue
    found = true
    sum += Number(line.slice(line.lastIndexOf(' ') + 1))
  }
  assert.ok(found, `${httpUrl}/metrics has no ${name}`)
  return sum
}

describe('anti-entropy repairs a replica that missed writes, with no reads', () => {
  let cluster: Awaited<ReturnType<typeof testCluster>>
  let kv: KvClient
  before(async () => {
    cluster = await testCluster(18300, { readyTimeoutMs: 90_000 })
    kv = createClient({ seeds: cluster.seeds, timeoutMs: 5000 })
  })
  after(async () => { await kv.close(); await cluster.cleanup() })

  it('3 replicas, kill one, write 3,000 keys, restart it: it holds them all again', async () => {
    const victim = cluster.replica('n3')
    await victim.kill('SIGKILL')
    const keys = Array.from({ length: 3000 }, (_, i) => `aae:${i}`)
    // A few at a time, each retried: the machine is shared, and a put that times out is not the point here.
    for (let i = 0; i < keys.length; i += 20) {
      await Promise.all(keys.slice(i, i + 20).map(k => eventually(() => kv.put(k, `v-${k}`, { w: 2 }), `put ${k}`, 30_000)))
    }
    await victim.start()
    const started = Date.now()
    const direct = rawConnection(victim.url, 'n3')
    const missing = async (): Promise<string[]> => {
      const out: string[] = []
      for (let i = 0; i < keys.length; i += 500) {
        const replies = await Promise.all(keys.slice(i, i + 500).map(k => direct.request('get', { key: enc.encode(k) }, 10_000)))
        replies.forEach((r, j) => {
          const k = keys[i + j]!
          if (!r.state || isDeleted(r.state) || dec.decode(valuesOf(r.state)[0]!) !== `v-${k}`) out.push(k)
        })
      }
      return out
    }
    assert.ok((await missing()).length > 0, 'n3 missed the writes made while it was down')
    // A generous deadline only to avoid a hang; the time it took is printed.
    await eventually(async () => {
      const left = await missing()
      assert.equal(left.length, 0, `${left.length} keys still missing on n3`)
    }, 'anti-entropy repairs n3', 180_000)
    console.log(`n3 held all ${keys.length} keys again ${Date.now() - started} ms after it came back`)
    const repaired = (await Promise.all(cluster.replicas.map(r => metric(r.httpUrl, 'ringkv_aae_keys_repaired_total')))).reduce((a, b) => a + b, 0)
    assert.ok(repaired >= keys.length, `keys repaired ${repaired}`)
    assert.ok(await metric(victim.httpUrl, 'ringkv_aae_exchanges_total') > 0)
    // Every tree followed its storage through the kill, the restart and the repair: no exchange's
    // listing found a segment's hash wrong (the trees trust the write path's old states).
    for (const r of cluster.replicas) assert.equal(await metric(r.httpUrl, 'ringkv_aae_segments_corrected_total'), 0, `${r.id} corrected no segment`)
    const health = await (await fetch(`${victim.httpUrl}/health`)).json() as { antiEntropy: { ready: boolean; lastFullPassAgoS: Record<string, number | null> } }
    assert.equal(health.antiEntropy.ready, true)
    assert.ok(Object.keys(health.antiEntropy.lastFullPassAgoS).length > 0)
    direct.close()
  })
})

describe('tombstones with a short grace', () => {
  let cluster: Awaited<ReturnType<typeof testCluster>>
  let kv: KvClient
  before(async () => {
    cluster = await testCluster(18310, { readyTimeoutMs: 90_000, partitions: 16, extraArgs: ['--tombstone-grace-ms', '2000'] })
    kv = createClient({ seeds: cluster.seeds, timeoutMs: 5000 })
  })
  after(async () => { await kv.close(); await cluster.cleanup() })

  it('a replica that missed the delete brings nothing back, before or after the grace; then the tombstone is reaped everywhere', async () => {
    const keys = Array.from({ length: 50 }, (_, i) => `del:${i}`)
    for (const k of keys) await kv.put(k, `v-${k}`, { w: 3 })
    const victim = cluster.replica('n3')
    await victim.kill('SIGKILL')
    for (const k of keys) {
      const got = await kv.get(k, { r: 2 })
      await kv.delete(k, { context: got.context, w: 2 })
    }
    // Well past the grace while n3 is down: no primary may reap.
    await new Promise(r => setTimeout(r, 4000))
    const others = cluster.replicas.filter(r => r !== victim)
    for (const r of others) {
      const c = rawConnection(r.url, r.id)
      for (const k of keys) {
        const reply = await c.request('get', { key: enc.encode(k) }, 5000)
        assert.ok(reply.state && reply.state.siblings.length > 0 && isDeleted(reply.state), `${r.id} still holds the tombstone of ${k}`)
      }
      c.close()
      assert.equal(await metric(r.httpUrl, 'ringkv_tombstones_reaped_total'), 0)
    }
    await victim.start()
    const direct = rawConnection(victim.url, 'n3')
    // n3 comes back with the old values; anti-entropy gives it the tombstones and, once every primary
    // has them and the grace has passed, each replica reaps them.
    await eventually(async () => {
      for (const r of cluster.replicas) {
        const c = r === victim ? direct : rawConnection(r.url, r.id)
        for (const k of keys) {
          const reply = await c.request('get', { key: enc.encode(k) }, 5000)
          assert.ok(reply.state === null || isDeleted(reply.state), `${r.id}: ${k} resurrected`)
        }
        if (c !== direct) c.close()
      }
      const reaped = await Promise.all(cluster.replicas.map(r => metric(r.httpUrl, 'ringkv_tombstones_reaped_total')))
      assert.ok(reaped.every(n => n >= keys.length), `reaped per replica: ${reaped.join(', ')}`)
    }, 'tombstones reaped on every replica', 120_000)
    for (const k of keys) {
      const got = await kv.get(k, { r: 3 })
      assert.equal(got.found, false, `${k} reads not found after the reap`)
      assert.equal((await direct.request('get', { key: enc.encode(k) }, 5000)).state, null, `n3 holds nothing for ${k}`)
    }
    // Written again: the new value is kept everywhere (fresh dots above the reaped tombstones').
    await kv.put(keys[0]!, 'again', { w: 3 })
    assert.deepEqual((await kv.get(keys[0]!, { r: 3 })).values.map(v => dec.decode(v)), ['again'])
    for (const r of cluster.replicas) assert.equal(await metric(r.httpUrl, 'ringkv_aae_segments_corrected_total'), 0, `${r.id} corrected no segment`)
    direct.close()
  })
})

describe('ringkv repair (on demand)', () => {
  let cluster: Awaited<ReturnType<typeof testCluster>>
  let kv: KvClient
  before(async () => {
    // The periodic loop slowed to an hour: only the on-demand repair can bring n3 its keys.
    cluster = await testCluster(18320, { readyTimeoutMs: 90_000, partitions: 16, extraArgs: ['--aae-interval-ms', '3600000'] })
    kv = createClient({ seeds: cluster.seeds, timeoutMs: 5000 })
  })
  after(async () => { await kv.close(); await cluster.cleanup() })

  it('repairs every partition, or one, and prints what it did', async () => {
    const victim = cluster.replica('n3')
    await victim.kill('SIGKILL')
    const keys = Array.from({ length: 200 }, (_, i) => `od:${i}`)
    for (const k of keys) await eventually(() => kv.put(k, `v-${k}`, { w: 2 }), `put ${k}`, 30_000)
    await victim.start()
    const direct = rawConnection(victim.url, 'n3')
    const held = async (k: string) => (await direct.request('get', { key: enc.encode(k) }, 5000)).state !== null
    assert.equal(await held(keys[0]!), false)
    const ring = await kv.ring()
    const p = partitionOf(ring, keys[0]!)
    const one = await ringkv(['repair', '--partition', String(p), '--json', '--seeds', cluster.seeds.join(',')])
    assert.equal(one.code, 0, one.stderr)
    const oneSummary = JSON.parse(one.stdout) as { repaired: number; exchanges: number; failed: number }
    assert.equal(oneSummary.exchanges, 2, 'one primary exchanged with the two others')
    assert.ok(oneSummary.repaired > 0)
    assert.equal(await held(keys[0]!), true, 'the partition asked for was repaired')
    const all = await ringkv(['repair', '--seeds', cluster.seeds.join(',')])
    assert.equal(all.code, 0, all.stderr)
    assert.match(all.stdout, /^repaired=\d+ exchanges=\d+ failed=0 seconds=[\d.]+\n$/)
    for (const k of keys) assert.equal(await held(k), true, `n3 holds ${k} after ringkv repair`)
    // Exchange requests from a client, against a real replica: bad ones get typed errors; a flood of
    // good ones is answered and the replica stays healthy.
    const shape = treeShape
    await assert.rejects(direct.request('aaeRoot', { partition: p, shape: { width: treeShape.width * 2, depth: 2 } }, 5000), (e: any) => e.kind === 'BadRequest')
    await assert.rejects(direct.request('aaeRoot', { partition: 1 << 20, shape } as never, 5000), (e: any) => e.kind === 'BadRequest')
    await assert.rejects(direct.request('aaeKeys', { partition: 0, shape, segments: [] }, 5000), (e: any) => e.kind === 'BadRequest')
    const flood = await Promise.all(Array.from({ length: 2000 }, (_, i) => direct.request('aaeKeys', { partition: i % 16, shape, segments: Array.from({ length: 64 }, (_, j) => j) }, 30_000)))
    assert.equal(flood.length, 2000)
    await assert.rejects(direct.request('aaeRoots', { partitions: [0, 0], shape }, 5000), (e: any) => e.kind === 'BadRequest')
    await assert.rejects(direct.request('aaeRoots', { partitions: Array.from({ length: 5000 }, (_, i) => i), shape }, 5000), (e: any) => e.kind === 'BadRequest')
    const sweeps = await Promise.all(Array.from({ length: 2000 }, () => direct.request('aaeRoots', { partitions: Array.from({ length: 16 }, (_, i) => i), shape }, 30_000)))
    assert.ok(sweeps.every(r => r.roots.byteLength === 16 * treeShape.width * 4), 'a flood of sweeps is answered, each with 16 roots')
    assert.equal((await fetch(`${victim.httpUrl}/health`)).status, 200)
    const bad = await ringkv(['repair', '--partition', '99', '--seeds', cluster.seeds.join(',')])
    assert.notEqual(bad.code, 0)
    assert.match(bad.stderr, /--partition must be an integer from 0 to 15/)
    direct.close()
  })
})

function partitionOf(ring: { partitions: number }, key: string): number {
  return partitionOfHash(keyHash32(key), ring.partitions)
}

function ringkv(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise(ok => {
    const p = spawn(process.execPath, [fileURLToPath(new URL('../bin/ringkv.js', import.meta.url)), ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    p.stdout.on('data', d => { stdout += d })
    p.stderr.on('data', d => { stderr += d })
    p.on('exit', code => ok({ code: code ?? -1, stdout, stderr }))
  })
}

// Hinted handoff with real replica processes (docs/hints.md): 5 replicas, N=3. With one replica
// killed, W=2 writes leave hints for it on fallbacks; sloppy reads see them; a fallback killed and
// restarted still holds its hints; a damaged hint log is detected at start and not replayed; when
// the owner comes back the hints drain and it alone answers every key it owns. A second cluster
// with a tiny hint bound shows refusals: counted, and a write that needed that hint fails honestly.

import assert from 'node:assert/strict'
import { readdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { createClient, KvError, QuorumError, type KvClient } from '../client/index.ts'
import { preferenceList, type Ring } from '../coordinator/ring/ring.ts'
import { values as valuesOf } from '../coordinator/version/dvv.ts'
import type { ReplicaProcess } from '../infra/cluster.ts'
import { dec, enc, eventually, rawConnection, testCluster } from './helpers.ts'

/** The value of each sample of `name` on a replica's /metrics, by its `target` label ('' when none). */
async function metric(r: ReplicaProcess, name: string): Promise<Map<string, number>> {
  const text = await (await fetch(`${r.httpUrl}/metrics`)).text()
  const out = new Map<string, number>()
  for (const line of text.split('\n')) {
    const m = new RegExp(`^${name}\\{([^}]*)\\} (\\S+)$`).exec(line)
    if (!m) continue
    out.set(/target="([^"]*)"/.exec(m[1]!)?.[1] ?? '', Number(m[2]))
  }
  return out
}

async function pendingFor(replicas: readonly ReplicaProcess[], target: string): Promise<number> {
  let sum = 0
  for (const r of replicas) sum += (await metric(r, 'ringkv_hints_pending')).get(target) ?? 0
  return sum
}

/**
 * The distinct values of a read. Under heavy load a stamp can time out and the write move on to
 * stamp at the next primary too (docs/quorum.md), leaving two siblings of the same value.
 */
const distinct = (values: readonly Uint8Array[]) => [...new Set(values.map(v => dec.decode(v)))]

const ownedBy = (ring: Ring, node: string, keys: string[]) => keys.filter(k => preferenceList(ring, k).primaries.includes(node))

describe('hinted handoff, 5 replicas, N=3', () => {
  let cluster: Awaited<ReturnType<typeof testCluster>>
  let kv: KvClient
  before(async () => {
    cluster = await testCluster(18200, { replicas: 5, n: 3, readyTimeoutMs: 120_000 })
    kv = createClient({ seeds: cluster.seeds, timeoutMs: 5000 })
  })
  after(async () => { await kv.close(); await cluster.cleanup() })

  it('keeps hints for a dead owner, survives a fallback restart, skips a damaged log, and drains to the owner', async () => {
    const ring = await kv.ring()
    const owner = cluster.replica('n5')
    const others = cluster.replicas.filter(r => r.id !== 'n5')
    await owner.kill('SIGKILL')

    const keys = Array.from({ length: 300 }, (_, i) => `hinted:${i}`)
    for (const k of keys) await kv.put(k, `v-${k}`, { w: 2 })
    const owned = ownedBy(ring, 'n5', keys)
    assert.ok(owned.length > 50, `n5 owns ${owned.length} of the keys`)
    // Every key n5 owns has a fallback standing in for it once the third replicates land (two, when
    // a replicate to the first fallback failed under load and the write moved on).
    await eventually(async () => assert.ok(await pendingFor(others, 'n5') >= owned.length), 'a hint per key n5 owns', 60_000)

    // Sloppy reads see the hints: R=3 needs the fallback's answer for every key n5 owns.
    for (const k of owned.slice(0, 40)) {
      const got = await kv.get(k, { r: 3 })
      assert.deepEqual(distinct(got.values), [`v-${k}`], k)
    }

    // A fallback killed and restarted keeps its hints (they were fsynced before the ack).
    const counts = await Promise.all(others.map(async r => (await metric(r, 'ringkv_hints_pending')).get('n5') ?? 0))
    const fallback = others[counts.indexOf(Math.max(...counts))]!
    const held = Math.max(...counts)
    assert.ok(held > 0)
    await fallback.kill('SIGKILL')
    await fallback.start(120_000)
    assert.equal((await metric(fallback, 'ringkv_hints_pending')).get('n5'), held, 'hints survive a fallback restart')

    // Damage another fallback's hint log: a record in the middle gets a flipped byte. At start it
    // is detected, that segment's records from there on are not replayed, and the replica serves.
    const damaged = others.find(r => r !== fallback && counts[others.indexOf(r)]! > 2)!
    const before = (await metric(damaged, 'ringkv_hints_pending')).get('n5') ?? 0
    await damaged.kill('SIGTERM')
    const dir = join(damaged.dataDir, 'hints')
    const segs = (await readdir(dir)).filter(f => f.endsWith('.hints')).sort()
    let flipped = false
    for (const f of segs) {
      const buf = await readFile(join(dir, f))
      if (buf.length < 200) continue
      const at = Math.floor(buf.length / 2)
      buf[at] = buf[at]! ^ 0xff
      await writeFile(join(dir, f), buf)
      flipped = true
      break
    }
    assert.ok(flipped, 'a hint segment with records to damage')
    await damaged.start(120_000)
    assert.ok(((await metric(damaged, 'ringkv_hints_corrupt_segments_total')).get('') ?? 0) >= 1, 'the damage is counted')
    const after = (await metric(damaged, 'ringkv_hints_pending')).get('n5') ?? 0
    assert.ok(after < before, `records after the damage are not replayed (${after} of ${before} kept)`)
    const lost = before - after

    // The owner comes back: the hints drain, and n5 alone answers every key it owns, except the
    // ones whose hint was in the damaged part of the log (read repair and anti-entropy bring those).
    await owner.start(120_000)
    await eventually(async () => assert.equal(await pendingFor(others, 'n5'), 0), 'hints drain to n5', 60_000)
    let replayed = 0
    for (const r of others) replayed += (await metric(r, 'ringkv_hints_replayed_total')).get('') ?? 0
    assert.ok(replayed >= owned.length - lost, `replayed ${replayed}`)
    const direct = rawConnection(owner.url, 'n5')
    let missing = 0
    for (const k of owned) {
      const reply = await direct.request('get', { key: enc.encode(k) }, 5000)
      if (reply.state === null) { missing++; continue }
      assert.deepEqual(distinct(valuesOf(reply.state)), [`v-${k}`], k)
    }
    direct.close()
    assert.ok(missing <= lost, `n5 misses ${missing} keys; only the ${lost} hints in the damaged log may be missing`)
    assert.ok(lost < owned.length, 'most hints survived the damage')
  })
})

describe('hint store at its bound', () => {
  let cluster: Awaited<ReturnType<typeof testCluster>>
  let kv: KvClient
  before(async () => {
    cluster = await testCluster(18210, { replicas: 5, n: 3, extraArgs: ['--hints-per-target-max', '3'], readyTimeoutMs: 120_000 })
    kv = createClient({ seeds: cluster.seeds, timeoutMs: 5000 })
  })
  after(async () => { await kv.close(); await cluster.cleanup() })

  it('refuses hints past the bound, counts them, and a write needing one fails with the refusals named', async () => {
    const ring = await kv.ring()
    await cluster.replica('n5').kill('SIGKILL')
    const others = cluster.replicas.filter(r => r.id !== 'n5')
    const keys = ownedBy(ring, 'n5', Array.from({ length: 200 }, (_, i) => `bound:${i}`)).slice(0, 40)
    for (const k of keys) await kv.put(k, 'x', { w: 2 })
    await eventually(async () => {
      let refused = 0
      for (const r of others) refused += (await metric(r, 'ringkv_hints_refused_total')).get('') ?? 0
      assert.ok(refused > 0, 'refusals counted')
      for (const r of others) assert.ok(((await metric(r, 'ringkv_hints_pending')).get('n5') ?? 0) <= 3, `${r.id} holds at most 3 hints`)
    }, 'refusals', 60_000)
    // W=3 needs a hint for n5, and both fallbacks are full.
    const k = keys.at(-1)!
    await assert.rejects(kv.put(k, 'y', { w: 3 }), (e: unknown) => {
      assert.ok(e instanceof QuorumError, `expected QuorumError, got ${e}`)
      assert.ok(e.acked < 3, `acked ${e.acked}`)
      assert.ok(Object.values(e.data.failures).some(f => f.kind === 'HintRefused'), JSON.stringify(e.data.failures))
      return true
    })
  })

  it('refuses hinted input that is forged or misdirected, with typed errors, storing nothing', async () => {
    const ring = await kv.ring()
    const key = ownedBy(ring, 'n5', Array.from({ length: 200 }, (_, i) => `attack:${i}`))[0]!
    const fallbackId = preferenceList(ring, key).fallbacks[0]!
    const fallback = cluster.replica(fallbackId)
    const conn = rawConnection(fallback.url, fallbackId)
    const kind = (e: unknown) => (e instanceof KvError ? `${e.kind}${e.data.kind === 'HintRefused' ? `:${e.data.reason}` : ''}` : String(e))
    const state = { vv: { 'x.1': 1 }, siblings: [{ actor: 'x.1', counter: 1, value: enc.encode('v') }] }
    const k = enc.encode(key)
    // A hint for a node the ring does not know, on a replicate and on a get.
    await assert.rejects(conn.request('replicate', { key: k, state, hintFor: 'nobody' }, 5000), e => kind(e) === 'BadRequest')
    await assert.rejects(conn.request('get', { key: k, hintFor: 'nobody' }, 5000), e => kind(e) === 'BadRequest')
    // A fallback never stamps for an owner.
    await assert.rejects(conn.request('put', { key: k, context: {}, value: enc.encode('v'), hintFor: 'n5' }, 5000), e => kind(e) === 'HintRefused:stamp')
    // A hinted state claiming a dot of the fallback's own actor it never issued.
    const actor = (await (await fetch(`${fallback.httpUrl}/health`)).json() as { actor: string }).actor
    const forged = { vv: { [actor]: 7 }, siblings: [{ actor, counter: 7, value: enc.encode('forged') }] }
    await assert.rejects(conn.request('replicate', { key: k, state: forged, hintFor: 'n5' }, 5000), e => kind(e) === 'BadRequest')
    // Nothing of it is held: a sloppy get for the owner finds no hint for the key.
    assert.equal((await conn.request('get', { key: k, hintFor: 'n5' }, 5000)).state, null)
    conn.close()
  })
})

// Hostile and heavy states against real replica processes: the regression tests for findings 1-4
// and 9 of the hostile-input issue. Whatever a client sends, by any path that stores a state (stamp,
// replicate, read repair), a replica either stores a state within the bounds of a local write or
// refuses with a typed error and keeps what it had; nothing it acknowledged stops it from flushing,
// snapshotting or restarting; no process dies; every key stays readable and writable.

import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { after, before, describe, it } from 'node:test'
import { createClient, isKvError, type KvClient } from '../client/index.ts'
import { KvError } from '../coordinator/errors.ts'
import { limits } from '../coordinator/limits.ts'
import { encodeContext } from '../coordinator/version/context.ts'
import { preferenceList } from '../coordinator/ring/ring.ts'
import { isDeleted } from '../coordinator/version/dvv.ts'
import { dec, enc, eventually, rawConnection, testCluster } from './helpers.ts'

type Cluster = Awaited<ReturnType<typeof testCluster>>

async function health(url: string): Promise<{ status: string; actor: string; reasons?: string[] }> {
  const res = await fetch(`${url}/health`)
  return await res.json() as { status: string; actor: string; reasons?: string[] }
}

/** Waits until the client reaches every replica again (after restarts its connections back off). */
async function reachAll(kv: KvClient): Promise<void> {
  await eventually(() => kv.put('probe', 'p', { w: 3 }), 'every replica reachable')
}

async function allAlive(cluster: Cluster): Promise<void> {
  for (const r of cluster.replicas) {
    assert.equal(r.proc?.exitCode, null, `${r.id} exited`)
    assert.equal((await health(r.httpUrl)).status, 'ok', `${r.id} healthy`)
  }
}

describe('hostile states', () => {
  let cluster: Cluster
  let kv: KvClient
  let http: string
  before(async () => {
    cluster = await testCluster(17261, { httpPort: 18261, s3: 'embedded' })
    // Deadlines far above what any of these takes on an idle machine: the tests are about outcomes
    // (refusals, no crash, no wedge), and at load averages of 9-14 the 5-10 s ones ran out.
    kv = createClient({ seeds: cluster.seeds, timeoutMs: 30_000 })
    http = cluster.gateway!.url
  })
  after(async () => { await kv.close(); await cluster.cleanup() })

  it('finding 1: replicated siblings cannot pile past stateBytesMax; what was acknowledged flushes, snapshots and restarts', async () => {
    // The finding's mechanism: replicas merged replicated siblings into an entry larger than a table
    // entry could hold; the next flush failed, every write after it failed, and so did each restart.
    const n1 = cluster.replicas[0]!
    const direct = rawConnection(n1.url)
    const value = new Uint8Array(1024 * 1024).fill(7)
    let acked = 0
    let refused: unknown
    for (let i = 0; i < 20 && refused === undefined; i++) {
      const actor = `x${String(i).padStart(2, '0')}.1`
      try {
        await direct.request('replicate', { key: enc.encode('big'), state: { vv: { [actor]: 1 }, siblings: [{ actor, counter: 1, value }] } }, 20_000)
        acked++
      } catch (e) { refused = e }
    }
    assert.ok(isKvError(refused) && refused.kind === 'TooLarge', `refused with TooLarge, got ${String(refused)}`)
    assert.deepEqual({ ...(refused as KvError).data, bytes: 0 }, { kind: 'TooLarge', bytes: 0, bytesMax: limits.stateBytesMax })
    assert.ok(acked >= 14, `${acked} siblings of 1 MiB fit in stateBytesMax`)
    const reply = await direct.request('get', { key: enc.encode('big') }, 20_000)
    assert.equal(reply.state!.siblings.length, acked, 'the refused replicate changed nothing')
    direct.close()
    // Blind 1 MiB puts of the same key through the gateway, a few at a time, on top of that.
    const body = new Uint8Array(1024 * 1024).fill(9)
    const statuses = await Promise.all(Array.from({ length: 4 }, () =>
      fetch(`${http}/kv/big?timeout_ms=20000`, { method: 'PUT', body }).then(async r => ({ status: r.status, text: await r.text() }))))
    for (const s of statuses) assert.ok([204, 413, 503].includes(s.status), `a typed answer: ${s.status} ${s.text.slice(0, 300)}`)
    // The replica flushes and snapshots all it holds, and says it is healthy.
    const res = await fetch(`${n1.httpUrl}/admin/snapshot`, { method: 'POST' })
    assert.equal(res.status, 200, `snapshot: ${await res.text()}`)
    await allAlive(cluster)
    // It restarts from its WAL and tables and still serves the key; writes go on.
    await n1.kill('SIGKILL')
    await n1.start()
    await reachAll(kv)
    const again = rawConnection(n1.url)
    const after = await again.request('get', { key: enc.encode('big') }, 20_000)
    assert.ok(after.state && after.state.siblings.length >= acked)
    again.close()
    await kv.put('after-big', 'v', { w: 3 })
    await allAlive(cluster)
  })

  it('finding 7: reading a key of ~15 MiB, again and again, disturbs no other user', async () => {
    // The key from finding 1 holds ~15 MiB of siblings. Another process reads it over and over
    // (r=3, so every replica sends it and read repair sends the merge, which is over a frame: the
    // SDK refuses to send that one, rather than have the replica drop the connection); meanwhile
    // this process's client keeps working. Two processes, as in the finding: one event loop busy
    // decoding 15 MiB replies is not what is measured here.
    const script = `
      const { createClient } = await import(${JSON.stringify(new URL('../client/index.ts', import.meta.url).href)})
      const kv = createClient({ seeds: ${JSON.stringify(cluster.seeds)}, timeoutMs: 60000 })
      let ok = 0
      for (let i = 0; i < 8; i++) { const got = await kv.get('big', { r: 3 }); if (got.values.length > 0) ok++ }
      await kv.close()
      console.log('big reads ok ' + ok)
    `
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    child.stdout.on('data', (d: Buffer) => { out += d })
    child.stderr.on('data', (d: Buffer) => { out += d })
    const exited = new Promise<number | null>(ok => child.once('exit', ok))
    const other = createClient({ seeds: cluster.seeds, timeoutMs: 30_000 })
    for (let i = 0; i < 100; i++) {
      await other.put(`small${i}`, `v${i}`)
      assert.deepEqual((await other.getString(`small${i}`)).values, [`v${i}`])
    }
    await other.close()
    assert.equal(await exited, 0, out)
    assert.match(out, /big reads ok 8/)
    await allAlive(cluster)
  })

  it('finding 2: a forged replicate of a replica\'s own next dot is refused by it; elsewhere it never kills a reader or a restart', async () => {
    const { context } = await kv.put('forge', 'real-1', { w: 3 })
    // The stamper is the first primary: it issued (actor, 1) for this key.
    const owner = preferenceList(await kv.ring(), 'forge').primaries[0]!
    const ownerProc = cluster.replica(owner)
    const { actor } = await health(ownerProc.httpUrl)
    const counter = 1
    // The next dot the owner will issue for this key, planted with another value.
    const stateFor = (c: number, v: string) => ({ vv: { [actor]: c }, siblings: [{ actor, counter: c, value: enc.encode(v) }] })
    const toOwner = rawConnection(ownerProc.url)
    await assert.rejects(toOwner.request('replicate', { key: enc.encode('forge'), state: stateFor(counter + 1, 'planted') }, 5000),
      (e: unknown) => isKvError(e) && e.kind === 'BadRequest' && /never|issued at most/.test(e.message))
    toOwner.close()
    const others = cluster.replicas.filter(r => r.id !== owner)
    for (const r of others) {
      const c = rawConnection(r.url)
      await c.request('replicate', { key: enc.encode('forge'), state: stateFor(counter + 1, 'planted') }, 5000)
      c.close()
    }
    // The owner stamps the same dot with a different value. Replicas that hold the planted one refuse
    // it (typed), so the write cannot reach W=3; nothing crashes.
    await assert.rejects(kv.put('forge', 'real-2', { context, w: 3 }), (e: unknown) => isKvError(e))
    // Reads answer (one deterministic value for the dot), from any replica, repeatedly.
    for (let i = 0; i < 3; i++) {
      const got = await kv.get('forge', { r: 3 })
      assert.equal(got.found, true)
    }
    await allAlive(cluster)
    // Every replica restarts (WAL replay merges the conflicting dot without asserting).
    for (const r of cluster.replicas) { await r.kill('SIGKILL'); await r.start() }
    await allAlive(cluster)
    await reachAll(kv)
    // A write with the context of a read resolves the key everywhere.
    const got = await kv.get('forge', { r: 3 })
    await kv.put('forge', 'resolved', { context: got.context, w: 3 })
    assert.deepEqual((await kv.getString('forge', { r: 3 })).values, ['resolved'])
  })

  it('finding 3: a state whose context would be too large is refused; a replicate cannot push siblings past the bound', async () => {
    const n1 = rawConnection(cluster.seeds[0]!)
    // 40 actors of 128 characters: far more context than a header can carry.
    const actors = Array.from({ length: 40 }, (_, i) => `${String(i).padStart(3, '0')}.${'a'.repeat(124)}`).sort()
    const vv = Object.fromEntries(actors.map(a => [a, 1]))
    await assert.rejects(n1.request('replicate', { key: enc.encode('wide'), state: { vv, siblings: [{ actor: actors[0]!, counter: 1, value: enc.encode('x') }] } }, 5000),
      (e: unknown) => isKvError(e) && e.kind === 'TooLarge')
    // Three replicates of 64 siblings each, from different actors: the second is refused, 64 stay.
    for (const [i, prefix] of ['p', 'q', 'r'].entries()) {
      const sibs = Array.from({ length: limits.siblingsMax }, (_, j) => ({ actor: `${prefix}.1`, counter: j + 1, value: enc.encode(`${prefix}${j}`) }))
      const req = n1.request('replicate', { key: enc.encode('many'), state: { vv: { [`${prefix}.1`]: limits.siblingsMax }, siblings: sibs } }, 5000)
      if (i === 0) await req
      else await assert.rejects(req, (e: unknown) => isKvError(e) && e.kind === 'TooManySiblings')
    }
    const reply = await n1.request('get', { key: enc.encode('many') }, 5000)
    assert.equal(reply.state!.siblings.length, limits.siblingsMax)
    n1.close()
    // Reading it through the SDK and the gateway works.
    assert.equal((await kv.get('many', { r: 3 })).values.length, limits.siblingsMax)
    // (The gateway's connections may still be backing off after the restarts above.)
    await eventually(async () => {
      const viaHttp = await fetch(`${http}/kv/many?r=3`)
      assert.equal(viaHttp.status, 300, await viaHttp.text())
    }, 'gateway reads the key')
    await allAlive(cluster)
  })

  it('finding 4: counters near 2^53 are refused; a context forging a replica\'s own counter cannot erase or wedge a key', async () => {
    const n1 = rawConnection(cluster.seeds[0]!)
    const { actor: a1 } = await health(cluster.replicas[0]!.httpUrl)
    await assert.rejects(n1.request('replicate', { key: enc.encode('ctr'), state: { vv: { [a1]: Number.MAX_SAFE_INTEGER }, siblings: [] } }, 5000),
      (e: unknown) => isKvError(e) && e.kind === 'BadRequest')
    n1.close()
    await kv.put('ctr', 'acked', { w: 3 })
    // A context naming every replica's actor near 2^53: refused as a bad context, nothing stored.
    const actors = await Promise.all(cluster.replicas.map(async r => (await health(r.httpUrl)).actor))
    const huge = (n: number) => { const vv: Record<string, number> = {}; for (const a of [...actors].sort()) vv[a] = n; return vv }
    let res = await fetch(`${http}/kv/ctr`, { method: 'PUT', body: 'forged', headers: { 'x-ringkv-context': encodeForged(huge(2 ** 53 - 2)) } })
    assert.equal(res.status, 400)
    // At counterMax, within the wire bound: each replica refuses a context that claims dots of its own
    // actor it never issued, so the write is refused and the acknowledged value stays.
    res = await fetch(`${http}/kv/ctr`, { method: 'PUT', body: 'forged', headers: { 'x-ringkv-context': encodeContext(huge(limits.counterMax)) } })
    assert.equal(res.status, 400, await res.text())
    assert.deepEqual((await kv.getString('ctr', { r: 3 })).values, ['acked'])
    // The key can still be written and deleted.
    const got = await kv.get('ctr')
    await kv.put('ctr', 'again', { context: got.context, w: 3 })
    await kv.delete('ctr', { w: 3 })
    assert.equal((await kv.get('ctr', { r: 3 })).found, false)
    await allAlive(cluster)
  })

  it('finding 9: 65 blind puts: the 65th is refused with TooManySiblings and its context; reads, update and delete work', async () => {
    const key = 'sdk-siblings'
    for (let i = 0; i < limits.siblingsMax; i++) await kv.put(key, `v${i}`)
    let refused: KvError | undefined
    try { await kv.put(key, 'one too many') } catch (e) { refused = e as KvError }
    assert.ok(refused && refused.kind === 'TooManySiblings', `typed refusal, got ${refused?.kind} ${refused?.message}`)
    const data = refused.data as Extract<KvError['data'], { kind: 'TooManySiblings' }>
    assert.equal(data.siblingsMax, limits.siblingsMax)
    const got = await kv.get(key)
    assert.equal(got.values.length, limits.siblingsMax)
    assert.equal((await fetch(`${http}/kv/${key}`)).status, 300)
    // The context the refusal carried resolves the siblings.
    await kv.put(key, 'merged', { context: data.context, w: 3 })
    assert.deepEqual((await kv.getString(key, { r: 3 })).values, ['merged'])
    await kv.update(key, vs => dec.decode(vs[0]!) + '+')
    assert.deepEqual((await kv.getString(key, { r: 3 })).values, ['merged+'])
    assert.equal((await fetch(`${http}/kv/${key}`, { method: 'DELETE' })).status, 204)
    assert.equal((await kv.get(key, { r: 3 })).found, false)
    await allAlive(cluster)
  })
})

/** A context token for counters encodeContext refuses to write (above counterMax), built by hand. */
function encodeForged(vv: Record<string, number>): string {
  // msgpack: array of [actor, float64 counter]
  const parts: number[] = []
  const entries = Object.entries(vv)
  parts.push(0x90 | entries.length)
  for (const [a, n] of entries) {
    parts.push(0x92)
    const b = enc.encode(a)
    parts.push(0xa0 | b.length, ...b)
    const f = new DataView(new ArrayBuffer(8)); f.setFloat64(0, n)
    parts.push(0xcb, ...new Uint8Array(f.buffer))
  }
  return Buffer.from(parts).toString('base64url')
}

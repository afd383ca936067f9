// The SDK and the gateway keep their promises against real replica processes: a failure names each
// replica and why (SDK errors, the gateway's 503 bodies, /health), `timeoutMs` bounds the whole
// call even when every replica is paused (SIGSTOP: connections stay open, nothing answers) and the
// client has not learned the ring yet, a value that is not JSON is a typed error, and a read whose
// merged context is too large to encode rejects instead of ending the process. No unhandled
// rejection happens in this process (which runs the SDK and the Node gateway) at any point.

import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { createClient, isKvError, KvError, QuorumError, type KvClient } from '../client/index.ts'
import { limits } from '../coordinator/limits.ts'
import { encodeContext } from '../coordinator/version/context.ts'
import { compareStrings, type DvvSet } from '../coordinator/version/dvv.ts'
import { startGateway } from '../replica/node/gateway.ts'
import { enc, eventually, rawConnection, testCluster } from './helpers.ts'

const unhandled: unknown[] = []
process.on('unhandledRejection', e => { unhandled.push(e) })

interface ErrorJson { error: { kind: string; message: string; failures?: Record<string, { kind: string; message: string }> } }

describe('promises kept against real replicas', () => {
  let cluster: Awaited<ReturnType<typeof testCluster>>
  let kv: KvClient
  let base: string
  before(async () => {
    cluster = await testCluster(17901, { httpPort: 18901 })
    base = cluster.gateway!.url
    kv = createClient({ seeds: cluster.seeds, timeoutMs: 3000 })
  })
  after(async () => {
    await kv.close()
    await cluster.cleanup()
    assert.deepEqual(unhandled, [], 'an unhandled rejection happened')
  })

  it('getJson of a value that is not JSON is a BadRequest naming the key, caused by the SyntaxError', async () => {
    await kv.put('not-json', '{"half": ')
    const e = await kv.getJson('not-json').then(() => assert.fail('parsed'), (e: unknown) => e)
    assert.ok(isKvError(e) && e.kind === 'BadRequest', `${e}`)
    assert.match(e.message, /value of "not-json" is not JSON/)
    assert.ok(e.cause instanceof SyntaxError)
    await kv.putJson('json', { a: [1, 2] })
    assert.deepEqual((await kv.getJson('json')).values, [{ a: [1, 2] }])
  })

  it('a read whose merged context is too large to encode rejects with TooLarge; no process ends', async () => {
    // Each replica holds a state of 20 actors whose context fits; merged, 40 or 60 do not.
    const key = 'wide-context'
    const states = cluster.replicas.map((r, i): DvvSet => {
      const actors = Array.from({ length: 20 }, (_, j) => `${r.id}-${String(j).padStart(3, '0')}-${'x'.repeat(92)}`).sort(compareStrings)
      return { vv: Object.fromEntries(actors.map(a => [a, 1 + i])), siblings: [{ actor: actors[0]!, counter: 1 + i, value: enc.encode(`from ${r.id}`) }] }
    })
    for (const s of states) assert.ok(encodeContext(s.vv).length <= limits.contextBytesMax, 'one replica\'s context must fit')
    await Promise.all(cluster.replicas.map(async (r, i) => {
      const conn = rawConnection(r.url, r.id)
      try { await conn.request('replicate', { key: enc.encode(key), state: states[i]! }, 5000) } finally { conn.close() }
    }))
    for (const r of [2, 3]) {
      await assert.rejects(kv.get(key, { r }), (e: unknown) => {
        assert.ok(isKvError(e), `${e}`)
        assert.ok(e.data.kind === 'TooLarge' && e.data.bytesMax === limits.contextBytesMax && e.data.bytes > limits.contextBytesMax, e.message)
        return true
      })
    }
    // The same read through the gateway (this process) and through a replica's own HTTP routes.
    for (const url of [base, cluster.replicas[0]!.httpUrl]) {
      const res = await fetch(`${url}/kv/${key}?r=3`)
      assert.equal(res.status, 413, url)
      const body = await res.json() as ErrorJson
      assert.equal(body.error.kind, 'TooLarge')
    }
    for (const r of cluster.replicas) assert.equal((await fetch(`${r.httpUrl}/health`)).status, 200, `${r.id} must still serve`)
  })

  it("a caller's own tiny timeout does not take replicas down for the client's other calls", async () => {
    await kv.put('tiny', 'v', { w: 3 })
    for (let i = 0; i < 5; i++) await kv.get('tiny', { timeoutMs: 1, r: 3 }).catch((e: unknown) => assert.ok(isKvError(e), `${e}`))
    for (const r of cluster.replicas) assert.equal(await kv.isUp(r.id), true, `${r.id} taken down by a 1 ms timeout`)
    assert.equal((await kv.getString('tiny', { r: 3 })).values[0], 'v')
  })

  it('a read with one replica killed names that replica and why', async () => {
    await kv.put('k-one-down', 'v', { w: 3 })
    const n2 = cluster.replica('n2')
    await n2.kill('SIGKILL')
    try {
      const e = await kv.get('k-one-down', { r: 3 }).then(() => assert.fail('read met R=3'), (e: unknown) => e)
      assert.ok(e instanceof QuorumError, `${e}`)
      assert.ok(e.failures.has('n2'), `n2 not named: ${e.message}`)
      assert.ok(e.data.failures.n2 && e.data.failures.n2.message.length > 0)
      assert.match(e.message, /n2: (Unavailable|Timeout): /)
      // R=2 still reads.
      assert.equal((await kv.getString('k-one-down')).values[0], 'v')
    } finally {
      await n2.start()
    }
  })

  it('every replica paused: a fresh client, the gateway and /health all fail within the deadline, naming each replica', async (t) => {
    // The in-process gateway knows the ring already; a fresh one (below) does not.
    assert.equal((await fetch(`${base}/kv/warm`, { method: 'PUT', body: 'x' })).status, 204)
    for (const r of cluster.replicas) await r.kill('SIGSTOP')
    const fresh = await startGateway({ seeds: cluster.seeds, port: 18902 })
    const app = createClient({ seeds: cluster.seeds, timeoutMs: 1000 })
    try {
      // A fresh client: ring discovery and the put share the 1000 ms.
      let started = Date.now()
      const e = await app.put('paused', 'v').then(() => assert.fail('put succeeded'), (e: unknown) => e)
      let took = Date.now() - started
      assert.ok(e instanceof KvError, `${e}`)
      assert.equal(e.kind, 'Unavailable', e.message)
      assert.ok(e.data.kind === 'Unavailable' && e.data.failures)
      assert.deepEqual(Object.keys(e.data.failures).sort(), cluster.seeds.slice().sort())
      for (const seed of cluster.seeds) assert.ok(e.message.includes(seed), `${seed} not in ${e.message}`)
      t.diagnostic(`fresh client's put failed after ${took} ms (timeoutMs 1000)`)
      assert.ok(took < 3000, `fresh client's put took ${took} ms against a 1000 ms deadline`)

      // The gateway that knows the ring: its stamp went to a paused primary, whose silent connection
      // is probed and reset; a sent stamp never moves to another node (docs/quorum.md), so the write
      // ends 503 Unavailable, its outcome unknown, naming the primary it was sent to.
      started = Date.now()
      const res = await fetch(`${base}/kv/paused?timeout_ms=1000`, { method: 'PUT', body: 'v' })
      took = Date.now() - started
      assert.equal(res.status, 503)
      const body = await res.json() as ErrorJson
      assert.equal(body.error.kind, 'Unavailable', JSON.stringify(body))
      assert.match(body.error.message, /stamp at n[123] failed after it was sent.*outcome unknown/, body.error.message)
      t.diagnostic(`warm gateway's 503 after ${took} ms (timeout_ms=1000)`)
      assert.ok(took < 3000, `gateway 503 took ${took} ms against 1000`)

      // A fresh gateway: 503 naming each seed.
      started = Date.now()
      const res2 = await fetch(`${fresh.url}/kv/paused?timeout_ms=1000`, { method: 'PUT', body: 'v' })
      took = Date.now() - started
      assert.equal(res2.status, 503)
      const body2 = await res2.json() as ErrorJson
      assert.equal(body2.error.kind, 'Unavailable')
      assert.deepEqual(Object.keys(body2.error.failures ?? {}).sort(), cluster.seeds.slice().sort())
      t.diagnostic(`fresh gateway's 503 after ${took} ms (timeout_ms=1000)`)
      assert.ok(took < 3000, `fresh gateway 503 took ${took} ms against 1000`)

      // /health: no replica reachable, so 503 'down' for load balancers, on both.
      for (const url of [base, fresh.url]) {
        const h = await fetch(`${url}/health`)
        assert.equal(h.status, 503, url)
        const health = await h.json() as { status: string; role: string; replicas: { total: number; reachable: number; unreachable: Record<string, unknown> } }
        assert.equal(health.status, 'down')
        assert.equal(health.role, 'gateway')
        assert.equal(health.replicas.reachable, 0)
        assert.equal(health.replicas.total, 3)
        assert.equal(Object.keys(health.replicas.unreachable).length, 3)
      }
    } finally {
      for (const r of cluster.replicas) await r.kill('SIGCONT')
      await app.close()
      await fresh.close()
    }
    // Back: /health says ok again, and the gateway serves.
    await eventually(async () => {
      const h = await fetch(`${base}/health`)
      const health = await h.json() as { status: string; replicas: { reachable: number } }
      assert.equal(h.status, 200)
      assert.equal(health.status, 'ok')
      assert.equal(health.replicas.reachable, 3)
    }, 'gateway healthy after SIGCONT', 15_000)
    assert.equal((await fetch(`${base}/kv/after-pause`, { method: 'PUT', body: 'x' })).status, 204)
  })

  it('the gateway answers 404 for a missing key as a result ({ found: false }), not an error kind', async () => {
    const res = await fetch(`${base}/kv/never-written-here`)
    assert.equal(res.status, 404)
    assert.deepEqual(await res.json(), { found: false })
  })
})

describe('a one-node cluster (N=3 on one node)', () => {
  let cluster: Awaited<ReturnType<typeof testCluster>>
  before(async () => { cluster = await testCluster(17941, { replicas: 1 }) })
  after(async () => { await cluster.cleanup() })

  it('writes and reads with the default quorum (a majority of the one copy), and refuses w=2 with BadRequest', async () => {
    const kv = createClient({ seeds: cluster.seeds })
    await kv.put('solo', 'v')
    assert.deepEqual((await kv.getString('solo')).values, ['v'])
    await assert.rejects(kv.put('solo', 'w', { w: 2 }), (e: unknown) => isKvError(e) && e.kind === 'BadRequest' && /1 to 1/.test(e.message))
    await kv.close()
  })
})

// Replicas killed with SIGKILL while the SDK writes: quorum operations keep working at W=2/R=2,
// W=3 fails with a QuorumError that counts the acks, a restarted replica still has every write it
// acknowledged (its WAL), read repair brings it what it missed, and a cluster killed whole in the
// middle of a write load loses no write that the SDK reported as successful.

import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { createClient, QuorumError, type KvClient } from '../client/index.ts'
import { isDeleted, values as valuesOf } from '../coordinator/version/dvv.ts'
import { dec, enc, eventually, rawConnection, testCluster } from './helpers.ts'

describe('one replica killed', () => {
  let cluster: Awaited<ReturnType<typeof testCluster>>
  let kv: KvClient
  before(async () => {
    // Anti-entropy would repair n3 on its own; this test is about read repair, so its loop is slowed to an hour.
    cluster = await testCluster(17301, { extraArgs: ['--aae-interval-ms', '3600000'] })
    kv = createClient({ seeds: cluster.seeds, timeoutMs: 3000 })
  })
  after(async () => { await kv.close(); await cluster.cleanup() })

  it('keeps W=2 and R=2 working, fails W=3 with 2 acks, keeps acked writes and repairs the rest', async () => {
    const before = Array.from({ length: 200 }, (_, i) => `acked:${i}`)
    for (const k of before) await kv.put(k, `v-${k}`, { w: 3 })
    const victim = cluster.replica('n3')
    await victim.kill('SIGKILL')

    const missed = Array.from({ length: 200 }, (_, i) => `missed:${i}`)
    for (const k of missed) await kv.put(k, `v-${k}`, { w: 2 })
    for (const k of [...before, ...missed]) {
      const got = await kv.get(k, { r: 2 })
      assert.equal(got.found, true, k)
      assert.deepEqual(got.values.map(v => dec.decode(v)), [`v-${k}`])
    }
    await assert.rejects(kv.put('needs-three', 'x', { w: 3 }), (e: unknown) => {
      assert.ok(e instanceof QuorumError, `expected QuorumError, got ${e}`)
      assert.equal(e.required, 3)
      assert.equal(e.acked, 2)
      assert.equal(e.replicas.length, 2)
      assert.ok(!e.replicas.includes('n3'))
      assert.match(e.message, /2 of 3/)
      return true
    })

    await victim.start()
    // Everything n3 acknowledged before the kill is on its disk (read from n3 alone).
    const direct = rawConnection(victim.url, 'n3')
    for (const k of before) {
      const reply = await direct.request('get', { key: enc.encode(k) }, 5000)
      assert.ok(reply.state, `n3 lost acknowledged write ${k}`)
      assert.deepEqual(valuesOf(reply.state).map(v => dec.decode(v)), [`v-${k}`])
    }
    // It missed the writes made while it was down; an R=3 read repairs each one.
    const sample = missed.slice(0, 50)
    assert.equal((await direct.request('get', { key: enc.encode(sample[0]!) }, 5000)).state, null)
    await eventually(() => kv.get(sample[0]!, { r: 3 }), 'the client sees n3 again')
    for (const k of sample) assert.equal((await kv.get(k, { r: 3 })).found, true)
    for (const k of sample) {
      await eventually(async () => {
        const reply = await direct.request('get', { key: enc.encode(k) }, 5000)
        assert.ok(reply.state && !isDeleted(reply.state), `n3 not repaired for ${k}`)
        assert.equal(dec.decode(valuesOf(reply.state)[0]!), `v-${k}`)
      }, `read repair of ${k}`, 5000)
    }
    direct.close()
  })
})

describe('whole cluster killed during a write load', () => {
  let cluster: Awaited<ReturnType<typeof testCluster>>
  before(async () => { cluster = await testCluster(17311) })
  after(async () => { await cluster.cleanup() })

  it('keeps every write the SDK reported as successful', async () => {
    const kv = createClient({ seeds: cluster.seeds, timeoutMs: 2000 })
    const acked = new Map<string, string>()
    let stop = false
    let failures = 0
    const writers = Array.from({ length: 16 }, async (_, w) => {
      for (let i = 0; !stop; i++) {
        const key = `load:${w}:${i}`
        const value = `value-${w}-${i}-${'x'.repeat(200)}`
        try {
          await kv.put(key, value)
          acked.set(key, value)
        } catch {
          failures++
          await new Promise(r => setTimeout(r, 20))
        }
      }
    })
    await eventually(async () => assert.ok(acked.size >= 1500, `only ${acked.size} acked so far`), 'write load underway', 30_000)
    await Promise.all(cluster.replicas.map(r => r.kill('SIGKILL')))
    await new Promise(r => setTimeout(r, 200))
    stop = true
    await Promise.all(writers)
    await kv.close()
    assert.ok(failures > 0, 'the kill should have failed some in-flight writes')

    await Promise.all(cluster.replicas.map(r => r.start()))
    const reader = createClient({ seeds: cluster.seeds, timeoutMs: 5000 })
    await eventually(() => reader.get('load:0:0'), 'cluster back')
    for (const [key, value] of acked) {
      const got = await reader.get(key, { r: 2 })
      assert.equal(got.found, true, `acknowledged write ${key} lost`)
      assert.ok(got.values.some(v => dec.decode(v) === value), `acknowledged value of ${key} lost`)
    }
    await reader.close()
  })
})

describe('concurrent writers', () => {
  let cluster: Awaited<ReturnType<typeof testCluster>>
  before(async () => { cluster = await testCluster(17321) })
  after(async () => { await cluster.cleanup() })

  it('keeps both values as siblings, and a write with the read context replaces both', async () => {
    const a = createClient({ seeds: [cluster.seeds[0]!] })
    const b = createClient({ seeds: [cluster.seeds[2]!] })
    await a.put('cart:42', 'milk')
    await b.put('cart:42', 'eggs')
    const got = await a.getString('cart:42')
    assert.deepEqual([...got.values].sort(), ['eggs', 'milk'])
    await b.put('cart:42', 'milk,eggs', { context: got.context, w: 3 })
    const after = await a.getString('cart:42', { r: 3 })
    assert.deepEqual(after.values, ['milk,eggs'])
    await a.close(); await b.close()
  })

  it('never loses a concurrent value to a write with a stale context', async () => {
    const clients = [0, 1, 2].map(i => createClient({ seeds: [cluster.seeds[i]!] }))
    const key = 'stale'
    const first = await clients[0]!.put(key, 'v0')
    // Each client writes with the same, soon stale, context: none of them saw the others.
    await Promise.all(clients.map((c, i) => c.put(key, `v${i + 1}`, { context: first.context })))
    const got = await clients[1]!.getString(key, { r: 3 })
    assert.deepEqual([...got.values].sort(), ['v1', 'v2', 'v3'])
    // A write with an even older (empty) context keeps all of them too.
    await clients[2]!.put(key, 'blind')
    assert.deepEqual([...(await clients[0]!.getString(key, { r: 3 })).values].sort(), ['blind', 'v1', 'v2', 'v3'])
    const resolved = createClient({ seeds: cluster.seeds, resolve: vs => enc.encode(vs.map(v => dec.decode(v)).sort().join('+')) })
    assert.deepEqual((await resolved.getString(key)).values, ['blind+v1+v2+v3'])
    for (const c of [...clients, resolved]) await c.close()
  })

  it('update() merges concurrent updates instead of losing one', async () => {
    const clients = [0, 1, 2].map(i => createClient({ seeds: [cluster.seeds[i]!] }))
    // A set kept as a JSON array; fn merges every sibling it is shown and adds one item.
    const add = (item: string) => (values: Uint8Array[]) =>
      JSON.stringify([...new Set([...values.flatMap(v => JSON.parse(dec.decode(v)) as string[]), item])].sort())
    const items = Array.from({ length: 30 }, (_, i) => `item${i}`)
    // A generous deadline: 30 updates of one key race and retry, which on a loaded machine outlasts the
    // default request timeout; this test is about merging, not latency.
    const results = await Promise.all(items.map((item, i) => clients[i % 3]!.update('set', add(item), { timeoutMs: 30_000 })))
    assert.ok(results.some(r => r.attempts > 1), 'some updates should have met a concurrent change and retried')
    const final = await clients[0]!.get('set', { r: 3, timeoutMs: 30_000 })
    const union = new Set(final.values.flatMap(v => JSON.parse(dec.decode(v)) as string[]))
    assert.deepEqual([...union].sort(), [...items].sort(), 'an update was lost')
    for (const c of clients) await c.close()
  })
})

// Which replicas a get asks (docs/quorum.md, "A read asks R"), counted on the replicas themselves:
// with readFanout 'quorum' and a speculation delay no get reaches, every get is served by exactly R
// replicas; with 'all', by every one. With a replica paused (SIGSTOP: it answers nothing and fails
// nothing), gets asked of it first still answer, because the speculation asks the third replica;
// without it they would wait out their deadline.

import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { scrape } from '../bench/replica-metrics.ts'
import { createClient } from '../client/index.ts'
import { eventually, testCluster } from './helpers.ts'

/** Gets a replica has served, from its /metrics (the request histogram's count). */
async function getsServed(httpUrl: string): Promise<number> {
  const gets = (await scrape(httpUrl)).get('ringkv_request_duration_seconds{op="get"}')
  assert.ok(gets, `${httpUrl}/metrics has no get histogram`)
  return gets.count
}

describe('read fan-out', () => {
  let cluster: Awaited<ReturnType<typeof testCluster>>
  const ids = ['n1', 'n2', 'n3']
  const served = async () => (await Promise.all(ids.map(id => getsServed(cluster.replica(id).httpUrl)))).reduce((a, b) => a + b, 0)
  const keys = Array.from({ length: 60 }, (_, i) => `fanout:${i}`)

  before(async () => {
    cluster = await testCluster(17851)
    const kv = createClient({ seeds: cluster.seeds })
    for (const k of keys) await kv.put(k, `v-${k}`, { w: 3 })
    await kv.close()
  })
  after(async () => { await cluster.cleanup() })

  it("'quorum' asks R replicas per get, 'all' asks N", async () => {
    // A delay the gets never reach: no speculation, so only failures could ask a third replica.
    const quorum = createClient({ seeds: cluster.seeds, timeoutMs: 30_000, speculativeReadMs: 20_000 })
    const all = createClient({ seeds: cluster.seeds, readFanout: 'all' })
    for (const [kv, r, each] of [[quorum, 2, 2], [quorum, 1, 1], [all, 2, 3]] as const) {
      const before = await served()
      // Concurrently, so the least-loaded choice has loads to go by.
      const got = await Promise.all(keys.map(async k => (await kv.getString(k, { r })).values[0]))
      assert.deepEqual(got, keys.map(k => `v-${k}`))
      if (kv === quorum) {
        // Whole already: a get that asks R replicas completes only once all R have answered.
        assert.equal(await served() - before, keys.length * each, `R=${r}: gets served per get`)
      } else {
        // A get asked of all three answers on the first two replies: the third replica may not have
        // served it yet (seen in CI: one replica, behind, had served none of the 60 when they returned).
        await eventually(async () => assert.equal(await served() - before, keys.length * each), `R=${r}, 'all': gets served per get`)
      }
    }
    assert.deepEqual(quorum.stats().speculation, { afterMs: 20_000, speculated: 0, withheld: 0 })
    assert.equal(all.stats().speculation, null, "'all' has no speculation")
    await quorum.close()
    await all.close()
  })

  it('a get asked of a paused replica first still answers, through the speculation', async (t) => {
    const kv = createClient({ seeds: cluster.seeds, timeoutMs: 2000, speculativeReadMs: 50 })
    await kv.ring()
    const n1 = cluster.replica('n1')
    await n1.kill('SIGSTOP')
    try {
      // One at a time: the first get whose preference list starts with n1 asks n1 (no load on any
      // connection yet, so preference order decides); after that n1's unanswered request makes it
      // the most loaded, and later gets ask it last.
      for (const k of keys) assert.deepEqual((await kv.getString(k)).values, [`v-${k}`])
      const stats = kv.stats()
      t.diagnostic(`gets p50 ${stats.get.p50Us} µs, max ${stats.get.maxUs} µs`)
      assert.ok(stats.get.maxUs >= 50_000, 'no get waited for the speculation, so none asked n1 first: the test did not test it')
      assert.ok(stats.speculation!.speculated >= 1, `kv.stats() counts the speculation: ${JSON.stringify(stats.speculation)}`)
      assert.equal(stats.speculation!.withheld, 0, 'far below the budget')
    } finally {
      await n1.kill('SIGCONT')
      await kv.close()
    }
  })
})

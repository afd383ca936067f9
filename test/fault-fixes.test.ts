// Regression tests, with real processes, for the two bugs the simulator found (docs/simulation.md):
// - seed 2: a replica restarting after SIGKILL kept its incarnation, so a dot it had made visible but
//   not durable could be issued again with another value. Now a start after an unclean stop takes a
//   new incarnation; a clean stop (SIGTERM) keeps it.
// - seed 1179: a stamp that timed out at a paused replica moved on and stamped again elsewhere, so
//   one write had two dots (and a delete that read one left the other standing). Now the write
//   fails with its outcome unknown, and after the replica resumes the key holds one sibling.
// And one the nemesis (npm run chaos, seed 1) found: a delete passed the empty context of a read that
// had found nothing was read again first, so its tombstone covered a put acknowledged in between,
// which was lost. The empty context is now honoured as given, by the SDK and by the gateway.

import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { createClient } from '../client/index.ts'
import { preferenceList } from '../coordinator/ring/ring.ts'
import { eventually, testCluster } from './helpers.ts'

async function health(url: string): Promise<{ incarnation: number; actor: string }> {
  const res = await fetch(`${url}/health`)
  return await res.json() as { incarnation: number; actor: string }
}

describe('faults the simulator and the nemesis found', () => {
  let cluster: Awaited<ReturnType<typeof testCluster>>
  before(async () => { cluster = await testCluster(18730, { httpPort: 18739 }) })
  after(async () => { await cluster.cleanup() })

  it('a restart after SIGKILL takes a new incarnation; one after SIGTERM keeps it', async () => {
    const n3 = cluster.replica('n3')
    const first = await health(n3.httpUrl)
    await n3.kill('SIGTERM')
    await n3.start()
    const clean = await health(n3.httpUrl)
    assert.equal(clean.incarnation, first.incarnation, 'a clean stop keeps the incarnation')
    await n3.kill('SIGKILL')
    await n3.start()
    const crashed = await health(n3.httpUrl)
    assert.ok(crashed.incarnation > clean.incarnation, `incarnation ${crashed.incarnation} not above ${clean.incarnation} after SIGKILL`)
    assert.equal(crashed.actor, `n3.${crashed.incarnation}`)
  })

  it('a stamp that times out at a paused replica is not stamped again elsewhere', async () => {
    const kv = createClient({ seeds: cluster.seeds, timeoutMs: 2000 })
    const ring = await kv.ring()
    let key = ''
    for (let i = 0; i < 1000 && !key; i++) if (preferenceList(ring, `stamp-${i}`).primaries[0] === 'n1') key = `stamp-${i}`
    assert.ok(key, 'a key whose first primary is n1')
    await kv.put('warm', 'x', { w: 3 }) // every connection open, so n1 is the stamper for `key`
    const n1 = cluster.replica('n1')
    await n1.kill('SIGSTOP')
    try {
      await assert.rejects(kv.put(key, 'once'), (e: Error) => /may be stored there/.test(e.message), 'the write fails, outcome unknown')
    } finally {
      await n1.kill('SIGCONT')
    }
    // n1 stamps the request it had received once it resumes; nobody else stamped it.
    await eventually(async () => {
      const got = await kv.getString(key, { r: 3 })
      assert.deepEqual(got.values, ['once'], `one sibling, got ${JSON.stringify(got.values)}`)
    }, 'n1 back, one sibling', 15_000)
    await kv.close()
  })

  it('a delete with the empty context of a read that found nothing leaves a value written since', async () => {
    const kv = createClient({ seeds: cluster.seeds, timeoutMs: 5000 })
    const read = await kv.get('raced')
    assert.equal(read.found, false)
    assert.equal(read.context, '', 'a read of a missing key returns the empty context')
    await kv.put('raced', 'written after the read')
    await kv.delete('raced', { context: read.context })
    const sdk = await kv.getString('raced', { r: 3 })
    assert.deepEqual(sdk.values, ['written after the read'], 'the tombstone covers nothing, so the put stays')
    // A delete without a context still reads first and covers what is stored.
    await kv.delete('raced')
    assert.equal((await kv.get('raced', { r: 3 })).found, false, 'a delete with no context covers what it read')

    // The gateway: an x-ringkv-context header present but empty is the empty context, not a missing one.
    const base = cluster.gateway!.url
    const miss = await fetch(`${base}/kv/raced-http`)
    assert.equal(miss.status, 404)
    const context = miss.headers.get('x-ringkv-context') ?? ''
    assert.equal(context, '', 'nothing read, nothing to cover')
    assert.equal((await fetch(`${base}/kv/raced-http`, { method: 'PUT', body: 'written after the read' })).status, 204)
    assert.equal((await fetch(`${base}/kv/raced-http`, { method: 'DELETE', headers: { 'x-ringkv-context': context } })).status, 204)
    const after = await fetch(`${base}/kv/raced-http?r=3`)
    assert.equal(after.status, 200, 'the put stays')
    assert.equal(await after.text(), 'written after the read')
    await kv.close()
  })
})

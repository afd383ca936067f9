// The HTTP gateway coordinates with the same quorum logic as the SDK: raw bodies in and out,
// siblings as 300 with base64 values, 404 for absent and deleted keys, the causal context in
// x-ringkv-context both ways, ?r= and ?w= per request; /health and /ring on gateway and replicas.

import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { testCluster } from './helpers.ts'

describe('HTTP gateway', () => {
  let cluster: Awaited<ReturnType<typeof testCluster>>
  let base: string
  before(async () => {
    cluster = await testCluster(17401, { httpPort: 18401 })
    base = cluster.gateway!.url
  })
  after(async () => { await cluster.cleanup() })

  it('puts, gets, shows siblings, resolves them with the context, and deletes', async () => {
    const put = (body: string, headers: Record<string, string> = {}, q = '') => fetch(`${base}/kv/cart%3A42${q}`, { method: 'PUT', body, headers })
    const r1 = await put('milk')
    assert.equal(r1.status, 204)
    const ctx1 = r1.headers.get('x-ringkv-context')
    assert.ok(ctx1 && /^[A-Za-z0-9_-]+$/.test(ctx1), `context header ${ctx1}`)

    const g1 = await fetch(`${base}/kv/cart:42`)
    assert.equal(g1.status, 200)
    assert.equal(g1.headers.get('content-type'), 'application/octet-stream')
    assert.equal(await g1.text(), 'milk')
    assert.equal(g1.headers.get('x-ringkv-context'), ctx1)

    // A second write without the context is concurrent: two siblings.
    assert.equal((await put('eggs')).status, 204)
    const g2 = await fetch(`${base}/kv/cart:42?r=3`)
    assert.equal(g2.status, 300)
    const siblings = (await g2.json() as string[]).map(b => Buffer.from(b, 'base64').toString()).sort()
    assert.deepEqual(siblings, ['eggs', 'milk'])
    const ctx2 = g2.headers.get('x-ringkv-context')!

    // Writing with the read's context replaces both.
    assert.equal((await put('milk,eggs', { 'x-ringkv-context': ctx2 }, '?w=3')).status, 204)
    const g3 = await fetch(`${base}/kv/cart:42?r=3`)
    assert.equal(g3.status, 200)
    assert.equal(await g3.text(), 'milk,eggs')

    const d = await fetch(`${base}/kv/cart:42`, { method: 'DELETE', headers: { 'x-ringkv-context': g3.headers.get('x-ringkv-context')! } })
    assert.equal(d.status, 204)
    const g4 = await fetch(`${base}/kv/cart:42?r=3`)
    assert.equal(g4.status, 404)
    assert.ok(g4.headers.get('x-ringkv-context'), 'a deleted key still returns its context')
    assert.equal((await fetch(`${base}/kv/never-written`)).status, 404)
  })

  it('serves binary values byte for byte, and unicode keys', async () => {
    const bytes = new Uint8Array(4096).map((_, i) => (i * 31) & 0xff)
    const key = encodeURIComponent('ключ/ü 🚀')
    assert.equal((await fetch(`${base}/kv/${key}`, { method: 'PUT', body: bytes })).status, 204)
    const got = new Uint8Array(await (await fetch(`${base}/kv/${key}`)).arrayBuffer())
    assert.deepEqual(got, bytes)
  })

  it('answers 503 with the ack count when W cannot be met', async () => {
    await cluster.replica('n2').kill('SIGKILL')
    try {
      const res = await fetch(`${base}/kv/q?w=3&timeout_ms=1500`, { method: 'PUT', body: 'x' })
      assert.equal(res.status, 503)
      const body = await res.json() as { error: { kind: string; required: number; acked: number } }
      assert.equal(body.error.kind, 'QuorumNotMet')
      assert.equal(body.error.required, 3)
      assert.equal(body.error.acked, 2)
      assert.equal((await fetch(`${base}/kv/q?w=2`, { method: 'PUT', body: 'x' })).status, 204)
    } finally {
      await cluster.replica('n2').start()
    }
  })

  it('serves /health and /ring on the gateway and on every replica', async () => {
    for (const url of [base, ...cluster.replicas.map(r => r.httpUrl)]) {
      const h = await fetch(`${url}/health`)
      assert.equal(h.status, 200)
      const health = await h.json() as Record<string, unknown>
      assert.equal(health.status, 'ok')
      const ring = await (await fetch(`${url}/ring`)).json() as { partitions: number; owners: string[]; nodes: { id: string }[] }
      assert.equal(ring.partitions, 64)
      assert.equal(ring.owners.length, 64)
      assert.deepEqual(ring.nodes.map(n => n.id).sort(), ['n1', 'n2', 'n3'])
    }
    const replicaHealth = await (await fetch(`${cluster.replicas[0]!.httpUrl}/health`)).json() as Record<string, unknown>
    assert.equal(replicaHealth.node, 'n1')
    assert.equal(typeof replicaHealth.incarnation, 'number')
    const metrics = await (await fetch(`${cluster.replicas[0]!.httpUrl}/metrics`)).text()
    assert.match(metrics, /ringkv_requests_total\{node="n1",type="(put|replicate|get)"\} \d+/)
  })

  it('serves the KV routes on a replica too (server-side coordination)', async () => {
    const r = cluster.replicas[2]!.httpUrl
    assert.equal((await fetch(`${r}/kv/via-replica`, { method: 'PUT', body: 'hi' })).status, 204)
    assert.equal(await (await fetch(`${base}/kv/via-replica`)).text(), 'hi')
  })
})

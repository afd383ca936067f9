// The gateway's conformance suite: what every HTTP gateway of ringkv answers, run as one suite
// against each (the Node gateway in test/gateway.test.ts, the Worker under wrangler in
// test/edge-gateway.test.ts), so the two cannot drift. Raw bodies in and out, siblings as 300 with
// base64 values, 404 { found: false } for absent and deleted keys, the causal context in
// x-ringkv-context both ways, ?r= ?w= per request, 503 naming the ack count, 400/413 for bad input,
// /health and /ring.

import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import type { testCluster } from './helpers.ts'

export type TestCluster = Awaited<ReturnType<typeof testCluster>>

export interface GatewayUnderTest {
  /** The cluster behind the gateway (3 replicas n1..n3, 64 partitions). */
  readonly cluster: TestCluster
  /** http://127.0.0.1:PORT of the gateway. */
  readonly base: string
  /** The role its /health reports. */
  readonly role: string
  stop(): Promise<void>
}

/**
 * Defines the suite `name`; `start` brings up a cluster and the gateway under test. `more` adds
 * tests of that gateway alone, sharing its cluster (`current()` is set once `start` has run).
 */
export function gatewayConformance(name: string, start: () => Promise<GatewayUnderTest>, more?: (current: () => GatewayUnderTest) => void): void {
  describe(name, () => {
    let g: GatewayUnderTest
    let base: string
    before(async () => {
      g = await start()
      base = g.base
    })
    after(async () => { await g?.stop() })

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
      assert.deepEqual(await g4.json(), { found: false })
      const never = await fetch(`${base}/kv/never-written`)
      assert.equal(never.status, 404)
      assert.deepEqual(await never.json(), { found: false })
    })

    it('serves binary values byte for byte, and unicode keys', async () => {
      const bytes = new Uint8Array(4096).map((_, i) => (i * 31) & 0xff)
      const key = encodeURIComponent('ключ/ü 🚀')
      assert.equal((await fetch(`${base}/kv/${key}`, { method: 'PUT', body: bytes })).status, 204)
      const got = new Uint8Array(await (await fetch(`${base}/kv/${key}`)).arrayBuffer())
      assert.deepEqual(got, bytes)
    })

    it('spreads keys over the whole ring: 64 keys written, each read back', async () => {
      const keys = Array.from({ length: 64 }, (_, i) => `spread:${i}`)
      for (const k of keys) assert.equal((await fetch(`${base}/kv/${k}`, { method: 'PUT', body: k })).status, 204, k)
      for (const k of keys) assert.equal(await (await fetch(`${base}/kv/${k}`)).text(), k)
    })

    it('answers bad input with 400 and 413, the body naming the kind', async () => {
      const put = (key: string, body: Uint8Array<ArrayBuffer> | string, q = '', headers: Record<string, string> = {}) => fetch(`${base}/kv/${key}${q}`, { method: 'PUT', body, headers })
      const kind = async (res: Response) => (await res.json() as { error: { kind: string } }).error.kind
      const badKey = await fetch(`${base}/kv/%C3%28`)
      assert.equal(badKey.status, 400)
      assert.equal(await kind(badKey), 'BadRequest')
      assert.equal((await fetch(`${base}/kv/${'k'.repeat(513)}`)).status, 400)
      const big = await put('big', new Uint8Array(1024 * 1024 + 1))
      assert.equal(big.status, 413)
      assert.equal(await kind(big), 'TooLarge')
      assert.equal((await put('k', 'v', '?w=0')).status, 400)
      assert.equal((await put('k', 'v', '?w=abc')).status, 400)
      assert.equal((await fetch(`${base}/kv/k?r=99`)).status, 400)
      const bad = await put('k', 'v', '', { 'x-ringkv-context': '!!garbage!!' })
      assert.equal(bad.status, 400)
      assert.equal(await kind(bad), 'BadRequest')
      assert.equal((await put('fine', 'v')).status, 204)
      assert.equal(await (await fetch(`${base}/kv/fine`)).text(), 'v')
      assert.equal((await fetch(`${base}/no-such-route`)).status, 404)
    })

    it('answers 503 with the ack count when W cannot be met', async () => {
      await g.cluster.replica('n2').kill('SIGKILL')
      try {
        const res = await fetch(`${base}/kv/q?w=3&timeout_ms=1500`, { method: 'PUT', body: 'x' })
        assert.equal(res.status, 503)
        const body = await res.json() as { error: { kind: string; required: number; acked: number } }
        assert.equal(body.error.kind, 'QuorumNotMet')
        assert.equal(body.error.required, 3)
        assert.equal(body.error.acked, 2)
        assert.equal((await fetch(`${base}/kv/q?w=2`, { method: 'PUT', body: 'x' })).status, 204)
      } finally {
        await g.cluster.replica('n2').start()
      }
    })

    it('serves /health and /ring', async () => {
      const h = await fetch(`${base}/health`)
      assert.equal(h.status, 200)
      const health = await h.json() as { status: string; role: string; replicas: { total: number } }
      assert.equal(health.status, 'ok')
      assert.equal(health.role, g.role)
      assert.equal(health.replicas.total, 3)
      const ring = await (await fetch(`${base}/ring`)).json() as { partitions: number; owners: string[]; nodes: { id: string }[] }
      assert.equal(ring.partitions, 64)
      assert.equal(ring.owners.length, 64)
      assert.deepEqual(ring.nodes.map(n => n.id).sort(), ['n1', 'n2', 'n3'])
    })

    more?.(() => g)
  })
}

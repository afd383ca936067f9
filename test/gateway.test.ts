// The Node HTTP gateway coordinates with the same quorum logic as the SDK: it passes the gateway
// conformance suite (test/gateway-conformance.ts, run against the Worker too), and replicas serve
// the same routes plus their own /health fields and /metrics.

import assert from 'node:assert/strict'
import { before, describe, it } from 'node:test'
import { gatewayConformance, type TestCluster } from './gateway-conformance.ts'
import { testCluster } from './helpers.ts'

gatewayConformance('HTTP gateway on Node', async () => {
  const cluster = await testCluster(17401, { httpPort: 18401 })
  return { cluster, base: cluster.gateway!.url, role: 'gateway', stop: () => cluster.cleanup() }
}, current => describe('replica HTTP routes', () => {
  let cluster: TestCluster
  before(() => { cluster = current().cluster })

  it('serves /health and /ring on every replica, with the replica\'s own fields and /metrics', async () => {
    for (const r of cluster.replicas) {
      const h = await fetch(`${r.httpUrl}/health`)
      assert.equal(h.status, 200)
      const health = await h.json() as Record<string, unknown>
      assert.equal(health.status, 'ok')
      assert.equal(health.node, r.id)
      assert.equal(typeof health.incarnation, 'number')
      const ring = await (await fetch(`${r.httpUrl}/ring`)).json() as { partitions: number; owners: string[] }
      assert.equal(ring.partitions, 64)
      assert.equal(ring.owners.length, 64)
    }
    const metrics = await (await fetch(`${cluster.replicas[0]!.httpUrl}/metrics`)).text()
    assert.match(metrics, /ringkv_connections_open\{node="n1"\} \d+/)
  })

  it('serves the KV routes on a replica too (server-side coordination)', async () => {
    const [a, b] = [cluster.replicas[2]!.httpUrl, cluster.replicas[0]!.httpUrl]
    assert.equal((await fetch(`${a}/kv/via-replica`, { method: 'PUT', body: 'hi' })).status, 204)
    assert.equal(await (await fetch(`${b}/kv/via-replica`)).text(), 'hi')
    const metrics = await (await fetch(`${cluster.replicas[2]!.httpUrl}/metrics`)).text()
    assert.match(metrics, /ringkv_requests_total\{node="n3",type="(put|replicate|get)"\} \d+/)
  })
}))

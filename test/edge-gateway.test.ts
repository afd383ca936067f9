// The gateway on Cloudflare Workers (edge/worker.ts), offline: `wrangler deploy --dry-run` builds it,
// and wrangler's unstable_startWorker runs it in workerd (the Workers runtime) against real replica
// processes, where it must pass the same conformance suite as the Node gateway. Then the fallback
// without Durable Objects (a coordinator per request) must close every socket a request opened.

import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { after, before, describe, it } from 'node:test'
import { offlineWranglerEnv } from '../edge/dev.ts'
import { root, startWorker, wranglerConfig as config, type StartedWorker } from './edge-worker.ts'
import { gatewayConformance, type TestCluster } from './gateway-conformance.ts'
import { eventually, testCluster } from './helpers.ts'

/** Replicas became healthy only after ~19 s on a loaded 2-core machine: more than the default 20 s allows for. */
const CLUSTER_READY_MS = 90_000
const run = promisify(execFile)
/** wrangler and workerd start in seconds; a loaded machine may take far longer. Only stops hangs. */
const BUILD_TIMEOUT_MS = 180_000

describe('edge gateway build', () => {
  it('wrangler deploy --dry-run --outdir builds the Worker offline', async () => {
    const out = await mkdtemp(join(tmpdir(), 'ringkv-edge-build-'))
    try {
      await run(process.execPath, [join(root, 'node_modules', 'wrangler', 'bin', 'wrangler.js'), 'deploy', '--dry-run', '--outdir', out, '-c', config],
        { cwd: root, env: { ...process.env, ...offlineWranglerEnv }, timeout: BUILD_TIMEOUT_MS })
      const bundle = await readFile(join(out, 'worker.js'), 'utf8')
      assert.match(bundle, /export \{[^}]*GatewayShard/)
      assert.doesNotMatch(bundle, /from "node:/, 'the Worker imports no node: module')
    } finally {
      await rm(out, { recursive: true, force: true })
    }
  })
})

gatewayConformance('HTTP gateway on Workers (wrangler, Durable Objects)', async () => {
  const cluster = await testCluster(18501, { readyTimeoutMs: CLUSTER_READY_MS })
  let worker: StartedWorker | undefined
  try {
    worker = await startWorker(cluster.seeds, 18510, 'durable-object')
  } catch (e) {
    await cluster.cleanup()
    throw e
  }
  const w = worker
  return { cluster, base: 'http://127.0.0.1:18510', role: 'edge-gateway', stop: async () => { await w.dispose(); await cluster.cleanup() } }
}, current => describe('Workers specifics', () => {
  let cluster: TestCluster
  before(() => { cluster = current().cluster })

  it('reports its mode and Durable Object shards on /health', async () => {
    const health = await (await fetch('http://127.0.0.1:18510/health')).json() as { mode: string; shards: number }
    assert.equal(health.mode, 'durable-object')
    assert.equal(health.shards, 8)
  })
}))

describe('HTTP gateway on Workers without Durable Objects (a coordinator per request)', () => {
  let cluster: TestCluster
  // Gossip and anti-entropy off: their peer connections come and go on their own schedule and would
  // blur the count of sockets this test checks (each replica's own /health peers are counted below).
  before(async () => {
    cluster = await testCluster(18521, { readyTimeoutMs: CLUSTER_READY_MS, extraArgs: ['--gossip-interval-ms', '0', '--aae-interval-ms', '3600000'] })
  })
  after(async () => { await cluster.cleanup() })

  it('per-request fallback: answers the same, and closes every socket a request opened', async () => {
    const openOn = async (i: number) => {
      const text = await (await fetch(`${cluster.replicas[i]!.httpUrl}/metrics`)).text()
      return Number(/ringkv_connections_open\{node="n\d+"\} (\d+)/.exec(text)![1])
    }
    // Replicas hold connections to each other too (each one's /health asks the others), made while
    // the cluster started: counted once they are there, as the baseline.
    await Promise.all(cluster.replicas.map(r => fetch(`${r.httpUrl}/health`).then(res => res.text())))
    const before = await Promise.all([0, 1, 2].map(openOn))
    const worker = await startWorker(cluster.seeds, 18511, 'per-request')
    try {
      const base = 'http://127.0.0.1:18511'
      const health = await (await fetch(`${base}/health`)).json() as { mode: string; status: string }
      assert.equal(health.mode, 'per-request')
      const requests = 12
      for (let i = 0; i < requests; i++) {
        assert.equal((await fetch(`${base}/kv/per-request:${i}`, { method: 'PUT', body: `v${i}` })).status, 204)
        assert.equal(await (await fetch(`${base}/kv/per-request:${i}`)).text(), `v${i}`)
      }
      // Each request opened a socket to each replica it asked; every one must be closed again (left
      // open, 2 x 12 requests would hold about 24 more per replica).
      await eventually(async () => {
        const now = await Promise.all([0, 1, 2].map(openOn))
        assert.ok(now.every((n, i) => n <= before[i]!), `open data-plane connections on n1, n2, n3: ${now}, against ${before} before`)
      }, 'per-request sockets closed', 20_000)
    } finally {
      await worker.dispose()
    }
  })
})

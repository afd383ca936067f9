// Handoff throughput and its cost to foreground writes (docs/handoff.md "Measured"). Measured and
// printed, never asserted.
//
//   node --import tsx bench/handoff-bench.ts [--keys 50000] [--value-bytes 1024] [--partitions 16]
//        [--rate 200] [--phase-seconds 10] [--handoff-bytes-per-sec BYTES] [--base-port 18120]
//
// 1. Starts two replicas (n1, n2; N=2, static membership) on --base-port and up, and loads --keys
//    keys of --value-bytes through the SDK; then starts a fresh third replica (n3) on its own ring.
// 2. Put load, open loop: --rate puts/s of the loaded keys (overwrites), each timed from its
//    scheduled start, through the SDK against n1 and n2, in three phases of --phase-seconds:
//    without handoff, while n1 streams every partition to n3, and without again (interleaved, so a
//    drift of the shared machine shows up as a difference between the two quiet phases).
// 3. Prints handoff MB/s (states' bytes acknowledged durable by n3 / wall time from the first
//    POST /admin/transfer until every transfer is done) and put p50/p99/max per phase.

import { mkdtemp, rm } from 'node:fs/promises'
import { loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { createClient } from '../client/index.ts'
import { startCluster, ReplicaProcess } from '../infra/cluster.ts'
import { putAll, putPhase, showPhase } from './open-puts.ts'

const { values: args } = parseArgs({
  options: {
    keys: { type: 'string', default: '50000' },
    'value-bytes': { type: 'string', default: '1024' },
    partitions: { type: 'string', default: '16' },
    rate: { type: 'string', default: '200' },
    'phase-seconds': { type: 'string', default: '10' },
    'handoff-bytes-per-sec': { type: 'string' },
    'base-port': { type: 'string', default: '18120' },
    /** Print n1's handoff log lines before cleaning up. */
    'show-log': { type: 'boolean', default: false },
  },
})
const keyCount = Number(args.keys)
const valueBytes = Number(args['value-bytes'])
const partitions = Number(args.partitions)
const rate = Number(args.rate)
const phaseMs = Number(args['phase-seconds']) * 1000
const basePort = Number(args['base-port'])

const dir = await mkdtemp(join(tmpdir(), 'ringkv-handoff-bench-'))
const extra = args['handoff-bytes-per-sec'] ? ['--handoff-bytes-per-sec', args['handoff-bytes-per-sec']] : []
const cluster = await startCluster({ dataDir: dir, basePort, httpPort: 0, replicas: 2, n: 2, partitions, extraArgs: extra })
const n3Port = basePort + 2
const n3 = new ReplicaProcess('n3', n3Port, join(dir, 'n3'), [
  '--id', 'n3', '--port', String(n3Port), '--data-dir', join(dir, 'n3'), '--nodes', `n3=ws://127.0.0.1:${n3Port}`,
  '--partitions', String(partitions), '--n', '1',
], { S3_ENDPOINT: '' })
const kv = createClient({ seeds: cluster.seeds, timeoutMs: 10_000 })
const value = 'v'.repeat(valueBytes)
const keys = Array.from({ length: keyCount }, (_, i) => `bench:${i}`)

try {
  await n3.start()
  const loadStart = Date.now()
  await putAll(kv, keys, value)
  console.log(`loaded ${keyCount} keys of ${valueBytes} B in ${((Date.now() - loadStart) / 1000).toFixed(1)} s`)

  const n1 = cluster.replicas[0]!
  let handoff: { seconds: number; bytes: number; keys: number } | undefined
  const runHandoff = async () => {
    const t0 = performance.now()
    for (let p = 0; p < partitions; p++) {
      const res = await fetch(`${n1.httpUrl}/admin/transfer`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ partition: p, to: 'n3', toUrl: n3.url }) })
      if (res.status !== 202) throw new Error(`transfer ${p}: ${res.status} ${await res.text()}`)
    }
    for (let i = 0; i < 6000; i++) {
      const { transfers } = await (await fetch(`${n1.httpUrl}/transfers`)).json() as { transfers: Array<{ state: string; bytesSent: number; keysSent: number }> }
      if (transfers.length === partitions && transfers.every(t => t.state === 'done')) {
        handoff = { seconds: (performance.now() - t0) / 1000, bytes: transfers.reduce((a, t) => a + t.bytesSent, 0), keys: transfers.reduce((a, t) => a + t.keysSent, 0) }
        return
      }
      if (transfers.some(t => t.state === 'failed')) throw new Error(`a transfer failed: ${JSON.stringify(transfers.filter(t => t.state === 'failed'))}`)
      await new Promise(r => setTimeout(r, 100))
    }
    throw new Error('handoff did not finish in 10 minutes')
  }

  showPhase('quiet (before)', await putPhase(kv, keys, value, rate, phaseMs))
  // The handoff phase lasts as long as the handoff, at least phaseMs.
  let handoffDone = false
  const during = await putPhase(kv, keys, value, rate, phaseMs, () => runHandoff().finally(() => { handoffDone = true }))
  showPhase('during handoff', during)
  if (!handoffDone) console.log('(handoff outlasted the phase)')
  // Ownership would switch now: forwarding ends.
  for (let p = 0; p < partitions; p++) {
    await fetch(`${n1.httpUrl}/admin/stop-forwarding`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ partition: p, to: 'n3' }) })
  }
  showPhase('quiet (after)', await putPhase(kv, keys, value, rate, phaseMs))
  if (handoff) {
    console.log(`handoff: ${handoff.keys} keys, ${(handoff.bytes / 1e6).toFixed(1)} MB of states in ${handoff.seconds.toFixed(2)} s = ${(handoff.bytes / 1e6 / handoff.seconds).toFixed(1)} MB/s` +
      ` (${partitions} transfers; rate limit ${args['handoff-bytes-per-sec'] ?? 'default'} B/s)`)
  }
  console.log(`load average ${loadavg().map(x => x.toFixed(1)).join(' ')}`)
} finally {
  if (args['show-log']) {
    const { readFile } = await import('node:fs/promises')
    const log = await readFile(join(dir, 'n1.log'), 'utf8').catch(() => '')
    for (const line of log.split('\n')) if (line.includes('handoff')) console.log(line.slice(0, 300))
  }
  await kv.close()
  await n3.kill('SIGTERM')
  n3.closeLog()
  await cluster.stop()
  await rm(dir, { recursive: true, force: true })
}

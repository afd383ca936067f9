// bench:join (bench/join.ts) measures a join by the handoff and transfer counters of the replicas'
// /metrics. These tests keep its reader honest: every series it reads exists on a real replica (a
// rename in replica/node/metrics.ts would otherwise read as "0 bytes moved"), and it adds the right
// series (by direction) and nothing else. Ports 18690-18699.

import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import { missingSeries, parseCounters } from '../bench/join-metrics.ts'
import { testCluster } from './helpers.ts'

const base = 18690
let cluster: Awaited<ReturnType<typeof testCluster>>

before(async () => {
  cluster = await testCluster(base, { replicas: 1, n: 1, readyTimeoutMs: 60_000 })
})

after(async () => {
  await cluster?.cleanup()
})

test('a real replica serves every series bench:join reads', async () => {
  const res = await fetch(`${cluster.replicas[0]!.httpUrl}/metrics`, { signal: AbortSignal.timeout(10_000) })
  assert.equal(res.status, 200)
  const text = await res.text()
  assert.deepEqual(missingSeries(text), [])
  // A fresh replica has moved nothing.
  assert.deepEqual(parseCounters(text), { bytesSent: 0, bytesReceived: 0, keysSent: 0, keysReceived: 0, transfersStarted: 0, transfersDone: 0, transfersFailed: 0 })
})

test('the reader adds series by direction and ignores the rest', () => {
  const text = [
    '# TYPE ringkv_handoff_bytes_total counter',
    'ringkv_handoff_bytes_total{node="n1",direction="received"} 100',
    'ringkv_handoff_bytes_total{node="n1",direction="sent"} 4096',
    'ringkv_handoff_keys_total{node="n1",direction="sent"} 4',
    'ringkv_handoff_keys_total{node="n1",direction="received"} 1',
    'ringkv_handoff_batches_total{node="n1",direction="failed"} 7',
    'ringkv_handoff_bytes_total{node="n1",direction="failed"} 9999',
    'ringkv_transfers_started_total{node="n1"} 3',
    'ringkv_transfers_done_total{node="n1"} 2',
    'ringkv_transfers_failed_total{node="n1"} 1',
    'ringkv_transfers_done_total{node="n1"} NaN',
    'garbage ringkv_transfers_done_total{node="n1"} 50',
    'ringkv_transfers_done_total_extra{node="n1"} 50',
  ].join('\n')
  assert.deepEqual(parseCounters(text), { bytesSent: 4096, bytesReceived: 100, keysSent: 4, keysReceived: 1, transfersStarted: 3, transfersDone: 2, transfersFailed: 1 })
  assert.deepEqual(missingSeries(text), [])
  assert.deepEqual(missingSeries(text.replace(/ringkv_handoff_keys_total\{node="n1",direction="sent"\} 4/, '')), ['ringkv_handoff_keys_total{sent}'])
  assert.deepEqual(missingSeries(''), [
    'ringkv_handoff_bytes_total{sent}', 'ringkv_handoff_bytes_total{received}', 'ringkv_handoff_keys_total{sent}',
    'ringkv_handoff_keys_total{received}', 'ringkv_transfers_started_total{}', 'ringkv_transfers_done_total{}', 'ringkv_transfers_failed_total{}',
  ])
})

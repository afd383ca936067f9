// Latency you can see, against a real cluster: after puts and gets through the SDK, kv.stats()
// counts exactly the calls that completed and breaks down where its slowest puts spent their time;
// every replica's /metrics carries Prometheus histograms (buckets cumulative, +Inf = _count) for
// stamp, replicate, get, WAL fsync, flush and compaction (a tiny memtable forces both) and its
// event-loop delay, and their counts add up to the requests the SDK made. No timing assertions.

import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { createClient, type KvClient } from '../client/index.ts'
import { putPhases } from '../coordinator/metrics/op-stats.ts'
import { testCluster } from './helpers.ts'

type TestCluster = Awaited<ReturnType<typeof testCluster>>

/** Every histogram in a /metrics text: name + labels (without le) -> buckets, sum and count. */
function histograms(text: string): Map<string, { buckets: Array<[string, number]>; count: number; sum: number }> {
  const out = new Map<string, { buckets: Array<[string, number]>; count: number; sum: number }>()
  const get = (k: string) => { let h = out.get(k); if (!h) out.set(k, h = { buckets: [], count: NaN, sum: NaN }); return h }
  for (const line of text.split('\n')) {
    const m = /^(\w+)_(bucket|sum|count)\{(.*)\} (\S+)$/.exec(line)
    if (!m) continue
    const [, name, part, labels, value] = m
    if (part === 'bucket') {
      const le = /(?:^|,)le="([^"]+)"/.exec(labels!)![1]!
      get(`${name}{${labels!.replace(/,?le="[^"]+"/, '')}}`).buckets.push([le, Number(value)])
    } else if (part === 'sum') get(`${name}{${labels}}`).sum = Number(value)
    else get(`${name}{${labels}}`).count = Number(value)
  }
  return out
}

describe('latency histograms: kv.stats() and /metrics', () => {
  let cluster: TestCluster
  let kv: KvClient
  const puts = 400
  const gets = 150
  before(async () => {
    // A 16 KiB memtable: 400 puts of 1 KiB flush it many times and trigger compactions.
    cluster = await testCluster(18410, { extraArgs: ['--memtable-bytes-max', String(16 * 1024)], readyTimeoutMs: 90_000 })
    // A long timeout: on a loaded machine a stamp may take a while, and this test is about counting.
    kv = createClient({ seeds: cluster.seeds, timeoutMs: 20_000 })
    await kv.ring()
  })
  after(async () => { await kv?.close(); await cluster?.cleanup() })

  it('counts every completed put and get, and says where the slowest puts spent their time', async () => {
    const value = new Uint8Array(1024).fill(7)
    let ok = 0
    for (let i = 0; i < puts; i += 20) {
      const done = await Promise.allSettled(Array.from({ length: 20 }, (_, j) => kv.put(`lat:${i + j}`, value)))
      ok += done.filter(d => d.status === 'fulfilled').length
    }
    // Only completed calls are counted; on a quiet machine that is every one of them.
    assert.ok(ok >= puts / 2, `${ok} of ${puts} puts completed`)
    let found = 0
    for (let i = 0; i < gets; i++) if ((await kv.get(`lat:${i}`)).found) found++
    assert.ok(found >= 1)
    const s = kv.stats()
    assert.equal(s.put.count, ok)
    assert.equal(s.get.count, gets)
    assert.ok(s.put.p50Us > 0 && s.put.p50Us <= s.put.p99Us && s.put.p99Us <= s.put.p999Us && s.put.p999Us <= s.put.maxUs)
    const tail = s.putTail!
    assert.equal(tail.sampled, ok)
    assert.equal(tail.slowest, Math.ceil(ok / 100))
    for (const p of putPhases) assert.ok(Number.isFinite(tail.meanPhase[p]) && tail.meanPhase[p] >= 0, `${p}: ${tail.meanPhase[p]}`)
    assert.ok(tail.meanPhase.stamps >= 1)
    // The replicas reported their time: a stamp includes its fsync wait.
    assert.ok(tail.meanPhase.stampFsync > 0, JSON.stringify(tail))
    // reset: the next period starts empty.
    kv.stats({ reset: true })
    assert.equal(kv.stats().put.count, 0)
    assert.equal(kv.stats().putTail, null)
  })

  it('shows stamp, replicate, get, fsync, flush, compaction and event-loop histograms on every replica', async () => {
    let stamps = 0
    let replicates = 0
    let replicaGets = 0
    let flushes = 0
    let compactions = 0
    for (const r of cluster.replicas) {
      const text = await (await fetch(`${r.httpUrl}/metrics`, { signal: AbortSignal.timeout(10_000) })).text()
      const hs = histograms(text)
      for (const [key, h] of hs) {
        let last = 0
        for (const [le, v] of h.buckets) { assert.ok(v >= last, `${key} le=${le} not cumulative`); last = v }
        assert.equal(h.buckets.at(-1)![0], '+Inf', key)
        assert.equal(h.buckets.at(-1)![1], h.count, key)
        assert.ok(h.sum >= 0, key)
      }
      const count = (name: string, label: string) => hs.get(`${name}{node="${r.id}",${label}}`)?.count ?? NaN
      stamps += count('ringkv_request_duration_seconds', 'op="stamp"')
      replicates += count('ringkv_request_duration_seconds', 'op="replicate"')
      replicaGets += count('ringkv_request_duration_seconds', 'op="get"')
      assert.ok(count('ringkv_storage_duration_seconds', 'op="wal_fsync"') >= 1, `${r.id} fsyncs`)
      flushes += count('ringkv_storage_duration_seconds', 'op="flush"')
      compactions += count('ringkv_storage_duration_seconds', 'op="compaction"')
      const slices = count('ringkv_storage_slice_seconds', 'work="flush"')
      assert.ok(Number.isFinite(slices) && slices >= 0)
      assert.ok(hs.get(`ringkv_event_loop_delay_seconds{node="${r.id}"}`)!.count > 0, `${r.id} event loop`)
      // The process's CPU time (what bench:compare reads from /proc), in seconds: it did work.
      const cpu = Number(/^process_cpu_seconds_total\{node="[^"]+"\} (\S+)$/m.exec(text)?.[1])
      assert.ok(cpu > 0 && cpu < 3600, `${r.id} process_cpu_seconds_total ${cpu}`)
    }
    // Every put was stamped once (more if a stamp timed out and moved on), and replicated to W-1 = 1
    // replica at least; reads ask every replica, at least R = 2 answer.
    assert.ok(stamps >= puts / 2, `stamps ${stamps}`)
    assert.ok(replicates >= puts / 2, `replicates ${replicates}`)
    assert.ok(replicaGets >= 2 * gets, `gets ${replicaGets}`)
    assert.ok(flushes >= 3, `flushes ${flushes}`)
    assert.ok(compactions >= 1, `compactions ${compactions}`)
  })
})

// The latency histogram and the SDK's phase sampler, against exact figures: percentiles within a
// bucket's width of the true ones on random data (seeded, replayable), Prometheus lines cumulative
// and ending in +Inf = count, hostile values (NaN, negative, infinite, huge) counted without a
// throw, and the slowest 1 % of put samples picked by total time, also once the ring buffer wraps.

import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { seededRandom, testSeed } from '../../test/seed.ts'
import { limits } from '../limits.ts'
import { LatencyHistogram } from './histogram.ts'
import { OpStats } from './op-stats.ts'

const width = 2 ** (1 / limits.latencyHistogramBucketsPerOctave)

describe('LatencyHistogram', () => {
  it('reads percentiles within one bucket of the exact ones', () => {
    const random = seededRandom(testSeed('histogram percentiles'))
    for (let round = 0; round < 20; round++) {
      const h = new LatencyHistogram()
      const n = 1 + Math.floor(random() * 5000)
      const xs: number[] = []
      for (let i = 0; i < n; i++) {
        // Log-uniform from 1 µs to 10 s, as latencies spread.
        const v = Math.exp(random() * Math.log(1e7))
        xs.push(v)
        h.record(v)
      }
      xs.sort((a, b) => a - b)
      assert.equal(h.count, n)
      assert.ok(Math.abs(h.sumUs - xs.reduce((a, b) => a + b, 0)) < 1e-6 * h.sumUs)
      assert.equal(h.maxUs, xs[n - 1])
      for (const q of [0.5, 0.9, 0.99, 0.999, 1]) {
        const exact = xs[Math.max(0, Math.ceil(q * n) - 1)]!
        const got = h.percentileUs(q)
        assert.ok(got >= exact * (1 - 1e-9) && got <= exact * width * (1 + 1e-9), `q=${q}: ${got} vs exact ${exact} (n=${n})`)
      }
    }
  })

  it('renders cumulative Prometheus buckets in seconds, +Inf equal to the count', () => {
    const h = new LatencyHistogram()
    for (const us of [0.5, 3, 3, 700, 1500, 2e6]) h.record(us)
    const lines = h.prometheus('x_seconds', 'node="n1"')
    const buckets = lines.filter(l => l.startsWith('x_seconds_bucket'))
    let last = 0
    for (const l of buckets) {
      const v = Number(l.slice(l.lastIndexOf(' ') + 1))
      assert.ok(v >= last, `not cumulative: ${l}`)
      last = v
    }
    assert.equal(buckets.at(-1), 'x_seconds_bucket{node="n1",le="+Inf"} 6')
    assert.ok(buckets.includes('x_seconds_bucket{node="n1",le="0.000004"} 3'), buckets.join('\n'))
    assert.ok(buckets.includes('x_seconds_bucket{node="n1",le="0.002048"} 5'))
    assert.ok(lines.includes('x_seconds_count{node="n1"} 6'))
    assert.ok(lines.includes(`x_seconds_sum{node="n1"} ${(0.5 + 3 + 3 + 700 + 1500 + 2e6) / 1e6}`))
  })

  it('counts hostile values without throwing: NaN and negatives as 0, huge ones in the last bucket', () => {
    const h = new LatencyHistogram()
    for (const v of [NaN, -5, -Infinity, Infinity, 1e300, Number.MAX_VALUE, 0]) h.record(v)
    assert.equal(h.count, 7)
    assert.ok(h.percentileUs(0.5) <= 1)
    assert.equal(h.percentileUs(1), 2 ** limits.latencyHistogramOctaves)
    assert.ok(Number.isFinite(h.sumUs))
    const lines = h.prometheus('y', '')
    assert.equal(lines.find(l => l.startsWith('y_bucket{le="+Inf"}')), 'y_bucket{le="+Inf"} 7')
  })

  it('adds and resets', () => {
    const a = new LatencyHistogram()
    const b = new LatencyHistogram()
    a.record(10); b.record(1000); b.record(20)
    a.add(b)
    assert.equal(a.count, 3)
    assert.equal(a.maxUs, 1000)
    a.reset()
    assert.equal(a.count, 0)
    assert.equal(a.percentileUs(0.99), 0)
  })
})

describe('OpStats', () => {
  it('averages the phases of the slowest 1 % of puts, also after the sample ring wraps', () => {
    const s = new OpStats()
    const n = limits.opPhaseSamplesMax + 500
    for (let i = 0; i < n; i++) {
      // Every 100th put is slow, and slow in its fsync: the breakdown must say so.
      const slow = i % 100 === 0
      const fsync = slow ? 50_000 : 100
      s.recordPut(fsync + 1000, 1, 300, 200, fsync, 499, 400, slow ? 2 : 1)
    }
    const t = s.tail()!
    assert.equal(t.sampled, limits.opPhaseSamplesMax)
    assert.equal(t.slowest, Math.ceil(limits.opPhaseSamplesMax / 100))
    assert.equal(s.stats().put.count, n)
    // The ring holds the last opPhaseSamplesMax puts; every 100th of them is slow, so the slowest 1 % are all slow ones (or nearly).
    assert.ok(t.meanPhase.stampFsync > 40_000, JSON.stringify(t))
    assert.ok(t.meanPhase.stamps > 1.8)
    assert.equal(t.meanPhase.replicaService, 400)
    s.reset()
    assert.equal(s.tail(), null)
  })
})

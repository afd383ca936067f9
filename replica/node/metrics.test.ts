// The event-loop delay histogram on /metrics: Node's samples are timer intervals (resolution + delay),
// and the rendered histogram must count the delay alone, so an idle loop reads near 0, not 10 ms.

import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { eventLoopLines } from './metrics.ts'

const ms = 1e6 // ns

/** A histogram as Node's IntervalHistogram shows it: percentiles (ns), count and mean. */
function fake(points: Array<[number, number]>, count: number, mean: number) {
  return { percentiles: new Map(points), count, mean }
}

function parse(lines: string[]): { buckets: Map<string, number>; sum: number; count: number } {
  const buckets = new Map<string, number>()
  let sum = NaN
  let count = NaN
  for (const line of lines) {
    const b = /_bucket\{n="x",le="([^"]+)"\} (\d+)$/.exec(line)
    if (b) buckets.set(b[1]!, Number(b[2]))
    else if (line.includes('_sum{')) sum = Number(line.split(' ')[1])
    else if (line.includes('_count{')) count = Number(line.split(' ')[1])
  }
  return { buckets, sum, count }
}

describe('event-loop delay on /metrics', () => {
  // 100 samples of a 10 ms timer: half on time (10.1 ms apart), 99 % within 2 ms late, the worst 20 ms late.
  const h = fake([[0, 9.5 * ms], [50, 10.1 * ms], [99, 12 * ms], [100, 30 * ms]], 100, 10.3 * ms)

  it('counts the delay past the timer resolution, not the interval', () => {
    const { buckets, sum, count } = parse(eventLoopLines('d', 'n="x"', h, 10))
    assert.equal(count, 100)
    assert.equal(buckets.get('0.000064'), 0, 'the median is 100 µs late, above 64 µs')
    assert.equal(buckets.get('0.000128'), 50, 'half the samples are at most 100 µs late')
    assert.equal(buckets.get('0.001024'), 50)
    assert.equal(buckets.get('0.002048'), 99, '99 % are at most 2 ms late')
    assert.equal(buckets.get('0.016384'), 99)
    assert.equal(buckets.get('0.032768'), 100, 'the worst is 20 ms late')
    assert.equal(buckets.get('+Inf'), 100)
    assert.ok(Math.abs(sum - 100 * 0.3e-3) < 1e-9, `sum ${sum}: 100 samples 0.3 ms late on average`)
  })

  it('a timer that fired early reads 0, never negative', () => {
    const { buckets } = parse(eventLoopLines('d', 'n="x"', fake([[0, 9 * ms], [100, 9.9 * ms]], 10, 9.5 * ms), 10))
    assert.equal(buckets.get('0.000001'), 10)
    assert.ok([...buckets.values()].every(v => v >= 0))
  })

  it('without the shift (resolution 0) the raw intervals show, all above 8 ms', () => {
    const { buckets } = parse(eventLoopLines('d', 'n="x"', h, 0))
    assert.equal(buckets.get('0.008192'), 0)
    assert.equal(buckets.get('0.016384'), 99)
  })
})

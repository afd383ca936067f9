// Latency histograms that cost almost nothing to record: fixed log-scale buckets in a Float64Array,
// four per power of two (each bucket spans a factor of 2^(1/4), so a percentile read from it is
// within 19 % of the truth), from 1 µs to 2^latencyHistogramOctaves µs; a value beyond the last
// bucket is counted in the last one. Recording is one Math.log2, one index and three adds, no
// allocation (docs/performance.md measures it). Runtime-neutral: the replica, the SDK and the
// bench use the same class, and the replica renders it as a Prometheus histogram (`_bucket{le}`,
// `_sum`, `_count`, in seconds) at every power of two, which the fine buckets align with exactly.

import { assert } from '../assert.ts'
import { limits } from '../limits.ts'

const perOctave = limits.latencyHistogramBucketsPerOctave
const bucketCount = limits.latencyHistogramOctaves * perOctave + 1
/** Values above this (µs) are recorded as this, so that the sum stays finite. */
const trackableUsMax = 2 ** limits.latencyHistogramOctaves

/** Upper bound (µs) of fine bucket i: bucket 0 holds values up to 1 µs, bucket i up to 2^(i/perOctave) µs. */
function upperUs(i: number): number {
  return Math.pow(2, i / perOctave)
}

export class LatencyHistogram {
  private readonly counts = new Float64Array(bucketCount)
  /** Operations recorded. */
  count = 0
  /** Sum of the recorded values, µs. */
  sumUs = 0
  /** Largest recorded value, µs. */
  maxUs = 0

  /**
   * Records one latency in microseconds. Negative or NaN counts as 0 and anything past the last
   * bucket as its bound: a clock step must neither throw nor make the sum infinite.
   */
  record(us: number): void {
    let i = 0
    if (us > 1) {
      if (us >= trackableUsMax) {
        us = trackableUsMax
        i = bucketCount - 1
      } else {
        i = Math.ceil(Math.log2(us) * perOctave)
      }
    } else if (!(us >= 0)) {
      us = 0
    }
    this.counts[i]!++
    this.count++
    this.sumUs += us
    if (us > this.maxUs) this.maxUs = us
  }

  /** Records a latency given in milliseconds. */
  recordMs(ms: number): void {
    this.record(ms * 1000)
  }

  /** The value (µs, a bucket's upper bound, at most the max seen) at or below which a share `q` (0..1) of the values lie. */
  percentileUs(q: number): number {
    if (this.count === 0) return 0
    const want = Math.max(1, Math.ceil(q * this.count))
    let seen = 0
    for (let i = 0; i < bucketCount; i++) {
      seen += this.counts[i]!
      if (seen >= want) return Math.min(upperUs(i), this.maxUs)
    }
    return this.maxUs
  }

  /** Adds another histogram's counts into this one. */
  add(other: LatencyHistogram): void {
    for (let i = 0; i < bucketCount; i++) this.counts[i]! += other.counts[i]!
    this.count += other.count
    this.sumUs += other.sumUs
    if (other.maxUs > this.maxUs) this.maxUs = other.maxUs
  }

  reset(): void {
    this.counts.fill(0)
    this.count = 0
    this.sumUs = 0
    this.maxUs = 0
  }

  /** p50, p90, p99, p99.9 and max in µs, with the count and mean: what kv.stats() and the bench print. */
  summary(): LatencySummary {
    return {
      count: this.count,
      meanUs: this.count === 0 ? 0 : this.sumUs / this.count,
      p50Us: this.percentileUs(0.5), p90Us: this.percentileUs(0.9), p99Us: this.percentileUs(0.99),
      p999Us: this.percentileUs(0.999), maxUs: this.maxUs,
    }
  }

  /**
   * Prometheus text lines of a histogram named `name` (in seconds) with `labels` (already rendered,
   * e.g. `node="n1",op="put"`): cumulative buckets at every power of two from 1 µs, then +Inf.
   */
  prometheus(name: string, labels: string): string[] {
    const lines: string[] = []
    const sep = labels === '' ? '' : ','
    let cumulative = 0
    for (let i = 0; i < bucketCount; i++) {
      cumulative += this.counts[i]!
      if (i % perOctave === 0 && i < bucketCount - 1) lines.push(`${name}_bucket{${labels}${sep}le="${upperUs(i) / 1e6}"} ${cumulative}`)
    }
    lines.push(`${name}_bucket{${labels}${sep}le="+Inf"} ${this.count}`)
    lines.push(`${name}_sum{${labels}} ${this.sumUs / 1e6}`)
    lines.push(`${name}_count{${labels}} ${this.count}`)
    return lines
  }
}

export interface LatencySummary {
  readonly count: number
  readonly meanUs: number
  readonly p50Us: number
  readonly p90Us: number
  readonly p99Us: number
  readonly p999Us: number
  readonly maxUs: number
}

assert(bucketCount > perOctave && Number.isInteger(upperUs(perOctave)), 'histogram buckets must align with powers of two')

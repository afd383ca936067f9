// The phi-accrual failure detector (Hayashibara, Défago, Yared, Katayama 2004): instead of a yes/no
// timeout, it reports phi = -log10(P(a heartbeat comes later than now)), where P comes from the
// distribution of the intervals seen so far. phi = 8 means the silence so far would happen one time
// in 10^8 if the peer were alive. Akka's variant (PhiAccrualFailureDetector.scala) is used: a normal
// distribution with the sample mean plus an acceptable pause (heartbeats here travel by gossip, so
// gaps of a few intervals are ordinary) and a floor under the standard deviation (a peer that beat
// like a metronome is not convicted for one late beat); the normal CDF is the logistic
// approximation Akka uses. The clock is the caller's: every method takes `now`.

import { assert } from '../assert.ts'

export interface PhiOptions {
  readonly samplesMax: number
  readonly minStdMs: number
  readonly acceptablePauseMs: number
  /** The interval assumed before any was seen (the gossip interval): seeds the history, as Akka does. */
  readonly firstIntervalMs: number
}

export class PhiDetector {
  private readonly intervals: number[] = []
  private at = 0
  private sum = 0
  private sumSquares = 0
  private last: number | undefined

  constructor(private readonly opts: PhiOptions) {
    assert(opts.samplesMax >= 2 && opts.minStdMs > 0 && opts.firstIntervalMs > 0 && opts.acceptablePauseMs >= 0, 'phi detector options')
  }

  /** A heartbeat from the peer arrived at `now`. */
  heartbeat(now: number): void {
    if (this.last === undefined) {
      // Akka seeds the history with mean +- mean/4, so the first silence is judged by something.
      const mean = this.opts.firstIntervalMs
      this.record(mean - mean / 4)
      this.record(mean + mean / 4)
    } else {
      this.record(Math.max(0, now - this.last))
    }
    this.last = now
  }

  /** True once a heartbeat has been seen. */
  get started(): boolean { return this.last !== undefined }

  /** phi at `now`: 0 before the first heartbeat (a peer never heard from is not suspected). */
  phi(now: number): number {
    if (this.last === undefined) return 0
    const count = this.intervals.length
    const mean = this.sum / count
    const variance = Math.max(0, this.sumSquares / count - mean * mean)
    const std = Math.max(Math.sqrt(variance), this.opts.minStdMs)
    return phiOf(now - this.last, mean + this.opts.acceptablePauseMs, std)
  }

  private record(interval: number): void {
    if (this.intervals.length >= this.opts.samplesMax) {
      const old = this.intervals[this.at]!
      this.sum -= old
      this.sumSquares -= old * old
      this.intervals[this.at] = interval
      this.at = (this.at + 1) % this.opts.samplesMax
    } else {
      this.intervals.push(interval)
    }
    this.sum += interval
    this.sumSquares += interval * interval
  }
}

/** -log10(1 - F(elapsed)) for a normal F(mean, std), by the logistic approximation (Akka). */
export function phiOf(elapsedMs: number, mean: number, std: number): number {
  const y = (elapsedMs - mean) / std
  const e = Math.exp(-y * (1.5976 + 0.070566 * y * y))
  const phi = elapsedMs > mean ? -Math.log10(e / (1 + e)) : -Math.log10(1 - 1 / (1 + e))
  // Far past the mean, e underflows to 0 and the log to Infinity: a very dead peer.
  return Number.isNaN(phi) ? 0 : phi
}

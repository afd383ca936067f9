// When a get asks beyond the R replicas it asked first (read-quorum.ts: its spares): after the p99
// of this client's recent gets, as Cassandra's speculative_retry = 99p does. About one get in a
// hundred then asks one more replica, and a slow or paused replica costs a get that p99, not its
// whole timeout. The p99 is taken afresh over each window of limits.readSpeculationWindow completed
// gets (so it follows the load), within readSpeculationMsMin..Max; before the first window is full
// there is none, and gets ask all their targets at once, as they did before reads asked R.

import { limits } from '../limits.ts'
import { LatencyHistogram } from '../metrics/histogram.ts'

export class ReadSpeculation {
  private window = new LatencyHistogram()
  private delayMs: number | undefined

  /** `fixedMs`: always that delay instead of the p99 (Cassandra's speculative_retry = 'Nms'). */
  constructor(private readonly fixedMs?: number) {
    this.delayMs = fixedMs
  }

  /** Ms after which a get asks its spares; undefined: no window seen yet, ask every target at once. */
  get afterMs(): number | undefined {
    return this.delayMs
  }

  /** A completed get took `ms`. */
  record(ms: number): void {
    if (this.fixedMs !== undefined) return
    const w = this.window
    w.recordMs(ms)
    if (w.count < limits.readSpeculationWindow) return
    this.delayMs = Math.min(limits.readSpeculationMsMax, Math.max(limits.readSpeculationMsMin, w.percentileUs(0.99) / 1000))
    this.window = new LatencyHistogram()
  }
}

// When a get asks beyond the R replicas it asked first (read-quorum.ts: its spares): after the p99
// of this client's recent gets, as Cassandra's speculative_retry = 99p does. About one get in a
// hundred then asks one more replica, and a slow or paused replica costs a get that p99, not its
// whole timeout. The p99 is taken afresh over each window of limits.readSpeculationWindow completed
// gets (so it follows the load), within readSpeculationMsMin..Max; before the first window is full
// there is none, and gets ask all their targets at once, as they did before reads asked R. A budget
// keeps speculation to a tenth of the gets over time (limits.readSpeculationShare).

import { limits } from '../limits.ts'
import { LatencyHistogram } from '../metrics/histogram.ts'

/** What a client's speculation did (kv.stats().speculation). */
export interface SpeculationStats {
  /** The delay after which a get asks its spares now (ms); null before the first window. */
  readonly afterMs: number | null
  /** Gets that asked their spares after the delay. */
  readonly speculated: number
  /** Gets that reached the delay when the budget was spent, and waited instead. */
  readonly withheld: number
}

const earnedMilli = Math.round(limits.readSpeculationShare * 1000)

export class ReadSpeculation {
  private readonly window = new LatencyHistogram()
  private delayMs: number | undefined
  /** The budget (limits.readSpeculationShare, readSpeculationBurst), in thousandths of a token: whole numbers, so ten tenths make one. */
  private milliTokens: number = limits.readSpeculationBurst * 1000
  private speculated = 0
  private withheld = 0

  /** `fixedMs`: always that delay instead of the p99 (Cassandra's speculative_retry = 'Nms'). */
  constructor(private readonly fixedMs?: number) {
    this.delayMs = fixedMs
  }

  /** Ms after which a get asks its spares; undefined: no window seen yet, ask every target at once. */
  get afterMs(): number | undefined {
    return this.delayMs
  }

  /** Spends a token for one get's speculation; false (and counted) when the budget is spent. */
  take(): boolean {
    if (this.milliTokens < 1000) { this.withheld++; return false }
    this.milliTokens -= 1000
    this.speculated++
    return true
  }

  stats(): SpeculationStats {
    return { afterMs: this.delayMs ?? null, speculated: this.speculated, withheld: this.withheld }
  }

  /** A completed get took `ms`. */
  record(ms: number): void {
    this.milliTokens = Math.min(limits.readSpeculationBurst * 1000, this.milliTokens + earnedMilli)
    if (this.fixedMs !== undefined) return
    const w = this.window
    w.recordMs(ms)
    if (w.count < limits.readSpeculationWindow) return
    this.delayMs = Math.min(limits.readSpeculationMsMax, Math.max(limits.readSpeculationMsMin, w.percentileUs(0.99) / 1000))
    w.reset()
  }
}

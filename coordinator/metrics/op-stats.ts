// The SDK's own view of its latency (kv.stats(), docs/performance.md): a histogram per operation as
// the app sees it, and for puts where the time went. Each completed put leaves one row of phases in
// a ring buffer of opPhaseSamplesMax rows (a Float64Array, overwritten oldest first, no allocation
// per put); stats() sorts the rows it holds by total time and averages the phases of the slowest
// 1 %, so a slow tail can be told apart: waiting in the client and on the wire, the stamping
// replica's work, its fsync wait, or the replication round. Runtime-neutral: the coordinator feeds
// it times from the runtime's clock.

import { limits } from '../limits.ts'
import { LatencyHistogram, type LatencySummary } from './histogram.ts'
import type { SpeculationStats } from '../quorum/speculation.ts'

/** The phases of one put, in the order of a sample row (all in µs but `stamps`). */
export const putPhases = [
  /** From the call to the stamp request being handed to the connection: ring discovery, checks. */
  'start',
  /**
   * From the stamp request to its reply, less the replica's own time on it: queued in the client,
   * coalesced into a frame, on the wire both ways, and waiting for the replica's event loop (a
   * stamp that timed out and moved to the next replica counts here). With an early stamp (the
   * SDK's way, docs/protocol.md) the reply is the early one, answered in the turn the replica read
   * the request, so this is the whole round trip to it.
   */
  'stampTransit',
  /**
   * The stamping replica's time less the fsync below: read, update, encode, and the wait for its
   * WAL group to start (behind the group before it). With an early stamp, from its durable ack,
   * and spent during `replicate`, not before it (0 when the write met W before that ack came).
   */
  'stampWork',
  /** How long the fsync of the WAL group that made the stamp durable took (early stamp: as stampWork). */
  'stampFsync',
  /** From the stamp reply (the early one) to the W-th acknowledgement: the replication round. */
  'replicate',
  /** Within `replicate`: the replica's own time (fsync included) on the ack that made the quorum. */
  'replicaService',
  /** Stamp requests sent (more than 1: a stamp timed out or failed and moved to the next replica). */
  'stamps',
] as const
export type PutPhase = (typeof putPhases)[number]
/** Columns per row: the total first, then the phases. */
const columns = putPhases.length + 1

export interface TailBreakdown {
  /** Puts in the sample the breakdown is drawn from, and how many of them are the slowest share. */
  readonly sampled: number
  readonly slowest: number
  /** The fastest of the slowest share (µs): the tail starts here. */
  readonly fromUs: number
  readonly meanTotalUs: number
  /** Mean of each phase over the slowest share (µs; `stamps` is a count). */
  readonly meanPhase: Record<PutPhase, number>
}

/** The latency part of kv.stats(), which OpStats keeps. */
export interface OpLatencyStats {
  readonly put: LatencySummary
  readonly get: LatencySummary
  /** Where the slowest 1 % of the sampled puts spent their time; null before any put completed. */
  readonly putTail: TailBreakdown | null
}

export interface ClientStats extends OpLatencyStats {
  /** What the gets' speculation did (quorum/speculation.ts); null with `readFanout: 'all'`. Not reset. */
  readonly speculation: SpeculationStats | null
}

export class OpStats {
  readonly put = new LatencyHistogram()
  readonly get = new LatencyHistogram()
  private readonly rows = new Float64Array(limits.opPhaseSamplesMax * columns)
  private next = 0
  private filled = 0

  /** One completed put: its total and phases (µs). */
  recordPut(totalUs: number, start: number, stampTransit: number, stampWork: number, stampFsync: number,
    replicate: number, replicaService: number, stamps: number): void {
    this.put.record(totalUs)
    const r = this.rows
    const at = this.next * columns
    r[at] = totalUs
    r[at + 1] = start
    r[at + 2] = stampTransit
    r[at + 3] = stampWork
    r[at + 4] = stampFsync
    r[at + 5] = replicate
    r[at + 6] = replicaService
    r[at + 7] = stamps
    this.next = this.next + 1 === limits.opPhaseSamplesMax ? 0 : this.next + 1
    if (this.filled < limits.opPhaseSamplesMax) this.filled++
  }

  /** Where the slowest `share` (default 1 %) of the sampled puts spent their time. */
  tail(share = 0.01): TailBreakdown | null {
    const n = this.filled
    if (n === 0) return null
    // The k-th largest total from a numeric typed-array sort (no comparator: several times faster
    // than sorting row indexes), then one pass over the rows: those above it, and as many equal to
    // it as make k.
    const r = this.rows
    const totals = new Float64Array(n)
    for (let i = 0; i < n; i++) totals[i] = r[i * columns]!
    totals.sort()
    const k = Math.max(1, Math.ceil(n * share))
    const from = totals[n - k]!
    let ties = 0
    for (let i = n - k; i < n && totals[i] === from; i++) ties++
    const sums = new Float64Array(columns)
    for (let i = 0; i < n; i++) {
      const at = i * columns
      const t = r[at]!
      if (t < from || (t === from && ties-- <= 0)) continue
      for (let c = 0; c < columns; c++) sums[c]! += r[at + c]!
    }
    const meanPhase = {} as Record<PutPhase, number>
    putPhases.forEach((p, c) => { meanPhase[p] = sums[c + 1]! / k })
    return { sampled: n, slowest: k, fromUs: from, meanTotalUs: sums[0]! / k, meanPhase }
  }

  stats(): OpLatencyStats {
    return { put: this.put.summary(), get: this.get.summary(), putTail: this.tail() }
  }

  reset(): void {
    this.put.reset()
    this.get.reset()
    this.next = 0
    this.filled = 0
  }
}

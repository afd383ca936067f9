// The two ways bench/ycsb.ts drives load, shared by the ringkv run and the etcd yardstick
// (bench/yardsticks.ts) so both systems are measured by the same code.
//
// Closed loop: C workers, each starts its next operation when its last one finished. It measures
// throughput at C in flight, but its latencies hide the tail: while the system stalls, the workers
// wait and send nothing, so the operations that would have queued behind the stall are never
// measured (coordinated omission).
//
// Open loop: operations are scheduled at a fixed rate, operation i at t0 + i/R, whatever happened
// before; each latency is measured from the operation's scheduled start, so a stall shows up in the
// latency of every operation scheduled during it, including the time it waited to be sent. The
// number outstanding is bounded (maxOutstanding): an operation due while the bound is reached is
// dropped and counted, never queued, so a stalled system cannot make the bench grow without bound,
// and the drop count says the offered rate was not sustained.

import * as hdr from 'hdr-histogram-js'
import { isKvError } from '../client/index.ts'

/** Highest latency a histogram records (µs); slower operations are clamped to it. */
export const LATENCY_US_MAX = 60_000_000
/** Timer granularity the open-loop scheduler sleeps for at least, when nothing is due yet. */
const SCHEDULER_SLEEP_MS_MIN = 1
/**
 * After an open-loop phase stops issuing (all issued, deadline or interrupt), how long it waits for
 * the outstanding operations; those still outstanding after it are reported as unfinished.
 */
export const OPEN_LOOP_DRAIN_MS = 10_000

export type OpName = string
export interface OpStats { count: number; hist: hdr.Histogram; errors: Map<string, number> }
export interface PhaseResult { seconds: number; attempted: number; timedOut: boolean; stats: Map<OpName, OpStats> }

/** A failure of a yardstick (etcd, Redis): not a KvError, but counted by kind like one. */
export class YardstickError extends Error {
  override name = 'YardstickError'
  constructor(readonly kind: string, message: string) { super(message) }
}

export function histogram(): hdr.Histogram {
  return hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: LATENCY_US_MAX, numberOfSignificantValueDigits: 3 })
}

export function newStats(): OpStats { return { count: 0, hist: histogram(), errors: new Map() } }

export function errorKind(e: unknown): string {
  if (isKvError(e)) return e.kind
  if (e instanceof YardstickError) return e.kind
  return `untyped:${e instanceof Error ? e.name : typeof e}`
}

function statsFor(stats: Map<OpName, OpStats>, op: OpName): OpStats {
  let s = stats.get(op)
  if (!s) stats.set(op, s = newStats())
  return s
}

function recordUs(s: OpStats, ms: number): void {
  s.hist.recordValue(Math.min(LATENCY_US_MAX, Math.max(1, Math.round(ms * 1000))))
}

/** Starts operation i and returns its name and promise. */
export type StartOp = (i: number) => { op: OpName; done: Promise<unknown> }
/** Shows progress while a phase runs; returns the function that stops showing it. */
export type Progress = (phase: string, total: number, done: () => number, errors: () => number) => () => void

export interface ClosedLoopOptions {
  readonly phase: string
  readonly total: number
  readonly concurrency: number
  readonly maxSeconds: number
  readonly isAborted: () => boolean
  readonly progress: Progress
}

/**
 * Runs `total` operations with `concurrency` workers pulling from a shared counter, until done or
 * the deadline. `start(i)` begins operation i and returns its promise: no closure is made per
 * operation (under tsx each named one gets a keep-names wrapper, measurable at these rates).
 */
export async function runClosedLoop(o: ClosedLoopOptions, start: StartOp): Promise<PhaseResult> {
  const stats = new Map<OpName, OpStats>()
  let next = 0
  let done = 0
  let errorCount = 0
  let timedOut = false
  const t0 = performance.now()
  const deadline = t0 + o.maxSeconds * 1000
  const stopProgress = o.progress(o.phase, o.total, () => done, () => errorCount)
  const worker = async (): Promise<void> => {
    while (next < o.total && !o.isAborted()) {
      if (performance.now() > deadline) { timedOut = true; return }
      const began = performance.now()
      const { op, done: finished } = start(next++)
      const s = statsFor(stats, op)
      try {
        await finished
        recordUs(s, performance.now() - began)
        s.count++
      } catch (e) {
        const kind = errorKind(e)
        s.errors.set(kind, (s.errors.get(kind) ?? 0) + 1)
        errorCount++
      }
      done++
    }
  }
  try {
    await Promise.all(Array.from({ length: Math.min(o.concurrency, o.total) }, worker))
  } finally {
    stopProgress()
  }
  return { seconds: (performance.now() - t0) / 1000, attempted: done, timedOut, stats }
}

export interface OpenLoopOptions {
  readonly phase: string
  readonly total: number
  /** Offered load, operations per second. */
  readonly rate: number
  /** Most operations outstanding at once; one due while this many are outstanding is dropped. */
  readonly maxOutstanding: number
  readonly maxSeconds: number
  readonly isAborted: () => boolean
  readonly progress: Progress
}

export interface OpenLoopResult extends PhaseResult {
  readonly rate: number
  readonly maxOutstanding: number
  /** Operations whose scheduled time came (issued or dropped). */
  readonly scheduled: number
  /** Scheduled but not sent because maxOutstanding were outstanding. */
  readonly dropped: number
  /** Still outstanding OPEN_LOOP_DRAIN_MS after the phase stopped issuing (not in the histograms). */
  readonly unfinished: number
  /** Most operations outstanding at once. */
  readonly peakOutstanding: number
  /**
   * How late operations were sent after their scheduled time (µs): the load generator's own lag.
   * Included in the latencies; a large one means this process, not the system measured, fell behind.
   */
  readonly startLag: hdr.Histogram
}

interface OpenLoopState {
  stats: Map<OpName, OpStats>
  outstanding: number
  done: number
  errorCount: number
  drained: (() => void) | undefined
}

// A top-level async function rather than a closure per operation (see runClosedLoop).
async function track(st: OpenLoopState, op: OpName, scheduledAt: number, finished: Promise<unknown>): Promise<void> {
  const s = statsFor(st.stats, op)
  try {
    await finished
    recordUs(s, performance.now() - scheduledAt)
    s.count++
  } catch (e) {
    const kind = errorKind(e)
    s.errors.set(kind, (s.errors.get(kind) ?? 0) + 1)
    st.errorCount++
  }
  st.done++
  st.outstanding--
  if (st.outstanding === 0) st.drained?.()
}

/**
 * Schedules `total` operations at `rate` per second (operation i at t0 + i/rate) and measures each
 * from its scheduled time. Stops issuing at the deadline or on interrupt, then waits at most
 * OPEN_LOOP_DRAIN_MS for what is outstanding.
 */
export async function runOpenLoop(o: OpenLoopOptions, start: StartOp): Promise<OpenLoopResult> {
  if (!(o.rate > 0 && Number.isFinite(o.rate))) throw new Error(`open-loop rate must be a positive number, got ${o.rate}`)
  if (!(Number.isInteger(o.maxOutstanding) && o.maxOutstanding >= 1)) throw new Error(`maxOutstanding must be a positive integer, got ${o.maxOutstanding}`)
  const st: OpenLoopState = { stats: new Map(), outstanding: 0, done: 0, errorCount: 0, drained: undefined }
  const startLag = histogram()
  const intervalMs = 1000 / o.rate
  let scheduled = 0
  let dropped = 0
  let peakOutstanding = 0
  let timedOut = false
  const t0 = performance.now()
  const deadline = t0 + o.maxSeconds * 1000
  const stopProgress = o.progress(o.phase, o.total, () => st.done + dropped, () => st.errorCount + dropped)
  try {
    // Each pass sends every operation whose time has come, then sleeps until the next one is due.
    // The loop ends: `scheduled` grows by at least one per pass that does not sleep, and it is
    // bounded by `total`; the deadline ends it in time.
    while (scheduled < o.total && !o.isAborted()) {
      const now = performance.now()
      if (now > deadline) { timedOut = true; break }
      while (scheduled < o.total) {
        const at = t0 + scheduled * intervalMs
        if (at > now) break
        const i = scheduled++
        if (st.outstanding >= o.maxOutstanding) { dropped++; continue }
        startLag.recordValue(Math.min(LATENCY_US_MAX, Math.max(1, Math.round((now - at) * 1000))))
        st.outstanding++
        if (st.outstanding > peakOutstanding) peakOutstanding = st.outstanding
        const { op, done } = start(i)
        void track(st, op, at, done)
      }
      if (scheduled < o.total) {
        const wait = Math.max(SCHEDULER_SLEEP_MS_MIN, t0 + scheduled * intervalMs - performance.now())
        await new Promise(r => setTimeout(r, wait))
      }
    }
    if (st.outstanding > 0) {
      let timer: NodeJS.Timeout | undefined
      await new Promise<void>(ok => {
        st.drained = ok
        timer = setTimeout(ok, OPEN_LOOP_DRAIN_MS)
      })
      clearTimeout(timer)
      st.drained = undefined
    }
  } finally {
    stopProgress()
  }
  return {
    seconds: (performance.now() - t0) / 1000, attempted: st.done, timedOut, stats: st.stats,
    rate: o.rate, maxOutstanding: o.maxOutstanding, scheduled, dropped, unfinished: st.outstanding, peakOutstanding, startLag,
  }
}

// ---------------------------------------------------------------------------------------------
// Summaries

export interface OpSummary { count: number; opsPerSec: number; p50Us: number; p95Us: number; p99Us: number; p999Us: number; maxUs: number; errors: Record<string, number> }

export function summarize(s: OpStats | undefined, seconds: number): OpSummary | null {
  if (!s) return null
  const h = s.hist
  const empty = h.totalCount === 0
  return {
    count: s.count, opsPerSec: s.count / seconds,
    p50Us: empty ? 0 : h.getValueAtPercentile(50), p95Us: empty ? 0 : h.getValueAtPercentile(95),
    p99Us: empty ? 0 : h.getValueAtPercentile(99), p999Us: empty ? 0 : h.getValueAtPercentile(99.9),
    maxUs: empty ? 0 : h.maxValue, errors: Object.fromEntries(s.errors),
  }
}

export function mergeErrors(stats: Map<OpName, OpStats>): Record<string, number> {
  const all: Record<string, number> = {}
  for (const s of stats.values()) for (const [k, n] of s.errors) all[k] = (all[k] ?? 0) + n
  return all
}

export interface OpenLoopSummary {
  offeredPerSec: number
  achievedPerSec: number
  seconds: number
  scheduled: number
  total: number
  dropped: number
  unfinished: number
  maxOutstanding: number
  peakOutstanding: number
  timedOut: boolean
  startLagP99Us: number
  startLagMaxUs: number
  perOp: Record<string, OpSummary | null>
  errors: Record<string, number>
}

export function summarizeOpenLoop(r: OpenLoopResult, total: number): OpenLoopSummary {
  const perOp: Record<string, OpSummary | null> = {}
  let ok = 0
  for (const [op, s] of r.stats) { perOp[op] = summarize(s, r.seconds); ok += s.count }
  const lagEmpty = r.startLag.totalCount === 0
  return {
    offeredPerSec: r.rate, achievedPerSec: ok / r.seconds, seconds: r.seconds, scheduled: r.scheduled, total,
    dropped: r.dropped, unfinished: r.unfinished, maxOutstanding: r.maxOutstanding, peakOutstanding: r.peakOutstanding,
    timedOut: r.timedOut, startLagP99Us: lagEmpty ? 0 : r.startLag.getValueAtPercentile(99), startLagMaxUs: lagEmpty ? 0 : r.startLag.maxValue,
    perOp, errors: mergeErrors(r.stats),
  }
}

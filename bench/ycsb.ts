// YCSB-style benchmark for ringkv (issue 2, "Benchmark"). Measured and reported, never asserted.
//
//   npm run bench -- [--workload a|b|c] [--records R] [--ops N] [--concurrency C] [--seeds ws://...]
//                    [--r 2] [--w 2] [--value-bytes 1024] [--uniform] [--max-seconds 120]
//                    [--json] [--no-baseline]
//
// 1. Baseline: a raw `ws` 1 KiB echo between this process and a second Node process, with the same
//    number of requests in flight (bench/ws-echo.ts). Our figures are printed as a ratio to it.
// 2. Cluster: uses --seeds, or starts a 3-replica cluster (infra/cluster.ts) in a temp dir on free
//    loopback ports and stops it at the end (and on SIGINT).
// 3. Load: inserts R records of --value-bytes random bytes, C puts in flight.
// 4. Run: N operations, C async workers pulling from a shared counter; the key of each operation is
//    drawn from YCSB's scrambled Zipfian distribution (theta 0.99) over the R records, or uniformly
//    with --uniform. A = 50/50 read/update, B = 95/5, C = read only.
//
// Updates pass the causal context last seen for the key (from its load put, or a later get/put), as a
// ringkv application must: a put without a context is concurrent with what is stored and would pile
// up siblings on hot keys. No extra read is made for it. Latencies are per operation, in µs, in HDR
// histograms; failures are counted per KvError kind and do not stop the run.

import { randomBytes } from 'node:crypto'
import type { ChildProcess } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer } from 'node:net'
import { arch, cpus, loadavg, platform, release, tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import cliProgress from 'cli-progress'
import * as hdr from 'hdr-histogram-js'
import { createClient, isKvError, type KvClient } from '../client/index.ts'
import { startCluster, type Cluster } from '../infra/cluster.ts'
import { runEchoBaseline, type EchoResult } from './ws-echo.ts'

// ---------------------------------------------------------------------------------------------
// Arguments

const usage = `usage: npm run bench -- [--workload a|b|c] [--records R] [--ops N] [--concurrency C]
       [--seeds ws://host:port,...] [--r R] [--w W] [--value-bytes B] [--uniform]
       [--max-seconds S] [--json] [--no-baseline]`

function die(msg: string): never {
  console.error(`bench: ${msg}\n${usage}`)
  process.exit(2)
}

function parseConfig() {
  let values
  try {
    ({ values } = parseArgs({
      options: {
        workload: { type: 'string', default: 'a' },
        records: { type: 'string', default: '10000' },
        ops: { type: 'string', default: '50000' },
        concurrency: { type: 'string', default: '64' },
        seeds: { type: 'string' },
        r: { type: 'string', default: '2' },
        w: { type: 'string', default: '2' },
        'value-bytes': { type: 'string', default: '1024' },
        uniform: { type: 'boolean', default: false },
        'max-seconds': { type: 'string', default: '120' },
        json: { type: 'boolean', default: false },
        'no-baseline': { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
      strict: true,
      allowPositionals: false,
    }))
  } catch (e) {
    die((e as Error).message)
  }
  if (values.help) { console.log(usage); process.exit(0) }
  const int = (name: string, raw: string | undefined, min: number, max: number): number => {
    const n = Number(raw)
    if (raw === undefined || raw.trim() === '' || !Number.isInteger(n) || n < min || n > max) {
      die(`--${name} must be an integer from ${min} to ${max}, got ${JSON.stringify(raw)}`)
    }
    return n
  }
  const workload = (values.workload ?? 'a').toLowerCase()
  if (workload !== 'a' && workload !== 'b' && workload !== 'c') die(`--workload must be a, b or c (A = 50/50 read/update, B = 95/5, C = read only), got ${JSON.stringify(values.workload)}`)
  const seeds = values.seeds === undefined ? undefined : values.seeds.split(',').map(s => s.trim()).filter(Boolean)
  if (seeds) {
    if (seeds.length === 0) die('--seeds is empty; give ws://host:port[,ws://host:port...] or leave it out to start a local cluster')
    for (const s of seeds) if (!/^wss?:\/\/[^/\s]+/.test(s)) die(`--seeds entry ${JSON.stringify(s)} is not a ws://host:port URL`)
  }
  const records = int('records', values.records, 1, 10_000_000)
  const cfg = {
    workload: workload as 'a' | 'b' | 'c',
    records,
    ops: int('ops', values.ops, 1, 100_000_000),
    concurrency: int('concurrency', values.concurrency, 1, 10_000),
    seeds,
    r: int('r', values.r, 1, 16),
    w: int('w', values.w, 1, 16),
    valueBytes: int('value-bytes', values['value-bytes'], 1, 64 * 1024 * 1024),
    distribution: values.uniform ? 'uniform' as const : 'zipfian' as const,
    maxSeconds: int('max-seconds', values['max-seconds'], 1, 24 * 3600),
    json: values.json ?? false,
    baseline: !values['no-baseline'],
  }
  if (!seeds && (cfg.r > 3 || cfg.w > 3)) die(`--r and --w must be at most N=3 for the local cluster, got r=${cfg.r} w=${cfg.w}`)
  return cfg
}

const cfg = parseConfig()
const readFraction = { a: 0.5, b: 0.95, c: 1 }[cfg.workload]

// ---------------------------------------------------------------------------------------------
// YCSB key choosers (site.ycsb.generator.ZipfianGenerator / ScrambledZipfianGenerator)

const ZIPFIAN_CONSTANT = 0.99

function zeta(n: number, theta: number): number {
  let sum = 0
  for (let i = 0; i < n; i++) sum += 1 / Math.pow(i + 1, theta)
  return sum
}

/** YCSB's ZipfianGenerator over [min, min + items): item `min` is the most popular. */
export class ZipfianGenerator {
  private readonly alpha: number
  private readonly eta: number
  private readonly halfPowTheta: number
  constructor(private readonly min: number, private readonly items: number, private readonly theta = ZIPFIAN_CONSTANT,
    private readonly zetan = zeta(items, theta), private readonly random: () => number = Math.random) {
    const zeta2theta = zeta(2, theta)
    this.alpha = 1 / (1 - theta)
    this.eta = (1 - Math.pow(2 / items, 1 - theta)) / (1 - zeta2theta / zetan)
    this.halfPowTheta = 1 + Math.pow(0.5, theta)
  }
  next(): number {
    const u = this.random()
    const uz = u * this.zetan
    if (uz < 1) return this.min
    if (uz < this.halfPowTheta) return this.min + 1
    return this.min + Math.floor(this.items * Math.pow(this.eta * u - this.eta + 1, this.alpha))
  }
}

const FNV_OFFSET_BASIS_64 = 0xCBF29CE484222325n
const FNV_PRIME_64 = 1099511628211n
/** YCSB Utils.fnvhash64 (Java long arithmetic, then Math.abs). */
function fnvhash64(value: number): bigint {
  let val = BigInt(value)
  let hash = BigInt.asIntN(64, FNV_OFFSET_BASIS_64)
  for (let i = 0; i < 8; i++) {
    const octet = val & 0xffn
    val >>= 8n
    hash = BigInt.asIntN(64, (hash ^ octet) * FNV_PRIME_64)
  }
  return hash < 0n ? -hash : hash
}

/**
 * YCSB's ScrambledZipfianGenerator, the default for requestdistribution=zipfian: a Zipfian over
 * 10^10 items (zeta precomputed by YCSB for theta 0.99) hashed onto the records, so the popular keys
 * are spread over the key space instead of being the first ones.
 */
export class ScrambledZipfianGenerator {
  private static readonly ITEM_COUNT = 10_000_000_000
  private static readonly ZETAN = 26.46902820178302
  private readonly gen = new ZipfianGenerator(0, ScrambledZipfianGenerator.ITEM_COUNT, ZIPFIAN_CONSTANT, ScrambledZipfianGenerator.ZETAN)
  private readonly count: bigint
  constructor(private readonly items: number) { this.count = BigInt(items) }
  next(): number { return Number(fnvhash64(this.gen.next()) % this.count) }
}

const chooser: { next(): number } = cfg.distribution === 'zipfian'
  ? new ScrambledZipfianGenerator(cfg.records)
  : { next: () => Math.floor(Math.random() * cfg.records) }

const keyOf = (i: number): string => `user${String(i).padStart(10, '0')}`

// ---------------------------------------------------------------------------------------------
// Output helpers

const out = (s = ''): void => { if (!cfg.json) console.log(s) }
const note = (s: string): void => { console.error(s) }
const fmt = (n: number): string => Math.round(n).toLocaleString('en-US')
const us = (n: number): string => n >= 10_000 ? `${(n / 1000).toFixed(1)} ms` : `${fmt(n)} µs`

function histogram(): hdr.Histogram {
  return hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: 3 })
}

// ---------------------------------------------------------------------------------------------
// Cleanup on every exit path

let cluster: Cluster | undefined
let clusterStarting: Promise<Cluster> | undefined
let kv: KvClient | undefined
let echoProc: ChildProcess | undefined
let dataDir: string | undefined
let bar: cliProgress.SingleBar | undefined
let stopProgress: (() => void) | undefined
let aborted = false
let cleaning: Promise<void> | undefined

function cleanup(keepData = false): Promise<void> {
  cleaning ??= (async () => {
    stopProgress?.()
    if (echoProc && echoProc.exitCode === null && echoProc.signalCode === null) echoProc.kill('SIGTERM')
    try { await kv?.close() } catch { /* closing anyway */ }
    // Interrupted while replicas were starting: wait for them, then stop them (never orphan them).
    if (!cluster && clusterStarting) cluster = await clusterStarting.catch(() => undefined)
    try { await cluster?.stop() } catch (e) { note(`bench: stopping the cluster: ${(e as Error).message}`) }
    if (dataDir && !keepData) await rm(dataDir, { recursive: true, force: true }).catch(() => undefined)
  })()
  return cleaning
}

process.on('SIGINT', () => {
  if (aborted) process.exit(130)
  aborted = true
  note('\nbench: interrupted, stopping the cluster and the echo server...')
  void cleanup().finally(() => process.exit(130))
})
process.on('SIGTERM', () => { aborted = true; void cleanup().finally(() => process.exit(143)) })
// Last resort (a crash): never leave child processes behind.
process.on('exit', () => {
  if (echoProc && echoProc.exitCode === null && echoProc.signalCode === null) echoProc.kill('SIGKILL')
  for (const r of cluster?.replicas ?? []) if (r.proc && r.proc.exitCode === null && r.proc.signalCode === null) r.proc.kill('SIGKILL')
})

// ---------------------------------------------------------------------------------------------
// Phases

type OpName = 'insert' | 'read' | 'update'
interface OpStats { count: number; hist: hdr.Histogram; errors: Map<string, number> }
interface PhaseResult { seconds: number; attempted: number; timedOut: boolean; stats: Map<OpName, OpStats> }

function newStats(): OpStats { return { count: 0, hist: histogram(), errors: new Map() } }

function errorKind(e: unknown): string {
  if (isKvError(e)) return e.kind
  return `untyped:${e instanceof Error ? e.name : typeof e}`
}

const useProgressBar = !cfg.json && process.stderr.isTTY === true

function startProgress(phase: string, total: number, done: () => number, errors: () => number): () => void {
  const t0 = performance.now()
  if (useProgressBar) {
    bar = new cliProgress.SingleBar({
      format: `${phase.padEnd(6)} [{bar}] {percentage}% | {value}/{total} ops | {rate} ops/s | errors {errors} | eta {eta}s`,
      stream: process.stderr, hideCursor: true, clearOnComplete: false, etaBuffer: 50,
    }, cliProgress.Presets.shades_classic)
    bar.start(total, 0, { rate: '0', errors: 0 })
    const timer = setInterval(() => {
      bar?.update(done(), { rate: fmt(done() / ((performance.now() - t0) / 1000)), errors: errors() })
    }, 200)
    return () => {
      clearInterval(timer)
      bar?.update(done(), { rate: fmt(done() / ((performance.now() - t0) / 1000)), errors: errors() })
      bar?.stop()
      bar = undefined
    }
  }
  const timer = setInterval(() => {
    const s = (performance.now() - t0) / 1000
    note(`${phase}: ${done()}/${total} ops, ${fmt(done() / s)} ops/s, ${errors()} errors, ${s.toFixed(0)} s`)
  }, 2000)
  return () => clearInterval(timer)
}

/**
 * Runs `total` operations with `concurrency` workers pulling from a shared counter, until done or
 * the deadline. `start(i)` begins operation i and returns its promise: no closure is made per
 * operation (under tsx each named one gets a keep-names wrapper, measurable at these rates).
 */
async function runPhase(phase: string, total: number, start: (i: number) => { op: OpName; done: Promise<unknown> }): Promise<PhaseResult> {
  const stats = new Map<OpName, OpStats>()
  let next = 0
  let done = 0
  let errorCount = 0
  let timedOut = false
  const t0 = performance.now()
  const deadline = t0 + cfg.maxSeconds * 1000
  stopProgress = startProgress(phase, total, () => done, () => errorCount)
  const worker = async (): Promise<void> => {
    while (next < total && !aborted) {
      if (performance.now() > deadline) { timedOut = true; return }
      const began = performance.now()
      const { op, done: finished } = start(next++)
      let s = stats.get(op)
      if (!s) stats.set(op, s = newStats())
      try {
        await finished
        s.hist.recordValue(Math.max(1, Math.round((performance.now() - began) * 1000)))
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
    await Promise.all(Array.from({ length: Math.min(cfg.concurrency, total) }, worker))
  } finally {
    stopProgress()
    stopProgress = undefined
  }
  return { seconds: (performance.now() - t0) / 1000, attempted: done, timedOut, stats }
}

async function freeBasePort(count: number): Promise<number> {
  const isFree = (port: number): Promise<boolean> => new Promise(ok => {
    const srv = createServer()
    srv.once('error', () => ok(false))
    srv.listen(port, '127.0.0.1', () => srv.close(() => ok(true)))
  })
  for (let base = 27001; base < 60000; base += 97) {
    let all = true
    for (let p = base; p < base + count && all; p++) all = await isFree(p)
    if (all) return base
  }
  throw new Error('no free block of loopback ports found for the cluster')
}

// ---------------------------------------------------------------------------------------------

interface OpSummary { count: number; opsPerSec: number; p50Us: number; p95Us: number; p99Us: number; p999Us: number; maxUs: number; errors: Record<string, number> }

function summarize(s: OpStats | undefined, seconds: number): OpSummary | null {
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

function mergeErrors(stats: Map<OpName, OpStats>): Record<string, number> {
  const all: Record<string, number> = {}
  for (const s of stats.values()) for (const [k, n] of s.errors) all[k] = (all[k] ?? 0) + n
  return all
}

async function main(): Promise<void> {
  const cpuList = cpus()
  const host = { node: process.version, os: `${platform()} ${release()} ${arch()}`, cpus: cpuList.length, cpuModel: cpuList[0]?.model.trim() ?? 'unknown', loadavg1m: Number(loadavg()[0]!.toFixed(2)) }

  // 1. Baseline first, before the cluster exists, so replicas doing background work do not skew it.
  let echo: EchoResult | undefined
  if (cfg.baseline) {
    note(`baseline: raw ws echo, ${cfg.valueBytes} B, ${cfg.concurrency} in flight (second Node process)...`)
    echo = await runEchoBaseline({ concurrency: cfg.concurrency, roundTrips: 50_000, bytes: cfg.valueBytes, maxSeconds: 10, onServer: p => { echoProc = p } })
    echoProc = undefined
    if (aborted) return
  }

  // 2. Cluster.
  let seeds = cfg.seeds
  if (!seeds) {
    dataDir = await mkdtemp(join(tmpdir(), 'ringkv-ycsb-'))
    const basePort = await freeBasePort(3)
    note(`starting a 3-replica cluster on 127.0.0.1:${basePort}-${basePort + 2} (data in ${dataDir})...`)
    clusterStarting = startCluster({ dataDir, basePort, httpPort: 0, replicas: 3, n: 3 })
    const started = await clusterStarting
    if (aborted) return
    cluster = started
    seeds = started.seeds
  }
  if (aborted) return
  kv = createClient({ seeds })
  const ring = await kv.ring()
  if (cfg.r > ring.n || cfg.w > ring.n) throw new Error(`--r ${cfg.r} / --w ${cfg.w} exceed the cluster's N=${ring.n}`)

  const config = {
    workload: cfg.workload.toUpperCase(), mix: { read: readFraction, update: 1 - readFraction },
    distribution: cfg.distribution === 'zipfian' ? 'zipfian (YCSB scrambled, theta 0.99)' : 'uniform',
    records: cfg.records, ops: cfg.ops, concurrency: cfg.concurrency, r: cfg.r, w: cfg.w, n: ring.n,
    replicas: ring.nodes.length, partitions: ring.partitions, durableAcks: true, valueBytes: cfg.valueBytes,
    seeds, clusterStartedByBench: cluster !== undefined, maxSecondsPerPhase: cfg.maxSeconds, host,
  }

  // Pools of random values, so generating bytes does not compete with the client for CPU.
  const values = Array.from({ length: 256 }, () => new Uint8Array(randomBytes(cfg.valueBytes)))
  const value = (i: number): Uint8Array => values[i & 255]!
  const contexts: Array<string | undefined> = new Array(cfg.records)
  const client = kv

  // 3. Load.
  const load = await runPhase('load', cfg.records, i => ({
    op: 'insert',
    done: client.put(keyOf(i), value(i), { w: cfg.w }).then(r => { contexts[i] = r.context }),
  }))
  if (aborted) return
  const loaded = load.stats.get('insert')

  // 4. Run.
  let notFound = 0
  let siblingReads = 0
  let maxSiblings = 0
  const run = await runPhase('run', cfg.ops, i => {
    const k = chooser.next()
    const key = keyOf(k)
    if (readFraction === 1 || Math.random() < readFraction) {
      return {
        op: 'read',
        done: client.get(key, { r: cfg.r }).then(got => {
          if (!got.found) notFound++
          if (got.values.length > 1) { siblingReads++; if (got.values.length > maxSiblings) maxSiblings = got.values.length }
          contexts[k] = got.context
        }),
      }
    }
    const ctx = contexts[k]
    return {
      op: 'update',
      done: client.put(key, value(i), ctx === undefined ? { w: cfg.w } : { w: cfg.w, context: ctx }).then(r => { contexts[k] = r.context }),
    }
  })
  if (aborted) return

  // 5. Report.
  const read = summarize(run.stats.get('read'), run.seconds)
  const update = summarize(run.stats.get('update'), run.seconds)
  const insert = summarize(loaded, load.seconds)
  const okRun = (read?.count ?? 0) + (update?.count ?? 0)
  const runErrors = mergeErrors(run.stats)
  const loadErrors = mergeErrors(load.stats)
  const echoRate = echo?.roundTripsPerSec
  const ratio = (x: number | undefined): number | null => echoRate && x !== undefined ? x / echoRate : null
  const summary = {
    config,
    load: { opsPerSec: (insert?.count ?? 0) / load.seconds, records: insert?.count ?? 0, seconds: load.seconds, timedOut: load.timedOut, latency: insert, errors: loadErrors },
    run: {
      opsPerSec: okRun / run.seconds, ops: okRun, attempted: run.attempted, seconds: run.seconds, timedOut: run.timedOut,
      perOp: { read, update }, errors: runErrors, notFound, readsWithSiblings: siblingReads, maxSiblings,
    },
    baseline: echo ? { echoRoundTripsPerSec: echo.roundTripsPerSec, p50Us: echo.p50Us, p99Us: echo.p99Us, roundTrips: echo.roundTrips, concurrency: echo.concurrency, bytes: echo.bytes } : null,
    ratios: {
      readVsEcho: ratio(read?.opsPerSec), updateVsEcho: ratio(update?.opsPerSec),
      runVsEcho: ratio(okRun / run.seconds), loadPutsVsEcho: ratio(insert?.opsPerSec),
    },
  }

  if (cfg.json) {
    console.log(JSON.stringify(summary, null, 2))
    return
  }

  out()
  out(`ringkv YCSB workload ${config.workload} (${readFraction * 100}% read / ${Math.round((1 - readFraction) * 100)}% update), ${config.distribution} keys`)
  out(`config: records=${cfg.records} ops=${cfg.ops} concurrency=${cfg.concurrency} r=${cfg.r} w=${cfg.w} N=${ring.n} replicas=${ring.nodes.length} partitions=${ring.partitions} value=${cfg.valueBytes} B, durable acks (WAL group commit, fsync before ack), ${cluster ? 'local cluster started by the bench' : `seeds ${seeds.join(',')}`}`)
  out(`host:   node ${host.node}, ${host.os}, ${host.cpus} CPUs (${host.cpuModel}), load average ${host.loadavg1m} at start (shared machine: expect noise)`)
  out()
  const header = ['phase/op', 'ok ops', 'ops/s', 'p50', 'p95', 'p99', 'p99.9', 'max', 'errors']
  const rows: string[][] = [header]
  const row = (name: string, s: OpSummary | null): void => {
    if (!s) return
    const errs = Object.entries(s.errors).map(([k, n]) => `${k}=${n}`).join(' ') || '0'
    rows.push([name, fmt(s.count), fmt(s.opsPerSec), us(s.p50Us), us(s.p95Us), us(s.p99Us), us(s.p999Us), us(s.maxUs), errs])
  }
  row('load insert', insert)
  row('run read', read)
  row('run update', update)
  rows.push(['run total', fmt(okRun), fmt(okRun / run.seconds), '', '', '', '', '', String(Object.values(runErrors).reduce((a, b) => a + b, 0))])
  if (echo) rows.push(['raw ws echo', fmt(echo.roundTrips), fmt(echo.roundTripsPerSec), us(echo.p50Us), '', us(echo.p99Us), '', us(echo.maxUs), '0'])
  const widths = header.map((_, c) => Math.max(...rows.map(r => (r[c] ?? '').length)))
  for (const [ri, r] of rows.entries()) {
    out(r.map((cell, c) => c === 0 || c === r.length - 1 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!)).join('  ').trimEnd())
    if (ri === 0) out(widths.map(w => '-'.repeat(w)).join('  '))
  }
  out()
  out(`load: ${fmt(summary.load.opsPerSec)} puts/s over ${load.seconds.toFixed(2)} s${load.timedOut ? ' (stopped at --max-seconds)' : ''}`)
  out(`run:  ${fmt(summary.run.opsPerSec)} ops/s over ${run.seconds.toFixed(2)} s${run.timedOut ? ' (stopped at --max-seconds)' : ''}; ${notFound} reads found nothing; ${siblingReads} reads returned siblings (max ${maxSiblings})`)
  if (echo) {
    const x = (v: number | null): string => v === null ? 'n/a' : `${v.toFixed(2)}x`
    out()
    out(`vs raw ws echo (${fmt(echo.roundTripsPerSec)} round trips/s, ${echo.concurrency} in flight, ${echo.bytes} B):`)
    out(`  puts: ${x(summary.ratios.loadPutsVsEcho)} raw ws echo (load phase, 100% puts)`)
    if (update) out(`  puts: ${x(summary.ratios.updateVsEcho)} raw ws echo (run-phase updates, ${Math.round((1 - readFraction) * 100)}% of the mix)`)
    if (read) out(`  gets: ${x(summary.ratios.readVsEcho)} raw ws echo (run-phase reads, ${readFraction * 100}% of the mix)`)
    out(`  all:  ${x(summary.ratios.runVsEcho)} raw ws echo (run phase, all operations)`)
  }
  out()
  out('legend: latencies are per operation as the SDK sees them (µs unless "ms"; HDR histogram, 3 significant digits).')
  out(`  A quorum put costs 2 sequential round trips plus fsyncs: stamp at the first preference replica (acked after`)
  out(`  its WAL fsync), then replicate to the other ${ring.n - 1}; it returns after W=${cfg.w} durable acks. A get is 1 round trip to the`)
  out(`  replicas in parallel, answered by R=${cfg.r} (no fsync). The echo is 1 round trip, no codec, no disk, so a put`)
  out('  cannot exceed ~0.5x of it and a get ~1x (less: each op also costs the replicas CPU on this 2-core machine).')
  out('  Per-op ops/s in the run phase are shares of the mix (e.g. reads/s in workload A is about half the total).')
}

let failed = false
try {
  await main()
} catch (e) {
  failed = true
  bar?.stop()
  console.error(`bench failed: ${e instanceof Error ? e.stack ?? e.message : String(e)}`)
  if (dataDir) console.error(`replica logs kept in ${dataDir}`)
} finally {
  await cleanup(failed)
}
process.exit(failed ? 1 : 0)

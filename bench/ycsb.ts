// YCSB-style benchmark for ringkv (issue 2, "Benchmark"). Measured and reported, never asserted.
//
//   npm run bench -- [--workload a|b|c|w] [--records R] [--ops N] [--concurrency C] [--seeds ws://...]
//                    [--r 2] [--w 2] [--value-bytes 1024] [--uniform] [--max-seconds 120]
//                    [--json] [--no-baseline] [--rate R [--max-outstanding M]] [--warmup N]
//                    [--yardsticks [--etcd-api grpc|json] [--etcd-reads linearizable|serializable]
//                                  [--yardstick-ports LO-HI]] [--via sdk|http [--edge]] [--base-port P]
//
// 1. Baseline: a raw `ws` 1 KiB echo between this process and a second Node process, with the same
//    number of requests in flight (bench/ws-echo.ts). Our figures are printed as a ratio to it.
// 2. Cluster: uses --seeds, or starts a 3-replica cluster (infra/cluster.ts) in a temp dir on free
//    loopback ports and stops it at the end (and on SIGINT).
// 2b. --warmup N: before the load, N puts of keys of their own (`warmup…`) and N gets of them, not
//    measured. A fresh replica spends its first seconds compiling (V8's compiler was 15 % of the
//    replicas' CPU in a 60,000-operation run, `perf`), which etcd and Redis, compiled ahead of
//    time, never pay; a replica in service has long since done it. Off by default.
// 3. Load: inserts R records of --value-bytes random bytes, C puts in flight.
// 4. Run: N operations, C async workers pulling from a shared counter; the key of each operation is
//    drawn from YCSB's scrambled Zipfian distribution (theta 0.99) over the R records, or uniformly
//    with --uniform. A = 50/50 read/update, B = 95/5, C = read only; W = update only, not a YCSB
//    workload: the put path alone (for bench:compare of a change to the write path).
//
// 5. --rate R (open loop, bench/phases.ts): after the closed-loop phases, N puts and then N operations
//    of the workload's mix, each *scheduled* at R/s and timed from its scheduled start, so a stall is
//    charged to every operation due during it (a closed loop would stop sending and hide it). At most
//    --max-outstanding are outstanding; one due past that bound is dropped and counted. The puts
//    update the records in order, as the load phase writes them: Zipfian keys with hundreds of puts
//    outstanding put dozens of concurrent writers on the hottest keys, which pile siblings up to
//    siblingsMax (TooManySiblings) and measure conflict handling rather than the put path.
// 4b. --via http (bench/http-path.ts): after the SDK's run phase, the same run phase (same mix, same
//    key chooser, same records) through the Node gateway as its own process, and with --edge through
//    the Workers gateway under wrangler dev: server-side coordination beside the SDK's direct quorum
//    calls, printed side by side (ops/s, p50/p99/p99.9 per operation). A warm-up of
//    HTTP_WARMUP_OPS operations before each is not measured (connections, JIT, Durable Objects).
//    --gateway-auth runs each gateway twice, one after the other: as above, then with an auth file
//    (one write token, made for the run) and every request carrying it as a bearer token, so the
//    table shows what checking it costs.
// 6. --yardsticks (bench/yardsticks.ts): after stopping our cluster, etcd (3 members) and Redis (AOF
//    everysec) are started here, measured with the same value size and concurrency (etcd also open
//    loop with --rate), stopped, and printed beside ringkv's figures with the ratios.
//
// 7. Where the time went (bench/replica-metrics.ts, docs/performance.md), for the load phase and
//    the open-loop puts: the SDK's own view (kv.stats(): percentiles, and the phases of its slowest
//    1 % of puts: start, stamp transit, the stamping replica's work and fsync wait, the replication
//    round), the replicas' /metrics histograms over the phase (stamp, replicate, WAL fsync, flush
//    and compaction slices, event-loop delay), and CPU per operation of the replicas and the client.
//
// Updates pass the causal context last seen for the key (from its load put, or a later get/put), as a
// ringkv application must: a put without a context is concurrent with what is stored and would pile
// up siblings on hot keys. No extra read is made for it. Latencies are per operation, in µs, in HDR
// histograms; failures are counted per KvError kind and do not stop the run.

import { randomBytes } from 'node:crypto'
import type { ChildProcess } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { arch, cpus, loadavg, platform, release, tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import cliProgress from 'cli-progress'
import { createClient, type ClientStats, type KvClient } from '../client/index.ts'
import { startCluster, type Cluster } from '../infra/cluster.ts'
import {
  mergeErrors, runClosedLoop, runOpenLoop, summarize, summarizeOpenLoop,
  type OpSummary, type OpenLoopSummary, type PhaseResult, type StartOp,
} from './phases.ts'
import { combine, processCpuMs, quantileUs, scrape, subtract, type Scrape } from './replica-metrics.ts'
import { runEchoBaseline, type EchoResult } from './ws-echo.ts'
import { httpKv, startNodeGateway, startWorkersGateway, type RunningHttpGateway } from './http-path.ts'
import {
  killYardsticksNow, measureEtcd, measureRedis, printYardsticks, stopYardsticks, yardstickReport,
  type YardstickReport, type YardstickShape,
} from './yardsticks.ts'

// ---------------------------------------------------------------------------------------------
// Arguments

const usage = `usage: npm run bench -- [--workload a|b|c|w] [--records R] [--ops N] [--concurrency C]
       [--seeds ws://host:port,...] [--r R] [--w W] [--value-bytes B] [--uniform]
       [--max-seconds S] [--json] [--no-baseline] [--rate R] [--max-outstanding M] [--warmup N]
       [--yardsticks] [--etcd-api grpc|json] [--etcd-reads linearizable|serializable]
       [--yardstick-ports LO-HI] [--via sdk|http [--edge] [--gateway-auth]] [--base-port P]`

function die(msg: string): never {
  console.error(`bench: ${msg}\n${usage}`)
  process.exit(2)
}

/** --max-outstanding: operations an open-loop phase lets be outstanding before it drops the ones due. */
const MAX_OUTSTANDING_DEFAULT = 1024
/** Stays below what the SDK queues on one connection before it answers Overloaded. */
const MAX_OUTSTANDING_MAX = 16_384
/** --rate: highest offered load accepted (ops/s); far past what one Node client process can send. */
const RATE_MAX = 1_000_000
/** Replicas the bench starts may take this long to answer /health (19 s seen on a loaded 2-core machine). */
const CLUSTER_READY_TIMEOUT_MS = 90_000
/** --yardstick-ports: loopback ports etcd (6) and Redis (1) may listen on. */
const YARDSTICK_PORTS_DEFAULT = '19000-19099'
/** --via http: operations run through each gateway before its measured phase (not counted). */
const HTTP_WARMUP_OPS = 2_000

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
        warmup: { type: 'string', default: '0' },
        json: { type: 'boolean', default: false },
        'no-baseline': { type: 'boolean', default: false },
        rate: { type: 'string' },
        'max-outstanding': { type: 'string', default: String(MAX_OUTSTANDING_DEFAULT) },
        yardsticks: { type: 'boolean', default: false },
        'etcd-api': { type: 'string', default: 'grpc' },
        'etcd-reads': { type: 'string', default: 'linearizable' },
        'yardstick-ports': { type: 'string', default: YARDSTICK_PORTS_DEFAULT },
        via: { type: 'string', default: 'sdk' },
        edge: { type: 'boolean', default: false },
        'gateway-auth': { type: 'boolean', default: false },
        'base-port': { type: 'string' },
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
  if (workload !== 'a' && workload !== 'b' && workload !== 'c' && workload !== 'w') {
    die(`--workload must be a, b, c or w (A = 50/50 read/update, B = 95/5, C = read only, W = update only, not a YCSB workload: the put path alone), got ${JSON.stringify(values.workload)}`)
  }
  const seeds = values.seeds === undefined ? undefined : values.seeds.split(',').map(s => s.trim()).filter(Boolean)
  if (seeds) {
    if (seeds.length === 0) die('--seeds is empty; give ws://host:port[,ws://host:port...] or leave it out to start a local cluster')
    for (const s of seeds) if (!/^wss?:\/\/[^/\s]+/.test(s)) die(`--seeds entry ${JSON.stringify(s)} is not a ws://host:port URL`)
  }
  const records = int('records', values.records, 1, 10_000_000)
  const etcdApi = values['etcd-api']
  if (etcdApi !== 'grpc' && etcdApi !== 'json') die(`--etcd-api must be grpc or json, got ${JSON.stringify(etcdApi)}`)
  const etcdReads = values['etcd-reads']
  if (etcdReads !== 'linearizable' && etcdReads !== 'serializable') die(`--etcd-reads must be linearizable or serializable, got ${JSON.stringify(etcdReads)}`)
  const portRange = /^(\d+)-(\d+)$/.exec(values['yardstick-ports'] ?? '')
  const portLo = Number(portRange?.[1])
  const portHi = Number(portRange?.[2])
  if (!portRange || !(portLo >= 1024 && portLo <= portHi && portHi <= 65535)) die(`--yardstick-ports must be LO-HI within 1024-65535, got ${JSON.stringify(values['yardstick-ports'])}`)
  if (values.via !== 'sdk' && values.via !== 'http') die(`--via must be sdk or http, got ${JSON.stringify(values.via)}`)
  if (values.edge && values.via !== 'http') die('--edge adds the Workers gateway to --via http')
  if (values.yardsticks && workload === 'w') die('--yardsticks compares gets too, and workload W has none: use a, b or c')
  if (values['gateway-auth'] && values.via !== 'http') die('--gateway-auth runs the gateways of --via http a second time with a token')
  const cfg = {
    via: values.via as 'sdk' | 'http',
    edge: values.edge ?? false,
    gatewayAuth: values['gateway-auth'] ?? false,
    workload: workload as 'a' | 'b' | 'c' | 'w',
    records,
    ops: int('ops', values.ops, 1, 100_000_000),
    concurrency: int('concurrency', values.concurrency, 1, 10_000),
    seeds,
    r: int('r', values.r, 1, 16),
    w: int('w', values.w, 1, 16),
    valueBytes: int('value-bytes', values['value-bytes'], 1, 64 * 1024 * 1024),
    distribution: values.uniform ? 'uniform' as const : 'zipfian' as const,
    maxSeconds: int('max-seconds', values['max-seconds'], 1, 24 * 3600),
    warmup: int('warmup', values.warmup, 0, 10_000_000),
    json: values.json ?? false,
    baseline: !values['no-baseline'],
    rate: values.rate === undefined ? undefined : int('rate', values.rate, 1, RATE_MAX),
    maxOutstanding: int('max-outstanding', values['max-outstanding'], 1, MAX_OUTSTANDING_MAX),
    yardsticks: values.yardsticks ?? false,
    etcdApi: etcdApi as 'grpc' | 'json',
    etcdReads: etcdReads as 'linearizable' | 'serializable',
    portLo, portHi,
    basePort: values['base-port'] === undefined ? undefined : int('base-port', values['base-port'], 1024, 65533),
  }
  if (!seeds && (cfg.r > 3 || cfg.w > 3)) die(`--r and --w must be at most N=3 for the local cluster, got r=${cfg.r} w=${cfg.w}`)
  return cfg
}

const cfg = parseConfig()
const readFraction = { a: 0.5, b: 0.95, c: 1, w: 0 }[cfg.workload]

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

// ---------------------------------------------------------------------------------------------
// Cleanup on every exit path

let cluster: Cluster | undefined
let clusterStarting: Promise<Cluster> | undefined
let kv: KvClient | undefined
let echoProc: ChildProcess | undefined
let gatewayProc: ChildProcess | undefined
let httpGateway: RunningHttpGateway | undefined
let dataDir: string | undefined
let bar: cliProgress.SingleBar | undefined
let stopProgress: (() => void) | undefined
let aborted = false
let cleaning: Promise<void> | undefined

function cleanup(keepData = false): Promise<void> {
  cleaning ??= (async () => {
    stopProgress?.()
    if (echoProc && echoProc.exitCode === null && echoProc.signalCode === null) echoProc.kill('SIGTERM')
    try { await httpGateway?.stop() } catch { /* stopping anyway */ }
    try { await kv?.close() } catch { /* closing anyway */ }
    // Interrupted while replicas were starting: wait for them, then stop them (never orphan them).
    if (!cluster && clusterStarting) cluster = await clusterStarting.catch(() => undefined)
    try { await cluster?.stop() } catch (e) { note(`bench: stopping the cluster: ${(e as Error).message}`) }
    await stopYardsticks()
    if (dataDir && !keepData) await rm(dataDir, { recursive: true, force: true }).catch(() => undefined)
  })()
  return cleaning
}

process.on('SIGINT', () => {
  if (aborted) process.exit(130)
  aborted = true
  note('\nbench: interrupted, stopping the cluster, the echo server and the yardsticks...')
  void cleanup().finally(() => process.exit(130))
})
process.on('SIGTERM', () => { aborted = true; void cleanup().finally(() => process.exit(143)) })
// Last resort (a crash): never leave child processes behind.
process.on('exit', () => {
  if (echoProc && echoProc.exitCode === null && echoProc.signalCode === null) echoProc.kill('SIGKILL')
  if (gatewayProc && gatewayProc.exitCode === null && gatewayProc.signalCode === null) gatewayProc.kill('SIGKILL')
  for (const r of cluster?.replicas ?? []) if (r.proc && r.proc.exitCode === null && r.proc.signalCode === null) r.proc.kill('SIGKILL')
  killYardsticksNow()
})

// ---------------------------------------------------------------------------------------------
// Phases

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

/** startProgress, remembered so that cleanup (SIGINT) can stop the bar of the phase running. */
function trackedProgress(phase: string, total: number, done: () => number, errors: () => number): () => void {
  const stop = startProgress(phase, total, done, errors)
  stopProgress = stop
  return () => { stop(); if (stopProgress === stop) stopProgress = undefined }
}

function runPhase(phase: string, total: number, start: StartOp): Promise<PhaseResult> {
  return runClosedLoop({ phase, total, concurrency: cfg.concurrency, maxSeconds: cfg.maxSeconds, isAborted: () => aborted, progress: trackedProgress }, start)
}

function runOpenPhase(phase: string, total: number, start: StartOp) {
  return runOpenLoop({ phase, total, rate: cfg.rate!, maxOutstanding: cfg.maxOutstanding, maxSeconds: cfg.maxSeconds, isAborted: () => aborted, progress: trackedProgress }, start)
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

// ---------------------------------------------------------------------------------------------
// Where the time went in a phase: the SDK's stats, the replicas' histograms, CPU per operation

interface PhaseTime {
  sdk: ClientStats
  /** p50 / p99 / p99.9 / count per replica histogram over the phase, all replicas together (µs, power-of-two bounds). */
  replicas: Record<string, { count: number; p50Us: number; p99Us: number; p999Us: number }>
  /** CPU per completed operation (µs): the cluster's processes together (a cluster the bench started, or one named by RINGKV_BENCH_CLUSTER_PIDS), and this process. */
  cpuUsPerOp: { replicas: number | null; client: number }
}

/** RINGKV_BENCH_CLUSTER_PIDS: the processes of a --seeds cluster on this machine (set by bench:compare). */
const externalPids = (process.env.RINGKV_BENCH_CLUSTER_PIDS ?? '').split(',').map(Number).filter(p => Number.isSafeInteger(p) && p > 0)

/** Starts watching a phase; the function it returns ends the watch for `ops` operations. */
async function watchPhase(): Promise<(ops: number) => Promise<PhaseTime>> {
  const client = kv!
  client.stats({ reset: true })
  const urls = cluster?.replicas.map(r => r.httpUrl) ?? []
  // A cluster given by --seeds runs elsewhere: bench:compare names its processes here, for their CPU.
  const pids = cluster?.replicas.map(r => r.pid).filter((p): p is number => p !== undefined) ?? externalPids
  const before = await Promise.all(urls.map(u => scrape(u).catch(() => new Map() as Scrape)))
  const cpuBefore = await Promise.all(pids.map(processCpuMs))
  const ownBefore = process.cpuUsage()
  return async ops => {
    const own = process.cpuUsage(ownBefore)
    const cpuAfter = await Promise.all(pids.map(processCpuMs))
    const after = await Promise.all(urls.map(u => scrape(u).catch(() => new Map() as Scrape)))
    const sdk = client.stats({ reset: true })
    const delta = combine(after.map((a, i) => subtract(a, before[i]!)))
    const replicas: PhaseTime['replicas'] = {}
    for (const [k, h] of delta) {
      if (h.count <= 0) continue
      replicas[k] = { count: h.count, p50Us: quantileUs(h, 0.5), p99Us: quantileUs(h, 0.99), p999Us: quantileUs(h, 0.999) }
    }
    let replicaCpuMs: number | null = pids.length > 0 ? 0 : null
    cpuAfter.forEach((c, i) => {
      const b = cpuBefore[i]
      if (replicaCpuMs === null || c === undefined || b === undefined) replicaCpuMs = null
      else replicaCpuMs += c - b
    })
    const n = Math.max(1, sdk.put.count + sdk.get.count || ops)
    return { sdk, replicas, cpuUsPerOp: { replicas: replicaCpuMs === null ? null : (replicaCpuMs * 1000) / n, client: (own.user + own.system) / n } }
  }
}

function printWhereTimeWent(phase: string, t: PhaseTime): void {
  out()
  out(`where the time went, ${phase}:`)
  const s = t.sdk.put
  out(`  SDK puts (kv.stats()): ${fmt(s.count)} completed, p50 ${us(s.p50Us)}, p90 ${us(s.p90Us)}, p99 ${us(s.p99Us)}, p99.9 ${us(s.p999Us)}, max ${us(s.maxUs)} (buckets of 2^(1/4))`)
  const tail = t.sdk.putTail
  if (tail) {
    const p = tail.meanPhase
    out(`  slowest 1 % (${tail.slowest} puts from ${us(tail.fromUs)}, mean ${us(tail.meanTotalUs)}): start ${us(p.start)} | stamp transit ${us(p.stampTransit)}` +
      ` (client queue, wire, replica loop) | stamp work + group wait ${us(p.stampWork)} | stamp group fsync ${us(p.stampFsync)} | replicate ${us(p.replicate)}` +
      ` (of which replica ${us(p.replicaService)}) | stamps sent ${p.stamps.toFixed(2)}`)
  }
  const row = (label: string, key: string): void => {
    const h = t.replicas[key]
    if (h) out(`  ${label.padEnd(28)} ${fmt(h.count).padStart(9)}  p50 ${us(h.p50Us).padStart(9)}  p99 ${us(h.p99Us).padStart(9)}  p99.9 ${us(h.p999Us).padStart(9)}`)
  }
  out('  replicas (/metrics over the phase, all replicas; bounds are powers of two):')
  row('stamp (dispatch to reply)', 'ringkv_request_duration_seconds{op="stamp"}')
  row('replicate', 'ringkv_request_duration_seconds{op="replicate"}')
  row('get', 'ringkv_request_duration_seconds{op="get"}')
  row('WAL group fsync', 'ringkv_storage_duration_seconds{op="wal_fsync"}')
  row('memtable flush (whole)', 'ringkv_storage_duration_seconds{op="flush"}')
  row('flush slice (loop held)', 'ringkv_storage_slice_seconds{work="flush"}')
  row('compaction slice', 'ringkv_storage_slice_seconds{work="compaction"}')
  row('event-loop delay', 'ringkv_event_loop_delay_seconds{}')
  const c = t.cpuUsPerOp
  out(`  CPU per operation: replicas ${c.replicas === null ? 'n/a (not started by the bench)' : `${fmt(c.replicas)} µs`} (3 processes together), client ${fmt(c.client)} µs`)
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
    const basePort = cfg.basePort ?? await freeBasePort(3)
    note(`starting a 3-replica cluster on 127.0.0.1:${basePort}-${basePort + 2} (data in ${dataDir})...`)
    clusterStarting = startCluster({ dataDir, basePort, httpPort: 0, replicas: 3, n: 3, readyTimeoutMs: CLUSTER_READY_TIMEOUT_MS })
    const started = await clusterStarting
    if (aborted) return
    cluster = started
    seeds = started.seeds
  }
  if (aborted) return
  // RINGKV_TOKEN: a cluster started with an auth file (--seeds); the token is never printed.
  kv = createClient({ seeds, ...(process.env.RINGKV_TOKEN ? { token: process.env.RINGKV_TOKEN } : {}) })
  const ring = await kv.ring()
  if (cfg.r > ring.n || cfg.w > ring.n) throw new Error(`--r ${cfg.r} / --w ${cfg.w} exceed the cluster's N=${ring.n}`)

  const config = {
    workload: cfg.workload.toUpperCase(), mix: { read: readFraction, update: 1 - readFraction },
    distribution: cfg.distribution === 'zipfian' ? 'zipfian (YCSB scrambled, theta 0.99)' : 'uniform',
    records: cfg.records, ops: cfg.ops, concurrency: cfg.concurrency, r: cfg.r, w: cfg.w, n: ring.n,
    replicas: ring.nodes.length, partitions: ring.partitions, durableAcks: true, valueBytes: cfg.valueBytes,
    seeds, clusterStartedByBench: cluster !== undefined, maxSecondsPerPhase: cfg.maxSeconds, warmupOps: cfg.warmup, host,
  }

  // Pools of random values, so generating bytes does not compete with the client for CPU.
  const values = Array.from({ length: 256 }, () => new Uint8Array(randomBytes(cfg.valueBytes)))
  const value = (i: number): Uint8Array => values[i & 255]!
  const contexts: Array<string | undefined> = new Array(cfg.records)
  const client = kv

  // 2b. Warm-up (not measured).
  if (cfg.warmup > 0) {
    note(`warming up: ${cfg.warmup} puts and ${cfg.warmup} gets of keys of their own (not measured)...`)
    const warmKey = (i: number): string => `warmup${String(i).padStart(10, '0')}`
    await runPhase('warmup', cfg.warmup, i => ({ op: 'insert', done: client.put(warmKey(i), value(i), { w: cfg.w }) }))
    if (aborted) return
    await runPhase('warmup', cfg.warmup, i => ({ op: 'read', done: client.get(warmKey(i), { r: cfg.r }) }))
    if (aborted) return
  }

  // 3. Load.
  const watchLoad = await watchPhase()
  const load = await runPhase('load', cfg.records, i => ({
    op: 'insert',
    done: client.put(keyOf(i), value(i), { w: cfg.w }).then(r => { contexts[i] = r.context }),
  }))
  if (aborted) return
  const loadTime = await watchLoad(cfg.records)
  const loaded = load.stats.get('insert')

  // 4. Run.
  let notFound = 0
  let siblingReads = 0
  let maxSiblings = 0
  const update = (i: number, k: number): { op: 'update'; done: Promise<unknown> } => {
    const ctx = contexts[k]
    return {
      op: 'update',
      done: client.put(keyOf(k), value(i), ctx === undefined ? { w: cfg.w } : { w: cfg.w, context: ctx }).then(r => { contexts[k] = r.context }),
    }
  }
  const runOp: StartOp = i => {
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
    return update(i, k)
  }
  const run = await runPhase('run', cfg.ops, runOp)
  if (aborted) return
  const runReads = { notFound, siblingReads, maxSiblings }

  // 4b. The same run phase through the gateways.
  const via: Array<{ name: string; url: string; seconds: number; ops: number; opsPerSec: number; read: OpSummary | null; update: OpSummary | null; errors: Record<string, number> }> = []
  if (cfg.via === 'http') {
    // --gateway-auth: an auth file with one write token, made for this run and removed after it.
    let auth: { file: string; token: string; dir: string } | undefined
    if (cfg.gatewayAuth) {
      const dir = await mkdtemp(join(tmpdir(), 'ringkv-bench-auth-'))
      const token = randomBytes(32).toString('hex')
      await writeFile(join(dir, 'auth.json'), JSON.stringify({ tokens: [{ name: 'bench', token, role: 'write' }] }), { mode: 0o600 })
      auth = { file: join(dir, 'auth.json'), token, dir }
    }
    const starters: Array<{ start: () => Promise<RunningHttpGateway>; token?: string }> = []
    const both = (start: (authFile?: string) => Promise<RunningHttpGateway>) => {
      starters.push({ start: () => start() })
      if (auth) starters.push({ start: () => start(auth!.file), token: auth.token })
    }
    both(authFile => startNodeGateway(seeds!, p => { gatewayProc = p }, authFile))
    if (cfg.edge) both(authFile => startWorkersGateway(seeds!, note, authFile))
    for (const { start: startGateway, token } of starters) {
      httpGateway = await startGateway()
      const gw = httpGateway
      note(`${gw.name} on ${gw.url}: warming up with ${HTTP_WARMUP_OPS} operations...`)
      const http = httpKv(gw.url, token)
      const httpOp: StartOp = i => {
        const k = chooser.next()
        const key = keyOf(k)
        if (readFraction === 1 || Math.random() < readFraction) {
          return { op: 'read', done: http.get(key, cfg.r).then(got => { if (got.context) contexts[k] = got.context }) }
        }
        return { op: 'update', done: http.put(key, value(i), contexts[k], cfg.w).then(ctx => { contexts[k] = ctx }) }
      }
      await runPhase('warmup', Math.min(HTTP_WARMUP_OPS, cfg.ops), httpOp)
      if (aborted) return
      const r = await runPhase('http', cfg.ops, httpOp)
      if (aborted) return
      const ok = (r.stats.get('read')?.count ?? 0) + (r.stats.get('update')?.count ?? 0)
      via.push({ name: gw.name, url: gw.url, seconds: r.seconds, ops: ok, opsPerSec: ok / r.seconds,
        read: summarize(r.stats.get('read'), r.seconds), update: summarize(r.stats.get('update'), r.seconds), errors: mergeErrors(r.stats) })
      await gw.stop()
      httpGateway = undefined
      gatewayProc = undefined
    }
    if (auth) await rm(auth.dir, { recursive: true, force: true })
  }

  // 5. Open loop at --rate: puts alone (the tail the issue is about; keys in order, see the top), then the workload's mix.
  let open: { puts: OpenLoopSummary; run: OpenLoopSummary } | null = null
  let openPutTime: PhaseTime | null = null
  if (cfg.rate !== undefined) {
    const watchOpen = await watchPhase()
    const puts = await runOpenPhase('open puts', cfg.ops, i => update(i, i % cfg.records))
    if (aborted) return
    openPutTime = await watchOpen(cfg.ops)
    const openRun = await runOpenPhase('open run', cfg.ops, runOp)
    if (aborted) return
    open = { puts: summarizeOpenLoop(puts, cfg.ops), run: summarizeOpenLoop(openRun, cfg.ops) }
  }
  // The open-loop run's reads, counted apart from the closed run's: with hundreds outstanding, writes overlap more.
  const openReads = { notFound: notFound - runReads.notFound, siblingReads: siblingReads - runReads.siblingReads, maxSiblings }

  // 6. Yardsticks, one at a time on a quiet machine: our cluster is stopped first.
  let yardsticks: YardstickReport | null = null
  if (cfg.yardsticks) {
    try { await kv.close() } catch { /* closing anyway */ }
    kv = undefined
    if (cluster) {
      note('stopping the ringkv cluster before the yardsticks...')
      await cluster.stop()
      cluster = undefined
    }
    const shape: YardstickShape = {
      concurrency: cfg.concurrency, valueBytes: cfg.valueBytes, records: cfg.records, ops: cfg.ops, readFraction,
      nextKey: () => chooser.next(), keyOf, maxSeconds: cfg.maxSeconds, rate: cfg.rate, maxOutstanding: cfg.maxOutstanding,
      etcdApi: cfg.etcdApi, etcdReads: cfg.etcdReads, portLo: cfg.portLo, portHi: cfg.portHi,
      isAborted: () => aborted, progress: trackedProgress, note,
    }
    const etcd = await measureEtcd(shape)
    if (aborted) return
    const redis = await measureRedis(shape)
    if (aborted) return
    yardsticks = yardstickReport(
      { puts: summarize(loaded, load.seconds), gets: summarize(run.stats.get('read'), run.seconds), open },
      etcd, redis, `measured in this invocation, one system after the other, on ${host.cpus} CPUs shared with other work (load average ${host.loadavg1m} at start): expect noise`)
  }

  // 7. Report.
  const read = summarize(run.stats.get('read'), run.seconds)
  const updated = summarize(run.stats.get('update'), run.seconds)
  const insert = summarize(loaded, load.seconds)
  const okRun = (read?.count ?? 0) + (updated?.count ?? 0)
  const runErrors = mergeErrors(run.stats)
  const loadErrors = mergeErrors(load.stats)
  const echoRate = echo?.roundTripsPerSec
  const ratio = (x: number | undefined): number | null => echoRate && x !== undefined ? x / echoRate : null
  const summary = {
    config,
    load: { opsPerSec: (insert?.count ?? 0) / load.seconds, records: insert?.count ?? 0, seconds: load.seconds, timedOut: load.timedOut, latency: insert, errors: loadErrors },
    run: {
      opsPerSec: okRun / run.seconds, ops: okRun, attempted: run.attempted, seconds: run.seconds, timedOut: run.timedOut,
      perOp: { read, update: updated }, errors: runErrors, notFound: runReads.notFound, readsWithSiblings: runReads.siblingReads, maxSiblings: runReads.maxSiblings,
    },
    baseline: echo ? { echoRoundTripsPerSec: echo.roundTripsPerSec, p50Us: echo.p50Us, p99Us: echo.p99Us, roundTrips: echo.roundTrips, concurrency: echo.concurrency, bytes: echo.bytes } : null,
    ratios: {
      readVsEcho: ratio(read?.opsPerSec), updateVsEcho: ratio(updated?.opsPerSec),
      runVsEcho: ratio(okRun / run.seconds), loadPutsVsEcho: ratio(insert?.opsPerSec),
    },
    via: via.length > 0 ? [{ name: 'SDK (direct quorum)', opsPerSec: okRun / run.seconds, read, update: updated, errors: runErrors }, ...via] : null,
    openLoop: open ? { ...open, readsNotFound: openReads.notFound, readsWithSiblings: openReads.siblingReads, maxSiblings: openReads.maxSiblings } : null,
    yardsticks,
    whereTimeWent: { load: loadTime, openPuts: openPutTime },
  }

  if (cfg.json) {
    console.log(JSON.stringify(summary, null, 2))
    return
  }

  out()
  out(`ringkv YCSB workload ${config.workload} (${readFraction * 100}% read / ${Math.round((1 - readFraction) * 100)}% update), ${config.distribution} keys`)
  out(`config: records=${cfg.records} ops=${cfg.ops} concurrency=${cfg.concurrency} r=${cfg.r} w=${cfg.w} N=${ring.n} replicas=${ring.nodes.length} partitions=${ring.partitions} value=${cfg.valueBytes} B, durable acks (WAL group commit, fsync before ack), ${config.clusterStartedByBench ? 'local cluster started by the bench' : `seeds ${seeds.join(',')}`}`)
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
  row('run update', updated)
  rows.push(['run total', fmt(okRun), fmt(okRun / run.seconds), '', '', '', '', '', String(Object.values(runErrors).reduce((a, b) => a + b, 0))])
  if (open) {
    const r = `@${fmt(open.puts.offeredPerSec)}/s`
    row(`open ${r} update (puts)`, open.puts.perOp['update'] ?? null)
    row(`open ${r} read (mix)`, open.run.perOp['read'] ?? null)
    row(`open ${r} update (mix)`, open.run.perOp['update'] ?? null)
  }
  if (echo) rows.push(['raw ws echo', fmt(echo.roundTrips), fmt(echo.roundTripsPerSec), us(echo.p50Us), '', us(echo.p99Us), '', us(echo.maxUs), '0'])
  const widths = header.map((_, c) => Math.max(...rows.map(r => (r[c] ?? '').length)))
  for (const [ri, r] of rows.entries()) {
    out(r.map((cell, c) => c === 0 || c === r.length - 1 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!)).join('  ').trimEnd())
    if (ri === 0) out(widths.map(w => '-'.repeat(w)).join('  '))
  }
  out()
  out(`load: ${fmt(summary.load.opsPerSec)} puts/s over ${load.seconds.toFixed(2)} s${load.timedOut ? ' (stopped at --max-seconds)' : ''}`)
  out(`run:  ${fmt(summary.run.opsPerSec)} ops/s over ${run.seconds.toFixed(2)} s${run.timedOut ? ' (stopped at --max-seconds)' : ''}; ${runReads.notFound} reads found nothing; ${runReads.siblingReads} reads returned siblings (max ${runReads.maxSiblings})`)
  if (open) {
    for (const [name, o] of [['open puts', open.puts], ['open run ', open.run]] as const) {
      out(`${name}: offered ${fmt(o.offeredPerSec)}/s, achieved ${fmt(o.achievedPerSec)}/s over ${o.seconds.toFixed(2)} s; ${fmt(o.scheduled)}/${fmt(o.total)} scheduled${o.timedOut ? ' (stopped at --max-seconds)' : ''}, ` +
        `${o.dropped} dropped at --max-outstanding ${o.maxOutstanding} (peak ${o.peakOutstanding} outstanding), ${o.unfinished} unfinished; client lag p99 ${us(o.startLagP99Us)}, max ${us(o.startLagMaxUs)}`)
    }
    out(`open run reads: ${openReads.notFound} found nothing; ${openReads.siblingReads} returned siblings (max ${openReads.maxSiblings}, over both runs)`)
    out('  (open loop: each latency counts from the operation\'s scheduled start, so time spent waiting behind a stall is included;')
    out('  percentiles cover the operations that succeeded, failed ones are counted under errors)')
  }
  if (via.length > 0) {
    out()
    out(`run phase by path (same workload, ${cfg.concurrency} in flight; gateways over HTTP/1.1 keep-alive from this process):`)
    const vh = ['path', 'ops/s', 'read p50', 'read p99', 'read p99.9', 'update p50', 'update p99', 'update p99.9', 'errors']
    const cell = (s: OpSummary | null, f: 'p50Us' | 'p99Us' | 'p999Us') => s ? us(s[f]) : '-'
    const vrows: string[][] = [vh]
    const vrow = (name: string, opsPerSec: number, rd: OpSummary | null, up: OpSummary | null, errors: Record<string, number>) => {
      const errs = Object.entries(errors).map(([k, n]) => `${k}=${n}`).join(' ') || '0'
      vrows.push([name, fmt(opsPerSec), cell(rd, 'p50Us'), cell(rd, 'p99Us'), cell(rd, 'p999Us'), cell(up, 'p50Us'), cell(up, 'p99Us'), cell(up, 'p999Us'), errs])
    }
    vrow('SDK (direct quorum)', okRun / run.seconds, read, updated, runErrors)
    for (const v of via) vrow(v.name, v.opsPerSec, v.read, v.update, v.errors)
    const vw = vh.map((_, c) => Math.max(...vrows.map(r => (r[c] ?? '').length)))
    for (const [ri, r] of vrows.entries()) {
      out(r.map((c2, c) => c === 0 || c === r.length - 1 ? c2.padEnd(vw[c]!) : c2.padStart(vw[c]!)).join('  ').trimEnd())
      if (ri === 0) out(vw.map(w => '-'.repeat(w)).join('  '))
    }
  }
  if (echo) {
    const x = (v: number | null): string => v === null ? 'n/a' : `${v.toFixed(2)}x`
    out()
    out(`vs raw ws echo (${fmt(echo.roundTripsPerSec)} round trips/s, ${echo.concurrency} in flight, ${echo.bytes} B):`)
    out(`  puts: ${x(summary.ratios.loadPutsVsEcho)} raw ws echo (load phase, 100% puts)`)
    if (updated) out(`  puts: ${x(summary.ratios.updateVsEcho)} raw ws echo (run-phase updates, ${Math.round((1 - readFraction) * 100)}% of the mix)`)
    if (read) out(`  gets: ${x(summary.ratios.readVsEcho)} raw ws echo (run-phase reads, ${readFraction * 100}% of the mix)`)
    out(`  all:  ${x(summary.ratios.runVsEcho)} raw ws echo (run phase, all operations)`)
  }
  out()
  out('legend: latencies are per operation as the SDK sees them (µs unless "ms"; HDR histogram, 3 significant digits).')
  out(`  A quorum put costs 2 sequential round trips: stamp at the first preference replica (which answers early, before`)
  out(`  its WAL fsync), then replicate to the other ${ring.n - 1}; it returns after W=${cfg.w} durable acks. A get is 1 round trip to R=${cfg.r}`)
  out(`  replicas in parallel (the least loaded; all ${ring.n} until the SDK has a p99 of its gets; no fsync). The echo is 1 round trip, no codec, no disk, so a put`)
  out('  cannot exceed ~0.5x of it and a get ~1x (less: each op also costs the replicas CPU on this 2-core machine).')
  out('  Per-op ops/s in the run phase are shares of the mix (e.g. reads/s in workload A is about half the total).')
  printWhereTimeWent('load (puts, closed loop)', loadTime)
  if (openPutTime) printWhereTimeWent(`open-loop puts @${fmt(cfg.rate!)}/s`, openPutTime)
  if (yardsticks) printYardsticks(yardsticks, { concurrency: cfg.concurrency, valueBytes: cfg.valueBytes, workload: config.workload, rate: cfg.rate }, out)
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

// Join benchmark (issue 8, "Benchmark"; docs/membership.md "Measured: a join under load"): what a
// replica joining a loaded cluster costs the foreground writes, and how fast its partitions move.
// Measured and printed, never asserted.
//
//   npm run bench:join -- [--keys 50000] [--value-bytes 1024] [--rate 2000] [--seconds 20]
//                         [--base-port 18650] [--partitions 256] [--max-outstanding 1024]
//                         [--join-wait-seconds 300] [--handoff-bytes-per-sec B] [--json]
//
// 1. Starts 3 replicas (N=3, static membership, no snapshots) in a temp dir on --base-port..+2 and
//    loads --keys keys of --value-bytes (64 puts in flight).
// 2. "steady": an open-loop put load (bench/phases.ts) at --rate puts/s for --seconds: each put is
//    scheduled at t0 + i/rate and timed from that scheduled start, so a stall is charged to every
//    put due during it; at most --max-outstanding are outstanding, the rest are dropped and counted.
//    The puts overwrite the loaded keys in order, with the causal context of the key's last write.
// 3. "join": the same load for the same time while a 4th replica (--base-port+3) joins with
//    `--join` the first seed, as `npm start -- --join` starts it. Every second the bench scrapes
//    each replica's /metrics (ringkv_handoff_bytes_total, ringkv_handoff_keys_total,
//    ringkv_transfers_*_total) and the first seed's GET /members. The join is done when that view
//    has no plan and the joiner owns partitions; if it is not done when the load ends, sampling
//    goes on (at most --join-wait-seconds) and the bench says how long it took.
// 4. Reads every key back (R=2) and checks that each key's last acknowledged write is there, or a
//    later write of the same key (which may have superseded it): `lost` must be 0.
// 5. Prints a table, the join figures, the ratio of the join phase's put p99 to the steady one's,
//    and the command line; --json prints the same as one JSON object.
//
// Every value starts with its write's sequence number (12 ASCII digits and ':'); the rest is random
// bytes from a pool. The sequence numbers grow in schedule order over the whole run, so "a later
// write of the same key" is "a larger sequence number".

import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { cpus, loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { createClient, type KvClient } from '../client/index.ts'
import { limits } from '../coordinator/limits.ts'
import { startCluster, type Cluster } from '../infra/cluster.ts'
import { counters, membersView, minus, missingSeries, sum, type Counters } from './join-metrics.ts'
import { errorKind, runClosedLoop, runOpenLoop, summarize, summarizeOpenLoop, type OpSummary, type OpenLoopResult, type OpenLoopSummary, type Progress } from './phases.ts'

// ---------------------------------------------------------------------------------------------
// Bounds (a benchmark's own: they bound this process, not the store)

/** Puts (load) and gets (verification) in flight in the closed-loop phases. */
const CLOSED_LOOP_CONCURRENCY = 64
/** --max-outstanding: open-loop puts outstanding before the ones due are dropped (as bench/ycsb.ts). */
const MAX_OUTSTANDING_DEFAULT = 1024
/** Stays below what the SDK queues on one connection before it answers Overloaded. */
const MAX_OUTSTANDING_MAX = 16_384
/** --rate: highest offered load accepted (puts/s). */
const RATE_MAX = 1_000_000
/** --seconds: longest a load phase may be. */
const PHASE_SECONDS_MAX = 3600
/** --keys: most keys loaded (each key's context and last sequence number are kept in memory). */
const KEYS_MAX = 10_000_000
/** --join-wait-seconds: default and most time a join may take before the bench gives up on it. */
const JOIN_WAIT_SECONDS_DEFAULT = 300
const JOIN_WAIT_SECONDS_MAX = 3600
/** Replicas may take this long to answer /health on a loaded 2-core machine (19 s seen). */
const CLUSTER_READY_TIMEOUT_MS = 90_000
/** Longest the load or the verification may run (closed loop) before it stops. */
const CLOSED_LOOP_SECONDS_MAX = 1800
/** A phase's issuing stops this long after its scheduled end, whatever the client's lag. */
const PHASE_OVERRUN_SECONDS = 30
/** How often the join phase samples /metrics and /members. */
const SAMPLE_INTERVAL_MS = 1000
/** How often progress is printed on stderr. */
const PROGRESS_INTERVAL_MS = 5000
/** SDK timeout per request. */
const REQUEST_TIMEOUT_MS = 10_000
/** Quorums of the load, the phases and the read-back. */
const W = 2
const R = 2
/** Random value bodies the puts cycle through (generating bytes per put would compete with the client). */
const VALUE_POOL_SIZE = 256
/** Digits of the sequence number each value starts with, then ':'. */
const SEQ_DIGITS = 12
const TAG_BYTES = SEQ_DIGITS + 1
/** --base-port: the first unprivileged port to the last that leaves room for the 4 replicas. */
const UNPRIVILEGED_PORT_MIN = 1024
const PORT_MAX = 65_535
const REPLICAS_USED = 4
/** --partitions: fewest accepted (a 4th node must be able to take a share of them). */
const PARTITIONS_MIN = 4
/** Kinds of failure whose first message the report shows. */
const ERROR_KINDS_SHOWN_MAX = 8

// ---------------------------------------------------------------------------------------------
// Arguments

const usage = `usage: npm run bench:join -- [--keys K] [--value-bytes B] [--rate R] [--seconds S]
       [--base-port P] [--partitions P] [--max-outstanding M] [--join-wait-seconds S]
       [--handoff-bytes-per-sec B] [--json]`

function die(msg: string): never {
  console.error(`bench:join: ${msg}\n${usage}`)
  process.exit(2)
}

function parseConfig() {
  let values
  try {
    ({ values } = parseArgs({
      options: {
        keys: { type: 'string', default: '50000' },
        'value-bytes': { type: 'string', default: '1024' },
        rate: { type: 'string', default: '2000' },
        seconds: { type: 'string', default: '20' },
        'base-port': { type: 'string', default: '18650' },
        partitions: { type: 'string', default: '256' },
        'max-outstanding': { type: 'string', default: String(MAX_OUTSTANDING_DEFAULT) },
        'join-wait-seconds': { type: 'string', default: String(JOIN_WAIT_SECONDS_DEFAULT) },
        'handoff-bytes-per-sec': { type: 'string' },
        json: { type: 'boolean', default: false },
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
  const partitions = int('partitions', values.partitions, PARTITIONS_MIN, limits.partitionsMax)
  if ((partitions & (partitions - 1)) !== 0) die(`--partitions must be a power of two, got ${partitions}`)
  return {
    keys: int('keys', values.keys, 1, KEYS_MAX),
    // A value holds at least its tag; at most what a replica accepts by default.
    valueBytes: int('value-bytes', values['value-bytes'], TAG_BYTES, limits.valueBytesDefault),
    rate: int('rate', values.rate, 1, RATE_MAX),
    seconds: int('seconds', values.seconds, 1, PHASE_SECONDS_MAX),
    // The cluster takes base..base+2, the joiner base+3.
    basePort: int('base-port', values['base-port'], UNPRIVILEGED_PORT_MIN, PORT_MAX - REPLICAS_USED + 1),
    partitions,
    maxOutstanding: int('max-outstanding', values['max-outstanding'], 1, MAX_OUTSTANDING_MAX),
    joinWaitSeconds: int('join-wait-seconds', values['join-wait-seconds'], 1, JOIN_WAIT_SECONDS_MAX),
    handoffBytesPerSec: values['handoff-bytes-per-sec'] === undefined ? undefined : int('handoff-bytes-per-sec', values['handoff-bytes-per-sec'], 1, limits.handoffBytesPerSecMax),
    json: values.json ?? false,
  }
}

const cfg = parseConfig()
const commandLine = `npm run bench:join --${process.argv.slice(2).map(a => ` ${a}`).join('')}`.replace(/ --$/, '')

// ---------------------------------------------------------------------------------------------
// Output

const out = (s = ''): void => { if (!cfg.json) console.log(s) }
const note = (s: string): void => { console.error(s) }
const fmt = (n: number): string => Math.round(n).toLocaleString('en-US')
const ms = (us: number): string => us >= 10_000 ? `${(us / 1000).toFixed(0)} ms` : `${(us / 1000).toFixed(1)} ms`
const mb = (bytes: number): string => (bytes / 1e6).toFixed(1)

// ---------------------------------------------------------------------------------------------
// Cleanup on every exit path: the cluster, the joiner (also while either is starting), the data.

let cluster: Cluster | undefined
let clusterStarting: Promise<Cluster> | undefined
let joiner: Cluster | undefined
let joinerStarting: Promise<Cluster> | undefined
let kv: KvClient | undefined
let dataDir: string | undefined
let aborted = false
let cleaning: Promise<void> | undefined
let sampler: NodeJS.Timeout | undefined

function cleanup(keepData = false): Promise<void> {
  cleaning ??= (async () => {
    if (sampler) clearInterval(sampler)
    try { await kv?.close() } catch { /* closing anyway */ }
    // Interrupted while replicas were starting: wait for them, then stop them (never orphan them).
    if (!cluster && clusterStarting) cluster = await clusterStarting.catch(() => undefined)
    if (!joiner && joinerStarting) joiner = await joinerStarting.catch(() => undefined)
    for (const c of [joiner, cluster]) {
      try { await c?.stop() } catch (e) { note(`bench:join: stopping replicas: ${(e as Error).message}`) }
    }
    if (dataDir && !keepData) await rm(dataDir, { recursive: true, force: true }).catch(() => undefined)
  })()
  return cleaning
}

process.on('SIGINT', () => {
  if (aborted) process.exit(130)
  aborted = true
  note('\nbench:join: interrupted, stopping the replicas...')
  void cleanup().finally(() => process.exit(130))
})
process.on('SIGTERM', () => { aborted = true; void cleanup().finally(() => process.exit(143)) })
// Last resort (a crash): never leave replica processes behind.
process.on('exit', () => {
  for (const r of [...(cluster?.replicas ?? []), ...(joiner?.replicas ?? [])]) {
    if (r.proc && r.proc.exitCode === null && r.proc.signalCode === null) r.proc.kill('SIGKILL')
  }
})

const progress: Progress = (phase, total, done, errors) => {
  const t0 = performance.now()
  const timer = setInterval(() => {
    const s = (performance.now() - t0) / 1000
    note(`${phase}: ${fmt(done())}/${fmt(total)}, ${fmt(done() / s)}/s, ${errors()} errors/drops, ${s.toFixed(0)} s`)
  }, PROGRESS_INTERVAL_MS)
  return () => clearInterval(timer)
}

/** One sample of the join phase: seconds since the joiner was started. */
interface Sample {
  t: number
  /** The three original replicas together, since just before the join (undefined fields: a replica did not answer). */
  senders: Counters
  joiner: Counters | undefined
  ringVersion: number | undefined
  plan: { transfers: number; done: number } | null | undefined
  joinerStatus: string | undefined
  joinerPartitions: number | undefined
  answered: number
}

/**
 * Percentiles over every put scheduled, with the dropped, failed and unfinished ones counted as
 * slower than any that succeeded: the histograms hold only successes, so when the load saturates
 * (puts dropped at --max-outstanding) their p99 flatters. null: that percentile falls among the
 * puts that never succeeded.
 */
type CountingDrops = { p50Us: number | null; p99Us: number | null; p999Us: number | null; notSucceeded: number }

function countingDrops(r: OpenLoopResult): CountingDrops {
  const h = r.stats.get('put')?.hist
  const ok = h?.totalCount ?? 0
  const at = (q: number): number | null => {
    const rank = q * r.scheduled
    if (h === undefined || ok === 0 || rank > ok) return null
    return h.getValueAtPercentile(Math.min(100, (100 * rank) / ok))
  }
  return { p50Us: at(0.5), p99Us: at(0.99), p999Us: at(0.999), notSucceeded: r.scheduled - ok }
}

/** The first message of each kind of failed put (the phases count failures by kind only). */
const firstErrors = new Map<string, string>()
function noteError(e: unknown): never {
  const kind = errorKind(e)
  if (!firstErrors.has(kind) && firstErrors.size < ERROR_KINDS_SHOWN_MAX) firstErrors.set(kind, e instanceof Error ? e.message : String(e))
  throw e
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<unknown> {
  const startedAt = new Date().toISOString()
  const load1mAtStart = loadavg()[0]!
  dataDir = await mkdtemp(join(tmpdir(), 'ringkv-join-bench-'))
  const extraArgs = cfg.handoffBytesPerSec === undefined ? [] : ['--handoff-bytes-per-sec', String(cfg.handoffBytesPerSec)]
  note(`starting 3 replicas on 127.0.0.1:${cfg.basePort}-${cfg.basePort + 2} (${cfg.partitions} partitions, data in ${dataDir})...`)
  clusterStarting = startCluster({
    dataDir: join(dataDir, 'cluster'), basePort: cfg.basePort, httpPort: 0, replicas: 3, n: 3, partitions: cfg.partitions,
    readyTimeoutMs: CLUSTER_READY_TIMEOUT_MS, extraArgs,
  })
  cluster = await clusterStarting
  if (aborted) return undefined
  const client = kv = createClient({ seeds: cluster.seeds, timeoutMs: REQUEST_TIMEOUT_MS })

  // Values: a pool of random bodies; each put copies one and writes its sequence number in front.
  const pool = Array.from({ length: VALUE_POOL_SIZE }, () => new Uint8Array(randomBytes(cfg.valueBytes)))
  const tag = new TextEncoder()
  const valueOf = (seq: number): Uint8Array => {
    const v = new Uint8Array(pool[seq % VALUE_POOL_SIZE]!)
    tag.encodeInto(`${String(seq).padStart(SEQ_DIGITS, '0')}:`, v)
    return v
  }
  const keyOf = (k: number): string => `join-bench:${String(k).padStart(10, '0')}`
  const contexts: Array<string | undefined> = new Array(cfg.keys)
  /** Per key, the largest sequence number of an acknowledged write (-1: none). */
  const lastAcked = new Float64Array(cfg.keys).fill(-1)
  let nextSeq = 0
  const acked = (k: number, seq: number, context: string): void => {
    if (seq >= lastAcked[k]!) { lastAcked[k] = seq; contexts[k] = context }
  }
  const put = (k: number, seq: number): Promise<unknown> => {
    const ctx = contexts[k]
    return client.put(keyOf(k), valueOf(seq), ctx === undefined ? { w: W } : { w: W, context: ctx }).then(r => acked(k, seq, r.context), noteError)
  }

  // 1. Load.
  note(`loading ${fmt(cfg.keys)} keys of ${cfg.valueBytes} B (${CLOSED_LOOP_CONCURRENCY} in flight)...`)
  const loadBase = nextSeq
  nextSeq += cfg.keys
  const load = await runClosedLoop({
    phase: 'load', total: cfg.keys, concurrency: CLOSED_LOOP_CONCURRENCY, maxSeconds: CLOSED_LOOP_SECONDS_MAX, isAborted: () => aborted, progress,
  }, i => ({ op: 'put', done: put(i, loadBase + i) }))
  if (aborted) return undefined
  const loadSummary = summarize(load.stats.get('put'), load.seconds)

  // The open-loop put load of both phases: keys in order, continuing where the last phase stopped.
  const total = cfg.rate * cfg.seconds
  let keyCursor = 0
  const openPhase = async (phase: string): Promise<OpenLoopSummary & { countingDrops: CountingDrops }> => {
    const seqBase = nextSeq
    const keyBase = keyCursor
    nextSeq += total
    keyCursor = (keyCursor + total) % cfg.keys
    const r = await runOpenLoop({
      phase, total, rate: cfg.rate, maxOutstanding: cfg.maxOutstanding, maxSeconds: cfg.seconds + PHASE_OVERRUN_SECONDS,
      isAborted: () => aborted, progress,
    }, i => ({ op: 'put', done: put((keyBase + i) % cfg.keys, seqBase + i) }))
    return { ...summarizeOpenLoop(r, total), countingDrops: countingDrops(r) }
  }

  const seeds = cluster.replicas
  // A series renamed in replica/node/metrics.ts would read as 0 bytes moved: refuse to measure.
  for (const r of seeds) {
    const res = await fetch(`${r.httpUrl}/metrics`)
    const missing = missingSeries(await res.text())
    if (missing.length > 0) throw new Error(`${r.id}'s /metrics lacks ${missing.join(', ')}: bench/join-metrics.ts reads names the replica no longer serves`)
  }
  const before = await Promise.all(seeds.map(r => counters(r.httpUrl)))

  // 2. Steady: the load without a join.
  note(`steady: ${fmt(cfg.rate)} puts/s for ${cfg.seconds} s, open loop...`)
  const steady = await openPhase('steady')
  if (aborted) return undefined
  const afterSteady = await Promise.all(seeds.map(r => counters(r.httpUrl)))
  const steadyHandoff = minus(sum(afterSteady), sum(before))

  // 3. Join: the same load while a fourth replica joins; sample every second.
  const joinerPort = cfg.basePort + 3
  const joinBase = sum(afterSteady)
  const samples: Sample[] = []
  let joinDoneAt: number | undefined
  let joinerReadyAt: number | undefined
  let sampling = false
  const joinT0 = performance.now()
  const elapsed = (): number => (performance.now() - joinT0) / 1000
  const joinerHttp = `http://127.0.0.1:${joinerPort}`
  const takeSample = async (): Promise<void> => {
    if (sampling) return // the last one is still waiting for an answer: skip this tick
    sampling = true
    try {
      const t = elapsed()
      const [cs, j, view] = await Promise.all([
        Promise.all(seeds.map(r => counters(r.httpUrl))), counters(joinerHttp), membersView(seeds[0]!.httpUrl),
      ])
      const me = view?.members.find(m => m.node === `n${joinerPort}`)
      const s: Sample = {
        t, senders: minus(sum(cs), joinBase), joiner: j, ringVersion: view?.ring.version,
        plan: view === undefined ? undefined : view.ring.plan === null ? null : { transfers: view.ring.plan.transfers, done: view.ring.plan.done },
        joinerStatus: me?.status, joinerPartitions: me?.partitions, answered: cs.filter(c => c !== undefined).length,
      }
      samples.push(s)
      if (joinDoneAt === undefined && s.plan === null && (s.joinerPartitions ?? 0) > 0) joinDoneAt = t
      if (samples.length % (PROGRESS_INTERVAL_MS / SAMPLE_INTERVAL_MS) === 0) {
        note(`join: ${t.toFixed(0)} s, joiner ${s.joinerStatus ?? '?'} owning ${s.joinerPartitions ?? '?'} partitions, plan ${s.plan === undefined ? '?' : s.plan === null ? 'none' : `${s.plan.done}/${s.plan.transfers} transfers done`}, ${mb(s.senders.bytesSent)} MB / ${fmt(s.senders.keysSent)} keys handed off`)
      }
    } finally {
      sampling = false
    }
  }
  sampler = setInterval(() => { void takeSample() }, SAMPLE_INTERVAL_MS)
  note(`join: ${fmt(cfg.rate)} puts/s for ${cfg.seconds} s while n${joinerPort} joins (--join ${cluster.seeds[0]})...`)
  joinerStarting = startCluster({
    dataDir: join(dataDir, 'joiner'), basePort: joinerPort, httpPort: 0, replicas: 1, n: 3, partitions: cfg.partitions,
    join: cluster.seeds[0]!, waitMember: false, readyTimeoutMs: CLUSTER_READY_TIMEOUT_MS, extraArgs,
  })
  // Ready = serving /health (as a joiner, before it owns anything); a failure to start ends the bench.
  const joinerUp = joinerStarting.then(c => { joiner = c; joinerReadyAt = elapsed() })
  const [joinPhase] = await Promise.all([openPhase('join'), joinerUp])
  if (aborted) return undefined
  const loadEndedAt = elapsed()
  // Not done when the load ended: keep sampling, at most --join-wait-seconds from the joiner's start.
  while (joinDoneAt === undefined && elapsed() < cfg.joinWaitSeconds && !aborted) {
    await new Promise(r => setTimeout(r, SAMPLE_INTERVAL_MS))
  }
  clearInterval(sampler)
  sampler = undefined
  while (sampling) await new Promise(r => setTimeout(r, SAMPLE_INTERVAL_MS / 10))
  await takeSample()
  if (aborted) return undefined

  // Handoff figures: bytes and keys the original replicas sent since the join began; the transfer
  // time runs from the first sample that saw bytes moving to the first that saw the last of them.
  const last = samples[samples.length - 1]!
  const moved = last.senders
  const firstMoving = samples.find(s => s.senders.bytesSent > 0)
  const lastMoving = samples.find(s => s.senders.bytesSent >= moved.bytesSent)
  const transferSeconds = firstMoving && lastMoving ? lastMoving.t - firstMoving.t : undefined
  const handoff = {
    joiner: `n${joinerPort}`,
    joinerServingAtSeconds: joinerReadyAt ?? null,
    ownsPartitionsAtSeconds: joinDoneAt ?? null,
    finishedDuringLoad: joinDoneAt !== undefined && joinDoneAt <= loadEndedAt,
    loadEndedAtSeconds: loadEndedAt,
    joinWaitSeconds: cfg.joinWaitSeconds,
    joinerPartitions: last.joinerPartitions ?? null,
    joinerStatus: last.joinerStatus ?? null,
    ringVersion: last.ringVersion ?? null,
    planTransfersSeen: Math.max(0, ...samples.map(s => s.plan?.transfers ?? 0)),
    transfersStarted: moved.transfersStarted,
    transfersDone: moved.transfersDone,
    transfersFailed: moved.transfersFailed,
    bytesSent: moved.bytesSent,
    keysSent: moved.keysSent,
    bytesReceivedByJoiner: last.joiner?.bytesReceived ?? null,
    keysReceivedByJoiner: last.joiner?.keysReceived ?? null,
    firstBytesAtSeconds: firstMoving?.t ?? null,
    lastBytesAtSeconds: lastMoving?.t ?? null,
    transferSeconds: transferSeconds ?? null,
    megabytesPerSec: transferSeconds && transferSeconds > 0 ? moved.bytesSent / 1e6 / transferSeconds : null,
    steadyPhaseHandoffBytes: steadyHandoff.bytesSent,
    samples: samples.length,
    /** Per sample: [seconds since the joiner started, MB sent, keys sent, plan transfers done, plan transfers] (-1: no plan or no answer). */
    timeline: samples.map(s => [Number(s.t.toFixed(1)), Number(mb(s.senders.bytesSent)), s.senders.keysSent, s.plan?.done ?? -1, s.plan?.transfers ?? -1]),
  }

  // 4. Read every key back: its last acknowledged write, or a later one of the same key, must be there.
  note(`verifying ${fmt(cfg.keys)} keys (R=${R}, ${CLOSED_LOOP_CONCURRENCY} in flight)...`)
  await client.ring().catch(() => undefined)
  let lost = 0
  let notFound = 0
  let withSiblings = 0
  const lostKeys: string[] = []
  const decoder = new TextDecoder()
  const verify = await runClosedLoop({
    phase: 'verify', total: cfg.keys, concurrency: CLOSED_LOOP_CONCURRENCY, maxSeconds: CLOSED_LOOP_SECONDS_MAX, isAborted: () => aborted, progress,
  }, k => ({
    op: 'get',
    done: client.get(keyOf(k), { r: R }).then(got => {
      if (got.values.length > 1) withSiblings++
      if (!got.found) notFound++
      let newest = -1
      for (const v of got.values) newest = Math.max(newest, Number(decoder.decode(v.subarray(0, SEQ_DIGITS))))
      if (lastAcked[k]! >= 0 && newest < lastAcked[k]!) {
        lost++
        if (lostKeys.length < 10) lostKeys.push(keyOf(k))
      }
    }),
  }))
  if (aborted) return undefined
  const verifyErrors = Object.values(summarize(verify.stats.get('get'), verify.seconds)?.errors ?? {}).reduce((a, b) => a + b, 0)
  const keysWithAckedWrite = lastAcked.reduce((n, s) => n + (s >= 0 ? 1 : 0), 0)
  const steadyPut = steady.perOp['put'] ?? null
  const joinPut = joinPhase.perOp['put'] ?? null

  return {
    command: commandLine,
    startedAt,
    host: { cpus: cpus().length, node: process.version, loadavg1mAtStart: Number(load1mAtStart.toFixed(2)), loadavg1mAtEnd: Number(loadavg()[0]!.toFixed(2)) },
    config: { ...cfg, replicas: 3, n: 3, w: W, r: R, joinerPort },
    load: { seconds: load.seconds, puts: loadSummary },
    steady, join: joinPhase, handoff,
    verify: {
      keys: cfg.keys, keysWithAckedWrite, ackedWrites: (loadSummary?.count ?? 0) + (steadyPut?.count ?? 0) + (joinPut?.count ?? 0),
      lost, lostKeys, notFound, readsWithSiblings: withSiblings, readErrors: verifyErrors, seconds: verify.seconds,
    },
    firstErrors: Object.fromEntries(firstErrors),
    p99Ratio: steadyPut && joinPut && steadyPut.p99Us > 0 ? joinPut.p99Us / steadyPut.p99Us : null,
    /** The same ratio counting dropped and failed puts as slowest (null: a p99 fell among them). */
    p99RatioCountingDrops: steady.countingDrops.p99Us !== null && joinPhase.countingDrops.p99Us !== null && steady.countingDrops.p99Us > 0
      ? joinPhase.countingDrops.p99Us / steady.countingDrops.p99Us : null,
  }
}

function print(report: Record<string, unknown>): void {
  const r = report as unknown as {
    command: string; startedAt: string; host: { cpus: number; node: string; loadavg1mAtStart: number; loadavg1mAtEnd: number }
    load: { seconds: number; puts: OpSummary | null }; steady: OpenLoopSummary & { countingDrops: CountingDrops }; join: OpenLoopSummary & { countingDrops: CountingDrops }
    handoff: Record<string, number | string | boolean | null>; verify: Record<string, number | string[]>; p99Ratio: number | null
  }
  out(`ringkv join benchmark: 3 replicas (N=3, W=${W}), ${fmt(cfg.keys)} keys of ${cfg.valueBytes} B, ${cfg.partitions} partitions; a 4th joins during the second phase`)
  out(`host: ${r.host.cpus} CPUs, node ${r.host.node}, load average ${r.host.loadavg1mAtStart} at start, ${r.host.loadavg1mAtEnd} at end; ${r.startedAt}`)
  out(`load: ${fmt(r.load.puts?.count ?? 0)} puts in ${r.load.seconds.toFixed(1)} s (${fmt(r.load.puts?.opsPerSec ?? 0)}/s, ${CLOSED_LOOP_CONCURRENCY} in flight)`)
  out()
  const header = ['phase', 'offered/s', 'achieved/s', 'ok puts', 'dropped', 'errors', 'p50', 'p99', 'p99.9', 'max']
  const rows: string[][] = [header]
  for (const [name, p] of [['steady', r.steady], ['join', r.join]] as const) {
    const s = p.perOp['put'] ?? null
    const errs = Object.entries(p.errors).map(([k, n]) => `${k}=${n}`).join(' ') || '0'
    rows.push([name, fmt(p.offeredPerSec), fmt(p.achievedPerSec), fmt(s?.count ?? 0), fmt(p.dropped), errs,
      s ? ms(s.p50Us) : '-', s ? ms(s.p99Us) : '-', s ? ms(s.p999Us) : '-', s ? ms(s.maxUs) : '-'])
  }
  const widths = header.map((_, c) => Math.max(...rows.map(x => (x[c] ?? '').length)))
  for (const [ri, x] of rows.entries()) {
    out(x.map((cell, c) => c === 0 || c === 5 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!)).join('  ').trimEnd())
    if (ri === 0) out(widths.map(w => '-'.repeat(w)).join('  '))
  }
  const orDropped = (v: number | null): string => v === null ? 'among the dropped/failed' : ms(v)
  for (const [name, p] of [['steady', r.steady], ['join', r.join]] as const) {
    const d = p.countingDrops
    out(`${name}: counting the ${fmt(d.notSucceeded)} dropped, failed or unfinished puts as slowest: p50 ${orDropped(d.p50Us)}, p99 ${orDropped(d.p99Us)}, p99.9 ${orDropped(d.p999Us)}`)
  }
  for (const [name, p] of [['steady', r.steady], ['join', r.join]] as const) {
    out(`${name}: ${p.seconds.toFixed(1)} s, ${fmt(p.scheduled)}/${fmt(p.total)} scheduled, peak ${p.peakOutstanding} outstanding (bound ${p.maxOutstanding}), ${p.unfinished} unfinished, client lag p99 ${ms(p.startLagP99Us)}`)
  }
  const h = r.handoff
  const sec = (v: unknown): string => typeof v === 'number' ? `${v.toFixed(1)} s` : 'n/a'
  out()
  out(`join of ${h.joiner}: serving after ${sec(h.joinerServingAtSeconds)}; owns ${h.joinerPartitions ?? '?'} partitions (plan switched, ring v${h.ringVersion ?? '?'}) after ${sec(h.ownsPartitionsAtSeconds)}` +
    (h.ownsPartitionsAtSeconds === null ? ` (NOT done within --join-wait-seconds ${h.joinWaitSeconds}; status ${h.joinerStatus})` : h.finishedDuringLoad ? ', within the load phase' : `, ${sec((h.ownsPartitionsAtSeconds as number) - (h.loadEndedAtSeconds as number))} after the load phase ended`))
  out(`handoff: ${mb(h.bytesSent as number)} MB, ${fmt(h.keysSent as number)} keys sent (joiner received ${h.bytesReceivedByJoiner === null ? '?' : mb(h.bytesReceivedByJoiner as number)} MB, ${h.keysReceivedByJoiner === null ? '?' : fmt(h.keysReceivedByJoiner as number)} keys); ` +
    `${h.transfersDone}/${h.transfersStarted} transfers done, ${h.transfersFailed} failed (plan of ${h.planTransfersSeen})`)
  out(`handoff rate: ${h.megabytesPerSec === null ? 'n/a' : `${(h.megabytesPerSec as number).toFixed(2)} MB/s`} (bytes sent / ${sec(h.transferSeconds)} from the first to the last sample that saw bytes move, 1 s samples)`)
  const v = r.verify
  out()
  out(`read back (R=${R}): ${fmt(v.keys as number)} keys, ${fmt(v.ackedWrites as number)} acknowledged writes (load + both phases); lost ${v.lost}` +
    `${(v.lostKeys as string[]).length > 0 ? ` (e.g. ${(v.lostKeys as string[]).join(', ')})` : ''}; ${v.notFound} not found, ${v.readsWithSiblings} with siblings, ${v.readErrors} read errors`)
  const rd = (report as { p99RatioCountingDrops: number | null }).p99RatioCountingDrops
  for (const [kind, message] of Object.entries((report as { firstErrors: Record<string, string> }).firstErrors)) out(`first ${kind}: ${message}`)
  out(`put p99 join / steady: ${r.p99Ratio === null ? 'n/a' : `${r.p99Ratio.toFixed(2)}x`} (successful puts); ${rd === null ? 'n/a: a p99 falls among dropped or failed puts' : `${rd.toFixed(2)}x`} counting the dropped and failed as slowest`)
  out()
  out('latencies: per put as the SDK sees it, from its scheduled start (open loop), so waiting behind a stall counts; failed puts are under errors.')
  out(`command: ${r.command}`)
}

let failed = false
let report: unknown
try {
  report = await main()
} catch (e) {
  failed = true
  console.error(`bench:join failed: ${e instanceof Error ? e.stack ?? e.message : String(e)}`)
  if (dataDir) console.error(`replica logs kept in ${dataDir}`)
} finally {
  await cleanup(failed)
}
if (report !== undefined) {
  if (cfg.json) console.log(JSON.stringify(report, null, 2))
  else print(report as Record<string, unknown>)
}
process.exit(failed ? 1 : aborted ? 130 : 0)

// `npm run chaos -- --seconds S --seed N [--json]`: the nemesis (docs/simulation.md, "Nemesis").
// A real cluster of 3 replica processes, each in its own network namespace on a bridge
// (netns.ts), with the embedded S3 server on the bridge's root address; concurrent SDK clients
// run the workload of fault-workload.ts while a seeded schedule injects faults: SIGKILL and
// restart, SIGSTOP/SIGCONT, partitions (clients from one replica, a pair of replicas, one-way, the
// clients with a minority), S3 unreachable, and a full disk (one replica's data dir is a small
// tmpfs). Then every fault ends; hints and anti-entropy alone (no client read) must make every
// replica hold the same state of every key within chaosAaeConvergeMsMax; then the checker of
// fault-checker.ts runs: a read at R=N, then each replica is read directly and compared. Exit
// status 0 only when nothing was lost and the replicas agreed.
// Without root, ip or nft the run says so and injects kill, pause and disk faults only.

import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import type { Writable } from 'node:stream'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs, promisify } from 'node:util'
import WebSocket from 'ws'
import { createClient, type KvClient } from '../../client/index.ts'
import { systemRuntime, type WebSocketCtor } from '../../coordinator/runtime.ts'
import { Connection } from '../../coordinator/transport/connection.ts'
import type { DvvSet } from '../../coordinator/version/dvv.ts'
import { startEmbeddedS3, type EmbeddedS3 } from '../embedded-s3.ts'
import { buildReplicaBundle, replicaLogSink, waitHealthy } from '../cluster.ts'
import { checkHistory, passed, type CheckReport } from '../fault-checker.ts'
import { chaosMemtableBytes, faultLimits } from '../fault-limits.ts'
import { History, registerKeys, runClient, setKeys, type KvPort } from '../fault-workload.ts'
import { mulberry32 } from '../sim/sim-clock.ts'
import * as netns from './netns.ts'

const sh = promisify(execFile)

/** The sum of a Prometheus text's samples of `name` (every label set). */
function metricSum(text: string, name: string): number {
  let sum = 0
  for (const line of text.split('\n')) {
    if (line.startsWith(name) && (line[name.length] === ' ' || line[name.length] === '{')) sum += Number(line.slice(line.lastIndexOf(' ') + 1)) || 0
  }
  return sum
}
const replicaCount = 3

let parsed
try {
  parsed = parseArgs({
  options: {
    seconds: { type: 'string', default: '30' }, seed: { type: 'string' }, json: { type: 'boolean', default: false },
    'base-port': { type: 'string', default: '18701' }, subnet: { type: 'string', default: '10.77.0' },
    'no-netns': { type: 'boolean', default: false },
  },
})
} catch (e) {
  process.stderr.write(`chaos: ${(e as Error).message}\n`)
  process.exit(2)
}
const { values } = parsed
function fail(msg: string): never { process.stderr.write(`chaos: ${msg}\n`); process.exit(2) }
const seconds = Number(values.seconds)
if (!Number.isInteger(seconds) || seconds < 1 || seconds > faultLimits.chaosSecondsMax) fail(`--seconds must be an integer from 1 to ${faultLimits.chaosSecondsMax}`)
const seed = values.seed === undefined ? Math.floor(Math.random() * 2 ** 31) : Number(values.seed)
if (!Number.isSafeInteger(seed) || seed < 0 || seed >= 2 ** 31) fail('--seed must be an integer from 0 to 2^31-1')
const basePort = Number(values['base-port'])
if (!Number.isInteger(basePort) || basePort < 1024 || basePort > 65000) fail('--base-port must be a port number')
if (!/^10\.\d{1,3}\.\d{1,3}$/.test(values.subnet!)) fail('--subnet must be the first three octets of a private 10.x.y.0/24')
const say = (line: string) => { if (!values.json) console.log(line) }
const random = mulberry32(seed)
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)]!
const between = (a: number, b: number) => a + Math.floor(random() * (b - a + 1))

const layout: netns.NetnsLayout = { subnet: values.subnet!, replicas: replicaCount }
const why = values['no-netns'] ? 'disabled by --no-netns' : await netns.unavailable()
const useNetns = why === undefined
say(`chaos: seed ${seed} (replay: npm run chaos -- --seconds ${seconds} --seed ${seed}), ${seconds} s, ` +
  (useNetns ? `replicas in network namespaces on ${layout.subnet}.0/24` : `NO network namespaces (${why}): kill, pause and disk faults only`))

// ---- Processes ----

class Replica {
  proc: ChildProcess | undefined
  private log: Writable
  constructor(readonly index: number, readonly id: string, readonly host: string, readonly port: number, readonly dataDir: string, private readonly args: string[], private readonly env: Record<string, string>, logFile: string) {
    this.log = replicaLogSink(logFile, id)
  }
  get url(): string { return `ws://${this.host}:${this.port}` }
  async start(bundle: string): Promise<void> {
    const cmd = useNetns ? 'ip' : process.execPath
    const args = [...(useNetns ? ['netns', 'exec', netns.nsName(this.index), process.execPath] : []), '--enable-source-maps', bundle, ...this.args]
    const proc = spawn(cmd, args, { env: { ...process.env, ...this.env }, stdio: ['ignore', 'pipe', 'pipe'] })
    this.proc = proc
    proc.stdout!.pipe(this.log, { end: false })
    proc.stderr!.pipe(this.log, { end: false })
    const exited = new Promise<never>((_, f) => proc.once('exit', code => f(new Error(`replica ${this.id} exited with ${code} during start`))))
    exited.catch(() => undefined)
    await Promise.race([waitHealthy(`http://${this.host}:${this.port}`, faultLimits.chaosStartTimeoutMs), exited])
  }
  alive(): boolean { return this.proc !== undefined && this.proc.exitCode === null && this.proc.signalCode === null }
  async kill(signal: NodeJS.Signals): Promise<void> {
    const proc = this.proc
    if (!proc || !this.alive()) return
    if (signal === 'SIGSTOP' || signal === 'SIGCONT') { proc.kill(signal); return }
    const done = new Promise<void>(ok => proc.once('exit', () => ok()))
    proc.kill('SIGCONT')
    proc.kill(signal)
    await done
  }
}

const dir = mkdtempSync(join(tmpdir(), 'ringkv-chaos-'))
const tmpfsDir = join(dir, 'tmpfs')
let tmpfsMounted = false
let s3: EmbeddedS3 | undefined
let replicas: Replica[] = []
const clients: KvClient[] = []

async function cleanup(): Promise<void> {
  for (const c of clients) await c.close().catch(() => undefined)
  await Promise.all(replicas.map(r => r.kill('SIGKILL').catch(() => undefined)))
  await s3?.close().catch(() => undefined)
  if (tmpfsMounted) await sh('umount', ['-l', tmpfsDir], { timeout: faultLimits.chaosCommandTimeoutMs }).catch(() => undefined)
  if (useNetns) await netns.teardown(layout).catch(() => undefined)
  rmSync(dir, { recursive: true, force: true })
}
let interrupted = false
for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => { interrupted = true; void cleanup().finally(() => process.exit(130)) })

type Fault = 'kill' | 'pause' | 'partition' | 'one-way' | 'majority-minority' | 'clients-minority' | 's3-unreachable' | 'disk-full'
const faultKinds: Fault[] = useNetns
  ? ['kill', 'pause', 'partition', 'one-way', 'majority-minority', 'clients-minority', 's3-unreachable', 'disk-full']
  : ['kill', 'pause', 'disk-full']

interface Phase { name: string; ms: number }
const phases: Phase[] = []
const schedule: Array<{ atMs: number; fault: string; lastsMs: number }> = []
const injected = Object.fromEntries(faultKinds.map(k => [k, 0])) as Record<Fault, number>
let report: CheckReport | undefined
let converged = false
let status = 1

try {
  let t = Date.now()
  const mark = (name: string) => { const now = Date.now(); phases.push({ name, ms: now - t }); t = now }
  if (useNetns) await netns.setup(layout)
  // One replica's data directory on a small tmpfs, for the disk-full fault.
  const diskFullIndex = between(1, replicaCount)
  if (process.getuid?.() === 0) {
    await sh('mkdir', ['-p', tmpfsDir])
    await sh('mount', ['-t', 'tmpfs', '-o', `size=${faultLimits.chaosTmpfsMiB}m`, 'tmpfs', tmpfsDir], { timeout: faultLimits.chaosCommandTimeoutMs })
    tmpfsMounted = true
  } else {
    faultKinds.splice(faultKinds.indexOf('disk-full'), 1)
  }
  const rootHost = useNetns ? netns.rootAddress(layout) : '127.0.0.1'
  s3 = await startEmbeddedS3({ directory: join(dir, 's3'), port: basePort + replicaCount + 10, host: rootHost, bucket: 'ringkv' })
  const s3Env = {
    AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true', S3_ENDPOINT: s3.config.endpoint, S3_BUCKET: s3.config.bucket,
    S3_REGION: s3.config.region, S3_ACCESS_KEY_ID: s3.config.accessKeyId, S3_SECRET_ACCESS_KEY: s3.config.secretAccessKey,
  }
  const nodes = Array.from({ length: replicaCount }, (_, k) => {
    const i = k + 1
    return { i, id: `n${i}`, host: useNetns ? netns.replicaAddress(layout, i) : '127.0.0.1', port: basePort + k }
  })
  const nodesArg = nodes.map(n => `${n.id}=ws://${n.host}:${n.port}`).join(',')
  replicas = nodes.map(n => {
    const dataDir = tmpfsMounted && n.i === diskFullIndex ? join(tmpfsDir, n.id) : join(dir, n.id)
    return new Replica(n.i, n.id, n.host, n.port, dataDir, ['--id', n.id, '--host', n.host, '--port', String(n.port), '--data-dir', dataDir,
      '--nodes', nodesArg, '--partitions', '64', '--n', '3', '--memtable-bytes-max', String(chaosMemtableBytes)], s3Env, join(dir, `${n.id}.log`))
  })
  const bundle = await buildReplicaBundle()
  await Promise.all(replicas.map(r => r.start(bundle)))
  mark('start')
  say(`cluster up: ${replicas.map(r => r.url).join(' ')}; S3 at ${s3.config.endpoint}; ${replicas[diskFullIndex - 1]!.id}'s data on a ${faultLimits.chaosTmpfsMiB} MiB tmpfs`)

  // ---- Workload and nemesis, side by side ----
  const history = new History()
  const started = Date.now()
  const until = started + seconds * 1000
  const enc = new TextEncoder()
  const workers = Array.from({ length: faultLimits.chaosClients }, (_, k) => {
    const kv = createClient({ seeds: replicas.map(r => r.url), timeoutMs: faultLimits.workloadTimeoutMs })
    clients.push(kv)
    const port: KvPort = {
      get: (key, o) => kv.get(key, o ?? {}),
      // The read's context as it is, '' included: the write covers exactly what that read saw.
      write: (key, value, context) => value === null ? kv.delete(key, { context }) : kv.put(key, value, { context }),
    }
    return runClient({ kv: port, client: k + 1, history, random: mulberry32(seed + k + 1), now: () => Date.now(), sleep: ms => new Promise(r => setTimeout(r, ms)), until, thinkMsMax: faultLimits.simThinkMsMax })
  })
  const sleep = (ms: number) => new Promise<void>(r => setTimeout(r, ms))
  const both = (a: number, b: number): netns.Link[] => [{ from: a, to: b }, { from: b, to: a }]
  const diskFull = replicas[diskFullIndex - 1]!
  // The last stretch belongs to one final fault that outlives the workload (see below).
  const finalFaultAt = until - Math.min(faultLimits.chaosFinalFaultMs, (seconds * 1000) / 2)
  const nemesis = (async () => {
    while (!interrupted && Date.now() + faultLimits.chaosFaultMsMax < finalFaultAt) {
      await sleep(between(faultLimits.chaosGapMsMin, faultLimits.chaosGapMsMax))
      if (Date.now() + faultLimits.chaosFaultMsMax >= finalFaultAt) break
      const kind = pick(faultKinds)
      const lastsMs = between(faultLimits.chaosFaultMsMin, faultLimits.chaosFaultMsMax)
      const r = pick(replicas)
      const other = pick(replicas.filter(x => x !== r))
      let what: string
      let heal: () => Promise<void> = () => netns.healAll(layout)
      switch (kind) {
        case 'kill':
          what = `SIGKILL ${r.id}, restart after ${lastsMs} ms`
          await r.kill('SIGKILL')
          heal = () => r.start(bundle)
          break
        case 'pause':
          what = `SIGSTOP ${r.id} for ${lastsMs} ms`
          await r.kill('SIGSTOP')
          heal = () => r.kill('SIGCONT')
          break
        case 'partition':
          if (random() < 0.5) { what = `cut clients | ${r.id}`; await netns.cut(layout, both(0, r.index)) }
          else { what = `cut ${r.id} | ${other.id}`; await netns.cut(layout, both(r.index, other.index)) }
          break
        case 'one-way':
          if (random() < 0.5) { what = `drop clients > ${r.id}`; await netns.cut(layout, [{ from: 0, to: r.index }]) }
          else { what = `drop ${r.id} > clients`; await netns.cut(layout, [{ from: r.index, to: 0 }]) }
          break
        case 'majority-minority':
          what = `split {${r.id}} | {clients, ${replicas.filter(x => x !== r).map(x => x.id).join(', ')}}`
          await netns.cut(layout, [0, ...replicas.filter(x => x !== r).map(x => x.index)].flatMap(e => both(e, r.index)))
          break
        case 'clients-minority':
          what = `split {clients, ${r.id}} | {${replicas.filter(x => x !== r).map(x => x.id).join(', ')}}`
          await netns.cut(layout, replicas.filter(x => x !== r).flatMap(x => [...both(0, x.index), ...both(r.index, x.index)]))
          break
        case 's3-unreachable':
          what = 'S3 unreachable from every replica'
          await netns.cut(layout, replicas.map(x => ({ from: x.index, to: 0, port: s3!.port })))
          break
        case 'disk-full':
          what = `fill the disk of ${diskFull.id} for ${lastsMs} ms, then free it and restart it`
          await sh('sh', ['-c', `dd if=/dev/zero of=${tmpfsDir}/filler bs=64k status=none 2>/dev/null || true`], { timeout: faultLimits.chaosCommandTimeoutMs })
          heal = async () => { rmSync(join(tmpfsDir, 'filler'), { force: true }); await diskFull.kill('SIGKILL'); await diskFull.start(bundle) }
          break
      }
      injected[kind]++
      schedule.push({ atMs: Date.now() - started, fault: what, lastsMs })
      say(`  ${((Date.now() - started) / 1000).toFixed(1)} s: ${what}${kind === 'kill' || kind === 'pause' || kind === 'disk-full' ? '' : ` for ${lastsMs} ms`}`)
      await sleep(lastsMs)
      await heal()
    }
    // The final fault: one replica cut off from clients and replicas (or killed) until the workload
    // ends, healed with everything else afterwards. The writes it misses meanwhile are read by no
    // one after healing, so only hints and anti-entropy can bring them to it: this is what the
    // no-reads convergence check below measures.
    if (interrupted) return
    await sleep(Math.max(0, finalFaultAt - Date.now()))
    const r = pick(replicas)
    const isolate = useNetns && random() < 0.5
    const lastsMs = Math.max(0, until - Date.now())
    const what = isolate
      ? `split {${r.id}} | {clients, ${replicas.filter(x => x !== r).map(x => x.id).join(', ')}} until the workload ends`
      : `SIGKILL ${r.id} until the workload ends`
    if (isolate) await netns.cut(layout, [0, ...replicas.filter(x => x !== r).map(x => x.index)].flatMap(e => both(e, r.index)))
    else await r.kill('SIGKILL')
    injected[isolate ? 'majority-minority' : 'kill']++
    schedule.push({ atMs: Date.now() - started, fault: what, lastsMs })
    say(`  ${((Date.now() - started) / 1000).toFixed(1)} s: ${what} (final fault, healed after the workload)`)
  })()
  await Promise.all([...workers, nemesis])
  mark('workload under faults')

  /** Keys repaired by anti-entropy and hints replayed, summed over the replicas' /metrics (a replica that does not answer counts 0: so the rise across healing counts from 0 for one cut off or killed). */
  const repairCounts = async (): Promise<{ aae: number; hints: number }> => {
    let aae = 0, hints = 0
    for (const r of replicas) {
      const text = await fetch(`http://${r.host}:${r.port}/metrics`, { signal: AbortSignal.timeout(faultLimits.workloadTimeoutMs) }).then(x => x.text()).catch(() => '')
      aae += metricSum(text, 'ringkv_aae_keys_repaired_total')
      hints += metricSum(text, 'ringkv_hints_replayed_total')
    }
    return { aae, hints }
  }
  const repairedBefore = await repairCounts()

  // ---- Every fault ends ----
  if (useNetns) await netns.healAll(layout)
  rmSync(join(tmpfsDir, 'filler'), { force: true })
  for (const r of replicas) {
    if (r.alive()) await r.kill('SIGCONT')
    else await r.start(bundle)
  }
  mark('heal')

  // ---- Check: R=N read passes until the replicas agree, then each replica read directly ----
  const checker = createClient({ seeds: replicas.map(r => r.url), timeoutMs: faultLimits.workloadTimeoutMs })
  clients.push(checker)
  const keys = [...setKeys, ...registerKeys]
  const finals = new Map<string, string[]>()
  const dec = new TextDecoder()
  const direct = replicas.map(r => new Connection(r.id, r.url, systemRuntime(WebSocket as unknown as WebSocketCtor), { client: 'chaos-checker' }))
  const readReplicas = async () => {
    const out = new Map<string, Map<string, DvvSet | null>>()
    for (const key of keys) {
      const m = new Map<string, DvvSet | null>()
      for (const c of direct) m.set(c.node, (await c.request('get', { key: enc.encode(key) }, faultLimits.workloadTimeoutMs)).state)
      out.set(key, m)
    }
    return out
  }
  let states = new Map<string, Map<string, DvvSet | null>>()
  // First hints and anti-entropy alone: no client read (so no read repair) until every replica
  // holds the same state of every key, within chaosAaeConvergeMsMax.
  const aaeStarted = Date.now()
  let aaeConverged = false
  /** Keys whose replicas differed at the first comparison after healing: the work left to hints and anti-entropy. */
  let divergentAtHeal: number | undefined
  while (!aaeConverged && Date.now() - aaeStarted < faultLimits.chaosAaeConvergeMsMax) {
    try {
      states = await readReplicas()
      const divergent = checkHistory(history, new Map(), states).divergent.length
      divergentAtHeal ??= divergent
      aaeConverged = divergent === 0
    } catch { aaeConverged = false }
    if (!aaeConverged) await sleep(faultLimits.chaosAaePollMs)
  }
  const aaeMs = Date.now() - aaeStarted
  const repairedAfter = await repairCounts()
  const aaeKeysRepaired = repairedAfter.aae - repairedBefore.aae
  const hintsReplayed = repairedAfter.hints - repairedBefore.hints
  mark('converge by hints and anti-entropy, no reads')
  for (let round = 0; round < faultLimits.checkRoundsMax && !converged; round++) {
    let complete = true
    for (const key of keys) {
      try { finals.set(key, (await checker.get(key, { r: replicaCount })).values.map(v => dec.decode(v))) } catch { complete = false }
    }
    await sleep(faultLimits.checkRoundPauseMs)
    try { states = await readReplicas() } catch { complete = false }
    converged = complete && checkHistory(history, finals, states).divergent.length === 0
  }
  for (const c of direct) c.close()
  mark('check (a read at R=N, then per-replica reads)')
  report = checkHistory(history, finals, states)
  status = passed(report) && aaeConverged && converged && finals.size === keys.length ? 0 : 1

  const latencies = history.ops.filter(o => o.outcome === 'ok').map(o => o.endMs - o.startMs).sort((a, b) => a - b)
  const q = (p: number) => latencies.length ? latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))]! : 0
  const summary = {
    seed, seconds, netns: useNetns, fallbackReason: why ?? null, schedule, faults: injected, phases,
    ops: report.ops, acknowledgedChecked: report.acknowledgedChecked, lost: report.lost, resurrected: report.resurrected,
    divergent: report.divergent, converged, latencyMs: { p50: q(0.5), p99: q(0.99), max: latencies[latencies.length - 1] ?? 0 },
    convergence: 'hints and anti-entropy alone (no client read) until the replicas agree, then a read at R=N and per-replica reads',
    antiEntropyConverged: aaeConverged, antiEntropyMs: aaeMs, divergentAtHeal: divergentAtHeal ?? null,
    antiEntropyKeysRepaired: aaeKeysRepaired, hintsReplayed,
    ok: status === 0,
  }
  // A failing run keeps its whole history beside the replicas' logs, for the post-mortem.
  if (status !== 0) writeFileSync(join(dir, 'history.json'), JSON.stringify(history.ops))
  if (values.json) console.log(JSON.stringify(summary, null, 2))
  else {
    say(`faults injected: ${Object.entries(injected).map(([k, v]) => `${k} ${v}`).join(', ')}`)
    say(`phases: ${phases.map(p => `${p.name} ${(p.ms / 1000).toFixed(1)} s`).join('; ')}`)
    say(`operations ${report.ops.total} (ok ${report.ops.ok}, failed ${report.ops.failed}, unknown ${report.ops.unknown}); latency of acknowledged ops p50 ${q(0.5)} ms, p99 ${q(0.99)} ms, max ${summary.latencyMs.max} ms`)
    say(`after healing ${divergentAtHeal ?? '?'} of ${keys.length} keys differed between replicas; they ${aaeConverged ? 'agreed' : 'did NOT agree'} by hints and anti-entropy alone, no client reads, ${(aaeMs / 1000).toFixed(1)} s after healing (bound ${faultLimits.chaosAaeConvergeMsMax / 1000} s); across healing anti-entropy repaired ${aaeKeysRepaired} keys and hints replayed ${hintsReplayed}`)
    say(`checked ${report.acknowledgedChecked} acknowledged writes: lost ${report.lost.length}, resurrected ${report.resurrected.length}; replicas ${converged ? 'identical' : 'NOT identical'} on all ${keys.length} keys (then a read at R=N and per-replica reads)`)
    for (const f of [...report.lost, ...report.resurrected].slice(0, 10)) {
      say(`  ${f.key} ${f.value}: ${f.why}`)
      for (const line of f.trail) say(`    ${line}`)
    }
    for (const d of report.divergent.slice(0, 5)) say(`  divergent ${d.key}: ${d.why}`)
    say(status === 0 ? 'PASS' : `FAIL (replay: npm run chaos -- --seconds ${seconds} --seed ${seed}; logs kept in ${dir})`)
  }
} catch (e) {
  process.stderr.write(`chaos: ${(e as Error).stack ?? e}\n`)
  status = 2
} finally {
  if (status === 0) await cleanup()
  else {
    // Keep the logs of a failing run; everything else goes.
    for (const c of clients) await c.close().catch(() => undefined)
    await Promise.all(replicas.map(r => r.kill('SIGKILL').catch(() => undefined)))
    await s3?.close().catch(() => undefined)
    if (tmpfsMounted) await sh('umount', ['-l', tmpfsDir]).catch(() => undefined)
    if (useNetns) await netns.teardown(layout).catch(() => undefined)
  }
}
process.exit(status)

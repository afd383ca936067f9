// Before and after, interleaved: the same YCSB run (bench/ycsb.ts --seeds) against a 3-replica
// cluster of another checkout (OLD: e.g. a detached worktree of an older commit, with node_modules
// linked) and of this one, round after round (old, new, old, new ...), so that a noisy shared
// machine drifts both sides alike. Each round starts the cluster from its checkout's
// infra/local-cluster.ts on its own ports (no S3), runs that checkout's own bench client against it
// (a user upgrades both; the SDK is half of the put path), and stops it.
//
// Besides ops/s and p99 it reports CPU time per 1,000 operations: the cluster's, read from
// /proc/PID/stat of each of its processes before and after the bench, and the client's, from this
// process's children times (/proc/self/stat) around it (Linux only). On a CPU-bound 2-core machine
// throughput and latency move with whatever else runs, while the CPU spent per operation moves much
// less, so it is the figure that shows whether a change made the put and get path more expensive.
// Reported, never asserted.
//
//   npm run bench:compare -- --old DIR [--rounds 3] [--records 30000] [--ops 60000]
//       [--workload a] [--concurrency 64] [--rate R] [--base-port 18340] [--json]
//
// --rate R adds the bench's open loop at a fixed R operations/s (bench/ycsb.ts, step 5) and reports
// its puts apart: their p99 and the cluster's CPU per put. In the closed loop a CPU-bound machine
// turns any extra CPU into lost throughput, and fewer operations a second mean smaller WAL groups and
// frame batches, so CPU per operation there multiplies a change's cost; at a fixed offered load it
// shows the cost itself (docs/anti-entropy.md measured the write hook at 3 % this way, 9-13 % in the
// closed loop). Both checkouts' benches must read RINGKV_BENCH_CLUSTER_PIDS (2026-12-02 on), or the
// old side's CPU per open-loop put is "-".

import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'

const usage = 'usage: npm run bench:compare -- --old DIR [--rounds 3] [--records 30000] [--ops 60000] [--workload a] [--concurrency 64] [--rate R] [--base-port 18340] [--json]'
const { values } = parseArgs({
  options: {
    old: { type: 'string' }, rounds: { type: 'string', default: '3' }, records: { type: 'string', default: '30000' },
    ops: { type: 'string', default: '60000' }, workload: { type: 'string', default: 'a' }, concurrency: { type: 'string', default: '64' }, rate: { type: 'string' },
    'base-port': { type: 'string', default: '18340' }, json: { type: 'boolean', default: false }, help: { type: 'boolean', default: false },
  },
})
if (values.help) { console.log(usage); process.exit(0) }
if (!values.old) { console.error(`--old DIR is required\n${usage}`); process.exit(2) }
const count = (name: string, v: string): number => {
  const n = Number(v)
  if (!Number.isInteger(n) || n < 1) { console.error(`--${name} must be a positive integer, got ${v}`); process.exit(2) }
  return n
}
const rounds = count('rounds', values.rounds)
const rate = values.rate === undefined ? undefined : count('rate', values.rate)
const basePort = count('base-port', values['base-port'])
const here = resolve(dirname(fileURLToPath(import.meta.url)), '..')
const sides = [{ name: 'old', dir: resolve(values.old) }, { name: 'new', dir: here }] as const
const ticks = 100 // USER_HZ: /proc's CPU times are in 1/100 s on every Linux this runs on
const log = (s: string): void => { if (!values.json) console.log(s) }

/** `pid` and its descendants (children still alive, so read them all before stopping). */
async function treePids(pid: number): Promise<number[]> {
  const children = new Map<number, number[]>()
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue
    const stat = await readFile(`/proc/${name}/stat`, 'utf8').catch(() => '')
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    const ppid = Number(f[1])
    if (!children.has(ppid)) children.set(ppid, [])
    children.get(ppid)!.push(Number(name))
  }
  const out: number[] = []
  const walk = (p: number): void => { out.push(p); for (const c of children.get(p) ?? []) walk(c) }
  walk(pid)
  return out
}

/** User and system CPU seconds of `pid` and its descendants. */
async function treeCpu(pid: number): Promise<{ user: number; sys: number }> {
  let user = 0
  let sys = 0
  for (const p of await treePids(pid)) {
    const stat = await readFile(`/proc/${p}/stat`, 'utf8').catch(() => '')
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    // Fields 14 and 15 of stat (utime, stime); f starts at field 3.
    user += Number(f[11] ?? 0) / ticks
    sys += Number(f[12] ?? 0) / ticks
  }
  return { user, sys }
}

async function startCluster(dir: string, port: number, data: string): Promise<ChildProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'infra/local-cluster.ts', '--base-port', String(port), '--http-port', '0', '--data-dir', data, '--no-s3'],
    { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  child.stdout!.on('data', (b: Buffer) => { output += b.toString() })
  child.stderr!.on('data', (b: Buffer) => { output = (output + b.toString()).slice(-4000) })
  const deadline = Date.now() + 120_000
  while (!/^ready /m.test(output)) {
    if (child.exitCode !== null || Date.now() > deadline) { child.kill('SIGKILL'); throw new Error(`cluster of ${dir} did not start:\n${output.slice(-2000)}`) }
    await new Promise(r => setTimeout(r, 200))
  }
  return child
}

/** CPU seconds of this process's children that have exited and been waited for (cutime + cstime). */
async function childrenCpu(): Promise<number> {
  const stat = await readFile('/proc/self/stat', 'utf8')
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return (Number(f[13]) + Number(f[14])) / ticks
}

function runBench(dir: string, seeds: string, clusterPids: number[]): Promise<any> {
  return new Promise((res, rej) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'bench/ycsb.ts', '--json', '--no-baseline', '--seeds', seeds,
      '--workload', values.workload, '--records', values.records, '--ops', values.ops, '--concurrency', values.concurrency,
      ...(rate === undefined ? [] : ['--rate', String(rate)])],
    { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, RINGKV_BENCH_CLUSTER_PIDS: clusterPids.join(',') } })
    let out = ''
    let err = ''
    child.stdout!.on('data', (b: Buffer) => { out += b.toString() })
    child.stderr!.on('data', (b: Buffer) => { err = (err + b.toString()).slice(-4000) })
    child.on('exit', code => {
      if (code !== 0) return rej(new Error(`bench exited ${code}:\n${err}`))
      try { res(JSON.parse(out.slice(out.indexOf('{')))) } catch (e) { rej(new Error(`bench printed no JSON: ${(e as Error).message}\n${err}`)) }
    })
  })
}

interface Round {
  side: string; round: number; loadOpsPerSec: number; runOpsPerSec: number; putP99Us: number | null; getP99Us: number | null
  ops: number; cpuUserS: number; cpuSysS: number; cpuMsPerKOp: number; clientCpuS: number; totalCpuMsPerKOp: number
  /** With --rate: the open loop's puts (p99 from the SDK, the cluster's CPU per put); null without. */
  openPutP99Us: number | null; openCpuUsPerPut: number | null
}

async function round(side: (typeof sides)[number], r: number, port: number): Promise<Round> {
  const data = await mkdtemp(join(tmpdir(), 'ringkv-compare-'))
  const cluster = await startCluster(side.dir, port, data)
  try {
    const before = await treeCpu(cluster.pid!)
    const clientBefore = await childrenCpu()
    const bench = await runBench(side.dir, [0, 1, 2].map(i => `ws://127.0.0.1:${port + i}`).join(','), await treePids(cluster.pid!))
    const clientCpuS = (await childrenCpu()) - clientBefore
    const after = await treeCpu(cluster.pid!)
    // Every operation the cluster served: the load, the closed run and, with --rate, the open loop's.
    const openOps = (phase: { perOp?: Record<string, { count: number } | null> } | undefined): number =>
      Object.values(phase?.perOp ?? {}).reduce((a, o) => a + (o?.count ?? 0), 0)
    const ops = bench.load.records + bench.run.ops + openOps(bench.openLoop?.puts) + openOps(bench.openLoop?.run)
    const user = after.user - before.user
    const sys = after.sys - before.sys
    return {
      side: side.name, round: r, loadOpsPerSec: bench.load.opsPerSec, runOpsPerSec: bench.run.opsPerSec,
      putP99Us: bench.run.perOp.update?.p99Us ?? null, getP99Us: bench.run.perOp.read?.p99Us ?? null,
      ops, cpuUserS: user, cpuSysS: sys, cpuMsPerKOp: ((user + sys) * 1000) / (ops / 1000),
      clientCpuS, totalCpuMsPerKOp: ((user + sys + clientCpuS) * 1000) / (ops / 1000),
      openPutP99Us: bench.openLoop?.puts?.perOp?.update?.p99Us ?? null,
      openCpuUsPerPut: bench.whereTimeWent?.openPuts?.cpuUsPerOp?.replicas ?? null,
    }
  } finally {
    const gone = new Promise(r => cluster.once('exit', r))
    cluster.kill('SIGINT')
    await Promise.race([gone, new Promise(r => setTimeout(r, 15_000))])
    if (cluster.exitCode === null) cluster.kill('SIGKILL')
    await rm(data, { recursive: true, force: true })
  }
}

const fmt = (n: number | null, digits = 0): string => n === null ? '-' : n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits })
const ms = (us: number | null): string => us === null ? '-' : `${(us / 1000).toFixed(1)} ms`
const results: Round[] = []
log(`interleaved: ${rounds} rounds of old (${sides[0].dir}) and new (${sides[1].dir}); workload ${values.workload}, ${values.records} records, ${values.ops} ops, ${values.concurrency} in flight`)
log('side  round  load ops/s  run ops/s  update p99  read p99  cluster CPU user+sys  client CPU  CPU ms per 1k ops: cluster  with client' +
  (rate === undefined ? '' : `  open puts @${fmt(rate)}/s: p99  cluster CPU per put`))
for (let r = 1; r <= rounds; r++) {
  for (const [i, side] of sides.entries()) {
    const x = await round(side, r, basePort + i * 10)
    results.push(x)
    log(`${x.side.padEnd(5)} ${String(r).padStart(5)}  ${fmt(x.loadOpsPerSec).padStart(10)}  ${fmt(x.runOpsPerSec).padStart(9)}  ${ms(x.putP99Us).padStart(10)}  ${ms(x.getP99Us).padStart(8)}  ${`${fmt(x.cpuUserS, 1)} + ${fmt(x.cpuSysS, 1)} s`.padStart(20)}  ${`${fmt(x.clientCpuS, 1)} s`.padStart(10)}  ${fmt(x.cpuMsPerKOp).padStart(24)}  ${fmt(x.totalCpuMsPerKOp).padStart(11)}` +
      (rate === undefined ? '' : `  ${ms(x.openPutP99Us).padStart(24)}  ${(x.openCpuUsPerPut === null ? '-' : `${fmt(x.openCpuUsPerPut)} µs`).padStart(19)}`))
  }
}
const mean = (side: string, f: (x: Round) => number): number => {
  const xs = results.filter(x => x.side === side).map(f)
  return xs.reduce((a, b) => a + b, 0) / xs.length
}
const summary = {
  rounds: results,
  ratios: {
    clusterCpuPerOp: mean('new', x => x.cpuMsPerKOp) / mean('old', x => x.cpuMsPerKOp),
    totalCpuPerOp: mean('new', x => x.totalCpuMsPerKOp) / mean('old', x => x.totalCpuMsPerKOp),
    runOpsPerSec: mean('new', x => x.runOpsPerSec) / mean('old', x => x.runOpsPerSec),
    loadOpsPerSec: mean('new', x => x.loadOpsPerSec) / mean('old', x => x.loadOpsPerSec),
    openCpuPerPut: rate === undefined ? null : mean('new', x => x.openCpuUsPerPut ?? NaN) / mean('old', x => x.openCpuUsPerPut ?? NaN),
    openPutP99: rate === undefined ? null : mean('new', x => x.openPutP99Us ?? NaN) / mean('old', x => x.openPutP99Us ?? NaN),
  },
}
if (values.json) console.log(JSON.stringify(summary, null, 2))
else {
  log(`new/old, means over the rounds: CPU per op ${summary.ratios.clusterCpuPerOp.toFixed(2)} (cluster), ${summary.ratios.totalCpuPerOp.toFixed(2)} (with the client); run ops/s ${summary.ratios.runOpsPerSec.toFixed(2)}, load ops/s ${summary.ratios.loadOpsPerSec.toFixed(2)}`)
  const r = summary.ratios
  if (rate !== undefined) log(`open loop at ${fmt(rate)} puts/s, new/old: cluster CPU per put ${r.openCpuPerPut!.toFixed(2)}, put p99 ${r.openPutP99!.toFixed(2)}`)
}

// The `ringkv` CLI: put, get, del and status against a cluster's seeds, using the SDK (so the CLI
// coordinates quorums exactly as apps do).
//
//   ringkv put KEY VALUE [--context C] [--w N]     prints: ok context=<C> acked=n1,n2
//   ringkv get KEY [--r N]                         prints the value (siblings one per line, with
//                                                  --json a JSON object), then context=<C> on stderr
//   ringkv del KEY [--context C] [--w N]           prints: ok context=<C>
//   ringkv status                                  prints the ring: node, url, partitions, up/down
//   ringkv repair [--partition P]                  runs anti-entropy now (every replica, or the
//                                                  primaries of P) with a progress bar; prints
//                                                  repaired=<keys> exchanges=<n> failed=<n> seconds=<s>
// --seeds ws://host:port,... (default $RINGKV_SEEDS or ws://127.0.0.1:7001). A failure prints
// `error <kind>: <message>` and, for a quorum or discovery failure, each replica and why, one a line.

import { parseArgs } from 'node:util'
import cliProgress from 'cli-progress'
import { limits } from '../coordinator/limits.ts'
import { preferenceListOfPartition, type Ring } from '../coordinator/ring/ring.ts'
import { createClient, isKvError, type KvClient } from './index.ts'

const usage = `usage: ringkv <put KEY VALUE | get KEY | del KEY | status | repair> [--seeds ws://127.0.0.1:7001,...]
  [--context C] [--r N] [--w N] [--timeout-ms N] [--json] [--partition P]`

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv, allowPositionals: true,
    options: {
      seeds: { type: 'string', default: process.env.RINGKV_SEEDS ?? 'ws://127.0.0.1:7001' },
      context: { type: 'string' }, r: { type: 'string' }, w: { type: 'string' },
      'timeout-ms': { type: 'string' }, partition: { type: 'string' }, json: { type: 'boolean', default: false }, help: { type: 'boolean', short: 'h' },
    },
  })
  const [cmd, ...args] = positionals
  if (values.help || !cmd) { process.stdout.write(usage + '\n'); return cmd ? 0 : 2 }
  const num = (v: string | undefined) => (v === undefined ? undefined : Number(v))
  const wopts = { ...(values.context ? { context: values.context } : {}), ...(values.w ? { w: num(values.w)! } : {}) }
  let kv: KvClient | undefined
  try {
    kv = createClient({ seeds: values.seeds!.split(','), ...(values['timeout-ms'] ? { timeoutMs: Number(values['timeout-ms']) } : {}) })
    switch (cmd) {
      case 'put': {
        if (args.length !== 2) throw new Error('put takes KEY VALUE')
        const res = await kv.put(args[0]!, args[1]!, wopts)
        process.stdout.write(`ok context=${res.context}\n`)
        return 0
      }
      case 'get': {
        if (args.length !== 1) throw new Error('get takes KEY')
        const res = await kv.getString(args[0]!, values.r ? { r: num(values.r)! } : {})
        if (values.json) process.stdout.write(JSON.stringify(res) + '\n')
        else if (!res.found) process.stdout.write('(not found)\n')
        else process.stdout.write(res.values.join('\n') + '\n')
        if (!values.json) process.stderr.write(`context=${res.context}\n`)
        return res.found ? 0 : 1
      }
      case 'del': {
        if (args.length !== 1) throw new Error('del takes KEY')
        const res = await kv.delete(args[0]!, wopts)
        process.stdout.write(`ok context=${res.context}\n`)
        return 0
      }
      case 'status': {
        const ring = await kv.ring()
        const counts = new Map<string, number>()
        for (const o of ring.owners) counts.set(o, (counts.get(o) ?? 0) + 1)
        const rows = await Promise.all(ring.nodes.map(async node => {
          const http = node.url.replace(/^ws/, 'http')
          let state = 'down'
          try { state = (await fetch(`${http}/health`, { signal: AbortSignal.timeout(1000) })).ok ? 'up' : 'down' } catch { /* down */ }
          return { node: node.id, url: node.url, partitions: counts.get(node.id) ?? 0, state }
        }))
        if (values.json) { process.stdout.write(JSON.stringify({ ringVersion: ring.version, partitions: ring.partitions, n: ring.n, nodes: rows }) + '\n'); return 0 }
        process.stdout.write(`ring v${ring.version}: ${ring.partitions} partitions, n=${ring.n}\n`)
        process.stdout.write(`${'node'.padEnd(8)} ${'url'.padEnd(24)} ${'partitions'.padStart(10)}  state\n`)
        for (const r of rows) process.stdout.write(`${r.node.padEnd(8)} ${r.url.padEnd(24)} ${String(r.partitions).padStart(10)}  ${r.state}\n`)
        return 0
      }
      case 'repair':
        return await repair(await kv.ring(), values.partition === undefined ? undefined : Number(values.partition), values.json!)
      default:
        throw new Error(`unknown command ${cmd}\n${usage}`)
    }
  } catch (e) {
    process.stderr.write(isKvError(e) ? `error ${e.kind}: ${e.message}\n` : `error: ${(e as Error).message}\n`)
    // Which replica failed and why, one per line (the message has them too, run together).
    const failures = isKvError(e) && 'failures' in e.data ? e.data.failures : undefined
    if (failures) for (const [node, f] of Object.entries(failures)) process.stderr.write(`  ${node}: ${f.kind}: ${f.message}\n`)
    return 2
  } finally {
    await kv?.close()
  }
}

interface RepairJob { id: number; total: number; done: number; keysRepaired: number; failed: number; finishedAt: number | null }

/**
 * Asks replicas to run anti-entropy now (POST /admin/repair) and follows their progress (GET) until
 * every job is done: all replicas, each over the partitions it is a primary of; or, with
 * `partition`, one primary of it, which exchanges with each other primary.
 */
async function repair(ring: Ring, partition: number | undefined, json: boolean): Promise<number> {
  if (partition !== undefined && !(Number.isInteger(partition) && partition >= 0 && partition < ring.partitions)) {
    throw new Error(`--partition must be an integer from 0 to ${ring.partitions - 1}`)
  }
  const http = (id: string) => ring.nodes.find(n => n.id === id)!.url.replace(/^ws/, 'http')
  const targets = partition === undefined ? ring.nodes.map(n => n.id) : preferenceListOfPartition(ring, partition).primaries
  const started = Date.now()
  const jobs = new Map<string, RepairJob>()
  for (const id of targets) {
    try {
      const res = await fetch(`${http(id)}/admin/repair${partition === undefined ? '' : `?partition=${partition}`}`, { method: 'POST', signal: AbortSignal.timeout(limits.requestTimeoutMsDefault) })
      const body = await res.json() as { repair?: RepairJob; error?: { kind: string; message: string } }
      if (!res.ok || !body.repair) { process.stderr.write(`  ${id}: ${body.error?.kind ?? res.status}: ${body.error?.message ?? ''}\n`); continue }
      jobs.set(id, body.repair)
      if (partition !== undefined) break
    } catch (e) {
      process.stderr.write(`  ${id}: unreachable (${(e as Error).message})\n`)
    }
  }
  if (jobs.size === 0) throw new Error('no replica accepted the repair')
  const total = () => [...jobs.values()].reduce((s, j) => s + j.total, 0)
  const sum = (f: (j: RepairJob) => number) => [...jobs.values()].reduce((s, j) => s + f(j), 0)
  const bar = json ? undefined : new cliProgress.SingleBar({
    format: 'repair [{bar}] {percentage}% | {value}/{total} exchanges | {keys} keys repaired | {failed} failed',
    hideCursor: true, stream: process.stderr,
  }, cliProgress.Presets.shades_classic)
  bar?.start(total(), 0, { keys: 0, failed: 0 })
  while (Date.now() - started < limits.repairWaitMsMax) {
    await new Promise(r => setTimeout(r, limits.repairPollIntervalMs))
    for (const [id, job] of jobs) {
      if (job.finishedAt !== null) continue
      try {
        const body = await (await fetch(`${http(id)}/admin/repair`, { signal: AbortSignal.timeout(limits.requestTimeoutMsDefault) })).json() as { repair: RepairJob | null }
        // A restarted replica forgets its job: count what it had as done.
        jobs.set(id, body.repair && body.repair.id === job.id ? body.repair : { ...job, done: job.total, failed: job.failed + job.total - job.done, finishedAt: Date.now() })
      } catch { /* unreachable for now: asked again next round */ }
    }
    bar?.update(sum(j => j.done), { keys: sum(j => j.keysRepaired), failed: sum(j => j.failed) })
    if ([...jobs.values()].every(j => j.finishedAt !== null)) break
  }
  bar?.stop()
  const summary = { repaired: sum(j => j.keysRepaired), exchanges: total(), failed: sum(j => j.failed), seconds: (Date.now() - started) / 1000 }
  if (json) process.stdout.write(JSON.stringify(summary) + '\n')
  else process.stdout.write(`repaired=${summary.repaired} exchanges=${summary.exchanges} failed=${summary.failed} seconds=${summary.seconds.toFixed(1)}\n`)
  return summary.failed === 0 ? 0 : 1
}

process.exitCode = await main(process.argv.slice(2))

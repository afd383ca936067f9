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
//   ringkv members [--json]                        every member: status, reachable, phi, partitions, transfers pending
//   ringkv transfers                               the plan in progress: each transfer, done or not, what streams now, what is dropped
//   ringkv endpoints KEY                           the key's primaries then fallbacks, reachable or not
//   ringkv leave NODE                              NODE hands its partitions off, then exits
//   ringkv remove NODE                             NODE (dead) is dropped; its partitions refill from survivors
// Membership commands ask the first seed that answers over HTTP (the replica's port, /members etc.).
// Membership and repair commands send the token as `Authorization: Bearer` (leave, remove and
// repair need the admin role) and trust --ca for https://.
// --seeds ws://host:port,... (default $RINGKV_SEEDS or ws://127.0.0.1:7001); --token T (default
// $RINGKV_TOKEN) for a cluster with an auth file; --ca FILE (PEM) to trust a self-signed wss:// cluster. A failure prints
// `error <kind>: <message>` and, for a quorum or discovery failure, each replica and why, one a line.

import { readFileSync } from 'node:fs'
import { request as httpRequest } from 'node:http'
import { request as httpsRequest } from 'node:https'
import { parseArgs } from 'node:util'
import { limits } from '../coordinator/limits.ts'
import { preferenceListOfPartition, type Ring } from '../coordinator/ring/ring.ts'
import { createClient, isKvError, type KvClient } from './index.ts'

const usage = `usage: ringkv <put KEY VALUE | get KEY | del KEY | status | repair | members | transfers | endpoints KEY | leave NODE | remove NODE>
  [--seeds ws://127.0.0.1:7001,...]
  [--context C] [--r N] [--w N] [--timeout-ms N] [--json] [--partition P] [--token T (or RINGKV_TOKEN)] [--ca PEM-FILE]`

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv, allowPositionals: true,
    options: {
      seeds: { type: 'string', default: process.env.RINGKV_SEEDS ?? 'ws://127.0.0.1:7001' },
      context: { type: 'string' }, r: { type: 'string' }, w: { type: 'string' },
      'timeout-ms': { type: 'string' }, partition: { type: 'string' }, token: { type: 'string' }, ca: { type: 'string' }, json: { type: 'boolean', default: false }, help: { type: 'boolean', short: 'h' },
    },
  })
  const [cmd, ...args] = positionals
  if (values.help || !cmd) { process.stdout.write(usage + '\n'); return cmd ? 0 : 2 }
  const num = (v: string | undefined) => (v === undefined ? undefined : Number(v))
  const wopts = { ...(values.context !== undefined ? { context: values.context } : {}), ...(values.w ? { w: num(values.w)! } : {}) }
  let kv: KvClient | undefined
  try {
    const token = values.token ?? (process.env.RINGKV_TOKEN || undefined)
    const ca = values.ca !== undefined ? readFileSync(values.ca) : undefined
    const web: HttpAuth = { token, ca }
    kv = createClient({
      seeds: values.seeds!.split(','), ...(values['timeout-ms'] ? { timeoutMs: Number(values['timeout-ms']) } : {}),
      ...(token !== undefined ? { token } : {}), ...(ca !== undefined ? { ca } : {}),
    })
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
          try { state = (await httpJson(`${http}/health`, 'GET', web, 1000)).ok ? 'up' : 'down' } catch { /* down */ }
          return { node: node.id, url: node.url, partitions: counts.get(node.id) ?? 0, state }
        }))
        if (values.json) { process.stdout.write(JSON.stringify({ ringVersion: ring.version, partitions: ring.partitions, n: ring.n, nodes: rows }) + '\n'); return 0 }
        process.stdout.write(`ring v${ring.version}: ${ring.partitions} partitions, n=${ring.n}\n`)
        process.stdout.write(`${'node'.padEnd(8)} ${'url'.padEnd(24)} ${'partitions'.padStart(10)}  state\n`)
        for (const r of rows) process.stdout.write(`${r.node.padEnd(8)} ${r.url.padEnd(24)} ${String(r.partitions).padStart(10)}  ${r.state}\n`)
        return 0
      }
      case 'repair':
        return await repair(await kv.ring(), values.partition === undefined ? undefined : Number(values.partition), values.json!, web)
      case 'members': {
        const body = await fromSeeds(seedsOf(values.seeds!), '/members', web) as MembersBody
        if (values.json) { process.stdout.write(JSON.stringify(body) + '\n'); return 0 }
        const r = body.ring
        process.stdout.write(`ring v${r.version}, claimant ${r.claimant ?? '-'}` + (r.plan ? `, plan v${r.plan.version}: ${r.plan.done}/${r.plan.transfers} transfers done` : '') + '\n')
        process.stdout.write(`${'node'.padEnd(10)} ${'url'.padEnd(24)} ${'status'.padEnd(8)} ${'reachable'.padEnd(9)} ${'phi'.padStart(7)} ${'partitions'.padStart(10)} ${'pending'.padStart(7)}\n`)
        for (const m of body.members) {
          process.stdout.write(`${m.node.padEnd(10)} ${m.url.padEnd(24)} ${m.status.padEnd(8)} ${(m.reachable ? 'yes' : 'NO').padEnd(9)} ${m.phi.toFixed(2).padStart(7)} ${String(m.partitions).padStart(10)} ${String(m.transfersPending).padStart(7)}\n`)
        }
        return 0
      }
      case 'transfers': {
        const body = await fromSeeds(seedsOf(values.seeds!), '/transfers', web) as { ring: { version: number }; plan: Array<{ partition: number; from: string; to: string; done: boolean }>; transfers: unknown[] }
        if (values.json) { process.stdout.write(JSON.stringify(body) + '\n'); return 0 }
        if (body.plan.length === 0) process.stdout.write(`ring v${body.ring.version}: no plan in progress\n`)
        else process.stdout.write(`ring v${body.ring.version}: ${body.plan.filter(t => t.done).length}/${body.plan.length} transfers done\n`)
        for (const t of body.plan) process.stdout.write(`partition ${String(t.partition).padStart(5)} ${t.from} -> ${t.to} ${t.done ? 'done' : 'pending'}\n`)
        // What the asked replica itself streams now, with progress (keys and bytes sent).
        for (const t of body.transfers as Array<{ partition: number; to: string; state: string; keysSent: number; bytesSent: number }>) {
          if (t.state !== 'done') process.stdout.write(`  streaming: partition ${t.partition} -> ${t.to} ${t.state} keys=${t.keysSent} bytes=${t.bytesSent}\n`)
        }
        // Partitions the asked replica no longer holds and deletes (absent from replicas older than the drop).
        const d = (body as { drops?: { pending: number[]; dropping: { partition: number; keysDropped: number } | null; keysDropped: number; partitionsDropped: number } }).drops
        if (d && (d.pending.length > 0 || d.keysDropped > 0)) {
          process.stdout.write(`  dropped: ${d.partitionsDropped} partitions, ${d.keysDropped} keys; pending: ${d.pending.length === 0 ? 'none' : d.pending.join(',')}` +
            (d.dropping ? `; dropping partition ${d.dropping.partition} (${d.dropping.keysDropped} keys so far)` : '') + '\n')
        }
        return 0
      }
      case 'endpoints': {
        if (args.length !== 1) throw new Error('endpoints takes KEY')
        const e = await kv.endpoints(args[0]!)
        // Reachability as the replicas' failure detector sees it, when a seed answers /members.
        const view = await fromSeeds(seedsOf(values.seeds!), '/members', web).then(b => b as MembersBody, () => undefined)
        const reachable = (node: string, up: boolean) => view?.members.find(m => m.node === node)?.reachable ?? up
        if (values.json) { process.stdout.write(JSON.stringify(e) + '\n'); return 0 }
        process.stdout.write(`key ${JSON.stringify(args[0])}: partition ${e.partition}, ring v${e.ringVersion}\n`)
        for (const [kind, list] of [['primary', e.primaries], ['fallback', e.fallbacks]] as const) {
          for (const p of list) process.stdout.write(`${kind.padEnd(9)} ${p.node.padEnd(10)} ${p.url.padEnd(24)} ${reachable(p.node, p.up) ? 'reachable' : 'UNREACHABLE'}\n`)
        }
        return 0
      }
      case 'leave':
      case 'remove': {
        if (args.length !== 1) throw new Error(`${cmd} takes NODE`)
        const body = await fromSeeds(seedsOf(values.seeds!), `/admin/${cmd}/${encodeURIComponent(args[0]!)}`, web, 'POST') as { node: string; status: string }
        process.stdout.write(`ok ${body.node} ${body.status}` + (cmd === 'leave' ? ': it hands its partitions off, then exits (ringkv members shows progress)\n' : ': its partitions refill from the surviving replicas\n'))
        return 0
      }
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
async function repair(ring: Ring, partition: number | undefined, json: boolean, web: HttpAuth): Promise<number> {
  if (partition !== undefined && !(Number.isInteger(partition) && partition >= 0 && partition < ring.partitions)) {
    throw new Error(`--partition must be an integer from 0 to ${ring.partitions - 1}`)
  }
  const http = (id: string) => ring.nodes.find(n => n.id === id)!.url.replace(/^ws/, 'http')
  const targets = partition === undefined ? ring.nodes.map(n => n.id) : preferenceListOfPartition(ring, partition).primaries
  const started = Date.now()
  const jobs = new Map<string, RepairJob>()
  for (const id of targets) {
    try {
      const res = await httpJson(`${http(id)}/admin/repair${partition === undefined ? '' : `?partition=${partition}`}`, 'POST', web, limits.requestTimeoutMsDefault)
      const body = (res.body ?? {}) as { repair?: RepairJob; error?: { kind: string; message: string } }
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
  // The progress bar's library is a development dependency, not the SDK's: an installed package
  // without it prints only the summary line.
  const cliProgress = json ? undefined : await import('cli-progress').then(m => m.default, () => undefined)
  const bar = cliProgress === undefined ? undefined : new cliProgress.SingleBar({
    format: 'repair [{bar}] {percentage}% | {value}/{total} exchanges | {keys} keys repaired | {failed} failed',
    hideCursor: true, stream: process.stderr,
  }, cliProgress.Presets.shades_classic)
  bar?.start(total(), 0, { keys: 0, failed: 0 })
  while (Date.now() - started < limits.repairWaitMsMax) {
    await new Promise(r => setTimeout(r, limits.repairPollIntervalMs))
    for (const [id, job] of jobs) {
      if (job.finishedAt !== null) continue
      try {
        const res = await httpJson(`${http(id)}/admin/repair`, 'GET', web, limits.requestTimeoutMsDefault)
        if (!res.ok) continue
        const body = res.body as { repair: RepairJob | null }
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

interface MembersBody {
  ring: { version: number; claimant?: string; plan: { version: number; transfers: number; done: number } | null }
  members: Array<{ node: string; url: string; status: string; reachable: boolean; phi: number; partitions: number; transfersPending: number }>
}

function seedsOf(seeds: string): string[] {
  return seeds.split(',').filter(Boolean)
}

/**
 * The JSON of `path` from the first seed whose replica answers (its HTTP routes share the data
 * plane's port). An error body from the replica becomes the KvError it names.
 */
async function fromSeeds(seeds: string[], path: string, web: HttpAuth, method = 'GET'): Promise<unknown> {
  const why: string[] = []
  for (const seed of seeds) {
    const http = seed.replace(/^ws(s?):/, 'http$1:')
    let res: HttpReply
    try {
      res = await httpJson(`${http}${path}`, method, web, 5000)
    } catch (e) {
      why.push(`${seed}: ${(e as Error).message}`)
      continue
    }
    const body = res.body as { error?: { kind?: string; message?: string } } | undefined
    if (res.ok) return body
    throw new Error(`${seed} answered ${res.status}: ${body?.error?.kind ?? ''} ${body?.error?.message ?? ''}`.trim())
  }
  throw new Error(`no seed answered ${path}: ${why.join('; ')}`)
}

/** What the CLI's HTTP calls to replicas present: the token (as a Bearer header) and the CA for https://. */
interface HttpAuth { readonly token: string | undefined; readonly ca: Buffer | undefined }
interface HttpReply { readonly status: number; readonly ok: boolean; readonly body: unknown }

/**
 * One HTTP call to a replica's routes, its body parsed as JSON (undefined when it is not JSON).
 * node:http(s) rather than fetch: fetch cannot be given a CA, and a --ca cluster is self-signed.
 */
function httpJson(url: string, method: string, web: HttpAuth, timeoutMs: number): Promise<HttpReply> {
  const headers: Record<string, string> = web.token !== undefined ? { authorization: `Bearer ${web.token}` } : {}
  const send = url.startsWith('https:') ? httpsRequest : httpRequest
  return new Promise((ok, fail) => {
    const req = send(url, { method, headers, timeout: timeoutMs, ...(web.ca !== undefined && url.startsWith('https:') ? { ca: web.ca } : {}) }, res => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (d: string) => { text += d })
      res.on('error', fail)
      res.on('end', () => {
        let body: unknown
        try { body = JSON.parse(text) } catch { body = undefined }
        const status = res.statusCode ?? 0
        ok({ status, ok: status >= 200 && status < 300, body })
      })
    })
    req.on('timeout', () => req.destroy(new Error(`timed out after ${timeoutMs} ms`)))
    req.on('error', fail)
    req.end()
  })
}

process.exitCode = await main(process.argv.slice(2))

// The `ringkv` CLI: put, get, del and status against a cluster's seeds, using the SDK (so the CLI
// coordinates quorums exactly as apps do).
//
//   ringkv put KEY VALUE [--context C] [--w N]     prints: ok context=<C> acked=n1,n2
//   ringkv get KEY [--r N]                         prints the value (siblings one per line, with
//                                                  --json a JSON object), then context=<C> on stderr
//   ringkv del KEY [--context C] [--w N]           prints: ok context=<C>
//   ringkv status                                  prints the ring: node, url, partitions, up/down
// --seeds ws://host:port,... (default $RINGKV_SEEDS or ws://127.0.0.1:7001); --token T (default
// $RINGKV_TOKEN) for a cluster with an auth file; --ca FILE (PEM) to trust a self-signed wss:// cluster. A failure prints
// `error <kind>: <message>` and, for a quorum or discovery failure, each replica and why, one a line.

import { readFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { createClient, isKvError, type KvClient } from './index.ts'

const usage = `usage: ringkv <put KEY VALUE | get KEY | del KEY | status> [--seeds ws://127.0.0.1:7001,...]
  [--context C] [--r N] [--w N] [--timeout-ms N] [--json] [--token T (or RINGKV_TOKEN)] [--ca PEM-FILE]`

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv, allowPositionals: true,
    options: {
      seeds: { type: 'string', default: process.env.RINGKV_SEEDS ?? 'ws://127.0.0.1:7001' },
      context: { type: 'string' }, r: { type: 'string' }, w: { type: 'string' },
      'timeout-ms': { type: 'string' }, token: { type: 'string' }, ca: { type: 'string' }, json: { type: 'boolean', default: false }, help: { type: 'boolean', short: 'h' },
    },
  })
  const [cmd, ...args] = positionals
  if (values.help || !cmd) { process.stdout.write(usage + '\n'); return cmd ? 0 : 2 }
  const num = (v: string | undefined) => (v === undefined ? undefined : Number(v))
  const wopts = { ...(values.context ? { context: values.context } : {}), ...(values.w ? { w: num(values.w)! } : {}) }
  let kv: KvClient | undefined
  try {
    const token = values.token ?? (process.env.RINGKV_TOKEN || undefined)
    kv = createClient({
      seeds: values.seeds!.split(','), ...(values['timeout-ms'] ? { timeoutMs: Number(values['timeout-ms']) } : {}),
      ...(token !== undefined ? { token } : {}), ...(values.ca !== undefined ? { ca: readFileSync(values.ca) } : {}),
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
          try { state = (await fetch(`${http}/health`, { signal: AbortSignal.timeout(1000) })).ok ? 'up' : 'down' } catch { /* down */ }
          return { node: node.id, url: node.url, partitions: counts.get(node.id) ?? 0, state }
        }))
        if (values.json) { process.stdout.write(JSON.stringify({ ringVersion: ring.version, partitions: ring.partitions, n: ring.n, nodes: rows }) + '\n'); return 0 }
        process.stdout.write(`ring v${ring.version}: ${ring.partitions} partitions, n=${ring.n}\n`)
        process.stdout.write(`${'node'.padEnd(8)} ${'url'.padEnd(24)} ${'partitions'.padStart(10)}  state\n`)
        for (const r of rows) process.stdout.write(`${r.node.padEnd(8)} ${r.url.padEnd(24)} ${String(r.partitions).padStart(10)}  ${r.state}\n`)
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

process.exitCode = await main(process.argv.slice(2))

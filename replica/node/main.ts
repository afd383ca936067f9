// A ringkv replica process on Node: opens its storage engine, serves the Hono HTTP routes (health,
// ring, metrics, the KV gateway) and the WebSocket data plane on one port, and shuts down cleanly
// on SIGTERM/SIGINT. Membership is static for now: every replica is told the whole cluster and
// computes the same ring from it (the claim is deterministic).
//
//   node --import tsx replica/node/main.ts --id n1 --port 7001 --data-dir .data/n1 \
//        --nodes n1=ws://127.0.0.1:7001,n2=ws://127.0.0.1:7002,n3=ws://127.0.0.1:7003

import { createAdaptorServer } from '@hono/node-server'
import type { Server } from 'node:http'
import { mkdir } from 'node:fs/promises'
import { resolve } from 'node:path'
import { parseArgs } from 'node:util'
import WebSocket from 'ws'
import { createGatewayApp } from '../../coordinator/http/gateway.ts'
import { KvCoordinator } from '../../coordinator/kv-coordinator.ts'
import { limits } from '../../coordinator/limits.ts'
import { createRing, type Ring, type RingNode } from '../../coordinator/ring/ring.ts'
import { systemRuntime, type WebSocketCtor } from '../../coordinator/runtime.ts'
import { ReplicaService } from '../replica-service.ts'
import { mergeStates } from '../state-codec.ts'
import { openEngine } from '../storage/engine.ts'
import { actorOf, readIdentity, writeIdentity } from './identity.ts'
import { renderMetrics } from './metrics.ts'
import { attachDataPlane } from './ws-data-plane.ts'

export interface ReplicaConfig {
  readonly id: string
  readonly host: string
  readonly port: number
  readonly dataDir: string
  readonly nodes: readonly RingNode[]
  readonly partitions: number
  readonly n: number
  readonly valueBytesMax: number
}

export function parseReplicaArgs(argv: string[]): ReplicaConfig {
  const { values } = parseArgs({
    args: argv,
    options: {
      id: { type: 'string' },
      host: { type: 'string', default: '127.0.0.1' },
      port: { type: 'string' },
      'data-dir': { type: 'string' },
      nodes: { type: 'string' },
      partitions: { type: 'string', default: String(limits.partitionsDefault) },
      n: { type: 'string', default: String(limits.nDefault) },
      'value-bytes-max': { type: 'string', default: String(limits.valueBytesDefault) },
    },
    strict: true,
  })
  const fail = (msg: string): never => { throw new Error(`replica config: ${msg}`) }
  const id = values.id ?? fail('--id is required')
  const port = Number(values.port ?? fail('--port is required'))
  if (!Number.isInteger(port) || port < 1 || port > 65535) fail(`--port must be 1..65535, got ${values.port}`)
  const nodes = (values.nodes ?? fail('--nodes is required (id=ws://host:port,...)')).split(',').map(part => {
    const eq = part.indexOf('=')
    if (eq <= 0) fail(`--nodes entry ${JSON.stringify(part)} is not id=ws://host:port`)
    return { id: part.slice(0, eq), url: part.slice(eq + 1) }
  })
  if (!nodes.some(n => n.id === id)) fail(`--nodes does not name this replica (${id})`)
  const valueBytesMax = Number(values['value-bytes-max'])
  if (!(Number.isInteger(valueBytesMax) && valueBytesMax > 0 && valueBytesMax <= limits.valueBytesMax)) fail(`--value-bytes-max must be 1..${limits.valueBytesMax}`)
  return {
    id, host: values.host!, port, nodes,
    dataDir: resolve(values['data-dir'] ?? fail('--data-dir is required')),
    partitions: Number(values.partitions), n: Number(values.n), valueBytesMax,
  }
}

export interface RunningReplica { readonly server: Server; close(): Promise<void> }

export async function startReplica(cfg: ReplicaConfig): Promise<RunningReplica> {
  const ring: Ring = createRing({ nodes: cfg.nodes, partitions: cfg.partitions, n: cfg.n })
  await mkdir(cfg.dataDir, { recursive: true })
  let identity = await readIdentity(cfg.dataDir)
  if (identity && identity.node !== cfg.id) throw new Error(`data dir ${cfg.dataDir} belongs to replica ${identity.node}, not ${cfg.id}`)
  if (!identity) {
    identity = { node: cfg.id, incarnation: 1 }
    await writeIdentity(cfg.dataDir, identity)
  }
  const log = (msg: string, fields: Record<string, unknown> = {}) =>
    process.stderr.write(JSON.stringify({ t: new Date().toISOString(), node: cfg.id, msg, ...fields }) + '\n')
  const engine = await openEngine({ dir: cfg.dataDir, merge: mergeStates, log })
  const actor = actorOf(identity)
  const service = new ReplicaService({ nodeId: cfg.id, actor, engine, ring: () => ring, valueBytesMax: cfg.valueBytesMax })
  // The replica's own HTTP gateway coordinates like any client, over the data plane.
  const kv = new KvCoordinator({ seeds: cfg.nodes.map(n => n.url), runtime: systemRuntime(WebSocket as unknown as WebSocketCtor), valueBytesMax: cfg.valueBytesMax, client: `gateway@${cfg.id}` })
  const app = createGatewayApp({
    kv, role: 'replica',
    health: () => ({ node: cfg.id, incarnation: identity.incarnation, actor, dataDir: cfg.dataDir, storage: engine.stats() }),
  })
  app.get('/metrics', c => c.text(renderMetrics(cfg.id, service.counters, engine.stats()), 200, { 'content-type': 'text/plain; version=0.0.4' }))
  const server = createAdaptorServer({ fetch: app.fetch }) as Server
  const wss = attachDataPlane(server, service)
  await new Promise<void>((ok, fail) => {
    server.once('error', fail)
    server.listen(cfg.port, cfg.host, () => { server.off('error', fail); ok() })
  })
  log('listening', { url: `ws://${cfg.host}:${cfg.port}`, actor, keys: engine.stats().keysApprox })
  return {
    server,
    async close() {
      kv.close()
      for (const c of wss.clients) c.terminate()
      wss.close()
      await new Promise<void>(ok => server.close(() => ok()))
      await engine.close()
    },
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const cfg = parseReplicaArgs(process.argv.slice(2))
  startReplica(cfg).then(replica => {
    const stop = () => { replica.close().then(() => process.exit(0), () => process.exit(1)) }
    process.once('SIGTERM', stop)
    process.once('SIGINT', stop)
  }, e => {
    process.stderr.write(`replica ${cfg.id} failed to start: ${(e as Error).stack ?? e}\n`)
    process.exit(1)
  })
}

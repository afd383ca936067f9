// The HTTP gateway on Cloudflare Workers (docs/edge.md). Same routes and answers as the Node gateway
// because it is the same Hono app (coordinator/http/gateway.ts), run where a Worker can keep sockets.
//
// A Worker cannot use a socket opened by an earlier request ("Cannot perform I/O on behalf of a
// different request"), so a Worker alone would open a WebSocket to every replica it asks on every
// request. A Durable Object can keep them: so the Worker only validates each request (the gateway's
// own checks, refused before anything is forwarded) and forwards it to one of RINGKV_SHARDS Durable
// Objects, chosen by the key's position on the ring (the top bits of its hash, so each object serves
// a contiguous range of partitions). Each object runs one KvCoordinator over long-lived, multiplexed
// sockets to the replicas, and answers with the gateway app. Never one global object: each is
// single-threaded. /health, /ring and anything else go to shard 0.
//
// Without the Durable Object binding (or with RINGKV_MODE=per-request) every request gets its own
// coordinator; its sockets are closed in ctx.waitUntil once the answer and its read repairs are out.
//
// Env: RINGKV_SEEDS (ws:// or wss:// URLs, comma-separated), RINGKV_SHARDS (a power of two, default
// limits.edgeShardsDefault), RINGKV_MODE ('durable-object' or 'per-request'), and the Durable Object
// namespace binding RINGKV_GATEWAY (edge/wrangler.jsonc). No `node:*`, no eval: workerd forbids code
// generation; msgpackr runs without it (useRecords: false) and zod skips its JIT on Workers.

import { Hono } from 'hono'
import { KvError } from '../coordinator/errors.ts'
import { checkKvRequest, createGatewayApp, errorResponse, kvBodyLimit } from '../coordinator/http/gateway.ts'
import { KvCoordinator } from '../coordinator/kv-coordinator.ts'
import { limits } from '../coordinator/limits.ts'
import { keyHash32 } from '../coordinator/ring/partition-hash.ts'
import { systemRuntime, type WebSocketCtor } from '../coordinator/runtime.ts'

// The parts of the Workers runtime used here, declared locally: @cloudflare/workers-types would
// replace the DOM library the rest of the repository typechecks against.
interface DurableObjectId { toString(): string }
interface DurableObjectStub { fetch(request: Request): Promise<Response> }
interface DurableObjectNamespace {
  idFromName(name: string): DurableObjectId
  get(id: DurableObjectId): DurableObjectStub
}
interface DurableObjectState { readonly id: DurableObjectId }
interface ExecutionContext { waitUntil(promise: Promise<unknown>): void }

export interface Env {
  readonly RINGKV_SEEDS?: string
  readonly RINGKV_SHARDS?: string
  readonly RINGKV_MODE?: string
  readonly RINGKV_GATEWAY?: DurableObjectNamespace
}

interface EdgeConfig { readonly seeds: string[]; readonly shards: number; readonly perRequest: boolean }

/** The settings from env; a bad one is a KvError the first request answers with (500 Internal, saying what). */
function configOf(env: Env): EdgeConfig {
  const seeds = (env.RINGKV_SEEDS ?? '').split(',').map(s => s.trim()).filter(Boolean)
  const shards = env.RINGKV_SHARDS === undefined || env.RINGKV_SHARDS === '' ? limits.edgeShardsDefault : Number(env.RINGKV_SHARDS)
  const mode = env.RINGKV_MODE ?? 'durable-object'
  const issues: string[] = []
  if (seeds.length === 0) issues.push('RINGKV_SEEDS must list the replicas, ws://host:port or wss://host:port, comma-separated')
  if (!Number.isInteger(shards) || shards < 1 || shards > limits.edgeShardsMax || (shards & (shards - 1)) !== 0) {
    issues.push(`RINGKV_SHARDS must be a power of two from 1 to ${limits.edgeShardsMax}, got ${JSON.stringify(env.RINGKV_SHARDS)}`)
  }
  if (mode !== 'durable-object' && mode !== 'per-request') issues.push(`RINGKV_MODE must be durable-object or per-request, got ${JSON.stringify(mode)}`)
  if (issues.length > 0) throw new KvError({ kind: 'Internal' }, `edge gateway misconfigured: ${issues.join('; ')}`)
  return { seeds, shards, perRequest: mode === 'per-request' || env.RINGKV_GATEWAY === undefined }
}

/** The shard of a key: the top log2(shards) bits of its ring hash, so a shard is a range of partitions. */
export function shardOf(key: string, shards: number): number {
  const bits = 31 - Math.clz32(shards)
  return bits === 0 ? 0 : keyHash32(key) >>> (32 - bits)
}

function coordinator(seeds: string[], client: string): KvCoordinator {
  const WebSocketImpl = (globalThis as { WebSocket?: WebSocketCtor }).WebSocket
  if (WebSocketImpl === undefined) throw new KvError({ kind: 'Internal' }, 'this runtime has no global WebSocket')
  return new KvCoordinator({ seeds, runtime: systemRuntime(WebSocketImpl), client })
}

/** The front: checks, then forwards to the key's Durable Object (or answers itself, per request). */
function frontApp(env: Env, ctx: ExecutionContext): Hono {
  const app = new Hono()
  app.onError((err, c) => errorResponse(c, err))
  let config: EdgeConfig | undefined
  const cfg = () => (config ??= configOf(env))
  const forward = (request: Request, shard: number) => {
    const ns = env.RINGKV_GATEWAY!
    return ns.get(ns.idFromName(`shard-${shard}`)).fetch(request)
  }
  app.use('*', async (c, next) => {
    if (!cfg().perRequest) return next()
    // Fallback: a coordinator for this request alone, closed once the answer is out and a read
    // repair has had limits.edgeLingerMs to go (the sockets belong to this request).
    const kv = coordinator(cfg().seeds, 'edge-gateway')
    try {
      return await createGatewayApp({ kv, role: 'edge-gateway', health: () => ({ mode: 'per-request' }) }).fetch(c.req.raw)
    } finally {
      // The close handshake runs within this request too: a socket still closing when the request
      // ends stays open on the replica until the isolate goes away.
      const sleep = () => new Promise<void>(done => setTimeout(done, limits.edgeLingerMs))
      ctx.waitUntil(sleep().then(() => kv.close()).then(sleep))
    }
  })
  app.on(['GET', 'DELETE'], '/kv/*', c => forward(c.req.raw, shardOf(checkKvRequest(c), cfg().shards)))
  app.put('/kv/*', kvBodyLimit(), c => forward(c.req.raw, shardOf(checkKvRequest(c), cfg().shards)))
  app.all('*', c => forward(c.req.raw, 0))
  return app
}

export default {
  fetch(request: Request, env: Env, ctx: ExecutionContext): Promise<Response> | Response {
    return frontApp(env, ctx).fetch(request)
  },
}

/**
 * One shard: a KvCoordinator whose sockets to the replicas outlive each request (a Durable Object may
 * keep I/O objects across requests), behind the gateway app. Made on the first request.
 */
export class GatewayShard {
  private app: Hono | undefined

  constructor(private readonly state: DurableObjectState, private readonly env: Env) {}

  fetch(request: Request): Promise<Response> | Response {
    if (this.app === undefined) {
      const { seeds, shards } = configOf(this.env)
      const kv = coordinator(seeds, 'edge-gateway')
      const id = this.state.id.toString()
      this.app = createGatewayApp({ kv, role: 'edge-gateway', health: () => ({ mode: 'durable-object', shards, object: id }) })
    }
    return this.app.fetch(request)
  }
}

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
// namespace binding RINGKV_GATEWAY (edge/wrangler.jsonc). Security, as the Node gateway's flags and
// parsed by the same code (coordinator/auth/settings.ts): RINGKV_AUTH (the auth file's JSON text,
// --auth-file), RINGKV_TOKEN (what the gateway presents to the replicas, --token-file),
// RINGKV_SESSION_SECRET (--session-secret-file) and RINGKV_CLUSTER (--cluster, the session key's
// fallback). Secrets, set with `wrangler secret put`. A bad one answers every request with 500
// naming the binding, never with an open gateway.
//
// Where the token is checked: in the Worker, before anything is forwarded, so a refused request
// never wakes a Durable Object nor opens a socket (per request); and again in the object, by the
// same gateway app given the same Authenticator. The second check is not the defence (an object is
// reachable only through its namespace binding) but keeps the app whole: its anonymous /health
// answers the status only, and it costs one SHA-256 per request. The session is checked once, in
// the object (its HMAC costs far more than a token's hash, and only a caller with a token gets
// that far).
//
// No `node:*`, no eval: workerd forbids code generation; msgpackr runs without it (useRecords:
// false) and zod skips its JIT on Workers.

import { Hono } from 'hono'
import { KvError } from '../coordinator/errors.ts'
import type { Authenticator } from '../coordinator/auth/auth.ts'
import { gatewaySecurityFrom, type GatewaySecurity, type SettingText } from '../coordinator/auth/settings.ts'
import { authMiddleware, checkKvRequest, createGatewayApp, errorResponse, kvBodyLimit } from '../coordinator/http/gateway.ts'
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
  readonly RINGKV_AUTH?: string
  readonly RINGKV_TOKEN?: string
  readonly RINGKV_SESSION_SECRET?: string
  readonly RINGKV_CLUSTER?: string
  readonly RINGKV_GATEWAY?: DurableObjectNamespace
}

interface EdgeConfig {
  readonly seeds: string[]
  readonly shards: number
  readonly perRequest: boolean
  readonly auth: Authenticator | undefined
  readonly token: string | undefined
  readonly sessionKey: Uint8Array
}

/**
 * Kept per env object, so a runtime that passes the same one to each request parses once: the auth
 * file costs a SHA-256 per token, and a broken one is not parsed again for each request it refuses.
 */
const configs = new WeakMap<Env, EdgeConfig | KvError>()

/** The settings from env; a bad one is a KvError every request answers with (500 Internal, saying what). */
function configOf(env: Env): EdgeConfig {
  let config = configs.get(env)
  if (config === undefined) {
    try {
      config = parseConfig(env)
    } catch (e) {
      config = e instanceof KvError ? e : new KvError({ kind: 'Internal' }, `edge gateway misconfigured: ${(e as Error).message}`, { cause: e })
    }
    configs.set(env, config)
  }
  if (config instanceof KvError) throw config
  return config
}

/**
 * A security binding's text. Unset is off; anything but a non-empty string is a mistake (a var
 * given as JSON, a secret left empty), never read as off: that would open the gateway.
 */
function bindingText(env: Env, name: 'RINGKV_AUTH' | 'RINGKV_TOKEN' | 'RINGKV_SESSION_SECRET', issues: string[]): SettingText | undefined {
  const value: unknown = env[name]
  if (value === undefined) return undefined
  if (typeof value !== 'string' || value.trim() === '') {
    issues.push(`${name} must be a non-empty string${name === 'RINGKV_AUTH' ? ' (the auth file\'s JSON text, as a secret)' : ''}, got ${typeof value === 'string' ? 'an empty one' : typeof value}`)
    return undefined
  }
  return { text: value, source: name }
}

function parseConfig(env: Env): EdgeConfig {
  const seeds = (env.RINGKV_SEEDS ?? '').split(',').map(s => s.trim()).filter(Boolean)
  const shards = env.RINGKV_SHARDS === undefined || env.RINGKV_SHARDS === '' ? limits.edgeShardsDefault : Number(env.RINGKV_SHARDS)
  const mode = env.RINGKV_MODE ?? 'durable-object'
  const issues: string[] = []
  if (seeds.length === 0) issues.push('RINGKV_SEEDS must list the replicas, ws://host:port or wss://host:port, comma-separated')
  if (!Number.isInteger(shards) || shards < 1 || shards > limits.edgeShardsMax || (shards & (shards - 1)) !== 0) {
    issues.push(`RINGKV_SHARDS must be a power of two from 1 to ${limits.edgeShardsMax}, got ${JSON.stringify(env.RINGKV_SHARDS)}`)
  }
  if (mode !== 'durable-object' && mode !== 'per-request') issues.push(`RINGKV_MODE must be durable-object or per-request, got ${JSON.stringify(mode)}`)
  const auth = bindingText(env, 'RINGKV_AUTH', issues)
  const token = bindingText(env, 'RINGKV_TOKEN', issues)
  const sessionSecret = bindingText(env, 'RINGKV_SESSION_SECRET', issues)
  const cluster = env.RINGKV_CLUSTER === undefined || env.RINGKV_CLUSTER === '' ? 'ringkv' : env.RINGKV_CLUSTER
  // A Worker faces the internet: presenting a token to the replicas while letting anyone in would
  // hand that token's role to everyone (the Node gateway allows it, for a private network).
  if (token !== undefined && env.RINGKV_AUTH === undefined) {
    issues.push('RINGKV_TOKEN is set but RINGKV_AUTH is not: anyone could use the token\'s role through this gateway; set RINGKV_AUTH')
  }
  let security: GatewaySecurity | undefined
  try {
    security = gatewaySecurityFrom({ auth, token, sessionSecret, cluster })
  } catch (e) {
    issues.push((e as Error).message)
  }
  if (issues.length > 0 || security === undefined) throw new KvError({ kind: 'Internal' }, `edge gateway misconfigured: ${issues.join('; ')}`)
  return { seeds, shards, perRequest: mode === 'per-request' || env.RINGKV_GATEWAY === undefined, ...security }
}

/** The shard of a key: the top log2(shards) bits of its ring hash, so a shard is a range of partitions. */
export function shardOf(key: string, shards: number): number {
  const bits = 31 - Math.clz32(shards)
  return bits === 0 ? 0 : keyHash32(key) >>> (32 - bits)
}

/** The gateway app over `kv`, with the security settings passed as the Node gateway passes them. */
function gatewayApp(config: EdgeConfig, kv: KvCoordinator, health: () => Record<string, unknown>): Hono {
  return createGatewayApp({ kv, role: 'edge-gateway', health, auth: config.auth, sessionKey: config.sessionKey })
}

function coordinator(config: EdgeConfig, client: string): KvCoordinator {
  const WebSocketImpl = (globalThis as { WebSocket?: WebSocketCtor }).WebSocket
  if (WebSocketImpl === undefined) throw new KvError({ kind: 'Internal' }, 'this runtime has no global WebSocket')
  return new KvCoordinator({ seeds: config.seeds, runtime: systemRuntime(WebSocketImpl), client, ...(config.token !== undefined ? { token: config.token } : {}) })
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
  // The token first: nothing is forwarded, and no socket opened, for a request that will be refused.
  app.use('*', async (c, next) => {
    const { auth } = cfg()
    return auth ? authMiddleware(auth)(c, next) : next()
  })
  app.use('*', async (c, next) => {
    if (!cfg().perRequest) return next()
    // Fallback: a coordinator for this request alone, closed once the answer is out and a read
    // repair has had limits.edgeLingerMs to go (the sockets belong to this request).
    const kv = coordinator(cfg(), 'edge-gateway')
    try {
      return await gatewayApp(cfg(), kv, () => ({ mode: 'per-request' })).fetch(c.req.raw)
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
      const config = configOf(this.env)
      const id = this.state.id.toString()
      this.app = gatewayApp(config, coordinator(config, 'edge-gateway'), () => ({ mode: 'durable-object', shards: config.shards, object: id }))
    }
    return this.app.fetch(request)
  }
}

// The HTTP face of ringkv for curl users and edge runtimes: a Hono app that coordinates each request
// with the same KvCoordinator (and so the same quorum state machines) the SDK uses. Runtime-neutral:
// the Node gateway, every replica and (later) a Cloudflare Worker mount this app.
//
//   PUT    /kv/:key   raw body                -> 204, x-ringkv-context: <new context>
//   GET    /kv/:key                           -> 200 raw value | 300 JSON ["<base64>", ...] | 404
//   DELETE /kv/:key                           -> 204
//   ?r= ?w= ?timeout_ms= per request; the causal context travels in x-ringkv-context both ways.
//   GET    /health, GET /ring
// Errors answer JSON { error: { kind, message, ... } } with 400, 413, 503 or 504.

import { Hono, type Context } from 'hono'
import { bodyLimit } from 'hono/body-limit'
import { badRequest, KvError } from '../errors.ts'
import { limits } from '../limits.ts'
import type { KvCoordinator } from '../kv-coordinator.ts'

export const CONTEXT_HEADER = 'x-ringkv-context'

export interface GatewayOptions {
  readonly kv: KvCoordinator
  /** Extra fields for /health (a replica adds its node id, storage and snapshot state). */
  readonly health?: () => Record<string, unknown>
  readonly role?: string
}

export function createGatewayApp(opts: GatewayOptions): Hono {
  const app = new Hono()
  const { kv } = opts

  app.onError((err, c) => errorResponse(c, err))

  // `health` may set status: 'read-only' and 'down' answer 503, so a load balancer stops routing.
  app.get('/health', c => {
    const body = { status: 'ok', role: opts.role ?? 'gateway', ...(opts.health?.() ?? {}) }
    return c.json(body, body.status === 'read-only' || body.status === 'down' ? 503 : 200)
  })
  app.get('/ring', async c => c.json(await kv.getRing()))

  app.get('/kv/*', async c => {
    const key = keyFromPath(c.req.path)
    const got = await kv.get(key, { r: intParam(c, 'r'), timeoutMs: intParam(c, 'timeout_ms') })
    if (got.context) c.header(CONTEXT_HEADER, got.context)
    if (!got.found) return c.json({ error: { kind: 'NotFound', message: `no value for key` } }, 404)
    if (got.values.length === 1) {
      c.header('content-type', 'application/octet-stream')
      return c.body(got.values[0]! as Uint8Array<ArrayBuffer>, 200)
    }
    return c.json(got.values.map(toBase64), 300)
  })

  app.put('/kv/*', bodyLimit({
    maxSize: limits.httpBodyBytesMax,
    onError: c => c.json({ error: { kind: 'TooLarge', message: `body over ${limits.httpBodyBytesMax} bytes` } }, 413),
  }), async c => {
    const key = keyFromPath(c.req.path)
    const value = new Uint8Array(await c.req.arrayBuffer())
    const res = await kv.put(key, value, { context: c.req.header(CONTEXT_HEADER), w: intParam(c, 'w'), timeoutMs: intParam(c, 'timeout_ms') })
    c.header(CONTEXT_HEADER, res.context)
    return c.body(null, 204)
  })

  app.delete('/kv/*', async c => {
    const key = keyFromPath(c.req.path)
    const res = await kv.delete(key, { context: c.req.header(CONTEXT_HEADER), w: intParam(c, 'w'), r: intParam(c, 'r'), timeoutMs: intParam(c, 'timeout_ms') })
    c.header(CONTEXT_HEADER, res.context)
    return c.body(null, 204)
  })

  return app
}

// ignoreBOM: a leading U+FEFF is part of the key, as on the wire (messages.ts).
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true })
const encoder = new TextEncoder()

/** The key is everything after /kv/, percent-decoded to bytes and then decoded as strict UTF-8. */
export function keyFromPath(path: string): string {
  const raw = path.slice(path.indexOf('/kv/') + 4)
  const bytes: number[] = []
  // Percent escapes become single bytes; runs of other characters are UTF-8 encoded whole, so a
  // raw surrogate pair is never split into two halves.
  // split() with a capture group puts the escapes at odd indices and the text between at even ones.
  raw.split(/(%[0-9a-fA-F]{2})/).forEach((part, i) => {
    if (i % 2 === 1) { bytes.push(parseInt(part.slice(1), 16)); return }
    if (part.includes('%')) throw badRequest(`key has a bad percent escape: ${JSON.stringify(part).slice(0, 40)}`)
    for (const b of encoder.encode(part)) bytes.push(b)
  })
  try {
    return utf8.decode(new Uint8Array(bytes))
  } catch {
    throw badRequest('key is not valid UTF-8')
  }
}

function intParam(c: Context, name: string): number | undefined {
  const v = c.req.query(name)
  if (v === undefined || v === '') return undefined
  if (!/^\d{1,9}$/.test(v)) throw badRequest(`${name} must be a positive integer, got ${JSON.stringify(v).slice(0, 40)}`)
  return Number(v)
}

function toBase64(bytes: Uint8Array): string {
  let s = ''
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000))
  return btoa(s)
}

const statusOf: Record<string, 400 | 409 | 413 | 503 | 504 | 500 | 429 | 507> = {
  BadRequest: 400, TooLarge: 413, QuorumNotMet: 503, Unavailable: 503, Timeout: 504, Overloaded: 429,
  StorageFull: 507, TooManySiblings: 409, ProtocolError: 500, Corruption: 500, Internal: 500,
}

function errorResponse(c: Context, err: Error): Response {
  if (err instanceof KvError) {
    return c.json({ error: { kind: err.kind, message: err.message, ...(err.data as object) } }, statusOf[err.kind] ?? 500)
  }
  return c.json({ error: { kind: 'Internal', message: err.message } }, 500)
}

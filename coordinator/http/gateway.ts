// The HTTP face of ringkv for curl users and edge runtimes: a Hono app that coordinates each request
// with the same KvCoordinator (and so the same quorum state machines) the SDK uses. Runtime-neutral:
// the Node gateway, every replica and (later) a Cloudflare Worker mount this app.
//
//   PUT    /kv/:key   raw body                -> 204, x-ringkv-context: <new context>
//   GET    /kv/:key                           -> 200 raw value | 300 JSON ["<base64>", ...]
//                                                | 404 { found: false } (absent or deleted: a result, not an error)
//   DELETE /kv/:key                           -> 204
//   ?r= ?w= ?timeout_ms= per request; the causal context travels in x-ringkv-context both ways.
//   GET    /health -> 200 { status: 'ok' | 'degraded', role, replicas: { total, reachable, unreachable }, ... }
//                     or 503 with status 'down' when no replica answers, or 'read-only' (a replica
//                     whose storage refuses writes), for load balancers
//   GET    /ring
// Errors answer JSON { error: { kind, message, ...data } } with the status errorTable (errors.ts)
// gives the kind: 400 BadRequest, 409 TooManySiblings, 413 TooLarge, 429 Overloaded, 503
// QuorumNotMet and Unavailable (both with `failures`: each replica and why), 504 Timeout, 507
// StorageFull, 500 Corruption, ProtocolError and Internal, 401 Unauthorized, 403 Forbidden, 503
// SessionNotMet.
//
// With an Authenticator (auth/auth.ts), every request needs `Authorization: Bearer <token>`: GET and
// HEAD need the read role, other methods write, anything under /admin admin (httpRoleOf). /health
// answers without a token too, with its status only (load balancers), and in full with one.
// Causal sessions (session.ts): every /kv answer carries x-ringkv-session, what the client has now
// seen; a GET presented with it (header, or the ringkv_session cookie) only answers with a state that
// has seen it. The session comes back as a cookie too when the request carried the cookie or asked
// with ?session=cookie.

import { Hono, type Context, type MiddlewareHandler } from 'hono'
import { bodyLimit } from 'hono/body-limit'
import { getCookie, setCookie } from 'hono/cookie'
import { bearerToken, roleAllows, type Authenticator, type Role } from '../auth/auth.ts'
import { badRequest, errorBody, httpStatusOf, KvError } from '../errors.ts'
import { limits } from '../limits.ts'
import type { KvCoordinator } from '../kv-coordinator.ts'
import { keyIssues } from '../protocol/messages.ts'
import { decodeContext } from '../version/context.ts'
import type { VersionVector } from '../version/dvv.ts'
import { emptySession, floorOf, SESSION_COOKIE, SESSION_HEADER, SessionCodec, withKey, type Session } from './session.ts'

export const CONTEXT_HEADER = 'x-ringkv-context'

export interface GatewayOptions {
  readonly kv: KvCoordinator
  /**
   * Extra fields for /health (a replica adds its node id, storage and snapshot state), merged over
   * the gateway's own: a `status` given here replaces the gateway's; /health answers 503 while the
   * status is 'read-only' or 'down', 200 otherwise.
   */
  readonly health?: () => Record<string, unknown>
  readonly role?: string
  /** Tokens that may call this gateway; undefined = no authentication. */
  readonly auth?: Authenticator | undefined
  /** The MAC key of causal sessions (session.ts sessionKeyFrom); undefined = no sessions. */
  readonly sessionKey?: Uint8Array | undefined
}

/** The role a request needs: /admin admin, reads read, every other method write. */
export function httpRoleOf(method: string, path: string): Role {
  if (path === '/admin' || path.startsWith('/admin/')) return 'admin'
  return method === 'GET' || method === 'HEAD' || method === 'OPTIONS' ? 'read' : 'write'
}

export function createGatewayApp(opts: GatewayOptions): Hono {
  const app = new Hono()
  const { kv } = opts

  const { auth } = opts
  const sessions = opts.sessionKey ? new SessionCodec(opts.sessionKey) : undefined

  app.onError((err, c) => errorResponse(c, err))

  // The token is checked once per request, before any route runs (routes added after this app is
  // made, such as a replica's /metrics and /admin/snapshot, are covered too).
  if (auth) app.use('*', authMiddleware(auth))

  // How many replicas answer right now: 'down' (503) when none does, so a load balancer moves on.
  // `health` may set its own status (a replica's 'read-only', 503 too), merged over this one.
  // Without a token (when tokens are required) only the status: no replica names, paths or counts.
  app.get('/health', async c => {
    const replicas = await kv.reachability()
    const status = replicas.reachable === 0 ? 'down' : replicas.reachable < replicas.total ? 'degraded' : 'ok'
    const body = { status, role: opts.role ?? 'gateway', replicas, ...(opts.health?.() ?? {}) }
    const code = body.status === 'read-only' || body.status === 'down' ? 503 : 200
    if (auth && !auth.authenticate(bearerToken(c.req.header('authorization')))) return c.json({ status: body.status }, code)
    return c.json(body, code)
  })
  app.get('/ring', async c => c.json(await kv.getRing()))

  /** The session the request presented (header first, then cookie); a bad one is a BadRequest. */
  const sessionOf = (c: Context): Session | undefined => {
    if (!sessions) return undefined
    const text = c.req.header(SESSION_HEADER) ?? getCookie(c, SESSION_COOKIE)
    return text === undefined || text === '' ? undefined : sessions.decode(text)
  }
  /** Hands the client its session, now also covering `vv` for `key`. */
  const giveSession = (c: Context, session: Session | undefined, key: string, vv: VersionVector | undefined): void => {
    if (!sessions) return
    const next = vv === undefined ? (session ?? emptySession) : withKey(session ?? emptySession, key, vv)
    const text = sessions.encode(next)
    c.header(SESSION_HEADER, text)
    if (c.req.query('session') === 'cookie' || getCookie(c, SESSION_COOKIE) !== undefined) {
      setCookie(c, SESSION_COOKIE, text, { path: '/', httpOnly: true, sameSite: 'Lax', secure: new URL(c.req.url).protocol === 'https:' })
    }
  }

  app.get('/kv/*', async c => {
    const key = keyFromPath(c.req.path)
    const session = sessionOf(c)
    const floor = session ? floorOf(session, key) : undefined
    const got = await kv.get(key, { r: intParam(c, 'r'), timeoutMs: intParam(c, 'timeout_ms'), floor })
    giveSession(c, session, key, got.state?.vv)
    if (got.context) c.header(CONTEXT_HEADER, got.context)
    if (!got.found) return c.json({ found: false }, 404)
    if (got.values.length === 1) {
      c.header('content-type', 'application/octet-stream')
      return c.body(got.values[0]! as Uint8Array<ArrayBuffer>, 200)
    }
    return c.json(got.values.map(toBase64), 300)
  })

  app.put('/kv/*', kvBodyLimit(), async c => {
    const key = keyFromPath(c.req.path)
    const session = sessionOf(c)
    const value = new Uint8Array(await c.req.arrayBuffer())
    const res = await kv.put(key, value, { context: c.req.header(CONTEXT_HEADER), w: intParam(c, 'w'), timeoutMs: intParam(c, 'timeout_ms') })
    giveSession(c, session, key, res.state.vv)
    c.header(CONTEXT_HEADER, res.context)
    return c.body(null, 204)
  })

  app.delete('/kv/*', async c => {
    const key = keyFromPath(c.req.path)
    const session = sessionOf(c)
    // The read a delete without a context makes honours the session: the tombstone covers what the client saw.
    const res = await kv.delete(key, { context: c.req.header(CONTEXT_HEADER), w: intParam(c, 'w'), r: intParam(c, 'r'), timeoutMs: intParam(c, 'timeout_ms'), floor: session ? floorOf(session, key) : undefined })
    giveSession(c, session, key, res.state.vv)
    c.header(CONTEXT_HEADER, res.context)
    return c.body(null, 204)
  })

  return app
}

/**
 * Bearer-token check (auth/auth.ts): 401 without a known token, 403 for a role that may not. GET
 * /health passes without a token (its route then answers the status only). Exported for a front
 * that checks before forwarding (the Worker, before it wakes a Durable Object). No message quotes
 * the token.
 */
export function authMiddleware(auth: Authenticator): MiddlewareHandler {
  return async (c, next) => {
    const who = auth.authenticate(bearerToken(c.req.header('authorization')))
    if (!who) {
      if (c.req.method === 'GET' && c.req.path === '/health') return next()
      c.header('www-authenticate', 'Bearer realm="ringkv"')
      throw new KvError({ kind: 'Unauthorized' }, c.req.header('authorization') === undefined
        ? 'this gateway needs Authorization: Bearer <token>' : 'unknown token (or not a Bearer token)')
    }
    const required = httpRoleOf(c.req.method, c.req.path)
    if (!roleAllows(who.role, required)) {
      throw new KvError({ kind: 'Forbidden', role: who.role, required }, `${c.req.method} ${c.req.path.slice(0, 64)} needs the ${required} role; token ${who.name} has ${who.role}`)
    }
    return next()
  }
}

/** The body limit of PUT /kv/*: TooLarge (413) past limits.httpBodyBytesMax. */
export function kvBodyLimit() {
  return bodyLimit({
    maxSize: limits.httpBodyBytesMax,
    onError: c => {
      // The size is known when the client declared it; a streamed body was cut at the limit.
      const declared = Number(c.req.header('content-length'))
      const bytes = Number.isSafeInteger(declared) && declared > limits.httpBodyBytesMax ? declared : limits.httpBodyBytesMax + 1
      return errorResponse(c, new KvError({ kind: 'TooLarge', bytes, bytesMax: limits.httpBodyBytesMax },
        `body over the ${limits.httpBodyBytesMax}-byte limit (${bytes === declared ? `${declared} bytes declared` : 'sent without a length'})`))
    },
  })
}

/**
 * What the routes above check before any I/O, for a front that forwards the request elsewhere (the
 * Worker in front of its Durable Objects): the key, the numeric parameters and the context header.
 * Not the session: its check is an HMAC over up to sessionCharsMax characters (about 150 µs per KiB
 * here in pure JS), better done once, where the session is used. Throws the BadRequest the route
 * would answer; returns the key.
 */
export function checkKvRequest(c: Context): string {
  const key = keyFromPath(c.req.path)
  const keyBytes = encoder.encode(key)
  const issues = keyIssues(key, keyBytes.byteLength)
  if (issues.length > 0) throw badRequest(...issues)
  for (const name of ['r', 'w', 'timeout_ms']) intParam(c, name)
  const context = c.req.header(CONTEXT_HEADER)
  if (context) decodeContext(context)
  return key
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

/** An error as every gateway answers it: `{ error: { kind, message, ...data } }` with the kind's status. */
export function errorResponse(c: Context, err: Error): Response {
  const k = err instanceof KvError ? err : new KvError({ kind: 'Internal' }, err.message, { cause: err })
  return c.json({ error: errorBody(k) }, httpStatusOf(k.kind))
}

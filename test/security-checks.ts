// What every HTTP gateway of ringkv answers about tokens and causal sessions, as checks shared by the
// suites of each gateway (the Node gateway in test/auth.test.ts and test/session.test.ts, the Worker
// in test/edge-auth.test.ts), so the gateways cannot drift apart on security either.

import assert from 'node:assert/strict'
import { emptySession, SessionCodec, sessionKeyFrom, withKey } from '../coordinator/http/session.ts'
import { limits } from '../coordinator/limits.ts'

export const SESSION_HEADER = 'x-ringkv-session'

export const bearer = (token: string) => ({ authorization: `Bearer ${token}` })

export const errorKind = async (res: Response) => (await res.json() as { error: { kind: string } }).error.kind

/** Tokens of each role, and the auth file naming them: two write tokens under one name (rotation). */
export const testTokens = {
  reader: 'read-token-0123456789abcdef',
  writerOld: 'write-token-old-0123456789abcdef',
  writerNew: 'write-token-new-0123456789abcdef',
  admin: 'admin-token-0123456789abcdef',
}
export const testAuthFile = { tokens: [
  { name: 'dashboard', token: testTokens.reader, role: 'read' },
  { name: 'app', token: testTokens.writerOld, role: 'write' },
  { name: 'app', token: testTokens.writerNew, role: 'write' },
  { name: 'ops', token: testTokens.admin, role: 'admin' },
] }

/**
 * A gateway started with testAuthFile: 401 without or with a bad token, 403 for the wrong role
 * (admin routes too), 204/200 for the writer, and /health's status only to strangers. `key` is a
 * key this check alone writes.
 */
export async function checkHttpAuth(gw: string, key: string): Promise<void> {
  const url = `${gw}/kv/${key}`
  const noToken = await fetch(url)
  assert.equal(noToken.status, 401)
  assert.equal(noToken.headers.get('www-authenticate'), 'Bearer realm="ringkv"')
  assert.equal(await errorKind(noToken), 'Unauthorized')
  assert.equal((await fetch(url, { headers: bearer('nope-nope-nope-nope-nope') })).status, 401)
  assert.equal((await fetch(url, { headers: { authorization: `Basic ${testTokens.reader}` } })).status, 401)
  assert.equal((await fetch(url, { headers: bearer(testTokens.reader) })).status, 404)
  const forbidden = await fetch(url, { method: 'PUT', body: 'x', headers: bearer(testTokens.reader) })
  assert.equal(forbidden.status, 403)
  assert.deepEqual((await forbidden.json() as { error: { kind: string; role: string; required: string } }).error,
    { kind: 'Forbidden', role: 'read', required: 'write', message: `PUT /kv/${key} needs the write role; token dashboard has read` })
  assert.equal((await fetch(url, { method: 'PUT', body: 'x', headers: bearer(testTokens.writerNew) })).status, 204)
  const got = await fetch(url, { headers: bearer(testTokens.reader) })
  assert.equal(await got.text(), 'x')
  assert.equal((await fetch(url, { headers: bearer(testTokens.writerOld) })).status, 200, 'the other token of a rotated name')
  assert.equal((await fetch(url, { method: 'DELETE', headers: bearer(testTokens.reader) })).status, 403)
  const admin = await fetch(`${gw}/admin/anything`, { method: 'POST', headers: bearer(testTokens.writerOld) })
  assert.equal(admin.status, 403, 'an admin route with a write token')
  assert.equal(await errorKind(admin), 'Forbidden')

  const anon = await fetch(`${gw}/health`)
  assert.equal(anon.status, 200)
  assert.deepEqual(await anon.json(), { status: 'ok' })
  const full = await fetch(`${gw}/health`, { headers: bearer(testTokens.reader) })
  assert.equal((await full.json() as { replicas: { total: number } }).replicas.total, 3)
  assert.equal((await fetch(`${gw}/ring`)).status, 401)
}

/**
 * Garbage, altered, cut, oversized and foreign sessions, as header and as cookie: each a typed 400
 * that does not echo it, and the next request is served. `headers` go with every request (a token).
 */
export async function checkBadSessions(gw: string, key: string, headers: Record<string, string> = {}): Promise<void> {
  const url = `${gw}/kv/${key}`
  const w = await fetch(url, { method: 'PUT', body: 'b', headers })
  assert.equal(w.status, 204)
  const good = w.headers.get(SESSION_HEADER)!
  const [payload, mac] = good.split('.') as [string, string]
  const flip = (t: string, i: number) => t.slice(0, i) + (t[i] === 'A' ? 'B' : 'A') + t.slice(i + 1)
  const foreign = new SessionCodec(sessionKeyFrom('another cluster')).encode(withKey(emptySession, key, { x: 1 }))
  const cases: Record<string, string> = {
    garbage: 'not a session', noMac: payload, altered: `${flip(payload, 3)}.${mac}`, badMac: `${payload}.${flip(mac, 0)}`,
    shortMac: `${payload}.${mac.slice(0, 4)}`, dots: `${payload}.${mac}.x`, huge: 'A'.repeat(limits.sessionCharsMax + 1),
    nonBase64: `${payload}.!!!!`, foreign,
  }
  for (const [name, value] of Object.entries(cases)) {
    const res = await fetch(url, { headers: { ...headers, [SESSION_HEADER]: value } })
    assert.equal(res.status, 400, name)
    const body = await res.json() as { error: { kind: string; message: string } }
    assert.equal(body.error.kind, 'BadRequest', name)
    assert.ok(!body.error.message.includes(value.slice(0, 40)) || value.length < 16, `${name}: the message does not echo the session`)
    const cookie = await fetch(url, { headers: { ...headers, cookie: `ringkv_session=${encodeURIComponent(value).slice(0, 5000)}` } })
    assert.equal(cookie.status, 400, `${name} as a cookie`)
  }
  // A header far over any bound is refused by the HTTP server or the gateway, and nothing else breaks.
  const giant = await fetch(url, { headers: { ...headers, [SESSION_HEADER]: 'A'.repeat(12_000) } }).then(r => r.status, () => 0)
  assert.ok(giant === 400 || giant === 431, `giant header: ${giant}`)
  assert.equal(await (await fetch(url, { headers: { ...headers, [SESSION_HEADER]: good } })).text(), 'b')
}

/**
 * A well-signed session (signed with `codec`, the gateway's key) holding counters from the future
 * only delays its own reader: 503 SessionNotMet, while a read without it is answered.
 */
export async function checkFutureSession(gw: string, key: string, codec: SessionCodec, headers: Record<string, string> = {}): Promise<void> {
  assert.equal((await fetch(`${gw}/kv/${key}`, { method: 'PUT', body: 'f', headers })).status, 204)
  const forged = codec.encode(withKey(emptySession, key, { 'zz.forged': limits.counterMax }))
  const res = await fetch(`${gw}/kv/${key}?timeout_ms=500`, { headers: { ...headers, [SESSION_HEADER]: forged } })
  assert.equal(res.status, 503)
  assert.equal(await errorKind(res), 'SessionNotMet')
  assert.equal(await (await fetch(`${gw}/kv/${key}`, { headers })).text(), 'f')
}

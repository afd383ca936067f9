// Causal sessions through the HTTP gateway (coordinator/http/session.ts): read-your-writes across
// stateless requests while one replica lags behind (it was paused with SIGSTOP through a write), a
// typed 503 when only replicas that have not seen the session's write can answer, the session as a
// cookie, and typed 400s for garbage, altered, oversized and foreign sessions, with the gateway
// serving everyone else as before.

import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { SessionCodec, sessionKeyFrom } from '../coordinator/http/session.ts'
import { limits } from '../coordinator/limits.ts'
import { enc, eventually, rawConnection, testCluster } from './helpers.ts'
import { checkBadSessions, checkFutureSession, errorKind } from './security-checks.ts'

const base = 18620
const H = 'x-ringkv-session'

describe('causal sessions', () => {
  let cluster: Awaited<ReturnType<typeof testCluster>>
  let gw: string
  before(async () => {
    // Anti-entropy off (one exchange an hour): the first test needs n3 to stay behind after it
    // resumes, which main's anti-entropy loop (40 ms between exchanges) would repair within moments.
    cluster = await testCluster(base, { httpPort: base + 10, readyTimeoutMs: 120_000, extraArgs: ['--aae-interval-ms', '3600000'] })
    gw = cluster.gateway!.url
  })
  after(async () => {
    for (const r of cluster.replicas) await r.kill('SIGCONT')
    await cluster.cleanup()
  })

  it('reads its own write across requests while a replica lags, and answers 503 SessionNotMet rather than an older value', async () => {
    const [n1, n2, n3] = cluster.replicas as [typeof cluster.replicas[0], typeof cluster.replicas[0], typeof cluster.replicas[0]]
    const url = `${gw}/kv/sess:cart`
    const w1 = await fetch(`${url}?w=3`, { method: 'PUT', body: 'v1' })
    assert.equal(w1.status, 204)
    const s1 = w1.headers.get(H)!
    assert.ok(s1 && s1.length <= limits.sessionCharsMax)

    // n3 stops, and the gateway learns it is down (its /health probe times out), so the next write
    // is never sent to it: n3 lags behind with v1.
    await n3.kill('SIGSTOP')
    await fetch(`${gw}/health`)
    // The probe's timeout resets n3's connection only once a sign-of-life probe (connection.ts
    // silent()) has also gone unanswered: wait that out, or the write below is still sent to n3,
    // which applies it when it resumes.
    await new Promise(r => setTimeout(r, limits.silenceProbeTimeoutMs + 500))
    const w2 = await fetch(`${url}?w=2&timeout_ms=5000`, { method: 'PUT', body: 'v2', headers: { [H]: s1, 'x-ringkv-context': w1.headers.get('x-ringkv-context')! } })
    assert.equal(w2.status, 204)
    const s2 = w2.headers.get(H)!
    await n3.kill('SIGCONT')
    const direct = rawConnection(n3.url)
    const held = await direct.request('get', { key: enc.encode('sess:cart') }, 5000)
    direct.close()
    assert.deepEqual(held.state?.siblings.map(s => Buffer.from(s.value!).toString()), ['v1'], 'n3 lags behind')

    // Only the lagging replica can answer: without a session the read returns the old value; with
    // the session it refuses with a typed 503.
    await n1.kill('SIGSTOP')
    await n2.kill('SIGSTOP')
    const plain = await fetch(`${url}?r=1&timeout_ms=2000`)
    assert.equal(await plain.text(), 'v1', 'control: a read without a session may go back in time')
    const refused = await fetch(`${url}?r=1&timeout_ms=1500`, { headers: { [H]: s2 } })
    assert.equal(refused.status, 503)
    assert.equal(await errorKind(refused), 'SessionNotMet')

    // One replica that saw v2 comes back: every session read answers v2 (or 503 while the gateway
    // has not reconnected to it), never v1.
    await n1.kill('SIGCONT')
    let answered = ''
    await eventually(async () => {
      const res = await fetch(`${url}?r=1&timeout_ms=1500`, { headers: { [H]: s2 } })
      if (res.status === 503) { assert.equal(await errorKind(res), 'SessionNotMet'); throw new Error('not yet') }
      answered = await res.text()
      return answered
    }, 'a session read answers', 20_000)
    assert.equal(answered, 'v2')
    for (let i = 0; i < 10; i++) {
      const res = await fetch(`${url}?r=1&timeout_ms=1500`, { headers: { [H]: s2 } })
      assert.ok(res.status === 503 || (await res.text()) === 'v2', `read ${i}: never the older value`)
    }
    await n2.kill('SIGCONT')
  })

  it('carries the session as a cookie when asked', async () => {
    const w = await fetch(`${gw}/kv/sess:cookie?session=cookie`, { method: 'PUT', body: 'c1' })
    const cookie = w.headers.get('set-cookie')
    assert.match(cookie ?? '', /^ringkv_session=[A-Za-z0-9_.-]+; Path=\/; HttpOnly; SameSite=Lax$/)
    const r = await fetch(`${gw}/kv/sess:cookie`, { headers: { cookie: cookie!.split(';')[0]! } })
    assert.equal(await r.text(), 'c1')
    assert.ok(r.headers.get('set-cookie'), 'a request that came with the cookie gets it back, updated')
  })

  it('remembers at most sessionKeysMax keys within sessionCharsMax', async () => {
    let s = ''
    for (let i = 0; i < limits.sessionKeysMax + 4; i++) {
      const res = await fetch(`${gw}/kv/sess:many${i}`, { method: 'PUT', body: 'x', headers: s ? { [H]: s } : {} })
      assert.equal(res.status, 204)
      s = res.headers.get(H)!
    }
    const codec = new SessionCodec(sessionKeyFrom('cluster-name:ringkv'))
    const decoded = codec.decode(s)
    assert.equal(decoded.entries.length, limits.sessionKeysMax)
    assert.ok(s.length <= limits.sessionCharsMax)
  })

  it('refuses garbage, altered, oversized and foreign sessions with a typed 400, and serves the next request', async () => {
    await checkBadSessions(gw, 'sess:bad')
  })

  it('a well-signed session with counters from the future only delays its own reader (503), no one else', async () => {
    // Without a session secret the key comes from the cluster's public name: anyone can sign, and
    // the worst a forger can do is ask for a version no replica has.
    await checkFutureSession(gw, 'sess:future', new SessionCodec(sessionKeyFrom('cluster-name:ringkv')))
  })
})

// Authentication, roles and causal sessions on the Workers gateway (edge/worker.ts), in workerd under
// wrangler, against real replicas started with an auth file: the same token and session checks the
// Node gateway passes (test/security-checks.ts), in the Durable Object mode and per request; sessions
// that cross between the Node gateway and the Worker (one session secret); bad bindings answered
// with a 500 that names them, never an open gateway; and `npm run edge` (edge/dev.ts) handing its
// --auth-file, --token-file and --session-secret-file to wrangler dev exactly, tokens with quotes,
// `$` and `#` in them included, without printing any of them.

import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { coversVector } from '../coordinator/version/dvv.ts'
import { floorOf, sessionKeyFrom, SessionCodec } from '../coordinator/http/session.ts'
import { dotenvLine, edgeSecretLines, startEdgeDev } from '../edge/dev.ts'
import edgeWorker, { shardOf, type Env } from '../edge/worker.ts'
import { startGateway, type RunningGateway } from '../replica/node/gateway.ts'
import { loadSecurity } from '../replica/node/security.ts'
import { startWorker, workerBindings, type StartedWorker } from './edge-worker.ts'
import { eventually, testCluster } from './helpers.ts'
import { bearer, checkBadSessions, checkFutureSession, checkHttpAuth, SESSION_HEADER as H, testAuthFile, testTokens } from './security-checks.ts'

// Ports 18540-18559: replicas 18540-18542, then the gateways.
const base = 18540
const workerPort = base + 5
const spareWorkerPort = base + 6
const nodeGatewayPort = base + 7
const edgeDevPort = base + 8
/** Replicas and wrangler start in seconds; a loaded 2-core machine may take far longer. Only stops hangs. */
const READY_MS = 120_000

// Tokens a dotenv file must quote with care: a quote of each kind, `$NAME` (dotenv-expand would
// expand it), an escaped `\$`, and `#` (a comment outside quotes).
const edgeUserToken = "edge-$HOME-'q'-`b`-\\$x-#0123456789"
const edgeGatewayToken = "edge-gw-$PATH-'q'-\\$y-#0123456789"
const authFile = { tokens: [...testAuthFile.tokens,
  { name: 'edge-user', token: edgeUserToken, role: 'write' },
  { name: 'edge-gateway', token: edgeGatewayToken, role: 'write' },
] }

type Cluster = Awaited<ReturnType<typeof testCluster>>

describe('Workers gateway: authentication, roles and causal sessions', () => {
  let cluster: Cluster
  let dir: string
  let authPath: string
  let sessionSecret: string
  let sessionSecretPath: string
  let worker: StartedWorker | undefined
  let nodeGateway: RunningGateway | undefined
  const workerUrl = `http://127.0.0.1:${workerPort}`
  const writer = bearer(testTokens.writerOld)

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ringkv-edge-auth-'))
    authPath = join(dir, 'auth.json')
    await writeFile(authPath, JSON.stringify(authFile, null, 2), { mode: 0o600 })
    sessionSecret = `session-secret-${randomBytes(16).toString('hex')}`
    sessionSecretPath = join(dir, 'session-secret')
    await writeFile(sessionSecretPath, sessionSecret + '\n', { mode: 0o600 })
    await writeFile(join(dir, 'gateway-token'), edgeGatewayToken + '\n', { mode: 0o600 })
    cluster = await testCluster(base, { authFile: authPath, readyTimeoutMs: READY_MS })
    worker = await startWorker(cluster.seeds, workerPort, 'durable-object', {
      RINGKV_AUTH: { type: 'secret_text', value: JSON.stringify(authFile) },
      RINGKV_TOKEN: { type: 'secret_text', value: testTokens.writerOld },
      RINGKV_SESSION_SECRET: { type: 'secret_text', value: sessionSecret },
    })
    // The Node gateway, configured from files the way its command line does, with the same secret.
    const security = loadSecurity({ authFile: authPath, sessionSecretFile: sessionSecretPath, tokenFile: join(dir, 'gateway-token') }, 'gateway', 'ringkv')
    nodeGateway = await startGateway({ seeds: cluster.seeds, port: nodeGatewayPort, auth: security.auth, token: security.token, sessionKey: security.sessionKey })
  })
  after(async () => {
    await worker?.dispose()
    await nodeGateway?.close()
    await cluster?.cleanup()
    await rm(dir, { recursive: true, force: true })
  })

  it('401 without a token, 403 for the wrong role (admin routes too), 200/204 for a writer: the Node gateway\'s answers', async () => {
    await checkHttpAuth(workerUrl, 'edge:h1')
    // A flood of bad tokens is refused one by one, and a writer goes on.
    const flood = await Promise.all(Array.from({ length: 100 }, (_, i) =>
      fetch(`${workerUrl}/kv/edge:flood${i}`, { method: 'PUT', body: 'x', headers: bearer(`bad-token-${i}-${'x'.repeat(i * 40)}`) }).then(r => r.status)))
    assert.deepEqual([...new Set(flood)], [401])
    assert.equal((await fetch(`${workerUrl}/kv/edge:flood`, { method: 'PUT', body: 'x', headers: writer })).status, 204)
    const health = await (await fetch(`${workerUrl}/health`, { headers: bearer(testTokens.reader) })).json() as { mode: string }
    assert.equal(health.mode, 'durable-object')
  })

  it('a session round trip, and sessions carried between the Node gateway and the Worker', async () => {
    const codec = new SessionCodec(sessionKeyFrom(sessionSecret))
    /** The session's vector for `key` covers `earlier`'s: the read descends from what was seen. */
    const descends = (later: string, earlier: string, key: string) => {
      const a = floorOf(codec.decode(later), key)
      const b = floorOf(codec.decode(earlier), key)
      assert.ok(a && b && coversVector(a, b), `session of ${key} after the read covers the write's`)
    }
    const roundTrip = async (writeVia: string, readVia: string, key: string, value: string) => {
      const put = await fetch(`${writeVia}/kv/${key}`, { method: 'PUT', body: value, headers: writer })
      assert.equal(put.status, 204)
      const s1 = put.headers.get(H)
      assert.ok(s1, 'a put answers with x-ringkv-session')
      const got = await fetch(`${readVia}/kv/${key}`, { headers: { ...writer, [H]: s1 } })
      assert.equal(got.status, 200)
      assert.equal(await got.text(), value)
      descends(got.headers.get(H)!, s1, key)
    }
    const node = nodeGateway!.url
    await roundTrip(workerUrl, workerUrl, 'edge:sess1', 'w1')
    await roundTrip(node, workerUrl, 'edge:sess2', 'n1')
    await roundTrip(workerUrl, node, 'edge:sess3', 'w3')
  })

  it('refuses garbage, altered, cut and foreign sessions with a typed 400 (checked once, in the Durable Object)', async () => {
    await checkBadSessions(workerUrl, 'edge:bad', writer)
  })

  it('enforces the session: a well-signed one from the future answers 503 SessionNotMet', async () => {
    await checkFutureSession(workerUrl, 'edge:future', new SessionCodec(sessionKeyFrom(sessionSecret)), writer)
  })

  it('bad bindings answer 500 naming the binding, never an open gateway; fixed, per request works the same', async () => {
    const leaked = 'secret-in-a-broken-binding-0123456789'
    const spare = await startWorker(cluster.seeds, spareWorkerPort, 'durable-object', {
      RINGKV_AUTH: { type: 'secret_text', value: `{ "tokens": [ { "name": "x", "token": "${leaked}" ` },
      RINGKV_TOKEN: { type: 'secret_text', value: testTokens.writerOld },
    })
    const url = `http://127.0.0.1:${spareWorkerPort}`
    /** Every route, with a token or without, is a 500 whose message names `names` and quotes nothing. */
    const refused = async (names: string[]) => {
      for (const [path, init] of [['/kv/k', { headers: writer }], ['/kv/k', { method: 'PUT', body: 'x' }], ['/health', {}], ['/ring', {}]] as const) {
        const res = await fetch(`${url}${path}`, init)
        assert.equal(res.status, 500, `${path}: ${res.status}`)
        const { error } = await res.json() as { error: { kind: string; message: string } }
        assert.equal(error.kind, 'Internal')
        for (const name of names) assert.match(error.message, new RegExp(name), `${path}: the message names ${name}`)
        for (const secret of [leaked, testTokens.writerOld, sessionSecret]) assert.ok(!error.message.includes(secret), 'no secret in the message')
      }
    }
    try {
      await refused(['RINGKV_AUTH: auth file is not valid JSON'])
      // Bindings replaced while it runs (wrangler reloads the Worker): every mistake named at once.
      const more = {
        RINGKV_AUTH: { type: 'secret_text', value: JSON.stringify({ tokens: [{ name: 'x', token: leaked, role: 'superuser' }] }) },
        RINGKV_TOKEN: { type: 'secret_text', value: 'short' },
        RINGKV_SESSION_SECRET: { type: 'secret_text', value: '   ' },
      } as const
      await spare.patchConfig({ bindings: workerBindings(cluster.seeds, 'durable-object', more) })
      await eventually(() => refused(['RINGKV_AUTH: auth file is not valid', 'RINGKV_TOKEN', 'RINGKV_SESSION_SECRET']), 'the reloaded Worker refuses', 60_000)
      await spare.patchConfig({ bindings: workerBindings(cluster.seeds, 'durable-object', { RINGKV_TOKEN: { type: 'secret_text', value: testTokens.writerOld } }) })
      await eventually(() => refused(['RINGKV_TOKEN is set but RINGKV_AUTH is not']), 'a token without RINGKV_AUTH is refused', 60_000)

      await spare.patchConfig({ bindings: workerBindings(cluster.seeds, 'per-request', {
        RINGKV_AUTH: { type: 'secret_text', value: JSON.stringify(authFile) },
        RINGKV_TOKEN: { type: 'secret_text', value: testTokens.writerNew },
        RINGKV_SESSION_SECRET: { type: 'secret_text', value: sessionSecret },
      }) })
      await eventually(async () => {
        const res = await fetch(`${url}/health`, { headers: bearer(testTokens.reader) })
        assert.equal((await res.json() as { mode?: string }).mode, 'per-request')
      }, 'the Worker runs per request', 60_000)
      await checkHttpAuth(url, 'edge:per-request')
      // A session the Durable Object mode issued holds here too (same secret), and bad ones are 400.
      const put = await fetch(`${workerUrl}/kv/edge:cross-mode`, { method: 'PUT', body: 'do', headers: writer })
      const got = await fetch(`${url}/kv/edge:cross-mode`, { headers: { ...writer, [H]: put.headers.get(H)! } })
      assert.equal(await got.text(), 'do')
      await checkFutureSession(url, 'edge:future-pr', new SessionCodec(sessionKeyFrom(sessionSecret)), writer)
    } finally {
      await spare.dispose()
    }
  })

  it('npm run edge passes --auth-file, --token-file and --session-secret-file to wrangler exactly, and prints none of them', async () => {
    let output = ''
    const edge = await startEdgeDev({
      seeds: cluster.seeds, port: edgeDevPort, authFile: authPath, tokenFile: join(dir, 'gateway-token'), sessionSecretFile: sessionSecretPath,
      log: line => { output += line },
    })
    const secretsFile = edge.secretsFile!
    try {
      assert.equal((await stat(secretsFile)).mode & 0o777, 0o600)
      assert.equal((await stat(join(secretsFile, '..'))).mode & 0o777, 0o700)
      assert.equal((await fetch(`${edge.url}/kv/edge:dev`)).status, 401)
      // The user's token has both quote kinds (it came through RINGKV_AUTH's JSON escapes); the
      // write reaching the replicas proves the gateway's own token (RINGKV_TOKEN) arrived intact.
      const user = bearer(edgeUserToken)
      const put = await fetch(`${edge.url}/kv/edge:dev`, { method: 'PUT', body: 'dev', headers: user })
      assert.equal(put.status, 204, await put.text())
      // The session secret arrived intact: a session from the Node gateway holds on this Worker.
      const viaNode = await fetch(`${nodeGateway!.url}/kv/edge:dev2`, { method: 'PUT', body: 'n', headers: writer })
      const got = await fetch(`${edge.url}/kv/edge:dev2`, { headers: { ...user, [H]: viaNode.headers.get(H)! } })
      assert.equal(got.status, 200)
      assert.equal(await got.text(), 'n')
      await checkFutureSession(edge.url, 'edge:dev-future', new SessionCodec(sessionKeyFrom(sessionSecret)), user)
    } finally {
      await edge.stop()
    }
    await assert.rejects(stat(secretsFile), 'the secrets file is removed when wrangler stops')
    for (const secret of [edgeUserToken, edgeGatewayToken, sessionSecret, testTokens.writerOld]) {
      assert.ok(!output.includes(secret), 'wrangler printed no secret')
    }
  })

  it("the Worker's front refuses before forwarding: no refused request reaches a Durable Object", async () => {
    // The Durable Object namespace is Cloudflare's part: a stand-in records what the front forwards.
    const forwarded: string[] = []
    const namespace = {
      idFromName: (name: string) => ({ toString: () => name }),
      get: (id: { toString(): string }) => ({ fetch: async (req: Request) => { forwarded.push(`${id.toString()} ${new URL(req.url).pathname}`); return new Response(null, { status: 204 }) } }),
    }
    const env: Env = { RINGKV_SEEDS: cluster.seeds.join(','), RINGKV_AUTH: JSON.stringify(authFile), RINGKV_TOKEN: testTokens.writerOld, RINGKV_SESSION_SECRET: sessionSecret, RINGKV_GATEWAY: namespace }
    const ctx = { waitUntil: () => undefined }
    const call = (path: string, init: RequestInit = {}) => edgeWorker.fetch(new Request(`http://edge${path}`, init), env, ctx)
    const refusals: Array<[string, RequestInit, number]> = [
      ['/kv/k', {}, 401],
      ['/kv/k', { headers: bearer('not-a-known-token-at-all') }, 401],
      ['/kv/k', { method: 'PUT', body: 'x', headers: bearer(testTokens.reader) }, 403],
      ['/kv/k', { method: 'DELETE', headers: bearer(testTokens.reader) }, 403],
      ['/admin/x', { method: 'POST', headers: writer }, 403],
      ['/ring', {}, 401],
      ['/kv/k?r=abc', { headers: writer }, 400],
      ['/kv/k', { headers: { ...writer, 'x-ringkv-context': '!!garbage!!' } }, 400],
    ]
    for (const [path, init, status] of refusals) assert.equal((await call(path, init)).status, status, `${init.method ?? 'GET'} ${path}`)
    assert.deepEqual(forwarded, [], 'nothing refused was forwarded')
    assert.equal((await call('/kv/k', { headers: writer })).status, 204)
    assert.equal((await call('/health')).status, 204, 'anonymous /health goes on to shard 0 (which answers the status only)')
    assert.deepEqual(forwarded, [`shard-${shardOf('k', 8)} /kv/k`, 'shard-0 /health'])
    assert.equal((await call('/kv/k', { headers: { authorization: `Bearer ${'x'.repeat(100_000)}` } })).status, 401, 'a huge bearer token')

    // Bindings that are not what they should be: 500 naming them, nothing forwarded, never open.
    forwarded.length = 0
    const bad: Array<[Record<string, unknown>, RegExp]> = [
      [{ RINGKV_AUTH: authFile }, /RINGKV_AUTH must be a non-empty string .*got object/],
      [{ RINGKV_AUTH: '' }, /RINGKV_AUTH must be a non-empty string .*got an empty one/],
      [{ RINGKV_AUTH: ' '.repeat(2 * 1024 * 1024) + '{}' }, /RINGKV_AUTH: \d+ bytes, more than/],
      [{ RINGKV_AUTH: JSON.stringify({ tokens: [] }) }, /RINGKV_AUTH: auth file is not valid: tokens/],
      [{ RINGKV_SESSION_SECRET: 'too-short' }, /RINGKV_SESSION_SECRET: session secret must be 16/],
      [{ RINGKV_TOKEN: `${testTokens.writerOld} trailing words` }, /RINGKV_TOKEN: token must not contain whitespace/],
    ]
    for (const [change, message] of bad) {
      const res = await edgeWorker.fetch(new Request('http://edge/kv/k', { headers: writer }), { ...env, ...change } as Env, ctx)
      assert.equal(res.status, 500, String(message))
      assert.match((await res.json() as { error: { message: string } }).error.message, message)
    }
    assert.deepEqual(forwarded, [])
  })

  it('npm run edge refuses broken files naming them, without quoting them', async () => {
    const leaked = 'secret-in-a-broken-file-0123456789'
    const broken = join(dir, 'broken-auth.json')
    await writeFile(broken, `{ "tokens": [ { "name": "x", "token": "${leaked}" `)
    assert.throws(() => edgeSecretLines({ authFile: broken }), (e: Error) => e.message.includes(broken) && e.message.includes('not valid JSON') && !e.message.includes(leaked))
    const short = join(dir, 'short-token')
    await writeFile(short, 'abc\n')
    assert.throws(() => edgeSecretLines({ authFile: authPath, tokenFile: short }), /short-token: token must be 16/)
    assert.throws(() => edgeSecretLines({ tokenFile: join(dir, 'gateway-token') }), /--token-file needs --auth-file/)
    assert.throws(() => edgeSecretLines({ sessionSecretFile: join(dir, 'missing') }), /session secret file .*missing cannot be read: ENOENT/)
    // What a dotenv file cannot carry is refused, never mangled.
    assert.equal(dotenvLine('X', "a'b`c"), undefined)
    assert.equal(dotenvLine('X', 'a\nb'), undefined)
    assert.equal(dotenvLine('X', "a'$b"), 'X=`a\'\\$b`')
    const lines = edgeSecretLines({ authFile: authPath, sessionSecretFile: sessionSecretPath })
    assert.equal(lines.length, 2)
    assert.ok(!(await readFile(authPath, 'utf8')).includes('\\u0027') && lines[0]!.includes('\\u0027'), "the auth file's quotes travel as JSON escapes")
  })
})

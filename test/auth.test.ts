// Authentication and roles against real replicas and the gateway (docs/security.md): a hello without
// a known token is refused and the connection closed; roles decide what a connection (or an HTTP
// request) may do; two tokens of one name both work (rotation); the replica's own gateway and the
// in-process gateway reach the replicas with the cluster secret; and no token or secret is written
// to any log, even when the auth file is broken.

import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { readdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import WebSocket from 'ws'
import { Unpackr } from 'msgpackr'
import { createClient, isKvError } from '../client/index.ts'
import { limits } from '../coordinator/limits.ts'
import { requestRoles, requestTypes } from '../coordinator/protocol/messages.ts'
import { roleAllows } from '../coordinator/auth/auth.ts'
import { packr, testCluster } from './helpers.ts'
import { checkHttpAuth, testAuthFile, testTokens } from './security-checks.ts'

const base = 18600
const tokens = testTokens
const authFile = testAuthFile

async function kindOf(p: Promise<unknown>): Promise<string> {
  try {
    await p
    return 'ok'
  } catch (e) {
    return isKvError(e) ? e.kind : `not a KvError: ${(e as Error).message}`
  }
}

/** A raw socket's first reply to `hello` carrying `token`, and how the socket ended. */
async function rawHello(url: string, token: string | undefined): Promise<{ reply: unknown[]; close?: number }> {
  const ws = new WebSocket(url)
  await new Promise<void>((ok, fail) => { ws.once('open', () => ok()); ws.once('error', fail) })
  const unpackr = new Unpackr({ useRecords: false })
  const reply = new Promise<unknown[]>(ok => ws.once('message', (d: Buffer) => ok((unpackr.unpack(d) as unknown[][])[0]!)))
  const closed = new Promise<number>(ok => ws.once('close', (code: number) => ok(code)))
  ws.send(packr.pack([['hello', 0, { protocol: limits.protocolVersion, client: 'auth-test', ...(token ? { token } : {}) }]]))
  const r = await reply
  if (r[0] === 'hello') { ws.close(); return { reply: r } }
  return { reply: r, close: await closed }
}

describe('authentication and roles', () => {
  let cluster: Awaited<ReturnType<typeof testCluster>>
  let gw: string
  let authPath: string
  const auth = (token: string) => ({ authorization: `Bearer ${token}` })

  before(async () => {
    const { mkdtemp } = await import('node:fs/promises')
    const { tmpdir } = await import('node:os')
    const dir = await mkdtemp(join(tmpdir(), 'ringkv-auth-'))
    authPath = join(dir, 'auth.json')
    await writeFile(authPath, JSON.stringify(authFile), { mode: 0o600 })
    cluster = await testCluster(base, { httpPort: base + 10, authFile: authPath, readyTimeoutMs: 120_000 })
    gw = cluster.gateway!.url
  })
  after(async () => { await cluster.cleanup() })

  it('gives every request type a role, and orders the roles', () => {
    for (const t of requestTypes) assert.ok(Object.hasOwn(requestRoles, t), `${t} has a role`)
    assert.equal(requestRoles.hello, 'none')
    assert.ok(roleAllows('write', 'read') && !roleAllows('read', 'write') && !roleAllows('admin', 'peer') && roleAllows('peer', 'admin'))
  })

  it('refuses a hello without a known token and closes the connection', async () => {
    for (const token of [undefined, 'not-a-known-token-at-all', tokens.reader.slice(0, -1), tokens.reader + 'x']) {
      const { reply, close } = await rawHello(cluster.seeds[0]!, token)
      assert.equal(reply[0], 'error')
      assert.equal((reply[2] as { kind: string }).kind, 'Unauthorized')
      assert.equal(close, 1008)
    }
    assert.equal((await rawHello(cluster.seeds[0]!, tokens.reader)).reply[0], 'hello')
  })

  it('SDK: no token or a wrong one is Unauthorized; read may get, not put; both rotated write tokens write', async () => {
    const seeds = cluster.seeds
    const none = createClient({ seeds, timeoutMs: 1500 })
    assert.equal(await kindOf(none.put('k', 'v')), 'Unauthorized')
    assert.equal(await kindOf(none.get('k')), 'Unauthorized', 'still Unauthorized while backing off')
    await none.close()
    const wrong = createClient({ seeds, timeoutMs: 1500, token: 'wrong-token-0123456789abcdef' })
    assert.equal(await kindOf(wrong.get('k')), 'Unauthorized')
    await wrong.close()

    const reader = createClient({ seeds, token: tokens.reader })
    assert.equal((await reader.get('auth:k')).found, false)
    assert.equal(await kindOf(reader.put('auth:k', 'v')), 'Forbidden')
    await reader.close()

    for (const [i, token] of [tokens.writerOld, tokens.writerNew].entries()) {
      const writer = createClient({ seeds, token })
      await writer.put(`auth:k${i}`, `v${i}`)
      assert.deepEqual((await writer.getString(`auth:k${i}`)).values, [`v${i}`])
      await writer.close()
    }
  })

  it('HTTP: 401 without or with a bad token, 403 for the wrong role, and /health says only its status to strangers', async () => {
    await checkHttpAuth(gw, 'h1')
  })

  it("replicas' HTTP: /admin needs admin, /metrics a token; their own gateway reaches its peers with the cluster secret", async () => {
    const r = cluster.replicas[0]!.httpUrl
    assert.equal((await fetch(`${r}/metrics`)).status, 401)
    assert.equal((await fetch(`${r}/metrics`, { headers: auth(tokens.reader) })).status, 200)
    assert.equal((await fetch(`${r}/admin/snapshot`, { method: 'POST', headers: auth(tokens.writerOld) })).status, 403)
    // Spellings of the same path: the role check sees the path the router routes.
    for (const p of ['/%61dmin/snapshot', '/./admin/snapshot', '/admin/snapshot?x=1']) {
      assert.equal((await fetch(`${r}${p}`, { method: 'POST', headers: auth(tokens.writerOld) })).status, 403, p)
    }
    // Past authentication: snapshots are off in this cluster, so BadRequest.
    assert.equal((await fetch(`${r}/admin/snapshot`, { method: 'POST', headers: auth(tokens.admin) })).status, 400)
    assert.equal((await fetch(`${r}/kv/rep`, { method: 'PUT', body: 'y', headers: auth(tokens.writerOld) })).status, 204)
    assert.equal(await (await fetch(`${cluster.replicas[2]!.httpUrl}/kv/rep?r=3`, { headers: auth(tokens.reader) })).text(), 'y')
    const metrics = await (await fetch(`${r}/metrics`, { headers: auth(tokens.reader) })).text()
    assert.match(metrics, /Unauthorized/, 'refused hellos are counted by kind')
  })

  it('a broken auth file stops a replica with a message that does not quote it', async () => {
    const bad = join(cluster.dir, 'bad-auth.json')
    const secretLike = 'secret-in-a-broken-file-0123456789'
    await writeFile(bad, `{ "tokens": [ { "name": "x", "token": "${secretLike}", "role": "superuser" } ] }`)
    const broken = join(cluster.dir, 'broken-auth.json')
    await writeFile(broken, `{ "tokens": [ { "name": "x", "token": "${secretLike}" `)
    for (const file of [bad, broken]) {
      const run = spawnSync(process.execPath, ['--import', 'tsx', 'replica/node/main.ts', '--id', 'n1', '--port', String(base + 20),
        '--data-dir', join(cluster.dir, 'never'), '--nodes', `n1=ws://127.0.0.1:${base + 20}`, '--auth-file', file,
        '--cluster-secret-file', join(cluster.dir, 'cluster-secret')], { encoding: 'utf8', timeout: 180_000 })
      assert.notEqual(run.status, 0)
      const out = run.stdout + run.stderr
      assert.match(out, /auth file/)
      assert.ok(!out.includes(secretLike), `the token leaked: ${out}`)
    }
  })

  it('a flood of hellos with bad tokens is refused one by one while a good client goes on', async () => {
    const good = createClient({ seeds: cluster.seeds, token: tokens.writerOld, timeoutMs: 15_000 })
    const { context } = await good.put('auth:flood', 'before')
    const results = await Promise.all(Array.from({ length: 100 }, (_, i) =>
      rawHello(cluster.seeds[i % 3]!, `bad-token-${i}-${'x'.repeat(i * 40)}`).catch(() => undefined)))
    const refused = results.filter(r => r && r.reply[0] === 'error' && (r.reply[2] as { kind: string }).kind === 'Unauthorized' && r.close === 1008).length
    // Some may be refused at the upgrade (503, handshakesInflightMax) instead: never accepted.
    assert.ok(results.every(r => r === undefined || r.reply[0] === 'error'), 'no bad token got a hello')
    assert.ok(refused > 0)
    await good.put('auth:flood', 'after', { context })
    assert.deepEqual((await good.getString('auth:flood')).values, ['after'])
    await good.close()
    const metrics = await (await fetch(`${cluster.replicas[0]!.httpUrl}/metrics`, { headers: auth(tokens.reader) })).text()
    assert.match(metrics, /hello_refused"?\}? [1-9]/)
  })

  it('a node joins with the cluster secret (gossip and handoff as peer); one with another secret is refused at once', { timeout: 300_000 }, async () => {
    const { startCluster } = await import('../infra/cluster.ts')
    const writer = createClient({ seeds: cluster.seeds, token: tokens.writerNew, timeoutMs: 10_000 })
    for (let i = 0; i < 200; i++) await writer.put(`auth-join:${i}`, `v${i}`)
    const joined = await startCluster({
      dataDir: join(cluster.dir, 'joined'), basePort: base + 30, replicas: 1, httpPort: 0, partitions: 64,
      join: cluster.seeds[0]!, authFile: authPath, clusterSecretFile: join(cluster.dir, 'cluster-secret'), readyTimeoutMs: 240_000,
    })
    try {
      const res = await fetch(`${cluster.replicas[0]!.httpUrl}/members`, { headers: auth(tokens.admin) })
      const m = await res.json() as { ring: { plan: unknown }; members: Array<{ node: string; status: string; partitions: number }> }
      const newNode = m.members.find(x => x.node === joined.replicas[0]!.id)!
      assert.equal(newNode.status, 'valid', 'the join completed: every transfer to it was acknowledged over an authenticated handoff')
      assert.ok(newNode.partitions > 0)
      const reader = createClient({ seeds: [joined.seeds[0]!], token: tokens.reader, timeoutMs: 10_000 })
      for (let i = 0; i < 200; i++) assert.deepEqual((await reader.getString(`auth-join:${i}`)).values, [`v${i}`])
      await reader.close()
    } finally {
      await joined.stop()
    }
    // A joiner holding another cluster secret: the seed refuses its gossip hello, and it gives up at once.
    const wrong = join(cluster.dir, 'wrong-secret')
    await writeFile(wrong, 'an-entirely-different-cluster-secret-0123456789\n', { mode: 0o600 })
    const intruderDir = join(cluster.dir, 'intruder')
    await assert.rejects(startCluster({
      dataDir: intruderDir, basePort: base + 35, replicas: 1, httpPort: 0, partitions: 64,
      join: cluster.seeds[0]!, authFile: authPath, clusterSecretFile: wrong, readyTimeoutMs: 120_000,
    }), /exited/)
    const logs = (await readdir(intruderDir)).filter(f => f.endsWith('.log'))
    const text = (await Promise.all(logs.map(f => readFile(join(intruderDir, f), 'utf8')))).join('')
    assert.match(text, /Unauthorized|unknown token/, 'it says why it could not join')
    await writer.close()
  })

  it('no log holds a token or the cluster secret', async () => {
    const secret = (await readFile(join(cluster.dir, 'cluster-secret'), 'utf8')).trim()
    const logs = (await readdir(cluster.dir)).filter(f => f.endsWith('.log'))
    assert.equal(logs.length, 3)
    for (const f of logs) {
      const text = await readFile(join(cluster.dir, f), 'utf8')
      assert.match(text, /"auth":\{"read":\["dashboard"\]/, `${f} names the tokens by name`)
      for (const t of [...Object.values(tokens), secret]) assert.ok(!text.includes(t), `${f} holds a token`)
    }
  })
})

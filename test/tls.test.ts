// Optional TLS: replicas and the gateway serve wss:// and https:// with a self-signed certificate
// made here with openssl; the SDK reaches wss:// seeds with the CA option (and fails without it),
// replicas reach each other and their own gateway coordinates over wss://, and auth rides on top.

import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { request } from 'node:https'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { createClient, isKvError } from '../client/index.ts'
import { testCluster } from './helpers.ts'

const base = 18640
const token = 'tls-write-token-0123456789abcdef'

/** An HTTPS request checked against `ca`: status and body. */
function httpsFetch(url: string, ca: Buffer | undefined, opts: { method?: string; body?: string; headers?: Record<string, string> } = {}): Promise<{ status: number; body: string }> {
  return new Promise((ok, fail) => {
    const req = request(url, { method: opts.method ?? 'GET', headers: opts.headers ?? {}, ...(ca ? { ca } : {}), timeout: 10_000 }, res => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', d => { body += d })
      res.on('end', () => ok({ status: res.statusCode ?? 0, body }))
    })
    req.on('error', fail)
    req.on('timeout', () => req.destroy(new Error('timeout')))
    req.end(opts.body)
  })
}

describe('TLS', () => {
  let dir: string
  let cluster: Awaited<ReturnType<typeof testCluster>>
  let ca: Buffer
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ringkv-tls-'))
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
      '-subj', '/CN=ringkv-test', '-addext', 'subjectAltName=IP:127.0.0.1',
      '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')], { stdio: 'ignore' })
    ca = await readFile(join(dir, 'cert.pem'))
    await writeFile(join(dir, 'auth.json'), JSON.stringify({ tokens: [{ name: 'app', token, role: 'write' }] }))
    cluster = await testCluster(base, {
      httpPort: base + 10, authFile: join(dir, 'auth.json'), readyTimeoutMs: 120_000,
      tls: { cert: join(dir, 'cert.pem'), key: join(dir, 'key.pem') },
    })
  })
  after(async () => {
    await cluster.cleanup()
    await rm(dir, { recursive: true, force: true })
  })

  it('serves wss:// to the SDK with the CA, and refuses a client without it', async () => {
    assert.ok(cluster.seeds.every(s => s.startsWith('wss://')))
    const kv = createClient({ seeds: cluster.seeds, token, ca })
    await kv.put('tls:k', 'over tls')
    assert.deepEqual((await kv.getString('tls:k', { r: 3 })).values, ['over tls'])
    await kv.close()
    const untrusting = createClient({ seeds: cluster.seeds, token, timeoutMs: 1500 })
    await assert.rejects(untrusting.get('tls:k'), e => isKvError(e) && e.kind === 'Unavailable')
    await untrusting.close()
  })

  it('serves https:// on the gateway and on replicas (whose own gateway coordinates over wss://)', async () => {
    const gw = cluster.gateway!.url
    assert.ok(gw.startsWith('https://'))
    const auth = { authorization: `Bearer ${token}` }
    assert.equal((await httpsFetch(`${gw}/kv/tls:h`, ca, { method: 'PUT', body: 'https', headers: auth })).status, 204)
    assert.deepEqual(await httpsFetch(`${gw}/kv/tls:h`, ca, { headers: auth }), { status: 200, body: 'https' })
    assert.deepEqual(await httpsFetch(`${cluster.replicas[1]!.httpUrl}/kv/tls:h?r=3`, ca, { headers: auth }), { status: 200, body: 'https' })
    assert.equal((await httpsFetch(`${gw}/kv/tls:h`, ca)).status, 401)
    await assert.rejects(httpsFetch(`${gw}/health`, undefined), /self-signed|certificate/)
  })
})

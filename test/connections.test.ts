// What one peer may cost a replica, against real processes: hello first (anything else, or nothing
// within helloTimeoutMs, closes the socket with 1008); caps on open connections and on connections
// awaiting hello (503 at the upgrade while /health still answers); a client that asks for big
// replies and never reads is paused and then closed, with the replica's memory bounded and other
// clients served meanwhile, while one that pipelines as much but reads gets every reply; slow HTTP
// headers time out on replica, gateway and embedded S3; /admin/snapshot calls share one snapshot and
// are rate-limited; data files are private (0700 dirs, 0600 files); embedded S3 refuses unsigned
// requests.

import assert from 'node:assert/strict'
import { readdir, readFile, stat, chmod } from 'node:fs/promises'
import { connect } from 'node:net'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import WebSocket from 'ws'
import { createClient, type KvClient } from '../client/index.ts'
import { limits } from '../coordinator/limits.ts'
import { bareSocket, dec, enc, eventually, packr, testCluster, type BareSocket } from './helpers.ts'

type TestCluster = Awaited<ReturnType<typeof testCluster>>

/** One sample from a replica's /metrics: the value of `name` with the given labels (0 when absent). */
async function metric(httpUrl: string, name: string, labels: Record<string, string> = {}): Promise<number> {
  const text = await (await fetch(`${httpUrl}/metrics`, { signal: AbortSignal.timeout(5000) })).text()
  for (const line of text.split('\n')) {
    if (!line.startsWith(name + '{')) continue
    if (Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) return Number(line.slice(line.lastIndexOf(' ') + 1))
  }
  return 0
}

/** Resident memory of a process, from /proc (Linux). */
async function rssBytes(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8')
  const kb = /^VmRSS:\s+(\d+) kB/m.exec(status)
  assert.ok(kb, `no VmRSS for ${pid}`)
  return Number(kb[1]) * 1024
}

/** The soft limit on open files of a process, from /proc (Linux). */
async function openFilesLimit(pid: number | 'self'): Promise<number> {
  const text = await readFile(`/proc/${pid}/limits`, 'utf8')
  const m = /^Max open files\s+(\d+|unlimited)/m.exec(text)
  assert.ok(m)
  return m[1] === 'unlimited' ? Number.MAX_SAFE_INTEGER : Number(m[1])
}

/** Opens a WebSocket; resolves once open, rejects with the server's refusal (e.g. "Unexpected server response: 503"). */
function openWs(url: string): Promise<WebSocket> {
  return new Promise((ok, fail) => {
    const ws = new WebSocket(url)
    ws.once('open', () => ok(ws))
    ws.once('error', fail)
  })
}

/** Drops sockets at once (no close handshake to wait for): the replica sees the TCP close. */
function closeAll(sockets: Array<BareSocket | WebSocket>): void {
  for (const s of sockets) s instanceof WebSocket ? s.terminate() : s.ws.terminate()
}

describe('connections and backpressure on a replica', () => {
  let cluster: TestCluster
  let kv: KvClient
  before(async () => {
    // No gossip: these tests count a replica's data-plane connections exactly, and peers' gossip
    // connections (refused while the replica is full, back when a slot frees) would race them.
    cluster = await testCluster(17801, { httpPort: 18801, extraArgs: ['--gossip-interval-ms', '0'] })
    kv = createClient({ seeds: cluster.seeds })
  })
  after(async () => { await kv.close(); await cluster.cleanup() })

  it('answers a request before hello with ProtocolError and closes (1008); after a hello requests work', async () => {
    const url = cluster.seeds[0]!
    const before = await metric(cluster.replicas[0]!.httpUrl, 'ringkv_connections_closed_total', { reason: 'hello_first' })
    // A get first.
    const a = await bareSocket(url, { hello: false })
    a.send(packr.pack([['get', 5, { key: enc.encode('k') }]]))
    const [t1, id1, b1] = await a.next() as [string, number, any]
    assert.equal(t1, 'error'); assert.equal(id1, 5); assert.equal(b1.kind, 'ProtocolError'); assert.match(b1.message, /hello first/)
    assert.equal((await a.closed).code, 1008)
    // Garbage and text frames first: the same.
    for (const frame of [new Uint8Array([0xc1, 0xff]), 'hello as text'] as const) {
      const s = await bareSocket(url, { hello: false })
      s.send(frame)
      const [t, , b] = await s.next() as [string, number, any]
      assert.equal(t, 'error'); assert.equal(b.kind, 'ProtocolError'); assert.match(b.message, /hello first/)
      assert.equal((await s.closed).code, 1008)
    }
    // A hello that fails (wrong protocol, bad body) closes too.
    for (const body of [{ protocol: limits.protocolVersion + 1, client: 'x' }, { protocol: 'one', client: 7 }, new Uint8Array(3)]) {
      const s = await bareSocket(url, { hello: false })
      s.send(packr.pack([['hello', 1, body]]))
      const [t, , b] = await s.next() as [string, number, any]
      assert.equal(t, 'error'); assert.ok(['ProtocolError', 'BadRequest'].includes(b.kind), b.kind)
      assert.equal((await s.closed).code, 1008)
    }
    assert.equal(await metric(cluster.replicas[0]!.httpUrl, 'ringkv_connections_closed_total', { reason: 'hello_first' }), before + 3)
    // A big frame before hello is cut off while it arrives (the replica does not buffer it whole).
    const flood = await bareSocket(url, { hello: false })
    flood.send(new Uint8Array(limits.frameBytesMax - 1024))
    assert.equal((await flood.closed).code, 1008)
    assert.equal(await metric(cluster.replicas[0]!.httpUrl, 'ringkv_connections_closed_total', { reason: 'hello_bytes' }), 1)
    // A hello and a request in one frame, a second hello, then requests: all answered.
    const s = await bareSocket(url, { hello: false })
    s.send(packr.pack([['hello', 1, { protocol: limits.protocolVersion, client: 't' }], ['put', 2, { key: enc.encode('hf'), context: {}, value: enc.encode('v') }]]))
    const replies = new Map<number, [string, any]>()
    for (let i = 0; i < 2; i++) { const [t, id, b] = await s.next() as [string, number, any]; replies.set(id, [t, b]) }
    assert.equal(replies.get(1)![0], 'hello'); assert.equal(replies.get(2)![0], 'put')
    s.send(packr.pack([['hello', 3, { protocol: limits.protocolVersion, client: 't' }], ['get', 4, { key: enc.encode('hf') }]]))
    const [t3] = await s.next() as [string]
    const [t4, , b4] = await s.next() as [string, number, any]
    assert.equal(t3, 'hello'); assert.equal(t4, 'get'); assert.equal(dec.decode(b4.state.siblings[0].value), 'v')
    s.close()
    // The SDK says hello first on its own.
    await kv.put('sdk-key', 'x')
    assert.equal(dec.decode((await kv.get('sdk-key')).values[0]!), 'x')
  })

  it('closes a socket that never says hello after helloTimeoutMs', async () => {
    const http = cluster.replicas[1]!.httpUrl
    const before = await metric(http, 'ringkv_connections_closed_total', { reason: 'hello_timeout' })
    const s = await bareSocket(cluster.seeds[1]!, { hello: false })
    const closed = await Promise.race([s.closed, new Promise<'open'>(ok => setTimeout(() => ok('open'), limits.helloTimeoutMs * 3))])
    assert.notEqual(closed, 'open', 'still open long after helloTimeoutMs')
    assert.equal((closed as { code: number }).code, 1008)
    assert.equal(await metric(http, 'ringkv_connections_closed_total', { reason: 'hello_timeout' }), before + 1)
  })

  it(`refuses upgrades past ${limits.handshakesInflightMax} connections awaiting hello, and takes one again once a hello is done`, async () => {
    const url = cluster.seeds[2]!
    const http = cluster.replicas[2]!.httpUrl
    await eventually(async () => assert.equal(await metric(http, 'ringkv_connections_awaiting_hello'), 0), 'no handshakes in flight')
    const waiting: BareSocket[] = []
    try {
      // Opened all at once: well within helloTimeoutMs, after which the replica would close them.
      waiting.push(...await Promise.all(Array.from({ length: limits.handshakesInflightMax }, () => bareSocket(url, { hello: false }))))
      assert.equal(await metric(http, 'ringkv_connections_awaiting_hello'), limits.handshakesInflightMax)
      await assert.rejects(openWs(url), /503/)
      assert.equal(await metric(http, 'ringkv_connections_refused_total', { reason: 'handshakes' }), 1)
      const health = await fetch(`${http}/health`)
      assert.equal(health.status, 200)
      waiting[0]!.send(packr.pack([['hello', 1, { protocol: limits.protocolVersion, client: 't' }]]))
      assert.equal((await waiting[0]!.next())[0], 'hello')
      const one = await openWs(url)
      one.terminate()
    } finally {
      closeAll(waiting)
    }
  })

  it(`refuses upgrades past ${limits.connectionsMax} open connections while /health still answers`, async t => {
    const need = limits.connectionsMax + 256
    const mine = await openFilesLimit('self')
    const replicaPid = cluster.replicas[0]!.pid!
    const theirs = await openFilesLimit(replicaPid)
    // Node raises its soft limit to the hard one at start; nothing more can be done from here.
    if (mine < need || theirs < need) {
      t.skip(`open-files limit ${mine} (test) / ${theirs} (replica) is below ${need}: cannot open ${limits.connectionsMax} sockets`)
      return
    }
    const url = cluster.seeds[0]!
    const http = cluster.replicas[0]!.httpUrl
    await eventually(async () => assert.equal(await metric(http, 'ringkv_connections_awaiting_hello'), 0), 'no handshakes in flight')
    const already = await metric(http, 'ringkv_connections_open')
    const sockets: BareSocket[] = []
    try {
      // In batches below the handshake cap, each saying hello.
      const batch = limits.handshakesInflightMax / 2
      while (sockets.length < limits.connectionsMax - already) {
        const n = Math.min(batch, limits.connectionsMax - already - sockets.length)
        sockets.push(...await Promise.all(Array.from({ length: n }, () => bareSocket(url))))
      }
      assert.equal(await metric(http, 'ringkv_connections_open'), limits.connectionsMax)
      await assert.rejects(openWs(url), /503/)
      await assert.rejects(openWs(url), /503/)
      assert.equal(await metric(http, 'ringkv_connections_refused_total', { reason: 'connections' }), 2)
      const health = await fetch(`${http}/health`)
      assert.equal(health.status, 200)
      // Every open connection still serves.
      const last = sockets[sockets.length - 1]!
      last.send(packr.pack([['get', 9, { key: enc.encode('sdk-key') }]]))
      assert.equal((await last.next())[0], 'get')
      sockets.pop()!.close()
      await eventually(async () => assert.equal(await metric(http, 'ringkv_connections_open'), limits.connectionsMax - 1), 'a slot freed')
      const again = await openWs(url)
      again.terminate()
    } finally {
      closeAll(sockets)
    }
    await eventually(async () => { const open = await metric(http, 'ringkv_connections_open'); assert.ok(open <= already, `${open} open, ${already} before`) }, 'connections closed')
  })

  it('pauses and then closes a client that asks for big replies and never reads; memory stays bounded and others are served', async () => {
    const replica = cluster.replicas[0]!
    const http = replica.httpUrl
    const big = new Uint8Array(limits.valueBytesDefault).fill(7)
    await kv.put('big-value', big, { w: 3 })
    const gets = 20 * limits.frameMessagesMax
    const rssBefore = await rssBytes(replica.pid!)
    const closedBefore = await metric(http, 'ringkv_connections_closed_total', { reason: 'reply_stalled' })
    const s = await bareSocket(cluster.seeds[0]!)
    ;(s.ws as unknown as { _socket: { pause(): void; resume(): void } })._socket.pause()
    // 5120 gets of a 1 MiB value: 5 GiB of replies if nothing held them back.
    for (let f = 0; f < gets / limits.frameMessagesMax; f++) {
      s.send(packr.pack(Array.from({ length: limits.frameMessagesMax }, (_, i) => ['get', f * limits.frameMessagesMax + i + 1, { key: enc.encode('big-value') }])))
    }
    let rssMax = rssBefore
    let served = 0
    const deadline = Date.now() + limits.replyStallMs * 3
    // Meanwhile another client writes and reads through the same replica, and must never fail.
    while (Date.now() < deadline) {
      await kv.put(`other:${served}`, `v${served}`)
      assert.deepEqual((await kv.get(`other:${served}`)).values.map(v => dec.decode(v)), [`v${served}`])
      served++
      rssMax = Math.max(rssMax, await rssBytes(replica.pid!))
      if (await metric(http, 'ringkv_connections_closed_total', { reason: 'reply_stalled' }) > closedBefore) break
    }
    assert.equal(await metric(http, 'ringkv_connections_closed_total', { reason: 'reply_stalled' }), closedBefore + 1, 'the non-reading client was not closed')
    assert.ok(served > 0)
    const growth = rssMax - rssBefore
    console.log(`non-reading client: replica RSS ${Math.round(rssBefore / 2 ** 20)} MiB -> peak ${Math.round(rssMax / 2 ** 20)} MiB; ${served} put+get pairs by another client meanwhile`)
    assert.ok(growth < limits.replyBufferedBytesMax * 3, `replica grew by ${Math.round(growth / 2 ** 20)} MiB`)
    ;(s.ws as unknown as { _socket: { resume(): void } })._socket.resume()
    await s.closed
    await eventually(async () => assert.equal(await metric(http, 'ringkv_connections_paused'), 0), 'no paused connection left')
  })

  it('bounds the reply backlog of many non-reading clients together, not only each one', async () => {
    const http = cluster.replicas[2]!.httpUrl
    const clients = 40
    await kv.put('big-many', new Uint8Array(limits.valueBytesDefault).fill(3), { w: 3 })
    const sockets: BareSocket[] = []
    for (let i = 0; i < clients; i += 20) sockets.push(...await Promise.all(Array.from({ length: 20 }, () => bareSocket(cluster.seeds[2]!))))
    try {
      // 64 MiB of replies asked for by each: 40 x 16 MiB would wait in the replica with per-connection bounds alone.
      for (const s of sockets) {
        ;(s.ws as unknown as { _socket: { pause(): void } })._socket.pause()
        s.send(packr.pack(Array.from({ length: 64 }, (_, i) => ['get', i + 1, { key: enc.encode('big-many') }])))
      }
      // The backlog builds up while the replica answers them; half the stall time covers that (the
      // closing of each one is the test above).
      let peak = 0
      let paused = 0
      const deadline = Date.now() + limits.replyStallMs / 2
      while (Date.now() < deadline) {
        peak = Math.max(peak, await metric(http, 'ringkv_reply_backlog_bytes'))
        paused = Math.max(paused, await metric(http, 'ringkv_connections_paused'))
        await new Promise(r => setTimeout(r, 100))
      }
      assert.equal(paused, clients, 'every non-reading client was paused')
      // Past the total each connection may have at most the one frame it sent before the total was seen.
      const bound = limits.replyBufferedBytesTotalMax + clients * (limits.valueBytesDefault + limits.frameBatchBytesMax)
      console.log(`${clients} non-reading clients: reply backlog peaked at ${Math.round(peak / 2 ** 20)} MiB (bound ${Math.round(bound / 2 ** 20)} MiB)`)
      assert.ok(peak > 0 && peak <= bound, `peak ${peak}`)
    } finally {
      closeAll(sockets)
    }
    await eventually(async () => assert.equal(await metric(http, 'ringkv_reply_backlog_bytes'), 0), 'backlog released')
  })

  it('gives a client that pipelines more replies than the backlog bound, and reads, every one of them', async () => {
    const http = cluster.replicas[1]!.httpUrl
    const stalled = await metric(http, 'ringkv_connections_closed_total', { reason: 'reply_stalled' })
    const backlog = await metric(http, 'ringkv_connections_closed_total', { reason: 'reply_backlog' })
    await kv.put('big-pipe', new Uint8Array(limits.valueBytesDefault).fill(5), { w: 3 })
    const s = await bareSocket(cluster.seeds[1]!)
    // 256 MiB of replies to one frame: four times replyBufferedBytesMax.
    s.send(packr.pack(Array.from({ length: limits.frameMessagesMax }, (_, i) => ['get', i + 1, { key: enc.encode('big-pipe') }])))
    const seen = new Set<number>()
    for (let i = 0; i < limits.frameMessagesMax; i++) {
      const [t, id, b] = await s.next() as [string, number, any]
      assert.equal(t, 'get')
      assert.equal(b.state.siblings[0].value.byteLength, limits.valueBytesDefault)
      seen.add(id)
    }
    assert.equal(seen.size, limits.frameMessagesMax)
    s.close()
    assert.equal(await metric(http, 'ringkv_connections_closed_total', { reason: 'reply_stalled' }), stalled)
    assert.equal(await metric(http, 'ringkv_connections_closed_total', { reason: 'reply_backlog' }), backlog)
  })
})

describe('HTTP timeouts, admin snapshots, file modes and embedded S3', () => {
  let cluster: TestCluster
  before(async () => {
    cluster = await testCluster(17811, { replicas: 1, n: 1, httpPort: 18811, s3: 'embedded', s3Port: 17899 })
  })
  after(async () => { await cluster.cleanup() })

  it('closes sockets that send half a request line on the replica, the gateway and the embedded S3', async () => {
    const ports = [cluster.replicas[0]!.port, Number(new URL(cluster.gateway!.url).port), cluster.s3!.port]
    const outcomes = await Promise.all(ports.map(port => new Promise<{ port: number; closed: boolean; reply: string }>(ok => {
      let reply = ''
      const sock = connect(port, '127.0.0.1', () => sock.write('GET /health HT'))
      sock.on('data', d => { reply += d.toString() })
      sock.on('error', () => { /* a reset counts as closed */ })
      const timer = setTimeout(() => { sock.destroy(); ok({ port, closed: false, reply }) }, limits.httpHeadersTimeoutMs * 3)
      sock.on('close', () => { clearTimeout(timer); ok({ port, closed: true, reply }) })
    })))
    for (const o of outcomes) {
      assert.ok(o.closed, `port ${o.port} kept a half-sent request open`)
      assert.match(o.reply, /^HTTP\/1\.1 408/, `port ${o.port}`)
    }
  })

  it('shares one snapshot among concurrent /admin/snapshot calls and refuses new ones within the interval (429)', async () => {
    const replica = cluster.replicas[0]!
    for (let i = 0; i < 20; i++) {
      const r = await fetch(`${replica.httpUrl}/kv/admin-${i}?w=1`, { method: 'PUT', body: `v${i}` })
      assert.equal(r.status, 204)
    }
    const seqBefore = (await (await fetch(`${replica.httpUrl}/health`)).json() as any).snapshot.lastManifestSeq ?? 0
    const flushesBefore = await metric(replica.httpUrl, 'ringkv_storage_flushes')
    const call = async () => {
      const r = await fetch(`${replica.httpUrl}/admin/snapshot`, { method: 'POST' })
      return { status: r.status, body: await r.json() as any }
    }
    const concurrent = await Promise.all(Array.from({ length: 20 }, call))
    const rapid = []
    for (let i = 0; i < 5; i++) rapid.push(await call())
    const all = [...concurrent, ...rapid]
    const ok = all.filter(r => r.status === 200)
    const refused = all.filter(r => r.status === 429)
    assert.equal(ok.length + refused.length, all.length, JSON.stringify(all.map(r => r.status)))
    assert.ok(ok.length >= 1)
    assert.equal(new Set(ok.map(r => r.body.seq)).size, 1, 'calls that succeeded shared one snapshot')
    for (const r of refused) {
      assert.equal(r.body.error.kind, 'Overloaded')
      assert.ok(r.body.error.retryAfterMs > 0 && r.body.error.retryAfterMs <= limits.adminSnapshotIntervalMs, JSON.stringify(r.body))
    }
    assert.ok(rapid.every(r => r.status === 429), 'calls after the shared one finished are refused within the interval')
    assert.equal(await metric(replica.httpUrl, 'ringkv_admin_snapshots_total', { outcome: 'started' }), 1)
    const seqAfter = (await (await fetch(`${replica.httpUrl}/health`)).json() as any).snapshot.lastManifestSeq
    assert.ok(seqAfter - seqBefore >= 1 && seqAfter - seqBefore <= 2, `manifests ${seqBefore} -> ${seqAfter}`)
    const flushes = await metric(replica.httpUrl, 'ringkv_storage_flushes')
    assert.ok(flushes - flushesBefore <= 1, `flushes ${flushesBefore} -> ${flushes}`)
  })

  it('keeps the data dir 0700 and every file in it 0600, and closes a data dir left open', async () => {
    const replica = cluster.replicas[0]!
    const check = async (dir: string): Promise<number> => {
      let files = 0
      const st = await stat(dir)
      assert.equal((st.mode & 0o777).toString(8), '700', dir)
      for (const e of await readdir(dir, { withFileTypes: true })) {
        const p = join(dir, e.name)
        if (e.isDirectory()) { files += await check(p); continue }
        assert.equal(((await stat(p)).mode & 0o777).toString(8), '600', p)
        files++
      }
      return files
    }
    // Writes and a snapshot happened in the test before; the WAL, tables, manifests are all here.
    assert.ok(await check(replica.dataDir) >= 3)
    assert.equal(((await stat(join(cluster.dir, 's3'))).mode & 0o777).toString(8), '700')
    await replica.kill('SIGTERM')
    await chmod(replica.dataDir, 0o755)
    await replica.start()
    assert.equal(((await stat(replica.dataDir)).mode & 0o777).toString(8), '700')
    const log = await readFile(join(cluster.dir, `${replica.id}.log`), 'utf8')
    assert.match(log, /data dir was open to other users; set it to 0700/)
  })

  it('refuses unsigned requests to the embedded S3 (snapshots, signed, go on working)', async () => {
    const endpoint = cluster.s3!.endpoint
    for (const [method, path] of [['GET', '/'], ['GET', '/ringkv'], ['GET', '/ringkv/ringkv/n1/manifests/'], ['PUT', '/ringkv/evil'], ['DELETE', '/ringkv']] as const) {
      const r = await fetch(`${endpoint}${path}`, { method, ...(method === 'PUT' ? { body: 'x' } : {}) })
      assert.equal(r.status, 403, `${method} ${path}`)
      assert.match(await r.text(), /AccessDenied/)
    }
    const replica = cluster.replicas[0]!
    await eventually(async () => {
      const r = await fetch(`${replica.httpUrl}/admin/snapshot`, { method: 'POST' })
      assert.equal(r.status, 200)
    }, 'a snapshot once the interval has passed', limits.adminSnapshotIntervalMs * 3)
  })
})

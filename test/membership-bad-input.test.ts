// Hostile membership input against a real cluster: gossip frames with garbage bodies, forged ring
// versions (2^53, and a leap of thousands), an unknown node claiming partitions, a node claiming an
// id already in the cluster, and a replica that joins under a duplicate id. Each gets a typed error
// (or, for the duplicate join, a clear refusal and a non-zero exit), and the cluster is unaffected:
// same ring version, no new member, writes and reads work. Ports 18020-18029.
//
// Gossip floods (a second cluster, ports 19250-19259): clients far past gossipReceivedPerSecMax get
// Overloaded while puts and gets go on; a heartbeat forged to the counter bound does not cut its
// node off; a client that sends gossip and never reads its replies does not grow the replica.

import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { join } from 'node:path'
import { readFile } from 'node:fs/promises'
import { createClient } from '../client/index.ts'
import { ReplicaProcess } from '../infra/cluster.ts'
import { bareSocket, eventually, packr, rawConnection, testCluster, type BareSocket } from './helpers.ts'
import { limits } from '../coordinator/limits.ts'

const base = 18020
let cluster: Awaited<ReturnType<typeof testCluster>>

interface MembersBody { ring: { version: number }; members: Array<{ node: string; status: string }> }
async function members(httpUrl: string): Promise<MembersBody> {
  return await (await fetch(`${httpUrl}/members`, { signal: AbortSignal.timeout(5000) })).json() as MembersBody
}

before(async () => {
  cluster = await testCluster(base, { partitions: 64, httpPort: 0, readyTimeoutMs: 60_000 })
})
after(async () => { await cluster?.cleanup() })

test('garbage gossip bodies get BadRequest; the connection and the cluster go on', async () => {
  const s = await bareSocket(cluster.seeds[0]!)
  const bodies: unknown[] = [
    'x', null, 42, [], {}, { from: 'n9' }, { from: 'n1', state: 'x' },
    { from: 'n1', state: { members: 'x', heartbeats: [], ring: null } },
    { from: 'n1', state: { members: [{ id: 'n1' }], heartbeats: [], ring: null } },
    { from: 'x'.repeat(10_000), state: { members: [], heartbeats: [], ring: null } },
    { from: 'n1', state: { members: [], heartbeats: Array.from({ length: 5000 }, (_, i) => [`h${i}`, 1]), ring: null } },
    { from: 'n1', state: { members: [], heartbeats: [['n1', -1]], ring: null } },
  ]
  for (const [i, body] of bodies.entries()) {
    s.send(packr.pack([['gossip', i + 1, body]]))
    const [type, id, reply] = await s.next() as [string, number, { kind: string }]
    assert.equal(type, 'error', `body ${i}`)
    assert.equal(id, i + 1)
    assert.equal(reply.kind, 'BadRequest', `body ${i}: ${JSON.stringify(reply).slice(0, 200)}`)
  }
  // A gossip whose sender is not in its own state.
  s.send(packr.pack([['gossip', 99, { from: 'ghost', state: { members: [], heartbeats: [], ring: null } }]]))
  const [type, , reply] = await s.next() as [string, number, { kind: string; message: string }]
  assert.equal(type, 'error')
  assert.match(reply.message, /not in the state/)
  s.close()
})

test('forged ring versions, an unknown node claiming partitions and a duplicate id are refused', async () => {
  const before = await members(cluster.replicas[0]!.httpUrl)
  const conn = rawConnection(cluster.seeds[0]!)
  // The cluster's own state, to forge from: gossip as n3 with n3's own url (harmless: it merges).
  const own = await conn.request('gossip', { from: 'n3', state: { members: [{ id: 'n3', url: cluster.seeds[2]!, status: 'valid', gen: 1, done: null }], heartbeats: [], ring: null } }, 5000)
  const state = own.state
  const ring = state.ring!
  const refusals: Array<[string, unknown, RegExp]> = [
    ['version 2^53', { ...state, ring: { ...ring, version: 2 ** 53 } }, /./],
    ['version leap', { ...state, ring: { ...ring, version: ring.version + 5000 } }, /leaps/],
    ['unknown node claiming partitions', {
      ...state,
      members: [...state.members, { id: 'zz-evil', url: 'ws://127.0.0.1:1', status: 'valid', gen: 1, done: null }],
      ring: { ...ring, version: ring.version + 1, owners: ring.owners.map((o, i) => (i % 2 ? 'zz-evil' : o)) },
    }, /unknown nodes claim/],
    ['owners that are not members', { ...state, ring: { ...ring, version: ring.version + 1, owners: ring.owners.map(() => 'nobody') } }, /members only/],
  ]
  for (const [what, forged, why] of refusals) {
    const e = await conn.request('gossip', { from: 'n3', state: forged as never }, 5000).then(() => undefined, err => err)
    assert.equal(e?.kind, 'BadRequest', what)
    assert.match(e.message, why, what)
  }
  // A second node under the id n2, at another url.
  const dup = { members: [{ id: 'n2', url: 'ws://127.0.0.1:18029', status: 'joining' as const, gen: 1, done: null }], heartbeats: [], ring: null }
  const e = await conn.request('gossip', { from: 'n2', state: dup }, 5000).then(() => undefined, err => err)
  assert.equal(e?.kind, 'BadRequest')
  assert.match(e.message, /already a member/)
  conn.close()
  for (const r of cluster.replicas) {
    const after = await members(r.httpUrl)
    assert.equal(after.ring.version, before.ring.version, `${r.id}: ring unchanged`)
    assert.deepEqual(after.members.map(m => `${m.node}:${m.status}`), ['n1:valid', 'n2:valid', 'n3:valid'])
  }
  const kv = createClient({ seeds: cluster.seeds, timeoutMs: 10_000 })
  await kv.put('after-forgery', 'ok')
  assert.deepEqual((await kv.getString('after-forgery')).values, ['ok'])
  await kv.close()
})

test('a replica that joins under an id already in the cluster is refused and exits non-zero', { timeout: 120_000 }, async () => {
  const dataDir = join(cluster.dir, 'dup', 'n2')
  const dup = new ReplicaProcess('n2', base + 5, dataDir, ['--id', 'n2', '--port', String(base + 5), '--data-dir', dataDir, '--join', cluster.seeds[0]!, '--partitions', '64'], {})
  // Its HTTP port answers before the join is refused, so start() may resolve: the exit code tells.
  await dup.start(60_000).catch(() => undefined)
  const code = await Promise.race([dup.exited(), new Promise<string>(ok => setTimeout(() => ok('still running'), 60_000))])
  dup.closeLog()
  if (code === 'still running') await dup.kill('SIGKILL')
  assert.equal(code, 1, 'the duplicate exits 1')
  const log = await readFile(join(cluster.dir, 'dup', 'n2.log'), 'utf8')
  assert.match(log, /already a member of this cluster/)
  const after = await members(cluster.replicas[1]!.httpUrl)
  assert.deepEqual(after.members.map(m => `${m.node}:${m.status}`), ['n1:valid', 'n2:valid', 'n3:valid'])
})

describe('gossip floods', () => {
  const floodBase = 19250
  let flood: Awaited<ReturnType<typeof testCluster>>
  before(async () => {
    flood = await testCluster(floodBase, { partitions: 16, httpPort: 0, readyTimeoutMs: 60_000, extraArgs: ['--gossip-interval-ms', '200'] })
  })
  after(async () => { await flood?.cleanup() })

  async function metric(httpUrl: string, name: string): Promise<number> {
    const text = await (await fetch(`${httpUrl}/metrics`, { signal: AbortSignal.timeout(5000) })).text()
    let sum = 0
    for (const line of text.split('\n')) if (line.startsWith(name + '{')) sum += Number(line.slice(line.lastIndexOf(' ') + 1))
    return sum
  }
  async function rssBytes(pid: number): Promise<number> {
    const kb = /^VmRSS:\s+(\d+) kB/m.exec(await readFile(`/proc/${pid}/status`, 'utf8'))
    assert.ok(kb)
    return Number(kb[1]) * 1024
  }
  /** The cluster's own state as n3 sees it, to gossip back (as n3, with n3's url: harmless, it merges). */
  async function ownState(): Promise<Record<string, any>> {
    const conn = rawConnection(flood.seeds[0]!)
    try {
      // Retried: right after a flood the replica may still shed gossip (Overloaded) for a second.
      return await eventually(async () => {
        const reply = await conn.request('gossip', { from: 'n3', state: { members: [{ id: 'n3', url: flood.seeds[2]!, status: 'valid', gen: 1, done: null }], heartbeats: [], ring: null } }, 5000)
        return reply.state as never
      }, 'the cluster state', 30_000)
    } finally { conn.close() }
  }
  /** Puts and gets through every replica until `stop()`; each must succeed. */
  let foregrounds = 0
  function foreground(): { stop(): Promise<number> } {
    const prefix = `fg${++foregrounds}`
    const kv = createClient({ seeds: flood.seeds, timeoutMs: 10_000 })
    let running = true
    let served = 0
    const done = (async () => {
      for (let i = 0; running && i < 100_000; i++) {
        // (a failure here rejects `done`, which stop() rethrows)
        await kv.put(`${prefix}:${i}`, `v${i}`, { w: 2 })
        assert.deepEqual((await kv.getString(`${prefix}:${i}`, { r: 2 })).values, [`v${i}`])
        served++
      }
    })()
    return { async stop() { running = false; try { await done } finally { await kv.close() } return served } }
  }

  test('a gossip flood far past the rate bound is answered Overloaded; puts and gets go on; memory stays bounded', { timeout: 180_000 }, async () => {
    const target = flood.replicas[0]!
    const state = await ownState()
    const versionBefore = (await members(target.httpUrl)).ring.version
    const overloadedBefore = await metric(target.httpUrl, 'ringkv_gossip_overloaded_total')
    const rssBefore = await rssBytes(target.pid!)
    const fg = foreground()
    const sockets: BareSocket[] = await Promise.all(Array.from({ length: 4 }, () => bareSocket(flood.seeds[0]!, { timeoutMs: 60_000 })))
    const kinds = new Map<string, number>()
    let rssMax = rssBefore
    try {
      // 4 clients, each with a frame of 256 gossips always in flight, for 10 s: tens of thousands of
      // gossips against 200 a second answered.
      const until = Date.now() + 10_000
      await Promise.all(sockets.map(async (s, c) => {
        for (let f = 0; Date.now() < until && f < 10_000; f++) {
          s.send(packr.pack(Array.from({ length: limits.frameMessagesMax }, (_, i) => ['gossip', f * limits.frameMessagesMax + i + 1, { from: 'n3', state }])))
          for (let i = 0; i < limits.frameMessagesMax; i++) {
            const [type, , body] = await s.next() as [string, number, { kind?: string }]
            const kind = type === 'error' ? body.kind! : type
            kinds.set(kind, (kinds.get(kind) ?? 0) + 1)
          }
          if (c === 0) rssMax = Math.max(rssMax, await rssBytes(target.pid!))
        }
      }))
    } finally {
      for (const s of sockets) s.close()
    }
    const served = await fg.stop()
    console.log(`gossip flood: replies ${JSON.stringify(Object.fromEntries(kinds))}; ${served} put+get pairs meanwhile; RSS ${Math.round(rssBefore / 2 ** 20)} -> peak ${Math.round(rssMax / 2 ** 20)} MiB`)
    assert.deepEqual([...kinds.keys()].filter(k => k !== 'gossip' && k !== 'Overloaded'), [], 'only gossip replies and Overloaded')
    assert.ok((kinds.get('Overloaded') ?? 0) > (kinds.get('gossip') ?? 0), 'most of the flood was shed')
    assert.ok(await metric(target.httpUrl, 'ringkv_gossip_overloaded_total') > overloadedBefore)
    assert.ok(served > 0, 'puts and gets went on')
    assert.ok(rssMax - rssBefore < 256 * 2 ** 20, `RSS grew by ${Math.round((rssMax - rssBefore) / 2 ** 20)} MiB`)
    // Membership is unharmed: same ring, everyone reachable, the replicas' own gossip still answered.
    await eventually(async () => {
      for (const r of flood.replicas) {
        const m = await members(r.httpUrl)
        assert.equal(m.ring.version, versionBefore)
        assert.ok(m.members.every((x: any) => x.reachable), JSON.stringify(m.members))
      }
    }, 'membership healthy after the flood', 30_000)
  })

  test('a heartbeat or member generation forged to the counter bound is refused: its node is not cut off', { timeout: 120_000 }, async () => {
    const state = await ownState()
    const forged = { ...state, heartbeats: [['n1', limits.membershipCounterMax], ...state.heartbeats.filter((h: [string, number]) => h[0] !== 'n1')].sort((a, b) => (a[0] < b[0] ? -1 : 1)) }
    // A member generation forged to the bound: the next change of n1's entry would pass it.
    const forgedGen = { ...state, members: state.members.map((m: { id: string; gen: number }) => (m.id === 'n1' ? { ...m, gen: limits.membershipCounterMax } : m)) }
    const conn = rawConnection(flood.seeds[1]!)
    for (const [what, body] of [['heartbeat', forged], ['generation', forgedGen]] as const) {
      const e = await conn.request('gossip', { from: 'n3', state: body as never }, 5000).then(() => undefined, err => err)
      assert.equal(e?.kind, 'BadRequest', `forged ${what} accepted: ${e?.message}`)
    }
    conn.close()
    // Whatever the answer, n1 goes on gossiping and stays reachable everywhere.
    const refusedBefore = await metric(flood.replicas[1]!.httpUrl, 'ringkv_gossip_refused_total')
    await new Promise(r => setTimeout(r, 3000))
    for (const r of flood.replicas) {
      const m = await members(r.httpUrl)
      assert.ok(m.members.every((x: any) => x.reachable), `${r.id}: ${JSON.stringify(m.members)}`)
    }
    assert.equal(await metric(flood.replicas[1]!.httpUrl, 'ringkv_gossip_refused_total'), refusedBefore, 'n1\'s gossip is not refused')
  })

  test('a client that floods gossip and never reads its replies does not grow the replica; others are served', { timeout: 120_000 }, async () => {
    const target = flood.replicas[2]!
    const state = await ownState()
    const rssBefore = await rssBytes(target.pid!)
    const s = await bareSocket(flood.seeds[2]!)
    ;(s.ws as unknown as { _socket: { pause(): void } })._socket.pause()
    // 51,200 gossips: more replies (mostly Overloaded) than the socket buffers hold, so a backlog builds.
    for (let f = 0; f < 200; f++) s.send(packr.pack(Array.from({ length: limits.frameMessagesMax }, (_, i) => ['gossip', f * limits.frameMessagesMax + i + 1, { from: 'n3', state }])))
    const fg = foreground()
    let rssMax = rssBefore
    let backlogMax = 0
    const deadline = Date.now() + limits.replyStallMs
    while (Date.now() < deadline) {
      rssMax = Math.max(rssMax, await rssBytes(target.pid!))
      backlogMax = Math.max(backlogMax, await metric(target.httpUrl, 'ringkv_reply_backlog_bytes'))
      await new Promise(r => setTimeout(r, 200))
    }
    const served = await fg.stop()
    s.close()
    console.log(`non-reading gossip client: reply backlog peaked at ${Math.round(backlogMax / 1024)} KiB; RSS ${Math.round(rssBefore / 2 ** 20)} -> peak ${Math.round(rssMax / 2 ** 20)} MiB; ${served} put+get pairs meanwhile`)
    assert.ok(served > 0)
    assert.ok(backlogMax <= limits.replyBufferedBytesMax + limits.frameBatchBytesMax, `backlog ${backlogMax}`)
    assert.ok(rssMax - rssBefore < 256 * 2 ** 20, `RSS grew by ${Math.round((rssMax - rssBefore) / 2 ** 20)} MiB`)
  })
})

// Hostile membership input against a real cluster: gossip frames with garbage bodies, forged ring
// versions (2^53, and a leap of thousands), an unknown node claiming partitions, a node claiming an
// id already in the cluster, and a replica that joins under a duplicate id. Each gets a typed error
// (or, for the duplicate join, a clear refusal and a non-zero exit), and the cluster is unaffected:
// same ring version, no new member, writes and reads work. Ports 18020-18029.

import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import { join } from 'node:path'
import { readFile } from 'node:fs/promises'
import { createClient } from '../client/index.ts'
import { ReplicaProcess } from '../infra/cluster.ts'
import { bareSocket, packr, rawConnection, testCluster } from './helpers.ts'

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

// Membership with real processes (docs/membership.md): a replica joins a 3-node cluster under a
// write load and ends up holding its share (about 3/4 of the keys with 4 nodes and N=3); a client
// with a stale ring gets NotOwner, refreshes, succeeds; a SIGSTOPped replica is marked unreachable
// by the others while writes keep their W acks; a killed replica is removed and its partitions are
// re-replicated to N copies; a replica leaves under load and exits 0 by itself. After each phase
// every acknowledged write is read back. One cluster goes through the phases in order (each is
// slow on a busy machine): join (4 nodes), NotOwner, SIGSTOP, leave (3), a second join (4), remove
// (3). Ports 18010-18019.

import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import { join } from 'node:path'
import { createClient } from '../client/index.ts'
import { startCluster, type Cluster } from '../infra/cluster.ts'
import { checkAllAcked, eventually, rawConnection, testCluster, writeLoad } from './helpers.ts'

const base = 18010
const partitions = 64
const gossip = ['--gossip-interval-ms', '200']
const longMs = 180_000

let cluster: Awaited<ReturnType<typeof testCluster>>
let joined: Cluster | undefined
let joined2: Cluster | undefined
const acked = new Map<string, string>()

interface MembersBody { ring: { version: number; plan: unknown }; members: Array<{ node: string; status: string; reachable: boolean; phi: number; partitions: number }> }

async function members(httpUrl: string): Promise<MembersBody> {
  const res = await fetch(`${httpUrl}/members`, { signal: AbortSignal.timeout(5000) })
  assert.equal(res.status, 200)
  return await res.json() as MembersBody
}

before(async () => {
  cluster = await testCluster(base, { partitions, extraArgs: gossip, httpPort: 0, readyTimeoutMs: 60_000 })
})

after(async () => {
  await joined?.stop()
  await joined2?.stop()
  await cluster?.cleanup()
})

test('join under a write load: the new node gets its share, nothing acknowledged is lost', { timeout: longMs * 2 }, async () => {
  const kv = createClient({ seeds: cluster.seeds, timeoutMs: 10_000 })
  // A client that learns the ring now and sends nothing during the join: its ring goes stale.
  const stale = createClient({ seeds: cluster.seeds, timeoutMs: 10_000 })
  await stale.ring()
  const load = writeLoad(kv, 'join', acked)
  let ok: number, failed: number
  try {
    await eventually(async () => assert.ok(acked.size >= 50, `${acked.size} acknowledged`), 'writes before the join', longMs)
    joined = await startCluster({
      dataDir: join(cluster.dir, 'joined'), basePort: base + 3, replicas: 1, httpPort: 0, partitions,
      join: cluster.seeds[0]!, extraArgs: gossip, readyTimeoutMs: longMs,
    })
  } finally {
    ({ ok, failed } = await load.stop())
  }
  const newNode = joined.replicas[0]!
  console.log(`join: ${ok} writes acknowledged during the join, ${failed} failed`)
  const view = await eventually(async () => {
    const m = await members(cluster.replicas[1]!.httpUrl)
    assert.equal(m.members.find(x => x.node === newNode.id)?.status, 'valid')
    assert.equal(m.ring.plan, null)
    return m
  }, 'every replica sees the join done', 30_000)
  assert.deepEqual(view.members.map(m => m.partitions).sort((a, b) => a - b), [16, 16, 16, 16])
  await checkAllAcked([...cluster.seeds, newNode.url], acked)

  // The new node holds its share: about 3/4 of the keys with 4 nodes and N=3.
  const conn = rawConnection(newNode.url)
  let held = 0
  for (const key of acked.keys()) {
    const reply = await conn.request('get', { key: new TextEncoder().encode(key) }, 5000).catch(e => e)
    if (!(reply instanceof Error) && reply.state !== null) held++
  }
  conn.close()
  const share = held / acked.size
  console.log(`join: the new node holds ${held} of ${acked.size} keys (${(share * 100).toFixed(1)} %)`)
  assert.ok(share > 0.6 && share < 0.9, `share ${share}`)

  // The stale client: its first requests go by the old ring; replicas that no longer hold a key
  // answer NotOwner with their ring version, and it refreshes and retries once.
  for (let i = 0; i < 40; i++) {
    await stale.put(`stale:${i}`, `s${i}`)
    acked.set(`stale:${i}`, `s${i}`)
  }
  assert.ok((await stale.ring()).nodes.some(n => n.id === newNode.id), 'the stale client learned the new ring')
  await stale.close()
  await kv.close()
})

test('a replica answers NotOwner, with its ring version, for a key it does not hold', async () => {
  const ring = await members(cluster.replicas[0]!.httpUrl)
  // Find a key whose preference list leaves n1 out.
  const kv = createClient({ seeds: cluster.seeds })
  let key = ''
  for (let i = 0; i < 1000 && key === ''; i++) {
    const e = await kv.endpoints(`probe:${i}`)
    if (!e.primaries.some(p => p.node === 'n1')) key = `probe:${i}`
  }
  await kv.close()
  assert.notEqual(key, '')
  const conn = rawConnection(cluster.replicas[0]!.url)
  const e = await conn.request('get', { key: new TextEncoder().encode(key) }, 5000).then(() => undefined, err => err)
  conn.close()
  assert.equal(e?.kind, 'NotOwner')
  assert.equal(e.data.ringVersion, ring.ring.version)
})

test('a restarted replica serves the ring it saved (MEMBERSHIP.json), with every peer paused, not its --nodes ring', { timeout: longMs }, async () => {
  const before = await members(cluster.replicas[0]!.httpUrl)
  assert.equal(before.members.length, 4, 'after the join: four members')
  const restarted = cluster.replicas[0]!
  const others = [cluster.replicas[1]!, cluster.replicas[2]!, joined!.replicas[0]!]
  for (const r of others) await r.kill('SIGSTOP')
  try {
    await restarted.kill('SIGKILL')
    await restarted.start(longMs)
    // Started with --nodes n1,n2,n3 and unable to hear from anyone: all it knows is what it saved.
    const after = await members(restarted.httpUrl)
    assert.equal(after.ring.version, before.ring.version)
    assert.deepEqual(after.members.map(m => [m.node, m.status, m.partitions]), before.members.map(m => [m.node, m.status, m.partitions]))
  } finally {
    for (const r of others) await r.kill('SIGCONT')
  }
  await eventually(async () => {
    const m = await members(cluster.replicas[1]!.httpUrl)
    assert.ok(m.members.every(x => x.reachable), JSON.stringify(m.members.map(x => [x.node, x.reachable])))
  }, 'everyone reachable again', 60_000)
})

test('SIGSTOP: the others mark the replica unreachable; writes keep their W acks', { timeout: longMs }, async () => {
  const victim = cluster.replicas[2]!
  await victim.kill('SIGSTOP')
  try {
    await eventually(async () => {
      const m = await members(cluster.replicas[0]!.httpUrl)
      const v = m.members.find(x => x.node === victim.id)!
      assert.equal(v.reachable, false, `phi ${v.phi}`)
    }, 'n1 marks the stopped replica unreachable', 60_000)
    const kv = createClient({ seeds: [cluster.seeds[0]!], timeoutMs: 10_000 })
    for (let i = 0; i < 30; i++) {
      await kv.put(`paused:${i}`, `p${i}`, { w: 2, timeoutMs: 5000 })
      acked.set(`paused:${i}`, `p${i}`)
    }
    await kv.close()
  } finally {
    await victim.kill('SIGCONT')
  }
  await eventually(async () => {
    const m = await members(cluster.replicas[0]!.httpUrl)
    assert.equal(m.members.find(x => x.node === victim.id)!.reachable, true)
  }, 'reachable again after SIGCONT', 60_000)
})

test('leave under a write load: the node hands everything off and exits 0; nothing is lost', { timeout: longMs * 2 }, async () => {
  const leaver = cluster.replicas[1]!
  const kv = createClient({ seeds: [cluster.seeds[0]!], timeoutMs: 10_000 })
  const load = writeLoad(kv, 'leave', acked)
  const exited = leaver.exited()
  let code: number | null | string
  let ok: number, failed: number
  try {
    const res = await fetch(`${cluster.replicas[0]!.httpUrl}/admin/leave/${leaver.id}`, { method: 'POST' })
    assert.equal(res.status, 200)
    code = await Promise.race([exited, new Promise<string>(ok => setTimeout(() => ok('timeout'), longMs))])
  } finally {
    ({ ok, failed } = await load.stop())
  }
  console.log(`leave: ${ok} writes acknowledged during the leave, ${failed} failed`)
  await kv.close()
  assert.equal(code, 0, 'the leaving node exits 0 by itself')
  const m = await members(cluster.replicas[0]!.httpUrl)
  assert.equal(m.members.find(x => x.node === leaver.id)!.status, 'left')
  await checkAllAcked([cluster.seeds[0]!, joined!.replicas[0]!.url], acked)
  // The leaving node's partitions went to the others: the three left hold 64 between them.
  const owned = m.members.filter(x => x.status === 'valid').map(x => x.partitions)
  assert.equal(owned.reduce((a, b) => a + b, 0), 64)
  assert.equal(owned.length, 3)
})

test('remove a killed replica: its partitions are re-replicated to N copies', { timeout: longMs * 2 }, async () => {
  const dead = cluster.replicas[2]!
  // A fourth node again first (the leave took the cluster to three), so N=3 copies can be had of three survivors.
  joined2 = await startCluster({
    dataDir: join(cluster.dir, 'joined2'), basePort: base + 4, replicas: 1, httpPort: 0, partitions,
    join: cluster.seeds[0]!, extraArgs: gossip, readyTimeoutMs: longMs,
  })
  await dead.kill('SIGKILL')
  const res = await fetch(`${cluster.replicas[0]!.httpUrl}/admin/remove/${dead.id}`, { method: 'POST' })
  assert.equal(res.status, 200)
  const survivors = [cluster.replicas[0]!, joined!.replicas[0]!, joined2.replicas[0]!]
  await eventually(async () => {
    for (const r of survivors) {
      const m = await members(r.httpUrl)
      assert.equal(m.ring.plan, null, `${r.id} still has a plan`)
      assert.equal(m.members.find(x => x.node === dead.id)!.partitions, 0)
    }
  }, 'the removal completes on every survivor', longMs)
  // Every acknowledged key is on all three survivors (N=3 of 3 nodes).
  const conns = survivors.map(r => rawConnection(r.url))
  const short: string[] = []
  for (const key of acked.keys()) {
    let copies = 0
    for (const c of conns) {
      const reply = await c.request('get', { key: new TextEncoder().encode(key) }, 5000).catch(e => e)
      if (!(reply instanceof Error) && reply.state !== null) copies++
    }
    if (copies < 3) short.push(`${key}:${copies}`)
  }
  for (const c of conns) c.close()
  assert.deepEqual(short.slice(0, 10), [], `${short.length} keys with fewer than 3 copies`)
  await checkAllAcked(survivors.map(r => r.url), acked)
})


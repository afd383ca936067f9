// The old owner drops what it handed off (docs/handoff.md, "Dropping what was handed off"), with real
// processes on ports 19200-19249. One cluster goes through the phases in order:
//   1. a 4th node joins under writes: every old owner ends with no key of a partition it lost (its
//      storage is opened and scanned while it is stopped), holds fewer keys than before, and every
//      acknowledged key reads back at R=2;
//   2. the resurrection the drop prevents: keys of partitions that moved off an old owner are
//      deleted, their tombstones reaped on the current primaries, then the 4th node leaves (the
//      partitions go back to the old owner): the keys must stay not found, after forced
//      anti-entropy too. Without the drop the old owner's stale live values come back;
//   3. a 5th node joins and an old owner is killed mid-drop: after its restart the drop resumes and
//      finishes, and its storage holds no key of a partition it lost.

import assert from 'node:assert/strict'
import { join } from 'node:path'
import { after, before, test } from 'node:test'
import { createClient } from '../client/index.ts'
import { partitionOfKey } from '../coordinator/ring/partition-hash.ts'
import { preferenceListOfPartition, type Ring } from '../coordinator/ring/ring.ts'
import { isDeleted } from '../coordinator/version/dvv.ts'
import { startCluster, type Cluster, type ReplicaProcess } from '../infra/cluster.ts'
import { decodeStored, mergeStates, settleStored } from '../replica/state-codec.ts'
import { openEngine } from '../replica/storage/engine.ts'
import { checkAllAcked, enc, eventually, rawConnection, testCluster, writeLoad } from './helpers.ts'

const base = 19200
const partitions = 16
const longMs = 240_000
/** Slow drops (20 keys a second, about 4 s per partition here) so that phase 3 can kill a replica in the middle of one. */
const args = ['--gossip-interval-ms', '200', '--tombstone-grace-ms', '2000', '--handoff-drop-keys-per-sec', '20']

let cluster: Awaited<ReturnType<typeof testCluster>>
let n4: Cluster | undefined
let n5: Cluster | undefined
/** Phase 3's join while it is under way, so that after() stops it even if the phase fails first. */
let joiningN5: Promise<Cluster> | undefined
const acked = new Map<string, string>()
/** Keys written before the join, for the resurrection phase. */
const resKeys = Array.from({ length: 200 }, (_, i) => `res:${i}`)

interface Drops { pending: number[]; dropping: { partition: number; keysDropped: number } | null; keysDropped: number; partitionsDropped: number; stopped: number }

async function drops(r: ReplicaProcess): Promise<Drops> {
  const res = await fetch(`${r.httpUrl}/transfers`, { signal: AbortSignal.timeout(5000) })
  return (await res.json() as { drops: Drops }).drops
}

async function members(httpUrl: string): Promise<{ ring: { version: number; plan: unknown }; members: Array<{ node: string; status: string }> }> {
  return await (await fetch(`${httpUrl}/members`, { signal: AbortSignal.timeout(5000) })).json() as never
}

async function ringOf(seeds: string[]): Promise<Ring> {
  const kv = createClient({ seeds, timeoutMs: 10_000 })
  try { return await kv.ring() } finally { await kv.close() }
}

const primariesOf = (ring: Ring, p: number): readonly string[] => preferenceListOfPartition(ring, p).primaries

/** Every key with a stored state (live or tombstone) in a stopped replica's storage, read directly. */
async function storedKeys(dataDir: string): Promise<string[]> {
  const engine = await openEngine({ dir: dataDir, merge: mergeStates, settle: settleStored })
  try {
    const out: string[] = []
    let after: string | undefined
    for (let i = 0; i < 10_000; i++) {
      const { entries, cursor } = engine.scan('', { limit: 1000, ...(after !== undefined ? { after } : {}) })
      for (const [key, value] of entries) if (!key.startsWith('\u0000') && decodeStored(value).state.siblings.length > 0) out.push(key)
      if (cursor === undefined) break
      after = cursor
    }
    return out
  } finally {
    await engine.close()
  }
}

/** Stops `r` cleanly, scans its storage, restarts it; returns the stored keys. */
async function scanStopped(r: ReplicaProcess): Promise<string[]> {
  await r.kill('SIGTERM')
  const keys = await storedKeys(r.dataDir)
  await r.start(longMs)
  return keys
}

/** Waits until no replica of `rs` has a plan or a partition left to drop, and returns their drop status. */
async function settled(rs: ReplicaProcess[]): Promise<Drops[]> {
  return await eventually(async () => {
    const out: Drops[] = []
    for (const r of rs) {
      assert.equal((await members(r.httpUrl)).ring.plan, null, `${r.id} still has a plan`)
      const d = await drops(r)
      assert.deepEqual([d.pending, d.dropping], [[], null], `${r.id} still drops: ${JSON.stringify(d)}`)
      out.push(d)
    }
    return out
  }, 'plans done and drops finished', longMs)
}

/** Fails when `keys` (a replica's storage) holds a key of a partition `node` is not a primary of in `ring`. */
function assertOnlyHeld(node: string, ring: Ring, keys: string[]): void {
  const foreign = keys.filter(k => !primariesOf(ring, partitionOfKey(ring.partitions, k)).includes(node))
  assert.deepEqual(foreign.slice(0, 10), [], `${node} still stores ${foreign.length} keys of partitions it no longer holds`)
}

before(async () => {
  cluster = await testCluster(base, { partitions, extraArgs: args, httpPort: 0, readyTimeoutMs: 90_000 })
})

after(async () => {
  await n4?.stop()
  n5 ??= await joiningN5?.catch(() => undefined)
  await n5?.stop()
  // RINGKV_KEEP_TEST_DIR=1 keeps the data dirs and logs (printed) to look at after a failure.
  if (process.env['RINGKV_KEEP_TEST_DIR']) { await cluster?.stop(); console.log(`kept ${cluster?.dir}`) } else await cluster?.cleanup()
})

test('join under writes: the old owners drop the partitions they lost; nothing acknowledged is lost', { timeout: longMs * 2 }, async () => {
  const kv = createClient({ seeds: cluster.seeds, timeoutMs: 10_000 })
  for (let i = 0; i < resKeys.length; i += 20) {
    await Promise.all(resKeys.slice(i, i + 20).map(k => eventually(() => kv.put(k, `v-${k}`, { w: 3 }), `put ${k}`, 30_000)))
  }
  const load = writeLoad(kv, 'join', acked)
  let ok: number, failed: number
  try {
    await eventually(async () => assert.ok(acked.size >= 300, `${acked.size} acknowledged`), 'writes before the join', longMs)
    n4 = await startCluster({
      dataDir: join(cluster.dir, 'n4'), basePort: base + 3, replicas: 1, httpPort: 0, partitions,
      join: cluster.seeds[0]!, extraArgs: args, readyTimeoutMs: longMs,
    })
  } finally {
    ({ ok, failed } = await load.stop())
  }
  await kv.close()
  console.log(`join: ${ok} writes acknowledged during the join, ${failed} failed`)
  const status = await settled(cluster.replicas)
  const ring = await ringOf(cluster.seeds)
  assert.equal(ring.nodes.length, 4)
  for (const [i, r] of cluster.replicas.entries()) {
    const lost = Array.from({ length: partitions }, (_, p) => p).filter(p => !primariesOf(ring, p).includes(r.id))
    console.log(`join: ${r.id} lost partitions ${lost.join(',')}; dropped ${status[i]!.partitionsDropped} partitions, ${status[i]!.keysDropped} keys`)
    assert.equal(status[i]!.partitionsDropped, lost.length, `${r.id} dropped every partition it lost`)
    assert.ok(lost.length === 0 || status[i]!.keysDropped > 0)
  }
  await checkAllAcked([...cluster.seeds, n4.seeds[0]!], acked, 2)
  // The old owner that lost the most, read from its own storage while stopped: before the join it
  // held every key (3 nodes, N=3); now only those of partitions it is a primary of.
  const lostBy = (id: string): number => Array.from({ length: partitions }, (_, p) => p).filter(p => !primariesOf(ring, p).includes(id)).length
  const a = [...cluster.replicas].sort((x, y) => lostBy(y.id) - lostBy(x.id))[0]!
  const keys = await scanStopped(a)
  assertOnlyHeld(a.id, ring, keys)
  const total = acked.size + resKeys.length
  console.log(`join: ${a.id} stores ${keys.length} keys of ${total} written`)
  assert.ok(keys.length < total, `${a.id} stores ${keys.length} of ${total}`)
})

test('a key deleted after its partition moved off a node stays deleted when the partition comes back', { timeout: longMs * 2 }, async () => {
  const withN4 = await ringOf(cluster.seeds)
  const olds = cluster.replicas.map(r => r.id)
  // Keys whose partition some old owner lost at the join.
  const moved = resKeys.filter(k => olds.some(id => !primariesOf(withN4, partitionOfKey(partitions, k)).includes(id)))
  assert.ok(moved.length > 0, 'some keys moved off an old owner')
  const kv = createClient({ seeds: cluster.seeds, timeoutMs: 10_000 })
  for (const k of moved) {
    const got = await kv.get(k, { r: 2 })
    await eventually(() => kv.delete(k, { context: got.context, w: 3 }), `delete ${k}`, 30_000)
  }
  // The tombstones are reaped on every current primary: a direct get finds nothing.
  const everyone = [...cluster.replicas, n4!.replicas[0]!]
  await eventually(async () => {
    for (const r of everyone) {
      const c = rawConnection(r.url, r.id)
      try {
        for (const k of moved) {
          if (!primariesOf(withN4, partitionOfKey(partitions, k)).includes(r.id)) continue
          const reply = await c.request('get', { key: enc.encode(k) }, 5000)
          assert.equal(reply.state, null, `${r.id} has not reaped ${k} yet`)
        }
      } finally { c.close() }
    }
  }, 'tombstones reaped on the primaries', longMs)
  // The 4th node leaves: its partitions go back to the old owners.
  const leaver = n4!.replicas[0]!
  const exited = leaver.exited()
  const res = await fetch(`${cluster.replicas[0]!.httpUrl}/admin/leave/${leaver.id}`, { method: 'POST' })
  assert.equal(res.status, 200)
  const code = await Promise.race([exited, new Promise<string>(ok => setTimeout(() => ok('timeout'), longMs))])
  assert.equal(code, 0, 'the 4th node leaves and exits 0')
  await settled(cluster.replicas)
  // Anti-entropy on demand on every replica, on top of the periodic loop.
  for (const r of cluster.replicas) {
    const started = await fetch(`${r.httpUrl}/admin/repair`, { method: 'POST' })
    assert.equal(started.status, 202)
    await eventually(async () => {
      const body = await (await fetch(`${r.httpUrl}/admin/repair`)).json() as { repair: { finishedAt: number | null } | null }
      assert.notEqual(body.repair?.finishedAt ?? null, null, `${r.id}: repair still running`)
    }, `repair on ${r.id}`, longMs)
  }
  const resurrected: string[] = []
  for (const r of cluster.replicas) {
    const c = rawConnection(r.url, r.id)
    for (const k of moved) {
      const reply = await c.request('get', { key: enc.encode(k) }, 5000)
      if (reply.state !== null && !isDeleted(reply.state)) resurrected.push(`${r.id}:${k}`)
    }
    c.close()
  }
  assert.deepEqual(resurrected.slice(0, 10), [], `${resurrected.length} deleted keys came back`)
  await kv.close()
  // A client that knows the ring after the leave (the one above still names the 4th node).
  const fresh = createClient({ seeds: cluster.seeds, timeoutMs: 10_000 })
  for (const k of moved) assert.equal((await fresh.get(k, { r: 3 })).found, false, `${k} reads not found`)
  await fresh.close()
  console.log(`resurrection: ${moved.length} keys deleted after they moved stay deleted after the partitions came back`)
  await checkAllAcked(cluster.seeds, acked, 2)
})

test('an old owner killed mid-drop finishes the drop after its restart', { timeout: longMs * 2 }, async () => {
  // Counters since each process started: earlier phases dropped partitions already.
  const before = new Map<string, number>()
  for (const r of cluster.replicas) before.set(r.id, (await drops(r)).partitionsDropped)
  // Watched from the launch on: on a busy machine the joiner may report itself a member only after
  // the old owners' drops have run.
  const joining = joiningN5 = startCluster({
    dataDir: join(cluster.dir, 'n5'), basePort: base + 4, replicas: 1, httpPort: 0, partitions,
    join: cluster.seeds[0]!, extraArgs: args, readyTimeoutMs: longMs,
  })
  joining.catch(() => undefined)
  // The first old owner seen between two partitions of this drop (one done, more pending) is killed.
  const victim = await eventually(async () => {
    for (const r of cluster.replicas) {
      const d = await drops(r)
      if (d.partitionsDropped > before.get(r.id)! && d.pending.length >= 1) return { r, d: { ...d, partitionsDropped: d.partitionsDropped - before.get(r.id)! } }
    }
    assert.fail('no replica caught mid-drop yet')
  }, 'an old owner mid-drop', longMs)
  await victim.r.kill('SIGKILL')
  console.log(`crash: ${victim.r.id} killed after dropping ${victim.d.partitionsDropped} partitions, ${victim.d.pending.length} pending`)
  await victim.r.start(longMs)
  n5 = await joining
  // Right after the restart nothing is pending yet (no peer heard, trees rebuilding): wait for the
  // restarted process itself to drop what was left.
  const after = await eventually(async () => {
    const d = await drops(victim.r)
    assert.ok(d.partitionsDropped >= 1 && d.pending.length === 0 && d.dropping === null, `the restarted ${victim.r.id} has not finished the drop: ${JSON.stringify(d)}`)
    return d
  }, 'the drop resumed after the restart', longMs)
  console.log(`crash: after its restart ${victim.r.id} dropped ${after.partitionsDropped} partitions, ${after.keysDropped} keys`)
  await settled(cluster.replicas)
  const ring = await ringOf(cluster.seeds)
  assertOnlyHeld(victim.r.id, ring, await scanStopped(victim.r))
  await checkAllAcked([...cluster.seeds, n5.seeds[0]!], acked, 2)
})

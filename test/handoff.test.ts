// Partition handoff with real processes (docs/handoff.md): two replicas with static membership hold
// the data; one streams a partition to a fresh third replica (POST /admin/transfer). The receiver
// must end up with every key of that partition and no other, each with the sender's exact state; a
// sender killed (SIGKILL) mid-transfer resumes from its saved progress when asked again; writes
// made while the transfer runs, and after it is done but before forwarding stops, reach the
// receiver. Then hostile `handoff` batches (bad checksum, garbage and forged states, keys of other
// partitions, oversized batches) are refused with typed errors and store nothing. Ports 18100-18119.

import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { createClient, type KvClient } from '../client/index.ts'
import { limits } from '../coordinator/limits.ts'
import { partitionOfKey } from '../coordinator/ring/partition-hash.ts'
import type { DvvSet } from '../coordinator/version/dvv.ts'
import { ReplicaProcess } from '../infra/cluster.ts'
import { handoffChecksum } from '../replica/handoff/handoff-batch.ts'
import { encodeState } from '../replica/state-codec.ts'
import { bareSocket, enc, eventually, packr, rawConnection, testCluster } from './helpers.ts'
import { testSeed } from './seed.ts'

const basePort = 18100
const partitions = 4
const moved = 1
const keyCount = 3000
/** Slow enough (16 KiB batches at 128 KiB/s) that a kill lands mid-transfer. */
const handoffArgs = ['--handoff-bytes-per-sec', String(128 * 1024), '--handoff-batch-bytes', String(16 * 1024)]

type Cluster = Awaited<ReturnType<typeof testCluster>>

interface Transfers { transfers: Array<{ partition: number; to: string; state: string; keysSent: number; resumedKeys?: number; error?: string }> }

async function transfers(r: ReplicaProcess): Promise<Transfers['transfers']> {
  const res = await fetch(`${r.httpUrl}/transfers`)
  assert.equal(res.status, 200)
  return ((await res.json()) as Transfers).transfers
}

async function startTransfer(from: ReplicaProcess, to: ReplicaProcess): Promise<void> {
  const res = await fetch(`${from.httpUrl}/admin/transfer`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ partition: moved, to: to.id, toUrl: to.url }),
  })
  assert.equal(res.status, 202, await res.text())
}

async function stateOn(r: ReplicaProcess, key: string): Promise<DvvSet | null> {
  const conn = rawConnection(r.url)
  try {
    return (await conn.request('get', { key: enc.encode(key) }, 5000)).state as DvvSet | null
  } finally {
    conn.close()
  }
}

/** Every key's state on `r`, read over one connection. */
async function statesOn(r: ReplicaProcess, keys: readonly string[]): Promise<Map<string, DvvSet | null>> {
  const conn = rawConnection(r.url)
  try {
    const out = new Map<string, DvvSet | null>()
    for (let i = 0; i < keys.length; i += 200) {
      const chunk = keys.slice(i, i + 200)
      const states = await Promise.all(chunk.map(k => conn.request('get', { key: enc.encode(k) }, 10_000)))
      chunk.forEach((k, j) => out.set(k, states[j]!.state as DvvSet | null))
    }
    return out
  } finally {
    conn.close()
  }
}

function receiver(dir: string): ReplicaProcess {
  const port = basePort + 2
  return new ReplicaProcess('n3', port, join(dir, 'n3'), [
    '--id', 'n3', '--port', String(port), '--data-dir', join(dir, 'n3'), '--nodes', `n3=ws://127.0.0.1:${port}`,
    '--partitions', String(partitions), '--n', '1',
  ], { S3_ENDPOINT: '' })
}

/** A put that retries (bounded) when the shared machine makes a stamp time out. */
async function putRetrying(kv: KvClient, key: string, v: string): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await kv.put(key, v)
      return
    } catch (e) {
      if (attempt >= 5) throw e
      await new Promise(r => setTimeout(r, 200 * attempt))
    }
  }
}

describe('partition handoff', () => {
  let cluster: Cluster
  let n3: ReplicaProcess
  let kv: KvClient
  const seed = testSeed('handoff keys')
  const keys = Array.from({ length: keyCount }, (_, i) => `user:${seed}:${i}`)
  const value = (i: number, v: number) => `${v}:${i}:`.padEnd(1024, 'x')
  const ofMoved = keys.filter(k => partitionOfKey(partitions, k) === moved)

  before(async () => {
    cluster = await testCluster(basePort, { replicas: 2, n: 2, partitions, extraArgs: handoffArgs })
    n3 = receiver(cluster.dir)
    await n3.start()
    kv = createClient({ seeds: cluster.seeds, timeoutMs: 10_000 })
    for (let i = 0; i < keys.length; i += 100) {
      await Promise.all(keys.slice(i, i + 100).map((k, j) => putRetrying(kv, k, value(i + j, 1))))
    }
  })

  after(async () => {
    await kv?.close()
    await n3?.kill('SIGTERM')
    n3?.closeLog()
    await cluster?.cleanup()
  })

  test('a killed sender resumes from its progress; the receiver ends with every key of the partition, identical, and writes meanwhile reach it', async () => {
    const [n1] = cluster.replicas as [ReplicaProcess, ReplicaProcess]
    assert.ok(ofMoved.length > keyCount / 8, `partition ${moved} holds ${ofMoved.length} keys`)
    await startTransfer(n1, n3)
    const killAt = Math.floor(ofMoved.length / 4)
    // Kill once the progress file (saved after acks, asynchronously) says a quarter is durable there.
    const savedAtKill = await eventually(async () => {
      const t = (await transfers(n1)).find(x => x.partition === moved)
      assert.equal(t?.state, 'streaming', 'killed before it finished')
      const saved = JSON.parse(await readFile(join(n1.dataDir, 'HANDOFF.json'), 'utf8')) as { transfers: Array<{ partition: number; keysSent: number }> }
      const keysSaved = saved.transfers.find(x => x.partition === moved)?.keysSent ?? 0
      assert.ok(keysSaved >= killAt, `saved ${keysSaved}`)
      return keysSaved
    }, 'transfer under way', 60_000)
    await n1.kill('SIGKILL')
    const atKill = (await statesOn(n3, ofMoved))
    const heldAtKill = [...atKill.values()].filter(s => s !== null).length
    assert.ok(heldAtKill >= killAt && heldAtKill < ofMoved.length, `receiver held ${heldAtKill} of ${ofMoved.length} at the kill`)

    await n1.start()
    await startTransfer(n1, n3)
    const resumed = (await transfers(n1)).find(x => x.partition === moved)!
    // Writes while it streams: overwrite keys already sent (only forwarding can bring those) and add new ones.
    const sorted = [...ofMoved].sort()
    const early = sorted.slice(0, 20)
    await Promise.all(early.map(k => putRetrying(kv, k, value(keys.indexOf(k), 2))))
    const fresh: string[] = []
    for (let i = keyCount; fresh.length < 10; i++) {
      const k = `user:${seed}:${i}`
      if (partitionOfKey(partitions, k) === moved) fresh.push(k)
    }
    await Promise.all(fresh.map(k => putRetrying(kv, k, 'fresh')))
    const done = await eventually(async () => {
      const t = (await transfers(n1)).find(x => x.partition === moved)
      assert.ok(t, 'transfer listed')
      assert.equal(t.state, 'done', `state ${t.state} ${t.error ?? ''}`)
      return t
    }, 'transfer done', 120_000)
    assert.ok((resumed.resumedKeys ?? 0) >= savedAtKill, `resumed from ${resumed.resumedKeys} acknowledged keys (${savedAtKill} saved before the kill), not from zero`)
    assert.equal(done.resumedKeys, resumed.resumedKeys)
    assert.ok(done.keysSent - (done.resumedKeys ?? 0) < ofMoved.length, 'the second run did not send the whole partition again')

    // After it is done and before forwarding stops, a write still reaches the receiver.
    await putRetrying(kv, early[0]!, 'after-done')
    const all = [...ofMoved, ...fresh]
    await eventually(async () => {
      const [want, got] = await Promise.all([statesOn(n1, all), statesOn(n3, all)])
      for (const k of all) assert.deepEqual(got.get(k), want.get(k), `state of ${k} on the receiver`)
    }, 'receiver holds the partition', 30_000)
    const last = await stateOn(n3, early[0]!)
    assert.ok(last?.siblings.some(s => s.value !== null && Buffer.from(s.value).toString() === 'after-done'), 'the write after done was forwarded')

    // Only that partition moved.
    const others = keys.filter(k => partitionOfKey(partitions, k) !== moved).slice(0, 200)
    for (const [k, s] of await statesOn(n3, others)) assert.equal(s, null, `${k} is not in partition ${moved}`)

    const metrics = await (await fetch(`${n1.httpUrl}/metrics`)).text()
    assert.match(metrics, /ringkv_handoff_transfers\{node="n1",state="done"\} 1/)
    assert.match(metrics, /ringkv_handoff_keys_total\{node="n1",direction="sent"\} [1-9]/)
    assert.match(metrics, /ringkv_handoff_forwards_total\{node="n1",outcome="sent"\} [1-9]/)
    const received = await (await fetch(`${n3.httpUrl}/metrics`)).text()
    const keysIn = Number(/ringkv_handoff_keys_total\{node="n3",direction="received"\} (\d+)/.exec(received)?.[1])
    assert.ok(keysIn >= ofMoved.length && keysIn < 2 * ofMoved.length, `receiver stored ${keysIn} handed-off keys for ${ofMoved.length}`)
  })

  test('POST /admin/transfer refuses bad requests', async () => {
    const n1 = cluster.replicas[0]!
    const post = (body: unknown) => fetch(`${n1.httpUrl}/admin/transfer`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
    for (const body of [{}, { partition: -1, to: 'n3', toUrl: n3.url }, { partition: partitions, to: 'n3', toUrl: n3.url },
      { partition: 0, to: 'n1', toUrl: n1.url }, { partition: 0, to: 'n3', toUrl: 'http://x' }, { partition: 0, to: 'x'.repeat(500), toUrl: n3.url }]) {
      const res = await post(body)
      assert.equal(res.status, 400, JSON.stringify(body))
      assert.equal(((await res.json()) as { error: { kind: string } }).error.kind, 'BadRequest')
    }
    const huge = await fetch(`${n1.httpUrl}/admin/transfer`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ partition: 0, to: 'n3', toUrl: n3.url, pad: 'x'.repeat(limits.adminBodyBytesMax) }) })
    assert.equal(huge.status, 413)
    const garbage = await fetch(`${n1.httpUrl}/admin/transfer`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"partition": 0,' })
    assert.equal(garbage.status, 400)
    assert.deepEqual((await transfers(n1)).filter(t => t.partition !== moved), [], 'nothing started')
  })

  test('hostile handoff batches are refused with typed errors and store nothing', async () => {
    const s = await bareSocket(n3.url)
    const hello = rawConnection(n3.url)
    let actor = ''
    try {
      actor = (await hello.request('hello', { protocol: limits.protocolVersion, client: 't' }, 5000)).actor
    } finally {
      hello.close()
    }
    const inPartition = (tag: string) => {
      for (let i = 0; ; i++) if (partitionOfKey(partitions, `${tag}:${i}`) === 2) return `${tag}:${i}`
    }
    const good = inPartition('hostile-good')
    const goodState = encodeState({ vv: { 'x.1': 1 }, siblings: [{ actor: 'x.1', counter: 1, value: enc.encode('v') }] })
    let id = 100
    const send = async (entries: Array<[Uint8Array, Uint8Array]>, opts: { checksum?: number; partition?: number } = {}) => {
      const partition = opts.partition ?? 2
      const body = { partition, seq: 0, from: 'evil', entries, checksum: opts.checksum ?? handoffChecksum(partition, 0, entries) }
      s.send(packr.pack([['handoff', ++id, body]]))
      return await s.next() as [string, number, { kind?: string; keys?: number }]
    }
    const expectRefused = async (what: string, kind: string, entries: Array<[Uint8Array, Uint8Array]>, opts?: { checksum?: number; partition?: number }) => {
      const [type, , body] = await send(entries, opts)
      assert.equal(type, 'error', `${what}: refused`)
      assert.equal(body.kind, kind, `${what}: ${JSON.stringify(body)}`)
      assert.equal(await stateOn(n3, good), null, `${what}: nothing stored`)
    }
    const goodEntry: [Uint8Array, Uint8Array] = [enc.encode(good), goodState]
    const other = (() => { for (let i = 0; ; i++) if (partitionOfKey(partitions, `hostile-other:${i}`) !== 2) return `hostile-other:${i}` })()

    await expectRefused('wrong checksum', 'ChecksumMismatch', [goodEntry], { checksum: 12345 })
    await expectRefused('garbage state', 'BadRequest', [goodEntry, [enc.encode(inPartition('g1')), Uint8Array.of(0xc1, 0xff, 0x00)]])
    await expectRefused('msgpack of the wrong shape', 'BadRequest', [goodEntry, [enc.encode(inPartition('g2')), packr.pack({ vv: {}, siblings: [] })]])
    await expectRefused('a dot not covered by its vector', 'BadRequest', [goodEntry,
      [enc.encode(inPartition('g3')), encodeState({ vv: { 'x.1': 1 }, siblings: [{ actor: 'x.1', counter: 7, value: null }] })]])
    await expectRefused('a counter above counterMax', 'BadRequest', [goodEntry,
      [enc.encode(inPartition('g4')), encodeState({ vv: { 'x.1': 2 ** 50 }, siblings: [{ actor: 'x.1', counter: 2 ** 50, value: null }] })]])
    await expectRefused("a dot of the receiver's own actor it never issued", 'BadRequest', [goodEntry,
      [enc.encode(inPartition('g5')), encodeState({ vv: { [actor]: 9 }, siblings: [{ actor, counter: 9, value: enc.encode('forged') }] })]])
    await expectRefused('a key of another partition', 'BadRequest', [goodEntry, [enc.encode(other), goodState]])
    await expectRefused('a key twice', 'BadRequest', [goodEntry, goodEntry])
    await expectRefused('a partition outside the ring', 'BadRequest', [goodEntry], { partition: partitions + 1 })
    await expectRefused('invalid UTF-8 key', 'BadRequest', [goodEntry, [Uint8Array.of(0xff, 0xfe), goodState]])
    const many = Array.from({ length: limits.handoffBatchKeysMax + 1 }, (_, i) => [enc.encode(`k${i}`), goodState] as [Uint8Array, Uint8Array])
    await expectRefused('too many entries', 'BadRequest', many)
    // Garbage bodies of every shape: each gets a BadRequest, and the connection goes on.
    for (const body of [null, 7, 'x', [], { partition: 2 }, { partition: 2, seq: 0, from: 'e', entries: 'no', checksum: 1 },
      { partition: 2, seq: -1, from: 'e', entries: [[good, goodState]], checksum: 1 }]) {
      s.send(packr.pack([['handoff', ++id, body]]))
      const [type, , reply] = await s.next() as [string, number, { kind: string }]
      assert.equal(type, 'error')
      assert.equal(reply.kind, 'BadRequest', JSON.stringify(body))
    }
    // And a good batch on the same connection is stored, acked after its fsync.
    const [type, , body] = await send([goodEntry])
    assert.equal(type, 'handoff', JSON.stringify(body))
    assert.equal(body.keys, 1)
    assert.deepEqual((await stateOn(n3, good))?.siblings.map(x => Buffer.from(x.value!).toString()), ['v'])
    s.close()
  })
})

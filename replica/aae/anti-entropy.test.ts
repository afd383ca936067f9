// Anti-entropy without sockets: real ReplicaServices over real engines in temp dirs, each exchange
// message encoded to a frame and decoded again, validated and answered by the peer's service exactly
// as the data plane would. Property tests (fast-check, seeded: RINGKV_SEED replays) that two trees
// differ exactly where the data differ, that the incremental tree equals one rebuilt from storage,
// and that after an exchange both replicas hold sync of both; tombstone reaping (no resurrection, no
// reused dots after a reap); and hostile peers (garbage, wrong shapes, lies: typed errors, nothing merged).

import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, test } from 'node:test'
import fc from 'fast-check'
import { KvError } from '../../coordinator/errors.ts'
import { decodeFrame, encodeFrame, type Message } from '../../coordinator/protocol/codec.ts'
import { parseReply } from '../../coordinator/protocol/fast-parse.ts'
import { keyHash32, partitionOfHash } from '../../coordinator/ring/partition-hash.ts'
import { createRing, preferenceListOfPartition, type Ring } from '../../coordinator/ring/ring.ts'
import { errorFromWire } from '../../coordinator/transport/connection.ts'
import { EMPTY, equals, isDeleted, sync, update, type DvvSet } from '../../coordinator/version/dvv.ts'
import { ReplicaService, type Grant } from '../replica-service.ts'

/** The requests here come from peers (no hello on these in-process calls): the peer role. */
const peerGrant: Grant = { role: 'peer', name: 'test' }
import { decodeStored, encodeState, mergeStates, settleStored } from '../state-codec.ts'
import { handoffChecksum } from '../handoff/handoff-batch.ts'
import { openEngine } from '../storage/engine.ts'
import type { Engine } from '../storage/engine-types.ts'
import { testSeed } from '../../test/seed.ts'
import { AntiEntropy, type AaePeer, type PeerRequestType } from './anti-entropy.ts'
import { contribution, differing, segmentOfHash, stateHash, TictacTree, treeShape } from './tictac-tree.ts'

const enc = new TextEncoder()
const dirs: string[] = []
after(async () => { for (const d of dirs) await rm(d, { recursive: true, force: true }) })

interface Replica {
  readonly id: string
  readonly engine: Engine
  readonly service: ReplicaService
  readonly aae: AntiEntropy
  readonly dir: string
}

/** A cluster of replicas in this process; `down` marks replicas others see as unreachable; `skewMs` moves every clock. */
class World {
  readonly replicas = new Map<string, Replica>()
  readonly down = new Set<string>()
  skewMs = 0
  /** Rewrites a reply before the asking replica sees it (a lying peer). */
  tamper: ((from: string, type: string, body: any) => any) | undefined
  constructor(readonly ring: Ring, readonly graceMs = 1000) {}

  async add(id: string, dir?: string): Promise<Replica> {
    dir ??= await mkdtemp(join(tmpdir(), `ringkv-aae-${id}-`))
    dirs.push(dir)
    const engine = await openEngine({ dir, merge: mergeStates, settle: settleStored, fsync: false })
    let service: ReplicaService | undefined
    const aae = new AntiEntropy({
      nodeId: id, actor: `${id}.1`, engine, ring: () => this.ring,
      runtime: { now: () => Date.now() + this.skewMs, setTimeout: (fn, ms) => setTimeout(fn, ms), clearTimeout: h => clearTimeout(h as NodeJS.Timeout) },
      peer: node => this.peer(node), isReachable: node => !this.down.has(node),
      applyState: (k, s) => service!.applyState(k, s), tombstoneGraceMs: this.graceMs, intervalMs: 3_600_000, log: () => {},
    })
    service = new ReplicaService({ nodeId: id, actor: `${id}.1`, engine, ring: () => this.ring, valueBytesMax: 1 << 20, aae })
    await aae.start()
    aae.close() // no periodic loop: tests run exchanges themselves
    const r = { id, engine, service, aae, dir }
    this.replicas.set(id, r)
    return r
  }

  /** An in-process peer: every request and reply goes through encodeFrame/decodeFrame and validation. */
  peer(node: string): AaePeer {
    return {
      request: <T extends PeerRequestType>(type: T, body: unknown) => new Promise<any>((ok, fail) => {
        const target = this.replicas.get(node)
        if (!target || this.down.has(node)) return fail(new KvError({ kind: 'Unavailable', node }, `${node} is down`))
        const [m] = decodeFrame(encodeFrame([[type, 1, body]])) as Message[]
        target.service.handle(m![0], m![1], m![2], msg => {
          const [rt, , rb] = decodeFrame(encodeFrame([msg]))[0] as Message
          if (rt === 'error') return fail(errorFromWire(rb, node))
          const parsed = parseReply(type, this.tamper ? this.tamper(node, type, rb) : rb)
          if (!parsed.success) return fail(new KvError({ kind: 'ProtocolError' }, `bad ${type} reply: ${parsed.error.message}`))
          ok(parsed.data)
        }, peerGrant)
      }),
    }
  }

  request(id: string, type: string, body: unknown): Promise<{ type: string; body: any }> {
    return new Promise(ok => this.replicas.get(id)!.service.handle(type, 7, body, msg => ok({ type: msg[0], body: msg[2] }), peerGrant))
  }
}

function read(r: Replica, key: string): DvvSet {
  const b = r.engine.get(key)
  return b === undefined ? EMPTY : decodeStored(b).state
}

/** Anti-entropy trees rebuilt from `r`'s storage alone, as at a restart (no peers, no loop). */
async function rebuiltFrom(r: Replica, ring: Ring): Promise<AntiEntropy> {
  const fresh = new AntiEntropy({
    nodeId: r.id, actor: `${r.id}.1`, engine: r.engine, ring: () => ring, runtime: { now: Date.now, setTimeout: (f, ms) => setTimeout(f, ms), clearTimeout: h => clearTimeout(h as NodeJS.Timeout) },
    peer: () => { throw new Error('unused') }, isReachable: () => true, applyState: async () => {}, tombstoneGraceMs: 0, log: () => {},
  })
  await fresh.start()
  fresh.close()
  return fresh
}

function partitionOf(ring: Ring, key: string): number {
  return partitionOfHash(keyHash32(key), ring.partitions)
}

/**
 * Consistent histories: per key a sequence of writes by outside actors (each a fresh dot), and
 * snapshots of it along the way. A replica holds sync of some snapshots (or nothing): any two
 * replicas' states of a key are then states of one history, as in a real cluster.
 */
const historyArb = fc.array(fc.record({
  actor: fc.constantFrom('x.1', 'y.1', 'z.1'),
  supersede: fc.boolean(),
  value: fc.option(fc.uint8Array({ minLength: 0, maxLength: 8 }), { nil: null, freq: 4 }),
}), { minLength: 1, maxLength: 5 })

function snapshots(history: { actor: string; supersede: boolean; value: Uint8Array | null }[]): DvvSet[] {
  let s: DvvSet = EMPTY
  const out: DvvSet[] = []
  for (const w of history) {
    s = update(s, w.supersede ? s.vv : {}, w.actor, w.value)
    out.push(s)
  }
  return out
}

/** Sync of the snapshots `mask` picks (bit i: snapshot i), EMPTY when none. */
function pick(snaps: DvvSet[], mask: number): DvvSet {
  let s: DvvSet = EMPTY
  snaps.forEach((x, i) => { if (mask & (1 << i)) s = sync(s, x) })
  return s
}

const keysArb = fc.uniqueArray(fc.string({ minLength: 1, maxLength: 12 }).filter(k => !k.includes('\u0000') && k.isWellFormed()), { minLength: 1, maxLength: 40 })
const caseArb = keysArb.chain(keys => fc.tuple(fc.constant(keys), fc.array(fc.tuple(historyArb, fc.nat(31), fc.nat(31)), { minLength: keys.length, maxLength: keys.length })))

test('two trees differ exactly in the segments where some key\'s history differs', () => {
  const seed = testSeed('tictac tree diff')
  fc.assert(fc.property(caseArb, ([keys, cases]) => {
    const a = new TictacTree()
    const b = new TictacTree()
    const expected = new Set<number>()
    keys.forEach((key, i) => {
      const [history, ma, mb] = cases[i]!
      const snaps = snapshots(history)
      const sa = pick(snaps, ma)
      const sb = pick(snaps, mb)
      const h = keyHash32(key)
      const seg = segmentOfHash(h)
      a.set(h, key, 0, contribution(h, sa))
      b.set(h, key, 0, contribution(h, sb))
      if (!equals(sa, sb)) expected.add(seg)
    })
    assert.deepEqual(new Set(differing(a.leaves, b.leaves)), expected)
    const branches = new Set([...expected].map(s => Math.floor(s / treeShape.width)))
    assert.deepEqual(new Set(differing(a.branches, b.branches)), branches)
    // Moving every key to b's state makes the trees equal; removing every key brings a tree back to
    // all zeros: XOR out is exact.
    keys.forEach((key, i) => {
      const [history, ma, mb] = cases[i]!
      const snaps = snapshots(history)
      const h = keyHash32(key)
      a.set(h, key, contribution(h, pick(snaps, ma)), contribution(h, pick(snaps, mb)))
    })
    assert.deepEqual(differing(a.leaves, b.leaves), [])
    assert.equal(a.size, b.size)
    keys.forEach((key, i) => {
      const h = keyHash32(key)
      a.remove(h, key, contribution(h, pick(snapshots(cases[i]![0]), cases[i]![2])))
    })
    assert.ok(a.leaves.every(x => x === 0) && a.branches.every(x => x === 0) && a.size === 0)
  }), { seed, numRuns: 200 })
})

test('a key\'s contribution ignores the order of actors and siblings and moves with any dot, flag or key', () => {
  const seed = testSeed('state hash spelling')
  const dotArb = fc.record({ actor: fc.string({ minLength: 1, maxLength: 6 }), counter: fc.oneof(fc.nat(), fc.constant(2 ** 53 - 1), fc.constant(2 ** 32)) })
  fc.assert(fc.property(fc.uniqueArray(dotArb, { selector: d => d.actor, minLength: 1, maxLength: 5 }), fc.nat(), fc.string({ maxLength: 12 }), (dots, pick, key) => {
    const h = keyHash32(key)
    const vv = Object.fromEntries(dots.map(d => [d.actor, d.counter]))
    const siblings = dots.map((d, i) => ({ actor: d.actor, counter: d.counter, value: i % 2 === 0 ? new Uint8Array([1]) : null }))
    const state: DvvSet = { vv, siblings }
    const h0 = stateHash(h, state)
    assert.ok(h0 > 0 && h0 < 2 ** 30, 'a stored state contributes 30 nonzero bits')
    const reordered: DvvSet = { vv: Object.fromEntries(dots.map(d => [d.actor, d.counter]).reverse()), siblings: [...siblings].reverse() }
    assert.equal(stateHash(h, reordered), h0, 'order does not matter')
    const i = pick % dots.length
    const d = dots[i]!
    const bumped = d.counter === 2 ** 53 - 1 ? d.counter - 1 : d.counter + 1
    assert.notEqual(stateHash(h, { vv: { ...vv, [d.actor]: bumped }, siblings }), h0, 'a vector entry moves it')
    assert.notEqual(stateHash(h, { vv, siblings: siblings.map((x, j) => j === i ? { ...x, counter: bumped } : x) }), h0, 'a dot moves it')
    assert.notEqual(stateHash(h, { vv, siblings: siblings.map((x, j) => j === i ? { ...x, value: x.value === null ? new Uint8Array([1]) : null } : x) }), h0, 'a tombstone flag moves it')
    assert.notEqual(stateHash(h, { vv, siblings: siblings.filter((_, j) => j !== i) }), h0, 'a sibling fewer moves it')
    assert.notEqual(stateHash(keyHash32(`${key}!`), state), h0, 'another key moves it')
  }), { seed, numRuns: 300 })
})

test('after an exchange both replicas hold sync of both; the live tree equals a rebuilt one', async () => {
  const seed = testSeed('aae exchange converges')
  const ring = createRing({ nodes: [{ id: 'A', url: 'ws://a' }, { id: 'B', url: 'ws://b' }, { id: 'C', url: 'ws://c' }], partitions: 8, n: 3 })
  let run = 0
  await fc.assert(fc.asyncProperty(caseArb, async ([keys, cases]) => {
    const world = new World(ring)
    const A = await world.add(`A`)
    const B = await world.add(`B`)
    run++
    const before = new Map<string, [DvvSet, DvvSet]>()
    for (const [i, key] of keys.entries()) {
      const [history, ma, mb] = cases[i]!
      const snaps = snapshots(history)
      const sa = pick(snaps, ma)
      const sb = pick(snaps, mb)
      if (sa.siblings.length > 0) await A.service.applyState(key, sa)
      if (sb.siblings.length > 0) await B.service.applyState(key, sb)
      before.set(key, [sa, sb])
    }
    for (let p = 0; p < ring.partitions; p++) {
      const r = await A.aae.exchange(p, 'B')
      assert.equal(r.full, true)
    }
    for (const [key, [sa, sb]] of before) {
      const want = sync(sa, sb)
      for (const [r, had] of [[A, sa], [B, sb]] as const) {
        const got = read(r, key)
        // A tombstone-only state is not copied onto a replica holding nothing: both read not found.
        if (had.siblings.length === 0 && isDeleted(want)) assert.ok(got.siblings.length === 0 || equals(got, want), `${r.id} ${key}`)
        else assert.ok(equals(got, want), `${r.id} holds sync of both for ${JSON.stringify(key)}`)
      }
    }
    // Incremental maintenance equals a rebuild from storage, and it needed no correction from an
    // exchange's listing (which would hide a wrong old state on the write path).
    for (const r of [A, B]) {
      assert.equal(r.aae.counters.segmentsCorrected, 0, `${r.id}: no segment needed correcting`)
      const fresh = await rebuiltFrom(r, ring)
      for (let p = 0; p < ring.partitions; p++) {
        const live = await world.request(r.id, 'aaeRoot', { partition: p, shape: treeShape })
        const rebuilt = fresh.serve('aaeRoot', { partition: p, shape: treeShape }) as { branches: Uint8Array }
        assert.deepEqual(Buffer.from(live.body.branches), Buffer.from(rebuilt.branches), `${r.id} partition ${p}: live tree = rebuilt tree`)
      }
    }
    await A.engine.close()
    await B.engine.close()
  }), { seed, numRuns: 12 })
  assert.ok(run > 0)
})

test('a segment whose hash went wrong is set from its keys when a peer lists them, and nothing is repaired', async () => {
  const ring = createRing({ nodes: [{ id: 'A', url: 'ws://a' }, { id: 'B', url: 'ws://b' }, { id: 'C', url: 'ws://c' }], partitions: 4, n: 3 })
  const world = new World(ring)
  const A = await world.add('A')
  const B = await world.add('B')
  const keys = Array.from({ length: 200 }, (_, i) => `k${i}`)
  for (const key of keys) {
    const state = update(EMPTY, {}, 'x.1', enc.encode(key))
    await A.service.applyState(key, state)
    await B.service.applyState(key, state)
  }
  const key = keys[17]!
  const p = partitionOf(ring, key)
  const segment = segmentOfHash(keyHash32(key))
  const root = async (r: Replica): Promise<Buffer> => Buffer.from((await world.request(r.id, 'aaeRoot', { partition: p, shape: treeShape })).body.branches)
  const good = await root(A)
  assert.deepEqual(await root(B), good)
  // As if a write had been accounted against the wrong old state: A's segment no longer matches its keys.
  const tree = (A.aae as unknown as { partitions: Map<number, { tree: TictacTree }> }).partitions.get(p)!.tree
  assert.equal(tree.correct(segment, (tree.leaves[segment]! ^ 0x5a5a5a5) >>> 0), true)
  assert.notDeepEqual(await root(A), good)
  // B asks A: A lists the segment's keys, reads every state, and sets the segment from them.
  const r = await B.aae.exchange(p, 'A')
  assert.equal(r.keysRepaired, 0, 'the keys were equal all along')
  assert.equal(A.aae.counters.segmentsCorrected, 1)
  assert.deepEqual(await root(A), good)
  assert.deepEqual(await B.aae.exchange(p, 'A'), { full: true, keysRepaired: 0 })
  assert.equal(B.aae.counters.exchanges.clean, 1, 'the next exchange finds equal roots')
  assert.equal(A.aae.counters.segmentsCorrected, 1)
  await A.engine.close()
  await B.engine.close()
})

test('a write the engine refuses leaves the tree as it was: put, replicate, a merge, and a handoff batch cut short', async () => {
  const ring = createRing({ nodes: [{ id: 'A', url: 'ws://a' }, { id: 'B', url: 'ws://b' }, { id: 'C', url: 'ws://c' }], partitions: 4, n: 3 })
  const world = new World(ring)
  const A = await world.add('A')
  // Keys of partition 0, where the handoff batch goes.
  const named: string[] = []
  for (let i = 0; named.length < 6; i++) if (partitionOf(ring, `k${i}`) === 0) named.push(`k${i}`)
  const [k0, k1, k2, h1, h2, h3] = named as [string, string, string, string, string, string]
  const roots = async (): Promise<Buffer> => Buffer.from((await world.request('A', 'aaeRoot', { partition: 0, shape: treeShape })).body.branches)
  assert.equal((await world.request('A', 'put', { key: enc.encode(k0), context: {}, value: enc.encode('v1') })).type, 'put')
  const before = await roots()
  // The engine fills up after two more writes (as when its memtables fill midway through a batch).
  let full = false
  let puts = 0
  const engine = A.engine as Engine & { refusal: () => KvError | undefined; put: Engine['put'] }
  const { refusal, put: realPut } = engine
  engine.refusal = () => (full ? new KvError({ kind: 'Overloaded', retryAfterMs: 5 }, 'memtables full (test)') : undefined)
  engine.put = (...args) => {
    const done = realPut.apply(engine, args)
    if (++puts === 2) full = true
    return done
  }
  const state = (v: string): DvvSet => update(EMPTY, {}, 'x.1', enc.encode(v))
  const entries: Array<[Uint8Array, Uint8Array]> = [h1, h2, h3].map(k => [enc.encode(k), encodeState(state(k))])
  const batch = await world.request('A', 'handoff', { partition: 0, seq: 1, from: 'B', entries, checksum: handoffChecksum(0, 1, entries) })
  assert.equal(batch.type, 'error', JSON.stringify(batch.body))
  assert.equal(batch.body.kind, 'Overloaded')
  // The batch's first two writes were taken (and counted), the third neither.
  assert.deepEqual([h1, h2, h3].map(k => read(A, k).siblings.length), [1, 1, 0])
  const put = await world.request('A', 'put', { key: enc.encode(k0), context: {}, value: enc.encode('v2') })
  assert.deepEqual([put.type, put.body.kind], ['error', 'Overloaded'])
  const rep = await world.request('A', 'replicate', { key: enc.encode(k1), state: state('r') })
  assert.deepEqual([rep.type, rep.body.kind], ['error', 'Overloaded'])
  await assert.rejects(A.service.applyState(k2, state('m')), (e: KvError) => e.kind === 'Overloaded')
  engine.refusal = refusal
  engine.put = realPut
  // The tree holds exactly what storage holds: k0's first value and h1, h2.
  assert.notDeepEqual(await roots(), before, 'h1 and h2 were counted')
  const fresh = await rebuiltFrom(A, ring)
  assert.deepEqual(await roots(), Buffer.from((fresh.serve('aaeRoot', { partition: 0, shape: treeShape }) as { branches: Uint8Array }).branches))
  await A.engine.close()
})

test('a sweep compares every shared partition in one request, counts equal ones clean and queues only the differing ones', async () => {
  const ring = createRing({ nodes: [{ id: 'A', url: 'ws://a' }, { id: 'B', url: 'ws://b' }, { id: 'C', url: 'ws://c' }], partitions: 16, n: 3 })
  const world = new World(ring)
  for (const id of ['A', 'B', 'C']) await world.add(id)
  const [A, B] = [world.replicas.get('A')!, world.replicas.get('B')!]
  const keys = Array.from({ length: 200 }, (_, i) => `s${i}`)
  for (const k of keys) {
    const s = update(EMPTY, {}, 'x.1', enc.encode(k))
    for (const r of world.replicas.values()) await r.service.applyState(k, s)
  }
  // B misses one key's second write: exactly that key's partition differs between A and B.
  const missed = keys[7]!
  const newer = update(read(A, missed), read(A, missed).vv, 'y.1', enc.encode('newer'))
  await A.service.applyState(missed, newer)
  await world.replicas.get('C')!.service.applyState(missed, newer)
  const served = new Map<string, number>()
  const inner = world.peer.bind(world)
  world.peer = node => ({ request: (type, body) => { served.set(type, (served.get(type) ?? 0) + 1); return inner(node).request(type, body) } })
  // The round robin over peers: sweep until B's turn came.
  for (let i = 0; i < 2 && served.get('aaeRoots') !== 2; i++) await A.aae.sweep()
  assert.equal(served.get('aaeRoots'), 2, 'one request per peer for all 16 partitions')
  assert.equal(served.get('aaeRoot') ?? 0, 0, 'no per-partition exchange during a sweep')
  // Of 16 partitions shared with each of B and C, C matched all of them and B all but one.
  assert.equal(A.aae.counters.exchanges.clean, 31)
  const passes = A.aae.lastFullPasses()
  assert.equal([...passes.values()].filter(t => t === null).length, 1, 'every partition but the differing one has had a full pass with both peers')
  assert.equal(passes.get(partitionOf(ring, missed)), null)
  // The differing partition is repaired by a full exchange (which the loop runs next); the other replica then agrees.
  await A.aae.exchange(partitionOf(ring, missed), 'B')
  assert.ok(equals(read(B, missed), read(A, missed)), 'B holds the write it missed')
  for (const r of world.replicas.values()) await r.engine.close()
})

test('an exchange walks only the branches that differ again after the sweep (Tictac root confirm): a difference that settled is not fetched', async () => {
  const ring = createRing({ nodes: [{ id: 'A', url: 'ws://a' }, { id: 'B', url: 'ws://b' }, { id: 'C', url: 'ws://c' }], partitions: 4, n: 3 })
  const world = new World(ring)
  for (const id of ['A', 'B', 'C']) await world.add(id)
  const [A, B] = [world.replicas.get('A')!, world.replicas.get('B')!]
  // B misses one write: its branch differs between A and B, and stays so.
  const key = 'confirm-me'
  const p = partitionOf(ring, key)
  await A.service.applyState(key, update(EMPTY, {}, 'x.1', enc.encode('v')))
  const branch = segmentOfHash(keyHash32(key)) >>> Math.log2(treeShape.width)
  const other = (branch + 1) % treeShape.width
  const served = new Map<string, number>()
  const inner = world.peer.bind(world)
  world.peer = node => ({ request: (type, body) => { served.set(type, (served.get(type) ?? 0) + 1); return inner(node).request(type, body) } })
  // The sweep saw only another branch differ (a write in flight then, landed since): nothing is walked or fetched.
  const unconfirmed = await A.aae.exchange(p, 'B', [other])
  assert.deepEqual(unconfirmed, { full: false, keysRepaired: 0 })
  assert.equal(A.aae.counters.exchanges.unconfirmed, 1)
  assert.equal(served.get('aaeBranches') ?? 0, 0, 'no branch walked')
  assert.equal(served.get('aaeKeys') ?? 0, 0, 'no key fetched')
  assert.equal(A.aae.lastFullPasses().get(p), null, 'not a full exchange: the difference was not compared')
  assert.ok(equals(read(B, key), EMPTY), 'B still lacks the write')
  // The sweep saw this branch differ and it still does: repaired.
  const confirmed = await A.aae.exchange(p, 'B', [other, branch])
  assert.equal(confirmed.keysRepaired, 1)
  assert.equal(confirmed.full, true)
  assert.ok(equals(read(B, key), read(A, key)), 'B holds the write it missed')
  for (const r of world.replicas.values()) await r.engine.close()
})

/** A 3-replica world and a key written through A, replicated to `to`. */
async function written(world: World, key: string, to: string[]): Promise<DvvSet> {
  const put = await world.request('A', 'put', { key: enc.encode(key), context: {}, value: enc.encode('v1') })
  assert.equal(put.type, 'put')
  const state = read(world.replicas.get('A')!, key)
  for (const id of to) await world.replicas.get(id)!.service.applyState(key, state)
  return state
}

async function exchangeAll(world: World, partition: number): Promise<void> {
  for (const a of world.replicas.values()) {
    for (const b of world.replicas.keys()) {
      if (b === a.id || world.down.has(a.id) || world.down.has(b)) continue
      await a.aae.exchange(partition, b)
    }
  }
}

test('tombstones: a replica that missed the delete brings nothing back, before or after the grace; a re-created key gets fresh dots', async () => {
  const ring = createRing({ nodes: [{ id: 'A', url: 'ws://a' }, { id: 'B', url: 'ws://b' }, { id: 'C', url: 'ws://c' }], partitions: 4, n: 3 })
  const world = new World(ring, 1000)
  for (const id of ['A', 'B', 'C']) await world.add(id)
  const [A, B, C] = ['A', 'B', 'C'].map(id => world.replicas.get(id)!) as [Replica, Replica, Replica]
  const key = 'doomed'
  const p = partitionOf(ring, key)
  const v1 = await written(world, key, ['B', 'C'])
  // C goes down; the delete lands on A and B only.
  world.down.add('C')
  const del = await world.request('A', 'put', { key: enc.encode(key), context: v1.vv, value: null })
  assert.equal(del.type, 'put')
  await B.service.applyState(key, read(A, key))
  // Before the grace, and after it: no reap while C is unreachable.
  await exchangeAll(world, p)
  assert.equal(A.aae.reap(p) + B.aae.reap(p), 0)
  world.skewMs += 5000
  await exchangeAll(world, p)
  assert.equal(A.aae.reap(p) + B.aae.reap(p), 0, 'no reap while a primary is unreachable')
  assert.ok(isDeleted(read(A, key)) && read(A, key).siblings.length > 0, 'A still holds the tombstone')
  // C comes back holding the old value: anti-entropy gives it the tombstone, not the value to the others.
  world.down.delete('C')
  assert.deepEqual(read(C, key), v1)
  await exchangeAll(world, p)
  for (const r of [A, B, C]) assert.ok(isDeleted(read(r, key)), `${r.id} reads the key as deleted`)
  // The grace passes, full exchanges confirm: A and B reap; C (not asked to reap yet) keeps its tombstone.
  world.skewMs += 5000
  await exchangeAll(world, p)
  assert.equal(A.aae.reap(p), 1)
  assert.equal(B.aae.reap(p), 1)
  const reapedGet = await world.request('A', 'get', { key: enc.encode(key) })
  assert.equal(reapedGet.body.state, null, 'a reaped key reads as never written')
  assert.equal(A.aae.counters.tombstonesReaped, 1)
  // Exchanging with C, which still holds the tombstone, does not bring it back to A or B.
  await exchangeAll(world, p)
  assert.equal(read(A, key).siblings.length, 0)
  // Write again on A: the new dot is above the tombstone's, so C (which missed the reap) keeps it.
  const tomb = read(C, key)
  const again = await world.request('A', 'put', { key: enc.encode(key), context: {}, value: enc.encode('v2') })
  assert.equal(again.type, 'put')
  const fresh = read(A, key)
  assert.ok(fresh.vv['A.1']! > tomb.vv['A.1']!, `dot (A.1, ${fresh.vv['A.1']}) is above the reaped tombstone's (A.1, ${tomb.vv['A.1']})`)
  await exchangeAll(world, p)
  for (const r of [A, B, C]) {
    const s = read(r, key)
    assert.deepEqual(s.siblings.map(x => x.value && Buffer.from(x.value).toString()), ['v2'], `${r.id} holds the re-created value`)
  }
  // The floor survives a restart.
  await A.engine.close()
  world.replicas.delete('A')
  const A2 = await world.add('A', A.dir)
  assert.ok(A2.aae.floorOf(key) >= tomb.vv['A.1']!)
  for (const r of world.replicas.values()) await r.engine.close()
})

test('a partition dropped slice by slice: its keys read as absent, the others stay, the floor covers its dots, a write is noted', async () => {
  const ring = createRing({ nodes: [{ id: 'A', url: 'ws://a' }, { id: 'B', url: 'ws://b' }, { id: 'C', url: 'ws://c' }], partitions: 4, n: 3 })
  const world = new World(ring)
  for (const id of ['A', 'B', 'C']) await world.add(id)
  const A = world.replicas.get('A')!
  const keys = Array.from({ length: 60 }, (_, i) => `drop:${i}`)
  for (const k of keys) await written(world, k, ['B'])
  // A's own stamps: the dots a returning handoff would carry.
  await world.request('A', 'put', { key: enc.encode(keys[0]!), context: read(A, keys[0]!).vv, value: enc.encode('v2') })
  const victim = partitionOf(ring, keys[0]!)
  const inVictim = keys.filter(k => partitionOf(ring, k) === victim)
  const others = keys.filter(k => partitionOf(ring, k) !== victim)
  assert.ok(inVictim.length > 3 && others.length > 0)
  const counterMax = Math.max(...inVictim.map(k => read(A, k).vv['A.1'] ?? 0))
  assert.deepEqual(A.aae.storedPartitions().includes(victim), true)
  assert.equal(A.aae.keysIn(victim), inVictim.length)
  A.aae.watchWrites(victim)
  let dropped = 0
  for (let i = 0; i < inVictim.length && A.aae.keysIn(victim) > 0; i++) dropped += A.aae.dropSlice(victim, 3)
  assert.equal(dropped, inVictim.length)
  assert.equal(A.aae.keysIn(victim), 0)
  assert.ok(!A.aae.storedPartitions().includes(victim))
  for (const k of inVictim) assert.ok(equals(read(A, k), EMPTY), `${k} reads as absent`)
  for (const k of others) assert.ok(read(A, k).siblings.length > 0, `${k} kept`)
  assert.equal(A.aae.floorOf(inVictim[0]!), counterMax, 'the floor covers the dropped keys\' own dots')
  assert.equal(A.aae.writtenSince(victim), false)
  // The partition's keys come back by handoff-like replication, own dots included: accepted (not
  // refused as forged), and the write is noted for the drop to stop.
  const B = world.replicas.get('B')!
  await A.service.applyState(inVictim[0]!, read(B, inVictim[0]!))
  assert.equal(A.aae.writtenSince(victim), true)
  A.aae.unwatchWrites(victim)
  assert.equal(read(A, inVictim[0]!).siblings.length, 1)
  for (const r of world.replicas.values()) await r.engine.close()
})

test('compaction over the oldest table drops a reaped key', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'ringkv-aae-settle-'))
  dirs.push(dir)
  const engine = await openEngine({ dir, merge: mergeStates, settle: settleStored, fsync: false })
  const tomb = update(EMPTY, {}, 'x.1', null)
  const { encodeState, reapedValue } = await import('../state-codec.ts')
  await engine.put('gone', encodeState(tomb))
  await engine.put('kept', encodeState(update(EMPTY, {}, 'x.1', enc.encode('v'))))
  await engine.flush()
  await engine.put('gone', reapedValue)
  await engine.flush()
  for (let i = 0; i < 2; i++) { await engine.put(`pad${i}`, encodeState(tomb)); await engine.flush() }
  assert.equal(decodeStored(engine.get('gone')!).state.siblings.length, 0, 'reaped: the barrier hides the older tombstone')
  await engine.compact()
  assert.equal(engine.get('gone'), undefined, 'the compaction that included the oldest table dropped the key')
  assert.ok(engine.get('kept') !== undefined)
  await engine.close()
})

test('hostile exchange input: garbage, wrong shapes, a partition not held, a lying peer: typed errors, nothing merged', async () => {
  const nodes = ['A', 'B', 'C', 'D', 'E'].map(id => ({ id, url: `ws://${id}` }))
  const ring = createRing({ nodes, partitions: 16, n: 3 })
  const world = new World(ring)
  for (const n of nodes) await world.add(n.id)
  const A = world.replicas.get('A')!
  const held = [...Array(ring.partitions).keys()].filter(p => preferenceListOfPartition(ring, p).primaries.includes('A'))
  const notHeld = [...Array(ring.partitions).keys()].find(p => !held.includes(p))!
  const p = held[0]!
  const peer = preferenceListOfPartition(ring, p).primaries.find(n => n !== 'A')!
  const shape = treeShape
  const cases: Array<[string, unknown, string]> = [
    ['aaeRoot', { partition: 'x', shape }, 'BadRequest'],
    ['aaeRoot', { partition: p, shape: { width: treeShape.width / 2, depth: 3 } }, 'BadRequest'],
    ['aaeRoot', { partition: p, shape: { width: treeShape.width, depth: 1 } }, 'BadRequest'],
    ['aaeRoot', { partition: notHeld, shape }, 'NotPrimary'],
    ['aaeRoot', { partition: 1e9, shape }, 'BadRequest'],
    ['aaeBranches', { partition: p, shape, branches: [treeShape.width] }, 'BadRequest'],
    ['aaeBranches', { partition: p, shape, branches: [] }, 'BadRequest'],
    ['aaeKeys', { partition: p, shape, segments: Array(65).fill(0) }, 'BadRequest'],
    ['aaeKeys', { partition: p, shape, segments: [1], after: { segment: 2, key: enc.encode('k') } }, 'BadRequest'],
    ['aaeKeys', { partition: p, shape, segments: [1], after: { segment: 1, key: Uint8Array.of(0xff) } }, 'BadRequest'],
    ['aaeKeys', 'garbage', 'BadRequest'],
    ['aaeRoots', { partitions: [], shape }, 'BadRequest'],
    ['aaeRoots', { partitions: [p, p], shape }, 'BadRequest'],
    ['aaeRoots', { partitions: Array.from({ length: 1025 }, (_, i) => i), shape }, 'BadRequest'],
    ['aaeRoots', { partitions: [p, notHeld], shape }, 'NotPrimary'],
    ['aaeRoots', { partitions: [p, 2 ** 40], shape }, 'BadRequest'],
    ['aaeRoots', { partitions: [p], shape: { width: treeShape.width, depth: 3 } }, 'BadRequest'],
    ['aaeRoots', { partitions: 'all', shape }, 'BadRequest'],
  ]
  for (const [type, body, kind] of cases) {
    const r = await world.request('A', type, body)
    assert.equal(r.type, 'error', `${type} ${JSON.stringify(body)} refused`)
    assert.equal(r.body.kind, kind, `${type}: ${r.body.message}`)
  }
  // Data that differs between A and its peer in partition p.
  const keys: string[] = []
  for (let i = 0; keys.length < 20; i++) if (partitionOf(ring, `k${i}`) === p) keys.push(`k${i}`)
  for (const k of keys) await world.replicas.get(peer)!.service.applyState(k, update(EMPTY, {}, 'x.1', enc.encode(k)))
  const foreign = [...Array(1000).keys()].map(i => `f${i}`).find(k => partitionOf(ring, k) !== p)!
  const lies: Array<[string, (type: string, body: any) => any]> = [
    ['a key of another partition', (type, body) => type === 'aaeKeys' ? { ...body, entries: [...body.entries, { key: enc.encode(foreign), state: { vv: { 'x.1': 1 }, siblings: [{ actor: 'x.1', counter: 1, value: enc.encode('evil') }] } }] } : body],
    ['a root of the wrong depth', (type, body) => type === 'aaeRoot' ? { branches: body.branches.subarray(0, 64) } : body],
    ['too few leaves', (type, body) => type === 'aaeBranches' ? { leaves: body.leaves.subarray(4) } : body],
    ['a state whose dot is not covered', (type, body) => type === 'aaeKeys' ? { ...body, entries: body.entries.map((e: any) => ({ key: e.key, state: { vv: {}, siblings: e.state.siblings } })) } : body],
    ['a key twice', (type, body) => type === 'aaeKeys' ? { ...body, entries: [...body.entries, ...body.entries] } : body],
    ['a counter near 2^53', (type, body) => type === 'aaeKeys' ? { ...body, entries: body.entries.map((e: any) => ({ key: e.key, state: { vv: { 'x.1': 2 ** 53 - 2 }, siblings: [{ actor: 'x.1', counter: 2 ** 53 - 2, value: null }] } })) } : body],
    ['a next cursor outside the segments asked for', (type, body) => type === 'aaeKeys' ? { entries: body.entries.slice(0, 1), next: { segment: treeShape.width * treeShape.width - 1, key: enc.encode('zzz') } } : body],
  ]
  for (const [lie, tamper] of lies) {
    world.tamper = (from, type, body) => (from === peer ? tamper(type, body) : body)
    await assert.rejects(A.aae.exchange(p, peer), (e: unknown) => e instanceof KvError && ['ProtocolError', 'BadRequest'].includes(e.kind), lie)
    for (const k of [...keys, foreign]) assert.equal(A.engine.get(k), undefined, `${lie}: nothing merged (${k})`)
  }
  // A sweep answered with roots for fewer partitions than asked (or more) fails whole: nothing is
  // counted clean and nothing queued from it.
  for (const cut of [4, -4]) {
    world.tamper = (_from, type, body) => type === 'aaeRoots' ? { roots: cut > 0 ? body.roots.subarray(cut) : new Uint8Array(body.roots.byteLength + 4) } : body
    const clean = A.aae.counters.exchanges.clean
    await assert.rejects(A.aae.sweep(), (e: unknown) => e instanceof KvError && ['ProtocolError', 'BadRequest'].includes(e.kind), `roots cut by ${cut}`)
    assert.equal(A.aae.counters.exchanges.clean, clean, 'nothing counted clean from a bad sweep reply')
  }
  world.tamper = undefined
  // A forged state claiming A's own dots is refused per key; the exchange is then not full.
  await world.replicas.get(peer)!.service.applyState(keys[0]!, update(EMPTY, { 'A.1': 5 }, 'w.1', enc.encode('forged')))
  const r = await A.aae.exchange(p, peer)
  assert.equal(r.full, false, 'a refused key makes the exchange partial')
  assert.equal(A.engine.get(keys[0]!), undefined, 'the forged state was not stored')
  assert.ok(A.engine.get(keys[1]!) !== undefined, 'the honest keys were repaired')
  for (const r2 of world.replicas.values()) await r2.engine.close()
})

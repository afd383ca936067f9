// Tests for the hint replayer, stepped by hand (round()) over a real hint store on a temp dir, with
// the network seam (`send`) recording what would go out: hints go to a reachable owner only and
// are deleted only after its ack; an owner that is no longer a primary of the key (or left the
// ring) has its hints sent to the key's current primaries; a refused state is dropped; a failure
// backs the owner off; at most hintReplayInflightMax replays are in flight; a hint older than its
// TTL (the tombstone grace) is deleted unreplayed.

import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { KvError } from '../../coordinator/errors.ts'
import { limits } from '../../coordinator/limits.ts'
import { createRing, preferenceList } from '../../coordinator/ring/ring.ts'
import { openHintLog } from './hint-log.ts'
import { HintReplayer } from './hint-replayer.ts'
import { HintStore } from './hint-store.ts'

const dirs: string[] = []
after(async () => { for (const d of dirs) await rm(d, { recursive: true, force: true }) })

const ring = createRing({ nodes: ['n1', 'n2', 'n3', 'n4', 'n5'].map(id => ({ id, url: `ws://127.0.0.1:1/${id}` })), partitions: 64, n: 3 })
const keysOwnedBy = (node: string, yes: boolean) =>
  Array.from({ length: 400 }, (_, i) => `key:${i}`).filter(k => preferenceList(ring, k).primaries.includes(node) === yes)

interface Sent { node: string; key: string; settle: (e?: Error) => void }

async function setup(reachable: Set<string>, ttlMs = limits.tombstoneGraceMsDefault) {
  const dir = await mkdtemp(join(tmpdir(), 'ringkv-replayer-'))
  dirs.push(dir)
  const opened = await openHintLog(dir)
  let clock = 0
  const store = new HintStore({ log: opened.log, now: () => clock })
  await store.load(opened.records, opened.problems)
  const sent: Sent[] = []
  const replayer = new HintReplayer({
    store, ring: () => ring, isReachable: n => reachable.has(n),
    send: (node, key) => new Promise<void>((ok, fail) => { sent.push({ node, key, settle: e => (e ? fail(e) : ok()) }) }),
    now: () => clock, setTimeout: () => undefined, clearTimeout: () => undefined, ttlMs,
  })
  const add = async (target: string, key: string) => {
    const r = store.add(target, key, new TextEncoder().encode(`${target}/${key}`))
    assert.ok(!(r instanceof KvError))
    await r
  }
  const tick = (ms: number) => { clock += ms }
  const flush = () => new Promise(r => setTimeout(r, 20))
  return { store, replayer, sent, add, tick, flush }
}

describe('HintReplayer', () => {
  it('replays to a reachable owner only, and deletes a hint only after its ack', async () => {
    const reachable = new Set<string>()
    const { store, replayer, sent, add, tick, flush } = await setup(reachable)
    const key = keysOwnedBy('n5', true)[0]!
    await add('n5', key)
    tick(1000); replayer.round()
    assert.equal(sent.length, 0, 'nothing goes to an unreachable owner')
    reachable.add('n5')
    tick(1000); replayer.round()
    assert.deepEqual(sent.map(s => [s.node, s.key]), [['n5', key]])
    tick(1000); replayer.round()
    assert.equal(sent.length, 1, 'a hint awaiting its ack is not sent twice')
    assert.ok(store.get('n5', key), 'kept until the ack')
    sent[0]!.settle()
    await flush()
    assert.equal(store.get('n5', key), undefined)
    assert.equal(store.counters.replayed, 1)
  })

  it('sends the hints of an owner that is no longer a primary, or left the ring, to the current primaries', async () => {
    const { store, replayer, sent, add, tick, flush } = await setup(new Set(['n1', 'n2', 'n3', 'n4', 'n5']))
    const moved = keysOwnedBy('n5', false)[0]!
    await add('n5', moved)
    await add('gone', moved)
    tick(1000); replayer.round()
    const primaries = [...preferenceList(ring, moved).primaries].sort()
    assert.deepEqual(sent.filter(s => s.key === moved).map(s => s.node).sort(), [...primaries, ...primaries].sort())
    for (const s of sent) s.settle()
    await flush()
    assert.deepEqual([...store.pending().keys()], [])
  })

  it('drops a state its owner refuses, and backs off an owner that fails', async () => {
    const { store, replayer, sent, add, tick, flush } = await setup(new Set(['n5']))
    const [a, b] = keysOwnedBy('n5', true)
    await add('n5', a!)
    tick(1000); replayer.round()
    sent.shift()!.settle(new KvError({ kind: 'TooManySiblings', siblings: 65, siblingsMax: 64, context: '' }, 'refused'))
    await flush()
    assert.equal(store.get('n5', a!), undefined)
    assert.equal(store.counters.dropped, 1)
    await add('n5', b!)
    tick(1000); replayer.round()
    sent.shift()!.settle(new KvError({ kind: 'Unavailable', node: 'n5' }, 'down'))
    await flush()
    tick(limits.hintReplayBackoffMs / 2); replayer.round()
    assert.equal(sent.length, 0, 'backing off')
    tick(limits.hintReplayBackoffMs); replayer.round()
    assert.equal(sent.length, 1, 'tried again after the backoff')
    assert.ok(store.get('n5', b!))
  })

  it('deletes unreplayed, and never sends, a hint older than the tombstone grace (its value may have been reaped over)', async () => {
    const reachable = new Set<string>()
    const { store, replayer, sent, add, tick, flush } = await setup(reachable, 60_000)
    const [old, fresh, inFlight] = keysOwnedBy('n5', true)
    await add('n5', old!)
    tick(50_000)
    await add('n5', fresh!)
    // A newer write merged into a pending hint does not make it younger: it holds the old write too.
    tick(5_000)
    await add('n5', old!)
    tick(6_000); replayer.round()
    await flush()
    assert.equal(store.get('n5', old!), undefined, 'the 61 s old hint is gone while its owner was away')
    assert.ok(store.get('n5', fresh!), 'the 11 s old one is kept')
    assert.equal(store.counters.expired, 1)
    reachable.add('n5')
    tick(1_000); replayer.round()
    assert.deepEqual(sent.map(s => s.key), [fresh], 'only the young hint is replayed')
    // A hint being replayed when it passes its TTL is left to its replay.
    await add('n5', inFlight!)
    tick(1_000); replayer.round()
    assert.equal(sent.length, 2)
    tick(60_000); replayer.round()
    assert.ok(store.get('n5', inFlight!), 'not expired while its replay is in flight')
    for (const s of sent) s.settle()
    await flush()
    assert.deepEqual([...store.pending().keys()], [])
    assert.equal(store.counters.replayed, 2)
  })

  it('keeps at most hintReplayInflightMax replays in flight', async () => {
    const { replayer, sent, add, tick } = await setup(new Set(['n5']))
    for (const k of keysOwnedBy('n5', true).slice(0, limits.hintReplayInflightMax + 20)) await add('n5', k)
    tick(10_000); replayer.round()
    tick(10_000); replayer.round()
    assert.equal(sent.length, limits.hintReplayInflightMax)
  })
})

// The pieces of handoff that judge what a peer or a disk gives us: the batch checksum (any change,
// re-split or reorder of a batch changes it), decodePeerState (every valid state round-trips, and
// anything else, random bytes included, is a BadRequest, never a crash or an assertion), and the
// progress file's decoder (anything but a valid file is ignored). Random inputs print their seed.

import assert from 'node:assert/strict'
import { test } from 'node:test'
import { Packr } from 'msgpackr'
import { KvError } from '../../coordinator/errors.ts'
import { limits } from '../../coordinator/limits.ts'
import type { DvvSet } from '../../coordinator/version/dvv.ts'
import { seededBytes, seededRandom, testSeed } from '../../test/seed.ts'
import { decodePeerState, encodeState } from '../state-codec.ts'
import { handoffChecksum } from './handoff-batch.ts'
import { decodeProgress, encodeProgress } from './handoff-progress.ts'

const enc = new TextEncoder()
const packr = new Packr({ useRecords: false })
/** A state with its values as plain byte arrays (msgpackr decodes them as Buffers). */
const plain = (s: DvvSet) => ({ vv: s.vv, siblings: s.siblings.map(x => ({ ...x, value: x.value === null ? null : Uint8Array.from(x.value) })) })
const state: DvvSet = { vv: { 'a.1': 2, 'b.7': 1 }, siblings: [{ actor: 'a.1', counter: 2, value: enc.encode('x') }, { actor: 'b.7', counter: 1, value: null }] }

test('the checksum changes with any byte, split, order, partition or seq of a batch', () => {
  const entries: Array<[Uint8Array, Uint8Array]> = [[enc.encode('k1'), encodeState(state)], [enc.encode('k2'), Uint8Array.of(1, 2, 3)]]
  const base = handoffChecksum(3, 9, entries)
  assert.equal(handoffChecksum(3, 9, entries.map(([k, v]) => [Uint8Array.from(k), Uint8Array.from(v)])), base, 'same bytes, same sum')
  assert.notEqual(handoffChecksum(4, 9, entries), base)
  assert.notEqual(handoffChecksum(3, 10, entries), base)
  assert.notEqual(handoffChecksum(3, 9, [entries[1]!, entries[0]!]), base)
  assert.notEqual(handoffChecksum(3, 9, entries.slice(0, 1)), base)
  // The same bytes split differently between key and state.
  assert.notEqual(handoffChecksum(3, 9, [[enc.encode('k'), Uint8Array.of(0x31, ...encodeState(state))], entries[1]!]), base)
  const flipped = Uint8Array.from(entries[0]![1]); flipped[3]! ^= 1
  assert.notEqual(handoffChecksum(3, 9, [[entries[0]![0], flipped], entries[1]!]), base)
})

test('decodePeerState takes every valid stored state back exactly', () => {
  for (const s of [state, { vv: {}, siblings: [] }, { vv: { 'z.1': limits.counterMax }, siblings: [{ actor: 'z.1', counter: limits.counterMax, value: new Uint8Array(70_000) }] }]) {
    assert.deepEqual(plain(decodePeerState(encodeState(s))), plain(s))
  }
})

test('decodePeerState refuses garbage and forged states with BadRequest', () => {
  const refused = (what: string, bytes: Uint8Array) => {
    assert.throws(() => decodePeerState(bytes), (e: unknown) => e instanceof KvError && e.kind === 'BadRequest', what)
  }
  refused('not msgpack', Uint8Array.of(0xc1))
  refused('empty', new Uint8Array(0))
  refused('an extension', Uint8Array.of(0xd4, 0x01, 0x00))
  refused('a map', packr.pack({ vv: {}, siblings: [] }))
  refused('three parts', packr.pack([[], [], []]))
  refused('torn vector', packr.pack([['a.1'], []]))
  refused('torn siblings', packr.pack([['a.1', 1], ['a.1', 1]]))
  refused('__proto__ actor', packr.pack([['__proto__', 1], []]))
  refused('repeated actor', packr.pack([['a.1', 1, 'a.1', 2], []]))
  refused('unsorted vector', packr.pack([['b.1', 1, 'a.1', 1], []]))
  refused('counter zero', packr.pack([['a.1', 0], []]))
  refused('fractional counter', packr.pack([['a.1', 1.5], []]))
  refused('counter above counterMax', packr.pack([['a.1', limits.counterMax + 1], []]))
  refused('counter as string', packr.pack([['a.1', '1'], []]))
  refused('uncovered dot', packr.pack([['a.1', 1], ['a.1', 2, null]]))
  refused('dot of an actor not in the vector', packr.pack([['a.1', 1], ['b.1', 1, null]]))
  refused('value as string', packr.pack([['a.1', 1], ['a.1', 1, 'text']]))
  refused('duplicate dot', packr.pack([['a.1', 2], ['a.1', 1, null, 'a.1', 1, null]]))
  refused('actor as number', packr.pack([[7, 1], []]))
  refused('trailing bytes', Uint8Array.of(...encodeState(state), 0))
  refused('too many actors', packr.pack([Array.from({ length: limits.vectorActorsMax + 1 }, (_, i) => [`a${String(i).padStart(5, '0')}`, 1]).flat(), []]))
})

test('decodePeerState on random bytes and random mutations of valid states never does worse than BadRequest', () => {
  const seed = testSeed('decodePeerState fuzz')
  const random = seededRandom(seed)
  const valid = encodeState(state)
  for (let i = 0; i < 3000; i++) {
    let bytes: Uint8Array
    if (i % 2 === 0) bytes = seededBytes(random, Math.floor(random() * 64))
    else {
      bytes = Uint8Array.from(valid)
      for (let m = 0; m < 1 + Math.floor(random() * 3); m++) bytes[Math.floor(random() * bytes.length)] = Math.floor(random() * 256)
    }
    try {
      const s = decodePeerState(bytes)
      // Anything accepted must be a state that re-encodes and decodes to itself.
      assert.deepEqual(plain(decodePeerState(encodeState(s))), plain(s))
    } catch (e) {
      assert.ok(e instanceof KvError && e.kind === 'BadRequest', `seed ${seed} input ${Buffer.from(bytes).toString('hex')}: ${String(e)}`)
    }
  }
})

test('the progress file round-trips, and anything else is ignored with a reason', () => {
  const entries = [{ partition: 3, to: 'n4', toUrl: 'ws://127.0.0.1:7004', after: 'user:9', keysSent: 10, bytesSent: 12_000, startedAt: 1 }]
  assert.deepEqual(decodeProgress(encodeProgress(entries)), entries)
  for (const bad of ['', 'null', '{"version":2,"transfers":[]}', '{"version":1,"transfers":[{"partition":-1}]}', '\xff\xfe',
    JSON.stringify({ version: 1, transfers: [{ ...entries[0], after: 'k'.repeat(limits.keyBytesMax + 1) }] })]) {
    assert.equal(typeof decodeProgress(enc.encode(bad)), 'string', bad.slice(0, 40))
  }
})

// Tests for dvv.ts: concrete examples, and property tests over states produced by simulated histories
// (replicas stamping writes and syncing, clients reading a context and writing with it later). A
// knowledge model that never looks at version vectors checks that no write is lost or wrongly kept.
// Property seeds are printed (test/seed.ts) and RINGKV_SEED replays them; fast-check prints the
// shrunk history on failure: pin a failing one below as a regression case with `{ seed, path }`.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import {
  EMPTY, context, descends, equals, isDeleted, mergeVectors, sync, update, validate, values,
  type DvvSet, type Sibling, type VersionVector,
} from './dvv.ts'
import { KvError } from '../errors.ts'
import { AssertionError } from '../assert.ts'
import { limits } from '../limits.ts'
import { propertyParams } from '../../test/seed.ts'

const fcParams = propertyParams('dvv properties')

const enc = new TextEncoder()
const dec = new TextDecoder()
const bytes = (s: string): Uint8Array => enc.encode(s)
const texts = (state: DvvSet): string[] => values(state).map((v) => dec.decode(v))

function isBadRequest(e: unknown): boolean {
  return e instanceof KvError && e.kind === 'BadRequest'
}

/** Key-order-sensitive rendering: equal strings means equal bytes under any ordered encoder. */
function canon(state: DvvSet): string {
  return JSON.stringify({
    vv: Object.entries(state.vv),
    siblings: state.siblings.map((s) => [s.actor, s.counter, s.value === null ? null : [...s.value]]),
  })
}

function deepFreeze(state: DvvSet): DvvSet {
  Object.freeze(state.vv)
  for (const s of state.siblings) Object.freeze(s)
  Object.freeze(state.siblings)
  return Object.freeze(state)
}

const covered = (vv: VersionVector, s: { actor: string; counter: number }): boolean =>
  Object.hasOwn(vv, s.actor) && (vv[s.actor] ?? 0) >= s.counter
const dotOf = (s: { actor: string; counter: number }): string => `${s.actor}#${s.counter}`

// ---------------------------------------------------------------------------------------------
// Concrete examples.

test('two writes without context are concurrent: two siblings', () => {
  const s1 = update(EMPTY, {}, 'a.1', bytes('x'))
  const s2 = update(s1, {}, 'a.1', bytes('y'))
  assert.deepEqual(texts(s2), ['x', 'y'])
  assert.deepEqual(s2.vv, { 'a.1': 2 })
  // The same at two replicas, joined by sync.
  const a = update(EMPTY, {}, 'a.1', bytes('x'))
  const b = update(EMPTY, {}, 'b.1', bytes('y'))
  const ab = sync(a, b)
  assert.deepEqual(texts(ab), ['x', 'y'])
  assert.deepEqual(ab.vv, { 'a.1': 1, 'b.1': 1 })
})

test('a write carrying the read context replaces every sibling it read', () => {
  const ab = sync(update(EMPTY, {}, 'a.1', bytes('x')), update(EMPTY, {}, 'b.1', bytes('y')))
  const resolved = update(ab, context(ab), 'b.1', bytes('z'))
  assert.deepEqual(texts(resolved), ['z'])
  assert.deepEqual(resolved.siblings.map(dotOf), ['b.1#2'])
  // Replica a, which has only its own old value, takes the resolution on sync.
  const a = update(EMPTY, {}, 'a.1', bytes('x'))
  assert.deepEqual(texts(sync(a, resolved)), ['z'])
  assert.deepEqual(texts(sync(resolved, a)), ['z'])
})

test('a write with a context read elsewhere supersedes what that read saw, even at another replica', () => {
  const a = update(EMPTY, {}, 'a.1', bytes('x'))
  // The client read from a and writes at b, which has never seen x.
  const b = update(EMPTY, context(a), 'b.1', bytes('y'))
  assert.deepEqual(texts(b), ['y'])
  assert.deepEqual(texts(sync(a, b)), ['y'])
})

test('a stale context never removes a concurrent value', () => {
  const s1 = update(EMPTY, {}, 'a.1', bytes('v1'))
  const staleRead = context(s1)
  const s2 = update(s1, context(s1), 'a.1', bytes('v2')) // another client replaces v1
  const s3 = update(s2, {}, 'a.1', bytes('v3')) // and a blind write lands
  const s4 = update(s3, staleRead, 'a.1', bytes('v4')) // the first client writes with what it read
  assert.deepEqual(texts(s4), ['v2', 'v3', 'v4'])
})

test('delete writes a tombstone; a key of tombstones reads as deleted', () => {
  assert.equal(isDeleted(EMPTY), true)
  const s1 = update(EMPTY, {}, 'a.1', bytes('x'))
  assert.equal(isDeleted(s1), false)
  const s2 = update(s1, context(s1), 'a.1', null)
  assert.equal(isDeleted(s2), true)
  assert.deepEqual(values(s2), [])
  assert.equal(s2.siblings.length, 1)
  // A concurrent value next to a tombstone keeps the key alive.
  const b = update(EMPTY, {}, 'b.1', bytes('y'))
  const merged = sync(s2, b)
  assert.equal(isDeleted(merged), false)
  assert.deepEqual(texts(merged), ['y'])
  // Deleting with the merged context deletes both.
  assert.equal(isDeleted(update(merged, context(merged), 'b.1', null)), true)
})

test('a dot with two values: sync keeps the smaller value on both sides, and tells onConflict', () => {
  const a: DvvSet = { vv: { 'a.1': 1 }, siblings: [{ actor: 'a.1', counter: 1, value: bytes('x') }] }
  const b: DvvSet = { vv: { 'a.1': 1 }, siblings: [{ actor: 'a.1', counter: 1, value: bytes('w') }] }
  assert.deepEqual(texts(sync(a, b)), ['w'])
  assert.deepEqual(texts(sync(b, a)), ['w'])
  const seen: string[] = []
  sync(a, b, (dot) => seen.push(`${dot.actor}:${dot.counter}`))
  assert.deepEqual(seen, ['a.1:1'])
  const tomb: DvvSet = { vv: { 'a.1': 1 }, siblings: [{ actor: 'a.1', counter: 1, value: null }] }
  assert.equal(isDeleted(sync(a, tomb)), true, 'a tombstone orders first')
  assert.equal(isDeleted(sync(tomb, a)), true)
})

test('siblings and vector keys stay sorted; actors named like Object.prototype members work', () => {
  let s = EMPTY
  for (const actor of ['toString', 'b.1', 'constructor', 'a.2', 'hasOwnProperty', 'a.10']) s = update(s, {}, actor, bytes(actor))
  s = update(s, {}, 'constructor', bytes('again'))
  const keys = Object.keys(s.vv)
  assert.deepEqual(keys, [...keys].sort())
  assert.deepEqual(s.siblings.map(dotOf),
    ['a.10#1', 'a.2#1', 'b.1#1', 'constructor#1', 'constructor#2', 'hasOwnProperty#1', 'toString#1'])
  assert.equal(s.vv['constructor'], 2)
  validate(s)
  assert.throws(() => update(EMPTY, {}, '__proto__', bytes('x')), AssertionError)
  assert.throws(() => update(EMPTY, {}, '', bytes('x')), AssertionError)
})

test('update counts past both the state and the context for its actor', () => {
  // After a restore the replica may hold less than a client has seen; the dot must still be new.
  const s = update(EMPTY, { 'a.1': 7 }, 'a.1', bytes('x'))
  assert.deepEqual(s.siblings.map(dotOf), ['a.1#8'])
})

test('equals compares vectors and sibling bytes; descends follows causality', () => {
  const a = update(EMPTY, {}, 'a.1', bytes('x'))
  const aSame = update(EMPTY, {}, 'a.1', bytes('x'))
  const aOther = update(EMPTY, {}, 'a.1', bytes('y'))
  assert.equal(equals(a, aSame), true)
  assert.equal(equals(a, aOther), false)
  assert.equal(equals(a, { vv: { 'a.1': 2 }, siblings: a.siblings }), false)
  assert.equal(equals(a, { vv: { 'a.1': 1, 'b.1': 1 }, siblings: a.siblings }), false)
  assert.equal(equals(a, { vv: a.vv, siblings: [] }), false)
  assert.equal(equals(a, update(EMPTY, {}, 'a.1', null)), false)
  const b = update(EMPTY, {}, 'b.1', bytes('y'))
  const ab = sync(a, b)
  assert.equal(descends(ab, a), true)
  assert.equal(descends(ab, b), true)
  assert.equal(descends(a, ab), false)
  assert.equal(descends(a, b), false)
  assert.equal(descends(a, EMPTY), true)
  assert.equal(descends(EMPTY, a), false)
  const later = update(a, context(a), 'a.1', bytes('z'))
  assert.equal(descends(later, a), true)
  assert.equal(descends(a, later), false)
})

test('mergeVectors is the pointwise maximum with sorted keys', () => {
  const m = mergeVectors({ c: 1, a: 5 }, { b: 2, a: 3, c: 4 })
  assert.deepEqual(Object.entries(m), [['a', 5], ['b', 2], ['c', 4]])
  assert.deepEqual(mergeVectors({}, {}), {})
})

test('validate accepts legal states and refuses broken ones with BadRequest', () => {
  validate(EMPTY)
  const ok = sync(update(EMPTY, {}, 'a.1', bytes('x')), update(EMPTY, {}, 'b.1', null))
  validate(ok)
  const x = bytes('x')
  const bad: [string, unknown][] = [
    ['not an object', null],
    ['vv an array', { vv: [], siblings: [] }],
    ['siblings not an array', { vv: {}, siblings: {} }],
    ['dot not covered', { vv: { a: 1 }, siblings: [{ actor: 'a', counter: 2, value: x }] }],
    ['dot of an unknown actor', { vv: { a: 1 }, siblings: [{ actor: 'b', counter: 1, value: x }] }],
    ['duplicate dot', { vv: { a: 1 }, siblings: [{ actor: 'a', counter: 1, value: x }, { actor: 'a', counter: 1, value: x }] }],
    ['unsorted siblings', { vv: { a: 2 }, siblings: [{ actor: 'a', counter: 2, value: x }, { actor: 'a', counter: 1, value: x }] }],
    ['zero counter', { vv: { a: 1 }, siblings: [{ actor: 'a', counter: 0, value: x }] }],
    ['fractional counter', { vv: { a: 1.5 }, siblings: [] }],
    ['negative vv counter', { vv: { a: -1 }, siblings: [] }],
    ['string counter', { vv: { a: '1' }, siblings: [] }],
    ['unsafe counter', { vv: { a: 2 ** 60 }, siblings: [] }],
    ['value not bytes', { vv: { a: 1 }, siblings: [{ actor: 'a', counter: 1, value: 'x' }] }],
    ['unsorted vv keys', { vv: { b: 1, a: 1 }, siblings: [] }],
    ['empty actor', { vv: { '': 1 }, siblings: [] }],
    ['too many actors', { vv: Object.fromEntries(Array.from({ length: limits.vectorActorsMax + 1 }, (_, i) => [`r${String(i).padStart(5, '0')}`, 1])), siblings: [] }],
  ]
  for (const [name, state] of bad) {
    assert.throws(() => validate(state as DvvSet), isBadRequest, name)
  }
})

// ---------------------------------------------------------------------------------------------
// Simulated histories.

const REPLICAS = 3
const SLOTS = 4

type Op =
  | { t: 'write'; at: number; ctx: 'none' | 'fresh' | number; del: boolean }
  | { t: 'read'; from: number; slot: number }
  | { t: 'sync'; to: number; from: number; both: boolean }
  | { t: 'restart'; at: number; back: number }

function opArb(restarts: boolean): fc.Arbitrary<Op> {
  const replica = fc.nat(REPLICAS - 1)
  const ops: fc.WeightedArbitrary<Op>[] = [
    { weight: 5, arbitrary: fc.record({
      t: fc.constant('write' as const), at: replica,
      ctx: fc.oneof(fc.constant('none' as const), fc.constant('fresh' as const), fc.nat(SLOTS - 1)),
      del: fc.nat(9).map((n) => n === 0),
    }) },
    { weight: 3, arbitrary: fc.record({ t: fc.constant('read' as const), from: replica, slot: fc.nat(SLOTS - 1) }) },
    { weight: 3, arbitrary: fc.record({ t: fc.constant('sync' as const), to: replica, from: replica, both: fc.boolean() }) },
  ]
  if (restarts) ops.push({ weight: 1, arbitrary: fc.record({ t: fc.constant('restart' as const), at: replica, back: fc.nat(20) }) })
  return fc.oneof(...ops)
}

const historyArb = (restarts: boolean, maxLength = 50): fc.Arbitrary<Op[]> => fc.array(opArb(restarts), { maxLength, size: 'max' })

/** The knowledge model: which writes (by id) a replica or a context has seen. No vectors involved. */
type Known = ReadonlySet<number>
interface Write { id: number; sibling: Sibling; ctx: Known }
interface UpdateRecord { before: DvvSet; ctx: VersionVector; actor: string; after: DvvSet; freshAgainst: DvvSet[] }

interface History {
  states: DvvSet[] // every state any replica held, snapshots included
  replicas: DvvSet[]
  known: Known[]
  writes: Write[]
  updates: UpdateRecord[]
}

/** Live writes among `known`: known and not superseded by a known write whose context saw them. */
function modelLive(known: Known, writes: Write[]): Set<string> {
  const superseded = new Set<number>()
  for (const w of writes) if (known.has(w.id)) for (const id of w.ctx) superseded.add(id)
  const live = new Set<string>()
  for (const w of writes) if (known.has(w.id) && !superseded.has(w.id)) live.add(siblingKey(w.sibling))
  return live
}

function siblingKey(s: Sibling): string {
  return `${dotOf(s)}=${s.value === null ? '<tombstone>' : dec.decode(s.value)}`
}

function checkAgainstModel(state: DvvSet, known: Known, writes: Write[], where: string): void {
  assert.deepEqual(new Set(state.siblings.map(siblingKey)), modelLive(known, writes), `siblings at ${where}`)
  // The vector covers a write's dot exactly when the write was seen: vv is downward closed.
  for (const w of writes) assert.equal(covered(state.vv, w.sibling), known.has(w.id), `vv vs knowledge of write ${w.id} at ${where}`)
}

function simulate(ops: Op[]): History {
  const incarnation = Array.from({ length: REPLICAS }, () => 1)
  const actor = (r: number): string => `r${r}.${incarnation[r]}`
  const replicas: DvvSet[] = Array.from({ length: REPLICAS }, () => EMPTY)
  const known: Known[] = Array.from({ length: REPLICAS }, () => new Set<number>())
  const snapshots: { state: DvvSet; known: Known }[][] = Array.from({ length: REPLICAS }, () => [{ state: EMPTY, known: new Set() }])
  const slots: { vv: VersionVector; known: Known }[] = Array.from({ length: SLOTS }, () => ({ vv: {}, known: new Set() }))
  const states: DvvSet[] = [EMPTY]
  const writes: Write[] = []
  const updates: UpdateRecord[] = []

  const set = (r: number, state: DvvSet, k: Known): void => {
    validate(state)
    deepFreeze(state)
    replicas[r] = state
    known[r] = k
    states.push(state)
    snapshots[r]!.push({ state, known: k })
    checkAgainstModel(state, k, writes, `replica ${r}`)
  }

  for (const op of ops) {
    switch (op.t) {
      case 'write': {
        const r = op.at
        const read = op.ctx === 'none' ? { vv: {}, known: new Set<number>() }
          : op.ctx === 'fresh' ? { vv: context(replicas[r]!), known: known[r]! }
          : slots[op.ctx]!
        const before = replicas[r]!
        const id = writes.length
        const after = update(before, read.vv, actor(r), op.del ? null : bytes(`w${id}`))
        const added = after.siblings.filter((s) => !before.siblings.some((b) => dotOf(b) === dotOf(s)))
        assert.equal(added.length, 1)
        updates.push({ before, ctx: read.vv, actor: actor(r), after, freshAgainst: [...states] })
        writes.push({ id, sibling: added[0]!, ctx: read.known })
        set(r, after, new Set([...known[r]!, ...read.known, id]))
        break
      }
      case 'read':
        slots[op.slot] = { vv: context(replicas[op.from]!), known: known[op.from]! }
        break
      case 'sync': {
        const merged = sync(replicas[op.to]!, replicas[op.from]!)
        const k = new Set([...known[op.to]!, ...known[op.from]!])
        set(op.to, merged, k)
        if (op.both) set(op.from, merged, k)
        break
      }
      case 'restart': {
        // Restored from an older snapshot without the full log: a new incarnation, so dots stay unique.
        const r = op.at
        const snaps = snapshots[r]!
        const snap = snaps[Math.max(0, snaps.length - 1 - op.back)]!
        incarnation[r]! += 1
        set(r, snap.state, snap.known)
        break
      }
    }
  }
  return { states, replicas, known, writes, updates }
}

const params = (numRuns: number): fc.Parameters<unknown> => ({ numRuns })

/** A history and three of the states it produced. */
const statesArb = fc.tuple(historyArb(true), fc.nat(), fc.nat(), fc.nat()).map(([ops, i, j, k]) => {
  const { states } = simulate(ops)
  const pick = (n: number): DvvSet => states[n % states.length]!
  return { a: pick(i), b: pick(j), c: pick(k) }
})

test('property: sync is commutative, associative and idempotent, and byte-deterministic', () => {
  fc.assert(fc.property(statesArb, ({ a, b, c }) => {
    const ab = sync(a, b)
    const ba = sync(b, a)
    assert.ok(equals(ab, ba), 'commutative')
    assert.equal(canon(ab), canon(ba), 'commutative, byte for byte')
    const left = sync(sync(a, b), c)
    const right = sync(a, sync(b, c))
    assert.ok(equals(left, right), 'associative')
    assert.equal(canon(left), canon(right), 'associative, byte for byte')
    assert.ok(equals(sync(a, a), a), 'idempotent')
    assert.equal(canon(sync(a, a)), canon(a), 'idempotent, byte for byte')
    assert.ok(equals(sync(ab, b), ab), 'absorbs a part already merged')
    validate(ab)
    assert.ok(descends(ab, a) && descends(ab, b), 'a merge descends both sides')
    assert.equal(descends(a, b) && descends(b, a), equals(a, b), 'mutual descent is equality')
    if (descends(a, b)) assert.ok(equals(ab, a), 'merging an ancestor changes nothing')
  }), fcParams(params(1000)))
})

test('property: update drops exactly the covered siblings, adds one, and its dot is fresh', () => {
  fc.assert(fc.property(historyArb(true), (ops) => {
    const { updates } = simulate(ops)
    for (const { before, ctx, actor, after, freshAgainst } of updates) {
      const kept = before.siblings.filter((s) => !covered(ctx, s))
      const fresh = after.siblings.filter((s) => !before.siblings.includes(s))
      assert.equal(fresh.length, 1)
      const dot = fresh[0]!
      assert.equal(dot.actor, actor)
      assert.deepEqual(after.siblings.filter((s) => s !== dot), kept, 'kept = the siblings the context does not cover')
      // Fresh: no state in the history so far holds or has seen this dot.
      for (const s of freshAgainst) {
        assert.ok(!covered(s.vv, dot), `dot ${dotOf(dot)} already covered by an earlier state`)
        assert.ok(!s.siblings.some((x) => dotOf(x) === dotOf(dot)), `dot ${dotOf(dot)} already issued`)
      }
      assert.deepEqual(after.vv, mergeVectors(mergeVectors(before.vv, ctx), { [actor]: dot.counter }))
    }
  }), fcParams(params(500)))
})

test('property: no lost update — after full sync the siblings are exactly the writes nothing superseded', () => {
  fc.assert(fc.property(historyArb(false, 60), (ops) => {
    const { replicas, known, writes } = simulate(ops) // also checks every intermediate state
    const everything = replicas.reduce((a, b) => sync(a, b), EMPTY)
    const final = replicas.map((r) => sync(r, everything))
    for (const f of final) assert.equal(canon(f), canon(final[0]!), 'replicas converge')
    const allKnown = new Set(known.flatMap((k) => [...k]))
    assert.equal(allKnown.size, writes.length, 'without restarts every write reaches some replica')
    checkAgainstModel(final[0]!, allKnown, writes, 'the end')
    // Spelled out: every write not covered by a later write's context survives.
    for (const w of writes) {
      const supersededBy = writes.filter((x) => x.ctx.has(w.id))
      const present = final[0]!.siblings.some((s) => dotOf(s) === dotOf(w.sibling))
      assert.equal(present, supersededBy.length === 0, `write ${w.id}`)
    }
  }), fcParams(params(1000)))
})

test('property: inputs are not mutated (states are frozen throughout the simulation)', () => {
  // simulate() freezes every state; a mutation would throw a TypeError in strict mode.
  fc.assert(fc.property(statesArb, ({ a, b }) => {
    assert.ok(Object.isFrozen(a) && Object.isFrozen(b))
    const before = canon(a)
    sync(a, b)
    update(a, context(b), 'r9.1', bytes('x'))
    assert.equal(canon(a), before)
  }), fcParams(params(200)))
})

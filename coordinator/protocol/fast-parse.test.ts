// fast-parse.ts against the zod schemas it stands in front of: for valid bodies of every hot type
// the fast path must answer on its own (zod is never called) with data deep-equal to zod's; for
// mutated bodies (wrong types, extra and missing keys, prototype tricks, getters, holes, limits) it
// must give zod's verdict, zod's data, and on failure zod's very issues. fast-check prints the seed
// and the shrunk body on failure.

import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import { ZodError } from 'zod'
import { limits } from '../limits.ts'
import { compareStrings } from '../version/dvv.ts'
import { decodeFrame, encodeFrame, type Message } from './codec.ts'
import { parseReply, parseRequest } from './fast-parse.ts'
import { replySchemas, requestSchemas, type RequestType } from './messages.ts'
import { propertyParams } from '../../test/seed.ts'

const fcParams = propertyParams('fast-parse properties')

type Side = 'request' | 'reply'
type Body = Record<PropertyKey, unknown>

const enc = new TextEncoder()
const schemaOf = (side: Side, type: RequestType) => (side === 'request' ? requestSchemas : replySchemas)[type]
const fastOf = (side: Side, type: RequestType, body: unknown) => (side === 'request' ? parseRequest(type, body) : parseReply(type, body))

function outcome<T>(f: () => T): { value: T } | { thrown: unknown } {
  try {
    return { value: f() }
  } catch (e) {
    return { thrown: e }
  }
}

/**
 * Asserts that the fast path's result is zod's: same verdict, deep-equal data, the same issues.
 * The fast path never throws; should zod throw (4.6.7's readonly() did, on a byte array where a
 * list belongs), the fast path must report a failed parse instead. Returns whether zod accepted.
 */
function assertSame(side: Side, type: RequestType, body: unknown): boolean {
  const zodOutcome = outcome(() => schemaOf(side, type).safeParse(body))
  const fastOutcome = outcome(() => fastOf(side, type, body))
  assert.ok(!('thrown' in fastOutcome), `${side} ${type}: the fast path threw ${String((fastOutcome as { thrown: unknown }).thrown)}`)
  const fast = fastOutcome.value
  if ('thrown' in zodOutcome) {
    assert.equal(fast.success, false, `${side} ${type}: zod threw but the fast path accepted`)
    return false
  }
  const zod = zodOutcome.value
  assert.equal(fast.success, zod.success, `${side} ${type}: fast says ${fast.success}, zod says ${zod.success}`)
  if (zod.success) {
    assert.deepStrictEqual(fast.data, zod.data)
    assert.deepStrictEqual(shape(fast.data), shape(zod.data))
  } else {
    assert.ok(fast.error instanceof ZodError)
    assert.deepStrictEqual(fast.error.issues, zod.error.issues)
  }
  return zod.success
}

/** What deepStrictEqual leaves out: key order, non-enumerable and accessor properties. */
function shape(v: unknown): unknown {
  if (typeof v !== 'object' || v === null || ArrayBuffer.isView(v)) return typeof v
  return Reflect.ownKeys(v).map(k => {
    const d = Object.getOwnPropertyDescriptor(v, k)!
    return [String(k), d.enumerable, 'value' in d ? shape(d.value) : 'accessor']
  })
}

/** Counts the calls `f` makes to the zod schema of `side`/`type`. */
function zodCalls(side: Side, type: RequestType, f: () => void): number {
  // zod binds safeParse onto the schema on its first read (Node 20's mock.method cannot wrap
  // that): read it, shadow it with a counting wrapper, then put the bound method back.
  const schema = schemaOf(side, type) as unknown as { safeParse: (body: unknown) => unknown }
  const original = schema.safeParse
  const own = Object.getOwnPropertyDescriptor(schema, 'safeParse')
  let calls = 0
  Object.defineProperty(schema, 'safeParse', {
    value: (body: unknown) => { calls++; return original.call(schema, body) }, configurable: true, writable: true,
  })
  try {
    f()
    return calls
  } finally {
    if (own) Object.defineProperty(schema, 'safeParse', own)
    else delete (schema as Partial<typeof schema>).safeParse
  }
}

/** The wire form of a body, as a replica or connection receives it (Buffers, fresh objects). */
function viaWire(type: string, body: unknown): unknown {
  return (decodeFrame(encodeFrame([[type, 1, body] as Message]))[0] as Message)[2]
}

// ---------------------------------------------------------------------------------------------
// Valid bodies, inside what the fast path handles itself (names up to 128 UTF-16 units).

const ABSENT = Symbol('absent')
/** A field that is absent, present but undefined, or set. */
const optional = <T>(arb: fc.Arbitrary<T>): fc.Arbitrary<T | undefined | typeof ABSENT> =>
  fc.oneof(fc.constant(ABSENT), fc.constant(undefined), arb)
const build = (fields: Record<string, unknown>): Body =>
  Object.fromEntries(Object.entries(fields).filter(([, v]) => v !== ABSENT))

const nameArb = fc.oneof(
  fc.tuple(fc.integer({ min: 1, max: 9 }), fc.integer({ min: 1_700_000_000_000, max: 1_800_000_000_000 })).map(([n, t]) => `n${n}.${t}`),
  fc.string({ unit: 'binary', minLength: 1, maxLength: 128 }).filter(s => s.length <= 128),
).filter(s => s !== '__proto__')
const counterArb = fc.oneof(fc.integer({ min: 1, max: 1000 }), fc.integer({ min: 1, max: limits.counterMax }), fc.constant(limits.counterMax))
const keyArb = fc.oneof(
  fc.constant(enc.encode('user0000012345')),
  fc.constant(enc.encode('k'.repeat(limits.keyBytesMax))),
  // A leading BOM is part of the key (the decoder keeps it): both paths must agree on that too.
  fc.constant(enc.encode('\uFEFFbom')),
  fc.string({ unit: 'binary', minLength: 1, maxLength: 120 })
    .filter(s => s.isWellFormed() && !s.includes('\u0000')).map(s => enc.encode(s)).filter(b => b.byteLength <= limits.keyBytesMax),
)
const bytesArb = fc.oneof(
  fc.uint8Array({ maxLength: 64 }),
  fc.uint8Array({ maxLength: 64 }).map(b => Buffer.from(b)),
  fc.uint8Array({ minLength: 3, maxLength: 64 }).map(b => b.subarray(2)),
)
const valueArb = fc.option(bytesArb, { nil: null })
/** Unique actors in canonical order; integer-like actors sort first as object keys, so keep only vectors whose key order is the canonical one. */
const vectorArb = fc.uniqueArray(fc.tuple(nameArb, counterArb), { selector: ([a]) => a, maxLength: 6 })
  .map(entries => Object.fromEntries(entries.sort(([a], [b]) => compareStrings(a, b))) as Record<string, number>)
  .filter(vv => Object.keys(vv).every((k, i, ks) => i === 0 || compareStrings(ks[i - 1]!, k) < 0))
const siblingArb = fc.record({ actor: nameArb, counter: counterArb, value: valueArb })
const stateArb = fc.record({ vv: vectorArb, siblings: fc.array(siblingArb, { maxLength: 4 }) })

const validBodies: Record<`${Side} ${'put' | 'replicate' | 'get'}`, fc.Arbitrary<Body>> = {
  'request put': fc.record({ key: keyArb, context: vectorArb, value: valueArb, hintFor: optional(nameArb), early: optional(fc.constant(true as const)) }).map(build),
  'request replicate': fc.record({ key: keyArb, state: stateArb, hintFor: optional(nameArb) }).map(build),
  'request get': fc.record({ key: keyArb, hintFor: optional(nameArb) }).map(build),
  'reply put': fc.record({ state: stateArb, elided: optional(fc.record({ actor: nameArb, counter: counterArb })), early: optional(fc.constant(true as const)) }).map(build),
  'reply get': fc.record({ state: fc.option(stateArb, { nil: null }) }),
  'reply replicate': fc.constant({}),
}
const hotTypes = Object.keys(validBodies).map(k => k.split(' ') as [Side, 'put' | 'replicate' | 'get'])
/** A valid body of each hot type, half of them through msgpack as they arrive from the wire. */
const anyValid = fc.constantFrom(...hotTypes).chain(([side, type]) =>
  fc.tuple(fc.constant(side), fc.constant(type), validBodies[`${side} ${type}`], fc.boolean())
    .map(([s, t, body, wire]) => [s, t, wire ? viaWire(t, body) : body] as const))

describe('fast-parse', () => {
  it('answers valid hot bodies without zod, with zod\'s data (property)', () => {
    fc.assert(fc.property(anyValid, ([side, type, body]) => {
      let fast: ReturnType<typeof fastOf> | undefined
      assert.equal(zodCalls(side, type, () => { fast = fastOf(side, type, body) }), 0, 'the fast path declined a valid body')
      assert.ok(fast?.success)
      assert.equal(assertSame(side, type, body), true)
      // The vector and the value views are the input's own objects, not copies.
      const b = body as any, data = fast.data as any
      if (side === 'request' && type === 'put') { assert.equal(data.context, b.context); assert.equal(data.value, b.value) }
      if (b.state) {
        assert.equal(data.state.vv, b.state.vv)
        b.state.siblings.forEach((s: any, i: number) => assert.equal(data.state.siblings[i].value, s.value))
      }
    }), fcParams({ numRuns: 600 }))
  })

  it('gives zod\'s verdict, data and issues for mutated bodies (property)', () => {
    const seen = { accepted: 0, rejected: 0, acceptedByFastPath: 0 }
    const mutation = fc.record({ at: fc.nat(), kind: fc.constantFrom(...mutationKinds), pick: fc.nat() })
    fc.assert(fc.property(anyValid, fc.array(mutation, { minLength: 1, maxLength: 3 }), ([side, type, valid], mutations) => {
      const root = { body: clone(valid) }
      for (const m of mutations) mutate(root, m)
      const ok = assertSame(side, type, root.body)
      if (!ok) seen.rejected++
      else {
        seen.accepted++
        if (zodCalls(side, type, () => fastOf(side, type, root.body)) === 0) seen.acceptedByFastPath++
      }
    }), fcParams({ numRuns: 3000 }))
    // The mutations must exercise both verdicts, and some still-valid bodies must stay on the fast
    // path (extra keys, hintFor undefined, frozen objects), or this test would prove little.
    assert.ok(seen.rejected > 600 && seen.accepted > 600 && seen.acceptedByFastPath > 300, JSON.stringify(seen))
  })

  it('matches zod on hand-picked edge cases', () => {
    for (const [name, side, type, body, expected] of edgeCases()) {
      assert.equal(schemaOf(side, type).safeParse(body).success, expected, `${name}: zod's verdict changed`)
      assert.equal(assertSame(side, type, body), expected, name)
    }
  })

  it('never runs a version vector\'s getter, never copies a vector that has one', () => {
    let reads = 0
    const context = { get 'a.1'() { reads++; return 1 } }
    const body = { key: enc.encode('k'), context, value: null }
    const parsed = parseRequest('put', body)
    // zod reads the getter once (the fast path declined without reading it) and returns a copy.
    assert.equal(reads, 1)
    assert.ok(parsed.success)
    assert.notEqual(parsed.data.context, context)
    assert.deepStrictEqual(parsed.data.context, { 'a.1': 1 })
  })

  it('leaves the types without a fast path to zod', () => {
    const ring = { version: 1, partitions: 1, n: 1, nodes: [{ id: 'a', url: 'ws://a' }], owners: ['a'] }
    const cases: Array<[Side, RequestType, unknown]> = [
      ['request', 'hello', { protocol: 1, client: 'c' }], ['request', 'ring', {}],
      ['reply', 'hello', { protocol: 1, node: 'a', actor: 'a.1', ring }], ['reply', 'ring', { ring }],
    ]
    for (const [side, type, body] of cases) {
      assert.equal(zodCalls(side, type, () => assert.ok(fastOf(side, type, body).success)), 1)
      assertSame(side, type, body)
    }
  })

  it('a leading byte-order mark is part of the key, not dropped (zod and the fast path alike)', () => {
    const bytes = new Uint8Array([0xef, 0xbb, 0xbf, 0x61])
    const fast = parseRequest('get', { key: bytes })
    const zod = requestSchemas.get.safeParse({ key: bytes })
    assert.ok(fast.success && zod.success)
    assert.equal(fast.data.key, '\uFEFFa')
    assert.equal(zod.data.key, '\uFEFFa')
  })

  it('a body zod cannot even validate (bytes where a list or state belongs) is a failed parse, not a throw', () => {
    const key = enc.encode('k')
    for (const state of [{ vv: {}, siblings: new Uint8Array([1, 2, 3]) }, new Uint8Array([1, 2, 3])]) {
      const r = parseRequest('replicate', { key, state })
      assert.equal(r.success, false)
      const g = parseReply('get', { state })
      assert.equal(g.success, false)
    }
  })
})

// ---------------------------------------------------------------------------------------------
// Mutations: each picks a container (object or array) anywhere in the body and damages it, or
// disguises it in a way zod may or may not accept.

const mutationKinds = [
  'set', 'set', 'set', 'delete', 'add', 'getter', 'nullProto', 'inherit', 'classInstance', 'arrayify',
  'hole', 'extraArrayProp', 'arraySubclass', 'reverse', 'freeze', 'grow',
] as const
type Mutation = { at: number; kind: (typeof mutationKinds)[number]; pick: number }

/**
 * Replacement value `i`: wrong types, limits either side, and a few values that are valid somewhere.
 * Made afresh for each use, since later mutations alter the objects a body holds.
 */
function replacement(i: number): unknown {
  const values: unknown[] = [
    undefined, null, true, 0, -0, -1, 1, 1.5, NaN, Infinity, 2 ** 53, Number.MAX_SAFE_INTEGER, limits.counterMax, limits.counterMax + 1, 1n, Symbol('s'), () => 1,
    '', 'x', 'n1.1764085123456', 'a'.repeat(128), 'a'.repeat(129), '😀'.repeat(100), '😀'.repeat(129), '\uD800', '__proto__',
    [], [1], {}, Object.create(null), new Date(0), new Map(), new Uint16Array(2), new DataView(new ArrayBuffer(2)),
    new ArrayBuffer(2), Object.create(Uint8Array.prototype), { vv: {}, siblings: [] }, { actor: 'a', counter: 1, value: null },
    // Keys: empty, too long, invalid UTF-8 (stray byte, overlong, truncated), NUL, a lone surrogate
    // in CESU-8 form, a BOM, and the longest valid key.
    new Uint8Array(0), new Uint8Array(limits.keyBytesMax + 1).fill(0x61), new Uint8Array([0xff]), new Uint8Array([0xc0, 0xaf]),
    new Uint8Array([0xe2, 0x82]), new Uint8Array([0x61, 0x00]), new Uint8Array([0xed, 0xa0, 0x80]),
    new Uint8Array([0xef, 0xbb, 0xbf]), Buffer.from('é'.repeat(limits.keyBytesMax / 2)), Buffer.from('k'),
  ]
  return values[i % values.length]
}
const extraKeys: readonly PropertyKey[] = ['extra', '__proto__', Symbol('extra'), 'hidden', '0', '10', 'a', 'zzz', '\uFFFF', 'hintFor', 'elided', 'early']

function clone(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(clone)
  if (typeof v === 'object' && v !== null && !ArrayBuffer.isView(v)) {
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, clone(x)]))
  }
  return v
}

/** Every object or array in the body, as the slot holding it, the body itself first. */
function containers(root: Body): Array<{ parent: Body; key: PropertyKey }> {
  const out: Array<{ parent: Body; key: PropertyKey }> = []
  const walk = (parent: Body, key: PropertyKey, depth: number): void => {
    const v = parent[key]
    if (typeof v !== 'object' || v === null || ArrayBuffer.isView(v) || depth > 6) return
    out.push({ parent, key })
    for (const k of Object.keys(v)) walk(v as Body, k, depth + 1)
  }
  walk(root, 'body', 0)
  return out
}

class Holder {}
class SubArray<T> extends Array<T> {}

function mutate(root: Body, { at, kind, pick }: Mutation): void {
  const slots = containers(root)
  const { parent, key } = slots[at % slots.length]!
  const c = parent[key] as Body
  // An earlier 'freeze' makes this container (or the slot holding it) read-only: leave it be.
  if (Object.isFrozen(c) || Object.isFrozen(parent)) return
  const keys = Object.keys(c)
  const k = keys.length > 0 ? keys[pick % keys.length]! : 'x'
  // Defined rather than assigned, so that it also replaces a getter left by an earlier mutation.
  const define = (o: object, p: PropertyKey, value: unknown): void => {
    Object.defineProperty(o, p, { value, enumerable: true, writable: true, configurable: true })
  }
  const replace = (value: unknown): void => define(parent, key, value)
  switch (kind) {
    case 'set': define(c, k, replacement(pick)); return
    case 'delete': delete c[k]; return
    case 'add': {
      const extra = extraKeys[pick % extraKeys.length]!
      const value = replacement(pick >> 4)
      // An own __proto__ key, and a non-enumerable one, can only be made with defineProperty.
      Object.defineProperty(c, extra, { value, enumerable: extra !== 'hidden', writable: true, configurable: true })
      return
    }
    case 'getter': {
      const value = c[k]
      Object.defineProperty(c, k, { get: () => value, enumerable: true, configurable: true })
      return
    }
    case 'nullProto': replace(Object.assign(Object.create(null), c)); return
    case 'inherit': replace(Object.create(c)); return
    case 'classInstance': replace(Object.assign(new Holder(), c)); return
    case 'arrayify': replace(Array.isArray(c) ? Object.assign({}, c) : Object.values(c)); return
    case 'hole': if (Array.isArray(c)) { if (c.length > 0) delete c[pick % c.length]; else c.length = 1 } return
    case 'extraArrayProp': if (Array.isArray(c)) Object.assign(c, pick % 2 ? { foo: 1 } : { [Symbol('s')]: 1 }); return
    case 'arraySubclass': if (Array.isArray(c)) replace(SubArray.from(c)); return
    case 'reverse': replace(Array.isArray(c) ? [...c].reverse() : Object.fromEntries(Object.entries(c).reverse())); return
    case 'freeze': Object.freeze(c); return
    case 'grow': {
      // Up to and past the limits: siblingsReadMax for lists, vectorActorsMax for objects (vectors).
      if (Array.isArray(c)) {
        if (c.length > 0) while (c.length < limits.siblingsReadMax + (pick % 2)) c.push(c[0])
      } else {
        const n = limits.vectorActorsMax - keys.length + (pick % 2)
        for (let i = 0; i < n; i++) define(c, `~${String(i).padStart(5, '0')}`, 1)
      }
      return
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Edge cases, each with zod's verdict written down so that a case cannot quietly stop testing
// what its name says.

type Edge = [name: string, side: Side, type: RequestType, body: unknown, zodAccepts: boolean]

function edgeCases(): Edge[] {
  const key = enc.encode('k')
  const value = enc.encode('v')
  const fakeBytes = Object.create(Uint8Array.prototype) as unknown
  const put = (context: unknown, extra: Body = {}): Body => ({ key, context, value, ...extra })
  const state = (vv: unknown, siblings: unknown = []): Body => ({ vv, siblings })
  const sib = (extra: Body = {}): Body => ({ actor: 'a.1', counter: 1, value: null, ...extra })
  const nonEnumerable = Object.defineProperty({ 'a.1': 1 }, 'b.1', { value: 2, enumerable: false })
  const sorted = (n: number): Record<string, number> =>
    Object.fromEntries(Array.from({ length: n }, (_, i) => [`n.${String(i).padStart(5, '0')}`, 1]))
  const sparse: unknown[] = [sib()]
  sparse.length = 2
  const cases: Edge[] = [
    // Version vectors (z.record): prototypes, odd keys, order, limits, counters.
    ['vv plain', 'request', 'put', put({ 'a.1': 1, 'b.1': 2 }), true],
    ['vv null prototype (zod copies it to a plain object)', 'request', 'put', put(Object.assign(Object.create(null), { 'a.1': 1 })), true],
    ['vv own __proto__ key (zod drops it)', 'request', 'put', put(JSON.parse('{"__proto__": 1, "a.1": 1}')), true],
    ['vv symbol key', 'request', 'put', put({ 'a.1': 1, [Symbol('s')]: 1 }), false],
    ['vv non-enumerable key (zod drops it)', 'request', 'put', put(nonEnumerable), true],
    ['vv getter', 'request', 'put', put({ get 'a.1'() { return 1 } }), true],
    ['vv integer-like keys out of order', 'request', 'put', put({ 9: 1, 10: 1 }), false],
    ['vv integer-like key first', 'request', 'put', put({ 9: 1, a: 1 }), true],
    ['vv unsorted', 'request', 'put', put({ 'b.1': 1, 'a.1': 1 }), false],
    ['vv array', 'request', 'put', put([1]), false],
    ['vv class instance', 'request', 'put', put(Object.assign(new Holder(), { 'a.1': 1 })), false],
    ['vv own constructor number', 'request', 'put', put({ constructor: 3 }), true],
    ['vv own constructor function', 'request', 'put', put({ constructor: () => 1 }), false],
    ['vv frozen', 'request', 'put', put(Object.freeze({ 'a.1': 1 })), true],
    ['vv empty actor', 'request', 'put', put({ '': 1 }), false],
    ['vv 129-unit actor', 'request', 'put', put({ ['a'.repeat(129)]: 1 }), false],
    ['vv 128 code points in 200 units (zod counts code points)', 'request', 'put', put({ ['😀'.repeat(100)]: 1 }), true],
    [`vv ${limits.vectorActorsMax} actors`, 'request', 'put', put(sorted(limits.vectorActorsMax)), true],
    [`vv ${limits.vectorActorsMax + 1} actors`, 'request', 'put', put(sorted(limits.vectorActorsMax + 1)), false],
    ...([NaN, -1, 0, -0, 1.5, 2 ** 53, Number.MAX_SAFE_INTEGER, limits.counterMax + 1, Infinity, '1', 1n, null] as unknown[]).map((n): Edge =>
      [`vv counter ${String(n)}`, 'request', 'put', put({ 'a.1': n }), false]),
    ['vv counter counterMax', 'request', 'put', put({ 'a.1': limits.counterMax }), true],
    // Keys.
    ['key empty', 'request', 'get', { key: new Uint8Array(0) }, false],
    ['key 512 bytes', 'request', 'get', { key: new Uint8Array(limits.keyBytesMax).fill(0x61) }, true],
    ['key 513 bytes', 'request', 'get', { key: new Uint8Array(limits.keyBytesMax + 1).fill(0x61) }, false],
    ['key invalid UTF-8', 'request', 'get', { key: new Uint8Array([0xc3, 0x28]) }, false],
    ['key lone surrogate as bytes', 'request', 'get', { key: new Uint8Array([0xed, 0xa0, 0x80]) }, false],
    ['key with NUL', 'request', 'get', { key: new Uint8Array([0x61, 0x00]) }, false],
    ['key with a leading BOM (kept as part of the key)', 'request', 'get', { key: new Uint8Array([0xef, 0xbb, 0xbf, 0x61]) }, true],
    ['key as a string', 'request', 'get', { key: 'k' }, false],
    ['key as a Buffer view', 'request', 'get', { key: Buffer.from('xxkey').subarray(2) }, true],
    ['key as a fake Uint8Array', 'request', 'get', { key: fakeBytes }, false],
    ['key as an array of bytes', 'request', 'get', { key: [0x61] }, false],
    // Values.
    ['value a fake Uint8Array (passes instanceof)', 'request', 'put', put({}, { value: fakeBytes }), true],
    ['value Uint16Array', 'request', 'put', put({}, { value: new Uint16Array(1) }), false],
    ['value undefined', 'request', 'put', put({}, { value: undefined }), false],
    ['value missing', 'request', 'put', { key, context: {} }, false],
    // Bodies (z.object): prototypes, extra and optional keys.
    ['body null prototype', 'request', 'put', Object.assign(Object.create(null), put({})), true],
    ['body fields inherited', 'request', 'put', Object.create(put({})), true],
    ['body with an extra key (zod drops it)', 'request', 'put', put({}, { extra: 1 }), true],
    ['body with an own __proto__ key', 'request', 'put', Object.defineProperty(put({}), '__proto__', { value: 1, enumerable: true }), true],
    ['body an array', 'request', 'get', [key], false],
    ['body null', 'request', 'get', null, false],
    ['hintFor present but undefined (zod keeps the key)', 'request', 'put', put({}, { hintFor: undefined }), true],
    ['hintFor empty', 'request', 'put', put({}, { hintFor: '' }), false],
    ['hintFor null', 'request', 'replicate', { key, state: state({}), hintFor: null }, false],
    ['hintFor 129 units', 'request', 'replicate', { key, state: state({}), hintFor: 'h'.repeat(129) }, false],
    // States and siblings.
    ['sibling with an extra key (zod drops it)', 'request', 'replicate', { key, state: state({ 'a.1': 1 }, [sib({ extra: 1 })]) }, true],
    ['sibling null prototype', 'request', 'replicate', { key, state: state({ 'a.1': 1 }, [Object.assign(Object.create(null), sib())]) }, true],
    ['sibling value missing', 'request', 'replicate', { key, state: state({}, [{ actor: 'a.1', counter: 1 }]) }, false],
    ['siblings sparse', 'request', 'replicate', { key, state: state({}, sparse) }, false],
    ['siblings an array subclass', 'request', 'replicate', { key, state: state({}, SubArray.from([sib()])) }, true],
    ['siblings with an extra property', 'request', 'replicate', { key, state: state({}, Object.assign([sib()], { foo: 1 })) }, true],
    ['siblings an object', 'request', 'replicate', { key, state: state({}, { 0: sib() }) }, false],
    [`${limits.siblingsReadMax} siblings`, 'reply', 'get', { state: state({}, Array.from({ length: limits.siblingsReadMax }, () => sib())) }, true],
    [`${limits.siblingsReadMax + 1} siblings`, 'reply', 'get', { state: state({}, Array.from({ length: limits.siblingsReadMax + 1 }, () => sib())) }, false],
    ['state with an extra key', 'reply', 'get', { state: { ...state({}), extra: 1 } }, true],
    ['get reply state null', 'reply', 'get', { state: null }, true],
    ['get reply state missing', 'reply', 'get', {}, false],
    ['put reply elided present but undefined', 'reply', 'put', { state: state({}), elided: undefined }, true],
    ['put reply elided with an extra key', 'reply', 'put', { state: state({}), elided: { actor: 'a.1', counter: 2, extra: 1 } }, true],
    ['put reply elided without counter', 'reply', 'put', { state: state({}), elided: { actor: 'a.1' } }, false],
    ['put reply elided null', 'reply', 'put', { state: state({}), elided: null }, false],
    // An early stamp (docs/protocol.md): the state with early, then again once durable.
    ['put request early', 'request', 'put', put({}, { early: true }), true],
    ['put request early false', 'request', 'put', put({}, { early: false }), false],
    ['put request early 1', 'request', 'put', put({}, { early: 1 }), false],
    ['put reply early', 'reply', 'put', { state: state({}), early: true }, true],
    ['put reply early false', 'reply', 'put', { state: state({}), early: false }, false],
    ['put reply without a state', 'reply', 'put', { serviceUs: 5, fsyncUs: 3 }, false],
    ['put reply state null', 'reply', 'put', { state: null }, false],
    // The replicate reply is z.object({}): any object but an array.
    ['replicate reply {}', 'reply', 'replicate', {}, true],
    ['replicate reply with keys', 'reply', 'replicate', { a: 1 }, true],
    ['replicate reply null prototype', 'reply', 'replicate', Object.create(null), true],
    ['replicate reply array', 'reply', 'replicate', [], false],
    ['replicate reply null', 'reply', 'replicate', null, false],
    ['replicate reply string', 'reply', 'replicate', 'ok', false],
  ]
  return cases
}

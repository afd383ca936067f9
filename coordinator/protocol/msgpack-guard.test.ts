// Tests for msgpack-guard.ts: decoding frames and contexts costs at most linear time and memory.
// The guard is checked against an oracle, a second copy of msgpackr (its CommonJS build, a separate
// module instance) in which every extension type is overridden to throw, so that "msgpackr with
// extensions disabled" is literally msgpackr: the guard must accept exactly the inputs that copy
// decodes to a plain value (null, booleans, numbers, 64-bit integers, strings, bytes, arrays, maps
// with string keys other than __proto__) within the depth bound. Inputs are random bytes, random
// valid msgpack encoded by msgpackr from fast-check values, and mutations of both (truncation,
// appended bytes, flipped bytes, spliced ext headers). Randomized: the seed is printed, and
// RINGKV_SEED=<n> replays a run.

import assert from 'node:assert/strict'
import { createRequire } from 'node:module'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import * as msgpackr from 'msgpackr'
import { KvError } from '../errors.ts'
import { limits } from '../limits.ts'
import { decodeContext } from '../version/context.ts'
import { decodeFrame, encodeFrame, FrameError, type Message } from './codec.ts'
import { msgpackIssue, plainUnpackrOptions, type GuardStats } from './msgpack-guard.ts'
import { testSeed } from '../../test/seed.ts'

const { Packr, Unpackr } = msgpackr
const seed = testSeed('msgpack guard')
let runs = 0
/** fast-check parameters for the next property: its own seed derived from the run's. */
const params = (numRuns: number): fc.Parameters<unknown> => ({ seed: (seed + runs++) % 2 ** 31, numRuns })

// The oracle: msgpackr's CommonJS build, with every extension type made to throw.
const oracleLib = createRequire(import.meta.url)('msgpackr') as typeof msgpackr
assert.notEqual(oracleLib.Unpackr, Unpackr, 'the oracle must be a separate msgpackr instance')
for (let type = 0; type < 256; type++) {
  oracleLib.addExtension({ type, unpack() { throw new Error(`extension ${type}`) } } as Parameters<typeof oracleLib.addExtension>[0])
}
const oracleUnpackr = new oracleLib.Unpackr({ useRecords: false, mapsAsObjects: false, structuredClone: false, copyBuffers: false })

/** Whether msgpackr without extensions decodes `bytes` to one plain value within the depth bound. */
function oracleAccepts(bytes: Uint8Array): boolean {
  let value: unknown
  try {
    value = oracleUnpackr.unpack(bytes)
  } catch {
    return false
  }
  return plainDepth(value) <= limits.decodeDepthMax
}

/** Nesting depth of a plain value (a scalar is 0), or Infinity if it holds anything else. */
function plainDepth(v: unknown): number {
  if (v === null || typeof v === 'boolean' || typeof v === 'number' || typeof v === 'string' || typeof v === 'bigint') return 0
  if (v instanceof Uint8Array) return 0
  let deepest = 0
  if (Array.isArray(v)) {
    for (const x of v) deepest = Math.max(deepest, plainDepth(x))
    return 1 + deepest
  }
  if (v instanceof Map) {
    for (const [k, x] of v) {
      if (typeof k !== 'string' || k === '__proto__') return Infinity
      deepest = Math.max(deepest, plainDepth(x))
    }
    return 1 + deepest
  }
  return Infinity // undefined, C1, records (plain objects), anything an extension made
}

// The decoders as they were before the guard: the same options, the same envelope checks.
const codecUnpackrBefore = new Unpackr({ useRecords: false, copyBuffers: false, mapsAsObjects: true })
const contextUnpackrBefore = new Unpackr({ useRecords: false })
const codecUnpackrNow = new Unpackr({ ...plainUnpackrOptions, copyBuffers: false, mapsAsObjects: true })
const contextUnpackrNow = new Unpackr({ ...plainUnpackrOptions })

function decodeFrameBefore(frame: Uint8Array): unknown {
  let decoded: unknown
  try { decoded = codecUnpackrBefore.unpack(frame) } catch { return 'FrameError: not msgpack' }
  if (!Array.isArray(decoded)) return 'FrameError: not an array'
  if (decoded.length > limits.frameMessagesMax) return 'FrameError: too many'
  return decoded.map((m: unknown) => {
    // The envelope as codec.ts checks it (a fourth slot, the ring version, came with membership).
    if (!Array.isArray(m) || m.length < 3 || m.length > 4) return { bad: 'message is not [type, id, body] or [type, id, body, ringVersion]', id: 0 }
    const [type, id, , rv] = m as [unknown, unknown, unknown, unknown]
    if (!(typeof id === 'number' && Number.isSafeInteger(id) && id >= 0)) return { bad: 'message id is not a non-negative integer', id: 0 }
    if (typeof type !== 'string') return { bad: 'message type is not a string', id }
    if (m.length === 4 && !(typeof rv === 'number' && Number.isSafeInteger(rv) && rv >= 0 && rv <= limits.membershipCounterMax)) return { bad: 'message ring version is not an integer from 0 to 2^48', id }
    return m
  })
}

function decodeFrameNow(frame: Uint8Array): unknown {
  try {
    return decodeFrame(frame)
  } catch (e) {
    assert.ok(e instanceof FrameError, String(e))
    return /not an array/.test(e.message) ? 'FrameError: not an array' : /messages, over/.test(e.message) ? 'FrameError: too many' : 'FrameError: not msgpack'
  }
}

/** Nodes of a decoded value (map keys included) plus the UTF-16 units of its strings and its bytes. */
function footprint(v: unknown): { nodes: number; payload: number } {
  let nodes = 0
  let payload = 0
  const stack: unknown[] = [v]
  while (stack.length > 0) {
    const x = stack.pop()
    nodes++
    if (typeof x === 'string') payload += x.length
    else if (x instanceof Uint8Array) payload += x.byteLength
    else if (Array.isArray(x)) stack.push(...x)
    else if (x !== null && typeof x === 'object') {
      for (const [k, y] of Object.entries(x)) { nodes++; payload += k.length; stack.push(y) }
    }
  }
  return { nodes, payload }
}

const toText = (b: Uint8Array): string => Buffer.from(b).toString('base64url')

// ---------------------------------------------------------------------------------------------
// Inputs.

const leaf = fc.oneof(
  fc.constant(null), fc.boolean(),
  fc.integer(), fc.integer({ min: -(2 ** 31), max: 2 ** 32 }), fc.maxSafeInteger(), fc.double(),
  fc.bigInt({ min: -(2n ** 63n), max: 2n ** 64n - 1n }),
  fc.string({ maxLength: 12 }), fc.string({ maxLength: 300, unit: 'binary' }),
  fc.constantFrom('__proto__', '__proto_', 'constructor'),
  fc.uint8Array({ maxLength: 300 }),
)
const { value: plainValue } = fc.letrec<{ value: unknown; array: unknown[]; object: Record<string, unknown>; map: Map<unknown, unknown> }>(tie => ({
  value: fc.oneof({ depthSize: 'small', withCrossShrink: true }, leaf, tie('array'), tie('object'), tie('map')),
  array: fc.array(tie('value'), { maxLength: 20 }),
  object: fc.dictionary(fc.oneof(fc.string({ maxLength: 10 }), fc.constant('__proto__')), tie('value'), { maxKeys: 20 }),
  // Maps may have keys that are not strings: msgpackr encodes them as they are.
  map: fc.array(fc.tuple(fc.oneof(fc.string({ maxLength: 6 }), fc.integer(), fc.constant(null), fc.uint8Array({ maxLength: 3 })), tie('value')), { maxLength: 5 })
    .map(entries => new Map(entries)),
}))
/** Values nested in arrays or maps to just under and just over the depth bound. */
const deepValue = fc.tuple(plainValue, fc.integer({ min: limits.decodeDepthMax - 4, max: limits.decodeDepthMax + 4 }), fc.boolean())
  .map(([v, wraps, asMap]) => Array.from({ length: wraps }).reduce<unknown>(inner => (asMap ? { k: inner } : [inner]), v))
/** Frames and contexts shaped like the real ones, so the decoders get past their envelope checks. */
const frameValue = fc.array(fc.tuple(fc.string({ maxLength: 10 }), fc.oneof(fc.nat(), fc.integer()), plainValue), { maxLength: 8 })
const contextValue = fc.array(fc.tuple(fc.string({ minLength: 1, maxLength: 8 }), fc.oneof(fc.nat(), fc.double())), { maxLength: 6 })
  .map(entries => entries.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0)))

const packers = [
  new Packr({ useRecords: false, variableMapSize: true }),
  new Packr({ useRecords: false }), // maps with 16-bit headers whatever their size
]
const encoded = fc.tuple(fc.oneof(plainValue, deepValue, frameValue, contextValue), fc.nat(packers.length - 1))
  .map(([v, p]) => packers[p]!.pack(v) as Uint8Array)

/** Ext headers and other bytes the guard refuses, as msgpackr's extensions write them. */
const hostile = fc.constantFrom(
  [0xd4, 0x00, 0x00], [0xd4, 0x72, 0x00], [0xd5, 0x72, 0x00, 0x00], [0xd6, 0x69, 0, 0, 0, 1], [0xd6, 0x70, 0, 0, 0, 1],
  [0xd6, 0xff, 0, 0, 0, 0], [0xc7, 0x01, 0x73, 0x90], [0xc8, 0x00, 0x01, 0x74, 0x01], [0xc9, 0, 0, 0, 1, 0x42, 0x05],
  [0xd7, 0x62, 0, 0, 0, 8, 0, 0, 0, 0], [0xd8, 0x65, ...new Array<number>(16).fill(0)], [0xc1],
  [0xdd, 0xff, 0xff, 0xff, 0xff], [0xdf, 0x00, 0x0f, 0x42, 0x40], [0xdb, 0x7f, 0xff, 0xff, 0xff], [0xc6, 0xff, 0xff, 0xff, 0xff],
)
type Mutation = { op: 'truncate' | 'flip' | 'append' | 'splice' | 'overwrite'; at: number; bytes: readonly number[] }
const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ op: fc.constant('truncate' as const), at: fc.nat(), bytes: fc.constant([]) }),
  fc.record({ op: fc.constant('flip' as const), at: fc.nat(), bytes: fc.array(fc.integer({ min: 0, max: 255 }), { minLength: 1, maxLength: 1 }) }),
  fc.record({ op: fc.constant('append' as const), at: fc.constant(0), bytes: fc.array(fc.integer({ min: 0, max: 255 }), { minLength: 1, maxLength: 4 }) }),
  fc.record({ op: fc.constant('splice' as const), at: fc.nat(), bytes: hostile }),
  // In place of one byte, which is often a whole one-byte value (a small integer, nil, a boolean).
  fc.record({ op: fc.constant('overwrite' as const), at: fc.nat(), bytes: hostile }),
)
function mutate(input: Uint8Array, ms: readonly Mutation[]): Uint8Array {
  let b = Array.from(input)
  for (const m of ms) {
    const at = b.length === 0 ? 0 : m.at % (b.length + 1)
    if (m.op === 'truncate') b = b.slice(0, at)
    else if (m.op === 'flip') { if (at < b.length) b[at] = m.bytes[0]! }
    else if (m.op === 'append') b = b.concat(m.bytes)
    else if (m.op === 'splice') b = [...b.slice(0, at), ...m.bytes, ...b.slice(at)]
    else b = [...b.slice(0, at), ...m.bytes, ...b.slice(at + 1)]
  }
  return Uint8Array.from(b)
}
const anyInput = fc.oneof(
  fc.uint8Array({ maxLength: 64 }),
  encoded,
  fc.tuple(encoded, fc.array(mutation, { minLength: 1, maxLength: 3 })).map(([b, ms]) => mutate(b, ms)),
)

// ---------------------------------------------------------------------------------------------

describe('msgpack guard', () => {
  it('accepts exactly what msgpackr without extensions decodes to a plain value; decoders agree with before (property)', () => {
    let accepted = 0
    fc.assert(fc.property(anyInput, bytes => {
      const stats: GuardStats = { items: 0 }
      const issue = msgpackIssue(bytes, stats)
      assert.equal(issue === null, oracleAccepts(bytes), `guard said ${issue ?? 'ok'} for ${Buffer.from(bytes).toString('hex')}`)
      if (issue !== null) {
        assert.ok(issue.length < 200, 'reasons are short')
        assert.throws(() => decodeFrame(bytes), (e: unknown) => e instanceof FrameError && e.message.includes(issue))
        return
      }
      accepted++
      // The same values as the options before the guard, and the same frames.
      assert.deepStrictEqual(codecUnpackrNow.unpack(bytes), codecUnpackrBefore.unpack(bytes))
      assert.deepStrictEqual(contextUnpackrNow.unpack(bytes), contextUnpackrBefore.unpack(bytes))
      assert.deepStrictEqual(decodeFrameNow(bytes), decodeFrameBefore(bytes))
    }), params(4000))
    assert.ok(accepted > 500, `the generators should produce plenty of valid msgpack, got ${accepted}`)
  })

  it('contexts: the guard stands in front of decodeContext, which returns a vector or throws BadRequest (property)', () => {
    fc.assert(fc.property(anyInput, bytes => {
      const text = toText(bytes)
      fc.pre(text.length > 0 && text.length <= limits.contextBytesMax)
      let vv: Record<string, number>
      try {
        vv = decodeContext(text)
      } catch (e) {
        assert.ok(e instanceof KvError && e.kind === 'BadRequest', String(e))
        if (msgpackIssue(bytes) !== null) assert.match(e.message, /not plain MessagePack/)
        assert.ok(e.message.length < 400, `error messages stay short: ${e.message.length}`)
        return
      }
      assert.equal(msgpackIssue(bytes), null)
      for (const c of Object.values(vv)) assert.ok(Number.isSafeInteger(c) && c > 0)
    }), params(3000))
  })

  it('visits at most one value per input byte, and what it accepts decodes to at most one node and one unit per byte (property)', () => {
    fc.assert(fc.property(anyInput, bytes => {
      const stats: GuardStats = { items: 0 }
      const issue = msgpackIssue(bytes, stats)
      assert.ok(stats.items <= Math.max(bytes.length, 1), `${stats.items} values visited in ${bytes.length} bytes`)
      if (issue !== null) return
      const { nodes, payload } = footprint(codecUnpackrNow.unpack(bytes))
      assert.ok(nodes + payload <= bytes.length, `${nodes} nodes and ${payload} string/byte units from ${bytes.length} bytes`)
      const ctx = footprint(contextUnpackrNow.unpack(bytes))
      assert.ok(ctx.nodes + ctx.payload <= bytes.length)
    }), params(4000))
  })

  it('refuses each kind of input it must refuse, with a short reason', () => {
    const cases: Array<[string, number[], RegExp]> = [
      ['empty input', [], /truncated/],
      ['fixext 1 (msgpackr: undefined)', [0xd4, 0x00, 0x00], /extension type 0xd4/],
      ['ext 8 (msgpackr: Set)', [0xc7, 0x01, 0x73, 0x90], /extension type 0xc7/],
      ['ext 16', [0xc8, 0x00, 0x00, 0x01], /extension type 0xc8/],
      ['ext 32', [0xc9, 0x00, 0x00, 0x00, 0x00, 0x01], /extension type 0xc9/],
      ['fixext 2/4/8/16', [0x92, 0xd5, 0x72, 0, 0], /extension type 0xd5 at byte 1/],
      ['never-used 0xc1', [0x91, 0xc1], /0xc1 at byte 1/],
      ['trailing byte', [0x90, 0x00], /trailing bytes/],
      ['array longer than the bytes left', [0x92, 0x01], /claims 2 elements, more than the 1 bytes left/],
      ['truncated float', [0xcb, 0, 0, 0], /truncated/],
      ['truncated length header', [0xda, 0x01], /truncated/],
      ['str 32 longer than the input', [0xdb, 0x7f, 0xff, 0xff, 0xff, 0x61], /truncated/],
      ['bin 32 longer than the input', [0xc6, 0xff, 0xff, 0xff, 0xff], /truncated/],
      ['array 32 of 2^32-1 elements', [0xdd, 0xff, 0xff, 0xff, 0xff, 0xc0], /claims 4294967295 elements/],
      ['map 32 of 1e6 entries', [0xdf, 0x00, 0x0f, 0x42, 0x40, 0xa1, 0x61, 0xc0], /claims 1000000 entries/],
      ['an inner claim over the bytes left', [0x92, 0x92, 0xc0, 0xc0], /claims 2 elements/],
      ['integer map key', [0x81, 0x01, 0x02], /map key at byte 1 is not a string/],
      ['array map key', [0x81, 0x90, 0x02], /not a string/],
      ['second key not a string', [0x82, 0xa1, 0x61, 0x01, 0xc0, 0x02], /map key at byte 4/],
      ['__proto__ key', [0x81, 0xa9, ...Buffer.from('__proto__'), 0x01], /__proto__/],
      ['__proto__ key as str 8', [0x81, 0xd9, 0x09, ...Buffer.from('__proto__'), 0x01], /__proto__/],
      ['nesting one past the bound', [...new Array<number>(limits.decodeDepthMax + 1).fill(0x91), 0xc0], /nesting deeper than/],
      ['an empty array one past the bound', [...new Array<number>(limits.decodeDepthMax).fill(0x91), 0x90], /nesting deeper than/],
    ]
    const huge = new Uint8Array(limits.frameBytesMax + 1)
    assert.match(msgpackIssue(huge) ?? '', /over the \d+-byte limit/, 'input longer than any frame')
    for (const [name, bytes, reason] of cases) {
      const issue = msgpackIssue(Uint8Array.from(bytes))
      assert.ok(issue !== null && reason.test(issue), `${name}: got ${issue}`)
      assert.equal(oracleAccepts(Uint8Array.from(bytes)), false, name)
    }
    // And accepts what sits right at the bounds.
    const accepted: Array<[string, number[]]> = [
      ['nesting at the bound', [...new Array<number>(limits.decodeDepthMax - 1).fill(0x91), 0x90]],
      ['values still owed equal the bytes left', [0x92, 0x92, 0xc0, 0xc0, 0xc0]],
      ['a key of 9 bytes that is not __proto__', [0x81, 0xa9, ...Buffer.from('__proto_x'), 0x01]],
      ['uint 64 and int 64 (plain msgpack)', [0x92, 0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0]],
      ['empty str 32 and bin 32', [0x92, 0xdb, 0, 0, 0, 0, 0xc6, 0, 0, 0, 0]],
    ]
    for (const [name, bytes] of accepted) {
      assert.equal(msgpackIssue(Uint8Array.from(bytes)), null, name)
      assert.equal(oracleAccepts(Uint8Array.from(bytes)), true, name)
    }
  })

  it('msgpackr decodes its extensions whatever the options say, which is why the guard exists', () => {
    const u = new Unpackr({ ...plainUnpackrOptions })
    // Set (0x73), RegExp (0x78), a record definition (fixext 0x72), undefined (ext 0), a Date (-1).
    assert.ok(u.unpack(new Packr({ moreTypes: true }).pack(new Set([1]))) instanceof Set)
    assert.ok(u.unpack(new Packr({ moreTypes: true }).pack(/a+/)) instanceof RegExp)
    assert.deepEqual(u.unpack(Uint8Array.from([0xd4, 0x72, 0x00, 0x91, 0xa1, 0x61, 0x01])), { a: 1 })
    assert.equal(u.unpack(Uint8Array.from([0xd4, 0x00, 0x00])), undefined)
    assert.ok(u.unpack(new Packr().pack(new Date(0))) instanceof Date)
    // structuredClone: false is the one switch there is: shared references throw.
    const shared = new Packr({ structuredClone: true }).pack((() => { const a = [1]; return [a, a] })())
    assert.throws(() => u.unpack(shared), /Structured clone extension is disabled/)
    // Every one of these is refused before msgpackr sees it.
    for (const bytes of [new Packr({ moreTypes: true }).pack(new Set([1])), new Packr().pack(new Date(0)), shared]) {
      assert.match(msgpackIssue(bytes) ?? '', /extension type/)
    }
  })

  it('a __proto__ key cannot set a prototype: msgpackr renames it, and the guard refuses it', () => {
    // {"__proto__": {"polluted": 1}}, as any msgpack encoder writes it.
    const bytes = Uint8Array.from([0x81, 0xa9, ...Buffer.from('__proto__'), 0x81, 0xa8, ...Buffer.from('polluted'), 0x01])
    for (const u of [codecUnpackrBefore, codecUnpackrNow]) {
      const v = u.unpack(bytes) as Record<string, unknown>
      assert.equal(Object.getPrototypeOf(v), Object.prototype)
      assert.ok(!Object.hasOwn(v, '__proto__'))
      assert.deepEqual(v['__proto_'], { polluted: 1 }) // renamed, silently
      assert.equal(({} as Record<string, unknown>)['polluted'], undefined)
    }
    // Inside a frame, in a 16-entry map (msgpackr's other map reader) and through the key cache.
    const frame = Uint8Array.from([0x91, 0x93, 0xa3, ...Buffer.from('put'), 0x01, 0x81, 0xa9, ...Buffer.from('__proto__'), 0x01])
    assert.throws(() => decodeFrame(frame), /map key at byte 8 is __proto__/)
    const map16 = Uint8Array.from([0xde, 0x00, 0x01, 0xa9, ...Buffer.from('__proto__'), 0x81, 0xa1, 0x78, 0x01])
    const v = codecUnpackrBefore.unpack(map16) as Record<string, unknown>
    assert.equal(Object.getPrototypeOf(v), Object.prototype)
    assert.match(msgpackIssue(map16) ?? '', /__proto__/)
  })

  it('refuses the structured-clone reference bomb cheaply, which msgpackr alone would have expanded', () => {
    // A DAG where each level references the previous one twice, as Packr({ structuredClone: true })
    // writes it (0x69 marks a shared value, 0x70 points back at it), plus one trailing byte.
    const levels = 20
    let dag: unknown = ['x']
    for (let i = 0; i < levels; i++) dag = [dag, dag]
    const packed = new Packr({ structuredClone: true }).pack(dag) as Uint8Array
    const bomb = new Uint8Array(packed.length + 1)
    bomb.set(packed)
    assert.ok(bomb.length < 300, `the bomb is ${bomb.length} bytes`)

    // Refused at its first extension header: a handful of bytes visited, nothing decoded.
    const stats: GuardStats = { items: 0 }
    assert.match(msgpackIssue(bomb, stats) ?? '', /extension type 0xd6 at byte 1/)
    assert.ok(stats.items <= 2, `the guard visited ${stats.items} values`)
    assert.throws(() => decodeFrame(bomb), (e: unknown) => e instanceof FrameError && /extension type/.test(e.message) && e.message.length < 200)
    const text = toText(bomb)
    assert.ok(text.length <= limits.contextBytesMax)
    assert.throws(() => decodeContext(text), (e: unknown) => e instanceof KvError && e.kind === 'BadRequest' && /extension type/.test(e.message))

    // Without the guard, the options msgpackr was given before decode the shared references: the
    // value is a DAG whose tree (what a schema check, String() or JSON.stringify walks) has 2^21+2^20-1
    // nodes, counted here per distinct node without walking the tree.
    const treeNodes = new Map<unknown, number>()
    const count = (v: unknown): number => {
      if (!Array.isArray(v)) return 1
      const known = treeNodes.get(v)
      if (known !== undefined) return known
      const n = 1 + v.reduce((sum: number, x: unknown) => sum + count(x), 0)
      treeNodes.set(v, n)
      return n
    }
    for (const u of [codecUnpackrBefore, contextUnpackrBefore]) {
      const expanded = count(u.unpack(packed))
      assert.equal(expanded, 2 ** (levels + 1) + 2 ** levels - 1)
      assert.ok(expanded > 10_000 * bomb.length, `${expanded} tree nodes from ${bomb.length} bytes`)
    }
    // With the trailing byte, msgpackr builds its error message from JSON.stringify of that tree:
    // at a few levels the text it builds doubles with each level while the input grows by 13 bytes.
    const jsonLengths: number[] = []
    for (let l = 4; l <= 8; l++) {
      let small: unknown = ['x']
      for (let i = 0; i < l; i++) small = [small, small]
      jsonLengths.push(JSON.stringify(contextUnpackrBefore.unpack(new Packr({ structuredClone: true }).pack(small))).length)
      const withTrailer = Uint8Array.from([...new Packr({ structuredClone: true }).pack(small), 0x00])
      assert.throws(() => contextUnpackrBefore.unpack(withTrailer), /end of buffer not reached/)
    }
    for (let i = 1; i < jsonLengths.length; i++) assert.equal(jsonLengths[i], 2 * jsonLengths[i - 1]! + 3)
  })

  it('caps the arrays and maps one input decodes to (a frame of empty maps would cost ~64x its size in heap)', () => {
    const frameOfEmptyMaps = (maps: number): Uint8Array => {
      const bytes = new Uint8Array(5 + maps)
      bytes[0] = 0xdd
      new DataView(bytes.buffer).setUint32(1, maps)
      bytes.fill(0x80, 5)
      return bytes
    }
    // The outer array is one container, so decodeContainersMax - 1 maps fit exactly.
    assert.equal(msgpackIssue(frameOfEmptyMaps(limits.decodeContainersMax - 1)), null)
    assert.match(msgpackIssue(frameOfEmptyMaps(limits.decodeContainersMax)) ?? '', /more than \d+ arrays and maps/)
    assert.throws(() => decodeFrame(frameOfEmptyMaps(4 * limits.decodeContainersMax)), FrameError)
  })

  it('other attacks: deep nesting, huge claims, wide empty containers, odd counters', () => {
    // 100k nested arrays: refused at the bound, after visiting only that many values.
    const deep = new Uint8Array(100_001).fill(0x91)
    deep[100_000] = 0xc0
    const stats: GuardStats = { items: 0 }
    assert.match(msgpackIssue(deep, stats) ?? '', /nesting deeper than/)
    assert.equal(stats.items, limits.decodeDepthMax + 1)
    assert.throws(() => decodeFrame(deep), /nesting deeper/)
    // Claimed lengths far past the input, at every size of header, in frames and contexts.
    for (const claim of [[0xdd, 0xff, 0xff, 0xff, 0xff], [0xdf, 0x00, 0x0f, 0x42, 0x40], [0xdc, 0xff, 0xff], [0xde, 0xff, 0xff],
      [0xdb, 0xff, 0xff, 0xff, 0xff], [0xc6, 0xff, 0xff, 0xff, 0xff], [0xc5, 0xff, 0xff], [0xd9, 0xff]]) {
      const bytes = Uint8Array.from([0x91, ...claim, 0xc0, 0xc0])
      assert.throws(() => decodeFrame(bytes), FrameError)
      assert.throws(() => decodeContext(toText(bytes)), (e: unknown) => e instanceof KvError && e.kind === 'BadRequest')
    }
    // A frame of 64 Ki empty maps: accepted (plain and linear), one node per byte.
    const wide = new Uint8Array(5 + 65536).fill(0x80)
    wide.set([0xdd, 0x00, 0x01, 0x00, 0x00])
    assert.equal(msgpackIssue(wide), null)
    assert.ok(footprint(codecUnpackrNow.unpack(wide)).nodes <= wide.length)
    // Counters that are not positive integers, and a counter past 2^53, in an otherwise valid context.
    for (const counter of [NaN, -0, 0, -1, 1.5, Infinity, 2 ** 53, 2n ** 63n, 'one', [1], null, true]) {
      const text = toText(new Packr({ useRecords: false }).pack([['n1.1', counter]]))
      assert.throws(() => decodeContext(text), (e: unknown) => e instanceof KvError && e.kind === 'BadRequest' && /counter must be a positive integer/.test(e.message), String(counter))
    }
    // A counter that is a list of 600 strings is described by its size, not printed.
    const listCounter = toText(new Packr({ useRecords: false }).pack([['n1.1', new Array(600).fill('a')]]))
    assert.throws(() => decodeContext(listCounter), (e: unknown) => e instanceof KvError && /got a list of 600$/.test(e.message))
  })

  it('frames our own encoder writes pass the guard, undefined properties included', () => {
    const frame: Message[] = [['put', 1, { key: new Uint8Array([1]), context: {}, value: null, hintFor: undefined }], ['ring', 2, {}]]
    // msgpackr writes a property holding undefined as its undefined extension, which the guard refuses...
    assert.match(msgpackIssue(new Packr({ useRecords: false, variableMapSize: true }).pack(frame)) ?? '', /extension type 0xd4/)
    // ...so encodeFrame leaves such properties out.
    const decoded = decodeFrame(encodeFrame(frame))
    assert.equal(decoded.length, 2)
    assert.deepEqual(Object.keys((decoded[0] as Message)[2] as object), ['key', 'context', 'value'])
  })
})

// How a key's DVV state is stored in the engine (memtable, WAL records, SSTables): plain msgpack
// of a flat, compact form. States are validated on the wire before they get here, and the engine
// checksums what it stores, so decoding trusts its input but still asserts the shape.
//   state = [ [actor, counter, actor, counter, ...], [actor, counter, value|null, ...] ]
//
// Encoding is written out here rather than done by msgpackr: the shape is fixed, so one sizing
// pass and one writing pass put the state straight into the WAL record that the engine keeps
// (engine.put takes a ValueWriter), with no intermediate buffer and no second copy of the value.
// The bytes are exactly msgpackr's (smallest header for each length, integers above 32 bits as
// float64, as msgpackr writes them); state-codec.test.ts checks that against msgpackr itself, so
// states stored before and after this change compare equal byte for byte.
// Decoding trusts the bytes but runs msgpack-guard.ts over them first all the same: a stored state is
// plain msgpack, so a refusal is a bug (an assert), and no stored byte string, however it got there,
// can make msgpackr build more than one value per byte (see codec.ts for what its extensions can do).
// States from a peer (a handoff batch) go through decodePeerState instead, which refuses rather than
// asserts.

import { Unpackr } from 'msgpackr'
import { assert } from '../coordinator/assert.ts'
import { msgpackIssue, plainUnpackrOptions } from '../coordinator/protocol/msgpack-guard.ts'
import { badRequest, badRequestCausedBy } from '../coordinator/errors.ts'
import { limits } from '../coordinator/limits.ts'
import { EMPTY, sync, validate, type DvvSet, type Sibling } from '../coordinator/version/dvv.ts'
import type { ValueWriter } from './storage/engine-types.ts'

// Decoded sibling values are views into the stored buffer, which the engine never mutates; a state
// that is kept is always re-encoded (encodeState copies), so no view outlives its use.
const unpackr = new Unpackr({ ...plainUnpackrOptions, copyBuffers: false })

const arrayHeaderBytes = (n: number): number => (n < 0x10 ? 1 : n < 0x10000 ? 3 : 5)
const strHeaderBytes = (n: number): number => (n < 0x20 ? 1 : n < 0x100 ? 2 : n < 0x10000 ? 3 : 5)
const binHeaderBytes = (n: number): number => (n < 0x100 ? 2 : n < 0x10000 ? 3 : 5)
const uintBytes = (v: number): number => (v < 0x80 ? 1 : v < 0x100 ? 2 : v < 0x10000 ? 3 : v <= 0xffffffff ? 5 : 9)
/** UTF-8 length; actors are ASCII in practice (node id + incarnation), where it is the string length. */
const utf8Length = (s: string): number => (/^[\x00-\x7f]*$/.test(s) ? s.length : Buffer.byteLength(s, 'utf8'))

function writeArrayHeader(buf: Buffer, off: number, n: number): number {
  if (n < 0x10) { buf[off] = 0x90 | n; return off + 1 }
  if (n < 0x10000) { buf[off] = 0xdc; buf.writeUInt16BE(n, off + 1); return off + 3 }
  buf[off] = 0xdd; buf.writeUInt32BE(n, off + 1); return off + 5
}

function writeStr(buf: Buffer, off: number, s: string, bytes: number): number {
  if (bytes < 0x20) buf[off++] = 0xa0 | bytes
  else if (bytes < 0x100) { buf[off] = 0xd9; buf[off + 1] = bytes; off += 2 }
  else if (bytes < 0x10000) { buf[off] = 0xda; buf.writeUInt16BE(bytes, off + 1); off += 3 }
  else { buf[off] = 0xdb; buf.writeUInt32BE(bytes, off + 1); off += 5 }
  const written = buf.write(s, off, bytes, bytes === s.length ? 'latin1' : 'utf8')
  assert(written === bytes, 'state codec: string length changed while encoding')
  return off + bytes
}

function writeUint(buf: Buffer, off: number, v: number): number {
  assert(Number.isSafeInteger(v) && v >= 0, () => `state codec: counter ${v} is not a non-negative safe integer`)
  if (v < 0x80) { buf[off] = v; return off + 1 }
  if (v < 0x100) { buf[off] = 0xcc; buf[off + 1] = v; return off + 2 }
  if (v < 0x10000) { buf[off] = 0xcd; buf.writeUInt16BE(v, off + 1); return off + 3 }
  if (v <= 0xffffffff) { buf[off] = 0xce; buf.writeUInt32BE(v, off + 1); return off + 5 }
  buf[off] = 0xcb; buf.writeDoubleBE(v, off + 1); return off + 9
}

function writeBin(buf: Buffer, off: number, v: Uint8Array): number {
  const n = v.byteLength
  if (n < 0x100) { buf[off] = 0xc4; buf[off + 1] = n; off += 2 }
  else if (n < 0x10000) { buf[off] = 0xc5; buf.writeUInt16BE(n, off + 1); off += 3 }
  else { buf[off] = 0xc6; buf.writeUInt32BE(n, off + 1); off += 5 }
  buf.set(v, off)
  return off + n
}

/** The stored form of `state`, as its exact size and a writer the engine calls on its WAL record. */
export function stateWriter(state: DvvSet): ValueWriter {
  const actors = Object.keys(state.vv)
  const sibs = state.siblings
  const vvActorBytes = actors.map(utf8Length)
  const sibActorBytes = sibs.map(s => utf8Length(s.actor))
  let bytes = 1 + arrayHeaderBytes(actors.length * 2) + arrayHeaderBytes(sibs.length * 3)
  for (let i = 0; i < actors.length; i++) bytes += strHeaderBytes(vvActorBytes[i]!) + vvActorBytes[i]! + uintBytes(state.vv[actors[i]!]!)
  for (let i = 0; i < sibs.length; i++) {
    const s = sibs[i]!
    bytes += strHeaderBytes(sibActorBytes[i]!) + sibActorBytes[i]! + uintBytes(s.counter) + (s.value === null ? 1 : binHeaderBytes(s.value.byteLength) + s.value.byteLength)
  }
  return {
    bytes,
    write(buf: Buffer, start: number): void {
      let off = writeArrayHeader(buf, start, 2)
      off = writeArrayHeader(buf, off, actors.length * 2)
      for (let i = 0; i < actors.length; i++) {
        off = writeStr(buf, off, actors[i]!, vvActorBytes[i]!)
        off = writeUint(buf, off, state.vv[actors[i]!]!)
      }
      off = writeArrayHeader(buf, off, sibs.length * 3)
      for (let i = 0; i < sibs.length; i++) {
        const s = sibs[i]!
        off = writeStr(buf, off, s.actor, sibActorBytes[i]!)
        off = writeUint(buf, off, s.counter)
        if (s.value === null) buf[off++] = 0xc0
        else off = writeBin(buf, off, s.value)
      }
      assert(off - start === bytes, () => `state codec: wrote ${off - start} bytes, sized ${bytes}`)
    },
  }
}

export function encodeState(state: DvvSet): Uint8Array {
  const w = stateWriter(state)
  const buf = Buffer.allocUnsafe(w.bytes)
  w.write(buf, 0)
  return buf
}

export function decodeState(bytes: Uint8Array): DvvSet {
  const issue = msgpackIssue(bytes)
  assert(issue === null, () => `stored state is not plain msgpack: ${issue}`)
  const decoded = unpackr.unpack(bytes) as [Array<string | number>, Array<string | number | Uint8Array | null>]
  assert(Array.isArray(decoded) && decoded.length === 2, 'stored state is not [vv, siblings]')
  const [flatVv, flatSibs] = decoded
  assert(flatVv.length % 2 === 0 && flatSibs.length % 3 === 0, 'stored state has a torn vector or sibling list')
  const vv: Record<string, number> = {}
  for (let i = 0; i < flatVv.length; i += 2) vv[flatVv[i] as string] = flatVv[i + 1] as number
  const siblings: Sibling[] = []
  for (let i = 0; i < flatSibs.length; i += 3) {
    siblings.push({ actor: flatSibs[i] as string, counter: flatSibs[i + 1] as number, value: flatSibs[i + 2] as Uint8Array | null })
  }
  return { vv, siblings }
}

/**
 * Decodes a state in this encoding that came from outside (a peer's handoff batch), where decodeState
 * would assert: refuses with BadRequest anything that is not plain msgpack of exactly this shape,
 * and any state dvv.ts validate() refuses (counters, dot coverage, canonical order, actors).
 */
export function decodePeerState(bytes: Uint8Array): DvvSet {
  const issue = msgpackIssue(bytes)
  if (issue !== null) throw badRequest(`state is not plain msgpack: ${issue}`)
  let decoded: unknown
  try {
    decoded = unpackr.unpack(bytes)
  } catch (e) {
    throw badRequestCausedBy(e, `state could not be decoded: ${(e as Error)?.message ?? String(e)}`)
  }
  if (!Array.isArray(decoded) || decoded.length !== 2 || !Array.isArray(decoded[0]) || !Array.isArray(decoded[1])) {
    throw badRequest('state is not [vector, siblings]')
  }
  const [flatVv, flatSibs] = decoded as [unknown[], unknown[]]
  if (flatVv.length % 2 !== 0 || flatSibs.length % 3 !== 0) throw badRequest('state has a torn vector or sibling list')
  if (flatVv.length / 2 > limits.vectorActorsMax) throw badRequest(`state names over ${limits.vectorActorsMax} actors`)
  if (flatSibs.length / 3 > limits.siblingsReadMax) throw badRequest(`state holds over ${limits.siblingsReadMax} siblings`)
  const vv: Record<string, number> = {}
  for (let i = 0; i < flatVv.length; i += 2) {
    const actor = flatVv[i]
    // An own `__proto__` would set the object's prototype rather than name an actor.
    if (typeof actor !== 'string' || actor === '__proto__' || Object.hasOwn(vv, actor)) throw badRequest(`state vector entry ${i / 2}: bad or repeated actor`)
    vv[actor] = flatVv[i + 1] as number
  }
  const siblings: Sibling[] = []
  for (let i = 0; i < flatSibs.length; i += 3) {
    siblings.push({ actor: flatSibs[i] as string, counter: flatSibs[i + 1] as number, value: flatSibs[i + 2] as Uint8Array | null })
  }
  const state = { vv, siblings }
  validate(state)
  return state
}

// Reaped keys (docs/anti-entropy.md). A reaped tombstone must vanish, but the engine merges every
// version of a key it holds (DVV sync is a union), so a plain "empty" state written over a tombstone
// would merge with the tombstone still in an older table and bring it back. A stored value may
// therefore start with a barrier byte, 0xc1 (the one byte msgpack never uses, so no plain state
// starts with it): versions older than a barrier are forgotten. The engine folds versions oldest
// first everywhere (memtable, reads, scans, compaction), so "older" is always known.
//   stored = state | 0xc1 | 0xc1 state
// [0xc1] alone is a reaped key; 0xc1 state is a key written again after its reap (the barrier stays
// until a compaction that includes the oldest table settles it: `settleStored` drops the barrier,
// and the whole key when nothing follows it).

const barrierByte = 0xc1

/** What a reap stores: a barrier and no state. */
export const reapedValue: Uint8Array = Uint8Array.of(barrierByte)

export function hasBarrier(bytes: Uint8Array): boolean {
  return bytes.byteLength > 0 && bytes[0] === barrierByte
}

/** A stored value's state (EMPTY for a reaped key) and whether it carries a barrier. */
export function decodeStored(bytes: Uint8Array): { state: DvvSet; barrier: boolean } {
  if (!hasBarrier(bytes)) return { state: decodeState(bytes), barrier: false }
  return { state: bytes.byteLength === 1 ? EMPTY : decodeState(bytes.subarray(1)), barrier: true }
}

/** `w` behind a barrier byte: how a key written again after its reap keeps its barrier. */
export function withBarrier(w: ValueWriter): ValueWriter {
  return {
    bytes: w.bytes + 1,
    write(buf: Buffer, offset: number): void {
      buf[offset] = barrierByte
      w.write(buf, offset + 1)
    },
  }
}

/**
 * The engine's merge, `older` first: DVV sync of two stored states (commutative, associative,
 * idempotent), except that a barrier in `newer` forgets `older`, and a barrier in `older` is kept
 * in front of the merged state.
 */
export function mergeStates(older: Uint8Array, newer: Uint8Array): Uint8Array {
  if (hasBarrier(newer)) return newer
  if (!hasBarrier(older)) return encodeState(sync(decodeState(older), decodeState(newer)))
  const merged = older.byteLength === 1 ? decodeState(newer) : sync(decodeState(older.subarray(1)), decodeState(newer))
  const w = withBarrier(stateWriter(merged))
  const buf = Buffer.allocUnsafe(w.bytes)
  w.write(buf, 0)
  return buf
}

/**
 * A value as a compaction that includes the oldest table writes it: nothing older remains, so a
 * barrier has nothing left to hide. undefined drops the key (a reaped key with nothing after it).
 */
export function settleStored(bytes: Uint8Array): Uint8Array | undefined {
  if (!hasBarrier(bytes)) return bytes
  return bytes.byteLength === 1 ? undefined : bytes.subarray(1)
}

// How a key's DVV state is stored in the engine (memtable, WAL records, SSTables): plain msgpack
// of a flat, compact form. States are validated on the wire before they get here, and the engine
// checksums what it stores, so decoding trusts its input but still asserts the shape.
//   state = [ [actor, counter, actor, counter, ...], [actor, counter, value|null, ...] ]

import { Packr, Unpackr } from 'msgpackr'
import { assert } from '../coordinator/assert.ts'
import { sync, type DvvSet, type Sibling } from '../coordinator/version/dvv.ts'

const packr = new Packr({ useRecords: false })
// Decoded sibling values are views into the stored buffer, which the engine never mutates; a state
// that is kept is always re-encoded (encodeState copies), so no view outlives its use.
const unpackr = new Unpackr({ useRecords: false, copyBuffers: false })

export function encodeState(state: DvvSet): Uint8Array {
  const vv: Array<string | number> = []
  for (const actor of Object.keys(state.vv)) vv.push(actor, state.vv[actor]!)
  const sibs: Array<string | number | Uint8Array | null> = []
  for (const s of state.siblings) sibs.push(s.actor, s.counter, s.value)
  return packr.pack([vv, sibs])
}

export function decodeState(bytes: Uint8Array): DvvSet {
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

/** The engine's merge: DVV sync of two stored states (commutative, associative, idempotent). */
export function mergeStates(older: Uint8Array, newer: Uint8Array): Uint8Array {
  return encodeState(sync(decodeState(older), decodeState(newer)))
}

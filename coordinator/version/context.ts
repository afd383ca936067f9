// Causal context as text: the version vector a client carries from a read to its next write
// (dvv.ts; Preguiça et al. 2010, "Dotted Version Vectors"). A write that carries it supersedes exactly
// the siblings its read returned, so the client must hand it back unchanged; to the client it is an
// opaque token that must fit an HTTP header or a cookie.
//
// Layout: base64url without padding (RFC 4648 §5) of the plain MessagePack encoding of the vector as
// a list sorted by actor: [[actor: str, counter: uint], ...]. The empty vector is the empty string.
// base64url is written here rather than taken from Buffer so that coordinator/ runs unchanged in
// browsers and Workers; btoa/atob exist in all of them (and in Node 20).
// The token arrives from outside (an HTTP header, an SDK call), so its bytes pass msgpack-guard.ts
// before msgpackr decodes them: a context costs linear time and memory in its length, and error
// messages describe decoded values by type and size, never by printing them.

import { Packr, Unpackr } from 'msgpackr'
import { KvError, badRequest } from '../errors.ts'
import { limits } from '../limits.ts'
import { msgpackIssue, plainUnpackrOptions } from '../protocol/msgpack-guard.ts'
import { actorIssue, compareStrings, isCounter, type VersionVector } from './dvv.ts'

// Plain MessagePack: no record extension, so any MessagePack reader can decode a context. The options
// turn off what msgpackr lets an option turn off; the guard keeps out the extensions it decodes anyway.
const packr = new Packr({ useRecords: false })
const unpackr = new Unpackr({ ...plainUnpackrOptions })

/**
 * Encodes a version vector as an opaque, header- and cookie-safe token. Throws KvError TooLarge if
 * the token would exceed contextBytesMax (the key has seen too many actors to carry its context).
 */
export function encodeContext(vv: VersionVector): string {
  const entries = Object.keys(vv).sort(compareStrings).map((actor) => {
    const counter = vv[actor]
    if (actorIssue(actor) !== null || !isCounter(counter)) {
      throw badRequest(`cannot encode context: entry ${JSON.stringify(actor)} -> ${String(counter)} ` +
        'is not an actor with a positive integer counter')
    }
    return [actor, counter] as const
  })
  if (entries.length === 0) return ''
  const text = base64urlEncode(packr.pack(entries))
  if (text.length > limits.contextBytesMax) {
    throw new KvError({ kind: 'TooLarge', bytes: text.length, bytesMax: limits.contextBytesMax },
      `context is ${text.length} bytes encoded, more than contextBytesMax (${limits.contextBytesMax})`)
  }
  return text
}

/** Inverse of encodeContext. Anything it could not have produced throws KvError BadRequest. */
export function decodeContext(text: string): VersionVector {
  if (typeof text !== 'string') throw badRequest('context must be a string')
  if (text === '') return {}
  if (text.length > limits.contextBytesMax) {
    throw badRequest(`context is ${text.length} bytes, more than contextBytesMax (${limits.contextBytesMax})`)
  }
  const bytes = base64urlDecode(text)
  const issue = msgpackIssue(bytes)
  if (issue !== null) throw badRequest(`context is not valid: its bytes are not plain MessagePack: ${issue}`)
  let decoded: unknown
  try {
    decoded = unpackr.unpack(bytes)
  } catch (cause) {
    // Not expected once the guard passed; msgpackr's message can quote the decoded value, so it stays in the cause.
    throw badRequestCausedBy(cause, 'context is not valid: its bytes are not MessagePack')
  }
  if (!Array.isArray(decoded)) throw badRequest('context is not valid: expected a list of [actor, counter] pairs')
  if (decoded.length === 0) throw badRequest('context is not valid: an empty context is the empty string')
  if (decoded.length > limits.vectorActorsMax) {
    throw badRequest(`context is not valid: ${decoded.length} actors, more than vectorActorsMax (${limits.vectorActorsMax})`)
  }
  const entries: [string, number][] = []
  for (const [i, entry] of decoded.entries()) {
    if (!Array.isArray(entry) || entry.length !== 2) {
      throw badRequest(`context is not valid: entry ${i} is not an [actor, counter] pair`)
    }
    const [actor, counter] = entry as [unknown, unknown]
    const issue = actorIssue(actor)
    if (issue !== null) throw badRequest(`context is not valid: entry ${i} actor ${issue}`)
    if (!isCounter(counter)) {
      throw badRequest(`context is not valid: entry ${i} counter must be a positive integer, got ${describeValue(counter)}`)
    }
    const previous = entries[entries.length - 1]
    // Strictly ascending actors: one spelling per vector, and no actor named twice.
    if (previous !== undefined && compareStrings(previous[0], actor as string) >= 0) {
      throw badRequest(`context is not valid: actors must be unique and sorted, entry ${i} is not`)
    }
    entries.push([actor as string, counter])
  }
  return Object.fromEntries(entries)
}

/**
 * A decoded value for an error message, in a few dozen characters whatever it holds: String() of a
 * decoded array prints every element, as deep as the input nests.
 */
function describeValue(v: unknown): string {
  if (typeof v === 'number') return Object.is(v, -0) ? '-0' : String(v)
  if (typeof v === 'bigint') return `a 64-bit integer`
  if (typeof v === 'string') return `a string of ${v.length} characters`
  if (v instanceof Uint8Array) return `${v.byteLength} bytes`
  if (Array.isArray(v)) return `a list of ${v.length}`
  return v === null ? 'null' : `a ${typeof v}`
}

const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'

export function base64urlEncode(bytes: Uint8Array): string {
  let binary = ''
  for (let i = 0; i < bytes.length; i++) binary += String.fromCharCode(bytes[i] ?? 0)
  return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '')
}

/** base64url without padding to bytes; anything else is a BadRequest naming `what` was given. */
export function base64urlDecode(text: string, what = 'context'): Uint8Array {
  for (let i = 0; i < text.length; i++) {
    if (!alphabet.includes(text.charAt(i))) {
      throw badRequest(`${what} is not valid base64url: character ${JSON.stringify(text.charAt(i))} at ${i}`)
    }
  }
  // A final group of one character carries only 6 bits, less than a byte: no encoder emits it.
  if (text.length % 4 === 1) throw badRequest(`${what} is not valid base64url: truncated`)
  const padded = text.replace(/-/g, '+').replace(/_/g, '/') + '='.repeat((4 - (text.length % 4)) % 4)
  let binary: string
  try {
    binary = atob(padded)
  } catch (cause) {
    throw badRequestCausedBy(cause, `${what} is not valid base64url`)
  }
  const bytes = new Uint8Array(binary.length)
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i)
  return bytes
}

function badRequestCausedBy(cause: unknown, issue: string): KvError {
  return new KvError({ kind: 'BadRequest', issues: [issue] }, `bad request: ${issue}`, { cause })
}

// Causal sessions across stateless HTTP requests (docs/security.md "Causal sessions"). The gateway
// keeps nothing: what a client has seen travels with it, in the `x-ringkv-session` header (or the
// `ringkv_session` cookie), and a read presented with it must return a state that has seen it
// (read-your-writes and monotonic reads, Terry et al. 1994, "Session Guarantees for Weakly
// Consistent Replicated Data"), which KvCoordinator.get enforces with a causal floor.
//
// DVV counters are per key, so a session is per key too: for each of the most recent keys the
// client wrote or read, the key's version vector as of then. Bounds: at most sessionKeysMax keys
// (newest first), and at most sessionCharsMax characters; older keys drop out first to fit, and a
// key that dropped out is read without a floor (its guarantee is gone, nothing else is). Keys are
// named by sessionKeyTagBytes of their SHA-256, never spelled out.
//
// Layout: `<payload>.<mac>`, both base64url without padding.
//   payload = plain MessagePack [1, [[tag: bin(8), [[actor: str, counter: uint], ...]], ...]]
//   mac     = HMAC-SHA-256(key, "ringkv-session-1." + payload) cut to sessionMacBytes
// The MAC is checked first, in constant time, before a byte of the payload is decoded: a forged or
// damaged session is a BadRequest and costs one HMAC. Gateways that share the key (sessionKeyFrom)
// accept each other's sessions.

import { hmac } from '@noble/hashes/hmac.js'
import { sha256 } from '@noble/hashes/sha2.js'
import { Packr, Unpackr } from 'msgpackr'
import { badRequest, badRequestCausedBy } from '../errors.ts'
import { limits } from '../limits.ts'
import { msgpackIssue, plainUnpackrOptions } from '../protocol/msgpack-guard.ts'
import { base64urlDecode, base64urlEncode } from '../version/context.ts'
import { actorIssue, compareStrings, isCounter, mergeVectors, type VersionVector } from '../version/dvv.ts'

export const SESSION_HEADER = 'x-ringkv-session'
export const SESSION_COOKIE = 'ringkv_session'

const LAYOUT_VERSION = 1
const MAC_LABEL = 'ringkv-session-1.'
const KEY_LABEL = 'ringkv session key 1'

/** What a client has seen: per key (by tag), the key's version vector. Newest first. */
export interface Session { readonly entries: ReadonlyArray<{ readonly tag: Uint8Array; readonly vv: VersionVector }> }

export const emptySession: Session = { entries: [] }

const encoder = new TextEncoder()
const packr = new Packr({ useRecords: false })
const unpackr = new Unpackr({ ...plainUnpackrOptions })

/**
 * The MAC key from secret material: a session secret, else the cluster secret (replicas), else the
 * cluster's name, which is public: then the MAC catches damage, not forgery (docs/security.md).
 */
export function sessionKeyFrom(material: string): Uint8Array {
  return hmac(sha256, encoder.encode(material), encoder.encode(KEY_LABEL))
}

export function keyTag(key: string): Uint8Array {
  return sha256(encoder.encode(key)).subarray(0, limits.sessionKeyTagBytes)
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  let diff = a.length ^ b.length
  for (let i = 0; i < a.length; i++) diff |= a[i]! ^ (b[i] ?? 0)
  return diff === 0
}

/** The vector the session holds for `key`, if any. */
export function floorOf(session: Session, key: string): VersionVector | undefined {
  const tag = keyTag(key)
  for (const e of session.entries) if (sameBytes(e.tag, tag)) return e.vv
  return undefined
}

/** The session after the client saw `vv` for `key`: that key first, merged with what it held. */
export function withKey(session: Session, key: string, vv: VersionVector): Session {
  const tag = keyTag(key)
  let merged = vv
  const rest: Array<Session['entries'][number]> = []
  for (const e of session.entries) {
    if (sameBytes(e.tag, tag)) merged = mergeVectors(e.vv, merged)
    else if (rest.length < limits.sessionKeysMax - 1) rest.push(e)
  }
  return { entries: [{ tag, vv: merged }, ...rest] }
}

export class SessionCodec {
  constructor(private readonly key: Uint8Array) {}

  private mac(payload: string): Uint8Array {
    return hmac(sha256, this.key, encoder.encode(MAC_LABEL + payload)).subarray(0, limits.sessionMacBytes)
  }

  /** The session as text, within sessionCharsMax: the oldest keys drop out until it fits. */
  encode(session: Session): string {
    let entries = session.entries.slice(0, limits.sessionKeysMax)
    for (;;) {
      const payload = base64urlEncode(packr.pack([LAYOUT_VERSION, entries.map(e => [e.tag, Object.keys(e.vv).sort(compareStrings).map(a => [a, e.vv[a]])])]))
      const text = `${payload}.${base64urlEncode(this.mac(payload))}`
      if (text.length <= limits.sessionCharsMax || entries.length === 0) return text
      entries = entries.slice(0, -1)
    }
  }

  /** Reads a session a gateway with this key issued; anything else is a BadRequest (never quoting it). */
  decode(text: string): Session {
    if (text.length > limits.sessionCharsMax) throw badRequest(`session is ${text.length} characters, more than sessionCharsMax (${limits.sessionCharsMax})`)
    const dot = text.indexOf('.')
    if (dot < 0 || dot !== text.lastIndexOf('.')) throw badRequest('session is not valid: expected <payload>.<mac>')
    const payload = text.slice(0, dot)
    const mac = base64urlDecode(text.slice(dot + 1), 'session mac')
    if (!sameBytes(mac, this.mac(payload))) throw badRequest('session is not valid: its MAC does not match (not issued by a gateway with this key, or altered)')
    const bytes = base64urlDecode(payload, 'session')
    const issue = msgpackIssue(bytes)
    if (issue !== null) throw badRequest(`session is not valid: ${issue}`)
    let decoded: unknown
    try {
      decoded = unpackr.unpack(bytes)
    } catch (cause) {
      throw badRequestCausedBy(cause, 'session is not valid MessagePack')
    }
    return { entries: entriesOf(decoded) }
  }
}

/** Checks a decoded payload field by field (it passed the MAC, but a key change or a bug must not reach an assertion). */
function entriesOf(decoded: unknown): Session['entries'] {
  const bad = (why: string) => badRequest(`session is not valid: ${why}`)
  if (!Array.isArray(decoded) || decoded.length !== 2 || decoded[0] !== LAYOUT_VERSION || !Array.isArray(decoded[1])) throw bad(`expected [${LAYOUT_VERSION}, entries]`)
  const list = decoded[1] as unknown[]
  if (list.length > limits.sessionKeysMax) throw bad(`${list.length} keys, more than sessionKeysMax (${limits.sessionKeysMax})`)
  return list.map((entry, i) => {
    if (!Array.isArray(entry) || entry.length !== 2) throw bad(`entry ${i} is not [tag, vector]`)
    const [tag, pairs] = entry as [unknown, unknown]
    if (!(tag instanceof Uint8Array) || tag.byteLength !== limits.sessionKeyTagBytes) throw bad(`entry ${i} tag is not ${limits.sessionKeyTagBytes} bytes`)
    if (!Array.isArray(pairs) || pairs.length > limits.vectorActorsMax) throw bad(`entry ${i} vector is not a list of at most ${limits.vectorActorsMax} pairs`)
    const vv: Record<string, number> = {}
    for (const pair of pairs as unknown[]) {
      if (!Array.isArray(pair) || pair.length !== 2) throw bad(`entry ${i} has a vector entry that is not [actor, counter]`)
      const [actor, counter] = pair as [unknown, unknown]
      if (actorIssue(actor) !== null || !isCounter(counter) || Object.hasOwn(vv, actor as string)) throw bad(`entry ${i} has a bad or repeated actor or counter`)
      vv[actor as string] = counter
    }
    return { tag: Uint8Array.from(tag), vv: Object.fromEntries(Object.keys(vv).sort(compareStrings).map(a => [a, vv[a]!])) }
  })
}

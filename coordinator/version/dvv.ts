// Dotted version vector sets: the per-key version state of every replica (docs/versions.md).
//
// Source: Preguiça, Baquero, Almeida, Fonte, Gonçalves 2010, "Dotted Version Vectors: Logical Clocks
// for Optimistic Replication", and its compact form in Riak's `dvvset` (Almeida et al. 2014). The idea:
// each write is named by a unique dot (actor, counter), issued by the replica that stamps it. A key
// keeps its live siblings, each tagged with its dot, plus one version vector `vv` summarising every
// dot the key has seen, live or superseded. Because an actor's dots are issued in order and a replica
// always holds its own earlier writes, `vv` is downward closed: vv[a] = n means dots (a, 1..n) were all
// seen. So a sibling whose dot is covered by another state's vv but is absent from it was superseded
// there, and `sync` can drop it; a write carrying the context (vv) its client read drops exactly the
// siblings that client saw and nothing concurrent. Dots rather than per-write vectors keep concurrent
// writes stamped by the same replica apart, which plain version vectors with replica actors cannot.
//
// Values are immutable: every function returns new objects. Siblings are kept sorted by (actor,
// counter) and vectors are built with keys inserted in sorted order, so equal states serialize to
// equal bytes (Merkle hashes and read repair rely on this).

import { assert } from '../assert.ts'
import { badRequest } from '../errors.ts'
import { limits } from '../limits.ts'

/** Actor = a replica incarnation, written `${nodeId}.${incarnation}`. Never a client. */
export type Actor = string
/** Causal context: for each actor, the highest counter seen (the history is contiguous per actor). */
export type VersionVector = { readonly [actor: string]: number }
/** A live sibling: the value written by the write whose dot is (actor, counter). null = tombstone. */
export interface Sibling { readonly actor: Actor; readonly counter: number; readonly value: Uint8Array | null }
/** A key's stored state: every dot in `siblings` is covered by `vv`. */
export interface DvvSet { readonly vv: VersionVector; readonly siblings: readonly Sibling[] }

export const EMPTY: DvvSet = { vv: {}, siblings: [] }

/**
 * The stamping replica's write. `context` is what the client read (empty for a blind write); every
 * sibling it covers is superseded, every other sibling is concurrent and stays. `value` null writes a
 * tombstone (a delete). Pure algebra: whether the result may be stored (siblings, counters, bytes) is
 * decided by state-bounds.ts, the one rule for every state a replica stores.
 */
export function update(state: DvvSet, context: VersionVector, actor: Actor, value: Uint8Array | null): DvvSet {
  assert(actorIssue(actor) === null, () => `update: invalid actor ${JSON.stringify(actor)}: ${actorIssue(actor)}`)
  const counter = Math.max(counterOf(state.vv, actor), counterOf(context, actor)) + 1
  const kept = state.siblings.filter((s) => !covers(context, s.actor, s.counter))
  const vv = mergeVectors(mergeVectors(state.vv, context), { [actor]: counter })
  // The new dot is fresh: it is above everything this replica or the client has seen for `actor`.
  const siblings = sortSiblings([...kept, { actor, counter, value }])
  return { vv, siblings }
}

/**
 * Merges two replicas' states of one key. Commutative, associative and idempotent (up to `equals`).
 *
 * A dot is issued once, so both copies of a dot should carry the same value. Two different values
 * for one dot mean a forged or replayed write reached a replica (or a replica reissued a dot after
 * losing its log): that is outside input, never a reason to stop. `onConflict` is told (the replica's
 * write path refuses such a state with a typed error before it is stored); otherwise the smaller
 * value (compareValues) is kept, a choice that is itself commutative, associative and idempotent, so
 * every reader and every replica converges on the same value.
 */
export function sync(a: DvvSet, b: DvvSet, onConflict?: (dot: Sibling, other: Sibling) => void): DvvSet {
  if (a === b) return a
  // Sibling lists are short (usually 1-3), so linear scans beat building maps of dot keys; this
  // runs for every read reply and every replicated write.
  const siblings: Sibling[] = []
  for (const s of a.siblings) {
    const other = findDot(b.siblings, s)
    if (other !== undefined) {
      if (bytesEqual(s.value, other.value)) siblings.push(s)
      else {
        onConflict?.(s, other)
        siblings.push(compareValues(s.value, other.value) <= 0 ? s : other)
      }
    } else if (!covers(b.vv, s.actor, s.counter)) {
      siblings.push(s)
    }
  }
  const fromA = siblings.length
  for (const s of b.siblings) {
    if (findDot(a.siblings, s) === undefined && !covers(a.vv, s.actor, s.counter)) siblings.push(s)
  }
  // a's siblings are sorted already; only siblings that come from b alone can break the order.
  return { vv: mergeVectors(a.vv, b.vv), siblings: siblings.length > fromA ? sortSiblings(siblings) : siblings }
}

/** A total order on sibling values: a tombstone first, then bytes lexicographically (a prefix first). */
export function compareValues(a: Uint8Array | null, b: Uint8Array | null): number {
  if (a === null || b === null) return a === b ? 0 : a === null ? -1 : 1
  const n = Math.min(a.length, b.length)
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i]! - b[i]!
  return a.length - b.length
}

/** The counter `vv` holds for `actor` (0 when it names none). */
export function counterOf(vv: VersionVector, actor: string): number {
  return Object.hasOwn(vv, actor) ? (vv[actor] ?? 0) : 0
}

function findDot(list: readonly Sibling[], dot: Sibling): Sibling | undefined {
  for (const s of list) if (s.counter === dot.counter && s.actor === dot.actor) return s
  return undefined
}

/** The causal context a client carries from a read to its next write: the key's version vector. */
export function context(state: DvvSet): VersionVector {
  return state.vv
}

/** The live (non-tombstone) values, in sibling order. */
export function values(state: DvvSet): Uint8Array[] {
  const out: Uint8Array[] = []
  for (const s of state.siblings) if (s.value !== null) out.push(s.value)
  return out
}

/** True when the key reads as "not found": no siblings, or only tombstones. */
export function isDeleted(state: DvvSet): boolean {
  return state.siblings.every((s) => s.value === null)
}

/** True when `a` has seen everything `b` has: syncing `b` into `a` would change nothing. */
export function descends(a: DvvSet, b: DvvSet): boolean {
  if (!coversVector(a.vv, b.vv)) return false
  return b.siblings.every((s) => findDot(a.siblings, s) !== undefined || covers(a.vv, s.actor, s.counter))
}

/** Same version vector and the same siblings (dots and value bytes). */
export function equals(a: DvvSet, b: DvvSet): boolean {
  const aActors = Object.keys(a.vv)
  if (aActors.length !== Object.keys(b.vv).length) return false
  for (const actor of aActors) {
    if (!Object.hasOwn(b.vv, actor) || a.vv[actor] !== b.vv[actor]) return false
  }
  if (a.siblings.length !== b.siblings.length) return false
  const bByDot = new Map(b.siblings.map((s) => [dotKey(s), s]))
  for (const s of a.siblings) {
    const other = bByDot.get(dotKey(s))
    if (other === undefined || !bytesEqual(s.value, other.value)) return false
  }
  return true
}

/** Pointwise maximum, keys in sorted order. */
export function mergeVectors(a: VersionVector, b: VersionVector): VersionVector {
  // Most merges are of vectors where one side already covers the other: reuse it as it is.
  if (coversVector(a, b)) return a
  if (coversVector(b, a)) return b
  const actors = [...new Set([...Object.keys(a), ...Object.keys(b)])].sort(compareStrings)
  // Object.fromEntries defines own properties, so even an actor named like an Object.prototype
  // member is stored as data.
  return Object.fromEntries(actors.map((actor) => [actor, Math.max(counterOf(a, actor), counterOf(b, actor))]))
}

/** Every actor of `b` is in `a` with at least b's counter. */
export function coversVector(a: VersionVector, b: VersionVector): boolean {
  for (const actor in b) if (Object.hasOwn(b, actor) && counterOf(a, actor) < (b[actor] ?? 0)) return false
  return true
}

/**
 * Checks a state that arrived from outside (network, disk): shapes, positive integer counters, dots
 * covered by vv, siblings strictly sorted by (actor, counter) hence unique, vv keys in canonical order
 * and at most vectorActorsMax actors. Throws KvError BadRequest listing every problem found.
 *
 * The sibling count is not bounded here: `sync` of two legal states may exceed siblingsMax, and
 * refusing such a state would stop replicas from converging. Writes are what siblingsMax refuses.
 */
export function validate(state: DvvSet): void {
  const issues: string[] = []
  if (typeof state !== 'object' || state === null) throw badRequest('version state must be an object')
  const { vv, siblings } = state as { vv: unknown; siblings: unknown }
  if (!isPlainObject(vv)) issues.push('vv must be a plain object')
  if (!Array.isArray(siblings)) issues.push('siblings must be an array')
  if (issues.length > 0) throw badRequest(...issues)
  const vector = vv as Record<string, unknown>
  const actors = Object.keys(vector)
  if (actors.length > limits.vectorActorsMax) {
    issues.push(`vv names ${actors.length} actors, more than vectorActorsMax (${limits.vectorActorsMax})`)
  }
  for (const actor of actors) {
    const issue = actorIssue(actor)
    if (issue !== null) issues.push(`vv actor ${JSON.stringify(actor)}: ${issue}`)
    const counter = vector[actor]
    if (!isCounter(counter)) issues.push(`vv[${JSON.stringify(actor)}] must be an integer from 1 to counterMax, got ${String(counter)}`)
  }
  const canonical = Object.keys(Object.fromEntries([...actors].sort(compareStrings).map((k) => [k, 0])))
  if (canonical.some((k, i) => k !== actors[i])) issues.push('vv keys must be in sorted order')
  let previous: { actor: string; counter: number } | null = null
  for (const [i, raw] of (siblings as unknown[]).entries()) {
    if (typeof raw !== 'object' || raw === null) { issues.push(`sibling ${i} must be an object`); continue }
    const { actor, counter, value } = raw as { actor: unknown; counter: unknown; value: unknown }
    if (typeof actor !== 'string' || actorIssue(actor) !== null) { issues.push(`sibling ${i}: invalid actor`); continue }
    if (!isCounter(counter)) { issues.push(`sibling ${i}: counter must be an integer from 1 to counterMax, got ${String(counter)}`); continue }
    if (value !== null && !(value instanceof Uint8Array)) issues.push(`sibling ${i}: value must be bytes or null (tombstone)`)
    const vvCounter = vector[actor]
    if (!Object.hasOwn(vector, actor) || !isCounter(vvCounter) || vvCounter < counter) {
      issues.push(`sibling ${i}: dot (${actor}, ${counter}) is not covered by vv`)
    }
    if (previous !== null && compareDots(previous, { actor, counter }) >= 0) {
      issues.push(`sibling ${i}: dot (${actor}, ${counter}) is a duplicate or out of (actor, counter) order`)
    }
    previous = { actor, counter }
  }
  if (issues.length > 0) throw badRequest(...issues)
}

/** Why `actor` cannot name a replica, or null if it can. Exported for context.ts. */
export function actorIssue(actor: unknown): string | null {
  if (typeof actor !== 'string' || actor.length === 0) return 'must be a non-empty string'
  // `obj.__proto__ = n` on a plain object changes its prototype instead of storing n; refuse the
  // name rather than trust every consumer of a vector to avoid that assignment.
  if (actor === '__proto__') return 'must not be __proto__'
  // A lone surrogate cannot be encoded as UTF-8, so it would not survive serialization.
  if (/\p{Cs}/u.test(actor)) return 'must be well-formed Unicode'
  return null
}

/** A counter as the wire and the store accept it: an integer from 1 to limits.counterMax. */
export function isCounter(n: unknown): n is number {
  return typeof n === 'number' && Number.isInteger(n) && n > 0 && n <= limits.counterMax
}

/** Orders strings by UTF-16 code units, the same everywhere (unlike localeCompare). */
export function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0
}

function compareDots(a: { actor: string; counter: number }, b: { actor: string; counter: number }): number {
  return compareStrings(a.actor, b.actor) || a.counter - b.counter
}

function sortSiblings(siblings: Sibling[]): Sibling[] {
  return siblings.sort(compareDots)
}

function covers(vv: VersionVector, actor: string, counter: number): boolean {
  return counterOf(vv, actor) >= counter
}

function dotKey(s: { actor: string; counter: number }): string {
  // JSON keeps the pair unambiguous whatever characters the actor holds.
  return JSON.stringify([s.actor, s.counter])
}

function bytesEqual(a: Uint8Array | null, b: Uint8Array | null): boolean {
  if (a === null || b === null) return a === b
  if (a === b) return true
  const n = a.length
  if (n !== b.length) return false
  let i = 0
  // Compare four bytes at a time where both views are aligned (values decoded from the wire are
  // fresh copies at offset 0): this check runs on every read reply that agrees with another.
  if (a.byteOffset % 4 === 0 && b.byteOffset % 4 === 0) {
    const words = n >>> 2
    const wa = new Uint32Array(a.buffer, a.byteOffset, words)
    const wb = new Uint32Array(b.buffer, b.byteOffset, words)
    for (let w = 0; w < words; w++) if (wa[w] !== wb[w]) return false
    i = words << 2
  }
  for (; i < n; i++) if (a[i] !== b[i]) return false
  return true
}

function isPlainObject(x: unknown): x is Record<string, unknown> {
  if (typeof x !== 'object' || x === null || Array.isArray(x)) return false
  const proto: unknown = Object.getPrototypeOf(x)
  return proto === Object.prototype || proto === null
}

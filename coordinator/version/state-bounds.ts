// The one rule for every state a replica stores, whatever brought it: its own stamp, a `replicate`,
// a read repair, and later hinted handoff and anti-entropy. A replica computes the state it would
// store (its stored state merged with what arrived) and asks `boundsError` whether that state may
// replace the stored one. The bounds are the ones a local write has always had to respect, now held
// on every path, so that what is acknowledged can always be encoded, flushed, compacted, snapshotted,
// replayed and read back in one frame:
//   - at most siblingsMax siblings (Riak refuses at max_siblings the same way), refused with
//     TooManySiblings carrying the context that resolves them;
//   - every counter at most counterMax, far below 2^53, so a stamp's +1 can never overflow;
//   - a version vector whose context still fits contextBytesMax (a header or a cookie);
//   - at most stateBytesMax bytes encoded (a table entry, and a get reply in one frame).
// A key that already breaks a bound (stored before the bound was enforced everywhere) is not held to
// it by writes that do not make it worse, so it can still be resolved and deleted.
//
// And two checks about dots, which only the replica that owns an actor can make: a context or state
// that claims a dot of this replica's own actor above what the replica has stored for the key claims
// a write this replica never issued (a forgery, or a replay from before a lost log), and a dot that
// carries two different values is a forgery too. Both are refused with BadRequest before anything is
// stored (never an assertion: this is outside input).

import { badRequest, KvError } from '../errors.ts'
import { limits } from '../limits.ts'
import { encodeContext } from './context.ts'
import { counterOf, sync, type DvvSet, type Sibling, type VersionVector } from './dvv.ts'

/**
 * Why `next` may not replace `stored` (the state the replica holds now; EMPTY when none), or
 * undefined when it may. `storedBytes` and `nextBytes` are their encoded sizes.
 */
export function boundsError(stored: DvvSet, storedBytes: number, next: DvvSet, nextBytes: number): KvError | undefined {
  const siblings = next.siblings.length
  if (siblings > limits.siblingsMax && siblings > stored.siblings.length) return tooManySiblings(stored, siblings)
  for (const actor in next.vv) {
    const counter = next.vv[actor]!
    if (counter > limits.counterMax && counter > counterOf(stored.vv, actor)) {
      return badRequest(`write refused: actor ${JSON.stringify(actor).slice(0, 140)} would reach counter ${counter}, ` +
        `above counterMax (${limits.counterMax})`)
    }
  }
  if (nextBytes > limits.stateBytesMax && nextBytes > storedBytes) {
    return new KvError({ kind: 'TooLarge', bytes: nextBytes, bytesMax: limits.stateBytesMax },
      `write refused: the key would hold ${nextBytes} bytes, more than stateBytesMax (${limits.stateBytesMax}); ` +
      'write with the context of a read to replace its siblings')
  }
  const contextBytes = contextTextBytes(next.vv)
  if (contextBytes > limits.contextBytesMax && contextBytes > contextTextBytes(stored.vv)) {
    return new KvError({ kind: 'TooLarge', bytes: contextBytes, bytesMax: limits.contextBytesMax },
      `write refused: the key's version vector would need a ${contextBytes}-byte context, ` +
      `more than contextBytesMax (${limits.contextBytesMax})`)
  }
  return undefined
}

/** Refuses a vector that claims a dot of `actor` (this replica's own) above what `stored` holds. */
export function ownDotsError(vv: VersionVector, stored: DvvSet, actor: string, what: string): KvError | undefined {
  const claimed = counterOf(vv, actor)
  const issued = counterOf(stored.vv, actor)
  if (claimed <= issued) return undefined
  return badRequest(`${what} claims dot (${actor}, ${claimed}), but this replica issued at most ` +
    `(${actor}, ${issued}) for the key: a forged or replayed version`)
}

/** sync(stored, incoming) for a write: a dot carrying two values is refused (BadRequest), not merged. */
export function syncForWrite(stored: DvvSet, incoming: DvvSet): DvvSet {
  return sync(stored, incoming, conflictRefused)
}

function conflictRefused(dot: Sibling): never {
  throw badRequest(`state refused: dot (${dot.actor}, ${dot.counter}) already holds a different value here ` +
    '(a dot is issued once; two values for one dot is a forged or replayed write)')
}

function tooManySiblings(stored: DvvSet, siblings: number): KvError {
  let context = ''
  try { context = encodeContext(stored.vv) } catch { /* a legacy vector too large to carry: read to resolve */ }
  return new KvError({ kind: 'TooManySiblings', siblings, siblingsMax: limits.siblingsMax, context },
    `write refused: the key would hold ${siblings} siblings, more than siblingsMax (${limits.siblingsMax}); ` +
    'write with the context of a read (this error carries one) to resolve them')
}

/**
 * The length of encodeContext(vv), or more. An upper bound is computed first without encoding
 * (this runs on every write); only a vector that may be near the limit is encoded to know exactly.
 * Per actor the encoding spends a pair header (1), a string header (at most 5), the UTF-8 bytes
 * (at most 3 per UTF-16 unit) and a counter (at most 9); base64url adds a third.
 */
export function contextTextBytes(vv: VersionVector): number {
  let upper = 5
  for (const actor in vv) upper += 15 + 3 * actor.length
  upper = Math.ceil((upper * 4) / 3)
  if (upper <= limits.contextBytesMax) return upper
  try {
    return encodeContext(vv).length
  } catch (e) {
    // TooLarge says how long it would be; a vector it cannot encode at all (a legacy counter above
    // counterMax) counts as the upper bound.
    return e instanceof KvError && e.data.kind === 'TooLarge' ? e.data.bytes : upper
  }
}

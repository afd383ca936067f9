// The replica's side of the data plane: answers `hello`, `ring`, `get`, `put` (stamp) and
// `replicate` messages against the storage engine. Transport-free: the Node adapter (node/) decodes
// frames and hands each message here with a `reply` callback, so tests and a simulator can drive it
// directly. Every body is validated with its zod schema; a bad message gets a typed `error` reply and
// nothing else on the connection is affected.
//
// Stamping (docs/quorum.md): the replica reads the key's state, applies DVV update with its own
// actor (node id + incarnation), stores the new state and answers with it once the WAL fsync that
// covers it is done. Replicate merges the incoming state into the stored one with DVV sync. Either
// way the state to store is computed here, from everything the engine holds for the key, and goes
// through the one rule of coordinator/version/state-bounds.ts before anything is written.
//
// Hinted writes (docs/hints.md): a `replicate` carrying `hintFor` (an owner the coordinator found
// down) at a replica that is not itself a primary of the key goes to the hint store, merged into the
// hint pending for that owner and key, and is acknowledged once the hint log's fsync covers it; a
// full store refuses it with HintRefused. A `get` with `hintFor` answers with the replica's own
// state merged with that hint, so sloppy reads see hinted writes. A fallback never stamps a hinted
// `put` (write-quorum.ts): it refuses with HintRefused.
//
// Authentication (docs/security.md): with an Authenticator, a hello must carry a known token (or the
// cluster secret), and its role is kept in the connection's Grant; every later message is checked
// against requestRoles (messages.ts) by a table lookup. The token is checked once per connection.

import { unreachable } from '../coordinator/assert.ts'
import { roleAllows, type Authenticator, type Role } from '../coordinator/auth/auth.ts'
import { KvError } from '../coordinator/errors.ts'
import { limits } from '../coordinator/limits.ts'
import type { Message } from '../coordinator/protocol/codec.ts'
import { parseRequest } from '../coordinator/protocol/fast-parse.ts'
import { describeIssues, isRequestType, requestRoles, type ErrorBody, type ParsedRequest, type RequestType } from '../coordinator/protocol/messages.ts'
import type { Ring } from '../coordinator/ring/ring.ts'
import { preferenceList } from '../coordinator/ring/preference-list.ts'
import { EMPTY, sync, update, validate, type DvvSet } from '../coordinator/version/dvv.ts'
import { boundsError, ownDotsError, syncForWrite } from '../coordinator/version/state-bounds.ts'
import type { Engine, ValueWriter } from './storage/engine-types.ts'
import type { HintStore } from './hints/hint-store.ts'
import { decodeState, encodeState, stateWriter } from './state-codec.ts'

export type Reply = (message: Message, approxBytes?: number) => void

/** A validated request: its type and the body its schema produced, narrowed together. */
type Parsed = { [T in RequestType]: { readonly type: T; readonly body: ParsedRequest<T> } }[RequestType]

const supersedesStored = { supersedes: true } as const

/**
 * The stamp reply without the value the client just sent: the new sibling (this replica's actor,
 * its highest counter) goes back with a null value and its dot in `elided`. Tombstones need no
 * eliding.
 */
function elideOwnValue(state: DvvSet, actor: string, value: Uint8Array | null): { state: DvvSet; elided?: { actor: string; counter: number } } {
  if (value === null) return { state }
  const counter = state.vv[actor]
  if (counter === undefined) return { state }
  return {
    state: { vv: state.vv, siblings: state.siblings.map(s => (s.actor === actor && s.counter === counter ? { actor, counter, value: null } : s)) },
    elided: { actor, counter },
  }
}

/**
 * One connection's standing: the role its hello established, and the name of the token it
 * presented. Undefined until a hello succeeds; every role ('peer') when the replica runs without an
 * auth file, as before authentication existed.
 */
export interface Grant { role: Role | undefined; name: string | undefined }

export function newGrant(): Grant {
  return { role: undefined, name: undefined }
}

export interface ReplicaServiceOptions {
  readonly nodeId: string
  /** `${nodeId}.${incarnation}`: the DVV actor this replica stamps with. */
  readonly actor: string
  readonly engine: Engine
  readonly ring: () => Ring
  readonly valueBytesMax: number
  /** Returns an error when writes must be refused (e.g. the local snapshot budget is exhausted). */
  readonly writeGate?: () => KvError | undefined
  /** Tokens and the cluster secret; undefined = no authentication (everything is allowed). */
  readonly auth?: Authenticator | undefined
  /** Where hinted writes for absent owners go; without one, they are stored as this replica's own data. */
  readonly hints?: HintStore
}

export interface ReplicaCounters {
  framesIn: number
  framesOut: number
  requests: Record<string, number>
  errors: Record<string, number>
  pendingWrites: number
}

export class ReplicaService {
  readonly counters: ReplicaCounters = { framesIn: 0, framesOut: 0, requests: {}, errors: {}, pendingWrites: 0 }

  constructor(private readonly opts: ReplicaServiceOptions) {}

  /**
   * Answers one message on a connection whose standing is `grant` (a hello fills it in). Never
   * throws: every failure becomes an `error` reply.
   */
  handle(type: string, id: number, body: unknown, reply: Reply, grant: Grant): void {
    if (!isRequestType(type)) {
      // One label for every unknown type: a client cannot grow the metrics map.
      this.counters.requests.other = (this.counters.requests.other ?? 0) + 1
      this.error(reply, id, { kind: 'ProtocolError', message: `unknown message type ${JSON.stringify(type).slice(0, 64)}` })
      return
    }
    this.counters.requests[type] = (this.counters.requests[type] ?? 0) + 1
    const required = requestRoles[type]
    if (required !== 'none' && (grant.role === undefined || !roleAllows(grant.role, required))) {
      if (grant.role === undefined) this.error(reply, id, { kind: 'Unauthorized', message: `${type} before a hello with a known token` })
      else this.error(reply, id, { kind: 'Forbidden', message: `${type} needs the ${required} role; this connection's token (${grant.name}) has ${grant.role}`, role: grant.role, required })
      return
    }
    const parsed = parseRequest(type, body)
    if (!parsed.success) {
      const issues = describeIssues(parsed.error)
      this.error(reply, id, { kind: 'BadRequest', message: `invalid ${type}: ${issues.join('; ')}`, issues })
      return
    }
    try {
      this.dispatch({ type, body: parsed.data } as Parsed, id, reply, grant)
    } catch (e) {
      this.fail(reply, id, e)
    }
  }

  /** Answers a message whose envelope could not be read. */
  bad(id: number, why: string, reply: Reply): void {
    this.error(reply, id, { kind: 'ProtocolError', message: why })
  }

  private dispatch(req: Parsed, id: number, reply: Reply, grant: Grant): void {
    const { engine, actor } = this.opts
    switch (req.type) {
      case 'hello': {
        const { protocol } = req.body
        if (protocol !== limits.protocolVersion) {
          this.error(reply, id, { kind: 'ProtocolError', message: `protocol ${protocol} not supported; this replica speaks ${limits.protocolVersion}` })
          return
        }
        const auth = this.opts.auth
        if (auth) {
          const who = auth.authenticate(req.body.token)
          if (!who) {
            this.error(reply, id, { kind: 'Unauthorized', message: req.body.token === undefined ? 'this replica needs a token in hello' : 'unknown token' })
            return
          }
          grant.role = who.role
          grant.name = who.name
        } else {
          grant.role = 'peer'
          grant.name = 'anyone'
        }
        reply(['hello', id, { protocol: limits.protocolVersion, node: this.opts.nodeId, actor, ring: this.opts.ring() }])
        return
      }
      case 'ring':
        reply(['ring', id, { ring: this.opts.ring() }])
        return
      case 'get': {
        const { key, hintFor } = req.body
        if (hintFor !== undefined && this.opts.hints) {
          const target = this.hintTarget(key, hintFor, reply, id)
          if (target === null) return
          if (target !== undefined) { this.getWithHint(key, target, reply, id); return }
        }
        const stored = engine.get(key)
        // Only a state stored before stateBytesMax held on every path can be this large: refuse this
        // one read rather than build a frame the peer would refuse (and drop the connection for).
        if (stored !== undefined && stored.byteLength > limits.stateBytesMax) {
          this.error(reply, id, { kind: 'TooLarge', message: `the key holds ${stored.byteLength} bytes, more than a reply may carry (${limits.stateBytesMax})`, bytes: stored.byteLength, bytesMax: limits.stateBytesMax })
          return
        }
        reply(['get', id, { state: stored ? decodeState(stored) : null }], stored?.byteLength ?? 0)
        return
      }
      case 'put': {
        const { key, context, value } = req.body
        if (value && value.byteLength > this.opts.valueBytesMax) {
          this.error(reply, id, { kind: 'TooLarge', message: `value is ${value.byteLength} bytes, over the ${this.opts.valueBytesMax}-byte limit`, bytes: value.byteLength, bytesMax: this.opts.valueBytesMax })
          return
        }
        if (req.body.hintFor !== undefined && this.opts.hints) {
          const target = this.hintTarget(key, req.body.hintFor, reply, id)
          if (target === null) return
          if (target !== undefined) {
            this.fail(reply, id, new KvError({ kind: 'HintRefused', target, reason: 'stamp' },
              `${this.opts.nodeId} is a fallback for this key: it keeps hints for ${target} and never stamps (stamp at a primary)`))
            return
          }
        }
        if (!this.admitWrite(reply, id)) return
        const { state: stored, bytes: storedBytes } = this.stored(key)
        const forged = ownDotsError(context, stored, actor, 'the context')
        if (forged) { this.fail(reply, id, forged); return }
        const next = update(stored, context, actor, value)
        const encoded = stateWriter(next)
        const refused = boundsError(stored, storedBytes, next, encoded.bytes)
        if (refused) { this.fail(reply, id, refused); return }
        this.write(key, encoded, reply, id, () => reply(['put', id, elideOwnValue(next, actor, value)], encoded.bytes))
        return
      }
      case 'replicate': {
        const { key, state } = req.body
        for (const s of state.siblings) {
          if (s.value && s.value.byteLength > this.opts.valueBytesMax) {
            this.error(reply, id, { kind: 'TooLarge', message: `sibling value is ${s.value.byteLength} bytes, over the ${this.opts.valueBytesMax}-byte limit`, bytes: s.value.byteLength, bytesMax: this.opts.valueBytesMax })
            return
          }
        }
        validate(state)
        if (req.body.hintFor !== undefined && this.opts.hints) {
          const target = this.hintTarget(key, req.body.hintFor, reply, id)
          if (target === null) return
          if (target !== undefined) { this.replicateHint(key, target, state, reply, id); return }
        }
        if (!this.admitWrite(reply, id)) return
        const { state: stored, bytes: storedBytes } = this.stored(key)
        const forged = ownDotsError(state.vv, stored, actor, 'the replicated state')
        if (forged) { this.fail(reply, id, forged); return }
        // A key this replica has never seen (every fresh write) takes the validated state as it is:
        // sync(EMPTY, state) would only copy it.
        const next = stored === EMPTY ? state : syncForWrite(stored, state)
        const encoded = stateWriter(next)
        const refused = boundsError(stored, storedBytes, next, encoded.bytes)
        if (refused) { this.fail(reply, id, refused); return }
        this.write(key, encoded, reply, id, () => reply(['replicate', id, {}]))
        return
      }
      default:
        unreachable(req)
    }
  }

  /**
   * The owner a `hintFor` request is to be kept for: undefined when this replica is a primary of the
   * key (it stores the write as its own: the coordinator's ring was older) or `hintFor` is itself;
   * null, after an error reply, when `hintFor` names no node of the ring.
   */
  private hintTarget(key: string, hintFor: string, reply: Reply, id: number): string | undefined | null {
    const ring = this.opts.ring()
    if (hintFor === this.opts.nodeId) return undefined
    if (!ring.nodes.some(n => n.id === hintFor)) {
      this.error(reply, id, { kind: 'BadRequest', message: `hintFor ${JSON.stringify(hintFor).slice(0, 140)} names no node of the ring`, issues: ['hintFor: not a node of the ring'] })
      return null
    }
    return preferenceList(ring, key).primaries.includes(this.opts.nodeId) ? undefined : hintFor
  }

  /** A sloppy read at a fallback: its own state for the key merged with its hint for `target`. */
  private getWithHint(key: string, target: string, reply: Reply, id: number): void {
    const hint = this.opts.hints!.get(target, key)
    const own = this.stored(key)
    if (hint === undefined) {
      reply(['get', id, { state: own.state === EMPTY ? null : own.state }], own.bytes)
      return
    }
    const merged = own.state === EMPTY ? decodeState(hint.state) : sync(own.state, decodeState(hint.state))
    const bytes = own.bytes + hint.state.byteLength
    if (bytes > limits.stateBytesMax) {
      this.error(reply, id, { kind: 'TooLarge', message: `the key and its hint hold ${bytes} bytes, more than a reply may carry (${limits.stateBytesMax})`, bytes, bytesMax: limits.stateBytesMax })
      return
    }
    reply(['get', id, { state: merged }], bytes)
  }

  /** Keeps a replicated state for the absent `target`, merged into its pending hint; acks once durable. */
  private replicateHint(key: string, target: string, state: DvvSet, reply: Reply, id: number): void {
    if (!this.admitWrite(reply, id)) return
    const hints = this.opts.hints!
    // Dots of this replica's own actor can only be checked against what it stored as its own.
    const forged = ownDotsError(state.vv, this.stored(key).state, this.opts.actor, 'the replicated state')
    if (forged) { this.fail(reply, id, forged); return }
    const prev = hints.get(target, key)
    const stored = prev === undefined ? EMPTY : decodeState(prev.state)
    const next = stored === EMPTY ? state : syncForWrite(stored, state)
    const encoded = encodeState(next)
    const refused = boundsError(stored, prev?.state.byteLength ?? 0, next, encoded.byteLength)
    if (refused) { this.fail(reply, id, refused); return }
    const added = hints.add(target, key, encoded)
    if (added instanceof KvError) { this.fail(reply, id, added); return }
    this.counters.pendingWrites++
    added.then(
      () => { this.counters.pendingWrites--; reply(['replicate', id, {}]) },
      e => { this.counters.pendingWrites--; this.fail(reply, id, e) })
  }

  /** What the engine holds for `key`, decoded, and its encoded size (EMPTY and 0 when nothing). */
  private stored(key: string): { state: DvvSet; bytes: number } {
    const bytes = this.opts.engine.get(key)
    return bytes === undefined ? { state: EMPTY, bytes: 0 } : { state: decodeState(bytes), bytes: bytes.byteLength }
  }

  private admitWrite(reply: Reply, id: number): boolean {
    const gated = this.opts.writeGate?.()
    if (gated) { this.fail(reply, id, gated); return false }
    if (this.counters.pendingWrites >= limits.replicaPendingWritesMax) {
      this.error(reply, id, { kind: 'Overloaded', message: `${this.counters.pendingWrites} writes awaiting fsync`, retryAfterMs: limits.overloadedRetryAfterMs })
      return false
    }
    return true
  }

  /**
   * Stores `encoded`, a state computed in this same turn from everything the engine holds for the
   * key (stored() then update or sync), so it supersedes it: the memtable need not merge.
   */
  private write(key: string, encoded: ValueWriter, reply: Reply, id: number, done: () => void): void {
    this.counters.pendingWrites++
    this.opts.engine.put(key, encoded, supersedesStored).then(
      () => { this.counters.pendingWrites--; done() },
      e => { this.counters.pendingWrites--; this.fail(reply, id, e) })
  }

  private fail(reply: Reply, id: number, e: unknown): void {
    if (e instanceof KvError) {
      this.error(reply, id, { ...(e.data as object), kind: e.kind, message: e.message } as ErrorBody)
    } else {
      this.error(reply, id, { kind: 'Internal', message: `internal error: ${(e as Error)?.message ?? String(e)}` })
    }
  }

  private error(reply: Reply, id: number, body: ErrorBody): void {
    this.counters.errors[body.kind] = (this.counters.errors[body.kind] ?? 0) + 1
    reply(['error', id, body])
  }
}

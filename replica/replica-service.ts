// The replica's side of the data plane: answers `hello`, `ring`, `get`, `put` (stamp), `replicate`
// and `handoff` (a batch of a partition moving here, docs/handoff.md) messages against the storage
// engine. Transport-free: the Node adapter (node/) decodes frames and hands each message here with a `reply` callback, so tests and a simulator can drive it
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
//
// Anti-entropy (docs/anti-entropy.md) hooks in narrowly: `aae.onWrite` sees every state in the turn
// it is computed, with the state it replaces (the tree XORs the old state's hash out and the new
// one's in), `aae.floorOf` gives the dot floor a reaped key's partition left behind (a re-created
// key's dots start above it, and a state claiming this replica's dots up to it is not a forgery),
// and the aae* requests are served by `aae.serve`. A reaped key reads as absent (state-codec.ts
// barrier) and keeps its barrier when written again.

import { unreachable } from '../coordinator/assert.ts'
import { roleAllows, type Authenticator, type Role } from '../coordinator/auth/auth.ts'
import { badRequest, KvError } from '../coordinator/errors.ts'
import { limits } from '../coordinator/limits.ts'
import { LatencyHistogram } from '../coordinator/metrics/histogram.ts'
import type { Message } from '../coordinator/protocol/codec.ts'
import { parseRequest } from '../coordinator/protocol/fast-parse.ts'
import { describeIssues, isRequestType, keySchema, requestRoles, type ErrorBody, type ParsedRequest, type RequestType } from '../coordinator/protocol/messages.ts'
import { partitionOfKey } from '../coordinator/ring/partition-hash.ts'
import type { Ring } from '../coordinator/ring/ring.ts'
import { preferenceList } from '../coordinator/ring/preference-list.ts'
import { EMPTY, mergeVectors, sync, update, validate, type DvvSet } from '../coordinator/version/dvv.ts'
import { boundsError, ownDotsError, syncForWrite } from '../coordinator/version/state-bounds.ts'
import { handoffChecksum } from './handoff/handoff-batch.ts'
import type { Engine, ValueWriter } from './storage/engine-types.ts'
import type { HintStore } from './hints/hint-store.ts'
import { decodePeerState, decodeState, decodeStored, encodeState, stateWriter, withBarrier } from './state-codec.ts'

export type Reply = (message: Message, approxBytes?: number) => void

/** A validated request: its type and the body its schema produced, narrowed together. */
type Parsed = { [T in RequestType]: { readonly type: T; readonly body: ParsedRequest<T> } }[RequestType]

const supersedesStored = { supersedes: true } as const

/** A reply body's size for the data plane's backlog accounting: its byte arrays (hashes, values). */
function approxBodyBytes(body: unknown): number {
  let n = 0
  const walk = (v: unknown, depth: number): void => {
    if (v instanceof Uint8Array) n += v.byteLength
    else if (depth < 6 && typeof v === 'object' && v !== null) for (const x of Object.values(v)) walk(x, depth + 1)
  }
  walk(body, 0)
  return n
}

/**
 * Called when a write is durable, with the replica's time on it (messages.ts, writeTiming) or
 * undefined when it keeps no clock. Replies are built as object literals of one shape: spreading
 * the timing into them made msgpack encoding cost ~10 µs more per write (measured).
 */
type WriteDone = (serviceUs: number | undefined, fsyncUs: number) => void

/** A duration in ms as the whole µs a reply carries, within its bound. */
function timingUs(ms: number): number {
  return Math.min(limits.replyTimingUsMax, Math.max(0, Math.round(ms * 1000)))
}

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

/** The anti-entropy types, served by ReplicaServiceOptions.aae. */
export type AaeRequestType = 'aaeRoot' | 'aaeRoots' | 'aaeBranches' | 'aaeKeys'

/** What anti-entropy plugs into the replica's write path (replica/aae/anti-entropy.ts). */
export interface AaeHooks {
  /**
   * Called in the turn `next` is computed for `key`, before the engine stores it; `prev` is the
   * stored state it was computed from (EMPTY for a key never written, or reaped).
   */
  onWrite(key: string, prev: DvvSet, next: DvvSet): void
  /** The highest counter of this replica's actor that a reaped key of `key`'s partition held (0: none). */
  floorOf(key: string): number
  /** Answers an anti-entropy request: its reply body, or a KvError (thrown or rejected). */
  serve<T extends AaeRequestType>(type: T, body: ParsedRequest<T>): unknown
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
  /**
   * Membership (replica/membership/membership-service.ts): answers gossip, and says whether a key's
   * partition is this replica's to serve (undefined) or not (NotOwner). Without it (a replica in a
   * test harness) every key is served and gossip is refused.
   */
  readonly membership?: MembershipHooks
  /**
   * Called with each state this replica has stored and made durable (a stamp, a replicate, a
   * handoff entry), in the turn its fsync completed: handoff forwards writes to a partition it is
   * moving (HandoffManager.onStored). Must not throw; must return quickly.
   */
  readonly onStored?: (key: string, state: DvvSet) => void
  /** Anti-entropy; without it the aae* requests are refused (Unavailable). */
  readonly aae?: AaeHooks
  /** Where hinted writes for absent owners go; without one, they are stored as this replica's own data. */
  readonly hints?: HintStore
  /** A monotonic clock in fractional ms for the latency histograms; without it nothing is timed. */
  readonly now?: () => number
}

/** Per request type, from the message's arrival to its reply (a write's includes its WAL fsync). */
export interface ReplicaLatency {
  readonly stamp: LatencyHistogram
  readonly replicate: LatencyHistogram
  readonly get: LatencyHistogram
}

export interface MembershipHooks {
  /** NotOwner when this replica neither owns `key`'s partition, nor stands in for an owner, nor receives it by handoff. */
  ownership(key: string, hintFor: string | undefined): KvError | undefined
  /**
   * Whether one more gossip may be answered now (Overloaded otherwise): asked before the body is
   * parsed, so a flood costs a counter per message, not a schema check of a whole cluster state.
   */
  admitGossip(): KvError | undefined
  /** A peer's gossip: the merged state to reply with, or a KvError refusing it. */
  gossip(body: ParsedRequest<'gossip'>): ParsedRequest<'gossip'>['state']
}

export interface ReplicaCounters {
  framesIn: number
  framesOut: number
  requests: Record<string, number>
  errors: Record<string, number>
  pendingWrites: number
  /** Handoff batches stored, their keys and their states' bytes (the receiving side). */
  handoffBatchesIn: number
  handoffKeysIn: number
  handoffBytesIn: number
}

export class ReplicaService {
  readonly counters: ReplicaCounters = {
    framesIn: 0, framesOut: 0, requests: {}, errors: {}, pendingWrites: 0, handoffBatchesIn: 0, handoffKeysIn: 0, handoffBytesIn: 0,
  }
  readonly latency: ReplicaLatency = { stamp: new LatencyHistogram(), replicate: new LatencyHistogram(), get: new LatencyHistogram() }
  private readonly now: (() => number) | undefined

  constructor(private readonly opts: ReplicaServiceOptions) {
    this.now = opts.now
  }

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
    if (type === 'gossip') {
      const shed = this.opts.membership?.admitGossip()
      if (shed !== undefined) { this.fail(reply, id, shed); return }
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
    // Only successful gets, stamps and replicates are timed: a refusal is counted under errors.
    const t0 = this.now?.()
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
      case 'gossip': {
        const m = this.opts.membership
        if (m === undefined) { this.error(reply, id, { kind: 'BadRequest', message: 'this replica does not gossip', issues: ['no membership'] }); return }
        reply(['gossip', id, { state: m.gossip(req.body) }])
        return
      }
      case 'get': {
        const { key, hintFor } = req.body
        if (this.notOwner(key, hintFor, reply, id)) return
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
        const state = stored === undefined ? undefined : decodeStored(stored).state
        // A reaped key (nothing after its barrier) reads as never written.
        reply(['get', id, { state: state === undefined || state === EMPTY ? null : state }, this.opts.ring().version], stored?.byteLength ?? 0)
        if (t0 !== undefined) this.latency.get.recordMs(this.now!() - t0)
        return
      }
      case 'put': {
        const { key, context, value } = req.body
        if (this.notOwner(key, req.body.hintFor, reply, id)) return
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
        const { state: stored, bytes: storedBytes, barrier } = this.stored(key)
        const floor = this.opts.aae?.floorOf(key) ?? 0
        const forged = ownDotsError(context, this.withFloor(stored, floor), actor, 'the context')
        if (forged) { this.fail(reply, id, forged); return }
        // Above the floor: a key re-created after its reap never reuses a dot its tombstone covered.
        const next = update(stored, floor > 0 ? mergeVectors(context, { [actor]: floor }) : context, actor, value)
        const encoded = stateWriter(next)
        // The engine's refusal is asked here, in the turn the tree counts the write (as merge does).
        const refused = boundsError(stored, storedBytes, next, encoded.bytes) ?? this.opts.engine.refusal()
        if (refused) { this.fail(reply, id, refused); return }
        this.opts.aae?.onWrite(key, stored, next)
        const e = elideOwnValue(next, actor, value)
        this.write(key, barrier ? withBarrier(encoded) : encoded, reply, id, t0, this.latency.stamp, (serviceUs, fsyncUs) => {
          this.opts.onStored?.(key, next)
          const body = serviceUs === undefined ? e
            : e.elided ? { state: e.state, elided: e.elided, serviceUs, fsyncUs } : { state: e.state, serviceUs, fsyncUs }
          reply(['put', id, body, this.opts.ring().version], encoded.bytes)
        })
        if (req.body.early === true) {
          // Early stamp (docs/protocol.md): the engine took the write just now (its refusal was
          // asked above, and the bounds checked, in this turn), so it is in the memtable, visible to
          // reads. The coordinator replicates it on this answer while this replica's WAL group is
          // fsynced, and counts this replica toward W on the durable one above. Its dot is never
          // issued again even if the process dies before that fsync: a restart after an unclean
          // stop takes a new incarnation.
          reply(['put', id, e.elided ? { state: e.state, elided: e.elided, early: true } : { state: e.state, early: true }, this.opts.ring().version], encoded.bytes)
        }
        return
      }
      case 'replicate': {
        const { key, state } = req.body
        if (this.notOwner(key, req.body.hintFor, reply, id)) return
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
        const done = this.merge(key, state)
        if (done instanceof KvError) { this.fail(reply, id, done); return }
        this.pending(done, reply, id, t0, this.latency.replicate, (serviceUs, fsyncUs) =>
          reply(['replicate', id, serviceUs === undefined ? {} : { serviceUs, fsyncUs }, this.opts.ring().version]))
        return
      }
      case 'aaeRoot':
      case 'aaeRoots':
      case 'aaeBranches':
      case 'aaeKeys': {
        const aae = this.opts.aae
        if (!aae) {
          this.error(reply, id, { kind: 'Unavailable', message: 'anti-entropy is off on this replica', node: this.opts.nodeId })
          return
        }
        Promise.resolve(aae.serve(req.type, req.body as never)).then(
          body => reply([req.type, id, body], approxBodyBytes(body)),
          e => this.fail(reply, id, e))
        return
      }
      case 'handoff':
        this.handoff(req.body, id, reply)
        return
      default:
        unreachable(req)
    }
  }

  /** Answers NotOwner (and returns true) when membership says `key` is not this replica's to serve. */
  private notOwner(key: string, hintFor: string | undefined, reply: Reply, id: number): boolean {
    const refused = this.opts.membership?.ownership(key, hintFor)
    if (refused === undefined) return false
    this.fail(reply, id, refused)
    return true
  }

  /**
   * Stores one handoff batch (docs/handoff.md), all or nothing: the checksum first, then every key
   * (valid, of the batch's partition, each once) and every state (decoded as untrusted, the same
   * value, dot and bound checks as `replicate`), each merged with what this replica holds. Only when
   * every entry passes is anything written, all in this same turn, and the ack goes out once the
   * WAL fsync covering the last of them is done.
   */
  private handoff(body: ParsedRequest<'handoff'>, id: number, reply: Reply): void {
    const { partition, seq, entries, checksum } = body
    const actual = handoffChecksum(partition, seq, entries as ReadonlyArray<readonly [Uint8Array, Uint8Array]>)
    if (actual !== checksum) {
      this.fail(reply, id, new KvError({ kind: 'ChecksumMismatch', expected: checksum, actual },
        `handoff batch ${seq} of partition ${partition}: checksum ${checksum} does not match its bytes (${actual}); nothing stored`))
      return
    }
    const partitions = this.opts.ring().partitions
    if (partition >= partitions) {
      this.fail(reply, id, badRequest(`handoff of partition ${partition}, but the ring has ${partitions} partitions`))
      return
    }
    let stateBytes = 0
    for (const e of entries) stateBytes += e[1]!.byteLength
    if (entries.length > 1 && stateBytes > limits.handoffBatchBytesMax) {
      this.error(reply, id, { kind: 'TooLarge', message: `handoff batch of ${entries.length} states holds ${stateBytes} bytes, over the ${limits.handoffBatchBytesMax}-byte batch limit`, bytes: stateBytes, bytesMax: limits.handoffBatchBytesMax })
      return
    }
    if (!this.admitWrite(reply, id)) return
    const { actor } = this.opts
    const keys = new Set<string>()
    const writes: Array<{ key: string; stored: DvvSet; next: DvvSet; encoded: ValueWriter }> = []
    for (let i = 0; i < entries.length; i++) {
      const [keyBytes, stateBytesOf] = entries[i]! as readonly [Uint8Array, Uint8Array]
      const parsedKey = keySchema.safeParse(keyBytes)
      if (!parsedKey.success) { this.fail(reply, id, badRequest(...describeIssues(parsedKey.error).map(m => `entry ${i}: ${m}`))); return }
      const key = parsedKey.data
      if (keys.has(key)) { this.fail(reply, id, badRequest(`entry ${i}: key repeated in the batch`)); return }
      keys.add(key)
      const p = partitionOfKey(partitions, key)
      if (p !== partition) { this.fail(reply, id, badRequest(`entry ${i}: key belongs to partition ${p}, not ${partition}`)); return }
      const state = decodePeerState(stateBytesOf)
      for (const s of state.siblings) {
        if (s.value && s.value.byteLength > this.opts.valueBytesMax) {
          this.error(reply, id, { kind: 'TooLarge', message: `entry ${i}: sibling value is ${s.value.byteLength} bytes, over the ${this.opts.valueBytesMax}-byte limit`, bytes: s.value.byteLength, bytesMax: this.opts.valueBytesMax })
          return
        }
      }
      const { state: stored, bytes: storedBytes, barrier } = this.stored(key)
      const floor = this.opts.aae?.floorOf(key) ?? 0
      const forged = ownDotsError(state.vv, this.withFloor(stored, floor), actor, `handoff entry ${i}`)
      if (forged) { this.fail(reply, id, forged); return }
      const next = stored === EMPTY ? state : syncForWrite(stored, state)
      const encoded = stateWriter(next)
      const refused = boundsError(stored, storedBytes, next, encoded.bytes)
      if (refused) { this.fail(reply, id, refused); return }
      writes.push({ key, stored, next, encoded: barrier ? withBarrier(encoded) : encoded })
    }
    this.counters.pendingWrites += writes.length
    const { engine, onStored, aae } = this.opts
    // Each write is offered to the engine before the tree counts it: a batch that fills the engine
    // midway stops there, and the tree holds only what the engine took.
    const puts: Promise<void>[] = []
    for (const w of writes) {
      const refused = engine.refusal()
      if (refused) { puts.push(Promise.reject(refused)); break }
      aae?.onWrite(w.key, w.stored, w.next)
      puts.push(engine.put(w.key, w.encoded, supersedesStored))
    }
    Promise.all(puts).then(() => {
      this.counters.pendingWrites -= writes.length
      this.counters.handoffBatchesIn++
      this.counters.handoffKeysIn += writes.length
      this.counters.handoffBytesIn += stateBytes
      if (onStored) for (const w of writes) onStored(w.key, w.next)
      reply(['handoff', id, { keys: writes.length }])
    }, e => {
      this.counters.pendingWrites -= writes.length
      this.fail(reply, id, e)
    })
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


  /**
   * Merges `state` (validated) into what the replica holds for `key` under the same rules as a
   * `replicate`, and stores the result: the promise resolves once it is durable (at once when
   * nothing changed). A KvError when the state is refused. Anti-entropy applies a peer's states here.
   */
  applyState(key: string, state: DvvSet): Promise<void> {
    const gated = this.opts.writeGate?.()
    if (gated) return Promise.reject(gated)
    if (this.counters.pendingWrites >= limits.replicaPendingWritesMax) {
      return Promise.reject(new KvError({ kind: 'Overloaded', retryAfterMs: limits.overloadedRetryAfterMs }, `${this.counters.pendingWrites} writes awaiting fsync`))
    }
    const done = this.merge(key, state)
    if (done instanceof KvError) return Promise.reject(done)
    if (done === undefined) return Promise.resolve()
    this.counters.pendingWrites++
    return done.finally(() => { this.counters.pendingWrites-- })
  }

  /**
   * The replicate rule: refuses a state claiming this replica's dots above what it issued for the
   * key (its reap floor included), syncs, checks the bounds, and starts the write (undefined when
   * the stored state already holds everything `state` has).
   */
  private merge(key: string, state: DvvSet): Promise<void> | KvError | undefined {
    const { actor } = this.opts
    const { state: stored, bytes: storedBytes, barrier } = this.stored(key)
    const floor = this.opts.aae?.floorOf(key) ?? 0
    const forged = ownDotsError(state.vv, this.withFloor(stored, floor), actor, 'the replicated state')
    if (forged) return forged
    let next: DvvSet
    try {
      // A key this replica has never seen (every fresh write) takes the validated state as it is:
      // sync(EMPTY, state) would only copy it.
      next = stored === EMPTY ? state : syncForWrite(stored, state)
    } catch (e) {
      if (e instanceof KvError) return e
      throw e
    }
    const encoded = stateWriter(next)
    const refused = boundsError(stored, storedBytes, next, encoded.bytes) ?? this.opts.engine.refusal()
    if (refused) return refused
    this.opts.aae?.onWrite(key, stored, next)
    const onStored = this.opts.onStored
    const write = this.opts.engine.put(key, barrier ? withBarrier(encoded) : encoded, supersedesStored)
    return onStored ? write.then(() => onStored(key, next)) : write
  }

  /** `stored` as the own-dots check sees it: its vector raised to this replica's reap floor. */
  private withFloor(stored: DvvSet, floor: number): DvvSet {
    return floor > 0 ? { vv: mergeVectors(stored.vv, { [this.opts.actor]: floor }), siblings: stored.siblings } : stored
  }

  /**
   * What the engine holds for `key`, decoded, its encoded size (EMPTY and 0 when nothing) and
   * whether it sits behind a reap's barrier (kept on every later write until compaction settles it).
   */
  private stored(key: string): { state: DvvSet; bytes: number; barrier: boolean } {
    const bytes = this.opts.engine.get(key)
    if (bytes === undefined) return { state: EMPTY, bytes: 0, barrier: false }
    const { state, barrier } = decodeStored(bytes)
    return { state: state.siblings.length === 0 && Object.keys(state.vv).length === 0 ? EMPTY : state, bytes: bytes.byteLength, barrier }
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
  private write(key: string, encoded: ValueWriter, reply: Reply, id: number, t0: number | undefined, hist: LatencyHistogram,
    done: WriteDone): void {
    this.pending(this.opts.engine.put(key, encoded, supersedesStored), reply, id, t0, hist, done)
  }

  /** Waits for `write` (undefined: nothing to write), records its latency, then calls `done` with the timing. */
  private pending(write: Promise<void> | undefined, reply: Reply, id: number, t0: number | undefined, hist: LatencyHistogram,
    done: WriteDone): void {
    const now = this.now
    const engine = this.opts.engine
    const finish = (): void => {
      if (now === undefined || t0 === undefined) { done(undefined, 0); return }
      const ms = now() - t0
      hist.recordMs(ms)
      done(timingUs(ms), timingUs(Math.min(ms, engine.lastFsyncMs ?? 0)))
    }
    if (write === undefined) { finish(); return }
    this.counters.pendingWrites++
    write.then(
      () => { this.counters.pendingWrites--; finish() },
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
    // A joining replica has no ring until its seed answered: its errors then carry no version.
    let ringVersion: number | undefined
    try { ringVersion = this.opts.ring().version } catch { ringVersion = undefined }
    reply(ringVersion === undefined ? ['error', id, body] : ['error', id, body, ringVersion])
  }
}

// Coordinates one request end to end: validates it, finds the preference list on the ring, and
// drives the quorum state machines (quorum/) over the connection pool. The SDK runs this in apps;
// the HTTP gateway runs the very same object server-side (DESIGN.md "Quorum, coordinated by the
// client"). The ring comes from any seed's `hello` and is refreshed from replies.

import { badRequest, KvError } from './errors.ts'
import { limits } from './limits.ts'
import { keyIssues, type ReplyBody } from './protocol/messages.ts'
import { ReadQuorum } from './quorum/read-quorum.ts'
import { WriteQuorum, type WriteAction } from './quorum/write-quorum.ts'
import { preferenceList, validateRing, type Ring, type RingNode } from './ring/ring.ts'
import type { Runtime } from './runtime.ts'
import { ConnectionPool } from './transport/connection-pool.ts'
import { decodeContext, encodeContext } from './version/context.ts'
import { context as contextOf, isDeleted, values as valuesOf, type DvvSet, type VersionVector } from './version/dvv.ts'

export interface CoordinatorOptions {
  /** ws:// URLs of any replicas; the ring is learned from the first that answers. */
  readonly seeds: readonly string[]
  readonly runtime: Runtime
  readonly r?: number
  readonly w?: number
  readonly timeoutMs?: number
  readonly sloppy?: boolean
  readonly valueBytesMax?: number
  readonly connectionsPerReplica?: number
  readonly client?: string
  readonly token?: string
}

export interface WriteOptions { readonly context?: string | undefined; readonly w?: number | undefined; readonly timeoutMs?: number | undefined; readonly sloppy?: boolean | undefined }
export interface ReadOptions { readonly r?: number | undefined; readonly timeoutMs?: number | undefined; readonly sloppy?: boolean | undefined }

export interface ReadResult {
  readonly found: boolean
  readonly values: Uint8Array[]
  /** Opaque causal context: pass it to the next write of this key. */
  readonly context: string
  readonly state: DvvSet | null
}

export interface WriteResult {
  readonly context: string
  readonly state: DvvSet
  readonly acked: readonly string[]
}

const encoder = new TextEncoder()

export class KvCoordinator {
  private readonly pool: ConnectionPool
  private readonly seedPool: ConnectionPool
  private ring: Ring | undefined
  private ringWait: Promise<Ring> | undefined
  /** Read repairs in flight, shared by every read (bounded by limits.readRepairsInflightMax). */
  private readonly repairs = { inflight: 0 }
  private readonly defaults: { r: number | undefined; w: number | undefined; timeoutMs: number; sloppy: boolean; valueBytesMax: number }

  constructor(private readonly opts: CoordinatorOptions) {
    if (opts.seeds.length === 0) throw badRequest('at least one seed URL is required')
    const valueBytesMax = opts.valueBytesMax ?? limits.valueBytesDefault
    if (!(valueBytesMax > 0 && valueBytesMax <= limits.valueBytesMax)) throw badRequest(`valueBytesMax must be 1..${limits.valueBytesMax}, got ${valueBytesMax}`)
    this.defaults = { r: opts.r, w: opts.w, timeoutMs: opts.timeoutMs ?? limits.requestTimeoutMsDefault, sloppy: opts.sloppy ?? true, valueBytesMax }
    const connOpts = { client: opts.client ?? 'ringkv', perReplica: opts.connectionsPerReplica ?? limits.connectionsPerReplicaDefault, onHello: (h: ReplyBody<'hello'>) => this.learnRing(h.ring), ...(opts.token !== undefined ? { token: opts.token } : {}) }
    this.pool = new ConnectionPool(opts.runtime, connOpts)
    this.seedPool = new ConnectionPool(opts.runtime, { ...connOpts, perReplica: 1 })
    this.seedPool.setNodes(opts.seeds.map((url, i) => ({ id: `seed${i}`, url })))
  }

  /** The ring, fetched from the seeds on first use. */
  async getRing(): Promise<Ring> {
    if (this.ring) return this.ring
    this.ringWait ??= this.fetchRing().finally(() => { this.ringWait = undefined })
    return this.ringWait
  }

  isUp(node: string): boolean { return this.pool.isUp(node) }

  private async fetchRing(): Promise<Ring> {
    const errors: unknown[] = []
    for (let i = 0; i < this.opts.seeds.length; i++) {
      const conn = this.seedPool.get(`seed${i}`)!
      try {
        const reply = await conn.request('ring', {}, this.defaults.timeoutMs)
        return this.learnRing(reply.ring)
      } catch (e) {
        errors.push(e)
      }
    }
    throw new KvError({ kind: 'Unavailable' }, `no seed answered (${this.opts.seeds.join(', ')}): ${errors.map(e => (e as Error).message).join('; ')}`, { cause: errors[0] })
  }

  private learnRing(wire: ReplyBody<'ring'>['ring']): Ring {
    if (this.ring && this.ring.version >= wire.version) return this.ring
    const ring: Ring = { version: wire.version, partitions: wire.partitions, n: wire.n, nodes: wire.nodes as RingNode[], owners: wire.owners }
    validateRing(ring)
    this.ring = ring
    this.pool.setNodes(ring.nodes)
    return ring
  }

  /** Write `value` (null = delete, as a tombstone) under `key`. */
  async put(key: string, value: Uint8Array | null, opts: WriteOptions = {}): Promise<WriteResult> {
    const keyBytes = this.checkKey(key)
    if (value !== null && value.byteLength > this.defaults.valueBytesMax) {
      throw new KvError({ kind: 'TooLarge', bytes: value.byteLength, bytesMax: this.defaults.valueBytesMax },
        `value is ${value.byteLength} bytes, over the ${this.defaults.valueBytesMax}-byte limit`)
    }
    const context = opts.context ? decodeContext(opts.context) : {}
    // No await once the ring is known: each await is a trip through the microtask queue per request.
    const ring = this.ring ?? await this.getRing()
    const w = this.quorumParam('w', opts.w ?? this.defaults.w, ring)
    const timeoutMs = this.timeout(opts.timeoutMs)
    const sloppy = opts.sloppy ?? this.defaults.sloppy
    const pl = preferenceList(ring, key)
    const q = new WriteQuorum({ w, primaries: pl.primaries, fallbacks: pl.fallbacks, isUp: this.pool.isUp, sloppy })
    const rt = this.opts.runtime
    // A stamp that takes too long moves on to the next node while there is time left to finish there.
    const stampTimeoutMs = Math.max(1, Math.min(limits.stampTimeoutMsMax, Math.floor(timeoutMs / 3)))
    return new Promise<WriteResult>((resolve, reject) => {
      new WriteDriver(this.pool, rt, q, { key: keyBytes, context, value }, stampTimeoutMs, resolve, reject).start(timeoutMs)
    })
  }

  /**
   * Writes a tombstone. Without a context the key is read first and its context used, as
   * riak_kv_delete does: a blind tombstone would be concurrent with the stored value and leave it
   * in place as a sibling, which is never what "delete" means to a caller.
   */
  async delete(key: string, opts: WriteOptions & ReadOptions = {}): Promise<WriteResult> {
    let context = opts.context
    if (!context) context = (await this.get(key, { r: opts.r, timeoutMs: opts.timeoutMs, sloppy: opts.sloppy })).context
    return this.put(key, null, { ...opts, context })
  }

  async get(key: string, opts: ReadOptions = {}): Promise<ReadResult> {
    const keyBytes = this.checkKey(key)
    const ring = this.ring ?? await this.getRing()
    const r = this.quorumParam('r', opts.r ?? this.defaults.r, ring)
    const timeoutMs = this.timeout(opts.timeoutMs)
    const sloppy = opts.sloppy ?? this.defaults.sloppy
    const pl = preferenceList(ring, key)
    // Ask the primaries that are up; with a sloppy quorum, fallbacks stand in for the ones down
    // (they may hold hinted writes for them).
    const targets = pl.primaries.filter(this.pool.isUp)
    if (sloppy) for (const f of pl.fallbacks) { if (targets.length >= pl.primaries.length) break; if (this.pool.isUp(f)) targets.push(f) }
    const q = new ReadQuorum({ r, targets, primaries: new Set(pl.primaries) })
    return new Promise<ReadResult>((resolve, reject) => {
      new ReadDriver(this.pool, this.opts.runtime, q, keyBytes, timeoutMs, this.repairs, resolve, reject).start()
    })
  }

  close(): void {
    this.pool.close()
    this.seedPool.close()
  }

  private checkKey(key: string): Uint8Array {
    if (typeof key !== 'string') throw badRequest('key must be a string')
    const bytes = encoder.encode(key)
    const issues = keyIssues(key, bytes.byteLength)
    if (issues.length > 0) throw badRequest(...issues)
    return bytes
  }

  private quorumParam(name: 'r' | 'w', value: number | undefined, ring: Ring): number {
    const n = ring.n
    const v = value ?? Math.floor(n / 2) + 1
    if (!Number.isInteger(v) || v < 1 || v > n) throw badRequest(`${name} must be an integer from 1 to N=${n}, got ${value}`)
    return v
  }

  private timeout(t: number | undefined): number {
    const v = t ?? this.defaults.timeoutMs
    if (!(Number.isFinite(v) && v > 0 && v <= 600_000)) throw badRequest(`timeoutMs must be 1..600000, got ${t}`)
    return v
  }
}

// The drivers: one object per request in flight, feeding its quorum state machine the replies and
// failures and sending what it asks for. Methods rather than closures made per request: fewer
// function objects per request, and none of the keep-names wrappers tsx puts on named closures
// (Object.defineProperty on each, ~0.4 µs apiece), which apps running the SDK under tsx would pay.

class WriteDriver {
  private settled = false
  private timer: unknown
  private deadline = 0

  constructor(
    private readonly pool: ConnectionPool,
    private readonly rt: Runtime,
    private readonly q: WriteQuorum,
    private readonly req: { readonly key: Uint8Array; readonly context: VersionVector; readonly value: Uint8Array | null },
    private readonly stampTimeoutMs: number,
    private readonly resolve: (r: WriteResult) => void,
    private readonly reject: (e: Error) => void,
  ) {}

  start(timeoutMs: number): void {
    this.deadline = this.rt.now() + timeoutMs
    this.timer = this.rt.setTimeout(() => { this.q.expire(); this.check() }, timeoutMs)
    this.run(this.q.start())
    this.check()
  }

  private check(): void {
    if (this.settled) return
    const o = this.q.outcome
    if (o.status === 'pending') return
    this.settled = true
    this.rt.clearTimeout(this.timer)
    if (o.status === 'ok') this.resolve({ context: encodeContext(contextOf(o.state)), state: o.state, acked: o.acked })
    else this.reject(o.error)
  }

  private run(actions: WriteAction[]): void {
    const { key, context, value } = this.req
    const approx = value?.byteLength ?? 0
    for (const a of actions) {
      const node = a.target.node
      const conn = this.pool.get(node)
      if (!conn) { this.run(this.q.onFailed(node)); continue }
      const left = Math.max(1, this.deadline - this.rt.now())
      const hint = a.target.hintFor !== undefined ? { hintFor: a.target.hintFor } : {}
      if (a.kind === 'stamp') {
        conn.request('put', { key, context, value, ...hint }, Math.min(left, this.stampTimeoutMs), approx)
          .then(reply => this.onStamped(node, reply), e => this.onStampFailed(node, e))
      } else {
        conn.request('replicate', { key, state: a.state, ...hint }, left, approx)
          .then(() => { this.run(this.q.onReplicated(node)); this.check() }, e => this.onFailed(node, e))
      }
    }
  }

  private onStamped(node: string, reply: ReplyBody<'put'>): void {
    let state: DvvSet
    try {
      state = withElidedValue(reply, this.req.value)
    } catch (e) {
      this.onFailed(node, e)
      return
    }
    this.run(this.q.onStamped(node, state))
    this.check()
  }

  private onFailed(node: string, e: unknown): void {
    this.run(this.q.onFailed(node, e as Error))
    this.check()
  }

  /**
   * A stamp refused for what the request is (a bad context, a value or key state past a bound) would
   * be refused by every replica alike, and a fallback with no state for the key would wrongly accept
   * it: the write ends here with that error (TooManySiblings carries the context to resolve with).
   * Anything else (a timeout, a lost connection, an overloaded replica) moves to the next node.
   */
  private onStampFailed(node: string, e: unknown): void {
    if (this.settled || !isRefusal(e)) { this.onFailed(node, e); return }
    this.settled = true
    this.rt.clearTimeout(this.timer)
    this.reject(e)
  }
}

/** Errors that say the request itself cannot be stored, on any replica. */
function isRefusal(e: unknown): e is KvError {
  return e instanceof KvError && (e.kind === 'BadRequest' || e.kind === 'TooLarge' || e.kind === 'TooManySiblings')
}

class ReadDriver {
  private settled = false
  private repaired = false
  private timer: unknown

  constructor(
    private readonly pool: ConnectionPool,
    private readonly rt: Runtime,
    private readonly q: ReadQuorum,
    private readonly key: Uint8Array,
    private readonly timeoutMs: number,
    private readonly repairs: { inflight: number },
    private readonly resolve: (r: ReadResult) => void,
    private readonly reject: (e: Error) => void,
  ) {}

  start(): void {
    this.timer = this.rt.setTimeout(() => { this.q.expire(); this.check(); this.repair() }, this.timeoutMs)
    for (const node of this.q.start()) {
      const conn = this.pool.get(node)
      if (!conn) { this.q.onFailed(node); continue }
      conn.request('get', { key: this.key }, this.timeoutMs).then(
        reply => { this.q.onReply(node, reply.state); this.check() },
        e => { this.q.onFailed(node, e); this.check() })
    }
    this.check()
  }

  private check(): void {
    if (!this.settled) {
      const o = this.q.outcome
      if (o.status === 'pending') return
      this.settled = true
      if (o.status === 'failed') { this.rt.clearTimeout(this.timer); this.repaired = true; this.reject(o.error); return }
      const state = o.state
      this.resolve({
        found: state !== null && !isDeleted(state),
        values: state ? valuesOf(state) : [],
        context: state ? encodeContext(contextOf(state)) : '',
        state,
      })
    }
    if (this.q.complete) this.repair()
  }

  /** Read repair, after the answer: replicas that replied with an older state get the merged one. */
  private repair(): void {
    if (this.repaired || !this.settled) return
    this.repaired = true
    this.rt.clearTimeout(this.timer)
    for (const { node, state } of this.q.repairs()) {
      const conn = this.pool.get(node)
      if (!conn || this.repairs.inflight >= limits.readRepairsInflightMax) continue
      this.repairs.inflight++
      conn.request('replicate', { key: this.key, state }, this.timeoutMs).catch(() => undefined).finally(() => { this.repairs.inflight-- })
    }
  }
}

/** Puts back the value a stamp reply left out (replica-service.ts, elideOwnValue). */
function withElidedValue(reply: ReplyBody<'put'>, value: Uint8Array | null): DvvSet {
  const e = reply.elided
  if (!e) return reply.state
  let found = false
  const siblings = reply.state.siblings.map(s => {
    if (s.actor !== e.actor || s.counter !== e.counter) return s
    found = s.value === null && value !== null
    return { actor: s.actor, counter: s.counter, value }
  })
  if (!found) throw new KvError({ kind: 'ProtocolError', detail: 'bad elided dot' }, `stamp reply elides ${e.actor}:${e.counter}, which it does not hold as an elided sibling`)
  return { vv: reply.state.vv, siblings }
}


// Coordinates one request end to end: validates it, finds the preference list on the ring, and
// drives the quorum state machines (quorum/) over the connection pool. The SDK runs this in apps;
// the HTTP gateway runs the very same object server-side (docs/quorum.md). The
// ring comes from the seeds (RingDiscovery) and is refreshed from replies.
//
// Promises kept here: options are checked before any I/O (the constructor throws BadRequest at
// once); `timeoutMs` is a deadline for the whole call, ring discovery included; every failure is a
// KvError whose failure map names each replica and why; and nothing a replica sends or fails to send
// can end the process: the drivers catch what the quorum, merge or context encoding throw from
// inside reply callbacks and reject the call with it, instead of leaving an unhandled rejection.

import { asKvError, authFailureOf, badRequest, failureRecord, KvError, QuorumError, type ReplicaFailure } from './errors.ts'
import { limits } from './limits.ts'
import { OpStats } from './metrics/op-stats.ts'
import { turnCachedClock } from './metrics/turn-clock.ts'
import { keyIssues, requestSchemas, type ReplyBody } from './protocol/messages.ts'
import { ReadQuorum } from './quorum/read-quorum.ts'
import { ReadSpeculation, type SpeculationStats } from './quorum/speculation.ts'
import { WriteQuorum, type WriteAction } from './quorum/write-quorum.ts'
import { preferenceList, sloppyTargets, validateRing, type Ring, type RingNode, type SloppyTarget } from './ring/ring.ts'
import type { Runtime } from './runtime.ts'
import { neverSent, shownUrl } from './transport/connection.ts'
import { ConnectionPool } from './transport/connection-pool.ts'
import { decodeContext, encodeContext } from './version/context.ts'
import { context as contextOf, isDeleted, values as valuesOf, type DvvSet, type VersionVector } from './version/dvv.ts'

export interface CoordinatorOptions {
  /** ws:// or wss:// URLs of any replicas; the ring is learned from the first that answers. */
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
  /**
   * Which replicas a get asks at first: 'quorum' (the default) asks R, the least loaded first, and
   * the others only when one fails or the first are slow (docs/quorum.md); 'all' asks every target,
   * as Dynamo's coordinator does, for read repair of every replica on every read.
   */
  readonly readFanout?: 'quorum' | 'all'
  /** With readFanout 'quorum': ask the other targets after this many ms, not after the p99 of recent gets. */
  readonly speculativeReadMs?: number
}

/**
 * When the whole call must be done: `at` on the runtime's clock, `timeoutMs` what the caller asked
 * for (for messages). delete() and the SDK's update() pass one down to share it across their reads
 * and writes.
 */
export interface Deadline { readonly at: number; readonly timeoutMs: number }

export interface WriteOptions { readonly context?: string | undefined; readonly w?: number | undefined; readonly timeoutMs?: number | undefined; readonly sloppy?: boolean | undefined; readonly deadline?: Deadline | undefined }
export interface ReadOptions {
  readonly r?: number | undefined; readonly timeoutMs?: number | undefined; readonly sloppy?: boolean | undefined; readonly deadline?: Deadline | undefined
  /**
   * What the answer must have seen (a causal session's vector for the key, http/session.ts): the read
   * waits for more replicas until their merge covers it, and fails SessionNotMet if none do in time.
   */
  readonly floor?: VersionVector | undefined
}

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

/** A key's replicas (kv.endpoints, `ringkv endpoints KEY`). */
export interface Endpoints {
  readonly ringVersion: number
  readonly partition: number
  readonly primaries: ReadonlyArray<{ readonly node: string; readonly url: string; readonly up: boolean }>
  readonly fallbacks: ReadonlyArray<{ readonly node: string; readonly url: string; readonly up: boolean }>
}

/** The newest ring version a NotOwner in `e` names (a replica's refusal, or one inside a QuorumError). */
function notOwnerRingVersion(e: unknown): number | undefined {
  const named = (f: unknown): number | undefined => f instanceof KvError && f.kind === 'NotOwner' ? (f.data as { ringVersion: number }).ringVersion : undefined
  if (!(e instanceof QuorumError)) return named(e)
  let max: number | undefined
  for (const f of e.failures.values()) { const v = named(f); if (v !== undefined && (max === undefined || v > max)) max = v }
  return max
}

/** True when `e` (or a replica's failure inside a QuorumError) is NotOwner: the caller's ring is stale. */
export function isNotOwner(e: unknown): boolean {
  if (!(e instanceof KvError)) return false
  if (e.kind === 'NotOwner') return true
  return e instanceof QuorumError && [...e.failures.values()].some(f => f instanceof KvError && f.kind === 'NotOwner')
}

/** What /health reports: how many replicas of the ring answered a probe just now, and why not the others. */
export interface Reachability {
  readonly total: number
  readonly reachable: number
  readonly unreachable: Record<string, ReplicaFailure>
}

const encoder = new TextEncoder()

// ---- Option checks. Hand-written: they run on every call, and must never throw themselves. ----

/** A value as it may appear in a message: short, and never a throw (symbols, bigints, proxies). */
export function show(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? v.slice(0, 40) + '…' : v)
  if (typeof v === 'number' || typeof v === 'boolean' || v === undefined || v === null) return String(v)
  if (Array.isArray(v)) return `an array of ${v.length}`
  return `a ${typeof v}`
}

type Check = (v: unknown) => string | undefined

function intIn(min: number, max: number): Check {
  return v => typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max ? undefined : `must be an integer from ${min} to ${max}, got ${show(v)}`
}
const isTimeout: Check = v => typeof v === 'number' && Number.isFinite(v) && v >= 1 && v <= limits.requestTimeoutMsMax
  ? undefined : `must be a number of milliseconds from 1 to ${limits.requestTimeoutMsMax}, got ${show(v)}`
const isBoolean: Check = v => typeof v === 'boolean' ? undefined : `must be true or false, got ${show(v)}`
const isQuorum = intIn(1, limits.nMax)
function fromSchema(schema: { safeParse(v: unknown): { success: boolean } }, what: string): Check {
  return v => schema.safeParse(v).success ? undefined : `must be ${what}, got ${show(v)}`
}

function seedsIssue(seeds: unknown): string[] {
  if (!Array.isArray(seeds) || seeds.length === 0) return [`seeds must be a non-empty array of ws:// or wss:// URLs, got ${show(seeds)}`]
  if (seeds.length > limits.seedsMax) return [`seeds lists ${seeds.length} URLs, more than ${limits.seedsMax}`]
  const issues: string[] = []
  for (let i = 0; i < seeds.length; i++) {
    const seed: unknown = seeds[i]
    if (typeof seed !== 'string' || seed.length > limits.seedUrlCharsMax) { issues.push(`seeds[${i}] must be a URL of at most ${limits.seedUrlCharsMax} characters, got ${show(seed)}`); continue }
    let url: URL
    const shown = show(shownUrl(seed))
    try { url = new URL(seed) } catch { issues.push(`seeds[${i}] ${shown} is not a URL (write ws://host:port)`); continue }
    if (url.protocol !== 'ws:' && url.protocol !== 'wss:') issues.push(`seeds[${i}] ${shown} must be a ws:// or wss:// URL`)
    else if (url.hostname === '') issues.push(`seeds[${i}] ${shown} names no host`)
  }
  return issues
}

/** What is wrong with a Runtime (runtime.ts), if anything. */
export const runtimeIssue: Check = v => {
  const rt = v as Record<string, unknown> | null
  if (typeof rt !== 'object' || rt === null) return `must be a Runtime object, got ${show(v)}`
  const missing = ['now', 'setTimeout', 'clearTimeout', 'tick', 'random', 'connect'].filter(k => typeof rt[k] !== 'function')
  return missing.length ? `is missing the functions ${missing.join(', ')}` : undefined
}

/** Per-option checks of createClient/KvCoordinator options (runtime is checked by each, it differs). */
export const coordinatorOptionChecks: Record<string, Check> = {
  r: isQuorum,
  w: isQuorum,
  timeoutMs: isTimeout,
  sloppy: isBoolean,
  valueBytesMax: intIn(1, limits.valueBytesMax),
  connectionsPerReplica: intIn(1, limits.connectionsPerReplicaMax),
  readFanout: v => v === 'quorum' || v === 'all' ? undefined : `must be 'quorum' or 'all', got ${show(v)}`,
  speculativeReadMs: intIn(limits.readSpeculationMsMin, limits.requestTimeoutMsMax),
  client: fromSchema(requestSchemas.hello.shape.client, 'a short string'),
  token: fromSchema(requestSchemas.hello.shape.token, 'a string of at most 4096 characters'),
}

/** Per-call option checks (put, get, delete); unknown options are the SDK's to refuse. */
export const callOptionChecks: Record<string, Check> = {
  context: v => typeof v === 'string' ? undefined : `must be the context string of a read, got ${show(v)}`,
  r: isQuorum,
  w: isQuorum,
  timeoutMs: isTimeout,
  sloppy: isBoolean,
  floor: v => typeof v === 'object' && v !== null && !Array.isArray(v) ? undefined : `must be a version vector, got ${show(v)}`,
  deadline: v => {
    const d = v as Deadline | null
    return typeof d === 'object' && d !== null && Number.isFinite(d.at) && isTimeout(d.timeoutMs) === undefined ? undefined : `must be a Deadline, got ${show(v)}`
  },
}

/**
 * Checks `opts` against `checks`: every present option (undefined counts as absent) must pass; with
 * `allowed`, an option not named there is an issue too (a typo such as `timeout` must not pass
 * silently). Options are read once each, so a getter cannot change its answer after the check.
 */
export function optionIssues(where: string, opts: unknown, checks: Record<string, Check>, allowed?: readonly string[]): string[] {
  if (opts === undefined) return []
  if (typeof opts !== 'object' || opts === null || Array.isArray(opts)) return [`${where} options must be an object, got ${show(opts)}`]
  const issues: string[] = []
  for (const k of Object.keys(opts)) {
    const v = (opts as Record<string, unknown>)[k]
    if (v === undefined) continue
    if (allowed && !allowed.includes(k)) {
      issues.push(`${where}: unknown option ${show(k)} (known: ${allowed.join(', ')})`)
      continue
    }
    const check = Object.hasOwn(checks, k) ? checks[k] : undefined
    const issue = check?.(v)
    if (issue !== undefined) issues.push(`${where}: ${k} ${issue}`)
  }
  return issues
}

/** Everything wrong with coordinator options, runtime included; empty when they are fine. */
export function coordinatorOptionIssues(where: string, opts: unknown, allowed?: readonly string[]): string[] {
  if (typeof opts !== 'object' || opts === null) return [`${where} needs options { seeds: ["ws://host:port", ...] }, got ${show(opts)}`]
  const o = opts as Record<string, unknown>
  return [
    ...seedsIssue(o.seeds).map(i => `${where}: ${i}`),
    ...optionIssues(where, opts, { ...coordinatorOptionChecks, seeds: () => undefined }, allowed),
  ]
}

export class KvCoordinator {
  private readonly pool: ConnectionPool
  private readonly seedPool: ConnectionPool
  private readonly seeds: readonly string[]
  private ring: Ring | undefined
  private discovery: RingDiscovery | undefined
  private probing: Promise<Reachability> | undefined
  private refreshing: Promise<Ring | undefined> | undefined
  private closed = false
  /** Read repairs in flight, shared by every read (bounded by limits.readRepairsInflightMax). */
  private readonly repairs = { inflight: 0 }
  /** When a get asks beyond its first R targets (the p99 of recent gets); none with readFanout 'all'. */
  private readonly speculation: ReadSpeculation | undefined
  private readonly defaults: { r: number | undefined; w: number | undefined; timeoutMs: number; sloppy: boolean; valueBytesMax: number }
  /** Latency of completed puts and gets, and where the slowest puts spent their time (kv.stats()). */
  readonly opStats = new OpStats()
  /** The runtime's monotonic clock (ms) for opStats, its wall clock when it has none. */
  private readonly clock: () => number

  constructor(private readonly opts: CoordinatorOptions) {
    const issues = coordinatorOptionIssues('KvCoordinator', opts)
    const rtIssue = runtimeIssue(opts?.runtime)
    if (rtIssue !== undefined) issues.push(`KvCoordinator: runtime ${rtIssue}`)
    if (issues.length > 0) throw badRequest(...issues)
    this.seeds = [...opts.seeds]
    const rt = opts.runtime
    this.clock = turnCachedClock(rt.hrNow ? () => rt.hrNow!() : () => rt.now())
    this.defaults = {
      r: opts.r, w: opts.w, timeoutMs: opts.timeoutMs ?? limits.requestTimeoutMsDefault,
      sloppy: opts.sloppy ?? true, valueBytesMax: opts.valueBytesMax ?? limits.valueBytesDefault,
    }
    const connOpts = {
      client: opts.client ?? 'ringkv', perReplica: opts.connectionsPerReplica ?? limits.connectionsPerReplicaDefault,
      onHello: (h: ReplyBody<'hello'>) => this.learnRing(h.ring),
      onRingVersion: this.noteRingVersion,
      ...(opts.token !== undefined ? { token: opts.token } : {}),
    }
    this.pool = new ConnectionPool(opts.runtime, connOpts)
    this.speculation = opts.readFanout === 'all' ? undefined : new ReadSpeculation(opts.speculativeReadMs)
    this.seedPool = new ConnectionPool(opts.runtime, { ...connOpts, perReplica: 1 })
    this.seedPool.setNodes(this.seeds.map((url, i) => ({ id: `seed${i}`, url })))
  }

  /** The ring, fetched from the seeds on first use, within `timeoutMs` (default: the client's). */
  getRing(timeoutMs?: number): Promise<Ring> {
    if (this.ring) return Promise.resolve(this.ring)
    const issue = timeoutMs === undefined ? undefined : isTimeout(timeoutMs)
    if (issue !== undefined) return Promise.reject(badRequest(`timeoutMs ${issue}`))
    return this.ringBy(this.deadlineOf({ timeoutMs }))
  }

  isUp(node: string): boolean { return this.pool.isUp(node) }

  /** When a call with these options must be done, counted from now. */
  deadlineOf(opts: { readonly timeoutMs?: number | undefined; readonly deadline?: Deadline | undefined }): Deadline {
    if (opts.deadline) return opts.deadline
    const timeoutMs = opts.timeoutMs ?? this.defaults.timeoutMs
    return { at: this.opts.runtime.now() + timeoutMs, timeoutMs }
  }

  /**
   * The ring by `deadline`. One discovery runs at a time, shared by every call that needs the ring;
   * each call waits only until its own deadline, and then fails naming each seed and why.
   */
  private ringBy(deadline: Deadline): Promise<Ring> {
    if (this.ring) return Promise.resolve(this.ring)
    const rt = this.opts.runtime
    let d = this.discovery
    if (d === undefined) {
      // It runs at least as long as the client's default timeout, so that a first call with a short
      // one does not cut discovery short for the calls that join it.
      const until = Math.max(deadline.at, rt.now() + this.defaults.timeoutMs)
      const started = new RingDiscovery(this.seeds, this.seedPool, rt, until, ring => this.learnRing(ring))
      d = this.discovery = started
      started.promise.then(() => { this.seedPool.close() }, () => undefined).finally(() => { if (this.discovery === started) this.discovery = undefined })
    }
    const discovery = d
    return new Promise<Ring>((resolve, reject) => {
      const timer = rt.setTimeout(() => reject(discovery.failure(`within ${deadline.timeoutMs} ms`, deadline.timeoutMs)), Math.max(0, deadline.at - rt.now()))
      discovery.promise.then(ring => { rt.clearTimeout(timer); resolve(ring) }, e => { rt.clearTimeout(timer); reject(e) })
    })
  }

  /**
   * A reply said which ring version it was served under: a newer one than ours means the ring
   * changed (a join, a leave), so fetch it from that replica. One fetch at a time; cheap when the
   * version is ours (one comparison per reply).
   */
  private readonly noteRingVersion = (version: number, node: string): void => {
    if (this.ring === undefined || version <= this.ring.version || this.refreshing !== undefined || this.closed) return
    void this.refreshRing(this.opts.runtime.now() + this.defaults.timeoutMs, node)
  }

  /**
   * Fetches the ring from `prefer` (the replica that showed a newer version or refused as NotOwner)
   * and up to limits.seedsAskedAtOnce other nodes of the ring; resolves once one answered (or all
   * failed) with the newest ring known, or, with `atLeast`, once one answered with that version or
   * newer (an older answer leaves the others notOwnerRingRetryMs more). Shared by concurrent
   * callers: one that joins a refresh under way gets that refresh's end.
   */
  refreshRing(until: number, prefer?: string, atLeast?: number): Promise<Ring | undefined> {
    this.refreshing ??= (async () => {
      const ring = this.ring
      if (ring === undefined) return undefined
      const nodes = [...new Set([...(prefer !== undefined ? [prefer] : []), ...ring.nodes.map(n => n.id)])].slice(0, limits.seedsAskedAtOnce + 1)
      const left = Math.max(1, until - this.opts.runtime.now())
      let grace: unknown
      await new Promise<void>(done => {
        let pending = nodes.length
        const settle = () => { if (--pending <= 0) done() }
        for (const node of nodes) {
          const conn = this.pool.get(node)
          if (conn === undefined) { settle(); continue }
          conn.request('ring', {}, left).then(reply => {
            try { this.learnRing(reply.ring) } catch { /* a ring we refuse: another node answers */ }
            if (atLeast === undefined || (this.ring?.version ?? 0) >= atLeast) { done(); return }
            // Looking for `atLeast`: a ring older than that (from a node gossip has not reached yet)
            // does not end the wait, but the others get notOwnerRingRetryMs more, not the whole
            // deadline (one of them may be paused and never answer).
            grace ??= this.opts.runtime.setTimeout(done, limits.notOwnerRingRetryMs)
            settle()
          }, settle)
        }
      })
      if (grace !== undefined) this.opts.runtime.clearTimeout(grace)
      return this.ring
    })().finally(() => { this.refreshing = undefined })
    return this.refreshing
  }

  /**
   * The preference list of `key` on the ring this coordinator knows: its partition, primaries and
   * fallbacks, each with its url and whether the transport finds it up (Cassandra's getendpoints).
   */
  async endpoints(key: string): Promise<Endpoints> {
    this.checkOpen()
    this.checkKey(key)
    const ring = await this.getRing()
    const pl = preferenceList(ring, key)
    const url = new Map(ring.nodes.map(n => [n.id, n.url]))
    const view = (node: string) => ({ node, url: url.get(node) ?? '', up: this.pool.isUp(node) })
    return { ringVersion: ring.version, partition: pl.partition, primaries: pl.primaries.map(view), fallbacks: pl.fallbacks.map(view) }
  }

  private learnRing(wire: ReplyBody<'ring'>['ring']): Ring {
    if (this.ring && this.ring.version >= wire.version) return this.ring
    const ring: Ring = { version: wire.version, partitions: wire.partitions, n: wire.n, nodes: wire.nodes as RingNode[], owners: wire.owners }
    validateRing(ring)
    this.ring = ring
    this.pool.setNodes(ring.nodes)
    return ring
  }

  /**
   * Write `value` (null = delete, as a tombstone) under `key`. A replica that answers NotOwner says
   * our ring is stale: fetch the ring and try once more, within the same deadline.
   */
  put(key: string, value: Uint8Array | null, opts: WriteOptions = {}): Promise<WriteResult> {
    const startedAt = this.opts.runtime.now()
    const sentUnder = this.ring?.version
    return this.putOnce(key, value, opts).catch(e =>
      this.againIfNotOwner(e, opts, startedAt, sentUnder, deadline => this.putOnce(key, value, { ...opts, deadline })))
  }

  /**
   * After a NotOwner: refresh the ring and run `again` once, by the call's own deadline (counted
   * from `startedAt`), if the ring is now another than the one the attempt was sent under
   * (`sentUnder`). Compared with that, not with the ring just before the refresh: another reply may
   * have moved this client to the new ring while the attempt was out, and the attempt still went
   * by the old one (a join under load showed such NotOwners reaching the app). The refusal names
   * the refusing replica's ring version: the ring is fetched again (notOwnerRingFetchesMax times at
   * most) until this client knows that version, since the first node to answer may not have heard
   * of it yet (a join bench run still showed one such NotOwner reaching the app). Only reached once
   * the first attempt has validated the options.
   */
  private async againIfNotOwner<T>(e: unknown, opts: { readonly timeoutMs?: number | undefined; readonly deadline?: Deadline | undefined },
    startedAt: number, sentUnder: number | undefined, again: (deadline: Deadline) => Promise<T>): Promise<T> {
    if (!isNotOwner(e) || this.closed) throw e
    const timeoutMs = opts.timeoutMs ?? this.defaults.timeoutMs
    const deadline = opts.deadline ?? { at: startedAt + timeoutMs, timeoutMs }
    const prefer = e instanceof QuorumError ? [...e.failures].find(([, f]) => f instanceof KvError && f.kind === 'NotOwner')?.[0] : undefined
    const named = notOwnerRingVersion(e)
    for (let i = 0; i < limits.notOwnerRingFetchesMax && !this.closed; i++) {
      if (i > 0) {
        if (this.opts.runtime.now() + limits.notOwnerRingRetryMs >= deadline.at) break
        await new Promise<void>(ok => this.opts.runtime.setTimeout(ok, limits.notOwnerRingRetryMs))
      }
      // A refresh already under way is joined; it may end before it reaches `named`: then fetch again.
      await this.refreshRing(deadline.at, prefer, named)
      const v = this.ring?.version
      if (v !== undefined && v !== sentUnder && (named === undefined || v >= named)) break
    }
    if (this.ring?.version === sentUnder) throw e
    return again(deadline)
  }

  private async putOnce(key: string, value: Uint8Array | null, opts: WriteOptions): Promise<WriteResult> {
    this.checkOpen()
    const keyBytes = this.checkKey(key)
    if (value !== null && !(value instanceof Uint8Array)) throw badRequest(`value must be bytes (a Uint8Array), got ${show(value)}`)
    if (value !== null && value.byteLength > this.defaults.valueBytesMax) {
      throw new KvError({ kind: 'TooLarge', bytes: value.byteLength, bytesMax: this.defaults.valueBytesMax },
        `value is ${value.byteLength} bytes, over the ${this.defaults.valueBytesMax}-byte limit`)
    }
    this.checkOptions('put', opts)
    const t0 = this.clock()
    const context = opts.context ? decodeContext(opts.context) : {}
    const deadline = this.deadlineOf(opts)
    // No await once the ring is known: each await is a trip through the microtask queue per request.
    const ring = this.ring ?? await this.ringBy(deadline)
    const w = this.quorumParam('w', opts.w ?? this.defaults.w, ring)
    const left = this.timeLeft(deadline, 'put')
    const sloppy = opts.sloppy ?? this.defaults.sloppy
    const pl = preferenceList(ring, key)
    const q = new WriteQuorum({ w, primaries: pl.primaries, fallbacks: pl.fallbacks, isUp: this.pool.isUp, whyDown: this.pool.whyDown, sloppy })
    const rt = this.opts.runtime
    // How long a stamp may go without a sign of life from its replica before the connection is probed.
    const stampTimeoutMs = Math.max(1, Math.min(limits.stampTimeoutMsMax, Math.floor(left / 3)))
    return new Promise<WriteResult>((resolve, reject) => {
      new WriteDriver(this.pool, rt, q, { key: keyBytes, context, value }, stampTimeoutMs, resolve, reject, this.opStats, this.clock, t0).start(left)
    })
  }

  /**
   * Writes a tombstone. Without a context the key is read first and its context used, as
   * riak_kv_delete does: a blind tombstone would be concurrent with the stored value and leave it
   * in place as a sibling, which is never what "delete" means to a caller. The read and the write
   * share one deadline. An empty context ('', what a read of a missing key returns) is a context:
   * the caller saw nothing, so the tombstone covers nothing, and a value written since that read
   * stays (as a sibling). Reading again here would delete a value the caller never saw (the chaos
   * run, seed 1, lost an acknowledged put that way).
   */
  async delete(key: string, opts: WriteOptions & ReadOptions = {}): Promise<WriteResult> {
    this.checkOpen()
    this.checkKey(key)
    this.checkOptions('delete', opts)
    const deadline = this.deadlineOf(opts)
    let context = opts.context
    if (context === undefined) context = (await this.get(key, { r: opts.r, sloppy: opts.sloppy, deadline, floor: opts.floor })).context
    return this.put(key, null, { context, w: opts.w, sloppy: opts.sloppy, deadline })
  }

  get(key: string, opts: ReadOptions = {}): Promise<ReadResult> {
    const startedAt = this.opts.runtime.now()
    const sentUnder = this.ring?.version
    return this.getOnce(key, opts).catch(e => this.againIfNotOwner(e, opts, startedAt, sentUnder, deadline => this.getOnce(key, { ...opts, deadline })))
  }

  private async getOnce(key: string, opts: ReadOptions): Promise<ReadResult> {
    this.checkOpen()
    const keyBytes = this.checkKey(key)
    this.checkOptions('get', opts)
    const t0 = this.clock()
    const deadline = this.deadlineOf(opts)
    const ring = this.ring ?? await this.ringBy(deadline)
    const r = this.quorumParam('r', opts.r ?? this.defaults.r, ring)
    const left = this.timeLeft(deadline, 'get')
    const sloppy = opts.sloppy ?? this.defaults.sloppy
    const pl = preferenceList(ring, key)
    // Ask the primaries that are up; with a sloppy quorum, fallbacks stand in for the ones down and
    // answer from the hints they keep for them (the same choice of fallbacks as writes make). The
    // ones skipped are named if the read fails.
    const chosen = sloppyTargets(pl, this.pool.isUp, sloppy)
    const targets: SloppyTarget[] = []
    for (const slot of chosen.slots) if (slot.target) targets.push(slot.target)
    let skipped: Map<string, Error> | undefined
    for (const p of chosen.down) (skipped ??= new Map()).set(p, this.pool.whyDown(p))
    // Once this client knows its gets' p99, a get asks R of its targets first: primaries before
    // fallbacks, the least loaded first (a paused replica's requests pile up, so it drops back).
    const spec = this.speculation
    const ask = spec?.afterMs !== undefined && targets.length > r ? r : undefined
    if (ask !== undefined) leastLoadedFirst(targets, this.pool.load)
    const q = new ReadQuorum({ r, targets: targets.map(t => t.node), primaries: new Set(pl.primaries), ...(skipped ? { skipped } : {}), floor: opts.floor, ask })
    return new Promise<ReadResult>((resolve, reject) => {
      new ReadDriver(this.pool, this.opts.runtime, q, keyBytes, targets, left, this.repairs, resolve, reject, this.opStats, this.clock, t0, spec).start()
    })
  }

  /** What the gets' speculation did (kv.stats()); null when every get asks every target. */
  speculationStats(): SpeculationStats | null {
    return this.speculation?.stats() ?? null
  }

  /**
   * Asks every replica of the ring for a sign of life (a `ring` request) within `timeoutMs`, ending
   * any backoff first (the question is whether it answers now); one probe runs at a time, shared by
   * concurrent callers (a load balancer polling /health). Before the ring is known the seeds are
   * what it counts. Never rejects.
   */
  reachability(timeoutMs: number = limits.healthProbeTimeoutMs): Promise<Reachability> {
    this.probing ??= this.probe(timeoutMs).finally(() => { this.probing = undefined })
    return this.probing
  }

  private async probe(timeoutMs: number): Promise<Reachability> {
    const rt = this.opts.runtime
    const deadline = { at: rt.now() + timeoutMs, timeoutMs }
    let ring: Ring
    try {
      if (this.closed) throw new KvError({ kind: 'Unavailable' }, 'this client is closed')
      ring = this.ring ?? await this.ringBy(deadline)
    } catch (e) {
      const k = asKvError(e, 'ring discovery failed')
      const unreachable = k.data.kind === 'Unavailable' && k.data.failures ? k.data.failures : failureRecord(new Map(this.seeds.map(s => [shownUrl(s), k])))
      return { total: this.seeds.length, reachable: 0, unreachable }
    }
    const failures = new Map<string, Error>()
    await Promise.all(ring.nodes.map(async node => {
      try {
        await this.pool.probe(node.id, Math.max(1, deadline.at - rt.now()))
      } catch (e) {
        failures.set(node.id, asKvError(e, `probing ${node.id}`))
      }
    }))
    return { total: ring.nodes.length, reachable: ring.nodes.length - failures.size, unreachable: failureRecord(failures) }
  }

  close(): void {
    this.closed = true
    this.pool.close()
    this.seedPool.close()
  }

  private checkOpen(): void {
    if (this.closed) throw new KvError({ kind: 'Unavailable' }, 'this client is closed')
  }

  private checkKey(key: string): Uint8Array {
    if (typeof key !== 'string') throw badRequest(`key must be a string, got ${show(key)}`)
    const bytes = encoder.encode(key)
    const issues = keyIssues(key, bytes.byteLength)
    if (issues.length > 0) throw badRequest(...issues)
    return bytes
  }

  private checkOptions(op: string, opts: unknown): void {
    const issues = optionIssues(op, opts, callOptionChecks)
    if (issues.length > 0) throw badRequest(...issues)
  }

  private quorumParam(name: 'r' | 'w', value: number | undefined, ring: Ring): number {
    // A ring with fewer nodes than N keeps one copy per node: the quorum is a majority of those
    // (a one-node cluster works, unreplicated, instead of tripping the quorum's assertion).
    const n = Math.min(ring.n, ring.nodes.length)
    const v = value ?? Math.floor(n / 2) + 1
    if (!Number.isInteger(v) || v < 1 || v > n) {
      throw badRequest(`${name} must be an integer from 1 to ${n} (N=${ring.n} on ${ring.nodes.length} nodes), got ${show(value)}`)
    }
    return v
  }

  /** Milliseconds left before `deadline`; Timeout when none are (ring discovery or a read used them). */
  private timeLeft(deadline: Deadline, op: string): number {
    const left = deadline.at - this.opts.runtime.now()
    if (left < 1) throw new KvError({ kind: 'Timeout', timeoutMs: deadline.timeoutMs }, `${op}: no time left of its ${deadline.timeoutMs} ms to start`)
    return left
  }
}

/**
 * Learning the ring from the seeds, against a deadline: limits.seedsAskedAtOnce seeds at once, the
 * next one whenever one fails and another every limits.seedHedgeMs while none has answered, each
 * request with the time left (never a full timeout per seed one after another: a paused seed answers
 * nothing). The first ring that validates wins. When every seed failed, or a caller's own deadline
 * passes, `failure()` names each seed (by URL) and why.
 */
class RingDiscovery {
  readonly promise: Promise<Ring>
  private settle!: { resolve: (r: Ring) => void; reject: (e: Error) => void }
  /** Per seed: not asked yet, asked and waiting (since when), or why it failed. */
  private readonly status: Array<{ asked: number } | Error | undefined>
  private next = 0
  private inflight = 0
  private hedgeTimer: unknown
  private done = false

  constructor(
    private readonly seeds: readonly string[],
    private readonly pool: ConnectionPool,
    private readonly rt: Runtime,
    private readonly until: number,
    private readonly learn: (ring: ReplyBody<'ring'>['ring']) => Ring,
  ) {
    this.status = new Array(seeds.length).fill(undefined)
    this.promise = new Promise<Ring>((resolve, reject) => { this.settle = { resolve, reject } })
    // Callers race this against their own deadlines; one that gave up leaves it unobserved.
    this.promise.catch(() => undefined)
    for (let i = 0; i < limits.seedsAskedAtOnce; i++) this.askNext()
    this.hedge()
    this.finishIfExhausted()
  }

  /** The error for a caller whose wait ended `why` ("within 1000 ms"), naming every seed. */
  failure(why: string, timeoutMs?: number): KvError {
    const failures = new Map<string, Error>()
    const now = this.rt.now()
    this.seeds.forEach((seed, i) => {
      const url = shownUrl(seed)
      const s = this.status[i]
      if (s instanceof Error) failures.set(url, s)
      else if (s !== undefined) failures.set(url, new KvError({ kind: 'Timeout', timeoutMs: timeoutMs ?? now - s.asked }, `no answer within ${now - s.asked} ms`))
      else failures.set(url, new KvError({ kind: 'Unavailable' }, 'not asked: the deadline came first'))
    })
    const listed = [...failures].map(([url, e]) => `${url}: ${e instanceof KvError ? e.kind + ': ' : ''}${e.message}`)
    return authFailureOf(new KvError({ kind: 'Unavailable', failures: failureRecord(failures) },
      `no seed answered with the ring ${why}: ${listed.join('; ')}`, { cause: [...failures.values()][0] }))
  }

  private askNext(): boolean {
    if (this.done || this.next >= this.seeds.length) return false
    const left = this.until - this.rt.now()
    if (left < 1) return false
    const i = this.next++
    const conn = this.pool.get(`seed${i}`)
    if (conn === undefined) {
      this.status[i] = new KvError({ kind: 'Unavailable' }, 'no connection (the client is closed)')
      return true
    }
    this.status[i] = { asked: this.rt.now() }
    this.inflight++
    conn.request('ring', {}, left).then(reply => this.onRing(i, reply), e => this.onFailed(i, e))
    return true
  }

  private hedge(): void {
    if (this.done || this.next >= this.seeds.length) return
    this.hedgeTimer = this.rt.setTimeout(() => { this.askNext(); this.hedge() }, limits.seedHedgeMs)
  }

  private onRing(i: number, reply: ReplyBody<'ring'>): void {
    if (this.done) return
    let ring: Ring
    try {
      ring = this.learn(reply.ring)
    } catch (e) {
      this.onFailed(i, asKvError(e, `${shownUrl(this.seeds[i]!)} sent a ring the client refuses`))
      return
    }
    this.inflight--
    this.finish()
    this.settle.resolve(ring)
  }

  private onFailed(i: number, e: unknown): void {
    if (this.done) return
    this.inflight--
    this.status[i] = e instanceof Error ? e : asKvError(e, 'ring request failed')
    this.askNext()
    this.finishIfExhausted()
  }

  private finishIfExhausted(): void {
    if (this.done || this.inflight > 0) return
    // Nothing in flight: every seed failed fast (refused, backing off), or no time is left to ask.
    while (this.askNext()) if (this.inflight > 0) return
    this.finish()
    this.settle.reject(this.failure(this.next < this.seeds.length ? 'before the deadline' : 'at all'))
  }

  private finish(): void {
    this.done = true
    this.rt.clearTimeout(this.hedgeTimer)
  }
}

// The drivers: one object per request in flight, feeding its quorum state machine the replies and
// failures and sending what it asks for. Methods rather than closures made per request: fewer
// function objects per request, and none of the keep-names wrappers tsx puts on named closures
// (Object.defineProperty on each, ~0.4 µs apiece), which apps running the SDK under tsx would pay.
// Every reply callback catches what it throws (a merge or a context over its bound, a bug) and
// settles the call with it: a throw there would otherwise be an unhandled rejection, which ends
// the app, while the caller's promise never settled.

class WriteDriver {
  private settled = false
  private timer: unknown
  private deadline = 0
  private timeoutMs = 0
  // For opStats (op-stats.ts putPhases): when the first stamp left, when a stamp came back, what
  // the stamping replica said about its time, and the replica time on the ack that made the quorum.
  private stamps = 0
  private stampSentAt = 0
  private stampedAt = 0
  private stampServiceUs = 0
  private stampFsyncUs = 0
  private replicaServiceUs = 0
  /** The node whose early answer gave the write its state: its stamp can no longer move (onStampFailed). */
  private earlyFrom: string | undefined

  constructor(
    private readonly pool: ConnectionPool,
    private readonly rt: Runtime,
    private readonly q: WriteQuorum,
    private readonly req: { readonly key: Uint8Array; readonly context: VersionVector; readonly value: Uint8Array | null },
    private readonly stampTimeoutMs: number,
    private readonly resolve: (r: WriteResult) => void,
    private readonly reject: (e: Error) => void,
    private readonly stats: OpStats,
    private readonly clock: () => number,
    private readonly startedAt: number,
  ) {}

  start(timeoutMs: number): void {
    this.timeoutMs = timeoutMs
    this.deadline = this.rt.now() + timeoutMs
    this.timer = this.rt.setTimeout(() => this.expire(), timeoutMs)
    this.run(this.q.start())
    this.check()
  }

  private expire(): void {
    try {
      this.q.expire(this.timeoutMs)
      this.check()
    } catch (e) {
      this.abort(e)
    }
  }

  private check(): void {
    if (this.settled) return
    const o = this.q.outcome
    if (o.status === 'pending') return
    this.settled = true
    this.rt.clearTimeout(this.timer)
    if (o.status === 'failed') { this.reject(authFailureOf(o.error)); return }
    let context: string
    try {
      context = encodeContext(contextOf(o.state))
    } catch (e) {
      // The write is stored (W acked), but its context cannot be handed back.
      const k = asKvError(e, 'encoding the context')
      this.reject(new KvError(k.data, `the write was acknowledged by ${o.acked.join(', ')}, but its context cannot be returned: ${k.message}`, { cause: e }))
      return
    }
    this.recordStats()
    this.resolve({ context, state: o.state, acked: o.acked })
  }

  private recordStats(): void {
    const end = this.clock()
    const toUs = 1000
    const stamped = this.stampedAt > 0 ? this.stampedAt : end
    const stampRoundUs = (stamped - this.stampSentAt) * toUs
    // An early answer comes before the stamper's fsync, in the turn it read the request: its round
    // trip is all transit, and the stamper's work and fsync (from its durable ack) overlap replicate.
    const transitUs = this.earlyFrom !== undefined ? stampRoundUs : stampRoundUs - this.stampServiceUs
    this.stats.recordPut((end - this.startedAt) * toUs, (this.stampSentAt - this.startedAt) * toUs,
      Math.max(0, transitUs), Math.max(0, this.stampServiceUs - this.stampFsyncUs), this.stampFsyncUs,
      (end - stamped) * toUs, this.replicaServiceUs, this.stamps)
  }

  /** A throw from the quorum or a callback: settle the call with it (a bug becomes Internal). */
  private abort(e: unknown): void {
    if (this.settled) return
    this.settled = true
    this.rt.clearTimeout(this.timer)
    this.reject(asKvError(e, 'write failed'))
  }

  private run(actions: WriteAction[]): void {
    const { key, context, value } = this.req
    const approx = value?.byteLength ?? 0
    for (const a of actions) {
      const node = a.target.node
      const conn = this.pool.get(node)
      if (!conn) { this.run(this.q.onFailed(node, this.pool.whyDown(node))); continue }
      const left = Math.max(1, this.deadline - this.rt.now())
      const hint = a.target.hintFor !== undefined ? { hintFor: a.target.hintFor } : {}
      if (a.kind === 'stamp') {
        if (this.stamps++ === 0) this.stampSentAt = this.clock()
        // The stamp waits for as long as the write may take: once sent it cannot move to another
        // node (onStampFailed), so giving up early would only fail a slow write. A replica silent for
        // stampTimeoutMs is probed, and its connection reset (failing the stamp) if it is paused.
        // Asked to answer early (docs/protocol.md): the replicates go out while its fsync runs.
        conn.request('put', { key, context, value, early: true, ...hint }, left, approx, this.stampTimeoutMs, reply => this.onStampedEarly(node, reply))
          .then(reply => this.onStamped(node, reply), e => this.onStampFailed(node, e))
      } else {
        conn.request('replicate', { key, state: a.state, ...hint }, left, approx)
          .then(reply => this.onReplicated(node, reply), e => this.onFailed(node, e))
      }
    }
  }

  /** The stamper's state, before it is durable: replicate it now; the stamper's ack comes with onStamped. */
  private onStampedEarly(node: string, reply: ReplyBody<'put'>): void {
    if (this.settled) return
    this.takeStamp(node, reply, false)
  }

  private onStamped(node: string, reply: ReplyBody<'put'>): void {
    this.stampServiceUs = reply.serviceUs ?? 0
    this.stampFsyncUs = reply.fsyncUs ?? 0
    if (this.earlyFrom === node) {
      // The durable ack of an early stamp: its state came with the first answer. (When the durable
      // reply comes first, this is a stamp like any other, and the early one finds nothing waiting.)
      try {
        this.run(this.q.onStampDurable(node))
        this.check()
      } catch (e) {
        this.abort(e)
      }
      return
    }
    this.takeStamp(node, reply, true)
  }

  /**
   * Replicates a stamp reply's state (`durable` false: an early answer, before the stamper's
   * fsync). A malformed reply comes from a replica that may have stamped, so it fails the stamp as
   * one that was sent (onStampFailed): the stamp must not move elsewhere.
   */
  private takeStamp(node: string, reply: ReplyBody<'put'>, durable: boolean): void {
    this.stampedAt = this.clock()
    let state: DvvSet
    try {
      state = withElidedValue(reply, this.req.value)
    } catch (e) {
      this.onStampFailed(node, e)
      return
    }
    if (!durable) this.earlyFrom = node
    try {
      this.run(this.q.onStamped(node, state, durable))
      this.check()
    } catch (e) {
      this.abort(e)
    }
  }

  private onReplicated(node: string, reply: ReplyBody<'replicate'>): void {
    this.replicaServiceUs = reply.serviceUs ?? 0
    try {
      this.run(this.q.onReplicated(node))
      this.check()
    } catch (e) {
      this.abort(e)
    }
  }

  private onFailed(node: string, e: unknown): void {
    try {
      this.run(this.q.onFailed(node, asKvError(e, `${node}`)))
      this.check()
    } catch (e2) {
      this.abort(e2)
    }
  }

  /**
   * A stamp refused for what the request is (a bad context, a value or key state past a bound) would
   * be refused by every replica alike, and a fallback with no state for the key would wrongly accept
   * it: the write ends here with that error (TooManySiblings carries the context to resolve with).
   * A stamp that never left this process, or that the replica refused before writing (Overloaded,
   * StorageFull: its admission checks),
   * moves to the next node. Any other failure (a timeout, a lost connection, a storage error) leaves
   * it unknown whether the replica stored the stamp: a second stamp elsewhere would give the one
   * write two dots, and a delete that read only one of them would leave the other standing (the
   * simulator found a deleted value resurrected that way, seed 1179, docs/simulation.md). The write
   * then ends with that error, its outcome unknown to the caller, as when a Dynamo coordinator dies.
   */
  private onStampFailed(node: string, e: unknown): void {
    if (this.settled) return
    // After an early answer the state is out: the stamper's failure is a replicate's (write-quorum.ts).
    if (this.earlyFrom === node) { this.onFailed(node, e); return }
    // NotOwner: the replica stored nothing, and the caller's ring is stale: the write ends with it and
    // the SDK refreshes its ring and retries once.
    const notOwner = e instanceof KvError && e.kind === 'NotOwner'
    if (!isRefusal(e) && !notOwner && (neverSent(e) || refusedBeforeWriting(e))) { this.onFailed(node, e); return }
    this.settled = true
    this.rt.clearTimeout(this.timer)
    if (isRefusal(e) || notOwner) { this.reject(e); return }
    const k = asKvError(e, `stamp at ${node}`)
    this.reject(new KvError(k.data, `the write's stamp at ${node} failed after it was sent, so it may be stored there (outcome unknown; read before writing again): ${k.message}`, { cause: e }))
  }
}

/** Error replies a replica gives before it writes anything (replica-service.ts admitWrite). */
function refusedBeforeWriting(e: unknown): boolean {
  return e instanceof KvError && (e.kind === 'Overloaded' || e.kind === 'StorageFull')
}

/**
 * Errors that say the request itself cannot be stored, on any replica; Forbidden too: every replica
 * holds the same auth file, so a token that may not write here may not write anywhere.
 */
function isRefusal(e: unknown): e is KvError {
  return e instanceof KvError && (e.kind === 'BadRequest' || e.kind === 'TooLarge' || e.kind === 'TooManySiblings' || e.kind === 'Forbidden')
}

/**
 * Sorts `targets` in place: primaries before fallbacks, each the least loaded first, ties in
 * preference order (an insertion sort: a handful of targets, no allocation but the keys).
 */
function leastLoadedFirst(targets: SloppyTarget[], load: (node: string) => number): void {
  const keys: number[] = []
  for (const t of targets) keys.push((t.hintFor === undefined ? 0 : 1e9) + load(t.node))
  for (let i = 1; i < targets.length; i++) {
    const t = targets[i]!
    const k = keys[i]!
    let j = i - 1
    for (; j >= 0 && keys[j]! > k; j--) { targets[j + 1] = targets[j]!; keys[j + 1] = keys[j]! }
    targets[j + 1] = t
    keys[j + 1] = k
  }
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
    private readonly targets: readonly SloppyTarget[],
    private readonly timeoutMs: number,
    private readonly repairs: { inflight: number },
    private readonly resolve: (r: ReadResult) => void,
    private readonly reject: (e: Error) => void,
    private readonly stats: OpStats,
    private readonly clock: () => number,
    private readonly startedAt: number,
    private readonly speculation: ReadSpeculation | undefined,
  ) {}

  start(): void {
    const first = this.q.start()
    // One timer at a time: the speculation's first (when there are spares to ask), then the deadline's.
    const after = this.q.spares > 0 ? this.speculation?.afterMs : undefined
    if (after !== undefined && after < this.timeoutMs) {
      this.timer = this.rt.setTimeout(() => this.speculate(after), after)
    } else {
      this.timer = this.rt.setTimeout(() => this.expire(), this.timeoutMs)
    }
    this.ask(first)
    this.check()
  }

  private ask(nodes: readonly string[]): void {
    for (const node of nodes) {
      const conn = this.pool.get(node)
      if (!conn) { this.q.onFailed(node, this.pool.whyDown(node)); continue }
      // A fallback is asked for what it holds for the owner it stands in for (its hints).
      const hintFor = this.targets.find(t => t.node === node)?.hintFor
      conn.request('get', hintFor === undefined ? { key: this.key } : { key: this.key, hintFor }, this.timeoutMs).then(
        reply => this.onReply(node, reply.state),
        e => this.onFailed(node, e))
    }
  }

  /**
   * The first targets have not all answered after the p99 of recent gets: ask the spares too, when
   * the client's speculation budget has a token (speculation.ts); otherwise wait for those asked.
   */
  private speculate(afterMs: number): void {
    this.timer = this.rt.setTimeout(() => this.expire(), this.timeoutMs - afterMs)
    if (!this.speculation!.take()) return
    try {
      this.ask(this.q.speculate())
      this.check()
    } catch (e) {
      this.abort(e)
    }
  }

  private expire(): void {
    try {
      this.q.expire(this.timeoutMs)
      this.check()
      this.repair()
    } catch (e) {
      this.abort(e)
    }
  }

  private onReply(node: string, state: DvvSet | null): void {
    try {
      // A reply that cannot be merged (the merge over a bound) counts as that replica's failure.
      try {
        this.q.onReply(node, state)
      } catch (e) {
        this.q.onFailed(node, asKvError(e, `merging ${node}'s reply`))
      }
      this.check()
    } catch (e) {
      this.abort(e)
    }
  }

  private onFailed(node: string, e: unknown): void {
    try {
      this.q.onFailed(node, asKvError(e, `${node}`))
      this.check()
    } catch (e2) {
      this.abort(e2)
    }
  }

  private check(): void {
    // Spares the quorum decided to ask (a failure, a floor not covered); asking may fail some at once.
    for (let more = this.q.takeAsks(); more.length > 0; more = this.q.takeAsks()) this.ask(more)
    if (!this.settled) {
      const o = this.q.outcome
      if (o.status === 'pending') return
      this.settled = true
      if (o.status === 'failed') { this.rt.clearTimeout(this.timer); this.repaired = true; this.reject(authFailureOf(o.error)); return }
      const state = o.state
      let context = ''
      try {
        if (state) context = encodeContext(contextOf(state))
      } catch (e) {
        // The merge of several replicas' states can name more actors than any one of them.
        this.reject(asKvError(e, 'encoding the context'))
        if (this.q.complete) this.repair()
        return
      }
      const tookMs = this.clock() - this.startedAt
      this.stats.get.recordMs(tookMs)
      this.speculation?.record(tookMs)
      this.resolve({ found: state !== null && !isDeleted(state), values: state ? valuesOf(state) : [], context, state })
    }
    if (this.q.complete) this.repair()
  }

  private abort(e: unknown): void {
    this.repaired = true
    this.rt.clearTimeout(this.timer)
    if (this.settled) return
    this.settled = true
    this.reject(asKvError(e, 'read failed'))
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

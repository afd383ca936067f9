// The ringkv SDK: what apps import. A smart client in the Voldemort/Dynamo tradition: it learns the
// ring from any seed, hashes each key to its preference list and coordinates the quorum itself over
// WebSockets straight to the replicas (coordinator/kv-coordinator.ts). Values are bytes; strings and
// JSON are conveniences on top. Concurrent writes come back as siblings: pass `resolve` (per client
// or per call) to merge them, and pass the read's `context` back on the next write.
//
//   const kv = createClient({ seeds: ['ws://127.0.0.1:7001'] })
//   const { context } = await kv.put('cart:42', 'milk')
//   const got = await kv.get('cart:42')          // { found, values, context }
//
// Its promises: createClient checks every option at once and throws BadRequest synchronously, so
// nothing about the options fails later; `timeoutMs` bounds the whole call (ring discovery, and for
// delete() and update() every read and write they make); every rejection is a KvError (a callback of
// the app that throws comes back as BadRequest with it as the cause); and nothing the cluster does
// leaves an unhandled rejection behind in the app.

import { badRequest, badRequestCausedBy, isKvError, KvError, QuorumError } from '../coordinator/errors.ts'
import {
  callOptionChecks, coordinatorOptionIssues, KvCoordinator, optionIssues, runtimeIssue, show, type Endpoints, type ReadResult,
} from '../coordinator/kv-coordinator.ts'
import { limits } from '../coordinator/limits.ts'
import type { ClientStats } from '../coordinator/metrics/op-stats.ts'
import type { Ring } from '../coordinator/ring/ring.ts'
import { nodeWebSocket, systemRuntime, type Runtime, type WebSocketCtor } from '../coordinator/runtime.ts'

export { KvError, QuorumError, isKvError }
export type { ClientStats, Endpoints, Ring }

export type Value = string | Uint8Array
/** Merges siblings into one value. Must be deterministic; it may be given tombstone-free values only. */
export type Resolver = (values: Uint8Array[]) => Uint8Array

export interface ClientOptions {
  /** WebSocket URLs of any replicas (ws://host:port or wss://…); the ring is learned from the first that answers. */
  readonly seeds: readonly string[]
  /** Default read quorum (default: majority of N). */
  readonly r?: number
  /** Default write quorum (default: majority of N). */
  readonly w?: number
  /** Deadline of each call in ms (default 2000, at most 600000), ring discovery included. */
  readonly timeoutMs?: number
  /** Sloppy quorum: fallbacks stand in for down replicas (default true, as in Dynamo). */
  readonly sloppy?: boolean
  readonly resolve?: Resolver
  readonly valueBytesMax?: number
  readonly connectionsPerReplica?: number
  /** A WebSocket implementation; defaults to the global one, or the `ws` package on Node. */
  readonly WebSocket?: WebSocketCtor
  /** Replace clock, timers, randomness and sockets (deterministic simulation). */
  readonly runtime?: Runtime
  /** The token replicas started with an auth file require (sent once per connection, in its hello). */
  readonly token?: string
  /**
   * Node only: the PEM certificate authority that wss:// seeds are checked against (a self-signed
   * cluster); it replaces the system's. Browsers and Workers use their own trust store.
   */
  readonly ca?: string | Uint8Array
  /**
   * Which replicas a get asks at first: 'quorum' (default) asks R, the least loaded first, and the
   * others only when one fails or the first are slower than the p99 of recent gets; 'all' asks
   * every replica of the key, so every read repairs all of them (docs/quorum.md).
   */
  readonly readFanout?: 'quorum' | 'all'
  /** With readFanout 'quorum': ask the other replicas after this many ms, not after the p99 of recent gets. */
  readonly speculativeReadMs?: number
}

export interface PutOptions { readonly context?: string; readonly w?: number; readonly timeoutMs?: number; readonly sloppy?: boolean }
export interface GetOptions { readonly r?: number; readonly timeoutMs?: number; readonly sloppy?: boolean; readonly resolve?: Resolver }
/** delete(): without a context it reads first (with `r`); `timeoutMs` covers the read and the write. */
export interface DeleteOptions extends PutOptions { readonly r?: number }
/** update(): `timeoutMs` covers every read and write of every attempt. */
export interface UpdateOptions { readonly r?: number; readonly w?: number; readonly timeoutMs?: number; readonly sloppy?: boolean }

const clientOptionKeys = ['seeds', 'r', 'w', 'timeoutMs', 'sloppy', 'resolve', 'valueBytesMax', 'connectionsPerReplica', 'WebSocket', 'runtime', 'token', 'ca', 'readFanout', 'speculativeReadMs']
const putKeys = ['context', 'w', 'timeoutMs', 'sloppy']
const getKeys = ['r', 'timeoutMs', 'sloppy', 'resolve']
const deleteKeys = ['context', 'r', 'w', 'timeoutMs', 'sloppy']
const updateKeys = ['r', 'w', 'timeoutMs', 'sloppy']
const isFunction = (v: unknown) => typeof v === 'function' ? undefined : `must be a function, got ${show(v)}`
const sdkCallChecks = { ...callOptionChecks, resolve: isFunction }

export interface GetResult {
  readonly found: boolean
  /** One value normally; several when writes were concurrent (unless a resolver merged them). */
  readonly values: Uint8Array[]
  /** Opaque causal context: pass it to the next put/delete of this key. */
  readonly context: string
}

const encoder = new TextEncoder()
const decoder = new TextDecoder()

export class KvClient {
  private readonly opts: ClientOptions
  private readonly coordinator: Promise<KvCoordinator>
  /** The coordinator once made, so that requests need not await the promise each time. */
  private ready: KvCoordinator | undefined

  constructor(opts: ClientOptions) {
    this.opts = checkedClientOptions(opts)
    const o = this.opts
    this.coordinator = runtimeFor(o).then(runtime => (this.ready = new KvCoordinator({
      seeds: o.seeds, runtime, client: 'ringkv-sdk',
      ...pick(o, ['r', 'w', 'timeoutMs', 'sloppy', 'valueBytesMax', 'connectionsPerReplica', 'token', 'readFanout', 'speculativeReadMs']),
    })))
    // If it fails, the app hears of it at its next call; an app that makes none must not be ended
    // by an unhandled rejection.
    this.coordinator.catch(() => undefined)
  }

  async put(key: string, value: Value, opts: PutOptions = {}): Promise<{ context: string }> {
    checkCall('put', opts, putKeys)
    const bytes = toBytes(value)
    const res = await (this.ready ?? await this.coordinator).put(key, bytes, opts)
    return { context: res.context }
  }

  async get(key: string, opts: GetOptions = {}): Promise<GetResult> {
    checkCall('get', opts, getKeys)
    const res = await (this.ready ?? await this.coordinator).get(key, { r: opts.r, timeoutMs: opts.timeoutMs, sloppy: opts.sloppy })
    return this.resolved(key, res, opts.resolve ?? this.opts.resolve)
  }

  /**
   * Writes a tombstone. Pass the context of a read to delete exactly what was read; without one the
   * key is read first (as Riak does), so the delete covers every value stored now.
   */
  async delete(key: string, opts: DeleteOptions = {}): Promise<{ context: string }> {
    checkCall('delete', opts, deleteKeys)
    const res = await (this.ready ?? await this.coordinator).delete(key, opts)
    return { context: res.context }
  }

  async getString(key: string, opts: GetOptions = {}): Promise<{ found: boolean; values: string[]; context: string }> {
    const res = await this.get(key, opts)
    return { found: res.found, values: res.values.map(v => decoder.decode(v)), context: res.context }
  }

  /** Values parsed as JSON; a value that is not JSON is a BadRequest naming the key (its cause the SyntaxError). */
  async getJson<T = unknown>(key: string, opts: GetOptions = {}): Promise<{ found: boolean; values: T[]; context: string }> {
    const res = await this.get(key, opts)
    const values = res.values.map((v, i) => {
      try {
        return JSON.parse(decoder.decode(v)) as T
      } catch (e) {
        const which = res.values.length > 1 ? ` (sibling ${i + 1} of ${res.values.length})` : ''
        throw badRequestCausedBy(e, `value of ${show(key)}${which} is not JSON: ${(e as Error).message}`)
      }
    })
    return { found: res.found, values, context: res.context }
  }

  putJson(key: string, value: unknown, opts: PutOptions = {}): Promise<{ context: string }> {
    let text: string | undefined
    try {
      text = JSON.stringify(value)
    } catch (e) {
      return Promise.reject(badRequestCausedBy(e, `value for ${show(key)} cannot be written as JSON: ${(e as Error).message}`))
    }
    if (text === undefined) return Promise.reject(badRequest(`value for ${show(key)} has no JSON form (${show(value)})`))
    return this.put(key, text, opts)
  }

  /**
   * Read, apply `fn` to the current values (empty when absent; several when there are siblings),
   * write the result with the read's context. If the write shows that another writer got in between
   * (the stamped state still holds a value besides ours), nothing was lost, but the key now has
   * siblings: read again and let `fn` merge them, at most limits.updateRetriesMax times. One
   * deadline (`timeoutMs`) covers every attempt.
   */
  async update(key: string, fn: (values: Uint8Array[]) => Value, opts: UpdateOptions = {}): Promise<{ context: string; attempts: number }> {
    checkCall('update', opts, updateKeys)
    if (typeof fn !== 'function') throw badRequest(`update needs a function (values) => string | Uint8Array, got ${show(fn)}`)
    const coordinator = this.ready ?? await this.coordinator
    const deadline = coordinator.deadlineOf(opts)
    for (let attempt = 1; ; attempt++) {
      // fn sees every sibling (no resolver): merging them is its job here.
      const got = await coordinator.get(key, { r: opts.r, sloppy: opts.sloppy, deadline })
      let next: Value
      try {
        next = fn(got.values.map(v => v.slice()))
      } catch (e) {
        throw isKvError(e) ? e : badRequestCausedBy(e, `update of ${show(key)}: fn threw: ${(e as Error)?.message ?? show(e)}`)
      }
      const res = await coordinator.put(key, toBytes(next), { w: opts.w, sloppy: opts.sloppy, context: got.context, deadline })
      const live = res.state.siblings.filter(s => s.value !== null).length
      if (live <= 1 || attempt >= limits.updateRetriesMax) return { context: res.context, attempts: attempt }
    }
  }

  async ring(): Promise<Ring> {
    return (await this.coordinator).getRing()
  }

  /**
   * This client's latency since it was made (or since `stats({ reset: true })`): a histogram summary
   * of completed puts and gets (µs), and where the slowest 1 % of recent puts spent their time
   * (docs/performance.md). `reset` starts a new period after reading this one. `speculation`: the
   * gets' current speculation delay and how many gets asked their spares or were held to the
   * budget, since the client was made (docs/quorum.md).
   */
  stats(opts: { reset?: boolean } = {}): ClientStats {
    const c = this.ready
    const empty = { count: 0, meanUs: 0, p50Us: 0, p90Us: 0, p99Us: 0, p999Us: 0, maxUs: 0 }
    if (!c) return { put: empty, get: empty, putTail: null, speculation: null }
    const s = c.opStats.stats()
    if (opts?.reset === true) c.opStats.reset()
    return { ...s, speculation: c.speculationStats() }
  }

  /**
   * The preference list of `key` on the ring this client knows (Cassandra's getendpoints): its
   * partition, primaries then fallbacks, each with its url and whether this client finds it up.
   */
  async endpoints(key: string): Promise<Endpoints> {
    return (await this.coordinator).endpoints(key)
  }

  /** The transport's view: is this replica reachable right now? */
  async isUp(node: string): Promise<boolean> {
    return (await this.coordinator).isUp(node)
  }

  /** Closes every connection. Never throws; calls made after it fail with Unavailable. */
  async close(): Promise<void> {
    let coordinator: KvCoordinator
    try {
      coordinator = this.ready ?? await this.coordinator
    } catch {
      return // never made: nothing to close
    }
    coordinator.close()
  }

  private resolved(key: string, res: ReadResult, resolve: Resolver | undefined): GetResult {
    // Values arrive as views into the reply frame (coordinator/protocol/codec.ts): copy them so an
    // app that keeps a value does not keep the whole frame alive.
    const values = res.values.map(v => v.slice())
    if (!resolve || values.length <= 1) return { found: res.found, values, context: res.context }
    let merged: unknown
    try {
      merged = resolve(values)
    } catch (e) {
      throw isKvError(e) ? e : badRequestCausedBy(e, `resolve threw on the ${values.length} siblings of ${show(key)}: ${(e as Error)?.message ?? show(e)}`)
    }
    if (!(merged instanceof Uint8Array)) throw badRequest(`resolve must return a Uint8Array, returned ${show(merged)} for ${show(key)}`)
    return { found: res.found, values: [merged], context: res.context }
  }
}

/** Makes a client. Throws KvError BadRequest at once, naming every bad option; nothing later. */
export function createClient(opts: ClientOptions): KvClient {
  return new KvClient(opts)
}

/**
 * The options, read once each (a getter cannot answer differently later) and checked: BadRequest
 * names every problem. Unknown options are problems too, so that a typo does not pass silently.
 */
function checkedClientOptions(opts: ClientOptions): ClientOptions {
  let copy: Record<string, unknown>
  const issues: string[] = []
  try {
    if (typeof opts !== 'object' || opts === null || Array.isArray(opts)) {
      throw badRequest(`createClient needs options { seeds: ["ws://host:port", ...] }, got ${show(opts)}`)
    }
    copy = {}
    for (const k of Object.keys(opts)) copy[k] = (opts as unknown as Record<string, unknown>)[k]
    const seeds = copy.seeds
    if (Array.isArray(seeds) && seeds.length <= limits.seedsMax) copy.seeds = Array.from(seeds)
    issues.push(...coordinatorOptionIssues('createClient', copy, clientOptionKeys))
    if (copy.resolve !== undefined && typeof copy.resolve !== 'function') issues.push(`createClient: resolve must be a function (values) => Uint8Array, got ${show(copy.resolve)}`)
    if (copy.WebSocket !== undefined && typeof copy.WebSocket !== 'function') issues.push(`createClient: WebSocket must be a WebSocket constructor, got ${show(copy.WebSocket)}`)
    if (copy.ca !== undefined && typeof copy.ca !== 'string' && !(copy.ca instanceof Uint8Array)) issues.push(`createClient: ca must be a PEM string or bytes, got ${show(copy.ca)}`)
    if (copy.ca !== undefined && (copy.WebSocket !== undefined || copy.runtime !== undefined)) issues.push('createClient: ca applies to the ws package on Node; with your own WebSocket or runtime, give it the CA yourself')
    const rtIssue = copy.runtime === undefined ? undefined : runtimeIssue(copy.runtime)
    if (rtIssue !== undefined) issues.push(`createClient: runtime ${rtIssue}`)
  } catch (e) {
    if (isKvError(e)) throw e
    throw badRequestCausedBy(e, `createClient: the options could not be read: ${(e as Error)?.message ?? show(e)}`)
  }
  if (issues.length > 0) throw badRequest(...issues)
  return Object.freeze(copy) as unknown as ClientOptions
}

/** Per-call options, before any I/O: bad values and unknown options are a BadRequest. */
function checkCall(op: string, opts: unknown, allowed: readonly string[]): void {
  let issues: string[]
  try {
    issues = optionIssues(op, opts, sdkCallChecks, allowed)
  } catch (e) {
    throw badRequestCausedBy(e, `${op}: the options could not be read: ${(e as Error)?.message ?? show(e)}`)
  }
  if (issues.length > 0) throw badRequest(...issues)
}

function toBytes(value: Value): Uint8Array {
  if (typeof value === 'string') return encoder.encode(value)
  if (value instanceof Uint8Array) return value
  throw badRequest('value must be a string or a Uint8Array (use putJson for objects)')
}

async function runtimeFor(opts: ClientOptions): Promise<Runtime> {
  if (opts.runtime) return opts.runtime
  if (opts.WebSocket) return systemRuntime(opts.WebSocket)
  const global = (globalThis as { WebSocket?: WebSocketCtor }).WebSocket
  // A CA can only be given to the ws package: a global WebSocket (browsers, Workers) takes none.
  if (global && opts.ca === undefined) return systemRuntime(global)
  let ws: typeof import('ws')
  try {
    ws = await import('ws')
  } catch (e) {
    throw badRequestCausedBy(e, 'no WebSocket here: this runtime has no global WebSocket and the ws package cannot be loaded; pass options.WebSocket')
  }
  return systemRuntime(nodeWebSocket(ws.default as never, limits.frameBytesMax, { ca: opts.ca }))
}

function pick<T extends object, K extends keyof T>(o: T, keys: K[]): Partial<Pick<T, K>> {
  const out: Partial<Pick<T, K>> = {}
  for (const k of keys) if (o[k] !== undefined) out[k] = o[k]
  return out
}

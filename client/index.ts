// The ringkv SDK: what apps import. A smart client in the Voldemort/Dynamo tradition: it learns the
// ring from any seed, hashes each key to its preference list and coordinates the quorum itself over
// WebSockets straight to the replicas (coordinator/kv-coordinator.ts). Values are bytes; strings and
// JSON are conveniences on top. Concurrent writes come back as siblings: pass `resolve` (per client
// or per call) to merge them, and pass the read's `context` back on the next write.
//
//   const kv = createClient({ seeds: ['ws://127.0.0.1:7001'] })
//   const { context } = await kv.put('cart:42', 'milk')
//   const got = await kv.get('cart:42')          // { found, values, context }

import { badRequest, isKvError, KvError, QuorumError } from '../coordinator/errors.ts'
import { KvCoordinator, type ReadResult } from '../coordinator/kv-coordinator.ts'
import { limits } from '../coordinator/limits.ts'
import type { Ring } from '../coordinator/ring/ring.ts'
import { nodeWebSocket, systemRuntime, type Runtime, type WebSocketCtor } from '../coordinator/runtime.ts'

export { KvError, QuorumError, isKvError }
export type { Ring }

export type Value = string | Uint8Array
/** Merges siblings into one value. Must be deterministic; it may be given tombstone-free values only. */
export type Resolver = (values: Uint8Array[]) => Uint8Array

export interface ClientOptions {
  /** WebSocket URLs of any replicas (ws://host:port); the ring is learned from the first that answers. */
  readonly seeds: readonly string[]
  /** Default read quorum (default: majority of N). */
  readonly r?: number
  /** Default write quorum (default: majority of N). */
  readonly w?: number
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
}

export interface PutOptions { readonly context?: string; readonly w?: number; readonly timeoutMs?: number; readonly sloppy?: boolean }
export interface GetOptions { readonly r?: number; readonly timeoutMs?: number; readonly sloppy?: boolean; readonly resolve?: Resolver }

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
  private coordinator: Promise<KvCoordinator>
  /** The coordinator once made, so that requests need not await the promise each time. */
  private ready: KvCoordinator | undefined

  constructor(private readonly opts: ClientOptions) {
    if (!opts || !Array.isArray(opts.seeds) || opts.seeds.length === 0) throw badRequest('createClient needs seeds: ["ws://host:port", ...]')
    this.coordinator = runtimeFor(opts).then(runtime => (this.ready = new KvCoordinator({
      seeds: opts.seeds, runtime, client: 'ringkv-sdk',
      ...pick(opts, ['r', 'w', 'timeoutMs', 'sloppy', 'valueBytesMax', 'connectionsPerReplica']),
    })))
  }

  async put(key: string, value: Value, opts: PutOptions = {}): Promise<{ context: string }> {
    const res = await (this.ready ?? await this.coordinator).put(key, toBytes(value), opts)
    return { context: res.context }
  }

  async get(key: string, opts: GetOptions = {}): Promise<GetResult> {
    const res = await (this.ready ?? await this.coordinator).get(key, opts)
    return this.resolved(res, opts.resolve ?? this.opts.resolve)
  }

  /**
   * Writes a tombstone. Pass the context of a read to delete exactly what was read; without one the
   * key is read first (as Riak does), so the delete covers every value stored now.
   */
  async delete(key: string, opts: PutOptions & { r?: number } = {}): Promise<{ context: string }> {
    const res = await (await this.coordinator).delete(key, opts)
    return { context: res.context }
  }

  async getString(key: string, opts: GetOptions = {}): Promise<{ found: boolean; values: string[]; context: string }> {
    const res = await this.get(key, opts)
    return { found: res.found, values: res.values.map(v => decoder.decode(v)), context: res.context }
  }

  async getJson<T = unknown>(key: string, opts: GetOptions = {}): Promise<{ found: boolean; values: T[]; context: string }> {
    const res = await this.get(key, opts)
    return { found: res.found, values: res.values.map(v => JSON.parse(decoder.decode(v)) as T), context: res.context }
  }

  putJson(key: string, value: unknown, opts: PutOptions = {}): Promise<{ context: string }> {
    return this.put(key, JSON.stringify(value), opts)
  }

  /**
   * Read, apply `fn` to the current values (empty when absent; several when there are siblings),
   * write the result with the read's context. If the write shows that another writer got in between
   * (the stamped state still holds a value besides ours), nothing was lost, but the key now has
   * siblings: read again and let `fn` merge them, at most limits.updateRetriesMax times.
   */
  async update(key: string, fn: (values: Uint8Array[]) => Value, opts: GetOptions & PutOptions = {}): Promise<{ context: string; attempts: number }> {
    const coordinator = await this.coordinator
    for (let attempt = 1; ; attempt++) {
      // fn sees every sibling (no resolver): merging them is its job here.
      const got = await coordinator.get(key, opts)
      const res = await coordinator.put(key, toBytes(fn(got.values.map(v => v.slice()))), { ...opts, context: got.context })
      const live = res.state.siblings.filter(s => s.value !== null).length
      if (live <= 1 || attempt >= limits.updateRetriesMax) return { context: res.context, attempts: attempt }
    }
  }

  async ring(): Promise<Ring> {
    return (await this.coordinator).getRing()
  }

  /** The transport's view: is this replica reachable right now? */
  async isUp(node: string): Promise<boolean> {
    return (await this.coordinator).isUp(node)
  }

  async close(): Promise<void> {
    (await this.coordinator).close()
  }

  private resolved(res: ReadResult, resolve: Resolver | undefined): GetResult {
    // Values arrive as views into the reply frame (coordinator/protocol/codec.ts): copy them so an
    // app that keeps a value does not keep the whole frame alive.
    const values = res.values.map(v => v.slice())
    if (resolve && values.length > 1) return { found: res.found, values: [resolve(values)], context: res.context }
    return { found: res.found, values, context: res.context }
  }
}

export function createClient(opts: ClientOptions): KvClient {
  return new KvClient(opts)
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
  if (global) return systemRuntime(global)
  const ws = await import('ws')
  return systemRuntime(nodeWebSocket(ws.default as never, limits.frameBytesMax))
}

function pick<T extends object, K extends keyof T>(o: T, keys: K[]): Partial<Pick<T, K>> {
  const out: Partial<Pick<T, K>> = {}
  for (const k of keys) if (o[k] !== undefined) out[k] = o[k]
  return out
}


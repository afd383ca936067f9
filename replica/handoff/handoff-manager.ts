// Partition handoff (docs/handoff.md): moves every key of one ring partition, with its full DVV
// state, from this replica to another one, as Dynamo section 4.9 and riak_core's handoff_sender do
// when a node joins or leaves. The membership state machine decides *what* moves (which partition,
// to which node) and calls transfer(); this module does the moving:
//
// - One scan, several transfers. A partition's keys are scattered through the key order (the ring
//   hashes keys), so streaming one partition means reading every key. Up to
//   handoffTransfersInFlightMax transfers therefore share one sweep of the engine (scan pages of
//   handoffScanKeysMax keys, each key hashed once and handed to the transfers of its partition);
//   transfers asked for meanwhile wait for the next sweep. Nothing is loaded whole: a page, plus at
//   most handoffBatchesInFlightMax batches per transfer.
// - Batches: `handoff` messages of at most handoffBatchKeysMax keys and handoffBatchBytesMax bytes of
//   states, each with a CRC32C (handoff-batch.ts), over one outbound data-plane connection per target
//   (hello first, as every client). The receiver acks a batch once it is durable (WAL fsync).
// - Progress: after each ack, the last key of the acknowledged prefix of batches is saved atomically
//   (handoff-progress.ts). A transfer asked again after a crash of this replica, or retried after a
//   failure of the target, resumes after that key.
// - Rate: all batches together go out at most at bytesPerSec (a GCRA token bucket with a burst of
//   one batch), so handoff leaves the disk and the network to foreground traffic.
// - Forwarding: from the moment transfer() is called until stopForwarding(), every state this
//   replica stores for the partition (ReplicaService's onStored hook) is also sent to the target as
//   a `replicate`, through a bounded queue. A forward that cannot be queued or fails is not dropped
//   silently: the transfer scans the partition again (a full re-scan, at most handoffRescansMax
//   times), so the target still gets every write.
//
// Time, timers and sockets come from the injected Runtime; the progress file from a ProgressStore.

import { asKvError, badRequest, KvError } from '../../coordinator/errors.ts'
import { backoffDelayMs, type BackoffPolicy } from '../../coordinator/backoff.ts'
import { limits } from '../../coordinator/limits.ts'
import { partitionOfKey } from '../../coordinator/ring/partition-hash.ts'
import type { Runtime } from '../../coordinator/runtime.ts'
import { Connection } from '../../coordinator/transport/connection.ts'
import type { DvvSet } from '../../coordinator/version/dvv.ts'
import type { Engine, Log } from '../storage/engine-types.ts'
import { handoffChecksum } from './handoff-batch.ts'
import { decodeProgress, encodeProgress, fileProgressStore, type ProgressEntry, type ProgressStore } from './handoff-progress.ts'
import { hasBarrier } from '../state-codec.ts'

export interface TransferRequest {
  readonly partition: number
  /** The receiving node's id (its ring id). */
  readonly to: string
  /** Its data-plane WebSocket URL (ws://host:port). */
  readonly toUrl: string
}

export interface TransferStatus {
  readonly partition: number
  readonly to: string
  readonly state: 'queued' | 'streaming' | 'done' | 'failed'
  readonly keysSent: number
  readonly bytesSent: number
  readonly startedAt?: number
  readonly error?: string
  /** Keys acknowledged before this process took the transfer over (resumed from the progress file). */
  readonly resumedKeys?: number
  /** Full re-scans forced by forwards that could not be delivered. */
  readonly rescans?: number
}

export interface HandoffManagerOptions {
  /** This replica's node id: the receiver logs who streamed to it. */
  readonly nodeId: string
  readonly engine: Engine
  /** Q: the ring's partition count (a power of two; coordinator/ring/partition-hash.ts). */
  readonly partitions: number
  /** The replica's data directory; progress goes in HANDOFF.json there (storage/disk-layout.ts). */
  readonly dataDir: string
  /** Clock, timers and the outbound WebSocket factory. */
  readonly runtime: Runtime
  readonly log: Log
  /** Client name said in `hello` on outbound connections; default `handoff@${nodeId}`. */
  readonly client?: string
  /** Token said in `hello`, if the receiver wants one. */
  readonly token?: string
  /** Bytes per second the sender may stream, over all transfers; default limits.handoffBytesPerSecDefault. */
  readonly bytesPerSec?: number
  /** States' bytes per batch, at most limits.handoffBatchBytesMax (its default). */
  readonly batchBytes?: number
  /** false only in tests/benchmarks that measure fsync's cost: progress files are not fsynced. */
  readonly fsync?: boolean
  /** Where progress is kept; default the file in dataDir. */
  readonly progressStore?: ProgressStore
}

/** Counters for /metrics (the sending side; ReplicaCounters has the receiving side). */
export interface HandoffCounters {
  keysSent: number
  bytesSent: number
  batchesSent: number
  batchesFailed: number
  forwarded: number
  forwardsFailed: number
  forwardsDropped: number
  rescans: number
  retries: number
}

interface Sent { readonly lastKey: string; readonly keys: number; readonly bytes: number }

interface Transfer {
  readonly id: string
  readonly partition: number
  readonly to: string
  toUrl: string
  state: TransferStatus['state']
  /** Every key up to and including this one (scan order) is durable at `to`; undefined: none yet. */
  after: string | undefined
  keysSent: number
  bytesSent: number
  resumedKeys: number
  startedAt: number | undefined
  error: string | undefined
  attempts: number
  rescans: number
  rescanNeeded: boolean
  retryTimer: unknown
  promise: Promise<void>
  resolve: () => void
  reject: (e: KvError) => void
  // One sweep's streaming state.
  /** Where this sweep started for it: keys up to here are skipped. */
  from: string | undefined
  batch: Array<[Uint8Array, Uint8Array]>
  batchBytes: number
  batchLastKey: string
  seq: number
  ackNext: number
  inFlight: Map<number, Sent>
  acked: Map<number, Sent>
  failedWith: KvError | undefined
  wake: Array<() => void>
}

interface Target {
  readonly conn: Connection
  readonly queue: Array<{ readonly key: string; readonly state: DvvSet; readonly partition: number }>
  inFlight: number
}

const retryBackoff: BackoffPolicy = { minMs: limits.handoffRetryBackoffMsMin, maxMs: limits.handoffRetryBackoffMsMax, jitter: 'equal' }
const encoder = new TextEncoder()

/** Keys the replica keeps for itself start with NUL (anti-entropy.ts floorPrefix); client keys cannot. */
const internalKeyPrefix = '\u0000'

function transferId(partition: number, to: string): string {
  return `${partition}\u0000${to}`
}

export class HandoffManager {
  readonly counters: HandoffCounters = {
    keysSent: 0, bytesSent: 0, batchesSent: 0, batchesFailed: 0, forwarded: 0, forwardsFailed: 0, forwardsDropped: 0, rescans: 0, retries: 0,
  }
  private readonly rt: Runtime
  private readonly store: ProgressStore
  private readonly bytesPerSec: number
  private readonly batchBytes: number
  /** Every transfer this process knows, in the order they were first asked for. */
  private readonly transfers = new Map<string, Transfer>()
  /** Waiting for a sweep, in order. */
  private readonly queue: Transfer[] = []
  /** Progress read at start for transfers not asked for again yet. */
  private readonly resumable = new Map<string, ProgressEntry>()
  /** partition -> targets its stored writes are forwarded to. */
  private readonly forwarding = new Map<number, Set<string>>()
  private readonly targets = new Map<string, Target>()
  private readonly ready: Promise<void>
  private sweeping: Promise<void> | undefined
  private gathering = false
  private gatherTimer: unknown
  private closed = false
  /** GCRA theoretical arrival time of the next byte (ms). */
  private tat = 0
  private sleepTimer: unknown
  private sleepWake: (() => void) | undefined
  private saving: Promise<void> | undefined
  private dirty = false

  constructor(readonly opts: HandoffManagerOptions) {
    this.rt = opts.runtime
    this.store = opts.progressStore ?? fileProgressStore(opts.dataDir, opts.fsync ?? true)
    this.bytesPerSec = opts.bytesPerSec ?? limits.handoffBytesPerSecDefault
    this.batchBytes = opts.batchBytes ?? limits.handoffBatchBytesMax
    if (!(Number.isInteger(this.bytesPerSec) && this.bytesPerSec >= 1 && this.bytesPerSec <= limits.handoffBytesPerSecMax)) {
      throw new Error(`handoff bytes/s must be an integer from 1 to ${limits.handoffBytesPerSecMax}, got ${this.bytesPerSec}`)
    }
    if (!(Number.isInteger(this.batchBytes) && this.batchBytes >= limits.handoffBatchBytesMin && this.batchBytes <= limits.handoffBatchBytesMax)) {
      throw new Error(`handoff batch bytes must be an integer from ${limits.handoffBatchBytesMin} to ${limits.handoffBatchBytesMax}, got ${this.batchBytes}`)
    }
    this.ready = this.load()
  }

  /**
   * Streams every key of `partition` held here to node `to`; resolves once `to` has durably
   * stored the last batch. Same request again joins the one in flight; resumes after a crash
   * from persisted progress. While a transfer runs, and until stopForwarding(partition, to),
   * writes stored here for that partition are also forwarded to `to`. Rejects with a KvError
   * when the transfer fails (the status then says `failed`; calling again resumes).
   */
  transfer(req: TransferRequest): Promise<void> {
    const refused = this.requestError(req)
    if (refused) return Promise.reject(refused)
    const id = transferId(req.partition, req.to)
    const known = this.transfers.get(id)
    if (known && (known.state === 'queued' || known.state === 'streaming')) {
      this.setUrl(known, req.toUrl)
      return known.promise
    }
    if (this.queue.length >= limits.handoffTransfersQueuedMax) {
      return Promise.reject(new KvError({ kind: 'Overloaded', retryAfterMs: limits.handoffRetryBackoffMsMax }, `${this.queue.length} handoff transfers already queued`))
    }
    const t = known ?? this.newTransfer(req)
    this.setUrl(t, req.toUrl)
    this.rearm(t)
    // A transfer that finished before starts over: writes since then may not have been forwarded.
    if (known?.state === 'done') { t.after = undefined; t.keysSent = 0; t.bytesSent = 0; t.resumedKeys = 0 }
    t.attempts = 0
    t.rescans = 0
    this.forward(t.partition, t.to)
    this.ready.then(() => {
      if (this.closed || t.state !== 'queued') return
      const saved = this.resumable.get(id)
      if (saved && t.after === undefined) {
        this.resumable.delete(id)
        t.after = saved.after
        t.keysSent = t.resumedKeys = saved.keysSent
        t.bytesSent = saved.bytesSent
        t.startedAt = saved.startedAt
        this.opts.log('handoff resumes from saved progress', { partition: t.partition, to: t.to, keysAcked: saved.keysSent })
      }
      this.enqueue(t)
    }, () => { /* load() never rejects */ })
    return t.promise
  }

  /** Ends forwarding of writes for `partition` to `to` (membership has switched ownership). */
  stopForwarding(partition: number, to: string): void {
    const set = this.forwarding.get(partition)
    if (!set) return
    set.delete(to)
    if (set.size === 0) this.forwarding.delete(partition)
  }

  /** Every transfer this process knows of (in flight, queued, and finished since start). */
  status(): TransferStatus[] {
    return [...this.transfers.values()].map(t => ({
      partition: t.partition, to: t.to, state: t.state, keysSent: t.keysSent, bytesSent: t.bytesSent,
      ...(t.startedAt !== undefined ? { startedAt: t.startedAt } : {}),
      ...(t.error !== undefined ? { error: t.error } : {}),
      ...(t.resumedKeys > 0 ? { resumedKeys: t.resumedKeys } : {}),
      ...(t.rescans > 0 ? { rescans: t.rescans } : {}),
    }))
  }

  /**
   * Whether `partition` is being sent from here: a transfer of it queued or streaming, or its writes
   * forwarded. The partition drop never deletes such a partition.
   */
  sending(partition: number): boolean {
    if (this.forwarding.has(partition)) return true
    for (const t of this.transfers.values()) if (t.partition === partition && (t.state === 'queued' || t.state === 'streaming')) return true
    return false
  }

  /** Whether any partition's writes are being forwarded (onStored is a no-op otherwise). */
  get forwardingAny(): boolean {
    return this.forwarding.size > 0
  }

  /**
   * ReplicaService's onStored hook: a state this replica just made durable. Queued for every target
   * its partition is being forwarded to; when a target's queue is full the transfer re-scans.
   */
  onStored(key: string, state: DvvSet): void {
    if (this.forwarding.size === 0 || this.closed) return
    const partition = partitionOfKey(this.opts.partitions, key)
    const tos = this.forwarding.get(partition)
    if (!tos) return
    for (const to of tos) {
      const t = this.transfers.get(transferId(partition, to))
      const target = t && this.target(t)
      if (!t || !target) continue
      if (target.queue.length >= limits.handoffForwardQueueMax) {
        this.counters.forwardsDropped++
        this.forwardLost(t, `forward queue to ${to} full (${limits.handoffForwardQueueMax})`)
        continue
      }
      target.queue.push({ key, state, partition })
      this.pumpForwards(to, target)
    }
  }

  /** Stops every transfer (each keeps its persisted progress) and closes outbound connections. */
  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    this.rt.clearTimeout(this.sleepTimer)
    this.rt.clearTimeout(this.gatherTimer)
    this.sleepWake?.()
    for (const t of this.transfers.values()) {
      this.rt.clearTimeout(t.retryTimer)
      for (const w of t.wake.splice(0)) w()
    }
    await this.sweeping
    for (const t of this.transfers.values()) {
      if (t.state === 'queued' || t.state === 'streaming') {
        t.state = 'failed'
        t.error = 'the replica is shutting down'
        t.reject(new KvError({ kind: 'Unavailable', node: this.opts.nodeId }, `handoff of partition ${t.partition} to ${t.to} stopped: the replica is shutting down (progress kept)`))
      }
    }
    this.queue.length = 0
    for (const target of this.targets.values()) target.conn.close()
    await this.saving
  }

  private requestError(req: TransferRequest): KvError | undefined {
    const issues: string[] = []
    if (!(Number.isInteger(req.partition) && req.partition >= 0 && req.partition < this.opts.partitions)) {
      issues.push(`partition must be an integer from 0 to ${this.opts.partitions - 1}, got ${String(req.partition)}`)
    }
    if (typeof req.to !== 'string' || req.to.length === 0 || req.to.length > limits.nameCharsMax) issues.push(`to must be a node id of 1 to ${limits.nameCharsMax} characters`)
    else if (req.to === this.opts.nodeId) issues.push('to names this replica itself')
    if (typeof req.toUrl !== 'string' || !/^wss?:\/\/[^\s]+$/.test(req.toUrl) || req.toUrl.length > limits.urlCharsMax) issues.push('toUrl must be a ws:// or wss:// URL')
    if (this.closed) return new KvError({ kind: 'Unavailable', node: this.opts.nodeId }, 'the handoff manager is closed')
    return issues.length > 0 ? badRequest(...issues) : undefined
  }

  private newTransfer(req: TransferRequest): Transfer {
    const t: Transfer = {
      id: transferId(req.partition, req.to), partition: req.partition, to: req.to, toUrl: req.toUrl,
      state: 'queued', after: undefined, keysSent: 0, bytesSent: 0, resumedKeys: 0, startedAt: undefined, error: undefined,
      attempts: 0, rescans: 0, rescanNeeded: false, retryTimer: undefined,
      promise: Promise.resolve(), resolve: () => {}, reject: () => {},
      from: undefined, batch: [], batchBytes: 0, batchLastKey: '', seq: 0, ackNext: 0, inFlight: new Map(), acked: new Map(),
      failedWith: undefined, wake: [],
    }
    this.transfers.set(t.id, t)
    this.forgetFinished()
    return t
  }

  /** A fresh promise for a transfer (re)starting; nobody need await it. */
  private rearm(t: Transfer): void {
    t.state = 'queued'
    t.error = undefined
    t.promise = new Promise<void>((resolve, reject) => { t.resolve = resolve; t.reject = reject })
    t.promise.catch(() => { /* rejections are for callers that await; the status says it too */ })
  }

  private setUrl(t: Transfer, url: string): void {
    t.toUrl = url
    this.targets.get(t.to)?.conn.setUrl(url)
  }

  private forward(partition: number, to: string): void {
    let set = this.forwarding.get(partition)
    if (!set) this.forwarding.set(partition, set = new Set())
    set.add(to)
  }

  private target(t: Transfer): Target | undefined {
    if (this.closed) return undefined
    let target = this.targets.get(t.to)
    if (!target) {
      const conn = new Connection(t.to, t.toUrl, this.rt, {
        client: this.opts.client ?? `handoff@${this.opts.nodeId}`,
        ...(this.opts.token !== undefined ? { token: this.opts.token } : {}),
      })
      target = { conn, queue: [], inFlight: 0 }
      this.targets.set(t.to, target)
    }
    return target
  }

  private enqueue(t: Transfer): void {
    if (this.closed) return
    t.state = 'queued'
    this.queue.push(t)
    this.pump()
  }

  /**
   * Starts a sweep for the queued transfers when none runs, after handoffSweepGatherMs (or at once
   * when a sweep's worth is queued already), so that a burst of requests shares one scan.
   */
  private pump(): void {
    if (this.sweeping || this.gathering || this.closed || this.queue.length === 0) return
    if (this.queue.length >= limits.handoffTransfersInFlightMax) { this.startSweep(); return }
    this.gathering = true
    this.gatherTimer = this.rt.setTimeout(() => {
      this.gathering = false
      if (!this.sweeping && !this.closed && this.queue.length > 0) this.startSweep()
    }, limits.handoffSweepGatherMs)
  }

  private startSweep(): void {
    this.rt.clearTimeout(this.gatherTimer)
    this.gathering = false
    const batch = this.queue.splice(0, limits.handoffTransfersInFlightMax)
    this.sweeping = this.sweep(batch).catch(e => {
      // A bug (an assert, a scan failing): fail these transfers rather than the process.
      const err = asKvError(e, 'handoff sweep failed')
      this.opts.log('handoff sweep failed', { error: err.message })
      for (const t of batch) if (t.state === 'streaming') this.fail(t, err)
    }).finally(() => {
      this.sweeping = undefined
      this.pump()
    })
  }

  private async sweep(transfers: Transfer[]): Promise<void> {
    const byPartition = new Map<number, Transfer[]>()
    let start: string | undefined
    let fromStart = false
    for (const t of transfers) {
      t.state = 'streaming'
      t.startedAt ??= this.rt.now()
      t.from = t.after
      t.batch = []; t.batchBytes = 0; t.seq = 0; t.ackNext = 0; t.inFlight.clear(); t.acked.clear(); t.failedWith = undefined
      if (t.after === undefined) fromStart = true
      else if (start === undefined || t.after < start) start = t.after
      const list = byPartition.get(t.partition)
      if (list) list.push(t); else byPartition.set(t.partition, [t])
    }
    let after = fromStart ? undefined : start
    this.opts.log('handoff sweep starts', { transfers: transfers.map(t => ({ partition: t.partition, to: t.to, after: t.from ?? null })) })
    for (;;) {
      if (this.closed || transfers.every(t => t.failedWith)) break
      const page = this.opts.engine.scan('', { limit: limits.handoffScanKeysMax, ...(after !== undefined ? { after } : {}) })
      for (const [key, stored] of page.entries) {
        // The replica's own bookkeeping (anti-entropy's dot floors, keys starting with NUL, which no
        // client can write) is not data of a partition: a receiver refuses such a key, and the whole
        // batch with it, so a transfer that met one never finished.
        if (key.startsWith(internalKeyPrefix)) continue
        const list = byPartition.get(partitionOfKey(this.opts.partitions, key))
        if (!list) continue
        // A reaped key (a barrier alone, docs/anti-entropy.md) has nothing to hand off; a key written
        // again after its reap travels as the state behind its barrier.
        if (hasBarrier(stored) && stored.byteLength === 1) continue
        const value = hasBarrier(stored) ? stored.subarray(1) : stored
        for (const t of list) {
          if (t.failedWith || (t.from !== undefined && key <= t.from)) continue
          await this.add(t, key, value)
          if (this.closed) break
        }
      }
      if (page.cursor === undefined) break
      after = page.cursor
      // Let foreground requests run between pages: a page is hashed and copied synchronously.
      await new Promise<void>(resolve => this.rt.tick(resolve))
    }
    for (const t of transfers) if (!t.failedWith && !this.closed && t.batch.length > 0) await this.send(t)
    await Promise.all(transfers.map(t => this.drained(t)))
    await this.saveProgress()
    if (this.closed) return
    for (const t of transfers) this.finish(t)
  }

  /** Adds one entry to the transfer's batch, sending the batch when full. */
  private async add(t: Transfer, key: string, value: Uint8Array): Promise<void> {
    if (t.batch.length > 0 && (t.batchBytes + value.byteLength > this.batchBytes || t.batch.length >= limits.handoffBatchKeysMax)) {
      await this.send(t)
      if (t.failedWith || this.closed) return
    }
    t.batch.push([encoder.encode(key), value])
    t.batchBytes += value.byteLength
    t.batchLastKey = key
    if (t.batch.length >= limits.handoffBatchKeysMax || t.batchBytes >= this.batchBytes) await this.send(t)
  }

  /** Sends the transfer's batch once a slot is free and the rate allows it. */
  private async send(t: Transfer): Promise<void> {
    const entries = t.batch
    const bytes = t.batchBytes
    const lastKey = t.batchLastKey
    t.batch = []
    t.batchBytes = 0
    while (t.inFlight.size >= limits.handoffBatchesInFlightMax && !t.failedWith && !this.closed) {
      await new Promise<void>(resolve => t.wake.push(resolve))
    }
    if (t.failedWith || this.closed) return
    await this.rateLimit(bytes)
    if (t.failedWith || this.closed) return
    const target = this.target(t)
    if (!target) return
    const seq = t.seq++
    const sent: Sent = { lastKey, keys: entries.length, bytes }
    t.inFlight.set(seq, sent)
    this.counters.batchesSent++
    const body = { partition: t.partition, seq, from: this.opts.nodeId, entries, checksum: handoffChecksum(t.partition, seq, entries) }
    target.conn.request('handoff', body, limits.handoffAckTimeoutMs, bytes).then(
      () => this.acked(t, seq, sent),
      e => this.batchFailed(t, seq, e))
  }

  private acked(t: Transfer, seq: number, sent: Sent): void {
    t.inFlight.delete(seq)
    t.acked.set(seq, sent)
    // Progress moves only over the acknowledged prefix: a later batch acked first does not mean the
    // keys before it are durable there.
    let moved = false
    for (let s = t.acked.get(t.ackNext); s !== undefined; s = t.acked.get(t.ackNext)) {
      t.acked.delete(t.ackNext)
      t.ackNext++
      t.after = s.lastKey
      t.keysSent += s.keys
      t.bytesSent += s.bytes
      this.counters.keysSent += s.keys
      this.counters.bytesSent += s.bytes
      moved = true
    }
    if (moved) void this.saveProgress()
    for (const w of t.wake.splice(0)) w()
  }

  private batchFailed(t: Transfer, seq: number, e: unknown): void {
    t.inFlight.delete(seq)
    this.counters.batchesFailed++
    if (!t.failedWith) {
      t.failedWith = asKvError(e, 'handoff batch failed')
      this.opts.log('handoff batch failed', { partition: t.partition, to: t.to, seq, error: t.failedWith.message })
    }
    for (const w of t.wake.splice(0)) w()
  }

  /** Resolves when none of the transfer's batches await an ack. */
  private async drained(t: Transfer): Promise<void> {
    while (t.inFlight.size > 0 && !this.closed) await new Promise<void>(resolve => t.wake.push(resolve))
  }

  /** After a sweep: done, retried later, re-scanned, or failed. */
  private finish(t: Transfer): void {
    if (t.failedWith) {
      t.attempts++
      t.error = t.failedWith.message
      if (t.attempts >= limits.handoffAttemptsMax) { this.fail(t, t.failedWith); return }
      this.counters.retries++
      t.state = 'queued'
      const delay = backoffDelayMs(retryBackoff, t.attempts, this.rt.random)
      this.opts.log('handoff will retry from its last ack', { partition: t.partition, to: t.to, attempt: t.attempts, delayMs: delay, error: t.error })
      t.retryTimer = this.rt.setTimeout(() => { if (t.state === 'queued') this.enqueue(t) }, delay, { background: true })
      return
    }
    if (t.rescanNeeded) {
      if (this.rescan(t)) this.enqueue(t)
      return
    }
    t.state = 'done'
    t.error = undefined
    this.opts.log('handoff done', { partition: t.partition, to: t.to, keys: t.keysSent, bytes: t.bytesSent })
    void this.saveProgress()
    t.resolve()
    this.forgetFinished()
  }

  /** Starts the transfer over from its first key; false (and failed) past handoffRescansMax. */
  private rescan(t: Transfer): boolean {
    t.rescanNeeded = false
    t.rescans++
    this.counters.rescans++
    if (t.rescans > limits.handoffRescansMax) {
      this.fail(t, new KvError({ kind: 'Overloaded', retryAfterMs: limits.handoffRetryBackoffMsMax },
        `handoff of partition ${t.partition} to ${t.to}: writes could not be forwarded ${t.rescans} times; given up`))
      return false
    }
    this.opts.log('handoff re-scans: a forwarded write was not delivered', { partition: t.partition, to: t.to, rescans: t.rescans })
    t.after = undefined
    t.keysSent = 0
    t.bytesSent = 0
    t.resumedKeys = 0
    return true
  }

  private fail(t: Transfer, e: KvError): void {
    t.state = 'failed'
    t.error = e.message
    this.opts.log('handoff failed', { partition: t.partition, to: t.to, error: e.message })
    t.reject(e)
    this.forgetFinished()
  }

  /** A forwarded write did not reach the target: the transfer must send the partition again. */
  private forwardLost(t: Transfer, why: string): void {
    if (t.state === 'done') {
      // Already complete (forwarding until stopForwarding): stream it again.
      this.opts.log('handoff re-opens: a forwarded write was not delivered', { partition: t.partition, to: t.to, why })
      this.rearm(t)
      if (this.rescan(t)) this.enqueue(t)
      return
    }
    if (t.state === 'failed') return
    if (!t.rescanNeeded) this.opts.log('handoff will re-scan', { partition: t.partition, to: t.to, why })
    t.rescanNeeded = true
  }

  private pumpForwards(to: string, target: Target): void {
    while (target.inFlight < limits.handoffForwardInFlightMax && target.queue.length > 0 && !this.closed) {
      const f = target.queue.shift()!
      target.inFlight++
      // hintFor names the target itself: it stores the write as its own even before gossip has told
      // it of the plan that makes it an owner (without it, an early forward got NotOwner, and enough
      // of those under a write load failed the transfer for good: a leave that never ended).
      target.conn.request('replicate', { key: encoder.encode(f.key), state: f.state, hintFor: to }, limits.handoffForwardTimeoutMs).then(() => {
        this.counters.forwarded++
      }, e => {
        this.counters.forwardsFailed++
        const t = this.transfers.get(transferId(f.partition, to))
        if (t) this.forwardLost(t, `forward failed: ${asKvError(e, 'forward').message}`)
      }).finally(() => {
        target.inFlight--
        this.pumpForwards(to, target)
      })
    }
  }

  /** GCRA: waits until `bytes` more fit the rate, allowing a burst of one batch after idling. */
  private async rateLimit(bytes: number): Promise<void> {
    const msPerByte = 1000 / this.bytesPerSec
    const tau = this.batchBytes * msPerByte
    const wait = this.tat - tau - this.rt.now()
    if (wait > 0) {
      await new Promise<void>(resolve => {
        this.sleepWake = resolve
        this.sleepTimer = this.rt.setTimeout(resolve, wait)
      })
      this.sleepWake = undefined
    }
    this.tat = Math.max(this.tat, this.rt.now()) + bytes * msPerByte
  }

  /** Drops the oldest finished transfers past handoffFinishedKeptMax (status() stays bounded). */
  private forgetFinished(): void {
    let finished = 0
    for (const t of this.transfers.values()) if (t.state === 'done' || t.state === 'failed') finished++
    if (finished <= limits.handoffFinishedKeptMax) return
    for (const [id, t] of this.transfers) {
      if (finished <= limits.handoffFinishedKeptMax) break
      if ((t.state === 'done' || t.state === 'failed') && !this.forwarding.get(t.partition)?.has(t.to)) {
        this.transfers.delete(id)
        finished--
      }
    }
  }

  private async load(): Promise<void> {
    let bytes: Uint8Array | undefined
    try {
      bytes = await this.store.load()
    } catch (e) {
      this.opts.log('handoff progress unreadable; transfers start from their first key', { error: (e as Error).message })
      return
    }
    if (bytes === undefined) return
    const entries = decodeProgress(bytes)
    if (typeof entries === 'string') {
      this.opts.log('handoff progress ignored; transfers start from their first key', { error: entries })
      return
    }
    for (const e of entries) this.resumable.set(transferId(e.partition, e.to), e)
  }

  /**
   * Saves the progress of every unfinished transfer (and of saved ones not asked for again yet).
   * Calls while a save runs coalesce into one more save after it; resolves when what was asked
   * before the call is on disk (or failed: logged, the previous file stays).
   */
  private saveProgress(): Promise<void> {
    this.dirty = true
    this.saving ??= (async () => {
      while (this.dirty) {
        this.dirty = false
        const entries: ProgressEntry[] = [...this.resumable.values()]
        for (const t of this.transfers.values()) {
          if (t.after === undefined || t.state === 'done') continue
          entries.push({ partition: t.partition, to: t.to, toUrl: t.toUrl, after: t.after, keysSent: t.keysSent, bytesSent: t.bytesSent, startedAt: t.startedAt ?? this.rt.now() })
        }
        try {
          await this.store.save(encodeProgress(entries.slice(-limits.handoffProgressEntriesMax)))
        } catch (e) {
          this.opts.log('handoff progress not saved', { error: (e as Error).message })
        }
      }
    })().finally(() => { this.saving = undefined })
    return this.saving
  }
}

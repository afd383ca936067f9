// Active anti-entropy on one replica (Dynamo §4.7, DeCandia 2007; the tree is Tictac AAE's, see
// tictac-tree.ts and docs/anti-entropy.md): one tree per partition it stores, kept current as
// writes land, rebuilt from storage at start in slices; exchanges with the other primaries of each
// partition, one at a time and rate-limited; and tombstone reaping.
//
// The periodic loop sweeps first: one aaeRoots request gets a peer's roots of every partition the
// two share; equal roots are a clean exchange, and only partitions whose roots differ get a full
// exchange. (Before sweeps, an exchange ran every 40 ms whatever the trees said: 5 % of a core
// per idle replica.) That exchange runs at least aaeConfirmDelayMs after the sweep and walks only
// the branches that differ both times, as Tictac AAE confirms roots before walking them: under a
// write load a sweep nearly always catches some write in flight to one replica.
//
// An exchange (this replica asks, the peer answers aaeRoot / aaeBranches / aaeKeys):
//   1. the peer's root (one hash per branch) against ours: equal roots end it;
//   2. the leaves under the differing branches: the differing segments;
//   3. the keys and states of those segments, in pages; each page is checked whole before any of it
//      is merged (every key must hash to the partition and to a segment asked for, every state must
//      validate), so a lying peer gets a typed error and nothing from it is stored;
//   4. per key, merged = sync(ours, theirs): ours is replaced through the replica's `replicate` rule
//      when merged has more, and merged is sent to the peer as a `replicate` when theirs lacks
//      something, so both end with sync of both. A tombstone-only state and an absent key read the
//      same (not found), and are not copied onto each other (see docs/anti-entropy.md: this is what
//      lets a reaped key stay reaped).
// A run that covered every differing segment without a failure is a full exchange; its start time
// is recorded per (partition, peer).
//
// Tombstones: a key whose state is all tombstones is reaped (replaced by a barrier, state-codec.ts)
// once the grace has passed since it landed here, every other primary of its partition is reachable
// and has had a full exchange with this replica that started after it landed (so it holds the
// tombstone, something newer, or nothing). The partition's dot floor for this replica's actor is
// raised to the tombstone's counter first and stored, so a re-created key never reuses a dot the
// tombstone covered.
//
// Dropping (replica/handoff/partition-drop.ts decides when): the trees index every key this replica
// stores, so the keys of a partition it no longer holds are found here and deleted slice by slice
// with the reap's barrier, after the partition's dot floor is raised over them; a write landing in a
// watched partition meanwhile is noted, which stops the drop.
//
// Time and timers come through the Runtime seam, peers through a narrow request interface, storage
// through the Engine interface: a simulator can drive all of it.

import { assert } from '../../coordinator/assert.ts'
import { KvError, badRequest } from '../../coordinator/errors.ts'
import { limits } from '../../coordinator/limits.ts'
import type { z } from 'zod'
import { replySchemas, type ParsedRequest, type ReplyBody, type RequestBody, type Wire } from '../../coordinator/protocol/messages.ts'
import { keyHash32, partitionOfHash } from '../../coordinator/ring/partition-hash.ts'
import { preferenceListOfPartition, type Ring } from '../../coordinator/ring/ring.ts'
import type { Runtime } from '../../coordinator/runtime.ts'
import { counterOf, EMPTY, equals, isDeleted, sync, validate, type DvvSet } from '../../coordinator/version/dvv.ts'
import type { AaeHooks, AaeRequestType } from '../replica-service.ts'
import { decodeStored, encodeState, reapedValue, stateWriter } from '../state-codec.ts'
import type { Engine, Log } from '../storage/engine-types.ts'
import {
  bytesToWords, contribution, differing, sameShape, segmentOfHash, treeShape, TictacTree, wordsToBytes,
} from './tictac-tree.ts'

/** The requests an exchange sends to a peer (the four it needs of the data-plane protocol). */
export type PeerRequestType = AaeRequestType | 'replicate'

/** One peer replica, as an exchange sees it: a connection that sends a request and awaits its reply. */
export interface AaePeer {
  request<T extends PeerRequestType>(type: T, body: RequestBody<T>): Promise<ReplyBody<T>>
}

export interface AntiEntropyOptions {
  readonly nodeId: string
  readonly actor: string
  readonly engine: Engine
  readonly ring: () => Ring
  readonly runtime: Pick<Runtime, 'now' | 'setTimeout' | 'clearTimeout'>
  readonly peer: (node: string) => AaePeer
  /**
   * Whether `node` is up as membership sees it. Exchanges skip unreachable peers, and no tombstone
   * is reaped while a primary of its partition is unreachable.
   */
  readonly isReachable: (node: string) => boolean
  /** Merges a peer's state into this replica under the replicate rule (ReplicaService.applyState). */
  readonly applyState: (key: string, state: DvvSet) => Promise<void>
  readonly tombstoneGraceMs: number
  /** Pause between exchanges of the periodic loop (limits.aaeExchangeIntervalMs by default). */
  readonly intervalMs?: number
  /**
   * Least pause between two root sweeps (limits.aaeSweepIntervalMs by default). The simulator
   * shortens it so that, within a short run, every peer is swept soon after a tombstone's grace.
   */
  readonly sweepIntervalMs?: number
  readonly log: Log
}

export interface AaeCounters {
  /**
   * `unconfirmed`: a sweep saw the roots differ, but no branch differed again when the exchange
   * compared them (writes that were in flight); nothing was fetched.
   */
  exchanges: { clean: number; repaired: number; failed: number; unconfirmed: number }
  keysRepaired: number
  bytes: number
  tombstonesReaped: number
  /**
   * Segments whose hash a served key listing found wrong and set from the keys' states (keysPage).
   * Zero unless the tree and storage once disagreed: a bug, or a write accounted and then lost.
   */
  segmentsCorrected: number
}

/** An on-demand repair (`ringkv repair`): its exchanges, how far it got, and what it found. */
export interface RepairJob {
  readonly id: number
  readonly partitions: number
  readonly total: number
  done: number
  keysRepaired: number
  failed: number
  readonly startedAt: number
  finishedAt: number | null
}

interface Partition {
  readonly tree: TictacTree
  /** Highest counter of this replica's actor held by a tombstone reaped in this partition. */
  floor: number
  /** Tombstone-only keys and when each landed here (its latest write). */
  readonly tombstones: Map<string, number>
  /** Start time of the last full exchange with each peer. */
  readonly lastFull: Map<string, number>
}

/**
 * One exchange to run. From a sweep it carries the branches the sweep saw differ and when: the
 * exchange runs no sooner than aaeConfirmDelayMs after, and walks only branches that differ again.
 */
interface Exchange {
  readonly partition: number
  readonly peer: string
  readonly job?: RepairJob
  readonly confirm?: { readonly branches: readonly number[]; readonly seenAt: number }
}

/** Where each partition's floor is stored: a key no client can write (keys may not hold NUL). */
const floorPrefix = '\u0000aae-floor/'
const floorKey = (partition: number): string => `${floorPrefix}${partition}`

/** A bucket of tokens refilled at `perSecond`, holding at most one second's worth. */
class TokenBucket {
  private tokens: number
  private at: number
  constructor(private readonly perSecond: number, private readonly rt: Pick<Runtime, 'now' | 'setTimeout'>) {
    this.tokens = perSecond
    this.at = rt.now()
  }
  /** Resolves once `n` tokens are taken (n above the capacity waits for a full bucket, then takes it all). */
  async take(n: number): Promise<void> {
    for (;;) {
      const now = this.rt.now()
      this.tokens = Math.min(this.perSecond, this.tokens + ((now - this.at) * this.perSecond) / 1000)
      this.at = now
      const need = Math.min(n, this.perSecond)
      if (this.tokens >= need) { this.tokens -= need; return }
      const waitMs = Math.ceil(((need - this.tokens) * 1000) / this.perSecond)
      await new Promise<void>(ok => this.rt.setTimeout(ok, waitMs, { background: true }))
    }
  }
}

export class AntiEntropy implements AaeHooks {
  readonly counters: AaeCounters = { exchanges: { clean: 0, repaired: 0, failed: 0, unconfirmed: 0 }, keysRepaired: 0, bytes: 0, tombstonesReaped: 0, segmentsCorrected: 0 }
  private readonly partitions = new Map<number, Partition>()
  /** Keys up to this one are in the trees; later writes to later keys wait for the rebuild scan. */
  private rebuiltThrough: string | undefined = undefined
  private ready = false
  private closed = false
  private timer: unknown
  private cursor = 0
  private readonly queue: Exchange[] = []
  /** Partitions the last sweep found differing from its peer: full exchanges still to run. */
  private readonly differing: Exchange[] = []
  private shared: { ring: Ring; peers: Map<string, number[]> } | undefined
  private job: RepairJob | undefined
  private jobs = 0
  private running: Promise<void> | undefined
  private readonly keysBucket: TokenBucket
  private readonly bytesBucket: TokenBucket
  /** Whether some partition has a dot floor above 0 (set by a reap, or loaded from storage). */
  private anyFloor = false
  /**
   * Partitions a drop is deleting (partition-drop.ts), and whether a write has landed in each since
   * its drop started: a write a replica accepts for a partition means the partition is its own again.
   */
  private readonly watched = new Map<number, boolean>()

  constructor(private readonly opts: AntiEntropyOptions) {
    this.keysBucket = new TokenBucket(limits.aaeRepairKeysPerSecond, opts.runtime)
    this.bytesBucket = new TokenBucket(limits.aaeRepairBytesPerSecond, opts.runtime)
    this.loadFloors()
  }

  // ---- the write path's hooks (ReplicaService) ----

  onWrite(key: string, prev: DvvSet, next: DvvSet): void {
    // keyHash32 remembers its last key: when the ownership check hashed this one, this is a compare.
    const h = keyHash32(key)
    const p = partitionOfHash(h, this.opts.ring().partitions)
    if (this.watched.size > 0 && this.watched.has(p)) this.watched.set(p, true)
    // Before the rebuild scan reaches a key, the scan will read its latest state itself.
    if (!this.ready && (this.rebuiltThrough === undefined || key > this.rebuiltThrough)) return
    this.account(this.partitionOf(p), h, key, prev, next)
  }

  floorOf(key: string): number {
    // No reap has happened on this replica (the usual case): no floor to look up, no key to hash.
    if (!this.anyFloor) return 0
    const p = this.partitions.get(partitionOfHash(keyHash32(key), this.opts.ring().partitions))
    return p?.floor ?? 0
  }

  // ---- serving a peer's exchange ----

  serve<T extends AaeRequestType>(type: T, body: ParsedRequest<T>): unknown {
    const { shape } = body
    if (!sameShape(shape, treeShape)) {
      throw badRequest(`tree shape width ${shape.width} depth ${shape.depth} differs from this replica's (width ${treeShape.width} depth ${treeShape.depth})`)
    }
    const ring = this.opts.ring()
    const held = (partition: number): void => {
      if (partition >= ring.partitions || !preferenceListOfPartition(ring, partition).primaries.includes(this.opts.nodeId)) {
        throw new KvError({ kind: 'NotPrimary', partition, node: this.opts.nodeId }, `${this.opts.nodeId} is not a primary of partition ${partition}`)
      }
    }
    if (type === 'aaeRoots') {
      const { partitions } = body as ParsedRequest<'aaeRoots'>
      for (const p of partitions) held(p)
      this.mustBeReady()
      const out = new Uint32Array(partitions.length * limits.aaeTreeWidth)
      partitions.forEach((p, i) => out.set(this.partitions.get(p)?.tree.branches ?? emptyRoot, i * limits.aaeTreeWidth))
      return { roots: wordsToBytes(out) }
    }
    const { partition } = body as ParsedRequest<'aaeRoot' | 'aaeBranches' | 'aaeKeys'>
    held(partition)
    this.mustBeReady()
    const tree = this.partitionOf(partition).tree
    if (type === 'aaeRoot') return { branches: wordsToBytes(tree.branches) }
    if (type === 'aaeBranches') {
      const { branches } = body as ParsedRequest<'aaeBranches'>
      const out = new Uint32Array(branches.length * limits.aaeTreeWidth)
      branches.forEach((b, i) => out.set(tree.leavesOf(b), i * limits.aaeTreeWidth))
      return { leaves: wordsToBytes(out) }
    }
    const { segments, after } = body as ParsedRequest<'aaeKeys'>
    return this.keysPage(tree, segments, after)
  }

  private mustBeReady(): void {
    if (!this.ready) throw new KvError({ kind: 'Unavailable', node: this.opts.nodeId }, `${this.opts.nodeId}: anti-entropy trees are still being rebuilt`)
  }

  /**
   * A page of the named segments' keys and states, in the order the segments are named and keys in
   * string order within each, starting after `after`; `next` names the last key sent when more follow.
   */
  private keysPage(tree: TictacTree, segments: readonly number[], after: { segment: number; key: string } | undefined): RequestBodyOf<'aaeKeys'> {
    const entries: Array<{ key: Uint8Array; state: DvvSet }> = []
    let bytes = 0
    let last: { segment: number; key: string } | undefined
    let from = after === undefined ? 0 : segments.indexOf(after.segment)
    if (from < 0) throw badRequest(`after names segment ${after!.segment}, which is not among the segments asked for`)
    const bySegment = tree.keysOfSegments(segments)
    for (; from < segments.length; from++) {
      const segment = segments[from]!
      // A segment read whole in this turn gives its true hash (tictac-tree.ts: the tree trusts the
      // write path's old states, and this is where a segment that went wrong is set right).
      const whole = after === undefined || segment !== after.segment
      let sum = 0
      for (const { key, hash } of bySegment.get(segment)!) {
        if (!whole && key <= after!.key) continue
        const stored = this.opts.engine.get(key)
        if (stored === undefined) continue
        const { state } = decodeStored(stored)
        if (state.siblings.length === 0) continue
        const size = stateWriter(state).bytes
        if (last !== undefined && (entries.length >= limits.aaeKeysPerReplyMax || bytes + size > limits.aaeKeysReplyBytesMax)) {
          return { entries, next: { segment: last.segment, key: encoder.encode(last.key) } }
        }
        entries.push({ key: encoder.encode(key), state })
        bytes += size
        last = { segment, key }
        sum ^= contribution(hash, state)
      }
      if (whole && tree.correct(segment, sum)) {
        this.counters.segmentsCorrected++
        this.opts.log('anti-entropy: a segment\'s hash disagreed with its keys and was set from them', { segment })
      }
    }
    return { entries }
  }

  // ---- running exchanges ----

  /** Rebuilds the trees from storage in slices, then starts the periodic loop. */
  start(): Promise<void> {
    const rebuild = this.rebuild()
    rebuild.then(() => this.schedule(), e => this.opts.log('anti-entropy: rebuild failed; exchanges stay off', { error: (e as Error).message }))
    return rebuild
  }

  close(): void {
    this.closed = true
    this.opts.runtime.clearTimeout(this.timer)
  }

  isReady(): boolean { return this.ready }

  /**
   * Queues a repair of `partition` (every partition this replica is a primary of when undefined)
   * with each other primary, ahead of the periodic loop. One repair at a time: while one runs, it
   * is returned.
   */
  repair(partition?: number): RepairJob {
    if (this.job && this.job.finishedAt === null) return this.job
    const ring = this.opts.ring()
    if (partition !== undefined && !(Number.isInteger(partition) && partition >= 0 && partition < ring.partitions)) {
      throw badRequest(`partition must be an integer from 0 to ${ring.partitions - 1}, got ${partition}`)
    }
    const pairs: Array<{ partition: number; peer: string }> = []
    const held = partition === undefined ? this.primaryPartitions() : [partition]
    if (partition !== undefined && !preferenceListOfPartition(ring, partition).primaries.includes(this.opts.nodeId)) {
      throw new KvError({ kind: 'NotPrimary', partition, node: this.opts.nodeId }, `${this.opts.nodeId} is not a primary of partition ${partition}`)
    }
    for (const p of held) for (const peer of this.peersOf(p)) if (pairs.length < limits.aaeRepairQueueMax) pairs.push({ partition: p, peer })
    const job: RepairJob = { id: ++this.jobs, partitions: held.length, total: pairs.length, done: 0, keysRepaired: 0, failed: 0, startedAt: this.opts.runtime.now(), finishedAt: pairs.length === 0 ? this.opts.runtime.now() : null }
    this.job = job
    this.queue.length = 0
    for (const pair of pairs) this.queue.push({ ...pair, job })
    this.kick()
    return job
  }

  repairJob(): RepairJob | undefined { return this.job }

  /** Per partition this replica is a primary of: when its last full pass (a full exchange with every other primary) started, or null. */
  lastFullPasses(): Map<number, number | null> {
    const out = new Map<number, number | null>()
    for (const p of this.primaryPartitions()) {
      const part = this.partitions.get(p)
      let oldest: number | null = Infinity
      for (const peer of this.peersOf(p)) {
        const t = part?.lastFull.get(peer)
        if (t === undefined) { oldest = null; break }
        oldest = Math.min(oldest, t)
      }
      out.set(p, oldest === Infinity ? null : oldest)
    }
    return out
  }

  /**
   * Runs one exchange now, outside the loop (tests and the loop itself). With `confirm` (the
   * branches an earlier comparison saw differ), only branches that differ both times are walked;
   * when none does, the exchange is `unconfirmed` and is not a full one.
   */
  async exchange(partition: number, peerNode: string, confirm?: readonly number[]): Promise<{ full: boolean; keysRepaired: number }> {
    const startedAt = this.opts.runtime.now()
    const part = this.partitionOf(partition)
    const peer = this.opts.peer(peerNode)
    const shape = treeShape
    let repaired = 0
    let failures = 0
    const root = await peer.request('aaeRoot', { partition, shape })
    this.counters.bytes += root.branches.byteLength
    if (root.branches.byteLength !== limits.aaeTreeWidth * 4) throw protocolError(peerNode, `root of ${root.branches.byteLength} bytes, expected ${limits.aaeTreeWidth * 4}`)
    const differ = differing(part.tree.branches, bytesToWords(root.branches))
    const branches = confirm === undefined ? differ : differ.filter(b => confirm.includes(b))
    if (differ.length > 0 && branches.length === 0) {
      this.counters.exchanges.unconfirmed++
      return { full: false, keysRepaired: 0 }
    }
    if (branches.length > 0) {
      const reply = await peer.request('aaeBranches', { partition, shape, branches })
      this.counters.bytes += reply.leaves.byteLength
      if (reply.leaves.byteLength !== branches.length * limits.aaeTreeWidth * 4) throw protocolError(peerNode, `${reply.leaves.byteLength} bytes of leaves for ${branches.length} branches`)
      const theirs = bytesToWords(reply.leaves)
      const segments: number[] = []
      branches.forEach((b, i) => {
        const mine = part.tree.leavesOf(b)
        for (const j of differing(mine, theirs.subarray(i * limits.aaeTreeWidth, (i + 1) * limits.aaeTreeWidth))) segments.push(b * limits.aaeTreeWidth + j)
      })
      for (let i = 0; i < segments.length; i += limits.aaeSegmentsPerFetchMax) {
        const r = await this.repairSegments(partition, part, peerNode, peer, segments.slice(i, i + limits.aaeSegmentsPerFetchMax))
        repaired += r.repaired
        failures += r.failures
      }
    }
    // Branches left out as unconfirmed were not compared: not a full exchange.
    const full = failures === 0 && branches.length === differ.length
    if (full) part.lastFull.set(peerNode, startedAt)
    if (branches.length === 0) this.counters.exchanges.clean++
    else this.counters.exchanges.repaired++
    this.counters.keysRepaired += repaired
    return { full, keysRepaired: repaired }
  }

  private async repairSegments(partition: number, part: Partition, peerNode: string, peer: AaePeer, segments: number[]): Promise<{ repaired: number; failures: number }> {
    const asked = new Set(segments)
    const partitions = this.opts.ring().partitions
    const seen = new Set<string>()
    let repaired = 0
    let failures = 0
    let after: { segment: number; key: Uint8Array } | undefined
    for (let page = 0; ; page++) {
      if (page >= limits.aaePagesPerFetchMax) throw protocolError(peerNode, `more than ${limits.aaePagesPerFetchMax} pages for ${segments.length} segments`)
      const reply = await peer.request('aaeKeys', { partition, shape: treeShape, segments, ...(after ? { after } : {}) })
      // The whole page is checked before any of it is merged.
      let pageBytes = 0
      const inPage = new Set<string>()
      for (const { key, state } of reply.entries) {
        const h = keyHash32(key)
        if (partitionOfHash(h, partitions) !== partition || !asked.has(segmentOfHash(h))) {
          throw protocolError(peerNode, `sent key ${JSON.stringify(key.slice(0, 64))}, which is not in partition ${partition}'s segments asked for`)
        }
        if (seen.has(key) || inPage.has(key)) throw protocolError(peerNode, `sent key ${JSON.stringify(key.slice(0, 64))} twice`)
        inPage.add(key)
        validate(state)
        pageBytes += key.length + stateWriter(state).bytes
      }
      if (reply.next !== undefined && !asked.has(reply.next.segment)) throw protocolError(peerNode, `continues at segment ${reply.next.segment}, not one asked for`)
      this.counters.bytes += pageBytes
      const work: Promise<boolean>[] = []
      for (const { key, state } of reply.entries) {
        seen.add(key)
        work.push(this.repairKey(key, state, peer))
      }
      for (const r of await Promise.allSettled(work)) {
        if (r.status === 'fulfilled') { if (r.value) repaired++ } else {
          failures++
          this.opts.log('anti-entropy: key not repaired', { peer: peerNode, partition, error: (r.reason as Error)?.message })
        }
      }
      if (reply.next === undefined) break
      after = { segment: reply.next.segment, key: encoder.encode(reply.next.key) }
    }
    // Keys only this side holds: the peer lacks them.
    const work: Promise<boolean>[] = []
    for (const keys of part.tree.keysOfSegments(segments).values()) {
      for (const { key } of keys) if (!seen.has(key)) work.push(this.repairKey(key, EMPTY, peer))
    }
    for (const r of await Promise.allSettled(work)) {
      if (r.status === 'fulfilled') { if (r.value) repaired++ } else {
        failures++
        this.opts.log('anti-entropy: key not pushed', { peer: peerNode, partition, error: (r.reason as Error)?.message })
      }
    }
    return { repaired, failures }
  }

  /** Brings this replica and the peer to sync(ours, theirs) for one key; true when either changed. */
  private async repairKey(key: string, theirs: DvvSet, peer: AaePeer): Promise<boolean> {
    const stored = this.opts.engine.get(key)
    const ours = stored === undefined ? EMPTY : decodeStored(stored).state
    if (equals(ours, theirs)) return false
    const merged = sync(ours, theirs)
    // Tombstones only, against nothing: both read as not found; see the file comment.
    const needOurs = !equals(merged, ours) && !(ours.siblings.length === 0 && isDeleted(merged))
    const needTheirs = !equals(merged, theirs) && !(theirs.siblings.length === 0 && isDeleted(merged))
    if (!needOurs && !needTheirs) return false
    const bytes = stateWriter(merged).bytes
    await this.keysBucket.take(1)
    await this.bytesBucket.take(bytes)
    const steps: Promise<unknown>[] = []
    if (needOurs) steps.push(this.opts.applyState(key, theirs))
    if (needTheirs) {
      this.counters.bytes += key.length + bytes
      steps.push(peer.request('replicate', { key: encoder.encode(key), state: merged as never }))
    }
    await Promise.all(steps)
    return true
  }

  // ---- tombstones ----

  /** Reaps the partition's tombstones that are due (at most tombstoneReapsPerRoundMax). */
  reap(partition: number): number {
    const part = this.partitions.get(partition)
    if (part === undefined || part.tombstones.size === 0 || !this.ready) return 0
    const now = this.opts.runtime.now()
    const pl = preferenceListOfPartition(this.opts.ring(), partition)
    if (!pl.primaries.includes(this.opts.nodeId)) return 0
    // The oldest confirmation from another primary: a tombstone that landed after it waits.
    let confirmedAt = Infinity
    for (const peer of pl.primaries) {
      if (peer === this.opts.nodeId) continue
      const t = part.lastFull.get(peer)
      if (t === undefined || !this.opts.isReachable(peer)) return 0
      confirmedAt = Math.min(confirmedAt, t)
    }
    let reaped = 0
    let checked = 0
    for (const [key, landedAt] of part.tombstones) {
      if (checked++ >= limits.tombstonesTrackedPerPartitionMax || reaped >= limits.tombstoneReapsPerRoundMax) break
      if (now - landedAt < this.opts.tombstoneGraceMs || landedAt >= confirmedAt) continue
      const stored = this.opts.engine.get(key)
      const state = stored === undefined ? EMPTY : decodeStored(stored).state
      if (state.siblings.length === 0 || !isDeleted(state)) { part.tombstones.delete(key); continue }
      const counter = counterOf(state.vv, this.opts.actor)
      if (counter > part.floor) {
        part.floor = counter
        this.anyFloor = true
        this.persist(floorKey(partition), encodeState({ vv: { [this.opts.actor]: counter }, siblings: [] }))
      }
      this.persist(key, reapedValue)
      const h = keyHash32(key)
      part.tree.remove(h, key, contribution(h, state))
      part.tombstones.delete(key)
      reaped++
    }
    this.counters.tombstonesReaped += reaped
    return reaped
  }

  private persist(key: string, value: Uint8Array, what = 'reap'): void {
    // Visible at once; a failed write fails the engine, which then refuses writes (and /health says so).
    this.opts.engine.put(key, value).catch(e => this.opts.log(`anti-entropy: ${what} not stored`, { error: (e as Error).message }))
  }

  // ---- dropping a partition this replica no longer holds (replica/handoff/partition-drop.ts) ----

  /**
   * The partitions this replica stores keys of (live or tombstones): its trees are an index of every
   * key it holds, kept current on every write and rebuilt from storage at start, so no scan is needed.
   */
  storedPartitions(): number[] {
    const out: number[] = []
    for (const [p, part] of this.partitions) if (part.tree.size > 0) out.push(p)
    return out.sort((a, b) => a - b)
  }

  /** Keys of `partition` this replica stores. */
  keysIn(partition: number): number {
    return this.partitions.get(partition)?.tree.size ?? 0
  }

  /** From now on, notes whether a write lands in `partition` (writtenSince), until unwatchWrites. */
  watchWrites(partition: number): void {
    this.watched.set(partition, false)
  }

  unwatchWrites(partition: number): void {
    this.watched.delete(partition)
  }

  writtenSince(partition: number): boolean {
    return this.watched.get(partition) === true
  }

  /**
   * Deletes up to `max` keys of `partition` from storage, in this turn, and forgets them in the
   * tree and the tombstone tracking; returns how many. Each key is replaced by a reap barrier, as a
   * reaped tombstone is (compaction then removes it for good). The partition's dot floor is first
   * raised to the highest counter of this replica's actor among them and stored, so that if the
   * partition comes back, a handoff of these keys' states is not refused as forging this replica's
   * dots, and a key created again never reuses one of those dots.
   */
  dropSlice(partition: number, max: number): number {
    assert(this.ready, 'anti-entropy: a drop before the trees are rebuilt')
    const part = this.partitions.get(partition)
    if (part === undefined) return 0
    const keys = part.tree.someKeys(max)
    const states = keys.map(key => {
      const stored = this.opts.engine.get(key)
      return stored === undefined ? EMPTY : decodeStored(stored).state
    })
    let floor = part.floor
    for (const state of states) floor = Math.max(floor, counterOf(state.vv, this.opts.actor))
    if (floor > part.floor) {
      part.floor = floor
      this.anyFloor = true
      this.persist(floorKey(partition), encodeState({ vv: { [this.opts.actor]: floor }, siblings: [] }), 'drop floor')
    }
    keys.forEach((key, i) => {
      this.persist(key, reapedValue, 'drop')
      const h = keyHash32(key)
      part.tree.remove(h, key, contribution(h, states[i]!))
      part.tombstones.delete(key)
    })
    // Nothing left to exchange or reap here; the floor stays (it outlives the keys on purpose).
    if (part.tree.size === 0) { part.tombstones.clear(); part.lastFull.clear() }
    return keys.length
  }

  // ---- internals ----

  private partitionOf(p: number): Partition {
    let part = this.partitions.get(p)
    if (part === undefined) {
      part = { tree: new TictacTree(), floor: 0, tombstones: new Map(), lastFull: new Map() }
      this.partitions.set(p, part)
    }
    return part
  }

  /** Moves `key` from `prev` (what the tree was last told: the state the write merged into) to `state`. */
  private account(part: Partition, keyHash: number, key: string, prev: DvvSet, state: DvvSet): void {
    part.tree.set(keyHash, key, contribution(keyHash, prev), contribution(keyHash, state))
    if (state.siblings.length > 0 && isDeleted(state)) {
      part.tombstones.delete(key)
      if (part.tombstones.size < limits.tombstonesTrackedPerPartitionMax) part.tombstones.set(key, this.opts.runtime.now())
    } else if (part.tombstones.size > 0) {
      part.tombstones.delete(key)
    }
  }

  private loadFloors(): void {
    let after: string | undefined
    for (let i = 0; i <= limits.partitionsMax; i++) {
      const { entries, cursor } = this.opts.engine.scan(floorPrefix, { limit: limits.aaeRebuildKeysPerSlice, ...(after !== undefined ? { after } : {}) })
      for (const [key, value] of entries) {
        const p = Number(key.slice(floorPrefix.length))
        if (!Number.isInteger(p)) continue
        const floor = counterOf(decodeStored(value).state.vv, this.opts.actor)
        this.partitionOf(p).floor = floor
        if (floor > 0) this.anyFloor = true
      }
      if (cursor === undefined) return
      after = cursor
    }
  }

  private async rebuild(): Promise<void> {
    const started = this.opts.runtime.now()
    const partitions = this.opts.ring().partitions
    let after: string | undefined
    let keys = 0
    for (;;) {
      if (this.closed) return
      const { entries, cursor } = this.opts.engine.scan('', { limit: limits.aaeRebuildKeysPerSlice, ...(after !== undefined ? { after } : {}) })
      for (const [key, value] of entries) {
        if (key.startsWith('\u0000')) continue
        const { state } = decodeStored(value)
        if (state.siblings.length === 0) continue
        const h = keyHash32(key)
        // The scan reaches each key once, and writes to it before then were not accounted (onWrite).
        this.account(this.partitionOf(partitionOfHash(h, partitions)), h, key, EMPTY, state)
        keys++
      }
      if (cursor === undefined) break
      after = cursor
      this.rebuiltThrough = cursor
      // Yield between slices: foreground requests run meanwhile.
      await new Promise<void>(ok => this.opts.runtime.setTimeout(ok, 0, { background: true }))
    }
    this.ready = true
    this.opts.log('anti-entropy: trees rebuilt', { keys, partitions: this.partitions.size, ms: this.opts.runtime.now() - started })
  }

  private primaryPartitions(): number[] {
    const ring = this.opts.ring()
    const out: number[] = []
    for (let p = 0; p < ring.partitions; p++) if (preferenceListOfPartition(ring, p).primaries.includes(this.opts.nodeId)) out.push(p)
    return out
  }

  private peersOf(partition: number): string[] {
    return preferenceListOfPartition(this.opts.ring(), partition).primaries.filter(n => n !== this.opts.nodeId)
  }

  /** Per peer, the partitions of which both it and this replica are primaries (cached per ring). */
  private sharedWith(): Map<string, number[]> {
    const ring = this.opts.ring()
    if (this.shared?.ring === ring) return this.shared.peers
    const peers = new Map<string, number[]>()
    for (let p = 0; p < ring.partitions; p++) {
      const primaries = preferenceListOfPartition(ring, p).primaries
      if (!primaries.includes(this.opts.nodeId)) continue
      for (const n of primaries) {
        if (n === this.opts.nodeId) continue
        let list = peers.get(n)
        if (list === undefined) { list = []; peers.set(n, list) }
        list.push(p)
      }
    }
    this.shared = { ring, peers }
    return peers
  }

  /**
   * One sweep of the periodic loop: the roots of every partition this replica shares with the next
   * reachable peer (round robin over peers), aaeRootsPerRequestMax partitions to a request. A
   * partition whose roots are equal counts as a clean exchange (its full-pass time is set and its
   * due tombstones reaped); one whose roots differ is queued for a full exchange. So an idle
   * cluster sends one small request per replica per sweep interval, and exchanges run only where
   * the trees differ.
   */
  async sweep(): Promise<void> {
    const peers = this.sharedWith()
    const names = [...peers.keys()].sort()
    let peer: string | undefined
    for (let i = 0; i < names.length && peer === undefined; i++) {
      const candidate = names[this.cursor++ % names.length]!
      if (this.opts.isReachable(candidate)) peer = candidate
    }
    if (peer === undefined) return
    const shared = peers.get(peer)!
    const conn = this.opts.peer(peer)
    const width = limits.aaeTreeWidth
    for (let i = 0; i < shared.length; i += limits.aaeRootsPerRequestMax) {
      const chunk = shared.slice(i, i + limits.aaeRootsPerRequestMax)
      const startedAt = this.opts.runtime.now()
      const reply = await conn.request('aaeRoots', { partitions: chunk, shape: treeShape })
      this.counters.bytes += reply.roots.byteLength
      if (reply.roots.byteLength !== chunk.length * width * 4) throw protocolError(peer, `${reply.roots.byteLength} bytes of roots for ${chunk.length} partitions`)
      const theirs = bytesToWords(reply.roots)
      for (let j = 0; j < chunk.length; j++) {
        const partition = chunk[j]!
        const part = this.partitionOf(partition)
        const branches = differing(part.tree.branches, theirs.subarray(j * width, (j + 1) * width))
        if (branches.length > 0) {
          if (this.differing.length < limits.aaeRepairQueueMax) this.differing.push({ partition, peer, confirm: { branches, seenAt: startedAt } })
          continue
        }
        this.counters.exchanges.clean++
        part.lastFull.set(peer, startedAt)
        if (part.tombstones.size > 0) this.reapLogged(partition)
      }
    }
  }

  private reapLogged(partition: number): void {
    try { this.reap(partition) } catch (e) { this.opts.log('anti-entropy: reap failed', { partition, error: (e as Error)?.message }) }
  }

  private schedule(ms = this.opts.intervalMs ?? limits.aaeExchangeIntervalMs): void {
    if (this.closed) return
    this.timer = this.opts.runtime.setTimeout(() => this.kick(), ms, { background: true })
  }

  /**
   * Runs the next exchange (an on-demand repair's first, then partitions the last sweep found
   * differing) or, with none left, the next sweep; one at a time. Then schedules the one after:
   * queued repairs at once, exchanges after the exchange interval, and after a sweep that found
   * nothing, the sweep interval.
   */
  private kick(): void {
    if (this.running || this.closed || !this.ready) return
    this.opts.runtime.clearTimeout(this.timer)
    // A difference a sweep saw is compared again only once it has had time to settle.
    const due = this.queue.length === 0 ? this.differing[0]?.confirm : undefined
    const wait = due === undefined ? 0 : due.seenAt + limits.aaeConfirmDelayMs - this.opts.runtime.now()
    if (wait > 0) { this.schedule(wait); return }
    const next = this.queue.shift() ?? this.differing.shift()
    if (next === undefined) {
      const interval = this.opts.intervalMs ?? limits.aaeExchangeIntervalMs
      this.running = this.sweep().catch(e => {
        this.counters.exchanges.failed++
        this.opts.log('anti-entropy: sweep failed', { error: (e as Error)?.message })
      }).then(() => {
        this.running = undefined
        if (this.queue.length > 0) this.kick()
        else this.schedule(this.differing.length > 0 ? interval : Math.max(interval, this.opts.sweepIntervalMs ?? limits.aaeSweepIntervalMs))
      })
      return
    }
    this.running = this.exchange(next.partition, next.peer, next.confirm?.branches).then(
      r => { if (next.job) { next.job.keysRepaired += r.keysRepaired; if (!r.full) next.job.failed++ } },
      e => {
        this.counters.exchanges.failed++
        if (next.job) next.job.failed++
        this.opts.log('anti-entropy: exchange failed', { partition: next.partition, peer: next.peer, error: (e as Error)?.message })
      },
    ).then(() => {
      this.reapLogged(next.partition)
      if (next.job) {
        next.job.done++
        if (next.job.done >= next.job.total) next.job.finishedAt = this.opts.runtime.now()
      }
      this.running = undefined
      // Queued repairs go on at once; the periodic loop waits its interval.
      if (this.queue.length > 0) this.kick(); else this.schedule()
    })
  }
}

const encoder = new TextEncoder()
/** The root of a partition holding no key. */
const emptyRoot = new Uint32Array(limits.aaeTreeWidth)

/** A reply body as the sender writes it: keys as UTF-8 bytes (zod's input side of the schema). */
type RequestBodyOf<T extends AaeRequestType> = Wire<z.input<(typeof replySchemas)[T]>>

function protocolError(peer: string, what: string): KvError {
  return new KvError({ kind: 'ProtocolError', detail: what.slice(0, 512) }, `anti-entropy peer ${peer} ${what}; nothing from this reply was merged`)
}

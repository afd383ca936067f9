// The replica's membership runtime: owns the Membership (coordinator/membership/membership.ts) and
// does its I/O. Every gossip interval it sends the cluster state to one random peer over the data
// plane (a `gossip` request on an outbound connection) and merges the reply; it answers the gossip
// peers send (at most gossipReceivedPerSecMax a second); it runs the transfers the claimant's plan
// gives this replica (handoff, at most transfersInflightMax at once) and reports each one done in
// its own member entry; once the ring has switched it stops forwarding for them; and when this
// replica has left (or was removed) it tells a few peers and says so to its owner, which exits.
//
// It decides, for the data plane, whether a key is this replica's to serve (NotOwner otherwise);
// for the partition drop (replica/handoff/partition-drop.ts), whether it still holds a partition
// and whether a peer has confirmed its view since start; and exports the failure detector's verdict
// as isReachable(node) for hinted handoff and anti-entropy. Time, timers, randomness and sockets come from the injected Runtime.

import { KvError } from '../../coordinator/errors.ts'
import { limits } from '../../coordinator/limits.ts'
import { claimantOf } from '../../coordinator/membership/claimant.ts'
import {
  emptyState, initialState, memberOf, mergeStates, withMember, type ClusterState, type Plan,
} from '../../coordinator/membership/cluster-state.ts'
import { Membership } from '../../coordinator/membership/membership.ts'
import type { ParsedRequest } from '../../coordinator/protocol/messages.ts'
import { partitionOf, preferenceListOfPartition, type Ring } from '../../coordinator/ring/ring.ts'
import type { Runtime } from '../../coordinator/runtime.ts'
import { Connection } from '../../coordinator/transport/connection.ts'
import { ConnectionPool } from '../../coordinator/transport/connection-pool.ts'
import type { MembershipHooks } from '../replica-service.ts'

/** What membership needs from partition handoff (replica/handoff/handoff-manager.ts). */
export interface Handoff {
  transfer(req: { readonly partition: number; readonly to: string; readonly toUrl: string }): Promise<void>
  stopForwarding(partition: number, to: string): void
}

export interface MembershipServiceOptions {
  readonly self: string
  readonly url: string
  readonly runtime: Runtime
  readonly gossipIntervalMs: number
  readonly phiThreshold: number
  /** A static start: the ring every node of `--nodes` computes. Without it the replica joins. */
  readonly ring?: Ring
  /**
   * The state this replica saved before its last stop (membership-file.ts): merged with the static
   * ring (the newer entry wins), and the replica starts from it rather than trusting its first peer.
   */
  readonly saved?: ClusterState
  /** Called with the state after every change, to save it (membership-file.ts). */
  readonly save?: (state: ClusterState) => void
  readonly handoff: Handoff
  readonly log: (msg: string, fields?: Record<string, unknown>) => void
  /** This replica has left the cluster (or was removed): its owner shuts it down. */
  readonly onGone: (status: 'left' | 'removed') => void
  /**
   * Token said in `hello` on gossip and join connections: the cluster secret when the replicas run
   * with an auth file (gossip needs the 'peer' role, messages.ts requestRoles).
   */
  readonly token?: string
  /**
   * Called after the view changed (members or ring), and when a peer is first heard from since
   * start: the partition drop (replica/handoff/partition-drop.ts) looks again then.
   */
  readonly onView?: () => void
}

export interface MembershipCounters {
  gossipSent: number
  gossipFailed: number
  gossipReceived: number
  gossipRefused: number
  gossipOverloaded: number
  transfersStarted: number
  transfersDone: number
  transfersFailed: number
}

export interface MemberView {
  readonly node: string
  readonly url: string
  readonly status: string
  readonly reachable: boolean
  readonly phi: number
  readonly partitions: number
  readonly transfersPending: number
}

export class MembershipService implements MembershipHooks {
  readonly membership: Membership
  readonly counters: MembershipCounters = { gossipSent: 0, gossipFailed: 0, gossipReceived: 0, gossipRefused: 0, gossipOverloaded: 0, transfersStarted: 0, transfersDone: 0, transfersFailed: 0 }
  private readonly pool: ConnectionPool
  private timer: unknown
  private closed = false
  private gone = false
  /** Gossip messages answered in the current second (the incoming rate limit). */
  private window = { at: 0, count: 0 }
  /** Transfers of the current plan this replica sends: running, or waiting to retry until. */
  private readonly running = new Set<number>()
  private readonly retryAt = new Map<number, number>()
  /** The plan whose transfers this replica sent, until the ring has switched away from it. */
  private forwarding: Plan | undefined
  private ownershipCache: { state: ClusterState; ring: Ring | undefined; planRing: Ring | undefined; receiving: Set<number>; sending: Set<number> } | undefined
  /**
   * A peer's state has been merged since this process started (an answered gossip either way, or
   * the join): until then the view may be a stale MEMBERSHIP.json, and nothing is dropped on it.
   */
  private heard = false

  constructor(private readonly opts: MembershipServiceOptions) {
    const phi = { samplesMax: limits.phiSamplesMax, minStdMs: limits.phiMinStdMs, acceptablePauseMs: limits.phiAcceptablePauseMs, firstIntervalMs: opts.gossipIntervalMs || limits.gossipIntervalMsDefault }
    const fresh: ClusterState = opts.ring
      ? initialState(opts.ring)
      : { members: [{ id: opts.self, url: opts.url, status: 'joining', gen: 1, done: null }], heartbeats: [], ring: null }
    const saved = opts.saved
    let initial = saved === undefined ? fresh : mergeStates(opts.ring ? fresh : emptyState, saved)
    const me = memberOf(initial, opts.self)
    if (me !== undefined && (me.status === 'left' || me.status === 'removed')) {
      throw new KvError({ kind: 'BadRequest', issues: [`${opts.self} has ${me.status} the cluster`] },
        `${opts.self} has ${me.status === 'left' ? 'left' : 'been removed from'} the cluster (its saved membership says so): start a new node under a new id and data dir`)
    }
    // Restarted at another address: its own entry says where it is now.
    if (me !== undefined && me.url !== opts.url) initial = withMember(initial, { ...me, url: opts.url })
    this.membership = new Membership({
      self: opts.self, url: opts.url, now: opts.runtime.now, random: opts.runtime.random, initial,
      // Trusting its first peer even with a saved state: members may have joined while it was down,
      // and a ring naming them would otherwise be refused as unknown nodes claiming partitions.
      phiThreshold: opts.phiThreshold, phi, trusting: true,
    })
    this.pool = new ConnectionPool(opts.runtime, { client: `gossip:${opts.self}`, perReplica: 1, ...(opts.token !== undefined ? { token: opts.token } : {}) })
    this.membership.onChange(s => this.changed(s))
    this.changed(this.membership.state)
  }

  /** The ring the data plane serves. */
  ring(): Ring {
    const r = this.membership.ring()
    if (r === undefined) throw new KvError({ kind: 'Unavailable', node: this.opts.self }, `${this.opts.self} has not learned the ring yet`)
    return r
  }

  readonly isReachable = (node: string): boolean => this.membership.isReachable(node)

  /** Starts the gossip loop (not when gossipIntervalMs is 0: gossip off, membership as started). */
  start(): void {
    if (this.opts.gossipIntervalMs > 0) this.schedule()
  }

  /**
   * Joins through `seedUrl`: exchanges gossip with it until this replica knows the ring (it is then
   * a `joining` member everywhere the seed's gossip reaches). Rejects after limits.joinTimeoutMs.
   */
  async join(seedUrl: string): Promise<void> {
    const rt = this.opts.runtime
    const deadline = rt.now() + limits.joinTimeoutMs
    const conn = new Connection('seed', seedUrl, rt, { client: `join:${this.opts.self}`, ...(this.opts.token !== undefined ? { token: this.opts.token } : {}) })
    let last: unknown
    try {
      while (rt.now() < deadline && !this.closed) {
        try {
          const reply = await conn.request('gossip', { from: this.opts.self, state: this.membership.state }, limits.gossipTimeoutMs)
          const state = reply.state as unknown as ClusterState
          this.membership.receive(state, claimantOf(state) ?? 'seed')
          if (this.membership.ring() !== undefined) { this.heardFromPeer(); return }
        } catch (e) {
          last = e
          // A refusal (a duplicate id, a removed node, a cluster secret the seed does not know) will
          // not change by asking again.
          if (e instanceof KvError && (e.kind === 'BadRequest' || e.kind === 'Unauthorized' || e.kind === 'Forbidden')) throw e
        }
        await new Promise<void>(ok => rt.setTimeout(ok, Math.min(limits.gossipTimeoutMs, Math.max(1, deadline - rt.now()))))
      }
    } finally {
      conn.close()
    }
    throw new KvError({ kind: 'Unavailable' }, `could not join through ${seedUrl} within ${limits.joinTimeoutMs} ms: ${(last as Error)?.message ?? 'no answer'}`, { cause: last })
  }

  /** True once this replica owns partitions in the ring (a joiner: once its join has completed). */
  isMember(): boolean {
    return this.membership.ring()?.owners.includes(this.opts.self) ?? false
  }

  // ---- MembershipHooks (the data plane) ----

  admitGossip(): KvError | undefined {
    const now = this.opts.runtime.now()
    if (now - this.window.at >= msPerSecond) this.window = { at: now, count: 0 }
    if (++this.window.count <= limits.gossipReceivedPerSecMax) return undefined
    this.counters.gossipOverloaded++
    return new KvError({ kind: 'Overloaded', retryAfterMs: limits.gossipIntervalMsMin }, `over ${limits.gossipReceivedPerSecMax} gossip messages a second`)
  }

  gossip(body: ParsedRequest<'gossip'>): ParsedRequest<'gossip'>['state'] {
    try {
      const merged = this.membership.receive(body.state as unknown as ClusterState, body.from)
      this.counters.gossipReceived++
      this.heardFromPeer()
      return merged
    } catch (e) {
      this.counters.gossipRefused++
      throw e
    }
  }

  ownership(key: string, hintFor: string | undefined): KvError | undefined {
    if (hintFor !== undefined) return undefined
    const c = this.ownershipView()
    const ring = c.ring
    if (ring === undefined) return undefined
    // Every node holds every key (N or fewer nodes, nothing moving): no hashing on the hot path.
    if (c.planRing === undefined && ring.nodes.length <= ring.n) return undefined
    const p = partitionOf(ring, key)
    const self = this.opts.self
    if (preferenceListOfPartition(ring, p).primaries.includes(self)) return undefined
    if (c.receiving.has(p)) return undefined
    if (c.planRing !== undefined && preferenceListOfPartition(c.planRing, p).primaries.includes(self)) return undefined
    return new KvError({ kind: 'NotOwner', ringVersion: ring.version, partition: p },
      `${self} does not hold partition ${p} under ring version ${ring.version}: fetch the ring and retry`)
  }

  /**
   * Whether this replica holds `partition` in its view: a primary of it, receiving it, a primary in
   * the plan in progress, or sending it in that plan. Without a ring, every partition (nothing is
   * known to be someone else's).
   */
  holds(partition: number): boolean {
    const c = this.ownershipView()
    const ring = c.ring
    if (ring === undefined) return true
    const self = this.opts.self
    if (preferenceListOfPartition(ring, partition).primaries.includes(self)) return true
    if (c.receiving.has(partition) || c.sending.has(partition)) return true
    return c.planRing !== undefined && preferenceListOfPartition(c.planRing, partition).primaries.includes(self)
  }

  /** The ring version of this view once a peer has confirmed it since start (see `heard`). */
  confirmedRingVersion(): number | undefined {
    return this.heard ? this.membership.ring()?.version : undefined
  }

  private heardFromPeer(): void {
    if (this.heard) return
    this.heard = true
    this.opts.onView?.()
  }

  // ---- Views for /members, /health, /metrics ----

  members(): MemberView[] {
    const s = this.membership.state
    const owned = new Map<string, number>()
    for (const o of s.ring?.owners ?? []) owned.set(o, (owned.get(o) ?? 0) + 1)
    const pending = new Map<string, number>()
    const plan = s.ring?.plan
    if (plan) {
      const done = new Map(s.members.map(m => [m.id, m.done !== null && m.done.plan === plan.version ? new Set(m.done.transfers) : new Set<number>()]))
      plan.transfers.forEach((t, i) => { if (!done.get(t.from)?.has(i)) pending.set(t.from, (pending.get(t.from) ?? 0) + 1) })
    }
    return s.members.map(m => ({
      node: m.id, url: m.url, status: m.status,
      reachable: m.status === 'left' || m.status === 'removed' ? false : this.membership.isReachable(m.id),
      phi: round(this.membership.phi(m.id)),
      partitions: owned.get(m.id) ?? 0,
      transfersPending: pending.get(m.id) ?? 0,
    }))
  }

  ringSummary(): Record<string, unknown> {
    const r = this.membership.state.ring
    if (r === null) return { version: 0 }
    const plan = r.plan
    return {
      version: r.version, claimant: r.claimant, partitions: r.partitions, n: r.n,
      plan: plan === null ? null : { version: plan.version, transfers: plan.transfers.length, done: this.doneCount(plan) },
    }
  }

  /** The plan's transfers, each with whether its sender reported it done. */
  transfers(): Array<{ partition: number; from: string; to: string; done: boolean }> {
    const plan = this.membership.state.ring?.plan
    if (!plan) return []
    const s = this.membership.state
    return plan.transfers.map((t, i) => {
      const d = memberOf(s, t.from)?.done
      return { ...t, done: d !== null && d !== undefined && d.plan === plan.version && d.transfers.includes(i) }
    })
  }

  setStatus(node: string, status: 'leaving' | 'removed'): void {
    this.membership.setStatus(node, status)
    this.opts.log(status === 'leaving' ? 'leave requested' : 'node removed', { node })
  }

  close(): void {
    this.closed = true
    this.opts.runtime.clearTimeout(this.timer)
    this.pool.close()
  }

  // ---- The loop ----

  private schedule(): void {
    if (this.closed) return
    this.timer = this.opts.runtime.setTimeout(() => this.round(), this.opts.gossipIntervalMs, { background: true })
  }

  private round(): void {
    if (this.closed) return
    try {
      const peer = this.membership.tick()
      if (peer !== undefined) this.gossipWith(peer)
      this.runTransfers()
    } catch (e) {
      this.opts.log('gossip round failed', { error: (e as Error).message })
    }
    this.schedule()
  }

  private gossipWith(peer: string): Promise<void> {
    const conn = this.pool.get(peer)
    if (conn === undefined) return Promise.resolve()
    this.counters.gossipSent++
    return conn.request('gossip', { from: this.opts.self, state: this.membership.state }, limits.gossipTimeoutMs).then(
      reply => {
        try {
          this.membership.receive(reply.state as unknown as ClusterState, peer)
          this.heardFromPeer()
        } catch (e) {
          this.counters.gossipRefused++
          this.opts.log('gossip reply refused', { peer, error: (e as Error).message })
        }
      },
      e => {
        this.counters.gossipFailed++
        // A peer that already counts this replica as left (or removed) refuses its gossip and no
        // longer gossips to it, so the refusal is how a leaving replica learns that it is done.
        const issues = e instanceof KvError && e.kind === 'BadRequest' ? (e.data as { issues?: readonly string[] }).issues ?? [] : []
        for (const status of ['left', 'removed'] as const) {
          if (!this.gone && issues.includes(`gossip: ${this.opts.self} has ${status} the cluster`)) {
            this.gone = true
            this.opts.log(status === 'left' ? 'left the cluster' : 'removed from the cluster', { peer })
            this.opts.onGone(status)
          }
        }
      })
  }

  private changed(s: ClusterState): void {
    this.ownershipCache = undefined
    this.opts.save?.(s)
    this.pool.setNodes(s.members.filter(m => m.id !== this.opts.self && m.status !== 'left' && m.status !== 'removed').map(m => ({ id: m.id, url: m.url })))
    const plan = s.ring?.plan ?? null
    // The ring switched away from the plan this replica sent for: stop forwarding its writes.
    if (this.forwarding !== undefined && plan?.version !== this.forwarding.version) {
      const old = this.forwarding
      this.forwarding = undefined
      this.running.clear()
      this.retryAt.clear()
      for (const t of old.transfers) {
        if (t.from !== this.opts.self) continue
        try { this.opts.handoff.stopForwarding(t.partition, t.to) } catch (e) { this.opts.log('stopForwarding failed', { partition: t.partition, to: t.to, error: (e as Error).message }) }
      }
    }
    if (plan !== null && plan.transfers.some(t => t.from === this.opts.self)) this.forwarding = plan
    const me = memberOf(s, this.opts.self)
    if (!this.gone && me !== undefined && (me.status === 'left' || me.status === 'removed')) {
      this.gone = true
      this.farewell(me.status)
    }
    if (!this.closed) this.runTransfers()
    this.opts.onView?.()
  }

  private farewell(status: 'left' | 'removed'): void {
    this.opts.log(status === 'left' ? 'left the cluster' : 'removed from the cluster', {})
    const peers = this.membership.state.members.filter(m => m.id !== this.opts.self && m.status !== 'left' && m.status !== 'removed').slice(0, limits.leaveFarewellPeers)
    void Promise.allSettled(peers.map(p => this.gossipWith(p.id))).then(() => this.opts.onGone(status))
  }

  /** Starts this replica's transfers of the current plan, up to transfersInflightMax at once. */
  private runTransfers(): void {
    const s = this.membership.state
    const plan = s.ring?.plan
    if (!plan || this.gone) return
    const me = memberOf(s, this.opts.self)
    const done = new Set(me?.done?.plan === plan.version ? me.done.transfers : [])
    const now = this.opts.runtime.now()
    for (let i = 0; i < plan.transfers.length && this.running.size < limits.transfersInflightMax; i++) {
      const t = plan.transfers[i]!
      if (t.from !== this.opts.self || done.has(i) || this.running.has(i) || (this.retryAt.get(i) ?? 0) > now) continue
      const to = memberOf(s, t.to)
      if (to === undefined) continue
      this.running.add(i)
      this.counters.transfersStarted++
      const version = plan.version
      this.opts.handoff.transfer({ partition: t.partition, to: t.to, toUrl: to.url }).then(
        () => this.transferDone(version, i),
        e => {
          this.counters.transfersFailed++
          this.running.delete(i)
          this.retryAt.set(i, this.opts.runtime.now() + limits.transferRetryMs)
          this.opts.log('transfer failed; will retry', { partition: t.partition, to: t.to, error: (e as Error)?.message })
        })
    }
  }

  private transferDone(planVersion: number, index: number): void {
    this.running.delete(index)
    this.counters.transfersDone++
    this.membership.update(s => {
      if (s.ring?.plan?.version !== planVersion) return s
      const me = memberOf(s, this.opts.self)
      if (me === undefined) return s
      const had = me.done?.plan === planVersion ? me.done.transfers : []
      if (had.includes(index)) return s
      return withMember(s, { ...me, done: { plan: planVersion, transfers: [...had, index].sort((a, b) => a - b) } })
    })
  }

  private doneCount(plan: Plan): number {
    void plan
    return this.transfers().filter(t => t.done).length
  }

  private ownershipView(): NonNullable<MembershipService['ownershipCache']> {
    const s = this.membership.state
    const c = this.ownershipCache
    if (c !== undefined && c.state === s) return c
    const ring = this.membership.ring()
    const plan = s.ring?.plan
    const receiving = new Set<number>()
    const sending = new Set<number>()
    let planRing: Ring | undefined
    if (plan && ring) {
      for (const t of plan.transfers) {
        if (t.to === this.opts.self) receiving.add(t.partition)
        if (t.from === this.opts.self) sending.add(t.partition)
      }
      planRing = { version: ring.version, partitions: ring.partitions, n: ring.n, nodes: [...new Set(plan.owners)].sort().map(id => ({ id, url: '' })), owners: plan.owners }
    }
    const view = { state: s, ring, planRing, receiving, sending }
    this.ownershipCache = view
    return view
  }
}

const msPerSecond = 1000

/** phi for JSON: two decimals, and a long-dead peer's Infinity as limits.phiShownMax. */
function round(x: number): number {
  return Number.isFinite(x) ? Math.min(limits.phiShownMax, Math.round(x * 100) / 100) : limits.phiShownMax
}

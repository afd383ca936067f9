// One replica's view of the cluster, transport-free: the gossiped state (cluster-state.ts), a
// phi-accrual detector per peer (phi-detector.ts) fed by that peer's heartbeat rising in gossip, and
// the claimant's step (claimant.ts) when this replica is the claimant. The replica's gossip loop
// (replica/membership/membership-service.ts) calls tick() every gossip interval and sends the state
// to the peer it names, and passes what peers send to receive(); a simulator drives the same object
// with its own clock and random source (coordinator/membership/gossip-sim.test.ts).

import { KvError, badRequest } from '../errors.ts'
import { limits } from '../limits.ts'
import type { Ring } from '../ring/ring.ts'
import { claimantStep } from './claimant.ts'
import {
  checkIncoming, heartbeatOf, memberOf, mergeStates, ringOf, statesEqual, withHeartbeat, withMember,
  type ClusterState, type Member,
} from './cluster-state.ts'
import { PhiDetector, type PhiOptions } from './phi-detector.ts'

export interface MembershipOptions {
  readonly self: string
  readonly url: string
  readonly now: () => number
  readonly random: () => number
  readonly initial: ClusterState
  readonly phiThreshold: number
  readonly phi: PhiOptions
  /** false: never act as claimant (the simulator measures dissemination alone). */
  readonly plan?: boolean
  /**
   * The replica has no state of its own yet (a join, or a static start that has not heard from
   * anyone): it takes the first state a peer gives it whole, as a joiner adopts its seed's ring.
   */
  readonly trusting?: boolean
}

export class Membership {
  private current: ClusterState
  private readonly detectors = new Map<string, PhiDetector>()
  private readonly heard = new Map<string, number>()
  private trusting: boolean
  private ringCache: { version: number; ring: Ring | undefined; state: ClusterState } | undefined
  private readonly listeners: Array<(s: ClusterState) => void> = []

  constructor(private readonly opts: MembershipOptions) {
    this.current = opts.initial
    this.trusting = opts.trusting ?? false
  }

  get state(): ClusterState { return this.current }
  get self(): string { return this.opts.self }

  /** Called after every change of the state. */
  onChange(fn: (s: ClusterState) => void): void { this.listeners.push(fn) }

  /** The ring the data plane serves now (undefined until one is known). */
  ring(): Ring | undefined {
    const c = this.ringCache
    if (c !== undefined && c.state === this.current) return c.ring
    const version = this.current.ring?.version ?? 0
    // The Ring object stays the same while the ring does (preference lists are cached per object).
    if (c !== undefined && c.version === version && sameUrls(c.ring, this.current)) {
      this.ringCache = { ...c, state: this.current }
      return c.ring
    }
    const ring = ringOf(this.current)
    this.ringCache = { version, ring, state: this.current }
    return ring
  }

  /**
   * One gossip round: bump this replica's heartbeat, let the claimant act, and name the peer to
   * gossip with (uniformly at random among members that are neither this one nor gone).
   */
  tick(): string | undefined {
    let next = withHeartbeat(this.current, this.opts.self)
    if (this.opts.plan !== false) next = claimantStep(next, this.opts.self) ?? next
    this.set(next)
    const peers = this.current.members.filter(m => m.id !== this.opts.self && m.status !== 'left' && m.status !== 'removed' && m.url !== '')
    if (peers.length === 0) return undefined
    return peers[Math.min(peers.length - 1, Math.floor(this.opts.random() * peers.length))]!.id
  }

  /**
   * A peer's state arrived (`from` names the sender). Checks it, merges it, and returns the merged
   * state (the reply of a push-pull exchange). Throws KvError BadRequest when the state is refused
   * (nothing changes then).
   */
  receive(incoming: ClusterState, from: string): ClusterState {
    const sender = memberOf(incoming, from)
    if (sender === undefined) throw badRequest(`gossip: the sender ${from} is not in the state it sent`)
    const known = memberOf(this.current, from)
    if (known !== undefined && (known.status === 'removed' || known.status === 'left') && from !== this.opts.self) {
      throw new KvError({ kind: 'BadRequest', issues: [`gossip: ${from} has ${known.status} the cluster`] },
        `gossip refused: ${from} has ${known.status} the cluster; a node that left or was removed must join again under a new id`)
    }
    if (known !== undefined && known.url !== sender.url && known.status !== 'left' && known.status !== 'removed') {
      throw new KvError({ kind: 'BadRequest', issues: [`gossip: node id ${from} is already a member at ${known.url}`] },
        `node id ${JSON.stringify(from)} is already a member of this cluster at ${known.url} (this one says ${sender.url}): ids must be unique`)
    }
    checkIncoming(this.current, incoming, this.trusting)
    this.trusting = false
    const now = this.opts.now()
    const before = this.current
    let next = mergeStates(before, incoming)
    // Another replica may have changed this one's entry (the claimant making it valid); keep its url.
    const mine = memberOf(next, this.opts.self)
    if (mine !== undefined && mine.url !== this.opts.url && mine.status !== 'removed' && mine.status !== 'left') {
      next = withMember(next, { ...mine, url: this.opts.url })
    }
    for (const [id, beat] of next.heartbeats) {
      if (id === this.opts.self) continue
      const had = this.heard.get(id) ?? heartbeatOf(before, id)
      if (beat > had || !this.detectors.has(id)) {
        this.heard.set(id, beat)
        if (beat > had) this.detector(id).heartbeat(now)
      }
    }
    if (this.opts.plan !== false) next = claimantStep(next, this.opts.self) ?? next
    this.set(next)
    return this.current
  }

  /** Applies a local change (an operator's leave or remove, a transfer done). */
  update(fn: (s: ClusterState) => ClusterState): void {
    this.set(fn(this.current))
  }

  /** Sets member `id`'s status (leave, remove), as an operator asked this replica to. */
  setStatus(id: string, status: 'leaving' | 'removed'): Member {
    const m = memberOf(this.current, id)
    if (m === undefined) throw badRequest(`${id} is not a member of this cluster`)
    if (m.status === 'left' || m.status === 'removed') throw badRequest(`${id} has already ${m.status === 'left' ? 'left' : 'been removed'}`)
    if (status === 'leaving' && m.status === 'leaving') return m
    if (status === 'leaving' && m.status === 'joining') throw badRequest(`${id} is still joining: let it finish, or remove it`)
    const next = withMember(this.current, { ...m, status })
    this.set(next)
    return memberOf(next, id)!
  }

  /** phi of `node` now (0 for this replica and for nodes never heard from). */
  phi(node: string): number {
    if (node === this.opts.self) return 0
    return this.detectors.get(node)?.phi(this.opts.now()) ?? 0
  }

  /** The failure detector's verdict: phi below the threshold. Hints and anti-entropy take this. */
  readonly isReachable = (node: string): boolean => node === this.opts.self || this.phi(node) < this.opts.phiThreshold

  private detector(id: string): PhiDetector {
    let d = this.detectors.get(id)
    if (d === undefined) {
      if (this.detectors.size >= limits.ringNodesMax) return new PhiDetector(this.opts.phi)
      d = new PhiDetector(this.opts.phi)
      this.detectors.set(id, d)
    }
    return d
  }

  private set(next: ClusterState): void {
    if (next === this.current || statesEqual(next, this.current)) return
    this.current = next
    for (const fn of this.listeners) fn(next)
  }
}

function sameUrls(ring: Ring | undefined, state: ClusterState): boolean {
  if (ring === undefined) return state.ring === null
  return ring.nodes.every(n => memberOf(state, n.id)?.url === n.url) && ring.owners === state.ring?.owners
}

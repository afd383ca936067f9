// The write side of Dynamo's quorum (DeCandia et al. 2007, section 4.5), as a pure state machine:
// the driver feeds it replies and failures, it answers with the sends to make next and its outcome.
//
// A write takes two round trips, as a Dynamo coordinator forwarding to the stamping node would:
//   1. `stamp` at the first reachable target: that replica makes the dot, applies DVV update, logs it
//      and returns the new state. If it fails, the next target stamps instead.
//   2. `replicate` that state to every other target in parallel.
// With an early stamp (docs/protocol.md) the stamping replica answers twice: its state as soon as it
// is in the memtable (onStamped with durable false), and its durable ack (onStampDurable). The
// replicates go out on the first answer, so the stamp's fsync and the replicates overlap; the stamper
// counts toward W only on the second. Once its state is out, a stamp that fails cannot move to
// another primary (the write would get two dots): it fails as a replicate does, and its slot goes
// to a fallback that takes the state.
// Targets are the N preference-list slots, chosen by sloppyTargets (ring/preference-list.ts, the one
// fallback choice reads share). With a sloppy quorum a slot whose primary is down (or fails) is
// refilled by the next unused fallback, which carries a hint naming the primary; its ack counts
// toward W. Only a primary stamps: a fallback keeps hints, not the key, so after handing them off it
// could no longer know which dots it issued for the key (docs/hints.md); with no primary left to
// stamp at, the write fails. Success is W durable acks (the stamper's counts once durable); otherwise QuorumError says how
// many acked, and names every target that did not ack with why (its error, a timeout, known down and
// skipped, or not asked). Acks that arrive after the outcome are still recorded (the write spreads
// further).

import { assert } from '../assert.ts'
import { KvError, QuorumError } from '../errors.ts'
import { sloppyTargets } from '../ring/preference-list.ts'
import type { DvvSet } from '../version/dvv.ts'

export interface WriteTarget { readonly node: string; readonly hintFor?: string }

export type WriteAction =
  | { readonly kind: 'stamp'; readonly target: WriteTarget }
  | { readonly kind: 'replicate'; readonly target: WriteTarget; readonly state: DvvSet }

export type WriteOutcome =
  | { readonly status: 'pending' }
  | { readonly status: 'ok'; readonly state: DvvSet; readonly acked: readonly string[] }
  | { readonly status: 'failed'; readonly error: QuorumError }

interface Slot {
  /** The primary this slot belongs to. */
  readonly owner: string
  target: WriteTarget | undefined
  /** `stamped`: the stamper's state is known (an early answer), its durable ack is not. */
  phase: 'idle' | 'stamping' | 'stamped' | 'replicating' | 'acked' | 'dead'
}

export interface WriteQuorumOptions {
  readonly w: number
  readonly primaries: readonly string[]
  readonly fallbacks: readonly string[]
  /** Nodes the transport does not know to be down. */
  readonly isUp: (node: string) => boolean
  /** Why the transport knows a node down (named in the QuorumError when the write fails). */
  readonly whyDown?: (node: string) => Error
  readonly sloppy: boolean
}

export class WriteQuorum {
  private readonly slots: Slot[]
  private readonly spareFallbacks: string[]
  private readonly failures = new Map<string, Error>()
  /** Primaries not asked because the transport knows them down. */
  private readonly skipped = new Map<string, Error>()
  /** Every node that was ever a slot's target, in order. */
  private readonly targeted = new Set<string>()
  private state: DvvSet | undefined
  private result: WriteOutcome = { status: 'pending' }

  constructor(private readonly opts: WriteQuorumOptions) {
    assert(opts.w >= 1 && opts.w <= opts.primaries.length, `w=${opts.w} outside 1..${opts.primaries.length}`)
    const chosen = sloppyTargets({ partition: 0, primaries: opts.primaries, fallbacks: opts.fallbacks }, opts.isUp, opts.sloppy)
    this.spareFallbacks = chosen.spare
    for (const owner of chosen.down) {
      this.skipped.set(owner, opts.whyDown?.(owner) ?? new KvError({ kind: 'Unavailable', node: owner }, `${owner} is down (backing off), not asked`))
    }
    this.slots = chosen.slots.map(({ owner, target }) => {
      if (target === undefined) return { owner, target, phase: 'dead' as const }
      this.targeted.add(target.node)
      return { owner, target, phase: 'idle' as const }
    })
  }

  get outcome(): WriteOutcome { return this.result }

  get acked(): string[] {
    return this.slots.filter(s => s.phase === 'acked').map(s => s.target!.node)
  }

  start(): WriteAction[] {
    return this.nextStamp()
  }

  /** The stamper's state; `durable` false when it is an early answer (its ack follows: onStampDurable). */
  onStamped(node: string, state: DvvSet, durable = true): WriteAction[] {
    const slot = this.slotOf(node, 'stamping')
    if (!slot) return []
    slot.phase = durable ? 'acked' : 'stamped'
    this.state = state
    const actions: WriteAction[] = []
    for (const s of this.slots) {
      if (s.phase === 'idle' && s.target) {
        s.phase = 'replicating'
        actions.push({ kind: 'replicate', target: s.target, state })
      }
    }
    this.settle()
    return actions
  }

  /** The stamper that answered early made its write durable. */
  onStampDurable(node: string): WriteAction[] {
    return this.ack(node, 'stamped')
  }

  onReplicated(node: string): WriteAction[] {
    return this.ack(node, 'replicating')
  }

  /** A stamp or replicate to `node` failed (error reply, timeout, connection lost). */
  onFailed(node: string, error: Error = new KvError({ kind: 'Unavailable', node }, `${node}: the request failed`)): WriteAction[] {
    this.failures.set(node, error)
    const slot = this.slots.find(s => s.target?.node === node && (s.phase === 'stamping' || s.phase === 'stamped' || s.phase === 'replicating'))
    if (!slot) return []
    const wasStamping = slot.phase === 'stamping'
    slot.phase = 'idle'
    this.refill(slot)
    let actions: WriteAction[]
    if (wasStamping) {
      actions = this.nextStamp()
    } else if (slot.target && this.state) {
      slot.phase = 'replicating'
      actions = [{ kind: 'replicate', target: slot.target, state: this.state }]
    } else {
      actions = []
    }
    this.settle()
    return actions
  }

  /** The request's deadline (`timeoutMs` after it started) passed: fail now unless W was already met. */
  expire(timeoutMs?: number): void {
    if (this.result.status === 'pending') this.fail(timeoutMs)
  }

  private nextStamp(): WriteAction[] {
    const slot = this.slots.find(isStampable)
    if (!slot) {
      this.settle()
      return []
    }
    slot.phase = 'stamping'
    return [{ kind: 'stamp', target: slot.target! }]
  }

  /** Give a slot whose node is down or failed the next fallback, or mark it dead. */
  private refill(slot: Slot): void {
    const next = this.spareFallbacks.shift()
    if (next === undefined) {
      slot.target = undefined
      slot.phase = 'dead'
    } else {
      slot.target = { node: next, hintFor: slot.owner }
      slot.phase = 'idle'
      this.targeted.add(next)
    }
  }

  /** A durable ack from `node`, whose slot was waiting in `phase`. */
  private ack(node: string, phase: Slot['phase']): WriteAction[] {
    const slot = this.slotOf(node, phase)
    if (!slot) return []
    slot.phase = 'acked'
    this.settle()
    return []
  }

  private slotOf(node: string, phase: Slot['phase']): Slot | undefined {
    return this.slots.find(s => s.target?.node === node && s.phase === phase)
  }

  private settle(): void {
    if (this.result.status !== 'pending') return
    // Counted in one pass without allocating: this runs on every reply of every write.
    let acked = 0
    let inflight = 0
    let idle = 0
    let stampable = 0
    for (const s of this.slots) {
      if (s.phase === 'acked') acked++
      else if (s.phase === 'stamping' || s.phase === 'stamped' || s.phase === 'replicating') inflight++
      else if (s.phase === 'idle' && s.target) { idle++; if (s.target.hintFor === undefined) stampable++ }
    }
    if (acked >= this.opts.w) {
      assert(this.state, 'acks without a stamped state')
      this.result = { status: 'ok', state: this.state, acked: this.acked }
      return
    }
    // Before the stamp, a write waits on a primary to stamp at; after it, on nothing idle.
    const waiting = this.state ? 0 : stampable
    if (inflight === 0 && (waiting === 0 || acked + idle + this.spareFallbacks.length < this.opts.w)) this.fail()
  }

  /** Fails naming every node that was a target (or skipped as down) and did not ack. */
  private fail(expiredAfterMs?: number): void {
    const acked = this.acked
    const failures = new Map<string, Error>(this.skipped)
    for (const node of this.targeted) {
      if (acked.includes(node)) continue
      failures.set(node, this.failures.get(node) ?? this.unanswered(node, expiredAfterMs))
    }
    this.result = { status: 'failed', error: QuorumError.of('write', this.opts.w, acked, failures) }
  }

  /** Why a target that neither acked nor failed did not count. */
  private unanswered(node: string, expiredAfterMs: number | undefined): Error {
    const phase = this.slots.find(s => s.target?.node === node)?.phase
    const asked = phase === 'stamping' || phase === 'stamped' || phase === 'replicating'
    if (expiredAfterMs !== undefined) {
      return new KvError({ kind: 'Timeout', timeoutMs: expiredAfterMs }, asked
        ? `no reply within ${expiredAfterMs} ms`
        : `not asked within ${expiredAfterMs} ms: the write had no stamped state to send it yet`)
    }
    if (asked) return new KvError({ kind: 'Unavailable', node }, `no reply yet when the write gave up: W=${this.opts.w} could no longer be met`)
    return new KvError({ kind: 'Unavailable', node }, this.state
      ? `not asked: W=${this.opts.w} could no longer be met`
      : 'not asked: no primary was left to stamp the write (a fallback keeps hints and never stamps)')
  }
}

/** A slot that may stamp: idle, with a primary as its target (fallbacks never stamp). */
function isStampable(s: Slot): boolean {
  return s.phase === 'idle' && s.target !== undefined && s.target.hintFor === undefined
}

// The read side of Dynamo's quorum (DeCandia et al. 2007, section 4.5) as a pure state machine.
// `get` goes to the N targets at once; the answer is ready when R of them replied (a miss is a
// reply), merged with DVV sync. Replies that arrive later are merged too, and once every target
// answered (or the deadline passed) `repairs()` names the primaries whose state is behind the merge:
// the driver sends them the merged state (read repair), after the caller already has its answer.

import { assert } from '../assert.ts'
import { QuorumError } from '../errors.ts'
import { descends, sync, type DvvSet } from '../version/dvv.ts'

export type ReadOutcome =
  | { readonly status: 'pending' }
  | { readonly status: 'ok'; readonly state: DvvSet | null; readonly replied: readonly string[] }
  | { readonly status: 'failed'; readonly error: QuorumError }

export interface ReadQuorumOptions {
  readonly r: number
  /** Nodes asked, in preference order. */
  readonly targets: readonly string[]
  /** Targets that are primaries (only they are read-repaired; fallbacks are not owners). */
  readonly primaries: ReadonlySet<string>
}

export class ReadQuorum {
  private readonly replies = new Map<string, DvvSet | null>()
  private readonly failed = new Set<string>()
  private readonly failures = new Map<string, Error>()
  private merged: DvvSet | null = null
  private result: ReadOutcome = { status: 'pending' }

  constructor(private readonly opts: ReadQuorumOptions) {
    assert(opts.r >= 1, `r=${opts.r} below 1`)
  }

  get outcome(): ReadOutcome { return this.result }

  /** Every target has answered or failed: nothing more will arrive. */
  get complete(): boolean { return this.replies.size + this.failed.size === this.opts.targets.length }

  start(): string[] {
    const targets = [...this.opts.targets]
    this.settle()
    return targets
  }

  onReply(node: string, state: DvvSet | null): void {
    if (this.replies.has(node) || this.failed.has(node)) return
    this.replies.set(node, state)
    if (state) this.merged = this.merged ? sync(this.merged, state) : state
    this.settle()
  }

  onFailed(node: string, error?: Error): void {
    if (this.replies.has(node)) return
    if (error) this.failures.set(node, error)
    this.failed.add(node)
    this.settle()
  }

  expire(): void {
    if (this.result.status === 'pending') this.fail()
  }

  /** Primaries that replied with a state behind the merge of all replies. */
  repairs(): Array<{ node: string; state: DvvSet }> {
    const merged = this.merged
    if (!merged) return []
    const out: Array<{ node: string; state: DvvSet }> = []
    for (const [node, state] of this.replies) {
      if (!this.opts.primaries.has(node)) continue
      if (state === null || !descends(state, merged)) out.push({ node, state: merged })
    }
    return out
  }

  private settle(): void {
    if (this.result.status !== 'pending') return
    if (this.replies.size >= this.opts.r) {
      this.result = { status: 'ok', state: this.merged, replied: [...this.replies.keys()] }
    } else if (this.opts.targets.length - this.failed.size < this.opts.r) {
      this.fail()
    }
  }

  private fail(): void {
    this.result = { status: 'failed', error: new QuorumError('read', this.opts.r, this.replies.size, [...this.replies.keys()], this.failures) }
  }
}

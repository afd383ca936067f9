// The read side of Dynamo's quorum (DeCandia et al. 2007, section 4.5) as a pure state machine.
// `get` goes to `ask` of the targets at once (the driver asks R, the least loaded first, or all N);
// the answer is ready when R of them replied (a miss is a reply), merged with DVV sync. The targets
// not asked at first are spares, asked when they are needed: one for each asked target that fails
// while R can still be met, all of them when the replies do not cover the floor below, and all of
// them on `speculate()` (the driver calls it when the first ones are slow, Cassandra's
// speculative_retry). Replies that arrive after the answer are merged too, and once every target
// asked answered (or the deadline passed) `repairs()` names the primaries whose state is behind the
// merge: the driver sends them the merged state (read repair), after the caller already has its
// answer. A primary never asked is left to anti-entropy (docs/quorum.md). When the read fails, its
// QuorumError names every replica of the preference list that did not reply, and why: its error, a
// timeout, or that it was not asked (known down, or R already lost).
//
// A causal floor (a session's vector for the key, http/session.ts) raises the bar: R replies are not
// enough until their merge covers the floor, so the read waits for more of the targets; when every
// target has answered (or the deadline passed) without covering it, the read fails SessionNotMet
// rather than return something older than what the caller has already seen.

import { assert } from '../assert.ts'
import { KvError, QuorumError } from '../errors.ts'
import { coversVector, descends, sync, type DvvSet, type VersionVector } from '../version/dvv.ts'

export type ReadOutcome =
  | { readonly status: 'pending' }
  | { readonly status: 'ok'; readonly state: DvvSet | null; readonly replied: readonly string[] }
  | { readonly status: 'failed'; readonly error: QuorumError | KvError }

export interface ReadQuorumOptions {
  readonly r: number
  /** Nodes that may be asked, in the order to ask them (the first `ask` at once). */
  readonly targets: readonly string[]
  /** Targets that are primaries (only they are read-repaired; fallbacks are not owners). */
  readonly primaries: ReadonlySet<string>
  /** Preference-list nodes not asked because the transport knows them down, with why. */
  readonly skipped?: ReadonlyMap<string, Error>
  /** What the answer must have seen (a session's vector for the key); none = any R replies do. */
  readonly floor?: VersionVector | undefined
  /** How many of the targets to ask at first (default: all); the rest are spares, asked when needed. */
  readonly ask?: number | undefined
}

const none: readonly string[] = []

export class ReadQuorum {
  private readonly replies = new Map<string, DvvSet | null>()
  private readonly failed = new Set<string>()
  private readonly failures = new Map<string, Error>()
  private merged: DvvSet | null = null
  private result: ReadOutcome = { status: 'pending' }
  /** Targets asked so far: the first `sent` of opts.targets (0 until start() asks any). */
  private sent = 0
  /** Spares decided on since the driver last took them (takeAsks). */
  private wanted: string[] = []

  constructor(private readonly opts: ReadQuorumOptions) {
    assert(opts.r >= 1, `r=${opts.r} below 1`)
  }

  get outcome(): ReadOutcome { return this.result }

  /**
   * Every target asked has answered or failed, and no spare will be asked (the read is over, or
   * none is left): nothing more will arrive.
   */
  get complete(): boolean {
    return this.asked && this.replies.size + this.failed.size === this.sent && (this.result.status !== 'pending' || this.sent === this.opts.targets.length)
  }

  /** The nodes to ask first; none when R cannot be met even before asking (too few are up). */
  start(): string[] {
    this.settle()
    if (this.result.status === 'failed') return []
    const { targets, ask, r } = this.opts
    this.sent = Math.min(targets.length, Math.max(r, ask ?? targets.length))
    return targets.slice(0, this.sent)
  }

  /** start() asked its first targets (with R within reach, it asks at least one). */
  private get asked(): boolean {
    return this.sent > 0
  }

  /** Targets not asked (yet). */
  get spares(): number {
    return this.opts.targets.length - this.sent
  }

  /** Spares to ask now (decided by a failure or a floor since the last call); each is returned once. */
  takeAsks(): readonly string[] {
    if (this.wanted.length === 0) return none
    const out = this.wanted
    this.wanted = []
    return out
  }

  /** The first targets are slow: ask every spare now (none once the read is over). */
  speculate(): readonly string[] {
    if (this.asked && this.result.status === 'pending') this.askSpares(this.opts.targets.length - this.sent)
    return this.takeAsks()
  }

  /** A reply. If merging it throws (a bound the merge would break), nothing of it is recorded. */
  onReply(node: string, state: DvvSet | null): void {
    if (this.replies.has(node) || this.failed.has(node)) return
    const merged = state ? (this.merged ? sync(this.merged, state) : state) : this.merged
    this.replies.set(node, state)
    this.merged = merged
    this.settle()
  }

  onFailed(node: string, error: Error = new KvError({ kind: 'Unavailable', node }, `${node}: the get failed`)): void {
    if (this.replies.has(node) || this.failed.has(node)) return
    this.failures.set(node, error)
    this.failed.add(node)
    this.settle()
  }

  /** The request's deadline (`timeoutMs` after it started) passed: fail now unless R was met. */
  expire(timeoutMs?: number): void {
    if (this.result.status !== 'pending') return
    if (this.replies.size >= this.opts.r) this.failSession(timeoutMs)
    else this.fail(timeoutMs)
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
    const { r, targets } = this.opts
    const answered = this.replies.size + this.failed.size
    if (this.replies.size >= r) {
      if (this.covered()) this.result = { status: 'ok', state: this.merged, replied: [...this.replies.keys()] }
      else if (answered === targets.length) this.failSession()
      // The floor is not covered yet: every spare may be the one that has seen it.
      else if (this.asked && answered === this.sent) this.askSpares(targets.length - this.sent)
    } else if (targets.length - this.failed.size < r) {
      this.fail()
    } else if (this.asked) {
      // Replies still possible from those asked fall short of R: a spare for each missing one.
      this.askSpares(r - this.replies.size - (this.sent - answered))
    }
  }

  private askSpares(n: number): void {
    for (; n > 0 && this.sent < this.opts.targets.length; n--) this.wanted.push(this.opts.targets[this.sent++]!)
  }

  /** True when the merge of the replies has seen the floor (always, without one). */
  private covered(): boolean {
    const floor = this.opts.floor
    if (floor === undefined) return true
    if (this.merged === null) return Object.keys(floor).length === 0
    return coversVector(this.merged.vv, floor)
  }

  private failSession(expiredAfterMs?: number): void {
    const replied = [...this.replies.keys()]
    const why = expiredAfterMs === undefined ? `every target answered (${replied.join(', ')})` : `within ${expiredAfterMs} ms ${replied.length} replied (${replied.join(', ')})`
    this.result = {
      status: 'failed',
      error: new KvError({ kind: 'SessionNotMet', replied: replied.length, ...(expiredAfterMs !== undefined ? { timeoutMs: expiredAfterMs } : {}) },
        `no replica that answered has seen this session's writes of the key: ${why}; retry later`),
    }
  }

  private wasAsked(node: string): boolean {
    const i = this.opts.targets.indexOf(node)
    return i >= 0 && i < this.sent
  }

  /** Fails naming every node that did not reply: skipped ones, failed ones, and the rest. */
  private fail(expiredAfterMs?: number): void {
    const failures = new Map<string, Error>(this.opts.skipped ?? [])
    const { r, targets } = this.opts
    for (const node of targets) {
      if (this.replies.has(node)) continue
      let why = this.failures.get(node)
      if (why === undefined) {
        if (!this.asked) why = new KvError({ kind: 'Unavailable', node }, `not asked: only ${targets.length} replicas are up, and R=${r}`)
        else if (!this.wasAsked(node)) why = new KvError({ kind: 'Unavailable', node }, `not asked: the read ended before the ${this.sent} asked first needed it`)
        else if (expiredAfterMs !== undefined) why = new KvError({ kind: 'Timeout', timeoutMs: expiredAfterMs }, `no reply within ${expiredAfterMs} ms`)
        else why = new KvError({ kind: 'Unavailable', node }, `no reply yet when the read gave up: R=${r} could no longer be met`)
      }
      failures.set(node, why)
    }
    this.result = { status: 'failed', error: QuorumError.of('read', r, [...this.replies.keys()], failures) }
  }
}

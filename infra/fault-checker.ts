// The checker both fault tools run after healing, over the History of infra/fault-workload.ts and
// what the cluster holds:
// - Set keys: every element whose add was acknowledged is in the final read (Jepsen's set test).
// - Register keys: a value whose put was acknowledged is in the final read unless some write (of
//   any outcome: an unknown one may have been stored) read it first and so superseded it; and a
//   value that an acknowledged write (put or delete) read first is gone (no resurrection). Values
//   are unique per put, so "unless re-added" never arises.
// - Convergence: every primary replica of every key holds the same state (DVV equality), read from
//   each replica directly. Both tools compare before any client read after healing, so hints and
//   anti-entropy alone must have converged the replicas (docs/simulation.md).

import { equals, type DvvSet } from '../coordinator/version/dvv.ts'
import { elementsOf, registerKeys, setKeys, type History, type Op } from './fault-workload.ts'

export interface Finding {
  readonly key: string
  readonly value: string
  readonly why: string
  /** The operations on the key that wrote the value or read it first (any outcome), for a post-mortem. */
  readonly trail: string[]
}

export interface CheckReport {
  readonly ops: { total: number; ok: number; failed: number; unknown: number }
  /** Acknowledged writes whose effect was checked (adds and puts present, deletes' effect absent). */
  readonly acknowledgedChecked: number
  readonly lost: Finding[]
  readonly resurrected: Finding[]
  readonly divergent: Array<{ key: string; why: string }>
}

const dec = new TextDecoder()

/** `finals`: values of each key from the final read (R=N); `replicas`: each primary's state per key. */
export function checkHistory(history: History, finals: ReadonlyMap<string, readonly string[]>,
  replicas: ReadonlyMap<string, ReadonlyMap<string, DvvSet | null>>): CheckReport {
  const ops = history.ops
  const count = (o: Op['outcome']) => ops.filter(op => op.outcome === o).length
  const lost: Finding[] = []
  const resurrected: Finding[] = []
  let acknowledgedChecked = 0
  for (const key of setKeys) {
    const final = new Set(elementsOf(finals.get(key) ?? []))
    for (const op of ops) {
      if (op.key !== key || op.outcome !== 'ok') continue
      acknowledgedChecked++
      if (!final.has(op.value)) lost.push(found(history, key, op.value, `add acknowledged at ${op.endMs} ms, missing from the final set`))
    }
  }
  for (const key of registerKeys) {
    const final = new Set(finals.get(key) ?? [])
    const superseded = new Set<string>()
    for (const op of ops) if (op.key === key && op.outcome !== 'failed') for (const v of op.observed) superseded.add(v)
    for (const op of ops) {
      if (op.key !== key || op.outcome !== 'ok') continue
      acknowledgedChecked++
      if (op.kind === 'put' && !final.has(op.value) && !superseded.has(op.value)) {
        lost.push(found(history, key, op.value, `put acknowledged at ${op.endMs} ms, never read by a later write, missing from the final read`))
      }
      for (const v of op.observed) {
        if (final.has(v)) resurrected.push(found(history, key, v, `the ${op.kind} acknowledged at ${op.endMs} ms (client ${op.client}) read it first, yet it is in the final read`))
      }
    }
  }
  const divergent: Array<{ key: string; why: string }> = []
  for (const [key, states] of replicas) {
    const all = [...states]
    const [first] = all
    if (!first) continue
    for (const [node, s] of all.slice(1)) {
      if (!sameState(first[1], s)) { divergent.push({ key, why: `${first[0]} holds ${show(first[1])}, ${node} holds ${show(s)}` }); break }
    }
  }
  return { ops: { total: ops.length, ok: count('ok'), failed: count('failed'), unknown: count('unknown') }, acknowledgedChecked, lost, resurrected, divergent }
}

/** Nothing, or a state of tombstones only: either reads as not found. */
function readsAsNothing(s: DvvSet | null): boolean {
  return s === null || s.siblings.every(x => x.value === null)
}

/**
 * Whether two replicas' states of a key are the same. Nothing and tombstones only read alike (not
 * found), and anti-entropy does not copy one onto the other (docs/anti-entropy.md), so any two
 * states that read as not found count as the same; others must be equal.
 */
function sameState(a: DvvSet | null, b: DvvSet | null): boolean {
  if (readsAsNothing(a) || readsAsNothing(b)) return readsAsNothing(a) && readsAsNothing(b)
  return equals(a!, b!)
}

function show(s: DvvSet | null): string {
  if (s === null) return 'nothing'
  const sib = s.siblings.map(x => `${x.actor}:${x.counter}=${x.value === null ? 'tombstone' : dec.decode(x.value).slice(0, 40)}`)
  return `vv ${JSON.stringify(s.vv)} siblings [${sib.join(', ')}]`.slice(0, 400)
}

function found(history: History, key: string, value: string, why: string): Finding {
  return { key, value, why, trail: trailOf(history, key, value) }
}

/**
 * What the history says about a value, for the report of a failing run: the write that put it, and
 * every operation on the key that read it first (whatever its outcome: a failed or unknown write
 * that read it is the first suspect), at most `max` lines.
 */
function trailOf(history: History, key: string, value: string, max = 8): string[] {
  const show = (op: Op) => `c${op.client} ${op.kind}${op.value ? ` ${op.value}` : ''} ${op.startMs}-${op.endMs} ms ${op.outcome}` +
    `${op.error ? ` (${op.error.slice(0, 160)})` : ''}, read [${op.observed.slice(0, 6).join(', ')}${op.observed.length > 6 ? ', …' : ''}]`
  const lines: string[] = []
  let readers = 0
  for (const op of history.ops) {
    if (op.key !== key) continue
    if (op.value === value) lines.push(`wrote it: ${show(op)}`)
    else if (op.observed.includes(value)) { lines.push(`read it: ${show(op)}`); readers++ }
    if (lines.length >= max) break
  }
  if (readers === 0) lines.push('no operation on the key read it')
  return lines
}

export function passed(r: CheckReport): boolean {
  return r.lost.length === 0 && r.resurrected.length === 0 && r.divergent.length === 0
}

// The workload both fault tools run (the simulator, infra/sim/, and the nemesis, infra/chaos/):
// Jepsen's set test (read, merge the siblings by set union, add a unique element, write back with
// the read's context) on a few keys, and plain puts and deletes with contexts on others. Every
// operation goes into a History with its outcome: ok (acknowledged), failed (certainly not stored:
// the read before it failed, or a replica refused the request itself) or unknown (it may have been
// stored: a timeout, a quorum not met). Clock, sleep and randomness are passed in, so the same code
// runs on simulated time and on the wall clock.

import { isKvError } from '../coordinator/errors.ts'
import { faultLimits } from './fault-limits.ts'

/** What the workload needs of a client: the SDK (chaos) and KvCoordinator (sim) both fit. */
export interface KvPort {
  get(key: string, opts?: { r?: number }): Promise<{ values: Uint8Array[]; context: string }>
  /** value null writes a tombstone (a delete with the read's context). */
  write(key: string, value: Uint8Array | null, context: string): Promise<unknown>
}

export type Outcome = 'ok' | 'failed' | 'unknown'
export type OpKind = 'add' | 'put' | 'delete'

export interface Op {
  readonly client: number
  readonly kind: OpKind
  readonly key: string
  /** The element added (set keys) or the value put (register keys); '' for a delete. */
  readonly value: string
  /** What the read before the write returned: elements (set keys) or values (register keys). */
  observed: string[]
  outcome: Outcome
  readonly startMs: number
  endMs: number
  error?: string
}

export class History {
  readonly ops: Op[] = []
  full(): boolean { return this.ops.length >= faultLimits.historyOpsMax }
}

export const setKeys = Array.from({ length: faultLimits.setKeys }, (_, i) => `set-${i}`)
export const registerKeys = Array.from({ length: faultLimits.registerKeys }, (_, i) => `reg-${i}`)

const enc = new TextEncoder()
const dec = new TextDecoder()

/** The elements a set key's siblings hold, united (a sibling that is not a JSON array of strings is a bug). */
export function elementsOf(values: readonly string[]): string[] {
  const all = new Set<string>()
  for (const v of values) for (const e of JSON.parse(v) as string[]) all.add(e)
  return [...all].sort()
}

/** Refused for what the request is: no replica stored it. Anything else may have been stored. */
function outcomeOfError(e: unknown): Outcome {
  return isKvError(e) && (e.kind === 'BadRequest' || e.kind === 'TooLarge') ? 'failed' : 'unknown'
}

export interface ClientLoop {
  readonly kv: KvPort
  readonly client: number
  readonly history: History
  readonly random: () => number
  readonly now: () => number
  readonly sleep: (ms: number) => Promise<void>
  /** The loop stops starting operations at this time (on `now`'s clock). */
  readonly until: number
  readonly thinkMsMax: number
}

/** One client: operations one after another until `until`, each recorded. */
export async function runClient(c: ClientLoop): Promise<void> {
  for (let i = 0; i < faultLimits.opsPerClientMax && c.now() < c.until && !c.history.full(); i++) {
    const pick = c.random()
    const kind: OpKind = pick < 0.5 ? 'add' : pick < 0.85 ? 'put' : 'delete'
    const keys = kind === 'add' ? setKeys : registerKeys
    const key = keys[Math.floor(c.random() * keys.length)]!
    const value = kind === 'delete' ? '' : `c${c.client}-${i}`
    const op: Op = { client: c.client, kind, key, value, observed: [], outcome: 'unknown', startMs: c.now(), endMs: 0 }
    c.history.ops.push(op)
    let read: { values: Uint8Array[]; context: string }
    try {
      read = await c.kv.get(key)
    } catch (e) {
      op.outcome = 'failed'
      op.error = `read: ${(e as Error).message.slice(0, 200)}`
      op.endMs = c.now()
      await c.sleep(Math.floor(c.random() * c.thinkMsMax))
      continue
    }
    const seen = read.values.map(v => dec.decode(v))
    op.observed = kind === 'add' ? elementsOf(seen) : seen
    const body = kind === 'add' ? enc.encode(JSON.stringify([...op.observed, value].sort()))
      : kind === 'put' ? enc.encode(value) : null
    try {
      await c.kv.write(key, body, read.context)
      op.outcome = 'ok'
    } catch (e) {
      op.outcome = outcomeOfError(e)
      op.error = (e as Error).message.slice(0, 200)
    }
    op.endMs = c.now()
    await c.sleep(Math.floor(c.random() * c.thinkMsMax))
  }
}

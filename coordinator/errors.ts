// Typed, expected failures. Every error that crosses a boundary (SDK call, wire, HTTP) is a KvError
// with a `kind` and the data a caller needs to act on it. Concurrent versions and misses are results,
// not errors. Bugs are assertion failures (assert.ts), not KvErrors.
//
// `errorTable` is the one list of kinds: each with the zod schema of its data and its HTTP status.
// The wire error schema (protocol/messages.ts), the gateway's status map (http/gateway.ts) and the
// rebuilding of errors from the wire (transport/connection.ts) are all derived from it, and typed by
// it, so a new kind is one entry here and the type checker points at anything that must handle it.

import { z } from 'zod'
import { limits } from './limits.ts'

const text = z.string().max(limits.errorMessageCharsMax)
const count = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER)
const ms = z.number().nonnegative().max(Number.MAX_SAFE_INTEGER)
/** A node id, or a seed's URL while the ring is not known yet. */
const replicaName = z.string().min(1).max(limits.seedUrlCharsMax)

function isKvErrorKind(kind: string): boolean {
  return Object.hasOwn(errorTable, kind)
}

/**
 * Why one replica did not do its part of a call: its error's kind and message and that kind's data
 * (passed through unchecked here; the receiver rebuilds each one with the wire schema).
 */
export const replicaFailureSchema = z.object({
  kind: z.string().refine(isKvErrorKind, { message: 'unknown error kind' }),
  message: text,
}).passthrough()

/** Every replica that was asked (or skipped) and did not answer, by node id (or seed URL): why. */
export const failuresSchema = z.record(replicaName, replicaFailureSchema)
  .refine(f => Object.keys(f).length <= limits.seedsMax, { message: `a failure map names at most ${limits.seedsMax} replicas` })

export type ReplicaFailure = z.output<typeof replicaFailureSchema>

export const errorTable = {
  /** The request is wrong (key, value type, option, context, body): fix it rather than retry. */
  BadRequest: { status: 400, data: z.object({ issues: z.array(text).max(limits.errorIssuesMax) }) },
  TooLarge: { status: 413, data: z.object({ bytes: count, bytesMax: count }) },
  /** A write would push the key past siblingsMax: resolve with `context` (it covers every sibling). */
  TooManySiblings: { status: 409, data: z.object({ siblings: count, siblingsMax: count, context: z.string().max(limits.contextBytesMax) }) },
  Overloaded: { status: 429, data: z.object({ retryAfterMs: ms }) },
  /** Fewer than W (or R) replicas answered in time; `failures` says why each other one did not. */
  QuorumNotMet: {
    status: 503,
    data: z.object({ required: count, acked: count, replicas: z.array(replicaName).max(limits.seedsMax), failures: failuresSchema }),
  },
  /** A replica (`node`) could not be reached, or (with `failures`) no seed could, to learn the ring. */
  Unavailable: { status: 503, data: z.object({ node: replicaName.optional(), failures: failuresSchema.optional() }) },
  /**
   * A fallback would not keep a hint for the absent owner `target`: its hint store is at a bound
   * (`reason` says which), its hint log failed, or it was asked to stamp for an owner. The write
   * goes on to the next fallback; this one does not count toward W.
   */
  HintRefused: {
    status: 503,
    data: z.object({ target: replicaName, reason: z.enum(['target-count', 'target-bytes', 'total-count', 'total-bytes', 'window', 'io', 'stamp']) }),
  },
  Timeout: { status: 504, data: z.object({ timeoutMs: ms }) },
  /** A replica whose snapshots are too far behind refuses writes. */
  StorageFull: { status: 507, data: z.object({ bytes: count, bytesMax: count }) },
  Corruption: { status: 500, data: z.object({ file: text, offset: count }) },
  /**
   * A handoff batch whose checksum does not match its bytes: damaged or forged on the way, so none
   * of it is stored; the sender sends it again.
   */
  ChecksumMismatch: { status: 400, data: z.object({ expected: count, actual: count }) },
  /** A peer broke the protocol; `detail` when the sender gave one (replicas say it in the message). */
  ProtocolError: { status: 500, data: z.object({ detail: text.optional() }) },
  Internal: { status: 500, data: z.object({}) },
  /** No credential, or one the server does not know (a missing or unknown token: auth/auth.ts). */
  Unauthorized: { status: 401, data: z.object({}) },
  /** A known credential whose role may not do this: `role` is the caller's, `required` what it needs. */
  Forbidden: { status: 403, data: z.object({ role: z.string().max(limits.nameCharsMax), required: z.string().max(limits.nameCharsMax) }) },
  /**
   * A read presented with a causal session (http/session.ts) found no set of replicas, among those
   * that answered in time, whose merged state has seen what the session has: read-your-writes could
   * not be kept, so nothing older is returned. `replied`: replicas that answered.
   */
  SessionNotMet: { status: 503, data: z.object({ replied: count, timeoutMs: ms.optional() }) },
  /**
   * An anti-entropy request named a partition the replica (`node`) is not a primary of: a peer with
   * another ring, or one lying about the partitions it holds. Nothing is exchanged.
   */
  NotPrimary: { status: 409, data: z.object({ partition: count, node: replicaName }) },
  /**
   * The replica neither owns the key's partition, nor stands in for an owner (a hint), nor is
   * receiving it by handoff, under the ring `ringVersion` it answered with: the caller's ring is
   * stale (or ahead); fetch the ring and retry (the SDK does, once).
   */
  NotOwner: { status: 421, data: z.object({ ringVersion: count, partition: count }) },
} as const satisfies Record<string, { readonly status: 400 | 401 | 403 | 409 | 413 | 421 | 429 | 500 | 503 | 504 | 507; readonly data: z.ZodObject }>

type Table = typeof errorTable
export type KvErrorKind = keyof Table
/** A schema's fields; zod types an empty object as Record<string, never>, which no data could meet. */
export type ErrorFields<T> = string extends keyof T ? {} : T
/** The data of each kind, as the table's schema says, tagged with its kind. */
export type KvErrorData = { [K in KvErrorKind]: { kind: K } & ErrorFields<z.output<Table[K]['data']>> }[KvErrorKind]
/** An error as it crosses the wire or HTTP: its data and its message. */
export type KvErrorBody = KvErrorData & { message: string }
export type HttpStatusOfError = Table[KvErrorKind]['status']

export const errorKinds = Object.keys(errorTable) as KvErrorKind[]

export function httpStatusOf(kind: KvErrorKind): HttpStatusOfError {
  return errorTable[kind].status
}

export class KvError<D extends KvErrorData = KvErrorData> extends Error {
  override name = 'KvError'
  readonly kind: D['kind']
  readonly data: D
  constructor(data: D, message: string, options?: { cause?: unknown }) {
    // Cut, so that every error fits the wire schema's message bound.
    super(clip(message), options)
    this.kind = data.kind
    this.data = data
  }
}

type QuorumNotMetData = Extract<KvErrorData, { kind: 'QuorumNotMet' }>

/** Thrown when fewer than W (or R) replicas answered. The write may still be there, as in Dynamo. */
export class QuorumError extends KvError<QuorumNotMetData> {
  override name = 'QuorumError'
  get required(): number { return this.data.required }
  get acked(): number { return this.data.acked }
  get replicas(): string[] { return this.data.replicas }
  /**
   * Why each target that did not acknowledge failed, by node: error replies, timeouts, lost
   * connections, and replicas not asked because the transport knows them down. `data.failures` is
   * the same map as plain data (what travels over HTTP).
   */
  readonly failures: ReadonlyMap<string, Error>

  constructor(data: QuorumNotMetData, message: string, failures: ReadonlyMap<string, Error>) {
    super(data, message, failures.size ? { cause: [...failures.values()][0] } : undefined)
    this.failures = failures
  }

  static of(op: 'read' | 'write', required: number, acked: readonly string[], failures: ReadonlyMap<string, Error>): QuorumError {
    const why = [...failures].map(([node, e]) => `${node}: ${e instanceof KvError ? e.kind + ': ' : ''}${e.message}`)
    const message = `${op} quorum not met: ${acked.length} of ${required} required replicas ` +
      `${op === 'read' ? 'replied' : 'acknowledged'} (${acked.join(', ') || 'none'})` +
      (why.length ? `; failed: ${why.join('; ')}` : '')
    return new QuorumError({ kind: 'QuorumNotMet', required, acked: acked.length, replicas: [...acked], failures: failureRecord(failures) }, message, failures)
  }
}

/** An error as wire or HTTP body: its data (kind included) and its message. */
export function errorBody(e: KvError): KvErrorBody {
  return { ...e.data, message: e.message }
}

/** One replica's failure as data: a KvError's body, anything else as Internal. */
export function failureOf(e: unknown): ReplicaFailure {
  if (e instanceof KvError) return errorBody(e)
  return { kind: 'Internal', message: e instanceof Error ? e.message : String(e) }
}

export function failureRecord(failures: ReadonlyMap<string, unknown>): Record<string, ReplicaFailure> {
  const out: Record<string, ReplicaFailure> = {}
  for (const [node, e] of failures) out[node] = failureOf(e)
  return out
}

/** A KvError as is; anything else (a bug, an app callback's throw) as Internal, with it as the cause. */
export function asKvError(e: unknown, what: string): KvError {
  if (e instanceof KvError) return e
  return new KvError({ kind: 'Internal' }, `${what}: ${e instanceof Error ? e.message : String(e)}`, { cause: e })
}

/**
 * A quorum or discovery failure in which every replica refused the caller's credential the same way
 * (all Unauthorized, or all Forbidden) is that refusal, not an outage: the app should fix its token,
 * not retry. Anything else is returned as it is.
 */
export function authFailureOf(e: KvError): KvError {
  const failures = e.data.kind === 'QuorumNotMet' || e.data.kind === 'Unavailable' ? e.data.failures : undefined
  const list = failures ? Object.values(failures) : []
  if (list.length === 0) return e
  if (list.every(f => f.kind === 'Unauthorized')) {
    return new KvError({ kind: 'Unauthorized' }, `every replica refused this client's token: ${e.message}`, { cause: e })
  }
  if (list.every(f => f.kind === 'Forbidden')) {
    const data = errorTable.Forbidden.data.safeParse(list[0])
    if (data.success) return new KvError({ kind: 'Forbidden', ...data.data }, `every replica refused this client's role: ${e.message}`, { cause: e })
  }
  return e
}

export function badRequest(...issues: string[]): KvError {
  return badRequestCausedBy(undefined, ...issues)
}

export function badRequestCausedBy(cause: unknown, ...issues: string[]): KvError {
  const kept = issues.length > limits.errorIssuesMax
    ? [...issues.slice(0, limits.errorIssuesMax - 1), `and ${issues.length - limits.errorIssuesMax + 1} more issues`]
    : issues
  return new KvError({ kind: 'BadRequest', issues: kept.map(clip) }, `bad request: ${kept.join('; ')}`, cause === undefined ? undefined : { cause })
}

function clip(s: string): string {
  return s.length > limits.errorMessageCharsMax ? s.slice(0, limits.errorMessageCharsMax - 1) + '…' : s
}

export function isKvError(e: unknown): e is KvError {
  return e instanceof KvError
}

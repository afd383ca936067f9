// Typed, expected failures. Every error that crosses a boundary (SDK call, wire, HTTP) is a KvError
// with a `kind` and the data a caller needs to act on it. Concurrent versions and misses are results,
// not errors. Bugs are assertion failures (assert.ts), not KvErrors.

export type KvErrorData =
  | { kind: 'BadRequest'; issues: string[] }
  | { kind: 'TooLarge'; bytes: number; bytesMax: number }
  | { kind: 'QuorumNotMet'; required: number; acked: number; replicas: string[] }
  | { kind: 'Timeout'; timeoutMs: number }
  | { kind: 'Unavailable'; node?: string }
  | { kind: 'Overloaded'; retryAfterMs: number }
  | { kind: 'Corruption'; file: string; offset: number }
  | { kind: 'StorageFull'; bytes: number; bytesMax: number }
  /** A write would push the key past siblingsMax: resolve with `context` (it covers every sibling). */
  | { kind: 'TooManySiblings'; siblings: number; siblingsMax: number; context: string }
  | { kind: 'ProtocolError'; detail: string }
  | { kind: 'Internal' }

export type KvErrorKind = KvErrorData['kind']

export class KvError<D extends KvErrorData = KvErrorData> extends Error {
  override name = 'KvError'
  readonly kind: D['kind']
  readonly data: D
  constructor(data: D, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.kind = data.kind
    this.data = data
  }
}

/** Thrown when fewer than W (or R) replicas answered. The write may still be there, as in Dynamo. */
export class QuorumError extends KvError<Extract<KvErrorData, { kind: 'QuorumNotMet' }>> {
  override name = 'QuorumError'
  get required(): number { return this.data.required }
  get acked(): number { return this.data.acked }
  get replicas(): string[] { return this.data.replicas }
  /** Why each replica that failed did (error replies, timeouts, lost connections), by node. */
  readonly failures: ReadonlyMap<string, Error>
  constructor(op: 'read' | 'write', required: number, acked: number, replicas: string[], failures: ReadonlyMap<string, Error> = new Map()) {
    const why = [...failures].map(([node, e]) => `${node}: ${e instanceof KvError ? e.kind + ' ' : ''}${e.message}`)
    super({ kind: 'QuorumNotMet', required, acked, replicas },
      `${op} quorum not met: ${acked} of ${required} required replicas acknowledged (${replicas.join(', ') || 'none'})` +
      (why.length ? `; failures: ${why.join('; ')}` : ''), failures.size ? { cause: [...failures.values()][0] } : undefined)
    this.failures = failures
  }
}

export function badRequest(...issues: string[]): KvError {
  return new KvError({ kind: 'BadRequest', issues }, `bad request: ${issues.join('; ')}`)
}

export function isKvError(e: unknown): e is KvError {
  return e instanceof KvError
}

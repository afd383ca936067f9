// Assertions that stay on in production (TigerBeetle, Replicache's asserts.ts): a failed assert is
// a bug in ringkv, never an expected condition. Expected failures are KvErrors (errors.ts).

export class AssertionError extends Error {
  override name = 'AssertionError'
}

export function assert(cond: unknown, msg: string | (() => string) = 'assertion failed'): asserts cond {
  if (!cond) throw new AssertionError(typeof msg === 'function' ? msg() : msg)
}

export function unreachable(x: never, msg = 'unreachable'): never {
  throw new AssertionError(`${msg}: ${JSON.stringify(x)}`)
}

// Exponential backoff with jitter, the one formula every retry loop in ringkv uses (the client's
// reconnects, S3 requests, snapshot rounds). The delay's ceiling doubles with each attempt from
// `minMs` up to `maxMs`; jitter spreads retries of many clients apart (Brooker, "Exponential Backoff
// and Jitter", AWS Architecture Blog 2015):
//   - 'full':  uniform in [0, ceiling)          (S3 requests: many writers retrying one service)
//   - 'equal': uniform in [ceiling/2, ceiling)  (reconnects, snapshot rounds: never retry at once)
// Pure: the random source is passed in, so a simulation can seed it.

import { assert } from './assert.ts'

export interface BackoffPolicy {
  readonly minMs: number
  readonly maxMs: number
  readonly jitter: 'full' | 'equal'
}

/** The delay before retry number `attempt` (1 = after the first failure), in whole ms, at least 1. */
export function backoffDelayMs(policy: BackoffPolicy, attempt: number, random: () => number): number {
  assert(policy.minMs > 0 && policy.minMs <= policy.maxMs, 'backoff: min must be positive and at most max')
  // The exponent is capped so that 2 ** n stays finite whatever the attempt count.
  const ceiling = Math.min(policy.maxMs, policy.minMs * 2 ** Math.min(30, Math.max(0, attempt - 1)))
  const delay = policy.jitter === 'full' ? random() * ceiling : ceiling / 2 + (random() * ceiling) / 2
  return Math.max(1, Math.floor(delay))
}

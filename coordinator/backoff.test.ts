// The one backoff formula: delays stay within their jitter band and their ceiling, grow by doubling
// from minMs, and never overflow however many attempts have failed.

import assert from 'node:assert/strict'
import { test } from 'node:test'
import { backoffDelayMs } from './backoff.ts'

test('full jitter is within [1, ceiling), equal jitter within [ceiling/2, ceiling]; ceilings double up to maxMs', () => {
  const full = { minMs: 10, maxMs: 1000, jitter: 'full' } as const
  const equal = { minMs: 10, maxMs: 1000, jitter: 'equal' } as const
  for (const [attempt, ceiling] of [[1, 10], [2, 20], [3, 40], [7, 640], [8, 1000], [1e9, 1000]] as const) {
    assert.equal(backoffDelayMs(full, attempt, () => 0), 1)
    assert.equal(backoffDelayMs(full, attempt, () => 0.999999), ceiling - 1)
    assert.equal(backoffDelayMs(equal, attempt, () => 0), ceiling / 2)
    assert.equal(backoffDelayMs(equal, attempt, () => 0.999999), ceiling - 1)
  }
  assert.equal(backoffDelayMs(full, 0, () => 0.5), 5, 'attempt 0 counts as the first')
})

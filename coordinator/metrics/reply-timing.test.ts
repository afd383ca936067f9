// The timing a replica adds to put and replicate replies (serviceUs, fsyncUs) is validated like any
// field, in the fast path and by zod alike: garbage from a hostile or broken replica (negative,
// fractional, past replyTimingUsMax, not a number) makes the reply malformed instead of reaching
// the SDK's statistics; absent fields are fine (older replicas), unknown ones are dropped.

import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { limits } from '../limits.ts'
import { parseReply } from '../protocol/fast-parse.ts'
import { replySchemas } from '../protocol/messages.ts'

const state = { vv: { 'n1.1': 1 }, siblings: [{ actor: 'n1.1', counter: 1, value: new Uint8Array([1]) }] }

describe('write reply timing', () => {
  it('accepts valid times and their absence, and drops unknown keys, exactly as zod does', () => {
    for (const body of [
      { state }, { state, serviceUs: 0, fsyncUs: 0 }, { state, serviceUs: limits.replyTimingUsMax, fsyncUs: 12 },
      { state, serviceUs: undefined }, { state, elided: undefined, fsyncUs: 5, extra: 'x' },
    ]) {
      const fast = parseReply('put', body)
      const zod = replySchemas.put.safeParse(body)
      assert.equal(fast.success, true, JSON.stringify(body))
      assert.equal(zod.success, true)
      assert.deepEqual(fast.data, zod.data)
    }
    for (const body of [{}, { serviceUs: 3, fsyncUs: 1 }, { serviceUs: 3, other: 1 }]) {
      const fast = parseReply('replicate', body)
      assert.equal(fast.success, true)
      assert.deepEqual(fast.data, replySchemas.replicate.safeParse(body).data)
    }
  })

  it('refuses negative, fractional, oversized, non-finite and non-number times', () => {
    for (const bad of [-1, 1.5, limits.replyTimingUsMax + 1, 2 ** 53, NaN, Infinity, '5', null, {}, [1], 10n]) {
      for (const field of ['serviceUs', 'fsyncUs']) {
        assert.equal(parseReply('put', { state, [field]: bad }).success, false, `put ${field}=${String(bad)}`)
        assert.equal(parseReply('replicate', { [field]: bad }).success, false, `replicate ${field}=${String(bad)}`)
        assert.equal(replySchemas.put.safeParse({ state, [field]: bad }).success, false)
      }
    }
  })
})

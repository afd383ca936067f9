// The gets' speculation: its delay (a fixed one, or the p99 of each window of completed gets) and
// its budget (limits.readSpeculationShare of a token per completed get, at most
// readSpeculationBurst), which keeps a client from asking every spare at once when all its gets slow.

import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { limits } from '../limits.ts'
import { ReadSpeculation } from './speculation.ts'

describe('read speculation', () => {
  it('spends its burst, then one token per 1/share completed gets', () => {
    const s = new ReadSpeculation(5)
    assert.equal(s.afterMs, 5)
    for (let i = 0; i < limits.readSpeculationBurst; i++) assert.ok(s.take(), `token ${i} of the burst`)
    assert.equal(s.take(), false, 'the burst is spent')
    assert.equal(s.take(), false)
    const perToken = Math.round(1 / limits.readSpeculationShare)
    for (let i = 0; i < perToken - 1; i++) s.record(1)
    assert.equal(s.take(), false, 'not yet a whole token')
    s.record(1)
    assert.ok(s.take(), `${perToken} completed gets earn one`)
    assert.deepEqual(s.stats(), { afterMs: 5, speculated: limits.readSpeculationBurst + 1, withheld: 3 })
  })

  it('holds at most the burst, however many gets complete', () => {
    const s = new ReadSpeculation(5)
    for (let i = 0; i < 10 * limits.readSpeculationBurst / limits.readSpeculationShare; i++) s.record(1)
    let taken = 0
    while (s.take()) taken++
    assert.equal(taken, limits.readSpeculationBurst)
  })

  it('has no delay before its first window, then the p99 of each window within its bounds', () => {
    const s = new ReadSpeculation()
    assert.equal(s.afterMs, undefined)
    assert.equal(s.stats().afterMs, null)
    for (let i = 0; i < limits.readSpeculationWindow - 1; i++) s.record(i < limits.readSpeculationWindow * 0.98 ? 2 : 40)
    assert.equal(s.afterMs, undefined, 'one get short of a window')
    s.record(40)
    // The 99th percentile falls in the slow 2 %: 40 ms, read from a bucket at most 19 % above it.
    assert.ok(s.afterMs! >= 40 && s.afterMs! <= 40 * 1.19, `p99 ${s.afterMs}`)
    for (let i = 0; i < limits.readSpeculationWindow; i++) s.record(10_000)
    assert.equal(s.afterMs, limits.readSpeculationMsMax, 'capped')
    for (let i = 0; i < limits.readSpeculationWindow; i++) s.record(0)
    assert.equal(s.afterMs, limits.readSpeculationMsMin, 'floored')
  })
})

// The simulator's hint log keeps the real log's crash contract, and the real HintStore reads it back
// as it reads files: fsynced hints survive a crash, unsynced ones may not, a torn tail is reported
// and the store rewrites its live hints and drops the damaged segment. Seeds come from
// test/seed.ts (RINGKV_SEED replays one).

import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { HintStore } from '../../replica/hints/hint-store.ts'
import { testSeed } from '../../test/seed.ts'
import { MemDisk } from './mem-engine.ts'
import { MemHintLog } from './mem-hint-log.ts'
import { SimClock } from './sim-clock.ts'

const state = (n: number) => Uint8Array.of(0x92, 0x90, 0x90, n)

async function settle(clock: SimClock, done: () => boolean): Promise<void> {
  assert.ok(await clock.run(clock.now + 1000, done))
}

describe('MemHintLog', () => {
  it('keeps fsynced hints across a crash, reports a torn tail, and the store recovers from it', async () => {
    const seed = testSeed('mem hint log')
    let tornSeen = 0
    for (let i = 0; i < 40; i++) {
      const clock = new SimClock((seed + i) % 2 ** 31)
      const disk = new MemDisk()
      const first = MemHintLog.open(disk, clock, () => false, 'n1')
      assert.deepEqual(first.records, [])
      const store = new HintStore({ log: first.log, now: () => clock.now })
      await store.load(first.records, first.problems)
      // Two hints made durable, then three more whose fsync the crash beats.
      let durable = 0
      for (const k of ['a', 'b']) { const p = store.add('n2', k, state(1)); assert.ok(p instanceof Promise); void p.then(() => { durable++ }) }
      await settle(clock, () => durable === 2)
      for (const k of ['c', 'd', 'e']) { const p = store.add('n2', k, state(2)); assert.ok(p instanceof Promise); p.catch(() => undefined) }
      first.log.crash()
      disk.generation++

      const second = MemHintLog.open(disk, clock, () => false, 'n1')
      const keys = new Set(second.records.map(r => r.key))
      assert.ok(keys.has('a') && keys.has('b'), `fsynced hints survive (seed ${seed + i})`)
      assert.ok(second.records.length <= 5)
      const reread = new HintStore({ log: second.log, now: () => clock.now })
      const loading = reread.load(second.records, second.problems)
      let loaded = false
      void loading.then(() => { loaded = true })
      await settle(clock, () => loaded)
      assert.equal(reread.stats().hints, second.records.length)
      if (second.problems.length > 0) {
        tornSeen++
        assert.equal(reread.counters.corruptSegments, 1)
        // The damaged segment is gone: its live hints were written again in the new one.
        assert.deepEqual(second.log.segments(), [second.log.current()])
        const third = MemHintLog.open(disk, clock, () => false, 'n1')
        assert.deepEqual(third.problems, [])
        assert.equal(new Set(third.records.map(r => r.key)).size, second.records.length)
      }
    }
    assert.ok(tornSeen > 0, 'some crash tore a record')
  })

  it('fails appends on a full disk until reopened', async () => {
    const clock = new SimClock(testSeed('mem hint log full'))
    const disk = new MemDisk()
    const { log } = MemHintLog.open(disk, clock, () => false, 'n1')
    disk.full = true
    let failed: unknown
    log.append({ op: 'put', at: 0, target: 'n2', key: 'k', state: state(1) }).catch(e => { failed = e })
    await settle(clock, () => failed !== undefined)
    assert.match(String(failed), /ENOSPC/)
    await assert.rejects(log.append({ op: 'put', at: 0, target: 'n2', key: 'k', state: state(1) }), /ENOSPC/)
    assert.equal(MemHintLog.pendingOnDisk(disk), 0)
  })
})

// A replica paused with SIGSTOP keeps its TCP connections open but answers nothing: the worst kind
// of failure for a quorum, since nothing fails fast. Writes must keep flowing through the other
// replicas (the stamp moves on after a short timeout and the paused node is then skipped), and once
// the replica resumes it serves again and read repair brings it what it missed.

import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { createClient, isKvError } from '../client/index.ts'
import { values as valuesOf } from '../coordinator/version/dvv.ts'
import { dec, enc, eventually, rawConnection, testCluster } from './helpers.ts'

describe('a replica paused with SIGSTOP', () => {
  let cluster: Awaited<ReturnType<typeof testCluster>>
  before(async () => { cluster = await testCluster(17601) })
  after(async () => { await cluster.cleanup() })

  it('does not stall writes, and catches up after SIGCONT', async (t) => {
    const kv = createClient({ seeds: cluster.seeds, timeoutMs: 2000 })
    await kv.put('warm', 'x', { w: 3 })
    const n1 = cluster.replica('n1')
    let phase: 'before' | 'paused' | 'resumed' = 'before'
    const ok = { before: 0, paused: 0, resumed: 0 }
    const failures: unknown[] = []
    const writtenWhilePaused: string[] = []
    let stop = false
    const writers = Array.from({ length: 8 }, async (_, w) => {
      for (let i = 0; !stop; i++) {
        const key = `pause:${w}:${i}`
        const at = phase
        try {
          await kv.put(key, `v-${key}`)
          ok[at]++
          if (at === 'paused') writtenWhilePaused.push(key)
        } catch (e) {
          failures.push(e)
        }
      }
    })
    await new Promise(r => setTimeout(r, 500))
    await n1.kill('SIGSTOP')
    phase = 'paused'
    await new Promise(r => setTimeout(r, 3000))
    await n1.kill('SIGCONT')
    phase = 'resumed'
    await new Promise(r => setTimeout(r, 500))
    stop = true
    await Promise.all(writers)

    // Only writes in flight to n1 when it stopped may fail; a third of all keys stamp at n1 first,
    // so without moving on (and skipping n1) most of the pause would be spent waiting on it.
    t.diagnostic(`writes ok before/paused/resumed: ${ok.before}/${ok.paused}/${ok.resumed}, failed ${failures.length}`)
    assert.ok(ok.paused >= 300, `only ${ok.paused} writes succeeded during a 3 s pause (${failures.length} failed)`)
    assert.ok(failures.length <= 16, `${failures.length} writes failed: ${failures.slice(0, 3).map(e => (e as Error).message).join(' | ')}`)
    for (const e of failures) assert.ok(isKvError(e), `untyped failure ${e}`)

    // n1 serves again, and an R=3 read repairs a key it missed.
    const direct = rawConnection(n1.url, 'n1')
    const missed = writtenWhilePaused[0]!
    await eventually(async () => {
      const got = await kv.get(missed, { r: 3 })
      assert.equal(got.found, true)
      const reply = await direct.request('get', { key: enc.encode(missed) }, 2000)
      assert.ok(reply.state, `n1 not repaired for ${missed}`)
      assert.equal(dec.decode(valuesOf(reply.state)[0]!), `v-${missed}`)
    }, 'n1 back and repaired', 15_000)
    direct.close()
    await kv.close()
  })
})

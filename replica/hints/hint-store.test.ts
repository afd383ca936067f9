// Tests for the hint store and its log on a real directory: hints survive a reopen, bounds refuse
// with HintRefused and count it, a handed-off hint is gone after a reopen, a torn tail and a
// corrupt record are detected and never replayed, old segments are deleted once no live hint is
// in them, and a randomized run of adds and hand-offs matches a Map model across reopens.

import assert from 'node:assert/strict'
import { appendFile, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, it } from 'node:test'
import { KvError } from '../../coordinator/errors.ts'
import { seededRandom, testSeed } from '../../test/seed.ts'
import { decodeHintRecord, encodeHintRecord, openHintLog } from './hint-log.ts'
import { defaultHintBounds, HintStore, type HintBounds } from './hint-store.ts'

const dirs: string[] = []
afterEach(async () => { for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true }) })

async function tempDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'ringkv-hints-'))
  dirs.push(d)
  return d
}

let clock = 1_000_000
const lines: string[] = []

async function openStore(dir: string, bounds: Partial<HintBounds> = {}): Promise<HintStore> {
  const opened = await openHintLog(dir)
  const store = new HintStore({ log: opened.log, now: () => clock, bounds: { ...defaultHintBounds, ...bounds }, logLine: msg => { lines.push(msg) } })
  await store.load(opened.records, opened.problems)
  return store
}

const bytes = (s: string) => new TextEncoder().encode(s)

async function add(store: HintStore, target: string, key: string, state: string): Promise<void> {
  const r = store.add(target, key, bytes(state))
  if (r instanceof KvError) throw r
  await r
}

function held(store: HintStore): Record<string, string> {
  const out: Record<string, string> = {}
  for (const target of store.pending().keys()) {
    for (const h of store.due(target, 1e9)) out[`${target}/${h.key}`] = new TextDecoder().decode(h.state)
  }
  return out
}

describe('hint log records', () => {
  it('round-trip, and any flipped byte is caught by the CRC', () => {
    const rec = { op: 'put' as const, at: 1234.5, target: 'n5', key: 'ключ', state: bytes('state') }
    const buf = encodeHintRecord(rec)
    const back = decodeHintRecord(buf, 0)
    assert.ok(back)
    assert.deepEqual({ ...back.rec, state: [...back.rec.state] }, { ...rec, state: [...rec.state] })
    for (let i = 0; i < buf.length; i++) {
      const bad = Buffer.from(buf)
      bad[i] = bad[i]! ^ 0x01
      assert.equal(decodeHintRecord(bad, 0), undefined, `flip at ${i}`)
    }
    assert.equal(decodeHintRecord(buf.subarray(0, buf.length - 1), 0), undefined, 'short')
  })
})

describe('HintStore', () => {
  it('keeps hints across a reopen, merges per (owner, key), and forgets handed-off ones', async () => {
    const dir = await tempDir()
    let store = await openStore(dir)
    await add(store, 'n5', 'a', 'a1')
    await add(store, 'n5', 'b', 'b1')
    await add(store, 'n4', 'a', 'x1')
    await add(store, 'n5', 'a', 'a2')
    assert.deepEqual(held(store), { 'n5/a': 'a2', 'n5/b': 'b1', 'n4/a': 'x1' })
    await store.close()
    store = await openStore(dir)
    assert.deepEqual(held(store), { 'n5/a': 'a2', 'n5/b': 'b1', 'n4/a': 'x1' })
    store.handedOff(store.get('n5', 'a')!)
    await store.collect()
    await store.close()
    store = await openStore(dir)
    assert.deepEqual(held(store), { 'n5/b': 'b1', 'n4/a': 'x1' })
    assert.equal(store.counters.corruptSegments, 0)
    await store.close()
  })

  it('refuses at each bound with HintRefused naming the reason, and counts it', async () => {
    const dir = await tempDir()
    const store = await openStore(dir, { perTargetMax: 2, totalMax: 3, bytesPerTargetMax: 100, windowMs: 1000 })
    await add(store, 'n5', 'a', 'x')
    await add(store, 'n5', 'b', 'x')
    const reason = (r: unknown) => (r instanceof KvError && r.data.kind === 'HintRefused' ? r.data.reason : 'accepted')
    assert.equal(reason(store.add('n5', 'c', bytes('x'))), 'target-count')
    await add(store, 'n5', 'a', 'replaces, does not grow')
    await add(store, 'n4', 'a', 'x')
    assert.equal(reason(store.add('n3', 'a', bytes('x'))), 'total-count')
    assert.equal(reason(store.add('n4', 'b', bytes('y'.repeat(200)))), 'target-bytes')
    clock += 1001
    assert.equal(reason(store.add('n4', 'a', bytes('z'))), 'window')
    assert.equal(store.counters.refused, 4)
    assert.ok(lines.includes('hint refused'))
    await store.close()
  })

  it('keeps each owner\'s hints in order of age, through rewrites of a key and a reopen: the window and expiry see the oldest', async () => {
    const dir = await tempDir()
    let store = await openStore(dir, { windowMs: 10_000 })
    await add(store, 'n5', 'a', 'a1')
    clock += 1000
    await add(store, 'n5', 'b', 'b1')
    clock += 1000
    // A newer write for 'a' merges into its hint: 'a' stays the oldest, and keeps its time.
    await add(store, 'n5', 'a', 'a2')
    assert.deepEqual(store.due('n5', 10).map(h => h.key), ['a', 'b'])
    await store.close()
    store = await openStore(dir, { windowMs: 10_000 })
    assert.deepEqual(store.due('n5', 10).map(h => h.key), ['a', 'b'], 'in order of age after a reopen')
    clock += 8_500
    // 'a' is 10.5 s old: the window refuses new hints for n5 even though 'b' (9.5 s) is younger.
    const r = store.add('n5', 'c', bytes('c1'))
    assert.ok(r instanceof KvError && (r.data as { reason: string }).reason === 'window')
    // Expiry at a 10 s TTL takes 'a' only.
    assert.equal(store.expire(clock - 10_000, 100), 1)
    assert.deepEqual(Object.keys(held(store)), ['n5/b'])
    assert.equal(store.counters.expired, 1)
    await store.close()
    store = await openStore(dir)
    assert.deepEqual(Object.keys(held(store)), ['n5/b'], 'an expired hint stays gone after a reopen')
  })

  it('cuts a torn tail and never replays a corrupt record, rewriting what was good', async () => {
    const dir = await tempDir()
    let store = await openStore(dir)
    for (let i = 0; i < 10; i++) await add(store, 'n5', `k${i}`, `v${i}`)
    await store.close()
    const hints = join(dir, 'hints')
    // A torn tail: half a record at the end of the newest segment.
    const rec = encodeHintRecord({ op: 'put', at: 1, target: 'n5', key: 'torn', state: bytes('never acked') })
    const seg = (await readdir(hints)).filter(f => f.endsWith('.hints')).sort()
    await appendFile(join(hints, seg.at(-1)!), rec.subarray(0, rec.length - 3))
    store = await openStore(dir)
    assert.equal(store.counters.corruptSegments, 1)
    assert.equal(store.get('n5', 'torn'), undefined)
    assert.equal(Object.keys(held(store)).length, 10)
    await store.close()
    // Reopened again: the damage was rewritten away, nothing is reported twice.
    store = await openStore(dir)
    assert.equal(store.counters.corruptSegments, 0)
    assert.equal(Object.keys(held(store)).length, 10)
    await store.close()
    // A flipped byte in the middle of a segment: records from there on are dropped, never garbage.
    const files = (await readdir(hints)).filter(f => f.endsWith('.hints')).sort()
    let damagedFile = ''
    for (const f of files) {
      const buf = await readFile(join(hints, f))
      if (buf.length < 100) continue
      const at = Math.floor(buf.length / 2)
      buf[at] = buf[at]! ^ 0x40
      await writeFile(join(hints, f), buf)
      damagedFile = f
      break
    }
    assert.ok(damagedFile, 'a segment with records to damage')
    store = await openStore(dir)
    assert.equal(store.counters.corruptSegments, 1)
    const kept = held(store)
    assert.ok(Object.keys(kept).length < 10 && Object.keys(kept).length > 0, `${Object.keys(kept).length} kept`)
    for (const [k, v] of Object.entries(kept)) assert.equal(v, `v${k.slice('n5/k'.length)}`, 'every kept hint is intact')
    await store.close()
  })

  it('deletes old segments once none of their hints is live', async () => {
    const dir = await tempDir()
    let store = await openStore(dir)
    await add(store, 'n5', 'a', 'x')
    await store.close()
    store = await openStore(dir)
    await add(store, 'n5', 'b', 'y')
    await store.close()
    store = await openStore(dir)
    assert.equal(store.stats().segments, 3, 'one segment per open')
    store.handedOff(store.get('n5', 'a')!)
    store.handedOff(store.get('n5', 'b')!)
    await new Promise(r => setTimeout(r, 50))
    await store.collect()
    assert.equal(store.stats().segments, 1, 'only the current segment is left')
    await store.close()
    store = await openStore(dir)
    assert.deepEqual(held(store), {})
    await store.close()
  })

  it('property: adds and hand-offs across reopens match a Map model', async () => {
    const seed = testSeed('hint store model')
    const random = seededRandom(seed)
    const rand = (n: number) => Math.floor(random() * n)
    const dir = await tempDir()
    let store = await openStore(dir)
    const model = new Map<string, string>()
    for (let step = 0; step < 400; step++) {
      const target = `n${rand(3)}`
      const key = `k${rand(20)}`
      const op = rand(10)
      if (op < 6) {
        const v = `v${step}`
        await add(store, target, key, v)
        model.set(`${target}/${key}`, v)
      } else if (op < 9) {
        const h = store.get(target, key)
        if (h) { store.handedOff(h); model.delete(`${target}/${key}`) }
      } else {
        await new Promise(r => setTimeout(r, 5))
        await store.close()
        store = await openStore(dir)
      }
    }
    await new Promise(r => setTimeout(r, 20))
    await store.close()
    store = await openStore(dir)
    assert.deepEqual(held(store), Object.fromEntries(model), `seed ${seed}`)
    await store.close()
  })
})

// WAL: group commit acknowledges after fsync, replay returns every record in order, a torn tail is
// truncated, and a damaged record in the middle is corruption naming file and offset.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { appendFileSync, readdirSync, readFileSync, statSync, truncateSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { KvError } from '../../coordinator/errors.ts'
import { encodeWalRecord, replayWal, walSegmentName, WalWriter } from './wal.ts'
import { tempDir } from './test-util.ts'

async function writeRecords(dir: string, n: number, rotateAt = -1): Promise<Array<[string, number]>> {
  const w = new WalWriter(dir, 1, true, () => {}, new Map())
  const acked: Array<[string, number]> = []
  const ps: Array<Promise<void>> = []
  for (let i = 0; i < n; i++) {
    if (i === rotateAt) w.rotate()
    const key = `key-${String(i).padStart(4, '0')}`
    ps.push(w.append(encodeWalRecord(key, new Uint8Array(50).fill(i & 255))).then(() => { acked.push([key, i]) }))
  }
  await Promise.all(ps)
  await w.close()
  return acked
}

async function replayAll(dir: string, logs: string[] = []): Promise<Array<[string, number]>> {
  const out: Array<[string, number]> = []
  await replayWal(dir, 0, (k, v) => out.push([k, v[0]!]), (m, f) => logs.push(`${m} ${JSON.stringify(f)}`))
  return out
}

test('group commit: all appends acknowledged, replayed in order across a rotation', async () => {
  const { dir, cleanup } = tempDir('wal')
  try {
    const acked = await writeRecords(dir, 3000, 1000)
    assert.equal(acked.length, 3000)
    assert.deepEqual(readdirSync(dir).sort(), [walSegmentName(1), walSegmentName(2)])
    const replayed = await replayAll(dir)
    assert.deepEqual(replayed, Array.from({ length: 3000 }, (_, i) => [`key-${String(i).padStart(4, '0')}`, i & 255]))
  } finally {
    cleanup()
  }
})

test('a torn tail of the last segment is truncated and logged; earlier records survive', async () => {
  const { dir, cleanup } = tempDir('wal')
  try {
    await writeRecords(dir, 100)
    const file = join(dir, walSegmentName(1))
    const size = statSync(file).size
    const recordBytes = size / 100
    // Cut the last record in half.
    truncateSync(file, size - Math.floor(recordBytes / 2))
    let logs: string[] = []
    let replayed = await replayAll(dir, logs)
    assert.equal(replayed.length, 99)
    assert.ok(logs.some((l) => l.includes('truncating torn tail') && l.includes(`"offset":${99 * recordBytes}`)), logs.join('\n'))
    assert.equal(statSync(file).size, 99 * recordBytes)
    // Garbage appended after the last complete record.
    appendFileSync(file, Buffer.from('this is not a record at all, just junk bytes'))
    logs = []
    replayed = await replayAll(dir, logs)
    assert.equal(replayed.length, 99)
    assert.equal(statSync(file).size, 99 * recordBytes)
    // Zeros (a preallocated but unwritten tail).
    appendFileSync(file, Buffer.alloc(4096))
    replayed = await replayAll(dir)
    assert.equal(replayed.length, 99)
  } finally {
    cleanup()
  }
})

test('a flipped bit in the middle of the WAL is corruption naming file and offset', async () => {
  const { dir, cleanup } = tempDir('wal')
  try {
    await writeRecords(dir, 100)
    const file = join(dir, walSegmentName(1))
    const good = readFileSync(file)
    const recordBytes = good.length / 100
    for (const pos of [0, 3, 4, 9, 20, 40 * recordBytes + 17, 98 * recordBytes + 5]) {
      const bad = Buffer.from(good)
      bad[pos]! ^= 0x10
      writeFileSync(file, bad)
      await assert.rejects(replayAll(dir), (e: unknown) => {
        assert.ok(e instanceof KvError && e.data.kind === 'Corruption', String(e))
        assert.equal(e.data.file, file)
        assert.equal(e.data.offset, Math.floor(pos / recordBytes) * recordBytes)
        return true
      })
      assert.equal(statSync(file).size, good.length, 'corruption must not truncate')
    }
  } finally {
    cleanup()
  }
})

test('a bad tail in a segment that is not the last is corruption', async () => {
  const { dir, cleanup } = tempDir('wal')
  try {
    await writeRecords(dir, 100, 50)
    const file = join(dir, walSegmentName(1))
    truncateSync(file, statSync(file).size - 3)
    await assert.rejects(replayAll(dir), (e: unknown) => e instanceof KvError && e.data.kind === 'Corruption' && e.data.file === file)
  } finally {
    cleanup()
  }
})

test('segments below the minimum are deleted, not replayed', async () => {
  const { dir, cleanup } = tempDir('wal')
  try {
    await writeRecords(dir, 10, 5)
    const out: string[] = []
    await replayWal(dir, 2, (k) => out.push(k), () => {})
    assert.deepEqual(out, ['key-0005', 'key-0006', 'key-0007', 'key-0008', 'key-0009'])
    assert.deepEqual(readdirSync(dir), [walSegmentName(2)])
  } finally {
    cleanup()
  }
})

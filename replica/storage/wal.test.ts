// WAL: group commit acknowledges after fsync, replay returns every record in order, segments are
// zero-filled ahead of the writes, a torn last group (a hole included) is cut off, damage before it is
// corruption naming file and offset, and version-1 segments still replay.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { appendFileSync, readdirSync, readFileSync, statSync, truncateSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { KvError } from '../../coordinator/errors.ts'
import { walSegmentName } from './disk-layout.ts'
import { encodeWalRecord, replayWal, WalWriter } from './wal.ts'
import { tempDir, walGroupOffsets } from '../../test/storage/util.ts'

/**
 * Writes `n` records of `valueBytes` each, `perGroup` per group (each batch awaited, so each is one
 * group), rotating to a new segment before record `rotateAt`.
 */
async function writeRecords(dir: string, n: number, opts: { rotateAt?: number; perGroup?: number; valueBytes?: number; preallocate?: number } = {}): Promise<Array<[string, number]>> {
  const w = new WalWriter(dir, 1, true, () => {}, new Map(), opts.preallocate ?? 0)
  const acked: Array<[string, number]> = []
  const perGroup = opts.perGroup ?? n
  for (let from = 0; from < n; from += perGroup) {
    const ps: Array<Promise<void>> = []
    for (let i = from; i < Math.min(n, from + perGroup); i++) {
      if (i === opts.rotateAt) w.rotate()
      const key = `key-${String(i).padStart(4, '0')}`
      ps.push(w.append(encodeWalRecord(key, new Uint8Array(opts.valueBytes ?? 50).fill(i & 255))).then(() => { acked.push([key, i]) }))
    }
    await Promise.all(ps)
  }
  await w.close()
  return acked
}

async function replayAll(dir: string, logs: string[] = []): Promise<Array<[string, number]>> {
  const out: Array<[string, number]> = []
  await replayWal(dir, 0, (k, v) => out.push([k, v[0]!]), (m, f) => logs.push(`${m} ${JSON.stringify(f)}`))
  return out
}

const keyOf = (i: number): [string, number] => [`key-${String(i).padStart(4, '0')}`, i & 255]

test('group commit: all appends acknowledged, replayed in order across a rotation', async () => {
  const { dir, cleanup } = tempDir('wal')
  try {
    const acked = await writeRecords(dir, 3000, { rotateAt: 1000 })
    assert.equal(acked.length, 3000)
    assert.deepEqual(readdirSync(dir).sort(), [walSegmentName(1), walSegmentName(2)])
    const replayed = await replayAll(dir)
    assert.deepEqual(replayed, Array.from({ length: 3000 }, (_, i) => keyOf(i)))
  } finally {
    cleanup()
  }
})

test('preallocated segments: zero-filled ahead of the writes, replayed whole, the zero tail is not a torn write', async () => {
  const { dir, cleanup } = tempDir('wal')
  try {
    const step = 64 * 1024
    // 40 groups of 10 records of ~560 bytes: ~220 KiB, so the fill runs several steps ahead of the writes.
    const acked = await writeRecords(dir, 400, { perGroup: 10, valueBytes: 540, rotateAt: 300, preallocate: step })
    assert.equal(acked.length, 400)
    const file = join(dir, walSegmentName(1))
    const buf = readFileSync(file)
    const groups = walGroupOffsets(buf)
    assert.equal(groups.length, 30)
    const dataEnd = groups.at(-1)! + 12 + buf.readUInt32LE(groups.at(-1)! + 4)
    assert.ok(buf.length > dataEnd, `segment of ${buf.length} bytes must extend past its data (${dataEnd}) with zeros`)
    assert.equal(buf.length % 4096, 0, 'the zero fill ends on a page boundary')
    assert.ok(buf.subarray(dataEnd).every((b) => b === 0))
    const logs: string[] = []
    assert.deepEqual(await replayAll(dir, logs), Array.from({ length: 400 }, (_, i) => keyOf(i)))
    assert.ok(!logs.some((l) => l.includes('torn')), logs.join('\n'))
    assert.equal(statSync(file).size, buf.length, 'a clean zero tail is not truncated')
  } finally {
    cleanup()
  }
})

test('a torn last group is cut off and logged; earlier groups survive', async () => {
  const { dir, cleanup } = tempDir('wal')
  try {
    await writeRecords(dir, 100, { perGroup: 10, valueBytes: 500 })
    const file = join(dir, walSegmentName(1))
    const good = readFileSync(file)
    const groups = walGroupOffsets(good)
    assert.equal(groups.length, 10)
    const lastGroup = groups[9]!
    // Cut the last group in half.
    truncateSync(file, lastGroup + Math.floor((good.length - lastGroup) / 2))
    let logs: string[] = []
    assert.deepEqual(await replayAll(dir, logs), Array.from({ length: 90 }, (_, i) => keyOf(i)))
    assert.ok(logs.some((l) => l.includes('truncating torn tail') && l.includes(`"offset":${lastGroup}`)), logs.join('\n'))
    assert.equal(statSync(file).size, lastGroup)
    // Garbage after the last complete group.
    appendFileSync(file, Buffer.from('this is not a group at all, just junk bytes'))
    logs = []
    assert.equal((await replayAll(dir, logs)).length, 90)
    assert.equal(statSync(file).size, lastGroup)
    // A preallocated file whose last write was torn with a hole: the group's first page never reached
    // the disk (zeros) but its later pages did, valid records included. Not corruption: torn.
    const holed = Buffer.concat([good, Buffer.alloc(8192)])
    holed.fill(0, lastGroup, lastGroup + 4096)
    writeFileSync(file, holed)
    logs = []
    assert.deepEqual(await replayAll(dir, logs), Array.from({ length: 90 }, (_, i) => keyOf(i)))
    assert.ok(logs.some((l) => l.includes('truncating torn tail') && l.includes(`"offset":${lastGroup}`)), logs.join('\n'))
  } finally {
    cleanup()
  }
})

test('a flipped bit before the last group is corruption naming file and offset', async () => {
  const { dir, cleanup } = tempDir('wal')
  try {
    await writeRecords(dir, 100, { perGroup: 10 })
    const file = join(dir, walSegmentName(1))
    const good = readFileSync(file)
    const groups = walGroupOffsets(good)
    // [position to flip, offset the error must name]: segment magic (then nothing parses as a
    // version-2 segment, and as version 1 the first bytes are bad with valid records after them),
    // a group's magic, length, crc, a record's bytes in group 4, the first byte of group 9.
    const cases: Array<[number, number]> = [[0, 0], [groups[0]!, groups[0]!], [groups[2]! + 5, groups[2]!],
      [groups[3]! + 9, groups[3]!], [groups[4]! + 12 + 100, groups[4]!], [groups[8]!, groups[8]!]]
    for (const [pos, offset] of cases) {
      const bad = Buffer.from(good)
      bad[pos]! ^= 0x10
      writeFileSync(file, bad)
      await assert.rejects(replayAll(dir), (e: unknown) => {
        assert.ok(e instanceof KvError && e.data.kind === 'Corruption', String(e))
        assert.equal(e.data.file, file)
        assert.equal(e.data.offset, offset, `flip at ${pos}`)
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
    await writeRecords(dir, 100, { rotateAt: 50, perGroup: 10 })
    const file = join(dir, walSegmentName(1))
    truncateSync(file, statSync(file).size - 3)
    await assert.rejects(replayAll(dir), (e: unknown) => e instanceof KvError && e.data.kind === 'Corruption' && e.data.file === file)
  } finally {
    cleanup()
  }
})

test('version-1 segments (records from offset 0, no groups) still replay, torn tail included', async () => {
  const { dir, cleanup } = tempDir('wal')
  try {
    const records = Array.from({ length: 20 }, (_, i) => encodeWalRecord(keyOf(i)[0], new Uint8Array(50).fill(i)))
    writeFileSync(join(dir, walSegmentName(1)), Buffer.concat(records))
    const file = join(dir, walSegmentName(2))
    writeFileSync(file, Buffer.concat(records.slice(0, 10)))
    appendFileSync(file, records[10]!.subarray(0, 30))
    const logs: string[] = []
    const replayed = await replayAll(dir, logs)
    assert.deepEqual(replayed, [...Array.from({ length: 20 }, (_, i) => keyOf(i)), ...Array.from({ length: 10 }, (_, i) => keyOf(i))])
    assert.ok(logs.some((l) => l.includes('truncating torn tail')), logs.join('\n'))
    assert.equal(statSync(file).size, records[0]!.length * 10)
  } finally {
    cleanup()
  }
})

test('segments below the minimum are deleted, not replayed', async () => {
  const { dir, cleanup } = tempDir('wal')
  try {
    await writeRecords(dir, 10, { rotateAt: 5 })
    const out: string[] = []
    await replayWal(dir, 2, (k) => out.push(k), () => {})
    assert.deepEqual(out, ['key-0005', 'key-0006', 'key-0007', 'key-0008', 'key-0009'])
    assert.deepEqual(readdirSync(dir), [walSegmentName(2)])
  } finally {
    cleanup()
  }
})

// Storage engine benchmark (issue 3): puts with group commit against a raw-fsync and a raw
// group-commit baseline written in the same run; gets against a plain Map; flush and compaction
// MB/s; p99 put latency while a compaction runs; reopen ("restore-like") time and memory for N keys.
// Numbers are measured, never asserted; run:
//   node --import tsx bench/storage-bench.ts [--keys N] [--json] [--dir PATH]
// (add --expose-gc to node for steadier memory figures).

import { spawnSync } from 'node:child_process'
import { open, rm, mkdir } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as hdr from 'hdr-histogram-js'
import { openEngine } from '../replica/storage/engine.ts'
import type { Engine } from '../replica/storage/engine-types.ts'

const args = process.argv.slice(2)
function flag(name: string): string | undefined {
  const i = args.indexOf(name)
  return i >= 0 ? args[i + 1] : undefined
}
const keys = Number(flag('--keys') ?? 200_000)
const json = args.includes('--json')
const valueBytes = 1024
const inflight = 256
if (!Number.isSafeInteger(keys) || keys < 1000) throw new Error(`--keys must be an integer >= 1000, got ${flag('--keys')}`)
const dir = flag('--dir') ?? mkdtempSync(join(tmpdir(), 'ringkv-bench-'))
const gc = (globalThis as { gc?: () => void }).gc

const rows: Array<[string, string]> = []
const summary: Record<string, number | string | null> = { keys, valueBytes, inflight }
const say = (s: string): void => { if (!json) console.error(s) }
function row(name: string, value: string): void {
  rows.push([name, value])
  say(`  ${name.padEnd(44)} ${value}`)
}
const keyOf = (i: number): string => `user${String(i).padStart(10, '0')}`
const fmt = (n: number): string => Math.round(n).toLocaleString('en-US')

function histogram(): hdr.Histogram {
  return hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: 3 })
}

/**
 * One record written and fdatasynced at a time: records per second, and the CPU each write+fdatasync
 * costs this process (all its threads: libuv's pool does the fdatasync). On a virtual machine the CPU
 * is most of the wall time (each flush exits to the hypervisor), and it is what a WAL group pays per
 * group whatever its size: docs/performance.md, "The ceiling on this machine".
 */
async function rawFsyncBaseline(file: string, seconds: number): Promise<{ perSec: number; cpuUs: number }> {
  const fh = await open(file, 'w')
  const rec = Buffer.alloc(valueBytes + 24, 7)
  const t0 = performance.now()
  const cpu0 = process.cpuUsage()
  let n = 0
  while (performance.now() - t0 < seconds * 1000) {
    await fh.write(rec)
    await fh.datasync()
    n++
  }
  const cpu = process.cpuUsage(cpu0)
  const s = (performance.now() - t0) / 1000
  await fh.close()
  return { perSec: n / s, cpuUs: (cpu.user + cpu.system) / n }
}

async function rawGroupBaseline(file: string, records: number, group: number): Promise<number> {
  const fh = await open(file, 'w')
  const rec = Buffer.alloc(valueBytes + 24, 7)
  const t0 = performance.now()
  for (let done = 0; done < records; done += group) {
    const bufs: Buffer[] = []
    for (let i = 0; i < group; i++) bufs.push(Buffer.from(rec))
    await fh.write(Buffer.concat(bufs))
    await fh.datasync()
  }
  const s = (performance.now() - t0) / 1000
  await fh.close()
  return records / s
}

/** Puts keys [from, to) with `inflight` outstanding; records per-put latency in µs. */
async function putLoad(e: Engine, from: number, to: number, h: hdr.Histogram | undefined, stop?: () => boolean): Promise<number> {
  const value = Buffer.alloc(valueBytes, 42)
  let next = from
  let done = 0
  await new Promise<void>((resolve, reject) => {
    let active = 0
    const launch = (): void => {
      while (active < inflight && next < to && !(stop?.() ?? false)) {
        const i = next++
        const t = performance.now()
        active++
        e.put(keyOf(i), value).then(() => {
          if (h !== undefined) h.recordValue(Math.max(1, Math.round((performance.now() - t) * 1000)))
          active--
          done++
          if ((next >= to || (stop?.() ?? false)) && active === 0) resolve()
          else launch()
        }, reject)
      }
    }
    launch()
  })
  return done
}

const flushLogs: Array<{ bytes: number; ms: number }> = []
const compactionLogs: Array<{ inBytes: number; ms: number }> = []
let compacting = false
const log = (msg: string, f?: Record<string, unknown>): void => {
  if (msg === 'storage: flushed') flushLogs.push({ bytes: f?.['bytes'] as number, ms: f?.['ms'] as number })
  if (msg === 'storage: compaction started') compacting = true
  if (msg === 'storage: compacted') {
    compacting = false
    compactionLogs.push({ inBytes: f?.['inBytes'] as number, ms: f?.['ms'] as number })
  }
}
const merge = (_older: Uint8Array, newer: Uint8Array): Uint8Array => newer

async function main(): Promise<void> {
  await mkdir(dir, { recursive: true })
  gc?.()
  const memStart = process.memoryUsage()
  const rssStart = memStart.rss
  say(`storage bench: ${fmt(keys)} keys x ${valueBytes} B values, ${inflight} puts in flight, dir ${dir}`)

  const rawFsync = await rawFsyncBaseline(join(dir, 'raw-fsync.log'), 2)
  row('raw write+fsync per record (baseline)', `${fmt(rawFsync.perSec)} rec/s, ${fmt(rawFsync.cpuUs)} µs CPU each`)
  summary['rawFsyncPerSec'] = Math.round(rawFsync.perSec)
  summary['rawFsyncCpuUs'] = Math.round(rawFsync.cpuUs)
  const rawGroup = await rawGroupBaseline(join(dir, 'raw-group.log'), Math.min(keys, 200_000), inflight)
  row(`raw group commit, ${inflight}/fsync (baseline)`, `${fmt(rawGroup)} rec/s`)
  summary['rawGroupPerSec'] = Math.round(rawGroup)
  await rm(join(dir, 'raw-fsync.log'))
  await rm(join(dir, 'raw-group.log'))

  const edir = join(dir, 'engine')
  let e = await openEngine({ dir: edir, merge, log })
  const hPut = histogram()
  let t0 = performance.now()
  await putLoad(e, 0, keys, hPut)
  let s = (performance.now() - t0) / 1000
  row('engine put, group commit + fsync', `${fmt(keys / s)} puts/s  p50 ${(hPut.getValueAtPercentile(50) / 1000).toFixed(2)} ms  p99 ${(hPut.getValueAtPercentile(99) / 1000).toFixed(2)} ms`)
  summary['putsPerSec'] = Math.round(keys / s)
  summary['putP50Ms'] = hPut.getValueAtPercentile(50) / 1000
  summary['putP99Ms'] = hPut.getValueAtPercentile(99) / 1000

  // Gets against a plain Map holding the same keys and values, random order.
  const order = new Uint32Array(keys)
  for (let i = 0; i < keys; i++) order[i] = Math.floor(Math.random() * keys)
  const ks = Array.from(order, keyOf)
  let miss = 0
  t0 = performance.now()
  for (const k of ks) if (e.get(k) === undefined) miss++
  s = (performance.now() - t0) / 1000
  if (miss > 0) throw new Error(`${miss} gets missed`)
  const st = e.stats()
  row(`engine get (memtable + ${st.tables} tables)`, `${fmt(keys / s)} gets/s`)
  summary['getsPerSec'] = Math.round(keys / s)
  let map: Map<string, Uint8Array> | undefined = new Map()
  for (let i = 0; i < keys; i++) map.set(keyOf(i), Buffer.alloc(valueBytes, 42))
  t0 = performance.now()
  for (const k of ks) if (map.get(k) === undefined) miss++
  s = (performance.now() - t0) / 1000
  row('plain Map get (baseline)', `${fmt(keys / s)} gets/s`)
  summary['mapGetsPerSec'] = Math.round(keys / s)
  map = undefined

  // p99 put latency while a compaction runs: flush until a tier is due (which starts compaction),
  // then keep putting (overwrites) until it commits.
  // The quiet baseline must not overlap a compaction the load phase queued: wait for it first.
  while (compacting) await new Promise((r) => setTimeout(r, 50))
  const hQuiet = histogram()
  await putLoad(e, 0, Math.min(keys, 20_000), hQuiet)
  const hCompact = histogram()
  let compactionPuts = 0
  for (let tries = 0; tries < 8 && hCompact.totalCount === 0; tries++) {
    const flushing = e.flush()
    await flushing
    if (!compacting) {
      // Not due yet: add a memtable's worth of data and flush again.
      await putLoad(e, 0, Math.min(keys, 65_000), undefined)
      continue
    }
    let k = 0
    while (compacting) {
      compactionPuts += await putLoad(e, k, k + 2048, hCompact, () => !compacting)
      k = (k + 2048) % keys
    }
  }
  if (hCompact.totalCount > 0) {
    row('put p99 with no compaction', `${(hQuiet.getValueAtPercentile(99) / 1000).toFixed(2)} ms`)
    row('put p99 while a compaction runs', `${(hCompact.getValueAtPercentile(99) / 1000).toFixed(2)} ms  (p50 ${(hCompact.getValueAtPercentile(50) / 1000).toFixed(2)}, max ${(hCompact.maxValue / 1000).toFixed(2)}, ${fmt(compactionPuts)} puts)`)
    summary['putP99QuietMs'] = hQuiet.getValueAtPercentile(99) / 1000
    summary['putP99DuringCompactionMs'] = hCompact.getValueAtPercentile(99) / 1000
  } else {
    row('put p99 while a compaction runs', 'n/a (no compaction ran; raise --keys)')
    summary['putP99DuringCompactionMs'] = null
  }
  await e.flush()
  const fBytes = flushLogs.reduce((a, f) => a + f.bytes, 0)
  const fMs = flushLogs.reduce((a, f) => a + f.ms, 0)
  row('flush (build + write + fsync + manifest)', `${(fBytes / 1048576 / (fMs / 1000)).toFixed(1)} MB/s over ${flushLogs.length} flushes`)
  summary['flushMBps'] = fBytes / 1048576 / (fMs / 1000)
  const cBytes = compactionLogs.reduce((a, c) => a + c.inBytes, 0)
  const cMs = compactionLogs.reduce((a, c) => a + c.ms, 0)
  row('compaction (input bytes, sliced merge)', compactionLogs.length > 0 ? `${(cBytes / 1048576 / (cMs / 1000)).toFixed(1)} MB/s over ${compactionLogs.length} compactions` : 'n/a')
  summary['compactionMBps'] = compactionLogs.length > 0 ? cBytes / 1048576 / (cMs / 1000) : null
  await e.close()

  // Restore-like reopen, in a fresh process so that nothing of this run's heap is counted: load and
  // verify every table, replay the WAL, read every key once; report time and memory.
  const child = spawnSync(process.execPath, ['--expose-gc', '--import', 'tsx', fileURLToPath(import.meta.url), '--reopen-only', edir, '--keys', String(keys)], { encoding: 'utf8' })
  if (child.status !== 0) throw new Error(`reopen child failed: ${child.stderr}`)
  const r = JSON.parse(child.stdout) as Record<string, number>
  const raw = keys * (keyOf(0).length + valueBytes)
  row(`reopen ${fmt(keys)} keys (fresh process)`, `${r['openSeconds']!.toFixed(2)} s  (${r['tables']} tables, WAL ${fmt(r['walBytes']! / 1048576)} MiB)`)
  row('engine memory after reopen / raw bytes', `${(r['held']! / raw).toFixed(2)}x  (heap+external +${fmt(r['held']! / 1048576)} MiB for ${fmt(raw / 1048576)} MiB raw)`)
  row('reopen process rss: start / peak / end', `${fmt(r['rssStart']! / 1048576)} / ${fmt(r['peakRss']! / 1048576)} / ${fmt(r['rssEnd']! / 1048576)} MiB  (peak - start)/raw ${((r['peakRss']! - r['rssStart']!) / raw).toFixed(2)}x`)
  summary['reopenSeconds'] = r['openSeconds']!
  summary['memoryRatio'] = r['held']! / raw
  summary['peakRssRatio'] = (r['peakRss']! - r['rssStart']!) / raw
  summary['peakRssMiB'] = r['peakRss']! / 1048576
  if (flag('--dir') === undefined) await rm(dir, { recursive: true, force: true })
  if (json) console.log(JSON.stringify(summary, null, 1))
}

async function reopenOnly(edir: string): Promise<void> {
  gc?.()
  const start = process.memoryUsage()
  let peakRss = start.rss
  const sampler = setInterval(() => { peakRss = Math.max(peakRss, process.memoryUsage().rss) }, 10)
  const t0 = performance.now()
  const e = await openEngine({ dir: edir, merge })
  const openSeconds = (performance.now() - t0) / 1000
  let found = 0
  for (let i = 0; i < keys; i++) if (e.get(keyOf(i)) !== undefined) found++
  if (found !== keys) throw new Error(`after reopen ${keys - found} keys missing`)
  clearInterval(sampler)
  gc?.()
  const end = process.memoryUsage()
  peakRss = Math.max(peakRss, end.rss)
  const st = e.stats()
  console.log(JSON.stringify({ openSeconds, held: end.heapUsed + end.external - start.heapUsed - start.external, rssStart: start.rss, peakRss, rssEnd: end.rss, tables: st.tables, walBytes: st.walBytes }))
  await e.close()
}

const reopenDir = flag('--reopen-only')
if (reopenDir !== undefined) await reopenOnly(reopenDir)
else await main()

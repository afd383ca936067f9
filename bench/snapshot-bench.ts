// Snapshot and restore benchmark (issue 3), reported, never asserted. Part of `npm run bench:storage`.
//
//   node --import tsx bench/snapshot-bench.ts [--keys 1000000] [--value-bytes 1024] [--json]
//            [--s3-endpoint URL]   (default: an embedded s3rver in a temp dir)
//
// 1. Loads one engine with --keys keys (group-committed puts), flushes.
// 2. Snapshot: Snapshotter.snapshotNow() uploads the tables and the manifest; MB/s.
// 3. Baseline in the same run: raw PutObject (multipart for large files, as the snapshotter does)
//    of the very same table files to another prefix; MB/s.
// 4. Restore, in a fresh child process (so its memory is its own): restoreFromSnapshot into an
//    empty directory, then openEngine; time of each, peak RSS (VmHWM) and heap, as ratios to the
//    raw key+value bytes; every 1000th key is read back and checked.

import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { fileURLToPath } from 'node:url'
import { startEmbeddedS3 } from '../infra/embedded-s3.ts'
import { restoreFromSnapshot } from '../replica/snapshot/restore.ts'
import { S3ObjectStore, s3ConfigFromEnv, type S3Config } from '../replica/snapshot/s3-store.ts'
import { Snapshotter } from '../replica/snapshot/snapshotter.ts'
import { openEngine } from '../replica/storage/engine.ts'

const newerWins = (_older: Uint8Array, newer: Uint8Array) => newer
const keyOf = (i: number) => `key:${String(i).padStart(10, '0')}`
const quiet = () => {}

function peakRssBytes(): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'))
  return m ? Number(m[1]) * 1024 : process.memoryUsage().rss
}

/** The child: restore into an empty dir, open, spot-check; prints one JSON line. */
async function restoreChild(cfg: S3Config, cluster: string, node: string, keys: number, valueBytes: number): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'ringkv-restore-'))
  const store = new S3ObjectStore(cfg)
  const t0 = performance.now()
  const res = await restoreFromSnapshot({ store, cluster, node, dataDir: dir, log: quiet })
  const restoreMs = performance.now() - t0
  if (!res.restored) throw new Error('no snapshot found to restore')
  const t1 = performance.now()
  const engine = await openEngine({ dir, merge: newerWins })
  const openMs = performance.now() - t1
  let checked = 0
  for (let i = 0; i < keys; i += 1000) {
    const v = engine.get(keyOf(i))
    if (!v || v.byteLength !== valueBytes) throw new Error(`restored engine lacks ${keyOf(i)}`)
    checked++
  }
  const mem = process.memoryUsage()
  process.stdout.write(JSON.stringify({ restoreMs, openMs, checked, bytes: res.bytes, tables: res.tables, peakRss: peakRssBytes(), heapUsed: mem.heapUsed, external: mem.external, arrayBuffers: mem.arrayBuffers }) + '\n')
  await engine.close()
  store.destroy()
  await rm(dir, { recursive: true, force: true })
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      keys: { type: 'string', default: '1000000' },
      'value-bytes': { type: 'string', default: '1024' },
      json: { type: 'boolean', default: false },
      's3-endpoint': { type: 'string' },
      'restore-child': { type: 'string' },
    },
  })
  const keys = Number(values.keys)
  const valueBytes = Number(values['value-bytes'])
  if (!(Number.isInteger(keys) && keys > 0 && keys <= 10_000_000)) throw new Error(`--keys must be 1..10000000, got ${values.keys}`)
  if (!(Number.isInteger(valueBytes) && valueBytes > 0 && valueBytes <= 1 << 20)) throw new Error('--value-bytes must be 1..1048576')
  if (values['restore-child']) {
    const { cfg, cluster, node } = JSON.parse(values['restore-child']) as { cfg: S3Config; cluster: string; node: string }
    await restoreChild(cfg, cluster, node, keys, valueBytes)
    return
  }
  const say = (s: string) => { if (!values.json) process.stderr.write(s + '\n') }
  const work = await mkdtemp(join(tmpdir(), 'ringkv-snapbench-'))
  const embedded = values['s3-endpoint'] ? undefined : await startEmbeddedS3({ directory: join(work, 's3'), bucket: 'ringkv-bench' })
  const cfg: S3Config = embedded ? embedded.config : s3ConfigFromEnv(process.env, { endpoint: values['s3-endpoint']! })
  const store = new S3ObjectStore(cfg)
  await store.ensureBucket()
  const cluster = 'bench'
  const node = `n${Date.now()}`
  try {
    say(`loading ${keys} keys of ${valueBytes} bytes into one engine …`)
    const dir = join(work, 'engine')
    const engine = await openEngine({ dir, merge: newerWins })
    const value = randomBytes(valueBytes)
    const tLoad = performance.now()
    const inflight = new Set<Promise<void>>()
    for (let i = 0; i < keys; i++) {
      const p = engine.put(keyOf(i), value).finally(() => inflight.delete(p))
      inflight.add(p)
      if (inflight.size >= 256) await Promise.race(inflight)
    }
    await Promise.all(inflight)
    await engine.flush()
    const loadMs = performance.now() - tLoad
    const tables = engine.manifest().tables
    const tableBytes = tables.reduce((n, t) => n + t.bytes, 0)

    say(`snapshot: uploading ${tables.length} tables, ${(tableBytes / 2 ** 20).toFixed(1)} MiB …`)
    const snap = new Snapshotter({ engine, store, cluster, node, incarnation: 1, dataDir: dir, log: quiet })
    const tSnap = performance.now()
    const summary = await snap.snapshotNow()
    const snapMs = performance.now() - tSnap
    await snap.close()

    say('baseline: raw PutObject of the same files …')
    const tRaw = performance.now()
    for (const t of tables) await store.putLarge(`${cluster}/raw-baseline/${t.file}`, { path: join(dir, 'tables', t.file), bytes: t.bytes })
    const rawMs = performance.now() - tRaw
    await engine.close()

    say('restore: a fresh process restores from S3 and opens the engine …')
    const child = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), '--keys', String(keys), '--value-bytes', String(valueBytes),
      '--restore-child', JSON.stringify({ cfg, cluster, node })], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' } })
    let out = ''
    child.stdout!.on('data', d => { out += d })
    const code = await new Promise<number | null>(ok => child.once('exit', ok))
    if (code !== 0) throw new Error(`restore child exited with ${code}`)
    const restore = JSON.parse(out.trim().split('\n').pop()!) as { restoreMs: number; openMs: number; checked: number; bytes: number; peakRss: number; heapUsed: number; external: number; arrayBuffers: number }

    const rawBytes = keys * (keyOf(0).length + valueBytes)
    const mbps = (bytes: number, ms: number) => bytes / 2 ** 20 / (ms / 1000)
    const result = {
      config: { keys, valueBytes, endpoint: embedded ? 'embedded s3rver' : cfg.endpoint, rawBytes },
      load: { ms: Math.round(loadMs), putsPerSec: Math.round(keys / (loadMs / 1000)) },
      snapshot: { tables: tables.length, bytes: tableBytes, bytesUploaded: summary.bytesUploaded, ms: Math.round(snapMs), mbPerSec: +mbps(summary.bytesUploaded, snapMs).toFixed(1) },
      rawPutObject: { ms: Math.round(rawMs), mbPerSec: +mbps(tableBytes, rawMs).toFixed(1) },
      restore: {
        downloadMs: Math.round(restore.restoreMs), openMs: Math.round(restore.openMs), totalMs: Math.round(restore.restoreMs + restore.openMs),
        keysChecked: restore.checked, peakRssBytes: restore.peakRss, peakRssVsRaw: +(restore.peakRss / rawBytes).toFixed(2),
        heapPlusExternalVsRaw: +((restore.heapUsed + restore.external) / rawBytes).toFixed(2),
      },
    }
    if (values.json) { process.stdout.write(JSON.stringify(result) + '\n'); return }
    const line = (a: string, b: string) => process.stdout.write(`${a.padEnd(40)} ${b}\n`)
    process.stdout.write(`\nsnapshot / restore — ${keys} keys x ${valueBytes} B (${(rawBytes / 2 ** 20).toFixed(0)} MiB raw), ${result.config.endpoint}\n`)
    line('load (engine puts, group commit)', `${result.load.putsPerSec} puts/s`)
    line('snapshot upload (tables + manifest)', `${result.snapshot.mbPerSec} MB/s (${result.snapshot.tables} tables, ${(tableBytes / 2 ** 20).toFixed(0)} MiB, ${result.snapshot.ms} ms)`)
    line('raw PutObject, same files, same run', `${result.rawPutObject.mbPerSec} MB/s (${result.rawPutObject.ms} ms)`)
    line('snapshot vs raw', `${(result.snapshot.mbPerSec / result.rawPutObject.mbPerSec).toFixed(2)}x`)
    line('restore: download + verify', `${(restore.restoreMs / 1000).toFixed(1)} s`)
    line('restore: open engine', `${(restore.openMs / 1000).toFixed(1)} s`)
    line('restore: total', `${((restore.restoreMs + restore.openMs) / 1000).toFixed(1)} s (target < 30 s for 1M keys)`)
    line('restore: peak RSS', `${(restore.peakRss / 2 ** 20).toFixed(0)} MiB = ${result.restore.peakRssVsRaw}x raw key+value bytes`)
    line('restore: heap + external after open', `${result.restore.heapPlusExternalVsRaw}x raw (target <= 2x)`)
  } finally {
    store.destroy()
    await embedded?.close()
    await rm(work, { recursive: true, force: true })
  }
}

main().catch(e => { process.stderr.write(`snapshot-bench: ${(e as Error).stack ?? e}\n`); process.exit(1) })

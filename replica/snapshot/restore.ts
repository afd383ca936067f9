// Restore a replica's data directory from its newest S3 snapshot (docs/storage.md "Restore"): used
// when a replica starts with an empty data directory. It finds the highest-seq manifest of
// <cluster>/<node>, downloads every table it names into `${dataDir}/tables/`, verifying each
// download's size and CRC32C against the manifest, and then writes `${dataDir}/MANIFEST.json`.
//
// Crash safety: each table is written to a .tmp file, fsynced and renamed; MANIFEST.json is written
// last (tmp, fsync, rename, fsync dir), so until the very end the directory holds no manifest and
// the next start sees it as empty again and restores afresh (tables without a manifest are garbage by
// the engine contract). The names and the atomic manifest write are the engine's own
// (storage/disk-layout.ts, storage/manifest.ts), so a restored directory is one the engine opens.
// The restored manifest keeps the snapshot's walSegmentMin: no WAL segment exists, so none is
// replayed, and the engine numbers new segments from there on.
//
// The snapshot may be behind the lost replica by up to one flush interval plus the upload lag: the
// caller takes a higher incarnation (so no dot is issued twice, docs/versions.md); read repair, and later anti-entropy,
// brings back the rest from the other replicas.

import { mkdir, open, readdir, rename, rm, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { crc32c } from '@node-rs/crc32'
import { KvError } from '../../coordinator/errors.ts'
import { manifestFileName, manifestPath as manifestPathOf, tablePath, tablesDir as tablesDirOf, tmpPath, tmpSuffix } from '../storage/disk-layout.ts'
import type { Log, TableInfo } from '../storage/engine-types.ts'
import { crc32cHex, fsyncDir } from '../storage/file-util.ts'
import { writeManifest } from '../storage/manifest.ts'
import type { ObjectStore } from './object-store.ts'
import {
  decodeSnapshotManifest, manifestKey, manifestSeqOf, manifestsPrefix, tableKey, type SnapshotManifest,
} from './snapshot-manifest.ts'
import { snapshotLimits as L } from './snapshot-limits.ts'

export interface RestoreOptions {
  store: ObjectStore
  cluster: string
  node: string
  dataDir: string
  log: Log
  clock?: { now(): number }
  signal?: AbortSignal
}

export type RestoreResult =
  | { readonly restored: false }
  | {
    readonly restored: true
    readonly manifest: SnapshotManifest
    /** The incarnation that wrote the snapshot; the restored replica must take a higher one. */
    readonly incarnation: number
    readonly createdAt: number
    /** now - createdAt: writes newer than this may be missing until anti-entropy repairs them. */
    readonly behindMs: number
    readonly tables: number
    readonly bytes: number
    readonly durationMs: number
  }

export async function restoreFromSnapshot(opts: RestoreOptions): Promise<RestoreResult> {
  const { store, cluster, node, dataDir, log } = opts
  const clock = opts.clock ?? { now: () => Date.now() }
  const started = clock.now()
  const signalOpt = opts.signal === undefined ? {} : { signal: opts.signal }

  const manifestPath = manifestPathOf(dataDir)
  if (await exists(manifestPath)) {
    throw new KvError({ kind: 'BadRequest', issues: [`${manifestPath} exists`] },
      `refusing to restore into ${dataDir}: it already holds an engine (${manifestFileName}); restore only into an empty data directory`)
  }

  // Newest first; an unreadable manifest is skipped for the one before it (and said so in the log).
  const seqs = (await store.list(manifestsPrefix(cluster, node), signalOpt))
    .map(manifestSeqOf).filter((s): s is number => s !== undefined).sort((a, b) => b - a)
  let manifest: SnapshotManifest | undefined
  for (const seq of seqs) {
    const key = manifestKey(cluster, node, seq)
    const bytes = await store.get(key, signalOpt)
    if (bytes === undefined) continue // deleted by garbage collection since the listing
    try {
      manifest = decodeSnapshotManifest(bytes)
      break
    } catch (e) {
      log('snapshot manifest unreadable, trying an older one', { key, error: e instanceof Error ? e.message : String(e) })
    }
  }
  if (manifest === undefined) {
    log('no snapshot to restore', { store: store.description, cluster, node })
    return { restored: false }
  }

  const tablesDir = tablesDirOf(dataDir)
  await mkdir(tablesDir, { recursive: true })
  // Leftovers of a restore that crashed: partial downloads are never trusted.
  for (const name of await readdir(tablesDir)) if (name.endsWith(tmpSuffix)) await rm(join(tablesDir, name), { force: true })

  const tables = [...manifest.engine.tables]
  let next = 0
  const m = manifest
  const worker = async (): Promise<void> => {
    while (next < tables.length) {
      const t = tables[next++]
      if (t !== undefined) await downloadTable(store, tableKey(cluster, node, t.file), tablePath(dataDir, t), t, signalOpt)
    }
  }
  await Promise.all(Array.from({ length: Math.min(L.restoreDownloadsInflightMax, tables.length) }, worker))
  await fsyncDir(tablesDir)

  // The engine's own commit: validated, tmp + fsync + rename + fsync of dataDir.
  await writeManifest(dataDir, m.engine, true)

  const now = clock.now()
  const bytes = tables.reduce((n, t) => n + t.bytes, 0)
  const result = {
    restored: true as const,
    manifest: m,
    incarnation: m.incarnation,
    createdAt: m.createdAt,
    behindMs: Math.max(0, now - m.createdAt),
    tables: tables.length,
    bytes,
    durationMs: now - started,
  }
  log('restored from snapshot', {
    seq: m.seq, incarnation: m.incarnation, tables: tables.length, bytes, behindMs: result.behindMs, durationMs: result.durationMs,
  })
  return result
}

/** Ranged downloads into path.tmp with a running CRC32C; renamed into place only when it matches. */
async function downloadTable(store: ObjectStore, key: string, path: string, t: TableInfo, signalOpt: { signal?: AbortSignal }): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    const tmp = tmpPath(path)
    const fh = await open(tmp, 'w')
    let crc = 0
    let pos = 0
    let problem: string | undefined
    try {
      while (pos < t.bytes) {
        const end = Math.min(t.bytes, pos + L.restoreChunkBytes) - 1
        const chunk = t.bytes <= L.restoreChunkBytes
          ? await store.get(key, signalOpt)
          : await store.getRange(key, pos, end, signalOpt)
        if (chunk === undefined) {
          throw new KvError({ kind: 'Unavailable' }, `snapshot table ${key} is missing from the store (named by the manifest)`)
        }
        if (chunk.byteLength === 0 || pos + chunk.byteLength > t.bytes) { problem = `got ${pos + chunk.byteLength} bytes of ${t.bytes}`; break }
        await fh.write(chunk, 0, chunk.byteLength, pos)
        crc = crc32c(chunk, crc)
        pos += chunk.byteLength
      }
      if (problem === undefined && crc !== t.crc32c) problem = `CRC32C ${crc32cHex(crc)}, manifest says ${crc32cHex(t.crc32c)}`
      if (problem === undefined) await fh.sync()
    } finally {
      await fh.close()
    }
    if (problem === undefined) {
      await rename(tmp, path)
      return
    }
    await rm(tmp, { force: true })
    if (attempt >= L.restoreTableAttemptsMax) {
      throw new KvError({ kind: 'Corruption', file: key, offset: pos },
        `snapshot table ${key} failed verification ${attempt} times (${problem}): not restored`)
    }
  }
}

async function exists(path: string): Promise<boolean> {
  try { await stat(path); return true } catch { return false }
}

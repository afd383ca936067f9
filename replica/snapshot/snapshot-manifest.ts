// The snapshot manifest: the one object a restore trusts. Written by the snapshotter after every
// table it names is in the store, read (and validated) by restore. Also the object-key layout of a
// node's snapshots, so writer and reader cannot disagree on it:
//
//   <cluster>/<node>/tables/<file>            an SSTable, byte for byte as on the replica's disk
//   <cluster>/<node>/manifests/<seq:12>.json  SnapshotManifest; seq zero-padded so names sort by seq
//
// Table objects are named by the engine's table file, whose id the engine never reuses within one
// history; a restored replica continues from the manifest's nextTableId, and the snapshotter
// re-uploads any table whose CRC32C does not match what a manifest recorded for that name, so a
// stale object under a reused name is never trusted.

import { z } from 'zod'
import type { EngineManifest, TableInfo } from '../storage/engine-types.ts'

export const snapshotManifestVersion = 1

export interface SnapshotManifest {
  readonly version: typeof snapshotManifestVersion
  readonly seq: number
  /** Milliseconds since the epoch when the manifest was written. */
  readonly createdAt: number
  readonly cluster: string
  readonly node: string
  /** Incarnation of the replica that wrote it; a restored replica takes a higher one. */
  readonly incarnation: number
  readonly engine: EngineManifest
  /** Table file -> bytes, for a restore to size its work (the same as engine.tables[].bytes). */
  readonly tableSizes: Readonly<Record<string, number>>
}

const seqDigits = 12

export function nodePrefix(cluster: string, node: string): string {
  return `${cluster}/${node}/`
}
export function tablesPrefix(cluster: string, node: string): string {
  return `${nodePrefix(cluster, node)}tables/`
}
export function manifestsPrefix(cluster: string, node: string): string {
  return `${nodePrefix(cluster, node)}manifests/`
}
export function tableKey(cluster: string, node: string, file: string): string {
  return `${tablesPrefix(cluster, node)}${file}`
}
export function manifestKey(cluster: string, node: string, seq: number): string {
  return `${manifestsPrefix(cluster, node)}${String(seq).padStart(seqDigits, '0')}.json`
}
/** The seq of a manifest key, or undefined for anything else under the prefix. */
export function manifestSeqOf(key: string): number | undefined {
  const m = /\/manifests\/(\d+)\.json$/.exec(key)
  if (m === null || m[1] === undefined) return undefined
  const seq = Number(m[1])
  return Number.isSafeInteger(seq) ? seq : undefined
}

const TableInfoSchema = z.object({
  id: z.string().min(1),
  file: z.string().regex(/^[A-Za-z0-9._-]+$/, 'a table file is a plain file name'),
  bytes: z.number().int().nonnegative(),
  keys: z.number().int().nonnegative(),
  crc32c: z.number().int().nonnegative().max(0xffffffff),
  tier: z.number().int().nonnegative(),
})

const EngineManifestSchema = z.object({
  version: z.literal(1),
  tables: z.array(TableInfoSchema),
  nextTableId: z.number().int().nonnegative(),
  walSegmentMin: z.number().int().nonnegative(),
})

const SnapshotManifestSchema = z.object({
  version: z.literal(snapshotManifestVersion),
  seq: z.number().int().nonnegative(),
  createdAt: z.number().int().nonnegative(),
  cluster: z.string().min(1),
  node: z.string().min(1),
  incarnation: z.number().int().nonnegative(),
  engine: EngineManifestSchema,
  tableSizes: z.record(z.string(), z.number().int().nonnegative()),
})

export function encodeSnapshotManifest(m: SnapshotManifest): Uint8Array {
  return new TextEncoder().encode(`${JSON.stringify(m, null, 1)}\n`)
}

/** Parses and validates; throws an Error naming the problem (the caller wraps it as Corruption). */
export function decodeSnapshotManifest(bytes: Uint8Array): SnapshotManifest {
  let json: unknown
  try {
    json = JSON.parse(new TextDecoder().decode(bytes))
  } catch (e) {
    throw new Error(`invalid snapshot manifest: not JSON (${bytes.byteLength} bytes: ${(e as Error).message})`)
  }
  const parsed = SnapshotManifestSchema.safeParse(json)
  if (!parsed.success) {
    throw new Error(`invalid snapshot manifest: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`)
  }
  const m = parsed.data
  const files = new Set<string>()
  for (const t of m.engine.tables) {
    if (files.has(t.file)) throw new Error(`invalid snapshot manifest: table ${t.file} named twice`)
    files.add(t.file)
  }
  return { ...m, version: snapshotManifestVersion, engine: { ...m.engine, version: 1, tables: m.engine.tables as TableInfo[] } }
}

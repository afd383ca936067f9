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
//
// The engine manifest inside is checked by the engine's own rules (storage/manifest.ts), not a copy
// of them: what decodes here is exactly what the engine will open after a restore.

import { z } from 'zod'
import type { EngineManifest } from '../storage/engine-types.ts'
import { checkEngineManifest } from '../storage/manifest.ts'

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

const SnapshotManifestSchema = z.object({
  version: z.literal(snapshotManifestVersion),
  seq: z.number().int().nonnegative(),
  createdAt: z.number().int().nonnegative(),
  cluster: z.string().min(1),
  node: z.string().min(1),
  incarnation: z.number().int().nonnegative(),
  /** Checked by checkEngineManifest after the schema. */
  engine: z.unknown(),
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
  const engine = checkEngineManifest(m.engine)
  if ('problem' in engine) throw new Error(`invalid snapshot manifest: engine: ${engine.problem}`)
  return { ...m, version: snapshotManifestVersion, engine: engine.manifest }
}

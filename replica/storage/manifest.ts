// The manifest: which tables are live (newest first), the next table id, and the lowest WAL segment
// still needed. MANIFEST.json is the single commit point of flushes and compactions: a table file
// counts only once a durable manifest names it, and WAL segments and old tables are deleted only
// after that. It is replaced atomically (write tmp, fsync, rename, fsync dir), so a crash leaves
// either the old or the new manifest, never a torn one. JSON because the S3 snapshotter uploads it
// as is and operators read it; it is tiny and written once per flush or compaction.

import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { assert } from '../../coordinator/assert.ts'
import { KvError } from '../../coordinator/errors.ts'
import type { EngineManifest, TableInfo } from './engine-types.ts'
import { writeFileAtomic } from './file-util.ts'

export const manifestFile = 'MANIFEST.json'

export function emptyManifest(): EngineManifest {
  return { version: 1, tables: [], nextTableId: 1, walSegmentMin: 0 }
}

export function tableId(n: number): string {
  assert(Number.isSafeInteger(n) && n >= 0, `bad table id ${n}`)
  return String(n).padStart(6, '0')
}

/** Path of a table's file, for the snapshotter (read it with fs.readFile). */
export function tablePath(dir: string, table: Pick<TableInfo, 'file'>): string {
  return join(dir, 'tables', table.file)
}

function invalid(file: string, what: string, cause?: unknown): KvError {
  return new KvError({ kind: 'Corruption', file, offset: 0 }, `manifest ${file} is invalid: ${what}`, { cause })
}

/** Checks a parsed manifest's shape and internal consistency; throws KvError Corruption otherwise. */
export function validateManifest(file: string, m: unknown): EngineManifest {
  if (typeof m !== 'object' || m === null) throw invalid(file, 'not an object')
  const o = m as Record<string, unknown>
  if (o['version'] !== 1) throw invalid(file, `unknown version ${String(o['version'])}`)
  const nextTableId = o['nextTableId']
  const walSegmentMin = o['walSegmentMin']
  if (!Number.isSafeInteger(nextTableId) || (nextTableId as number) < 1) throw invalid(file, 'bad nextTableId')
  if (!Number.isSafeInteger(walSegmentMin) || (walSegmentMin as number) < 0) throw invalid(file, 'bad walSegmentMin')
  if (!Array.isArray(o['tables'])) throw invalid(file, 'tables is not an array')
  const ids = new Set<string>()
  const tables: TableInfo[] = []
  for (const t of o['tables'] as unknown[]) {
    if (typeof t !== 'object' || t === null) throw invalid(file, 'table entry is not an object')
    const r = t as Record<string, unknown>
    const id = r['id']
    if (typeof id !== 'string' || !/^\d+$/.test(id)) throw invalid(file, `bad table id ${String(id)}`)
    if (r['file'] !== `${id}.sst`) throw invalid(file, `table ${id} has file ${String(r['file'])}`)
    if (Number(id) >= (nextTableId as number)) throw invalid(file, `table ${id} not below nextTableId`)
    if (ids.has(id)) throw invalid(file, `table ${id} listed twice`)
    ids.add(id)
    for (const k of ['bytes', 'keys', 'crc32c', 'tier'] as const) {
      if (!Number.isSafeInteger(r[k]) || (r[k] as number) < 0) throw invalid(file, `table ${id} has bad ${k}`)
    }
    tables.push({ id, file: `${id}.sst`, bytes: r['bytes'] as number, keys: r['keys'] as number, crc32c: r['crc32c'] as number, tier: r['tier'] as number })
  }
  return { version: 1, tables, nextTableId: nextTableId as number, walSegmentMin: walSegmentMin as number }
}

/** Loads dir/MANIFEST.json, or undefined when there is none (a fresh directory). */
export async function loadManifest(dir: string): Promise<EngineManifest | undefined> {
  const file = join(dir, manifestFile)
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw e
  }
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch (e) {
    throw invalid(file, 'not JSON', e)
  }
  return validateManifest(file, parsed)
}

export async function writeManifest(dir: string, m: EngineManifest, fsync: boolean): Promise<void> {
  validateManifest(manifestFile, m)
  await writeFileAtomic(join(dir, manifestFile), Buffer.from(JSON.stringify(m, null, 1) + '\n'), fsync)
}

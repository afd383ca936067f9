// The manifest: which tables are live (newest first), the next table id, and the lowest WAL segment
// still needed. MANIFEST.json is the single commit point of flushes and compactions: a table file
// counts only once a durable manifest names it, and WAL segments and old tables are deleted only
// after that. It is replaced atomically (write tmp, fsync, rename, fsync dir), so a crash leaves
// either the old or the new manifest, never a torn one. JSON because the S3 snapshotter uploads it
// as is and operators read it; it is tiny and written once per flush or compaction.
//
// The one set of rules an engine manifest must pass lives here (checkEngineManifest): the engine
// applies it when it loads and writes MANIFEST.json, and the snapshot manifest applies it to the
// engine manifest it carries, so a restore never writes a manifest the engine would refuse.

import { readFile } from 'node:fs/promises'
import { KvError } from '../../coordinator/errors.ts'
import { isTableId, manifestFileName, manifestPath, tableFileName } from './disk-layout.ts'
import type { EngineManifest, TableInfo } from './engine-types.ts'
import { writeFileAtomic } from './file-util.ts'

const crc32cMax = 0xffffffff

export function emptyManifest(): EngineManifest {
  return { version: 1, tables: [], nextTableId: 1, walSegmentMin: 0 }
}

/**
 * Checks a parsed engine manifest's shape and internal consistency. Returns the manifest (a fresh
 * object holding only the known fields) or a sentence naming the first problem.
 */
export function checkEngineManifest(m: unknown): { manifest: EngineManifest } | { problem: string } {
  const fail = (problem: string): { problem: string } => ({ problem })
  if (typeof m !== 'object' || m === null) return fail('not an object')
  const o = m as Record<string, unknown>
  if (o['version'] !== 1) return fail(`unknown version ${String(o['version'])}`)
  const nextTableId = o['nextTableId']
  const walSegmentMin = o['walSegmentMin']
  if (!Number.isSafeInteger(nextTableId) || (nextTableId as number) < 1) return fail('bad nextTableId')
  if (!Number.isSafeInteger(walSegmentMin) || (walSegmentMin as number) < 0) return fail('bad walSegmentMin')
  if (!Array.isArray(o['tables'])) return fail('tables is not an array')
  const ids = new Set<string>()
  const tables: TableInfo[] = []
  for (const t of o['tables'] as unknown[]) {
    if (typeof t !== 'object' || t === null) return fail('table entry is not an object')
    const r = t as Record<string, unknown>
    const id = r['id']
    if (typeof id !== 'string' || !isTableId(id)) return fail(`bad table id ${String(id)}`)
    // The file name is derived from the id, so a manifest can never point outside tables/.
    if (r['file'] !== tableFileName(id)) return fail(`table ${id} has file ${String(r['file'])}`)
    if (Number(id) >= (nextTableId as number)) return fail(`table ${id} not below nextTableId`)
    if (ids.has(id)) return fail(`table ${id} listed twice`)
    ids.add(id)
    for (const k of ['bytes', 'keys', 'crc32c', 'tier'] as const) {
      if (!Number.isSafeInteger(r[k]) || (r[k] as number) < 0) return fail(`table ${id} has bad ${k}`)
    }
    if ((r['crc32c'] as number) > crc32cMax) return fail(`table ${id} has a crc32c above 32 bits`)
    tables.push({ id, file: tableFileName(id), bytes: r['bytes'] as number, keys: r['keys'] as number, crc32c: r['crc32c'] as number, tier: r['tier'] as number })
  }
  return { manifest: { version: 1, tables, nextTableId: nextTableId as number, walSegmentMin: walSegmentMin as number } }
}

function invalid(file: string, what: string, cause?: unknown): KvError {
  return new KvError({ kind: 'Corruption', file, offset: 0 }, `manifest ${file} is invalid: ${what}`, { cause })
}

/** Checks a parsed manifest (checkEngineManifest); throws KvError Corruption naming `file` otherwise. */
export function validateManifest(file: string, m: unknown): EngineManifest {
  const r = checkEngineManifest(m)
  if ('problem' in r) throw invalid(file, r.problem)
  return r.manifest
}

/** Loads dir/MANIFEST.json, or undefined when there is none (a fresh directory). */
export async function loadManifest(dir: string): Promise<EngineManifest | undefined> {
  const file = manifestPath(dir)
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

/** Replaces dir/MANIFEST.json with `m` atomically (the engine's commit point; restore's last step). */
export async function writeManifest(dir: string, m: EngineManifest, fsync: boolean): Promise<void> {
  validateManifest(manifestFileName, m)
  await writeFileAtomic(manifestPath(dir), Buffer.from(JSON.stringify(m, null, 1) + '\n'), fsync)
}

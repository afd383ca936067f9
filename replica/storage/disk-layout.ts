// The names inside a replica's data directory, in one place: the engine, the WAL, the snapshot
// restore (which fills a directory before the engine opens it), the snapshotter (which reads table
// files) and the replica's start-up code all agree on them because they all ask this module.
// Changing a name here changes the on-disk format: existing directories would no longer open.
//
//   NODE.json            the replica's identity (replica/node/identity.ts), written before the engine
//   MANIFEST.json        EngineManifest, the commit point (manifest.ts)
//   tables/<id>.sst      SSTables named in the manifest; <id> is 6+ zero-padded digits
//   wal/<seq>.log        WAL segments; <seq> is 8+ zero-padded digits
//   HANDOFF.json         progress of outgoing partition handoffs (replica/handoff/handoff-progress.ts)
//   hints/<seq>.hints    hint log segments (replica/hints/hint-log.ts): writes kept for absent
//                        owners, apart from the replica's own data; <seq> is 8+ zero-padded digits
//   <name>.tmp           a file being written; renamed over <name> once durable (file-util.ts)

import { join } from 'node:path'
import { assert } from '../../coordinator/assert.ts'
import type { TableInfo } from './engine-types.ts'

export const identityFileName = 'NODE.json'
export const manifestFileName = 'MANIFEST.json'
export const handoffFileName = 'HANDOFF.json'
export const membershipFileName = 'MEMBERSHIP.json'
export const tablesDirName = 'tables'
export const walDirName = 'wal'
export const hintsDirName = 'hints'
/** Suffix of a file being written before its rename (write-then-rename). */
export const tmpSuffix = '.tmp'

const tableIdDigits = 6
const walSeqDigits = 8

export function identityPath(dir: string): string {
  return join(dir, identityFileName)
}

export function manifestPath(dir: string): string {
  return join(dir, manifestFileName)
}

export function handoffPath(dir: string): string {
  return join(dir, handoffFileName)
}

export function membershipPath(dir: string): string {
  return join(dir, membershipFileName)
}

export function tablesDir(dir: string): string {
  return join(dir, tablesDirName)
}

export function walDir(dir: string): string {
  return join(dir, walDirName)
}

/** A table id ("000012") from its number; ids sort like their numbers up to 10^6 tables. */
export function tableId(n: number): string {
  assert(Number.isSafeInteger(n) && n >= 0, `bad table id ${n}`)
  return String(n).padStart(tableIdDigits, '0')
}

/** Whether `id` is spelled like a table id (digits only). */
export function isTableId(id: string): boolean {
  return /^\d+$/.test(id)
}

/** The file of table `id`, relative to tables/. */
export function tableFileName(id: string): string {
  return `${id}.sst`
}

/** Path of a table's file (the snapshotter reads it with fs.readFile). */
export function tablePath(dir: string, table: Pick<TableInfo, 'file'>): string {
  return join(dir, tablesDirName, table.file)
}

export function walSegmentName(seq: number): string {
  assert(Number.isSafeInteger(seq) && seq >= 0, `bad WAL sequence ${seq}`)
  return `${String(seq).padStart(walSeqDigits, '0')}.log`
}

/** The sequence of a WAL segment file name, or undefined for any other file. */
export function walSegmentSeqOf(name: string): number | undefined {
  const m = /^(\d+)\.log$/.exec(name)
  return m === null ? undefined : Number(m[1])
}

export function hintsDir(dir: string): string {
  return join(dir, hintsDirName)
}

export function hintSegmentName(seq: number): string {
  assert(Number.isSafeInteger(seq) && seq >= 0, `bad hint segment sequence ${seq}`)
  return `${String(seq).padStart(walSeqDigits, '0')}.hints`
}

/** The sequence of a hint segment file name, or undefined for any other file. */
export function hintSegmentSeqOf(name: string): number | undefined {
  const m = /^(\d+)\.hints$/.exec(name)
  return m === null ? undefined : Number(m[1])
}

/** The temporary name `path` is written under before it is renamed into place. */
export function tmpPath(path: string): string {
  return `${path}${tmpSuffix}`
}

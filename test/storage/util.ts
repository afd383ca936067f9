// Helpers shared by the storage tests: temp directories, WAL segment layout, and two merges that exercise the engine's
// version folding — set union (commutative, associative, idempotent, like DVV sync) and newer-wins
// (order-sensitive, so it catches a read path that folds versions in the wrong order).

import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

export function tempDir(name: string): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), `ringkv-${name}-`))
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) }
}

/** Values are sets of bytes, stored sorted; merge is their union. */
export function unionMerge(older: Uint8Array, newer: Uint8Array): Uint8Array {
  const s = new Set<number>([...older, ...newer])
  return Uint8Array.from([...s].sort((a, b) => a - b))
}

export function newerWins(_older: Uint8Array, newer: Uint8Array): Uint8Array {
  return newer
}

export function bytesEqual(a: Uint8Array | undefined, b: Uint8Array | undefined): boolean {
  if (a === undefined || b === undefined) return a === b
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength))
}

/**
 * Start offsets of the group frames of a version-2 WAL segment (wal.ts: 8-byte magic, then groups
 * of magic(4) len(4) crc(4) payload, then zeros).
 */
export function walGroupOffsets(buf: Buffer): number[] {
  if (buf.toString('latin1', 0, 8) !== 'RKVWAL02') throw new Error('not a version-2 WAL segment')
  const out: number[] = []
  for (let off = 8; off + 12 <= buf.length && buf.toString('latin1', off, off + 4) === 'RWG1'; off += 12 + buf.readUInt32LE(off + 4)) out.push(off)
  return out
}

/** End of the last group of a version-2 WAL segment (where its zero tail starts). */
export function walDataEnd(buf: Buffer): number {
  const last = walGroupOffsets(buf).at(-1)
  return last === undefined ? 8 : last + 12 + buf.readUInt32LE(last + 4)
}

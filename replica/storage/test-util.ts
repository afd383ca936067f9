// Helpers shared by the storage tests: temp directories and two merges that exercise the engine's
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

// What an outgoing handoff has durably delivered, kept across restarts of the sender: per transfer
// (partition, target) the last key whose batch the target acknowledged as durable, so a transfer
// asked again after a crash of either side resumes after that key instead of starting over
// (docs/handoff.md "Resumption"). One small JSON file, HANDOFF.json in the data dir (disk-layout.ts),
// replaced atomically (write, fsync, rename, fsync the directory) after each acknowledged batch.
//
// The file is read back as untrusted (an older version, a torn disk, a hand edit): anything that does
// not parse is ignored with a log line, which only costs a transfer restarting from its first key;
// re-sending a key is harmless (the receiver merges with DVV sync).

import { readFile } from 'node:fs/promises'
import { z } from 'zod'
import { limits } from '../../coordinator/limits.ts'
import { handoffPath } from '../storage/disk-layout.ts'
import { writeFileAtomic } from '../storage/file-util.ts'

/** The seam the manager reads and writes progress through (a file on Node, memory in a simulator). */
export interface ProgressStore {
  load(): Promise<Uint8Array | undefined>
  save(bytes: Uint8Array): Promise<void>
}

const entrySchema = z.object({
  partition: z.number().int().nonnegative().max(limits.partitionsMax - 1),
  to: z.string().min(1).max(limits.nameCharsMax),
  toUrl: z.string().min(1).max(limits.urlCharsMax),
  /** Every key up to and including this one (in scan order) is durable at `to`. */
  after: z.string().max(limits.keyBytesMax),
  keysSent: z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER),
  bytesSent: z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER),
  startedAt: z.number().nonnegative().max(Number.MAX_SAFE_INTEGER),
})

const fileSchema = z.object({
  version: z.literal(1),
  transfers: z.array(entrySchema).max(limits.handoffProgressEntriesMax),
})

export type ProgressEntry = z.output<typeof entrySchema>

export function encodeProgress(entries: readonly ProgressEntry[]): Uint8Array {
  return new TextEncoder().encode(JSON.stringify({ version: 1, transfers: entries }) + '\n')
}

/** The entries of a progress file, or an error message saying why it was ignored. */
export function decodeProgress(bytes: Uint8Array): ProgressEntry[] | string {
  let json: unknown
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes))
  } catch (e) {
    return `not JSON: ${(e as Error).message}`
  }
  const parsed = fileSchema.safeParse(json)
  if (!parsed.success) return parsed.error.issues.slice(0, limits.schemaIssuesMax).map(i => `${i.path.join('.')}: ${i.message}`).join('; ')
  return parsed.data.transfers
}

/** Progress in `${dataDir}/HANDOFF.json`. */
export function fileProgressStore(dataDir: string, fsync: boolean): ProgressStore {
  const path = handoffPath(dataDir)
  return {
    async load() {
      try {
        return await readFile(path)
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined
        throw e
      }
    },
    save: bytes => writeFileAtomic(path, bytes, fsync),
  }
}

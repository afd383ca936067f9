// A replica's identity on disk: its node id and incarnation, in `${dataDir}/NODE.json`. The DVV
// actor is `${node}.${incarnation}`. The incarnation changes whenever the replica starts without its
// full log (a restore from S3, a lost disk), so a dot it issued before can never be issued again,
// and also whenever the previous process did not stop cleanly: a write is visible to reads before
// its fsync, so a dot that a crash (or a failed fsync) took back may already sit on other replicas
// through read repair. `clean` says the last process closed its engine with every write durable.

import { mkdir, readFile } from 'node:fs/promises'
import { KvError } from '../../coordinator/errors.ts'
import { identityPath } from '../storage/disk-layout.ts'
import { writeFileAtomic } from '../storage/file-util.ts'

export interface Identity {
  readonly node: string
  readonly incarnation: number
  /** The process of this incarnation stopped cleanly: every dot it made visible is durable. */
  readonly clean?: boolean
}

export function actorOf(id: Identity): string {
  return `${id.node}.${id.incarnation}`
}

export async function readIdentity(dataDir: string): Promise<Identity | undefined> {
  const file = identityPath(dataDir)
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw e
  }
  let parsed: Partial<Identity> | null
  try {
    parsed = JSON.parse(text) as Partial<Identity> | null
  } catch (cause) {
    throw new KvError({ kind: 'Corruption', file, offset: 0 }, `${file} is not JSON`, { cause })
  }
  if (typeof parsed !== 'object' || parsed === null || typeof parsed.node !== 'string' ||
      !Number.isSafeInteger(parsed.incarnation) || parsed.incarnation! < 1) {
    throw new KvError({ kind: 'Corruption', file, offset: 0 }, `${file} is malformed`)
  }
  return { node: parsed.node, incarnation: parsed.incarnation!, clean: parsed.clean === true }
}

export async function writeIdentity(dataDir: string, id: Identity): Promise<void> {
  await mkdir(dataDir, { recursive: true })
  await writeFileAtomic(identityPath(dataDir), Buffer.from(JSON.stringify(id) + '\n'), true)
}

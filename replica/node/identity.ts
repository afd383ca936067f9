// A replica's identity on disk: its node id and incarnation, in `${dataDir}/NODE.json`. The DVV
// actor is `${node}.${incarnation}`. The incarnation changes whenever the replica starts without its
// full log (a restore from S3, a lost disk), so a dot it issued before can never be issued again.

import { mkdir, readFile, rename, writeFile, open } from 'node:fs/promises'
import { join } from 'node:path'
import { KvError } from '../../coordinator/errors.ts'

export interface Identity { readonly node: string; readonly incarnation: number }

export function actorOf(id: Identity): string {
  return `${id.node}.${id.incarnation}`
}

export async function readIdentity(dataDir: string): Promise<Identity | undefined> {
  let text: string
  try {
    text = await readFile(join(dataDir, 'NODE.json'), 'utf8')
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw e
  }
  const parsed = JSON.parse(text) as Identity
  if (typeof parsed.node !== 'string' || !Number.isInteger(parsed.incarnation) || parsed.incarnation < 1) {
    throw new KvError({ kind: 'Corruption', file: join(dataDir, 'NODE.json'), offset: 0 }, `NODE.json in ${dataDir} is malformed`)
  }
  return parsed
}

export async function writeIdentity(dataDir: string, id: Identity): Promise<void> {
  await mkdir(dataDir, { recursive: true })
  const tmp = join(dataDir, 'NODE.json.tmp')
  await writeFile(tmp, JSON.stringify(id) + '\n')
  const fh = await open(tmp, 'r+')
  try { await fh.datasync() } finally { await fh.close() }
  await rename(tmp, join(dataDir, 'NODE.json'))
  const dir = await open(dataDir, 'r')
  try { await dir.sync() } finally { await dir.close() }
}

// Tests for the saved cluster state (membership-file.ts) on a real directory: a round trip; a state
// whose heartbeats alone changed is not rewritten; a file that is not JSON, fails the schema or the
// gossip checks is refused with Corruption naming the file; no file is a first start.

import assert from 'node:assert/strict'
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, test } from 'node:test'
import { initialState, withHeartbeat } from '../../coordinator/membership/cluster-state.ts'
import { createRing } from '../../coordinator/ring/ring.ts'
import { membershipPath } from '../storage/disk-layout.ts'
import { loadMembership, MembershipFile } from './membership-file.ts'

const dirs: string[] = []
after(async () => { for (const d of dirs) await rm(d, { recursive: true, force: true }) })
async function tempDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'ringkv-membership-file-'))
  dirs.push(d)
  return d
}

const ring = createRing({ nodes: ['n1', 'n2', 'n3'].map(id => ({ id, url: `ws://127.0.0.1:1/${id}` })), partitions: 16, n: 3 })

test('saves members and ring, reads them back; heartbeats alone do not rewrite the file', async () => {
  const dir = await tempDir()
  assert.equal(await loadMembership(dir), undefined, 'no file: a first start')
  const file = new MembershipFile(dir, () => {})
  const state = initialState(ring)
  file.save(state)
  await file.flushed()
  assert.deepEqual(await loadMembership(dir), JSON.parse(JSON.stringify(state)))
  const written = (await stat(membershipPath(dir))).mtimeMs
  file.save(withHeartbeat(withHeartbeat(state, 'n1'), 'n2'))
  await file.flushed()
  assert.equal((await stat(membershipPath(dir))).mtimeMs, written, 'not rewritten for heartbeats')
})

test('a damaged or forged file is refused with Corruption naming it', async () => {
  const dir = await tempDir()
  const good = JSON.parse(JSON.stringify(initialState(ring)))
  const cases: Array<[string, string]> = [
    ['not JSON', '{"members": ['],
    ['the schema', JSON.stringify({ ...good, members: 'all' })],
    ['a huge counter', JSON.stringify({ ...good, heartbeats: [['n1', 2 ** 60]] })],
    ['unsorted members', JSON.stringify({ ...good, members: [...good.members].reverse() })],
    ['owners that are not members', JSON.stringify({ ...good, ring: { ...good.ring, owners: good.ring.owners.map(() => 'ghost') } })],
    ['too few owners', JSON.stringify({ ...good, ring: { ...good.ring, owners: good.ring.owners.slice(1) } })],
  ]
  for (const [what, text] of cases) {
    await writeFile(membershipPath(dir), text)
    await assert.rejects(loadMembership(dir), (e: any) => e.kind === 'Corruption' && e.message.includes(membershipPath(dir)), what)
  }
  assert.ok((await readFile(membershipPath(dir), 'utf8')).length > 0)
})

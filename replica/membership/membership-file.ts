// The cluster state a replica last knew, kept across restarts (docs/membership.md "Restarts"):
// MEMBERSHIP.json in the data dir (disk-layout.ts), replaced atomically (write, fsync, rename, fsync
// the directory) whenever the members or the ring change; heartbeats alone do not rewrite it. At
// start the replica merges it with what its flags say (`--nodes` gives the static first ring): the
// state is a join semilattice, so the merge keeps whichever is newer, entry by entry, and a replica
// restarted after a join, leave or remove serves the ring it had instead of the static one (or its
// first peer's view).
//
// The file is read back as untrusted: it must pass the gossip schema and the same checks a gossiped
// state does. A file that does not is refused with a clear error naming it, and the replica does not
// start: guessing a ring could serve keys this replica does not hold.

import { readFile } from 'node:fs/promises'
import { KvError } from '../../coordinator/errors.ts'
import { checkIncoming, emptyState, type ClusterState } from '../../coordinator/membership/cluster-state.ts'
import { clusterStateSchema } from '../../coordinator/protocol/messages.ts'
import { membershipPath } from '../storage/disk-layout.ts'
import { writeFileAtomic } from '../storage/file-util.ts'

/** The state saved in `dataDir`, or undefined when there is none (a first start). */
export async function loadMembership(dataDir: string): Promise<ClusterState | undefined> {
  const path = membershipPath(dataDir)
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw e
  }
  const corrupt = (why: string): KvError => new KvError({ kind: 'Corruption', file: path, offset: 0 },
    `${path} is not a valid membership state (${why}); move it away to start this replica from its flags (it then learns the ring from its peers)`)
  let json: unknown
  try { json = JSON.parse(text) } catch (e) { throw corrupt((e as Error).message) }
  const parsed = clusterStateSchema.safeParse(json)
  if (!parsed.success) throw corrupt(parsed.error.issues.slice(0, 3).map(i => `${i.path.join('.')}: ${i.message}`).join('; '))
  const state = parsed.data as unknown as ClusterState
  try { checkIncoming(emptyState, state, true) } catch (e) { throw corrupt((e as Error).message) }
  return state
}

/**
 * Saves the state when its members or ring changed since the last save, one write at a time (a
 * change during a write is saved after it, the latest only). Failures are logged; the next change
 * tries again.
 */
export class MembershipFile {
  private saved = ''
  private writing = false
  private next: ClusterState | undefined

  constructor(private readonly dataDir: string, private readonly log: (msg: string, fields?: Record<string, unknown>) => void) {}

  save(state: ClusterState): void {
    this.next = state
    if (!this.writing) void this.drain()
  }

  /** Resolves once nothing is waiting to be written. */
  async flushed(): Promise<void> {
    while (this.writing) await new Promise(r => setImmediate(r))
  }

  private async drain(): Promise<void> {
    this.writing = true
    try {
      while (this.next !== undefined) {
        const state = this.next
        this.next = undefined
        const key = JSON.stringify([state.members, state.ring])
        if (key === this.saved) continue
        try {
          await writeFileAtomic(membershipPath(this.dataDir), new TextEncoder().encode(JSON.stringify(state)), true)
          this.saved = key
        } catch (e) {
          this.log('membership: could not save the cluster state', { error: (e as Error).message })
        }
      }
    } finally {
      this.writing = false
    }
  }
}

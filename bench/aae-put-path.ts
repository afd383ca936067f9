// The replica's put path before and after anti-entropy, in one process and interleaved, so that a
// noisy shared machine drifts both alike. "Before" is ReplicaService and state-codec from another
// checkout (e.g. a detached worktree of main, node_modules linked); "after" is this checkout's, with
// its AntiEntropy hooked in (tree maintenance on every write, the floor lookup). Each puts --puts
// fresh keys (stamps through ReplicaService.handle, as the data plane calls it, 256 in flight) into
// its own engine (fsync off: the cost measured is CPU, which is what tree maintenance adds), then
// --updates puts over the same keys with their context. Reported, never asserted.
//
//   node --import tsx bench/aae-put-path.ts --old /path/to/old/checkout [--rounds 3] [--puts 20000]

import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { limits } from '../coordinator/limits.ts'
import { createRing } from '../coordinator/ring/ring.ts'
import { AntiEntropy } from '../replica/aae/anti-entropy.ts'
import { ReplicaService } from '../replica/replica-service.ts'
import { mergeStates, settleStored } from '../replica/state-codec.ts'
import { openEngine } from '../replica/storage/engine.ts'

const { values } = parseArgs({ options: { old: { type: 'string' }, rounds: { type: 'string', default: '3' }, puts: { type: 'string', default: '20000' } } })
if (!values.old) throw new Error('--old DIR (a checkout without anti-entropy) is required')
const oldDir = resolve(values.old)
const puts = Number(values.puts)
const ring = createRing({ nodes: [{ id: 'A', url: 'ws://a' }, { id: 'B', url: 'ws://b' }, { id: 'C', url: 'ws://c' }], n: 3 })
const value = new Uint8Array(1024).fill(7)
const enc = new TextEncoder()

/** The grant (replica-service.ts) is ignored by a checkout older than authentication. */
interface Service { handle(type: string, id: number, body: unknown, reply: (m: readonly [string, number, any]) => void, grant: { role: 'peer'; name: string }): void }

async function measure(label: string, dir: string, make: (dir: string) => Promise<{ service: Service; close(): Promise<void> }>): Promise<{ label: string; putsPerS: number; updatesPerS: number }> {
  const { service, close } = await make(dir)
  const contexts: unknown[] = new Array(puts)
  const phase = async (update: boolean): Promise<number> => {
    const started = performance.now()
    for (let i = 0; i < puts; i += 256) {
      const batch: Promise<void>[] = []
      for (let j = i; j < Math.min(puts, i + 256); j++) {
        batch.push(new Promise((ok, fail) => service.handle('put', j, { key: enc.encode(`user:${j}`), context: update ? contexts[j] : {}, value }, m => {
          if (m[0] !== 'put') return fail(new Error(JSON.stringify(m[2])))
          contexts[j] = m[2].state.vv
          ok()
        }, { role: 'peer', name: 'bench' })))
      }
      await Promise.all(batch)
    }
    return puts / ((performance.now() - started) / 1000)
  }
  const putsPerS = await phase(false)
  const updatesPerS = await phase(true)
  await close()
  return { label, putsPerS, updatesPerS }
}

const before = async (dir: string) => {
  const { ReplicaService: OldService } = await import(join(oldDir, 'replica/replica-service.ts'))
  const { mergeStates: oldMerge } = await import(join(oldDir, 'replica/state-codec.ts'))
  const { openEngine: oldOpen } = await import(join(oldDir, 'replica/storage/engine.ts'))
  const engine = await oldOpen({ dir, merge: oldMerge, fsync: false })
  return { service: new OldService({ nodeId: 'A', actor: 'A.1', engine, ring: () => ring, valueBytesMax: limits.valueBytesDefault }) as Service, close: () => engine.close() }
}

const after = async (dir: string) => {
  const engine = await openEngine({ dir, merge: mergeStates, settle: settleStored, fsync: false })
  let service: ReplicaService | undefined
  const aae = new AntiEntropy({
    nodeId: 'A', actor: 'A.1', engine, ring: () => ring, isReachable: () => true, log: () => {},
    runtime: { now: Date.now, setTimeout: (f, ms) => setTimeout(f, ms), clearTimeout: h => clearTimeout(h as NodeJS.Timeout) },
    peer: () => { throw new Error('no peers in this bench') }, applyState: (k, s) => service!.applyState(k, s),
    tombstoneGraceMs: limits.tombstoneGraceMsDefault, intervalMs: 3_600_000,
  })
  await aae.start()
  aae.close()
  service = new ReplicaService({ nodeId: 'A', actor: 'A.1', engine, ring: () => ring, valueBytesMax: limits.valueBytesDefault, aae })
  return { service: service as unknown as Service, close: () => engine.close() }
}

const root = await mkdtemp(join(tmpdir(), 'ringkv-bench-putpath-'))
try {
  const rows: Array<{ label: string; putsPerS: number; updatesPerS: number }> = []
  for (let r = 1; r <= Number(values.rounds); r++) {
    for (const [label, make] of [['before', before], ['after', after]] as const) {
      const row = await measure(`${label} ${r}`, join(root, `${label}-${r}`), make)
      rows.push(row)
      console.log(`${row.label.padEnd(9)} puts ${row.putsPerS.toFixed(0).padStart(6)}/s  updates ${row.updatesPerS.toFixed(0).padStart(6)}/s`)
    }
  }
  const mean = (l: string, f: 'putsPerS' | 'updatesPerS') => { const xs = rows.filter(x => x.label.startsWith(l)).map(x => x[f]); return xs.reduce((a, b) => a + b, 0) / xs.length }
  console.log(`mean: before puts ${mean('before', 'putsPerS').toFixed(0)}/s updates ${mean('before', 'updatesPerS').toFixed(0)}/s; ` +
    `after puts ${mean('after', 'putsPerS').toFixed(0)}/s updates ${mean('after', 'updatesPerS').toFixed(0)}/s`)
} finally {
  await rm(root, { recursive: true, force: true })
}

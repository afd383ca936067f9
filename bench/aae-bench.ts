// Anti-entropy cost benchmark (issue 13, "Benchmark"). Measured and reported, never asserted.
//
//   npm run bench:aae -- [--keys 100000] [--divergent 0,10,1000,100000] [--value-bytes 100] [--json]
//
// Two replicas (real ReplicaServices over real storage engines in a temp dir, fsync off) in this
// process hold --keys keys; for each n in --divergent, the second replica misses the latest write of
// n of them. Then the first replica runs one exchange per partition with the second, every request
// and reply encoded to a frame and decoded again as the data plane does, and the bench reports the
// frame bytes both ways, the seconds, and the bound: 4 x n x (key + value bytes) plus the
// tree levels walked (root and branch replies). Repair is rate-limited (limits.aaeRepairKeysPerSecond),
// so the seconds for large n are mostly that limit, as in production.

import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { limits } from '../coordinator/limits.ts'
import { decodeFrame, encodeFrame, type Message } from '../coordinator/protocol/codec.ts'
import { parseReply } from '../coordinator/protocol/fast-parse.ts'
import { createRing } from '../coordinator/ring/ring.ts'
import { errorFromWire } from '../coordinator/transport/connection.ts'
import { EMPTY, update, type DvvSet } from '../coordinator/version/dvv.ts'
import { AntiEntropy, type AaePeer, type PeerRequestType } from '../replica/aae/anti-entropy.ts'
import { ReplicaService, type Grant } from '../replica/replica-service.ts'
import { mergeStates, settleStored } from '../replica/state-codec.ts'
import { openEngine } from '../replica/storage/engine.ts'
import type { Engine } from '../replica/storage/engine-types.ts'

const { values } = parseArgs({
  options: {
    keys: { type: 'string', default: '100000' },
    divergent: { type: 'string', default: '0,10,1000,100000' },
    'value-bytes': { type: 'string', default: '100' },
    json: { type: 'boolean', default: false },
  },
})
const totalKeys = Number(values.keys)
const valueBytes = Number(values['value-bytes'])
const ns = values.divergent!.split(',').map(Number).filter(n => n <= totalKeys)

const ring = createRing({ nodes: [{ id: 'A', url: 'ws://a' }, { id: 'B', url: 'ws://b' }, { id: 'C', url: 'ws://c' }], n: 3 })
const runtime = { now: Date.now, setTimeout: (fn: () => void, ms: number) => setTimeout(fn, ms), clearTimeout: (h: unknown) => clearTimeout(h as NodeJS.Timeout) }

interface Side { engine: Engine; service: ReplicaService; aae: AntiEntropy }
const sides = new Map<string, Side>()
/** In-process peer calls (no hello): the peer role. */
const peerGrant: Grant = { role: 'peer', name: 'bench' }
const wire = { bytes: 0 }

function peer(node: string): AaePeer {
  return {
    request: <T extends PeerRequestType>(type: T, body: unknown) => new Promise<any>((ok, fail) => {
      const frame = encodeFrame([[type, 1, body]])
      wire.bytes += frame.byteLength
      const [m] = decodeFrame(frame) as Message[]
      sides.get(node)!.service.handle(m![0], m![1], m![2], msg => {
        const out = encodeFrame([msg])
        wire.bytes += out.byteLength
        const [rt, , rb] = decodeFrame(out)[0] as Message
        if (rt === 'error') return fail(errorFromWire(rb, node))
        const parsed = parseReply(type, rb)
        if (!parsed.success) return fail(new Error(parsed.error.message))
        ok(parsed.data)
      }, peerGrant)
    }),
  }
}

async function side(id: string, dir: string): Promise<Side> {
  const engine = await openEngine({ dir: join(dir, id), merge: mergeStates, settle: settleStored, fsync: false })
  let service: ReplicaService | undefined
  const aae = new AntiEntropy({
    nodeId: id, actor: `${id}.1`, engine, ring: () => ring, runtime, peer, isReachable: () => true,
    applyState: (k, s) => service!.applyState(k, s), tombstoneGraceMs: limits.tombstoneGraceMsDefault, intervalMs: 3_600_000, log: () => {},
  })
  service = new ReplicaService({ nodeId: id, actor: `${id}.1`, engine, ring: () => ring, valueBytesMax: limits.valueBytesDefault, aae })
  await aae.start()
  aae.close()
  const s = { engine, service, aae }
  sides.set(id, s)
  return s
}

const value = (i: number, gen: number): Uint8Array => {
  const v = new Uint8Array(valueBytes)
  v.fill((i * 31 + gen) & 0xff)
  return v
}
const keyOf = (i: number): string => `user:${String(i).padStart(8, '0')}`

/** What n = 0 costs: one root round trip per partition (measured; estimated if n = 0 is not run). */
let rootsBytes = ring.partitions * (limits.aaeTreeWidth * 4 + 2 * branchOverheadBytesOf())
/** Frame and body bytes around one branch's leaves (request and reply envelopes). */
const branchOverheadBytes = branchOverheadBytesOf()
function branchOverheadBytesOf(): number {
  return encodeFrame([['aaeBranches', 1, { partition: 0, shape: { width: 32, depth: 2 }, branches: [0] }]]).byteLength + encodeFrame([['aaeBranches', 1, { leaves: new Uint8Array(0) }]]).byteLength
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'ringkv-bench-aae-'))
  const results: Array<Record<string, number>> = []
  try {
    for (const n of ns) {
      sides.clear()
      const A = await side('A', join(dir, `n${n}`))
      const B = await side('B', join(dir, `n${n}`))
      const loadStart = performance.now()
      // Every key on both; the first n then get a newer write on A only.
      const batch: Promise<void>[] = []
      for (let i = 0; i < totalKeys; i++) {
        const s: DvvSet = update(EMPTY, {}, 'w.1', value(i, 0))
        batch.push(A.service.applyState(keyOf(i), s), B.service.applyState(keyOf(i), s))
        if (i < n) batch.push(A.service.applyState(keyOf(i), update(s, s.vv, 'w.1', value(i, 1))))
        if (batch.length >= 4096) await Promise.all(batch.splice(0))
      }
      await Promise.all(batch)
      const loadS = (performance.now() - loadStart) / 1000
      wire.bytes = 0
      const started = performance.now()
      let repaired = 0
      for (let p = 0; p < ring.partitions; p++) repaired += (await A.aae.exchange(p, 'B')).keysRepaired
      const seconds = (performance.now() - started) / 1000
      const keyBytes = keyOf(0).length
      // Tree levels walked: every partition's root round trip (what n = 0 costs, requests included),
      // and the leaves of each differing branch (at most one per divergent key).
      if (n === 0) rootsBytes = wire.bytes
      const treeBytes = rootsBytes + Math.min(n, ring.partitions * limits.aaeTreeWidth) * (limits.aaeTreeWidth * 4 + branchOverheadBytes)
      const bound = 4 * n * (keyBytes + valueBytes) + treeBytes
      results.push({ keys: totalKeys, divergent: n, repaired, bytes: wire.bytes, bound, seconds: Number(seconds.toFixed(2)), loadSeconds: Number(loadS.toFixed(1)) })
      if (!values.json) {
        console.log(`keys=${totalKeys} divergent=${n}: ${wire.bytes} bytes (bound ${bound}, ${(wire.bytes / bound).toFixed(2)}x), ` +
          `${seconds.toFixed(2)} s, repaired ${repaired}  [load ${loadS.toFixed(1)} s]`)
      }
      await A.engine.close()
      await B.engine.close()
      await rm(join(dir, `n${n}`), { recursive: true, force: true })
    }
    if (values.json) console.log(JSON.stringify(results))
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

await main()

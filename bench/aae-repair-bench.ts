// Put latency while anti-entropy repairs a replica that missed many writes (issue 13's "put p99
// while a repair of 100,000 divergent keys runs"). Measured and printed, never asserted.
//
//   node --import tsx bench/aae-repair-bench.ts [--keys 100000] [--value-bytes 100] [--rate 500]
//        [--phase-seconds 10] [--base-port 18440]
//
// 1. Starts three replicas (N=3, 256 partitions, anti-entropy at its defaults) and runs a quiet phase
//    of open-loop puts (--rate/s, each timed from its scheduled start) over a small key set.
// 2. Kills n3 and writes --keys fresh keys through the SDK (W=2: n1 and n2 hold them, n3 none).
// 3. Restarts n3 and, at once, the same put load while anti-entropy repairs it (no reads), until
//    n3 holds every key (a sample of 200 is polled with raw gets on a connection to n3) and at least
//    --phase-seconds; then a quiet phase again.
// 4. Prints put p50/p99/max per phase, how long the repair took and its keys/s.

import { mkdtemp, rm } from 'node:fs/promises'
import { loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import WebSocket from 'ws'
import { createClient } from '../client/index.ts'
import { systemRuntime, type WebSocketCtor } from '../coordinator/runtime.ts'
import { Connection } from '../coordinator/transport/connection.ts'
import { limits } from '../coordinator/limits.ts'
import { startCluster } from '../infra/cluster.ts'
import { putAll, putPhase, showPhase } from './open-puts.ts'

const { values: args } = parseArgs({
  options: {
    keys: { type: 'string', default: '100000' },
    'value-bytes': { type: 'string', default: '100' },
    rate: { type: 'string', default: '500' },
    'phase-seconds': { type: 'string', default: '10' },
    'base-port': { type: 'string', default: '18440' },
  },
})
const keyCount = Number(args.keys)
const value = 'v'.repeat(Number(args['value-bytes']))
const rate = Number(args.rate)
const phaseMs = Number(args['phase-seconds']) * 1000
/** The longest the repair phase waits for n3 to hold every key. */
const repairWaitMsMax = 15 * 60 * 1000

const dir = await mkdtemp(join(tmpdir(), 'ringkv-aae-repair-bench-'))
const cluster = await startCluster({ dataDir: dir, basePort: Number(args['base-port']), httpPort: 0, replicas: 3, n: 3, readyTimeoutMs: 120_000 })
const kv = createClient({ seeds: cluster.seeds, timeoutMs: 10_000 })
const loadKeys = Array.from({ length: 1000 }, (_, i) => `load:${i}`)
const missed = Array.from({ length: keyCount }, (_, i) => `missed:${i}`)
const n3 = cluster.replica('n3')

try {
  showPhase('quiet (3 replicas)', await putPhase(kv, loadKeys, value, rate, phaseMs))
  await n3.kill('SIGKILL')
  const t0 = Date.now()
  await putAll(kv, missed, value)
  console.log(`wrote ${keyCount} keys of ${value.length} B while n3 was down, in ${((Date.now() - t0) / 1000).toFixed(1)} s`)
  await n3.start(120_000)
  const restartedAt = Date.now()
  // Whether n3 itself holds a sample of the keys it missed: a raw get on one connection to n3 (with
  // three replicas and N=3 every key is n3's).
  const probe = new Connection('n3', n3.url, systemRuntime(WebSocket as unknown as WebSocketCtor), { client: 'aae-repair-bench' })
  const enc = new TextEncoder()
  const sample = Array.from({ length: 200 }, (_, i) => missed[Math.floor((i * missed.length) / 200)]!)
  let repairedAfterMs: number | undefined
  const untilRepaired = async (): Promise<void> => {
    while (Date.now() - restartedAt < repairWaitMsMax) {
      let held = 0
      for (const k of sample) {
        const got = await probe.request('get', { key: enc.encode(k) }, 10_000).catch(() => undefined)
        if (got !== undefined && got.state !== null) held++
      }
      if (held === sample.length) { repairedAfterMs = Date.now() - restartedAt; return }
      await new Promise(r => setTimeout(r, 500))
    }
  }
  const during = await putPhase(kv, loadKeys, value, rate, phaseMs, untilRepaired)
  if (repairedAfterMs === undefined) await untilRepaired()
  showPhase('during the repair', during)
  showPhase('quiet (after)', await putPhase(kv, loadKeys, value, rate, phaseMs))
  probe.close()
  if (repairedAfterMs === undefined) console.log(`n3 did not hold every sampled key within ${repairWaitMsMax / 60000} min`)
  else console.log(`repair: n3 held all ${keyCount} keys it missed (a sample of ${sample.length} checked) ${(repairedAfterMs / 1000).toFixed(1)} s after its restart,` +
    ` ${Math.round(keyCount / (repairedAfterMs / 1000))} keys/s (limit ${limits.aaeRepairKeysPerSecond} keys/s per replica)`)
  console.log(`load average ${loadavg().map(x => x.toFixed(1)).join(' ')}`)
} finally {
  await kv.close()
  await cluster.stop()
  await rm(dir, { recursive: true, force: true })
}

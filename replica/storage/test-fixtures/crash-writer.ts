// Child process for crash.test.ts: opens the engine with tiny memtables (so flushes and compactions
// run all the time) and writes unique keys with many puts in flight, printing `ack <key>` for each
// acknowledged put and `event <msg>` for engine log lines. The parent SIGKILLs it at random moments.
import { openEngine } from '../engine.ts'
import { crashValue } from './crash-value.ts'

const [dir, prefix] = process.argv.slice(2)
if (dir === undefined || prefix === undefined) throw new Error('usage: crash-writer.ts <dir> <prefix>')
const out: string[] = []
const flushOut = (): void => {
  if (out.length > 0) process.stdout.write(out.splice(0).join(''))
}
const engine = await openEngine({
  dir,
  merge: (_older, newer) => newer,
  memtableBytesMax: 16 * 1024,
  log: (msg) => { out.push(`event ${msg}\n`) },
})
process.stdout.write('ready\n')
let i = 0
const inflightMax = 64
let inflight = 0
await new Promise<void>(() => {
  const pump = (): void => {
    while (inflight < inflightMax) {
      const key = `${prefix}-${String(i++).padStart(7, '0')}`
      inflight++
      engine.put(key, crashValue(key)).then(() => {
        inflight--
        out.push(`ack ${key}\n`)
        pump()
      }, (e: unknown) => {
        inflight--
        out.push(`event put failed: ${String(e)}\n`)
        setTimeout(pump, 10)
      })
    }
  }
  pump()
  setInterval(flushOut, 2)
})

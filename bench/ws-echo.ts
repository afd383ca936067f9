// Raw `ws` echo baseline for bench/ycsb.ts: the cost of one 1 KiB binary WebSocket round trip
// between two Node processes on loopback, with the same number of requests in flight as the
// ringkv run. A second Node process runs a plain `ws` echo server (no framing, no codec, no disk);
// this process opens ONE connection to it (the ringkv SDK also multiplexes everything over one
// connection per replica) and keeps `concurrency` round trips in flight.
//
//   node --import tsx bench/ws-echo.ts [--concurrency 64] [--round-trips 50000] [--bytes 1024]
//                                     [--max-seconds 10] [--json]
//   node --import tsx bench/ws-echo.ts --serve       (the server side; prints "port=N" on stdout)

import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { resolve } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import * as hdr from 'hdr-histogram-js'
import WebSocket, { WebSocketServer } from 'ws'

export interface EchoOptions {
  readonly concurrency: number
  /** Measured round trips (after a short warm-up). */
  readonly roundTrips?: number
  readonly bytes?: number
  /** Stop early after this long (the figure is then computed over what was done). */
  readonly maxSeconds?: number
  /** Called with the child process as soon as it is spawned, so a caller can kill it on SIGINT. */
  readonly onServer?: (proc: ChildProcess) => void
}

export interface EchoResult {
  readonly roundTrips: number
  readonly seconds: number
  readonly roundTripsPerSec: number
  readonly p50Us: number
  readonly p99Us: number
  readonly maxUs: number
  readonly concurrency: number
  readonly bytes: number
}

const selfPath = fileURLToPath(import.meta.url)

/** Spawns the echo server process, measures, and always kills the server before returning. */
export async function runEchoBaseline(opts: EchoOptions): Promise<EchoResult> {
  const concurrency = opts.concurrency
  const total = opts.roundTrips ?? 50_000
  const bytes = opts.bytes ?? 1024
  const maxMs = (opts.maxSeconds ?? 10) * 1000
  if (!(Number.isInteger(concurrency) && concurrency >= 1)) throw new Error(`echo concurrency must be a positive integer, got ${concurrency}`)

  const server = spawn(process.execPath, ['--import', 'tsx', selfPath, '--serve'], { stdio: ['ignore', 'pipe', 'inherit'] })
  opts.onServer?.(server)
  const killServer = (): void => { if (server.exitCode === null && server.signalCode === null) server.kill('SIGTERM') }
  try {
    const port = await readPort(server, 15_000)
    const ws = new WebSocket(`ws://127.0.0.1:${port}`, { perMessageDeflate: false })
    await new Promise<void>((ok, fail) => {
      ws.once('open', () => ok())
      ws.once('error', fail)
    })
    // Echo preserves order on one connection: replies complete the oldest outstanding request.
    const waiting: Array<() => void> = []
    let head = 0
    ws.on('message', () => {
      const done = waiting[head]
      waiting[head++] = undefined as unknown as () => void
      if (head > 4096 && head * 2 > waiting.length) { waiting.splice(0, head); head = 0 }
      done?.()
    })
    let closedError: Error | undefined
    const onClosed = (): void => {
      closedError ??= new Error('echo connection closed during the baseline')
      const pending = waiting.splice(head)
      head = 0
      waiting.length = 0
      for (const p of pending) p?.()
    }
    ws.on('close', onClosed)
    ws.on('error', onClosed)

    const payload = randomBytes(bytes)
    const roundTrip = (): Promise<void> => new Promise<void>(ok => {
      waiting.push(ok)
      ws.send(payload, { binary: true })
    })

    const hist = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: 3 })
    const drive = async (count: number, record: boolean, deadline: number): Promise<number> => {
      let next = 0
      let done = 0
      const worker = async (): Promise<void> => {
        while (next < count && !closedError && performance.now() < deadline) {
          next++
          const t0 = performance.now()
          await roundTrip()
          if (closedError) return
          if (record) hist.recordValue(Math.max(1, Math.round((performance.now() - t0) * 1000)))
          done++
        }
      }
      await Promise.all(Array.from({ length: concurrency }, worker))
      return done
    }

    // Warm-up (JIT, TCP window) then the measured part.
    await drive(Math.min(5_000, total), false, performance.now() + 3_000)
    const t0 = performance.now()
    const done = await drive(total, true, t0 + maxMs)
    const seconds = (performance.now() - t0) / 1000
    if (closedError) throw closedError
    ws.removeListener('close', onClosed)
    ws.close()
    const result: EchoResult = {
      roundTrips: done, seconds, roundTripsPerSec: done / seconds,
      p50Us: hist.getValueAtPercentile(50), p99Us: hist.getValueAtPercentile(99), maxUs: hist.maxValue,
      concurrency, bytes,
    }
    hist.destroy()
    return result
  } finally {
    killServer()
  }
}

function readPort(proc: ChildProcess, timeoutMs: number): Promise<number> {
  return new Promise((ok, fail) => {
    const timer = setTimeout(() => fail(new Error(`echo server did not report its port within ${timeoutMs} ms`)), timeoutMs)
    const lines = createInterface({ input: proc.stdout! })
    lines.on('line', line => {
      const m = /^port=(\d+)$/.exec(line.trim())
      if (m) { clearTimeout(timer); lines.close(); ok(Number(m[1])) }
    })
    proc.once('exit', code => { clearTimeout(timer); fail(new Error(`echo server exited with ${code} before it was ready`)) })
  })
}

function serve(): void {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false })
  wss.on('connection', ws => {
    ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }))
    ws.on('error', () => ws.terminate())
  })
  wss.on('listening', () => {
    const addr = wss.address()
    if (typeof addr === 'object' && addr) process.stdout.write(`port=${addr.port}\n`)
  })
  // Die with the parent: it closes our stdout pipe, or sends SIGTERM.
  const stop = (): void => { wss.close(); process.exit(0) }
  process.on('SIGTERM', stop)
  process.on('SIGINT', stop)
  process.stdout.on('error', stop)
  process.on('disconnect', stop)
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      serve: { type: 'boolean', default: false },
      concurrency: { type: 'string', default: '64' },
      'round-trips': { type: 'string', default: '50000' },
      bytes: { type: 'string', default: '1024' },
      'max-seconds': { type: 'string', default: '10' },
      json: { type: 'boolean', default: false },
    },
    strict: true,
  })
  if (values.serve) return serve()
  const int = (name: string, raw: string, min: number): number => {
    const n = Number(raw)
    if (!Number.isInteger(n) || n < min) { console.error(`--${name} must be an integer >= ${min}, got ${JSON.stringify(raw)}`); process.exit(2) }
    return n
  }
  const r = await runEchoBaseline({
    concurrency: int('concurrency', values.concurrency!, 1), roundTrips: int('round-trips', values['round-trips']!, 1),
    bytes: int('bytes', values.bytes!, 1), maxSeconds: int('max-seconds', values['max-seconds']!, 1),
  })
  if (values.json) console.log(JSON.stringify(r))
  else console.log(`raw ws echo, ${r.bytes} B, ${r.concurrency} in flight: ${Math.round(r.roundTripsPerSec).toLocaleString('en-US')} round trips/s, p50 ${r.p50Us} µs, p99 ${r.p99Us} µs (${r.roundTrips} in ${r.seconds.toFixed(2)} s)`)
}

if (process.argv[1] && resolve(process.argv[1]) === selfPath) {
  main().catch(e => { console.error(e instanceof Error ? e.message : e); process.exit(1) })
}

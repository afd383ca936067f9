// What the msgpack guard (coordinator/protocol/msgpack-guard.ts) costs on the hot path, reported,
// never asserted (not part of npm test). The guard runs before every frame decode, so it is timed
// against the decode it guards, msgpackr's unpack with the codec's options, on typical frames:
//   - 64 `put` requests, each a 1 KiB value with a key and a 3-actor context;
//   - 64 `get` replies, each a state of 2 siblings with 1 KiB values and a 3-actor vector;
//   - one worst case for the decoder: a 16 MiB frame of empty maps (plain and linear, but 64 bytes
//     of heap per input byte once decoded), with the guard's time on the same bytes.
// It also times encodeFrame against a Packr without skipValues (codec.ts leaves out properties
// that hold undefined instead of writing msgpackr's undefined extension).
//
//   node --import tsx bench/msgpack-guard-bench.ts [--rounds 7] [--ms 300] [--json]
//
// Each figure is the median over --rounds rounds of the mean CPU time per call within a round; in a
// round each function runs for about --ms milliseconds (at most 1e6 calls), taking turns.

import { randomBytes } from 'node:crypto'
import { parseArgs } from 'node:util'
import { Packr, Unpackr } from 'msgpackr'
import { encodeFrame, type Message } from '../coordinator/protocol/codec.ts'
import { msgpackIssue, plainUnpackrOptions } from '../coordinator/protocol/msgpack-guard.ts'

const { values: args } = parseArgs({
  options: { rounds: { type: 'string', default: '7' }, ms: { type: 'string', default: '300' }, json: { type: 'boolean', default: false } },
})
const rounds = Number(args.rounds)
const roundMs = Number(args.ms)
const callsPerRoundMax = 1_000_000

const unpackr = new Unpackr({ ...plainUnpackrOptions, copyBuffers: false, mapsAsObjects: true })
const packrBefore = new Packr({ useRecords: false, variableMapSize: true })
const enc = new TextEncoder()
const vector = { 'n1.1796152832974': 17, 'n2.1796152832975': 4, 'n3.1796152832976': 1 }
const state = {
  vv: vector,
  siblings: [
    { actor: 'n1.1796152832974', counter: 17, value: randomBytes(1024) },
    { actor: 'n2.1796152832975', counter: 4, value: randomBytes(1024) },
  ],
}
const puts: Message[] = Array.from({ length: 64 }, (_, i) => ['put', i, { key: enc.encode(`user:${1000 + i}`), context: vector, value: randomBytes(1024) }])
const gets: Message[] = Array.from({ length: 64 }, (_, i) => ['get', i, { state }])

/**
 * Mean CPU nanoseconds (user + system, which a loaded machine disturbs less than wall time) per call
 * of each function, median over the rounds; the functions take turns within each round, so a burst
 * of load falls on all of them alike.
 */
function time(fns: Record<string, () => unknown>): Record<string, number> {
  const means: Record<string, number[]> = {}
  for (let r = 0; r < rounds; r++) {
    for (const [name, fn] of Object.entries(fns)) {
      const start = process.cpuUsage()
      const deadline = process.hrtime.bigint() + BigInt(roundMs) * 1_000_000n
      let calls = 0
      while (calls < callsPerRoundMax && process.hrtime.bigint() < deadline) {
        for (let i = 0; i < 16; i++) fn()
        calls += 16
      }
      const used = process.cpuUsage(start)
      ;(means[name] ??= []).push(((used.user + used.system) * 1000) / calls)
    }
  }
  return Object.fromEntries(Object.entries(means).map(([name, m]) => [name, m.sort((a, b) => a - b)[Math.floor(m.length / 2)]!]))
}

const results: Record<string, unknown> = {}
for (const [name, messages] of [['64 puts of 1 KiB', puts], ['64 get replies (2 siblings of 1 KiB)', gets]] as const) {
  const frame = encodeFrame(messages)
  if (msgpackIssue(frame) !== null) throw new Error(`${name}: the guard refused a frame of ours`)
  const t = time({
    guard: () => msgpackIssue(frame),
    unpack: () => unpackr.unpack(frame),
    encode: () => encodeFrame(messages),
    encodeBefore: () => packrBefore.pack(messages),
  })
  results[name] = {
    frameBytes: frame.length, guardNs: t.guard, unpackNs: t.unpack, guardOverUnpack: t.guard! / t.unpack!,
    encodeNs: t.encode, encodeBeforeNs: t.encodeBefore, encodeOverBefore: t.encode! / t.encodeBefore!,
  }
}

// The decoder's worst case per byte: a frame whose body is 16 MiB of empty maps.
const wide = new Uint8Array(16 * 1024 * 1024)
const count = wide.length - 10
wide.set([0x91, 0x93, 0xa1, 0x78, 0x01, 0xdd, count >>> 24, (count >>> 16) & 0xff, (count >>> 8) & 0xff, count & 0xff])
wide.fill(0x80, 10)
{
  const t0 = process.hrtime.bigint()
  const issue = msgpackIssue(wide)
  const t1 = process.hrtime.bigint()
  const heapBefore = process.memoryUsage().heapUsed
  const decoded = unpackr.unpack(wide)
  const t2 = process.hrtime.bigint()
  const heapAfter = process.memoryUsage().heapUsed
  results['16 MiB of empty maps'] = {
    frameBytes: wide.length, accepted: issue === null, guardMs: Number(t1 - t0) / 1e6, unpackMs: Number(t2 - t1) / 1e6,
    heapBytesPerInputByte: (heapAfter - heapBefore) / wide.length, messages: (decoded as unknown[]).length,
  }
}

if (args.json) {
  console.log(JSON.stringify(results))
} else {
  for (const [name, r] of Object.entries(results)) {
    console.log(`${name}: ${Object.entries(r as object).map(([k, v]) => `${k}=${typeof v === 'number' ? +v.toFixed(3) : v}`).join(' ')}`)
  }
}

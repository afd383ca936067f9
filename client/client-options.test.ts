// createClient keeps its promises about options: each bad option is a KvError BadRequest thrown by
// createClient itself (nothing thrown or rejected later, no unhandled rejection), per-call options
// are refused before any I/O, and a client whose seeds cannot be reached fails its calls with a
// KvError naming each seed, within its deadline. A TCP listener on a port of our range counts the
// connections made to it, to show that a refused call made none.

import assert from 'node:assert/strict'
import { createServer, type Server, type Socket } from 'node:net'
import { after, before, describe, it } from 'node:test'
import { limits } from '../coordinator/limits.ts'
import { createClient, isKvError, KvError, type ClientOptions } from './index.ts'

const unhandled: unknown[] = []
process.on('unhandledRejection', e => { unhandled.push(e) })

const listenPort = 17990
const deadPort = 17991
const seeds = [`ws://127.0.0.1:${listenPort}`]

function isBadRequest(pattern: RegExp) {
  return (e: unknown) => {
    assert.ok(isKvError(e), `not a KvError: ${e}`)
    assert.equal(e.kind, 'BadRequest', e.message)
    assert.match(e.message, pattern)
    return true
  }
}

describe('createClient options', () => {
  let server: Server
  const sockets: Socket[] = []
  let connections = 0
  before(async () => {
    // Accepts TCP and never answers: a connection made here is I/O a refused call must not do.
    server = createServer(s => { connections++; sockets.push(s) })
    await new Promise<void>(ok => server.listen(listenPort, '127.0.0.1', ok))
  })
  after(async () => {
    for (const s of sockets) s.destroy()
    await new Promise<void>(ok => server.close(() => ok()))
  })

  it('throws BadRequest synchronously for each bad option, naming it', async () => {
    const getterThrows = { seeds, get timeoutMs(): number { throw new Error('boom') } }
    const cases: Array<[string, unknown, RegExp]> = [
      ['no options', undefined, /needs options/],
      ['null', null, /needs options/],
      ['array', [seeds], /needs options/],
      ['no seeds', {}, /seeds must be a non-empty array/],
      ['empty seeds', { seeds: [] }, /seeds must be a non-empty array/],
      ['seeds as a string', { seeds: seeds[0] }, /seeds must be a non-empty array/],
      ['seed without a scheme', { seeds: ['127.0.0.1:7001'] }, /seeds\[0\] "127.0.0.1:7001" is not a URL|must be a ws/],
      ['seed with a host as scheme', { seeds: ['localhost:7001'] }, /must be a ws:\/\/ or wss:\/\/ URL/],
      ['http seed', { seeds: ['http://127.0.0.1:7001'] }, /must be a ws:\/\/ or wss:\/\/ URL/],
      ['number seed', { seeds: [7001] }, /seeds\[0\] must be a URL/],
      ['10,000 seeds', { seeds: Array.from({ length: 10_000 }, (_, i) => `ws://127.0.0.1:${1 + i}`) }, /10000 URLs, more than 4096/],
      ['a sparse array of a billion', { seeds: Object.assign([], { length: 1e9 }) }, /more than 4096/],
      ['huge seed', { seeds: ['ws://' + 'a'.repeat(5000)] }, /at most 2048 characters/],
      ['valueBytesMax over the hard max', { seeds, valueBytesMax: 16 << 20 }, /valueBytesMax must be an integer from 1 to 8388608/],
      ['valueBytesMax 0', { seeds, valueBytesMax: 0 }, /valueBytesMax/],
      ['timeoutMs 0', { seeds, timeoutMs: 0 }, /timeoutMs must be a number of milliseconds from 1 to 600000, got 0/],
      ['timeoutMs -1', { seeds, timeoutMs: -1 }, /timeoutMs/],
      ['timeoutMs NaN', { seeds, timeoutMs: NaN }, /timeoutMs/],
      ['timeoutMs Infinity', { seeds, timeoutMs: Infinity }, /timeoutMs/],
      ['timeoutMs over the max', { seeds, timeoutMs: limits.requestTimeoutMsMax + 1 }, /timeoutMs/],
      ['timeoutMs as a string', { seeds, timeoutMs: '1000' }, /timeoutMs .*got "1000"/],
      ['connectionsPerReplica 0', { seeds, connectionsPerReplica: 0 }, /connectionsPerReplica must be an integer from 1 to 16/],
      ['connectionsPerReplica 1.5', { seeds, connectionsPerReplica: 1.5 }, /connectionsPerReplica/],
      ['readFanout some', { seeds, readFanout: 'some' }, /readFanout must be 'quorum' or 'all', got "some"/],
      ['speculativeReadMs 0', { seeds, speculativeReadMs: 0 }, /speculativeReadMs must be an integer from 1 to 600000/],
      ['r 0', { seeds, r: 0 }, /r must be an integer from 1 to 16/],
      ['w huge', { seeds, w: 1e9 }, /w must be an integer/],
      ['w a bigint', { seeds, w: 2n }, /w must be an integer.*a bigint/],
      ['sloppy as a string', { seeds, sloppy: 'yes' }, /sloppy must be true or false/],
      ['resolve not a function', { seeds, resolve: 'merge' }, /resolve must be a function/],
      ['WebSocket not a constructor', { seeds, WebSocket: {} }, /WebSocket must be a WebSocket constructor/],
      ['runtime missing functions', { seeds, runtime: { now: () => 0 } }, /runtime is missing the functions setTimeout/],
      ['unknown option (a typo)', { seeds, timeout: 1000 }, /unknown option "timeout"/],
      ['a getter that throws', getterThrows, /options could not be read: boom/],
      ['a symbol', { seeds, r: Symbol('r') }, /r must be an integer.*a symbol/],
    ]
    for (const [what, opts, pattern] of cases) {
      assert.throws(() => createClient(opts as ClientOptions), isBadRequest(pattern), what)
    }
    // Several problems are all named at once.
    assert.throws(() => createClient({ seeds: [], timeoutMs: 0, w: 0 }), (e: unknown) =>
      isKvError(e) && e.data.kind === 'BadRequest' && e.data.issues.length === 3)
    await new Promise(r => setTimeout(r, 300))
    assert.deepEqual(unhandled, [], 'no unhandled rejection after bad options')
    assert.equal(connections, 0, 'no connection made')
  })

  it('refuses bad per-call options before any I/O', async () => {
    const kv = createClient({ seeds, timeoutMs: 500 })
    const calls: Array<[string, () => Promise<unknown>, RegExp]> = [
      ['put timeoutMs 0', () => kv.put('k', 'v', { timeoutMs: 0 }), /put: timeoutMs/],
      ['put timeoutMs -1', () => kv.put('k', 'v', { timeoutMs: -1 }), /put: timeoutMs/],
      ['put w 0', () => kv.put('k', 'v', { w: 0 }), /put: w must be/],
      ['put w 17', () => kv.put('k', 'v', { w: 17 }), /put: w must be/],
      ['put context a number', () => kv.put('k', 'v', { context: 5 as never }), /context must be the context string/],
      ['put context of 1 MB', () => kv.put('k', 'v', { context: 'A'.repeat(1 << 20) }), /context is 1048576 bytes, more than contextBytesMax/],
      ['put context garbage', () => kv.put('k', 'v', { context: '!!!' }), /not valid base64url/],
      ['put value an object', () => kv.put('k', { a: 1 } as never), /value must be a string or a Uint8Array/],
      ['put unknown option', () => kv.put('k', 'v', { wait: true } as never), /unknown option "wait"/],
      ['put options null', () => kv.put('k', 'v', null as never), /options must be an object/],
      ['get r 1.5', () => kv.get('k', { r: 1.5 }), /get: r must be/],
      ['get resolve a string', () => kv.get('k', { resolve: 'x' as never }), /resolve must be a function/],
      ['get empty key', () => kv.get(''), /key is empty/],
      ['get key not a string', () => kv.get(42 as never), /key must be a string/],
      ['get key with NUL', () => kv.get('a\u0000b'), /NUL/],
      ['get key of 513 bytes', () => kv.get('k'.repeat(513)), /over the 512-byte limit/],
      ['delete sloppy a number', () => kv.delete('k', { sloppy: 1 as never }), /sloppy must be true or false/],
      ['update fn not a function', () => kv.update('k', 'x' as never), /update needs a function/],
      ['update context', () => kv.update('k', v => v[0] ?? '', { context: 'x' } as never), /unknown option "context"/],
      ['putJson of a cycle', () => { const o: Record<string, unknown> = {}; o.o = o; return kv.putJson('k', o) }, /cannot be written as JSON/],
      ['putJson of undefined', () => kv.putJson('k', undefined), /has no JSON form/],
    ]
    for (const [what, call, pattern] of calls) {
      await assert.rejects(call(), isBadRequest(pattern), what)
    }
    await assert.rejects(kv.put('k', new Uint8Array(limits.valueBytesDefault + 1)), (e: unknown) =>
      isKvError(e) && e.data.kind === 'TooLarge' && e.data.bytes === limits.valueBytesDefault + 1 && e.data.bytesMax === limits.valueBytesDefault)
    assert.equal(connections, 0, 'a refused call made a connection')
    await kv.close()
    await new Promise(r => setTimeout(r, 300))
    assert.deepEqual(unhandled, [])
  })

  it('with every seed unreachable, fails within the deadline naming each seed; close() never throws', async () => {
    const dead = [`ws://127.0.0.1:${deadPort}`, `ws://127.0.0.1:${listenPort}`]
    const kv = createClient({ seeds: dead, timeoutMs: 800 })
    const started = Date.now()
    const e = await kv.put('k', 'v').then(() => assert.fail('put succeeded'), (e: unknown) => e)
    const tookMs = Date.now() - started
    assert.ok(e instanceof KvError, `not a KvError: ${e}`)
    assert.equal(e.kind, 'Unavailable', e.message)
    assert.ok(e.data.kind === 'Unavailable' && e.data.failures, 'no failure map')
    assert.deepEqual(Object.keys(e.data.failures).sort(), dead.slice().sort())
    // The refused one says so; the silent one (a TCP listener that never answers) timed out.
    assert.equal(e.data.failures[dead[0]!]!.kind, 'Unavailable')
    assert.equal(e.data.failures[dead[1]!]!.kind, 'Timeout')
    for (const url of dead) assert.ok(e.message.includes(url), `${url} not in: ${e.message}`)
    // Generous: the deadline is 800 ms, discovery asks both seeds at once.
    assert.ok(tookMs < 2400, `took ${tookMs} ms against an 800 ms deadline`)
    await kv.close()
    await kv.close()
    await assert.rejects(kv.get('k'), (err: unknown) => isKvError(err) && err.kind === 'Unavailable' && /closed/.test(err.message))

    // A password in a seed URL is not repeated in messages or failure maps.
    const secret = createClient({ seeds: [`ws://user:s3cret@127.0.0.1:${deadPort}`], timeoutMs: 500 })
    const e2 = await secret.get('k').then(() => assert.fail('get succeeded'), (e: unknown) => e)
    assert.ok(isKvError(e2) && e2.data.kind === 'Unavailable' && e2.data.failures)
    assert.deepEqual(Object.keys(e2.data.failures), [`ws://user:***@127.0.0.1:${deadPort}`])
    assert.ok(!JSON.stringify({ m: e2.message, d: e2.data }).includes('s3cret'), e2.message)
    await secret.close()
    await new Promise(r => setTimeout(r, 300))
    assert.deepEqual(unhandled, [], 'no unhandled rejection')
  })
})

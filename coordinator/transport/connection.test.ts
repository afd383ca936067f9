// The connection's reply handling against a scripted replica (a socket that answers each request
// frame with whatever the test says): the early reply of a put (docs/protocol.md, "Early stamp"),
// and what a real replica never sends: one repeated, overtaken, unasked or malformed.

import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { isKvError } from '../errors.ts'
import { decodeFrame, encodeFrame, type Message } from '../protocol/codec.ts'
import type { Runtime, SocketLike } from '../runtime.ts'
import { Connection } from './connection.ts'

const enc = new TextEncoder()
const ring = { version: 1, partitions: 8, n: 1, nodes: [{ id: 'a', url: 'ws://a' }], owners: ['a'] }
const state = { vv: { 'a.1': 1 }, siblings: [{ actor: 'a.1', counter: 1, value: null }] }
const put = { key: enc.encode('k'), context: {}, value: enc.encode('v') }

/** A socket whose replica answers hello, and every other request with `answer(type, id, body)`'s messages. */
function scripted(answer: (type: string, id: number, body: any) => Message[]): Runtime {
  return {
    now: () => Date.now(),
    setTimeout: (fn, ms) => setTimeout(fn, ms),
    clearTimeout: h => clearTimeout(h as NodeJS.Timeout),
    tick: fn => { setImmediate(fn) },
    random: Math.random,
    connect(): SocketLike {
      const listeners = new Map<string, Array<(ev: any) => void>>()
      const emit = (t: string, ev: unknown): void => { for (const l of listeners.get(t) ?? []) l(ev) }
      const socket: SocketLike = {
        binaryType: 'arraybuffer',
        readyState: 0,
        send(frame) {
          const out: Message[] = []
          for (const m of decodeFrame(frame)) {
            if ('bad' in m) continue
            const [type, id, body] = m
            if (type === 'hello') out.push(['hello', id, { protocol: 1, node: 'a', actor: 'a.1', ring }])
            else out.push(...answer(type, id, body))
          }
          if (out.length > 0) setImmediate(() => emit('message', { data: encodeFrame(out) }))
        },
        close() { (socket as { readyState: number }).readyState = 3 },
        addEventListener(t, l) { listeners.set(t, [...(listeners.get(t) ?? []), l]) },
      }
      setImmediate(() => { (socket as { readyState: number }).readyState = 1; emit('open', {}) })
      return socket
    },
  }
}

describe('Connection: early replies', () => {
  it('hands an early put reply to its callback and resolves with the final one', async () => {
    const conn = new Connection('a', 'ws://a', scripted((type, id) => [[type, id, { state, early: true }], [type, id, { state, serviceUs: 7, fsyncUs: 3 }]]), { client: 't' })
    const early: unknown[] = []
    const final = await conn.request('put', { ...put, early: true }, 5000, 0, undefined, b => early.push(b))
    assert.deepEqual(early, [{ state, early: true }])
    assert.deepEqual(final, { state, serviceUs: 7, fsyncUs: 3 })
    conn.close()
  })

  it('ignores a repeated early reply, and one the final reply overtook', async () => {
    const twice = new Connection('a', 'ws://a', scripted((type, id) => [[type, id, { state, early: true }], [type, id, { state, early: true }], [type, id, { state }]]), { client: 't' })
    let calls = 0
    assert.deepEqual(await twice.request('put', { ...put, early: true }, 5000, 0, undefined, () => { calls++ }), { state })
    assert.equal(calls, 1)
    twice.close()
    const overtaken = new Connection('a', 'ws://a', scripted((type, id) => type === 'put' ? [[type, id, { state }], [type, id, { state, early: true }]] : [[type, id, {}]]), { client: 't' })
    calls = 0
    assert.deepEqual(await overtaken.request('put', { ...put, early: true }, 5000, 0, undefined, () => { calls++ }), { state })
    // The late early reply found no request waiting, and the connection serves on.
    assert.deepEqual(await overtaken.request('replicate', { key: put.key, state }, 5000), {})
    assert.equal(calls, 0)
    overtaken.close()
  })

  it('fails a request that gets an early reply it did not ask for, or a malformed one', async () => {
    const unasked = new Connection('a', 'ws://a', scripted((type, id) => [[type, id, { state, early: true }]]), { client: 't' })
    await assert.rejects(unasked.request('put', put, 5000), e => isKvError(e) && e.kind === 'ProtocolError' && /did not ask for/.test(e.message))
    unasked.close()
    let calls = 0
    const malformed = new Connection('a', 'ws://a', scripted((type, id) => type === 'put' ? [[type, id, { state: { vv: 5 }, early: true }]] : [[type, id, {}]]), { client: 't' })
    calls = 0
    await assert.rejects(malformed.request('put', { ...put, early: true }, 5000, 0, undefined, () => { calls++ }), e => isKvError(e) && /malformed early put reply/.test(e.message))
    assert.equal(calls, 0)
    // Only that request failed: the connection serves the next one.
    assert.deepEqual(await malformed.request('replicate', { key: put.key, state }, 5000), {})
    malformed.close()
  })

  it('keeps the request\'s timeout running after the early reply', async () => {
    const conn = new Connection('a', 'ws://a', scripted((type, id) => [[type, id, { state, early: true }]]), { client: 't' })
    let early = 0
    await assert.rejects(conn.request('put', { ...put, early: true }, 300, 0, undefined, () => { early++ }), e => isKvError(e) && e.kind === 'Timeout')
    assert.equal(early, 1)
    conn.close()
  })
})

// Bad input never costs anything but the bad request: garbage frames, unknown message types, bodies
// that fail their schema, bad keys and oversized values each get a typed error, and the same
// connection (and process) keeps serving the requests around them.

import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { createClient, isKvError, type KvClient } from '../client/index.ts'
import { bareSocket, dec, enc, packr, rawConnection, testCluster } from './helpers.ts'

describe('bad input', () => {
  let cluster: Awaited<ReturnType<typeof testCluster>>
  let kv: KvClient
  before(async () => {
    cluster = await testCluster(17201, { httpPort: 18201 })
    kv = createClient({ seeds: cluster.seeds })
  })
  after(async () => { await kv.close(); await cluster.cleanup() })

  it('answers garbage, unknown types and bad bodies with error replies and keeps the connection', async () => {
    const s = await bareSocket(cluster.seeds[0]!)
    s.send(new Uint8Array([0xc1, 0xff, 0x00]))
    const [t1, id1, b1] = await s.next() as [string, number, any]
    assert.equal(t1, 'error'); assert.equal(id1, 0); assert.equal(b1.kind, 'ProtocolError'); assert.match(b1.message, /msgpack|array/)
    s.send('hello as text')
    const [t2, , b2] = await s.next() as [string, number, any]
    assert.equal(t2, 'error'); assert.match(b2.message, /text frames/)
    // One frame: an unknown type, a schema failure, a bad envelope and a valid request.
    s.send(packr.pack([
      ['frobnicate', 7, {}],
      ['get', 8, { key: 'not-bytes' }],
      [1, 2],
      ['put', 9, { key: enc.encode('ok-key'), context: {}, value: enc.encode('v') }],
      ['get', 10, { key: enc.encode('') }],
      ['put', 11, { key: new Uint8Array([0xc3, 0x28]), context: {}, value: null }],
      ['replicate', 12, { key: enc.encode('k'), state: { vv: {}, siblings: [{ actor: 'x.1', counter: 5, value: null }] } }],
      // Bytes where a list or a state belongs: zod 4.6.7's readonly() threw on these, which used to
      // crash the replica (messages.ts).
      ['replicate', 14, { key: enc.encode('k'), state: { vv: {}, siblings: new Uint8Array([1, 2, 3]) } }],
      ['replicate', 15, { key: enc.encode('k'), state: new Uint8Array([1, 2, 3]) }],
    ]))
    const replies = new Map<number, [string, any]>()
    let envelopeError: any
    for (let i = 0; i < 9; i++) {
      const [t, id, b] = await s.next() as [string, number, any]
      if (id === 0) envelopeError = b; else replies.set(id, [t, b])
    }
    assert.equal(replies.get(7)![0], 'error'); assert.equal(replies.get(7)![1].kind, 'ProtocolError'); assert.match(replies.get(7)![1].message, /unknown message type/)
    assert.equal(replies.get(8)![1].kind, 'BadRequest'); assert.match(replies.get(8)![1].message, /key/)
    assert.equal(envelopeError.kind, 'ProtocolError')
    assert.equal(replies.get(9)![0], 'put'); assert.equal(replies.get(9)![1].state.siblings.length, 1)
    assert.equal(replies.get(10)![1].kind, 'BadRequest'); assert.match(replies.get(10)![1].message, /empty/)
    assert.equal(replies.get(11)![1].kind, 'BadRequest'); assert.match(replies.get(11)![1].message, /UTF-8/)
    assert.equal(replies.get(12)![1].kind, 'BadRequest'); assert.match(replies.get(12)![1].message, /cover/)
    assert.equal(replies.get(14)![1].kind, 'BadRequest'); assert.match(replies.get(14)![1].message, /siblings/)
    assert.equal(replies.get(15)![1].kind, 'BadRequest'); assert.match(replies.get(15)![1].message, /state/)
    // The connection still serves.
    s.send(packr.pack([['get', 13, { key: enc.encode('ok-key') }]]))
    const [t3, id3, b3] = await s.next() as [string, number, any]
    assert.equal(t3, 'get'); assert.equal(id3, 13); assert.equal(dec.decode(b3.state.siblings[0].value), 'v')
    s.close()
  })

  it('rejects bad keys and values in the SDK before sending', async () => {
    const cases: Array<[string, string | Uint8Array, RegExp]> = [
      ['', 'v', /empty/],
      ['k'.repeat(513), 'v', /513 bytes/],
      ['bad\uD800key', 'v', /UTF-8/],
      ['nul\u0000key', 'v', /NUL/],
    ]
    for (const [key, value, re] of cases) {
      await assert.rejects(kv.put(key, value), (e: unknown) => isKvError(e) && e.kind === 'BadRequest' && re.test(e.message))
    }
    await assert.rejects(kv.put('big', new Uint8Array(1024 * 1024 + 1)), (e: unknown) => isKvError(e) && e.kind === 'TooLarge')
    await assert.rejects(kv.put('k', 'v', { w: 4 }), (e: unknown) => isKvError(e) && e.kind === 'BadRequest')
    // Exactly at the limits is fine.
    await kv.put('k'.repeat(512), new Uint8Array(1024 * 1024))
    assert.equal((await kv.get('k'.repeat(512))).values[0]!.byteLength, 1024 * 1024)
  })

  it('answers a put asked to answer early twice: the state before it is durable, then the durable ack', async () => {
    const s = await bareSocket(cluster.seeds[0]!)
    s.send(packr.pack([
      ['put', 20, { key: enc.encode('early-key'), context: {}, value: enc.encode('e1'), early: true }],
      ['put', 21, { key: enc.encode('early-key'), context: {}, value: enc.encode('e2'), early: 'yes' }],
      ['put', 22, { key: enc.encode('early-key'), context: {}, value: enc.encode('e3'), early: false }],
    ]))
    const byId = new Map<number, Array<[string, any]>>()
    for (let i = 0; i < 4; i++) {
      const [t, id, b] = await s.next() as [string, number, any]
      byId.set(id, [...(byId.get(id) ?? []), [t, b]])
    }
    const [first, second] = byId.get(20)!
    const [t1, early] = first!
    const [t2, durable] = second!
    assert.equal(t1, 'put'); assert.equal(early.early, true)
    // The value the request carried is not echoed back (elided), and its dot is named.
    assert.equal(early.state.siblings.length, 1); assert.equal(early.state.siblings[0].value, null); assert.ok(early.elided)
    assert.equal(t2, 'put'); assert.equal(durable.early, undefined); assert.deepEqual(durable.state, early.state)
    assert.equal(byId.get(21)![0]![1].kind, 'BadRequest'); assert.match(byId.get(21)![0]![1].message, /early/)
    assert.equal(byId.get(22)![0]![1].kind, 'BadRequest')
    // Stored: a read sees it.
    s.send(packr.pack([['get', 23, { key: enc.encode('early-key') }]]))
    const [, , got] = await s.next() as [string, number, any]
    assert.equal(dec.decode(got.state.siblings[0].value), 'e1')
    s.close()
  })

  it('answers an oversized value sent straight to a replica with TooLarge', async () => {
    const conn = rawConnection(cluster.seeds[1]!)
    await assert.rejects(conn.request('put', { key: enc.encode('huge'), context: {}, value: new Uint8Array(2 * 1024 * 1024) }, 5000),
      (e: unknown) => isKvError(e) && e.kind === 'TooLarge')
    const ok = await conn.request('put', { key: enc.encode('small'), context: {}, value: enc.encode('x') }, 5000)
    assert.equal(ok.state.siblings.length, 1)
    conn.close()
  })

  it('answers the gateway with 400 and 413', async () => {
    const base = cluster.gateway!.url
    assert.equal((await fetch(`${base}/kv/%C3%28`)).status, 400)
    assert.equal((await fetch(`${base}/kv/${'k'.repeat(513)}`)).status, 400)
    const put = (key: string, body: Uint8Array<ArrayBuffer> | string, q = '') => fetch(`${base}/kv/${key}${q}`, { method: 'PUT', body })
    assert.equal((await put('big', new Uint8Array(1024 * 1024 + 1))).status, 413)
    assert.equal((await put('big', new Uint8Array(9 * 1024 * 1024))).status, 413)
    assert.equal((await put('k', 'v', '?w=0')).status, 400)
    const bad = await fetch(`${base}/kv/k`, { method: 'PUT', body: 'v', headers: { 'x-ringkv-context': '!!garbage!!' } })
    assert.equal(bad.status, 400)
    assert.equal((await bad.json() as any).error.kind, 'BadRequest')
    assert.equal((await put('fine', 'v')).status, 204)
    assert.equal(await (await fetch(`${base}/kv/fine`)).text(), 'v')
  })
})

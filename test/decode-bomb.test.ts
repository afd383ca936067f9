// The decode bomb, end to end: a few hundred bytes of msgpackr structured-clone references (a DAG
// where each level points at the one below twice, plus a trailing byte) used to freeze a replica
// for seconds and grow it by hundreds of MB, in a frame or in an x-ringkv-context header. A real
// replica must answer such a frame with a ProtocolError and keep serving the same connection, and
// the gateway (in this process) and a replica's own HTTP routes must answer such a context with 400.
// Also: a request whose error would quote a huge decoded key gets a short error, and unknown message
// types do not pile up in a replica's counters.

import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { Packr } from 'msgpackr'
import { limits } from '../coordinator/limits.ts'
import { bareSocket, dec, enc, packr, testCluster } from './helpers.ts'

/** Packr({ structuredClone: true }) of a DAG `levels` deep (wrapped as given), plus one trailing byte. */
function bomb(levels: number, wrap: (dag: unknown) => unknown): Uint8Array {
  let dag: unknown = ['x']
  for (let i = 0; i < levels; i++) dag = [dag, dag]
  const packed = new Packr({ structuredClone: true, useRecords: false }).pack(wrap(dag))
  return Uint8Array.from([...packed, 0x00])
}

describe('decode bombs', () => {
  let cluster: Awaited<ReturnType<typeof testCluster>>
  before(async () => { cluster = await testCluster(17701, { httpPort: 18701 }) })
  after(async () => { await cluster.cleanup() })

  it('a replica answers a reference-bomb frame with ProtocolError and the connection keeps serving', async () => {
    const s = await bareSocket(cluster.seeds[0]!)
    try {
      s.send(packr.pack([['hello', 1, { protocol: limits.protocolVersion, client: 'test' }]]))
      const [t0, id0] = await s.next() as [string, number]
      assert.deepEqual([t0, id0], ['hello', 1])

      for (const frame of [
        bomb(20, dag => [['put', 2, { key: enc.encode('k'), context: {}, value: dag }]]),
        bomb(20, dag => dag),
      ]) {
        assert.ok(frame.length < 600, `a bomb of ${frame.length} bytes`)
        s.send(frame)
        const [t, id, body] = await s.next() as [string, number, { kind: string; message: string }]
        assert.equal(t, 'error'); assert.equal(id, 0); assert.equal(body.kind, 'ProtocolError')
        assert.match(body.message, /not plain msgpack: extension type 0x/)
        assert.ok(body.message.length < 200, 'the reason is short')
      }

      // The same connection serves a normal put and get.
      s.send(packr.pack([['put', 3, { key: enc.encode('after-bomb'), context: {}, value: enc.encode('v') }]]))
      const [t3, id3, b3] = await s.next() as [string, number, any]
      assert.equal(t3, 'put', JSON.stringify(b3)); assert.equal(id3, 3)
      s.send(packr.pack([['get', 4, { key: enc.encode('after-bomb') }]]))
      const [t4, id4, b4] = await s.next() as [string, number, any]
      assert.equal(t4, 'get'); assert.equal(id4, 4); assert.equal(dec.decode(b4.state.siblings[0].value), 'v')
    } finally {
      s.close()
    }
  })

  it('the gateway and a replica\'s HTTP routes answer a reference bomb in x-ringkv-context with 400, and keep serving', async () => {
    const context = Buffer.from(bomb(20, dag => [['n1.1', dag]])).toString('base64url')
    assert.ok(context.length <= limits.contextBytesMax)
    for (const [i, base] of [cluster.gateway!.url, cluster.replicas[1]!.httpUrl].entries()) {
      const res = await fetch(`${base}/kv/bomb`, { method: 'PUT', body: 'v', headers: { 'x-ringkv-context': context } })
      assert.equal(res.status, 400, base)
      const { error } = await res.json() as { error: { kind: string; message: string } }
      assert.equal(error.kind, 'BadRequest')
      assert.match(error.message, /context is not valid: its bytes are not plain MessagePack: extension type 0xd6/)

      const put = await fetch(`${base}/kv/after-bomb-http-${i}`, { method: 'PUT', body: 'fine' })
      assert.equal(put.status, 204, base)
      const got = await fetch(`${base}/kv/after-bomb-http-${i}?r=3`)
      if (got.status !== 200) assert.fail(`${base}: GET ?r=3 answered ${got.status}: ${await got.text()}`)
      assert.equal(await got.text(), 'fine')
    }
  })

  it('an error never quotes a huge decoded key, and unknown types are counted as one', async () => {
    const s = await bareSocket(cluster.seeds[0]!)
    try {
      s.send(packr.pack([['hello', 1, { protocol: limits.protocolVersion, client: 'test' }]]))
      await s.next()
      // An actor name of 1 MiB in a context: zod reports it in the issue's path.
      const actor = 'a'.repeat(1024 * 1024)
      const type = 'x'.repeat(1024 * 1024)
      s.send(packr.pack([
        ['put', 2, { key: enc.encode('k'), context: { [actor]: 1 }, value: null }],
        [type, 3, {}],
      ]))
      const replies = new Map<number, { kind: string; message: string; issues?: string[] }>()
      for (let i = 0; i < 2; i++) {
        const [t, id, body] = await s.next() as [string, number, { kind: string; message: string }]
        assert.equal(t, 'error')
        replies.set(id, body)
      }
      const bad = replies.get(2)!
      assert.equal(bad.kind, 'BadRequest')
      assert.ok(bad.message.length <= limits.schemaIssuesMax * (limits.issueCharsMax + 4) + 64, `message of ${bad.message.length} characters`)
      for (const issue of bad.issues ?? []) assert.ok(issue.length <= limits.issueCharsMax + 1)
      assert.equal(replies.get(3)!.kind, 'ProtocolError')
      assert.ok(replies.get(3)!.message.length < 200)
    } finally {
      s.close()
    }
    const metrics = await (await fetch(`${cluster.replicas[0]!.httpUrl}/metrics`)).text()
    assert.match(metrics, /ringkv_requests_total\{node="n1",type="other"\} [1-9]/)
    assert.ok(!metrics.includes('xxxxxxxx'), 'an unknown type is not a label')
    assert.ok(metrics.length < 64 * 1024, `metrics of ${metrics.length} characters`)
  })
})

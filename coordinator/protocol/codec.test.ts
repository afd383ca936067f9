// Frame codec and batching: round trips, garbage and bounds, and coalescing per tick.

import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import { limits } from '../limits.ts'
import { decodeFrame, encodeFrame, FrameError, type Message } from './codec.ts'
import { FrameBatcher } from './frame-batcher.ts'
import { keySchema, requestSchemas } from './messages.ts'
import { propertyParams } from '../../test/seed.ts'

const fcParams = propertyParams('codec properties')

describe('codec', () => {
  it('round-trips frames of messages (property)', () => {
    const msg = fc.tuple(fc.constantFrom('get', 'put', 'replicate'), fc.nat(), fc.record({ key: fc.uint8Array({ maxLength: 64 }), value: fc.option(fc.uint8Array({ maxLength: 256 })) }))
    fc.assert(fc.property(fc.array(msg, { maxLength: 20 }), messages => {
      const decoded = decodeFrame(encodeFrame(messages as Message[]))
      assert.equal(decoded.length, messages.length)
      decoded.forEach((m, i) => {
        assert.ok(!('bad' in m))
        assert.equal(m[0], messages[i]![0]); assert.equal(m[1], messages[i]![1])
        const body = m[2] as { key: Uint8Array; value: Uint8Array | null }
        assert.deepEqual(new Uint8Array(body.key), messages[i]![2].key)
      })
    }), fcParams({ numRuns: 300 }))
  })

  it('throws FrameError on garbage and marks malformed envelopes', () => {
    assert.throws(() => decodeFrame(new Uint8Array([0xc1])), FrameError)
    assert.throws(() => decodeFrame(encodeFrame([] as Message[]).subarray(0, 0)), FrameError)
    assert.throws(() => decodeFrame(new Uint8Array([0x01])), /not an array/)
    const tooMany = Array.from({ length: limits.frameMessagesMax + 1 }, (_, i) => ['get', i, {}] as Message)
    assert.throws(() => decodeFrame(encodeFrame(tooMany)), /over the/)
    const mixed = decodeFrame(encodeFrame([['get', 1, {}], [5, 2, {}], ['get', -1, {}]] as unknown as Message[]))
    assert.ok(!('bad' in mixed[0]!))
    assert.deepEqual(mixed[1], { bad: 'message type is not a string', id: 2 })
    assert.equal((mixed[2] as { id: number }).id, 0)
  })

  it('fuzz: decodeFrame never throws anything but FrameError', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 200 }), bytes => {
      try { decodeFrame(bytes) } catch (e) { assert.ok(e instanceof FrameError, String(e)) }
    }), fcParams({ numRuns: 2000 }))
  })

  it('validates keys strictly', () => {
    assert.equal(keySchema.parse(new TextEncoder().encode('ok')), 'ok')
    assert.equal(keySchema.safeParse(new Uint8Array([0xc3, 0x28])).success, false)
    assert.equal(keySchema.safeParse(new Uint8Array(513).fill(97)).success, false)
    assert.equal(keySchema.safeParse(new Uint8Array(0)).success, false)
    assert.equal(requestSchemas.put.safeParse({ key: new Uint8Array([97]), context: { 'a.1': -1 }, value: null }).success, false)
    // Contexts must be canonical: sorted actors (replicas reuse vectors as they arrive).
    assert.equal(requestSchemas.put.safeParse({ key: new Uint8Array([97]), context: { 'b.1': 1, 'a.1': 2 }, value: null }).success, false)
    assert.equal(requestSchemas.put.safeParse({ key: new Uint8Array([97]), context: { 'a.1': 2, 'b.1': 1 }, value: null }).success, true)
  })
})

describe('FrameBatcher', () => {
  it('coalesces messages pushed in one tick into one frame, and splits at the message bound', () => {
    const frames: Uint8Array[] = []
    const ticks: Array<() => void> = []
    const b = new FrameBatcher(f => frames.push(f), fn => ticks.push(fn))
    for (let i = 0; i < 10; i++) b.push(['get', i, {}])
    assert.equal(frames.length, 0)
    assert.equal(ticks.length, 1)
    ticks.shift()!()
    assert.equal(frames.length, 1)
    assert.equal(decodeFrame(frames[0]!).length, 10)
    for (let i = 0; i < limits.frameMessagesMax + 5; i++) b.push(['get', i, {}])
    assert.equal(frames.length, 2, 'a full frame goes out at once')
    ticks.shift()!()
    assert.equal(decodeFrame(frames[2]!).length, 5)
  })

  it('sends early at the byte bound', () => {
    const frames: Uint8Array[] = []
    const b = new FrameBatcher(f => frames.push(f), () => {})
    b.push(['put', 1, {}], limits.frameBatchBytesMax)
    assert.equal(frames.length, 1)
  })

  it('sends what is queued before a message that would push the batch past the byte bound, so a big one travels alone', () => {
    const frames: Uint8Array[] = []
    const ticks: Array<() => void> = []
    const b = new FrameBatcher(f => frames.push(f), fn => ticks.push(fn))
    const small = new Uint8Array(4096)
    const smallCount = Math.floor(limits.frameBatchBytesMax / 2 / small.byteLength)
    for (let i = 0; i < smallCount; i++) b.push(['get', i, { value: small }], small.byteLength)
    assert.equal(frames.length, 0, 'half a batch of small replies waits for the tick')
    // A reply as large as a stored state may be: with the small ones it would be over frameBytesMax.
    const big = new Uint8Array(limits.stateBytesMax)
    b.push(['get', smallCount, { value: big }], big.byteLength)
    assert.equal(frames.length, 2, 'the queued ones, then the big one')
    const first = decodeFrame(frames[0]!)
    assert.equal(first.length, smallCount)
    const second = decodeFrame(frames[1]!)
    assert.equal(second.length, 1)
    assert.equal((second[0] as Message)[1], smallCount)
    // Medium messages: two that fit one batch together go together, a third that does not waits.
    const medium = new Uint8Array(Math.floor(limits.frameBatchBytesMax * 0.4))
    for (let i = 0; i < 3; i++) b.push(['get', 100 + i, { value: medium }], medium.byteLength)
    assert.equal(frames.length, 3)
    assert.equal(decodeFrame(frames[2]!).length, 2)
    for (const t of ticks.splice(0)) t()
    assert.equal(frames.length, 4)
    assert.equal(decodeFrame(frames[3]!).length, 1)
    for (const f of frames) assert.ok(f.byteLength <= limits.frameBytesMax, `frame of ${f.byteLength} bytes`)
    assert.equal(b.queuedBytes, 0)
  })

  it('answers through the oversize hook when one message alone is over frameBytesMax, and splits a batch whose sizes were not named', () => {
    const frames: Uint8Array[] = []
    const seen: number[] = []
    const b = new FrameBatcher(f => frames.push(f), () => {}, {
      oversize: (m, bytes) => { seen.push(bytes); return ['error', m[1], { kind: 'TooLarge', message: 'too big' }] },
    })
    const half = new Uint8Array(Math.ceil(limits.frameBytesMax / 2) + 1)
    // No sizes named: the batcher believes these are tiny and queues all three.
    b.push(['get', 1, { value: half }])
    b.push(['get', 2, { value: half }])
    b.push(['get', 3, { value: new Uint8Array(limits.frameBytesMax + 1) }])
    b.flush()
    assert.equal(frames.length, 3, 'each message alone')
    const decoded = frames.map(f => decodeFrame(f))
    assert.deepEqual(decoded.map(d => d.length), [1, 1, 1])
    assert.deepEqual(decoded.map(d => (d[0] as Message)[0]), ['get', 'get', 'error'])
    assert.equal(seen.length, 1)
    assert.ok(seen[0]! > limits.frameBytesMax)
    for (const f of frames) assert.ok(f.byteLength <= limits.frameBytesMax)
  })
})

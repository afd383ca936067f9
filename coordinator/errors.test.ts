// The one table of error kinds: every kind's data survives the trip replica -> wire (msgpack frame,
// wire schema) -> SDK (errorFromWire) -> app intact, and so does the gateway's JSON body; a body that
// lacks a field of its kind's data is a ProtocolError, never filled in with zeros.

import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import {
  badRequest, errorBody, errorKinds, errorTable, httpStatusOf, KvError, QuorumError,
  type KvErrorData, type KvErrorKind,
} from './errors.ts'
import { limits } from './limits.ts'
import { decodeFrame, encodeFrame } from './protocol/codec.ts'
import { errorSchema } from './protocol/messages.ts'
import { errorFromWire, kvErrorFromBody } from './transport/connection.ts'

const timeout = new KvError({ kind: 'Timeout', timeoutMs: 333 }, 'put to n2 timed out after 333 ms')
const tooLarge = new KvError({ kind: 'TooLarge', bytes: 9, bytesMax: 8 }, 'value is 9 bytes')

/** One instance of every kind, with every field of its data set (and the optional ones too). */
const samples: { readonly [K in KvErrorKind]: Extract<KvErrorData, { kind: K }> } = {
  BadRequest: { kind: 'BadRequest', issues: ['key is empty', 'w must be an integer from 1 to 16, got 0'] },
  TooLarge: { kind: 'TooLarge', bytes: 16 << 20, bytesMax: 8 << 20 },
  TooManySiblings: { kind: 'TooManySiblings', siblings: 65, siblingsMax: 64, context: 'kZKjbjEuMQE' },
  Overloaded: { kind: 'Overloaded', retryAfterMs: 5 },
  QuorumNotMet: {
    kind: 'QuorumNotMet', required: 2, acked: 1, replicas: ['n1'],
    failures: { n2: errorBody(timeout), n3: errorBody(tooLarge) },
  },
  Unavailable: { kind: 'Unavailable', node: 'n3', failures: { 'ws://127.0.0.1:7001': errorBody(timeout) } },
  HintRefused: { kind: 'HintRefused', target: 'n4', reason: 'target-count' },
  Timeout: { kind: 'Timeout', timeoutMs: 1500 },
  StorageFull: { kind: 'StorageFull', bytes: 2 ** 31, bytesMax: 2 ** 30 },
  Corruption: { kind: 'Corruption', file: 'tables/000012.sst', offset: 40960 },
  ChecksumMismatch: { kind: 'ChecksumMismatch', expected: 0xdeadbeef, actual: 12 },
  ProtocolError: { kind: 'ProtocolError', detail: 'reply type mismatch' },
  Internal: { kind: 'Internal' },
  Unauthorized: { kind: 'Unauthorized' },
  Forbidden: { kind: 'Forbidden', role: 'read', required: 'write' },
  SessionNotMet: { kind: 'SessionNotMet', replied: 1, timeoutMs: 1000 },
  NotPrimary: { kind: 'NotPrimary', partition: 17, node: 'n2' },
  NotOwner: { kind: 'NotOwner', ringVersion: 7, partition: 42 },
}

function sample(kind: KvErrorKind): KvError {
  const data = samples[kind]
  const message = `a ${kind} error`
  if (data.kind === 'QuorumNotMet') return new QuorumError(data, message, new Map<string, Error>([['n2', timeout], ['n3', tooLarge]]))
  return new KvError(data, message)
}

describe('errorTable', () => {
  it('gives every kind an HTTP error status', () => {
    assert.deepEqual(errorKinds.slice().sort(), Object.keys(samples).sort())
    for (const kind of errorKinds) {
      const status = httpStatusOf(kind)
      assert.ok(status >= 400 && status <= 599, `${kind} -> ${status}`)
      assert.equal(status, errorTable[kind].status)
    }
    assert.equal(httpStatusOf('TooManySiblings'), 409)
    assert.equal(httpStatusOf('QuorumNotMet'), 503)
  })

  for (const kind of Object.keys(samples) as KvErrorKind[]) {
    it(`${kind}: data survives replica -> msgpack frame -> wire schema -> SDK, and the gateway's JSON`, () => {
      const e = sample(kind)
      // What a replica sends (replica-service.ts spreads the data with kind and message).
      const sent = { ...(e.data as object), kind: e.kind, message: e.message }
      const [[type, id, body]] = decodeFrame(encodeFrame([['error', 7, sent]])) as [[string, number, unknown]]
      assert.equal(type, 'error'); assert.equal(id, 7)
      const got = errorFromWire(body, 'n1')
      assert.ok(got instanceof KvError)
      assert.equal(got.kind, kind)
      assert.deepEqual(got.data, e.data)
      assert.equal(got.message, `n1: ${e.message}`)

      // The gateway's body, through JSON, rebuilt by kvErrorFromBody.
      const json = JSON.parse(JSON.stringify({ error: errorBody(e) })) as { error: unknown }
      const parsed = errorSchema.safeParse(json.error)
      assert.ok(parsed.success, parsed.success ? '' : parsed.error.message)
      const rebuilt = kvErrorFromBody(parsed.data)
      assert.deepEqual(rebuilt.data, e.data)
      assert.equal(rebuilt.message, e.message)
    })
  }

  it('rebuilds a QuorumError with each failure as the KvError it was, data included', () => {
    const rebuilt = errorFromWire(errorBody(sample('QuorumNotMet')), 'gw', '')
    assert.ok(rebuilt instanceof QuorumError)
    assert.equal(rebuilt.required, 2)
    assert.deepEqual([...rebuilt.failures.keys()], ['n2', 'n3'])
    const n2 = rebuilt.failures.get('n2')
    assert.ok(n2 instanceof KvError && n2.data.kind === 'Timeout' && n2.data.timeoutMs === 333)
    assert.equal(n2.message, timeout.message)
    const n3 = rebuilt.failures.get('n3')
    assert.ok(n3 instanceof KvError && n3.data.kind === 'TooLarge' && n3.data.bytes === 9)
  })

  it('refuses a body missing a field of its kind, an unknown kind, or a bad failure map (no zeros filled in)', () => {
    const bad: Array<[unknown, RegExp]> = [
      [{ kind: 'TooLarge', message: 'big', bytes: 9 }, /bytesMax/],
      [{ kind: 'Timeout', message: 'slow' }, /timeoutMs/],
      [{ kind: 'QuorumNotMet', message: 'q', required: 2, acked: 1, replicas: [] }, /failures/],
      [{ kind: 'QuorumNotMet', message: 'q', required: 2, acked: 1, replicas: [], failures: { n1: { kind: 'Nope', message: 'x' } } }, /kind/],
      [{ kind: 'TooManySiblings', message: 'm', siblings: 65, siblingsMax: 64 }, /context/],
      [{ kind: 'NotFound', message: 'no value' }, /kind/],
      [{ kind: 'Overloaded', message: 'busy', retryAfterMs: -1 }, /retryAfterMs/],
      ['not an object', /./],
    ]
    for (const [body, field] of bad) {
      const e = errorFromWire(body, 'n1')
      assert.equal(e.kind, 'ProtocolError', JSON.stringify(body))
      assert.ok(e.data.kind === 'ProtocolError' && field.test(e.data.detail ?? ''), `${JSON.stringify(body)}: ${e.message}`)
      assert.match(e.message, /^n1 sent a malformed error reply/)
    }
    // What replicas send today without optional fields still parses.
    assert.equal(errorFromWire({ kind: 'ProtocolError', message: 'text frames are not part of the protocol' }, 'n1').kind, 'ProtocolError')
    assert.equal(errorFromWire({ kind: 'Internal', message: 'internal error: x', extra: 1 }, 'n1').kind, 'Internal')
  })

  it('keeps every error within the wire bounds: long messages and issue lists are cut', () => {
    const long = new KvError({ kind: 'Internal' }, 'x'.repeat(limits.errorMessageCharsMax * 2))
    assert.equal(long.message.length, limits.errorMessageCharsMax)
    assert.ok(errorSchema.safeParse(errorBody(long)).success)
    const many = badRequest(...Array.from({ length: 5000 }, (_, i) => `seeds[${i}] is not a URL`))
    assert.ok(many.data.kind === 'BadRequest' && many.data.issues.length === limits.errorIssuesMax)
    assert.match(many.data.issues.at(-1)!, /and 4937 more issues/)
    assert.ok(errorSchema.safeParse(errorBody(many)).success)
  })
})

// The fast validation path (fast-parse.ts) cannot drift from its zod schemas unnoticed. Each hot
// body is generated from its schema itself: the walk below visits every declared key, optional ones
// included, and nested objects (the state, its siblings, the elided dot). If a field is added to a
// schema and the hand-written path does not learn it, the path still accepts the body but drops the
// field, and its result stops being deep-equal to zod's: this test fails. A schema kind the walk does
// not know fails it too, so a new kind of field cannot slip past by being skipped.

import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { z } from 'zod'
import { parseReply, parseRequest } from './fast-parse.ts'
import { replySchemas, requestSchemas } from './messages.ts'

type Def = { type: string; shape?: Record<string, z.ZodType>; innerType?: z.ZodType; element?: z.ZodType; in?: z.ZodType; values?: unknown[] }
const defOf = (s: z.ZodType): Def => (s as unknown as { _zod: { def: Def } })._zod.def

/** A valid value for `schema`, with every optional field present. */
function sample(schema: z.ZodType, path: string): unknown {
  const def = defOf(schema)
  switch (def.type) {
    case 'object': return Object.fromEntries(Object.entries(def.shape!).map(([k, s]) => [k, sample(s, `${path}.${k}`)]))
    case 'optional': case 'nullable': return sample(def.innerType!, path)
    case 'array': return [sample(def.element!, `${path}[]`)]
    case 'record': return { 'a.1': 1 } // a version vector: the only record in the hot bodies
    case 'pipe': return new TextEncoder().encode('k') // keySchema: bytes decoded to a key
    case 'custom': return new Uint8Array([1, 2, 3]) // bytesSchema
    case 'string': return 'a.1'
    case 'number': return 1
    case 'literal': return def.values![0] // a put's `early: true`
    default: throw new Error(`${path}: schema kind ${def.type} is unknown to this test; teach sample() to make one`)
  }
}

/** Every object key path the schema declares, for the report. */
function keyPaths(schema: z.ZodType, path = ''): string[] {
  const def = defOf(schema)
  if (def.type === 'object') return Object.entries(def.shape!).flatMap(([k, s]) => [`${path}${k}`, ...keyPaths(s, `${path}${k}.`)])
  if (def.innerType) return keyPaths(def.innerType, path)
  if (def.element) return keyPaths(def.element, `${path}[].`)
  return []
}

const hot = ['put', 'replicate', 'get'] as const

/**
 * The vector a fast-path result reuses as it is (zod copies it), so that identity shows the fast path,
 * not zod, produced what was compared; undefined for bodies without one (get requests, replicate replies).
 */
function reusedVector(data: unknown): unknown {
  const d = data as { context?: unknown; state?: { vv?: unknown } }
  return d.context ?? d.state?.vv
}

const sides = [
  { side: 'request', schemas: requestSchemas, parse: parseRequest },
  { side: 'reply', schemas: replySchemas, parse: parseReply },
] as const

describe('fast-parse cannot drift from zod', () => {
  for (const { side, schemas, parse } of sides) {
    for (const type of hot) {
      it(`${side} ${type}: a body with every declared key (${keyPaths(schemas[type]).join(', ')}) parses as zod parses it`, () => {
        const body = sample(schemas[type], type)
        const fast = parse(type, body)
        const zod = schemas[type].safeParse(body)
        assert.equal(zod.success, true, 'the sample is valid')
        assert.deepEqual(fast, zod)
        const input = reusedVector(body)
        if (input !== undefined) assert.equal(reusedVector(fast.data), input, 'the fast path took it')
      })
    }
  }

  it('would catch a field added to a schema that the fast path does not know (the control)', () => {
    const grown = requestSchemas.put.extend({ priority: z.number().optional() })
    const body = sample(grown, 'put')
    assert.notDeepEqual(parseRequest('put', body), grown.safeParse(body), 'the fast path drops the new field, zod keeps it')
    const grownState = requestSchemas.replicate.extend({
      state: requestSchemas.replicate.shape.state.extend({ origin: z.string() }),
    })
    const body2 = sample(grownState, 'replicate')
    assert.notDeepEqual(parseRequest('replicate', body2), grownState.safeParse(body2), 'a nested field is caught too')
  })
})

// Hand-written validation of the hot message bodies (put, replicate and get requests; put, get and
// replicate replies), in front of their zod schemas in messages.ts. zod stays the boundary validator
// and the single source of truth: a fast check only ever accepts input that zod accepts too, and
// returns data deep-equal to zod's; whenever it is not sure it declines, and the body goes through
// zod, which produces every error and every edge case. zod spends ~2.3 µs on a replicate of a 1 KiB
// value, copying every object it visits; this path (~0.25 µs) reuses the version vector and the
// value views as they are, and builds only the few small fixed-shape objects around them.
//
// What zod 4 does at the edges, matched or declined here:
// - z.object reads `input[key]` for each declared key (own or inherited, getters included), drops
//   unknown keys, and keeps an optional key that is present but undefined. The objects built here
//   read the same way, so they equal zod's output for any object that is not an array.
// - z.record accepts null-prototype objects, skips non-enumerable keys and an own `__proto__` key,
//   and rejects symbol keys. A reused vector must be identical to zod's fresh copy, so anything but
//   an ordinary object holding only enumerable data properties is declined.
// - String lengths are counted in code points: a string longer than the limit in UTF-16 units may
//   still pass, so it is declined rather than counted here. Counters are dvv's isCounter (an
//   integer from 1 to counterMax), which is exactly counterSchema.
// - Should zod throw rather than report (4.6.7's readonly() did, on crafted input; messages.ts no
//   longer uses it), the throw becomes a failed parse here: a body is never able to crash the
//   process that validates it.

import { z } from 'zod'
import { limits } from '../limits.ts'
import { compareStrings, isCounter, type DvvSet, type Sibling, type VersionVector } from '../version/dvv.ts'
import {
  keyIssues, replySchemas, requestSchemas, utf8, type ParsedRequest, type ReplyBody, type RequestType,
} from './messages.ts'

type Fields = Record<string, unknown>

/** The bodies with a fast check, by request type; the others always go to zod. */
const fastRequests: Partial<Record<RequestType, (body: unknown) => unknown>> = { put: putRequest, replicate: replicateRequest, get: getRequest }
const fastReplies: Partial<Record<RequestType, (body: unknown) => unknown>> = { put: putReply, get: getReply, replicate: replicateReply }

/** Validates a request body: the same result as `requestSchemas[type].safeParse(body)`. */
export function parseRequest<T extends RequestType>(type: T, body: unknown): z.ZodSafeParseResult<ParsedRequest<T>> {
  return parse(fastRequests[type], requestSchemas[type], body) as z.ZodSafeParseResult<ParsedRequest<T>>
}

/** Validates the reply to a `type` request: the same result as `replySchemas[type].safeParse(body)`. */
export function parseReply<T extends RequestType>(type: T, body: unknown): z.ZodSafeParseResult<ReplyBody<T>> {
  return parse(fastReplies[type], replySchemas[type], body) as z.ZodSafeParseResult<ReplyBody<T>>
}

function parse(fast: ((body: unknown) => unknown) | undefined, schema: z.ZodType, body: unknown): z.ZodSafeParseResult<unknown> {
  const data = fast?.(body)
  if (data !== undefined) return { success: true, data }
  return viaZod(() => schema.safeParse(body), body)
}

/** zod's verdict; a throw inside zod becomes a failed parse naming it. */
function viaZod<T>(parse: () => z.ZodSafeParseResult<T>, body: unknown): z.ZodSafeParseResult<T> {
  try {
    return parse()
  } catch (e) {
    return { success: false, error: new z.ZodError([{ code: 'custom', path: [], input: body, message: `body could not be validated: ${(e as Error)?.message ?? String(e)}` }]) as z.ZodError<T> }
  }
}

// Each body check returns the parsed body, or undefined to hand the body to zod.

function putRequest(body: unknown): ParsedRequest<'put'> | undefined {
  if (!isObject(body)) return undefined
  const key = parseKey(body.key)
  const context = body.context
  const value = body.value
  if (key === undefined || !isVector(context) || !isBytesOrNull(value)) return undefined
  const out: { -readonly [K in keyof ParsedRequest<'put'>]: ParsedRequest<'put'>[K] } = { key, context, value }
  if ('hintFor' in body) {
    const hintFor = body.hintFor
    if (hintFor !== undefined && !isName(hintFor)) return undefined
    out.hintFor = hintFor
  }
  return earlyFlag(body, out) ? out : undefined
}

function replicateRequest(body: unknown): ParsedRequest<'replicate'> | undefined {
  if (!isObject(body)) return undefined
  const key = parseKey(body.key)
  const state = parseState(body.state)
  if (key === undefined || state === undefined) return undefined
  if (!('hintFor' in body)) return { key, state }
  const hintFor = body.hintFor
  if (hintFor !== undefined && !isName(hintFor)) return undefined
  return { key, state, hintFor }
}

function getRequest(body: unknown): ParsedRequest<'get'> | undefined {
  if (!isObject(body)) return undefined
  const key = parseKey(body.key)
  if (key === undefined) return undefined
  if (!('hintFor' in body)) return { key }
  const hintFor = body.hintFor
  if (hintFor !== undefined && !isName(hintFor)) return undefined
  return { key, hintFor }
}

function putReply(body: unknown): ReplyBody<'put'> | undefined {
  if (!isObject(body)) return undefined
  const state = parseState(body.state)
  if (state === undefined) return undefined
  const out: { -readonly [K in keyof ReplyBody<'put'>]: ReplyBody<'put'>[K] } = { state }
  if ('elided' in body) {
    const elided = body.elided
    if (elided === undefined) {
      out.elided = undefined
    } else {
      if (!isObject(elided)) return undefined
      const actor = elided.actor
      const counter = elided.counter
      if (!isName(actor) || !isCounter(counter)) return undefined
      out.elided = { actor, counter }
    }
  }
  // In the schema's key order (zod's output follows it, and the tests compare shapes).
  return earlyFlag(body, out) && writeTiming(body, out) ? out : undefined
}

/** Copies a put's optional `early` (only `true`) into `out` as zod would; false when it is anything else. */
function earlyFlag(body: Fields, out: { early?: true | undefined }): boolean {
  if (!('early' in body)) return true
  const early = body.early
  if (early !== undefined && early !== true) return false
  out.early = early
  return true
}

/**
 * Copies the optional `serviceUs` and `fsyncUs` of a write reply into `out` as zod would (a key
 * present with undefined stays, an absent one stays absent); false when one is not a valid time.
 */
function writeTiming(body: Fields, out: { serviceUs?: number | undefined; fsyncUs?: number | undefined }): boolean {
  if ('serviceUs' in body) {
    const v = body.serviceUs
    if (v !== undefined && !isTimingUs(v)) return false
    out.serviceUs = v
  }
  if ('fsyncUs' in body) {
    const v = body.fsyncUs
    if (v !== undefined && !isTimingUs(v)) return false
    out.fsyncUs = v
  }
  return true
}

function isTimingUs(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= limits.replyTimingUsMax
}

function getReply(body: unknown): ReplyBody<'get'> | undefined {
  if (!isObject(body)) return undefined
  const raw = body.state
  if (raw === null) return { state: null }
  const state = parseState(raw)
  return state === undefined ? undefined : { state }
}

function replicateReply(body: unknown): ReplyBody<'replicate'> | undefined {
  // zod reads only the timing keys and drops every other one.
  if (!isObject(body)) return undefined
  const out: { serviceUs?: number | undefined; fsyncUs?: number | undefined } = {}
  return writeTiming(body, out) ? out : undefined
}

/** keySchema: one strict decode with the same decoder, then the same keyIssues rules. */
function parseKey(bytes: unknown): string | undefined {
  if (!(bytes instanceof Uint8Array)) return undefined
  let key: string
  try {
    key = utf8.decode(bytes)
  } catch {
    return undefined
  }
  return keyIssues(key, bytes.byteLength).length === 0 ? key : undefined
}

/** stateSchema, built like zod builds it (fresh state and list, but not frozen) around the reused vector. */
function parseState(raw: unknown): DvvSet | undefined {
  if (!isObject(raw)) return undefined
  const vv = raw.vv
  const list = raw.siblings
  if (!isVector(vv) || !Array.isArray(list) || list.length > limits.siblingsReadMax) return undefined
  const siblings: Sibling[] = new Array(list.length)
  for (let i = 0; i < siblings.length; i++) {
    const s: unknown = list[i]
    if (!isObject(s)) return undefined
    const actor = s.actor
    const counter = s.counter
    const value = s.value
    if (!isName(actor) || !isCounter(counter) || !isBytesOrNull(value)) return undefined
    // Rebuilt rather than reused: proving that a sibling object has no extra, symbol or accessor
    // properties costs more than allocating this one.
    siblings[i] = { actor, counter, value }
  }
  return { vv, siblings }
}

/**
 * vectorSchema, for a vector that can be returned as it is: an ordinary object (prototype
 * Object.prototype) whose own properties are all enumerable string-keyed data properties, so zod's
 * copy would hold exactly the same entries. Reading descriptors rather than values never runs a getter.
 */
function isVector(v: unknown): v is VersionVector {
  // An array fails here too: its prototype is Array.prototype (and were it not, its `length` is
  // an own non-enumerable property).
  if (typeof v !== 'object' || v === null || Object.getPrototypeOf(v) !== Object.prototype) return false
  const actors = Object.getOwnPropertyNames(v)
  if (actors.length > limits.vectorActorsMax || Object.getOwnPropertySymbols(v).length !== 0) return false
  for (let i = 0; i < actors.length; i++) {
    const actor = actors[i]!
    // An accessor's descriptor has no value, so it fails isCounter.
    const d = Object.getOwnPropertyDescriptor(v, actor)!
    if (actor === '__proto__' || !isName(actor) || !d.enumerable || !isCounter(d.value)) return false
    if (i > 0 && compareStrings(actors[i - 1]!, actor) >= 0) return false
  }
  return true
}

/** What z.object accepts: any non-null object but an array. */
function isObject(v: unknown): v is Fields {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

/** Actor and node id schemas (1..nameCharsMax characters); longer strings are left to zod's code point count. */
function isName(v: unknown): v is string {
  return typeof v === 'string' && v.length >= 1 && v.length <= limits.nameCharsMax
}

/** bytesSchema.nullable(). */
function isBytesOrNull(v: unknown): v is Uint8Array | null {
  return v === null || v instanceof Uint8Array
}

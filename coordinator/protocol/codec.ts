// Frame codec: msgpackr encodes a frame as one msgpack array of `[type, id, body]` messages.
// Plain msgpack (no records extension): frames are self-describing, so a connection carries no
// codec state and a peer can decode any frame on its own. Decoding never throws past this module:
// garbage becomes a typed FrameError that the receiver answers with an `error` message.
// A frame costs at most linear time and memory in its bytes: msgpack-guard.ts refuses extensions
// (msgpackr's shared references made a 486-byte frame a 10 s, 650 MB decode), deep nesting and
// trailing bytes before msgpackr sees the frame, and no error message quotes decoded content.

import { Packr, Unpackr, type Options } from 'msgpackr'
import { limits } from '../limits.ts'
import { msgpackIssue, plainUnpackrOptions } from './msgpack-guard.ts'

/**
 * `[type, id, body]`, and on replies from replicas `[type, id, body, ringVersion]`: the version of
 * the ring the request was served under, so a client learns of a newer ring from any reply.
 */
export type Message = readonly [type: string, id: number, body: unknown, ringVersion?: number]

// skipValues (msgpackr reads it, its typings lack it): a property holding undefined is left out
// rather than written as msgpackr's undefined extension (fixext 0), which the receiver's guard
// refuses; to the schemas an absent optional field and an undefined one are the same.
const packr = new Packr({ useRecords: false, variableMapSize: true, skipValues: [undefined] } as Options)
// Binary fields decode as views into the frame (copyBuffers: false): copying each one measured 2.4x
// slower per message. So nothing decoded here may be kept past its request: the replica re-encodes
// states into fresh buffers before storing them, and the SDK copies values before handing them to
// the app (client/index.ts), so no value pins a whole frame.
// The options turn off what msgpackr lets an option turn off; the guard in decodeFrame is still what
// keeps every other extension out (plainUnpackrOptions says which ones, from msgpackr's source).
const unpackr = new Unpackr({ ...plainUnpackrOptions, copyBuffers: false, mapsAsObjects: true })

export class FrameError extends Error {
  override name = 'FrameError'
}

export function encodeFrame(messages: readonly Message[]): Uint8Array {
  return packr.pack(messages)
}

/**
 * Decodes a frame into messages. Messages whose envelope is malformed are returned as
 * `{ bad: reason, id }` (id 0 when it cannot be read) so the caller can answer each one.
 */
export function decodeFrame(frame: Uint8Array): Array<Message | { bad: string; id: number }> {
  if (frame.byteLength > limits.frameBytesMax) throw new FrameError(`frame of ${frame.byteLength} bytes over the ${limits.frameBytesMax}-byte limit`)
  const issue = msgpackIssue(frame)
  if (issue !== null) throw new FrameError(`frame is not plain msgpack: ${issue}`)
  let decoded: unknown
  try {
    decoded = unpackr.unpack(frame)
  } catch (e) {
    // Not expected once the guard passed. msgpackr's own messages can quote the decoded value (its
    // trailing-bytes error does), so only the error's name goes into the message; the cause keeps it.
    throw new FrameError(`frame is not valid msgpack: msgpackr refused it (${(e as Error)?.name})`, { cause: e })
  }
  if (!Array.isArray(decoded)) throw new FrameError('frame is not an array of messages')
  if (decoded.length > limits.frameMessagesMax) throw new FrameError(`frame holds ${decoded.length} messages, over the ${limits.frameMessagesMax} limit`)
  const out: Array<Message | { bad: string; id: number }> = []
  for (const m of decoded) {
    if (!Array.isArray(m) || m.length < 3 || m.length > 4) { out.push({ bad: 'message is not [type, id, body] or [type, id, body, ringVersion]', id: 0 }); continue }
    const [type, id, , rv] = m as [unknown, unknown, unknown, unknown]
    const okId = typeof id === 'number' && Number.isSafeInteger(id) && id >= 0
    if (!okId) { out.push({ bad: 'message id is not a non-negative integer', id: 0 }); continue }
    if (typeof type !== 'string') { out.push({ bad: 'message type is not a string', id }); continue }
    if (m.length === 4 && !(typeof rv === 'number' && Number.isSafeInteger(rv) && rv >= 0 && rv <= limits.membershipCounterMax)) {
      out.push({ bad: 'message ring version is not an integer from 0 to 2^48', id }); continue
    }
    // The decoded array is the message: its slots were just checked (no copy per message).
    out.push(m as unknown as Message)
  }
  return out
}

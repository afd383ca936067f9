// Frame codec: msgpackr encodes a frame as one msgpack array of `[type, id, body]` messages.
// Plain msgpack (no records extension): frames are self-describing, so a connection carries no
// codec state and a peer can decode any frame on its own. Decoding never throws past this module:
// garbage becomes a typed FrameError that the receiver answers with an `error` message.

import { Packr, Unpackr } from 'msgpackr'
import { limits } from '../limits.ts'

export type Message = readonly [type: string, id: number, body: unknown]

const packr = new Packr({ useRecords: false, variableMapSize: true })
// Binary fields decode as views into the frame (copyBuffers: false): copying each one measured 2.4x
// slower per message. So nothing decoded here may be kept past its request: the replica re-encodes
// states into fresh buffers before storing them, and the SDK copies values before handing them to
// the app (client/index.ts), so no value pins a whole frame.
const unpackr = new Unpackr({ useRecords: false, copyBuffers: false, mapsAsObjects: true })

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
  let decoded: unknown
  try {
    decoded = unpackr.unpack(frame)
  } catch (e) {
    throw new FrameError(`frame is not valid msgpack: ${(e as Error).message}`, { cause: e })
  }
  if (!Array.isArray(decoded)) throw new FrameError('frame is not an array of messages')
  if (decoded.length > limits.frameMessagesMax) throw new FrameError(`frame holds ${decoded.length} messages, over the ${limits.frameMessagesMax} limit`)
  const out: Array<Message | { bad: string; id: number }> = []
  for (const m of decoded) {
    if (!Array.isArray(m) || m.length !== 3) { out.push({ bad: 'message is not [type, id, body]', id: 0 }); continue }
    const [type, id] = m as [unknown, unknown, unknown]
    const okId = typeof id === 'number' && Number.isSafeInteger(id) && id >= 0
    if (!okId) { out.push({ bad: 'message id is not a non-negative integer', id: 0 }); continue }
    if (typeof type !== 'string') { out.push({ bad: 'message type is not a string', id }); continue }
    // The decoded array is the message: its three slots were just checked (no copy per message).
    out.push(m as unknown as Message)
  }
  return out
}

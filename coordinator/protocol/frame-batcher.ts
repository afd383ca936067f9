// Coalesces outgoing messages into frames: everything queued within one tick of the event loop goes
// out as one WebSocket frame (docs/protocol.md). A frame is sent early when it reaches
// frameMessagesMax messages or about frameBatchBytesMax bytes, so batching bounds both memory and
// the latency it adds (at most one tick). A message that would push the batch past
// frameBatchBytesMax first sends what is queued, so a big message always travels alone and
// coalescing never builds a frame the peer must refuse (over frameBytesMax, which closes the whole
// connection and fails every request on it). The tick scheduler is injected (setImmediate on Node,
// a macrotask elsewhere) so this stays runtime-neutral.

import { limits } from '../limits.ts'
import { encodeFrame, type Message } from './codec.ts'

/** What a message costs beyond the payload bytes its sender names (envelope, id, small fields). */
const messageOverheadBytes = 32

export interface FrameBatcherOptions {
  /**
   * Called with a message whose frame, alone, is over frameBytesMax; returns what to send in its
   * place (a replica answers an error with the same id), or undefined to send nothing (a client
   * fails the request itself). An oversized frame is never sent: the peer would refuse it by closing
   * the connection, failing every other request on it too.
   */
  readonly oversize?: (message: Message, frameBytes: number) => Message | undefined
}

export class FrameBatcher {
  private queue: Message[] = []
  private bytes = 0
  private scheduled = false

  constructor(
    private readonly send: (frame: Uint8Array) => void,
    private readonly schedule: (fn: () => void) => void,
    private readonly opts: FrameBatcherOptions = {},
  ) {}

  /** Estimated bytes queued and not yet handed to `send`. */
  get queuedBytes(): number {
    return this.bytes
  }

  /** `approxBytes`: the payload size the message carries (values), for the byte bound. */
  push(message: Message, approxBytes = 0): void {
    const size = approxBytes + messageOverheadBytes
    if (this.queue.length > 0 && this.bytes + size > limits.frameBatchBytesMax) this.flush()
    this.queue.push(message)
    this.bytes += size
    if (this.queue.length >= limits.frameMessagesMax || this.bytes >= limits.frameBatchBytesMax) {
      this.flush()
      return
    }
    if (!this.scheduled) {
      this.scheduled = true
      this.schedule(this.onTick)
    }
  }

  private readonly onTick = (): void => {
    this.scheduled = false
    this.flush()
  }

  flush(): void {
    if (this.queue.length === 0) return
    const batch = this.queue
    this.queue = []
    this.bytes = 0
    const frame = encodeFrame(batch)
    if (frame.byteLength <= limits.frameBytesMax) {
      this.send(frame)
      return
    }
    // The estimates were wrong (a sender that named no payload size): send each message alone.
    if (batch.length > 1) {
      for (const m of batch) this.sendAlone(m)
      return
    }
    this.sendAlone(batch[0]!, frame)
  }

  private sendAlone(message: Message, encoded?: Uint8Array): void {
    const frame = encoded ?? encodeFrame([message])
    if (frame.byteLength <= limits.frameBytesMax) {
      this.send(frame)
      return
    }
    const instead = this.opts.oversize?.(message, frame.byteLength)
    if (instead) this.send(encodeFrame([instead]))
  }

  /** Messages not yet sent (dropped on close: their requests fail through their own timeouts). */
  clear(): void {
    this.queue = []
    this.bytes = 0
  }
}

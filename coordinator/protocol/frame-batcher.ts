// Coalesces outgoing messages into frames: everything queued within one tick of the event loop goes
// out as one WebSocket frame (DESIGN.md "Wire protocol"). A frame is sent early when it reaches
// frameMessagesMax messages or about frameBatchBytesMax bytes, so batching bounds both memory and
// the latency it adds (at most one tick). The tick scheduler is injected (setImmediate on Node,
// a macrotask elsewhere) so this stays runtime-neutral.

import { limits } from '../limits.ts'
import { encodeFrame, type Message } from './codec.ts'

export class FrameBatcher {
  private queue: Message[] = []
  private bytes = 0
  private scheduled = false

  constructor(
    private readonly send: (frame: Uint8Array) => void,
    private readonly schedule: (fn: () => void) => void,
  ) {}

  /** `approxBytes`: the payload size the message carries (values), for the byte bound. */
  push(message: Message, approxBytes = 0): void {
    this.queue.push(message)
    this.bytes += approxBytes + 32
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
    this.send(encodeFrame(batch))
  }

  /** Messages not yet sent (dropped on close: their requests fail through their own timeouts). */
  clear(): void {
    this.queue = []
    this.bytes = 0
  }
}

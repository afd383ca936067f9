// The replica's WebSocket data plane on Node: accepts upgrades on the HTTP server's port, decodes
// frames, hands each message to the ReplicaService and coalesces replies into one frame per tick.
// After the hello, a garbage frame, a text frame or a malformed envelope gets an `error` reply; the
// connection and its other requests go on. Frames over the limit are refused by `ws` itself (1009).
//
// What one peer may cost the replica is bounded here, so that it cannot starve the others:
// - Connections: at most connectionsMax open and handshakesInflightMax that have not said hello;
//   past either the upgrade is refused (HTTP 503) before any WebSocket state exists.
// - Hello first: until a `hello` has been answered, any other message (or bad frame) gets a
//   ProtocolError and the socket is closed (1008); so is a failed hello, and a socket that says
//   nothing within helloTimeoutMs or sends more than helloBytesMax first. The SDK sends hello
//   first and queues everything behind it.
// - Replies: requests are answered in order, one message at a time, and when the bytes waiting to
//   be sent pass replyBufferedBytesPause the replica stops (the rest of the frame waits, and the
//   socket is not read) until the client has taken them: backpressure, so a client pipelining big
//   gets is slowed, not cut off. While all connections together hold over
//   replyBufferedBytesTotalMax, every connection with replies unsent waits the same way, so many
//   such clients stay bounded too. A paused client whose socket takes nothing for replyStallMs, or
//   one whose backlog passes replyBufferedBytesMax anyway (replies to writes already in flight),
//   is closed (1008) and destroyed after closeGraceMs: before this a client that sent gets for a
//   large key and never read grew the replica by 260 MB per 7 KB of requests.
// - A single reply whose frame would be over frameBytesMax (a key stored before its state was
//   bounded) is answered with TooLarge instead; sent, it made the client close the connection
//   with 1009 and fail every other request on it.

import type { IncomingMessage, Server } from 'node:http'
import type { Duplex } from 'node:stream'
import { WebSocketServer, type WebSocket } from 'ws'
import { limits } from '../../coordinator/limits.ts'
import { decodeFrame, type Message } from '../../coordinator/protocol/codec.ts'
import { FrameBatcher } from '../../coordinator/protocol/frame-batcher.ts'
import type { ErrorBody } from '../../coordinator/protocol/messages.ts'
import { newGrant, type ReplicaService, type Reply } from '../replica-service.ts'

/** Why an upgrade was refused. */
export type RefusedReason = 'connections' | 'handshakes'
/** Why the replica closed a connection (1008). */
export type ClosedReason = 'hello_first' | 'hello_refused' | 'hello_timeout' | 'hello_bytes' | 'reply_backlog' | 'reply_stalled'

export interface DataPlaneStats {
  /** Open data-plane connections (gauge). */
  open: number
  /** Open connections that have not completed their hello (gauge). */
  handshakes: number
  /** Connections whose reads are paused on their reply backlog (gauge). */
  paused: number
  /** Reply bytes buffered for all connections (gauge; an upper bound between writes). */
  replyBacklogBytes: number
  refused: Record<RefusedReason, number>
  closed: Record<ClosedReason, number>
}

export interface DataPlane {
  readonly stats: DataPlaneStats
  /** Destroys every connection and stops accepting upgrades. */
  close(): void
}

type Decoded = ReturnType<typeof decodeFrame>[number]

const CLOSE_POLICY = 1008

export function attachDataPlane(server: Server, service: ReplicaService): DataPlane {
  const wss = new WebSocketServer({ noServer: true, maxPayload: limits.frameBytesMax, perMessageDeflate: false })
  const stats: DataPlaneStats = {
    open: 0, handshakes: 0, paused: 0, replyBacklogBytes: 0,
    refused: { connections: 0, handshakes: 0 },
    closed: { hello_first: 0, hello_refused: 0, hello_timeout: 0, hello_bytes: 0, reply_backlog: 0, reply_stalled: 0 },
  }
  let closed = false
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const refusal: RefusedReason | undefined = closed || stats.open >= limits.connectionsMax ? 'connections'
      : stats.handshakes >= limits.handshakesInflightMax ? 'handshakes' : undefined
    if (refusal) {
      refuseUpgrade(socket, refusal, stats)
      return
    }
    // handleUpgrade completes synchronously (no verifyClient), so the counts checked above cannot
    // be raced past; when it refuses a bad upgrade itself, the callback never runs.
    wss.handleUpgrade(req, socket, head, ws => { new Peer(ws, socket, service, stats) })
  })
  return {
    stats,
    close() {
      closed = true
      for (const c of wss.clients) c.terminate()
      wss.close()
    },
  }
}

function refuseUpgrade(socket: Duplex, why: RefusedReason, stats: DataPlaneStats): void {
  stats.refused[why]++
  socket.on('error', () => { /* the peer may already be gone; nothing is owed to it */ })
  const body = why === 'connections'
    ? `too many connections (${limits.connectionsMax}): try another replica or later\n`
    : `too many connections awaiting hello (${limits.handshakesInflightMax}): try later\n`
  socket.once('finish', () => socket.destroy())
  socket.end(`HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`)
}

/** One data-plane connection: its hello state, the frames it has sent and not had answered, its reply backlog. */
class Peer {
  private hello = false
  private closing = false
  /** Reads paused: this connection's reply backlog, or all connections', is over its bound. */
  private blocked = false
  /** This connection's share of stats.replyBacklogBytes, as of its last write or drain. */
  private accounted = 0
  /** Frames received and not yet decoded (only while blocked: `ws` hands over what it has already read). */
  private readonly inbox: Array<{ data: Buffer; isBinary: boolean }> = []
  /** The frame being answered, when it was interrupted by the backlog. */
  private current: { messages: Decoded[]; at: number } | undefined
  /** Payload bytes handed to `ws`; minus bufferedAmount, what the socket has taken. */
  private sentBytes = 0
  private takenAtLastCheck = 0
  private helloTimer: NodeJS.Timeout | undefined
  /** Bytes received before the hello was answered. */
  private bytesBeforeHello = 0
  private stallTimer: NodeJS.Timeout | undefined
  private graceTimer: NodeJS.Timeout | undefined
  private readonly batcher: FrameBatcher
  private readonly reply: Reply
  private readonly helloReply: Reply
  /** The role this connection's hello established (checked once, here, not per frame). */
  private readonly grant = newGrant()

  constructor(
    private readonly ws: WebSocket,
    private readonly socket: Duplex,
    private readonly service: ReplicaService,
    private readonly stats: DataPlaneStats,
  ) {
    stats.open++
    stats.handshakes++
    this.batcher = new FrameBatcher(frame => this.sendFrame(frame), setImmediate, {
      oversize: (m, frameBytes) => {
        service.counters.errors.TooLarge = (service.counters.errors.TooLarge ?? 0) + 1
        return tooLarge(m, frameBytes)
      },
    })
    this.reply = (m, approxBytes) => { if (!this.closing) this.batcher.push(m, approxBytes) }
    this.helloReply = (m, approxBytes) => {
      if (this.closing) return
      this.batcher.push(m, approxBytes)
      if (m[0] === 'hello') this.helloDone()
      else this.close('hello_refused', 'hello refused', true)
    }
    this.helloTimer = setTimeout(() => this.close('hello_timeout', `no hello within ${limits.helloTimeoutMs} ms`, false), limits.helloTimeoutMs)
    // Counted on the raw socket, so a frame too big for a hello is cut off while it arrives.
    socket.on('data', this.countBeforeHello)
    ws.on('message', (data: Buffer, isBinary: boolean) => this.onFrame(data, isBinary))
    ws.on('close', () => this.onClose())
    ws.on('error', () => { /* the close event follows; nothing is pending on the server side */ })
    // 'drain': the socket took everything buffered; a paused connection goes on.
    socket.on('drain', this.onWritten)
  }

  private onFrame(data: Buffer, isBinary: boolean): void {
    this.service.counters.framesIn++
    if (this.closing) return
    this.inbox.push({ data, isBinary })
    if (!this.blocked) this.pump()
  }

  /** Answers messages in order until none are left, the backlog pauses us, or the connection closes. */
  private pump(): void {
    while (!this.closing) {
      if (this.mustWait()) { this.block(); return }
      const c = this.current
      if (c) {
        if (c.at >= c.messages.length) { this.current = undefined; continue }
        this.handle(c.messages[c.at++]!)
        continue
      }
      const next = this.inbox.shift()
      if (!next) return
      const messages = this.decode(next.data, next.isBinary)
      if (messages) this.current = { messages, at: 0 }
    }
  }

  private decode(data: Buffer, isBinary: boolean): Decoded[] | undefined {
    const why = !isBinary ? 'text frames are not part of the protocol: send msgpack binary frames' : undefined
    if (why === undefined) {
      try {
        return decodeFrame(data)
      } catch (e) {
        this.bad(0, (e as Error).message)
        return undefined
      }
    }
    this.bad(0, why)
    return undefined
  }

  private handle(m: Decoded): void {
    if ('bad' in m) { this.bad(m.id, m.bad); return }
    const [type, id, body] = m
    if (this.hello) { this.service.handle(type, id, body, this.reply, this.grant); return }
    if (type === 'hello') { this.service.handle(type, id, body, this.helloReply, this.grant); return }
    this.service.bad(id, `hello first: the first message on a connection must be hello, not ${JSON.stringify(type).slice(0, 64)}`, this.reply)
    this.close('hello_first', 'hello first', true)
  }

  private bad(id: number, why: string): void {
    this.service.bad(id, this.hello ? why : `hello first (${why})`, this.reply)
    if (!this.hello) this.close('hello_first', 'hello first', true)
  }

  private helloDone(): void {
    if (this.hello) return
    this.hello = true
    this.stats.handshakes--
    clearTimeout(this.helloTimer)
    this.helloTimer = undefined
    this.socket.off('data', this.countBeforeHello)
  }

  private readonly countBeforeHello = (chunk: Buffer): void => {
    // Still called for the chunk that held the hello: listeners removed during an emit still run.
    if (this.hello || this.closing) return
    this.bytesBeforeHello += chunk.byteLength
    if (this.bytesBeforeHello <= limits.helloBytesMax) return
    // Read no more of it: the close frame goes out, and the socket is destroyed after the grace.
    this.ws.pause()
    this.close('hello_bytes', `over ${limits.helloBytesMax} bytes before hello`, false)
  }

  /** Reply bytes not yet taken by the socket: buffered in `ws` and the socket, and queued in the batcher. */
  private backlog(): number {
    return this.ws.bufferedAmount + this.batcher.queuedBytes
  }

  /** True when this connection must answer nothing more until the socket has taken its replies. */
  private mustWait(): boolean {
    if (this.backlog() > limits.replyBufferedBytesPause) return true
    return this.stats.replyBacklogBytes > limits.replyBufferedBytesTotalMax && this.ws.bufferedAmount > 0
  }

  /** Brings this connection's share of the total backlog up to date. */
  private account(): void {
    const now = this.closing ? 0 : this.ws.bufferedAmount
    this.stats.replyBacklogBytes += now - this.accounted
    this.accounted = now
  }

  /** A write completed or the socket drained: the backlog shrank. */
  private readonly onWritten = (): void => {
    this.account()
    if (this.blocked && !this.closing && !this.mustWait()) this.unblock()
  }

  private sendFrame(frame: Uint8Array): void {
    if (this.ws.readyState !== this.ws.OPEN) return
    this.service.counters.framesOut++
    this.sentBytes += frame.byteLength
    // No per-write callback (it cost a callback dispatch per frame on the hot path): the backlog is
    // accounted here, and again on the socket's 'drain' and at each stall check, which is where a
    // paused connection goes on. Writes that complete without a drain leave at most the socket's
    // highWaterMark counted a little longer than it is held.
    this.ws.send(frame)
    this.account()
    if (this.ws.bufferedAmount > limits.replyBufferedBytesMax) {
      this.close('reply_backlog', 'reply backlog over limit: the client is not reading', false)
    }
  }

  private block(): void {
    this.blocked = true
    this.stats.paused++
    this.ws.pause()
    this.takenAtLastCheck = this.taken()
    this.stallTimer = setTimeout(this.checkStall, limits.replyStallMs)
  }

  private unblock(): void {
    if (!this.blocked) return
    this.blocked = false
    this.stats.paused--
    clearTimeout(this.stallTimer)
    this.stallTimer = undefined
    if (this.closing) return
    this.ws.resume()
    this.pump()
  }

  /** Bytes the socket has taken from us so far (never counts frame headers still buffered). */
  private taken(): number {
    return this.sentBytes - this.ws.bufferedAmount
  }

  private readonly checkStall = (): void => {
    this.stallTimer = undefined
    if (!this.blocked || this.closing) return
    // A drain we did not hear about (the bytes sat in `ws`, not the socket): go on.
    this.account()
    if (!this.mustWait()) { this.unblock(); return }
    const taken = this.taken()
    if (taken <= this.takenAtLastCheck) {
      this.close('reply_stalled', `reply backlog not taken for ${limits.replyStallMs} ms: the client is not reading`, false)
      return
    }
    this.takenAtLastCheck = taken
    this.stallTimer = setTimeout(this.checkStall, limits.replyStallMs)
  }

  /**
   * Closes with 1008. `flush`: send what is queued first (the error that explains the close);
   * otherwise queued replies are dropped (the client is not reading them anyway).
   */
  private close(why: ClosedReason, reason: string, flush: boolean): void {
    if (this.closing) return
    if (flush) this.batcher.flush()
    this.closing = true
    this.batcher.clear()
    this.inbox.length = 0
    this.current = undefined
    this.stats.closed[why]++
    clearTimeout(this.helloTimer)
    clearTimeout(this.stallTimer)
    this.ws.close(CLOSE_POLICY, reason)
    // A client that does not read never sees the close frame behind its backlog: destroy the socket.
    this.graceTimer = setTimeout(() => this.ws.terminate(), limits.closeGraceMs)
  }

  private onClose(): void {
    this.closing = true
    this.account()
    this.stats.open--
    if (!this.hello) this.stats.handshakes--
    if (this.blocked) { this.blocked = false; this.stats.paused-- }
    clearTimeout(this.helloTimer)
    clearTimeout(this.stallTimer)
    clearTimeout(this.graceTimer)
    this.batcher.clear()
    this.inbox.length = 0
    this.current = undefined
  }
}

/** The error sent instead of a reply whose frame would be over frameBytesMax. */
function tooLarge(m: Message, frameBytes: number): Message {
  const body: ErrorBody = {
    kind: 'TooLarge', bytes: frameBytes, bytesMax: limits.frameBytesMax,
    message: `the ${m[0]} reply is ${frameBytes} bytes, over the ${limits.frameBytesMax}-byte frame limit`,
  }
  return ['error', m[1], body]
}

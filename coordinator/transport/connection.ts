// One WebSocket to one replica, multiplexing requests by id (docs/protocol.md).
//
// The connection opens lazily on the first request, says `hello` (protocol version) and pipelines
// everything else behind it; outgoing messages coalesce into one frame per tick (FrameBatcher).
// Failure is fast and bounded: after a connect failure, a close, or a request that timed out on a
// silent connection (a paused replica), requests fail at once with Unavailable until the backoff
// (exponential, jittered, capped) has passed, so a quorum moves on to the next replica instead of
// waiting out a timeout. In-flight requests per connection are bounded, so are requests queued
// behind them; beyond that callers get Overloaded.

import { KvError, QuorumError, type KvErrorBody, type KvErrorData } from '../errors.ts'
import { limits } from '../limits.ts'
import { decodeFrame, FrameError } from '../protocol/codec.ts'
import { parseReply } from '../protocol/fast-parse.ts'
import { FrameBatcher } from '../protocol/frame-batcher.ts'
import {
  describeIssues, errorSchema, type ReplyBody, type RequestBody, type RequestType,
} from '../protocol/messages.ts'
import type { Runtime, SocketLike } from '../runtime.ts'
import { backoffDelayMs, type BackoffPolicy } from '../backoff.ts'

/** WebSocket readyState OPEN (the same in every implementation: WHATWG, ws, workerd). */
const OPEN = 1

/**
 * Errors of requests that never left this process (the connection was closed, backing off, its queue
 * full, or it failed while the request waited in the queue): the replica cannot have acted on them.
 * Any other failure of a sent request (a timeout, a lost connection) leaves it unknown whether the
 * replica acted; a write coordinator needs the difference (kv-coordinator.ts, onStampFailed).
 */
const unsent = new WeakSet<Error>()
export function neverSent(e: unknown): boolean {
  return e instanceof Error && unsent.has(e)
}
function markUnsent<E extends Error>(e: E): E {
  unsent.add(e)
  return e
}

const reconnectBackoff: BackoffPolicy = { minMs: limits.reconnectBackoffMsMin, maxMs: limits.reconnectBackoffMsMax, jitter: 'equal' }

interface Pending {
  readonly type: RequestType
  readonly resolve: (body: any) => void
  readonly reject: (e: Error) => void
  /** Takes a reply marked `early` (a put's stamped state before it is durable); the request stays pending. */
  readonly early: ((body: any) => void) | undefined
  /** The early reply was handed over: a repeat of it is ignored. */
  earlyDone: boolean
  timer: unknown
}

interface Queued {
  readonly type: RequestType
  readonly body: unknown
  readonly approxBytes: number
  /** The request's own deadline: time spent queued counts against its timeout. */
  readonly deadline: number
  readonly timeoutMs: number
  readonly probeAfterMs: number | undefined
  readonly resolve: (body: any) => void
  readonly reject: (e: Error) => void
  readonly early: ((body: any) => void) | undefined
  timer: unknown
}

export interface ConnectionOptions {
  readonly client: string
  readonly token?: string
  readonly onHello?: (hello: ReplyBody<'hello'>) => void
  /** A reply named the ring version it was served under (called for each such reply). */
  readonly onRingVersion?: (version: number, node: string) => void
}

type State = 'idle' | 'connecting' | 'open' | 'backoff' | 'closed'

export class Connection {
  private socket: SocketLike | undefined
  private state: State = 'idle'
  private batcher: FrameBatcher | undefined
  private readonly pending = new Map<number, Pending>()
  private readonly queue: Queued[] = []
  private nextId = 1
  private failures = 0
  /** Frames received: a request that timed out while this moved was not facing a paused replica. */
  private framesIn = 0
  /** Why the last connect or request failed (what whyDown reports while backing off). */
  private lastFailure: KvError | undefined
  private connectTimer: unknown
  private retryTimer: unknown
  /** A sign-of-life probe is in flight (see silent()). */
  private probing = false

  constructor(
    readonly node: string,
    private url: string,
    private readonly rt: Runtime,
    private readonly opts: ConnectionOptions,
  ) {}

  /**
   * The transport's view of the replica, used to choose quorum targets. A connection that never
   * failed is presumed up (its first request opens it). After a failure it is down until a
   * reconnect, made in the background once the backoff has passed, completes its hello: a circuit
   * breaker, so that no request waits on a replica that accepts TCP but answers nothing.
   */
  isUp(): boolean {
    if (this.state === 'open') return true
    if (this.state === 'closed' || this.state === 'backoff') return false
    return this.failures === 0
  }

  /** Requests sent and not yet answered, and those queued behind them: how busy the replica looks from here. */
  get load(): number {
    return this.pending.size + this.queue.length
  }

  /**
   * Ends a backoff now, so that the next request reconnects at once: a health probe asks whether
   * the replica answers now, not whether it failed a moment ago.
   */
  retryNow(): void {
    if (this.state !== 'backoff') return
    this.rt.clearTimeout(this.retryTimer)
    this.state = 'idle'
  }

  /** Why isUp() is false: the failure the connection is backing off from, or that it is closed. */
  whyDown(): KvError {
    if (this.state === 'closed') return this.unavailable('connection closed')
    if (this.lastFailure?.kind === 'Unauthorized') return this.lastFailure
    return this.unavailable(`down, backing off after: ${this.lastFailure?.message ?? 'a failure'}`, this.lastFailure)
  }

  setUrl(url: string): void {
    if (url === this.url) return
    this.url = url
    this.drop(new KvError({ kind: 'Unavailable', node: this.node }, `replica ${this.node} moved to ${shownUrl(url)}`))
  }

  /**
   * Sends one request and resolves with its reply. `probeAfterMs` (shorter than timeoutMs): when
   * nothing at all has arrived on the connection that long after the request was sent, probe it for a
   * sign of life (silent()) without failing the request, so that a paused replica is found, and
   * its connection reset, long before a patient request's own timeout. `early` takes a first reply
   * marked `early: true` (a put asked to answer early, docs/protocol.md), validated like any reply;
   * the request then stays pending until its final reply, under the same timeout.
   */
  request<T extends RequestType>(type: T, body: RequestBody<T>, timeoutMs: number, approxBytes = 0, probeAfterMs?: number,
    early?: (body: ReplyBody<T>) => void): Promise<ReplyBody<T>> {
    return new Promise<ReplyBody<T>>((resolve, reject) => {
      if (this.state === 'closed') return reject(markUnsent(this.unavailable('connection closed')))
      // A refused token stays the answer while backing off: the caller must hear Unauthorized, not
      // "down". A copy is marked unsent: the shared lastFailure also rejected requests that were sent.
      if (this.state === 'backoff') {
        const lf = this.lastFailure
        return reject(markUnsent(lf?.kind === 'Unauthorized' ? new KvError(lf.data, lf.message, { cause: lf }) : this.unavailable('replica unreachable, backing off')))
      }
      if (this.state === 'open' && this.pending.size < limits.inflightPerConnectionMax) {
        this.send(type, body, timeoutMs, approxBytes, resolve, reject, false, probeAfterMs, early)
        return
      }
      if (this.queue.length >= limits.pendingPerConnectionMax) {
        return reject(markUnsent(new KvError({ kind: 'Overloaded', retryAfterMs: limits.queueFullRetryAfterMs }, `too many requests queued for ${this.node}`)))
      }
      const q: Queued = { type, body, approxBytes, deadline: this.rt.now() + timeoutMs, timeoutMs, probeAfterMs, resolve, reject, early, timer: undefined }
      q.timer = this.rt.setTimeout(() => {
        const at = this.queue.indexOf(q)
        if (at < 0) return
        this.queue.splice(at, 1)
        reject(markUnsent(this.queuedTimeout(type, timeoutMs)))
      }, timeoutMs)
      this.queue.push(q)
      if (this.state === 'idle') this.open()
    })
  }

  close(): void {
    this.rt.clearTimeout(this.retryTimer)
    this.rt.clearTimeout(this.connectTimer)
    this.state = 'closed'
    this.drop(this.unavailable('connection closed'))
  }

  private queuedTimeout(type: RequestType, timeoutMs: number): KvError {
    return new KvError({ kind: 'Timeout', timeoutMs }, `${type} to ${this.node} timed out after ${timeoutMs} ms waiting for the connection`)
  }

  private readonly tooLarge = (m: readonly [string, number, unknown, number?], frameBytes: number): undefined => {
    const p = this.pending.get(m[1])
    if (p) {
      this.pending.delete(m[1])
      this.rt.clearTimeout(p.timer)
      p.reject(new KvError({ kind: 'TooLarge', bytes: frameBytes, bytesMax: limits.frameBytesMax },
        `${m[0]} to ${this.node} not sent: its frame would be ${frameBytes} bytes, over the ${limits.frameBytesMax}-byte limit`))
    }
    return undefined
  }

  private unavailable(why: string, cause?: unknown): KvError {
    return new KvError({ kind: 'Unavailable', node: this.node }, `${this.node} (${shownUrl(this.url)}): ${why}`, { cause })
  }

  private open(): void {
    this.state = 'connecting'
    let socket: SocketLike
    try {
      socket = this.rt.connect(this.url)
    } catch (e) {
      this.onFailure(this.unavailable('cannot connect', e))
      return
    }
    // Browsers and Workers deliver ArrayBuffers; Node's ws adapter (runtime.ts) keeps its Buffers.
    if (socket.binaryType !== 'nodebuffer') socket.binaryType = 'arraybuffer'
    this.socket = socket
    // A request whose frame would be over frameBytesMax (a read repair of a state merged from
    // several replicas can be) fails here with TooLarge: sent, it would make the replica close the
    // connection, failing every other request on it.
    // A frame flushed after the socket began to close is dropped: its requests fail when the close
    // arrives (drop()). Sending would throw in workerd ("Can't call WebSocket send() after close()"),
    // from a timer, where an uncaught error resets the Durable Object running this connection.
    const batcher = new FrameBatcher(frame => {
      if (socket.readyState !== OPEN) return
      try {
        socket.send(frame)
      } catch (e) {
        if (this.socket === socket) { socket.close(); this.onFailure(this.unavailable('send failed', e)) }
      }
    }, this.rt.tick, { oversize: this.tooLarge })
    this.connectTimer = this.rt.setTimeout(() => {
      if (this.socket === socket && this.state === 'connecting') {
        socket.close()
        this.onFailure(this.unavailable(`connect timed out after ${limits.connectTimeoutMs} ms`))
      }
    }, limits.connectTimeoutMs)
    socket.addEventListener('open', () => {
      // A socket given up while it connected (the connection closed, or moved on): workerd refuses
      // close() on a socket that is not open yet (drop() swallows that), so it is closed now, or it
      // would stay open on the replica.
      if (this.socket !== socket) { try { socket.close() } catch { /* closing anyway */ } return }
      this.batcher = batcher
      const hello: RequestBody<'hello'> = { protocol: limits.protocolVersion, client: this.opts.client, ...(this.opts.token !== undefined ? { token: this.opts.token } : {}) }
      this.send('hello', hello, limits.connectTimeoutMs, 0, (reply: ReplyBody<'hello'>) => {
        if (this.socket !== socket) return
        this.rt.clearTimeout(this.connectTimer)
        this.state = 'open'
        this.failures = 0
        this.lastFailure = undefined
        // A hello whose ring the coordinator refuses fails the connection; thrown from here (a
        // socket event) it would be an uncaught exception and end the app.
        try {
          this.opts.onHello?.(reply)
        } catch (e) {
          this.onFailure(new KvError({ kind: 'ProtocolError', detail: 'bad ring in hello' }, `${this.node} (${shownUrl(this.url)}) sent a ring the client refuses: ${(e as Error)?.message}`, { cause: e }))
          return
        }
        this.drain()
      }, e => {
        if (this.socket !== socket) return
        socket.close()
        this.onFailure(e instanceof KvError ? e : this.unavailable('hello failed', e))
      })
    })
    socket.addEventListener('message', ev => {
      if (this.socket !== socket) return
      const data = ev.data
      const bytes = data instanceof Uint8Array ? data : new Uint8Array(data as ArrayBuffer)
      this.onFrame(bytes)
    })
    socket.addEventListener('close', () => {
      if (this.socket !== socket) return
      this.onFailure(this.unavailable('connection lost'))
    })
    socket.addEventListener('error', (ev: any) => {
      if (this.socket !== socket) return
      this.onFailure(this.unavailable(`socket error${ev?.message ? ': ' + ev.message : ''}`, ev?.error))
    })
  }

  private send(type: RequestType, body: unknown, timeoutMs: number, approxBytes: number,
    resolve: (b: any) => void, reject: (e: Error) => void, probe = false, probeAfterMs?: number, early?: (b: any) => void): void {
    const id = this.nextId++
    const entry: Pending = { type, resolve, reject, early, earlyDone: false, timer: undefined }
    const framesBefore = this.framesIn
    // With probeAfterMs, one timer does both: at probeAfterMs it probes a silent connection, then
    // waits out the rest of the timeout (one live timer per request, as without it). The callbacks
    // are anonymous on purpose: a named closure per request also costs a keep-names wrapper when
    // this runs under tsx or a keep-names bundle.
    entry.timer = probeAfterMs !== undefined && probeAfterMs < timeoutMs && probeAfterMs >= limits.timeoutResetsConnectionMsMin
      ? this.rt.setTimeout(() => {
        if (this.pending.get(id) !== entry) return
        if (this.framesIn === framesBefore) this.silent(type, probeAfterMs)
        entry.timer = this.rt.setTimeout(() => this.expire(id, type, timeoutMs, probe, framesBefore), timeoutMs - probeAfterMs)
      }, probeAfterMs)
      : this.rt.setTimeout(() => this.expire(id, type, timeoutMs, probe, framesBefore), timeoutMs)
    this.pending.set(id, entry)
    this.batcher!.push([type, id, body], approxBytes)
  }

  private expire(id: number, type: RequestType, timeoutMs: number, probe: boolean, framesBefore: number): void {
    const entry = this.pending.get(id)
    if (entry === undefined) return
    this.pending.delete(id)
    entry.reject(new KvError({ kind: 'Timeout', timeoutMs }, `${type} to ${this.node} timed out after ${timeoutMs} ms`))
    // A replica that lets a request time out may be paused or partitioned, and its connection
    // stays open: once a probe confirms it (silent()), reset it, so that the node backs off and
    // the requests after this one fail fast (and quorums skip it) instead of each waiting out its
    // own timeout. Not when it sent anything meanwhile (it is alive), nor after a wait too short
    // to mean anything (a caller's timeoutMs of 1 would otherwise take every replica down for
    // every caller).
    if (!probe && this.framesIn === framesBefore && timeoutMs >= limits.timeoutResetsConnectionMsMin) this.silent(type, timeoutMs)
  }

  /**
   * A request timed out with nothing received meanwhile: the replica may be paused, or only slow
   * (a long fsync, a CPU-starved event loop). One probe at a time asks for a sign of life; the
   * connection is reset only if the probe times out with nothing at all received since it was sent.
   */
  private silent(type: RequestType, timeoutMs: number): void {
    if (this.probing || this.state !== 'open') return
    this.probing = true
    const socket = this.socket
    const framesAt = this.framesIn
    const probeMs = limits.silenceProbeTimeoutMs
    const done = (): void => { this.probing = false }
    this.send('ring', {}, probeMs, 0, done, () => {
      done()
      if (this.socket !== socket || this.framesIn !== framesAt) return
      this.onFailure(this.unavailable(`a ${type} timed out after ${timeoutMs} ms and nothing arrived within ${probeMs} ms of a probe; connection reset`))
    }, true)
  }

  private drain(): void {
    while (this.queue.length > 0 && this.pending.size < limits.inflightPerConnectionMax && this.state === 'open') {
      const q = this.queue.shift()!
      this.rt.clearTimeout(q.timer)
      // Its deadline may have passed with its timer not yet run (both due in the same turn).
      const left = q.deadline - this.rt.now()
      if (left < 1) { q.reject(markUnsent(this.queuedTimeout(q.type, q.timeoutMs))); continue }
      this.send(q.type, q.body, left, q.approxBytes, q.resolve, q.reject, false, q.probeAfterMs, q.early)
    }
  }

  private onFrame(frame: Uint8Array): void {
    this.framesIn++
    let messages
    try {
      messages = decodeFrame(frame)
    } catch (e) {
      // A replica that sends garbage cannot be trusted with the requests in flight.
      this.socket?.close()
      this.onFailure(new KvError({ kind: 'ProtocolError', detail: (e as FrameError).message }, `bad frame from ${this.node}: ${(e as Error).message}`, { cause: e }))
      return
    }
    for (const m of messages) {
      if ('bad' in m) continue
      const [type, id, body, rv] = m
      if (rv !== undefined) this.opts.onRingVersion?.(rv, this.node)
      const p = this.pending.get(id)
      if (!p) continue
      // An early reply: handed over once, and the request waits on for its final one (a repeat is
      // ignored). One to a request that did not ask for it, or a malformed one, fails the request.
      // A final reply that overtakes it settles the request, and the early one then finds nothing.
      if (type === p.type && isEarly(body)) {
        if (p.earlyDone) continue
        const parsed = p.early === undefined ? undefined : parseReply(p.type, body)
        if (parsed?.success) {
          p.earlyDone = true
          p.early!(parsed.data)
          continue
        }
        this.pending.delete(id)
        this.rt.clearTimeout(p.timer)
        p.reject(parsed === undefined
          ? new KvError({ kind: 'ProtocolError', detail: 'unexpected early reply' }, `${this.node} answered ${type} early, which this request did not ask for`)
          : new KvError({ kind: 'ProtocolError', detail: parsed.error!.message }, `${this.node} sent a malformed early ${type} reply`))
        continue
      }
      this.pending.delete(id)
      this.rt.clearTimeout(p.timer)
      if (type === 'error') {
        p.reject(errorFromWire(body, this.node))
        continue
      }
      if (type !== p.type) {
        p.reject(new KvError({ kind: 'ProtocolError', detail: 'reply type mismatch' }, `${this.node} answered ${p.type} with ${type}`))
        continue
      }
      const parsed = parseReply(p.type, body)
      if (parsed.success) p.resolve(parsed.data)
      else p.reject(new KvError({ kind: 'ProtocolError', detail: parsed.error.message }, `${this.node} sent a malformed ${type} reply`))
    }
    if (this.queue.length > 0) this.drain()
  }

  private onFailure(e: KvError): void {
    if (this.state === 'closed') return
    this.rt.clearTimeout(this.connectTimer)
    this.failures++
    this.lastFailure = e
    const delay = backoffDelayMs(reconnectBackoff, this.failures, this.rt.random)
    this.state = 'backoff'
    this.drop(e)
    // Reconnect in the background once the backoff has passed; until its hello completes the
    // replica stays down for quorum purposes (isUp).
    this.rt.clearTimeout(this.retryTimer)
    this.retryTimer = this.rt.setTimeout(() => {
      if (this.state !== 'backoff') return
      this.state = 'idle'
      this.open()
    }, delay, { background: true })
  }

  private drop(e: Error): void {
    const socket = this.socket
    this.socket = undefined
    this.batcher = undefined
    if (socket && socket.readyState <= 1) { try { socket.close() } catch { /* already closing */ } }
    for (const [, p] of this.pending) { this.rt.clearTimeout(p.timer); p.reject(e) }
    this.pending.clear()
    for (const q of this.queue.splice(0)) {
      this.rt.clearTimeout(q.timer)
      q.reject(markUnsent(e instanceof KvError ? new KvError(e.data, e.message, { cause: e }) : new KvError({ kind: 'Unavailable', node: this.node }, e.message, { cause: e })))
    }
    if (this.state === 'open' || this.state === 'connecting') this.state = 'idle'
  }
}

/** A reply body marked `early: true` (a put's first answer: its stamped state, not yet durable). */
function isEarly(body: unknown): boolean {
  return typeof body === 'object' && body !== null && (body as { early?: unknown }).early === true
}

/** A URL as messages show it: a password in it (ws://user:pw@host) is not repeated in logs. */
export function shownUrl(url: string): string {
  return url.replace(/^([a-z]+:\/\/[^/@:]*):[^/@]*@/i, '$1:***@')
}

/**
 * Turns an `error` body from the wire into the KvError it stands for, with every field of its data
 * as the sender gave it (the wire schema, derived from errorTable, checked each one). `prefix` goes
 * in front of the message (by default the replica's node id, so an app can tell who said it).
 */
export function errorFromWire(body: unknown, node: string, prefix = `${node}: `): KvError {
  const parsed = errorSchema.safeParse(body)
  if (parsed.success) return kvErrorFromBody(parsed.data, prefix)
  // What it said, if anything (the KvError constructor cuts the message to its bound).
  const said = typeof (body as { message?: unknown } | null)?.message === 'string' ? `: ${(body as { message: string }).message}` : ''
  const detail = describeIssues(parsed.error).join('; ')
  return new KvError({ kind: 'ProtocolError', detail }, `${node} sent a malformed error reply (${detail})${said}`)
}

/** Rebuilds a KvError (a QuorumError for QuorumNotMet, with its failures) from a checked body. */
export function kvErrorFromBody(b: KvErrorBody, prefix = ''): KvError {
  const { message, ...rest } = b
  const data = rest as KvErrorData
  if (data.kind === 'QuorumNotMet') {
    const failures = new Map<string, Error>()
    for (const [node, f] of Object.entries(data.failures)) failures.set(node, errorFromWire(f, node, ''))
    return new QuorumError(data, prefix + message, failures)
  }
  return new KvError(data, prefix + message)
}

// The simulated network: WebSocket-like sockets (coordinator/runtime.ts SocketLike) between named
// endpoints (clients c1.., replicas n1..), carrying the real frames the real Connection and the real
// ReplicaService exchange. A replica is an endpoint both ways: its gossip, hint replays and
// anti-entropy open connections to other replicas through its own connector, so every fault that
// cuts or clogs a link applies to replica-replica links as to client-replica ones. A link delays
// each frame (seeded), keeps a connection's frames in order except for an occasional reordering,
// duplicates a reply now and then (the client must ignore a reply to a request it no longer waits
// for), and resets a connection on a lost frame, since TCP turns loss into either a retransmission
// (delay) or a broken connection. Requests are never duplicated: TCP does not, and a stamp is not
// idempotent by design (a retried put is a new write).
// Partitions drop frames per direction, silently, as an nft drop rule does: the sender finds out by
// its timeouts, and a connection that lost frames is reset when the partition heals. A clogged link
// delays instead of dropping. A paused replica (SIGSTOP) accepts nothing and answers nothing until
// it resumes, neither as a server nor as the client of its own outbound connections; a crashed one
// resets every connection it had, inbound and outbound.

import { decodeFrame, type Message } from '../../coordinator/protocol/codec.ts'
import { FrameBatcher } from '../../coordinator/protocol/frame-batcher.ts'
import type { SocketLike, SocketFactory } from '../../coordinator/runtime.ts'
import { newGrant, type ReplicaService } from '../../replica/replica-service.ts'
import { faultLimits } from '../fault-limits.ts'
import type { SimClock } from './sim-clock.ts'

/** What the network needs of a replica process. */
export interface SimHost {
  readonly id: string
  /** The live service, or undefined while the process is down. */
  service(): ReplicaService | undefined
  paused(): boolean
  /** Bumped at each crash: a connection accepted by an older process is dead. */
  generation(): number
}

type Listener = (ev: any) => void
const CONNECTING = 0, OPEN = 1, CLOSED = 3

class SimSocket implements SocketLike {
  binaryType = 'arraybuffer'
  readyState = CONNECTING
  private readonly listeners: Record<string, Listener[]> = { open: [], close: [], error: [], message: [] }
  constructor(private readonly conn: SimConn) {}
  send(data: Uint8Array): void { if (this.readyState === OPEN) this.conn.toServer(data) }
  close(): void { this.conn.close('client closed') }
  addEventListener(type: 'open' | 'close' | 'error' | 'message', listener: Listener): void { this.listeners[type]!.push(listener) }
  emit(type: string, ev: unknown): void { for (const l of this.listeners[type] ?? []) l(ev) }
}

/** One connection: a client endpoint's socket and the replica's side of it. */
class SimConn {
  readonly socket: SimSocket
  closed = false
  /** Frames were dropped by a partition: the connection is reset when it heals. */
  broken = false
  hostGeneration = -1
  private readonly lastAt = { up: 0, down: 0 }
  private batcher: FrameBatcher | undefined
  /** This connection's standing (its hello fills it in), as ws-data-plane.ts keeps one per socket. */
  private readonly grant = newGrant()
  /** Frames received while the replica was paused, processed when it resumes. */
  readonly inbox: Uint8Array[] = []
  /** Replies to a paused replica's own outbound connection, read when it resumes. */
  readonly replies: Uint8Array[] = []
  /** The process that opened this connection when it is a replica (undefined for a client), and its generation then. */
  private readonly fromHost: SimHost | undefined
  private readonly fromGeneration: number

  constructor(private readonly net: SimNetwork, readonly from: string, readonly host: SimHost) {
    this.socket = new SimSocket(this)
    this.fromHost = net.host(from)
    this.fromGeneration = this.fromHost?.generation() ?? -1
  }

  accepted(): void {
    this.hostGeneration = this.host.generation()
    this.batcher = new FrameBatcher(frame => this.toClient(frame), fn => { this.net.clock.at(0, fn) })
    this.socket.readyState = OPEN
    this.socket.emit('open', {})
  }

  toServer(frame: Uint8Array): void { this.net.carry(this, this.from, this.host.id, frame, 'up', false) }
  private toClient(frame: Uint8Array): void { this.net.carry(this, this.host.id, this.from, frame, 'down', true) }

  /** The delivery time of the next frame in direction `dir`: in order, unless this one is reordered. */
  deliveryAt(dir: 'up' | 'down', delay: number, reorder: boolean): number {
    const at = this.net.clock.now + delay
    if (reorder) return at
    this.lastAt[dir] = Math.max(at, this.lastAt[dir])
    return this.lastAt[dir]
  }

  /** A frame reaches the replica process. */
  serverReceive(frame: Uint8Array): void {
    if (this.closed) return
    if (this.host.generation() !== this.hostGeneration || this.host.service() === undefined) return
    if (this.host.paused()) { this.inbox.push(frame); return }
    this.process(frame)
  }

  process(frame: Uint8Array): void {
    const service = this.host.service()
    const batcher = this.batcher
    if (!service || !batcher) return
    const reply = (m: Message, bytes?: number) => {
      if (this.closed || this.host.generation() !== this.hostGeneration) return
      batcher.push(m, bytes ?? 0)
    }
    let messages
    try { messages = decodeFrame(frame) } catch { this.close('bad frame'); return }
    for (const m of messages) {
      if ('bad' in m) service.bad(m.id, m.bad, reply)
      else service.handle(m[0], m[1], m[2], reply, this.grant)
    }
  }

  clientReceive(frame: Uint8Array): void {
    if (this.closed) return
    if (this.fromHost !== undefined) {
      if (this.fromHost.generation() !== this.fromGeneration) return
      if (this.fromHost.paused()) { this.replies.push(frame); return }
    }
    this.socket.emit('message', { data: frame })
  }

  close(why: string): void {
    if (this.closed) return
    this.closed = true
    this.net.forget(this)
    this.net.clock.trace(`close ${this.from}>${this.host.id}: ${why}`)
    const wasOpen = this.socket.readyState === OPEN
    this.socket.readyState = CLOSED
    this.net.clock.at(this.net.clock.int(faultLimits.simDelayMsMin, faultLimits.simDelayMsMax), () => {
      if (!wasOpen) this.socket.emit('error', { message: why })
      this.socket.emit('close', { code: 1006, reason: why })
    })
  }
}

export class SimNetwork {
  private readonly hosts = new Map<string, SimHost>()
  private readonly byUrl = new Map<string, string>()
  private readonly conns = new Set<SimConn>()
  /** Directed links that drop every frame (`${from}>${to}`), with how many partitions cut each. */
  private readonly blocked = new Map<string, number>()
  /** Directed links that delay every frame by up to simClogMsMax. */
  private readonly clogged = new Set<string>()
  /** Frames delivered, for the report. */
  frames = 0

  /** lossPermille 0: a network that never resets a connection (a fault-free control run). */
  constructor(readonly clock: SimClock, private readonly lossPermille: number = faultLimits.simLossPermille) {}

  /** The replica process named `id`, if it is one. */
  host(id: string): SimHost | undefined { return this.hosts.get(id) }

  addHost(host: SimHost, url: string): void {
    this.hosts.set(host.id, host)
    this.byUrl.set(url, host.id)
  }

  /** The SocketFactory of a Runtime for the endpoint `from`. */
  connector(from: string): SocketFactory {
    return url => {
      const id = this.byUrl.get(url)
      const host = id === undefined ? undefined : this.hosts.get(id)
      if (!host) throw new Error(`no simulated replica at ${url}`)
      const conn = new SimConn(this, from, host)
      this.conns.add(conn)
      this.clock.at(this.delay(from, host.id), () => this.tryAccept(conn))
      return conn.socket
    }
  }

  private tryAccept(conn: SimConn): void {
    if (conn.closed) return
    // A dropped SYN or SYN-ACK: the connect hangs until the client's own connect timeout.
    if (this.isBlocked(conn.from, conn.host.id) || this.isBlocked(conn.host.id, conn.from)) { conn.broken = true; return }
    if (conn.host.service() === undefined) { conn.close('connection refused'); return }
    // The kernel accepts for a paused process, but the WebSocket upgrade waits for it.
    if (conn.host.paused()) { this.clock.at(faultLimits.simDelayMsMax, () => this.tryAccept(conn)); return }
    this.clock.trace(`open ${conn.from}>${conn.host.id}`)
    conn.accepted()
  }

  carry(conn: SimConn, from: string, to: string, frame: Uint8Array, dir: 'up' | 'down', reply: boolean): void {
    if (conn.closed) return
    if (this.isBlocked(from, to)) { conn.broken = true; return }
    if (this.clock.chance(this.lossPermille)) { conn.close('frame lost: connection reset'); return }
    const copy = Uint8Array.from(frame)
    const at = conn.deliveryAt(dir, this.delay(from, to), this.clock.chance(faultLimits.simReorderPermille))
    const deliver = () => {
      if (conn.closed) return
      this.frames++
      this.clock.trace(`${from}>${to} ${copy.byteLength}B`)
      if (reply) conn.clientReceive(copy)
      else conn.serverReceive(copy)
    }
    this.clock.at(at - this.clock.now, deliver)
    if (reply && this.clock.chance(faultLimits.simDuplicatePermille)) this.clock.at(at - this.clock.now + this.clock.int(0, faultLimits.simDelayMsMax), deliver)
  }

  private delay(from: string, to: string): number {
    const base = this.clock.int(faultLimits.simDelayMsMin, faultLimits.simDelayMsMax)
    return this.clogged.has(`${from}>${to}`) ? base + this.clock.int(0, faultLimits.simClogMsMax) : base
  }

  isBlocked(from: string, to: string): boolean { return this.blocked.has(`${from}>${to}`) }
  block(from: string, to: string): void { const k = `${from}>${to}`; this.blocked.set(k, (this.blocked.get(k) ?? 0) + 1) }
  unblock(from: string, to: string): void {
    const k = `${from}>${to}`
    const n = (this.blocked.get(k) ?? 0) - 1
    if (n > 0) this.blocked.set(k, n); else this.blocked.delete(k)
  }
  clog(from: string, to: string): void { this.clogged.add(`${from}>${to}`) }
  unclog(from: string, to: string): void { this.clogged.delete(`${from}>${to}`) }

  /**
   * Connections that lost frames to a partition and whose links are whole again are reset, as TCP's
   * would be (its retransmissions gave up); `all` lifts every partition first.
   */
  heal(all = false): void {
    if (all) this.blocked.clear()
    for (const c of [...this.conns]) {
      if (c.broken && !this.isBlocked(c.from, c.host.id) && !this.isBlocked(c.host.id, c.from)) c.close('reset after the partition healed')
    }
  }

  /** The replica `id` crashed: its connections are reset, those it accepted and those it opened. */
  crashed(id: string): void {
    for (const c of [...this.conns]) if (c.host.id === id || c.from === id) c.close(`${id} crashed`)
  }

  /** The replica `id` resumed: it reads what its connections delivered meanwhile. */
  resumed(id: string): void {
    for (const c of [...this.conns]) {
      if (c.host.id === id) for (const f of c.inbox.splice(0)) c.process(f)
      if (c.from === id) for (const f of c.replies.splice(0)) c.clientReceive(f)
    }
  }

  forget(c: SimConn): void { this.conns.delete(c) }
}

// What the coordinator needs from the world, passed in so the same logic runs in Node, browsers,
// Workers and a deterministic simulator (docs/architecture.md: nothing in coordinator/ reaches for timers,
// clocks, randomness or sockets directly). `systemRuntime` is the one adapter over the host's own
// globals; a simulator supplies its own Runtime.

export interface SocketLike {
  binaryType: string
  readonly readyState: number
  send(data: Uint8Array): void
  close(code?: number, reason?: string): void
  addEventListener(type: 'open' | 'close' | 'error' | 'message', listener: (ev: any) => void): void
}

export type SocketFactory = (url: string) => SocketLike

export interface Runtime {
  now(): number
  /** `background`: the timer alone must not keep the process alive (reconnects, sweeps). */
  setTimeout(fn: () => void, ms: number, opts?: { background?: boolean }): unknown
  clearTimeout(handle: unknown): void
  /** Run `fn` on the next turn of the event loop (frames coalesce until then). */
  tick(fn: () => void): void
  random(): number
  connect: SocketFactory
  /**
   * A monotonic clock in fractional milliseconds for latency statistics (kv.stats()); `now` is used
   * when absent. Never used for deadlines.
   */
  hrNow?(): number
}

/** A WebSocket constructor: the global one where present, `ws` injected on Node 20. */
export type WebSocketCtor = new (url: string) => SocketLike

export function systemRuntime(WebSocketImpl: WebSocketCtor): Runtime {
  const g = globalThis as unknown as {
    performance?: { now(): number }
    setImmediate?: (fn: () => void) => unknown
    setTimeout: (fn: () => void, ms: number) => unknown
    clearTimeout: (h: unknown) => void
  }
  const tick = g.setImmediate ? (fn: () => void) => { g.setImmediate!(fn) } : (fn: () => void) => { g.setTimeout(fn, 0) }
  return {
    now: () => Date.now(),
    setTimeout: (fn, ms, opts) => {
      const handle = g.setTimeout(fn, ms) as { unref?: () => void }
      if (opts?.background) handle.unref?.()
      return handle
    },
    clearTimeout: h => g.clearTimeout(h),
    tick,
    random: () => Math.random(),
    connect: url => new WebSocketImpl(url),
    ...(g.performance ? { hrNow: () => g.performance!.now() } : {}),
  }
}

/**
 * The `ws` package's client, tuned for Node: no per-message deflate, frames up to the protocol
 * limit, and an all-zero mask, which `ws` treats as "skip masking" (no XOR pass over every payload,
 * no copy). Masking protects browsers' traffic from cache-poisoning intermediaries (RFC 6455
 * section 10.3); a Node process talking to its own replicas has no such attacker in the path.
 * The class is passed in so that coordinator/ imports nothing Node-specific.
 */
export function nodeWebSocket(Ws: new (url: string, options: object) => SocketLike, frameBytesMax: number, tls?: { readonly ca?: string | Uint8Array | undefined }): WebSocketCtor {
  // `ca`: the certificate authority wss:// replicas are checked against (a self-signed one), on top of nothing: given, it replaces the system's.
  const options = { perMessageDeflate: false, maxPayload: frameBytesMax, generateMask: () => { /* keep the zero mask */ }, ...(tls?.ca !== undefined ? { ca: tls.ca } : {}) }
  return class extends (Ws as new (url: string, options: object) => SocketLike) {
    constructor(url: string) {
      super(url, options)
      // Frames arrive as the Buffer ws already has; 'arraybuffer' would copy every one.
      this.binaryType = 'nodebuffer'
    }
  } as unknown as WebSocketCtor
}

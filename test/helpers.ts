// Shared test helpers: a real cluster in a temp dir, and a raw protocol connection to one replica
// (for reading what a single replica holds, and for sending it bad input).

import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import WebSocket from 'ws'
import { Packr, Unpackr } from 'msgpackr'
import { startCluster, type Cluster, type ClusterOptions } from '../infra/cluster.ts'
import { Connection } from '../coordinator/transport/connection.ts'
import { systemRuntime, type WebSocketCtor } from '../coordinator/runtime.ts'
import { limits } from '../coordinator/limits.ts'
import { createClient, type KvClient } from '../client/index.ts'

export async function testCluster(basePort: number, opts: Partial<ClusterOptions> = {}): Promise<Cluster & { dir: string; cleanup(): Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'ringkv-test-'))
  const cluster = await startCluster({ dataDir: dir, basePort, httpPort: 0, partitions: 64, ...opts })
  return Object.assign(cluster, {
    dir,
    async cleanup() {
      await cluster.stop()
      await rm(dir, { recursive: true, force: true })
    },
  })
}

/** A protocol connection to exactly one replica, bypassing quorum. */
export function rawConnection(url: string, node = 'raw'): Connection {
  return new Connection(node, url, systemRuntime(WebSocket as unknown as WebSocketCtor), { client: 'test' })
}

export const enc = new TextEncoder()
export const dec = new TextDecoder()

export interface BareSocket {
  send(frame: Uint8Array | string): void
  next(): Promise<unknown[]>
  close(): void
  /** Resolves with the close code and reason once the socket has closed (either side). */
  readonly closed: Promise<{ code: number; reason: string }>
  readonly ws: WebSocket
}

/**
 * A raw WebSocket speaking msgpack frames. `next()` resolves with the next message, and rejects when
 * the socket closes first (a replica that crashed on the input) or after `timeoutMs`, so a test
 * fails instead of hanging. A replica answers nothing but a `hello` until one has succeeded, so by
 * default the socket says hello first and consumes the reply (`hello: false` to send frames from
 * the very start).
 */
export async function bareSocket(url: string, opts: { timeoutMs?: number; hello?: boolean } = {}): Promise<BareSocket> {
  const timeoutMs = opts.timeoutMs ?? 10_000
  const ws = new WebSocket(url)
  const inbox: unknown[][] = []
  const waiters: Array<{ ok: (m: unknown[]) => void; fail: (e: Error) => void }> = []
  let closedFlag = false
  const unpackr = new Unpackr({ useRecords: false })
  ws.on('message', (data: Buffer) => {
    for (const m of unpackr.unpack(data) as unknown[][]) {
      const w = waiters.shift()
      if (w) w.ok(m); else inbox.push(m)
    }
  })
  const closed = new Promise<{ code: number; reason: string }>(ok => ws.on('close', (code: number, reason: Buffer) => {
    closedFlag = true
    for (const w of waiters.splice(0)) w.fail(new Error(`${url} closed the connection before replying`))
    ok({ code, reason: reason.toString() })
  }))
  await new Promise<void>((ok, fail) => { ws.once('open', () => ok()); ws.once('error', fail) })
  const s: BareSocket = {
    send: frame => ws.send(frame),
    next: () => new Promise((ok, fail) => {
      const m = inbox.shift()
      if (m) return ok(m)
      if (closedFlag) return fail(new Error(`${url} closed the connection before replying`))
      const waiter = { ok: (v: unknown[]) => { clearTimeout(timer); ok(v) }, fail: (e: Error) => { clearTimeout(timer); fail(e) } }
      // A waiter that timed out leaves the queue, so a late message is not handed to it and lost.
      const timer = setTimeout(() => { waiters.splice(waiters.indexOf(waiter), 1); fail(new Error(`no reply from ${url} within ${timeoutMs} ms`)) }, timeoutMs)
      waiters.push(waiter)
    }),
    close: () => ws.close(),
    closed,
    ws,
  }
  if (opts.hello ?? true) {
    s.send(packr.pack([['hello', 0, { protocol: limits.protocolVersion, client: 'bare-socket' }]]))
    const [type, , body] = await s.next() as [string, number, any]
    if (type !== 'hello') throw new Error(`hello refused by ${url}: ${JSON.stringify(body)}`)
  }
  return s
}

export const packr = new Packr({ useRecords: false })

export async function eventually<T>(fn: () => Promise<T>, what: string, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs
  let last: unknown
  while (Date.now() < deadline) {
    try { return await fn() } catch (e) { last = e }
    await new Promise(r => setTimeout(r, 100))
  }
  throw new Error(`${what}: not true after ${timeoutMs} ms: ${(last as Error)?.message}`, { cause: last })
}

/** Writes keys `prefix:i` one after another until `stop()`, recording each acknowledged one in `acked`. */
export function writeLoad(kv: KvClient, prefix: string, acked: Map<string, string>): { stop(): Promise<{ ok: number; failed: number }> } {
  let running = true
  let ok = 0
  let failed = 0
  const done = (async () => {
    for (let i = 0; running && i < 100_000; i++) {
      const key = `${prefix}:${i}`
      const value = `v${i}`
      try {
        await kv.put(key, value)
        acked.set(key, value)
        ok++
      } catch {
        failed++
        // Pause, as an app would: a put that fails fast (the SDK backing off from replicas it found
        // unreachable) would otherwise make this loop spin on microtasks and starve the event loop,
        // so the backoff never expires and no later put succeeds. Without the pause, one early
        // failure (all three seeds' connects timed out once) left the join test with no
        // acknowledged write in 180 s, deterministically in CI and here.
        await new Promise(r => setTimeout(r, 20))
      }
    }
  })()
  return { async stop() { running = false; await done; return { ok, failed } } }
}

/** Asserts that every write in `acked` reads back (at `r`, else the client's default) through `seeds`. */
export async function checkAllAcked(seeds: string[], acked: ReadonlyMap<string, string>, r?: number): Promise<void> {
  // Every read asks every replica (readFanout 'all'), so the pass also read-repairs each of them:
  // tests that count copies afterwards (membership's removal) start from N copies of every key.
  const kv = createClient({ seeds, timeoutMs: 10_000, readFanout: 'all' })
  try {
    const missing: string[] = []
    for (const [key, value] of acked) {
      const got = await kv.getString(key, r !== undefined ? { r } : {})
      if (!got.values.includes(value)) missing.push(key)
    }
    assert.deepEqual(missing.slice(0, 10), [], `${missing.length} of ${acked.size} acknowledged writes not readable${r !== undefined ? ` at R=${r}` : ''}`)
  } finally {
    await kv.close()
  }
}

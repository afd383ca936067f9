// Shared test helpers: a real cluster in a temp dir, and a raw protocol connection to one replica
// (for reading what a single replica holds, and for sending it bad input).

import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import WebSocket from 'ws'
import { Packr, Unpackr } from 'msgpackr'
import { startCluster, type Cluster, type ClusterOptions } from '../infra/cluster.ts'
import { Connection } from '../coordinator/transport/connection.ts'
import { systemRuntime, type WebSocketCtor } from '../coordinator/runtime.ts'

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

/** A bare ws socket that sends hand-made frames and collects decoded replies. */
export async function bareSocket(url: string): Promise<{ send(frame: Uint8Array | string): void; next(): Promise<unknown[]>; close(): void }> {
  const ws = new WebSocket(url)
  const inbox: unknown[][] = []
  const waiters: Array<(m: unknown[]) => void> = []
  const unpackr = new Unpackr({ useRecords: false })
  ws.on('message', (data: Buffer) => {
    for (const m of unpackr.unpack(data) as unknown[][]) {
      const w = waiters.shift()
      if (w) w(m); else inbox.push(m)
    }
  })
  await new Promise<void>((ok, fail) => { ws.once('open', () => ok()); ws.once('error', fail) })
  return {
    send: frame => ws.send(frame),
    next: () => new Promise(ok => { const m = inbox.shift(); if (m) ok(m); else waiters.push(ok) }),
    close: () => ws.close(),
  }
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

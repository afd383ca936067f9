// Connections to every replica of the ring, `perReplica` each (requests round-robin over them).
// The pool follows the ring's node list: new nodes get connections, moved nodes reconnect, removed
// nodes are closed. `isUp` is the transport's view of liveness that quorum uses to pick targets.

import { assert } from '../assert.ts'
import { KvError } from '../errors.ts'
import { limits } from '../limits.ts'
import type { RingNode } from '../ring/ring.ts'
import type { Runtime } from '../runtime.ts'
import { Connection, type ConnectionOptions } from './connection.ts'

export class ConnectionPool {
  private readonly conns = new Map<string, Connection[]>()
  private turn = 0

  constructor(
    private readonly rt: Runtime,
    private readonly opts: ConnectionOptions & { readonly perReplica: number },
  ) {
    assert(opts.perReplica >= 1 && opts.perReplica <= limits.connectionsPerReplicaMax,
      `connections per replica must be 1..${limits.connectionsPerReplicaMax}, got ${opts.perReplica}`)
  }

  setNodes(nodes: readonly RingNode[]): void {
    const ids = new Set(nodes.map(n => n.id))
    for (const [id, list] of this.conns) {
      if (!ids.has(id)) { for (const c of list) c.close(); this.conns.delete(id) }
    }
    for (const node of nodes) {
      const list = this.conns.get(node.id)
      if (list) { for (const c of list) c.setUrl(node.url); continue }
      this.conns.set(node.id, Array.from({ length: this.opts.perReplica }, () => new Connection(node.id, node.url, this.rt, this.opts)))
    }
  }

  get(node: string): Connection | undefined {
    const list = this.conns.get(node)
    if (!list) return undefined
    return list.length === 1 ? list[0] : list[(this.turn++) % list.length]
  }

  /**
   * A connection to `node` for a pool that follows a live ring: a node the pool has no connection
   * for yet (it joined since the last call) is learned from `nodes()` first. Throws why the node has
   * no connection when the ring does not name it either.
   */
  connectionTo(node: string, nodes: () => readonly RingNode[]): Connection {
    if (this.conns.get(node) === undefined) this.setNodes(nodes())
    const conn = this.get(node)
    if (conn === undefined) throw this.whyDown(node)
    return conn
  }

  isUp = (node: string): boolean => {
    const list = this.conns.get(node)
    return list !== undefined && list.some(c => c.isUp())
  }

  /** Requests outstanding to `node` over all its connections (reads ask the least loaded first). */
  load = (node: string): number => {
    const list = this.conns.get(node)
    if (list === undefined) return 0
    let n = 0
    for (const c of list) n += c.load
    return n
  }

  /**
   * Asks `node` for a sign of life now (a `ring` request on its first connection, ending any
   * backoff first). Resolves when it answers; rejects with why not.
   */
  async probe(node: string, timeoutMs: number): Promise<void> {
    const conn = this.conns.get(node)?.[0]
    if (conn === undefined) throw this.whyDown(node)
    conn.retryNow()
    await conn.request('ring', {}, timeoutMs)
  }

  /** Why isUp(node) is false, for the failure maps of quorum errors. */
  whyDown = (node: string): Error => {
    const list = this.conns.get(node)
    if (list === undefined || list.length === 0) return new KvError({ kind: 'Unavailable', node }, `${node} has no connection (not in the ring, or the client is closed)`)
    return list[0]!.whyDown()
  }

  close(): void {
    for (const list of this.conns.values()) for (const c of list) c.close()
    this.conns.clear()
  }
}

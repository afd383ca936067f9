// Partition handoff (docs/handoff.md): moves every key of one ring partition, with its full DVV
// state, from this replica to another one, as Dynamo section 4.9 and riak_core's handoff_sender do
// when a node joins or leaves. The membership state machine decides *what* moves (which partition,
// to which node) and calls transfer(); this module does the moving: it scans the engine, sends
// checksummed `handoff` batches over an outbound data-plane connection, waits for each durable ack,
// persists how far it got (so a crash of either side resumes rather than restarts), and forwards
// writes stored meanwhile for that partition to the new owner until membership says the switch is
// done (stopForwarding).
//
// This file is the API the membership code builds against; the bodies follow in later commits.

import type { KvError } from '../../coordinator/errors.ts'
import type { Runtime } from '../../coordinator/runtime.ts'
import type { Engine, Log } from '../storage/engine-types.ts'

export interface TransferRequest {
  readonly partition: number
  /** The receiving node's id (its ring id). */
  readonly to: string
  /** Its data-plane WebSocket URL (ws://host:port). */
  readonly toUrl: string
}

export interface TransferStatus {
  readonly partition: number
  readonly to: string
  readonly state: 'queued' | 'streaming' | 'done' | 'failed'
  readonly keysSent: number
  readonly bytesSent: number
  readonly startedAt?: number
  readonly error?: string
}

export interface HandoffManagerOptions {
  /** This replica's node id: the receiver logs who streamed to it. */
  readonly nodeId: string
  readonly engine: Engine
  /** Q: the ring's partition count (a power of two; coordinator/ring/partition-hash.ts). */
  readonly partitions: number
  /** The replica's data directory; progress files go here (names in storage/disk-layout.ts). */
  readonly dataDir: string
  /** Clock, timers and the outbound WebSocket factory. */
  readonly runtime: Runtime
  readonly log: Log
  /** Client name said in `hello` on outbound connections; default `handoff:${nodeId}`. */
  readonly client?: string
  /** Token said in `hello`, if the receiver wants one. */
  readonly token?: string
  /** Bytes per second the sender may stream, over all transfers; default limits.handoffBytesPerSec. */
  readonly bytesPerSec?: number
  /** false only in tests/benchmarks that measure fsync's cost: progress files are not fsynced. */
  readonly fsync?: boolean
}

export class HandoffManager {
  constructor(readonly opts: HandoffManagerOptions) {}

  /**
   * Streams every key of `partition` held here to node `to`; resolves once `to` has durably
   * stored the last batch. Same request again joins the one in flight; resumes after a crash
   * from persisted progress. While a transfer runs, and until stopForwarding(partition, to),
   * writes stored here for that partition are also forwarded to `to`. Rejects with a KvError
   * when the transfer fails (the status then says `failed`; calling again resumes).
   */
  transfer(req: TransferRequest): Promise<void> {
    void req
    return Promise.reject(new Error('not implemented yet') as Error | KvError)
  }

  /** Ends forwarding of writes for `partition` to `to` (membership has switched ownership). */
  stopForwarding(partition: number, to: string): void {
    void partition; void to
    throw new Error('not implemented yet')
  }

  /** Every transfer this process knows of (in flight, queued, and finished since start). */
  status(): TransferStatus[] {
    return []
  }

  /** Stops every transfer (each keeps its persisted progress) and closes outbound connections. */
  async close(): Promise<void> {}
}

// Every bound in ringkv lives here (TigerBeetle's constants.zig): queue lengths, buffer sizes,
// batch sizes, retry counts, timeouts. Relations between them are asserted when this module loads,
// so a bad edit fails at start-up rather than under load. Runtime config may lower a limit, never
// raise it past the hard maximum named here.

import { assert } from './assert.ts'

export const limits = {
  // Data model (DESIGN.md "Data model and API").
  keyBytesMax: 512,
  valueBytesDefault: 1024 * 1024,
  valueBytesMax: 8 * 1024 * 1024,
  /** Most live siblings one key may hold; a write that would exceed it is refused (BadRequest). */
  siblingsMax: 64,
  /** Most actors in one version vector (replicas x incarnations ever seen by a key). */
  vectorActorsMax: 1024,
  /** Serialized causal context, as text: it must fit a header or a cookie. */
  contextBytesMax: 4096,

  // Ring.
  partitionsDefault: 256,
  partitionsMax: 1 << 16,
  nDefault: 3,
  nMax: 16,

  // Wire protocol.
  protocolVersion: 1,
  /** Largest frame a peer may send; larger frames are refused and the connection closed. */
  frameBytesMax: 16 * 1024 * 1024 + 64 * 1024,
  /** Messages coalesced into one frame by the sender within one tick. */
  frameMessagesMax: 256,
  /** Bytes coalesced into one frame before it is sent early. */
  frameBatchBytesMax: 1024 * 1024,

  // Transport (client side).
  requestTimeoutMsDefault: 2000,
  connectTimeoutMs: 2000,
  /** Requests awaiting replies on one connection; more wait in a bounded queue. */
  inflightPerConnectionMax: 4096,
  /** Requests waiting for a free in-flight slot before callers get Overloaded. */
  pendingPerConnectionMax: 16384,
  reconnectBackoffMsMin: 50,
  reconnectBackoffMsMax: 2000,
  connectionsPerReplicaDefault: 1,
  connectionsPerReplicaMax: 16,

  // Replica.
  /** Records one WAL fsync may cover (group commit). */
  walGroupRecordsMax: 4096,
  /** Bytes one WAL fsync may cover. */
  walGroupBytesMax: 8 * 1024 * 1024,
  /** Longest a record waits for its group to fill before it is synced anyway. */
  walGroupWaitMs: 1,
  /** Writes accepted but not yet durable on one replica; more are refused with Overloaded. */
  replicaPendingWritesMax: 65536,

  // Quorum coordination.
  /**
   * Longest a stamp may take before the write moves to the next preference node (at most a third of
   * the request's timeout): a paused replica keeps its connection open and fails nothing fast.
   */
  stampTimeoutMsMax: 500,
  /** Times update() re-reads and retries after a concurrent change. */
  updateRetriesMax: 8,
  readRepairsInflightMax: 1024,

  // HTTP gateway.
  httpBodyBytesMax: 8 * 1024 * 1024 + 1024,
} as const

assert(limits.valueBytesDefault <= limits.valueBytesMax, 'default value size above the hard max')
assert(limits.frameBytesMax > limits.valueBytesMax + limits.keyBytesMax + limits.contextBytesMax,
  'a frame must hold the largest value with its key and context')
assert(limits.frameBatchBytesMax <= limits.frameBytesMax, 'batch bytes above frame bytes')
assert(limits.httpBodyBytesMax >= limits.valueBytesMax, 'HTTP body limit below the value limit')
assert((limits.partitionsDefault & (limits.partitionsDefault - 1)) === 0, 'partitions must be a power of two')
assert(limits.nDefault <= limits.nMax, 'default N above max N')
assert(limits.reconnectBackoffMsMin <= limits.reconnectBackoffMsMax, 'backoff min above max')
assert(limits.inflightPerConnectionMax <= limits.pendingPerConnectionMax, 'in-flight above pending bound')
assert(limits.readRepairsInflightMax > 0, 'read repair bound must be positive')
assert(limits.stampTimeoutMsMax * 3 <= limits.requestTimeoutMsDefault, 'a stamp timeout must leave time to stamp elsewhere')
assert(limits.walGroupRecordsMax >= limits.frameMessagesMax, 'a WAL group must cover one full frame of writes')

export type Limits = typeof limits

// Every bound in ringkv lives here (TigerBeetle's constants.zig): queue lengths, buffer sizes,
// batch sizes, retry counts, timeouts. Relations between them are asserted when this module loads,
// so a bad edit fails at start-up rather than under load. Runtime config may lower a limit, never
// raise it past the hard maximum named here.

import { assert } from './assert.ts'

export const limits = {
  // Data model (README.md "API"; docs/limits.md).
  keyBytesMax: 512,
  valueBytesDefault: 1024 * 1024,
  valueBytesMax: 8 * 1024 * 1024,
  /**
   * Most siblings one key may hold; a write (stamp, replicate, repair, any merge a replica stores)
   * that would push a key past it is refused with TooManySiblings, as Riak refuses at max_siblings.
   */
  siblingsMax: 64,
  /**
   * Most siblings a get reply may carry. Above siblingsMax so that a key stored before that bound
   * was enforced on every path still reads (its reply is bounded by frameBytesMax anyway).
   */
  siblingsReadMax: 1024,
  /**
   * Highest counter a version vector or dot may carry, far below 2^53: a stamp adds one to the
   * highest counter it has seen, and a forged context at 2^53 - 2 used to overflow it.
   */
  counterMax: 2 ** 48,
  /**
   * Largest stored state of one key (every sibling's value, the vector, the dots), encoded. Any merge
   * that would exceed it is refused with TooLarge, so every stored state fits a table entry and a
   * get reply fits one frame.
   */
  stateBytesMax: 16 * 1024 * 1024,
  /** Most actors in one version vector (replicas x incarnations ever seen by a key). */
  vectorActorsMax: 1024,
  /** Serialized causal context, as text: it must fit a header or a cookie. */
  contextBytesMax: 4096,

  // Names on the wire (zod counts code points).
  /** Longest actor, node id or zone name. */
  nameCharsMax: 128,
  /** Longest replica URL in a ring. */
  urlCharsMax: 2048,
  /** Longest client name a hello may carry, and its token. */
  clientNameCharsMax: 256,
  tokenCharsMax: 4096,

  // Ring.
  /** Most nodes one ring may name. */
  ringNodesMax: 4096,
  partitionsDefault: 256,
  partitionsMax: 1 << 16,
  nDefault: 3,
  nMax: 16,

  // Wire protocol.
  protocolVersion: 1,
  /** Largest frame a peer may send; larger frames are refused and the connection closed. */
  frameBytesMax: 17 * 1024 * 1024,
  /** Deepest msgpack nesting a decoder accepts (a message is at most ~6 deep). */
  decodeDepthMax: 32,
  /**
   * Most arrays and maps one frame or context may decode to. A message needs a few, plus one per
   * sibling; a full frame of the largest replies needs frameMessagesMax x (siblingsReadMax + 16).
   */
  decodeContainersMax: 256 * (1024 + 16),
  /** Most schema issues an error reply lists (describeIssues in messages.ts). */
  schemaIssuesMax: 8,
  /**
   * Longest schema issue in an error reply, in characters: an issue can quote decoded input (zod
   * puts a record's key in its path), and a reply must not grow with the request it answers.
   */
  issueCharsMax: 256,
  /** Messages coalesced into one frame by the sender within one tick. */
  frameMessagesMax: 256,
  /** Bytes coalesced into one frame before it is sent early. */
  frameBatchBytesMax: 1024 * 1024,

  // Transport (client side).
  requestTimeoutMsDefault: 2000,
  /** Longest timeoutMs a call may ask for (a deadline for the whole call, ring discovery included). */
  requestTimeoutMsMax: 600_000,
  /**
   * Most seeds a client takes, as many as a ring may have nodes (ringSchema in messages.ts): every
   * replica's own coordinator is given the whole membership as its seeds. It also bounds a failure
   * map, which names at most one entry per seed or ring node.
   */
  seedsMax: 4096,
  /** Longest seed URL, as a ring node's url in ringSchema. */
  seedUrlCharsMax: 2048,
  /** Ring discovery asks this many seeds at once, and another whenever one fails... */
  seedsAskedAtOnce: 3,
  /** ...and one more every seedHedgeMs while none has answered (a paused seed answers nothing). */
  seedHedgeMs: 100,
  /**
   * A request that times out resets its connection (the replica looks paused) only if it waited at
   * least this long with nothing received meanwhile: a caller's own tiny timeout says nothing about
   * the replica, and used to take every connection down for every caller of the client.
   */
  timeoutResetsConnectionMsMin: 100,
  /** retryAfterMs of the Overloaded error a caller gets when a connection's queue is full. */
  queueFullRetryAfterMs: 10,
  connectTimeoutMs: 2000,
  /** Requests awaiting replies on one connection; more wait in a bounded queue. */
  inflightPerConnectionMax: 4096,
  /** Requests waiting for a free in-flight slot before callers get Overloaded. */
  pendingPerConnectionMax: 16384,
  reconnectBackoffMsMin: 50,
  reconnectBackoffMsMax: 2000,
  connectionsPerReplicaDefault: 1,
  connectionsPerReplicaMax: 16,

  // Replica: connections (a replica's WebSocket data plane and HTTP server).
  /** Open WebSocket connections one replica accepts; more are refused at the upgrade (503). */
  connectionsMax: 1024,
  /** Connections that have not completed their hello; more are refused at the upgrade (503). */
  handshakesInflightMax: 128,
  /** A connection that has not said hello within this is closed (1008). */
  helloTimeoutMs: 5000,
  /**
   * Bytes a connection may send before its hello is answered (a hello is a few hundred bytes, a
   * token at most 4 KiB); past it the connection is closed (1008). Without it each connection
   * awaiting hello could make the replica buffer a whole frameBytesMax of garbage.
   */
  helloBytesMax: 64 * 1024,
  /** Reply bytes buffered for a connection that is not reading; past it the connection is closed (1008). */
  replyBufferedBytesMax: 64 * 1024 * 1024,
  /**
   * Reply bytes buffered for a connection above which the replica stops reading its frames and stops
   * answering the rest of the frame in hand, until the backlog drains: backpressure, as TCP does, so
   * a client that pipelines many large gets is slowed down instead of cut off. One reply and one batch
   * below replyBufferedBytesMax, so answering requests in order never reaches the hard bound; only
   * replies to writes already in flight can.
   */
  replyBufferedBytesPause: 16 * 1024 * 1024,
  /**
   * A connection paused on its reply backlog whose socket takes none of it for this long is closed
   * (1008): its client is not reading. A slow reader that makes progress is left alone.
   */
  replyStallMs: 10_000,
  /**
   * Reply bytes buffered for all of a replica's connections together (an estimate that never
   * undercounts). Past it, every connection with replies still unsent waits for them to be taken
   * before it reads on: the per-connection bounds alone let 1024 clients that do not read hold 19 MiB
   * each.
   */
  replyBufferedBytesTotalMax: 256 * 1024 * 1024,
  /**
   * TCP sockets one HTTP server (replica, gateway, embedded S3) holds, WebSocket and plain HTTP
   * together (net.Server maxConnections; more are accepted and closed at once). The data plane is
   * capped at connectionsMax below it, leaving room for /health, /metrics and gateway clients; and
   * a flood of sockets reaches it long before the process runs out of file descriptors (EMFILE fails
   * flushes, compactions and snapshots).
   */
  socketsMax: 2048,
  /** After a close (1008) a socket that does not finish the close handshake is destroyed. */
  closeGraceMs: 1000,
  /** HTTP: whole request headers must arrive within this; the whole request within httpRequestTimeoutMs. */
  httpHeadersTimeoutMs: 10_000,
  httpRequestTimeoutMs: 30_000,
  httpKeepAliveTimeoutMs: 5000,
  /**
   * How often node's HTTP server checks the header and request timeouts (connectionsCheckingInterval):
   * node's default of 30 s would let a request that never finishes its headers live up to 40 s.
   */
  httpTimeoutCheckMs: 1000,
  /** POST /admin/snapshot: calls while one runs share it; a new one starts at most this often. */
  adminSnapshotIntervalMs: 10_000,
  /** retryAfterMs of an Overloaded reply from a replica whose pending writes are at their bound. */
  overloadedRetryAfterMs: 5,

  // Replica: writes.
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
  /**
   * /health asks every replica of the ring for a sign of life, and waits at most this long: load
   * balancers poll it with timeouts of a second or two, and a paused replica answers nothing.
   */
  healthProbeTimeoutMs: 500,

  // Authentication and sessions (docs/security.md).
  /** Most tokens one auth file may list (every hello compares against each, in constant time). */
  authTokensMax: 256,
  /** Shortest token an auth file may list: a guessable token is a configuration error. */
  authTokenCharsMin: 16,
  /** Shortest cluster secret: replicas hold it, clients never do. */
  clusterSecretCharsMin: 32,
  /** Largest auth file or secret file read at start (bytes). */
  authFileBytesMax: 1024 * 1024,
  /**
   * Most keys a causal session remembers (the most recent ones: older keys drop out and lose the
   * read-your-writes guarantee, as the docs say).
   */
  sessionKeysMax: 32,
  /** Longest session token, in characters (header or cookie); keys drop out oldest first to fit. */
  sessionCharsMax: 6144,
  /** Bytes of a key's hash that name it in a session (64 bits: a collision needs ~2^32 keys in one session). */
  sessionKeyTagBytes: 8,
  /** Bytes of the session's HMAC-SHA-256 tag that it carries. */
  sessionMacBytes: 16,

  // The gateway on Cloudflare Workers (edge/worker.ts, docs/edge.md).
  /**
   * Durable Objects the edge gateway spreads keys over by ring position (each holds its own sockets
   * to every replica and runs one KvCoordinator; one object is single-threaded, one global object
   * is a bottleneck). A power of two, so each shard is a contiguous range of partitions.
   */
  edgeShardsDefault: 8,
  edgeShardsMax: 256,
  /**
   * How long a per-request coordinator (the fallback without Durable Objects) stays open after its
   * answer, so that its read repairs can go out before its sockets close (ctx.waitUntil).
   */
  edgeLingerMs: 250,

  // Errors.
  /** Longest error message; longer ones are cut (a failure map of many replicas can be long). */
  errorMessageCharsMax: 65_536,
  /** Most issues one BadRequest carries; the rest are summed up in a last issue. */
  errorIssuesMax: 64,

  // Hinted handoff (docs/hints.md). A fallback keeps a write for an absent owner in its hint store
  // until the owner is reachable again; the store is bounded per target and in total, and refuses
  // new hints at its bounds (HintRefused) rather than grow.
  /** Most hints (distinct keys) held for one absent owner; --hints-per-target-max lowers it. */
  hintsPerTargetMax: 100_000,
  /** Most bytes of hinted states held for one absent owner. */
  hintBytesPerTargetMax: 256 * 1024 * 1024,
  /** Most hints held for every owner together. */
  hintsTotalMax: 400_000,
  /** Most bytes of hinted states held for every owner together (kept in memory and on disk). */
  hintBytesTotalMax: 1024 * 1024 * 1024,
  /**
   * No new hint for an owner whose oldest pending hint is older than this: it has been away too
   * long for hints to be the way back (Cassandra's max_hint_window_in_ms, 3 hours); read repair
   * and anti-entropy take over.
   */
  hintWindowMs: 3 * 60 * 60 * 1000,
  /** A hint log segment is closed and a new one begun once it passes this size. */
  hintSegmentBytes: 64 * 1024 * 1024,
  /**
   * Most hint log segments; past it the live hints of the oldest are written again at the end of
   * the log so that segment can be deleted (the log never grows without bound under churn).
   */
  hintSegmentsMax: 8,
  /** Most records one group commit of the hint log writes with one fdatasync. */
  hintGroupRecordsMax: 1024,
  /** Most hints replayed per second, to all owners together: handoff must not starve foreground writes. */
  hintReplayPerSecond: 2000,
  /** Most replays awaiting their owner's ack at once. */
  hintReplayInflightMax: 64,
  /** How often the replayer looks for reachable owners with pending hints. */
  hintReplayIntervalMs: 200,
  /** Deadline of one replayed `replicate`. */
  hintReplayTimeoutMs: 5000,
  /** At most one log line per owner and refusal reason per this interval (a flood of refusals is counted, not logged). */
  hintRefusedLogIntervalMs: 10_000,
  /** After a failed replay the owner is left alone this long before the next try. */
  hintReplayBackoffMs: 1000,
} as const

assert(limits.valueBytesDefault <= limits.valueBytesMax, 'default value size above the hard max')
assert(limits.frameBytesMax > limits.valueBytesMax + limits.keyBytesMax + limits.contextBytesMax,
  'a frame must hold the largest value with its key and context')
assert(limits.frameBatchBytesMax <= limits.frameBytesMax, 'batch bytes above frame bytes')
assert(limits.frameBytesMax < 2 ** 31, 'the msgpack guard counts values owed in 32-bit integers, at most one per frame byte')
assert(limits.stateBytesMax >= limits.valueBytesMax + 64 * 1024, 'a stored state must hold the largest value')
assert(limits.frameBytesMax >= limits.stateBytesMax + limits.siblingsReadMax * 64 + limits.keyBytesMax,
  'a get reply of the largest state must fit one frame')
assert(limits.siblingsReadMax >= limits.siblingsMax, 'reads must carry every sibling a write may make')
assert(limits.decodeContainersMax >= limits.frameMessagesMax * (limits.siblingsReadMax + 16),
  'a frame of the largest replies must decode')
assert(Number.isSafeInteger(limits.counterMax * 2), 'counterMax must stay far below 2^53')
assert(limits.handshakesInflightMax <= limits.connectionsMax, 'handshakes above connections')
assert(limits.helloBytesMax >= 2 * limits.contextBytesMax && limits.helloBytesMax < limits.frameBytesMax, 'a hello with its token must fit, and far less than a frame')
assert(limits.replyBufferedBytesMax >= 2 * limits.frameBytesMax, 'a connection must be able to buffer two full replies')
assert(limits.httpHeadersTimeoutMs <= limits.httpRequestTimeoutMs, 'header timeout above request timeout')
assert(limits.replyBufferedBytesPause + limits.frameBytesMax + limits.frameBatchBytesMax <= limits.replyBufferedBytesMax,
  'reads must pause a whole reply and batch below the hard reply backlog bound')
assert(limits.replyStallMs > limits.closeGraceMs, 'a stalled reader is given longer than a close handshake')
assert(limits.replyBufferedBytesTotalMax >= limits.replyBufferedBytesMax, 'one connection may reach its own bound')
assert(limits.socketsMax > limits.connectionsMax, 'plain HTTP needs sockets beyond the data plane cap')
assert(limits.httpTimeoutCheckMs * 2 <= limits.httpHeadersTimeoutMs, 'timeouts are checked well within the header timeout')
assert(limits.httpBodyBytesMax >= limits.valueBytesMax, 'HTTP body limit below the value limit')
assert((limits.partitionsDefault & (limits.partitionsDefault - 1)) === 0, 'partitions must be a power of two')
assert(limits.nDefault <= limits.nMax, 'default N above max N')
assert(limits.reconnectBackoffMsMin <= limits.reconnectBackoffMsMax, 'backoff min above max')
assert(limits.inflightPerConnectionMax <= limits.pendingPerConnectionMax, 'in-flight above pending bound')
assert(limits.readRepairsInflightMax > 0, 'read repair bound must be positive')
assert(limits.stampTimeoutMsMax * 3 <= limits.requestTimeoutMsDefault, 'a stamp timeout must leave time to stamp elsewhere')
assert(limits.requestTimeoutMsDefault <= limits.requestTimeoutMsMax, 'default timeout above the max')
assert(limits.connectTimeoutMs <= limits.requestTimeoutMsMax, 'connect timeout above the request timeout max')
assert(limits.seedsAskedAtOnce >= 1 && limits.seedHedgeMs * 3 <= limits.requestTimeoutMsDefault,
  'ring discovery must ask several seeds within a default timeout')
assert(limits.timeoutResetsConnectionMsMin <= limits.stampTimeoutMsMax && limits.timeoutResetsConnectionMsMin <= limits.healthProbeTimeoutMs,
  'a timed-out stamp or health probe must still reset the connection of a paused replica')
assert(limits.healthProbeTimeoutMs < limits.httpRequestTimeoutMs, 'a health probe must finish within an HTTP request')
assert(limits.errorIssuesMax >= limits.schemaIssuesMax, 'a BadRequest must carry the issues describeIssues reports')
assert(limits.errorMessageCharsMax * 4 < limits.frameBytesMax, 'an error reply must fit a frame')
assert(limits.walGroupRecordsMax >= limits.frameMessagesMax, 'a WAL group must cover one full frame of writes')
assert((limits.edgeShardsMax & (limits.edgeShardsMax - 1)) === 0 && (limits.edgeShardsDefault & (limits.edgeShardsDefault - 1)) === 0 &&
  limits.edgeShardsDefault <= limits.edgeShardsMax && limits.edgeShardsMax <= limits.partitionsDefault,
  'edge shards must be powers of two, at most the default partitions, so each is a range of partitions')
assert(limits.edgeLingerMs < limits.requestTimeoutMsDefault, 'a per-request coordinator lingers less than a request may take')
assert(limits.schemaIssuesMax * (limits.issueCharsMax + 2) * 2 <= limits.errorMessageCharsMax, 'the schema issues of an error reply, joined into its message, must fit its bound with room to spare')

assert(limits.authTokenCharsMin <= limits.tokenCharsMax && limits.clusterSecretCharsMin <= limits.tokenCharsMax, 'a token and the cluster secret must fit a hello')
assert(limits.sessionCharsMax >= limits.contextBytesMax + 512, 'a session must hold the largest context of one key')
assert(limits.sessionKeysMax >= 1 && limits.sessionKeyTagBytes >= 8 && limits.sessionMacBytes >= 16, 'a session names at least one key, by 64 bits, under a 128-bit tag')
assert(limits.hintsPerTargetMax <= limits.hintsTotalMax && limits.hintBytesPerTargetMax <= limits.hintBytesTotalMax,
  'one owner\'s hints must fit the store\'s total')
assert(limits.hintBytesPerTargetMax >= limits.stateBytesMax, 'one hint of the largest state must fit an owner\'s bound')
assert(limits.hintSegmentBytes >= 2 * limits.frameBytesMax && limits.hintSegmentsMax >= 2, 'a hint segment holds several of the largest records; rotation needs two segments')
assert(limits.hintReplayInflightMax <= limits.hintReplayPerSecond, 'in-flight replays above the replay rate')
assert(limits.hintReplayIntervalMs < limits.hintReplayBackoffMs && limits.hintReplayTimeoutMs <= limits.requestTimeoutMsMax,
  'the replayer looks more often than it backs off, and its deadline is a request deadline')
assert(limits.hintGroupRecordsMax >= limits.frameMessagesMax, 'a hint group must cover one full frame of writes')

export type Limits = typeof limits

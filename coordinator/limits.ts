// Every bound in ringkv lives here (TigerBeetle's constants.zig): queue lengths, buffer sizes,
// batch sizes, retry counts, timeouts. Relations between them are asserted when this module loads,
// so a bad edit fails at start-up rather than under load. Runtime config may lower a limit, never
// raise it past the hard maximum named here.

import { assert } from './assert.ts'

export const limits = {
  // Latency histograms (coordinator/metrics/histogram.ts, docs/performance.md).
  /** Fine buckets per power of two: a percentile read from them is within 2^(1/4), 19 %, of the truth. */
  latencyHistogramBucketsPerOctave: 4,
  /** Powers of two the buckets cover from 1 µs: 2^26 µs is 67 s; anything slower lands in the last bucket. */
  latencyHistogramOctaves: 26,
  /**
   * Completed puts whose phases the SDK remembers (a ring buffer, overwritten oldest first), from
   * which kv.stats() says where the slowest 1 % spent their time.
   */
  opPhaseSamplesMax: 8192,
  /**
   * Largest service time (µs) a replica reports in a put or replicate reply (`serviceUs`, `fsyncUs`,
   * for the SDK's per-phase breakdown); longer times are sent as this.
   */
  replyTimingUsMax: 2 ** 31 - 1,
  /** Resolution (ms) of the event-loop delay histogram (perf_hooks.monitorEventLoopDelay) of each server process. */
  eventLoopDelayResolutionMs: 10,

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
   * After a NotOwner, the client fetches the ring at most this many times (within the request's
   * deadline) until it knows the ring version the refusing replica named: the nodes it asks may
   * not have heard of that ring yet. Once one answers with an older ring, the others get
   * notOwnerRingRetryMs more to answer, and the next fetch waits that long first.
   */
  notOwnerRingFetchesMax: 3,
  notOwnerRingRetryMs: 25,
  /**
   * A request that times out resets its connection (the replica looks paused) only if it waited at
   * least this long with nothing received meanwhile: a caller's own tiny timeout says nothing about
   * the replica, and used to take every connection down for every caller of the client.
   */
  timeoutResetsConnectionMsMin: 100,
  /**
   * Before such a reset the connection is asked for a sign of life (a `ring` request): it is reset
   * only if nothing at all arrives within this. A replica that is merely slow (a long fsync, a
   * CPU-starved event loop) answers; resetting it failed every request on the connection and
   * marked the replica down, so that under load one slow moment turned into a collapse of every
   * write (docs/performance.md). A paused replica is still found out, this much later.
   */
  silenceProbeTimeoutMs: 250,
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
  /** Largest body an admin route that takes JSON (POST /admin/transfer, /admin/stop-forwarding) reads; past it 413. */
  adminBodyBytesMax: 32 * 1024,
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
   * Longest a stamp waits with nothing at all arriving from its replica before the connection is
   * probed for a sign of life (at most a third of the request's timeout): a paused replica keeps its
   * connection open and fails nothing fast. A live but slow replica (a 16 MiB state, a loaded
   * machine) answers the probe and the stamp waits on, up to the write's deadline.
   */
  stampTimeoutMsMax: 500,
  /** Times update() re-reads and retries after a concurrent change. */
  updateRetriesMax: 8,
  readRepairsInflightMax: 1024,
  /**
   * A get asks R replicas, the least loaded first, and the rest of its targets only when needed
   * (docs/quorum.md, "A read asks R"): when one fails, and when the first R have not all answered
   * after the p99 of this client's recent gets (Cassandra's speculative_retry = 99p). That p99 is
   * taken over windows of this many gets; until the first window is full, a get asks all its targets.
   */
  readSpeculationWindow: 1000,
  /** Bounds on that delay (ms): no sooner than a timer can fire, and well within a read's deadline. */
  readSpeculationMsMin: 1,
  readSpeculationMsMax: 200,
  /**
   * A budget on those extra asks, as gRPC's retry throttling keeps one on hedged calls: each
   * speculation spends a token, each completed get earns readSpeculationShare of one, and a client
   * holds at most readSpeculationBurst (its start). So over time at most a tenth of a client's gets
   * speculate, whatever its p99 says: when every replica slows at once (a loaded machine, a client's
   * GC pause), gets in flight would all cross the last window's p99 together and ask every spare,
   * adding load where there is least room. A get refused a token waits for the replicas it asked;
   * one whose replica fails still asks a spare (that replaces a request, it adds none).
   */
  readSpeculationShare: 0.1,
  readSpeculationBurst: 100,

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

  // Membership (docs/membership.md): gossip, the phi-accrual failure detector, ring changes.
  /** How often a replica gossips its cluster state to one random peer (default; --gossip-interval-ms). */
  gossipIntervalMsDefault: 1000,
  gossipIntervalMsMin: 10,
  gossipIntervalMsMax: 60_000,
  /** Longest a gossip exchange (request and reply) may take before it counts as failed. */
  gossipTimeoutMs: 2000,
  /**
   * Gossip messages a replica answers per second; more get Overloaded. A peer gossips once per
   * interval, so this leaves room for a whole cluster of peers gossiping at the fastest interval.
   */
  gossipReceivedPerSecMax: 200,
  /** Phi above which a peer is unreachable (Hayashibara 2004; Cassandra's and Akka's default 8). */
  phiThresholdDefault: 8,
  phiThresholdMax: 64,
  /** phi as /members shows it is capped here (a long-silent peer's phi is Infinity, which JSON cannot say). */
  phiShownMax: 1000,
  /** Heartbeat intervals a phi detector remembers (Akka's max-sample-size). */
  phiSamplesMax: 1000,
  /** Floor of the standard deviation of heartbeat intervals: a too-regular peer is not convicted for one late beat. */
  phiMinStdMs: 200,
  /**
   * Pause a peer may take before phi starts to rise (Akka's acceptable-heartbeat-pause): heartbeats
   * travel by gossip, so a gap of a few intervals is ordinary, and so is a GC or event-loop stall.
   */
  phiAcceptablePauseMs: 2000,
  /** Highest ring version, member generation or heartbeat accepted: far below 2^53, so +1 never overflows. */
  membershipCounterMax: 2 ** 48,
  /**
   * Highest heartbeat or member generation a gossiped state may carry: half the counter bound. Both
   * merge by max, so one forged at the counter bound would stick, and then its node could not bump
   * its heartbeat without every peer refusing its gossip, and the next change of the member entry
   * would trip the generation assert (seen while writing the forged-gossip tests). Below this, a forged leap only
   * moves the counter on, with 2^47 bumps left after it.
   */
  gossipCounterMax: 2 ** 47,
  /**
   * Largest jump a gossiped ring version may make past the local one: each membership change adds a
   * few versions, so a jump of thousands is forged (or a bug), not news.
   */
  ringVersionGapMax: 1000,
  /** Transfers one plan may list (every partition entering every preference list at once). */
  planTransfersMax: (1 << 16) * 16,
  /**
   * Partition transfers membership hands to handoff at once, per sending replica: as many as one
   * handoff sweep streams together (handoffTransfersInFlightMax), so they share one engine scan.
   */
  transfersInflightMax: 8,
  /** Wait between retries of a failed transfer. */
  transferRetryMs: 1000,
  /** A joining replica asks its seed for the cluster state this long before giving up. */
  joinTimeoutMs: 30_000,
  /** A replica that has left gossips its last state to this many peers before it exits. */
  leaveFarewellPeers: 3,
  // Handoff: moving a partition's keys to a new owner (docs/handoff.md).
  /**
   * Bytes of handoff batches one replica sends per second, all its transfers together, unless its
   * --handoff-bytes-per-sec says otherwise (at most handoffBytesPerSecMax): handoff is background
   * work and must leave the disk and the network to the foreground writes.
   */
  handoffBytesPerSecDefault: 16 * 1024 * 1024,
  handoffBytesPerSecMax: 1024 * 1024 * 1024,
  /**
   * States' bytes in one handoff batch (riak_core's 1 MiB). A single state larger than this (up to
   * stateBytesMax) travels alone in its batch, so that every key can move.
   */
  handoffBatchBytesMax: 1024 * 1024,
  /** Smallest batch size --handoff-batch-bytes may set (tests use small batches to see progress). */
  handoffBatchBytesMin: 1024,
  /** Keys in one handoff batch (a receiver refuses more). */
  handoffBatchKeysMax: 1024,
  /** Batches of one transfer sent and not yet durably acknowledged. */
  handoffBatchesInFlightMax: 4,
  /**
   * Transfers streaming at once (riak_core's handoff_concurrency is 2): they share one scan of the
   * engine; more wait queued for the next scan.
   */
  handoffTransfersInFlightMax: 16,
  /** Transfers waiting to start; more are refused with Overloaded. A leave queues every partition. */
  handoffTransfersQueuedMax: 1 << 16,
  /**
   * A sweep starts this long after the first transfer is queued, so that transfers asked for in one
   * burst (a join asks for many partitions at once) share one scan instead of one scan each.
   */
  handoffSweepGatherMs: 100,
  /** Keys read from the engine per scan call while streaming (the scan holds this many in memory). */
  handoffScanKeysMax: 256,
  /** Longest wait for one batch's durable ack before the transfer is retried from its last ack. */
  handoffAckTimeoutMs: 60_000,
  /** Attempts of one transfer (each resumes from the last durable ack) before it is marked failed. */
  handoffAttemptsMax: 8,
  handoffRetryBackoffMsMin: 200,
  handoffRetryBackoffMsMax: 10_000,
  /** Highest batch sequence number; a transfer of more batches than this is a bug. */
  handoffSeqMax: 2 ** 31 - 1,
  /** Writes waiting to be forwarded to one transfer target; past it the transfer re-scans instead. */
  handoffForwardQueueMax: 4096,
  /** Forwarded writes (`replicate`) to one target awaiting their ack. */
  handoffForwardInFlightMax: 64,
  /** Timeout of one forwarded write; a failed forward makes its transfer re-scan. */
  handoffForwardTimeoutMs: 10_000,
  /** Full re-scans of one transfer forced by dropped forwards before the transfer is marked failed. */
  handoffRescansMax: 4,
  /** Transfers whose progress the progress file keeps (the oldest are forgotten: they restart from zero). */
  handoffProgressEntriesMax: 4096,
  /** Finished transfers status() keeps, the most recent ones. */
  handoffFinishedKeptMax: 4096,
  /**
   * Keys of partitions this replica no longer holds that it deletes per second (docs/handoff.md,
   * "Dropping what was handed off"): each is a small engine write (a reap barrier), so the drop is
   * background work that must not crowd the foreground's WAL.
   */
  handoffDropKeysPerSecond: 5000,
  /** Keys one drop slice deletes in one turn, between two checks that the partition is still not ours. */
  handoffDropKeysPerSlice: 256,
  /**
   * How long a replica's view must have been fresh and the partition not its own before a drop
   * starts: forwards and read repairs sent under the old ring settle, and a plan that gives the
   * partition straight back has a few gossip rounds to arrive.
   */
  handoffDropDelayMs: 3000,
  // Anti-entropy (docs/anti-entropy.md): per-partition Tictac trees, exchanges, tombstone reaping.
  /**
   * Branches under a tree's root, and segments (leaves) under each branch: a tree has
   * aaeTreeWidth^2 segments of 4 bytes (16 KiB per partition). A partition holds about 1/256 of
   * the keys, so 4,096 segments keep a segment at about one key with a million keys in the cluster:
   * an exchange fetches the keys of each differing segment, so keys per segment multiply its bytes
   * (at 32, about 4 keys a segment, a 1,000,000-key exchange moved 1.7-1.9x the issue's bound).
   */
  aaeTreeWidth: 64,
  /** Pause between two exchanges of the periodic loop (one (partition, peer) pair each). */
  aaeExchangeIntervalMs: 40,
  /**
   * Least pause between two root sweeps (one aaeRoots request compares every partition shared with
   * one peer); the pause is max(this, the exchange interval). With nothing differing a replica then
   * sends one small request a second instead of an exchange every 40 ms (5 % of a core idle).
   */
  aaeSweepIntervalMs: 1000,
  /**
   * How long after a sweep saw a partition's roots differ its exchange compares them again. Only
   * branches that differ both times are walked: a write still in flight to one replica makes its
   * branch differ for a moment, and under a write load most sweeps see some (Tictac AAE's root
   * confirm, which waits 250-750 ms). Without it the loop exchanged and "repaired" in-flight writes
   * all through a load: 10 % of the replicas' CPU in a put benchmark.
   */
  aaeConfirmDelayMs: 500,
  /** Partitions one aaeRoots request names (its reply: 256 bytes each, 256 KiB at most). */
  aaeRootsPerRequestMax: 1024,
  /** Differing segments whose keys one aaeKeys request asks for. */
  aaeSegmentsPerFetchMax: 64,
  /** Most keys one aaeKeys reply carries; the rest follow with its `next` cursor. */
  aaeKeysPerReplyMax: 1024,
  /** Most state bytes one aaeKeys reply carries (a single larger state is sent alone). */
  aaeKeysReplyBytesMax: 4 * 1024 * 1024,
  /**
   * Keys one replica repairs per second (each a local merge or a push to the peer), so that repair
   * stays a small share of what a replica writes in the foreground (tens of thousands of puts/s).
   */
  aaeRepairKeysPerSecond: 5000,
  /** State bytes one replica repairs per second. */
  aaeRepairBytesPerSecond: 16 * 1024 * 1024,
  /** Keys the tree rebuild at start reads per event-loop slice. */
  aaeRebuildKeysPerSlice: 512,
  /** Pages of aaeKeys replies one fetch of segments may take (aaeKeysPerReplyMax keys each). */
  aaePagesPerFetchMax: 4096,
  /** Partitions /health lists by name (the oldest last full passes); the rest are summed up. */
  aaeHealthPartitionsShown: 8,
  /** Longest one exchange request may wait for its reply. */
  aaeRequestTimeoutMs: 10_000,
  /** Exchanges queued for an on-demand repair (`ringkv repair`): at most every partition with each peer. */
  aaeRepairQueueMax: (1 << 16) * 16,
  /** `ringkv repair` asks each replica how far its repair got this often (its progress bar). */
  repairPollIntervalMs: 250,
  /** `ringkv repair` gives up waiting after this long (the repairs go on in the replicas). */
  repairWaitMsMax: 6 * 60 * 60 * 1000,
  /**
   * Default --tombstone-grace-ms: a tombstone held by every primary is reaped this long after it
   * landed. It is also the age past which a hint is dropped unreplayed (a hint older than the grace
   * may carry a value whose tombstone was reaped meanwhile: replaying it would resurrect the key),
   * so it must exceed hintWindowMs, as Cassandra's gc_grace_seconds (10 days) exceeds its
   * max_hint_window (3 hours).
   */
  tombstoneGraceMsDefault: 24 * 60 * 60 * 1000,
  /** Tombstones per partition awaiting their grace; beyond it a tombstone is kept until a restart. */
  tombstonesTrackedPerPartitionMax: 65536,
  /** Tombstones one replica reaps per exchange, so reaping never stalls the loop. */
  tombstoneReapsPerRoundMax: 256,
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
  /** Hints past their TTL (the tombstone grace) one replay round deletes at most. */
  hintExpiresPerRoundMax: 1024,

  // Local clusters (infra/cluster.ts, `npm start`).
  /** Log bytes of one replica buffered for its log file; past it output is dropped (a log must never block a replica). */
  replicaLogBufferedBytesMax: 8 * 1024 * 1024,
} as const

assert(limits.valueBytesDefault <= limits.valueBytesMax, 'default value size above the hard max')
assert(limits.tombstoneGraceMsDefault > limits.hintWindowMs, 'the default tombstone grace (the hints\' TTL) must exceed the hint window')
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
assert(limits.readSpeculationShare >= 0.001 && limits.readSpeculationShare <= 1 && limits.readSpeculationBurst >= 1,
  'speculation earns at least a thousandth of a token per get (the budget counts thousandths), and a client may speculate at least once')
assert(limits.readSpeculationWindow >= 100 && limits.readSpeculationMsMin >= 1 && limits.readSpeculationMsMin <= limits.readSpeculationMsMax
  && limits.readSpeculationMsMax * 3 <= limits.requestTimeoutMsDefault, 'a slow read asks its spares well before its deadline, after a p99 over enough gets to have one')
assert(limits.stampTimeoutMsMax * 3 <= limits.requestTimeoutMsDefault, 'a silent stamp replica must be probed well before the write deadline')
assert(limits.requestTimeoutMsDefault <= limits.requestTimeoutMsMax, 'default timeout above the max')
assert(limits.connectTimeoutMs <= limits.requestTimeoutMsMax, 'connect timeout above the request timeout max')
assert(limits.seedsAskedAtOnce >= 1 && limits.seedHedgeMs * 3 <= limits.requestTimeoutMsDefault,
  'ring discovery must ask several seeds within a default timeout')
assert(limits.timeoutResetsConnectionMsMin <= limits.stampTimeoutMsMax && limits.timeoutResetsConnectionMsMin <= limits.healthProbeTimeoutMs,
  'a timed-out stamp or health probe must still reset the connection of a paused replica')
assert(limits.healthProbeTimeoutMs < limits.httpRequestTimeoutMs, 'a health probe must finish within an HTTP request')
assert(limits.silenceProbeTimeoutMs >= limits.timeoutResetsConnectionMsMin && limits.stampTimeoutMsMax + limits.silenceProbeTimeoutMs < limits.requestTimeoutMsDefault,
  'a paused replica must be found out within a default request timeout')
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
assert(limits.latencyHistogramBucketsPerOctave >= 1 && limits.latencyHistogramOctaves >= 20 && limits.latencyHistogramOctaves <= 40,
  'latency histograms must reach past a second and stay small')
assert(limits.opPhaseSamplesMax >= 1000, 'the slowest 1 % of the phase samples must be at least 10 operations')
assert(limits.eventLoopDelayResolutionMs >= 1, 'event-loop delay resolution must be at least 1 ms')
assert(limits.gossipCounterMax * 2 <= limits.membershipCounterMax, 'a counter forged to the gossip bound must leave as many bumps before the counter bound')
assert(limits.gossipIntervalMsMin <= limits.gossipIntervalMsDefault && limits.gossipIntervalMsDefault <= limits.gossipIntervalMsMax, 'gossip interval default outside its range')
assert(limits.phiThresholdDefault > 0 && limits.phiThresholdDefault <= limits.phiThresholdMax && limits.phiThresholdMax < limits.phiShownMax, 'phi threshold default outside its range')
assert(limits.phiAcceptablePauseMs >= limits.gossipIntervalMsDefault, 'a peer must be allowed to miss a gossip round before phi rises')
assert(Number.isSafeInteger(limits.membershipCounterMax * 2) && limits.ringVersionGapMax < limits.membershipCounterMax, 'membership counters must stay far below 2^53')
assert(limits.planTransfersMax >= limits.partitionsMax * limits.nMax, 'a plan must be able to move every partition into every preference list')
assert(limits.transfersInflightMax >= 1 && limits.transfersInflightMax <= limits.handoffTransfersInFlightMax, 'membership starts at most as many transfers as one handoff sweep streams')
assert(limits.joinTimeoutMs >= limits.gossipTimeoutMs * 2, 'a join must be able to try its seed more than once')
assert(limits.gossipTimeoutMs <= limits.requestTimeoutMsMax, 'gossip timeout above the request timeout max')
assert(limits.handoffBytesPerSecDefault <= limits.handoffBytesPerSecMax, 'handoff default rate above its max')
assert(limits.handoffBatchBytesMin <= limits.handoffBatchBytesMax, 'handoff batch bounds inverted')
assert(limits.handoffBatchBytesMax + limits.handoffBatchKeysMax * (limits.keyBytesMax + 16) <= limits.frameBytesMax,
  'a full handoff batch must fit one frame')
assert(limits.stateBytesMax + limits.keyBytesMax + 64 <= limits.frameBytesMax, 'a batch of one largest state must fit one frame')
assert(limits.handoffBatchKeysMax <= limits.walGroupRecordsMax, 'one batch must fit one WAL group of records')
assert(limits.handoffBatchKeysMax * limits.handoffBatchesInFlightMax * limits.handoffTransfersInFlightMax <= limits.replicaPendingWritesMax,
  'a receiver must admit every batch in flight to it')
assert(limits.handoffTransfersInFlightMax <= limits.handoffTransfersQueuedMax, 'handoff in-flight above queued bound')
assert(limits.handoffDropKeysPerSlice >= 1 && limits.handoffDropKeysPerSlice <= limits.handoffDropKeysPerSecond, 'a drop slice must fit one second of the drop rate')
assert(limits.handoffDropKeysPerSlice <= limits.walGroupRecordsMax, 'one drop slice must fit one WAL group of records')
assert(limits.handoffDropDelayMs >= 2 * limits.gossipIntervalMsDefault, 'a drop waits at least two gossip rounds at the default interval')
assert(limits.handoffForwardInFlightMax <= limits.inflightPerConnectionMax, 'forwards in flight above a connection\'s bound')
assert(limits.handoffRetryBackoffMsMin <= limits.handoffRetryBackoffMsMax, 'handoff backoff min above max')
assert(limits.adminBodyBytesMax >= 2 * (limits.urlCharsMax + limits.nameCharsMax) * 4, 'an admin transfer request with the longest URL and id must fit')
assert(limits.handoffSweepGatherMs < limits.handoffRetryBackoffMsMax, 'gathering transfers must not outlast a retry backoff')
assert(limits.handoffProgressEntriesMax >= limits.handoffTransfersInFlightMax, 'progress must be kept for every transfer in flight')
assert(limits.handoffScanKeysMax >= 1 && limits.handoffAttemptsMax >= 1 && limits.handoffRescansMax >= 0, 'handoff counts must be positive')
assert(limits.aaeTreeWidth >= 2 && (limits.aaeTreeWidth & (limits.aaeTreeWidth - 1)) === 0, 'tree width must be a power of two')
assert(Math.log2(limits.aaeTreeWidth) * 2 + Math.log2(limits.partitionsMax) <= 32, 'partition and segment bits must fit one 32-bit key hash')
assert(limits.aaeSegmentsPerFetchMax <= limits.aaeTreeWidth * limits.aaeTreeWidth, 'a fetch asks for at most every segment')
assert(limits.aaeKeysReplyBytesMax + limits.aaeKeysPerReplyMax * (limits.keyBytesMax + 64) < limits.frameBytesMax,
  'an aaeKeys reply (its state budget, or one state alone, with its keys) must fit one frame')
assert(limits.aaeRepairKeysPerSecond > 0 && limits.aaeRepairBytesPerSecond >= limits.stateBytesMax, 'repair must be able to move the largest state')
assert(limits.aaeConfirmDelayMs >= 0 && limits.aaeConfirmDelayMs + limits.aaeSweepIntervalMs < 60_000 / 4, 'a difference is confirmed well within the one-minute repair cadence')
assert(limits.aaeExchangeIntervalMs * limits.partitionsDefault * 2 < 60_000, 'a full pass over the default ring with two peers must take under a minute')
assert(limits.aaeRequestTimeoutMs <= limits.requestTimeoutMsMax, 'exchange timeout above the request timeout max')
assert(limits.tombstoneReapsPerRoundMax <= limits.tombstonesTrackedPerPartitionMax, 'reaps per round above tracked tombstones')
assert(limits.hintsPerTargetMax <= limits.hintsTotalMax && limits.hintBytesPerTargetMax <= limits.hintBytesTotalMax,
  'one owner\'s hints must fit the store\'s total')
assert(limits.hintBytesPerTargetMax >= limits.stateBytesMax, 'one hint of the largest state must fit an owner\'s bound')
assert(limits.hintSegmentBytes >= 2 * limits.frameBytesMax && limits.hintSegmentsMax >= 2, 'a hint segment holds several of the largest records; rotation needs two segments')
assert(limits.hintReplayInflightMax <= limits.hintReplayPerSecond, 'in-flight replays above the replay rate')
assert(limits.hintReplayIntervalMs < limits.hintReplayBackoffMs && limits.hintReplayTimeoutMs <= limits.requestTimeoutMsMax,
  'the replayer looks more often than it backs off, and its deadline is a request deadline')
assert(limits.hintGroupRecordsMax >= limits.frameMessagesMax, 'a hint group must cover one full frame of writes')

export type Limits = typeof limits

// A ringkv replica process on Node: opens its storage engine, serves the Hono HTTP routes (health,
// ring, metrics, the KV gateway, handoff transfers) and the WebSocket data plane on one port, and shuts down cleanly
// on SIGTERM/SIGINT. Membership (docs/membership.md) starts either static, every replica told the
// whole cluster with `--nodes` and computing the same first ring from it (the claim is
// deterministic), or by `--join URL` of any member; from then on it changes by gossip (join, leave,
// remove), driven by replica/membership/membership-service.ts, and partitions move by handoff.
//
//   node --import tsx replica/node/main.ts --id n1 --port 7001 --data-dir .data/n1 \
//        --nodes n1=ws://127.0.0.1:7001,n2=ws://127.0.0.1:7002,n3=ws://127.0.0.1:7003
//        [--auth-file auth.json --cluster-secret-file secret] [--tls-cert c.pem --tls-key k.pem --tls-ca ca.pem]
//   node --import tsx replica/node/main.ts --id n4 --port 7004 --data-dir .data/n4 --join ws://127.0.0.1:7001

import { bodyLimit } from 'hono/body-limit'
import type { Server } from 'node:http'
import { chmod, mkdir, readdir, stat } from 'node:fs/promises'
import { resolve } from 'node:path'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { turnCachedClock } from '../../coordinator/metrics/turn-clock.ts'
import { parseArgs } from 'node:util'
import WebSocket from 'ws'
import { z } from 'zod'
import { createGatewayApp } from '../../coordinator/http/gateway.ts'
import { KvCoordinator } from '../../coordinator/kv-coordinator.ts'
import { limits } from '../../coordinator/limits.ts'
import { createRing, type Ring, type RingNode } from '../../coordinator/ring/ring.ts'
import { nodeWebSocket, systemRuntime } from '../../coordinator/runtime.ts'
import type { Context } from 'hono'
import { asKvError, errorBody, httpStatusOf, KvError } from '../../coordinator/errors.ts'
import { ConnectionPool } from '../../coordinator/transport/connection-pool.ts'
import { describeIssues } from '../../coordinator/protocol/messages.ts'
import { PartitionDropper } from '../handoff/partition-drop.ts'
import { HandoffManager } from '../handoff/handoff-manager.ts'
import { openHintLog } from '../hints/hint-log.ts'
import { HintReplayer } from '../hints/hint-replayer.ts'
import { defaultHintBounds, HintStore, type HintBounds } from '../hints/hint-store.ts'
import { MembershipService } from '../membership/membership-service.ts'
import { loadMembership, MembershipFile } from '../membership/membership-file.ts'
import { ReplicaService } from '../replica-service.ts'
import { AntiEntropy, type AaePeer } from '../aae/anti-entropy.ts'
import { Connection } from '../../coordinator/transport/connection.ts'
import { restoreFromSnapshot, type RestoreResult } from '../snapshot/restore.ts'
import { S3ObjectStore, s3ConfigFromEnv, type S3Config } from '../snapshot/s3-store.ts'
import { Snapshotter, type SnapshotSummary } from '../snapshot/snapshotter.ts'
import { decodeState, mergeStates, settleStored } from '../state-codec.ts'
import { snapshotLimits } from '../snapshot/snapshot-limits.ts'
import { manifestFileName } from '../storage/disk-layout.ts'
import { openEngine } from '../storage/engine.ts'
import { storageLimits } from '../storage/storage-limits.ts'
import { actorOf, readIdentity, writeIdentity } from './identity.ts'
import { createAppServer, loadSecurity, type SecurityFiles } from './security.ts'
import { closeServer } from './http-server.ts'
import { renderMembershipMetrics, renderMetrics, type AdminCounters } from './metrics.ts'
import { installLastResort, isEntryPoint } from './process.ts'
import { attachDataPlane } from './ws-data-plane.ts'

export interface ReplicaConfig {
  readonly id: string
  readonly host: string
  readonly port: number
  readonly dataDir: string
  /** Static start: every node of the first ring. Empty when `join` is set. */
  readonly nodes: readonly RingNode[]
  /** Join the cluster of this member's URL instead of a static start. */
  readonly join: string | undefined
  readonly gossipIntervalMs: number
  readonly phiThreshold: number
  readonly partitions: number
  readonly n: number
  readonly valueBytesMax: number
  /** Cluster name: the S3 prefix is `<cluster>/<node>/`. */
  readonly cluster: string
  /** Where snapshots go; undefined = snapshots off (the replica says so in /health). */
  readonly s3: S3Config | undefined
  readonly snapshotBudgetBytes: number | undefined
  /** Memtable size at which it is flushed to a table (engine default when undefined). */
  readonly memtableBytesMax: number | undefined
  /** Auth, TLS and session files (security.ts); all optional. */
  readonly security: SecurityFiles
  /** Handoff send rate and batch size (limits.ts defaults when undefined). */
  readonly handoffBytesPerSec: number | undefined
  readonly handoffBatchBytes: number | undefined
  /** Keys per second the partition drop deletes (at most limits.handoffDropKeysPerSecond, the default). */
  readonly handoffDropKeysPerSec: number
  /** A tombstone every primary holds is reaped this long after it landed (docs/anti-entropy.md). */
  readonly tombstoneGraceMs: number
  /** Pause between two anti-entropy exchanges of the periodic loop. */
  readonly aaeIntervalMs: number
  /** The hint store's bounds (limits.ts defaults, lowered by flags). */
  readonly hintBounds: HintBounds
}

export function parseReplicaArgs(argv: string[]): ReplicaConfig {
  const { values } = parseArgs({
    args: argv,
    options: {
      id: { type: 'string' },
      host: { type: 'string', default: '127.0.0.1' },
      port: { type: 'string' },
      'data-dir': { type: 'string' },
      nodes: { type: 'string' },
      join: { type: 'string' },
      'gossip-interval-ms': { type: 'string', default: String(limits.gossipIntervalMsDefault) },
      'phi-threshold': { type: 'string', default: String(limits.phiThresholdDefault) },
      partitions: { type: 'string', default: String(limits.partitionsDefault) },
      n: { type: 'string', default: String(limits.nDefault) },
      'value-bytes-max': { type: 'string', default: String(limits.valueBytesDefault) },
      cluster: { type: 'string', default: process.env.RINGKV_CLUSTER ?? 'ringkv' },
      's3-endpoint': { type: 'string' },
      's3-bucket': { type: 'string' },
      's3-region': { type: 'string' },
      'snapshot-budget-bytes': { type: 'string' },
      'no-snapshots': { type: 'boolean', default: false },
      'memtable-bytes-max': { type: 'string' },
      'auth-file': { type: 'string' },
      'cluster-secret-file': { type: 'string' },
      'session-secret-file': { type: 'string' },
      'tls-cert': { type: 'string' },
      'tls-key': { type: 'string' },
      'tls-ca': { type: 'string' },
      'handoff-bytes-per-sec': { type: 'string' },
      'handoff-drop-keys-per-sec': { type: 'string' },
      'handoff-batch-bytes': { type: 'string' },
      'tombstone-grace-ms': { type: 'string', default: String(limits.tombstoneGraceMsDefault) },
      'aae-interval-ms': { type: 'string', default: String(limits.aaeExchangeIntervalMs) },
      'hints-per-target-max': { type: 'string' },
      'hints-max': { type: 'string' },
      'hint-window-ms': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  })
  if (values.help) {
    process.stdout.write(replicaUsage)
    process.exit(0)
  }
  const fail = (msg: string): never => { throw new Error(`replica config: ${msg}`) }
  const id = values.id ?? fail('--id is required')
  const port = Number(values.port ?? fail('--port is required'))
  if (!Number.isInteger(port) || port < 1 || port > 65535) fail(`--port must be 1..65535, got ${values.port}`)
  if (values.nodes !== undefined && values.join !== undefined) fail('give either --nodes (a static start) or --join URL, not both')
  if (values.join !== undefined && !/^wss?:\/\/[^\s]+$/.test(values.join)) fail(`--join must be a ws://host:port URL, got ${JSON.stringify(values.join)}`)
  const nodes = values.join !== undefined ? [] : (values.nodes ?? fail('--nodes (id=ws://host:port,...) or --join ws://host:port is required')).split(',').map(part => {
    const eq = part.indexOf('=')
    if (eq <= 0) fail(`--nodes entry ${JSON.stringify(part)} is not id=ws://host:port`)
    return { id: part.slice(0, eq), url: part.slice(eq + 1) }
  })
  if (values.join === undefined && !nodes.some(n => n.id === id)) fail(`--nodes does not name this replica (${id})`)
  const gossipIntervalMs = Number(values['gossip-interval-ms'])
  // 0 turns gossip off (membership stays as started; tests that count connections exactly use it).
  if (!(Number.isInteger(gossipIntervalMs) && (gossipIntervalMs === 0 || (gossipIntervalMs >= limits.gossipIntervalMsMin && gossipIntervalMs <= limits.gossipIntervalMsMax)))) {
    fail(`--gossip-interval-ms must be 0 (off) or an integer from ${limits.gossipIntervalMsMin} to ${limits.gossipIntervalMsMax}`)
  }
  const phiThreshold = Number(values['phi-threshold'])
  if (!(Number.isFinite(phiThreshold) && phiThreshold > 0 && phiThreshold <= limits.phiThresholdMax)) fail(`--phi-threshold must be a number above 0 and at most ${limits.phiThresholdMax}`)
  const valueBytesMax = Number(values['value-bytes-max'])
  if (!(Number.isInteger(valueBytesMax) && valueBytesMax > 0 && valueBytesMax <= limits.valueBytesMax)) fail(`--value-bytes-max must be 1..${limits.valueBytesMax}`)
  const s3Flags = {
    ...(values['s3-endpoint'] ? { endpoint: values['s3-endpoint'] } : {}),
    ...(values['s3-bucket'] ? { bucket: values['s3-bucket'] } : {}),
    ...(values['s3-region'] ? { region: values['s3-region'] } : {}),
  }
  // Snapshots are on whenever an endpoint is named (flag or S3_ENDPOINT); then the rest must be valid.
  const s3 = values['no-snapshots'] || !(s3Flags.endpoint || process.env.S3_ENDPOINT) ? undefined : s3ConfigFromEnv(process.env, s3Flags)
  const budget = values['snapshot-budget-bytes'] === undefined ? undefined : Number(values['snapshot-budget-bytes'])
  if (budget !== undefined && !(Number.isInteger(budget) && budget > 0)) fail('--snapshot-budget-bytes must be a positive integer')
  if (!/^[A-Za-z0-9._-]{1,64}$/.test(values.cluster!)) fail(`--cluster must be letters, digits, . _ - (got ${values.cluster})`)
  const memtable = values['memtable-bytes-max'] === undefined ? undefined : Number(values['memtable-bytes-max'])
  if (memtable !== undefined && !(Number.isInteger(memtable) && memtable >= storageLimits.memtableBytesMin && memtable <= storageLimits.memtableBytesMax)) {
    fail(`--memtable-bytes-max must be an integer from ${storageLimits.memtableBytesMin} to ${storageLimits.memtableBytesMax}`)
  }
  const handoffRate = values['handoff-bytes-per-sec'] === undefined ? undefined : Number(values['handoff-bytes-per-sec'])
  if (handoffRate !== undefined && !(Number.isInteger(handoffRate) && handoffRate >= 1 && handoffRate <= limits.handoffBytesPerSecMax)) {
    fail(`--handoff-bytes-per-sec must be an integer from 1 to ${limits.handoffBytesPerSecMax}`)
  }
  const handoffBatch = values['handoff-batch-bytes'] === undefined ? undefined : Number(values['handoff-batch-bytes'])
  if (handoffBatch !== undefined && !(Number.isInteger(handoffBatch) && handoffBatch >= limits.handoffBatchBytesMin && handoffBatch <= limits.handoffBatchBytesMax)) {
    fail(`--handoff-batch-bytes must be an integer from ${limits.handoffBatchBytesMin} to ${limits.handoffBatchBytesMax}`)
  }
  const bounded = (flag: string, value: string | undefined, max: number): number => {
    if (value === undefined) return max
    const v = Number(value)
    return Number.isInteger(v) && v >= 1 && v <= max ? v : fail(`--${flag} must be an integer from 1 to ${max}, got ${value}`)
  }
  const hintBounds: HintBounds = {
    ...defaultHintBounds,
    perTargetMax: bounded('hints-per-target-max', values['hints-per-target-max'], limits.hintsPerTargetMax),
    totalMax: bounded('hints-max', values['hints-max'], limits.hintsTotalMax),
    windowMs: bounded('hint-window-ms', values['hint-window-ms'], limits.hintWindowMs),
  }
  const tombstoneGraceMs = Number(values['tombstone-grace-ms'])
  if (!(Number.isSafeInteger(tombstoneGraceMs) && tombstoneGraceMs >= 0)) fail(`--tombstone-grace-ms must be a non-negative integer, got ${values['tombstone-grace-ms']}`)
  const aaeIntervalMs = Number(values['aae-interval-ms'])
  if (!(Number.isSafeInteger(aaeIntervalMs) && aaeIntervalMs >= 1)) fail(`--aae-interval-ms must be a positive integer, got ${values['aae-interval-ms']}`)
  return {
    security: {
      authFile: values['auth-file'], clusterSecretFile: values['cluster-secret-file'], sessionSecretFile: values['session-secret-file'],
      tlsCert: values['tls-cert'], tlsKey: values['tls-key'], tlsCa: values['tls-ca'],
    },
    handoffBytesPerSec: handoffRate, handoffBatchBytes: handoffBatch, tombstoneGraceMs, aaeIntervalMs,
    handoffDropKeysPerSec: bounded('handoff-drop-keys-per-sec', values['handoff-drop-keys-per-sec'], limits.handoffDropKeysPerSecond),
    cluster: values.cluster!, s3, snapshotBudgetBytes: budget, memtableBytesMax: memtable, hintBounds,
    id, host: values.host!, port, nodes, join: values.join, gossipIntervalMs, phiThreshold,
    dataDir: resolve(values['data-dir'] ?? fail('--data-dir is required')),
    partitions: Number(values.partitions), n: Number(values.n), valueBytesMax,
  }
}

/** POST /admin/transfer's body (HandoffManager checks the values against the ring). */
const transferRequestSchema = z.object({
  partition: z.number().int().nonnegative().max(limits.partitionsMax - 1),
  to: z.string().min(1).max(limits.nameCharsMax),
  toUrl: z.string().min(1).max(limits.urlCharsMax),
})

function iso(ms: number | null): string | null {
  return ms === null ? null : new Date(ms).toISOString()
}

const replicaUsage = `usage: node --import tsx replica/node/main.ts --id ID --port PORT --data-dir DIR
    (--nodes n1=ws://host:port,n2=ws://host:port,... | --join ws://host:port) [--host 127.0.0.1]
    [--partitions 256] [--n 3] [--gossip-interval-ms 1000] [--phi-threshold 8]
    [--value-bytes-max BYTES] [--memtable-bytes-max BYTES] [--cluster NAME]
    [--tombstone-grace-ms MS (default ${limits.tombstoneGraceMsDefault})] [--aae-interval-ms MS (default ${limits.aaeExchangeIntervalMs})]
    [--hints-per-target-max N] [--hints-max N] [--hint-window-ms MS]
    [--s3-endpoint URL --s3-bucket NAME --s3-region REGION | --no-snapshots] [--snapshot-budget-bytes BYTES]
    [--handoff-bytes-per-sec BYTES] [--handoff-batch-bytes BYTES] [--handoff-drop-keys-per-sec KEYS (at most ${limits.handoffDropKeysPerSecond})]
    [--auth-file FILE --cluster-secret-file FILE] [--session-secret-file FILE]
    [--tls-cert PEM --tls-key PEM] [--tls-ca PEM]   (serve https:// and wss://; check wss:// peers against the CA)
  S3 credentials from S3_ACCESS_KEY_ID / S3_SECRET_ACCESS_KEY (or AWS_*); S3_ENDPOINT etc. also work.
`

/**
 * Anti-entropy in /health, compactly: whether the trees are built, the exchange counts, and per
 * partition this replica is a primary of, how many seconds ago its last full pass started (null:
 * none yet), as one object keyed by partition.
 */
function aaeHealth(aae: AntiEntropy, now: number): Record<string, unknown> {
  const passes = aae.lastFullPasses()
  const agoS: Record<string, number | null> = {}
  let never = 0
  let oldest = 0
  for (const [p, t] of passes) {
    agoS[p] = t === null ? null : Math.round((now - t) / 1000)
    if (t === null) never++
    else oldest = Math.max(oldest, agoS[p]!)
  }
  return {
    ready: aae.isReady(), ...aae.counters,
    partitions: passes.size, partitionsNeverPassed: never, oldestFullPassAgoS: passes.size > never ? oldest : null,
    lastFullPassAgoS: agoS,
  }
}

/** The data dir and everything the replica creates in it are its own (files 0600 through the umask). */
const privateDirMode = 0o700

export interface RunningReplica {
  readonly server: Server
  close(): Promise<void>
  /** Called once this replica has left the cluster (or was removed); main exits 0 after closing. */
  onGone(fn: (status: 'left' | 'removed') => void): void
}

export async function startReplica(cfg: ReplicaConfig): Promise<RunningReplica> {
  const firstRing: Ring | undefined = cfg.join === undefined ? createRing({ nodes: cfg.nodes, partitions: cfg.partitions, n: cfg.n }) : undefined
  // Read before anything else is opened: a bad auth file or certificate stops the start at once.
  const security = loadSecurity(cfg.security, 'replica', cfg.cluster)
  const log = (msg: string, fields: Record<string, unknown> = {}) =>
    process.stderr.write(JSON.stringify({ t: new Date().toISOString(), node: cfg.id, msg, ...fields }) + '\n')
  await mkdir(cfg.dataDir, { recursive: true, mode: privateDirMode })
  // A data dir made by an older version (or by hand) may be open to other users: close it. Every
  // file under it is then out of their reach, whatever its own mode.
  const dirMode = (await stat(cfg.dataDir)).mode & 0o777
  if (dirMode !== privateDirMode) {
    await chmod(cfg.dataDir, privateDirMode)
    log('data dir was open to other users; set it to 0700', { dataDir: cfg.dataDir, was: dirMode.toString(8) })
  }
  const store = cfg.s3 ? new S3ObjectStore(cfg.s3) : undefined
  if (store) await store.ensureBucket().catch(e => log('S3 bucket check failed; snapshots will retry', { error: (e as Error).message }))
  let identity = await readIdentity(cfg.dataDir)
  if (identity && identity.node !== cfg.id) throw new Error(`data dir ${cfg.dataDir} belongs to replica ${identity.node}, not ${cfg.id}`)
  let restore: RestoreResult = { restored: false }
  let restoreError: string | undefined
  if (!identity) {
    // No NODE.json: this replica is new, or lost its disk (NODE.json is written before the engine
    // ever opens, so nothing here was served). If S3 holds a snapshot of it, come back from that;
    // a restore cut short by a crash left no MANIFEST.json and is simply done again. If S3 cannot be
    // reached, start empty (the other replicas hold the data, read repair brings it back) and say so
    // in /health rather than refuse to serve.
    if (store && !(await readdir(cfg.dataDir)).includes(manifestFileName)) {
      try {
        restore = await restoreFromSnapshot({ store, cluster: cfg.cluster, node: cfg.id, dataDir: cfg.dataDir, log })
      } catch (e) {
        restoreError = (e as Error).message
        log('restore from S3 failed; starting empty', { error: restoreError })
      }
    }
    // Without its data directory a replica cannot know which dots it issued before: it may never
    // have snapshotted, or have restored and crashed again before its next manifest. So it takes an
    // incarnation that cannot have been used: the wall clock in ms, and above any restored one
    // (Riak gives a vnode a fresh random id for the same reason).
    identity = { node: cfg.id, incarnation: Math.max(Date.now(), restore.restored ? restore.incarnation + 1 : 0) }
    await writeIdentity(cfg.dataDir, identity)
    if (restore.restored) {
      log('restored from S3 snapshot', { seq: restore.manifest.seq, tables: restore.tables, bytes: restore.bytes, behindMs: restore.behindMs, incarnation: identity.incarnation })
    }
  } else if (!identity.clean) {
    // The last process crashed, or failed to close its engine: a write is visible to reads before
    // its fsync, so a dot it made visible and never made durable may have reached other replicas by
    // read repair. Reissued, that dot would carry a second value, and every replica holding the first
    // would refuse (and never converge on) the key. A new incarnation never reissues one
    // (docs/versions.md; found by the simulator, seed 2, docs/simulation.md).
    const previous = identity.incarnation
    identity = { node: cfg.id, incarnation: Math.max(Date.now(), previous + 1) }
    log('previous process did not stop cleanly; new incarnation', { previous, incarnation: identity.incarnation })
  }
  // Not clean while this process runs; close() marks it clean once every write is durable.
  await writeIdentity(cfg.dataDir, { node: identity.node, incarnation: identity.incarnation })
  const engine = await openEngine({ dir: cfg.dataDir, merge: mergeStates, settle: settleStored, log, ...(cfg.memtableBytesMax ? { memtableBytesMax: cfg.memtableBytesMax } : {}) })
  const actor = actorOf(identity)
  const snapshotter = store ? new Snapshotter({
    engine, store, cluster: cfg.cluster, node: cfg.id, incarnation: identity.incarnation, dataDir: cfg.dataDir, log,
    ...(cfg.snapshotBudgetBytes !== undefined ? { bytesPendingBudget: cfg.snapshotBudgetBytes } : {}),
  }) : undefined
  // The budget check reads engine stats; refresh it at most every few milliseconds, not per write.
  let gateCheckedAt = 0
  let gate: KvError | undefined
  const writeGate = () => {
    if (!snapshotter) return undefined
    const now = Date.now()
    if (now - gateCheckedAt >= snapshotLimits.writeGateRefreshMs) {
      gateCheckedAt = now
      try { snapshotter.assertWithinBudget(); gate = undefined } catch (e) { gate = e as KvError }
    }
    return gate
  }
  // Every outbound peer connection (gossip, join, handoff, anti-entropy, hint replays, the gateway)
  // trusts the TLS CA and, with auth on, presents the cluster secret: peer-only messages need the
  // 'peer' role (messages.ts requestRoles), which only the secret grants.
  const runtime = systemRuntime(nodeWebSocket(WebSocket as never, limits.frameBytesMax, { ca: security.ca }))
  const peerToken = security.clusterSecret !== undefined ? { token: security.clusterSecret } : {}
  const selfUrl = cfg.nodes.find(n => n.id === cfg.id)?.url ?? `${security.tls ? 'wss' : 'ws'}://${cfg.host}:${cfg.port}`
  const handoff = new HandoffManager({
    nodeId: cfg.id, engine, partitions: cfg.partitions, dataDir: cfg.dataDir, runtime, log, ...peerToken,
    ...(cfg.handoffBytesPerSec !== undefined ? { bytesPerSec: cfg.handoffBytesPerSec } : {}),
    ...(cfg.handoffBatchBytes !== undefined ? { batchBytes: cfg.handoffBatchBytes } : {}),
  })
  let onGone: (status: 'left' | 'removed') => void = () => undefined
  // The members and ring this replica knew before its last stop, and where it keeps them.
  const membershipFile = new MembershipFile(cfg.dataDir, log)
  const saved = await loadMembership(cfg.dataDir)
  // Built after anti-entropy (it drops through the trees); membership tells it when its view changes.
  let dropper: PartitionDropper | undefined
  const members = new MembershipService({
    self: cfg.id, url: selfUrl, runtime, gossipIntervalMs: cfg.gossipIntervalMs, phiThreshold: cfg.phiThreshold,
    ...(firstRing ? { ring: firstRing } : {}), ...(saved ? { saved } : {}), save: s => membershipFile.save(s),
    handoff, log, onGone: status => onGone(status), ...peerToken,
    onView: () => dropper?.kick(),
  })
  // Hints for absent owners: their own log under hints/, read back before the replica serves.
  const opened = await openHintLog(cfg.dataDir)
  const hints = new HintStore({ log: opened.log, now: () => Date.now(), bounds: cfg.hintBounds, logLine: log })
  await hints.load(opened.records, opened.problems)
  // Anti-entropy and hint replay talk to other replicas over one pool of peer connections (hello
  // first, with the cluster secret), following the live ring; whether a peer is reachable is
  // membership's phi-accrual detector's call, not the pool's.
  const peerRuntime = systemRuntime(nodeWebSocket(WebSocket as never, limits.frameBytesMax, { ca: security.ca }))
  const peers = new ConnectionPool(peerRuntime, { client: `peer@${cfg.id}`, perReplica: 1, ...peerToken })
  const peerConnection = (node: string): Connection => peers.connectionTo(node, () => members.ring().nodes)
  let service: ReplicaService | undefined
  const aae = new AntiEntropy({
    nodeId: cfg.id, actor, engine, ring: () => members.ring(), runtime, isReachable: members.isReachable, log,
    peer: (node): AaePeer => ({ request: (type, body) => peerConnection(node).request(type, body, limits.aaeRequestTimeoutMs) }),
    applyState: (key, state) => service!.applyState(key, state),
    tombstoneGraceMs: cfg.tombstoneGraceMs, intervalMs: cfg.aaeIntervalMs,
  })
  // The partitions this replica no longer holds are deleted once a confirmed view says so
  // (docs/handoff.md, "Dropping what was handed off"); the trees are its index of what it stores.
  const drops = new PartitionDropper({
    store: aae, runtime, log, keysPerSecond: cfg.handoffDropKeysPerSec,
    ownership: { confirmedRingVersion: () => members.confirmedRingVersion(), holds: p => members.holds(p) || handoff.sending(p) },
  })
  dropper = drops
  service = new ReplicaService({
    nodeId: cfg.id, actor, engine, ring: () => members.ring(), valueBytesMax: cfg.valueBytesMax, writeGate, membership: members, hints, aae, auth: security.auth,
    onStored: (key, state) => handoff.onStored(key, state), now: turnCachedClock(() => performance.now()),
  })
  const eventLoop = monitorEventLoopDelay({ resolution: limits.eventLoopDelayResolutionMs })
  eventLoop.enable()
  const replayer = new HintReplayer({
    store: hints, ring: () => members.ring(), isReachable: members.isReachable, logLine: log, ttlMs: cfg.tombstoneGraceMs,
    send: async (node, key, state) => {
      await peerConnection(node).request('replicate', { key: new TextEncoder().encode(key), state: decodeState(state) }, limits.hintReplayTimeoutMs, state.byteLength)
    },
    now: () => Date.now(),
    setTimeout: (fn, ms) => peerRuntime.setTimeout(fn, ms, { background: true }),
    clearTimeout: h => peerRuntime.clearTimeout(h),
  })
  const restoreInfo = restore.restored
    ? { restoredFromSeq: restore.manifest.seq, snapshotCreatedAt: new Date(restore.createdAt).toISOString(), behindMsAtRestore: restore.behindMs }
    : restoreError ? { error: restoreError } : null
  // The replica's own HTTP gateway coordinates like any client, over the data plane; with auth on it
  // presents the cluster secret (it is this replica), after checking the HTTP caller's own token.
  const kv = new KvCoordinator({
    seeds: cfg.join !== undefined ? [cfg.join] : cfg.nodes.map(n => n.url), runtime,
    valueBytesMax: cfg.valueBytesMax, client: `gateway@${cfg.id}`, ...peerToken,
  })
  // What /health leads with: 'read-only' (503, so load balancers stop sending writes) while storage
  // refuses writes; 'degraded' (200: it serves, but needs attention) while snapshots fail or the
  // restore at start failed; each with the reasons.
  const condition = (): { status: 'ok' | 'degraded' | 'read-only'; reasons: string[] } => {
    const refusing: string[] = []
    const failure = engine.failure()
    if (failure !== undefined) refusing.push(`storage failed, writes refused until restart: ${failure}`)
    const gated = writeGate()
    if (gated) refusing.push(gated.message)
    if (refusing.length > 0) return { status: 'read-only', reasons: refusing }
    const attention: string[] = []
    const snap = snapshotter?.state()
    if (snap && snap.consecutiveFailures > 0) attention.push(`snapshots failing (${snap.consecutiveFailures} in a row): ${String(snap.lastError ?? '')}`)
    if (restoreError) attention.push(`restore from S3 failed at start: ${restoreError}`)
    return { status: attention.length > 0 ? 'degraded' : 'ok', reasons: attention }
  }
  const app = createGatewayApp({
    kv, role: 'replica', auth: security.auth, sessionKey: security.sessionKey,
    health: () => ({
      ...condition(),
      node: cfg.id, incarnation: identity.incarnation, actor,
      ring: { version: members.membership.state.ring?.version ?? 0 },
      member: members.isMember(),
      members: { total: members.members().filter(m => m.status !== 'left' && m.status !== 'removed').length, reachable: members.members().filter(m => m.reachable).length },
      dataDir: cfg.dataDir, storage: engine.stats(),
      snapshot: snapshotter ? { enabled: true, ...snapshotter.state(), lastManifestAt: iso(snapshotter.state().lastManifestAt) } : { enabled: false },
      restore: restoreInfo,
      antiEntropy: aaeHealth(aae, Date.now()),
      hints: hintsHealth(),
    }),
  })
  /** Hint backlog per owner, for /health. */
  const hintsHealth = () => {
    const backlog: Record<string, { hints: number; bytes: number; oldestAt: string | null }> = {}
    for (const [target, p] of hints.pending()) backlog[target] = { hints: p.hints, bytes: p.bytes, oldestAt: iso(p.oldestAt) }
    return { ...hints.stats(), ...hints.counters, replaysInflight: replayer.replaysInflight, backlog }
  }
  const admin: AdminCounters = { snapshotsStarted: 0, snapshotsShared: 0, snapshotsRefused: 0 }
  app.get('/metrics', c => {
    const s = snapshotter?.state()
    const extra = s ? { snapshotBytesPending: s.bytesPending, snapshotConsecutiveFailures: s.consecutiveFailures, snapshotLastManifestSeq: s.lastManifestSeq ?? 0 } : {}
    const handoffMetrics = { counters: handoff.counters, transfers: handoff.status(), drops: drops.status() }
    return c.text(renderMetrics(cfg.id, service!.counters, engine.stats(), extra, plane.stats, admin, hints, handoffMetrics, aae.counters,
      { requests: service!.latency, storage: engine.latency, eventLoop }) + renderMembershipMetrics(cfg.id, members), 200, { 'content-type': 'text/plain; version=0.0.4' })
  })
  // Partition handoff (docs/handoff.md): what is streaming, and a route to start a transfer by hand
  // (membership calls HandoffManager.transfer itself; this one is for tests and operators, and will
  // be admin-only). It answers 202 at once: progress is on GET /transfers.
  // `transfers`: this replica's own (handoff's view); `plan`: every transfer of the membership
  // plan in progress and whether its sender reported it done (ringkv transfers prints both).
  // `drops`: partitions this replica no longer holds and is deleting (partition-drop.ts).
  app.get('/transfers', c => c.json({ node: cfg.id, transfers: handoff.status(), ring: members.ringSummary(), plan: members.transfers(), drops: drops.status() }))
  const adminBody = bodyLimit({
    maxSize: limits.adminBodyBytesMax,
    onError: c => c.json({ error: { kind: 'TooLarge', message: `body over the ${limits.adminBodyBytesMax}-byte limit`, bytes: limits.adminBodyBytesMax + 1, bytesMax: limits.adminBodyBytesMax } }, 413),
  })
  app.post('/admin/transfer', adminBody, async c => {
    let body: unknown
    try { body = await c.req.json() } catch { body = undefined }
    const parsed = transferRequestSchema.safeParse(body)
    if (!parsed.success) {
      return c.json({ error: { kind: 'BadRequest', message: 'body must be {"partition": int, "to": "node id", "toUrl": "ws://host:port"}', issues: describeIssues(parsed.error) } }, 400)
    }
    const started = handoff.transfer(parsed.data)
    // Refusals (bad partition, closed) come back at once as 400/503; failures later are in /transfers.
    const refused = await Promise.race([started.then(() => undefined, (e: unknown) => e), new Promise<undefined>(ok => setImmediate(() => ok(undefined)))])
    if (refused instanceof KvError && (refused.kind === 'BadRequest' || refused.kind === 'Unavailable' || refused.kind === 'Overloaded')) {
      return c.json({ error: { ...refused.data, message: refused.message } }, httpStatusOf(refused.kind))
    }
    return c.json({ accepted: true, transfers: handoff.status().filter(t => t.partition === parsed.data.partition && t.to === parsed.data.to) }, 202)
  })
  // Ends the forwarding window of a transfer (what membership does once ownership has switched).
  app.post('/admin/stop-forwarding', adminBody, async c => {
    let body: unknown
    try { body = await c.req.json() } catch { body = undefined }
    const parsed = transferRequestSchema.pick({ partition: true, to: true }).safeParse(body)
    if (!parsed.success) return c.json({ error: { kind: 'BadRequest', message: 'body must be {"partition": int, "to": "node id"}', issues: describeIssues(parsed.error) } }, 400)
    handoff.stopForwarding(parsed.data.partition, parsed.data.to)
    return c.json({ ok: true })
  })
  // On-demand anti-entropy (`ringkv repair [--partition P]`): POST queues the exchanges of every
  // partition this replica is a primary of (or of one), GET reports how far the repair got.
  app.post('/admin/repair', c => {
    const p = c.req.query('partition')
    const partition = p === undefined ? undefined : Number(p)
    try {
      return c.json({ ok: true, repair: aae.repair(partition) }, 202)
    } catch (e) {
      const err = e instanceof KvError ? e : new KvError({ kind: 'Internal' }, String(e))
      return c.json({ error: { kind: err.kind, message: err.message } }, err.kind === 'NotPrimary' ? 409 : 400)
    }
  })
  app.get('/admin/repair', c => c.json({ ready: aae.isReady(), repair: aae.repairJob() ?? null }))
  // Flush and upload now; answers once the new manifest is in S3. Each call used to flush the
  // memtable (40 calls made 40 tiny tables and 12 compactions), so calls while one runs share it,
  // and a new one starts at most once per adminSnapshotIntervalMs; others get 429 Overloaded.
  let snapshotInFlight: Promise<SnapshotSummary> | undefined
  let snapshotStartedAt = -Infinity
  app.post('/admin/snapshot', async c => {
    if (!snapshotter) return c.json({ error: { kind: 'BadRequest', message: 'snapshots are off: start the replica with --s3-endpoint or S3_ENDPOINT' } }, 400)
    if (snapshotInFlight) {
      admin.snapshotsShared++
    } else {
      const retryAfterMs = Math.ceil(snapshotStartedAt + limits.adminSnapshotIntervalMs - Date.now())
      if (retryAfterMs > 0) {
        admin.snapshotsRefused++
        c.header('retry-after', String(Math.ceil(retryAfterMs / 1000)))
        return c.json({ error: { kind: 'Overloaded', message: `a snapshot was started less than ${limits.adminSnapshotIntervalMs} ms ago`, retryAfterMs } }, 429)
      }
      admin.snapshotsStarted++
      snapshotStartedAt = Date.now()
      snapshotInFlight = snapshotter.snapshotNow().finally(() => { snapshotInFlight = undefined })
    }
    const summary = await snapshotInFlight
    return c.json({ ok: true, ...summary, createdAt: new Date(summary.createdAt).toISOString() })
  })
  // Membership: the members as this replica sees them, the transfers of the plan in progress, and
  // the operator's leave and remove (docs/membership.md).
  app.get('/members', c => c.json({ ring: members.ringSummary(), members: members.members() }))
  const adminMember = (status: 'leaving' | 'removed') => (c: Context) => {
    const node = c.req.param('node') ?? ''
    try {
      members.setStatus(node, status)
      return c.json({ ok: true, node, status })
    } catch (e) {
      const k = asKvError(e, status)
      return c.json({ error: errorBody(k) }, httpStatusOf(k.kind))
    }
  }
  app.post('/admin/leave/:node', adminMember('leaving'))
  app.post('/admin/remove/:node', adminMember('removed'))
  const server = createAppServer(app.fetch, security.tls)
  const plane = attachDataPlane(server, service)
  await new Promise<void>((ok, fail) => {
    server.once('error', fail)
    server.listen(cfg.port, cfg.host, () => { server.off('error', fail); ok() })
  })
  // Token names and roles only, never a token.
  log('listening', {
    url: `${security.tls ? 'wss' : 'ws'}://${cfg.host}:${cfg.port}`, actor, keys: engine.stats().keysApprox, hints: hints.stats().hints,
    auth: security.auth ? security.auth.summary() : 'off', tls: security.tls !== undefined,
  })
  if (cfg.join !== undefined) {
    try {
      await members.join(cfg.join)
    } catch (e) {
      // Said first: the cleanup below must not be what hides why the join failed.
      log('join failed', { seed: cfg.join, error: (e as Error).message })
      members.close()
      plane.close()
      await closeServer(server)
      await engine.close()
      throw e
    }
    log('joining', { seed: cfg.join, ringVersion: members.membership.state.ring?.version })
  }
  members.start()
  replayer.start()
  // Trees are rebuilt over the ring's partitions, which a joining replica knows only now.
  void aae.start().then(() => drops.kick(), () => undefined)
  const running: RunningReplica = {
    server,
    onGone(fn) { onGone = fn },
    async close() {
      members.close()
      await membershipFile.flushed()
      eventLoop.disable()
      aae.close()
      await drops.close()
      replayer.stop()
      peers.close()
      await handoff.close()
      kv.close()
      await snapshotter?.close()
      plane.close()
      await closeServer(server)
      await engine.close()
      await hints.close()
      // Every write it made visible is durable (a failed engine is not clean: its last writes failed).
      if (engine.failure() === undefined) await writeIdentity(cfg.dataDir, { node: identity.node, incarnation: identity.incarnation, clean: true })
    },
  }
  return running
}

/**
 * True when this module is the process's entry point. Compared as real paths: the cluster launcher
 * runs a bundle under node_modules/.cache, and where node_modules is a symlink (a git worktree
 * sharing one install) import.meta.url names the link's target, so a plain string comparison
 * silently skipped main and the replica exited 0 at once.
 */
if (isEntryPoint(import.meta.url)) {
  // Before anything is created: files 0600 and directories 0700 (they were 0644 and 0755), whatever
  // the engine, the WAL or a restore passes as their mode.
  process.umask(0o077)
  const cfg = parseReplicaArgs(process.argv.slice(2))
  installLastResort(cfg.id)
  startReplica(cfg).then(replica => {
    const stop = () => { replica.close().then(() => process.exit(0), () => process.exit(1)) }
    replica.onGone(stop)
    process.once('SIGTERM', stop)
    process.once('SIGINT', stop)
  }, e => {
    process.stderr.write(`replica ${cfg.id} failed to start: ${(e as Error).stack ?? e}\n`)
    process.exit(1)
  })
}

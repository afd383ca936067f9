// A ringkv replica process on Node: opens its storage engine, serves the Hono HTTP routes (health,
// ring, metrics, the KV gateway) and the WebSocket data plane on one port, and shuts down cleanly
// on SIGTERM/SIGINT. Membership is static for now: every replica is told the whole cluster and
// computes the same ring from it (the claim is deterministic).
//
//   node --import tsx replica/node/main.ts --id n1 --port 7001 --data-dir .data/n1 \
//        --nodes n1=ws://127.0.0.1:7001,n2=ws://127.0.0.1:7002,n3=ws://127.0.0.1:7003
//        [--auth-file auth.json --cluster-secret-file secret] [--tls-cert c.pem --tls-key k.pem --tls-ca ca.pem]

import type { Server } from 'node:http'
import { chmod, mkdir, readdir, stat } from 'node:fs/promises'
import { resolve } from 'node:path'
import { parseArgs } from 'node:util'
import WebSocket from 'ws'
import { createGatewayApp } from '../../coordinator/http/gateway.ts'
import { KvCoordinator } from '../../coordinator/kv-coordinator.ts'
import { limits } from '../../coordinator/limits.ts'
import { createRing, type Ring, type RingNode } from '../../coordinator/ring/ring.ts'
import { nodeWebSocket, systemRuntime } from '../../coordinator/runtime.ts'
import { KvError } from '../../coordinator/errors.ts'
import { ConnectionPool } from '../../coordinator/transport/connection-pool.ts'
import { openHintLog } from '../hints/hint-log.ts'
import { HintReplayer } from '../hints/hint-replayer.ts'
import { defaultHintBounds, HintStore, type HintBounds } from '../hints/hint-store.ts'
import { ReplicaService } from '../replica-service.ts'
import { restoreFromSnapshot, type RestoreResult } from '../snapshot/restore.ts'
import { S3ObjectStore, s3ConfigFromEnv, type S3Config } from '../snapshot/s3-store.ts'
import { Snapshotter, type SnapshotSummary } from '../snapshot/snapshotter.ts'
import { decodeState, mergeStates } from '../state-codec.ts'
import { snapshotLimits } from '../snapshot/snapshot-limits.ts'
import { manifestFileName } from '../storage/disk-layout.ts'
import { openEngine } from '../storage/engine.ts'
import { storageLimits } from '../storage/storage-limits.ts'
import { actorOf, readIdentity, writeIdentity } from './identity.ts'
import { createAppServer, loadSecurity, type SecurityFiles } from './security.ts'
import { renderMetrics, type AdminCounters } from './metrics.ts'
import { installLastResort, isEntryPoint } from './process.ts'
import { attachDataPlane } from './ws-data-plane.ts'

export interface ReplicaConfig {
  readonly id: string
  readonly host: string
  readonly port: number
  readonly dataDir: string
  readonly nodes: readonly RingNode[]
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
  const nodes = (values.nodes ?? fail('--nodes is required (id=ws://host:port,...)')).split(',').map(part => {
    const eq = part.indexOf('=')
    if (eq <= 0) fail(`--nodes entry ${JSON.stringify(part)} is not id=ws://host:port`)
    return { id: part.slice(0, eq), url: part.slice(eq + 1) }
  })
  if (!nodes.some(n => n.id === id)) fail(`--nodes does not name this replica (${id})`)
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
  return {
    security: {
      authFile: values['auth-file'], clusterSecretFile: values['cluster-secret-file'], sessionSecretFile: values['session-secret-file'],
      tlsCert: values['tls-cert'], tlsKey: values['tls-key'], tlsCa: values['tls-ca'],
    },
    cluster: values.cluster!, s3, snapshotBudgetBytes: budget, memtableBytesMax: memtable, hintBounds,
    id, host: values.host!, port, nodes,
    dataDir: resolve(values['data-dir'] ?? fail('--data-dir is required')),
    partitions: Number(values.partitions), n: Number(values.n), valueBytesMax,
  }
}

function iso(ms: number | null): string | null {
  return ms === null ? null : new Date(ms).toISOString()
}

const replicaUsage = `usage: node --import tsx replica/node/main.ts --id ID --port PORT --data-dir DIR
    --nodes n1=ws://host:port,n2=ws://host:port,... [--host 127.0.0.1] [--partitions 256] [--n 3]
    [--value-bytes-max BYTES] [--memtable-bytes-max BYTES] [--cluster NAME]
    [--hints-per-target-max N] [--hints-max N] [--hint-window-ms MS]
    [--s3-endpoint URL --s3-bucket NAME --s3-region REGION | --no-snapshots] [--snapshot-budget-bytes BYTES]
    [--auth-file FILE --cluster-secret-file FILE] [--session-secret-file FILE]
    [--tls-cert PEM --tls-key PEM] [--tls-ca PEM]   (serve https:// and wss://; check wss:// peers against the CA)
  S3 credentials from S3_ACCESS_KEY_ID / S3_SECRET_ACCESS_KEY (or AWS_*); S3_ENDPOINT etc. also work.
`

/** The data dir and everything the replica creates in it are its own (files 0600 through the umask). */
const privateDirMode = 0o700

export interface RunningReplica { readonly server: Server; close(): Promise<void> }

export async function startReplica(cfg: ReplicaConfig): Promise<RunningReplica> {
  const ring: Ring = createRing({ nodes: cfg.nodes, partitions: cfg.partitions, n: cfg.n })
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
  }
  const engine = await openEngine({ dir: cfg.dataDir, merge: mergeStates, log, ...(cfg.memtableBytesMax ? { memtableBytesMax: cfg.memtableBytesMax } : {}) })
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
  // Hints for absent owners: their own log under hints/, read back before the replica serves.
  const opened = await openHintLog(cfg.dataDir)
  const hints = new HintStore({ log: opened.log, now: () => Date.now(), bounds: cfg.hintBounds, logLine: log })
  await hints.load(opened.records, opened.problems)
  const service = new ReplicaService({ nodeId: cfg.id, actor, engine, ring: () => ring, valueBytesMax: cfg.valueBytesMax, writeGate, hints, auth: security.auth })
  // Replays go out on connections of their own. Reachability stand-in until membership's failure
  // detector lands: an owner is reachable when this pool's connection to it is up (never failed, or
  // reconnected after its backoff); swap `isReachable` for the detector's.
  const peerRuntime = systemRuntime(nodeWebSocket(WebSocket as never, limits.frameBytesMax, { ca: security.ca }))
  const peers = new ConnectionPool(peerRuntime, { client: `hints@${cfg.id}`, perReplica: 1, ...(security.clusterSecret !== undefined ? { token: security.clusterSecret } : {}) })
  peers.setNodes(ring.nodes)
  const replayer = new HintReplayer({
    store: hints, ring: () => ring, isReachable: peers.isUp, logLine: log,
    send: async (node, key, state) => {
      const conn = peers.get(node)
      if (conn === undefined) throw peers.whyDown(node)
      await conn.request('replicate', { key: new TextEncoder().encode(key), state: decodeState(state) }, limits.hintReplayTimeoutMs, state.byteLength)
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
    seeds: cfg.nodes.map(n => n.url), runtime: systemRuntime(nodeWebSocket(WebSocket as never, limits.frameBytesMax, { ca: security.ca })),
    valueBytesMax: cfg.valueBytesMax, client: `gateway@${cfg.id}`, ...(security.clusterSecret !== undefined ? { token: security.clusterSecret } : {}),
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
      node: cfg.id, incarnation: identity.incarnation, actor, dataDir: cfg.dataDir, storage: engine.stats(),
      snapshot: snapshotter ? { enabled: true, ...snapshotter.state(), lastManifestAt: iso(snapshotter.state().lastManifestAt) } : { enabled: false },
      restore: restoreInfo,
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
    return c.text(renderMetrics(cfg.id, service.counters, engine.stats(), extra, plane.stats, admin, hints), 200, { 'content-type': 'text/plain; version=0.0.4' })
  })
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
  const server = createAppServer(app.fetch, security.tls)
  const plane = attachDataPlane(server, service)
  await new Promise<void>((ok, fail) => {
    server.once('error', fail)
    server.listen(cfg.port, cfg.host, () => { server.off('error', fail); ok() })
  })
  replayer.start()
  // Token names and roles only, never a token.
  log('listening', {
    url: `${security.tls ? 'wss' : 'ws'}://${cfg.host}:${cfg.port}`, actor, keys: engine.stats().keysApprox, hints: hints.stats().hints,
    auth: security.auth ? security.auth.summary() : 'off', tls: security.tls !== undefined,
  })
  return {
    server,
    async close() {
      replayer.stop()
      peers.close()
      kv.close()
      await snapshotter?.close()
      plane.close()
      await new Promise<void>(ok => server.close(() => ok()))
      await engine.close()
      await hints.close()
    },
  }
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
    process.once('SIGTERM', stop)
    process.once('SIGINT', stop)
  }, e => {
    process.stderr.write(`replica ${cfg.id} failed to start: ${(e as Error).stack ?? e}\n`)
    process.exit(1)
  })
}

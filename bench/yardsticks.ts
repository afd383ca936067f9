// Yardsticks for `npm run bench -- --yardsticks` (bench/ycsb.ts): etcd and Redis, started by the
// bench on this machine, in the same invocation, right after the ringkv run and one at a time, and
// measured with the same value size and the same number of operations in flight. Our figures alone
// say little on a shared 2-core machine whose speed drifts by the minute; beside an established
// store's figures from the same minutes they say where ringkv stands.
//
// etcd: 3 members on 127.0.0.1 (a Raft group, every write fsynced by a majority before the ack, as
// ringkv fsyncs W=2 of N=3), data in a temp dir, started as child processes, health-checked, and
// killed at the end, on error and on SIGINT. It is driven by the same closed-loop and open-loop
// runners as ringkv (bench/phases.ts), requests spread round-robin over the three members as
// etcd's own client balances them. By default over etcd's native API, gRPC (HTTP/2 with protobuf,
// spoken here with node:http2: one connection per member multiplexing every request, as the ringkv
// SDK multiplexes over one WebSocket per replica; etcd's own benchmark tool speaks it too, and
// Debian's package does not ship that tool). With --etcd-api json, over the v3 JSON gateway instead
// (HTTP/1.1 keep-alive, one request per connection at a time; the gateway translates to gRPC inside
// etcd, which costs etcd CPU, so it handicaps etcd). Gets are linearizable range reads (ReadIndex
// through the leader) unless --etcd-reads serializable (a member answers from its own state).
//
// Redis: one redis-server with AOF, appendfsync everysec (acks before the fsync: up to a second of
// acked writes can be lost, where ringkv and etcd fsync before acking), no RDB snapshots, data in a
// temp dir; measured by redis-benchmark (a C client, cheaper per request than our Node clients)
// with -c C -d B -r records: SET over `records` operations, then GET over `ops`. Closed loop only:
// redis-benchmark has no fixed-rate mode.
//
// A binary not on PATH is reported as not installed (bench/install-yardsticks.sh installs them)
// and the bench goes on; a yardstick that fails to start is reported as failed, with its log.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { closeSync, openSync, readFileSync } from 'node:fs'
import { appendFile, mkdtemp, rm } from 'node:fs/promises'
import http from 'node:http'
import http2 from 'node:http2'
import { connect, createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { limits } from '../coordinator/limits.ts'
import {
  runClosedLoop, runOpenLoop, summarize, summarizeOpenLoop, mergeErrors, YardstickError,
  type OpSummary, type OpenLoopSummary, type Progress, type StartOp,
} from './phases.ts'

// ---------------------------------------------------------------------------------------------
// Bounds (bench-only, so they live here rather than in coordinator/limits.ts)

/** Longest the three etcd members may take to elect a leader and report healthy. */
const ETCD_START_TIMEOUT_MS = 30_000
/** Longest redis-server may take to answer PING. */
const REDIS_START_TIMEOUT_MS = 10_000
/** Between two health probes while a yardstick starts. */
const HEALTH_POLL_MS = 100
/** One health probe (an HTTP GET or a PING). */
const HEALTH_PROBE_TIMEOUT_MS = 1000
/** A child asked to stop (SIGTERM) is killed (SIGKILL) after this. */
const CHILD_STOP_GRACE_MS = 5000
/** `--version` of a binary must answer within this. */
const VERSION_TIMEOUT_MS = 5000
/** One etcd request, as long as a ringkv SDK request may take by default (fair to both). */
const ETCD_REQUEST_TIMEOUT_MS = limits.requestTimeoutMsDefault
/** etcd's defaults for request size and backend quota, and the largest quota it recommends. */
const ETCD_MAX_REQUEST_BYTES_DEFAULT = 1.5 * 1024 * 1024
const ETCD_QUOTA_BYTES_DEFAULT = 2 * 1024 * 1024 * 1024
const ETCD_QUOTA_BYTES_MAX = 8 * 1024 * 1024 * 1024
/** Per stored revision beyond key and value: bbolt page and MVCC index overhead, estimated generously. */
const ETCD_REVISION_OVERHEAD_BYTES = 512
/** Distinct random values each load generator cycles through (the same as the ringkv run). */
const VALUE_POOL = 256
/** Lines of a failed child's log printed with the error. */
const LOG_TAIL_LINES = 20

// ---------------------------------------------------------------------------------------------
// Configuration shared with bench/ycsb.ts

export interface YardstickShape {
  readonly concurrency: number
  readonly valueBytes: number
  readonly records: number
  readonly ops: number
  /** Share of reads in the run phase (workload A 0.5, B 0.95, C 1). */
  readonly readFraction: number
  /** The run phase's key chooser (Zipfian or uniform over the records), the same as ringkv's. */
  readonly nextKey: () => number
  readonly keyOf: (i: number) => string
  readonly maxSeconds: number
  /** Open-loop rate (ops/s), or undefined for closed loop only. */
  readonly rate: number | undefined
  readonly maxOutstanding: number
  readonly etcdApi: 'grpc' | 'json'
  readonly etcdReads: 'linearizable' | 'serializable'
  /** Loopback ports the yardsticks may listen on, inclusive. */
  readonly portLo: number
  readonly portHi: number
  readonly isAborted: () => boolean
  readonly progress: Progress
  readonly note: (s: string) => void
}

export type Unavailable = { status: 'not installed'; missing: string[]; hint: string } | { status: 'failed'; error: string } | { status: 'skipped'; reason: string }

export interface EtcdResult {
  status: 'ok'
  version: string
  api: string
  reads: 'linearizable' | 'serializable'
  members: string[]
  load: { opsPerSec: number; seconds: number; timedOut: boolean; put: OpSummary | null; errors: Record<string, number> }
  run: { opsPerSec: number; seconds: number; timedOut: boolean; get: OpSummary | null; put: OpSummary | null; errors: Record<string, number>; notFound: number }
  open: { puts: OpenLoopSummary; run: OpenLoopSummary } | null
}

export interface RedisOpResult { requests: number; opsPerSec: number; avgUs: number; p50Us: number; p95Us: number; p99Us: number; p999Us: number | null; maxUs: number }
export interface RedisResult {
  status: 'ok'
  version: string
  config: string
  set: RedisOpResult | { status: 'failed'; error: string }
  get: RedisOpResult | { status: 'failed'; error: string }
}

// ---------------------------------------------------------------------------------------------
// Child processes: every one is registered the moment it is spawned, so no exit path orphans it.

const children = new Set<ChildProcess>()
const tempDirs = new Set<string>()

const alive = (p: ChildProcess): boolean => p.exitCode === null && p.signalCode === null

function spawnTracked(cmd: string, args: string[], logPath: string | undefined): ChildProcess {
  const fd = logPath === undefined ? undefined : openSync(logPath, 'a')
  try {
    const p = spawn(cmd, args, { stdio: ['ignore', fd ?? 'pipe', fd ?? 'pipe'] })
    children.add(p)
    p.once('exit', () => children.delete(p))
    // A spawn failure (ENOENT after the PATH check, EACCES) arrives as 'error', then 'exit' may not.
    p.once('error', () => children.delete(p))
    return p
  } finally {
    if (fd !== undefined) closeSync(fd)
  }
}

async function stopChild(p: ChildProcess): Promise<void> {
  if (!alive(p)) return
  const exited = new Promise<void>(ok => p.once('exit', () => ok()))
  p.kill('SIGTERM')
  let timer: NodeJS.Timeout | undefined
  const killed = new Promise<void>(ok => {
    timer = setTimeout(() => { if (alive(p)) p.kill('SIGKILL'); ok() }, CHILD_STOP_GRACE_MS)
  })
  await Promise.race([exited, killed])
  clearTimeout(timer)
}

/** Stops every yardstick process still running and removes their temp dirs (SIGINT, errors). */
export async function stopYardsticks(): Promise<void> {
  await Promise.all([...children].map(stopChild))
  await Promise.all([...tempDirs].map(d => rm(d, { recursive: true, force: true }).catch(() => undefined)))
  tempDirs.clear()
}

/** Last resort from a process 'exit' handler (synchronous): kill what is left. */
export function killYardsticksNow(): void {
  for (const p of children) if (alive(p)) p.kill('SIGKILL')
}

function onPath(bin: string): boolean {
  const r = spawnSync(bin, ['--version'], { stdio: 'ignore', timeout: VERSION_TIMEOUT_MS })
  return !(r.error && (r.error as NodeJS.ErrnoException).code === 'ENOENT')
}

function versionOf(bin: string, pattern: RegExp): string {
  const r = spawnSync(bin, ['--version'], { encoding: 'utf8', timeout: VERSION_TIMEOUT_MS })
  return pattern.exec(`${r.stdout ?? ''}${r.stderr ?? ''}`)?.[1] ?? 'unknown'
}

function logTail(path: string): string {
  try {
    return readFileSync(path, 'utf8').trimEnd().split('\n').slice(-LOG_TAIL_LINES).join('\n')
  } catch {
    return '(no log)'
  }
}

function isFree(port: number): Promise<boolean> {
  return new Promise(ok => {
    const srv = createServer()
    srv.once('error', () => ok(false))
    srv.listen(port, '127.0.0.1', () => srv.close(() => ok(true)))
  })
}

async function pickPorts(count: number, lo: number, hi: number): Promise<number[]> {
  const ports: number[] = []
  for (let p = lo; p <= hi && ports.length < count; p++) if (await isFree(p)) ports.push(p)
  if (ports.length < count) throw new Error(`only ${ports.length} free loopback ports in ${lo}-${hi}, need ${count} (--yardstick-ports)`)
  return ports
}

const sleep = (ms: number): Promise<void> => new Promise(r => setTimeout(r, ms))

const notInstalled = (missing: string[]): Unavailable =>
  ({ status: 'not installed', missing, hint: 'run bench/install-yardsticks.sh' })

// ---------------------------------------------------------------------------------------------
// etcd clients: gRPC over node:http2, or the JSON gateway over node:http

interface EtcdKv {
  put(key: Buffer, value: Buffer, valueB64: string): Promise<unknown>
  /** Resolves true when the key was found. */
  get(key: Buffer): Promise<boolean>
  close(): void
}

function varintLength(n: number): number {
  let len = 1
  while (n >= 0x80) { n = Math.floor(n / 0x80); len++ }
  return len
}

function writeVarint(buf: Buffer, at: number, n: number): number {
  while (n >= 0x80) { buf[at++] = (n % 0x80) | 0x80; n = Math.floor(n / 0x80) }
  buf[at++] = n
  return at
}

/** A gRPC frame (flag 0, 4-byte length) around a protobuf message made of length-delimited fields. */
function grpcFrame(fields: Array<[tag: number, bytes: Buffer]>, trailer: Buffer | undefined): Buffer {
  let msgLen = trailer?.length ?? 0
  for (const [, b] of fields) msgLen += 1 + varintLength(b.length) + b.length
  const out = Buffer.allocUnsafe(5 + msgLen)
  out[0] = 0
  out.writeUInt32BE(msgLen, 1)
  let at = 5
  for (const [tag, b] of fields) {
    out[at++] = tag
    at = writeVarint(out, at, b.length)
    at += b.copy(out, at)
  }
  if (trailer) trailer.copy(out, at)
  return out
}

// etcdserverpb.PutRequest: key = 1, value = 2. RangeRequest: key = 1, serializable = 7 (varint).
const PB_KEY = (1 << 3) | 2
const PB_VALUE = (2 << 3) | 2
const PB_SERIALIZABLE = Buffer.from([(7 << 3) | 0, 1])
// RangeResponse: kvs = 2 (repeated KeyValue).
const PB_RANGE_KVS_FIELD = 2

/** True when a RangeResponse carries at least one KeyValue (a top-level field 2). */
function rangeFound(msg: Buffer): boolean {
  let p = 0
  const varint = (): number => {
    let n = 0
    let mul = 1
    for (let i = 0; i < 10; i++) {
      const b = msg[p++]
      if (b === undefined) throw new YardstickError('etcd:bad-response', 'truncated varint in RangeResponse')
      n += (b & 0x7f) * mul
      if (b < 0x80) return n
      mul *= 0x80
    }
    throw new YardstickError('etcd:bad-response', 'varint longer than 10 bytes in RangeResponse')
  }
  while (p < msg.length) {
    const tag = varint()
    const field = Math.floor(tag / 8)
    const wire = tag % 8
    if (field === PB_RANGE_KVS_FIELD && wire === 2) return true
    if (wire === 0) varint()
    else if (wire === 1) p += 8
    else if (wire === 2) { const len = varint(); p += len } // not `p += varint()`: that adds to p as it was before the length
    else if (wire === 5) p += 4
    else throw new YardstickError('etcd:bad-response', `wire type ${wire} in RangeResponse`)
  }
  return false
}

class GrpcKv implements EtcdKv {
  private readonly session: http2.ClientHttp2Session
  private sessionError: Error | undefined
  constructor(url: string, private readonly serializable: boolean) {
    this.session = http2.connect(url)
    this.session.on('error', e => { this.sessionError = e })
  }

  put(key: Buffer, value: Buffer): Promise<unknown> {
    return this.call('/etcdserverpb.KV/Put', grpcFrame([[PB_KEY, key], [PB_VALUE, value]], undefined))
  }

  async get(key: Buffer): Promise<boolean> {
    const body = await this.call('/etcdserverpb.KV/Range', grpcFrame([[PB_KEY, key]], this.serializable ? PB_SERIALIZABLE : undefined))
    if (body.length < 5 || body[0] !== 0) throw new YardstickError('etcd:bad-response', `gRPC reply of ${body.length} bytes without a plain frame`)
    const len = body.readUInt32BE(1)
    if (body.length < 5 + len) throw new YardstickError('etcd:bad-response', `gRPC frame of ${len} bytes in a ${body.length}-byte reply`)
    return rangeFound(body.subarray(5, 5 + len))
  }

  private call(path: string, frame: Buffer): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      if (this.session.closed || this.session.destroyed) {
        reject(new YardstickError('etcd:connection', `gRPC session closed${this.sessionError ? `: ${this.sessionError.message}` : ''}`))
        return
      }
      const req = this.session.request({
        ':method': 'POST', ':path': path, 'content-type': 'application/grpc', te: 'trailers',
        'grpc-timeout': `${ETCD_REQUEST_TIMEOUT_MS}m`,
      })
      const chunks: Buffer[] = []
      let status: string | undefined
      let message = ''
      let timedOut = false
      let streamError: Error | undefined
      const takeStatus = (h: http2.IncomingHttpHeaders): void => {
        const s = h['grpc-status']
        if (s !== undefined) { status = String(s); message = String(h['grpc-message'] ?? '') }
      }
      req.on('response', takeStatus)
      req.on('trailers', takeStatus)
      req.on('data', (c: Buffer) => { chunks.push(c) })
      req.on('error', e => { streamError = e })
      req.setTimeout(ETCD_REQUEST_TIMEOUT_MS, () => { timedOut = true; req.close(http2.constants.NGHTTP2_CANCEL) })
      req.on('close', () => {
        if (status === '0') resolve(Buffer.concat(chunks))
        else if (timedOut) reject(new YardstickError('etcd:Timeout', `no reply within ${ETCD_REQUEST_TIMEOUT_MS} ms`))
        else if (status !== undefined) reject(new YardstickError(`etcd:grpc-${status}`, decodeURIComponent(message)))
        else reject(new YardstickError('etcd:stream', streamError?.message ?? `stream closed without a gRPC status (rst ${req.rstCode})`))
      })
      req.end(frame)
    })
  }

  close(): void { this.session.close() }
}

class JsonKv implements EtcdKv {
  private readonly agent: http.Agent
  constructor(private readonly port: number, private readonly prefix: string, private readonly serializable: boolean, maxSockets: number) {
    this.agent = new http.Agent({ keepAlive: true, maxSockets })
  }

  put(key: Buffer, _value: Buffer, valueB64: string): Promise<unknown> {
    return this.post('kv/put', `{"key":"${key.toString('base64')}","value":"${valueB64}"}`)
  }

  async get(key: Buffer): Promise<boolean> {
    const body = await this.post('kv/range', `{"key":"${key.toString('base64')}"${this.serializable ? ',"serializable":true' : ''}}`)
    const parsed = JSON.parse(body) as { kvs?: unknown[] }
    return Array.isArray(parsed.kvs) && parsed.kvs.length > 0
  }

  private post(path: string, body: string): Promise<string> {
    return new Promise((resolve, reject) => {
      const req = http.request({
        host: '127.0.0.1', port: this.port, method: 'POST', path: `${this.prefix}${path}`, agent: this.agent,
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
        timeout: ETCD_REQUEST_TIMEOUT_MS,
      }, res => {
        const chunks: Buffer[] = []
        res.on('data', (c: Buffer) => { chunks.push(c) })
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8')
          if (res.statusCode === 200) resolve(text)
          else reject(new YardstickError(`etcd:http-${res.statusCode}`, text.slice(0, 200)))
        })
        res.on('error', e => reject(new YardstickError('etcd:connection', e.message)))
      })
      req.on('timeout', () => req.destroy(new YardstickError('etcd:Timeout', `no reply within ${ETCD_REQUEST_TIMEOUT_MS} ms`)))
      req.on('error', e => reject(e instanceof YardstickError ? e : new YardstickError('etcd:connection', e.message)))
      req.end(body)
    })
  }

  close(): void { this.agent.destroy() }
}

// ---------------------------------------------------------------------------------------------
// etcd

interface EtcdCluster { members: Array<{ name: string; clientPort: number; peerPort: number; proc: ChildProcess; log: string }>; dir: string }

async function startEtcd(shape: YardstickShape, dir: string): Promise<EtcdCluster> {
  const ports = await pickPorts(6, shape.portLo, shape.portHi)
  const names = ['m1', 'm2', 'm3']
  const peers = names.map((n, i) => `${n}=http://127.0.0.1:${ports[3 + i]}`).join(',')
  const token = `ringkv-bench-${randomBytes(6).toString('hex')}`
  // Each put is a new MVCC revision and nothing compacts during the run: size the quota for all of them.
  const revisionBytes = (shape.records + 2 * shape.ops) * (shape.valueBytes + limits.keyBytesMax + ETCD_REVISION_OVERHEAD_BYTES)
  const quota = Math.min(ETCD_QUOTA_BYTES_MAX, Math.max(ETCD_QUOTA_BYTES_DEFAULT, 2 * revisionBytes))
  const maxRequest = Math.max(ETCD_MAX_REQUEST_BYTES_DEFAULT, shape.valueBytes + limits.keyBytesMax + limits.contextBytesMax)
  const members = names.map((name, i) => {
    const clientPort = ports[i]!
    const peerPort = ports[3 + i]!
    const log = join(dir, `${name}.log`)
    const proc = spawnTracked('etcd', [
      '--name', name, '--data-dir', join(dir, name),
      '--listen-client-urls', `http://127.0.0.1:${clientPort}`, '--advertise-client-urls', `http://127.0.0.1:${clientPort}`,
      '--listen-peer-urls', `http://127.0.0.1:${peerPort}`, '--initial-advertise-peer-urls', `http://127.0.0.1:${peerPort}`,
      '--initial-cluster', peers, '--initial-cluster-token', token, '--initial-cluster-state', 'new',
      '--quota-backend-bytes', String(quota), '--max-request-bytes', String(maxRequest),
      '--logger', 'zap', '--log-outputs', 'stderr', '--log-level', 'warn',
    ], log)
    return { name, clientPort, peerPort, proc, log }
  })
  const cluster = { members, dir }
  const deadline = performance.now() + ETCD_START_TIMEOUT_MS
  const healthy = new Set<string>()
  while (healthy.size < members.length) {
    if (shape.isAborted()) throw new Error('interrupted while etcd was starting')
    for (const m of members) {
      if (!alive(m.proc)) throw new Error(`etcd member ${m.name} exited (${m.proc.exitCode ?? m.proc.signalCode}) while starting; its log:\n${logTail(m.log)}`)
      if (healthy.has(m.name)) continue
      try {
        const res = await fetch(`http://127.0.0.1:${m.clientPort}/health`, { signal: AbortSignal.timeout(HEALTH_PROBE_TIMEOUT_MS) })
        const body = await res.json() as { health?: string }
        if (res.ok && body.health === 'true') healthy.add(m.name)
      } catch { /* not up yet */ }
    }
    if (healthy.size === members.length) break
    if (performance.now() > deadline) throw new Error(`etcd not healthy within ${ETCD_START_TIMEOUT_MS} ms (${[...healthy].join(',') || 'no member'} healthy); log of ${members[0]!.name}:\n${logTail(members[0]!.log)}`)
    await sleep(HEALTH_POLL_MS)
  }
  return cluster
}

/** The JSON gateway's path prefix for the running server's version: /v3/ from 3.4, /v3beta/ in 3.3, /v3alpha/ before. */
async function gatewayPrefix(clientPort: number): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${clientPort}/version`, { signal: AbortSignal.timeout(HEALTH_PROBE_TIMEOUT_MS) })
  const v = (await res.json() as { etcdserver?: string }).etcdserver ?? ''
  const m = /^(\d+)\.(\d+)/.exec(v)
  if (!m) throw new Error(`etcd /version said ${JSON.stringify(v)}`)
  const [major, minor] = [Number(m[1]), Number(m[2])]
  if (major > 3 || (major === 3 && minor >= 4)) return '/v3/'
  if (minor === 3) return '/v3beta/'
  return '/v3alpha/'
}

export async function measureEtcd(shape: YardstickShape): Promise<EtcdResult | Unavailable> {
  if (!onPath('etcd')) return notInstalled(['etcd'])
  if (shape.isAborted()) return { status: 'skipped', reason: 'interrupted' }
  const version = versionOf('etcd', /etcd Version:\s*(\S+)/)
  const dir = await mkdtemp(join(tmpdir(), 'ringkv-yardstick-etcd-'))
  tempDirs.add(dir)
  const clients: EtcdKv[] = []
  let cluster: EtcdCluster | undefined
  let keepDir = false
  try {
    shape.note(`yardstick: starting etcd ${version}, 3 members on 127.0.0.1 (data in ${dir})...`)
    cluster = await startEtcd(shape, dir)
    const serializable = shape.etcdReads === 'serializable'
    let api: string
    if (shape.etcdApi === 'grpc') {
      for (const m of cluster.members) clients.push(new GrpcKv(`http://127.0.0.1:${m.clientPort}`, serializable))
      api = 'gRPC (node:http2, 1 connection per member)'
    } else {
      const prefix = await gatewayPrefix(cluster.members[0]!.clientPort)
      const sockets = Math.max(shape.concurrency, shape.rate === undefined ? 0 : shape.maxOutstanding)
      for (const m of cluster.members) clients.push(new JsonKv(m.clientPort, prefix, serializable, sockets))
      api = `JSON gateway ${prefix}kv/* (HTTP/1.1 keep-alive)`
    }
    const values = Array.from({ length: VALUE_POOL }, () => randomBytes(shape.valueBytes))
    const valuesB64 = values.map(v => v.toString('base64'))
    const member = (i: number): EtcdKv => clients[i % clients.length]!
    const keyBuf = (k: number): Buffer => Buffer.from(shape.keyOf(k))
    let notFound = 0
    const countMiss = (found: boolean): void => { if (!found) notFound++ }

    const loadOp: StartOp = i => ({ op: 'put', done: member(i).put(keyBuf(i), values[i % VALUE_POOL]!, valuesB64[i % VALUE_POOL]!) })
    const runOp: StartOp = i => {
      const k = shape.nextKey()
      if (shape.readFraction === 1 || Math.random() < shape.readFraction) return { op: 'get', done: member(i).get(keyBuf(k)).then(countMiss) }
      return { op: 'put', done: member(i).put(keyBuf(k), values[i % VALUE_POOL]!, valuesB64[i % VALUE_POOL]!) }
    }
    // Open-loop puts update the records in order, as ringkv's do (bench/ycsb.ts says why).
    const putOp: StartOp = i => ({ op: 'put', done: member(i).put(keyBuf(i % shape.records), values[i % VALUE_POOL]!, valuesB64[i % VALUE_POOL]!) })
    const closed = (phase: string, total: number) => ({ phase, total, concurrency: shape.concurrency, maxSeconds: shape.maxSeconds, isAborted: shape.isAborted, progress: shape.progress })

    const load = await runClosedLoop(closed('etcd load', shape.records), loadOp)
    const run = await runClosedLoop(closed('etcd run', shape.ops), runOp)
    const runNotFound = notFound
    let open: EtcdResult['open'] = null
    if (shape.rate !== undefined && !shape.isAborted()) {
      const openOpts = (phase: string) => ({ phase, total: shape.ops, rate: shape.rate!, maxOutstanding: shape.maxOutstanding, maxSeconds: shape.maxSeconds, isAborted: shape.isAborted, progress: shape.progress })
      const puts = await runOpenLoop(openOpts('etcd open puts'), putOp)
      const openRun = await runOpenLoop(openOpts('etcd open run'), runOp)
      open = { puts: summarizeOpenLoop(puts, shape.ops), run: summarizeOpenLoop(openRun, shape.ops) }
    }
    const put = summarize(load.stats.get('put'), load.seconds)
    const runGet = summarize(run.stats.get('get'), run.seconds)
    const runPut = summarize(run.stats.get('put'), run.seconds)
    return {
      status: 'ok', version, api, reads: shape.etcdReads,
      members: cluster.members.map(m => `${m.name} client 127.0.0.1:${m.clientPort} peer 127.0.0.1:${m.peerPort}`),
      load: { opsPerSec: (put?.count ?? 0) / load.seconds, seconds: load.seconds, timedOut: load.timedOut, put, errors: mergeErrors(load.stats) },
      run: {
        opsPerSec: ((runGet?.count ?? 0) + (runPut?.count ?? 0)) / run.seconds, seconds: run.seconds, timedOut: run.timedOut,
        get: runGet, put: runPut, errors: mergeErrors(run.stats), notFound: runNotFound,
      },
      open,
    }
  } catch (e) {
    keepDir = true
    return { status: 'failed', error: `${(e as Error).message}\n(etcd logs kept in ${dir})` }
  } finally {
    for (const c of clients) c.close()
    await Promise.all((cluster?.members ?? []).map(m => stopChild(m.proc)))
    // Members still starting when an error came: stop whatever this run spawned.
    await Promise.all([...children].map(stopChild))
    if (!keepDir) { await rm(dir, { recursive: true, force: true }).catch(() => undefined); tempDirs.delete(dir) }
    else tempDirs.delete(dir)
  }
}

// ---------------------------------------------------------------------------------------------
// Redis

function redisPing(port: number): Promise<boolean> {
  return new Promise(ok => {
    const sock = connect({ host: '127.0.0.1', port })
    let reply = ''
    const done = (v: boolean): void => { sock.destroy(); ok(v) }
    sock.setTimeout(HEALTH_PROBE_TIMEOUT_MS, () => done(false))
    sock.once('error', () => done(false))
    sock.once('connect', () => sock.write('PING\r\n'))
    sock.on('data', d => { reply += d.toString('latin1'); if (reply.includes('\r\n')) done(reply.startsWith('+PONG')) })
  })
}

/** Parses redis-benchmark's full (not --csv) report: throughput, the latency summary, p99.9 from the distribution. */
export function parseRedisBenchmark(text: string, requests: number): RedisOpResult {
  const clean = text.replace(/\r/g, '\n')
  const rps = /throughput summary:\s*([\d.]+)\s+requests per second/.exec(clean)
  if (!rps) {
    // redis-benchmark before 6.2 prints only "N requests per second".
    const old = /([\d.]+)\s+requests per second/.exec(clean)
    if (!old) throw new Error(`no throughput in redis-benchmark output:\n${clean.trim().split('\n').slice(-LOG_TAIL_LINES).join('\n')}`)
    return { requests, opsPerSec: Number(old[1]), avgUs: 0, p50Us: 0, p95Us: 0, p99Us: 0, p999Us: null, maxUs: 0 }
  }
  const summary = /avg\s+min\s+p50\s+p95\s+p99\s+max\s*\n\s*([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)/.exec(clean)
  const ms = (s: string | undefined): number => Math.round(Number(s) * 1000)
  // "99.902% <= 26.207 milliseconds": the first step at or past 99.9 % bounds p99.9 from above.
  let p999Us: number | null = null
  for (const m of clean.matchAll(/^([\d.]+)% <= ([\d.]+) milliseconds/gm)) {
    if (Number(m[1]) >= 99.9) { p999Us = ms(m[2]); break }
  }
  return {
    requests, opsPerSec: Number(rps[1]),
    avgUs: ms(summary?.[1]), p50Us: ms(summary?.[3]), p95Us: ms(summary?.[4]), p99Us: ms(summary?.[5]), p999Us, maxUs: ms(summary?.[6]),
  }
}

async function redisBenchmark(shape: YardstickShape, port: number, test: 'set' | 'get', requests: number, log: string): Promise<RedisOpResult> {
  const p = spawnTracked('redis-benchmark', [
    '-h', '127.0.0.1', '-p', String(port), '-c', String(shape.concurrency), '-n', String(requests),
    '-d', String(shape.valueBytes), '-r', String(shape.records), '-t', test,
  ], undefined)
  let out = ''
  p.stdout!.on('data', (d: Buffer) => { out += d.toString('utf8') })
  p.stderr!.on('data', (d: Buffer) => { out += d.toString('utf8') })
  let timedOut = false
  const timer = setTimeout(() => { timedOut = true; void stopChild(p) }, shape.maxSeconds * 1000)
  const code = await new Promise<number | string | null>(ok => {
    p.once('exit', (c, s) => ok(c ?? s))
    p.once('error', e => ok(e.message))
  })
  clearTimeout(timer)
  const tail = out.replace(/\r/g, '\n').split('\n').filter(l => !/^\w+: rps=/.test(l)).join('\n')
  await appendFile(log, `--- redis-benchmark -t ${test}\n${tail}\n`).catch(() => undefined)
  if (timedOut) throw new Error(`redis-benchmark -t ${test} stopped at --max-seconds ${shape.maxSeconds}`)
  if (code !== 0) throw new Error(`redis-benchmark -t ${test} exited with ${code}: ${tail.trim().split('\n').slice(-3).join(' | ')}`)
  return parseRedisBenchmark(out, requests)
}

export async function measureRedis(shape: YardstickShape): Promise<RedisResult | Unavailable> {
  const missing = ['redis-server', 'redis-benchmark'].filter(b => !onPath(b))
  if (missing.length) return notInstalled(missing)
  if (shape.isAborted()) return { status: 'skipped', reason: 'interrupted' }
  const version = versionOf('redis-server', /v=(\S+)/)
  const dir = await mkdtemp(join(tmpdir(), 'ringkv-yardstick-redis-'))
  tempDirs.add(dir)
  let server: ChildProcess | undefined
  let keepDir = false
  const log = join(dir, 'redis.log')
  try {
    const [port] = await pickPorts(1, shape.portLo, shape.portHi)
    shape.note(`yardstick: starting redis ${version} on 127.0.0.1:${port} (AOF everysec, data in ${dir})...`)
    server = spawnTracked('redis-server', [
      '--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--daemonize', 'no',
      '--appendonly', 'yes', '--appendfsync', 'everysec', '--save', '',
    ], log)
    const deadline = performance.now() + REDIS_START_TIMEOUT_MS
    while (!(await redisPing(port!))) {
      if (!alive(server)) throw new Error(`redis-server exited (${server.exitCode ?? server.signalCode}) while starting; its log:\n${logTail(log)}`)
      if (shape.isAborted()) throw new Error('interrupted while redis-server was starting')
      if (performance.now() > deadline) throw new Error(`redis-server did not answer PING within ${REDIS_START_TIMEOUT_MS} ms; its log:\n${logTail(log)}`)
      await sleep(HEALTH_POLL_MS)
    }
    const attempt = async (test: 'set' | 'get', n: number): Promise<RedisResult['set']> => {
      if (shape.isAborted()) return { status: 'failed', error: 'interrupted' }
      shape.note(`yardstick: redis-benchmark -t ${test} -n ${n} -c ${shape.concurrency} -d ${shape.valueBytes} -r ${shape.records}...`)
      try { return await redisBenchmark(shape, port!, test, n, log) } catch (e) { keepDir = true; return { status: 'failed', error: `${(e as Error).message} (log in ${log})` } }
    }
    const set = await attempt('set', shape.records)
    const get = await attempt('get', shape.ops)
    return { status: 'ok', version, config: 'appendonly yes, appendfsync everysec, save ""', set, get }
  } catch (e) {
    keepDir = true
    return { status: 'failed', error: `${(e as Error).message}\n(redis log kept in ${log})` }
  } finally {
    if (server) await stopChild(server)
    await Promise.all([...children].map(stopChild))
    if (!keepDir) await rm(dir, { recursive: true, force: true }).catch(() => undefined)
    tempDirs.delete(dir)
  }
}

// ---------------------------------------------------------------------------------------------
// The comparison table

export interface RingkvFigures {
  puts: OpSummary | null
  gets: OpSummary | null
  open: { puts: OpenLoopSummary; run: OpenLoopSummary } | null
}

export interface YardstickReport {
  note: string
  ringkv: RingkvFigures
  etcd: EtcdResult | Unavailable
  redis: RedisResult | Unavailable
  ratios: {
    ringkvPutP99OverEtcdPutP99: number | null
    ringkvPutsOverEtcdPuts: number | null
    ringkvPutsOverRedisSet: number | null
    ringkvGetsOverRedisGet: number | null
    ringkvGetsOverEtcdGets: number | null
    openLoopRingkvPutP99OverEtcdPutP99: number | null
  }
}

const ok = <T extends { status: string }>(r: T | Unavailable): T | undefined => r.status === 'ok' ? r as T : undefined
const redisOp = (r: RedisResult['set'] | undefined): RedisOpResult | undefined => r && !('status' in r) ? r : undefined
const div = (a: number | undefined, b: number | undefined): number | null => a !== undefined && b !== undefined && b > 0 ? a / b : null

export function yardstickReport(ringkv: RingkvFigures, etcd: EtcdResult | Unavailable, redis: RedisResult | Unavailable, note: string): YardstickReport {
  const e = ok(etcd)
  const r = ok(redis)
  return {
    note, ringkv, etcd, redis,
    ratios: {
      ringkvPutP99OverEtcdPutP99: div(ringkv.puts?.p99Us, e?.load.put?.p99Us),
      ringkvPutsOverEtcdPuts: div(ringkv.puts?.opsPerSec, e?.load.put?.opsPerSec),
      ringkvPutsOverRedisSet: div(ringkv.puts?.opsPerSec, redisOp(r?.set)?.opsPerSec),
      ringkvGetsOverRedisGet: div(ringkv.gets?.opsPerSec, redisOp(r?.get)?.opsPerSec),
      ringkvGetsOverEtcdGets: div(ringkv.gets?.opsPerSec, e?.run.get?.opsPerSec),
      openLoopRingkvPutP99OverEtcdPutP99: div(ringkv.open?.puts.perOp['update']?.p99Us, e?.open?.puts.perOp['put']?.p99Us),
    },
  }
}

const fmt = (n: number): string => Math.round(n).toLocaleString('en-US')
const us = (n: number | null | undefined): string => n === null || n === undefined ? '—' : n >= 10_000 ? `${(n / 1000).toFixed(1)} ms` : `${fmt(n)} µs`
const x = (v: number | null): string => v === null ? 'n/a' : `${v.toFixed(2)}x`

/** Aligned columns: the first and last left-aligned, the rest right-aligned. */
export function formatTable(rows: string[][]): string[] {
  const header = rows[0]!
  const widths = header.map((_, c) => Math.max(...rows.map(r => (r[c] ?? '').length)))
  const lines: string[] = []
  for (const [ri, r] of rows.entries()) {
    lines.push(r.map((cell, c) => c === 0 || c === r.length - 1 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!)).join('  ').trimEnd())
    if (ri === 0) lines.push(widths.map(w => '-'.repeat(w)).join('  '))
  }
  return lines
}

export function printYardsticks(rep: YardstickReport, shape: { concurrency: number; valueBytes: number; workload: string; rate: number | undefined }, out: (s?: string) => void): void {
  const rows: string[][] = [['system', 'puts/s', 'put p50', 'put p99', 'put p99.9', 'gets/s', 'get p50', 'get p99', 'notes']]
  const unavailable = (name: string, u: Unavailable): void => {
    const why = u.status === 'not installed' ? `not installed (${u.missing.join(', ')}): ${u.hint}` : u.status === 'skipped' ? `skipped: ${u.reason}` : `failed: ${u.error.split('\n')[0]}`
    rows.push([name, '—', '—', '—', '—', '—', '—', '—', why])
  }
  const rk = rep.ringkv
  const errs = (...e: Array<Record<string, number> | undefined>): string => {
    const all: Record<string, number> = {}
    for (const m of e) for (const [k, n] of Object.entries(m ?? {})) all[k] = (all[k] ?? 0) + n
    const s = Object.entries(all).map(([k, n]) => `${k}=${n}`).join(' ')
    return s ? `errors ${s}` : ''
  }
  rows.push(['ringkv (N=3 R=2 W=2, fsync)', fmt(rk.puts?.opsPerSec ?? 0), us(rk.puts?.p50Us), us(rk.puts?.p99Us), us(rk.puts?.p999Us),
    rk.gets ? fmt(rk.gets.opsPerSec) : '—', us(rk.gets?.p50Us), us(rk.gets?.p99Us), errs(rk.puts?.errors, rk.gets?.errors)])
  const e = ok(rep.etcd)
  if (e) {
    rows.push([`etcd ${e.version} (3 members, ${e.api.startsWith('gRPC') ? 'gRPC' : 'JSON'}, ${e.reads === 'linearizable' ? 'lin.' : 'ser.'} gets)`,
      fmt(e.load.put?.opsPerSec ?? 0), us(e.load.put?.p50Us), us(e.load.put?.p99Us), us(e.load.put?.p999Us),
      e.run.get ? fmt(e.run.get.opsPerSec) : '—', us(e.run.get?.p50Us), us(e.run.get?.p99Us),
      [errs(e.load.errors, e.run.errors), e.run.notFound ? `${e.run.notFound} gets found nothing` : ''].filter(Boolean).join('; ')])
  } else unavailable('etcd', rep.etcd as Unavailable)
  const r = ok(rep.redis)
  if (r) {
    const set = redisOp(r.set)
    const get = redisOp(r.get)
    const fail = [r.set, r.get].flatMap(o => o && 'status' in o ? [o.error] : []).join('; ')
    rows.push([`redis ${r.version} (AOF everysec)`, set ? fmt(set.opsPerSec) : '—', us(set?.p50Us), us(set?.p99Us), set?.p999Us === null ? '—' : `≤ ${us(set?.p999Us)}`,
      get ? fmt(get.opsPerSec) : '—', us(get?.p50Us), us(get?.p99Us), fail ? `failed: ${fail}` : 'redis-benchmark, closed loop only'])
  } else unavailable('redis', rep.redis as Unavailable)
  if (shape.rate !== undefined) {
    const openRow = (name: string, o: { puts: OpenLoopSummary; run: OpenLoopSummary } | null | undefined, putOp: string): void => {
      if (!o) return
      const p = o.puts.perOp[putOp]
      const g = o.run.perOp['read'] ?? o.run.perOp['get']
      const dropped = o.puts.dropped + o.run.dropped
      const unfinished = o.puts.unfinished + o.run.unfinished
      rows.push([name, fmt(o.puts.achievedPerSec), us(p?.p50Us), us(p?.p99Us), us(p?.p999Us), g ? fmt(g.opsPerSec) : '—', us(g?.p50Us), us(g?.p99Us),
        [`dropped ${dropped}`, unfinished ? `unfinished ${unfinished}` : '', `peak outstanding ${Math.max(o.puts.peakOutstanding, o.run.peakOutstanding)}`,
          `client lag p99 ${us(Math.max(o.puts.startLagP99Us, o.run.startLagP99Us))}`, errs(o.puts.errors, o.run.errors)].filter(Boolean).join(', ')])
    }
    openRow(`ringkv open loop @ ${fmt(shape.rate)}/s`, rk.open, 'update')
    openRow(`etcd open loop @ ${fmt(shape.rate)}/s`, e?.open, 'put')
  }
  out()
  out(`Yardsticks: ${rep.note}`)
  out(`  ${shape.valueBytes} B values, ${shape.concurrency} in flight (closed loop); puts = the load phase (100% puts of new keys);`)
  out(`  gets = the run phase's reads (workload ${shape.workload}${shape.workload === 'C' ? ', 100% gets' : ': a share of a mix, so gets/s is not a pure-get rate'}).`)
  for (const l of formatTable(rows)) out(l)
  const ra = rep.ratios
  out()
  out('ratios:')
  out(`  ringkv put p99 / etcd put p99:  ${x(ra.ringkvPutP99OverEtcdPutP99)}  (below 1 = ringkv's put tail is shorter)`)
  out(`  ringkv puts/s / etcd puts/s:    ${x(ra.ringkvPutsOverEtcdPuts)}`)
  out(`  ringkv gets/s / etcd gets/s:    ${x(ra.ringkvGetsOverEtcdGets)}`)
  out(`  ringkv puts/s / Redis SET/s:    ${x(ra.ringkvPutsOverRedisSet)}`)
  out(`  ringkv gets/s / Redis GET/s:    ${x(ra.ringkvGetsOverRedisGet)}`)
  if (shape.rate !== undefined) out(`  open loop @ ${fmt(shape.rate)}/s, ringkv put p99 / etcd put p99: ${x(ra.openLoopRingkvPutP99OverEtcdPutP99)}`)
  out()
  out('  etcd: a Raft group; a put is acked once a majority fsynced it (as ringkv acks after W=2 fsyncs), puts spread')
  out(`  round-robin over the members (followers forward to the leader); ${e?.reads === 'serializable' ? 'serializable gets (a member answers from its own state)' : 'linearizable gets (ReadIndex through the leader)'}.`)
  out('  Redis: one process, no replication, acks before its fsync (everysec), measured by redis-benchmark, a C client;')
  out('  its p99.9 is the first step of its percentile distribution at or past 99.9 % (an upper bound).')
  if (shape.rate !== undefined) {
    out(`  open loop: operations scheduled at a fixed rate and timed from their scheduled start; "dropped" were due while`)
    out('  --max-outstanding were outstanding and were not sent; "client lag" is how late this process sent them.')
    out('  Percentiles cover the operations that succeeded; failed ones (e.g. timeouts) are counted under errors.')
  }
  for (const [name, u] of [['etcd', rep.etcd], ['redis', rep.redis]] as const) {
    if (u.status === 'failed') out(`  ${name} failed: ${u.error}`)
  }
}

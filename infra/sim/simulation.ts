// One simulated run of a whole cluster (docs/simulation.md): the real ReplicaService on an in-memory
// engine (mem-engine.ts) per replica, the real KvCoordinator per client over a simulated network
// (sim-network.ts), all on one clock with one seeded PRNG (sim-clock.ts). A seed fixes everything:
// the fault schedule, every delay and loss, every client's choices, so a run replays exactly, and
// its trace hash says so.
//
// A run: the workload of fault-workload.ts for simWorkloadMs while faults come and go (crash and
// restart, pause, partitions of every shape, clogged links, a full disk); then every fault ends and
// the checker (fault-checker.ts) reads every key at R=N, round after round, until every primary
// replica of every key holds the same state: liveness is that this happens within
// simConvergeMsMax. Today that convergence comes from read repair alone; gossip, hints and
// anti-entropy will join as more hosts' services here (see docs/simulation.md).

import { limits } from '../../coordinator/limits.ts'
import { createRing, preferenceList, type Ring } from '../../coordinator/ring/ring.ts'
import { KvCoordinator } from '../../coordinator/kv-coordinator.ts'
import type { DvvSet } from '../../coordinator/version/dvv.ts'
import { ReplicaService } from '../../replica/replica-service.ts'
import { decodeState, mergeStates } from '../../replica/state-codec.ts'
import { faultLimits } from '../fault-limits.ts'
import { checkHistory, passed, type CheckReport } from '../fault-checker.ts'
import { History, registerKeys, runClient, setKeys, type KvPort } from '../fault-workload.ts'
import { SimClock } from './sim-clock.ts'
import { MemDisk, MemEngine } from './mem-engine.ts'
import { SimNetwork, type SimHost } from './sim-network.ts'

export type FaultKind = 'crash' | 'pause' | 'partition' | 'one-way' | 'majority-minority' | 'clog' | 'disk-full'
export const faultKinds: readonly FaultKind[] = ['crash', 'pause', 'partition', 'one-way', 'majority-minority', 'clog', 'disk-full']

export interface SimOptions {
  readonly seed: number
  readonly replicas?: number
  readonly clients?: number
  readonly workloadMs?: number
  /** false: no faults at all (a control run). */
  readonly faults?: boolean
  /**
   * 'fresh' (the default) models replica/node/main.ts: a restart after a crash takes a new
   * incarnation. 'keep' models it as it was before seed 2 found the reissued-dot bug, so the
   * regression test can show the simulator catches it.
   */
  readonly afterCrash?: 'fresh' | 'keep'
}

export interface SimResult {
  readonly seed: number
  readonly traceHash: string
  readonly events: number
  readonly frames: number
  readonly simulatedMs: number
  readonly schedule: readonly string[]
  readonly faults: Record<FaultKind, number>
  readonly report: CheckReport
  /** Simulated ms from the end of faults until every replica converged; undefined when they did not. */
  readonly convergedAfterMs: number | undefined
  readonly eventBudgetExceeded: boolean
  readonly ok: boolean
  readonly traceTail: readonly string[]
}

const dec = new TextDecoder()

/** A replica process: its disk outlives its crashes; its engine and service do not. */
class SimReplica implements SimHost {
  readonly disk = new MemDisk()
  private engine: MemEngine | undefined
  private svc: ReplicaService | undefined
  private gen = 0
  private incarnation = 1
  private crashed = false
  isPaused = false

  constructor(readonly id: string, private readonly clock: SimClock, private readonly ring: Ring, private readonly afterCrash: 'fresh' | 'keep') {}

  service(): ReplicaService | undefined { return this.svc }
  paused(): boolean { return this.isPaused }
  generation(): number { return this.gen }
  up(): boolean { return this.svc !== undefined }

  start(): void {
    this.engine = new MemEngine(this.disk, this.clock, mergeStates, () => this.isPaused, this.id)
    // As replica/node/main.ts does: a start after a crash (not a clean stop) takes a new incarnation.
    if (this.crashed && this.afterCrash === 'fresh') this.incarnation++
    this.crashed = false
    this.svc = new ReplicaService({ nodeId: this.id, actor: `${this.id}.${this.incarnation}`, engine: this.engine, ring: () => this.ring, valueBytesMax: limits.valueBytesDefault })
    this.clock.trace(`start ${this.id}`)
  }

  crash(): void {
    if (!this.svc) return
    this.engine!.crash()
    this.engine = undefined
    this.svc = undefined
    this.isPaused = false
    this.crashed = true
    this.gen++
    this.clock.trace(`crash ${this.id}`)
  }

  /** What this replica holds for `key`, read from its engine directly (no network). */
  state(key: string): DvvSet | null {
    const bytes = this.engine?.get(key) ?? this.disk.durable.get(key)
    return bytes === undefined ? null : decodeState(bytes)
  }
}

export async function simulate(opts: SimOptions): Promise<SimResult> {
  const clock = new SimClock(opts.seed)
  const net = new SimNetwork(clock, opts.faults === false ? 0 : faultLimits.simLossPermille)
  const replicaCount = opts.replicas ?? 3
  const clientCount = opts.clients ?? faultLimits.simClients
  const workloadMs = opts.workloadMs ?? faultLimits.simWorkloadMs
  const nodes = Array.from({ length: replicaCount }, (_, i) => ({ id: `n${i + 1}`, url: `ws://n${i + 1}.sim:7000` }))
  const ring = createRing({ nodes, partitions: 16, n: Math.min(3, replicaCount) })
  const replicas = nodes.map(n => new SimReplica(n.id, clock, ring, opts.afterCrash ?? 'fresh'))
  replicas.forEach((r, i) => { net.addHost(r, nodes[i]!.url); r.start() })
  const byId = new Map(replicas.map(r => [r.id, r]))
  const clientIds = Array.from({ length: clientCount }, (_, i) => `c${i + 1}`)
  const endpoints = [...clientIds, ...nodes.map(n => n.id)]

  // ---- The fault schedule, drawn up front from the seed. ----
  const schedule: string[] = []
  const faults = Object.fromEntries(faultKinds.map(k => [k, 0])) as Record<FaultKind, number>
  const restartLater = (r: SimReplica, ms: number) => clock.at(ms, () => { if (!r.up()) { r.start(); net.heal() } })
  // Replicas talk only to clients (coordinators), never to each other: every link is client-replica.
  const clientReplicaPair = (): [string, string] => {
    const c = clock.pick(clientIds), r = clock.pick(replicas).id
    return clock.chance(500) ? [c, r] : [r, c]
  }
  const faultCount = opts.faults === false ? 0 : clock.int(1, faultLimits.simFaultsMax)
  for (let f = 0; f < faultCount; f++) {
    const startMs = clock.int(0, workloadMs - faultLimits.simFaultMsMax)
    const lastsMs = clock.int(faultLimits.simDelayMsMax, faultLimits.simFaultMsMax)
    const kind = clock.pick(faultKinds)
    const r = clock.pick(replicas)
    faults[kind]++
    let what: string
    switch (kind) {
      case 'crash':
        what = `crash ${r.id}, restart after ${lastsMs} ms`
        clock.at(startMs, () => { r.crash(); net.crashed(r.id); restartLater(r, lastsMs) })
        break
      case 'pause':
        what = `pause ${r.id} for ${lastsMs} ms`
        clock.at(startMs, () => { if (r.up()) r.isPaused = true; clock.trace(`pause ${r.id}`) })
        clock.at(startMs + lastsMs, () => { r.isPaused = false; net.resumed(r.id); clock.trace(`resume ${r.id}`) })
        break
      case 'disk-full':
        what = `disk of ${r.id} full for ${lastsMs} ms, then a restart`
        clock.at(startMs, () => { r.disk.full = true; clock.trace(`disk full ${r.id}`) })
        clock.at(startMs + lastsMs, () => { r.disk.full = false; r.crash(); net.crashed(r.id); restartLater(r, faultLimits.simDelayMsMax) })
        break
      case 'clog': {
        const [a, b] = clientReplicaPair()
        what = `clog ${a}>${b} for ${lastsMs} ms`
        clock.at(startMs, () => { net.clog(a, b); clock.trace(`clog ${a}>${b}`) })
        clock.at(startMs + lastsMs, () => { net.unclog(a, b); clock.trace(`unclog ${a}>${b}`) })
        break
      }
      default: {
        // partition: one endpoint cut from one other, both ways; one-way: one direction only;
        // majority-minority: every endpoint on one side or the other, both ways.
        let links: Array<[string, string]>
        if (kind === 'majority-minority') {
          const side = new Set(endpoints.filter(() => clock.chance(500)))
          const minority = [...side], majority = endpoints.filter(e => !side.has(e))
          links = minority.flatMap(a => majority.flatMap(b => [[a, b], [b, a]] as Array<[string, string]>))
          what = `split {${minority.join(',')}} | {${majority.join(',')}} for ${lastsMs} ms`
        } else {
          const [a, b] = clientReplicaPair()
          links = kind === 'one-way' ? [[a, b]] : [[a, b], [b, a]]
          what = kind === 'one-way' ? `drop ${a}>${b} for ${lastsMs} ms` : `cut ${a}|${b} for ${lastsMs} ms`
        }
        clock.at(startMs, () => { for (const [a, b] of links) net.block(a, b); clock.trace(`partition: ${what}`) })
        clock.at(startMs + lastsMs, () => { for (const [a, b] of links) net.unblock(a, b); net.heal(); clock.trace(`healed: ${what}`) })
      }
    }
    schedule.push(`at ${startMs} ms: ${what}`)
  }

  // ---- The workload. ----
  const history = new History()
  let running = clientCount
  const coordinators = clientIds.map((id, i) => {
    const kv = new KvCoordinator({ seeds: nodes.map(n => n.url), runtime: clock.runtime(net.connector(id)), timeoutMs: faultLimits.workloadTimeoutMs, client: id })
    const port: KvPort = { get: (key, o) => kv.get(key, o ?? {}), write: (key, value, context) => kv.put(key, value, context ? { context } : {}) }
    void runClient({ kv: port, client: i + 1, history, random: clock.random, now: () => clock.now, sleep: ms => clock.sleep(ms), until: workloadMs, thinkMsMax: faultLimits.simThinkMsMax })
      .finally(() => { running-- })
    return kv
  })
  let budgetOk = await clock.run(Number.MAX_SAFE_INTEGER, () => running === 0 && clock.now >= workloadMs)
  for (const kv of coordinators) kv.close()

  // ---- Every fault ends. ----
  const healedAt = clock.now
  net.heal(true)
  for (const r of replicas) {
    r.disk.full = false
    if (r.isPaused) { r.isPaused = false; net.resumed(r.id) }
    if (!r.up()) r.start()
  }
  clock.trace('every fault ended')

  // ---- Check: R=N read passes until the primaries agree (read repair is the only way today). ----
  const n = ring.n
  const checker = new KvCoordinator({ seeds: nodes.map(x => x.url), runtime: clock.runtime(net.connector('checker')), timeoutMs: faultLimits.workloadTimeoutMs, client: 'checker' })
  const keys = [...setKeys, ...registerKeys]
  const finals = new Map<string, string[]>()
  let convergedAfterMs: number | undefined
  let checking = true
  const primaryStates = () => new Map(keys.map(k => [k, new Map(preferenceList(ring, k).primaries.map(p => [p, byId.get(p)!.state(k)]))]))
  void (async () => {
    for (let round = 0; round < faultLimits.checkRoundsMax && clock.now - healedAt <= faultLimits.simConvergeMsMax; round++) {
      let complete = true
      for (const key of keys) {
        try {
          const read = await checker.get(key, { r: n })
          finals.set(key, read.values.map(v => dec.decode(v)))
        } catch {
          complete = false
        }
      }
      await clock.sleep(faultLimits.checkRoundPauseMs)
      if (complete && checkHistory(history, finals, primaryStates()).divergent.length === 0) { convergedAfterMs = clock.now - healedAt; break }
    }
  })().finally(() => { checking = false })
  budgetOk = (await clock.run(Number.MAX_SAFE_INTEGER, () => !checking)) && budgetOk
  checker.close()

  const report = checkHistory(history, finals, primaryStates())
  return {
    seed: opts.seed, traceHash: clock.traceHash(), events: clock.events, frames: net.frames, simulatedMs: clock.now,
    schedule, faults, report, convergedAfterMs, eventBudgetExceeded: !budgetOk,
    ok: budgetOk && passed(report) && convergedAfterMs !== undefined && finals.size === keys.length,
    traceTail: clock.traceTail(),
  }
}

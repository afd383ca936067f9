// One simulated run of a whole cluster (docs/simulation.md): per replica, the real ReplicaService
// with what replica/node/main.ts builds around it (membership and gossip, the hint store and its
// replayer, anti-entropy, peer connections) on an in-memory engine and hint log (mem-engine.ts,
// mem-hint-log.ts); the real KvCoordinator per client; all over a simulated network (sim-network.ts)
// on one clock with one seeded PRNG (sim-clock.ts). A seed fixes everything: the fault schedule,
// every delay and loss, every client's choices, so a run replays exactly, and its trace hash says so.
//
// A run: the workload of fault-workload.ts for simWorkloadMs while faults come and go (crash and
// restart, pause, partitions of every shape over client and replica links, clogged links, a full
// disk) and a final fault over its end; then every fault ends, no client reads, and liveness is that
// hints and anti-entropy alone make every primary of every key hold the same state and empty every
// hint store within simConvergeMsMax. After a quiet phase (reaping) they must still agree; then one
// R=N read per key feeds the history check (fault-checker.ts: lost, resurrected).

import { assert } from '../../coordinator/assert.ts'
import { KvError } from '../../coordinator/errors.ts'
import { limits } from '../../coordinator/limits.ts'
import { createRing, preferenceList, type Ring } from '../../coordinator/ring/ring.ts'
import { KvCoordinator } from '../../coordinator/kv-coordinator.ts'
import type { Runtime } from '../../coordinator/runtime.ts'
import type { DvvSet } from '../../coordinator/version/dvv.ts'
import { Connection } from '../../coordinator/transport/connection.ts'
import { ConnectionPool } from '../../coordinator/transport/connection-pool.ts'
import { AntiEntropy, type AaePeer } from '../../replica/aae/anti-entropy.ts'
import { HintReplayer } from '../../replica/hints/hint-replayer.ts'
import { defaultHintBounds, HintStore } from '../../replica/hints/hint-store.ts'
import { MembershipService, type Handoff } from '../../replica/membership/membership-service.ts'
import { ReplicaService } from '../../replica/replica-service.ts'
import { decodeState, decodeStored, mergeStates } from '../../replica/state-codec.ts'
import { faultLimits } from '../fault-limits.ts'
import { checkHistory, passed, type CheckReport } from '../fault-checker.ts'
import { History, registerKeys, runClient, setKeys, type KvPort } from '../fault-workload.ts'
import { SimClock } from './sim-clock.ts'
import { MemDisk, MemEngine } from './mem-engine.ts'
import { MemHintLog } from './mem-hint-log.ts'
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
  /**
   * false: the replicas keep hints but never replay them and run no anti-entropy (gossip still
   * runs), so nothing but reads could make them converge; the test shows the checker then fails.
   */
  readonly repair?: boolean
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
  /** Keys whose primaries held different states when the faults ended (the work left to hints and anti-entropy). */
  readonly differingAtHeal: number
  /**
   * Simulated ms from the end of faults until hints and anti-entropy alone made every primary of
   * every key agree and emptied every hint store; undefined when that did not happen in time.
   */
  readonly convergedAfterMs: number | undefined
  /** Whether they still agreed after simQuietMs more with no clients (the last tombstones reaped meanwhile). */
  readonly agreedAfterQuiet: boolean
  /** Hints still kept when the check gave up waiting (0 in a passing run). */
  readonly hintsPendingAtEnd: number
  readonly background: BackgroundCounts
  readonly eventBudgetExceeded: boolean
  readonly ok: boolean
  readonly traceTail: readonly string[]
}

const dec = new TextDecoder()
const enc = new TextEncoder()

/** What a run's replicas did in the background, summed over every replica and incarnation. */
export interface BackgroundCounts {
  /** Hints accepted by fallbacks, delivered to their owners, expired unreplayed (older than the grace), dropped. */
  hintsAccepted: number
  /** Hints a fallback refused at a bound (the hint window, a failed log), and hint log tails read back torn after a crash. */
  hintsRefused: number
  hintLogTornTails: number
  hintsDelivered: number
  hintsExpired: number
  hintsDropped: number
  /** Keys anti-entropy exchanges repaired, exchanges that found differing trees, tombstones reaped. */
  aaeKeysRepaired: number
  aaeExchangesRepaired: number
  tombstonesReaped: number
  /**
   * Tree segments an exchange's key listing found wrong and set right (anti-entropy.ts, keysPage).
   * A run fails unless it is 0: each tree must follow its storage through every fault by itself.
   */
  aaeSegmentsCorrected: number
  gossipSent: number
}

export const noBackground = (): BackgroundCounts => ({ hintsAccepted: 0, hintsRefused: 0, hintLogTornTails: 0, hintsDelivered: 0, hintsExpired: 0, hintsDropped: 0, aaeKeysRepaired: 0, aaeExchangesRepaired: 0, tombstonesReaped: 0, aaeSegmentsCorrected: 0, gossipSent: 0 })

/** Static membership: no join or leave in a run, so no plan ever asks for a transfer. */
const noHandoff: Handoff = {
  transfer: req => Promise.reject(new KvError({ kind: 'Unavailable' }, `the simulator runs no handoff (partition ${req.partition} to ${req.to})`)),
  stopForwarding: () => undefined,
}
const quiet = (): void => undefined

/** The parts replica/node/main.ts builds around the service, for one incarnation. */
interface Incarnation {
  readonly gen: number
  readonly engine: MemEngine
  readonly hintLog: MemHintLog
  readonly members: MembershipService
  readonly hints: HintStore
  readonly peers: ConnectionPool
  readonly aae: AntiEntropy
  readonly replayer: HintReplayer
  readonly svc: ReplicaService
}

interface ReplicaConfig {
  readonly url: string
  readonly ring: Ring
  readonly afterCrash: 'fresh' | 'keep'
  readonly gossipIntervalMs: number
  readonly tombstoneGraceMs: number
  readonly hintWindowMs: number
  readonly repair: boolean
}

/**
 * A replica process: its disk outlives its crashes; everything else (engine, hint store, membership,
 * anti-entropy, hint replayer, peer connections, service) is built at each start as main.ts builds
 * it, on a Runtime of the simulated clock whose timers die with the process and wait while it is
 * paused, and whose sockets are this replica's end of simulated links.
 */
class SimReplica implements SimHost {
  readonly disk = new MemDisk()
  private inc: Incarnation | undefined
  private booting = false
  private gen = 0
  private incarnation = 1
  private crashed = false
  isPaused = false
  /** Timer callbacks that came due while paused: they run when the process resumes. */
  private held: Array<() => void> = []
  /** Counters of incarnations that have crashed. */
  private readonly past = noBackground()

  constructor(readonly id: string, private readonly clock: SimClock, private readonly net: SimNetwork, private readonly cfg: ReplicaConfig) {}

  service(): ReplicaService | undefined { return this.inc?.svc }
  paused(): boolean { return this.isPaused }
  generation(): number { return this.gen }
  up(): boolean { return this.inc !== undefined || this.booting }

  /** A Runtime of this process: timers of an older incarnation never fire, those due while paused wait for the resume. */
  private runtime(gen: number): Runtime {
    const base = this.clock.runtime(this.net.connector(this.id))
    const gate = (fn: () => void) => () => {
      if (this.gen !== gen) return
      if (this.isPaused) { this.held.push(gate(fn)); return }
      fn()
    }
    return { ...base, setTimeout: (fn, ms) => base.setTimeout(gate(fn), ms), tick: fn => base.tick(gate(fn)) }
  }

  start(): void {
    assert(!this.up(), `${this.id} started twice`)
    // As replica/node/main.ts does: a start after a crash (not a clean stop) takes a new incarnation.
    if (this.crashed && this.afterCrashFresh()) this.incarnation++
    this.crashed = false
    this.booting = true
    this.clock.trace(`start ${this.id}`)
    const gen = this.gen
    void this.boot(gen).catch(e => { assert(false, `${this.id} failed to start: ${(e as Error)?.stack ?? String(e)}`) })
  }

  private afterCrashFresh(): boolean { return this.cfg.afterCrash === 'fresh' }

  private async boot(gen: number): Promise<void> {
    const { ring, url } = this.cfg
    const rt = this.runtime(gen)
    const engine = new MemEngine(this.disk, this.clock, mergeStates, () => this.isPaused, this.id)
    const actor = `${this.id}.${this.incarnation}`
    // Hints for absent owners: read back before the replica serves, as main.ts does.
    const opened = MemHintLog.open(this.disk, this.clock, () => this.isPaused, this.id)
    const hints = new HintStore({ log: opened.log, now: rt.now, bounds: { ...defaultHintBounds, windowMs: this.cfg.hintWindowMs } })
    await hints.load(opened.records, opened.problems)
    // Crashed while loading: this incarnation is gone (its log's appends were lost with it).
    if (this.gen !== gen) return
    const members = new MembershipService({
      self: this.id, url, runtime: rt, gossipIntervalMs: this.cfg.gossipIntervalMs, phiThreshold: limits.phiThresholdDefault,
      ring, handoff: noHandoff, log: quiet, onGone: quiet,
    })
    const peers = new ConnectionPool(rt, { client: `peer@${this.id}`, perReplica: 1 })
    const peerConnection = (node: string): Connection => peers.connectionTo(node, () => members.ring().nodes)
    let svc: ReplicaService | undefined
    const aae = new AntiEntropy({
      nodeId: this.id, actor, engine, ring: () => members.ring(), runtime: rt, isReachable: members.isReachable, log: quiet,
      peer: (node): AaePeer => ({ request: (type, body) => peerConnection(node).request(type, body, limits.aaeRequestTimeoutMs) }),
      applyState: (key, state) => svc!.applyState(key, state),
      tombstoneGraceMs: this.cfg.tombstoneGraceMs, sweepIntervalMs: faultLimits.simAaeSweepIntervalMs,
    })
    svc = new ReplicaService({ nodeId: this.id, actor, engine, ring: () => members.ring(), valueBytesMax: limits.valueBytesDefault, membership: members, hints, aae })
    const replayer = new HintReplayer({
      store: hints, ring: () => members.ring(), isReachable: members.isReachable, ttlMs: this.cfg.tombstoneGraceMs,
      send: async (node, key, state) => {
        await peerConnection(node).request('replicate', { key: enc.encode(key), state: decodeState(state) }, limits.hintReplayTimeoutMs, state.byteLength)
      },
      now: rt.now,
      setTimeout: (fn, ms) => rt.setTimeout(fn, ms, { background: true }),
      clearTimeout: h => rt.clearTimeout(h),
    })
    this.inc = { gen, engine, hintLog: opened.log, members, hints, peers, aae, replayer, svc }
    this.booting = false
    members.start()
    if (this.cfg.repair) {
      replayer.start()
      void aae.start()
    }
    this.clock.trace(`up ${this.id} (${opened.records.length} hint records read back${opened.problems.length > 0 ? ', a torn tail' : ''})`)
  }

  crash(): void {
    if (!this.up()) return
    const inc = this.inc
    if (inc) {
      addCounts(this.past, countsOf(inc))
      inc.members.close()
      inc.replayer.stop()
      inc.aae.close()
      inc.peers.close()
      inc.hintLog.crash()
      inc.engine.crash()
    } else {
      this.disk.generation++
    }
    this.inc = undefined
    this.booting = false
    this.isPaused = false
    this.held = []
    this.crashed = true
    this.gen++
    this.clock.trace(`crash ${this.id}`)
  }

  resume(): void {
    this.isPaused = false
    for (const fn of this.held.splice(0)) this.clock.at(0, fn)
  }

  /** What this replica holds for `key`, read from its engine directly (no network); null for nothing, EMPTY when reaped. */
  state(key: string): DvvSet | null {
    const bytes = this.inc?.engine.get(key) ?? this.disk.durable.get(key)
    return bytes === undefined ? null : decodeStored(bytes).state
  }

  /** Hints this replica still keeps for absent owners (on its disk while it is down or starting). */
  hintsPending(): number {
    return this.inc ? this.inc.hints.stats().hints : MemHintLog.pendingOnDisk(this.disk)
  }

  counts(): BackgroundCounts {
    const out = { ...this.past }
    if (this.inc) addCounts(out, countsOf(this.inc))
    return out
  }
}

function countsOf(inc: Incarnation): BackgroundCounts {
  const h = inc.hints.counters, a = inc.aae.counters
  return {
    hintsAccepted: h.accepted, hintsRefused: h.refused, hintLogTornTails: h.corruptSegments, hintsDelivered: h.replayed, hintsExpired: h.expired, hintsDropped: h.dropped,
    aaeKeysRepaired: a.keysRepaired, aaeExchangesRepaired: a.exchanges.repaired, tombstonesReaped: a.tombstonesReaped,
    aaeSegmentsCorrected: a.segmentsCorrected, gossipSent: inc.members.counters.gossipSent,
  }
}

export function addCounts(into: BackgroundCounts, more: BackgroundCounts): void {
  for (const k of Object.keys(into) as Array<keyof BackgroundCounts>) into[k] += more[k]
}

export async function simulate(opts: SimOptions): Promise<SimResult> {
  const clock = new SimClock(opts.seed)
  const net = new SimNetwork(clock, opts.faults === false ? 0 : faultLimits.simLossPermille)
  const replicaCount = opts.replicas ?? faultLimits.simReplicas
  assert(Number.isSafeInteger(replicaCount) && replicaCount >= 1 && replicaCount <= faultLimits.simReplicasMax, `replicas: 1..${faultLimits.simReplicasMax}`)
  const clientCount = opts.clients ?? faultLimits.simClients
  const workloadMs = opts.workloadMs ?? faultLimits.simWorkloadMs
  const nodes = Array.from({ length: replicaCount }, (_, i) => ({ id: `n${i + 1}`, url: `ws://n${i + 1}.sim:7000` }))
  const ring = createRing({ nodes, partitions: faultLimits.simPartitions, n: Math.min(3, replicaCount) })
  const replicas = nodes.map(n => new SimReplica(n.id, clock, net, {
    url: n.url, ring, afterCrash: opts.afterCrash ?? 'fresh', gossipIntervalMs: faultLimits.simGossipIntervalMs,
    tombstoneGraceMs: faultLimits.simTombstoneGraceMs, hintWindowMs: faultLimits.simHintWindowMs, repair: opts.repair ?? true,
  }))
  replicas.forEach((r, i) => net.addHost(r, nodes[i]!.url))
  for (const r of replicas) r.start()
  const byId = new Map(replicas.map(r => [r.id, r]))
  const clientIds = Array.from({ length: clientCount }, (_, i) => `c${i + 1}`)
  const endpoints = [...clientIds, ...nodes.map(n => n.id)]

  // ---- The fault schedule, drawn up front from the seed. ----
  const schedule: string[] = []
  const faults = Object.fromEntries(faultKinds.map(k => [k, 0])) as Record<FaultKind, number>
  // The replica the final fault keeps down, while it does: an earlier crash's restart must not end it.
  let heldDown: SimReplica | undefined
  const restartLater = (r: SimReplica, ms: number) => clock.at(ms, () => { if (!r.up() && r !== heldDown) { r.start(); net.heal() } })
  // A link is client-replica or replica-replica (gossip, hint replays, anti-entropy); clients never
  // talk to each other.
  const linkPair = (): [string, string] => {
    const r = clock.pick(replicas).id
    const other = clock.pick(endpoints.filter(e => e !== r))
    return clock.chance(500) ? [other, r] : [r, other]
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
        clock.at(startMs + lastsMs, () => { if (r.isPaused) { r.resume(); net.resumed(r.id) } clock.trace(`resume ${r.id}`) })
        break
      case 'disk-full':
        what = `disk of ${r.id} full for ${lastsMs} ms, then a restart`
        clock.at(startMs, () => { r.disk.full = true; clock.trace(`disk full ${r.id}`) })
        clock.at(startMs + lastsMs, () => { r.disk.full = false; r.crash(); net.crashed(r.id); restartLater(r, faultLimits.simDelayMsMax) })
        break
      case 'clog': {
        const [a, b] = linkPair()
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
          const [a, b] = linkPair()
          links = kind === 'one-way' ? [[a, b]] : [[a, b], [b, a]]
          what = kind === 'one-way' ? `drop ${a}>${b} for ${lastsMs} ms` : `cut ${a}|${b} for ${lastsMs} ms`
        }
        clock.at(startMs, () => { for (const [a, b] of links) net.block(a, b); clock.trace(`partition: ${what}`) })
        clock.at(startMs + lastsMs, () => { for (const [a, b] of links) net.unblock(a, b); net.heal(); clock.trace(`healed: ${what}`) })
      }
    }
    schedule.push(`at ${startMs} ms: ${what}`)
  }
  // The final fault, as the nemesis's: one replica cut off from every other endpoint, or crashed,
  // for the last simFinalFaultMs of the workload, and healed only with everything else after it.
  // What it missed meanwhile is read by no client after healing, so hints and anti-entropy alone
  // must bring it back: this is what the no-reads convergence check measures.
  if (opts.faults !== false) {
    const r = clock.pick(replicas)
    const startMs = workloadMs - faultLimits.simFinalFaultMs
    const others = endpoints.filter(e => e !== r.id)
    if (clock.chance(500)) {
      faults['majority-minority']++
      schedule.push(`at ${startMs} ms: split {${r.id}} | {${others.join(',')}} until the workload ends (final fault)`)
      clock.at(startMs, () => { for (const e of others) { net.block(e, r.id); net.block(r.id, e) } clock.trace(`final fault: ${r.id} cut off`) })
    } else {
      faults.crash++
      schedule.push(`at ${startMs} ms: crash ${r.id} until the workload ends (final fault)`)
      clock.at(startMs, () => { heldDown = r; r.crash(); net.crashed(r.id); clock.trace(`final fault: ${r.id} down`) })
    }
  }

  // ---- The workload. ----
  const readModes = [
    { what: 'all targets at once', opts: { readFanout: 'all' as const } },
    { what: 'R first, the rest after 1 ms', opts: { speculativeReadMs: 1 } },
    { what: 'R first, the rest after 20 ms', opts: { speculativeReadMs: 20 } },
    { what: 'R first, the rest after 200 ms', opts: { speculativeReadMs: 200 } },
    { what: 'R first once its gets have a p99', opts: {} },
  ]
  const history = new History()
  let running = clientCount
  const coordinators = clientIds.map((id, i) => {
    // How the client's gets choose replicas (docs/quorum.md): every target; R first with spares
    // after a fixed delay; or R first after the p99 of its gets (all targets until it has one).
    const readMode = clock.pick(readModes)
    schedule.push(`client ${id}: reads ${readMode.what}`)
    const kv = new KvCoordinator({ seeds: nodes.map(n => n.url), runtime: clock.runtime(net.connector(id)), timeoutMs: faultLimits.workloadTimeoutMs, client: id, ...readMode.opts })
    const port: KvPort = { get: (key, o) => kv.get(key, o ?? {}), write: (key, value, context) => kv.put(key, value, { context }) }
    void runClient({ kv: port, client: i + 1, history, random: clock.random, now: () => clock.now, sleep: ms => clock.sleep(ms), until: workloadMs, thinkMsMax: faultLimits.simThinkMsMax })
      .finally(() => { running-- })
    return kv
  })
  let budgetOk = await clock.run(Number.MAX_SAFE_INTEGER, () => running === 0 && clock.now >= workloadMs)
  for (const kv of coordinators) kv.close()

  // ---- Every fault ends. ----
  const healedAt = clock.now
  heldDown = undefined
  net.heal(true)
  for (const r of replicas) {
    r.disk.full = false
    if (r.isPaused) { r.resume(); net.resumed(r.id) }
    if (!r.up()) r.start()
  }
  clock.trace('every fault ended')

  // ---- Check, as the nemesis does: hints and anti-entropy alone (no client reads) until every
  // primary of every key holds the same state and every hint store is empty; then one R=N read per
  // key for the history check. ----
  const n = ring.n
  const keys = [...setKeys, ...registerKeys]
  const finals = new Map<string, string[]>()
  const primaryStates = () => new Map(keys.map(k => [k, new Map(preferenceList(ring, k).primaries.map(p => [p, byId.get(p)!.state(k)]))]))
  const hintsPending = () => replicas.reduce((sum, r) => sum + r.hintsPending(), 0)
  const agreed = () => hintsPending() === 0 && checkHistory(history, new Map(), primaryStates()).divergent.length === 0
  let convergedAfterMs: number | undefined
  let checking = true
  const differingAtHeal = checkHistory(history, new Map(), primaryStates()).divergent.length
  void (async () => {
    while (clock.now - healedAt <= faultLimits.simConvergeMsMax) {
      if (agreed()) { convergedAfterMs = clock.now - healedAt; break }
      await clock.sleep(faultLimits.simConvergePollMs)
    }
  })().finally(() => { checking = false })
  budgetOk = (await clock.run(Number.MAX_SAFE_INTEGER, () => !checking)) && budgetOk
  clock.trace(convergedAfterMs === undefined ? 'replicas did NOT converge' : `replicas converged ${convergedAfterMs} ms after faults ended`)
  // A quiet phase, still without clients: the last tombstones pass their grace and are reaped. The
  // replicas must still agree after it (a reaped key reads as not found, as its tombstones do).
  let agreedAfterQuiet = false
  if (convergedAfterMs !== undefined) {
    budgetOk = (await clock.run(clock.now + faultLimits.simQuietMs)) && budgetOk
    agreedAfterQuiet = agreed()
    clock.trace(`after ${faultLimits.simQuietMs} quiet ms the replicas ${agreedAfterQuiet ? 'still agree' : 'DISAGREE'}`)
  }
  // The replicas as hints and anti-entropy left them: what the report compares when they did not
  // agree (the final read would repair some of it). Then the read, also after a failed liveness
  // check, so that the report still says what was lost or resurrected.
  const statesBeforeRead = primaryStates()
  const hintsPendingAtEnd = hintsPending()
  const checker = new KvCoordinator({ seeds: nodes.map(x => x.url), runtime: clock.runtime(net.connector('checker')), timeoutMs: faultLimits.workloadTimeoutMs, client: 'checker' })
  checking = true
  {
    void (async () => {
      for (const key of keys) {
        for (let attempt = 0; attempt < faultLimits.simFinalReadAttemptsMax && !finals.has(key); attempt++) {
          try {
            const read = await checker.get(key, { r: n })
            finals.set(key, read.values.map(v => dec.decode(v)))
          } catch {
            await clock.sleep(faultLimits.checkRoundPauseMs)
          }
        }
      }
    })().finally(() => { checking = false })
    budgetOk = (await clock.run(Number.MAX_SAFE_INTEGER, () => !checking)) && budgetOk
  }
  checker.close()
  const background = noBackground()
  for (const r of replicas) addCounts(background, r.counts())

  const report = checkHistory(history, finals, agreedAfterQuiet ? primaryStates() : statesBeforeRead)
  return {
    seed: opts.seed, traceHash: clock.traceHash(), events: clock.events, frames: net.frames, simulatedMs: clock.now,
    schedule, faults, report, differingAtHeal, convergedAfterMs, agreedAfterQuiet, hintsPendingAtEnd, background, eventBudgetExceeded: !budgetOk,
    ok: budgetOk && passed(report) && convergedAfterMs !== undefined && agreedAfterQuiet && finals.size === keys.length && background.aaeSegmentsCorrected === 0,
    traceTail: clock.traceTail(),
  }
}

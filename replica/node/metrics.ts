// Prometheus text exposition of a replica's counters (GET /metrics): requests, frames and errors,
// storage and snapshot gauges, the data plane's connections (open, refused and closed by reason,
// so a flood or a client that does not read shows up here), admin snapshot calls, hinted handoff
// (hints pending per owner, replayed, refused, dropped), partition handoff (keys, bytes and batches
// each way, transfers by state, forwarding), anti-entropy (exchanges by outcome, keys repaired, bytes
// moved, tombstones reaped), and the process's resident memory. And where time goes
// (docs/performance.md): latency histograms of the replica's requests (stamp, replicate, get) and of
// its storage (WAL fsync, memtable flush, compaction, and the slices of flush and compaction work
// between event-loop yields), plus the process's event-loop delay.

import type { IntervalHistogram } from 'node:perf_hooks'
import type { LatencyHistogram } from '../../coordinator/metrics/histogram.ts'
import { limits } from '../../coordinator/limits.ts'
import { memberStatuses } from '../../coordinator/membership/cluster-state.ts'
import type { MembershipService } from '../membership/membership-service.ts'
import type { HandoffCounters, TransferStatus } from '../handoff/handoff-manager.ts'
import type { DropStatus } from '../handoff/partition-drop.ts'
import type { HintStore } from '../hints/hint-store.ts'
import type { ReplicaCounters, ReplicaLatency } from '../replica-service.ts'
import type { EngineStats, StorageLatency } from '../storage/engine-types.ts'
import type { DataPlaneStats } from './ws-data-plane.ts'
import type { AaeCounters } from '../aae/anti-entropy.ts'
import { processCounters } from './process.ts'

/** POST /admin/snapshot calls: started a snapshot, shared one in flight, refused (429). */
export interface AdminCounters {
  snapshotsStarted: number
  snapshotsShared: number
  snapshotsRefused: number
}

/** The histograms /metrics shows: the service's, the engine's (when it keeps them) and the event loop's. */
export interface LatencyMetrics {
  readonly requests: ReplicaLatency
  readonly storage: StorageLatency | undefined
  readonly eventLoop: IntervalHistogram | undefined
}

/**
 * Lines of a Prometheus histogram (seconds) from Node's event-loop delay histogram (ns). Node keeps
 * an HDR histogram and exposes percentiles, not bucket counts, so each power-of-two bucket counts the
 * share of samples at the highest percentile whose value is within the bound: exact to the HDR's
 * precision, and monotonic as Prometheus requires.
 *
 * Node records each sample as the time between two ticks of a timer that repeats every
 * `resolutionMs`, so an idle loop reads `resolutionMs` (10 ms), not 0. The delay is that time less the
 * resolution: every sample is shifted by the same amount, so each percentile is too (a timer that
 * fired a little early reads as 0, and the sum takes the mean less the resolution).
 */
export function eventLoopLines(name: string, labels: string, h: Pick<IntervalHistogram, 'percentiles' | 'count' | 'mean'>,
  resolutionMs: number = limits.eventLoopDelayResolutionMs): string[] {
  const shiftNs = resolutionMs * 1e6
  const points = [...h.percentiles].map(([p, v]): [number, number] => [p, Math.max(0, v - shiftNs)]).sort((a, b) => a[0] - b[0])
  const count = h.count
  const lines: string[] = []
  for (let octave = 0; octave <= limits.latencyHistogramOctaves; octave++) {
    const leNs = 2 ** octave * 1000
    let share = 0
    for (const [p, v] of points) if (v <= leNs) share = p
    lines.push(`${name}_bucket{${labels},le="${leNs / 1e9}"} ${Math.round(count * share / 100)}`)
  }
  lines.push(`${name}_bucket{${labels},le="+Inf"} ${count}`)
  lines.push(`${name}_sum{${labels}} ${count > 0 && Number.isFinite(h.mean) ? (Math.max(0, h.mean - shiftNs) * count) / 1e9 : 0}`)
  lines.push(`${name}_count{${labels}} ${count}`)
  return lines
}

/** The handoff manager's view for /metrics: its counters and its transfers, and the partition drop's. */
export interface HandoffMetrics {
  readonly counters: HandoffCounters
  readonly transfers: readonly TransferStatus[]
  readonly drops?: DropStatus
}

const transferStates: ReadonlyArray<TransferStatus['state']> = ['queued', 'streaming', 'done', 'failed']

export function renderMetrics(node: string, c: ReplicaCounters, storage: EngineStats, extra: Record<string, number> = {},
  plane?: DataPlaneStats, admin?: AdminCounters, hints?: HintStore, handoff?: HandoffMetrics, aae?: AaeCounters, latency?: LatencyMetrics): string {
  const lines: string[] = []
  const label = (k: string, v: string) => `${k}="${v.replace(/["\\\n]/g, '_')}"`
  const n = label('node', node)
  lines.push('# TYPE ringkv_requests_total counter')
  for (const [type, count] of Object.entries(c.requests)) lines.push(`ringkv_requests_total{${n},${label('type', type)}} ${count}`)
  lines.push('# TYPE ringkv_frames_total counter')
  lines.push(`ringkv_frames_total{${n},${label('direction', 'in')}} ${c.framesIn}`)
  lines.push(`ringkv_frames_total{${n},${label('direction', 'out')}} ${c.framesOut}`)
  lines.push('# TYPE ringkv_errors_total counter')
  for (const [kind, count] of Object.entries(c.errors)) lines.push(`ringkv_errors_total{${n},${label('kind', kind)}} ${count}`)
  lines.push('# TYPE ringkv_pending_writes gauge', `ringkv_pending_writes{${n}} ${c.pendingWrites}`)
  for (const [k, v] of Object.entries({ ...storage, ...extra })) {
    const name = `ringkv_storage_${k.replace(/[A-Z]/g, m => '_' + m.toLowerCase())}`
    lines.push(`# TYPE ${name} gauge`, `${name}{${n}} ${v}`)
  }
  if (plane) {
    lines.push('# TYPE ringkv_connections_open gauge', `ringkv_connections_open{${n}} ${plane.open}`)
    lines.push('# TYPE ringkv_connections_awaiting_hello gauge', `ringkv_connections_awaiting_hello{${n}} ${plane.handshakes}`)
    lines.push('# TYPE ringkv_connections_paused gauge', `ringkv_connections_paused{${n}} ${plane.paused}`)
    lines.push('# TYPE ringkv_reply_backlog_bytes gauge', `ringkv_reply_backlog_bytes{${n}} ${plane.replyBacklogBytes}`)
    lines.push('# TYPE ringkv_connections_refused_total counter')
    for (const [reason, count] of Object.entries(plane.refused)) lines.push(`ringkv_connections_refused_total{${n},${label('reason', reason)}} ${count}`)
    lines.push('# TYPE ringkv_connections_closed_total counter')
    for (const [reason, count] of Object.entries(plane.closed)) lines.push(`ringkv_connections_closed_total{${n},${label('reason', reason)}} ${count}`)
  }
  if (admin) {
    lines.push('# TYPE ringkv_admin_snapshots_total counter')
    lines.push(`ringkv_admin_snapshots_total{${n},${label('outcome', 'started')}} ${admin.snapshotsStarted}`)
    lines.push(`ringkv_admin_snapshots_total{${n},${label('outcome', 'shared')}} ${admin.snapshotsShared}`)
    lines.push(`ringkv_admin_snapshots_total{${n},${label('outcome', 'refused')}} ${admin.snapshotsRefused}`)
  }
  // Handoff: both directions of keys and bytes (sent: acknowledged durable by the target; received:
  // stored here), transfers by state, and what forwarding did.
  lines.push('# TYPE ringkv_handoff_keys_total counter')
  lines.push(`ringkv_handoff_keys_total{${n},${label('direction', 'received')}} ${c.handoffKeysIn}`)
  lines.push('# TYPE ringkv_handoff_bytes_total counter')
  lines.push(`ringkv_handoff_bytes_total{${n},${label('direction', 'received')}} ${c.handoffBytesIn}`)
  lines.push('# TYPE ringkv_handoff_batches_total counter')
  lines.push(`ringkv_handoff_batches_total{${n},${label('direction', 'received')}} ${c.handoffBatchesIn}`)
  if (handoff) {
    const h = handoff.counters
    lines.push(`ringkv_handoff_keys_total{${n},${label('direction', 'sent')}} ${h.keysSent}`)
    lines.push(`ringkv_handoff_bytes_total{${n},${label('direction', 'sent')}} ${h.bytesSent}`)
    lines.push(`ringkv_handoff_batches_total{${n},${label('direction', 'sent')}} ${h.batchesSent}`)
    lines.push(`ringkv_handoff_batches_total{${n},${label('direction', 'failed')}} ${h.batchesFailed}`)
    lines.push('# TYPE ringkv_handoff_transfers gauge')
    for (const state of transferStates) {
      lines.push(`ringkv_handoff_transfers{${n},${label('state', state)}} ${handoff.transfers.filter(t => t.state === state).length}`)
    }
    lines.push('# TYPE ringkv_handoff_forwards_total counter')
    lines.push(`ringkv_handoff_forwards_total{${n},${label('outcome', 'sent')}} ${h.forwarded}`)
    lines.push(`ringkv_handoff_forwards_total{${n},${label('outcome', 'failed')}} ${h.forwardsFailed}`)
    lines.push(`ringkv_handoff_forwards_total{${n},${label('outcome', 'dropped')}} ${h.forwardsDropped}`)
    lines.push('# TYPE ringkv_handoff_rescans_total counter', `ringkv_handoff_rescans_total{${n}} ${h.rescans}`)
    lines.push('# TYPE ringkv_handoff_retries_total counter', `ringkv_handoff_retries_total{${n}} ${h.retries}`)
    // The partition drop (docs/handoff.md): keys deleted of partitions this replica no longer holds,
    // partitions finished and stopped, and partitions still waiting.
    const d = handoff.drops
    if (d) {
      lines.push('# TYPE ringkv_handoff_dropped_keys_total counter', `ringkv_handoff_dropped_keys_total{${n}} ${d.keysDropped}`)
      lines.push('# TYPE ringkv_handoff_dropped_partitions_total counter', `ringkv_handoff_dropped_partitions_total{${n}} ${d.partitionsDropped}`)
      lines.push('# TYPE ringkv_handoff_drops_stopped_total counter', `ringkv_handoff_drops_stopped_total{${n}} ${d.stopped}`)
      lines.push('# TYPE ringkv_handoff_drops_pending gauge', `ringkv_handoff_drops_pending{${n}} ${d.pending.length}`)
    }
  }
  if (hints) {
    const pending = hints.pending()
    lines.push('# TYPE ringkv_hints_pending gauge')
    for (const [target, p] of pending) lines.push(`ringkv_hints_pending{${n},${label('target', target)}} ${p.hints}`)
    lines.push('# TYPE ringkv_hints_pending_bytes gauge')
    for (const [target, p] of pending) lines.push(`ringkv_hints_pending_bytes{${n},${label('target', target)}} ${p.bytes}`)
    const c = hints.counters
    lines.push('# TYPE ringkv_hints_accepted_total counter', `ringkv_hints_accepted_total{${n}} ${c.accepted}`)
    lines.push('# TYPE ringkv_hints_replayed_total counter', `ringkv_hints_replayed_total{${n}} ${c.replayed}`)
    lines.push('# TYPE ringkv_hints_refused_total counter', `ringkv_hints_refused_total{${n}} ${c.refused}`)
    lines.push('# TYPE ringkv_hints_dropped_total counter', `ringkv_hints_dropped_total{${n}} ${c.dropped}`)
    lines.push('# TYPE ringkv_hints_expired_total counter', `ringkv_hints_expired_total{${n}} ${c.expired}`)
    lines.push('# TYPE ringkv_hints_corrupt_segments_total counter', `ringkv_hints_corrupt_segments_total{${n}} ${c.corruptSegments}`)
    lines.push('# TYPE ringkv_hints_log_segments gauge', `ringkv_hints_log_segments{${n}} ${hints.stats().segments}`)
  }
  if (latency) {
    const hist = (name: string, help: string, entries: Array<[string, LatencyHistogram]>, labelOf: (v: string) => string): void => {
      lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} histogram`)
      for (const [v, h] of entries) lines.push(...h.prometheus(name, `${n},${labelOf(v)}`))
    }
    const r = latency.requests
    hist('ringkv_request_duration_seconds', 'From dispatch to reply, successful requests only; a write includes its WAL fsync.',
      [['stamp', r.stamp], ['replicate', r.replicate], ['get', r.get]], v => label('op', v))
    const s = latency.storage
    if (s) {
      hist('ringkv_storage_duration_seconds', 'WAL group fdatasync; memtable flush and compaction from start to commit.',
        [['wal_fsync', s.walFsync], ['flush', s.flush], ['compaction', s.compaction]], v => label('op', v))
      hist('ringkv_storage_slice_seconds', 'Event-loop time of one slice of flush or compaction work, between two yields.',
        [['flush', s.flushSlice], ['compaction', s.compactionSlice]], v => label('work', v))
    }
    if (latency.eventLoop) {
      lines.push('# HELP ringkv_event_loop_delay_seconds How late this process\'s event loop ran a timer (perf_hooks.monitorEventLoopDelay, less its resolution).', '# TYPE ringkv_event_loop_delay_seconds histogram')
      lines.push(...eventLoopLines('ringkv_event_loop_delay_seconds', n, latency.eventLoop))
    }
  }
  if (aae) {
    lines.push('# TYPE ringkv_aae_exchanges_total counter')
    for (const [outcome, count] of Object.entries(aae.exchanges)) lines.push(`ringkv_aae_exchanges_total{${n},${label('outcome', outcome)}} ${count}`)
    lines.push('# TYPE ringkv_aae_keys_repaired_total counter', `ringkv_aae_keys_repaired_total{${n}} ${aae.keysRepaired}`)
    lines.push('# TYPE ringkv_aae_bytes_total counter', `ringkv_aae_bytes_total{${n}} ${aae.bytes}`)
    lines.push('# TYPE ringkv_tombstones_reaped_total counter', `ringkv_tombstones_reaped_total{${n}} ${aae.tombstonesReaped}`)
    lines.push('# TYPE ringkv_aae_segments_corrected_total counter', `ringkv_aae_segments_corrected_total{${n}} ${aae.segmentsCorrected}`)
  }
  lines.push('# TYPE process_resident_memory_bytes gauge', `process_resident_memory_bytes{${n}} ${process.memoryUsage.rss()}`)
  // Prometheus's client libraries name it so: user plus system CPU time of this process.
  const cpu = process.cpuUsage()
  lines.push('# TYPE process_cpu_seconds_total counter', `process_cpu_seconds_total{${n}} ${(cpu.user + cpu.system) / 1e6}`)
  lines.push('# TYPE ringkv_unhandled_rejections_total counter', `ringkv_unhandled_rejections_total{${n}} ${processCounters.unhandledRejections}`)
  return lines.join('\n') + '\n'
}


/**
 * Membership (docs/membership.md): gossip sent, failed, answered, refused and shed; transfers this
 * replica started, finished and failed; the ring version; members by status, and those this
 * replica's failure detector finds unreachable.
 */
export function renderMembershipMetrics(node: string, m: MembershipService): string {
  const n = `node="${node.replace(/["\\\n]/g, '_')}"`
  const c = m.counters
  const lines: string[] = []
  const counter = (name: string, v: number) => lines.push(`# TYPE ${name} counter`, `${name}{${n}} ${v}`)
  counter('ringkv_gossip_sent_total', c.gossipSent)
  counter('ringkv_gossip_failed_total', c.gossipFailed)
  counter('ringkv_gossip_received_total', c.gossipReceived)
  counter('ringkv_gossip_refused_total', c.gossipRefused)
  counter('ringkv_gossip_overloaded_total', c.gossipOverloaded)
  counter('ringkv_transfers_started_total', c.transfersStarted)
  counter('ringkv_transfers_done_total', c.transfersDone)
  counter('ringkv_transfers_failed_total', c.transfersFailed)
  lines.push('# TYPE ringkv_ring_version gauge', `ringkv_ring_version{${n}} ${m.membership.state.ring?.version ?? 0}`)
  const members = m.members()
  lines.push('# TYPE ringkv_members gauge')
  for (const status of memberStatuses) lines.push(`ringkv_members{${n},status="${status}"} ${members.filter(x => x.status === status).length}`)
  lines.push('# TYPE ringkv_members_unreachable gauge', `ringkv_members_unreachable{${n}} ${members.filter(x => !x.reachable && x.status !== 'left' && x.status !== 'removed').length}`)
  return lines.join('\n') + '\n'
}

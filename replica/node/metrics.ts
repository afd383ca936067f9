// Prometheus text exposition of a replica's counters (GET /metrics): requests, frames and errors,
// storage and snapshot gauges, the data plane's connections (open, refused and closed by reason,
// so a flood or a client that does not read shows up here), admin snapshot calls, hinted handoff
// (hints pending per owner, replayed, refused, dropped), and the process's resident memory.

import type { HintStore } from '../hints/hint-store.ts'
import type { ReplicaCounters } from '../replica-service.ts'
import type { EngineStats } from '../storage/engine-types.ts'
import type { DataPlaneStats } from './ws-data-plane.ts'
import { processCounters } from './process.ts'

/** POST /admin/snapshot calls: started a snapshot, shared one in flight, refused (429). */
export interface AdminCounters {
  snapshotsStarted: number
  snapshotsShared: number
  snapshotsRefused: number
}

export function renderMetrics(node: string, c: ReplicaCounters, storage: EngineStats, extra: Record<string, number> = {},
  plane?: DataPlaneStats, admin?: AdminCounters, hints?: HintStore): string {
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
    lines.push('# TYPE ringkv_hints_corrupt_segments_total counter', `ringkv_hints_corrupt_segments_total{${n}} ${c.corruptSegments}`)
    lines.push('# TYPE ringkv_hints_log_segments gauge', `ringkv_hints_log_segments{${n}} ${hints.stats().segments}`)
  }
  lines.push('# TYPE process_resident_memory_bytes gauge', `process_resident_memory_bytes{${n}} ${process.memoryUsage.rss()}`)
  lines.push('# TYPE ringkv_unhandled_rejections_total counter', `ringkv_unhandled_rejections_total{${n}} ${processCounters.unhandledRejections}`)
  return lines.join('\n') + '\n'
}


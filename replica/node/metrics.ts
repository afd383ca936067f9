// Prometheus text exposition of a replica's counters (GET /metrics).

import type { ReplicaCounters } from '../replica-service.ts'
import type { EngineStats } from '../storage/engine-types.ts'

export function renderMetrics(node: string, c: ReplicaCounters, storage: EngineStats, extra: Record<string, number> = {}): string {
  const lines: string[] = []
  const label = (k: string, v: string) => `${k}="${v.replace(/["\\\n]/g, '_')}"`
  lines.push('# TYPE ringkv_requests_total counter')
  for (const [type, n] of Object.entries(c.requests)) lines.push(`ringkv_requests_total{${label('node', node)},${label('type', type)}} ${n}`)
  lines.push('# TYPE ringkv_frames_total counter')
  lines.push(`ringkv_frames_total{${label('node', node)},${label('direction', 'in')}} ${c.framesIn}`)
  lines.push(`ringkv_frames_total{${label('node', node)},${label('direction', 'out')}} ${c.framesOut}`)
  lines.push('# TYPE ringkv_errors_total counter')
  for (const [kind, n] of Object.entries(c.errors)) lines.push(`ringkv_errors_total{${label('node', node)},${label('kind', kind)}} ${n}`)
  lines.push('# TYPE ringkv_pending_writes gauge', `ringkv_pending_writes{${label('node', node)}} ${c.pendingWrites}`)
  for (const [k, v] of Object.entries({ ...storage, ...extra })) {
    const name = `ringkv_storage_${k.replace(/[A-Z]/g, m => '_' + m.toLowerCase())}`
    lines.push(`# TYPE ${name} gauge`, `${name}{${label('node', node)}} ${v}`)
  }
  return lines.join('\n') + '\n'
}

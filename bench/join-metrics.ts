// What bench/join.ts reads from a replica while a join streams: the handoff and transfer counters
// of its /metrics, and the member view of its GET /members. Kept apart from the bench (which runs
// on import) so that test/join-bench-metrics.test.ts can check the names against a real replica: a
// series renamed in replica/node/metrics.ts would otherwise read as 0 bytes moved.

/** The counters the join is measured by, for one replica at one moment (sums over its series). */
export interface Counters {
  bytesSent: number
  bytesReceived: number
  keysSent: number
  keysReceived: number
  transfersStarted: number
  transfersDone: number
  transfersFailed: number
}

/** Each counter's series: metric name and, for handoff, the `direction` label. One home for the names. */
const series: ReadonlyArray<{ readonly name: string; readonly direction?: string; readonly field: keyof Counters }> = [
  { name: 'ringkv_handoff_bytes_total', direction: 'sent', field: 'bytesSent' },
  { name: 'ringkv_handoff_bytes_total', direction: 'received', field: 'bytesReceived' },
  { name: 'ringkv_handoff_keys_total', direction: 'sent', field: 'keysSent' },
  { name: 'ringkv_handoff_keys_total', direction: 'received', field: 'keysReceived' },
  { name: 'ringkv_transfers_started_total', field: 'transfersStarted' },
  { name: 'ringkv_transfers_done_total', field: 'transfersDone' },
  { name: 'ringkv_transfers_failed_total', field: 'transfersFailed' },
]

/** Longest one /metrics or /members fetch may take (a sample that times out is skipped). */
const SAMPLE_FETCH_TIMEOUT_MS = 5000

export const zeroCounters = (): Counters => ({ bytesSent: 0, bytesReceived: 0, keysSent: 0, keysReceived: 0, transfersStarted: 0, transfersDone: 0, transfersFailed: 0 })

/** The series of `series` a /metrics text has, as `name{direction}` keys, each with its sum. */
function read(text: string): Map<string, number> {
  const found = new Map<string, number>()
  for (const line of text.split('\n')) {
    const m = /^(ringkv_[a-z_]+)\{([^}]*)\} (\S+)$/.exec(line)
    if (!m) continue
    const [, name, labels, raw] = m
    const v = Number(raw)
    if (!Number.isFinite(v)) continue
    const direction = /(?:^|,)direction="([a-z]+)"/.exec(labels!)?.[1]
    for (const s of series) {
      if (s.name !== name || (s.direction !== undefined && s.direction !== direction)) continue
      const key = `${s.name}{${s.direction ?? ''}}`
      found.set(key, (found.get(key) ?? 0) + v)
    }
  }
  return found
}

/** The counters of one /metrics text. */
export function parseCounters(text: string): Counters {
  const found = read(text)
  const c = zeroCounters()
  for (const s of series) c[s.field] += found.get(`${s.name}{${s.direction ?? ''}}`) ?? 0
  return c
}

/** The series the bench reads that this /metrics text lacks (`name{direction}`). */
export function missingSeries(text: string): string[] {
  const found = read(text)
  return series.map(s => `${s.name}{${s.direction ?? ''}}`).filter(k => !found.has(k))
}

/** A replica's counters, or undefined when it does not answer in time. */
export async function counters(httpUrl: string): Promise<Counters | undefined> {
  try {
    const res = await fetch(`${httpUrl}/metrics`, { signal: AbortSignal.timeout(SAMPLE_FETCH_TIMEOUT_MS) })
    if (res.status !== 200) return undefined
    return parseCounters(await res.text())
  } catch {
    return undefined
  }
}

/** The part of GET /members the bench reads. */
export interface MembersView {
  ring: { version: number; plan: { version: number; transfers: number; done: number } | null }
  members: Array<{ node: string; status: string; partitions: number; transfersPending: number }>
}

export async function membersView(httpUrl: string): Promise<MembersView | undefined> {
  try {
    const res = await fetch(`${httpUrl}/members`, { signal: AbortSignal.timeout(SAMPLE_FETCH_TIMEOUT_MS) })
    if (res.status !== 200) return undefined
    return await res.json() as MembersView
  } catch {
    return undefined
  }
}

/** Counters of several replicas added (a replica that did not answer counts nothing). */
export function sum(cs: Array<Counters | undefined>): Counters {
  const t = zeroCounters()
  for (const c of cs) if (c) for (const k of Object.keys(t) as Array<keyof Counters>) t[k] += c[k]
  return t
}

export function minus(a: Counters, b: Counters): Counters {
  const t = zeroCounters()
  for (const k of Object.keys(t) as Array<keyof Counters>) t[k] = a[k] - b[k]
  return t
}

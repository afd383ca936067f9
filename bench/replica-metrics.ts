// What the replicas say about a bench phase (bench/ycsb.ts): their /metrics histograms scraped
// before and after the phase, subtracted, and read as percentiles (at the power-of-two bounds
// Prometheus shows, so within a factor of 2); and the CPU the replica processes and this process
// used per operation, from /proc, which on a shared, noisy machine says more about cost than
// throughput does (another engineer's build slows our wall clock, not our CPU per operation).

import { readFile } from 'node:fs/promises'

/** A replica's histograms by name and labels (le removed): cumulative bucket counts, sum and count. */
export type Scrape = Map<string, { les: number[]; cumulative: number[]; sum: number; count: number }>

/** Longest one /metrics fetch may take. */
const SCRAPE_TIMEOUT_MS = 10_000
/** Linux USER_HZ: /proc/<pid>/stat counts CPU time in ticks of 1/100 s. */
const CLOCK_TICKS_PER_SEC = 100

export async function scrape(httpUrl: string): Promise<Scrape> {
  const text = await (await fetch(`${httpUrl}/metrics`, { signal: AbortSignal.timeout(SCRAPE_TIMEOUT_MS) })).text()
  const out: Scrape = new Map()
  const entry = (k: string) => {
    let h = out.get(k)
    if (!h) out.set(k, h = { les: [], cumulative: [], sum: 0, count: 0 })
    return h
  }
  for (const line of text.split('\n')) {
    const m = /^(\w+)_(bucket|sum|count)\{(.*)\} (\S+)$/.exec(line)
    if (!m) continue
    const [, name, part, labels, value] = m
    const rest = labels!.replace(/,?le="[^"]*"/, '').replace(/(^|,)node="[^"]*",?/, '$1').replace(/,$/, '')
    const h = entry(`${name}{${rest}}`)
    if (part === 'bucket') {
      const le = /le="([^"]*)"/.exec(labels!)?.[1]
      h.les.push(le === '+Inf' ? Infinity : Number(le))
      h.cumulative.push(Number(value))
    } else if (part === 'sum') h.sum = Number(value)
    else h.count = Number(value)
  }
  return out
}

/** after - before, histogram by histogram (a histogram absent before counts from zero). */
export function subtract(after: Scrape, before: Scrape): Scrape {
  const out: Scrape = new Map()
  for (const [k, a] of after) {
    const b = before.get(k)
    out.set(k, {
      les: a.les,
      cumulative: a.cumulative.map((c, i) => c - (b?.cumulative[i] ?? 0)),
      sum: a.sum - (b?.sum ?? 0),
      count: a.count - (b?.count ?? 0),
    })
  }
  return out
}

/** Adds the histograms of several replicas. */
export function combine(scrapes: Scrape[]): Scrape {
  const out: Scrape = new Map()
  for (const s of scrapes) {
    for (const [k, h] of s) {
      const o = out.get(k)
      if (!o) { out.set(k, { les: h.les, cumulative: [...h.cumulative], sum: h.sum, count: h.count }); continue }
      h.cumulative.forEach((c, i) => { o.cumulative[i] = (o.cumulative[i] ?? 0) + c })
      o.sum += h.sum
      o.count += h.count
    }
  }
  return out
}

/** The bucket bound (µs) at or below which a share q of the observations lie. */
export function quantileUs(h: { les: number[]; cumulative: number[]; count: number }, q: number): number {
  if (h.count <= 0) return 0
  const want = Math.max(1, Math.ceil(q * h.count))
  for (let i = 0; i < h.les.length; i++) if (h.cumulative[i]! >= want) return h.les[i]! * 1e6
  return Infinity
}

/** CPU time (user + system, ms) a process has used, from /proc; undefined where /proc is not there. */
export async function processCpuMs(pid: number): Promise<number | undefined> {
  try {
    const s = await readFile(`/proc/${pid}/stat`, 'utf8')
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ')
    return (Number(f[11]) + Number(f[12])) * 1000 / CLOCK_TICKS_PER_SEC
  } catch {
    return undefined
  }
}

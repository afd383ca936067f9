// Load and open-loop puts for the background-work benchmarks (handoff-bench.ts, aae-repair-bench.ts): a
// fixed rate of overwrites, each timed from its scheduled start (so a stall is not hidden by
// coordinated omission), with a side task that runs meanwhile, and the percentiles they print.

import type { KvClient } from '../client/index.ts'

export interface PutPhase<T> { lat: number[]; failed: number; side?: T }

/** Puts at `rate`/s for `ms` over `keys`, each latency from its scheduled start; `during` runs alongside and is awaited. */
export async function putPhase<T>(kv: KvClient, keys: readonly string[], value: string, rate: number, ms: number, during?: () => Promise<T>): Promise<PutPhase<T>> {
  const lat: number[] = []
  let failed = 0
  const start = performance.now()
  const total = Math.floor((ms / 1000) * rate)
  const pending: Promise<void>[] = []
  const side = during?.()
  for (let i = 0; i < total; i++) {
    const due = start + (i * 1000) / rate
    const wait = due - performance.now()
    if (wait > 0) await new Promise(r => setTimeout(r, wait))
    const k = keys[(i * 7919) % keys.length]!
    pending.push(kv.put(k, value).then(() => { lat.push(performance.now() - due) }, () => { failed++ }))
  }
  await Promise.all(pending)
  return side === undefined ? { lat, failed } : { lat, failed, side: await side }
}

/** Writes `value` under every key, 64 at a time, each retried up to 10 times with a growing pause (a load phase). */
export async function putAll(kv: KvClient, keys: readonly string[], value: string): Promise<void> {
  for (let i = 0; i < keys.length; i += 64) {
    await Promise.all(keys.slice(i, i + 64).map(async k => {
      for (let a = 1; ; a++) {
        try { await kv.put(k, value); return } catch (e) {
          if (a >= 10) throw e
          await new Promise(r => setTimeout(r, 100 * a))
        }
      }
    }))
  }
}

/** The q-quantile of `xs` (ms), NaN when empty. */
export function pct(xs: readonly number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b)
  return s.length ? s[Math.min(s.length - 1, Math.floor(q * s.length))]! : NaN
}

/** One line: puts, failures, p50, p99, max. */
export function showPhase(name: string, r: { lat: number[]; failed: number }): void {
  console.log(`${name.padEnd(22)} puts ${r.lat.length} failed ${r.failed}  p50 ${pct(r.lat, 0.5).toFixed(1)} ms  p99 ${pct(r.lat, 0.99).toFixed(1)} ms  max ${Math.max(...r.lat).toFixed(1)} ms`)
}

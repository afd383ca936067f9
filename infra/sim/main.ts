// `npm run sim -- --seed N [--json]` runs one simulated cluster and prints its trace hash, schedule
// and check; `npm run sim -- --seeds K [--from S]` sweeps K seeds (S, S+1, ...) and prints a failing
// seed's schedule and the tail of its trace; `--jobs J` splits a sweep over J processes (each seed
// still runs alone and the same way). Exit status 0 only when every run passed.

import { execFile } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { parseArgs, promisify } from 'node:util'
import { faultLimits } from '../fault-limits.ts'
import { addCounts, faultKinds, noBackground, simulate, type BackgroundCounts, type FaultKind, type SimResult } from './simulation.ts'

function fail(msg: string): never {
  process.stderr.write(`sim: ${msg}\n`)
  process.exit(2)
}

function intArg(name: string, v: string | undefined, min: number, max: number): number | undefined {
  if (v === undefined) return undefined
  const n = Number(v)
  if (!Number.isSafeInteger(n) || n < min || n > max) fail(`--${name} must be an integer from ${min} to ${max}, got ${JSON.stringify(v)}`)
  return n
}

function showBackground(b: BackgroundCounts): string {
  return `hints accepted ${b.hintsAccepted}, refused ${b.hintsRefused}, delivered ${b.hintsDelivered}, expired ${b.hintsExpired}, dropped ${b.hintsDropped}, torn log tails ${b.hintLogTornTails}; ` +
    `anti-entropy keys repaired ${b.aaeKeysRepaired} (in ${b.aaeExchangesRepaired} exchanges); tombstones reaped ${b.tombstonesReaped}; tree segments corrected ${b.aaeSegmentsCorrected}; gossip messages ${b.gossipSent}`
}

function printRun(r: SimResult, verbose: boolean): void {
  const rep = r.report
  const status = r.ok ? 'PASS' : 'FAIL'
  console.log(`seed ${r.seed} ${status} trace ${r.traceHash}: ${r.events} events, ${r.frames} frames, ${r.simulatedMs} simulated ms; ` +
    `ops ${rep.ops.total} (ok ${rep.ops.ok}, failed ${rep.ops.failed}, unknown ${rep.ops.unknown}); acknowledged checked ${rep.acknowledgedChecked}; ` +
    `lost ${rep.lost.length}, resurrected ${rep.resurrected.length}, divergent ${rep.divergent.length}; ` +
    `${r.differingAtHeal} keys differing when faults stopped, ` +
    (r.convergedAfterMs === undefined ? `did NOT converge within ${faultLimits.simConvergeMsMax} ms` : `converged ${r.convergedAfterMs} ms after faults stopped (hints and anti-entropy, no reads)`))
  if (r.convergedAfterMs !== undefined && !r.agreedAfterQuiet) console.log(`  the replicas DISAGREED after ${faultLimits.simQuietMs} more quiet ms (tombstone reaping?)`)
  if (r.hintsPendingAtEnd > 0) console.log(`  ${r.hintsPendingAtEnd} hints never delivered`)
  console.log(`  background: ${showBackground(r.background)}`)
  if (!verbose && r.ok) return
  console.log('  schedule:')
  for (const s of r.schedule) console.log(`    ${s}`)
  for (const f of [...rep.lost, ...rep.resurrected].slice(0, 10)) {
    console.log(`  ${f.key} ${f.value}: ${f.why}`)
    for (const line of f.trail) console.log(`    ${line}`)
  }
  for (const d of rep.divergent.slice(0, 5)) console.log(`  divergent ${d.key}: ${d.why}`)
  if (r.eventBudgetExceeded) console.log(`  event budget (${faultLimits.simEventsMax}) exceeded`)
  if (!r.ok) {
    console.log(`  last ${r.traceTail.length} trace lines:`)
    for (const t of r.traceTail) console.log(`    ${t}`)
    console.log(`  replay: npm run sim -- --seed ${r.seed}`)
  }
}

let parsed
try {
  parsed = parseArgs({
  options: { seed: { type: 'string' }, seeds: { type: 'string' }, from: { type: 'string' }, json: { type: 'boolean', default: false }, jobs: { type: 'string' }, 'no-faults': { type: 'boolean', default: false }, 'keep-incarnation': { type: 'boolean', default: false }, 'no-repair': { type: 'boolean', default: false } },
})
} catch (e) {
  process.stderr.write(`sim: ${(e as Error).message}\n`)
  process.exit(2)
}
const { values } = parsed
const seed = intArg('seed', values.seed, 0, 2 ** 31 - 1)
const count = intArg('seeds', values.seeds, 1, faultLimits.simSeedsMax)
if ((seed === undefined) === (count === undefined)) fail('give --seed N (one run) or --seeds K (a sweep)')
const from = intArg('from', values.from, 0, 2 ** 31 - 1) ?? 1
const faults = !values['no-faults']
const afterCrash = values['keep-incarnation'] ? 'keep' as const : 'fresh' as const
const repair = !values['no-repair']

if (seed !== undefined) {
  const r = await simulate({ seed, faults, afterCrash, repair })
  if (values.json) console.log(JSON.stringify(r, null, 2))
  else printRun(r, true)
  process.exit(r.ok ? 0 : 1)
}

const started = Date.now()
const totals = {
  runs: 0, failed: 0, ops: 0, acknowledged: 0, lost: 0, resurrected: 0, divergent: 0, faults: Object.fromEntries(faultKinds.map(k => [k, 0])) as Record<FaultKind, number>,
  background: noBackground(), convergedMsMax: 0, convergedMsSum: 0, differingAtHeal: 0,
}
const failing: number[] = []
const jobs = intArg('jobs', values.jobs, 1, faultLimits.simJobsMax) ?? 1
if (jobs > 1) {
  // Each job sweeps a contiguous share of the seeds in its own process and reports JSON totals.
  const run = promisify(execFile)
  const self = fileURLToPath(import.meta.url)
  const share = Math.ceil(count! / jobs)
  const parts = await Promise.all(Array.from({ length: jobs }, (_, j) => {
    const first = from + j * share
    const n = Math.min(share, from + count! - first)
    if (n <= 0) return undefined
    const args = ['--import', 'tsx', self, '--seeds', String(n), '--from', String(first), '--json', ...(faults ? [] : ['--no-faults']), ...(afterCrash === 'keep' ? ['--keep-incarnation'] : []), ...(repair ? [] : ['--no-repair'])]
    return run(process.execPath, args, { maxBuffer: 64 * 1024 * 1024 }).then(r => r.stdout, (e: { stdout?: string }) => e.stdout ?? '')
  }))
  for (const out of parts) {
    if (out === undefined) continue
    const t = JSON.parse(out) as typeof totals & { failing: number[] }
    for (const k of ['runs', 'failed', 'ops', 'acknowledged', 'lost', 'resurrected', 'divergent'] as const) totals[k] += t[k]
    for (const k of faultKinds) totals.faults[k] += t.faults[k]
    addCounts(totals.background, t.background)
    totals.convergedMsMax = Math.max(totals.convergedMsMax, t.convergedMsMax)
    totals.convergedMsSum += t.convergedMsSum
    totals.differingAtHeal += t.differingAtHeal
    failing.push(...t.failing)
  }
}
for (let s = from; jobs === 1 && s < from + count!; s++) {
  const r = await simulate({ seed: s, faults, afterCrash, repair })
  totals.runs++
  totals.ops += r.report.ops.total
  totals.acknowledged += r.report.acknowledgedChecked
  totals.lost += r.report.lost.length
  totals.resurrected += r.report.resurrected.length
  totals.divergent += r.report.divergent.length
  for (const k of faultKinds) totals.faults[k] += r.faults[k]
  addCounts(totals.background, r.background)
  totals.differingAtHeal += r.differingAtHeal
  if (r.convergedAfterMs !== undefined) { totals.convergedMsMax = Math.max(totals.convergedMsMax, r.convergedAfterMs); totals.convergedMsSum += r.convergedAfterMs }
  if (!r.ok) { totals.failed++; failing.push(s); if (!values.json) printRun(r, true) }
}
const seconds = (Date.now() - started) / 1000
if (jobs > 1 && !values.json) for (const s of failing.slice(0, 3)) printRun(await simulate({ seed: s, faults, afterCrash, repair }), true)
if (values.json) console.log(JSON.stringify({ ...totals, failing, seconds }, null, 2))
else {
  console.log(`${totals.runs} schedules (seeds ${from}..${from + count! - 1}) in ${seconds.toFixed(1)} s with ${jobs} job(s): ${totals.failed} failed` +
    (failing.length ? ` (seeds ${failing.slice(0, 20).join(', ')})` : ''))
  console.log(`faults injected: ${faultKinds.map(k => `${k} ${totals.faults[k]}`).join(', ')}`)
  console.log(`operations ${totals.ops}; acknowledged writes checked ${totals.acknowledged}; lost ${totals.lost}; resurrected ${totals.resurrected}; divergent keys ${totals.divergent}`)
  console.log(`background: ${showBackground(totals.background)}`)
  console.log(`keys differing when faults stopped ${totals.differingAtHeal} (of ${totals.runs * (faultLimits.setKeys + faultLimits.registerKeys)}); converged after (hints and anti-entropy, no reads): mean ${(totals.convergedMsSum / Math.max(1, totals.runs - totals.failed)).toFixed(0)} ms, max ${totals.convergedMsMax} ms (bound ${faultLimits.simConvergeMsMax} ms)`)
}
process.exit(totals.failed === 0 ? 0 : 1)

// The nemesis's network: one Linux network namespace per replica, each with its own address on one
// bridge, and nft rules inside the namespaces to cut any pair of addresses, in one direction or
// both. The root namespace keeps the bridge's own address: the workload's clients, the checker and
// the embedded S3 server live there, so "clients" and "S3" are one address each.
//
//   root ns: bridge rkc-br 10.77.0.1/24 ── veth rkc-vI ══ eth0 10.77.0.(10+I)/24 in netns rkc-nI
//
// Every rule lives in a replica's namespace (table inet rkc): a cut of X→Y is an input rule
// `ip saddr X drop` in Y's namespace when Y is a replica, else an output rule `ip daddr Y drop` in
// X's. Dropped, not rejected: a partitioned peer learns it only by its timeouts, as in a real one.
// Needs root, iproute2 and nft; `available()` says why not, and the nemesis then falls back to
// kill and pause only. Every command is bounded in time; `teardown()` removes everything, and is
// also run before setup, in case an earlier run was killed before it could clean up.

import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { faultLimits } from '../fault-limits.ts'

const run = promisify(execFile)

export interface NetnsLayout {
  /** First three octets of the /24, e.g. "10.77.0". */
  readonly subnet: string
  readonly replicas: number
}

export const bridgeName = 'rkc-br'
export const nsName = (i: number) => `rkc-n${i}`
const vethName = (i: number) => `rkc-v${i}`
export const rootAddress = (l: NetnsLayout) => `${l.subnet}.1`
export const replicaAddress = (l: NetnsLayout, i: number) => `${l.subnet}.${10 + i}`

async function sh(cmd: string, args: string[], input?: string): Promise<string> {
  const p = run(cmd, args, { timeout: faultLimits.chaosCommandTimeoutMs })
  if (input !== undefined) { p.child.stdin!.write(input); p.child.stdin!.end() }
  const { stdout } = await p
  return stdout
}

async function quiet(cmd: string, args: string[]): Promise<void> {
  try { await sh(cmd, args) } catch { /* already gone */ }
}

/** Why namespaces cannot be used here, or undefined when they can. */
export async function unavailable(): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return 'not running as root'
  for (const [cmd, args] of [['ip', ['-V']], ['nft', ['--version']]] as const) {
    try { await sh(cmd, [...args]) } catch { return `${cmd} is not installed (apt-get install -y iproute2 nftables)` }
  }
  return undefined
}

export async function teardown(l: NetnsLayout): Promise<void> {
  for (let i = 1; i <= l.replicas; i++) {
    await quiet('ip', ['netns', 'del', nsName(i)])
    await quiet('ip', ['link', 'del', vethName(i)])
  }
  await quiet('ip', ['link', 'del', bridgeName])
}

export async function setup(l: NetnsLayout): Promise<void> {
  await teardown(l)
  await sh('ip', ['link', 'add', bridgeName, 'type', 'bridge'])
  await sh('ip', ['addr', 'add', `${rootAddress(l)}/24`, 'dev', bridgeName])
  await sh('ip', ['link', 'set', bridgeName, 'up'])
  for (let i = 1; i <= l.replicas; i++) {
    const ns = nsName(i)
    await sh('ip', ['netns', 'add', ns])
    await sh('ip', ['link', 'add', vethName(i), 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns])
    await sh('ip', ['link', 'set', vethName(i), 'master', bridgeName, 'up'])
    await sh('ip', ['-n', ns, 'addr', 'add', `${replicaAddress(l, i)}/24`, 'dev', 'eth0'])
    await sh('ip', ['-n', ns, 'link', 'set', 'eth0', 'up'])
    await sh('ip', ['-n', ns, 'link', 'set', 'lo', 'up'])
    await sh('ip', ['netns', 'exec', ns, 'nft', '-f', '-'], [
      'table inet rkc {',
      '  chain input { type filter hook input priority 0; policy accept; }',
      '  chain output { type filter hook output priority 0; policy accept; }',
      '}',
    ].join('\n') + '\n')
  }
}

/** Address of endpoint `e`: 0 is the root namespace (clients, checker, S3), I a replica. */
export function addressOf(l: NetnsLayout, e: number): string {
  return e === 0 ? rootAddress(l) : replicaAddress(l, e)
}

export interface Link { readonly from: number; readonly to: number; readonly port?: number }

/**
 * Drops every packet of each link (from endpoint `from` to endpoint `to`, 0 = root namespace, only
 * to TCP port `port` when given): one nft transaction per namespace touched.
 */
export async function cut(l: NetnsLayout, links: readonly Link[]): Promise<void> {
  const rules = new Map<number, string[]>()
  for (const { from, to, port } of links) {
    const portMatch = port === undefined ? '' : ` tcp dport ${port}`
    const [ns, rule] = to !== 0
      ? [to, `add rule inet rkc input ip saddr ${addressOf(l, from)}${portMatch} drop`]
      : [from, `add rule inet rkc output ip daddr ${addressOf(l, to)}${portMatch} drop`]
    rules.set(ns, [...(rules.get(ns) ?? []), rule])
  }
  for (const [ns, lines] of rules) await sh('ip', ['netns', 'exec', nsName(ns), 'nft', '-f', '-'], lines.join('\n') + '\n')
}

/** Removes every rule: every link works again. */
export async function healAll(l: NetnsLayout): Promise<void> {
  for (let i = 1; i <= l.replicas; i++) {
    await sh('ip', ['netns', 'exec', nsName(i), 'nft', '-f', '-'], 'flush chain inet rkc input\nflush chain inet rkc output\n')
  }
}

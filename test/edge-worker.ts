// Starting the gateway Worker (edge/worker.ts) from a test: wrangler's unstable_startWorker runs it
// in workerd, offline, on a port of the test's range, with the bindings the test gives (the ones
// edge/wrangler.jsonc sets otherwise). Shared by the edge suites.

import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { offlineWranglerEnv } from '../edge/dev.ts'

// Before wrangler loads: no metrics, no update check, no Request.cf fetch.
Object.assign(process.env, offlineWranglerEnv)
const { unstable_startWorker } = await import('wrangler')

export const root = resolve(dirname(fileURLToPath(import.meta.url)), '..')
export const wranglerConfig = join(root, 'edge', 'wrangler.jsonc')

export type StartedWorker = Awaited<ReturnType<typeof unstable_startWorker>>
/** A binding's value as a plain variable or as a secret (what `wrangler secret put` makes). */
export type Bindings = Record<string, { type: 'plain_text' | 'secret_text'; value: string }>

/** The Worker with RINGKV_SEEDS, RINGKV_MODE and `more` bound; resolves once it answers. */
export async function startWorker(seeds: readonly string[], port: number, mode: 'durable-object' | 'per-request', more: Bindings = {}): Promise<StartedWorker> {
  const worker = await unstable_startWorker({
    config: wranglerConfig,
    bindings: workerBindings(seeds, mode, more),
    dev: { server: { hostname: '127.0.0.1', port }, inspector: false, persist: false, watch: false, logLevel: 'warn' },
  })
  await worker.ready
  return worker
}

/** The bindings startWorker gives; for patchConfig, which replaces them all. */
export function workerBindings(seeds: readonly string[], mode: 'durable-object' | 'per-request', more: Bindings = {}): Bindings {
  return {
    RINGKV_SEEDS: { type: 'plain_text', value: seeds.join(',') },
    RINGKV_MODE: { type: 'plain_text', value: mode },
    ...more,
  }
}

// What every server process of ringkv (replica, standalone gateway, `npm start`) does about itself
// as a process: knowing whether its module is the one Node was asked to run, and the last resort for
// a promise rejection no code handled.

import { realpathSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

/**
 * True when the module at `moduleUrl` (its import.meta.url) is the script Node was started with.
 * Compared by real path: under a symlinked node_modules (or a bundle run through a link) the two
 * spellings differ, and a plain string comparison made a replica exit 0 without starting.
 */
export function isEntryPoint(moduleUrl: string): boolean {
  const script = process.argv[1]
  if (!script) return false
  try {
    return realpathSync(script) === fileURLToPath(moduleUrl)
  } catch {
    return false
  }
}

/** Counts for the whole process, shown on /metrics. */
export const processCounters = { unhandledRejections: 0 }

/**
 * A promise rejection that no code handled is a bug, since every path is meant to end in a typed
 * error to its caller, but it is one request's bug: it is logged and counted
 * (ringkv_unhandled_rejections_total) instead of ending the process and every other request with it,
 * which is Node's default. An uncaught exception still ends the process: its state may be half-changed.
 */
export function installLastResort(name: string): void {
  process.on('unhandledRejection', (reason: unknown) => {
    processCounters.unhandledRejections++
    const error = reason instanceof Error ? (reason.stack ?? reason.message) : String(reason)
    process.stderr.write(JSON.stringify({ t: new Date().toISOString(), node: name, msg: 'unhandled promise rejection (a bug); the process goes on', error: error.slice(0, 4096) }) + '\n')
  })
}

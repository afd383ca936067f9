// `npm run edge -- --seeds ws://127.0.0.1:7001,... [--port 8787] [--shards 8] [--per-request]`: the
// gateway Worker (edge/worker.ts) under `wrangler dev`, on 127.0.0.1, offline (no metrics, no update
// check, no Request.cf fetch). Prints
//   ready http=http://127.0.0.1:8787
// once the Worker answers an HTTP request, then runs until Ctrl-C (which stops wrangler too).

import { spawn } from 'node:child_process'
import { createServer } from 'node:net'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { limits } from '../coordinator/limits.ts'

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..')
/** wrangler dev answered in 1.2-3.3 s here; a loaded machine gets far longer before we give up. */
const READY_TIMEOUT_MS = 120_000
const READY_POLL_MS = 250
const POLL_REQUEST_TIMEOUT_MS = 2_000

/** The environment that keeps wrangler off the network: no metrics, no banner's update check, no Request.cf fetch. */
export const offlineWranglerEnv = {
  WRANGLER_SEND_METRICS: 'false',
  WRANGLER_HIDE_BANNER: 'true',
  CLOUDFLARE_CF_FETCH_ENABLED: 'false',
} as const

/** A free loopback port, for wrangler's inspector (two wrangler dev sessions must not share 9229). */
export function freePort(): Promise<number> {
  return new Promise((ok, fail) => {
    const srv = createServer()
    srv.once('error', fail)
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port
      srv.close(() => ok(port))
    })
  })
}

export interface EdgeDevOptions { readonly seeds: readonly string[]; readonly port: number; readonly shards?: number; readonly perRequest?: boolean; readonly log?: (line: string) => void }

/** Starts `wrangler dev` on the gateway Worker; resolves with its URL once it answers, and a stop(). */
export async function startEdgeDev(opts: EdgeDevOptions): Promise<{ url: string; stop(): Promise<void> }> {
  const wrangler = join(root, 'node_modules', 'wrangler', 'bin', 'wrangler.js')
  const vars = [`RINGKV_SEEDS:${opts.seeds.join(',')}`, `RINGKV_SHARDS:${opts.shards ?? limits.edgeShardsDefault}`, `RINGKV_MODE:${opts.perRequest ? 'per-request' : 'durable-object'}`]
  const args = [wrangler, 'dev', '-c', join(root, 'edge', 'wrangler.jsonc'), '--ip', '127.0.0.1', '--port', String(opts.port),
    '--inspector-port', String(await freePort()), '--show-interactive-dev-session=false', '--log-level', 'warn',
    ...vars.flatMap(v => ['--var', v])]
  const child = spawn(process.execPath, args, { cwd: root, env: { ...process.env, ...offlineWranglerEnv }, stdio: ['ignore', 'pipe', 'pipe'] })
  const log = opts.log ?? (line => process.stderr.write(line))
  child.stdout!.on('data', (b: Buffer) => log(b.toString()))
  child.stderr!.on('data', (b: Buffer) => log(b.toString()))
  const exited = new Promise<void>(ok => child.once('exit', () => ok()))
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM')
    await exited
  }
  const url = `http://127.0.0.1:${opts.port}`
  const deadline = Date.now() + READY_TIMEOUT_MS
  let gone = false
  void exited.then(() => { gone = true })
  while (Date.now() < deadline && !gone) {
    try {
      // Any answer will do (/health says 503 while no replica answers): the Worker is up.
      await fetch(`${url}/health`, { signal: AbortSignal.timeout(POLL_REQUEST_TIMEOUT_MS) })
      return { url, stop }
    } catch {
      await new Promise(r => setTimeout(r, READY_POLL_MS))
    }
  }
  await stop()
  throw new Error(gone ? `wrangler dev exited before the Worker answered on ${url}` : `the Worker did not answer on ${url} within ${READY_TIMEOUT_MS} ms`)
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({ options: {
    seeds: { type: 'string' }, port: { type: 'string', default: '8787' }, shards: { type: 'string' },
    'per-request': { type: 'boolean', default: false }, help: { type: 'boolean', short: 'h' },
  } })
  if (values.help || !values.seeds) {
    process.stdout.write('usage: npm run edge -- --seeds ws://127.0.0.1:7001,... [--port 8787] [--shards 8] [--per-request]\n')
    process.exit(values.help ? 0 : 2)
  }
  const port = Number(values.port)
  if (!Number.isInteger(port) || port < 1 || port > 65535) { process.stderr.write(`--port must be a port number, got ${values.port}\n`); process.exit(2) }
  try {
    const edge = await startEdgeDev({ seeds: values.seeds.split(','), port, ...(values.shards ? { shards: Number(values.shards) } : {}), perRequest: values['per-request']! })
    process.stdout.write(`ready http=${edge.url}\n`)
    const stop = () => { edge.stop().then(() => process.exit(0)) }
    process.once('SIGINT', stop)
    process.once('SIGTERM', stop)
  } catch (e) {
    process.stderr.write(`edge: ${(e as Error).message}\n`)
    process.exit(1)
  }
}

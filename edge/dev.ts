// `npm run edge -- --seeds ws://127.0.0.1:7001,... [--port 8787] [--shards 8] [--per-request]
//   [--auth-file F] [--token-file F] [--session-secret-file F] [--cluster NAME]`: the gateway Worker
// (edge/worker.ts) under `wrangler dev`, on 127.0.0.1, offline (no metrics, no update check, no
// Request.cf fetch). Prints
//   ready http=http://127.0.0.1:8787
// once the Worker answers an HTTP request, then runs until Ctrl-C (which stops wrangler too).
//
// The security flags are the Node gateway's; their files are checked here with the same code as the
// Worker checks its bindings, and handed to wrangler as secrets (RINGKV_AUTH, RINGKV_TOKEN,
// RINGKV_SESSION_SECRET) in an env file of a fresh 0700 directory, the file 0600, removed when
// wrangler stops: never on its command line, where every process could read them, and never printed.

import { spawn } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { gatewaySecurityFrom, secretText } from '../coordinator/auth/settings.ts'
import { limits } from '../coordinator/limits.ts'
import { readSmall } from '../replica/node/security.ts'

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

export interface EdgeDevOptions {
  readonly seeds: readonly string[]
  readonly port: number
  readonly shards?: number
  readonly perRequest?: boolean
  /** The Node gateway's security flags: --auth-file, --token-file, --session-secret-file, --cluster. */
  readonly authFile?: string | undefined
  readonly tokenFile?: string | undefined
  readonly sessionSecretFile?: string | undefined
  readonly cluster?: string | undefined
  readonly log?: (line: string) => void
}

/**
 * One `NAME='value'` line of a dotenv file as wrangler reads it (dotenv, then dotenv-expand): the
 * value quoted with a quote character it does not hold (inside quotes dotenv unescapes nothing), and
 * every `$` written `\$`, which dotenv-expand turns back into `$` instead of expanding a variable.
 * Undefined when no quoting carries the value exactly (a newline, or both quote characters).
 */
export function dotenvLine(name: string, value: string): string | undefined {
  if (/[\r\n]/.test(value)) return undefined
  const quote = ["'", '`'].find(q => !value.includes(q))
  return quote === undefined ? undefined : `${name}=${quote}${value.replaceAll('$', '\\$')}${quote}`
}

/**
 * The secrets the flags name, checked as the Worker will check them, as dotenv lines; throws an Error
 * naming the file that is wrong (never quoting it).
 */
export function edgeSecretLines(opts: Pick<EdgeDevOptions, 'authFile' | 'tokenFile' | 'sessionSecretFile' | 'cluster'>): string[] {
  const read = (path: string | undefined, what: string) => path === undefined ? undefined : { text: readSmall(path, what).toString('utf8'), source: path }
  const auth = read(opts.authFile, 'auth file')
  const token = read(opts.tokenFile, 'token file')
  const sessionSecret = read(opts.sessionSecretFile, 'session secret file')
  if (token !== undefined && auth === undefined) throw new Error('--token-file needs --auth-file: the Worker refuses to present a token while letting anyone in')
  gatewaySecurityFrom({ auth, token, sessionSecret, cluster: opts.cluster ?? 'ringkv' })
  const lines: string[] = []
  const add = (name: string, value: string, source: string) => {
    const line = dotenvLine(name, value)
    if (line === undefined) throw new Error(`${source}: holds a newline or both ' and \`, which wrangler dev's env file cannot carry`)
    lines.push(line)
  }
  // JSON's own escapes carry the characters dotenv would trip on, and the text stays the same JSON.
  if (auth) add('RINGKV_AUTH', JSON.stringify(JSON.parse(auth.text)).replace(/['`$]/g, ch => `\\u${ch.charCodeAt(0).toString(16).padStart(4, '0')}`), auth.source)
  if (token) add('RINGKV_TOKEN', secretText(token.text), token.source)
  if (sessionSecret) add('RINGKV_SESSION_SECRET', secretText(sessionSecret.text), sessionSecret.source)
  return lines
}

/** Starts `wrangler dev` on the gateway Worker; resolves with its URL once it answers, and a stop(). */
export async function startEdgeDev(opts: EdgeDevOptions): Promise<{ url: string; stop(): Promise<void>; readonly secretsFile: string | undefined }> {
  const wrangler = join(root, 'node_modules', 'wrangler', 'bin', 'wrangler.js')
  const vars = [`RINGKV_SEEDS:${opts.seeds.join(',')}`, `RINGKV_SHARDS:${opts.shards ?? limits.edgeShardsDefault}`, `RINGKV_MODE:${opts.perRequest ? 'per-request' : 'durable-object'}`,
    ...(opts.cluster !== undefined ? [`RINGKV_CLUSTER:${opts.cluster}`] : [])]
  const secretLines = edgeSecretLines(opts)
  let secretsDir: string | undefined
  let secretsFile: string | undefined
  if (secretLines.length > 0) {
    secretsDir = await mkdtemp(join(tmpdir(), 'ringkv-edge-'))
    secretsFile = join(secretsDir, 'secrets.env')
    await writeFile(secretsFile, secretLines.join('\n') + '\n', { mode: 0o600 })
  }
  const args = [wrangler, 'dev', '-c', join(root, 'edge', 'wrangler.jsonc'), '--ip', '127.0.0.1', '--port', String(opts.port),
    '--inspector-port', String(await freePort()), '--show-interactive-dev-session=false', '--log-level', 'warn',
    ...vars.flatMap(v => ['--var', v]), ...(secretsFile !== undefined ? ['--env-file', secretsFile] : [])]
  // CLOUDFLARE_INCLUDE_PROCESS_ENV off: this process's environment is not the Worker's secrets.
  const child = spawn(process.execPath, args, { cwd: root, env: { ...process.env, ...offlineWranglerEnv, CLOUDFLARE_INCLUDE_PROCESS_ENV: 'false' }, stdio: ['ignore', 'pipe', 'pipe'] })
  const log = opts.log ?? (line => process.stderr.write(line))
  child.stdout!.on('data', (b: Buffer) => log(b.toString()))
  child.stderr!.on('data', (b: Buffer) => log(b.toString()))
  const exited = new Promise<void>(ok => child.once('exit', () => ok()))
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM')
    await exited
    if (secretsDir !== undefined) await rm(secretsDir, { recursive: true, force: true })
  }
  const url = `http://127.0.0.1:${opts.port}`
  const deadline = Date.now() + READY_TIMEOUT_MS
  let gone = false
  void exited.then(() => { gone = true })
  while (Date.now() < deadline && !gone) {
    try {
      // Any answer will do (/health says 503 while no replica answers): the Worker is up.
      await fetch(`${url}/health`, { signal: AbortSignal.timeout(POLL_REQUEST_TIMEOUT_MS) })
      return { url, stop, secretsFile }
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
    'auth-file': { type: 'string' }, 'token-file': { type: 'string' }, 'session-secret-file': { type: 'string' }, cluster: { type: 'string' },
  } })
  if (values.help || !values.seeds) {
    process.stdout.write('usage: npm run edge -- --seeds ws://127.0.0.1:7001,... [--port 8787] [--shards 8] [--per-request]\n' +
      '         [--auth-file auth.json --token-file FILE] [--session-secret-file FILE] [--cluster NAME]\n')
    process.exit(values.help ? 0 : 2)
  }
  const port = Number(values.port)
  if (!Number.isInteger(port) || port < 1 || port > 65535) { process.stderr.write(`--port must be a port number, got ${values.port}\n`); process.exit(2) }
  const security = { authFile: values['auth-file'], tokenFile: values['token-file'], sessionSecretFile: values['session-secret-file'], cluster: values.cluster }
  try {
    edgeSecretLines(security)
  } catch (e) {
    process.stderr.write(`edge: ${(e as Error).message}\n`)
    process.exit(2)
  }
  try {
    const edge = await startEdgeDev({ seeds: values.seeds.split(','), port, ...(values.shards ? { shards: Number(values.shards) } : {}), perRequest: values['per-request']!, ...security })
    process.stdout.write(`ready http=${edge.url}\n`)
    const stop = () => { edge.stop().then(() => process.exit(0)) }
    process.once('SIGINT', stop)
    process.once('SIGTERM', stop)
  } catch (e) {
    process.stderr.write(`edge: ${(e as Error).message}\n`)
    process.exit(1)
  }
}

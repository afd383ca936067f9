// `npm run bench -- --via http [--edge]`: the same YCSB operations through an HTTP gateway
// (server-side coordination: the gateway runs the quorum) instead of the SDK's direct quorum calls,
// so one run puts the two side by side (Dynamo's Table 2 compared client-driven and server-driven
// coordination the same way). The Node gateway runs as its own process (replica/node/gateway.ts), as
// it would in production; with --edge the Workers gateway (edge/worker.ts) runs under `wrangler
// dev`. Each operation is one HTTP request over keep-alive connections (Node's fetch); a non-2xx
// answer is counted under the error kind its JSON body names.

import { spawn, type ChildProcess } from 'node:child_process'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { freePort, startEdgeDev } from '../edge/dev.ts'
import { YardstickError } from './phases.ts'

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..')
/** A gateway process answers /health within seconds; this only stops a hang. */
const GATEWAY_START_TIMEOUT_MS = 60_000
const GATEWAY_POLL_MS = 100

export interface HttpKv {
  put(key: string, value: Uint8Array, context: string | undefined, w: number): Promise<string>
  get(key: string, r: number): Promise<{ found: boolean; siblings: number; context: string }>
}

/** One gateway as the bench sees it: its base URL, a name for the table, and how to stop it. */
export interface RunningHttpGateway { readonly name: string; readonly url: string; stop(): Promise<void> }

async function failure(res: Response): Promise<never> {
  let kind = `HTTP${res.status}`
  try { kind = ((await res.json()) as { error?: { kind?: string } }).error?.kind ?? kind } catch { /* not JSON */ }
  throw new YardstickError(kind, `HTTP ${res.status}`)
}

/** The gateway at `base`; with `token`, every request carries it as `Authorization: Bearer`. */
export function httpKv(base: string, token?: string): HttpKv {
  const auth: Record<string, string> = token === undefined ? {} : { authorization: `Bearer ${token}` }
  return {
    async put(key, value, context, w) {
      const res = await fetch(`${base}/kv/${encodeURIComponent(key)}?w=${w}`, {
        method: 'PUT', body: value as Uint8Array<ArrayBuffer>, headers: context ? { ...auth, 'x-ringkv-context': context } : auth,
      })
      if (res.status !== 204) return failure(res)
      await res.arrayBuffer()
      return res.headers.get('x-ringkv-context') ?? ''
    },
    async get(key, r) {
      const res = await fetch(`${base}/kv/${encodeURIComponent(key)}?r=${r}`, { headers: auth })
      if (res.status !== 200 && res.status !== 300 && res.status !== 404) return failure(res)
      const body = await res.arrayBuffer()
      const siblings = res.status === 300 ? (JSON.parse(new TextDecoder().decode(body)) as unknown[]).length : res.status === 200 ? 1 : 0
      return { found: res.status !== 404, siblings, context: res.headers.get('x-ringkv-context') ?? '' }
    },
  }
}

/** The Node gateway as a child process on a free loopback port. */
export async function startNodeGateway(seeds: readonly string[], onProc: (p: ChildProcess) => void, authFile?: string): Promise<RunningHttpGateway> {
  const port = await freePort()
  const proc = spawn(process.execPath, ['--import', 'tsx', join(root, 'replica', 'node', 'gateway.ts'), '--seeds', seeds.join(','), '--port', String(port),
    ...(authFile !== undefined ? ['--auth-file', authFile] : [])],
    { cwd: root, stdio: ['ignore', 'ignore', 'inherit'] })
  onProc(proc)
  const url = `http://127.0.0.1:${port}`
  const stop = async () => {
    if (proc.exitCode !== null || proc.signalCode !== null) return
    const exited = new Promise<void>(ok => proc.once('exit', () => ok()))
    proc.kill('SIGTERM')
    await exited
  }
  const deadline = Date.now() + GATEWAY_START_TIMEOUT_MS
  while (Date.now() < deadline) {
    if (proc.exitCode !== null) throw new Error('the Node gateway exited during start')
    try {
      if ((await fetch(`${url}/health`)).ok) return { name: `Node gateway (HTTP)${authFile !== undefined ? ', bearer token' : ''}`, url, stop }
    } catch { /* not listening yet */ }
    await new Promise(r => setTimeout(r, GATEWAY_POLL_MS))
  }
  await stop()
  throw new Error(`the Node gateway did not answer on ${url} within ${GATEWAY_START_TIMEOUT_MS} ms`)
}

/** The Workers gateway under wrangler dev (Durable Objects), on a free loopback port. */
export async function startWorkersGateway(seeds: readonly string[], note: (s: string) => void, authFile?: string): Promise<RunningHttpGateway> {
  const edge = await startEdgeDev({ seeds, port: await freePort(), log: line => note(`wrangler: ${line.trimEnd()}`), ...(authFile !== undefined ? { authFile } : {}) })
  return { name: `Workers gateway (wrangler dev, DO)${authFile !== undefined ? ', bearer token' : ''}`, url: edge.url, stop: edge.stop }
}

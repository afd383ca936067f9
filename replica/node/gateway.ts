// The standalone HTTP gateway on Node: a KvCoordinator (the SDK's quorum logic, over ws to the
// replicas) behind the runtime-neutral Hono gateway app. `npm start` runs one in-process; infra/
// runs it as its own container. Its HTTP server times out slow headers and bodies and caps its
// sockets like a replica's (http-server.ts).
//   node --import tsx replica/node/gateway.ts --seeds ws://127.0.0.1:7001 --port 8080
//        [--auth-file auth.json --token-file FILE | RINGKV_TOKEN=...] [--session-secret-file FILE]
//        [--tls-cert c.pem --tls-key k.pem] [--tls-ca ca.pem]
// With --auth-file it checks each HTTP caller's bearer token; towards the replicas it presents its
// own token (RINGKV_TOKEN or --token-file: one with the write role, or admin), never the cluster
// secret, which stays with the replicas.

import type { Server } from 'node:http'
import { parseArgs } from 'node:util'
import WebSocket from 'ws'
import type { Authenticator } from '../../coordinator/auth/auth.ts'
import { createGatewayApp } from '../../coordinator/http/gateway.ts'
import { KvCoordinator } from '../../coordinator/kv-coordinator.ts'
import { limits } from '../../coordinator/limits.ts'
import { nodeWebSocket, systemRuntime } from '../../coordinator/runtime.ts'
import { installLastResort, isEntryPoint } from './process.ts'
import { createAppServer, loadSecurity, type Security } from './security.ts'

export interface RunningGateway { readonly url: string; readonly kv: KvCoordinator; close(): Promise<void> }

export interface GatewayConfig {
  readonly seeds: string[]
  readonly port: number
  readonly host?: string
  /** Callers' tokens; undefined = no authentication. */
  readonly auth?: Authenticator | undefined
  /** What the gateway presents to the replicas. */
  readonly token?: string | undefined
  readonly sessionKey?: Uint8Array | undefined
  readonly tls?: Security['tls']
  readonly ca?: Buffer | undefined
}

export async function startGateway(opts: GatewayConfig): Promise<RunningGateway> {
  const host = opts.host ?? '127.0.0.1'
  const kv = new KvCoordinator({
    seeds: opts.seeds, runtime: systemRuntime(nodeWebSocket(WebSocket as never, limits.frameBytesMax, { ca: opts.ca })), client: 'gateway',
    ...(opts.token !== undefined ? { token: opts.token } : {}),
  })
  const app = createGatewayApp({ kv, role: 'gateway', health: () => ({ seeds: opts.seeds }), auth: opts.auth, sessionKey: opts.sessionKey })
  const server: Server = createAppServer(app.fetch, opts.tls)
  await new Promise<void>((ok, fail) => {
    server.once('error', fail)
    server.listen(opts.port, host, () => { server.off('error', fail); ok() })
  })
  return {
    url: `${opts.tls ? 'https' : 'http'}://${host}:${opts.port}`,
    kv,
    async close() {
      kv.close()
      server.closeAllConnections()
      await new Promise<void>(ok => server.close(() => ok()))
    },
  }
}

if (isEntryPoint(import.meta.url)) {
  installLastResort('gateway')
  const { values } = parseArgs({
    options: {
      seeds: { type: 'string' }, port: { type: 'string', default: '8080' }, host: { type: 'string', default: '127.0.0.1' },
      cluster: { type: 'string', default: process.env.RINGKV_CLUSTER ?? 'ringkv' },
      'auth-file': { type: 'string' }, 'token-file': { type: 'string' }, 'session-secret-file': { type: 'string' },
      'tls-cert': { type: 'string' }, 'tls-key': { type: 'string' }, 'tls-ca': { type: 'string' },
    },
  })
  if (!values.seeds) { process.stderr.write('gateway: --seeds ws://host:port,... is required\n'); process.exit(2) }
  let security: Security
  try {
    security = loadSecurity({
      authFile: values['auth-file'], sessionSecretFile: values['session-secret-file'],
      tokenFile: values['token-file'], tokenEnv: process.env.RINGKV_TOKEN || undefined,
      tlsCert: values['tls-cert'], tlsKey: values['tls-key'], tlsCa: values['tls-ca'],
    }, 'gateway', values.cluster!)
  } catch (e) {
    process.stderr.write(`gateway: ${(e as Error).message}\n`)
    process.exit(2)
  }
  startGateway({ seeds: values.seeds.split(','), port: Number(values.port), host: values.host!, auth: security.auth, token: security.token, sessionKey: security.sessionKey, tls: security.tls, ca: security.ca }).then(g => {
    process.stdout.write(`gateway ${g.url}\n`)
    const stop = () => { g.close().then(() => process.exit(0)) }
    process.once('SIGTERM', stop)
    process.once('SIGINT', stop)
  }, e => { process.stderr.write(`gateway failed to start: ${(e as Error).message}\n`); process.exit(1) })
}

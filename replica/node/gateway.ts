// The standalone HTTP gateway on Node: a KvCoordinator (the SDK's quorum logic, over ws to the
// replicas) behind the runtime-neutral Hono gateway app. `npm start` runs one in-process; infra/
// runs it as its own container. Its HTTP server times out slow headers and bodies and caps its
// sockets like a replica's (http-server.ts).
//   node --import tsx replica/node/gateway.ts --seeds ws://127.0.0.1:7001 --port 8080

import { createAdaptorServer } from '@hono/node-server'
import type { Server } from 'node:http'
import { parseArgs } from 'node:util'
import WebSocket from 'ws'
import { createGatewayApp } from '../../coordinator/http/gateway.ts'
import { KvCoordinator } from '../../coordinator/kv-coordinator.ts'
import { limits } from '../../coordinator/limits.ts'
import { nodeWebSocket, systemRuntime } from '../../coordinator/runtime.ts'
import { hardenHttpServer, httpServerOptions } from './http-server.ts'
import { installLastResort, isEntryPoint } from './process.ts'

export interface RunningGateway { readonly url: string; readonly kv: KvCoordinator; close(): Promise<void> }

export async function startGateway(opts: { seeds: string[]; port: number; host?: string }): Promise<RunningGateway> {
  const host = opts.host ?? '127.0.0.1'
  const kv = new KvCoordinator({ seeds: opts.seeds, runtime: systemRuntime(nodeWebSocket(WebSocket as never, limits.frameBytesMax)), client: 'gateway' })
  const app = createGatewayApp({ kv, role: 'gateway', health: () => ({ seeds: opts.seeds }) })
  const server = hardenHttpServer(createAdaptorServer({ fetch: app.fetch, serverOptions: httpServerOptions() }) as Server)
  await new Promise<void>((ok, fail) => {
    server.once('error', fail)
    server.listen(opts.port, host, () => { server.off('error', fail); ok() })
  })
  return {
    url: `http://${host}:${opts.port}`,
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
  const { values } = parseArgs({ options: { seeds: { type: 'string' }, port: { type: 'string', default: '8080' }, host: { type: 'string', default: '127.0.0.1' } } })
  if (!values.seeds) { process.stderr.write('gateway: --seeds ws://host:port,... is required\n'); process.exit(2) }
  startGateway({ seeds: values.seeds.split(','), port: Number(values.port), host: values.host! }).then(g => {
    process.stdout.write(`gateway ${g.url}\n`)
    const stop = () => { g.close().then(() => process.exit(0)) }
    process.once('SIGTERM', stop)
    process.once('SIGINT', stop)
  }, e => { process.stderr.write(`gateway failed to start: ${(e as Error).message}\n`); process.exit(1) })
}

// The settings every node:http server ringkv creates gets (replica, standalone gateway, the embedded
// S3 server): headers must arrive within httpHeadersTimeoutMs and the whole request within
// httpRequestTimeoutMs (node answers 408 and closes), idle keep-alive sockets close after
// httpKeepAliveTimeoutMs, and the server holds at most socketsMax sockets. Without them a client
// that sends half a request line, or a body one byte a minute, held its socket (and a file
// descriptor) forever. Upgraded sockets (the WebSocket data plane) leave node's request tracking
// at the upgrade, so these timeouts never cut a data-plane connection.

import type { Server, ServerOptions } from 'node:http'
import { limits } from '../../coordinator/limits.ts'

/** Options for http.createServer (or @hono/node-server's `serverOptions`). */
export function httpServerOptions(): ServerOptions {
  return {
    headersTimeout: limits.httpHeadersTimeoutMs,
    requestTimeout: limits.httpRequestTimeoutMs,
    keepAliveTimeout: limits.httpKeepAliveTimeoutMs,
    // Read once, when the server starts listening: so it must be set before listen().
    connectionsCheckingInterval: limits.httpTimeoutCheckMs,
  }
}

/**
 * Applies the same settings to a server already created (some constructors ignore options), and
 * the socket cap. Call before listen().
 */
export function hardenHttpServer<S extends Server>(server: S): S {
  server.headersTimeout = limits.httpHeadersTimeoutMs
  server.requestTimeout = limits.httpRequestTimeoutMs
  server.keepAliveTimeout = limits.httpKeepAliveTimeoutMs
  server.maxConnections = limits.socketsMax
  return server
}

/**
 * Stops `server`: closes every connection at once (a health poller's keep-alive connection would
 * otherwise keep sending requests, and `close` would wait for it for ever), then waits for the close
 * at most closeGraceMs.
 */
export async function closeServer(server: Server): Promise<void> {
  server.closeAllConnections()
  let timer: ReturnType<typeof setTimeout> | undefined
  await Promise.race([
    new Promise<void>(ok => server.close(() => ok())),
    new Promise<void>(ok => { timer = setTimeout(ok, limits.closeGraceMs) }),
  ])
  clearTimeout(timer)
}

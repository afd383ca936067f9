// An S3-compatible server inside this process (@20minutes/s3rver, file-backed under `directory`),
// so `npm start` and the tests need nothing installed: the replicas point their S3 client at it as
// at any MinIO. It is for local use only: it listens on 127.0.0.1, and although it refuses requests
// that carry no signature at all (403 AccessDenied, checked here in front of s3rver), it does not
// check the signatures it is given. s3rver knows one account, S3RVER/S3RVER, and signs bucket-level
// calls differently from the AWS SDK (it answered 403 SignatureDoesNotMatch to them), so it runs with
// allowMismatchedSignatures: any signed request naming the key id S3RVER gets in. Its directory is
// 0700; its HTTP server gets the same timeouts and socket cap as the replicas' (http-server.ts).

import { mkdir, chmod } from 'node:fs/promises'
import { createServer, type IncomingMessage, type RequestListener, type Server, type ServerResponse } from 'node:http'
import { createRequire } from 'node:module'
import type { AddressInfo } from 'node:net'
import { hardenHttpServer, httpServerOptions } from '../replica/node/http-server.ts'
import type { S3Config } from '../replica/snapshot/s3-store.ts'

// s3rver ships no type declarations; this is the part of its API used here. It is a Koa app:
// callback() is Koa's request listener, configureBuckets() what its run() does before listening.
// The server is ours (not run()'s) so that its options and the signature check are in front.
interface S3rverInstance {
  configureBuckets(): Promise<unknown>
  callback(): RequestListener
}
interface S3rverConstructor {
  new (options: {
    directory: string
    silent: boolean
    allowMismatchedSignatures: boolean
    configureBuckets?: Array<{ name: string }>
  }): S3rverInstance
}
const S3rver = createRequire(import.meta.url)('@20minutes/s3rver') as S3rverConstructor

export interface EmbeddedS3Options {
  /** Files live here; a restart on the same directory sees the same objects. */
  directory: string
  /** 0 (the default) picks a free port. */
  port?: number
  /**
   * Address to listen on; 127.0.0.1 by default. The nemesis (infra/chaos/) passes its bridge's
   * address, so that replicas in their own network namespaces reach it and a rule can cut them off.
   */
  host?: string
  /** Created at start when given. */
  bucket?: string
}

export interface EmbeddedS3 {
  readonly endpoint: string
  readonly port: number
  readonly accessKeyId: string
  readonly secretAccessKey: string
  /** A complete S3Config for this server (bucket from the options, or "ringkv"). */
  readonly config: S3Config
  /** Stops listening and cuts open connections (an S3 outage, as far as clients can tell). */
  close(): Promise<void>
}

/** True when the request carries an S3 signature (header or presigned query), whatever its value. */
function signed(req: IncomingMessage): boolean {
  if (req.headers.authorization !== undefined) return true
  let query: URLSearchParams
  try {
    query = new URL(req.url ?? '/', 'http://localhost').searchParams
  } catch {
    return false // a target no URL parser reads ("http://[") is refused, not thrown past the server
  }
  return query.has('X-Amz-Signature') || query.has('Signature')
}

function accessDenied(res: ServerResponse): void {
  const body = '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code><Message>Unsigned requests are refused</Message></Error>\n'
  res.writeHead(403, { 'content-type': 'application/xml', 'content-length': Buffer.byteLength(body), connection: 'close' })
  res.end(body)
}

export async function startEmbeddedS3(opts: EmbeddedS3Options): Promise<EmbeddedS3> {
  await mkdir(opts.directory, { recursive: true, mode: 0o700 })
  await chmod(opts.directory, 0o700)
  const s3rver = new S3rver({
    directory: opts.directory,
    silent: true,
    allowMismatchedSignatures: true,
    ...(opts.bucket === undefined ? {} : { configureBuckets: [{ name: opts.bucket }] }),
  })
  await s3rver.configureBuckets()
  const handle = s3rver.callback()
  const server: Server = hardenHttpServer(createServer(httpServerOptions(), (req, res) => {
    if (signed(req)) handle(req, res)
    else accessDenied(res)
  }))
  await new Promise<void>((ok, fail) => {
    server.once('error', fail)
    server.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', () => { server.off('error', fail); ok() })
  })
  const address = server.address() as AddressInfo
  const endpoint = `http://${opts.host ?? '127.0.0.1'}:${address.port}`
  let closed = false
  return {
    endpoint,
    port: address.port,
    accessKeyId: 'S3RVER',
    secretAccessKey: 'S3RVER',
    config: {
      endpoint, region: 'us-east-1', bucket: opts.bucket ?? 'ringkv', accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER',
    },
    async close() {
      if (closed) return
      closed = true
      const done = new Promise<void>(ok => server.close(() => ok()))
      // close() alone waits for keep-alive clients to hang up; an outage should not.
      server.closeAllConnections()
      await done
    },
  }
}

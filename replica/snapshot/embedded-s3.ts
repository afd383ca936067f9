// An S3-compatible server inside this process (@20minutes/s3rver, file-backed under `directory`),
// so `npm start` and the tests need nothing installed: the replicas point their S3 client at it as
// at any MinIO. It listens on 127.0.0.1 only. s3rver knows one account, S3RVER/S3RVER;
// allowMismatchedSignatures lets bucket-level calls through (it signs them differently from the
// SDK and answers 403 SignatureDoesNotMatch otherwise, shared/notes/environment.md).

import { mkdir } from 'node:fs/promises'
import type { Server } from 'node:http'
import { createRequire } from 'node:module'
import type { AddressInfo } from 'node:net'
import type { S3Config } from './s3-store.ts'

// s3rver ships no type declarations; this is the part of its API used here.
interface S3rverInstance {
  run(): Promise<AddressInfo>
  close(): Promise<void>
  httpServer?: Server
}
interface S3rverConstructor {
  new (options: {
    port: number
    address: string
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

export async function startEmbeddedS3(opts: EmbeddedS3Options): Promise<EmbeddedS3> {
  await mkdir(opts.directory, { recursive: true })
  const server = new S3rver({
    port: opts.port ?? 0,
    address: '127.0.0.1',
    directory: opts.directory,
    silent: true,
    allowMismatchedSignatures: true,
    ...(opts.bucket === undefined ? {} : { configureBuckets: [{ name: opts.bucket }] }),
  })
  const address = await server.run()
  const endpoint = `http://127.0.0.1:${address.port}`
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
      const done = server.close()
      // close() alone waits for keep-alive clients to hang up; an outage should not.
      server.httpServer?.closeAllConnections()
      await done
    },
  }
}

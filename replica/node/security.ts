// Node adapters for authentication, TLS and session keys (docs/security.md): reading the auth file,
// the cluster secret and the session secret from disk, and making HTTP servers that speak TLS. The
// logic (who may do what, the session format) is runtime-neutral in coordinator/; only file and TLS
// plumbing is here. Nothing here prints a token or a secret: errors name the file, never its content.

import { createAdaptorServer } from '@hono/node-server'
import type { Server } from 'node:http'
import { createServer as createHttpsServer } from 'node:https'
import { readFileSync, statSync } from 'node:fs'
import { clusterSecretIssue, type Authenticator } from '../../coordinator/auth/auth.ts'
import { gatewaySecurityFrom, secretText } from '../../coordinator/auth/settings.ts'
import { limits } from '../../coordinator/limits.ts'
import { hardenHttpServer, httpServerOptions } from './http-server.ts'

export interface SecurityFiles {
  readonly authFile?: string | undefined
  readonly clusterSecretFile?: string | undefined
  readonly sessionSecretFile?: string | undefined
  /** A gateway's token towards the replicas: this file, else `tokenEnv` (RINGKV_TOKEN). */
  readonly tokenFile?: string | undefined
  readonly tokenEnv?: string | undefined
  readonly tlsCert?: string | undefined
  readonly tlsKey?: string | undefined
  readonly tlsCa?: string | undefined
}

export interface Security {
  /** Tokens (and the cluster secret, on a replica); undefined = no authentication. */
  readonly auth: Authenticator | undefined
  /** The secret replicas present to each other; undefined without one. */
  readonly clusterSecret: string | undefined
  /** What a gateway presents to the replicas (a client token); undefined without one. */
  readonly token: string | undefined
  /** The MAC key of causal sessions. */
  readonly sessionKey: Uint8Array
  readonly tls: { readonly cert: Buffer; readonly key: Buffer } | undefined
  /** CA to check wss:// replicas against (undefined: the system's). */
  readonly ca: Buffer | undefined
}

/** A settings file's bytes, refused past limits.authFileBytesMax; errors name the file, never its content. */
export function readSmall(path: string, what: string): Buffer {
  let size: number
  try {
    size = statSync(path).size
  } catch (e) {
    throw new Error(`${what} ${path} cannot be read: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`)
  }
  if (size > limits.authFileBytesMax) throw new Error(`${what} ${path} is ${size} bytes, more than ${limits.authFileBytesMax}`)
  return readFileSync(path)
}

/** A secret file's content: one line, surrounding whitespace dropped. */
export function readSecretFile(path: string, what: string): string {
  return secretText(readSmall(path, what).toString('utf8'))
}

/**
 * Reads what the flags name. `role`: a replica needs the cluster secret whenever it has an auth file
 * (its own gateway and its peers authenticate with it); a gateway never takes it.
 */
export function loadSecurity(files: SecurityFiles, role: 'replica' | 'gateway', cluster: string): Security {
  if ((files.tlsCert === undefined) !== (files.tlsKey === undefined)) throw new Error('--tls-cert and --tls-key go together')
  let clusterSecret: string | undefined
  if (files.clusterSecretFile !== undefined) {
    if (role === 'gateway') throw new Error('a gateway does not take the cluster secret: give it a token (--token or RINGKV_TOKEN) with the write role')
    clusterSecret = readSecretFile(files.clusterSecretFile, 'cluster secret file')
    const issue = clusterSecretIssue(clusterSecret)
    if (issue) throw new Error(`${files.clusterSecretFile}: ${issue}`)
  }
  if (role === 'replica' && files.authFile !== undefined && clusterSecret === undefined) {
    throw new Error('--auth-file needs --cluster-secret-file on a replica: replicas (and each replica\'s own gateway) authenticate to each other with it')
  }
  const read = (path: string | undefined, what: string) => path === undefined ? undefined : { text: readSmall(path, what).toString('utf8'), source: path }
  if (files.tokenFile !== undefined && role !== 'gateway') throw new Error('--token-file is for a gateway: a replica authenticates to its peers with the cluster secret')
  // The same parsing as the Workers gateway's bindings (coordinator/auth/settings.ts).
  const { auth, token, sessionKey } = gatewaySecurityFrom({
    auth: read(files.authFile, 'auth file'),
    token: read(files.tokenFile, 'token file') ?? (files.tokenEnv ? { text: files.tokenEnv, source: 'RINGKV_TOKEN' } : undefined),
    sessionSecret: read(files.sessionSecretFile, 'session secret file'),
    clusterSecret, cluster,
  })
  return {
    auth, clusterSecret, token, sessionKey,
    tls: files.tlsCert !== undefined && files.tlsKey !== undefined
      ? { cert: readSmall(files.tlsCert, 'TLS certificate'), key: readSmall(files.tlsKey, 'TLS key') } : undefined,
    ca: files.tlsCa !== undefined ? readSmall(files.tlsCa, 'TLS CA') : undefined,
  }
}

/** An HTTP server for a Hono app (https:// and wss:// when `tls` is given), hardened (http-server.ts). */
export function createAppServer(fetch: (req: Request) => Response | Promise<Response>, tls: Security['tls']): Server {
  const server = tls
    ? createAdaptorServer({ fetch, createServer: createHttpsServer, serverOptions: { ...httpServerOptions(), cert: tls.cert, key: tls.key } })
    : createAdaptorServer({ fetch, serverOptions: httpServerOptions() })
  return hardenHttpServer(server as Server)
}

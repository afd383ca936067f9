// A gateway's security settings from text: the auth file, the token it presents to the replicas and
// the session secret, wherever they came from (files on Node, replica/node/security.ts; bindings on
// Workers, edge/worker.ts). Runtime-neutral so both gateways parse them with the same code and turn
// them into the same Authenticator and session key, refusing the same mistakes with the same words.
//
// Every message names where a setting came from (a file's path, a binding's name) and never quotes
// its content: each of these texts is a secret.

import { limits } from '../limits.ts'
import { sessionKeyFrom } from '../http/session.ts'
import { Authenticator } from './auth.ts'

/** One setting's text and where it came from, for messages ("auth file /etc/a.json", "RINGKV_AUTH"). */
export interface SettingText { readonly text: string; readonly source: string }

export interface GatewaySecuritySources {
  /** The auth file's text; undefined = no authentication. */
  readonly auth?: SettingText | undefined
  /** The token the gateway presents in its hello to the replicas; undefined = none. */
  readonly token?: SettingText | undefined
  /** The session secret; undefined = the key comes from the cluster secret, else the cluster's name. */
  readonly sessionSecret?: SettingText | undefined
  /** A replica's cluster secret (Authenticator.from checks it); gateways never hold it. */
  readonly clusterSecret?: string | undefined
  /** The cluster's name, the session key's public fallback material. */
  readonly cluster: string
}

export interface GatewaySecurity {
  readonly auth: Authenticator | undefined
  readonly token: string | undefined
  /** The MAC key of causal sessions. */
  readonly sessionKey: Uint8Array
}

const encoder = new TextEncoder()

/** A secret as read from a file or a binding: surrounding whitespace (a file's last newline) dropped. */
export function secretText(raw: string): string {
  return raw.trim()
}

/** What is wrong with a token a gateway presents to the replicas, if anything (its length, never the token). */
export function presentedTokenIssue(token: string): string | undefined {
  if (token.length < limits.authTokenCharsMin || token.length > limits.tokenCharsMax) {
    return `token must be ${limits.authTokenCharsMin} to ${limits.tokenCharsMax} characters, got ${token.length}`
  }
  if (/\s/.test(token)) return 'token must not contain whitespace'
  return undefined
}

/** What is wrong with a session secret, if anything: a short one lets anyone sign sessions. */
export function sessionSecretIssue(secret: string): string | undefined {
  if (secret.length < limits.authTokenCharsMin || secret.length > limits.tokenCharsMax) {
    return `session secret must be ${limits.authTokenCharsMin} to ${limits.tokenCharsMax} characters, got ${secret.length}`
  }
  return undefined
}

/**
 * Parses and checks every setting given. Throws one Error naming each source that is wrong and
 * why, so a misconfigured gateway says all it needs at once and never starts open.
 */
export function gatewaySecurityFrom(src: GatewaySecuritySources): GatewaySecurity {
  const issues: string[] = []
  let auth: Authenticator | undefined
  if (src.auth !== undefined) {
    const bytes = encoder.encode(src.auth.text).byteLength
    if (bytes > limits.authFileBytesMax) issues.push(`${src.auth.source}: ${bytes} bytes, more than ${limits.authFileBytesMax}`)
    else {
      try {
        auth = Authenticator.fromText(src.auth.text, src.clusterSecret)
      } catch (e) {
        issues.push(`${src.auth.source}: ${(e as Error).message}`)
      }
    }
  }
  let token: string | undefined
  if (src.token !== undefined) {
    token = secretText(src.token.text)
    const issue = presentedTokenIssue(token)
    if (issue) issues.push(`${src.token.source}: ${issue}`)
  }
  let sessionSecret: string | undefined
  if (src.sessionSecret !== undefined) {
    sessionSecret = secretText(src.sessionSecret.text)
    const issue = sessionSecretIssue(sessionSecret)
    if (issue) issues.push(`${src.sessionSecret.source}: ${issue}`)
  }
  if (issues.length > 0) throw new Error(issues.join('; '))
  const material = sessionSecret !== undefined ? sessionSecret
    : src.clusterSecret !== undefined ? `cluster-secret:${src.clusterSecret}` : `cluster-name:${src.cluster}`
  return { auth, token, sessionKey: sessionKeyFrom(material) }
}

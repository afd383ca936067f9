// Who may do what (docs/security.md). Runtime-neutral: replicas check the token of each data-plane
// connection's hello with it, and the HTTP gateway (Node or Workers) each request's bearer token.
//
// Roles are ordered: read < write < admin < peer. `read` may get (and ask for the ring), `write` may
// also put, delete and replicate, `admin` may also use /admin/* and membership commands, and `peer` is
// what a replica is to another: the one role that holds the cluster secret, which no client ever
// holds, and the only one allowed the peer-only messages (messages.ts `requestRoles`).
//
// Tokens are never kept or compared as text: each is hashed (SHA-256) when the file is read, a
// presented token is hashed once, and its digest is compared with every known digest in constant
// time, without stopping at a match: how long a check takes says nothing about which byte differed,
// nor which entry matched. Two entries may share a name (a token being rotated: old and new both
// work until the old one is removed); two may not share a token. No message here quotes a token.

import { sha256 } from '@noble/hashes/sha2.js'
import { z } from 'zod'
import { limits } from '../limits.ts'

export const roles = ['read', 'write', 'admin', 'peer'] as const
export type Role = (typeof roles)[number]
/** What a request needs: a role, or nothing at all (the hello that presents the token). */
export type Requirement = Role | 'none'

const rank: Record<Role, number> = { read: 1, write: 2, admin: 3, peer: 4 }

/** True when `role` may do what needs `required`. */
export function roleAllows(role: Role, required: Requirement): boolean {
  return required === 'none' || rank[role] >= rank[required]
}

/** The auth file: `{ "tokens": [ { "name", "token", "role" } ] }`. The peer role is not given here. */
export const authFileSchema = z.object({
  tokens: z.array(z.object({
    name: z.string().min(1).max(limits.nameCharsMax),
    token: z.string().min(limits.authTokenCharsMin).max(limits.tokenCharsMax),
    role: z.enum(['read', 'write', 'admin']),
  }).strict()).min(1).max(limits.authTokensMax),
}).strict()

export type AuthFile = z.output<typeof authFileSchema>

/** Who presented a known token. */
export interface Principal { readonly name: string; readonly role: Role }

interface Entry extends Principal { readonly digest: Uint8Array }

const encoder = new TextEncoder()

function digestOf(token: string): Uint8Array {
  return sha256(encoder.encode(token))
}

/** Constant-time equality of two 32-byte digests. */
function sameDigest(a: Uint8Array, b: Uint8Array): boolean {
  let diff = a.length ^ b.length
  for (let i = 0; i < a.length; i++) diff |= a[i]! ^ (b[i] ?? 0)
  return diff === 0
}

export class Authenticator {
  private constructor(private readonly entries: readonly Entry[]) {}

  /**
   * From the auth file's text and, on a replica, the cluster secret. Throws an Error a person can
   * act on (never quoting the file: a JSON syntax error's message shows the text around it).
   */
  static fromText(text: string, clusterSecret?: string): Authenticator {
    let json: unknown
    try {
      json = JSON.parse(text)
    } catch (e) {
      const at = /position (\d+)/.exec((e as Error).message)?.[1]
      throw new Error(`auth file is not valid JSON${at ? ` (near byte ${at})` : ''}`)
    }
    return Authenticator.from(json, clusterSecret)
  }

  static from(file: unknown, clusterSecret?: string): Authenticator {
    const parsed = authFileSchema.safeParse(file)
    if (!parsed.success) {
      // Paths and zod's messages only: zod 4 does not put the input value in them.
      const issues = parsed.error.issues.slice(0, limits.schemaIssuesMax).map(i => `${i.path.join('.') || '(top)'}: ${i.message}`)
      throw new Error(`auth file is not valid: ${issues.join('; ')} (expected { "tokens": [ { "name", "token", "role": "read" | "write" | "admin" } ] }, tokens of at least ${limits.authTokenCharsMin} characters)`)
    }
    const entries: Entry[] = parsed.data.tokens.map(t => ({ name: t.name, role: t.role, digest: digestOf(t.token) }))
    if (clusterSecret !== undefined) {
      const issue = clusterSecretIssue(clusterSecret)
      if (issue) throw new Error(issue)
      entries.push({ name: 'cluster', role: 'peer', digest: digestOf(clusterSecret) })
    }
    for (let i = 0; i < entries.length; i++) {
      for (let j = i + 1; j < entries.length; j++) {
        if (sameDigest(entries[i]!.digest, entries[j]!.digest)) {
          throw new Error(`auth file: entries ${i} (${entries[i]!.name}) and ${j} (${entries[j]!.name}) have the same token` +
            (j === entries.length - 1 && clusterSecret !== undefined ? ' (the cluster secret must not be a client token)' : ''))
        }
      }
    }
    return new Authenticator(entries)
  }

  /** The principal a token names, or undefined. Compares with every entry, in constant time each. */
  authenticate(token: string | undefined): Principal | undefined {
    if (typeof token !== 'string' || token.length === 0 || token.length > limits.tokenCharsMax) return undefined
    const digest = digestOf(token)
    let found: Entry | undefined
    for (const e of this.entries) {
      // No early exit: every entry is compared whatever matched before it.
      if (sameDigest(e.digest, digest)) found = e
    }
    return found === undefined ? undefined : { name: found.name, role: found.role }
  }

  /** Token names by role, for logs and /health (never the tokens). */
  summary(): Record<string, string[]> {
    const out: Record<string, string[]> = {}
    for (const e of this.entries) {
      const names = (out[e.role] ??= [])
      if (!names.includes(e.name)) names.push(e.name)
    }
    return out
  }
}

/** What is wrong with a cluster secret, if anything (its length only: it is never quoted). */
export function clusterSecretIssue(secret: string): string | undefined {
  if (secret.length < limits.clusterSecretCharsMin || secret.length > limits.tokenCharsMax) {
    return `cluster secret must be ${limits.clusterSecretCharsMin} to ${limits.tokenCharsMax} characters, got ${secret.length}`
  }
  if (/\s/.test(secret)) return 'cluster secret must not contain whitespace'
  return undefined
}

/** The token of an `Authorization: Bearer <token>` header; undefined when absent or not a bearer token. */
export function bearerToken(header: string | undefined): string | undefined {
  if (header === undefined || header.length > limits.tokenCharsMax + 16) return undefined
  const m = /^Bearer +([^\s]+) *$/i.exec(header)
  return m?.[1]
}

// The wire protocol between SDK/gateway coordinators and replicas (docs/protocol.md).
//
// A frame is one WebSocket binary message holding a msgpack array of messages; a message is
// `[type, id, body]`. Requests flow coordinator -> replica; a reply carries the request's type and
// id (or type 'error'). Every body has a zod schema here and is validated on receipt, on both sides.
// Keys travel as bytes so a replica can reject invalid UTF-8 instead of having the decoder
// silently substitute U+FFFD; values travel as bytes; a null value is a tombstone (delete).

import { z } from 'zod'
import type { Requirement } from '../auth/auth.ts'
import { errorKinds, errorTable, type ErrorFields, type KvErrorBody, type KvErrorKind } from '../errors.ts'
import { limits } from '../limits.ts'
import { memberStatuses } from '../membership/cluster-state.ts'
import { compareStrings } from '../version/dvv.ts'

/**
 * The strict decoder keys go through; fast-parse.ts decodes with this same instance. ignoreBOM:
 * a leading U+FEFF is part of the key (by default TextDecoder drops it, so "\uFEFFa" became "a").
 */
export const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true })

/** Validates a key given as a string (SDK side). Returns the problems found, empty when valid. */
export function keyIssues(key: string, bytes: number): string[] {
  const issues: string[] = []
  if (bytes === 0) issues.push('key is empty')
  if (bytes > limits.keyBytesMax) issues.push(`key is ${bytes} bytes, over the ${limits.keyBytesMax}-byte limit`)
  if (!key.isWellFormed()) issues.push('key is not valid UTF-8 (lone surrogate)')
  if (key.includes('\u0000')) issues.push('key contains NUL')
  return issues
}

export const bytesSchema = z.custom<Uint8Array>(v => v instanceof Uint8Array, { message: 'expected bytes' })

/** A key on the wire: UTF-8 bytes, decoded strictly. */
export const keySchema = bytesSchema.transform((b, ctx) => {
  let key: string
  try {
    key = utf8.decode(b)
  } catch {
    ctx.addIssue({ code: 'custom', message: 'key is not valid UTF-8' })
    return z.NEVER
  }
  for (const issue of keyIssues(key, b.byteLength)) ctx.addIssue({ code: 'custom', message: issue })
  return key
})

const actorSchema = z.string().min(1).max(limits.nameCharsMax)
/** dvv.ts isCounter: an integer from 1 to counterMax (far below 2^53, so a stamp's +1 never overflows). */
const counterSchema = z.number().int().positive().max(limits.counterMax)

/**
 * A version vector: at most vectorActorsMax actors, keys in canonical (sorted) order, so that every
 * vector a replica stores or merges has one spelling (dvv.ts reuses vectors as they are).
 */
export const vectorSchema = z.record(actorSchema, counterSchema)
  .refine(v => Object.keys(v).length <= limits.vectorActorsMax, { message: `version vector over ${limits.vectorActorsMax} actors` })
  .refine(v => {
    const keys = Object.keys(v)
    for (let i = 1; i < keys.length; i++) if (compareStrings(keys[i - 1]!, keys[i]!) >= 0) return false
    return true
  }, { message: 'version vector actors must be in sorted order, each once' })

export const siblingSchema = z.object({
  actor: actorSchema,
  counter: counterSchema,
  value: bytesSchema.nullable(),
})

// No .readonly(): zod 4.6.7's readonly() freezes the input it rejects, in place, and throws when
// that input is a byte array (a crafted frame with bytes where `siblings` belongs crashed a
// replica). States stay immutable through dvv.ts's readonly types, which no code casts away.
export const stateSchema = z.object({
  vv: vectorSchema,
  // siblingsReadMax, not siblingsMax: a state over the write bound (stored before it was enforced)
  // still reads, and a replicate of one gets the typed TooManySiblings from the replica's bound check
  // (state-bounds.ts) rather than a schema error.
  siblings: z.array(siblingSchema).max(limits.siblingsReadMax),
})

export const ringNodeSchema = z.object({
  id: z.string().min(1).max(limits.nameCharsMax),
  url: z.string().min(1).max(limits.urlCharsMax),
  zone: z.string().max(limits.nameCharsMax).optional(),
})

export const ringSchema = z.object({
  version: z.number().int().nonnegative().max(limits.membershipCounterMax),
  partitions: z.number().int().positive().max(limits.partitionsMax),
  n: z.number().int().positive().max(limits.nMax),
  nodes: z.array(ringNodeSchema).min(1).max(limits.ringNodesMax),
  owners: z.array(z.string()).max(limits.partitionsMax),
})

const nodeIdSchema = z.string().min(1).max(limits.nameCharsMax)

const partitionSchema = z.number().int().nonnegative().max(limits.partitionsMax - 1)
/** An anti-entropy tree's shape: branches under the root and segments under each branch. */
export const treeShapeSchema = z.object({ width: z.number().int().positive().max(limits.aaeTreeWidth * limits.aaeTreeWidth), depth: z.number().int().positive().max(8) })
/** Hashes as big-endian 32-bit words, one per branch or segment. */
const hashWordsSchema = (wordsMax: number) => bytesSchema.refine(b => b.byteLength % 4 === 0 && b.byteLength <= wordsMax * 4, { message: `expected at most ${wordsMax} 4-byte hashes` })
// Membership gossip (coordinator/membership/cluster-state.ts, docs/membership.md): the whole
// cluster state, bounded by the ring's own bounds (members as nodes, owners as partitions, a plan's
// transfers as every partition entering every preference list).
const membershipCounterSchema = z.number().int().nonnegative().max(limits.membershipCounterMax)
/** Counters only their own node (or an operator's change) bumps, by one: heartbeats and member generations. */
const gossipCounterSchema = z.number().int().nonnegative().max(limits.gossipCounterMax)
export const memberSchema = z.object({
  id: nodeIdSchema,
  url: z.string().min(1).max(limits.urlCharsMax),
  status: z.enum(memberStatuses),
  gen: gossipCounterSchema,
  done: z.object({
    plan: membershipCounterSchema,
    transfers: z.array(z.number().int().nonnegative().max(limits.planTransfersMax - 1)).max(limits.planTransfersMax),
  }).nullable(),
})
const ownersSchema = z.array(nodeIdSchema).min(1).max(limits.partitionsMax)
export const ringStateSchema = z.object({
  version: membershipCounterSchema,
  claimant: nodeIdSchema,
  partitions: z.number().int().positive().max(limits.partitionsMax),
  n: z.number().int().positive().max(limits.nMax),
  owners: ownersSchema,
  plan: z.object({
    version: membershipCounterSchema,
    owners: ownersSchema,
    transfers: z.array(z.object({ partition: partitionSchema, from: nodeIdSchema, to: nodeIdSchema })).max(limits.planTransfersMax),
  }).nullable(),
})
export const clusterStateSchema = z.object({
  members: z.array(memberSchema).max(limits.ringNodesMax),
  heartbeats: z.array(z.tuple([nodeIdSchema, gossipCounterSchema])).max(limits.ringNodesMax),
  ring: ringStateSchema.nullable(),
})

/** Request bodies, coordinator -> replica. */
export const requestSchemas = {
  hello: z.object({ protocol: z.number().int(), client: z.string().max(limits.clientNameCharsMax), token: z.string().max(limits.tokenCharsMax).optional() }),
  /** `hintFor`: asked as a fallback, answer with what is held for that owner too (its hints). */
  get: z.object({ key: keySchema, hintFor: nodeIdSchema.optional() }),
  /**
   * Stamp: the replica makes a dot, applies update(state, context, dot, value), logs it. `early`:
   * answer twice, with the stamped state as soon as the write is in the memtable (visible to reads,
   * not yet durable), then once it is durable (docs/protocol.md, "Early stamp").
   */
  put: z.object({ key: keySchema, context: vectorSchema, value: bytesSchema.nullable(), hintFor: nodeIdSchema.optional(), early: z.literal(true).optional() }),
  /** Replicate a stamped state to another preference node (or a fallback holding a hint). */
  replicate: z.object({ key: keySchema, state: stateSchema, hintFor: nodeIdSchema.optional() }),
  ring: z.object({}),
  /** Push-pull gossip: the sender's cluster state; the reply is the receiver's, merged. */
  gossip: z.object({ from: nodeIdSchema, state: clusterStateSchema }),
  /**
   * One batch of a partition handoff (docs/handoff.md): keys as UTF-8 bytes, each with its whole
   * stored DVV state in the replica's storage encoding (replica/state-codec.ts), and a CRC32C over
   * partition, seq and every entry (replica/handoff/handoff-batch.ts). Sizes are bounded here; the
   * receiver checks the checksum, then each key, state and bound, before it stores anything.
   */
  handoff: z.object({
    partition: z.number().int().nonnegative().max(limits.partitionsMax - 1),
    seq: z.number().int().nonnegative().max(limits.handoffSeqMax),
    from: nodeIdSchema,
    entries: z.array(z.tuple([
      bytesSchema.refine(b => b.byteLength <= limits.keyBytesMax, { message: `key over ${limits.keyBytesMax} bytes` }),
      bytesSchema.refine(b => b.byteLength <= limits.stateBytesMax, { message: `state over ${limits.stateBytesMax} bytes` }),
    ])).min(1).max(limits.handoffBatchKeysMax),
    checksum: z.number().int().nonnegative().max(0xffff_ffff),
  }),
  // Anti-entropy (docs/anti-entropy.md). Each names the partition and the tree shape the sender
  // uses; a replica with another shape (a wrong-depth tree) or that is not a primary of the
  // partition refuses with a typed error.
  /** The root: one 32-bit hash per branch. */
  aaeRoot: z.object({ partition: partitionSchema, shape: treeShapeSchema }),
  /** The roots of several partitions at once (a sweep), in the order named; each named once. */
  aaeRoots: z.object({
    partitions: z.array(partitionSchema).min(1).max(limits.aaeRootsPerRequestMax)
      .refine(ps => new Set(ps).size === ps.length, { message: 'a partition named twice' }),
    shape: treeShapeSchema,
  }),
  /** The leaves (segment hashes) under the named branches, in the order named. */
  aaeBranches: z.object({ partition: partitionSchema, shape: treeShapeSchema, branches: z.array(z.number().int().nonnegative().max(limits.aaeTreeWidth - 1)).min(1).max(limits.aaeTreeWidth) }),
  /** The keys and states of the named segments, from `after` on (a page of at most aaeKeysPerReplyMax keys). */
  aaeKeys: z.object({
    partition: partitionSchema, shape: treeShapeSchema,
    segments: z.array(z.number().int().nonnegative().max(limits.aaeTreeWidth * limits.aaeTreeWidth - 1)).min(1).max(limits.aaeSegmentsPerFetchMax),
    after: z.object({ segment: z.number().int().nonnegative().max(limits.aaeTreeWidth * limits.aaeTreeWidth - 1), key: keySchema }).optional(),
  }),
} as const

/**
 * The role each request needs when the replica runs with an auth file (auth/auth.ts: read < write <
 * admin < peer). This is the one table of who may send what: a new request type does not typecheck
 * until it is given a role here. Peer-only messages (gossip, handoff, hints, anti-entropy: what
 * replicas send each other) need 'peer', which only the cluster secret grants; membership commands
 * from an operator need 'admin'. `replicate` is 'write': coordinators (the SDK, gateways) send it
 * to finish every write and for read repair. Checked once per message against the role the
 * connection's hello established: a table lookup, no token work.
 */
export const requestRoles = {
  hello: 'none',
  ring: 'read',
  get: 'read',
  put: 'write',
  replicate: 'write',
  gossip: 'peer',
  handoff: 'peer',
  aaeRoot: 'peer',
  aaeRoots: 'peer',
  aaeBranches: 'peer',
  aaeKeys: 'peer',
} as const satisfies { readonly [T in keyof typeof requestSchemas]: Requirement }

/**
 * How long a replica spent on a write, in µs, from dispatch to reply (`serviceUs`) and of that
 * waiting for its WAL group's fsync (`fsyncUs`): the SDK splits a slow put's time with them
 * (docs/performance.md). Optional: older replicas do not send them.
 */
const timingUsSchema = z.number().int().nonnegative().max(limits.replyTimingUsMax).optional()
const writeTiming = { serviceUs: timingUsSchema, fsyncUs: timingUsSchema }

/** Reply bodies, replica -> coordinator, by the request type they answer. */
export const replySchemas = {
  hello: z.object({ protocol: z.number().int(), node: nodeIdSchema, actor: z.string(), ring: ringSchema }),
  get: z.object({ state: stateSchema.nullable() }),
  /**
   * The stamped state. `elided` names the new sibling's dot when its value is left out (sent as
   * null): it is the value the request carried, so echoing it back would only double the bytes.
   * To a request with `early`, two replies: the state with `early: true` (in the memtable, not yet
   * durable), then the same state once durable (either is enough to replicate on: the coordinator
   * does not depend on their order).
   */
  put: z.object({ state: stateSchema, elided: z.object({ actor: actorSchema, counter: counterSchema }).optional(), early: z.literal(true).optional(), ...writeTiming }),
  replicate: z.object({ ...writeTiming }),
  ring: z.object({ ring: ringSchema }),
  gossip: z.object({ state: clusterStateSchema }),
  /** Sent once every entry of the batch is durable (the WAL fsync covering it is done). */
  handoff: z.object({ keys: z.number().int().nonnegative().max(limits.handoffBatchKeysMax) }),
  aaeRoot: z.object({ branches: hashWordsSchema(limits.aaeTreeWidth) }),
  /** Each named partition's root, concatenated (aaeTreeWidth words per partition). */
  aaeRoots: z.object({ roots: hashWordsSchema(limits.aaeTreeWidth * limits.aaeRootsPerRequestMax) }),
  aaeBranches: z.object({ leaves: hashWordsSchema(limits.aaeTreeWidth * limits.aaeTreeWidth) }),
  /** `next`: where the following page starts; absent when the named segments are all sent. */
  aaeKeys: z.object({
    entries: z.array(z.object({ key: keySchema, state: stateSchema })).max(limits.aaeKeysPerReplyMax),
    next: z.object({ segment: z.number().int().nonnegative().max(limits.aaeTreeWidth * limits.aaeTreeWidth - 1), key: keySchema }).optional(),
  }),
} as const

/**
 * An `error` reply: the kind, its message, and that kind's data, every field as errorTable
 * (errors.ts) says. Fields a kind does not know are dropped; a missing one fails the whole body.
 */
export const errorSchema = z.discriminatedUnion('kind', errorKinds.map(kind =>
  z.object({ kind: z.literal(kind), message: z.string().max(limits.errorMessageCharsMax), ...errorTable[kind].data.shape }),
) as unknown as [z.ZodObject, ...z.ZodObject[]]) as unknown as z.ZodType<KvErrorBody, ErrorBody>

export { errorKinds }

export type RequestType = keyof typeof requestSchemas
export const requestTypes = Object.keys(requestSchemas) as RequestType[]
/**
 * Bodies as the code sees them: deeply readonly (what is sent or received is never mutated), which
 * the schemas no longer say themselves (see stateSchema). Byte arrays stay as they are.
 */
export type Wire<T> = T extends Uint8Array ? T
  : T extends readonly (infer U)[] ? readonly Wire<U>[]
  : T extends object ? { readonly [K in keyof T]: Wire<T[K]> }
  : T
export type RequestBody<T extends RequestType> = Wire<z.input<(typeof requestSchemas)[T]>>
export type ParsedRequest<T extends RequestType> = Wire<z.output<(typeof requestSchemas)[T]>>
export type ReplyBody<T extends RequestType> = Wire<z.output<(typeof replySchemas)[T]>>
/** An `error` body as a sender writes it: `{ kind, message, ...data }` (errors.ts errorTable). */
export type ErrorBody = { [K in KvErrorKind]: { kind: K; message: string } & ErrorFields<z.input<(typeof errorTable)[K]['data']>> }[KvErrorKind]

export function isRequestType(t: unknown): t is RequestType {
  return typeof t === 'string' && Object.hasOwn(requestSchemas, t)
}

/**
 * Formats zod issues as short sentences for error replies ("key: key is empty"). A path can hold
 * decoded input (a version vector's actor names, of any length), so each sentence is cut at
 * issueCharsMax and at most schemaIssuesMax are listed: a reply stays small whatever the request held.
 */
export function describeIssues(error: z.ZodError): string[] {
  return error.issues.slice(0, limits.schemaIssuesMax).map(i => {
    const path = i.path.map(p => (typeof p === 'string' ? p.slice(0, limits.issueCharsMax) : String(p))).join('.')
    const text = (path ? `${path}: ` : '') + i.message
    return text.length > limits.issueCharsMax ? `${text.slice(0, limits.issueCharsMax)}…` : text
  })
}

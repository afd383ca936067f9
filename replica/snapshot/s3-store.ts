// ObjectStore over any S3-compatible endpoint (MinIO, OpenStack Swift's s3api, the embedded s3rver,
// AWS) with @aws-sdk/client-s3. This is the only file of the snapshot path that touches the SDK.
//
// Non-AWS endpoints need three client settings (seen on this machine):
// path-style addressing (no bucket DNS names on 127.0.0.1), and checksums only WHEN_REQUIRED, since
// otherwise the SDK streams uploads as aws-chunked, which Swift rejects. Swift also insists on a
// Content-MD5 header on DeleteObjects, which current SDKs no longer send: a build-step middleware
// adds it.
//
// Retries: the SDK's own retry is off (maxAttempts 1) and each call is retried here instead, a
// bounded number of times with "full jitter" exponential backoff (Brooker, AWS Architecture Blog,
// 2015), so the bounds live in snapshot-limits.ts and the randomness can be injected. Only
// transient failures are retried (network errors, timeouts, 5xx, throttling); a 403 or a missing
// bucket fails at once. Every failure surfaces as KvError 'Unavailable' with the SDK error as cause.

import { createHash } from 'node:crypto'
import { open } from 'node:fs/promises'
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadBucketCommand,
  ListObjectsCommand,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
  type CompletedPart,
} from '@aws-sdk/client-s3'
import { z } from 'zod'
import { assert } from '../../coordinator/assert.ts'
import { KvError } from '../../coordinator/errors.ts'
import type { Log } from '../storage/engine-types.ts'
import type { LargeBody, ObjectStore, PutLargeOptions, StoreOpOptions } from './object-store.ts'
import { snapshotLimits as L } from './snapshot-limits.ts'
import { backoffDelayMs } from '../../coordinator/backoff.ts'
import { sleep } from '../abortable-sleep.ts'

// ---------------------------------------------------------------------------------------------
// Configuration

export interface S3Config {
  endpoint: string
  region: string
  bucket: string
  accessKeyId: string
  secretAccessKey: string
}

/** Command-line flags; each one, when given, wins over the environment. */
export type S3Flags = Partial<S3Config>

const bucketNamePattern = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/

const S3ConfigSchema = z.object({
  endpoint: z.string({
    error: 'S3 endpoint is not set: set S3_ENDPOINT (or --s3-endpoint), e.g. http://127.0.0.1:9000 for MinIO',
  }).superRefine((v, ctx) => {
    let ok = false
    try { ok = ['http:', 'https:'].includes(new URL(v).protocol) } catch { ok = false }
    if (!ok) ctx.addIssue({ code: 'custom', message: `S3 endpoint must be an http:// or https:// URL, got "${v}"` })
  }),
  region: z.string().min(1, 'S3 region must not be empty (S3_REGION, default us-east-1)'),
  bucket: z.string({
    error: 'S3 bucket is not set: set S3_BUCKET (or --s3-bucket), e.g. ringkv',
  }).superRefine((v, ctx) => {
    if (!bucketNamePattern.test(v)) {
      ctx.addIssue({ code: 'custom', message: `S3 bucket name must be 3-63 lowercase letters, digits, dots or hyphens, got "${v}"` })
    }
  }),
  accessKeyId: z.string({
    error: 'S3 access key is not set: set S3_ACCESS_KEY_ID (or AWS_ACCESS_KEY_ID)',
  }).min(1, 'S3 access key is empty: set S3_ACCESS_KEY_ID (or AWS_ACCESS_KEY_ID)'),
  secretAccessKey: z.string({
    error: 'S3 secret key is not set: set S3_SECRET_ACCESS_KEY (or AWS_SECRET_ACCESS_KEY)',
  }).min(1, 'S3 secret key is empty: set S3_SECRET_ACCESS_KEY (or AWS_SECRET_ACCESS_KEY)'),
})

/**
 * Reads the S3 settings from flags, then S3_* variables, then AWS_* credentials; an empty string
 * counts as unset. Throws KvError 'BadRequest' listing every problem in words a person can act on.
 */
export function s3ConfigFromEnv(env: Readonly<Record<string, string | undefined>>, flags: S3Flags = {}): S3Config {
  const pick = (...vs: Array<string | undefined>): string | undefined => vs.find((v) => v !== undefined && v !== '')
  const raw = {
    endpoint: pick(flags.endpoint, env.S3_ENDPOINT),
    region: pick(flags.region, env.S3_REGION, env.AWS_REGION) ?? 'us-east-1',
    bucket: pick(flags.bucket, env.S3_BUCKET),
    accessKeyId: pick(flags.accessKeyId, env.S3_ACCESS_KEY_ID, env.AWS_ACCESS_KEY_ID),
    secretAccessKey: pick(flags.secretAccessKey, env.S3_SECRET_ACCESS_KEY, env.AWS_SECRET_ACCESS_KEY),
  }
  const parsed = S3ConfigSchema.safeParse(raw)
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => i.message)
    throw new KvError({ kind: 'BadRequest', issues }, `invalid S3 configuration: ${issues.join('; ')}`)
  }
  return parsed.data
}

// ---------------------------------------------------------------------------------------------
// Store

export interface S3StoreOptions {
  /** Attempts per request (<= s3AttemptsMax); tests lower it to fail fast. */
  attemptsMax?: number
  backoffMsMin?: number
  backoffMsMax?: number
  connectTimeoutMs?: number
  requestTimeoutMs?: number
  /** Keys per ListObjectsV2 page (<= 1000); tests lower it to exercise pagination. */
  listPageKeys?: number
  /** Keys per DeleteObjects request (<= 1000); tests lower it to exercise batching. */
  deleteBatchKeys?: number
  /** Uniform in [0, 1): jitter for the backoff. Injected so a simulation can seed it. */
  random?: () => number
  log?: Log
}

export class S3ObjectStore implements ObjectStore {
  readonly description: string
  readonly client: S3Client
  private readonly bucket: string
  private readonly endpoint: string
  private readonly attemptsMax: number
  private readonly backoffMsMin: number
  private readonly backoffMsMax: number
  private readonly listPageKeys: number
  private readonly deleteBatchKeys: number
  private readonly random: () => number
  private readonly log: Log

  constructor(config: S3Config, opts: S3StoreOptions = {}) {
    this.bucket = config.bucket
    this.endpoint = config.endpoint
    this.description = `s3 ${config.endpoint}/${config.bucket}`
    this.attemptsMax = opts.attemptsMax ?? L.s3AttemptsMax
    this.backoffMsMin = opts.backoffMsMin ?? L.s3BackoffMsMin
    this.backoffMsMax = opts.backoffMsMax ?? L.s3BackoffMsMax
    this.listPageKeys = opts.listPageKeys ?? L.listPageKeysMax
    this.deleteBatchKeys = opts.deleteBatchKeys ?? L.deleteBatchKeysMax
    this.random = opts.random ?? Math.random
    this.log = opts.log ?? (() => {})
    assert(this.attemptsMax >= 1 && this.attemptsMax <= L.s3AttemptsMax, `attemptsMax must be 1..${L.s3AttemptsMax}`)
    assert(this.backoffMsMin > 0 && this.backoffMsMin <= this.backoffMsMax, 'backoff min <= max')
    assert(this.deleteBatchKeys >= 1 && this.deleteBatchKeys <= L.deleteBatchKeysMax, `deleteBatchKeys must be 1..${L.deleteBatchKeysMax}`)
    assert(this.listPageKeys >= 1 && this.listPageKeys <= L.listPageKeysMax, `listPageKeys must be 1..${L.listPageKeysMax}`)

    this.client = new S3Client({
      endpoint: config.endpoint,
      region: config.region,
      credentials: { accessKeyId: config.accessKeyId, secretAccessKey: config.secretAccessKey },
      forcePathStyle: true,
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      maxAttempts: 1,
      requestHandler: {
        connectionTimeout: opts.connectTimeoutMs ?? L.s3ConnectTimeoutMs,
        requestTimeout: opts.requestTimeoutMs ?? L.s3RequestTimeoutMs,
        throwOnRequestTimeout: true,
      },
    })
    // Swift's s3api requires Content-MD5 on DeleteObjects (S3 itself did until checksums arrived).
    this.client.middlewareStack.add((next, ctx) => async (args) => {
      const request = args.request as { headers?: Record<string, string>; body?: unknown }
      if (ctx.commandName === 'DeleteObjectsCommand' && request.headers !== undefined &&
          (typeof request.body === 'string' || request.body instanceof Uint8Array)) {
        request.headers['content-md5'] = createHash('md5').update(request.body).digest('base64')
      }
      return next(args)
    }, { step: 'build', name: 'ringkvDeleteObjectsContentMd5' })
  }

  /** Creates the bucket unless it exists (HeadBucket first: a user may read a bucket it may not create). */
  async ensureBucket(opts: StoreOpOptions = {}): Promise<void> {
    try {
      await this.retry('HeadBucket', '', opts, () => this.client.send(new HeadBucketCommand({ Bucket: this.bucket }), sendOptions(opts)))
      return
    } catch (e) {
      if (!(e instanceof KvError) || !isNotFound(e.cause)) throw e
    }
    try {
      await this.retry('CreateBucket', '', opts, () => this.client.send(new CreateBucketCommand({ Bucket: this.bucket }), sendOptions(opts)))
    } catch (e) {
      const name = e instanceof KvError ? errorName(e.cause) : ''
      if (name !== 'BucketAlreadyOwnedByYou' && name !== 'BucketAlreadyExists') throw e
    }
    this.log('s3 bucket ready', { bucket: this.bucket, endpoint: this.endpoint })
  }

  async put(key: string, bytes: Uint8Array, opts: StoreOpOptions = {}): Promise<void> {
    await this.retry('PutObject', key, opts, () => this.client.send(new PutObjectCommand({
      Bucket: this.bucket, Key: key, Body: bytes, ContentLength: bytes.byteLength,
    }), sendOptions(opts)))
  }

  async get(key: string, opts: StoreOpOptions = {}): Promise<Uint8Array | undefined> {
    return (await this.getObject(key, undefined, opts))?.bytes
  }

  async getRange(key: string, start: number, endInclusive: number, opts: StoreOpOptions = {}): Promise<Uint8Array | undefined> {
    assert(Number.isSafeInteger(start) && start >= 0 && endInclusive >= start, `bad range ${start}-${endInclusive}`)
    const got = await this.getObject(key, `bytes=${start}-${endInclusive}`, opts)
    if (got === undefined) return undefined
    const { bytes, rangeStart } = got
    const wanted = endInclusive - start + 1
    if (bytes.byteLength <= wanted && rangeStart === start) return bytes
    // s3rver answers "bytes=0-0" with everything from 0 on (it reads end 0 as "no end"); a response
    // that starts where asked can be cut down. Anything else is not the range: never pass it off as one.
    if (rangeStart === start) return bytes.subarray(0, wanted)
    throw new KvError({ kind: 'Unavailable', node: this.endpoint },
      `S3 GetObject ${key} on ${this.description}: asked for bytes ${start}-${endInclusive}, got ${bytes.byteLength} bytes from ${rangeStart}`)
  }

  private async getObject(key: string, range: string | undefined, opts: StoreOpOptions): Promise<{ bytes: Uint8Array; rangeStart: number } | undefined> {
    try {
      // The body is read inside the retried operation, so a connection cut mid-body is retried too.
      return await this.retry('GetObject', key, opts, async () => {
        const res = await this.client.send(new GetObjectCommand({
          Bucket: this.bucket, Key: key, ...(range === undefined ? {} : { Range: range }),
        }), sendOptions(opts))
        assert(res.Body !== undefined, `GetObject ${key} returned no body`)
        const bytes = await res.Body.transformToByteArray()
        // Content-Range: "bytes 100-199/1000"; absent when the server sent the whole object.
        const m = /^bytes (\d+)-/.exec(res.ContentRange ?? '')
        return { bytes, rangeStart: m?.[1] === undefined ? 0 : Number(m[1]) }
      })
    } catch (e) {
      if (e instanceof KvError && isNotFound(e.cause)) return undefined
      throw e
    }
  }

  async list(prefix: string, opts: StoreOpOptions = {}): Promise<string[]> {
    // ListObjects v1 with Marker = the last key seen, not v2's continuation tokens: every S3
    // implementation pages v1 the same way, while s3rver mints v2 tokens with DES, which Node 20's
    // OpenSSL 3 refuses (every truncated v2 page is an HTTP 500 there).
    const keys: string[] = []
    for (let page = 0; ; page++) {
      assert(page < L.listPagesMax, `list ${prefix}: more than ${L.listPagesMax} pages`)
      const marker = keys.at(-1)
      const res = await this.retry('ListObjects', prefix, opts, () => this.client.send(new ListObjectsCommand({
        Bucket: this.bucket, Prefix: prefix, MaxKeys: this.listPageKeys, ...(marker === undefined ? {} : { Marker: marker }),
      }), sendOptions(opts)))
      const contents = res.Contents ?? []
      for (const o of contents) {
        if (o.Key === undefined) continue
        const last = keys.at(-1)
        // S3 lists in UTF-8 byte order; a page out of order would make Marker paging skip or loop.
        assert(last === undefined || Buffer.compare(Buffer.from(o.Key), Buffer.from(last)) > 0,
          () => `list ${prefix}: ${o.Key} after ${last}, not in order`)
        keys.push(o.Key)
      }
      if (res.IsTruncated !== true || contents.length === 0) break
    }
    return keys
  }

  async delete(keys: readonly string[], opts: StoreOpOptions = {}): Promise<void> {
    for (let i = 0; i < keys.length; i += this.deleteBatchKeys) {
      const batch = keys.slice(i, i + this.deleteBatchKeys)
      const res = await this.retry('DeleteObjects', batch[0] ?? '', opts, () => this.client.send(new DeleteObjectsCommand({
        Bucket: this.bucket, Delete: { Objects: batch.map((Key) => ({ Key })), Quiet: true },
      }), sendOptions(opts)))
      const errors = (res.Errors ?? []).filter((e) => e.Code !== 'NoSuchKey')
      if (errors.length > 0) {
        const first = errors.slice(0, 3).map((e) => `${e.Key}: ${e.Code} ${e.Message ?? ''}`).join('; ')
        throw new KvError({ kind: 'Unavailable', node: this.endpoint },
          `S3 DeleteObjects on ${this.description} failed for ${errors.length} of ${batch.length} keys: ${first}`)
      }
    }
  }

  async putLarge(key: string, body: LargeBody, opts: PutLargeOptions = {}): Promise<void> {
    const size = body instanceof Uint8Array ? body.byteLength : body.bytes
    let partBytes = opts.partBytes ?? L.multipartPartBytesDefault
    assert(partBytes >= L.multipartPartBytesMin, `part size ${partBytes} below the S3 minimum ${L.multipartPartBytesMin}`)
    // Past 10 000 parts S3 refuses the upload: grow the part instead.
    partBytes = Math.max(partBytes, Math.ceil(size / L.multipartPartsMax))
    const file = body instanceof Uint8Array ? undefined : await open(body.path, 'r')
    try {
      const readPart = async (start: number, end: number): Promise<Uint8Array> => {
        if (body instanceof Uint8Array) return body.subarray(start, end)
        assert(file !== undefined, 'file handle')
        const buf = Buffer.allocUnsafe(end - start)
        let done = 0
        while (done < buf.byteLength) {
          const { bytesRead } = await file.read(buf, done, buf.byteLength - done, start + done)
          if (bytesRead === 0) throw new KvError({ kind: 'Corruption', file: body.path, offset: start + done },
            `${body.path} is shorter than the ${size} bytes expected`)
          done += bytesRead
        }
        return buf
      }
      if (size <= partBytes) {
        await this.put(key, await readPart(0, size), opts)
        return
      }
      const created = await this.retry('CreateMultipartUpload', key, opts, () => this.client.send(new CreateMultipartUploadCommand({ Bucket: this.bucket, Key: key }), sendOptions(opts)))
      const uploadId = created.UploadId
      assert(uploadId !== undefined, `CreateMultipartUpload ${key} returned no UploadId`)
      try {
        const partCount = Math.ceil(size / partBytes)
        const parts: CompletedPart[] = new Array(partCount)
        let next = 0
        // A few parts in flight: memory is bounded by multipartPartsInflightMax x partBytes.
        const worker = async (): Promise<void> => {
          while (next < partCount) {
            const index = next++
            const start = index * partBytes
            const bytes = await readPart(start, Math.min(size, start + partBytes))
            const res = await this.retry('UploadPart', key, opts, () => this.client.send(new UploadPartCommand({
              Bucket: this.bucket, Key: key, UploadId: uploadId, PartNumber: index + 1,
              Body: bytes, ContentLength: bytes.byteLength,
            }), sendOptions(opts)))
            assert(res.ETag !== undefined, `UploadPart ${key} #${index + 1} returned no ETag`)
            parts[index] = { PartNumber: index + 1, ETag: res.ETag }
          }
        }
        await Promise.all(Array.from({ length: Math.min(L.multipartPartsInflightMax, partCount) }, worker))
        await this.retry('CompleteMultipartUpload', key, opts, () => this.client.send(new CompleteMultipartUploadCommand({
          Bucket: this.bucket, Key: key, UploadId: uploadId, MultipartUpload: { Parts: parts },
        }), sendOptions(opts)))
      } catch (e) {
        // Best effort: an upload left open only costs storage until the bucket's lifecycle rule.
        await this.client.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: key, UploadId: uploadId }))
          .catch((abortErr: unknown) => this.log('s3 abort multipart failed', { key, error: String(abortErr) }))
        throw e
      }
    } finally {
      await file?.close()
    }
  }

  /** Stops the client's sockets. */
  destroy(): void {
    this.client.destroy()
  }

  // -------------------------------------------------------------------------------------------

  private async retry<T>(op: string, key: string, opts: StoreOpOptions, fn: () => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      opts.signal?.throwIfAborted()
      try {
        return await fn()
      } catch (e) {
        if (opts.signal?.aborted === true) throw opts.signal.reason
        const transient = isTransient(e)
        if (!transient || attempt >= this.attemptsMax) throw this.wrap(op, key, e, attempt)
        const delayMs = backoffDelayMs({ minMs: this.backoffMsMin, maxMs: this.backoffMsMax, jitter: 'full' }, attempt, this.random)
        this.log('s3 request failed, retrying', { op, key, attempt, delayMs, error: describeError(e) })
        await sleep(delayMs, opts.signal)
      }
    }
  }

  private wrap(op: string, key: string, e: unknown, attempts: number): KvError {
    const what = `S3 ${op}${key === '' ? '' : ` ${key}`} on ${this.description}`
    const code = errorCode(e)
    const status = httpStatus(e)
    let hint = ''
    if (status === undefined && networkCodes.has(code)) hint = ': is the S3 server running? check S3_ENDPOINT'
    else if (status === 403) hint = ': check S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY'
    else if (code === 'NoSuchBucket') hint = `: create bucket "${this.bucket}" or check S3_BUCKET`
    return new KvError({ kind: 'Unavailable', node: this.endpoint },
      `${what} failed after ${attempts} attempt${attempts === 1 ? '' : 's'} (${describeError(e)})${hint}`, { cause: e })
  }
}

// ---------------------------------------------------------------------------------------------
// Error classification

const networkCodes = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN',
  'ENOTFOUND', 'ECONNABORTED', 'UND_ERR_SOCKET', 'ERR_HTTP2_STREAM_ERROR',
])
const transientNames = new Set([
  'TimeoutError', 'RequestTimeout', 'RequestTimeoutException', 'SlowDown', 'Throttling',
  'ThrottlingException', 'InternalError', 'ServiceUnavailable', 'RequestTimeTooSkewed',
])

function errorName(e: unknown): string {
  return typeof e === 'object' && e !== null && 'name' in e && typeof e.name === 'string' ? e.name : ''
}

function errorCode(e: unknown): string {
  for (let cur: unknown = e, depth = 0; cur !== undefined && cur !== null && depth < 4; depth++) {
    if (typeof cur === 'object' && 'code' in cur && typeof cur.code === 'string') return cur.code
    // Node 20's happy-eyeballs connect fails with an AggregateError whose parts carry the code.
    if (cur instanceof AggregateError) {
      for (const inner of cur.errors) { const c = errorCode(inner); if (c !== '') return c }
    }
    cur = typeof cur === 'object' && 'cause' in cur ? cur.cause : undefined
  }
  const name = errorName(e)
  return name === 'Error' ? '' : name
}

function httpStatus(e: unknown): number | undefined {
  if (typeof e !== 'object' || e === null || !('$metadata' in e)) return undefined
  const m = e.$metadata as { httpStatusCode?: number } | undefined
  return m?.httpStatusCode
}

/** A missing object (or, for HeadBucket, a missing bucket); a missing bucket on an object call is an error. */
function isNotFound(e: unknown): boolean {
  const name = errorName(e)
  if (name === 'NoSuchBucket') return false
  return name === 'NoSuchKey' || name === 'NotFound' || httpStatus(e) === 404
}

function isTransient(e: unknown): boolean {
  const name = errorName(e)
  if (name === 'AbortError') return false
  if (transientNames.has(name) || networkCodes.has(errorCode(e))) return true
  const status = httpStatus(e)
  if (status === undefined) return true // no HTTP answer at all: a network-level failure
  return status >= 500 || status === 429 || status === 408
}

function describeError(e: unknown): string {
  const code = errorCode(e)
  const status = httpStatus(e)
  const msg = e instanceof Error ? e.message : String(e)
  return [code, status === undefined ? '' : `HTTP ${status}`, msg].filter((s) => s !== '').join(' ')
}

function sendOptions(opts: StoreOpOptions): { abortSignal?: AbortSignal } {
  return opts.signal === undefined ? {} : { abortSignal: opts.signal }
}


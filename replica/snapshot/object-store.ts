// The small object-store interface the snapshotter and restore are written against, so they know
// nothing of S3 itself (Hono's adapter pattern: a core against an interface, one adapter per
// backend). s3-store.ts implements it with @aws-sdk/client-s3 for any S3-compatible endpoint (MinIO,
// Swift's s3api, the embedded s3rver); test/s3/object-store-suite.ts is the conformance suite every
// implementation must pass.
//
// Keys are '/'-separated paths without a leading slash. Failures are KvErrors: 'Unavailable' when
// the store cannot be reached or refuses the request after bounded retries (with the SDK error as
// cause). A missing object is a result (undefined), not an error.

export interface StoreOpOptions {
  /** Aborts the request and any retry backoff; the promise then rejects with the abort reason. */
  signal?: AbortSignal
}

/** A large body: bytes in memory, or a file on local disk read part by part. */
export type LargeBody = Uint8Array | { readonly path: string; readonly bytes: number }

export interface PutLargeOptions extends StoreOpOptions {
  /** Multipart part size; at least 5 MiB (S3's minimum). */
  partBytes?: number
}

export interface ObjectStore {
  /** For logs and error messages: "s3 http://127.0.0.1:9000/bucket". */
  readonly description: string
  put(key: string, bytes: Uint8Array, opts?: StoreOpOptions): Promise<void>
  /** Multipart upload for large bodies (small ones may go as one put). Atomic: all or nothing. */
  putLarge(key: string, body: LargeBody, opts?: PutLargeOptions): Promise<void>
  get(key: string, opts?: StoreOpOptions): Promise<Uint8Array | undefined>
  /** Bytes [start, endInclusive] (HTTP Range semantics); undefined when the object is missing. */
  getRange(key: string, start: number, endInclusive: number, opts?: StoreOpOptions): Promise<Uint8Array | undefined>
  /** Every key under the prefix, in lexicographic order, across as many pages as it takes. */
  list(prefix: string, opts?: StoreOpOptions): Promise<string[]>
  /** Deletes the keys (missing ones are fine), in batches the backend accepts. */
  delete(keys: readonly string[], opts?: StoreOpOptions): Promise<void>
}

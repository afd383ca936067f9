// Builds the conformance-suite fixture for an S3-compatible endpoint: clients of the store under
// test (with small page and batch sizes on demand) and a client of a port nothing listens on.

import { createServer } from 'node:net'
import { S3ObjectStore, type S3Config } from '../../replica/snapshot/s3-store.ts'
import type { ObjectStoreFixture } from './object-store-suite.ts'

/** A loopback port that was free a moment ago and is closed now: connections to it are refused. */
export async function closedPort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  if (address === null || typeof address === 'string') throw new Error('no port')
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return address.port
}

export async function s3Fixture(config: S3Config, close: () => Promise<void>): Promise<ObjectStoreFixture> {
  const clients: S3ObjectStore[] = []
  const track = (s: S3ObjectStore): S3ObjectStore => { clients.push(s); return s }
  const main = track(new S3ObjectStore(config))
  await main.ensureBucket()
  const deadPort = await closedPort()
  return {
    makeStore: (opts = {}) => track(new S3ObjectStore(config, opts)),
    makeUnreachableStore: () => track(new S3ObjectStore(
      { ...config, endpoint: `http://127.0.0.1:${deadPort}` },
      { attemptsMax: 2, backoffMsMin: 10, backoffMsMax: 20, connectTimeoutMs: 500 },
    )),
    async close() {
      for (const c of clients) c.destroy()
      await close()
    },
  }
}

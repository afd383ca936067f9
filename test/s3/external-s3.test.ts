// The object-store conformance suite against an external S3-compatible endpoint: Swift's s3api in CI
// (.ci/swift-s3api.sh prints the variables), MinIO for deployments:
//   S3_ENDPOINT=http://127.0.0.1:9000 S3_ACCESS_KEY_ID=minioadmin S3_SECRET_ACCESS_KEY=minioadmin \
//   S3_BUCKET=ringkv-ci npm run test:s3
// Without S3_ENDPOINT this fails loudly rather than skip: a CI that forgot to start the server must
// not pass as if it had tested it.

import { describe, it } from 'node:test'
import { s3ConfigFromEnv } from '../../replica/snapshot/s3-store.ts'
import { runObjectStoreSuite } from './object-store-suite.ts'
import { s3Fixture } from './s3-fixture.ts'

if (process.env.S3_ENDPOINT === undefined || process.env.S3_ENDPOINT === '') {
  describe('external S3 endpoint', () => {
    it('needs S3_ENDPOINT', () => {
      throw new Error('S3_ENDPOINT is not set: start an S3-compatible server (bash .ci/swift-s3api.sh start, or MinIO) ' +
        'and set S3_ENDPOINT, S3_ACCESS_KEY_ID, S3_SECRET_ACCESS_KEY and S3_BUCKET (see .ci/swift-s3api.sh)')
    })
  })
} else {
  const config = s3ConfigFromEnv(process.env, { bucket: process.env.S3_BUCKET ?? 'ringkv-ci' })
  runObjectStoreSuite(`external ${config.endpoint}`, () => s3Fixture(config, async () => {}))
}

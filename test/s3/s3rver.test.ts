// The object-store conformance suite against the embedded s3rver (what `npm start` runs).

import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startEmbeddedS3 } from '../../infra/embedded-s3.ts'
import { runObjectStoreSuite } from './object-store-suite.ts'
import { s3Fixture } from './s3-fixture.ts'

runObjectStoreSuite('embedded s3rver', async () => {
  const directory = await mkdtemp(join(tmpdir(), 'ringkv-s3rver-'))
  const s3 = await startEmbeddedS3({ directory, bucket: 'ringkv-test' })
  return s3Fixture(s3.config, async () => {
    await s3.close()
    await rm(directory, { recursive: true, force: true })
  })
})

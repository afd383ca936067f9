// s3ConfigFromEnv: precedence (flags > S3_* > AWS_*), defaults, and messages a person can act on.

import assert from 'node:assert/strict'
import { test } from 'node:test'
import { isKvError } from '../../coordinator/errors.ts'
import { s3ConfigFromEnv } from '../../replica/snapshot/s3-store.ts'

const full = {
  S3_ENDPOINT: 'http://127.0.0.1:9000', S3_BUCKET: 'ringkv', S3_ACCESS_KEY_ID: 'ak', S3_SECRET_ACCESS_KEY: 'sk',
}

test('reads S3_* with region defaulting to us-east-1; flags win; AWS_* credentials accepted', () => {
  assert.deepEqual(s3ConfigFromEnv(full), {
    endpoint: 'http://127.0.0.1:9000', region: 'us-east-1', bucket: 'ringkv', accessKeyId: 'ak', secretAccessKey: 'sk',
  })
  assert.equal(s3ConfigFromEnv(full, { bucket: 'other' }).bucket, 'other')
  const aws = s3ConfigFromEnv({ S3_ENDPOINT: 'https://s3.example', S3_BUCKET: 'b-1', AWS_ACCESS_KEY_ID: 'a', AWS_SECRET_ACCESS_KEY: 's', S3_REGION: 'eu-west-3' })
  assert.equal(aws.accessKeyId, 'a')
  assert.equal(aws.region, 'eu-west-3')
})

test('every problem is named, with the variable to set', () => {
  assert.throws(() => s3ConfigFromEnv({ S3_ENDPOINT: 'ftp://x', S3_BUCKET: 'Bad_Bucket' }), (e: unknown) => {
    assert.ok(isKvError(e) && e.data.kind === 'BadRequest')
    const text = e.data.issues.join('\n')
    assert.match(text, /must be an http:\/\/ or https:\/\/ URL, got "ftp:\/\/x"/)
    assert.match(text, /bucket name must be 3-63 lowercase .* got "Bad_Bucket"/)
    assert.match(text, /set S3_ACCESS_KEY_ID \(or AWS_ACCESS_KEY_ID\)/)
    assert.match(text, /set S3_SECRET_ACCESS_KEY/)
    return true
  })
  assert.throws(() => s3ConfigFromEnv({ ...full, S3_ENDPOINT: '' }), /S3 endpoint is not set: set S3_ENDPOINT/)
})

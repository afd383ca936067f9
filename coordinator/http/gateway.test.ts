// Keys in gateway paths: percent escapes are bytes, other characters are UTF-8, and the result must
// be valid UTF-8; anything else is a BadRequest.

import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { isKvError } from '../errors.ts'
import { keyFromPath } from './gateway.ts'

describe('keyFromPath', () => {
  it('decodes escapes and raw characters, surrogate pairs included', () => {
    assert.equal(keyFromPath('/kv/cart%3A42'), 'cart:42')
    assert.equal(keyFromPath('/kv/cart:42'), 'cart:42')
    assert.equal(keyFromPath('/kv/%D0%BA%D0%BB%D1%8E%D1%87'), 'ключ')
    assert.equal(keyFromPath('/kv/ключ/ü 🚀'), 'ключ/ü 🚀')
    assert.equal(keyFromPath(`/kv/${encodeURIComponent('a🚀b')}`), 'a🚀b')
    // A leading byte-order mark stays part of the key ("\uFEFFa" and "a" are two keys).
    assert.equal(keyFromPath('/kv/%EF%BB%BFa'), '\uFEFFa')
  })

  it('refuses bad escapes and invalid UTF-8 with BadRequest', () => {
    for (const path of ['/kv/%C3%28', '/kv/%zz', '/kv/abc%4', '/kv/%ED%A0%80']) {
      assert.throws(() => keyFromPath(path), (e: unknown) => isKvError(e) && e.kind === 'BadRequest', path)
    }
  })
})

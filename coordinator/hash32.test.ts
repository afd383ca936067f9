// murmur3 against MurmurHash3 x86_32 as published: a string's UTF-16 code units are its UTF-16LE
// bytes, so the expected values come from an independent byte-wise implementation of the reference
// algorithm (Python, checked against the published "hello" -> 0x248bfa47 and "The quick brown
// fox ..." -> 0x2e4ff723) run over each string's UTF-16LE encoding. The bloom filters' table
// format depends on these outputs.

import assert from 'node:assert/strict'
import { test } from 'node:test'
import { murmur3 } from './hash32.ts'

test('murmur3 is MurmurHash3 x86_32 (seed 0) over UTF-16LE bytes', () => {
  const known: Array<[string, number]> = [
    ['', 0],
    ['a', 1867108634],
    ['ab', 374890698],
    ['user:12345', 1112331738],
    ['ключ', 3797877012],
    ['\u{1F600}x', 3298812386],
  ]
  for (const [s, h] of known) assert.equal(murmur3(s), h, JSON.stringify(s))
})

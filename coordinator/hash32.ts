// Small non-cryptographic 32-bit hashes over strings' UTF-16 code units, for in-memory structures
// whose values need spread, not secrecy: the bloom filters of table files (their hash is part of
// the table format: replica/storage/bloom.ts) and the anti-entropy trees' per-key contributions
// (replica/aae/tictac-tree.ts). Both end in MurmurHash3's finalizer.

/** MurmurHash3's finalizer (fmix32): every output bit depends on every input bit. */
export function fmix32(x: number): number {
  let h = x
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2ae35)
  h ^= h >>> 16
  return h >>> 0
}

/** MurmurHash3 x86_32's scramble of one 32-bit block (or of the tail's bytes) before it enters the hash. */
function scramble(k: number): number {
  k = Math.imul(k, 0xcc9e2d51)
  k = (k << 15) | (k >>> 17)
  return Math.imul(k, 0x1b873593)
}

/** One MurmurHash3 x86_32 block step: mixes the 32-bit block `k` into the running hash `h`. */
export function murmurBlock(h: number, k: number): number {
  h ^= scramble(k)
  h = (h << 13) | (h >>> 19)
  return (Math.imul(h, 5) + 0xe6546b64) | 0
}

/**
 * MurmurHash3 x86_32 (Austin Appleby, public domain) over a string's UTF-16 code units, two to a
 * 32-bit block, seed 0. Code units rather than UTF-8 bytes: callers keep the output in memory, and
 * every process computes it the same way.
 */
export function murmur3(s: string): number {
  const n = s.length
  let h = 0
  let i = 0
  for (; i + 1 < n; i += 2) h = murmurBlock(h, s.charCodeAt(i) | (s.charCodeAt(i + 1) << 16))
  // A last odd code unit is the tail: scrambled into the hash without the block step's rotation.
  if (i < n) h ^= scramble(s.charCodeAt(i))
  return fmix32(h ^ (n * 2))
}

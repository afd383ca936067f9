// The numeric sparse index of an SSTable, which the reader searches on every get that reaches the
// table. The file's index block (table-format.ts) lists each data block's first key; in memory those
// keys are also held as numbers, so that a binary search touches two contiguous typed arrays instead
// of scattered strings:
//   - every key of a table shares its first `prefixLen` UTF-16 code units (the common prefix of its
//     smallest and largest key), so only the units after the prefix matter;
//   - each block's first key gives two numbers, hi and lo, holding the next 3 + 3 code units
//     (keyDigits); the pairs are ordered like the strings (non-strictly), so a search narrows to the
//     blocks whose pair equals the key's and compares strings only among those;
//   - the pairs are interleaved in one array (idx[2i] = hi, idx[2i + 1] = lo: one search step
//     touches one cache line, not two), with every indexTopStride-th pair copied into a small idxTop
//     that stays in cache, so a search touches only one stride of idx.
// The builder computes the digits in slices while it finishes a table (so a table of millions of
// keys never blocks puts); the reader computes them when it opens a file.

export interface IndexDigits {
  prefixLen: number
  hi: Float64Array
  lo: Float64Array
}

/** Blocks per row of Table.idxTop (32 index pairs = 512 bytes of Table.idx per stride). */
export const indexTopStride = 32

/**
 * Three UTF-16 code units of `key` from `at` as one number, each as (unit + 1) in 17 bits and 0 past
 * the end: if a <= b as strings then keyDigits(a, i) <= keyDigits(b, i) for keys sharing [0, i).
 */
export function keyDigits(key: string, at: number): number {
  const n = key.length
  const c0 = at < n ? key.charCodeAt(at) + 1 : 0
  const c1 = at + 1 < n ? key.charCodeAt(at + 1) + 1 : 0
  const c2 = at + 2 < n ? key.charCodeAt(at + 2) + 1 : 0
  return (c0 * 131072 + c1) * 131072 + c2
}

function commonPrefixLen(a: string, b: string): number {
  const n = Math.min(a.length, b.length)
  let i = 0
  while (i < n && a.charCodeAt(i) === b.charCodeAt(i)) i++
  return i
}

/** The numeric sparse index of a table (see Table.idx); `from`/`to` let a builder compute it in slices. */
export function indexDigits(firstKeys: readonly string[], maxKey: string | undefined,
  into?: IndexDigits, from = 0, to = firstKeys.length): IndexDigits {
  const n = firstKeys.length
  const d = into ?? { prefixLen: n === 0 ? 0 : commonPrefixLen(firstKeys[0]!, maxKey!), hi: new Float64Array(n), lo: new Float64Array(n) }
  const p = d.prefixLen
  for (let i = from; i < to; i++) {
    const k = firstKeys[i]!
    d.hi[i] = keyDigits(k, p)
    d.lo[i] = keyDigits(k, p + 3)
  }
  return d
}

/** The search arrays of an index: interleaved (hi, lo) pairs, and every indexTopStride-th pair. */
export function indexArrays(d: IndexDigits): { idx: Float64Array; idxTop: Float64Array } {
  // Interleaved (hi, lo) pairs: one binary-search step touches one cache line, not two.
  const n = d.hi.length
  const idx = new Float64Array(2 * n)
  for (let i = 0; i < n; i++) {
    idx[2 * i] = d.hi[i]!
    idx[2 * i + 1] = d.lo[i]!
  }
  const m = Math.ceil(n / indexTopStride)
  const top = new Float64Array(2 * m)
  for (let j = 0; j < m; j++) {
    top[2 * j] = idx[2 * j * indexTopStride]!
    top[2 * j + 1] = idx[2 * j * indexTopStride + 1]!
  }
  return { idx, idxTop: top }
}

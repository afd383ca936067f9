// A growable output buffer for the table builder: a table is assembled in one Buffer that doubles
// when full, so building it costs a few copies in all rather than an allocation per entry, and the
// finished table (a view of that Buffer) is what the reader keeps.

import { storageLimits } from './storage-limits.ts'

/** A growable output buffer; `capacity` is a hint that avoids re-copies when the size is known. */
export class ByteSink {
  buf: Buffer
  len = 0
  constructor(capacity: number) {
    this.buf = Buffer.allocUnsafeSlow(Math.max(storageLimits.tableBuildBytesMin, capacity))
  }
  ensure(n: number): void {
    if (this.len + n <= this.buf.length) return
    let cap = this.buf.length * 2
    while (cap < this.len + n) cap *= 2
    const next = Buffer.allocUnsafeSlow(cap)
    this.buf.copy(next, 0, 0, this.len)
    this.buf = next
  }
}

// The checksum of a handoff batch (docs/handoff.md), computed the same way by the sender and the
// receiver. It covers the partition, the sequence number and every entry with its lengths, so a
// batch whose bytes were damaged, cut, re-split or spliced from two batches does not match, and the
// receiver stores none of it. CRC32C, as the WAL and the tables use:
//   crc32c( partition(4 BE) seq(4 BE) then per entry: keyLen(4 BE) key stateLen(4 BE) state )
// It guards against accidents, not attackers (anyone can compute it); a forged batch with a valid
// checksum still goes through every check a `replicate` of its states would.

import { crc32c } from '@node-rs/crc32'

const header = Buffer.alloc(8)

export function handoffChecksum(partition: number, seq: number, entries: ReadonlyArray<readonly [Uint8Array, Uint8Array]>): number {
  header.writeUInt32BE(partition >>> 0, 0)
  header.writeUInt32BE(seq >>> 0, 4)
  let crc = crc32c(header)
  for (const [key, state] of entries) {
    header.writeUInt32BE(key.byteLength, 0)
    crc = crc32c(header.subarray(0, 4), crc)
    crc = crc32c(key, crc)
    header.writeUInt32BE(state.byteLength, 0)
    crc = crc32c(header.subarray(0, 4), crc)
    crc = crc32c(state, crc)
  }
  return crc >>> 0
}

// The SSTable file format (goleveldb's table/): immutable sorted runs of key/value entries, built
// from a frozen memtable or by compaction (table-builder.ts), written once to tables/<id>.sst and
// kept in memory as the file's Buffer for reads (table-reader.ts). Every region carries a CRC32C; a
// table is fully verified (checksums, framing, key order, index and key count) when built and again
// when opened, so a flipped bit anywhere is reported as KvError Corruption { file, offset } at open
// and never served. This module holds the layout and its constants, so that writer and reader
// cannot disagree on them.
//
// Layout (integers little-endian, offsets from the start of the file):
//   data block*   entry* crc32c(4)                 ~tableBlockBytes of entries; crc over the entries
//     entry       keyLen(2) valueLen(4) key(keyLen, UTF-8) value(valueLen)
//   index block   count(4) { offset(4) keyLen(2) firstKey(keyLen) }*count crc32c(4)
//                 one row per data block: where it starts and its first key (sparse index)
//   bloom block   probes(1) bits(n) crc32c(4)       ~bloomBitsPerKey bits per key (bloom.ts);
//                 version 2: n is a whole number of 64-byte blocks, a key's probes all in one block
//   footer(32)    indexOffset(4) bloomOffset(4) keys(4) blocks(4) version(4) magic(8) crc32c(4)
//                 crc over the footer's first 28 bytes
// Regions are contiguous: data [0, indexOffset), index [indexOffset, bloomOffset),
// bloom [bloomOffset, size - 32), footer [size - 32, size). Key order is JavaScript string order
// (see memtable.ts). Version 1 differs only in its bloom bits (whole-array probes, bloom.ts); such
// tables are still read, never written.

export const tableMagic = Buffer.from('RINGKVT1', 'latin1')
/**
 * 2: blocked bloom filter (all probes of a key in one 64-byte block). 1: classic bloom over the
 * whole bit array; still read (open() picks the probe function by version), never written.
 */
export const tableVersion = 2
export const tableVersionsReadable = [1, 2] as const
export const footerBytes = 32

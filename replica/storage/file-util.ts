// Small durable-file helpers shared by the WAL, the engine, the manifest and the snapshot restore:
// write-then-rename with the fsyncs that make a rename survive a crash (file data, then the
// directory entry), a directory fsync, whole writes, and the CRC32C spelling used in messages. They
// know no file names (disk-layout.ts does). With `fsync: false` (benchmarks only) the same steps run
// without the syncs.

import { fdatasync, writeSync, writevSync } from 'node:fs'
import { open, rename, unlink } from 'node:fs/promises'
import type { FileHandle } from 'node:fs/promises'
import { dirname } from 'node:path'
import { tmpPath } from './disk-layout.ts'
import { storageLimits } from './storage-limits.ts'

/** IOV_MAX, as a constant of this module: writevAllSync runs for every WAL group. */
const iovMax = storageLimits.writevBuffersMax

export async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r')
  try {
    await fh.sync()
  } finally {
    await fh.close()
  }
}

/** Writes all of `data` at the handle's position, looping over short writes. */
export async function writeAll(fh: FileHandle, data: Uint8Array): Promise<void> {
  let done = 0
  while (done < data.byteLength) {
    const { bytesWritten } = await fh.write(data, done, data.byteLength - done)
    done += bytesWritten
  }
}

/** Writes all of `bufs` (`total` bytes) at file offset `position`, synchronously, finishing short writes. */
export function writevAllSync(fd: number, bufs: readonly Buffer[], total: number, position: number): void {
  let at = position
  // writev takes at most IOV_MAX buffers at once.
  for (let i = 0; i < bufs.length; i += iovMax) {
    const part = bufs.length <= iovMax ? bufs : bufs.slice(i, i + iovMax)
    let partBytes = total
    if (part !== bufs) { partBytes = 0; for (const b of part) partBytes += b.length }
    const written = part.length === 1 ? writeSync(fd, part[0]!, 0, partBytes, at) : writevSync(fd, part as Buffer[], at)
    if (written < partBytes) {
      // Short write (disk full returns an error instead): finish this part from where it stopped.
      const rest = Buffer.concat(part, partBytes).subarray(written)
      for (let off = 0; off < rest.length;) off += writeSync(fd, rest, off, rest.length - off, at + written + off)
    }
    at += partBytes
  }
}

/** fdatasync through the callback API: one thread-pool round trip, no FileHandle promise machinery. */
export function fdatasyncFd(fd: number): Promise<void> {
  return new Promise((resolve, reject) => fdatasync(fd, e => (e ? reject(e) : resolve())))
}

/** Replaces `path` with `data` atomically: write `path.tmp`, fsync, rename over `path`, fsync the directory. */
export async function writeFileAtomic(path: string, data: Uint8Array, fsync: boolean): Promise<void> {
  const tmp = tmpPath(path)
  const fh = await open(tmp, 'w')
  try {
    await writeAll(fh, data)
    if (fsync) await fh.sync()
  } catch (e) {
    await fh.close().catch(() => {})
    await unlink(tmp).catch(() => {})
    throw e
  }
  await fh.close()
  await rename(tmp, path)
  if (fsync) await fsyncDir(dirname(path))
}

/** A CRC32C as 8 hex digits, as error messages and logs spell checksums. */
export function crc32cHex(n: number): string {
  return n.toString(16).padStart(8, '0')
}

// Small durable-file helpers shared by the WAL, table and manifest code: write-then-rename with the
// fsyncs that make a rename survive a crash (file data, then the directory entry), and a directory
// fsync. With `fsync: false` (benchmarks only) the same steps run without the syncs.

import { open, rename, unlink } from 'node:fs/promises'
import type { FileHandle } from 'node:fs/promises'
import { dirname } from 'node:path'

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

/** Replaces `path` with `data` atomically: write `path.tmp`, fsync, rename over `path`, fsync the directory. */
export async function writeFileAtomic(path: string, data: Uint8Array, fsync: boolean): Promise<void> {
  const tmp = `${path}.tmp`
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

// A clock read at most once per turn of the event loop, for latency statistics. On this machine a
// performance.now() costs 0.5-1 µs under load (the VM's clock source is not read from user space),
// and a replica read it three times per write: a frame of 64 puts or a WAL group of hundreds of
// completions now shares one read. The first read in a turn queues a microtask that forgets it,
// so every read in the same synchronous run (and the microtasks queued before that one, such as
// the callbacks a WAL group's fsync releases together) sees the same instant; the error is at most
// the time spent in that run, which is what those requests waited anyway. Runtime-neutral
// (queueMicrotask exists in Node, browsers and Workers); never used for deadlines.

export function turnCachedClock(read: () => number): () => number {
  let cached = 0
  let valid = false
  const forget = (): void => { valid = false }
  return () => {
    if (valid) return cached
    cached = read()
    valid = true
    queueMicrotask(forget)
    return cached
  }
}

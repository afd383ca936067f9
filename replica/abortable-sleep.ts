// One abortable sleep for the replica's retry loops (S3 requests, snapshot rounds): it resolves
// after `ms`, or rejects with the signal's reason as soon as the signal aborts (at once if it has
// already). A loop that treats an abort as "stop waiting" says so where it calls it.

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted === true) { reject(signal.reason); return }
    const onAbort = (): void => { clearTimeout(t); reject(signal?.reason) }
    const t = setTimeout(() => { signal?.removeEventListener('abort', onAbort); resolve() }, ms)
    signal?.addEventListener('abort', onAbort, { once: true })
  })
}

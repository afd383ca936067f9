// The value the crash writer stores for a key, so the parent can check it without being told.
export function crashValue(key: string): Uint8Array {
  const v = Buffer.alloc(200, key.length & 255)
  v.write(key, 0, 'utf8')
  return v
}

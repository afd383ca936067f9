// A linear-time gate in front of msgpackr for bytes from outside (frames, causal contexts) and for
// stored states. msgpackr decodes more than plain MessagePack: whatever the Unpackr options say, it
// decodes its registered extensions (records, bundled strings, Set, Date, RegExp, Error, typed
// arrays, big integers, and structured-clone references unless structuredClone is exactly false:
// plainUnpackrOptions below says what its source does with each option), and references let a few
// hundred bytes describe a DAG whose every walk (a schema check, String(), the JSON view msgpackr
// builds for its trailing-bytes error) is exponential in the input. So the bytes are scanned first, in one pass
// that never recurses, and anything but exactly one plain MessagePack value spanning the whole input
// is refused with a short reason:
//   - any ext type (fixext 0xd4-0xd8, ext 8/16/32 0xc7-0xc9) and the never-used byte 0xc1, which
//     msgpackr decodes as a marker object (or a bundled-string reference);
//   - nesting deeper than limits.decodeDepthMax;
//   - truncation, and trailing bytes after the value;
//   - map keys that are not strings (msgpackr would stringify them into object keys), and the key
//     `__proto__` (msgpackr renames it to `__proto_`, so the decoded object would not be the one sent);
//   - input longer than limits.frameBytesMax (nothing decoded is larger; the counts stay 32-bit);
//   - more than limits.decodeContainersMax arrays and maps: each decodes to a JS object of 50-100
//     bytes from as little as one input byte, so a frame of nothing but empty maps would cost ~64x
//     its size in heap (16 MiB -> 1 GB); the cap keeps that below ~30 MB whatever the frame;
//   - a container claiming more elements than there are bytes left. Every element takes at least one
//     byte, so the values still owed by all open containers never exceed the bytes left: that caps
//     msgpackr's array preallocation at the input size and makes the scan visit at most one value
//     per input byte.
// str and bin payloads are skipped by their length, never read: the scan costs per value, not per
// byte, which keeps it cheap on frames of large values (bench/msgpack-guard-bench.ts measures it).
// Once a value passes, msgpackr's decoded value has at most one node per input byte and its strings
// and byte arrays together hold at most the input's bytes (msgpack-guard.test.ts checks both).

import type { Options } from 'msgpackr'
import { limits } from '../limits.ts'

/** Filled in by msgpackIssue when given: the values it visited (at most the input's byte length). */
export interface GuardStats {
  items: number
}

// The enclosing containers of the one being read, one slot per level: the values each still owes,
// and whether it is a map (whose values alternate key, value, so a key is due whenever its owed
// count is even). The container being read lives in locals. Scratch shared by every call: the scan
// is synchronous and calls nothing, so no two scans ever overlap. Owed counts never exceed the
// bytes left (checked before a container opens), at most frameBytesMax, so they fit 31 bits.
const owedStack = new Int32Array(limits.decodeDepthMax + 1)
const mapStack = new Uint8Array(limits.decodeDepthMax + 1)

// What a scan found, as a code (the loop stays numeric; the reason is formatted only on refusal),
// with the offset, byte and count it concerns.
const OK = 0, TRUNCATED = 1, RUNS_PAST_END = 2, EXTENSION = 3, NEVER_USED = 4, KEY_NOT_STRING = 5, KEY_PROTO = 6,
  TOO_DEEP = 7, CLAIM = 8, TRAILING = 9, TOO_MANY_CONTAINERS = 10
let foundAt = 0
let foundByte = 0
let foundCount = 0
let foundPos = 0
let foundItems = 0

/**
 * Returns null when `bytes` is exactly one plain MessagePack value (no extensions, depth within
 * limits.decodeDepthMax, string map keys, nothing after it), else a short reason naming the offset.
 */
export function msgpackIssue(bytes: Uint8Array, stats?: GuardStats): string | null {
  if (bytes.length > limits.frameBytesMax) {
    if (stats !== undefined) stats.items = 0
    return `${bytes.length} bytes, over the ${limits.frameBytesMax}-byte limit`
  }
  const code = scan(bytes)
  if (stats !== undefined) stats.items = foundItems
  return code === OK ? null : reason(code, bytes.length)
}

function reason(code: number, end: number): string {
  const at = foundAt
  switch (code) {
    case TRUNCATED: return `truncated: a value is missing at byte ${at}`
    case RUNS_PAST_END: return `truncated: the value at byte ${at} runs past the end`
    case EXTENSION: return `extension type 0x${foundByte.toString(16)} at byte ${at}: only plain MessagePack is accepted`
    case NEVER_USED: return `never-used byte 0xc1 at byte ${at}`
    case KEY_NOT_STRING: return `map key at byte ${at} is not a string`
    case KEY_PROTO: return `map key at byte ${at} is __proto__`
    case TOO_DEEP: return `nesting deeper than ${limits.decodeDepthMax} at byte ${at}`
    case TOO_MANY_CONTAINERS: return `more than ${limits.decodeContainersMax} arrays and maps (at byte ${at})`
    case CLAIM: {
      const map = foundByte === 0xde || foundByte === 0xdf || (foundByte & 0xf0) === 0x80
      return `${map ? 'map' : 'array'} at byte ${at} claims ${foundCount} ${map ? 'entries' : 'elements'}, more than the ${end - foundPos} bytes left hold`
    }
    default: return `trailing bytes: the value ends at byte ${foundPos} of ${end}`
  }
}

/** The scan itself: returns OK or the code of what it refused, and leaves the details in found*. */
function scan(bytes: Uint8Array): number {
  const end = bytes.length
  let pos = 0
  let items = 0
  let containers = 0
  // Open containers; depth 0 is the top level, which owes exactly one value.
  let depth = 0
  let owed = 1
  let inMap = false
  // Values still owed across every open container: each needs at least one of the bytes left.
  let pending = 1
  let code = OK
  let at = 0
  let b = 0
  let n = 0
  scanning: for (;;) {
    if (owed === 0) {
      if (depth === 0) break
      depth--
      owed = owedStack[depth]!
      inMap = mapStack[depth] === 1
      continue
    }
    at = pos
    if (pos >= end) { code = TRUNCATED; break }
    b = bytes[pos++]!
    items++
    if (inMap && (owed & 1) === 0) {
      if ((b & 0xe0) === 0xa0) {
        if (b === 0xa9 && isProtoKey(bytes, pos)) { code = KEY_PROTO; break }
      } else if (b >= 0xd9 && b <= 0xdb) {
        const lengthBytes = b === 0xd9 ? 1 : b === 0xda ? 2 : 4
        if (pos + lengthBytes <= end && readUint(bytes, pos, lengthBytes) === protoBytes.length && isProtoKey(bytes, pos + lengthBytes)) {
          code = KEY_PROTO; break
        }
      } else {
        code = KEY_NOT_STRING; break
      }
    }
    owed--
    pending--
    let values: number
    if (b < 0x80 || b >= 0xe0) continue // fixints
    if (b < 0x90) {
      values = (b & 0x0f) * 2 // fixmap
    } else if (b < 0xa0) {
      values = b & 0x0f // fixarray
    } else if (b < 0xc0) {
      pos += b & 0x1f // fixstr
      if (pos > end) { code = RUNS_PAST_END; break }
      continue
    } else {
      // A header whose length bytes are cut short moves pos past the end: truncation.
      switch (b) {
        case 0xc0: case 0xc2: case 0xc3: continue scanning
        case 0xc1: code = NEVER_USED; break scanning
        case 0xc4: case 0xd9: pos = pos + 1 > end ? end + 1 : pos + 1 + bytes[pos]!; break
        case 0xc5: case 0xda: pos = pos + 2 > end ? end + 1 : pos + 2 + readUint(bytes, pos, 2); break
        case 0xc6: case 0xdb: pos = pos + 4 > end ? end + 1 : pos + 4 + readUint(bytes, pos, 4); break
        case 0xc7: case 0xc8: case 0xc9:
        case 0xd4: case 0xd5: case 0xd6: case 0xd7: case 0xd8:
          code = EXTENSION; break scanning
        case 0xcc: case 0xd0: pos += 1; break
        case 0xcd: case 0xd1: pos += 2; break
        case 0xca: case 0xce: case 0xd2: pos += 4; break
        case 0xcb: case 0xcf: case 0xd3: pos += 8; break
      }
      if (b < 0xdc) {
        if (pos > end) { code = RUNS_PAST_END; break }
        continue
      }
      // array 16/32, map 16/32
      const size = b === 0xdc || b === 0xde ? 2 : 4
      if (pos + size > end) { code = RUNS_PAST_END; break }
      n = readUint(bytes, pos, size)
      pos += size
      values = b >= 0xde ? 2 * n : n
    }
    // A container opens: within the depth bound, and owing no more values than bytes are left.
    if (depth + 1 > limits.decodeDepthMax) { code = TOO_DEEP; break }
    if (++containers > limits.decodeContainersMax) { code = TOO_MANY_CONTAINERS; break }
    if (values > end - pos - pending) {
      code = CLAIM
      n = b >= 0xdc ? n : b & 0x0f
      break
    }
    if (values > 0) {
      owedStack[depth] = owed
      mapStack[depth] = inMap ? 1 : 0
      depth++
      // Below the bytes left, so a 32-bit integer: `| 0` lets the optimizer keep counts in integers.
      owed = values | 0
      inMap = b < 0x90 || b >= 0xde
      pending = (pending + values) | 0
    }
  }
  if (code === OK && pos !== end) code = TRAILING
  foundAt = at
  foundByte = b
  foundCount = n
  foundPos = pos
  foundItems = items
  return code
}

const protoKey = '__proto__'
const protoBytes = Array.from(protoKey, c => c.charCodeAt(0))

function isProtoKey(bytes: Uint8Array, start: number): boolean {
  if (start + protoBytes.length > bytes.length) return false // truncated; the scan says so next
  for (let i = 0; i < protoBytes.length; i++) if (bytes[start + i] !== protoBytes[i]) return false
  return true
}

/** A big-endian unsigned integer of 1, 2 or 4 bytes at `pos` (the caller checked they are there). */
function readUint(bytes: Uint8Array, pos: number, size: 1 | 2 | 4): number {
  if (size === 1) return bytes[pos]!
  if (size === 2) return (bytes[pos]! << 8) | bytes[pos + 1]!
  return bytes[pos]! * 0x1000000 + ((bytes[pos + 1]! << 16) | (bytes[pos + 2]! << 8) | bytes[pos + 3]!)
}

/**
 * Unpackr options shared by every decoder behind this guard, each extension-like switch msgpackr
 * 2.1.4 has set explicitly. What unpack.js does with them, read from its source:
 *   - structuredClone: false is the only option that turns an extension off: the 0x69 (id) and 0x70
 *     (pointer) handlers throw when it is exactly false, and decode shared references otherwise.
 *   - useRecords: on the unpacking side it only picks the default of mapsAsObjects; record
 *     definitions (fixext 0x72) and references to them (0x40-0x7f) decode whatever it says.
 *   - moreTypes, bundleStrings, useBigIntExtension are read only by Packr: the Set, RegExp, Error,
 *     typed array, big-integer and bundled-string (0x62) extensions decode regardless.
 *   - int64AsType picks how plain uint64/int64 (0xcf/0xd3, not extensions) decode: 'bigint' is the
 *     default, kept, so schemas refuse them where a number belongs.
 *   - allowArraysInMapKeys: false keeps msgpackr from flattening an array key into a string.
 * So the options alone leave records, bundled strings, Set, RegExp, Error, Date, typed arrays and
 * undefined (ext 0) decoding, and only the guard keeps them out.
 */
export const plainUnpackrOptions = {
  useRecords: false,
  structuredClone: false,
  moreTypes: false,
  bundleStrings: false,
  useBigIntExtension: false,
  int64AsType: 'bigint',
  allowArraysInMapKeys: false,
  sequential: false,
} as const satisfies Options

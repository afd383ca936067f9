// Seeds for randomized tests, so that a failure seen once can be replayed: each randomized test asks
// testSeed(name) for its seed, which prints it, and passes it to fast-check (`{ seed }`) or to
// seededRandom() in place of Math.random. Set RINGKV_SEED to the printed number to run the same
// cases again (every test that calls testSeed then uses it).

import { randomInt } from 'node:crypto'

/** Seeds are 31-bit non-negative integers: fast-check and seededRandom both take them as they are. */
const seedLimit = 2 ** 31

/** The seed for the test `name`: RINGKV_SEED when set, else a fresh one; printed either way. */
export function testSeed(name: string): number {
  const env = process.env['RINGKV_SEED']
  let seed: number
  if (env !== undefined && env !== '') {
    seed = Number(env)
    if (!Number.isSafeInteger(seed) || seed < 0 || seed >= seedLimit) {
      throw new Error(`RINGKV_SEED must be an integer in [0, ${seedLimit}), got ${JSON.stringify(env)}`)
    }
  } else {
    seed = randomInt(0, seedLimit)
  }
  console.log(`${name} seed=${seed} (replay with RINGKV_SEED=${seed})`)
  return seed
}

/** A uniform [0, 1) generator from `seed` (mulberry32): a drop-in for Math.random in tests. */
export { mulberry32 as seededRandom } from '../infra/sim/sim-clock.ts'

/** `n` bytes from `random` (a seededRandom), in place of crypto.randomBytes for test data. */
export function seededBytes(random: () => number, n: number): Buffer {
  const out = Buffer.allocUnsafe(n)
  let i = 0
  for (; i + 4 <= n; i += 4) out.writeUInt32LE(Math.floor(random() * 4294967296), i)
  for (; i < n; i++) out[i] = Math.floor(random() * 256)
  return out
}

/**
 * fast-check parameters for the properties of one test file: testSeed(name) once (printed, or
 * RINGKV_SEED), and each property its own seed derived from it in call order, so that one printed
 * number replays every property of the file. `extra` (numRuns, examples...) is kept.
 */
export function propertyParams(name: string): <P extends object>(extra?: P) => P & { seed: number } {
  const seed = testSeed(name)
  let runs = 0
  return <P extends object>(extra?: P) => ({ ...(extra ?? {} as P), seed: (seed + runs++) % seedLimit })
}

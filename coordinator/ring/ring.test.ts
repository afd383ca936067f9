// Tests for the ring: key hashing, claim (balance, spacing, movement), preference lists, sloppy
// targets and validation. Property tests print their seed (test/seed.ts); RINGKV_SEED=<seed> replays
// every property of the file.

import { createHash } from 'node:crypto'
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import { isKvError } from '../errors.ts'
import {
  claim, createRing, partitionOf, preferenceList, sloppyTargets, spacingViolations, validateRing,
  type PreferenceList, type Ring, type RingNode,
} from './ring.ts'
import { propertyParams } from '../../test/seed.ts'
import { keyHash32 } from './partition-hash.ts'

const fcParams = propertyParams('ring properties')

const ids = (k: number, from = 0): string[] => Array.from({ length: k }, (_, i) => `node-${String(i + from).padStart(2, '0')}`)
const nodesOf = (names: readonly string[]): RingNode[] => names.map((id) => ({ id, url: `ws://${id}:7000` }))

function counts(owners: readonly string[]): Map<string, number> {
  const c = new Map<string, number>()
  for (const o of owners) c.set(o, (c.get(o) ?? 0) + 1)
  return c
}

function assertBalanced(owners: readonly string[], nodeIds: readonly string[], tolerance: number): void {
  const fair = owners.length / nodeIds.length
  const c = counts(owners)
  assert.equal(c.size, nodeIds.length, 'every node owns something')
  for (const id of nodeIds) {
    const got = c.get(id) ?? 0
    assert.ok(Math.abs(got - fair) <= tolerance * fair, `${id} owns ${got}, fair share ${fair.toFixed(1)} ±${tolerance * 100}%`)
  }
}

/** Partitions whose owner changed, as [partition, from, to]. */
function moves(before: readonly string[], after: readonly string[]): [number, string, string][] {
  const out: [number, string, string][] = []
  before.forEach((o, p) => { if (after[p] !== o) out.push([p, o, after[p]!]) })
  return out
}

function expectBadRequest(fn: () => unknown, pattern: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(isKvError(e), `expected a KvError, got ${String(e)}`)
    assert.equal(e.kind, 'BadRequest')
    assert.match(e.message, pattern)
    return true
  })
}

describe('partitionOf', () => {
  const keys = ['', 'a', 'user:42', 'ключ', '鍵🔑', 'x'.repeat(512), ...Array.from({ length: 200 }, (_, i) => `k${i}`)]

  it('is the top log2(Q) bits of SHA-256 of the UTF-8 key (checked against node:crypto)', () => {
    for (const partitions of [1, 2, 256, 65536]) {
      const ring = createRing({ nodes: nodesOf(ids(1)), partitions })
      for (const key of keys) {
        const hi = createHash('sha256').update(key, 'utf8').digest().readUInt32BE(0)
        assert.equal(partitionOf(ring, key), Math.floor((hi * partitions) / 2 ** 32), `key ${JSON.stringify(key)} Q=${partitions}`)
      }
    }
  })

  it('keyHash32 (SHA-256 in place, the last key remembered) equals node:crypto for any key, whatever was hashed before it', () => {
    fc.assert(fc.property(fc.array(fc.string({ unit: 'binary', maxLength: 600 }), { minLength: 1, maxLength: 8 }), (batch) => {
      // Each key twice in a row: the second answer is the remembered one.
      for (const key of batch.flatMap(k => [k, k])) assert.equal(keyHash32(key), createHash('sha256').update(key, 'utf8').digest().readUInt32BE(0), JSON.stringify(key))
    }), fcParams({ numRuns: 300 }))
  })

  it('keyHash32 is SHA-256 at every padding boundary: keys of 0 to 200 bytes, and the standard vectors', () => {
    for (let n = 0; n <= 200; n++) {
      const key = 'k'.repeat(n)
      assert.equal(keyHash32(key), createHash('sha256').update(key, 'utf8').digest().readUInt32BE(0), `${n} bytes`)
    }
    assert.equal(keyHash32('abc'), 0xba7816bf)
    assert.equal(keyHash32('abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq'), 0x248d6a61)
  })

  it('nests: partition at 2Q halved is the partition at Q (contiguous arcs)', () => {
    const rings = [1, 2, 4, 64, 256, 512, 65536].map((partitions) => createRing({ nodes: nodesOf(ids(1)), partitions }))
    fc.assert(fc.property(fc.string({ unit: 'grapheme', maxLength: 40 }), (key) => {
      for (let i = 1; i < rings.length; i++) {
        const small = rings[i - 1]!
        const big = rings[i]!
        const shift = Math.log2(big.partitions / small.partitions)
        assert.equal(partitionOf(big, key) >>> shift, partitionOf(small, key))
      }
    }), fcParams())
  })

  it('spreads 100k keys roughly uniformly over 256 partitions', (t) => {
    const ring = createRing({ nodes: nodesOf(ids(4)), partitions: 256 })
    const hits = new Array<number>(256).fill(0)
    const keyCount = 100_000
    for (let i = 0; i < keyCount; i++) hits[partitionOf(ring, `user:${i}`)]!++
    const expected = keyCount / 256
    const chi2 = hits.reduce((s, h) => s + (h - expected) ** 2 / expected, 0)
    const ratio = Math.max(...hits) / Math.min(...hits)
    t.diagnostic(`chi-square ${chi2.toFixed(1)} (255 df, mean 255), max/min ${ratio.toFixed(2)}`)
    assert.ok(chi2 < 350, `chi-square ${chi2} too high for 255 degrees of freedom`)
    assert.ok(ratio < 1.6, `max/min partition load ${ratio}`)
  })
})

describe('claim: balance', () => {
  for (const [partitions, k] of [[256, 3], [256, 5], [256, 10], [64, 3]] as const) {
    it(`Q=${partitions}, ${k} nodes: every node within ±10% of Q/nodes`, () => {
      assertBalanced(claim(partitions, ids(k), 3), ids(k), 0.1)
    })
  }

  it('property: fresh claim gives floor or ceil of Q/nodes, whatever the id order', () => {
    fc.assert(fc.property(
      fc.integer({ min: 4, max: 12 }), fc.integer({ min: 1, max: 32 }), fc.integer({ min: 1, max: 5 }),
      fc.uniqueArray(fc.string({ minLength: 1, maxLength: 8 }), { minLength: 32, maxLength: 32 }),
      (bits, k, n, pool) => {
        const partitions = 2 ** bits
        fc.pre(k <= partitions)
        const names = pool.slice(0, k)
        const owners = claim(partitions, names, n)
        const floor = Math.floor(partitions / k)
        for (const [, c] of counts(owners)) assert.ok(c === floor || c === floor + 1, `count ${c}, floor ${floor}`)
        assert.deepEqual(claim(partitions, [...names].reverse(), n), owners, 'deterministic, independent of input order')
      }), fcParams())
  })
})

describe('claim: spacing (any n consecutive partitions have n distinct owners)', () => {
  for (const k of [4, 5, 8, 10]) {
    it(`fresh claim, Q=256, n=3, ${k} nodes: no violations`, () => {
      assert.equal(spacingViolations(claim(256, ids(k), 3), 3), 0)
    })
  }

  it('fresh claim, Q=256, n=3, 3 nodes: exactly 2 violations, the fewest possible', () => {
    // With 3 nodes and n=3 a violation-free ring is periodic with period 3, so needs 3 | Q. If only
    // one of the Q windows were bad, the other Q-1 windows would force s[p+3] = s[p] all the way
    // round, which for Q = 1 mod 3 makes two neighbours equal inside a good window. So 2 is optimal.
    assert.equal(spacingViolations(claim(256, ids(3), 3), 3), 2)
  })

  it('property: fresh claim has no violations when nodes > n and Q >= 32', () => {
    fc.assert(fc.property(fc.integer({ min: 5, max: 12 }), fc.integer({ min: 2, max: 40 }), fc.integer({ min: 1, max: 6 }),
      (bits, k, n) => {
        const partitions = 2 ** bits
        fc.pre(k > n && k <= partitions)
        assert.equal(spacingViolations(claim(partitions, ids(k), n), n), 0)
      }), fcParams())
  })

  it('spacingViolations counts bad windows, wrapping', () => {
    assert.equal(spacingViolations(['a', 'b', 'c', 'a', 'b', 'c'], 3), 0)
    assert.equal(spacingViolations(['a', 'b', 'c', 'a', 'b', 'c', 'a'], 3), 2) // (c,a,a) and (a,a,b)
    assert.equal(spacingViolations(['a', 'a', 'b', 'b'], 2), 2)
    assert.equal(spacingViolations(['a', 'a'], 3), 0) // one node: one distinct owner is all one can ask
  })
})

describe('claim: movement', () => {
  const partitions = 256
  for (const k of [3, 5, 9]) {
    it(`adding a node to ${k} moves about Q/${k + 1}, all to the new node, keeping balance and spacing`, (t) => {
      const before = claim(partitions, ids(k), 3)
      const newcomer = ids(1, k)[0]!
      const after = claim(partitions, [...ids(k), newcomer], 3, before)
      const moved = moves(before, after)
      t.diagnostic(`${k}->${k + 1}: moved ${moved.length} (Q/nodes = ${(partitions / (k + 1)).toFixed(1)}), ` +
        `violations ${spacingViolations(after, 3)}`)
      assert.ok(moved.length <= 1.25 * partitions / (k + 1), `moved ${moved.length}`)
      for (const [p, , to] of moved) assert.equal(to, newcomer, `partition ${p} moved to ${to}`)
      assertBalanced(after, [...ids(k), newcomer], 0.1)
      assert.equal(spacingViolations(after, 3), 0)
    })
  }

  it('growing 3 -> 10 one node at a time stays balanced and spaced', (t) => {
    let owners = claim(partitions, ids(3), 3)
    const report: string[] = []
    for (let k = 4; k <= 10; k++) {
      const next = claim(partitions, ids(k), 3, owners)
      const moved = moves(owners, next)
      report.push(`${k - 1}->${k}: moved ${moved.length}, violations ${spacingViolations(next, 3)}`)
      assert.ok(moved.every(([, , to]) => to === ids(k)[k - 1]), 'only the newcomer gains partitions')
      assertBalanced(next, ids(k), 0.1)
      assert.equal(spacingViolations(next, 3), 0)
      owners = next
    }
    t.diagnostic(report.join('; '))
  })

  for (const k of [4, 6, 10]) {
    it(`removing a node from ${k} moves only its partitions`, (t) => {
      const before = claim(partitions, ids(k), 3)
      let worst = 0
      for (const gone of ids(k)) {
        const rest = ids(k).filter((id) => id !== gone)
        const after = claim(partitions, rest, 3, before)
        const moved = moves(before, after)
        assert.deepEqual(moved.map(([p]) => p), before.flatMap((o, p) => (o === gone ? [p] : [])), 'exactly its partitions move')
        assertBalanced(after, rest, 0.1)
        worst = Math.max(worst, spacingViolations(after, 3))
      }
      // Only orphans may move, and in a round-robin ring every orphan has the same neighbours, so
      // some land next to their new owner's other partitions. Bounded, not zero: see claim.ts.
      t.diagnostic(`${k}->${k - 1}: worst spacing violations ${worst} of ${partitions} windows`)
      if (k === 10) assert.ok(worst <= 0.1 * partitions, `violations ${worst}`)
    })
  }

  it('the same nodes keep the same owners', () => {
    const owners = claim(partitions, ids(5), 3)
    assert.deepEqual(claim(partitions, ids(5), 3, owners), owners)
  })

  it('property: one node joins or leaves: only its partitions move, balance holds', () => {
    fc.assert(fc.property(fc.integer({ min: 2, max: 12 }), fc.integer({ min: 1, max: 4 }), fc.boolean(), fc.nat(),
      fc.integer({ min: 8, max: 10 }), (k, n, join, pick, bits) => {
        const q = 2 ** bits
        const before = claim(q, ids(k), n)
        const changed = join ? ids(1, k)[0]! : ids(k)[pick % k]!
        const nodeIds = join ? [...ids(k), changed] : ids(k).filter((id) => id !== changed)
        const after = claim(q, nodeIds, n, before)
        for (const [p, from, to] of moves(before, after)) {
          assert.ok(join ? to === changed : from === changed, `partition ${p} moved ${from} -> ${to}`)
        }
        const floor = Math.floor(q / nodeIds.length)
        for (const id of nodeIds) {
          const c = counts(after).get(id) ?? 0
          assert.ok(c === floor || c === floor + 1, `${id} owns ${c}`)
        }
      }), fcParams())
  })
})

describe('createRing', () => {
  it('defaults to Q=256, n=3, version 1, and freezes the ring', () => {
    const ring = createRing({ nodes: nodesOf(['b', 'a', 'c']) })
    assert.equal(ring.partitions, 256)
    assert.equal(ring.n, 3)
    assert.equal(ring.version, 1)
    assert.deepEqual(ring.nodes.map((node) => node.id), ['a', 'b', 'c'])
    assert.ok(Object.isFrozen(ring) && Object.isFrozen(ring.owners) && Object.isFrozen(ring.nodes))
    validateRing(ring)
  })

  it('from a previous ring: version + 1, same Q and n, minimal movement', () => {
    const first = createRing({ nodes: nodesOf(ids(3)), partitions: 64, n: 2 })
    const second = createRing({ nodes: nodesOf(ids(4)), previous: first })
    assert.equal(second.version, 2)
    assert.equal(second.partitions, 64)
    assert.equal(second.n, 2)
    assert.equal(moves(first.owners, second.owners).length, 16)
    expectBadRequest(() => createRing({ nodes: nodesOf(ids(4)), partitions: 128, previous: first }),
      /partitions cannot change from 64 to 128/)
  })

  it('accepts n above the node count: every node is a primary, no fallbacks', () => {
    const ring = createRing({ nodes: nodesOf(ids(2)), n: 3 })
    const pl = preferenceList(ring, 'k')
    assert.deepEqual([...pl.primaries].sort(), ids(2))
    assert.deepEqual(pl.fallbacks, [])
  })

  it('rejects bad config with messages a person can act on', () => {
    expectBadRequest(() => createRing({ nodes: nodesOf(ids(3)), partitions: 100 }), /partitions must be a power of two, got 100/)
    expectBadRequest(() => createRing({ nodes: nodesOf(ids(3)), partitions: 2 ** 17 }), /between 1 and 65536, got 131072/)
    expectBadRequest(() => createRing({ nodes: nodesOf(ids(3)), n: 0 }), /n \(replicas per key\) must be an integer between 1 and 16, got 0/)
    expectBadRequest(() => createRing({ nodes: nodesOf(ids(3)), n: 17 }), /got 17/)
    expectBadRequest(() => createRing({ nodes: nodesOf(['a', 'b', 'a']) }), /node ids must be unique, got "a" more than once/)
    expectBadRequest(() => createRing({ nodes: [] }), /at least one node/)
    expectBadRequest(() => createRing({ nodes: nodesOf(ids(5)), partitions: 4 }), /5 nodes cannot share 4 partitions/)
    expectBadRequest(() => createRing({ nodes: [{ id: 'a', url: '' }] }), /node "a" needs a url/)
    expectBadRequest(() => claim(256, ['a'], 3, ['a']), /previous owners cover 1 partitions but the ring has 256/)
  })
})

describe('validateRing', () => {
  const good = createRing({ nodes: nodesOf(ids(3)), partitions: 16 })
  const tamper = (patch: Record<string, unknown>): Ring => ({ ...good, ...patch }) as unknown as Ring

  it('accepts a ring made by createRing', () => {
    validateRing(good)
  })

  it('rejects malformed rings from the network', () => {
    expectBadRequest(() => validateRing(null as unknown as Ring), /a ring must be an object, got null/)
    expectBadRequest(() => validateRing(tamper({ owners: good.owners.slice(1) })), /15 owners for 16 partitions/)
    expectBadRequest(() => validateRing(tamper({ owners: good.owners.map((o, p) => (p === 3 ? 'ghost' : o)) })),
      /1 are not \(partition: owner\) 3: "ghost"/)
    expectBadRequest(() => validateRing(tamper({ owners: good.owners.map(() => ids(3)[0]) })), /own none/)
    expectBadRequest(() => validateRing(tamper({ partitions: 12 })), /power of two, got 12/)
    expectBadRequest(() => validateRing(tamper({ version: 0 })), /version must be a positive integer/)
    expectBadRequest(() => validateRing(tamper({ nodes: 'x' })), /nodes must be an array/)
    expectBadRequest(() => validateRing(tamper({ nodes: [...good.nodes, good.nodes[0]] })), /unique/)
    expectBadRequest(() => createRing({ nodes: nodesOf(ids(3)), previous: tamper({ n: 99 }) }), /got 99/)
  })
})

describe('preferenceList', () => {
  const ring = createRing({ nodes: nodesOf(ids(6)), partitions: 64, n: 3 })

  it('primaries are the first n distinct owners clockwise; all other nodes are fallbacks', () => {
    fc.assert(fc.property(fc.string(), (key) => {
      const pl = preferenceList(ring, key)
      assert.equal(pl.partition, partitionOf(ring, key))
      assert.equal(pl.primaries[0], ring.owners[pl.partition])
      assert.equal(new Set(pl.primaries).size, 3)
      assert.deepEqual([...pl.primaries, ...pl.fallbacks].sort(), ids(6))
      // Walk order: the first partition at or after pl.partition owned by each node increases.
      const firstAt = (id: string): number => {
        for (let i = 0; i < ring.partitions; i++) if (ring.owners[(pl.partition + i) % ring.partitions] === id) return i
        return Infinity
      }
      const order = [...pl.primaries, ...pl.fallbacks].map(firstAt)
      assert.deepEqual(order, [...order].sort((a, b) => a - b))
    }), fcParams())
  })

  it('is deterministic across rings built from the same config, and ignores up', () => {
    const again = createRing({ nodes: nodesOf([...ids(6)].reverse()), partitions: 64, n: 3 })
    for (const key of ['a', 'b', 'user:7']) {
      assert.deepEqual(preferenceList(again, key), preferenceList(ring, key))
      assert.deepEqual(preferenceList(ring, key, new Set()), preferenceList(ring, key))
    }
  })
})

describe('sloppyTargets', () => {
  const pl = { partition: 0, primaries: ['a', 'b', 'c'], fallbacks: ['d', 'e', 'f'] }
  const up = (...names: string[]): Set<string> => new Set(names)
  /** The targets of the slots that have one, in primary order. */
  const targetsOf = (list: PreferenceList, upSet: Set<string>) =>
    sloppyTargets(list, n => upSet.has(n), true).slots.flatMap(s => (s.target ? [s.target] : []))

  it('sends to the primaries when all are up', () => {
    assert.deepEqual(targetsOf(pl, up('a', 'b', 'c', 'd')), [{ node: 'a' }, { node: 'b' }, { node: 'c' }])
  })

  it('replaces each down primary with the next up fallback, hinted for it', () => {
    assert.deepEqual(targetsOf(pl, up('a', 'c', 'd', 'e')), [{ node: 'a' }, { node: 'd', hintFor: 'b' }, { node: 'c' }])
    assert.deepEqual(targetsOf(pl, up('b', 'e', 'f')),
      [{ node: 'e', hintFor: 'a' }, { node: 'b' }, { node: 'f', hintFor: 'c' }])
  })

  it('returns fewer targets when fallbacks run out', () => {
    assert.deepEqual(targetsOf(pl, up('c', 'f')), [{ node: 'f', hintFor: 'a' }, { node: 'c' }])
    assert.deepEqual(targetsOf(pl, up()), [])
  })

  it('keeps the up fallbacks no slot took as spares, names the down primaries, and substitutes nothing when not sloppy', () => {
    const isUp = (n: string) => up('a', 'd', 'e', 'f').has(n)
    assert.deepEqual(sloppyTargets(pl, isUp, true), {
      slots: [{ owner: 'a', target: { node: 'a' } }, { owner: 'b', target: { node: 'd', hintFor: 'b' } }, { owner: 'c', target: { node: 'e', hintFor: 'c' } }],
      spare: ['f'], down: ['b', 'c'],
    })
    assert.deepEqual(sloppyTargets(pl, isUp, false), {
      slots: [{ owner: 'a', target: { node: 'a' } }, { owner: 'b', target: undefined }, { owner: 'c', target: undefined }],
      spare: [], down: ['b', 'c'],
    })
  })

  it('property: at most n distinct targets, all up, hints name down primaries', () => {
    const ring = createRing({ nodes: nodesOf(ids(8)), partitions: 64, n: 3 })
    fc.assert(fc.property(fc.string(), fc.subarray(ids(8)), (key, upList) => {
      const upSet = new Set(upList)
      const list = preferenceList(ring, key, upSet)
      const targets = targetsOf(list, upSet)
      assert.ok(targets.length <= 3)
      assert.equal(new Set(targets.map((x) => x.node)).size, targets.length)
      for (const target of targets) {
        assert.ok(upSet.has(target.node))
        if (target.hintFor === undefined) assert.ok(list.primaries.includes(target.node))
        else assert.ok(list.fallbacks.includes(target.node) && !upSet.has(target.hintFor) && list.primaries.includes(target.hintFor))
      }
      assert.equal(targets.length, Math.min(3, upSet.size), 'with 8 nodes and n=3 every up node can help')
    }), fcParams())
  })
})

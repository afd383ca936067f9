// The Authenticator without processes: rotation (two tokens, one name), tokens that differ by one
// character anywhere, duplicate tokens and bad files refused at load without quoting them, the
// cluster secret as the only way to the peer role, and bearer header parsing.

import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { limits } from '../limits.ts'
import { Authenticator, bearerToken, roleAllows, roles } from './auth.ts'

const file = { tokens: [
  { name: 'app', token: 'a'.repeat(20), role: 'write' },
  { name: 'app', token: 'b'.repeat(20), role: 'write' },
  { name: 'dash', token: 'c'.repeat(20), role: 'read' },
] }
const secret = 's'.repeat(40)

describe('Authenticator', () => {
  const auth = Authenticator.from(file, secret)

  it('knows every listed token, both of a rotated name, and the cluster secret as peer', () => {
    assert.deepEqual(auth.authenticate('a'.repeat(20)), { name: 'app', role: 'write' })
    assert.deepEqual(auth.authenticate('b'.repeat(20)), { name: 'app', role: 'write' })
    assert.deepEqual(auth.authenticate('c'.repeat(20)), { name: 'dash', role: 'read' })
    assert.deepEqual(auth.authenticate(secret), { name: 'cluster', role: 'peer' })
    assert.deepEqual(auth.summary(), { write: ['app'], read: ['dash'], peer: ['cluster'] })
  })

  it('refuses a token that differs in any one character, and non-strings', () => {
    const t = 'a'.repeat(20)
    for (let i = 0; i < t.length; i++) assert.equal(auth.authenticate(t.slice(0, i) + 'x' + t.slice(i + 1)), undefined, `char ${i}`)
    for (const bad of [undefined, '', t.slice(1), t + 'a', 'x'.repeat(limits.tokenCharsMax + 1), 42 as unknown as string]) assert.equal(auth.authenticate(bad), undefined)
  })

  it('refuses bad files at load, naming the field and never the token', () => {
    const token = 'q'.repeat(30)
    const bad: unknown[] = [
      {}, { tokens: [] }, { tokens: [{ name: 'x', token, role: 'peer' }] }, { tokens: [{ name: 'x', token: 'short', role: 'read' }] },
      { tokens: [{ name: 'x', token, role: 'read', extra: 1 }] }, { tokens: [{ name: 'x', token, role: 'read' }, { name: 'y', token, role: 'admin' }] },
      { tokens: Array.from({ length: limits.authTokensMax + 1 }, (_, i) => ({ name: 'n', token: `${token}${i}`, role: 'read' })) },
    ]
    for (const f of bad) {
      assert.throws(() => Authenticator.from(f), (e: Error) => !e.message.includes(token) && /auth file/.test(e.message))
    }
    assert.throws(() => Authenticator.fromText(`{"tokens":[{"name":"x","token":"${token}"`), (e: Error) => !e.message.includes(token) && /not valid JSON/.test(e.message))
    assert.throws(() => Authenticator.from(file, 'short'), /cluster secret/)
    assert.throws(() => Authenticator.from({ tokens: [{ name: 'x', token: secret, role: 'admin' }] }, secret), /cluster secret must not be a client token/)
  })

  it('orders roles read < write < admin < peer', () => {
    for (const [i, a] of roles.entries()) for (const [j, b] of roles.entries()) assert.equal(roleAllows(a, b), i >= j, `${a} vs ${b}`)
    assert.ok(roleAllows('read', 'none'))
  })

  it('reads bearer headers only', () => {
    assert.equal(bearerToken('Bearer abc'), 'abc')
    assert.equal(bearerToken('bearer  abc '), 'abc')
    for (const h of [undefined, '', 'Basic abc', 'Bearer', 'Bearer a b', `Bearer ${'x'.repeat(limits.tokenCharsMax + 20)}`]) assert.equal(bearerToken(h), undefined)
  })
})

// The SDK as a package (README "The SDK as a package"): `npm pack` (which builds dist/ through
// prepack) makes a tarball that, installed into an empty project, works with plain Node and gives a
// TypeScript app its types. Checked for real: the tarball is installed with npm (from npm's cache
// where it can: the repository's own `npm ci` put the SDK's dependencies' tarballs there; npm also
// wants their full registry documents, which `npm ci` does not cache, so `--prefer-offline` lets it
// fetch those from the registry, where `--offline` failed with ENOTCACHED on a machine whose cache
// held only what `npm ci` put there), `node app.mjs` with no
// loader talks to a running cluster, the installed `ringkv` command does too, tsc accepts a typed
// app and rejects a wrongly typed one, and the server-side dependencies are not installed.

import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { after, before, describe, it } from 'node:test'
import { testCluster } from './helpers.ts'

const run = promisify(execFile)
const root = resolve(dirname(fileURLToPath(import.meta.url)), '..')
/** Replicas became healthy only after ~19 s on a loaded 2-core machine: more than the default 20 s allows for. */
const CLUSTER_READY_MS = 90_000
/** Building, packing and installing take a while on a loaded 2-core machine; this only stops a hang. */
const STEP_TIMEOUT_MS = 300_000
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm'

describe('the SDK as an npm package', () => {
  let cluster: Awaited<ReturnType<typeof testCluster>>
  let dir: string
  let app: string

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ringkv-pkg-'))
    app = join(dir, 'app')
    await mkdir(app)
    const packed = await run(npm, ['pack', '--pack-destination', dir, '--silent'], { cwd: root, timeout: STEP_TIMEOUT_MS, maxBuffer: 16 << 20 })
    const tarball = packed.stdout.trim().split('\n').pop()!
    assert.match(tarball, /^ringkv-.*\.tgz$/)
    await writeFile(join(app, 'package.json'), JSON.stringify({ name: 'app', private: true, type: 'module' }))
    await run(npm, ['install', '--prefer-offline', '--no-audit', '--no-fund', '--silent', join(dir, tarball)], { cwd: app, timeout: STEP_TIMEOUT_MS })
    cluster = await testCluster(18531, { readyTimeoutMs: CLUSTER_READY_MS })
  })
  after(async () => {
    await cluster?.cleanup()
    if (dir) await rm(dir, { recursive: true, force: true })
  })

  it('ships built JavaScript and declarations only, and installs only the SDK\'s dependencies', async () => {
    const pkg = join(app, 'node_modules', 'ringkv')
    assert.ok(existsSync(join(pkg, 'dist', 'client', 'index.js')))
    assert.ok(existsSync(join(pkg, 'dist', 'client', 'index.d.ts')))
    assert.ok(existsSync(join(pkg, 'dist', 'replica', 'node', 'main.js')))
    assert.ok(!existsSync(join(pkg, 'client', 'index.ts')), 'TypeScript sources are not shipped')
    const installed = await readdir(join(app, 'node_modules'))
    for (const dep of ['msgpackr', 'zod', 'ws', '@noble']) assert.ok(installed.includes(dep), `${dep} installed`)
    for (const serverSide of ['hono', '@hono', '@aws-sdk', '@node-rs', '@20minutes', 'tsx', 'esbuild', 'wrangler', 'cli-progress', 'hdr-histogram-js']) {
      assert.ok(!installed.includes(serverSide), `${serverSide} must not be installed with the SDK`)
    }
  })

  it('node app.mjs (plain Node, no loader) imports createClient from ringkv and talks to the cluster', async () => {
    await writeFile(join(app, 'app.mjs'), [
      "import { createClient, isKvError } from 'ringkv'",
      "const kv = createClient({ seeds: process.argv[2].split(',') })",
      "const { context } = await kv.put('pkg:1', 'from the package')",
      "const got = await kv.getString('pkg:1')",
      "let refused = ''",
      "try { await kv.put('', 'x') } catch (e) { refused = isKvError(e) ? e.kind : String(e) }",
      'await kv.close()',
      'console.log(JSON.stringify({ context, values: got.values, refused }))',
    ].join('\n'))
    const { stdout } = await run(process.execPath, ['app.mjs', cluster.seeds.join(',')], { cwd: app, timeout: STEP_TIMEOUT_MS, env: { ...process.env, NODE_OPTIONS: '' } })
    const out = JSON.parse(stdout) as { context: string; values: string[]; refused: string }
    assert.deepEqual(out.values, ['from the package'])
    assert.match(out.context, /^[A-Za-z0-9_-]+$/)
    assert.equal(out.refused, 'BadRequest')
  })

  it('the installed ringkv command runs with plain Node', async () => {
    const bin = join(app, 'node_modules', '.bin', 'ringkv')
    const env = { ...process.env, NODE_OPTIONS: '', RINGKV_SEEDS: cluster.seeds.join(',') }
    const put = await run(bin, ['put', 'pkg:cli', 'via-bin'], { cwd: app, env, timeout: STEP_TIMEOUT_MS })
    assert.match(put.stdout, /^ok context=/)
    const get = await run(bin, ['get', 'pkg:cli'], { cwd: app, env, timeout: STEP_TIMEOUT_MS })
    assert.equal(get.stdout, 'via-bin\n')
  })

  it('a TypeScript app gets the types: tsc accepts a typed app and rejects wrong argument types', async () => {
    await writeFile(join(app, 'good.ts'), [
      "import { createClient, isKvError, type GetResult, type KvClient } from 'ringkv'",
      "const kv: KvClient = createClient({ seeds: ['ws://127.0.0.1:1'], timeoutMs: 500, resolve: vs => vs[0]! })",
      'export async function use(): Promise<string[]> {',
      "  const got: GetResult = await kv.get('k', { r: 2 })",
      "  try { await kv.put('k', new Uint8Array([1]), { context: got.context, w: 2 }) } catch (e) { if (isKvError(e)) return [e.kind] }",
      "  return (await kv.getString('k')).values",
      '}',
    ].join('\n'))
    await writeFile(join(app, 'bad.ts'), [
      "import { createClient } from 'ringkv'",
      "const kv = createClient({ seeds: ['ws://127.0.0.1:1'] })",
      "export const p = kv.put('k', 42)",
      "export const q = kv.get('k', { r: '2' })",
    ].join('\n'))
    // skipLibCheck off and no Node types (a browser app's settings): the declarations must stand on their own.
    await writeFile(join(app, 'tsconfig.json'), JSON.stringify({
      compilerOptions: { module: 'nodenext', moduleResolution: 'nodenext', target: 'es2022', strict: true, noEmit: true, skipLibCheck: false, types: [], lib: ['es2023', 'dom'] },
      files: ['good.ts', 'bad.ts'],
    }))
    const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc')
    const res = await run(process.execPath, [tsc, '-p', '.'], { cwd: app, timeout: STEP_TIMEOUT_MS }).then(() => ({ stdout: '' }), (e: { stdout: string }) => e)
    const errors = res.stdout.split('\n').filter(l => /error TS\d+/.test(l))
    assert.deepEqual(errors.filter(l => !l.startsWith('bad.ts')), [], 'good.ts and the package declarations type-check')
    assert.equal(errors.filter(l => l.startsWith('bad.ts(3,') && / TS2345: /.test(l)).length, 1, `a number as value is refused: ${res.stdout}`)
    assert.equal(errors.filter(l => l.startsWith('bad.ts(4,') && / TS2322: /.test(l)).length, 1, `a string as r is refused: ${res.stdout}`)
  })
})

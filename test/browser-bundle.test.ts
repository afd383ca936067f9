// The SDK in a browser: esbuild bundles client/index.ts for the browser (one IIFE script, as a page
// would load it with a <script> tag), and the bundle runs against a real cluster in a JavaScript
// context that sees only what a page has. This check needs no browser (browser-chromium.test.ts is
// the real-browser one, run where Chromium is installed), so the page is a child Node process
// started with --experimental-websocket, whose WebSocket is the WHATWG one (undici, the same API
// and events as a browser's), and the bundle runs with Node's globals hidden from it
// (pageRunner below): what it sees is the web platform's (WebSocket, TextEncoder, URL, timers,
// crypto, atob/btoa). A bundle that reached for Node would get undefined and fail.

import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { after, before, describe, it } from 'node:test'
import * as esbuild from 'esbuild'
import { testCluster } from './helpers.ts'

const run = promisify(execFile)
const root = resolve(dirname(fileURLToPath(import.meta.url)), '..')
/** Replicas became healthy only after ~19 s on a loaded 2-core machine: more than the default 20 s allows for. */
const CLUSTER_READY_MS = 90_000
const PAGE_TIMEOUT_MS = 60_000

// The page: the bundle runs as a script whose every view of the global scope is a page's: the names
// globalThis, window and self are an object holding only web APIs, and process, Buffer, require,
// global, setImmediate and clearImmediate are undefined (shadowed, not deleted: Node's own WebSocket
// implementation still needs them behind the scenes, as a browser's has its own internals).
const pageRunner = `
import { readFileSync } from 'node:fs'
const [bundleFile, seeds] = process.argv.slice(2)
let sockets = 0
const PageWebSocket = class extends WebSocket { constructor(url) { super(url); sockets++ } }
const web = { WebSocket: PageWebSocket, TextEncoder, TextDecoder, URL, crypto, atob, btoa, console, performance,
  setTimeout, clearTimeout, setInterval, clearInterval, queueMicrotask, navigator: { userAgent: 'page' } }
const page = Object.assign(Object.create(null), web)
page.globalThis = page.window = page.self = page
const nodeOnly = ['process', 'Buffer', 'require', 'global', 'setImmediate', 'clearImmediate']
const load = new Function('globalThis', 'window', 'self', 'WebSocket', ...nodeOnly,
  readFileSync(bundleFile, 'utf8') + '\\nreturn ringkv')
const ringkv = load(page, page, page, PageWebSocket)
const kv = ringkv.createClient({ seeds: seeds.split(',') })
const { context } = await kv.put('browser:1', 'from a page')
const got = await kv.getString('browser:1')
const bytes = await kv.get('browser:1')
let refused = ''
try { await kv.put('', 'x') } catch (e) { refused = ringkv.isKvError(e) ? e.kind : String(e) }
await kv.close()
console.log(JSON.stringify({ context, values: got.values, isUint8Array: bytes.values[0] instanceof Uint8Array, refused, sockets }))
`

describe('the SDK bundled for a browser', () => {
  let cluster: Awaited<ReturnType<typeof testCluster>>
  let dir: string
  before(async () => {
    cluster = await testCluster(18561, { readyTimeoutMs: CLUSTER_READY_MS })
    dir = await mkdtemp(join(tmpdir(), 'ringkv-browser-'))
  })
  after(async () => {
    await cluster?.cleanup()
    if (dir) await rm(dir, { recursive: true, force: true })
  })

  it('esbuild bundles it for the browser with no Node module in it', async () => {
    const out = await esbuild.build({
      entryPoints: [join(root, 'client', 'index.ts')], bundle: true, platform: 'browser', format: 'iife', globalName: 'ringkv',
      target: 'es2022', write: false, metafile: true, logLevel: 'error',
    })
    const inputs = Object.keys(out.metafile.inputs)
    assert.ok(inputs.some(f => f.includes('node_modules/ws/browser.js')), 'ws resolves to its browser stub (never called: the page has WebSocket)')
    assert.ok(!inputs.some(f => f.includes('node_modules/ws/lib/')), 'no part of ws\'s Node implementation is bundled')
    assert.ok(!inputs.some(f => f.startsWith('node:')), 'no node: module')
    await writeFile(join(dir, 'ringkv.browser.js'), out.outputFiles[0]!.contents)
  })

  it('the bundle loads in a page-like context (web globals only) and talks to the cluster over its WebSocket', async () => {
    await writeFile(join(dir, 'page.mjs'), pageRunner)
    const { stdout } = await run(process.execPath, ['--experimental-websocket', '--no-warnings', join(dir, 'page.mjs'), join(dir, 'ringkv.browser.js'), cluster.seeds.join(',')],
      { cwd: dir, timeout: PAGE_TIMEOUT_MS, env: { ...process.env, NODE_OPTIONS: '' } })
    const out = JSON.parse(stdout) as { context: string; values: string[]; isUint8Array: boolean; refused: string; sockets: number }
    assert.deepEqual(out.values, ['from a page'])
    assert.equal(out.isUint8Array, true)
    assert.match(out.context, /^[A-Za-z0-9_-]+$/)
    assert.equal(out.refused, 'BadRequest')
    assert.ok(out.sockets >= 1, 'the SDK used the page\'s WebSocket')
  })
})

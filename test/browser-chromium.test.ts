// The SDK in a real browser: headless Chromium loads a page from a local HTTP server, the page loads
// the esbuild browser bundle of client/index.ts with a <script> tag, talks to a real cluster over
// the browser's own WebSocket (put, get, a refused key, delete), and posts what it saw back to the
// server. browser-bundle.test.ts checks the same bundle in a page-like Node context on every machine;
// this file proves it in a browser. test/run.sh runs it when a Chromium is installed (CHROME_PATH,
// or chromium-headless-shell / chromium on PATH; CI installs Debian's chromium-headless-shell) and
// says so when it leaves it out.

import assert from 'node:assert/strict'
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { after, before, describe, it } from 'node:test'
import * as esbuild from 'esbuild'
import { testCluster } from './helpers.ts'

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..')
const CLUSTER_READY_MS = 90_000
/** From starting Chromium to the page's report: a cold browser start on a loaded machine takes seconds. */
const PAGE_TIMEOUT_MS = 90_000

/** The browser: CHROME_PATH, or the first of these on PATH. */
function findChromium(): string | undefined {
  if (process.env.CHROME_PATH) return process.env.CHROME_PATH
  for (const name of ['chromium-headless-shell', 'chromium', 'google-chrome']) {
    const found = spawnSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' }).stdout.trim()
    if (found) return found
  }
  return undefined
}

// The page's script: everything it does, and what it saw, posted to /result as JSON.
const pageScript = (seeds: string[]) => `
(async () => {
  const out = { userAgent: navigator.userAgent, nodeGlobals: typeof process !== 'undefined' || typeof Buffer !== 'undefined' }
  try {
    const kv = ringkv.createClient({ seeds: ${JSON.stringify(seeds)} })
    const put = await kv.put('chromium:1', 'from Chromium')
    out.context = put.context
    out.values = (await kv.getString('chromium:1')).values
    out.isUint8Array = (await kv.get('chromium:1')).values[0] instanceof Uint8Array
    try { await kv.put('', 'x') } catch (e) { out.refused = ringkv.isKvError(e) ? e.kind : String(e) }
    const read = await kv.get('chromium:1')
    await kv.delete('chromium:1', { context: read.context })
    out.afterDelete = (await kv.getString('chromium:1')).values
    await kv.close()
  } catch (e) {
    out.error = String(e && e.stack || e)
  }
  await fetch('/result', { method: 'POST', body: JSON.stringify(out) })
})()
`

describe('the SDK in headless Chromium', () => {
  let cluster: Awaited<ReturnType<typeof testCluster>>
  let server: Server
  let browser: ChildProcess | undefined
  let profile: string
  before(async () => {
    cluster = await testCluster(18571, { readyTimeoutMs: CLUSTER_READY_MS })
    profile = await mkdtemp(join(tmpdir(), 'ringkv-chromium-'))
  })
  after(async () => {
    // Chromium starts helper processes in its group: end them all.
    if (browser?.pid !== undefined) { try { process.kill(-browser.pid, 'SIGKILL') } catch { /* already gone */ } }
    server?.close()
    await cluster?.cleanup()
    if (profile) await rm(profile, { recursive: true, force: true })
  })

  it('a page loads the bundle with a <script> tag and puts, gets and deletes over the browser\'s WebSocket', async () => {
    const chromium = findChromium()
    assert.ok(chromium, 'no Chromium found (set CHROME_PATH, or apt-get install chromium-headless-shell); test/run.sh runs this file only when one is')
    const built = await esbuild.build({
      entryPoints: [join(root, 'client', 'index.ts')], bundle: true, platform: 'browser', format: 'iife', globalName: 'ringkv',
      target: 'es2022', write: false, logLevel: 'error',
    })
    const bundle = built.outputFiles[0]!.contents
    const page = `<!doctype html><meta charset="utf-8"><title>ringkv</title><script src="/ringkv.js"></script><script>${pageScript(cluster.seeds)}</script>`
    let report: (body: string) => void = () => undefined
    const reported = new Promise<string>(ok => { report = ok })
    server = createServer((req, res) => {
      if (req.method === 'GET' && req.url === '/') { res.writeHead(200, { 'content-type': 'text/html' }).end(page); return }
      if (req.method === 'GET' && req.url === '/ringkv.js') { res.writeHead(200, { 'content-type': 'text/javascript' }).end(bundle); return }
      if (req.method === 'POST' && req.url === '/result') {
        const chunks: Buffer[] = []
        req.on('data', c => chunks.push(c as Buffer))
        req.on('end', () => { res.writeHead(204).end(); report(Buffer.concat(chunks).toString('utf8')) })
        return
      }
      res.writeHead(404).end()
    })
    await new Promise<void>(ok => server.listen(0, '127.0.0.1', ok))
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`
    let stderr = ''
    browser = spawn(chromium, ['--headless', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run',
      `--user-data-dir=${profile}`, url], { detached: true, stdio: ['ignore', 'ignore', 'pipe'] })
    browser.stderr!.on('data', (c: Buffer) => { if (stderr.length < 8192) stderr += c.toString('utf8') })
    const exited = new Promise<never>((_, fail) => browser!.once('exit', code => fail(new Error(`Chromium exited (${code}) before the page reported:\n${stderr}`))))
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<never>((_, fail) => { timer = setTimeout(() => fail(new Error(`no report from the page within ${PAGE_TIMEOUT_MS} ms:\n${stderr}`)), PAGE_TIMEOUT_MS) })
    const body = await Promise.race([reported, exited, timeout]).finally(() => clearTimeout(timer))
    const out = JSON.parse(body) as { userAgent: string; nodeGlobals: boolean; context?: string; values?: string[]; isUint8Array?: boolean; refused?: string; afterDelete?: string[]; error?: string }
    assert.equal(out.error, undefined, out.error)
    assert.match(out.userAgent, /HeadlessChrome|Chrome/, 'the page ran in Chromium')
    assert.equal(out.nodeGlobals, false, 'no Node global in the page')
    assert.deepEqual(out.values, ['from Chromium'])
    assert.equal(out.isUint8Array, true)
    assert.match(out.context ?? '', /^[A-Za-z0-9_-]+$/)
    assert.equal(out.refused, 'BadRequest', 'an empty key is refused with a typed error in the browser too')
    assert.deepEqual(out.afterDelete, [], 'the delete took')
  })
})

// `npm run build` (and `npm pack`, through prepack): ESM JavaScript and .d.ts under dist/ for what
// the package exports (package.json "exports"): the SDK and its CLI, the replica's entry point and
// the Node gateway. tsc emits them from the same sources tsx runs, rewriting relative `.ts` imports
// to `.js` in the JavaScript; in the declarations it keeps `.ts`, which only a TypeScript project
// set to allowImportingTsExtensions resolves, so they are rewritten here too. Development and the
// tests never need dist/: they run the sources under tsx.

import { execFileSync } from 'node:child_process'
import { readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..')
const dist = join(root, 'dist')

await rm(dist, { recursive: true, force: true })
const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc')
execFileSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.build.json')], { stdio: 'inherit', cwd: root })

// Relative specifiers ending in .ts, in `from '…'`, `import('…')` and `import '…'`.
const tsSpecifier = /((?:from|import)\s*\(?\s*['"])(\.{1,2}\/[^'"]*?)\.ts(['"])/g
let rewritten = 0
for (const entry of await readdir(dist, { recursive: true, withFileTypes: true })) {
  if (!entry.isFile() || !entry.name.endsWith('.d.ts')) continue
  const file = join(entry.parentPath, entry.name)
  const text = await readFile(file, 'utf8')
  const fixed = text.replace(tsSpecifier, (_, head: string, path: string, tail: string) => `${head}${path}.js${tail}`)
  if (fixed !== text) { await writeFile(file, fixed); rewritten++ }
}
process.stdout.write(`build: dist/ written (${rewritten} declaration files had their .ts imports rewritten to .js)\n`)

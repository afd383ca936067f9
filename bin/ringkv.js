#!/usr/bin/env node
// The `ringkv` command. In a checkout (the TypeScript sources are here) it runs client/cli.ts
// through tsx, so no build step is needed while developing; in the installed package, which ships
// only dist/ (package.json "files"), it runs the built JavaScript with plain Node.
import { existsSync } from 'node:fs'

const source = new URL('../client/cli.ts', import.meta.url)
if (existsSync(source)) {
  const { register } = await import('tsx/esm/api')
  register()
  await import(source.href)
} else {
  await import('../dist/client/cli.js')
}

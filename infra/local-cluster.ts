// `npm start`: a whole local cluster with nothing else to install. Prints one line
//   ready seeds=ws://127.0.0.1:7001,... http=http://127.0.0.1:8080
// once every replica accepts requests, then runs until Ctrl-C (SIGINT/SIGTERM stop it cleanly).

import { parseArgs } from 'node:util'
import { startCluster } from './cluster.ts'

const { values } = parseArgs({
  options: {
    replicas: { type: 'string', default: '3' },
    'base-port': { type: 'string', default: '7001' },
    'http-port': { type: 'string', default: '8080' },
    'data-dir': { type: 'string', default: '.data' },
    partitions: { type: 'string', default: '256' },
    n: { type: 'string', default: '3' },
    help: { type: 'boolean', short: 'h' },
  },
})
if (values.help) {
  process.stdout.write('usage: npm start -- [--replicas 3] [--base-port 7001] [--http-port 8080] [--data-dir .data] [--partitions 256] [--n 3]\n')
  process.exit(0)
}
const num = (name: string, v: string | undefined) => {
  const n = Number(v)
  if (!Number.isInteger(n) || n < 0) { process.stderr.write(`--${name} must be a whole number, got ${v}\n`); process.exit(2) }
  return n
}
try {
  const cluster = await startCluster({
    replicas: num('replicas', values.replicas), basePort: num('base-port', values['base-port']),
    httpPort: num('http-port', values['http-port']), dataDir: values['data-dir']!,
    partitions: num('partitions', values.partitions), n: num('n', values.n),
  })
  process.stdout.write(`ready seeds=${cluster.seeds.join(',')} http=${cluster.gateway?.url ?? 'none'}\n`)
  const stop = () => { cluster.stop().then(() => process.exit(0), () => process.exit(1)) }
  process.once('SIGINT', stop)
  process.once('SIGTERM', stop)
} catch (e) {
  process.stderr.write(`ringkv: cluster failed to start: ${(e as Error).message}\n`)
  process.exit(1)
}

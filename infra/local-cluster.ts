// `npm start`: a whole local cluster with nothing else to install. Prints one line
//   ready seeds=ws://127.0.0.1:7001,... http=http://127.0.0.1:8080
// once every replica accepts requests, then runs until Ctrl-C (SIGINT/SIGTERM stop it cleanly).
// --auth-file FILE turns authentication on (docs/security.md; the cluster secret is made under the
// data dir), --tls-cert/--tls-key serve wss:// and https://; the ready line then says auth=on and
// names the token names by role (never a token).
// Everything it creates (data dir, logs, the embedded S3's files) is private to the user: umask 077.

import { parseArgs } from 'node:util'
import { s3ConfigFromEnv } from '../replica/snapshot/s3-store.ts'
import { startCluster } from './cluster.ts'
import { installLastResort } from '../replica/node/process.ts'

process.umask(0o077)
installLastResort('ringkv')

const { values } = parseArgs({
  options: {
    replicas: { type: 'string', default: '3' },
    'base-port': { type: 'string', default: '7001' },
    'http-port': { type: 'string' },
    'data-dir': { type: 'string', default: '.data' },
    partitions: { type: 'string', default: '256' },
    n: { type: 'string', default: '3' },
    's3-port': { type: 'string', default: '0' },
    'no-s3': { type: 'boolean', default: false },
    'auth-file': { type: 'string' },
    'cluster-secret-file': { type: 'string' },
    'tls-cert': { type: 'string' },
    'tls-key': { type: 'string' },
    'tls-ca': { type: 'string' },
    join: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  },
})
if (values.help) {
  process.stdout.write('usage: npm start -- [--replicas 3] [--base-port 7001] [--http-port 8080] [--data-dir .data] [--partitions 256] [--n 3] [--s3-port 0] [--no-s3] [--join ws://host:port]\n' +
    '    [--auth-file FILE [--cluster-secret-file FILE]] [--tls-cert PEM --tls-key PEM [--tls-ca PEM]]\n' +
    '  --join: start replicas (named n<port>) that join the cluster of that member; ready once they own partitions.\n' +
    '  Snapshots go to an embedded S3 server (data under DIR/s3) unless S3_ENDPOINT names another one, or --no-s3.\n')
  process.exit(0)
}
/** Joining replicas are ready once their partitions have been handed to them, which takes a while. */
const joinReadyTimeoutMs = 600_000
const num = (name: string, v: string | undefined) => {
  const n = Number(v)
  if (!Number.isInteger(n) || n < 0) { process.stderr.write(`--${name} must be a whole number, got ${v}\n`); process.exit(2) }
  return n
}
try {
  const cluster = await startCluster({
    replicas: num('replicas', values.replicas), basePort: num('base-port', values['base-port']),
    httpPort: num('http-port', values['http-port'] ?? (values.join !== undefined ? '0' : '8080')), dataDir: values['data-dir']!,
    partitions: num('partitions', values.partitions), n: num('n', values.n),
    s3: values['no-s3'] ? 'none' : process.env.S3_ENDPOINT ? s3ConfigFromEnv(process.env) : 'embedded',
    s3Port: num('s3-port', values['s3-port']),
    ...(values['auth-file'] !== undefined ? { authFile: values['auth-file'] } : {}),
    ...(values['cluster-secret-file'] !== undefined ? { clusterSecretFile: values['cluster-secret-file'] } : {}),
    ...(values['tls-cert'] !== undefined || values['tls-key'] !== undefined
      ? { tls: { cert: values['tls-cert'] ?? '', key: values['tls-key'] ?? '', ...(values['tls-ca'] !== undefined ? { ca: values['tls-ca'] } : {}) } } : {}),
    ...(values.join !== undefined ? { join: values.join, readyTimeoutMs: joinReadyTimeoutMs } : {}),
  })
  const auth = values['auth-file'] !== undefined ? ' auth=on' : ''
  process.stdout.write(`ready seeds=${cluster.seeds.join(',')} http=${cluster.gateway?.url ?? 'none'} s3=${cluster.s3Config?.endpoint ?? 'off'}${auth}\n`)
  const stop = () => { cluster.stop().then(() => process.exit(0), () => process.exit(1)) }
  process.once('SIGINT', stop)
  process.once('SIGTERM', stop)
} catch (e) {
  process.stderr.write(`ringkv: cluster failed to start: ${(e as Error).message}\n`)
  process.exit(1)
}

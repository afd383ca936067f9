// Crash safety: a child process writes with tiny memtables (flushes and compactions all the time)
// and reports each acknowledged put; we SIGKILL it at random moments — right after a flush commits
// (when a compaction is starting), while a flush or compaction is in progress, or at a random delay —
// then reopen the directory and check every acknowledged key is there with its value.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import { openEngine } from './engine.ts'
import { seededRandom, testSeed } from '../../test/seed.ts'
import { crashValue } from '../../test/storage/fixtures/crash-value.ts'
import { bytesEqual, newerWins, tempDir } from '../../test/storage/util.ts'

const fixture = fileURLToPath(new URL('../../test/storage/fixtures/crash-writer.ts', import.meta.url))

type KillWhen = 'after-flush' | 'during-compaction' | 'random'

/**
 * Runs the writer until it is killed at a moment drawn from `random` (seeded, so the choice of
 * moments replays; what the child has done by then still depends on the machine's timing).
 */
async function runAndKill(dir: string, prefix: string, when: KillWhen, seen: { flushes: number; compactions: number }, random: () => number): Promise<string[]> {
  const child = spawn(process.execPath, ['--import', 'tsx', fixture, dir, prefix], { stdio: ['ignore', 'pipe', 'inherit'] })
  const acked: string[] = []
  let buffered = ''
  let flushesSeen = 0
  let killed = false
  const kill = (): void => {
    if (!killed) { killed = true; child.kill('SIGKILL') }
  }
  const hardStop = setTimeout(kill, 8000)
  child.stdout.setEncoding('utf8')
  child.stdout.on('data', (chunk: string) => {
    buffered += chunk
    const lines = buffered.split('\n')
    buffered = lines.pop()!
    for (const line of lines) {
      if (line.startsWith('ack ')) acked.push(line.slice(4))
      else if (line === 'ready') {
        if (when === 'random') setTimeout(kill, 150 + random() * 900)
      } else if (line.startsWith('event storage: flushed')) {
        seen.flushes++
        flushesSeen++
        // A flush just committed and queued a compaction: kill now, or a moment later mid-merge.
        if (when === 'after-flush' && flushesSeen >= 3 + Math.floor(random() * 20)) kill()
      } else if (line.startsWith('event storage: compacted')) {
        seen.compactions++
        if (when === 'during-compaction') setTimeout(kill, random() * 15)
      }
    }
  })
  await once(child, 'exit')
  clearTimeout(hardStop)
  assert.ok(killed, 'the writer exited by itself')
  return acked
}

test('SIGKILL during flushes and compactions loses no acknowledged put', { timeout: 60_000 }, async (t) => {
  const random = seededRandom(testSeed('crash kill moments'))
  const { dir, cleanup } = tempDir('crash')
  const seen = { flushes: 0, compactions: 0 }
  const plan: KillWhen[] = ['after-flush', 'during-compaction', 'random', 'after-flush', 'during-compaction', 'random', 'during-compaction']
  const all: string[] = []
  try {
    for (let round = 0; round < plan.length; round++) {
      const acked = await runAndKill(dir, `r${round}`, plan[round]!, seen, random)
      assert.ok(acked.length > 0, `round ${round} acknowledged nothing`)
      all.push(...acked)
      const e = await openEngine({ dir, merge: newerWins, memtableBytesMax: 16 * 1024 })
      try {
        for (const key of all) assert.ok(bytesEqual(e.get(key), crashValue(key)), `round ${round} (${plan[round]}): acknowledged ${key} lost`)
      } finally {
        await e.close()
      }
    }
    t.diagnostic(`rounds ${plan.length}, acknowledged ${all.length}, flushes seen ${seen.flushes}, compactions seen ${seen.compactions}`)
    assert.ok(seen.flushes > 10 && seen.compactions > 2, `too few flushes/compactions ran: ${JSON.stringify(seen)}`)
  } finally {
    cleanup()
  }
})

// Bounds of the fault-testing tools (the simulator, infra/sim/, and the nemesis, infra/chaos/), kept
// apart from coordinator/limits.ts as the storage and snapshot bounds are: none of them bounds the
// store itself, only how hard and how long the tools push it. Relations are asserted at load.

import { assert } from '../coordinator/assert.ts'

export const faultLimits = {
  // Workload (both tools).
  /** Keys written by the set test (each client adds unique elements to one of them). */
  setKeys: 4,
  /** Keys written by plain puts and deletes. */
  registerKeys: 6,
  /** Per-request timeout the workload's clients use. */
  workloadTimeoutMs: 2000,
  /** Most operations one workload client runs (a bound on top of the time bound). */
  opsPerClientMax: 100_000,
  /** Most operations a history keeps; beyond it the run stops its clients. */
  historyOpsMax: 1_000_000,

  // Checker (both tools).
  /** Rounds of the full read pass (R=N) before replicas are compared; each repairs what it saw. */
  checkRoundsMax: 20,
  /** Pause between check rounds, so that reconnect backoffs and repairs finish. */
  checkRoundPauseMs: 1000,

  // Simulator.
  /** Simulated length of the workload, before faults stop. */
  simWorkloadMs: 6000,
  /** Most events one simulated run may process: a run past it is a liveness failure, not a hang. */
  simEventsMax: 2_000_000,
  /** One-way network delay range, simulated ms. */
  simDelayMsMin: 1,
  simDelayMsMax: 20,
  /** Extra delay of a clogged link. */
  simClogMsMax: 1500,
  /** Per-frame probabilities, in parts per thousand: reset of the connection (loss), duplication, reordering. */
  simLossPermille: 2,
  simDuplicatePermille: 5,
  simReorderPermille: 20,
  /** Group commit: the simulated fsync covers every write of the last this-many ms. */
  simFsyncMsMax: 5,
  /** A crashed or disk-full replica restarts after at most this long. */
  simDownMsMax: 2500,
  /** Faults per simulated run, and how long each lasts at most. */
  simFaultsMax: 8,
  simFaultMsMax: 2500,
  /**
   * Time allowed after faults stop for hints and anti-entropy alone (no client reads) to make every
   * primary of every key hold the same state and empty every hint store (liveness): the nemesis's
   * bound, the cadence.
   */
  simConvergeMsMax: 60_000,
  /** Simulated pause between two comparisons of the replicas while waiting for that. */
  simConvergePollMs: 100,
  /** Attempts of the one R=N read per key after the replicas agree (a frame loss may reset its connection). */
  simFinalReadAttemptsMax: 10,
  /**
   * The final fault (one replica cut off from everyone, or crashed) takes the last this-many ms of
   * the workload and is healed only after it, as the nemesis's chaosFinalFaultMs.
   */
  simFinalFaultMs: 2500,
  /** Replicas and partitions of a run: five replicas at N=3, so a down primary has fallbacks and writes leave hints. */
  simReplicas: 5,
  simReplicasMax: 9,
  simPartitions: 16,
  /** Gossip interval of the simulated replicas (the real default is 1 s): faster detection within short faults. */
  simGossipIntervalMs: 400,
  /**
   * Tombstone grace of the simulated replicas (the real default is a day): short, so tombstones are
   * reaped within a run while the workload still re-creates keys. It is also the hints' TTL, as in
   * replica/node/main.ts, and the hint window stays below it (limits.ts says why).
   */
  simTombstoneGraceMs: 2000,
  simHintWindowMs: 1500,
  /**
   * After the replicas agree, the clock runs this long more with no client at all before they are
   * compared again and read: long enough for the tombstones of the last deletes to pass their grace
   * and be reaped (a sweep reaches each of up to four peers within 4 sweep intervals), so reaping is checked
   * (a reaped key still agrees with its tombstones elsewhere, and never comes back).
   */
  simQuietMs: 4000,
  /** Root sweep interval of the simulated replicas (1 s in production): each peer is swept within a second. */
  simAaeSweepIntervalMs: 250,
  /** Workload clients per simulated run, and think time between their operations. */
  simClients: 3,
  simThinkMsMax: 50,
  /** Seeds one sweep may run, and processes it may use. */
  simSeedsMax: 1_000_000,
  simJobsMax: 64,
  /** Events of a failing run's trace printed. */
  simTraceTailEvents: 40,

  // Nemesis (real processes).
  /** Longest run (--seconds). */
  chaosSecondsMax: 3600,
  /** Workload clients. */
  chaosClients: 4,
  /** A fault lasts between these, and the quiet gap before the next between the gap bounds. */
  chaosFaultMsMin: 1000,
  chaosFaultMsMax: 4000,
  chaosGapMsMin: 500,
  chaosGapMsMax: 2000,
  /**
   * The last stretch of the workload, during which one replica stays cut off or killed; it is
   * healed only with everything else, after the workload, so what it missed must come back by hints
   * and anti-entropy alone (no client read follows). Half the run when the run is shorter than twice this.
   */
  chaosFinalFaultMs: 8000,
  /** Size of the tmpfs behind the disk-full replica's data directory. */
  chaosTmpfsMiB: 24,
  /** Time for a replica to restart and answer /health. */
  chaosStartTimeoutMs: 60_000,
  /** Longest any shell command of the nemesis (ip, nft, mount) may take. */
  chaosCommandTimeoutMs: 10_000,
  /**
   * After healing, how long hints and anti-entropy alone (no client reads) get to make every
   * replica hold the same state of every key: the cadence, a replica holds what it missed
   * within 60 s of coming back.
   */
  chaosAaeConvergeMsMax: 60_000,
  /** Pause between two per-replica comparisons while waiting for that. */
  chaosAaePollMs: 1000,
} as const

assert(faultLimits.simDelayMsMin >= 1 && faultLimits.simDelayMsMin <= faultLimits.simDelayMsMax, 'delay range')
assert(faultLimits.simDelayMsMax * 4 < faultLimits.workloadTimeoutMs, 'a request must fit several round trips')
assert(faultLimits.simLossPermille + faultLimits.simDuplicatePermille + faultLimits.simReorderPermille < 1000, 'probabilities')
assert(faultLimits.checkRoundsMax * faultLimits.checkRoundPauseMs <= faultLimits.simConvergeMsMax, 'check rounds fit the convergence bound')
assert(faultLimits.simHintWindowMs < faultLimits.simTombstoneGraceMs, 'a hint expires (at the grace) only after its owner stopped taking new ones')
assert(faultLimits.simFinalFaultMs * 2 <= faultLimits.simWorkloadMs && faultLimits.simFinalFaultMs > faultLimits.simHintWindowMs, 'the final fault is part of the workload, and outlasts the hint window')
assert(faultLimits.simQuietMs >= faultLimits.simTombstoneGraceMs + 4 * faultLimits.simAaeSweepIntervalMs, 'the quiet phase outlasts the grace and a sweep of every peer')
assert(faultLimits.simConvergePollMs > 0 && faultLimits.simConvergePollMs < faultLimits.simConvergeMsMax, 'convergence poll')
assert(faultLimits.simReplicas >= 1 && faultLimits.simReplicas <= faultLimits.simReplicasMax && faultLimits.simPartitions >= faultLimits.simReplicasMax, 'replicas and partitions')
assert(faultLimits.simGossipIntervalMs * 4 < faultLimits.simFaultMsMax, 'a fault lasts several gossip rounds')
assert(faultLimits.chaosFaultMsMin <= faultLimits.chaosFaultMsMax && faultLimits.chaosGapMsMin <= faultLimits.chaosGapMsMax, 'fault and gap ranges')
assert(faultLimits.simClients >= 1 && faultLimits.chaosClients >= 1, 'at least one client')

/** Memtable size the nemesis gives its replicas: small, so flushes and S3 snapshots happen within a short run. */
export const chaosMemtableBytes = 64 * 1024

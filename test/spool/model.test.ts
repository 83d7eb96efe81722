/**
 * Model-based test of the spool: random sequences of appends, leases, settlements (ack, release,
 * modify below and at the attempt cap, reject), releaseAll, commits that fail (retryable: the file
 * busy, the disk full; fatal: an I/O error), fsyncs that complete late, out of order or with EIO,
 * clock advances and restarts, run against the real SqliteSpool on real SQLite files and checked
 * against a reference model (model-reference.ts, model-commands.ts, model-world.ts).
 *
 * Every asynchronous completion is a command: a commit happens only when a `tick` lets the event
 * loop turn, an fsync only when the run completes it. So a settlement, a releaseAll and a lease can
 * all come between a call and its commit, as a disconnect can in the gateway.
 *
 * The seed is printed; to replay a failing run:
 *   UPLINK_SPOOL_SEED=<seed> UPLINK_SPOOL_PATH='<path>@<replayPath>' node scripts/run-tests.js test/spool/model.test.ts
 * (the failure prints that line); the seed alone runs the whole search again, to the same result.
 * UPLINK_SPOOL_RUNS sets the number of runs, UPLINK_SPOOL_DIR where the files go (default /dev/shm).
 */
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { test } from 'node:test';
import fc from 'fast-check';
import { commands, coverage, finalCheck } from './model-commands.js';
import { ReferenceModel } from './model-reference.js';
import { World, type WorldConfig } from './model-world.js';

const seed = process.env.UPLINK_SPOOL_SEED === undefined ? Date.now() % 2 ** 31 : Number(process.env.UPLINK_SPOOL_SEED);
/** fast-check's path to the failing run, then `@` and the commands' replay path (both printed on failure). */
const [path, replayPath] = process.env.UPLINK_SPOOL_PATH?.split('@') ?? [];
const runs = Number(process.env.UPLINK_SPOOL_RUNS ?? 4000);
const base = process.env.UPLINK_SPOOL_DIR ?? (existsSync('/dev/shm') ? '/dev/shm' : tmpdir());

const config: fc.Arbitrary<WorldConfig> = fc.record({
  maxAttempts: fc.integer({ min: 1, max: 3 }),
  maxReadings: fc.oneof({ arbitrary: fc.constant(1_000_000), weight: 3 }, { arbitrary: fc.integer({ min: 3, max: 8 }), weight: 1 }),
  expired: fc.constantFrom('drop' as const, 'dead-letter' as const),
  // Date.now() truncates and the step-free clock rounds: they differ by up to 1 ms without any step.
  jitter: fc.constantFrom(0, 1, -1, 0.5, -0.4),
});

test(`spool model: ${runs} random runs against the real spool (seed ${seed})`, async (t) => {
  t.diagnostic(`seed ${seed}${path === undefined ? '' : `, path ${path}`}`);
  const started = performance.now();
  let executed = 0;
  const property = fc.asyncProperty(config, fc.commands([commands], { maxCommands: 60, size: 'max', ...(replayPath === undefined ? {} : { replayPath }) }),
    async (cfg, cmds) => {
      executed += 1;
      const world = new World(cfg, base);
      const model = new ReferenceModel({ maxAttempts: cfg.maxAttempts });
      try {
        await world.start();
        await fc.asyncModelRun(() => ({ model, real: world }), cmds);
        await finalCheck(model, world);
      } finally {
        await world.close();
      }
    });
  try {
    await fc.assert(property, { seed, numRuns: runs, ...(path === undefined ? {} : { path }) });
  } catch (err) {
    const message = String((err as Error).message);
    const at = /seed: (-?\d+), path: "([^"]*)"/.exec(message);
    const commandsPath = /replayPath="([^"]*)"/.exec(message);
    const replay = at === null ? `UPLINK_SPOOL_SEED=${seed}` : `UPLINK_SPOOL_SEED=${at[1]} UPLINK_SPOOL_PATH='${at[2]}@${commandsPath?.[1] ?? ''}'`;
    throw new Error(`replay: ${replay} node scripts/run-tests.js test/spool/model.test.ts\n${message}`, { cause: err });
  }
  t.diagnostic(`${executed} runs in ${((performance.now() - started) / 1000).toFixed(1)} s`);
  for (const [what, count] of Object.entries(coverage).sort()) t.diagnostic(`${String(count).padStart(7)} ${what}`);
});

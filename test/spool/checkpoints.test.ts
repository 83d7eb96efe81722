/**
 * The spool checkpoints the WAL itself (src/spool/sqlite/checkpoints.ts): SQLite's automatic
 * checkpoint drops its errors, so it is off. Without checkpoints of our own the WAL would grow
 * with every commit; the I/O error of a checkpoint is injected into a real gateway process in
 * test/integration/storage-faults.test.ts.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, statSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { spoolFile } from '../../src/spool/sqlite/database.js';
import { SqliteSpool } from '../../src/spool/sqlite/sqlite-spool.js';
import { reading } from './contract.js';
import { spoolOptions } from './options.js';

const walSize = (dir: string): number => (existsSync(`${spoolFile(dir)}-wal`) ? statSync(`${spoolFile(dir)}-wal`).size : 0);

test('the WAL is checkpointed by the spool: 40 MB of readings never make a WAL of more than a few MB', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'uplink-checkpoint-'));
  const spool = new SqliteSpool(spoolOptions(dir, { durability: 'normal' }));
  await spool.start();
  t.after(async () => {
    await spool.stop();
    await rm(dir, { recursive: true, force: true });
  });
  const payload = 'x'.repeat(1000);
  let largest = 0;
  for (let batch = 0; batch < 400; batch++) {
    await spool.append(Array.from({ length: 100 }, (_, i) => reading('q', `${batch}-${i}:${payload}`)));
    largest = Math.max(largest, walSize(dir));
  }
  assert.ok(largest < 16 * 1024 * 1024, `the WAL grew to ${largest} bytes: it is not checkpointed`);
  assert.equal(spool.stats().depth, 40_000);
});

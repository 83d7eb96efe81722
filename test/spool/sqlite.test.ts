import assert from 'node:assert/strict';
import { existsSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import Database from 'better-sqlite3';
import { SqliteDeadLetterStore } from '../../src/spool/sqlite/dead-letters.js';
import { openSpoolDatabase, spoolFile } from '../../src/spool/sqlite/database.js';
import { SqliteSpool } from '../../src/spool/sqlite/sqlite-spool.js';
import { memoryLogger } from '../peers/memory-log.js';
import { spoolOptions } from './options.js';
import { reading, spoolContract, type SpoolFactoryOptions, type SpoolUnderTest } from './contract.js';


async function openSqlite(dataDir: string, options: SpoolFactoryOptions, now: { value: number }): Promise<SpoolUnderTest> {
  const spool = new SqliteSpool(spoolOptions(dataDir, { ...options, now: () => now.value }));
  await spool.start();
  return {
    spool, now,
    deadLetters: () => spool.deadLetters,
    restart: async () => {
      await spool.stop();
      return openSqlite(dataDir, options, now);
    },
  };
}

spoolContract('sqlite', async (options = {}) => openSqlite(await mkdtemp(join(tmpdir(), 'uplink-spool-')), options, { value: Date.now() }));

describe('sqlite spool', () => {
  test('a corrupt database file is reported and left in place (onCorrupt: fail)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'uplink-corrupt-'));
    writeFileSync(spoolFile(dir), Buffer.alloc(8192, 0x5a));
    const spool = new SqliteSpool(spoolOptions(dir));
    await assert.rejects(spool.start(), (err: { code: string; message: string; retryable: boolean }) => {
      assert.equal(err.code, 'SPOOL_CORRUPT');
      assert.equal(err.retryable, false);
      assert.match(err.message, /is corrupt or not a spool database .*left as it is/);
      return true;
    });
    assert.equal(statSync(spoolFile(dir)).size, 8192);
    assert.deepEqual(readdirSync(dir).sort(), ['spool.db', 'spool.lock']);
  });

  test('onCorrupt: fresh moves the corrupt file aside with a timestamp and starts empty', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'uplink-corrupt-'));
    writeFileSync(spoolFile(dir), Buffer.alloc(8192, 0x5a));
    const { log, lines } = memoryLogger();
    const spool = new SqliteSpool(spoolOptions(dir, { onCorrupt: 'fresh', log }));
    await spool.start();
    try {
      const aside = readdirSync(dir).filter((f) => /^spool\.db\.corrupt-\d{4}-\d\d-\d\dT[\d-]+Z$/.test(f));
      assert.equal(aside.length, 1);
      assert.equal(statSync(join(dir, aside[0]!)).size, 8192);
      assert.ok(lines.some((l) => l.level === 'error' && /moved it aside/.test(String(l.msg))));
      await spool.append([reading('q', 'new')]);
      assert.equal(spool.stats().depth, 1);
    } finally {
      await spool.stop();
    }
  });

  test('a dead letter replayed by another process (uplink dlq) is picked up by the running spool', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'uplink-dlq-'));
    const spool = new SqliteSpool(spoolOptions(dir, { maintenanceMs: 20 }));
    await spool.start();
    try {
      await spool.append([reading('q', 'x')]);
      const [x] = await spool.lease('q', 1);
      await spool.reject([x!.seq], { condition: 'amqp:not-allowed' });
      assert.equal(spool.stats().depth, 0);
      const woke = new Promise<string>((resolve) => spool.onAvailable(resolve));
      const other = new Database(spoolFile(dir));
      assert.equal(new SqliteDeadLetterStore(other).replay(), 1);
      other.close();
      assert.equal(await woke, 'q');
      assert.equal(spool.stats().depth, 1);
      assert.equal(spool.stats().deadLetters, 0);
      assert.deepEqual((await spool.lease('q', 1)).map((r) => r.id), [x!.id]);
    } finally {
      await spool.stop();
    }
  });

  test('space is reclaimed: the file does not grow under steady append + ack traffic', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'uplink-vacuum-'));
    const spool = new SqliteSpool(spoolOptions(dir, { maintenanceMs: 10, durability: 'normal' }));
    await spool.start();
    const sizes: number[] = [];
    const fileSize = (): number => ['', '-wal'].reduce((sum, s) => sum + (existsSync(spoolFile(dir) + s) ? statSync(spoolFile(dir) + s).size : 0), 0);
    try {
      for (let round = 0; round < 30; round++) {
        await spool.append(Array.from({ length: 2000 }, (_, i) => reading('q', `${round}-${i}-${'x'.repeat(200)}`)));
        const leased = await spool.lease('q', 2000);
        await spool.ack(leased.map((r) => r.seq));
        await new Promise((r) => setTimeout(r, 30));
        sizes.push(fileSize());
      }
    } finally {
      await spool.stop();
    }
    // One round holds ~0.5 MB; thirty rounds without reclaiming would be ~15 MB.
    const settled = Math.max(...sizes.slice(5, 10));
    assert.ok(sizes.at(-1)! <= settled * 1.5, `file grew: ${sizes.join(', ')}`);
  });

  test('space is returned after a backlog drains (incremental vacuum), not kept forever', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'uplink-vacuum-'));
    const spool = new SqliteSpool(spoolOptions(dir, { maintenanceMs: 5, durability: 'normal' }));
    await spool.start();
    try {
      for (let i = 0; i < 10; i++) await spool.append(Array.from({ length: 2000 }, (_, j) => reading('q', `${i}-${j}-${'x'.repeat(500)}`)));
      const full = statSync(spoolFile(dir)).size;
      for (;;) {
        const leased = await spool.lease('q', 2000);
        if (leased.length === 0) break;
        await spool.ack(leased.map((r) => r.seq));
      }
      await new Promise((r) => setTimeout(r, 1500));
      // One more small commit lets the WAL checkpoint carry the truncation into the file.
      await spool.append([reading('q', 'tick')]);
      await new Promise((r) => setTimeout(r, 200));
      const drained = statSync(spoolFile(dir)).size;
      assert.ok(full > 10_000_000, `backlog file ${full}`);
      assert.ok(drained < full / 4, `file kept ${drained} of ${full} bytes after draining`);
    } finally {
      await spool.stop();
    }
  });

  test('the database holds the schema version and WAL journal', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'uplink-schema-'));
    const db = openSpoolDatabase({ dataDir: dir, durability: 'full', onCorrupt: 'fail', log: memoryLogger().log });
    assert.equal(db.pragma('journal_mode', { simple: true }), 'wal');
    assert.equal(db.pragma('synchronous', { simple: true }), 2, 'tools that open the file (uplink dlq) commit with fsync');
    assert.equal(db.pragma('auto_vacuum', { simple: true }), 2);
    db.close();
  });
});

/**
 * Interleavings of settlements, commits and disconnects that strand or reorder readings unless the
 * spool handles them, each made certain (no timing): a settlement is issued, `releaseAll` runs before
 * its commit (the commit runs at the end of the event-loop turn at the earliest), then the commit.
 * And a settlement whose commit fails for real (another process holds the write lock).
 */
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, test } from 'node:test';
import Database from 'better-sqlite3';
import type { SpooledReading } from '../../src/spool/interface.js';
import { spoolFile } from '../../src/spool/sqlite/database.js';
import { SqliteSpool } from '../../src/spool/sqlite/sqlite-spool.js';
import { reading } from './contract.js';
import { spoolOptions } from './options.js';

const texts = (readings: SpooledReading[]): string[] => readings.map((r) => r.payload.toString());
const open: SqliteSpool[] = [];

async function spool(overrides: Parameters<typeof spoolOptions>[1] = {}): Promise<{ spool: SqliteSpool; dir: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'uplink-race-'));
  const s = new SqliteSpool(spoolOptions(dir, overrides));
  await s.start();
  open.push(s);
  return { spool: s, dir };
}

async function filled(texts: string[], overrides: Parameters<typeof spoolOptions>[1] = {}): Promise<{ spool: SqliteSpool; dir: string; leased: SpooledReading[] }> {
  const s = await spool(overrides);
  await s.spool.append(texts.map((t) => reading('q', t)));
  return { ...s, leased: await s.spool.lease('q', texts.length) };
}

describe('spool: settlements racing a disconnect', () => {
  afterEach(async () => {
    for (const s of open.splice(0)) await s.stop();
  });

  test('modify, then releaseAll before its commit: every reading is leased again, in order, none skipped', async () => {
    const { spool: s, leased } = await filled(['a', 'b', 'c', 'd', 'e']);
    const modified = s.modify([leased[2]!.seq]);
    s.releaseAll();
    await modified;
    assert.deepEqual(texts(await s.lease('q', 10)), ['a', 'b', 'c', 'd', 'e']);
    assert.equal((await s.lease('q', 10)).length, 0);
  });

  test('modify, releaseAll, a lease past it before its commit, then the commit: it comes back at its place', async () => {
    const { spool: s, leased } = await filled(['a', 'b', 'c', 'd', 'e']);
    const modified = s.modify([leased[2]!.seq]);
    s.releaseAll();
    assert.deepEqual(texts(await s.lease('q', 10)), ['a', 'b', 'd', 'e'], 'a reading whose settlement waits is not leased');
    await modified;
    s.releaseAll();
    assert.deepEqual(texts(await s.lease('q', 10)), ['a', 'b', 'c', 'd', 'e']);
  });

  test('modify, releaseAll, a lease of the front only, then the commit: nothing behind the front is skipped', async () => {
    const { spool: s, leased } = await filled(['a', 'b', 'c', 'd', 'e']);
    const modified = s.modify([leased[3]!.seq]);
    s.releaseAll();
    assert.deepEqual(texts(await s.lease('q', 2)), ['a', 'b']);
    await modified;
    assert.deepEqual(texts(await s.lease('q', 10)), ['c', 'd', 'e']);
  });

  test('reject and ack, then releaseAll before their commits: gone for good, the rest in order', async () => {
    const { spool: s, leased } = await filled(['a', 'b', 'c', 'd']);
    const rejected = s.reject([leased[1]!.seq], { condition: 'amqp:not-allowed' });
    const acked = s.ack([leased[2]!.seq]);
    s.releaseAll();
    await Promise.all([rejected, acked]);
    assert.deepEqual(texts(await s.lease('q', 10)), ['a', 'd']);
    assert.equal(s.stats().deadLetters, 1);
    assert.equal(s.stats().depth, 2);
  });

  test('a settlement whose commit fails (the file is locked by another process) returns its reading to the queue', async () => {
    const { spool: s, dir, leased } = await filled(['a', 'b', 'c']);
    const other = new Database(spoolFile(dir));
    other.exec('BEGIN IMMEDIATE');
    let failure: unknown;
    try {
      // The commit waits busy_timeout for the lock, then fails.
      await s.ack([leased[1]!.seq]).catch((err: unknown) => { failure = err; });
    } finally {
      other.exec('ROLLBACK');
      other.close();
    }
    assert.equal((failure as { code?: string }).code, 'IO');
    assert.equal((failure as { retryable?: boolean }).retryable, true);
    assert.equal(s.stats().depth, 3);
    s.releaseAll();
    assert.deepEqual(texts(await s.lease('q', 10)), ['a', 'b', 'c'], 'the reading is not stranded in the settling state');
  });

  test('a failed settlement commit is undone even without a reconnect: the reading is leased again at its place', async () => {
    let fail = false;
    const { spool: s, leased } = await filled(['a', 'b', 'c'], {
      faults: { inTransaction: () => { if (fail) throw Object.assign(new Error('database is locked'), { code: 'SQLITE_BUSY' }); } },
    });
    await s.release([leased[0]!.seq]);
    fail = true;
    await assert.rejects(s.modify([leased[1]!.seq]), { code: 'IO' });
    fail = false;
    assert.deepEqual(texts(await s.lease('q', 10)), ['a', 'b']);
  });
});

/**
 * The spool when its storage fails: an fdatasync of the WAL that fails (a fault-injecting sync in
 * place of fs.fdatasync), and an I/O error inside a commit. The spool must acknowledge nothing
 * more (no later fsync makes up for a failed one), say so once, tell its owner, and lose nothing it
 * acknowledged: after a restart every resolved append is there. The same faults are injected into
 * a real gateway process by strace in test/integration/storage-faults.test.ts.
 */
import assert from 'node:assert/strict';
import { fdatasync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { GatewayError } from '../../src/core/errors.js';
import type { RoutedReading } from '../../src/core/envelope.js';
import { spoolFile } from '../../src/spool/sqlite/database.js';
import type { SyncFn } from '../../src/spool/sqlite/durability.js';
import { translateSqliteError } from '../../src/spool/sqlite/errors.js';
import { SqliteSpool } from '../../src/spool/sqlite/sqlite-spool.js';
import { memoryLogger } from '../peers/memory-log.js';
import { reading } from './contract.js';
import { spoolOptions } from './options.js';

const ids = (readings: readonly RoutedReading[]): string[] => readings.map((r) => r.id);

/** Lets the test decide when each fdatasync completes and how: the interleavings are certain. */
function heldSync(): { sync: SyncFn; calls: Array<(err?: NodeJS.ErrnoException) => void> } {
  const calls: Array<(err?: NodeJS.ErrnoException) => void> = [];
  const sync: SyncFn = (fd, callback) => {
    let done = false;
    calls.push((err) => {
      if (done) return;
      done = true;
      if (err !== undefined) callback(err);
      else fdatasync(fd, callback);
    });
  };
  return { sync, calls };
}

async function until(condition: () => boolean): Promise<void> {
  while (!condition()) await new Promise((resolve) => setImmediate(resolve));
}

describe('spool: the storage fails', () => {
  test('a failed fdatasync: its appends and every later one are never acknowledged; one fatal line; onFatal once; nothing acknowledged lost', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'uplink-fsync-'));
    const { log, lines } = memoryLogger();
    const { sync, calls } = heldSync();
    const fatal: GatewayError[] = [];
    const spool = new SqliteSpool(spoolOptions(dir, { log, faults: { sync }, onFatal: (e) => fatal.push(e) }));
    await spool.start();
    const settled = new Map<string, 'resolved' | 'rejected'>();
    const append = (batch: RoutedReading[]): Promise<void> => spool.append(batch).then(
      () => { for (const id of ids(batch)) settled.set(id, 'resolved'); },
      (err: unknown) => { for (const id of ids(batch)) settled.set(id, 'rejected'); assert.equal((err as GatewayError).code, 'STORAGE_FAILED'); });
    try {
      const batches = ['a', 'b', 'c', 'd'].map((t) => [reading('q', t)]);
      const pending: Array<Promise<void>> = [];
      for (const [i, batch] of batches.entries()) {
        pending.push(append(batch));
        await until(() => calls.length === i + 1);
      }
      calls[0]!();
      await pending[0];
      // The third sync fails; the fourth then succeeds, the second last.
      calls[2]!(Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' }));
      calls[3]!();
      calls[1]!();
      await Promise.all(pending);
      const state = batches.map((batch) => settled.get(batch[0]!.id));
      assert.equal(state[0], 'resolved', 'a sync done before the failure acknowledges its appends');
      assert.equal(state[2], 'rejected');
      assert.equal(state[3], 'rejected', 'a sync that succeeds after a failed one proves nothing');
      assert.equal(state[1], 'rejected', 'nor one that completes after the failure: the kernel may have told the other one of its pages');
      assert.equal(fatal.length, 1);
      assert.equal(fatal[0]!.code, 'STORAGE_FAILED');
      assert.match(fatal[0]!.message, /fdatasync .* failed \(EIO\)/);
      assert.equal(lines.filter((l) => l.level === 'fatal').length, 1, 'one clear line');
      await assert.rejects(spool.append([reading('q', 'e')]), { code: 'STORAGE_FAILED' }, 'nothing more is accepted');
      assert.deepEqual(await spool.lease('q', 10), [], 'nothing is handed out either');
    } finally {
      for (const release of calls) release();
      await spool.stop();
    }
    const all = [...settled.keys()];

    const again = new SqliteSpool(spoolOptions(dir));
    await again.start();
    try {
      const present = ids(await again.lease('q', 10));
      for (const [id, state] of settled) if (state === 'resolved') assert.ok(present.includes(id), `${id} was acknowledged and is gone`);
      // The rows of the unacknowledged appends were committed: they are there too (sent once, not twice).
      assert.deepEqual(present, all);
    } finally {
      await again.stop();
    }
  });

  test('a reading is leased only once the fdatasync after its commit came back: a power cut cannot take back what was sent', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'uplink-durable-lease-'));
    const { sync, calls } = heldSync();
    const available: string[] = [];
    const spool = new SqliteSpool(spoolOptions(dir, { faults: { sync } }));
    spool.onAvailable((address) => available.push(address));
    await spool.start();
    try {
      const first = spool.append([reading('q', 'first')]);
      await until(() => calls.length === 1);
      // Committed (the row is in the WAL, counted in the depth) but not known to be on disk.
      assert.equal(spool.stats().depth, 1);
      assert.deepEqual(await spool.lease('q', 10), [], 'leased before its fsync came back');
      assert.deepEqual(available, []);
      calls[0]!();
      await first;
      assert.deepEqual(available, ['q'], 'available once durable');
      // A second commit while the first reading is out: only the durable one was handed out.
      const second = spool.append([reading('q', 'second')]);
      await until(() => calls.length === 2);
      const text = (leased: readonly RoutedReading[]): string[] => leased.map((r) => r.payload.toString());
      assert.deepEqual(text(await spool.lease('q', 10)), ['first']);
      assert.deepEqual(await spool.lease('q', 10), [], 'the second before its fsync came back');
      calls[1]!();
      await second;
      assert.deepEqual(text(await spool.lease('q', 10)), ['second']);
    } finally {
      for (const release of calls) release();
      await spool.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('an I/O error inside a commit (not a full disk) stops the spool at once and is never retried as disk_full', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'uplink-ioerr-'));
    const { log, lines } = memoryLogger();
    let fail = false;
    const fatal: GatewayError[] = [];
    const spool = new SqliteSpool(spoolOptions(dir, {
      log, diskFullRetryMs: 1, onFatal: (e) => fatal.push(e),
      faults: { inTransaction: () => { if (fail) throw Object.assign(new Error('disk I/O error'), { code: 'SQLITE_IOERR_WRITE' }); } },
    }));
    await spool.start();
    try {
      await spool.append([reading('q', 'kept')]);
      const [kept] = await spool.lease('q', 1);
      fail = true;
      const append = spool.append([reading('q', 'lost')]);
      const ack = spool.ack([kept!.seq]);
      await assert.rejects(append, { code: 'STORAGE_FAILED' });
      await assert.rejects(ack, { code: 'STORAGE_FAILED' });
      assert.equal(fatal.length, 1);
      assert.equal(spool.stats().diskFull, false);
      assert.ok(!lines.some((l) => /disk full/.test(String(l.msg))));
    } finally {
      await spool.stop();
    }
  });

  test('the WAL cannot be opened for its fsync: the spool stops, and an append waiting for room is refused too', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'uplink-walgone-'));
    const fatal: GatewayError[] = [];
    const spool = new SqliteSpool(spoolOptions(dir, { maxReadings: 1, onFatal: (e) => fatal.push(e) }));
    await spool.start();
    try {
      // The fault, for real: the WAL is gone from the directory when the first fsync opens it.
      rmSync(`${spoolFile(dir)}-wal`, { force: true });
      const outcome = (p: Promise<void>): Promise<string | undefined> => p.then(() => 'acknowledged', (err: GatewayError) => err.code);
      const fits = outcome(spool.append([reading('q', 'fits')]));
      const waits = outcome(spool.append([reading('q', 'waits for room')]));
      assert.equal(await fits, 'STORAGE_FAILED');
      assert.equal(fatal.length, 1);
      const turn = new Promise<string>((resolve) => setImmediate(() => resolve('still waiting')));
      assert.equal(await Promise.race([waits, turn]), 'STORAGE_FAILED');
    } finally {
      await spool.stop();
    }
  });

  test('SQLite I/O errors are a full disk only when the file system has no room', () => {
    const ioerr = Object.assign(new Error('disk I/O error'), { code: 'SQLITE_IOERR_WRITE' });
    assert.equal(translateSqliteError(ioerr, 'committing', tmpdir()).code, 'STORAGE_FAILED');
    assert.equal(translateSqliteError(Object.assign(new Error('full'), { code: 'SQLITE_FULL' }), 'committing', tmpdir()).code, 'DISK_FULL');
    assert.equal(translateSqliteError(Object.assign(new Error('busy'), { code: 'SQLITE_BUSY' }), 'committing').retryable, true);
  });
});

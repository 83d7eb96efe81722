/**
 * The spool on a small tmpfs that fills up. Needs root (mount), as CI has; anywhere else the test
 * fails rather than skips, so a missing capability never passes for a working feature.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import Database from 'better-sqlite3';
import type { RoutedReading } from '../../src/core/envelope.js';
import { spoolFile } from '../../src/spool/sqlite/database.js';
import { SqliteSpool } from '../../src/spool/sqlite/sqlite-spool.js';
import { memoryLogger } from '../peers/memory-log.js';
import { spoolOptions } from './options.js';

const mounts: string[] = [];

function smallFilesystem(megabytes: number): string {
  const dir = mkdtempSync(join(tmpdir(), 'uplink-tmpfs-'));
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${megabytes}m`, 'uplink-test', dir]);
  mounts.push(dir);
  return dir;
}

async function waitFor(condition: () => boolean, message: string): Promise<void> {
  for (let i = 0; !condition(); i++) {
    assert.ok(i < 500, message);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Bounds a hang only (generous): the assertion is that `p` resolves at all. */
async function within(p: Promise<void>, message: string): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([p, new Promise<void>((_, reject) => { timer = setTimeout(() => reject(new Error(message)), 20_000); })]);
  clearTimeout(timer);
}

let n = 0;
const batch = (size: number): RoutedReading[] => Array.from({ length: size }, () => {
  n += 1;
  return { id: `r${n}`, topic: 'sensor/x', payload: Buffer.alloc(1000, n % 256), receivedAt: Date.now(), address: 'q', priority: 4 };
});

describe('spool on a filesystem that fills up', () => {
  before(() => {
    assert.equal(process.getuid?.(), 0, 'mounting a small tmpfs needs root (CI runs as root)');
  });
  after(() => {
    for (const dir of mounts) {
      execFileSync('umount', [dir]);
      rmSync(dir, { recursive: true, force: true });
    }
  });

  for (const policy of ['block', 'drop-oldest'] as const) {
    test(`${policy}: a full disk holds appends back without a crash or a corrupt file, and recovers when space returns`, async () => {
      const dir = smallFilesystem(4);
      // Ballast that the test deletes later, to give the space back.
      writeFileSync(join(dir, 'ballast'), Buffer.alloc(1024 * 1024));
      const { log, lines } = memoryLogger();
      const spool = new SqliteSpool(spoolOptions(join(dir), { policy, log, diskFullRetryMs: 50 }));
      await spool.start();
      const stored: string[] = [];
      const pending: Array<Promise<void>> = [];
      // Appends keep coming until the disk is full; each one resolves only once stored.
      while (!spool.stats().diskFull) {
        const readings = batch(50);
        const p = spool.append(readings).then(() => { stored.push(...readings.map((r) => r.id)); });
        pending.push(p);
        await Promise.race([p, new Promise((r) => setTimeout(r, 100))]);
        assert.ok(pending.length < 1000, 'the disk never filled');
      }
      assert.equal(spool.stats().blocked, true);
      assert.ok(lines.some((l) => l.level === 'error' && /disk full/.test(String(l.msg))));
      const storedWhileFull = stored.length;
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(stored.length, storedWhileFull, 'nothing is reported stored while the disk is full');

      rmSync(join(dir, 'ballast'));
      await Promise.all(pending);
      assert.equal(spool.stats().diskFull, false);
      assert.ok(lines.some((l) => /disk space is back/.test(String(l.msg))));
      await spool.stop();

      const db = new Database(spoolFile(dir), { readonly: true });
      assert.equal(db.pragma('integrity_check', { simple: true }), 'ok');
      const ids = new Set((db.prepare('SELECT id FROM readings').pluck().all() as string[]));
      db.close();
      assert.deepEqual(stored.filter((id) => !ids.has(id)), [], 'every append that resolved is stored');
      assert.equal(ids.size, pending.length * 50);
    });
  }

  test('full disk while connected: the acks still commit, and a spool that filled its own disk drains itself', async () => {
    // The reserve must exceed what the WAL holds before its automatic checkpoint (1000 pages, 4 MiB):
    // a checkpoint on the full disk must have room to copy those pages into the database file.
    const dir = smallFilesystem(12);
    const { log, lines } = memoryLogger();
    const spool = new SqliteSpool(spoolOptions(dir, { log, diskFullRetryMs: 20, reserveBytes: 5 * 1024 * 1024, maintenanceMs: 50 }));
    await spool.start();
    try {
      await waitFor(() => existsSync(join(dir, 'spool.reserve')), 'the disk reserve was never made');
      const appended = new Set<string>();
      const pending: Array<Promise<void>> = [];
      while (!spool.stats().diskFull) {
        const readings = batch(50);
        const p = spool.append(readings).then(() => { for (const r of readings) appended.add(r.id); });
        p.catch(() => {}); // a refusal shows as a missing reading below
        pending.push(p);
        await Promise.race([p, new Promise((r) => setTimeout(r, 100))]);
        assert.ok(pending.length < 1000, 'the disk never filled');
      }
      assert.ok(spool.stats().blocked, 'appends wait while the disk is full');
      // The forwarder goes on: it leases and the broker accepts. Each ack must commit on the full disk.
      const delivered = new Set<string>();
      let all = false;
      void Promise.all(pending).then(() => { all = true; });
      while (!all || spool.stats().depth > 0) {
        const leased = await spool.lease('q', 200);
        if (leased.length === 0) {
          await new Promise((r) => setTimeout(r, 20));
          continue;
        }
        await within(spool.ack(leased.map((r) => r.seq)), 'an ack did not commit on the full disk');
        for (const r of leased) {
          assert.ok(!delivered.has(r.id), `${r.id} leased again after its ack committed`);
          delivered.add(r.id);
        }
      }
      assert.ok(lines.some((l) => /gave back the disk reserve/.test(String(l.msg))));
      assert.deepEqual([...appended].filter((id) => !delivered.has(id)), [], 'every stored reading was delivered');
      assert.equal(delivered.size, pending.length * 50, 'every append was stored in the end, none refused');
    } finally {
      await spool.stop();
    }
    const db = new Database(spoolFile(dir), { readonly: true });
    assert.equal(db.pragma('integrity_check', { simple: true }), 'ok');
    db.close();
  });

  test('drop-oldest with a quota below the disk size evicts and never fills the disk', async () => {
    const dir = smallFilesystem(8);
    const spool = new SqliteSpool(spoolOptions(dir, { policy: 'drop-oldest', maxBytes: 1_000_000 }));
    await spool.start();
    try {
      for (let i = 0; i < 100; i++) await spool.append(batch(50));
      const stats = spool.stats();
      assert.equal(stats.diskFull, false);
      assert.ok(stats.bytes <= 1_000_000);
      assert.equal(stats.depth + stats.dropped.evicted, 5000);
      const [first] = await spool.lease('q', 1);
      assert.equal(first?.id, `r${n - stats.depth + 1}`, 'the oldest went first');
    } finally {
      await spool.stop();
    }
  });
});

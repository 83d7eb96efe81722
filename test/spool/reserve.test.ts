/**
 * The disk reserve (src/spool/sqlite/reserve.ts) and the free-space check it shares with the error
 * translation (free-space.ts): written in the background after start(), and never still being
 * written once stop() has resolved (a caller that then removes the directory, as tests and
 * `uplink` tooling do, must not race the writer: ENOTEMPTY, or a file written into a fresh dir).
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readlinkSync, rmSync, statfsSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { freeBytes } from '../../src/spool/sqlite/free-space.js';
import { DiskReserve } from '../../src/spool/sqlite/reserve.js';
import { SqliteSpool } from '../../src/spool/sqlite/sqlite-spool.js';
import { spoolOptions } from './options.js';

/** Files of `dir` this process holds open (/proc/self/fd). */
function openIn(dir: string): string[] {
  const out: string[] = [];
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      const target = readlinkSync(`/proc/self/fd/${fd}`);
      if (target.startsWith(`${dir}/`)) out.push(target);
    } catch {
      // The fd of readdir itself is gone by now.
    }
  }
  return out;
}

async function until(condition: () => boolean, what: string): Promise<void> {
  for (let i = 0; !condition(); i++) {
    assert.ok(i < 1_000_000, `never: ${what}`);
    await new Promise((resolve) => setImmediate(resolve));
  }
}

describe('spool: the disk reserve', () => {
  test('stop() while the reserve is being written: once it resolved nothing writes into the directory any more', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'uplink-reserve-'));
    const spool = new SqliteSpool(spoolOptions(dir, { reserveBytes: 64 * 1024 * 1024 }));
    await spool.start();
    const partial = join(dir, 'spool.reserve.new');
    await until(() => existsSync(partial), 'the reserve was started');
    await spool.stop();
    assert.deepEqual(openIn(dir), [], 'a file of the spool directory is still open');
    assert.equal(existsSync(partial), false, 'a partial reserve is left behind');
    rmSync(dir, { recursive: true });
    assert.equal(existsSync(dir), false);
  });

  test('made in full after start when stop() does not interrupt it, and made once', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'uplink-reserve-'));
    const reserve = new DiskReserve(dir, 3 * 1024 * 1024 + 5);
    await reserve.ensure();
    assert.equal(statSync(join(dir, 'spool.reserve')).size, 3 * 1024 * 1024 + 5);
    const made = statSync(join(dir, 'spool.reserve')).mtimeMs;
    await reserve.ensure();
    assert.equal(statSync(join(dir, 'spool.reserve')).mtimeMs, made, 'not written again');
    assert.equal(reserve.release(), true);
    assert.equal(existsSync(join(dir, 'spool.reserve')), false);
    await reserve.stop();
    await reserve.ensure();
    assert.equal(existsSync(join(dir, 'spool.reserve')), false, 'not made again once stopped');
    rmSync(dir, { recursive: true });
  });

  test('free space: what statfs says an unprivileged writer may use; unknown (Infinity) when it cannot tell', () => {
    const dir = mkdtempSync(join(tmpdir(), 'uplink-free-'));
    const s = statfsSync(dir);
    // Another tenant may write meanwhile: compare within a few megabytes.
    assert.ok(Math.abs(freeBytes(dir) - s.bavail * s.bsize) < 64 * 1024 * 1024);
    assert.equal(freeBytes(join(dir, 'missing', 'deeper')), Number.POSITIVE_INFINITY);
    rmSync(dir, { recursive: true });
  });

  test('a reserve that cannot be made (the directory is gone) fails quietly and leaves nothing', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'uplink-reserve-'));
    rmSync(dir, { recursive: true });
    const reserve = new DiskReserve(dir, 1024);
    await reserve.ensure();
    assert.equal(reserve.present, false);
    assert.equal(existsSync(dir), false);
  });
});

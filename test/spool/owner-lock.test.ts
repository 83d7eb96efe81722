/**
 * One spool directory, one owner: a second spool on the same dataDir (in this process, or in
 * another) is refused with SPOOL_IN_USE, since both would send the same readings; the lock goes
 * with its owner, also when the owner is killed with SIGKILL.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { after, describe, test } from 'node:test';
import { SqliteSpool } from '../../src/spool/sqlite/sqlite-spool.js';
import { spoolOptions } from './options.js';
import { reading } from './contract.js';

const CHILD = fileURLToPath(new URL('./crash-child.ts', import.meta.url));
const dirs: string[] = [];
after(async () => { for (const dir of dirs) await rm(dir, { recursive: true, force: true }); });

async function dataDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'uplink-owner-'));
  dirs.push(dir);
  return dir;
}

function inUse(dir: string) {
  return (err: { code?: string; retryable?: boolean; message?: string }): boolean => {
    assert.equal(err.code, 'SPOOL_IN_USE');
    assert.equal(err.retryable, false);
    assert.ok(err.message?.includes(dir), err.message);
    return true;
  };
}

describe('spool owner lock', () => {
  test('a second spool on the same directory in this process is refused until the first stops', async () => {
    const dir = await dataDir();
    const first = new SqliteSpool(spoolOptions(dir));
    await first.start();
    await first.append([reading('q', 'kept')]);
    const second = new SqliteSpool(spoolOptions(dir));
    await assert.rejects(second.start(), inUse(dir));
    await first.stop();
    await second.start();
    try {
      assert.equal(second.stats().depth, 1, 'the reading of the first owner is there');
    } finally {
      await second.stop();
    }
  });

  test('another process owning the directory is refused; killed with SIGKILL, its lock is gone', async () => {
    const dir = await dataDir();
    const child = spawn(process.execPath, ['--import', 'tsx', CHILD, dir, 'owner'], { stdio: ['ignore', 'pipe', 'inherit'] });
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    try {
      const lines = createInterface({ input: child.stdout! });
      await new Promise<void>((resolve, reject) => {
        // The first id printed: the owner holds the lock and has committed a reading.
        lines.on('line', (line) => { if (line !== 'ready') resolve(); });
        child.once('exit', (code) => reject(new Error(`the owner exited early (${code})`)));
      });
      const spool = new SqliteSpool(spoolOptions(dir));
      await assert.rejects(spool.start(), inUse(dir));
      child.kill('SIGKILL');
      await exited;
      await spool.start();
      try {
        assert.ok(spool.stats().depth > 0, 'what the killed owner committed is there');
      } finally {
        await spool.stop();
      }
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }
  });
});

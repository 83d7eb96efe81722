import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import Database from 'better-sqlite3';
import { SqliteSpool } from '../../src/spool/sqlite/sqlite-spool.js';
import { spoolFile } from '../../src/spool/sqlite/database.js';
import { spoolOptions } from './options.js';

const CHILD = fileURLToPath(new URL('./crash-child.ts', import.meta.url));
const RUNS = 20;

/** Ids the child must have reported before the kill is armed: each run then crashes a spool in full swing. */
const WARM = 12;

/**
 * Runs the child until it has reported WARM appended ids and appended for `afterMs` more, then
 * SIGKILLs it; returns the ids it reported. (Armed at the first id, a slow machine, arm64 under
 * qemu with the other core busy, saw runs killed after one append or none.)
 */
async function appendAndKill(dataDir: string, run: number, afterMs: number): Promise<string[]> {
  const child = spawn(process.execPath, ['--import', 'tsx', CHILD, dataDir, String(run)], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  let armed = false;
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    out += chunk;
    if (!armed && (out.match(/:/g)?.length ?? 0) >= WARM * 3) {
      armed = true;
      setTimeout(() => child.kill('SIGKILL'), afterMs);
    }
  });
  const [code, signal] = await new Promise<[number | null, string | null]>((resolve) => child.once('exit', (c, s) => resolve([c, s])));
  assert.equal(signal, 'SIGKILL', `child ended by itself (${code}) instead of being killed`);
  return out.split('\n').filter((line) => line.includes(':'));
}

test(`kill -9 during heavy appends, ${RUNS} times: every resolved append survives, once, in order per address`, async () => {
  const dataDir = await mkdtemp(join(tmpdir(), 'uplink-crash-'));
  const acknowledged = new Set<string>();
  let lastStats = '';
  for (let run = 0; run < RUNS; run++) {
    const ids = await appendAndKill(dataDir, run, 20 + Math.floor(Math.random() * 400));
    for (const id of ids) acknowledged.add(id);

    // Recovery: the spool opens on what the crash left behind...
    const spool = new SqliteSpool(spoolOptions(dataDir));
    await spool.start();
    const stats = spool.stats();
    await spool.stop();

    // ...and the rows are exactly right.
    const db = new Database(spoolFile(dataDir), { readonly: true });
    const rows = db.prepare('SELECT r.id, t.address FROM readings r JOIN targets t ON t.id = r.target ORDER BY r.seq').all() as Array<{ id: string; address: string }>;
    const totals = db.prepare('SELECT t.address, t.depth, (SELECT count(*) FROM readings r WHERE r.target = t.id) AS actual FROM targets t').all() as Array<{ address: string; depth: number; actual: number }>;
    db.close();

    const stored = new Set(rows.map((r) => r.id));
    assert.equal(stored.size, rows.length, `run ${run}: a reading is stored twice`);
    const lost = [...acknowledged].filter((id) => !stored.has(id));
    assert.deepEqual(lost, [], `run ${run}: ${lost.length} acknowledged readings lost`);
    for (const { address, depth, actual } of totals) assert.equal(depth, actual, `run ${run}: depth of ${address} is ${depth}, rows ${actual}`);
    assert.equal(stats.depth, rows.length);

    // Order per address: the sequence numbers a writer used only ever go up.
    const lastOf = new Map<string, [number, number, number]>();
    for (const { id, address } of rows) {
      const [r, , n, i] = id.split(':').map(Number) as [number, string, number, number];
      const prev = lastOf.get(address);
      if (prev !== undefined) {
        const [pr, pn, pi] = prev;
        assert.ok(r > pr || (r === pr && (n > pn || (n === pn && i > pi))), `run ${run}: ${id} stored after ${prev.join(':')} on ${address}`);
      }
      lastOf.set(address, [r, n, i]);
    }
    lastStats = `${rows.length} rows, ${acknowledged.size} acknowledged`;
  }
  assert.ok(acknowledged.size > RUNS * 10, `too few appends to mean anything: ${lastStats}`);
});

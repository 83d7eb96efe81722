/**
 * Spool benchmark (not a test: nothing here asserts a time). Everything is measured side by side
 * with raw better-sqlite3 in the same run, on the same disk, and reported as ratios.
 *
 *   node --import tsx bench/spool.ts [--quick]
 *
 * 1. appends/s of 100-byte readings at batch sizes 1, 10, 100, 1000 (one batch in flight), against
 *    raw INSERTs into a table of the same columns, one transaction per batch, WAL, synchronous=FULL;
 * 2. group commit: 64 concurrent single-reading appenders;
 * 3. drain (lease 100 + ack) readings/s;
 * 4. commits on the main thread or in a worker: raw inserts either way, with the event loop's p99
 *    delay while they run (what MQTT clients would wait for);
 * 5. bytes written to disk per reading (/proc/self/io write_bytes);
 * 6. start time and RSS with 0 and 1,000,000 readings spooled (each in a fresh child process).
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import Database from 'better-sqlite3';
import type { RoutedReading } from '../src/core/envelope.js';
import { SqliteSpool } from '../src/spool/sqlite/sqlite-spool.js';
import { spoolOptions } from '../test/spool/options.js';

const quick = process.argv.includes('--quick');
const PAYLOAD = Buffer.alloc(100, 0x61);
const dirs: string[] = [];
const tempDir = (): string => {
  const dir = mkdtempSync(join(process.env.BENCH_DIR ?? tmpdir(), 'uplink-bench-'));
  dirs.push(dir);
  return dir;
};

let serial = 0;
function readings(n: number, address = 'q'): RoutedReading[] {
  return Array.from({ length: n }, () => {
    serial += 1;
    return { id: `bench-${serial}`, topic: 'sensor/line1/temperature', payload: PAYLOAD, receivedAt: Date.now(), address, priority: 4 };
  });
}

function writeBytes(): number {
  const match = /write_bytes: (\d+)/.exec(readFileSync('/proc/self/io', 'utf8'));
  return Number(match?.[1] ?? 0);
}

const RAW_DDL = 'CREATE TABLE readings (seq INTEGER PRIMARY KEY, id TEXT, target INTEGER, priority INTEGER, topic TEXT, payload BLOB, received_at INTEGER, expires_at INTEGER, attempts INTEGER DEFAULT 0)';

function rawInserts(total: number, batch: number): { rate: number; bytesPerReading: number } {
  const db = new Database(join(tempDir(), 'raw.db'));
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  db.exec(RAW_DDL);
  const insert = db.prepare('INSERT INTO readings (id, target, priority, topic, payload, received_at) VALUES (?, 1, 4, ?, ?, ?)');
  const tx = db.transaction((rows: RoutedReading[]) => { for (const r of rows) insert.run(r.id, r.topic, r.payload, r.receivedAt); });
  const written = writeBytes();
  const start = performance.now();
  for (let done = 0; done < total; done += batch) tx(readings(batch));
  const seconds = (performance.now() - start) / 1000;
  const bytesPerReading = (writeBytes() - written) / total;
  db.close();
  return { rate: total / seconds, bytesPerReading };
}

async function spoolAppends(total: number, batch: number): Promise<{ rate: number; bytesPerReading: number }> {
  const spool = new SqliteSpool(spoolOptions(tempDir()));
  await spool.start();
  const written = writeBytes();
  const start = performance.now();
  for (let done = 0; done < total; done += batch) await spool.append(readings(batch));
  const seconds = (performance.now() - start) / 1000;
  const bytesPerReading = (writeBytes() - written) / total;
  await spool.stop();
  return { rate: total / seconds, bytesPerReading };
}

async function concurrentAppends(total: number, writers: number): Promise<{ rate: number; perCommit: number; p99DelayMs: number }> {
  const spool = new SqliteSpool(spoolOptions(tempDir()));
  await spool.start();
  const delay = monitorEventLoopDelay({ resolution: 1 });
  delay.enable();
  const commits = spool.stats().commits;
  const start = performance.now();
  await Promise.all(Array.from({ length: writers }, async () => {
    for (let i = 0; i < total / writers; i++) await spool.append(readings(1));
  }));
  const seconds = (performance.now() - start) / 1000;
  delay.disable();
  const result = { rate: total / seconds, perCommit: total / (spool.stats().commits - commits), p99DelayMs: delay.percentile(99) / 1e6 };
  await spool.stop();
  return result;
}

async function drain(total: number): Promise<number> {
  const spool = new SqliteSpool(spoolOptions(tempDir(), { durability: 'full' }));
  await spool.start();
  for (let done = 0; done < total; done += 1000) await spool.append(readings(1000));
  const start = performance.now();
  for (;;) {
    const leased = await spool.lease('q', 100);
    if (leased.length === 0) break;
    await spool.ack(leased.map((r) => r.seq));
  }
  const seconds = (performance.now() - start) / 1000;
  await spool.stop();
  return total / seconds;
}

const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.sqlite);
const db = new Database(workerData.file);
db.pragma('journal_mode = WAL'); db.pragma('synchronous = FULL');
db.exec(workerData.ddl);
const insert = db.prepare('INSERT INTO readings (id, target, priority, topic, payload, received_at) VALUES (?, 1, 4, ?, ?, ?)');
const tx = db.transaction((rows) => { for (const r of rows) insert.run(r.id, r.topic, Buffer.from(r.payload), r.receivedAt); });
parentPort.on('message', (rows) => { tx(rows); parentPort.postMessage(rows.length); });
`;

/** Raw commits of `batch` readings, on the main thread or in a worker, while the event loop is watched. */
async function mainOrWorker(total: number, batch: number, where: 'main' | 'worker'): Promise<{ rate: number; p99DelayMs: number }> {
  const file = join(tempDir(), 'raw.db');
  const delay = monitorEventLoopDelay({ resolution: 1 });
  // Something that wants the event loop all along, as MQTT sockets would.
  const ticker = setInterval(() => {}, 1);
  let rate: number;
  if (where === 'main') {
    const db = new Database(file);
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = FULL');
    db.exec(RAW_DDL);
    const insert = db.prepare('INSERT INTO readings (id, target, priority, topic, payload, received_at) VALUES (?, 1, 4, ?, ?, ?)');
    const tx = db.transaction((rows: RoutedReading[]) => { for (const r of rows) insert.run(r.id, r.topic, r.payload, r.receivedAt); });
    delay.enable();
    const start = performance.now();
    for (let done = 0; done < total; done += batch) {
      tx(readings(batch));
      await new Promise((r) => setImmediate(r));
    }
    rate = total / ((performance.now() - start) / 1000);
    db.close();
  } else {
    const worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { file, ddl: RAW_DDL, sqlite: fileURLToPath(import.meta.resolve('better-sqlite3')) } });
    delay.enable();
    const start = performance.now();
    for (let done = 0; done < total; done += batch) {
      worker.postMessage(readings(batch).map((r) => ({ ...r, payload: new Uint8Array(r.payload) })));
      await new Promise((r) => worker.once('message', r));
    }
    rate = total / ((performance.now() - start) / 1000);
    await worker.terminate();
  }
  delay.disable();
  clearInterval(ticker);
  return { rate, p99DelayMs: delay.percentile(99) / 1e6 };
}

async function fillSpool(dir: string, depth: number): Promise<void> {
  const spool = new SqliteSpool(spoolOptions(dir, { durability: 'normal', groupCommitMs: 0 }));
  await spool.start();
  const addresses = ['/queue/a', '/queue/b', '/queue/c', '/queue/d'];
  for (let done = 0; done < depth; done += 10_000) {
    await Promise.all(addresses.map((a) => spool.append(readings(2500, a))));
  }
  await spool.stop();
}

const CHILD = `
import { SqliteSpool } from ${JSON.stringify(new URL('../src/spool/sqlite/sqlite-spool.ts', import.meta.url).href)};
import { spoolOptions } from ${JSON.stringify(new URL('../test/spool/options.ts', import.meta.url).href)};
const before = process.memoryUsage().rss;
const start = performance.now();
const spool = new SqliteSpool(spoolOptions(process.argv[1]));
await spool.start();
const startMs = performance.now() - start;
const stats = spool.stats();
const leased = await spool.lease('/queue/a', 100);
console.log(JSON.stringify({ startMs, rssMb: process.memoryUsage().rss / 1e6, rssGrowthMb: (process.memoryUsage().rss - before) / 1e6, depth: stats.depth, leased: leased.length }));
await spool.stop();
`;

/** Start time and RSS of a fresh process that opens the spool in `dir`. */
function measureStart(dir: string): { startMs: number; rssMb: number; rssGrowthMb: number; depth: number } {
  const out = execFileSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', CHILD, dir], { encoding: 'utf8' });
  return JSON.parse(out.trim().split('\n').at(-1)!) as { startMs: number; rssMb: number; rssGrowthMb: number; depth: number };
}

const fmt = (n: number): string => Math.round(n).toLocaleString('en-US');

async function main(): Promise<void> {
  const total = quick ? 5_000 : 50_000;
  console.log(`spool benchmark (${quick ? 'quick' : 'full'}), ${new Date().toISOString()}, node ${process.version}`);
  console.log('\n1. appends/s, 100-byte readings, one batch in flight, every commit fsynced (median of 3 alternating rounds)');
  console.log('batch     raw inserts/s   spool appends/s   ratio   bytes written/reading (raw, spool)');
  for (const batch of [1, 10, 100, 1000]) {
    const n = batch === 1 ? Math.min(total, 3000) : batch === 10 ? Math.min(total, 20_000) : total;
    // Alternate the two, three rounds each, and keep the median: the disk and the other tenants drift.
    const rounds: Array<{ raw: { rate: number; bytesPerReading: number }; spool: { rate: number; bytesPerReading: number } }> = [];
    for (let round = 0; round < 3; round++) rounds.push({ raw: rawInserts(n, batch), spool: await spoolAppends(n, batch) });
    const median = <T extends { rate: number }>(xs: T[]): T => [...xs].sort((a, b) => a.rate - b.rate)[1]!;
    const raw = median(rounds.map((r) => r.raw));
    const spool = median(rounds.map((r) => r.spool));
    console.log(`${String(batch).padEnd(9)} ${fmt(raw.rate).padStart(13)}   ${fmt(spool.rate).padStart(15)}   ${(spool.rate / raw.rate).toFixed(2).padStart(5)}   ${fmt(raw.bytesPerReading)}, ${fmt(spool.bytesPerReading)}`);
  }

  console.log('\n2. group commit: 64 concurrent appenders of one reading each');
  const group = await concurrentAppends(Math.min(total, 20_000), 64);
  console.log(`appends/s ${fmt(group.rate)}, readings per commit ${group.perCommit.toFixed(1)}, event-loop delay p99 ${group.p99DelayMs.toFixed(1)} ms`);

  console.log('\n3. drain (lease 100 + ack), durability full');
  console.log(`readings/s ${fmt(await drain(total))}`);

  console.log('\n4. commits on the main thread or in a worker (raw inserts, event loop watched)');
  console.log('batch   main rate   main p99 delay   worker rate   worker p99 delay');
  for (const batch of [10, 100, 1000]) {
    const n = batch === 10 ? Math.min(total, 10_000) : total;
    const main = await mainOrWorker(n, batch, 'main');
    const worker = await mainOrWorker(n, batch, 'worker');
    console.log(`${String(batch).padEnd(7)} ${fmt(main.rate).padStart(9)}   ${main.p99DelayMs.toFixed(1).padStart(11)} ms   ${fmt(worker.rate).padStart(11)}   ${worker.p99DelayMs.toFixed(1).padStart(13)} ms`);
  }

  const depth = quick ? 100_000 : 1_000_000;
  console.log(`\n5. start time and RSS of a fresh process: empty spool vs ${fmt(depth)} readings spooled`);
  const empty = tempDir();
  await fillSpool(empty, 0);
  const full = tempDir();
  const fillStart = performance.now();
  await fillSpool(full, depth);
  console.log(`(filled ${fmt(depth)} in ${((performance.now() - fillStart) / 1000).toFixed(1)} s)`);
  const e = measureStart(empty);
  const f = measureStart(full);
  console.log(`depth ${fmt(e.depth).padStart(9)}: start ${e.startMs.toFixed(0)} ms, RSS ${e.rssMb.toFixed(0)} MB (+${e.rssGrowthMb.toFixed(1)} MB while opening)`);
  console.log(`depth ${fmt(f.depth).padStart(9)}: start ${f.startMs.toFixed(0)} ms, RSS ${f.rssMb.toFixed(0)} MB (+${f.rssGrowthMb.toFixed(1)} MB while opening)`);
  console.log(`RSS ratio full/empty ${(f.rssMb / e.rssMb).toFixed(2)}`);
}

try {
  await main();
} finally {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
}

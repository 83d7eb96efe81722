/**
 * Serial ingest benchmark (not a test: nothing here asserts a time). Lines/s from one socat pty
 * into the spool through SerialIngest, against reading the same kind of pty with serialport alone
 * (counting newlines) in the same run, reported as a ratio.
 *
 *   node --import tsx bench/serial.ts [--quick]
 *
 * The writer is a separate process (`cat` of a prepared file into the pty), so it does not share
 * the event loop with the reader being measured.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SerialPort } from 'serialport';
import { SerialIngest } from '../src/ingest/serial/index.js';
import { SerialPortSchema } from '../src/config/serial-schema.js';
import { Router } from '../src/route/router.js';
import { SqliteSpool } from '../src/spool/sqlite/sqlite-spool.js';
import { memoryLogger } from '../test/peers/memory-log.js';
import { spoolOptions } from '../test/spool/options.js';

const quick = process.argv.includes('--quick');
const LINES = quick ? 20_000 : 100_000;
const dir = mkdtempSync(join(process.env.BENCH_DIR ?? tmpdir(), 'uplink-bench-serial-'));
const input = join(dir, 'lines.txt');
writeFileSync(input, Array.from({ length: LINES }, (_, i) => `sensor-${i % 8} temperature ${(20 + (i % 100) / 10).toFixed(1)} seq=${i}\n`).join(''));

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

async function socat(name: string): Promise<{ device: string; writer: string; child: ChildProcess }> {
  const device = join(dir, name);
  const writer = `${device}.w`;
  const child = spawn('socat', [`pty,raw,echo=0,link=${device}`, `pty,raw,echo=0,link=${writer}`], { stdio: 'ignore' });
  while (!existsSync(device) || !existsSync(writer)) await sleep(10);
  return { device, writer, child };
}

function feed(writer: string): ChildProcess {
  return spawn('sh', ['-c', 'cat "$0" > "$1"', input, writer], { stdio: 'ignore' });
}

async function until(condition: () => boolean): Promise<void> {
  while (!condition()) await sleep(2);
}

async function baseline(): Promise<number> {
  const pty = await socat('baseline');
  const port = new SerialPort({ path: pty.device, baudRate: 115200, autoOpen: false });
  await new Promise<void>((resolve, reject) => port.open((err) => (err ? reject(err) : resolve())));
  let lines = 0;
  port.on('data', (chunk: Buffer) => {
    for (let i = chunk.indexOf(10); i >= 0; i = chunk.indexOf(10, i + 1)) lines += 1;
  });
  const start = performance.now();
  feed(pty.writer);
  await until(() => lines >= LINES);
  const seconds = (performance.now() - start) / 1000;
  await new Promise<void>((resolve) => port.close(() => resolve()));
  pty.child.kill();
  return LINES / seconds;
}

async function uplink(durability: 'full' | 'normal'): Promise<{ rate: number; commits: number }> {
  const pty = await socat(`uplink-${durability}`);
  const spool = new SqliteSpool(spoolOptions(mkdtempSync(join(dir, 'spool-')), { durability }));
  await spool.start();
  const ingest = new SerialIngest({
    ports: [SerialPortSchema.parse({ name: 'bench', path: pty.device, baudRate: 115200, topic: 'sensor/{port}' })],
    spool, log: memoryLogger().log, router: new Router({ routes: [{ topic: '#', address: '/queue/telemetry', priority: 4 }] }),
  });
  await ingest.start();
  const start = performance.now();
  feed(pty.writer);
  await until(() => (ingest.stats().ingested['/queue/telemetry'] ?? 0) >= LINES);
  const seconds = (performance.now() - start) / 1000;
  const commits = spool.stats().commits;
  await ingest.stop();
  await spool.stop();
  pty.child.kill();
  return { rate: LINES / seconds, commits };
}

try {
  const raw = await baseline();
  const full = await uplink('full');
  const normal = await uplink('normal');
  console.log(`serial: ${LINES} lines from one pty`);
  console.log(`  serialport alone (count newlines)      ${Math.round(raw).toLocaleString('en')} lines/s`);
  console.log(`  SerialIngest → spool, durability full   ${Math.round(full.rate).toLocaleString('en')} lines/s  (${(full.rate / raw).toFixed(2)}× baseline, ${full.commits} commits)`);
  console.log(`  SerialIngest → spool, durability normal ${Math.round(normal.rate).toLocaleString('en')} lines/s  (${(normal.rate / raw).toFixed(2)}× baseline, ${normal.commits} commits)`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}

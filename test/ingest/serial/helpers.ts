/**
 * Test harness for serial ingest: real pty pairs from socat (one end is the "device" the adapter
 * opens, the other the end the test writes to), the real SerialIngest on a real SqliteSpool in a
 * temporary directory.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, open, rm, type FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SerialPortSchema, type SerialPortInput } from '../../../src/config/serial-schema.js';
import type { Spool } from '../../../src/spool/interface.js';
import { SerialIngest, type SerialPortConfig } from '../../../src/ingest/serial/index.js';
import { Router, type Route } from '../../../src/route/router.js';
import { SqliteSpool, type SqliteSpoolOptions } from '../../../src/spool/sqlite/sqlite-spool.js';
import { memoryLogger } from '../../peers/memory-log.js';
import { leaseAll } from '../../spool/lease-all.js';
import { spoolOptions } from '../../spool/options.js';

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `condition` every 10 ms until it holds; the timeout only bounds a hang, it measures nothing. */
export async function waitFor(condition: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

export async function tempDir(): Promise<string> {
  return mkdtemp(join(tmpdir(), 'uplink-serial-'));
}

/** A socat pty pair: `device` is what the adapter opens, `write()` sends bytes into it. */
export interface PtyPair {
  device: string;
  write(bytes: Buffer | string): Promise<void>;
  /** Kills socat (SIGKILL) and removes both links: the device is unplugged. */
  kill(): Promise<void>;
}

export async function ptyPair(device: string, writerLink = `${device}.w`): Promise<PtyPair> {
  const child: ChildProcess = spawn('socat', ['-d', '-d', `pty,raw,echo=0,link=${device}`, `pty,raw,echo=0,link=${writerLink}`],
    { stdio: ['ignore', 'ignore', 'ignore'] });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  await waitFor(() => existsSync(device) && existsSync(writerLink), `socat links ${device}`, 5000);
  let handle: FileHandle | undefined;
  return {
    device,
    write: async (bytes) => {
      handle ??= await open(writerLink, 'r+');
      const data = Buffer.from(bytes);
      for (let offset = 0; offset < data.length;) {
        const { bytesWritten } = await handle.write(data, offset, data.length - offset);
        offset += bytesWritten;
      }
    },
    kill: async () => {
      await handle?.close().catch(() => undefined);
      handle = undefined;
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
      await rm(device, { force: true });
      await rm(writerLink, { force: true });
    },
  };
}

export const DEFAULT_ROUTES: Route[] = [
  { topic: 'sensor/#', address: '/queue/telemetry', priority: 4 },
  { topic: 'raw/#', address: '/queue/raw', priority: 4 },
];

export function portConfig(input: SerialPortInput): SerialPortConfig {
  return SerialPortSchema.parse(input);
}

export interface Harness {
  ingest: SerialIngest;
  spool: SqliteSpool;
  lines: Array<Record<string, unknown>>;
  /** Everything spooled for `address`, in order (leased). */
  spooled(address?: string): Promise<Array<{ topic: string; payload: string; payloadBytes: Buffer }>>;
  stop(): Promise<void>;
}

export async function startSerial(dir: string, ports: SerialPortInput[], options: {
  routes?: Route[]; spool?: Pick<Spool, 'append'>; reopen?: { baseMs: number; capMs: number }; watchMs?: number;
  spoolOptions?: Partial<SqliteSpoolOptions>; stopGraceMs?: number;
} = {}): Promise<Harness> {
  const { log, lines } = memoryLogger();
  const spool = new SqliteSpool(spoolOptions(join(dir, 'spool'), options.spoolOptions));
  await spool.start();
  const ingest = new SerialIngest({
    ports: ports.map(portConfig), spool: options.spool ?? spool, log, router: new Router({ routes: options.routes ?? DEFAULT_ROUTES }),
    reopen: options.reopen ?? { baseMs: 100, capMs: 400 }, watchMs: options.watchMs ?? 200,
    ...(options.stopGraceMs === undefined ? {} : { stopGraceMs: options.stopGraceMs }),
  });
  await ingest.start();
  return {
    ingest, spool, lines,
    spooled: async (address = '/queue/telemetry') => (await leaseAll(spool, address))
      .map((r) => ({ topic: r.topic, payload: r.payload.toString(), payloadBytes: r.payload })),
    stop: async () => {
      await ingest.stop();
      await spool.stop();
    },
  };
}

export function ingestedTotal(ingest: SerialIngest): number {
  return Object.values(ingest.stats().ingested).reduce((a, b) => a + b, 0);
}

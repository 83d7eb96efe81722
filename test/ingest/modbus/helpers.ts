/**
 * Test harness for Modbus ingest: the real ModbusIngest on a real SqliteSpool in a temporary
 * directory, against the pymodbus slave (slave.ts) over socat ptys or TCP.
 */
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ModbusBusSchema } from '../../../src/config/modbus-schema.js';
import { ModbusIngest, type ModbusBusConfig } from '../../../src/ingest/modbus/index.js';
import { Router, type Route } from '../../../src/route/router.js';
import { SqliteSpool } from '../../../src/spool/sqlite/sqlite-spool.js';
import { memoryLogger } from '../../peers/memory-log.js';
import { spoolOptions } from '../../spool/options.js';
import type { z } from 'zod';

export { until } from '../../peers/until.js';

/** `promise`, or a failure after `ms` (a bound on a hang, not a measurement). */
export async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([promise, new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`${what}: still pending after ${ms} ms`)), ms); })]);
  } finally {
    clearTimeout(timer);
  }
}

export async function tempDir(): Promise<string> {
  return mkdtemp(join(tmpdir(), 'uplink-modbus-'));
}

/** A bus as the schema produces it (so a drift between schema and module types fails the type check). */
export function busConfig(input: z.input<typeof ModbusBusSchema>): ModbusBusConfig {
  return ModbusBusSchema.parse(input);
}

export const ROUTES: Route[] = [{ topic: 'factory/#', address: '/queue/modbus', priority: 4 }];

export interface Reading {
  topic: string;
  body: { value: unknown; unit?: string; quality: 'good' | 'bad'; error?: string; time: string };
}

export interface Harness {
  ingest: ModbusIngest;
  spool: SqliteSpool;
  lines: Array<Record<string, unknown>>;
  /** Every reading spooled so far, in order (read without taking them). */
  readings(): Reading[];
  /** Readings of one topic. */
  of(topic: string): Reading[];
  stop(): Promise<void>;
}

export async function startModbus(dir: string, buses: ModbusBusConfig[], options: {
  routes?: Route[]; reopen?: { baseMs: number; capMs: number }; highWater?: number;
  /** Every append waits for this first (a spool that does not keep up); it is told how many readings wait in it. */
  gate?: (readings: number, signal: AbortSignal | undefined) => Promise<void>;
  stopGraceMs?: number;
} = {}): Promise<Harness> {
  const { log, lines } = memoryLogger();
  const spool = new SqliteSpool(spoolOptions(join(dir, 'spool')));
  await spool.start();
  const appended: Reading[] = [];
  // The spool as the ingest sees it, recording what was committed, in order.
  const recording = {
    append: async (readings: Parameters<SqliteSpool['append']>[0], opts?: Parameters<SqliteSpool['append']>[1]) => {
      await options.gate?.(readings.length, opts?.signal);
      await spool.append(readings, opts);
      for (const r of readings) appended.push({ topic: r.topic, body: JSON.parse(r.payload.toString()) as Reading['body'] });
    },
  };
  const ingest = new ModbusIngest({
    buses, spool: recording, log, router: new Router({ routes: options.routes ?? ROUTES }),
    reopen: options.reopen ?? { baseMs: 100, capMs: 400 },
    ...(options.highWater === undefined ? {} : { highWater: options.highWater }),
    ...(options.stopGraceMs === undefined ? {} : { stopGraceMs: options.stopGraceMs }),
  });
  await ingest.start();
  return {
    ingest, spool, lines,
    readings: () => [...appended],
    of: (topic) => appended.filter((r) => r.topic === topic),
    stop: async () => {
      await ingest.stop();
      await spool.stop();
    },
  };
}

/**
 * Modbus polling benchmark (not a test: nothing here asserts a time). Against pymodbus
 * (python3-pymodbus, a separate process):
 *
 * 1. One RTU bus at 115200 baud on a socat pty: polls/s through ModbusIngest (every reading
 *    decoded, routed and committed to the spool), with the spec's inter-frame delay (1.75 ms
 *    above 19200 baud) and without it, against modbus-serial's own client alone on the same pty
 *    (its buffered RTU port, a loop of reads). A pty has no baud rate, so the bus's physical
 *    limit is computed: the bits of request and response at 115200 baud, plus the delays.
 * 2. 100 Modbus TCP devices (100 connections, one bus each) polled every 100 ms, and as fast as
 *    they answer.
 *
 * CPU per poll is this process's user + system time over the polls (the slave's is not counted).
 *
 *   node --import tsx bench/modbus.ts [--quick]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ModbusSerial from 'modbus-serial';
import type { ModbusRTU } from 'modbus-serial/ModbusRTU.js';
import { ModbusBusSchema } from '../src/config/modbus-schema.js';
import { ModbusIngest, type ModbusBusConfig } from '../src/ingest/modbus/index.js';
import { Router } from '../src/route/router.js';
import { SqliteSpool } from '../src/spool/sqlite/sqlite-spool.js';
import { memoryLogger } from '../test/peers/memory-log.js';
import { spoolOptions } from '../test/spool/options.js';
import { ptyPair } from '../test/ingest/serial/helpers.js';
import { startSlave } from '../test/ingest/modbus/slave.js';

const quick = process.argv.includes('--quick');
const SECONDS = quick ? 3 : 10;
const dir = mkdtempSync(join(process.env.BENCH_DIR ?? tmpdir(), 'uplink-bench-modbus-'));
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** One read of 2 holding registers: request 8 bytes, response 3 + 4 + 2 = 9 bytes. */
const REQUEST_BYTES = 8;
const RESPONSE_BYTES = 9;

interface Run {
  polls: number;
  seconds: number;
  cpuUsPerPoll: number;
}

async function measure(ingest: ModbusIngest, seconds: number): Promise<Run> {
  const requests = (): number => Object.values(ingest.stats().buses).reduce((n, b) => n + b.requests, 0);
  // Warm-up: connections open, first polls done.
  const warm = Date.now() + 15_000;
  while (requests() < 50 && Date.now() < warm) await sleep(20);
  const r0 = requests();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await sleep(seconds * 1000);
  const polls = requests() - r0;
  const elapsed = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  return { polls, seconds: elapsed, cpuUsPerPoll: (cpu.user + cpu.system) / Math.max(1, polls) };
}

async function withIngest(buses: ModbusBusConfig[], seconds: number): Promise<Run> {
  const spool = new SqliteSpool(spoolOptions(mkdtempSync(join(dir, 'spool-'))));
  await spool.start();
  const ingest = new ModbusIngest({
    buses, spool, log: memoryLogger().log, router: new Router({ routes: [{ topic: '#', address: '/queue/telemetry', priority: 4 }] }),
  });
  await ingest.start();
  try {
    return await measure(ingest, seconds);
  } finally {
    await ingest.stop();
    await spool.stop();
  }
}

async function rtu(): Promise<void> {
  const pty = await ptyPair(join(dir, 'gw'), join(dir, 'slave'));
  const slave = await startSlave({ rtu: join(dir, 'slave'), units: [1] });
  try {
    const bus = (interFrameDelay?: 0): ModbusBusConfig => ModbusBusSchema.parse({
      name: 'rtu', rtu: { path: join(dir, 'gw'), baudRate: 115200, parity: 'even' }, ...(interFrameDelay === undefined ? {} : { interFrameDelay }),
      // Ten points due every 1 ms: the bus always has a poll to send.
      devices: [{ name: 'meter', unitId: 1, interval: '1ms', points: Array.from({ length: 10 }, (_, i) => ({ name: `v${i}`, function: 'holding' as const, address: 2 * i, type: 'float32' as const })) }],
    });
    const spec = await withIngest([bus()], SECONDS);
    const noGap = await withIngest([bus(0)], SECONDS);

    // Baseline: modbus-serial alone, its buffered RTU port, reads in a loop, nothing stored.
    const Client = ModbusSerial as unknown as typeof ModbusRTU;
    const client = new Client();
    await client.connectRTUBuffered(join(dir, 'gw'), { baudRate: 115200, parity: 'even' } as never);
    client.setID(1);
    client.setTimeout(1000);
    for (let i = 0; i < 50; i++) await client.readHoldingRegisters(0, 2);
    let polls = 0;
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    while (performance.now() - t0 < SECONDS * 1000) {
      await client.readHoldingRegisters(0, 2);
      polls += 1;
    }
    const seconds = (performance.now() - t0) / 1000;
    const cpu = process.cpuUsage(cpu0);
    await new Promise<void>((resolve) => client.close(() => resolve()));
    const base: Run = { polls, seconds, cpuUsPerPoll: (cpu.user + cpu.system) / polls };

    // 8E1: 11 bits a character.
    const frameMs = ((REQUEST_BYTES + RESPONSE_BYTES) * 11 * 1000) / 115200;
    const lineOnly = 1000 / frameMs;
    // The spec's silence after the request and after the response (1.75 ms each above 19200 baud).
    const withGaps = 1000 / (frameMs + 2 * 1.75);
    const rate = (run: Run): number => run.polls / run.seconds;
    console.log(`modbus RTU, one bus at 115200 baud 8E1 (a pty), reading 2 registers: request ${REQUEST_BYTES} + response ${RESPONSE_BYTES} bytes`);
    console.log(`  physical limit: bytes alone ${lineOnly.toFixed(0)} polls/s (${frameMs.toFixed(2)} ms a poll); with 2 × 1.75 ms inter-frame silence ${withGaps.toFixed(0)} polls/s`);
    console.log(`  modbus-serial alone (buffered RTU port)      ${rate(base).toFixed(0)} polls/s, ${base.cpuUsPerPoll.toFixed(0)} µs CPU a poll`);
    console.log(`  ModbusIngest → spool, inter-frame 1.75 ms    ${rate(spec).toFixed(0)} polls/s, ${spec.cpuUsPerPoll.toFixed(0)} µs CPU a poll (${(rate(spec) / withGaps).toFixed(2)}× the limit with gaps)`);
    console.log(`  ModbusIngest → spool, no inter-frame delay   ${rate(noGap).toFixed(0)} polls/s, ${noGap.cpuUsPerPoll.toFixed(0)} µs CPU a poll (${(rate(noGap) / lineOnly).toFixed(2)}× the bytes-alone limit, ${(rate(noGap) / rate(base)).toFixed(2)}× modbus-serial alone)`);
  } finally {
    await slave.kill();
    await pty.kill();
  }
}

async function tcp(): Promise<void> {
  const slave = await startSlave({ units: [1] });
  try {
    const buses = (interval: string): ModbusBusConfig[] => Array.from({ length: 100 }, (_, i) => ModbusBusSchema.parse({
      name: `plc${i}`, tcp: { host: '127.0.0.1', port: slave.port },
      devices: [{ name: 'device', unitId: 1, interval, points: [{ name: 'v', function: 'holding', address: 0, type: 'float32' }] }],
    }));
    const paced = await withIngest(buses('100ms'), SECONDS);
    const flat = await withIngest(buses('1ms'), SECONDS);
    console.log('modbus TCP, 100 devices (100 connections to pymodbus), reading 2 registers each');
    console.log(`  every 100 ms (1,000 polls/s asked): ${(paced.polls / paced.seconds).toFixed(0)} polls/s, ${paced.cpuUsPerPoll.toFixed(0)} µs CPU a poll`);
    console.log(`  as fast as they answer:             ${(flat.polls / flat.seconds).toFixed(0)} polls/s, ${flat.cpuUsPerPoll.toFixed(0)} µs CPU a poll`);
  } finally {
    await slave.kill();
  }
}

try {
  await rtu();
  await tcp();
} finally {
  rmSync(dir, { recursive: true, force: true });
}

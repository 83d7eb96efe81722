/**
 * MQTT ingest benchmark (not a test: nothing here asserts a time).
 *
 *   node --import tsx bench/mqtt.ts [--quick] [--seconds N] [--group-commit-ms N] [--durability full|normal]
 *                                  [--only raw|gateway]
 *
 * QoS 1 publishes/s with 4 publishers (mqtt.js), 64 publishes in flight each, 100-byte payloads:
 * - raw: a bare aedes broker (in-memory persistence, TCP_NODELAY, no auth, no spool);
 * - gateway: MqttIngest (frame guard, ACL-free auth `none`, router) on the SQLite spool with
 *   `durability: full` (every commit fsynced) in a temporary directory (BENCH_DIR to choose).
 * The publishers run in a child process so that the broker has its own event loop, as it would
 * in production. Each broker runs twice, alternating (raw, gateway, raw, gateway), and the better
 * run of each counts; the ratio gateway/raw is the figure of merit (target >= 0.8). The p50 and
 * p99 PUBACK latency (publish() to its callback, as the device sees it) are reported too.
 */
import { fork } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Aedes } from 'aedes';
import mqtt from 'mqtt';
import { MqttSchema } from '../src/config/schema.js';
import { MqttIngest } from '../src/ingest/mqtt/index.js';
import { Router } from '../src/route/router.js';
import { SqliteSpool } from '../src/spool/sqlite/sqlite-spool.js';
import { memoryLogger } from '../test/peers/memory-log.js';
import { spoolOptions } from '../test/spool/options.js';

const PUBLISHERS = 4;
const IN_FLIGHT = 64;
const PAYLOAD_BYTES = 100;

interface PublisherResult {
  acked: number;
  seconds: number;
  p50: number;
  p99: number;
}

// ---- the publisher child ---------------------------------------------------------------

async function runPublishers(port: number, warmupS: number, seconds: number): Promise<PublisherResult> {
  const payload = Buffer.alloc(PAYLOAD_BYTES, 0x61);
  const clients = await Promise.all(Array.from({ length: PUBLISHERS }, (_, i) =>
    mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { clientId: `bench-${i}`, clean: true, reconnectPeriod: 0, keepalive: 60 })));
  const latencies: number[] = [];
  let acked = 0;
  let measuring = false;
  let stopped = false;
  const start = performance.now();
  let measureStart = start;
  let measureEnd = 0;
  await new Promise<void>((resolve) => {
    let open = PUBLISHERS * IN_FLIGHT;
    const publishOne = (client: mqtt.MqttClient, topic: string): void => {
      const sent = performance.now();
      client.publish(topic, payload, { qos: 1 }, (err) => {
        if (err) throw err;
        const now = performance.now();
        if (measuring) {
          acked += 1;
          latencies.push(now - sent);
        }
        if (!measuring && !stopped && now - start >= warmupS * 1000) {
          measuring = true;
          measureStart = now;
        }
        if (measuring && !stopped && now - measureStart >= seconds * 1000) {
          stopped = true;
          measureEnd = now;
        }
        if (stopped) {
          open -= 1;
          if (open === 0) resolve();
          return;
        }
        publishOne(client, topic);
      });
    };
    clients.forEach((client, i) => {
      for (let k = 0; k < IN_FLIGHT; k++) publishOne(client, `sensor/bench-${i}/value`);
    });
  });
  await Promise.all(clients.map((c) => c.endAsync()));
  latencies.sort((a, b) => a - b);
  const at = (q: number): number => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? NaN;
  return { acked, seconds: (measureEnd - measureStart) / 1000, p50: at(0.5), p99: at(0.99) };
}

function publishInChild(port: number, warmupS: number, seconds: number): Promise<PublisherResult> {
  return new Promise((resolve, reject) => {
    const child = fork(fileURLToPath(import.meta.url), ['--publisher', String(port), String(warmupS), String(seconds)],
      { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    child.once('message', (message) => resolve(message as PublisherResult));
    child.once('exit', (code) => { if (code !== 0) reject(new Error(`publisher exited with ${code}`)); });
  });
}

// ---- the brokers -----------------------------------------------------------------------

interface Running {
  port: number;
  stop(): Promise<void>;
  describe(): string;
}

async function rawAedes(): Promise<Running> {
  const broker = await Aedes.createBroker();
  const server: Server = createServer((socket) => {
    socket.setNoDelay(true);
    broker.handle(socket);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  return {
    port: typeof address === 'object' && address !== null ? address.port : 0,
    describe: () => '',
    stop: async () => {
      await new Promise<void>((resolve) => broker.close(() => resolve()));
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

const groupArg = process.argv.indexOf('--group-commit-ms');
/** spool.groupCommitMs for the gateway run: 0 (the default) unless --group-commit-ms N. */
const GROUP_COMMIT_MS = groupArg > 0 ? Number(process.argv[groupArg + 1]) : 0;

const durabilityArg = process.argv.indexOf('--durability');
/** spool.durability for the gateway run: full (every commit fsynced, the default) unless --durability normal. */
const DURABILITY = durabilityArg > 0 && process.argv[durabilityArg + 1] === 'normal' ? 'normal' : 'full';

const onlyArg = process.argv.indexOf('--only');
/** --only raw|gateway: one side alone (for a profile), no ratio. */
const ONLY = onlyArg > 0 ? process.argv[onlyArg + 1] : undefined;

async function gateway(): Promise<Running> {
  const dir = mkdtempSync(join(process.env.BENCH_DIR ?? tmpdir(), 'uplink-bench-mqtt-'));
  const spool = new SqliteSpool(spoolOptions(dir, { durability: DURABILITY, groupCommitMs: GROUP_COMMIT_MS }));
  await spool.start();
  const ingest = new MqttIngest({
    config: { ...MqttSchema.parse({}), port: 0 },
    spool,
    router: new Router({ routes: [{ topic: 'sensor/#', address: '/queue/telemetry', priority: 4 }] }),
    log: memoryLogger().log,
  });
  await ingest.start();
  return {
    port: ingest.listening[0]!.port,
    describe: () => {
      const s = spool.stats();
      return `spooled ${s.depth}, commits ${s.commits} (${(s.depth / Math.max(1, s.commits)).toFixed(1)} readings a commit)`;
    },
    stop: async () => {
      await ingest.stop();
      await spool.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function measure(name: string, make: () => Promise<Running>, warmupS: number, seconds: number): Promise<PublisherResult> {
  const broker = await make();
  try {
    const cpu = process.cpuUsage();
    const start = performance.now();
    const result = await publishInChild(broker.port, warmupS, seconds);
    const used = process.cpuUsage(cpu);
    const cpuShare = (used.user + used.system) / 1000 / (performance.now() - start);
    const rate = result.acked / result.seconds;
    console.log(`  ${name.padEnd(8)} ${Math.round(rate).toString().padStart(7)} publishes/s   PUBACK p50 ${result.p50.toFixed(2)} ms  p99 ${result.p99.toFixed(2)} ms   `
      + `broker CPU ${(cpuShare * 100).toFixed(0)}% (incl. publisher start-up)   ${broker.describe()}`);
    return result;
  } finally {
    await broker.stop();
  }
}

async function main(): Promise<void> {
  const quick = process.argv.includes('--quick');
  const secondsArg = process.argv.indexOf('--seconds');
  const seconds = secondsArg > 0 ? Number(process.argv[secondsArg + 1]) : quick ? 2 : 5;
  const warmupS = quick ? 0.5 : 1;
  console.log(`MQTT QoS 1: ${PUBLISHERS} publishers x ${IN_FLIGHT} in flight, ${PAYLOAD_BYTES}-byte payloads, ${seconds} s a run `
    + `(after ${warmupS} s warm-up), spool durability ${DURABILITY}, groupCommitMs ${GROUP_COMMIT_MS}, node ${process.version}`);
  const raw: PublisherResult[] = [];
  const gw: PublisherResult[] = [];
  for (let round = 0; round < 2; round++) {
    if (ONLY !== 'gateway') raw.push(await measure('raw', rawAedes, warmupS, seconds));
    if (ONLY !== 'raw') gw.push(await measure('gateway', gateway, warmupS, seconds));
  }
  if (ONLY !== undefined) return;
  const best = (runs: PublisherResult[]): PublisherResult => runs.reduce((a, b) => (b.acked / b.seconds > a.acked / a.seconds ? b : a));
  const r = best(raw);
  const g = best(gw);
  const rRate = r.acked / r.seconds;
  const gRate = g.acked / g.seconds;
  console.log('');
  console.log(`raw aedes (memory)        ${Math.round(rRate)} publishes/s, PUBACK p50 ${r.p50.toFixed(2)} ms, p99 ${r.p99.toFixed(2)} ms`);
  console.log(`gateway (durable spool)   ${Math.round(gRate)} publishes/s, PUBACK p50 ${g.p50.toFixed(2)} ms, p99 ${g.p99.toFixed(2)} ms`);
  console.log(`ratio gateway/raw         ${(gRate / rRate).toFixed(2)}x (target >= 0.80)`);
}

if (process.argv[2] === '--publisher') {
  const [port, warmupS, seconds] = process.argv.slice(3).map(Number) as [number, number, number];
  const result = await runPublishers(port, warmupS, seconds);
  process.send!(result);
  process.disconnect();
} else {
  await main();
}

/**
 * `uplink demo`: the whole path on one machine, with nothing else installed. A simulated sensor
 * publishes over MQTT to the gateway; the gateway spools every reading and forwards it over
 * AMQP 1.0 to a receiver in the same process. Half-way, the receiver goes away (an upstream
 * outage): readings wait in the spool. It comes back, and the backlog drains. At the end the demo
 * checks that every reading the sensor got a PUBACK for arrived upstream.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig } from '../config/load.js';
import { silentLogger } from '../core/logger.js';
import { Gateway } from '../gateway.js';
import { DemoReceiver } from '../upstream/amqp/demo-receiver.js';
import { SimulatedSensor } from './sensor.js';

export interface DemoOptions {
  /** Length of each phase (normal, outage, recovery) in ms. */
  phaseMs: number;
  out: (line: string) => void;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

export async function runDemo(options: DemoOptions): Promise<number> {
  const { out, phaseMs } = options;
  const dir = await mkdtemp(join(tmpdir(), 'uplink-demo-'));
  const receiver = new DemoReceiver();
  await receiver.start(0);
  const [mqttPort, httpPort] = [await freePort(), await freePort()];
  const config = parseConfig([
    'gatewayId: demo-gw',
    `dataDir: ${JSON.stringify(join(dir, 'data'))}`,
    `mqtt: { host: 127.0.0.1, port: ${mqttPort} }`,
    `http: { host: 127.0.0.1, port: ${httpPort} }`,
    `upstream: { url: "amqp://127.0.0.1:${receiver.port}", sasl: anonymous }`,
    'routes: [{ topic: "sensor/#", address: /queue/telemetry }]',
  ].join('\n'), { source: 'demo', baseDir: dir });
  const gateway = new Gateway(config, silentLogger);
  const sensor = new SimulatedSensor({ url: `mqtt://127.0.0.1:${mqttPort}`, topic: 'sensor/line1/temperature', intervalMs: 100 });
  out(`uplink demo: sensor --MQTT--> gateway (spool in ${dir}) --AMQP 1.0--> receiver on 127.0.0.1:${receiver.port}`);
  const started = Date.now();
  const status = (note = ''): void => {
    const s = gateway.spool.stats();
    const f = gateway.forwarder?.stats();
    const { published, acknowledged } = sensor.counts();
    out(`${((Date.now() - started) / 1000).toFixed(1).padStart(5)}s  published ${String(published).padStart(4)}  ` +
      `on disk (PUBACK) ${String(acknowledged).padStart(4)}  spooled ${String(s.depth).padStart(4)}  ` +
      `forwarded ${String(f?.outcomes.accepted ?? 0).padStart(4)}  received ${String(receiver.counts().unique).padStart(4)}  ` +
      `upstream ${gateway.upstream?.state().connected ? 'up  ' : 'DOWN'}${note === '' ? '' : `  ${note}`}`);
  };
  const ticker = setInterval(() => status(), Math.max(250, phaseMs / 4));
  try {
    await gateway.start();
    await sensor.start();
    await sleep(phaseMs);
    status('<- the receiver goes away: an upstream outage');
    await receiver.stop();
    await sleep(phaseMs);
    status('<- the receiver is back: the backlog drains');
    await receiver.start();
    await sleep(phaseMs);
    await sensor.stop();
    const end = Date.now() + 30_000;
    while (gateway.spool.stats().depth > 0 && Date.now() < end) await sleep(100);
    clearInterval(ticker);
    status('done');
    const { acknowledged } = sensor.counts();
    const { received, unique } = receiver.counts();
    const ok = gateway.spool.stats().depth === 0 && unique >= acknowledged;
    out(ok
      ? `every reading the gateway acknowledged (${acknowledged}) arrived upstream: ${unique} distinct, ${received - unique} sent twice (same message_id, for the upstream to drop)`
      : `LOST READINGS: acknowledged ${acknowledged}, arrived ${unique}, still spooled ${gateway.spool.stats().depth}`);
    return ok ? 0 : 1;
  } finally {
    clearInterval(ticker);
    await sensor.stop().catch(() => {});
    await gateway.stop();
    await receiver.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

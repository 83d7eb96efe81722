/**
 * End-to-end benchmark (not a test): MQTT QoS 1 publishes → the gateway process (`uplink run`,
 * durable spool) → RabbitMQ over TLS + SASL EXTERNAL → a consumer. Reports readings/s and the
 * latency from publish to arrival at the consumer (after the broker accepted it), p50 and p99.
 *
 *   node --import tsx bench/end-to-end.ts [--count N]
 *
 * Publishers and consumer run in this process, so one clock times both ends; the gateway and the
 * broker run in their own processes, as deployed.
 */
import { readFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import mqtt from 'mqtt';
import rhea, { type ConnectionOptions, type EventContext } from 'rhea';
import { payloadOf } from '../test/peers/amqp-consumer.js';
import { makeTestPki } from '../test/peers/certs.js';
import { startGateway } from '../test/peers/gateway.js';
import { startRabbitMq } from '../test/peers/rabbitmq.js';

const countArg = process.argv.indexOf('--count');
const COUNT = countArg > 0 ? Number(process.argv[countArg + 1]) : 40_000;
const PUBLISHERS = 4;
const IN_FLIGHT = 64;
const now = (): number => performance.timeOrigin + performance.now();

const pki = await makeTestPki();
const broker = await startRabbitMq({ pki });
const gw = await startGateway({ config: {
  upstream: { url: `amqps://localhost:${broker.amqpsPort}`, sasl: 'external', tls: { ca: pki.ca.cert, cert: pki.client.cert, key: pki.client.key } },
  routes: [{ topic: 'sensor/#', address: '/queue/bench-e2e' }],
} });
try {
  const latencies: number[] = [];
  let lastArrival = 0;
  const container = rhea.create_container({ id: 'bench-e2e-consumer' });
  const connection = container.connect({
    transport: 'tls', host: '127.0.0.1', port: broker.amqpsPort, servername: 'localhost',
    ca: readFileSync(pki.ca.cert), cert: readFileSync(pki.client.cert), key: readFileSync(pki.client.key),
    enable_sasl_external: true, reconnect: false,
  } as unknown as ConnectionOptions);
  const arrived = new Promise<void>((resolve) => {
    const receiver = connection.open_receiver({ source: { address: '/queue/bench-e2e', durable: 2 }, credit_window: 1000 });
    receiver.on('message', (ctx: EventContext) => {
      const t = now();
      // The payload starts with the publish time; the rest pads it to 100 bytes.
      latencies.push(t - Number(payloadOf(ctx.message!).toString().split(' ')[0]));
      lastArrival = t;
      if (latencies.length === COUNT) resolve();
    });
  });
  await new Promise<void>((resolve) => connection.once('receiver_open', () => resolve()));

  const started = now();
  await Promise.all(Array.from({ length: PUBLISHERS }, async (_, p) => {
    const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${gw.mqttPort}`, { clientId: `bench-${p}` });
    const inFlight = new Set<Promise<unknown>>();
    for (let i = 0; i < COUNT / PUBLISHERS; i++) {
      const stamp = now().toFixed(3);
      const promise = client.publishAsync(`sensor/bench-${p}/value`, `${stamp} ${'x'.repeat(100 - stamp.length - 1)}`, { qos: 1 });
      inFlight.add(promise);
      void promise.finally(() => inFlight.delete(promise));
      if (inFlight.size >= IN_FLIGHT) await Promise.race(inFlight);
    }
    await Promise.all(inFlight);
    await client.endAsync();
  }));
  await arrived;
  connection.close();
  latencies.sort((a, b) => a - b);
  const pct = (p: number): number => latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))]!;
  console.log(`end to end: ${COUNT.toLocaleString('en-US')} QoS 1 publishes (${PUBLISHERS} publishers x ${IN_FLIGHT} in flight, 100-byte payloads) ` +
    '→ gateway (durable spool) → RabbitMQ 3.10 (TLS + SASL EXTERNAL) → consumer');
  console.log(`throughput ${Math.round(COUNT / ((lastArrival - started) / 1000)).toLocaleString('en-US')} readings/s, ` +
    `latency publish → arrival p50 ${pct(0.5).toFixed(1)} ms, p99 ${pct(0.99).toFixed(1)} ms`);
} finally {
  await gw.stop();
  await broker.destroy();
  await rm(pki.dir, { recursive: true, force: true });
}

/**
 * Upstream benchmark (not a test): draining a backlog from the spool to RabbitMQ over TLS + SASL
 * EXTERNAL, against a raw rhea sender to the same broker in the same run, as a ratio.
 *
 *   node --import tsx bench/upstream.ts [--count N]
 *
 * The raw sender sends the same messages (the gateway's own mapping: 100-byte data section,
 * durable, message_id, subject, creation_time, priority, application properties) as fast as its
 * credit allows, at most 2000 unsettled, and waits for every `accepted`. The gateway's pipeline starts with the backlog
 * already spooled and is timed until the spool is empty (every reading accepted and deleted).
 */
import { readFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import rhea, { type ConnectionOptions, type EventContext } from 'rhea';
import { newReadingId } from '../src/core/ids.js';
import { makeTestPki, type TestPki } from '../test/peers/certs.js';
import { startRabbitMq, type RabbitMqPeer } from '../test/peers/rabbitmq.js';
import { startPipeline, until } from '../test/upstream/pipeline.js';
import type { RoutedReading } from '../src/core/envelope.js';
import { toAmqpMessage } from '../src/upstream/amqp/message.js';

const countArg = process.argv.indexOf('--count');
const COUNT = countArg > 0 ? Number(process.argv[countArg + 1]) : 100_000;
const PAYLOAD = Buffer.alloc(100, 0x62);

async function rawSender(broker: RabbitMqPeer, pki: TestPki, address: string, count: number): Promise<number> {
  const container = rhea.create_container({ id: `bench-raw-${Date.now()}` });
  const connection = container.connect({
    transport: 'tls', host: '127.0.0.1', port: broker.amqpsPort, servername: 'localhost',
    ca: readFileSync(pki.ca.cert), cert: readFileSync(pki.client.cert), key: readFileSync(pki.client.key),
    enable_sasl_external: true, reconnect: false,
  } as unknown as ConnectionOptions);
  const start = performance.now();
  await new Promise<void>((resolve, reject) => {
    let sent = 0;
    let accepted = 0;
    const sender = connection.open_sender({ target: { address, durable: 2 } });
    const send = (): void => {
      // Same rule as the gateway: never more queued in rhea than the credit allows.
      // At most 2000 unsettled, like a careful sender: rhea's session buffer holds 2048.
      while (sent < count && sender.sendable() && sent - accepted < 2000) {
        // The very message the gateway sends (same mapping), so the broker does the same work for both.
        sender.send(toAmqpMessage({ id: newReadingId(), topic: 'bench', payload: PAYLOAD, receivedAt: Date.now(), priority: 4 }, 'bench-gw') as never);
        sent += 1;
      }
    };
    sender.on('sendable', send);
    sender.on('accepted', () => {
      accepted += 1;
      if (accepted === count) resolve();
      else if (sent - accepted < 1000) send();
    });
    sender.on('rejected', (ctx: EventContext) => reject(new Error(String(ctx.delivery?.remote_state))));
    connection.on('disconnected', (ctx: EventContext) => reject(new Error(`disconnected ${String(ctx.error)}`)));
  });
  const seconds = (performance.now() - start) / 1000;
  connection.close();
  return count / seconds;
}

async function gatewayDrain(broker: RabbitMqPeer, pki: TestPki, address: string, count: number): Promise<number> {
  // Fill the spool while the upstream points nowhere, then point it at the broker and time the drain.
  const readings: RoutedReading[] = [];
  for (let i = 0; i < count; i++) readings.push({ id: newReadingId(), topic: 'bench', payload: PAYLOAD, receivedAt: Date.now(), address, priority: 4 });
  const filled = await startPipeline({ url: 'amqps://localhost:1', pki });
  for (let i = 0; i < count; i += 1000) await filled.spool.append(readings.slice(i, i + 1000));
  await filled.stop();
  const start = performance.now();
  const drain = await startPipeline({ url: `amqps://localhost:${broker.amqpsPort}`, pki, dataDir: filled.dataDir });
  await until(() => drain.spool.stats().depth === 0, 'the backlog to drain', 600_000);
  const seconds = (performance.now() - start) / 1000;
  await drain.stop();
  return count / seconds;
}

const pki = await makeTestPki();
const broker = await startRabbitMq({ pki });
try {
  console.log(`upstream benchmark: ${COUNT.toLocaleString('en-US')} durable 100-byte readings to RabbitMQ 3.10 over TLS + SASL EXTERNAL, ${new Date().toISOString()}`);
  const rounds: Array<{ raw: number; gateway: number }> = [];
  for (let round = 0; round < 2; round++) {
    const raw = await rawSender(broker, pki, `/queue/bench-raw-${round}`, COUNT);
    const gateway = await gatewayDrain(broker, pki, `/queue/bench-gw-${round}`, COUNT);
    rounds.push({ raw, gateway });
    console.log(`round ${round + 1}: raw rhea sender ${Math.round(raw).toLocaleString('en-US')} msg/s, gateway drain ${Math.round(gateway).toLocaleString('en-US')} readings/s, ratio ${(gateway / raw).toFixed(2)}`);
    await broker.deleteQueue(`bench-raw-${round}`);
    await broker.deleteQueue(`bench-gw-${round}`);
  }
  const raw = Math.max(...rounds.map((r) => r.raw));
  const gateway = Math.max(...rounds.map((r) => r.gateway));
  console.log(`best of ${rounds.length}: raw ${Math.round(raw).toLocaleString('en-US')} msg/s, gateway ${Math.round(gateway).toLocaleString('en-US')} readings/s, ratio ${(gateway / raw).toFixed(2)}`);
} finally {
  await broker.destroy();
  await rm(pki.dir, { recursive: true, force: true });
}

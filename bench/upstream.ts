/**
 * Upstream benchmark (not a test): draining a backlog from the spool to a real broker over TLS with
 * a client certificate, against a raw rhea sender to the same broker in the same run, as a ratio.
 * Each broker of the data-path suite (test/brokers/brokers.ts): RabbitMQ 3.10 and 4.0 with SASL
 * EXTERNAL, ActiveMQ 5.17 with PLAIN, each to a queue in its own address form.
 *
 *   node --import tsx bench/upstream.ts [--broker rabbitmq3|rabbitmq4|activemq|all] [--count N] [--rounds N]
 *
 * The raw sender sends the same messages (the gateway's own mapping: 100-byte data section,
 * durable, message_id, subject, creation_time, priority, application properties) as fast as its
 * credit allows, at most 2000 unsettled, and waits for every `accepted`. The gateway's pipeline starts with the backlog
 * already spooled and is timed until the spool is empty (every reading accepted and deleted).
 *
 * The broker shares the two cores with the sender, and its own speed drifts from one run to the
 * next (queue index, memory, fsyncs), more than the difference measured. So: one short warm-up
 * round of each that does not count, then `--rounds` rounds (default 4) with the order swapped
 * every round, so neither side always meets a fresher broker; the figure of merit is the median
 * of the per-round ratios (target >= 0.9). The CPU time the sending process spends per message is
 * reported for both: it is what the gateway takes away from the broker on a shared machine.
 */
import { readFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import rhea, { type ConnectionOptions, type EventContext } from 'rhea';
import { newReadingId } from '../src/core/ids.js';
import { ALL_BROKERS, ACTIVEMQ, RABBITMQ_3, RABBITMQ_4, type BrokerKind, type BrokerUnderTest } from '../test/brokers/brokers.js';
import { makeTestPki, type TestPki } from '../test/peers/certs.js';
import { startPipeline, until } from '../test/upstream/pipeline.js';
import type { RoutedReading } from '../src/core/envelope.js';
import { toAmqpMessage } from '../src/upstream/amqp/message.js';

const countArg = process.argv.indexOf('--count');
const COUNT = countArg > 0 ? Number(process.argv[countArg + 1]) : 100_000;
const roundsArg = process.argv.indexOf('--rounds');
const ROUNDS = roundsArg > 0 ? Number(process.argv[roundsArg + 1]) : 4;
const brokerArg = process.argv.indexOf('--broker');
const KINDS: Record<string, BrokerKind[]> = { rabbitmq3: [RABBITMQ_3], rabbitmq4: [RABBITMQ_4], activemq: [ACTIVEMQ], all: ALL_BROKERS };
const BROKERS = KINDS[brokerArg > 0 ? process.argv[brokerArg + 1]! : 'all'];
if (BROKERS === undefined) throw new Error(`--broker: one of ${Object.keys(KINDS).join(', ')}`);

interface Run {
  rate: number;
  /** CPU time of this process per message, in microseconds. */
  cpuUs: number;
}

async function timed(count: number, run: () => Promise<void>): Promise<Run> {
  const cpu = process.cpuUsage();
  const start = performance.now();
  await run();
  const seconds = (performance.now() - start) / 1000;
  const used = process.cpuUsage(cpu);
  return { rate: count / seconds, cpuUs: (used.user + used.system) / count };
}
const PAYLOAD = Buffer.alloc(100, 0x62);

async function rawSender(broker: BrokerUnderTest, pki: TestPki, address: string, count: number): Promise<Run> {
  return timed(count, () => rawSend(broker, pki, address, count));
}

async function rawSend(broker: BrokerUnderTest, pki: TestPki, address: string, count: number): Promise<void> {
  const container = rhea.create_container({ id: `bench-raw-${Date.now()}` });
  const connection = container.connect({
    transport: 'tls', host: '127.0.0.1', port: broker.port, servername: 'localhost',
    ca: readFileSync(pki.ca.cert), cert: readFileSync(pki.client.cert), key: readFileSync(pki.client.key),
    reconnect: false,
    ...(broker.login.sasl === 'plain' ? { username: broker.login.username, password: broker.login.password } : { enable_sasl_external: true }),
  } as unknown as ConnectionOptions);
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
  connection.close();
}

async function gatewayDrain(broker: BrokerUnderTest, pki: TestPki, address: string, count: number): Promise<Run> {
  // Fill the spool while the upstream points nowhere, then point it at the broker and time the drain.
  const readings: RoutedReading[] = [];
  for (let i = 0; i < count; i++) readings.push({ id: newReadingId(), topic: 'bench', payload: PAYLOAD, receivedAt: Date.now(), address, priority: 4 });
  const filled = await startPipeline({ url: 'amqps://localhost:1', pki });
  for (let i = 0; i < count; i += 1000) await filled.spool.append(readings.slice(i, i + 1000));
  await filled.stop();
  let drain: Awaited<ReturnType<typeof startPipeline>> | undefined;
  try {
    return await timed(count, async () => {
      drain = await startPipeline({ url: broker.url, pki, dataDir: filled.dataDir, upstream: broker.login });
      // Polled every 50 ms: under 1% of a run of several seconds.
      await until(() => drain!.spool.stats().depth === 0, 'the backlog to drain', 600_000);
    });
  } finally {
    await drain?.stop();
    await rm(dirname(filled.dataDir), { recursive: true, force: true });
  }
}


const median = (values: number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
};
const fmt = (n: number): string => Math.round(n).toLocaleString('en-US');

async function bench(kind: BrokerKind): Promise<void> {
  const pki = await makeTestPki();
  const broker = await kind.start(pki);
  try {
    console.log(`upstream benchmark: ${COUNT.toLocaleString('en-US')} durable 100-byte readings to ${broker.name} over TLS + SASL ${(broker.login.sasl ?? 'external').toUpperCase()}, `
      + `${ROUNDS} rounds after a warm-up, order alternating`);
    const warmup = Math.max(1000, Math.round(COUNT / 10));
    const queue = (name: string): Promise<string> => broker.queue(name);
    const drop = async (name: string): Promise<void> => { await broker.deleteQueue?.(name); };
    await rawSender(broker, pki, await queue('bench-warm-raw'), warmup);
    await gatewayDrain(broker, pki, await queue('bench-warm-gw'), warmup);
    await drop('bench-warm-raw');
    await drop('bench-warm-gw');
    const rounds: Array<{ raw: Run; gateway: Run }> = [];
    for (let round = 0; round < ROUNDS; round++) {
      const rawAddress = await queue(`bench-raw-${round}`);
      const gatewayAddress = await queue(`bench-gw-${round}`);
      const runRaw = (): Promise<Run> => rawSender(broker, pki, rawAddress, COUNT);
      const runGateway = (): Promise<Run> => gatewayDrain(broker, pki, gatewayAddress, COUNT);
      let raw: Run;
      let gateway: Run;
      if (round % 2 === 0) {
        raw = await runRaw();
        gateway = await runGateway();
      } else {
        gateway = await runGateway();
        raw = await runRaw();
      }
      rounds.push({ raw, gateway });
      console.log(`round ${round + 1} (${round % 2 === 0 ? 'raw first' : 'gateway first'}): raw rhea sender ${fmt(raw.rate)} msg/s (${raw.cpuUs.toFixed(1)} us CPU each), `
        + `gateway drain ${fmt(gateway.rate)} readings/s (${gateway.cpuUs.toFixed(1)} us CPU each), ratio ${(gateway.rate / raw.rate).toFixed(2)}`);
      await drop(`bench-raw-${round}`);
      await drop(`bench-gw-${round}`);
    }
    const ratios = rounds.map((r) => r.gateway.rate / r.raw.rate);
    const bestRaw = Math.max(...rounds.map((r) => r.raw.rate));
    const bestGateway = Math.max(...rounds.map((r) => r.gateway.rate));
    console.log(`${broker.name}: median ratio ${median(ratios).toFixed(2)} (target >= 0.9; per round ${ratios.map((r) => r.toFixed(2)).join(', ')}); `
      + `best of ${ROUNDS}: raw ${fmt(bestRaw)} msg/s, gateway ${fmt(bestGateway)} readings/s (${(bestGateway / bestRaw).toFixed(2)}); `
      + `CPU per message, median: raw ${median(rounds.map((r) => r.raw.cpuUs)).toFixed(1)} us, gateway ${median(rounds.map((r) => r.gateway.cpuUs)).toFixed(1)} us`);
  } finally {
    await broker.destroy();
    await rm(pki.dir, { recursive: true, force: true });
  }
}

for (const kind of BROKERS) await bench(kind);

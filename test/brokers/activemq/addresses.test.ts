/**
 * ActiveMQ Classic's address forms through the real upstream: `queue://Q` (a queue, made by its
 * first producer) and `topic://T` (a topic: only subscribers attached at the time get a message).
 */
import { readFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { after, before, describe, test } from 'node:test';
import rhea, { type ConnectionOptions, type EventContext, type Message } from 'rhea';
import { startActiveMq, type ActiveMqPeer } from '../../peers/activemq.js';
import { consume } from '../../peers/amqp-consumer.js';
import { makeTestPki, type TestPki } from '../../peers/certs.js';
import { readings, startPipeline } from '../../upstream/pipeline.js';
import { PLAIN_USER } from '../brokers.js';
import { assertInOrder, waitFor } from '../data-path.js';

let pki: TestPki;
let broker: ActiveMqPeer;
const plain = { username: PLAIN_USER.name, password: PLAIN_USER.password };

before(async () => {
  pki = await makeTestPki();
  broker = await startActiveMq({ pki, users: [PLAIN_USER] });
});

after(async () => {
  await broker?.destroy();
  if (pki !== undefined) await rm(pki.dir, { recursive: true, force: true });
});

/** A topic subscriber, attached (and so receiving) before the resolve. */
async function subscribe(address: string): Promise<{ messages: Message[]; close(): void }> {
  const connection = rhea.create_container({ id: `topic-sub-${Date.now()}` }).connect({
    transport: 'tls', host: '127.0.0.1', port: broker.amqpsPort, servername: 'localhost',
    ca: readFileSync(pki.ca.cert), cert: readFileSync(pki.client.cert), key: readFileSync(pki.client.key),
    reconnect: false, ...plain,
  } as unknown as ConnectionOptions);
  connection.on('disconnected', () => undefined);
  const messages: Message[] = [];
  const receiver = connection.open_receiver({ source: { address }, credit_window: 100 });
  receiver.on('message', (ctx: EventContext) => { messages.push(ctx.message!); });
  await new Promise<void>((resolve, reject) => {
    receiver.once('receiver_open', () => resolve());
    connection.once('connection_error', (ctx: EventContext) => reject(new Error(String(ctx.connection.error))));
  });
  return { messages, close: () => connection.close() };
}

describe('ActiveMQ 5.17 address forms', () => {
  test('queue://Q: a queue with a dotted name, drained in order', async () => {
    const pipe = await startPipeline({ url: `amqps://localhost:${broker.amqpsPort}`, pki, upstream: { sasl: 'plain', ...plain } });
    const sent = readings(100, 'queue://plant.line1.temp', 'q');
    try {
      await pipe.spool.append(sent);
      await waitFor(pipe, () => pipe.spool.stats().depth === 0, 'the spool to drain');
    } finally {
      await pipe.stop();
    }
    assertInOrder(await consume({ host: '127.0.0.1', port: broker.amqpsPort, pki, plain, address: 'queue://plant.line1.temp', count: 100 }),
      sent.map((r) => r.id), 'queue://plant.line1.temp');
  });

  test('topic://T: a subscriber attached first gets every reading, in order', async () => {
    const subscriber = await subscribe('topic://alerts');
    const pipe = await startPipeline({ url: `amqps://localhost:${broker.amqpsPort}`, pki, upstream: { sasl: 'plain', ...plain } });
    const sent = readings(100, 'topic://alerts', 't');
    try {
      await pipe.spool.append(sent);
      await waitFor(pipe, () => pipe.spool.stats().depth === 0, 'the spool to drain');
      await waitFor(pipe, () => subscriber.messages.length >= 100, 'the subscriber to get every reading');
      assertInOrder(subscriber.messages, sent.map((r) => r.id), 'topic://alerts');
    } finally {
      subscriber.close();
      await pipe.stop();
    }
  });
});

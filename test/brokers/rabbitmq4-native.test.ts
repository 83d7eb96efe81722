/**
 * What RabbitMQ 4's native AMQP 1.0 does differently from the 3.x plugin, against a real 4.0 node
 * (test/peers/rabbitmq4.ts): v2 addresses that must exist, a missing queue ending the session
 * (amqp:not-found), a deleted queue detaching the link (amqp:resource-deleted), unroutable
 * messages released, reject-publish rejected, the session window closed during an alarm, and a
 * message size limit. The node runs with max_message_size = 1 MiB (the default is 16 MiB) so that
 * an oversized reading stays cheap.
 */
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { after, before, describe, test } from 'node:test';
import mqtt from 'mqtt';
import { Router } from '../../src/route/router.js';
import { consume, payloadOf } from '../peers/amqp-consumer.js';
import { makeTestPki, type TestPki } from '../peers/certs.js';
import { startGateway } from '../peers/gateway.js';
import type { RabbitMqPeer } from '../peers/rabbitmq.js';
import { startRabbitMq4 } from '../peers/rabbitmq4.js';
import { readings, startPipeline, until, type Pipeline } from '../upstream/pipeline.js';
import { assertInOrder, waitFor } from './data-path.js';

const MAX_MESSAGE_SIZE = 1024 * 1024;

let pki: TestPki;
let broker: RabbitMqPeer;
const url = (): string => `amqps://localhost:${broker.amqpsPort}`;
const pipes: Pipeline[] = [];

before(async () => {
  pki = await makeTestPki();
  broker = await startRabbitMq4({ pki, config: [`max_message_size = ${MAX_MESSAGE_SIZE}`] });
});

after(async () => {
  for (const pipe of pipes) await pipe.stop().catch(() => undefined);
  await broker?.destroy();
  if (pki !== undefined) await rm(pki.dir, { recursive: true, force: true });
});

async function pipeline(options: Partial<Parameters<typeof startPipeline>[0]> = {}): Promise<Pipeline> {
  const pipe = await startPipeline({ url: url(), pki, ...options });
  pipes.push(pipe);
  return pipe;
}

const v2 = (queue: string): string => `/queues/${encodeURIComponent(queue)}`;
const read = (queue: string, count: number) =>
  consume({ host: '127.0.0.1', port: broker.amqpsPort, pki, address: v2(queue), count });

/** Log lines of the sender link of `address` being closed by the broker, with this condition. */
const linkClosed = (pipe: Pipeline, address: string, condition: string): number =>
  pipe.lines.filter((l) => l.msg === 'upstream closed the sender link' && l.address === address && l.condition === condition).length;

describe('RabbitMQ 4.0 addresses', () => {
  test('v2: /queues/Q and /exchanges/X/KEY, names percent-encoded by the route templates', async () => {
    await broker.importDefinitions({
      queues: [{ name: 'line 1%ü', vhost: '/', durable: true, auto_delete: false, arguments: {} },
        { name: 'hall telemetry', vhost: '/', durable: true, auto_delete: false, arguments: {} }],
      exchanges: [{ name: 'plant data', vhost: '/', type: 'direct', durable: true, auto_delete: false, internal: false, arguments: {} }],
      bindings: [{ source: 'plant data', vhost: '/', destination: 'hall telemetry', destination_type: 'queue', routing_key: 'hall 2.temp°C', arguments: {} }],
    });
    const router = new Router({ routes: [
      { topic: 'line/+', address: '/queues/{2}', priority: 4 },
      { topic: 'plant/+/+', address: '/exchanges/plant%20data/{2}.{3}', priority: 4 },
    ] });
    const routed = (topic: string, i: number) =>
      router.route({ id: `${topic}#${i}-${Date.now()}`, topic, payload: Buffer.from(`${topic} ${i}`), receivedAt: Date.now() })!;
    const toQueue = Array.from({ length: 50 }, (_, i) => routed('line/line 1%ü', i));
    const toExchange = Array.from({ length: 50 }, (_, i) => routed('plant/hall 2/temp°C', i));
    assert.equal(toQueue[0]!.address, '/queues/line%201%25%C3%BC');
    assert.equal(toExchange[0]!.address, '/exchanges/plant%20data/hall%202.temp%C2%B0C');
    const pipe = await pipeline();
    await pipe.spool.append([...toQueue, ...toExchange]);
    await waitFor(pipe, () => pipe.spool.stats().depth === 0, 'the spool to drain');
    assertInOrder(await read('line 1%ü', 50), toQueue.map((r) => r.id), 'queue named with a space, a % and a ü');
    assertInOrder(await read('hall telemetry', 50), toExchange.map((r) => r.id), 'through the exchange, by the encoded key');
  });

  test('v1 (deprecated): /queue/Q declares the queue, /exchange/X/KEY routes', async () => {
    await broker.importDefinitions({
      queues: [{ name: 'v1-bound', vhost: '/', durable: true, auto_delete: false, arguments: {} }],
      bindings: [{ source: 'amq.direct', vhost: '/', destination: 'v1-bound', destination_type: 'queue', routing_key: 'v1key', arguments: {} }],
    });
    const pipe = await pipeline();
    const toQueue = readings(30, '/queue/v1-declared', 'v1q');
    const toExchange = readings(30, '/exchange/amq.direct/v1key', 'v1x');
    await pipe.spool.append([...toQueue, ...toExchange]);
    await waitFor(pipe, () => pipe.spool.stats().depth === 0, 'the spool to drain');
    assertInOrder(await read('v1-declared', 30), toQueue.map((r) => r.id), '/queue/v1-declared');
    assertInOrder(await read('v1-bound', 30), toExchange.map((r) => r.id), '/exchange/amq.direct/v1key');
  });
});

describe('RabbitMQ 4.0: a target that does not exist, or goes away', () => {
  test('a missing queue: refused at attach (amqp:not-found), other addresses keep flowing, and it recovers once declared', async () => {
    await broker.declareQueue('present');
    const pipe = await pipeline();
    const present = readings(200, v2('present'), 'ok');
    const absent = readings(20, v2('absent'), 'wait');
    await pipe.spool.append(absent.slice(0, 10));
    await pipe.spool.append(present);
    await pipe.spool.append(absent.slice(10));
    await waitFor(pipe, () => pipe.forwarder.stats().outcomes.accepted >= 200, 'the other address to drain');
    assertInOrder(await read('present', 200), present.map((r) => r.id), 'present');
    await waitFor(pipe, () => pipe.lines.some((l) => l.address === v2('absent') && l.condition === 'amqp:not-found'),
      'a log line naming the refused address and amqp:not-found');
    assert.equal(pipe.spool.stats().depth, 20, 'the refused readings wait in the spool');
    assert.equal(pipe.upstream.state().reconnects, 0, 'the connection itself was kept');

    await broker.declareQueue('absent');
    await waitFor(pipe, () => pipe.spool.stats().depth === 0, 'the refused address to recover without a restart');
    assertInOrder(await read('absent', 20), absent.map((r) => r.id), 'absent, once declared');
  });

  test('a missing queue shows in /readyz with its address, and clears once the queue exists', async () => {
    await broker.declareQueue('ready-present');
    const gw = await startGateway({ config: {
      upstream: { url: url(), sasl: 'external', tls: { ca: pki.ca.cert, cert: pki.client.cert, key: pki.client.key } },
      routes: [{ topic: 'ok/#', address: v2('ready-present') }, { topic: 'missing/#', address: v2('ready-absent') }],
    } });
    const readyz = async (): Promise<{ ready: boolean; conditions: Record<string, { ready: boolean; reason?: string }> }> =>
      (await fetch(`http://127.0.0.1:${gw.httpPort}/readyz`)).json() as never;
    try {
      const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${gw.mqttPort}`);
      await client.publishAsync('ok/1', 'a', { qos: 1 });
      await client.publishAsync('missing/1', 'b', { qos: 1 });
      await client.endAsync();
      await gw.waitForLog((l) => l.condition === 'amqp:not-found', 30_000);
      await until(async () => {
        const body = await readyz();
        return !body.ready && Object.values(body.conditions).some((c) => !c.ready && (c.reason ?? '').includes(v2('ready-absent')));
      }, 'a /readyz reason naming the refused address', 30_000);
      await broker.declareQueue('ready-absent');
      await until(async () => (await readyz()).ready, '/readyz ready again once the queue exists', 60_000);
      assert.equal((await read('ready-absent', 1)).length, 1);
    } finally {
      await gw.stop();
    }
  });

  test('a queue deleted under the link (amqp:resource-deleted): later readings wait, and flow once it is back', async () => {
    await broker.declareQueue('deleted');
    const pipe = await pipeline();
    const address = v2('deleted');
    await pipe.spool.append(readings(50, address, 'first'));
    await waitFor(pipe, () => pipe.spool.stats().depth === 0, 'the first readings to drain');
    await broker.deleteQueue('deleted');
    await waitFor(pipe, () => linkClosed(pipe, address, 'amqp:resource-deleted') >= 1, 'the link detached with amqp:resource-deleted');
    const later = readings(40, address, 'later');
    await pipe.spool.append(later);
    await waitFor(pipe, () => pipe.lines.filter((l) => l.address === address && l.condition === 'amqp:not-found').length >= 1,
      'the re-attach refused while the queue is gone');
    assert.equal(pipe.spool.stats().depth, 40, 'readings for the deleted queue wait in the spool');
    await broker.declareQueue('deleted');
    await waitFor(pipe, () => pipe.spool.stats().depth === 0, 'the readings to flow once the queue is back');
    assertInOrder(await read('deleted', 40), later.map((r) => r.id), 'after the queue came back');
  });
});

describe('RabbitMQ 4.0 outcomes', () => {
  test('unroutable is released: kept in the spool, counted, and not resent in a spin while other traffic flows', async () => {
    await broker.declareQueue('beside-unroutable');
    const pipe = await pipeline();
    const unroutable = readings(1, '/exchanges/amq.direct/nobody-bound', 'lost');
    const routable = readings(500, v2('beside-unroutable'), 'fine');
    await pipe.spool.append(unroutable);
    await waitFor(pipe, () => pipe.forwarder.stats().outcomes.released >= 1, 'the unroutable reading to be released');
    await pipe.spool.append(routable);
    await waitFor(pipe, () => pipe.forwarder.stats().outcomes.accepted >= 500, 'the routable readings to drain');
    const released = pipe.forwarder.stats().outcomes.released;
    // A resend on every release is thousands a second over loopback; a backoff per address is a few.
    assert.ok(released <= 10, `the unroutable reading was released ${released} times while 500 others drained`);
    assert.equal(pipe.forwarder.stats().released['/exchanges/amq.direct/nobody-bound'], released, 'counted by address');
    assert.equal(pipe.spool.stats().depth, 1, 'the released reading stays in the spool');
    assert.equal(pipe.spool.stats().deadLetters, 0);
    assert.equal(pipe.forwarder.stats().outcomes.modified, 0, 'RabbitMQ 4 never sends modified');
    assertInOrder(await read('beside-unroutable', 500), routable.map((r) => r.id), 'beside the unroutable address');
  });

  test('a full queue with reject-publish rejects: those readings are dead-lettered with the reason, the rest delivered', async () => {
    await broker.declareQueue('bounded', { 'x-max-length': 3, 'x-overflow': 'reject-publish' });
    const pipe = await pipeline();
    const sent = readings(5, v2('bounded'), 'b');
    await pipe.spool.append(sent);
    await waitFor(pipe, () => pipe.spool.stats().depth === 0, 'every reading settled for good');
    assert.equal(pipe.forwarder.stats().outcomes.rejected, 2);
    const dead = pipe.spool.deadLetters.list();
    assert.deepEqual(dead.map((d) => d.id).sort(), sent.slice(3).map((r) => r.id).sort());
    assert.ok(dead.every((d) => d.reason.condition !== undefined && d.reason.condition.length > 0), JSON.stringify(dead.map((d) => d.reason)));
    assert.equal(await broker.queueDepth('bounded'), 3);
    assertInOrder(await read('bounded', 3), sent.slice(0, 3).map((r) => r.id), 'bounded');
  });
});

describe('RabbitMQ 4.0 flow control and sizes', () => {
  test('a disk alarm (session window 0): nothing is accepted meanwhile, the readings wait, and drain when it clears', async () => {
    await broker.declareQueue('alarm');
    const pipe = await pipeline();
    const address = v2('alarm');
    const before = readings(10, address, 'before');
    await pipe.spool.append(before);
    await waitFor(pipe, () => pipe.spool.stats().depth === 0, 'the first readings to drain');
    const alarms = async (): Promise<string> => broker.ctl(['eval', 'rabbit_alarm:get_alarms().']);
    try {
      await broker.ctl(['set_disk_free_limit', '1000000GB']);
      await waitFor(pipe, async () => /disk/.test(await alarms()), 'the disk alarm', 60_000);
      // The broker shuts the session window: the link offers no credit, though its link credit stays.
      await waitFor(pipe, () => pipe.upstream.credit() === 0, 'the session window to shut');
      const during = readings(300, address, 'during');
      // The forwarder hears of the append before it resolves, finds no credit, and leases nothing.
      await pipe.spool.append(during);
      assert.equal(pipe.spool.stats().inFlight, 0, 'readings leased (taken out of the spool) during the alarm');
      assert.equal(await broker.queueDepth('alarm'), 10, 'messages got into the queue during the alarm');
      assert.equal(pipe.forwarder.stats().outcomes.accepted, 10);
      assert.equal(pipe.spool.stats().depth, 300);
      assert.equal(pipe.spool.stats().inFlight, 0, 'readings leased (taken out of the spool) during the alarm');
      await broker.ctl(['set_disk_free_limit', '1MB']);
      await waitFor(pipe, async () => !/disk/.test(await alarms()), 'the disk alarm to clear', 60_000);
      await waitFor(pipe, () => pipe.spool.stats().depth === 0, 'the readings to drain after the alarm', 120_000);
      assertInOrder(await read('alarm', 310), [...before, ...during].map((r) => r.id), 'across the alarm');
    } finally {
      await broker.ctl(['set_disk_free_limit', '1MB']).catch(() => undefined);
    }
  });

  test('a reading over the broker\'s max_message_size is dead-lettered with the reason, never resent for ever; the rest flow', async () => {
    await broker.declareQueue('sizes');
    const pipe = await pipeline();
    const address = v2('sizes');
    const small = readings(10, address, 's');
    const [big] = readings(1, address, 'big', { payload: Buffer.alloc(MAX_MESSAGE_SIZE + 512 * 1024, 0x61) });
    await pipe.spool.append(small.slice(0, 5));
    await pipe.spool.append([big!]);
    await pipe.spool.append(small.slice(5));
    await waitFor(pipe, () => pipe.spool.stats().depth === 0 && pipe.spool.stats().deadLetters === 1,
      'the oversized reading dead-lettered and the others delivered', 60_000);
    const [dead] = pipe.spool.deadLetters.list();
    assert.equal(dead!.id, big!.id);
    assert.match(`${dead!.reason.condition} ${dead!.reason.description ?? ''}`, /size/i);
    // Known too large from the broker's attach: never sent (sent, it ends the session and everything in flight with it).
    assert.equal(linkClosed(pipe, address, 'amqp:link:message-size-exceeded'), 0, 'the oversized reading was sent');
    assertInOrder(await read('sizes', 10), small.map((r) => r.id), 'the readings around the oversized one');
  });

  test('a reading larger than the broker\'s frame size (128 KiB) is split into frames and arrives whole', async () => {
    await broker.declareQueue('frames');
    const pipe = await pipeline();
    const payload = Buffer.alloc(600 * 1024);
    for (let i = 0; i < payload.length; i++) payload[i] = (i * 31) & 0xff;
    const [large] = readings(1, v2('frames'), 'large', { payload });
    await pipe.spool.append([large!]);
    await waitFor(pipe, () => pipe.spool.stats().depth === 0, 'the large reading to be accepted');
    const [got] = await read('frames', 1);
    assert.equal(String(got!.message_id), large!.id);
    assert.ok(payloadOf(got!).equals(payload), 'the payload arrived changed');
  });
});

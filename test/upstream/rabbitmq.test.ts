/**
 * The spool draining through the real AMQP upstream into a real RabbitMQ over TLS + SASL EXTERNAL.
 */
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { after, before, describe, test } from 'node:test';
import type { Message } from 'rhea';
import { consume, payloadOf } from '../peers/amqp-consumer.js';
import { makeTestPki, type TestPki } from '../peers/certs.js';
import { startRabbitMq, type RabbitMqPeer } from '../peers/rabbitmq.js';
import { readings, startPipeline, until } from './pipeline.js';

let pki: TestPki;
let broker: RabbitMqPeer;
const PLAIN_USER = { name: 'gw-plain', password: 'correct horse battery staple' };
const url = (): string => `amqps://localhost:${broker.amqpsPort}`;

before(async () => {
  pki = await makeTestPki();
  broker = await startRabbitMq({ pki, passwordUsers: [PLAIN_USER] });
});

after(async () => {
  await broker?.destroy();
  if (pki !== undefined) await rm(pki.dir, { recursive: true, force: true });
});

function assertInOrder(messages: Message[], ids: string[], what: string): void {
  const got = messages.map((m) => String(m.message_id));
  assert.equal(new Set(got).size, got.length, `${what}: duplicates`);
  assert.deepEqual(got, ids, `${what}: not exactly the readings, in order`);
}

describe('AMQP uplink to RabbitMQ (TLS + SASL EXTERNAL)', () => {
  test('a backlog drains exactly once, in order per address, with the mapped properties', async () => {
    const a = readings(1500, '/queue/drain-a', 'a');
    const b = readings(500, '/queue/drain-b', 'b', { priority: 7 });
    const pipe = await startPipeline({ url: url(), pki, properties: { line: 'L1', shift: 2 } });
    try {
      // Interleaved appends, as two devices would produce them.
      for (let i = 0; i < 500; i++) await pipe.spool.append([a[3 * i]!, b[i]!, a[3 * i + 1]!, a[3 * i + 2]!]);
      await until(() => pipe.spool.stats().depth === 0, 'the spool to drain');
      assert.equal(pipe.forwarder.stats().outcomes.accepted, 2000);
    } finally {
      await pipe.stop();
    }
    const gotA = await consume({ host: '127.0.0.1', port: broker.amqpsPort, pki, address: '/queue/drain-a', count: 1500 });
    const gotB = await consume({ host: '127.0.0.1', port: broker.amqpsPort, pki, address: '/queue/drain-b', count: 500 });
    assertInOrder(gotA, a.map((r) => r.id), 'drain-a');
    assertInOrder(gotB, b.map((r) => r.id), 'drain-b');
    const [first] = gotB;
    assert.deepEqual(payloadOf(first!), b[0]!.payload);
    assert.equal(first!.subject, b[0]!.topic);
    assert.equal(first!.durable, true);
    assert.equal(first!.priority, 7);
    assert.equal((first!.creation_time as Date).getTime(), b[0]!.receivedAt);
    assert.deepEqual(first!.application_properties, { line: 'L1', shift: 2, gateway: 'test-gw' });
  });

  test('broker stopped: readings wait in the spool; started again: the backlog drains, nothing lost or reordered', async () => {
    const pipe = await startPipeline({ url: url(), pki });
    const sent: string[] = [];
    try {
      await until(() => pipe.upstream.state().connected, 'connected');
      const first = readings(300, '/queue/outage', 'before');
      await pipe.spool.append(first);
      sent.push(...first.map((r) => r.id));
      await until(() => pipe.spool.stats().depth === 0, 'the first batch to drain');

      await broker.stop();
      await until(() => !pipe.upstream.state().connected, 'the upstream to notice the outage');
      const during = readings(700, '/queue/outage', 'during');
      for (let i = 0; i < during.length; i += 50) await pipe.spool.append(during.slice(i, i + 50));
      sent.push(...during.map((r) => r.id));
      await new Promise((r) => setTimeout(r, 1500));
      assert.equal(pipe.spool.stats().depth, 700, 'readings wait in the spool while the broker is down');
      assert.equal(pipe.upstream.state().lastError?.code, 'UPSTREAM_CONNECTION');

      await broker.start();
      await until(() => pipe.spool.stats().depth === 0, 'the backlog to drain after the broker is back', 90_000);
      assert.ok(pipe.upstream.state().reconnects >= 1);
    } finally {
      await pipe.stop();
    }
    const got = await consume({ host: '127.0.0.1', port: broker.amqpsPort, pki, address: '/queue/outage', count: sent.length });
    assertInOrder(got, sent, 'outage');
  });

  test('a broker restart in the middle of a stream loses nothing', async () => {
    const pipe = await startPipeline({ url: url(), pki });
    const stream = readings(3000, '/queue/restart', 'stream');
    try {
      await until(() => pipe.upstream.state().connected, 'connected');
      const appending = (async () => {
        for (let i = 0; i < stream.length; i += 10) {
          await pipe.spool.append(stream.slice(i, i + 10));
          await new Promise((r) => setTimeout(r, 2));
        }
      })();
      await until(() => pipe.forwarder.stats().outcomes.accepted > 300, 'the stream to be flowing');
      await broker.restart();
      await appending;
      await until(() => pipe.spool.stats().depth === 0, 'the stream to drain after the restart', 90_000);
    } finally {
      await pipe.stop();
    }
    const got = await consume({ host: '127.0.0.1', port: broker.amqpsPort, pki, address: '/queue/restart', count: stream.length });
    const ids = got.map((m) => String(m.message_id));
    const missing = stream.filter((r) => !ids.includes(r.id));
    assert.deepEqual(missing.map((r) => r.id), [], 'every reading arrived');
    // At-least-once: a reading in flight at the moment of the restart may arrive twice (same
    // message_id, for the upstream to drop), but every reading's first arrival is in order.
    const firstSeen = [...new Set(ids)];
    assert.deepEqual(firstSeen, stream.map((r) => r.id), 'first arrivals in order');
  });

  test('a wrong CA and an unknown client CN are refused, logged, and retried without a crash', async () => {
    const wrongCa = await startPipeline({ url: url(), pki, ca: pki.foreignCa.cert });
    const unknown = await startPipeline({ url: url(), pki, client: pki.unknownClient });
    try {
      await until(() => wrongCa.upstream.state().lastError?.code === 'UPSTREAM_TLS', 'the TLS failure');
      await until(() => unknown.upstream.state().lastError?.code === 'UPSTREAM_AUTH', 'the SASL failure', 30_000);
      const attempts = (lines: Array<Record<string, unknown>>, code: string): number =>
        lines.filter((l) => l.code === code && /retrying at the capped interval/.test(String(l.msg))).length;
      await until(() => attempts(wrongCa.lines, 'UPSTREAM_TLS') >= 3, 'TLS retries', 30_000);
      await until(() => attempts(unknown.lines, 'UPSTREAM_AUTH') >= 2, 'auth retries', 30_000);
      assert.equal(unknown.upstream.state().lastError?.condition, 'amqp:unauthorized-access');
      assert.equal(wrongCa.upstream.state().connected, false);
      assert.equal(unknown.upstream.state().connected, false);
    } finally {
      await wrongCa.stop();
      await unknown.stop();
    }
  });

  test('SASL PLAIN: over TLS, and over plain TCP when allowed; a wrong password is refused and retried at the cap', async () => {
    const plain = { sasl: 'plain' as const, username: PLAIN_USER.name, password: PLAIN_USER.password };
    const overTls = await startPipeline({ url: url(), pki, upstream: plain });
    const overTcp = await startPipeline({ url: `amqp://localhost:${broker.amqpPort}`, pki, upstream: { ...plain, urls: [`amqp://localhost:${broker.amqpPort}`] } });
    const wrong = await startPipeline({ url: url(), pki, upstream: { ...plain, password: 'not-the-password-7f3a' } });
    try {
      const tlsReadings = readings(20, '/queue/plain-tls', 'p');
      const tcpReadings = readings(20, '/queue/plain-tcp', 'q');
      await overTls.spool.append(tlsReadings);
      await overTcp.spool.append(tcpReadings);
      await until(() => overTls.spool.stats().depth === 0 && overTcp.spool.stats().depth === 0, 'both spools to drain');
      assertInOrder(await consume({ host: '127.0.0.1', port: broker.amqpsPort, pki, address: '/queue/plain-tls', count: 20 }),
        tlsReadings.map((r) => r.id), 'plain-tls');
      assertInOrder(await consume({ host: '127.0.0.1', port: broker.amqpsPort, pki, address: '/queue/plain-tcp', count: 20 }),
        tcpReadings.map((r) => r.id), 'plain-tcp');
      await until(() => wrong.lines.filter((l) => l.code === 'UPSTREAM_AUTH' && /retrying at the capped interval/.test(String(l.msg))).length >= 2,
        'the refused password to be retried', 30_000);
      assert.equal(wrong.upstream.state().connected, false);
      assert.equal(wrong.upstream.state().lastError?.condition, 'amqp:unauthorized-access');
      assert.ok(!JSON.stringify(wrong.lines).includes('not-the-password-7f3a'), 'the password reached a log line');
    } finally {
      await overTls.stop();
      await overTcp.stop();
      await wrong.stop();
    }
  });
});

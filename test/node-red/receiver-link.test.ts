/**
 * The downlink receiver of AmqpUpstream when the broker refuses its source address, attached
 * again with the waits of the retry policy (linkRetryMs and the cap shortened here):
 * - RabbitMQ 3.10 refuses by ending the link's session (amqp:not-found for /amq/queue/NAME of a
 *   queue that does not exist): the receiver must notice (it gets no link event), keep the error,
 *   and retry, without sessions piling up at the broker (rabbitmqctl list_channels: one channel
 *   per AMQP 1.0 session);
 * - a broker that detaches only the link and keeps the session (the rhea peer here; Artemis and
 *   RabbitMQ 4 do the same): the receiver must end the session itself, or every retry leaves one
 *   more open. Counted on the peer's side at each refusal.
 */
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { after, before, describe, test } from 'node:test';
import { AmqpUpstream } from '../../src/upstream/amqp/amqp-upstream.js';
import { makeTestPki, type TestPki } from '../peers/certs.js';
import { memoryLogger } from '../peers/memory-log.js';
import { startRabbitMq, type RabbitMqPeer } from '../peers/rabbitmq.js';
import { startAmqpPeer } from './amqp-peer.js';
import { until } from './helpers.js';

let pki: TestPki;
let broker: RabbitMqPeer;

before(async () => {
  pki = await makeTestPki();
  broker = await startRabbitMq({ pki });
});
after(async () => {
  await broker?.destroy();
  if (pki !== undefined) await rm(pki.dir, { recursive: true, force: true });
});

const channels = async (): Promise<number> =>
  (await broker.ctl(['list_channels', '-q', '--no-table-headers', 'name'])).split('\n').filter((line) => line.trim() !== '').length;

describe('a refused receiver link', () => {
  test('RabbitMQ ends the session: the error is kept, the link retried, and sessions do not pile up', async () => {
    const upstream = new AmqpUpstream({
      urls: [`amqps://localhost:${broker.amqpsPort}`], sasl: 'external', gatewayId: 'test-refused', log: memoryLogger().log,
      tls: { ca: pki.ca.cert, cert: pki.client.cert, key: pki.client.key }, backoff: { baseMs: 100, capMs: 1000 }, linkRetryMs: 50,
    });
    await upstream.start();
    let refusals = 0;
    const receiver = upstream.receiver({
      address: '/amq/queue/does-not-exist', credit: 5, onDelivery: () => assert.fail('nothing to deliver'),
      onChange: () => { if (receiver.lastError !== undefined && !receiver.attached) refusals += 1; },
    });
    try {
      await until(() => refusals >= 8, 'eight refusals, each retried');
      assert.equal(receiver.attached, false);
      assert.equal(receiver.lastError?.condition, 'amqp:not-found');
      assert.match(receiver.lastError?.message ?? '', /no queue 'does-not-exist'/);
      assert.equal(upstream.state().connected, true, 'a refused link does not take the connection down');
      // At most the attempt under way; without ending the sessions there would be one per refusal,
      // for good. (The session of the last refusal may still be ending while the next attempt
      // begins: two for a moment, seen in CI; so: down to one within a while.)
      let seen = -1;
      await until(async () => (seen = await channels()) <= 1, 'at most one channel at the broker', 10_000)
        .catch(() => assert.fail(`channels at the broker: ${seen}, for 10 s`));
    } finally {
      await receiver.close();
      await upstream.stop();
    }
  });

  test('a broker that detaches only the link: the receiver ends the session before it retries', async () => {
    const peer = await startAmqpPeer({ refuse: { '/queue/refused': { condition: 'amqp:unauthorized-access', description: 'not for you' } } });
    const upstream = new AmqpUpstream({
      urls: [`amqp://127.0.0.1:${peer.port}`], sasl: 'anonymous', gatewayId: 'test-detached', log: memoryLogger().log,
      backoff: { baseMs: 100, capMs: 1000 }, linkRetryMs: 20,
    });
    await upstream.start();
    const receiver = upstream.receiver({ address: '/queue/refused', credit: 5, onDelivery: () => assert.fail('nothing to deliver') });
    try {
      await until(() => peer.openSessionsAtRefusal.length >= 10, 'ten refusals');
      // The sessions of earlier attempts were ended before the next attach (frames keep their
      // order on one connection), so the peer sees one session, the current one, at each refusal.
      assert.deepEqual(peer.openSessionsAtRefusal.slice(0, 10), Array(10).fill(1));
      assert.equal(receiver.lastError?.condition, 'amqp:unauthorized-access');
      assert.equal(peer.containerIds.length, 1, 'one connection throughout');
    } finally {
      await receiver.close();
      await upstream.stop();
      await peer.stop();
    }
  });
});

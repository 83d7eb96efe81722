/**
 * `uplink in` in node-red-node-test-helper (Node-RED 4) against a real RabbitMQ (TLS + SASL
 * EXTERNAL): what the flow gets, settlement only after done(), reject and release on error, the
 * credit window, and the receiver coming back after a broker restart.
 */
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { after, afterEach, before, describe, test } from 'node:test';
import rhea from 'rhea';
import uplinkIn from '../../src/node-red/uplink-in.js';
import uplinkUpstream from '../../src/node-red/uplink-upstream.js';
import { consume, payloadOf } from '../peers/amqp-consumer.js';
import { makeTestPki, type TestPki } from '../peers/certs.js';
import { startRabbitMq, type RabbitMqPeer } from '../peers/rabbitmq.js';
import { declareQueue, publish, queueCounts } from './broker.js';
import { collect, testHelper, until, upstreamSettings, withHooks } from './helpers.js';

const helper = testHelper(4);
const nodes = withHooks(4, uplinkUpstream, uplinkIn);
let pki: TestPki;
let broker: RabbitMqPeer;

before(async () => {
  pki = await makeTestPki();
  broker = await startRabbitMq({ pki });
  await helper.startServer();
});
afterEach(async () => { await helper.unload(); });
after(async () => {
  await helper.stopServer();
  await broker?.destroy();
  if (pki !== undefined) await rm(pki.dir, { recursive: true, force: true });
});

function inFlow(queue: string, settings: Record<string, unknown> = {}, wired = true): object[] {
  return [
    { id: 'f1', type: 'tab' },
    { id: 'cfg', type: 'uplink-upstream', name: 'test', ...upstreamSettings(pki, broker.amqpsPort) },
    { id: 'in', type: 'uplink in', z: 'f1', upstream: 'cfg', address: `/queue/${queue}`, credit: 10, ...settings, wires: wired ? [['end']] : [[]] },
    { id: 'end', type: 'helper', z: 'f1' },
  ];
}

const counts = (queue: string): Promise<{ ready: number; unacked: number } | undefined> => queueCounts(broker, queue);
const settledAll = async (queue: string): Promise<boolean> => {
  const c = await counts(queue);
  return c !== undefined && c.ready === 0 && c.unacked === 0;
};

describe('uplink in', () => {
  test('a command reaches the flow with payload, topic and properties, and is accepted only after done()', async () => {
    await helper.load(nodes, inFlow('cmd-basic'));
    const end = collect(helper.getNode('end'), true);
    await publish(pki, broker.amqpsPort, '/queue/cmd-basic', [{
      message_id: 'cmd-1', subject: 'machine/7/stop', correlation_id: 'corr-1', reply_to: '/queue/replies', content_type: 'application/json',
      application_properties: { priority: 'high', attempt: 1 }, body: rhea.message.data_section(Buffer.from('{"command":"stop","machine":7}')),
    }]);
    await until(() => end.held.length === 1, 'the command in the flow');
    const msg = end.messages[0]!;
    assert.deepEqual(msg.payload, { command: 'stop', machine: 7 });
    assert.equal(msg.topic, 'machine/7/stop');
    assert.deepEqual(msg.properties, { priority: 'high', attempt: 1 });
    const amqp = msg.amqp as Record<string, unknown>;
    assert.equal(amqp.messageId, 'cmd-1');
    assert.equal(amqp.correlationId, 'corr-1');
    assert.equal(amqp.replyTo, '/queue/replies');
    assert.equal(amqp.deliveryCount, 0);
    assert.equal(amqp.redelivered, false);
    assert.equal(amqp.address, '/queue/cmd-basic');
    // Held in the flow: the broker still has it, unacknowledged.
    await until(async () => (await counts('cmd-basic'))?.unacked === 1, 'unacknowledged while the flow holds it');
    assert.deepEqual(await counts('cmd-basic'), { ready: 0, unacked: 1 });
    end.held[0]!();
    await until(() => settledAll('cmd-basic'), 'accepted after done()');
  });

  test('done(err) with "reject": the broker dead-letters it', async () => {
    await broker.ctl(['set_policy', 'cmd-dlx', '^cmd-reject$', '{"dead-letter-exchange":"","dead-letter-routing-key":"cmd-dead"}', '--apply-to', 'queues']);
    await declareQueue(pki, broker.amqpsPort, 'cmd-dead');
    await helper.load(nodes, inFlow('cmd-reject', { onError: 'reject' }));
    helper.getNode('end').on('input', (_msg, _send, done) => done(new Error('unknown command')));
    await publish(pki, broker.amqpsPort, '/queue/cmd-reject', [{ message_id: 'bad-1', body: rhea.message.data_section(Buffer.from('reboot everything')) }]);
    const dead = await consume({ host: '127.0.0.1', port: broker.amqpsPort, pki, address: '/queue/cmd-dead', count: 1 });
    assert.equal(dead.length, 1);
    assert.equal(dead[0]!.message_id, 'bad-1');
    assert.equal(payloadOf(dead[0]!).toString(), 'reboot everything');
    assert.ok(await settledAll('cmd-reject'));
  });

  test('done(err) with "release": the broker delivers it again, and done() then accepts it', async () => {
    await helper.load(nodes, inFlow('cmd-release', { onError: 'release' }));
    const seen: boolean[] = [];
    helper.getNode('end').on('input', (msg, _send, done) => {
      seen.push((msg.amqp as { redelivered: boolean }).redelivered);
      done(seen.length === 1 ? new Error('busy, try again') : undefined);
    });
    await publish(pki, broker.amqpsPort, '/queue/cmd-release', [{ message_id: 'again-1', body: 'retry me' }]);
    await until(() => seen.length === 2, 'a second delivery');
    assert.deepEqual(seen, [false, true]);
    await until(() => settledAll('cmd-release'), 'accepted the second time');
  });

  test('the credit window: no more than `credit` commands in the flow at once', async () => {
    await helper.load(nodes, inFlow('cmd-credit', { credit: 2 }));
    const end = collect(helper.getNode('end'), true);
    await publish(pki, broker.amqpsPort, '/queue/cmd-credit', [0, 1, 2, 3, 4].map((i) => ({ message_id: `c${i}`, body: `command ${i}` })));
    await until(async () => {
      const c = await counts('cmd-credit');
      return c?.unacked === 2 && c.ready === 3;
    }, 'two unacknowledged, three waiting at the broker');
    assert.equal(end.messages.length, 2);
    end.held.shift()!();
    await until(() => end.messages.length === 3, 'a third once one is settled');
    while (end.held.length > 0 || end.messages.length < 5) {
      end.held.shift()?.();
      await new Promise((r) => setImmediate(r));
    }
    await until(() => settledAll('cmd-credit'), 'all accepted');
    assert.deepEqual(end.messages.map((m) => m.payload), ['command 0', 'command 1', 'command 2', 'command 3', 'command 4']);
  });

  test('payload: JSON by content type, UTF-8 text, a Buffer for other bytes, or as chosen', async () => {
    await helper.load(nodes, inFlow('cmd-payload'));
    const end = collect(helper.getNode('end'));
    await publish(pki, broker.amqpsPort, '/queue/cmd-payload', [
      { body: rhea.message.data_section(Buffer.from('plain text')) },
      { body: rhea.message.data_section(Buffer.from([0xff, 0x00, 0xfe])) },
      { body: { an: 'amqp-value' } },
    ]);
    await until(() => end.messages.length === 3, 'three messages');
    assert.equal(end.messages[0]!.payload, 'plain text');
    assert.deepEqual(end.messages[1]!.payload, Buffer.from([0xff, 0x00, 0xfe]));
    assert.deepEqual(end.messages[2]!.payload, { an: 'amqp-value' });
    await helper.unload();

    await helper.load(nodes, inFlow('cmd-payload', { payloadType: 'buffer' }));
    const raw = collect(helper.getNode('end'));
    await publish(pki, broker.amqpsPort, '/queue/cmd-payload', [{ body: rhea.message.data_section(Buffer.from('{"a":1}')) }]);
    await until(() => raw.messages.length === 1, 'one message');
    assert.deepEqual(raw.messages[0]!.payload, Buffer.from('{"a":1}'));
    await until(() => settledAll('cmd-payload'), 'all accepted');
  });

  test('a payload that cannot be decoded is rejected without reaching the flow', async () => {
    await broker.ctl(['set_policy', 'cmd-dlx-json', '^cmd-json$', '{"dead-letter-exchange":"","dead-letter-routing-key":"cmd-json-dead"}', '--apply-to', 'queues']);
    await declareQueue(pki, broker.amqpsPort, 'cmd-json-dead');
    await helper.load(nodes, inFlow('cmd-json', { payloadType: 'json' }));
    const end = collect(helper.getNode('end'));
    await publish(pki, broker.amqpsPort, '/queue/cmd-json', [{ message_id: 'nojson', body: 'not json' }, { message_id: 'json', body: '{"ok":true}' }]);
    await until(() => end.messages.length === 1, 'the good one');
    assert.deepEqual(end.messages[0]!.payload, { ok: true });
    const dead = await consume({ host: '127.0.0.1', port: broker.amqpsPort, pki, address: '/queue/cmd-json-dead', count: 1 });
    assert.equal(dead[0]!.message_id, 'nojson');
  });

  test('an unwired uplink in accepts at once', async () => {
    await helper.load(nodes, inFlow('cmd-unwired', {}, false));
    await publish(pki, broker.amqpsPort, '/queue/cmd-unwired', [{ body: 'nobody listens' }]);
    await until(async () => (await counts('cmd-unwired')) !== undefined, 'the queue');
    await until(() => settledAll('cmd-unwired'), 'accepted');
  });

  test('closing the node gives unsettled commands back; a timeout settles a command the flow never finishes', async () => {
    await helper.load(nodes, inFlow('cmd-close'));
    const end = collect(helper.getNode('end'), true);
    await publish(pki, broker.amqpsPort, '/queue/cmd-close', [{ message_id: 'held', body: 'held in the flow' }]);
    await until(() => end.held.length === 1, 'held');
    await helper.unload();
    await until(async () => (await counts('cmd-close'))?.ready === 1, 'back at the broker after close');

    // A node that never calls done() (as before Node-RED 1.0): only the timeout settles it.
    await helper.load(nodes, inFlow('cmd-close', { timeout: 0.5, onError: 'release' }));
    const seen: unknown[] = [];
    helper.getNode('end').on('input', (msg) => { seen.push(msg.payload); });
    await until(() => seen.length >= 2, 'released by the timeout and delivered again');
    assert.deepEqual(seen.slice(0, 2), ['held in the flow', 'held in the flow']);
  });

  test('an outcome decided just before the flows stop is still written', async () => {
    await helper.load(nodes, inFlow('cmd-flush'));
    const end = collect(helper.getNode('end'), true);
    await publish(pki, broker.amqpsPort, '/queue/cmd-flush', [{ body: 'done right before a redeploy' }]);
    await until(() => end.held.length === 1, 'held');
    end.held[0]!();
    await helper.unload();
    await until(() => settledAll('cmd-flush'), 'accepted, not given back');
  });

  test('the receiver is attached again after the broker restarts', async () => {
    await helper.load(nodes, inFlow('cmd-restart'));
    const end = collect(helper.getNode('end'));
    await publish(pki, broker.amqpsPort, '/queue/cmd-restart', [{ body: 'before' }]);
    await until(() => end.messages.length === 1, 'before the restart');
    await broker.restart();
    await publish(pki, broker.amqpsPort, '/queue/cmd-restart', [{ body: 'after' }]);
    await until(() => end.messages.length === 2, 'after the restart', 90_000);
    assert.deepEqual(end.messages.map((m) => m.payload), ['before', 'after']);
    await until(() => settledAll('cmd-restart'), 'accepted');
  });
});

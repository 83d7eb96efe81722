/**
 * `uplink in` in node-red-node-test-helper (Node-RED 4) against a real RabbitMQ (TLS + SASL
 * EXTERNAL): what the flow gets, settlement only after done(), reject and release on error (the
 * release after a backoff), the credit window (also across a broker restart with commands still
 * in the flow), messages no node receives, the timeout, the status, and the receiver coming back
 * after a broker restart. Every command queue dead-letters into one queue (a policy), so "settled"
 * can tell accepted (the dead-letter queue stays empty) from rejected. The rhea peer shows what
 * RabbitMQ cannot: the condition a rejected delivery carries.
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
import { startAmqpPeer } from './amqp-peer.js';
import { declareQueue, publish, queueCounts } from './broker.js';
import { collect, testHelper, until, upstreamSettings, withHooks } from './helpers.js';

const helper = testHelper(4);
const nodes = withHooks(4, uplinkUpstream, uplinkIn);
let pki: TestPki;
let broker: RabbitMqPeer;

/** Where every command queue dead-letters to, unless a test sets its own policy. */
const DLQ = 'dlq-commands';

before(async () => {
  pki = await makeTestPki();
  broker = await startRabbitMq({ pki });
  await broker.ctl(['set_policy', 'cmd-dlq', '^cmd-', `{"dead-letter-exchange":"","dead-letter-routing-key":"${DLQ}"}`, '--apply-to', 'queues', '--priority', '0']);
  await declareQueue(pki, broker.amqpsPort, DLQ);
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
/** Settled, and none of them rejected: nothing reached the dead-letter queue. */
const acceptedAll = async (queue: string): Promise<boolean> => {
  const c = await counts(queue);
  return c !== undefined && c.ready === 0 && c.unacked === 0 && (await broker.queueDepth(DLQ)) === 0;
};

type StatusCall = { fill?: string; shape?: string; text?: string };
/** What node `id` showed as its status (the helper spies on Node.prototype.status). */
function statusesOf(id: string): StatusCall[] {
  const spy = (helper as unknown as { _NodePrototype: { status: { getCalls(): Array<{ thisValue: { id: string }; args: StatusCall[] }> } } })._NodePrototype.status;
  return spy.getCalls().filter((c) => c.thisValue.id === id).map((c) => c.args[0] ?? {});
}

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
    await until(() => acceptedAll('cmd-basic'), 'accepted after done()');
  });

  test('done(err) with "reject": the broker dead-letters it', async () => {
    await broker.ctl(['set_policy', 'cmd-dlx', '^cmd-reject$', '{"dead-letter-exchange":"","dead-letter-routing-key":"cmd-dead"}', '--apply-to', 'queues', '--priority', '1']);
    await declareQueue(pki, broker.amqpsPort, 'cmd-dead');
    await helper.load(nodes, inFlow('cmd-reject', { onError: 'reject' }));
    helper.getNode('end').on('input', (_msg, _send, done) => done(new Error('unknown command')));
    await publish(pki, broker.amqpsPort, '/queue/cmd-reject', [{ message_id: 'bad-1', body: rhea.message.data_section(Buffer.from('reboot everything')) }]);
    const dead = await consume({ host: '127.0.0.1', port: broker.amqpsPort, pki, address: '/queue/cmd-dead', count: 1 });
    assert.equal(dead.length, 1);
    assert.equal(dead[0]!.message_id, 'bad-1');
    assert.equal(payloadOf(dead[0]!).toString(), 'reboot everything');
    const c = await counts('cmd-reject');
    assert.deepEqual(c, { ready: 0, unacked: 0 });
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
    await until(() => acceptedAll('cmd-release'), 'accepted the second time');
  });

  test('"release" of a command that always fails waits 1 s, then 2 s, ...: no tight redelivery loop', async () => {
    await helper.load(nodes, inFlow('cmd-always-fails', { onError: 'release' }));
    const seen: Array<{ at: number; releases: number; redelivered: boolean }> = [];
    helper.getNode('end').on('input', (msg, _send, done) => {
      const amqp = msg.amqp as { releases: number; redelivered: boolean };
      seen.push({ at: Date.now(), releases: amqp.releases, redelivered: amqp.redelivered });
      done(seen.length < 4 ? new Error('this command never works') : undefined);
    });
    await publish(pki, broker.amqpsPort, '/queue/cmd-always-fails', [{ message_id: 'doomed-1', body: 'fail' }]);
    await until(() => seen.length === 4, 'four deliveries', 60_000);
    // The node's own count of its releases of this message id (the broker's delivery count stays 0).
    assert.deepEqual(seen.map((s) => s.releases), [0, 1, 2, 3]);
    assert.deepEqual(seen.map((s) => s.redelivered), [false, true, true, true]);
    // Lower bounds only (each release waits at least this long after the failure before it), less
    // a little for the event loop's cached clock, against which timers are scheduled.
    const gaps = seen.slice(1).map((s, i) => s.at - seen[i]!.at);
    for (const [i, min] of [1000, 2000, 4000].entries()) assert.ok(gaps[i]! >= min - 20, `gap ${i + 1}: ${gaps[i]} ms, at least ${min} ms`);
    await until(() => acceptedAll('cmd-always-fails'), 'accepted the fourth time');
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
    await until(() => acceptedAll('cmd-credit'), 'all accepted');
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
    await until(() => acceptedAll('cmd-payload'), 'all accepted');
  });

  test('a payload that cannot be decoded is rejected without reaching the flow', async () => {
    await broker.ctl(['set_policy', 'cmd-dlx-json', '^cmd-json$', '{"dead-letter-exchange":"","dead-letter-routing-key":"cmd-json-dead"}', '--apply-to', 'queues', '--priority', '1']);
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
    await until(() => acceptedAll('cmd-unwired'), 'accepted');
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
    await until(() => acceptedAll('cmd-flush'), 'accepted, not given back');
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
    await until(() => acceptedAll('cmd-restart'), 'accepted');
  });

  test('wired only to a disabled node: no node receives it, so it is accepted at once', async () => {
    await helper.load(nodes, [
      { id: 'f1', type: 'tab' },
      { id: 'cfg', type: 'uplink-upstream', name: 'test', ...upstreamSettings(pki, broker.amqpsPort) },
      { id: 'in', type: 'uplink in', z: 'f1', upstream: 'cfg', address: '/queue/cmd-disabled', credit: 1, wires: [['off']] },
      { id: 'off', type: 'helper', z: 'f1', d: true },
    ]);
    // With credit 1, a command that stayed in the flow would hold back the other two.
    await publish(pki, broker.amqpsPort, '/queue/cmd-disabled', [1, 2, 3].map((i) => ({ message_id: `d${i}`, body: `to nobody ${i}` })));
    await until(() => acceptedAll('cmd-disabled'), 'all three accepted');
  });

  test('a node that calls node.error(err, msg) and never done(): "1 waiting" (yellow), then the timeout rejects it', async () => {
    await broker.ctl(['set_policy', 'cmd-dlx-stuck', '^cmd-stuck$', '{"dead-letter-exchange":"","dead-letter-routing-key":"cmd-stuck-dead"}', '--apply-to', 'queues', '--priority', '1']);
    await declareQueue(pki, broker.amqpsPort, 'cmd-stuck-dead');
    await helper.load(nodes, inFlow('cmd-stuck', { timeout: 2, onError: 'reject' }));
    const end = helper.getNode('end');
    let received = 0;
    end.on('input', (msg) => {
      received += 1;
      (end as unknown as { error(err: unknown, msg: unknown): void }).error(new Error('cannot do this one'), msg);
    });
    await publish(pki, broker.amqpsPort, '/queue/cmd-stuck', [{ message_id: 'stuck-1', body: 'never done' }]);
    const dead = await consume({ host: '127.0.0.1', port: broker.amqpsPort, pki, address: '/queue/cmd-stuck-dead', count: 1 });
    assert.equal(dead[0]!.message_id, 'stuck-1');
    assert.equal(received, 1);
    // Waiting from half the timeout (1 s) on, before the timeout (2 s) settled it.
    const shown = statusesOf('in');
    const waiting = shown.findIndex((st) => st.text === 'connected · /queue/cmd-stuck · 1 waiting');
    assert.ok(waiting >= 0, shown.map((st) => st.text).join(' | '));
    assert.equal(shown[waiting]!.fill, 'yellow');
    assert.equal(shown.at(-1)!.text, 'connected · /queue/cmd-stuck', 'back to nothing in the flow');
    assert.equal(shown.at(-1)!.fill, 'green');
    assert.deepEqual(await counts('cmd-stuck'), { ready: 0, unacked: 0 });
  });

  test('after a broker restart, commands still in the flow count against the credit of the new link', async () => {
    await helper.load(nodes, inFlow('cmd-held', { credit: 3, timeout: 0 }));
    const end = collect(helper.getNode('end'), true);
    await publish(pki, broker.amqpsPort, '/queue/cmd-held', [{ message_id: 'h0', body: 'h0' }, { message_id: 'h1', body: 'h1' }]);
    await until(() => end.held.length === 2, 'two commands held in the flow');
    await broker.restart();
    // h0 and h1 are back at the broker (their link went away), and three more arrive.
    await publish(pki, broker.amqpsPort, '/queue/cmd-held', ['h2', 'h3', 'h4'].map((id) => ({ message_id: id, body: id })));
    // Credit 3, two still in the flow: the new link may have one. With the publish confirmed and one
    // delivery made on the new link, the broker has handed out all the credit it got.
    await until(() => end.messages.length >= 3, 'a delivery on the new link', 90_000);
    assert.deepEqual(await counts('cmd-held'), { ready: 4, unacked: 1 });
    assert.equal(end.messages.length, 3);
    // Finishing an old copy (it can no longer be settled) gives its credit to the new link.
    end.held[0]!();
    await until(() => end.messages.length === 4, 'one more for the first old copy finished');
    await until(async () => (await counts('cmd-held'))?.unacked === 2, 'two unacknowledged');
    assert.deepEqual(await counts('cmd-held'), { ready: 3, unacked: 2 });
    end.held[1]!();
    await until(() => end.messages.length === 5, 'one more for the second');
    await until(async () => (await counts('cmd-held'))?.unacked === 3, 'three unacknowledged');
    assert.deepEqual(await counts('cmd-held'), { ready: 2, unacked: 3 });
    end.hold = false;
    for (const done of end.held.splice(2)) done();
    await until(() => acceptedAll('cmd-held'), 'all accepted');
    const ids = end.messages.map((m) => (m.amqp as { messageId: string }).messageId);
    assert.deepEqual(ids.slice(0, 2), ['h0', 'h1']);
    assert.deepEqual([...new Set(ids)].sort(), ['h0', 'h1', 'h2', 'h3', 'h4']);
  });

  test('a source address the broker refuses: the status says "not attached" and why', async () => {
    await helper.load(nodes, [
      { id: 'f1', type: 'tab' },
      { id: 'cfg', type: 'uplink-upstream', name: 'test', ...upstreamSettings(pki, broker.amqpsPort) },
      { id: 'in', type: 'uplink in', z: 'f1', upstream: 'cfg', address: '/amq/queue/does-not-exist', wires: [['end']] },
      { id: 'end', type: 'helper', z: 'f1' },
    ]);
    await until(() => statusesOf('in').some((st) => st.text?.startsWith('not attached') === true), 'a "not attached" status');
    const shown = statusesOf('in').find((st) => st.text?.startsWith('not attached') === true)!;
    assert.equal(shown.fill, 'yellow');
    assert.equal(shown.shape, 'ring');
    assert.match(shown.text!, /^not attached: amqp:not-found \(NOT_FOUND - no queue 'does-not-exist'/);
    assert.ok(!statusesOf('in').some((st) => /spooled/.test(st.text ?? '')), 'no spool depth in the status of uplink in');
  });

  test('an undecodable payload is rejected with amqp:decode-error (seen by the sending peer)', async () => {
    const peer = await startAmqpPeer({ messages: { '/queue/cmd-decode': [{ message_id: 'nojson', body: 'not json' }, { message_id: 'json', body: '{"ok":true}' }] } });
    try {
      await helper.load(nodes, [
        { id: 'f1', type: 'tab' },
        { id: 'cfg', type: 'uplink-upstream', name: 'peer', url: `amqp://127.0.0.1:${peer.port}`, sasl: 'anonymous' },
        { id: 'in', type: 'uplink in', z: 'f1', upstream: 'cfg', address: '/queue/cmd-decode', payloadType: 'json', wires: [['end']] },
        { id: 'end', type: 'helper', z: 'f1' },
      ]);
      const end = collect(helper.getNode('end'));
      await until(() => peer.outcomes.length === 2, 'both settled');
      assert.deepEqual(end.messages.map((m) => m.payload), [{ ok: true }]);
      const rejected = peer.outcomes.find((o) => o.messageId === 'nojson');
      assert.equal(rejected?.kind, 'rejected');
      assert.equal(rejected?.condition, 'amqp:decode-error');
      assert.match(rejected?.description ?? '', /not JSON/);
      assert.equal(peer.outcomes.find((o) => o.messageId === 'json')?.kind, 'accepted');
    } finally {
      await helper.unload();
      await peer.stop();
    }
  });
});

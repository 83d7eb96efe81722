/**
 * `uplink out` and its `uplink-upstream` in node-red-node-test-helper (Node-RED 4), against the
 * real spool and a real RabbitMQ (TLS + SASL EXTERNAL).
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, afterEach, before, describe, test } from 'node:test';
import Database from 'better-sqlite3';
import uplinkOut from '../../src/node-red/uplink-out.js';
import uplinkUpstream, { type UpstreamConfigNode } from '../../src/node-red/uplink-upstream.js';
import { consume, payloadOf } from '../peers/amqp-consumer.js';
import { makeTestPki, type TestPki } from '../peers/certs.js';
import { freePort } from '../peers/ports.js';
import { startRabbitMq, type RabbitMqPeer } from '../peers/rabbitmq.js';
import { collect, testHelper, until, upstreamSettings, withHooks } from './helpers.js';

const helper = testHelper(4);
const nodes = withHooks(4, uplinkUpstream, uplinkOut);
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

/** uplink out wired to Complete, Catch and Status nodes, each feeding a helper node. */
function outFlow(upstream: Record<string, unknown>, extra: object[] = []): object[] {
  return [
    { id: 'f1', type: 'tab' },
    { id: 'cfg', type: 'uplink-upstream', name: 'test', gatewayId: 'nr-gw', ...upstream },
    { id: 'out', type: 'uplink out', z: 'f1', upstream: 'cfg', wires: [] },
    { id: 'on-complete', type: 'complete', z: 'f1', scope: ['out'], uncaught: false, wires: [['completed']] },
    { id: 'completed', type: 'helper', z: 'f1' },
    { id: 'on-catch', type: 'catch', z: 'f1', scope: ['out'], uncaught: false, wires: [['caught']] },
    { id: 'caught', type: 'helper', z: 'f1' },
    { id: 'on-status', type: 'status', z: 'f1', scope: ['out'], wires: [['statuses']] },
    { id: 'statuses', type: 'helper', z: 'f1' },
    ...extra,
  ];
}

const runtimeOf = (): NonNullable<UpstreamConfigNode['uplink']> => {
  const uplink = (helper.getNode('cfg') as unknown as UpstreamConfigNode).uplink;
  assert.ok(uplink, 'the config node has a runtime');
  return uplink;
};

describe('uplink out', () => {
  test('Buffer, string and object payloads arrive upstream as the gateway sends them, routed by topic', async () => {
    await helper.load(nodes, outFlow({
      ...upstreamSettings(pki, broker.amqpsPort),
      routes: [{ topic: 'sensor/+/temperature', address: '/queue/nr-temp' }, { topic: '#', address: '/queue/nr-other' }],
    }));
    const completed = collect(helper.getNode('completed'));
    const out = helper.getNode('out');
    out.receive({ topic: 'sensor/a/temperature', payload: Buffer.from([0, 1, 2, 255]) });
    out.receive({ topic: 'sensor/a/temperature', payload: 'twenty-one' });
    out.receive({ topic: 'line1/state', payload: { running: true, speed: 3 } });
    await until(() => completed.messages.length === 3, 'three completions');

    const temps = await consume({ host: '127.0.0.1', port: broker.amqpsPort, pki, address: '/queue/nr-temp', count: 2 });
    assert.deepEqual(temps.map((m) => payloadOf(m)), [Buffer.from([0, 1, 2, 255]), Buffer.from('twenty-one')]);
    for (const m of temps) {
      assert.equal(m.subject, 'sensor/a/temperature');
      assert.equal(m.durable, true);
      assert.equal(m.application_properties?.gateway, 'nr-gw');
      assert.match(String(m.message_id), /^[0-9a-f-]{36}$/);
      assert.ok(m.creation_time instanceof Date);
    }
    assert.notEqual(temps[0]!.message_id, temps[1]!.message_id);
    const other = await consume({ host: '127.0.0.1', port: broker.amqpsPort, pki, address: '/queue/nr-other', count: 1 });
    assert.deepEqual(JSON.parse(payloadOf(other[0]!).toString()), { running: true, speed: 3 });
    assert.equal(other[0]!.subject, 'line1/state');
  });

  test('done() comes only once the reading is committed: at the Complete node it is in the spool file', async () => {
    // Nothing listens on this port: the reading stays in the spool, where the test can see it.
    const port = await freePort();
    await helper.load(nodes, outFlow({ ...upstreamSettings(pki, port), routes: [{ topic: '#', address: '/queue/held' }] }));
    const uplink = runtimeOf();
    const file = join(uplink.config.dataDir, 'spool.db');
    const inSpool: number[] = [];
    helper.getNode('completed').on('input', (msg, _send, done) => {
      // A second connection sees only committed transactions.
      const db = new Database(file, { readonly: true });
      try {
        inSpool.push((db.prepare('SELECT count(*) AS n FROM readings WHERE payload = ?').get(Buffer.from(String(msg.payload))) as { n: number }).n);
      } finally {
        db.close();
      }
      done();
    });
    const out = helper.getNode('out');
    for (let i = 0; i < 5; i++) out.receive({ topic: 'sensor/x', payload: `reading ${i}` });
    await until(() => inSpool.length === 5, 'five completions');
    assert.deepEqual(inSpool, [1, 1, 1, 1, 1]);
    assert.equal(uplink.spool.stats().depth, 5);
  });

  test('what cannot be stored goes to the Catch node with the reason, and never to Complete', async () => {
    await helper.load(nodes, outFlow({ ...upstreamSettings(pki, broker.amqpsPort), routes: [{ topic: 'sensor/#', address: '/queue/nr-catch' }] }));
    const caught = collect(helper.getNode('caught'));
    const completed = collect(helper.getNode('completed'));
    const out = helper.getNode('out');
    out.receive({ topic: 'elsewhere/x', payload: 'unrouted' });
    out.receive({ topic: 'sensor/x' });
    out.receive({ payload: 'no topic' });
    const circular: Record<string, unknown> = {};
    circular.self = circular;
    out.receive({ topic: 'sensor/x', payload: circular });
    out.receive({ topic: 'sensor/x', payload: 'fine' });
    await until(() => caught.messages.length === 4 && completed.messages.length === 1, 'four caught, one completed');
    // Bad input fails at once; an unrouted topic only once the spool is open.
    const reasons = caught.messages.map((m) => String((m.error as { message: string }).message)).join('\n');
    for (const reason of [/no route matches topic "elsewhere\/x"/, /msg.payload is missing/, /msg.topic must be a non-empty string/, /cannot be sent as JSON/]) {
      assert.match(reasons, reason);
    }
    assert.equal(completed.messages[0]!.payload, 'fine');
    const got = await consume({ host: '127.0.0.1', port: broker.amqpsPort, pki, address: '/queue/nr-catch', count: 1, idleMs: 1000 });
    assert.deepEqual(got.map((m) => payloadOf(m).toString()), ['fine']);
  });

  test('the status shows connected or disconnected, the spool depth and the last error', async () => {
    const port = await freePort();
    await helper.load(nodes, outFlow({ ...upstreamSettings(pki, port), routes: [{ topic: '#', address: '/queue/st' }] }));
    const statuses = collect(helper.getNode('statuses'));
    const texts = (): string[] => statuses.messages.map((m) => String((m.status as { text: string }).text));
    const out = helper.getNode('out');
    out.receive({ topic: 'a', payload: '1' });
    out.receive({ topic: 'a', payload: '2' });
    await until(() => texts().some((t) => /^disconnected · 2 spooled/.test(t)), `a disconnected status with the depth (got ${texts().join(' | ')})`);
    const last = statuses.messages.at(-1)!.status as { fill: string; shape: string; text: string };
    assert.equal(last.fill, 'red');
    assert.equal(last.shape, 'ring');
    assert.match(last.text, /ECONNREFUSED/);
    out.receive({ topic: 'a' });
    await until(() => texts().some((t) => /msg.payload is missing/.test(t)), 'the last error in the status');
    assert.equal((statuses.messages.at(-1)!.status as { fill: string }).fill, 'yellow');
  });

  test('connected status; and close releases the spool: a redeploy against the broker drains what waited', async () => {
    const port = await freePort();
    await helper.load(nodes, outFlow({ ...upstreamSettings(pki, port), spoolDir: 'kept-spool', routes: [{ topic: '#', address: '/queue/nr-kept' }] }));
    const completed = collect(helper.getNode('completed'));
    for (let i = 0; i < 3; i++) helper.getNode('out').receive({ topic: 'kept', payload: `kept ${i}` });
    await until(() => completed.messages.length === 3, 'three stored');
    assert.equal(runtimeOf().config.dataDir, join(helper.userDir, 'kept-spool'));
    await helper.unload();

    await helper.load(nodes, outFlow({ ...upstreamSettings(pki, broker.amqpsPort), spoolDir: 'kept-spool', routes: [{ topic: '#', address: '/queue/nr-kept' }] }));
    const statuses = collect(helper.getNode('statuses'));
    const got = await consume({ host: '127.0.0.1', port: broker.amqpsPort, pki, address: '/queue/nr-kept', count: 3 });
    assert.deepEqual(got.map((m) => payloadOf(m).toString()), ['kept 0', 'kept 1', 'kept 2']);
    await until(() => runtimeOf().spool.stats().depth === 0, 'the spool drained');
    await until(() => statuses.messages.some((m) => /^connected · 0 spooled$/.test(String((m.status as { text: string }).text))), 'a connected status');
    assert.equal((statuses.messages.at(-1)!.status as { fill: string }).fill, 'green');
  });

  test('the spool is under the Node-RED user dir by default, one per config node', async () => {
    const port = await freePort();
    await helper.load(nodes, outFlow({ ...upstreamSettings(pki, port) }));
    const completed = collect(helper.getNode('completed'));
    helper.getNode('out').receive({ topic: 'any', payload: 'x' });
    await until(() => completed.messages.length === 1, 'stored');
    const dir = join(helper.userDir, 'uplink', 'cfg');
    assert.equal(runtimeOf().config.dataDir, dir);
    assert.ok(existsSync(join(dir, 'spool.db')));
  });

  test('invalid settings: the config error shows in the status and every message fails with it', async () => {
    await helper.load(nodes, outFlow({ url: 'amqps://localhost:1', sasl: 'external', cert: join(helper.userDir, 'missing.pem') }));
    const caught = collect(helper.getNode('caught'));
    helper.getNode('out').receive({ topic: 'a', payload: '1' });
    await until(() => caught.messages.length === 1, 'caught');
    const reason = String((caught.messages[0]!.error as { message: string }).message);
    assert.match(reason, /upstream\.tls\.cert: file not found/);
    assert.match(reason, /upstream\.tls\.key: is required/);
    // The status was set while the flow started, before a Status node could listen: read the
    // helper's spy on Node.prototype.status instead.
    const spy = (helper as unknown as { _NodePrototype: { status: { getCalls(): Array<{ thisValue: { id: string }; args: Array<{ text?: string }> }> } } })
      ._NodePrototype.status;
    const shown = spy.getCalls().filter((c) => c.thisValue.id === 'out').map((c) => c.args[0]?.text ?? '');
    assert.ok(shown.some((t) => /uplink-upstream: upstream\.tls\.cert: file not found/.test(t)), shown.join(' | '));
    assert.equal((helper.getNode('cfg') as unknown as UpstreamConfigNode).uplink, undefined);
  });
});

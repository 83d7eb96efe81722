/**
 * Routes, the broker as a normal MQTT 3.1.1 broker for local subscribers (subscriptions, retained
 * messages, wills), the WebSocket listener, and start/stop.
 */
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { after, before, describe, test } from 'node:test';
import mqtt from 'mqtt';
import { MqttIngest } from '../../../src/ingest/mqtt/index.js';
import { Router } from '../../../src/route/router.js';
import { memoryLogger } from '../../peers/memory-log.js';
import {
  CLIENT_DEFAULTS, closed, connectClient, HeldSpool, mqttConfig, publishAsync, sleep, startIngest, waitFor, type Harness,
} from './helpers.js';

const ROUTES = [
  { topic: 'sensor/special/#', address: '/queue/special', priority: 7 },
  { topic: 'sensor/#', address: '/queue/telemetry', priority: 4 },
];

describe('routes', () => {
  let h: Harness;
  before(async () => { h = await startIngest({ routes: ROUTES }); });
  after(async () => { await h.stop(); });

  test('the first route in config order that matches wins; ingested is counted per address', async () => {
    const client = await connectClient(h.url);
    await publishAsync(client, 'sensor/special/x', 'a');
    await publishAsync(client, 'sensor/line1/temp', 'b');
    await publishAsync(client, 'sensor/special', 'c'); // '#' also matches the parent level
    await client.endAsync();
    assert.deepEqual((await h.spooled('/queue/special')).map((r) => [r.payload.toString(), r.priority]), [['a', 7], ['c', 7]]);
    assert.deepEqual((await h.spooled('/queue/telemetry')).map((r) => r.payload.toString()), ['b']);
    assert.deepEqual(h.ingest.stats().ingested, { '/queue/special': 2, '/queue/telemetry': 1 });
  });

  test('one address per device ({N} template): the per-address counts stay bounded (100, the rest under _other)', async () => {
    const perDevice = await startIngest({ routes: [{ topic: 'dev/+/t', address: '/queue/dev-{2}', priority: 4 }] });
    try {
      const client = await connectClient(perDevice.url);
      for (let i = 0; i < 150; i++) await publishAsync(client, `dev/d${i}/t`, 'x');
      await client.endAsync();
      const ingested = perDevice.ingest.stats().ingested;
      assert.equal(Object.keys(ingested).length, 101);
      assert.equal(ingested._other, 50);
      assert.equal(ingested['/queue/dev-d0'], 1);
      assert.equal(Object.values(ingested).reduce((a, b) => a + b, 0), 150);
    } finally {
      await perDevice.stop();
    }
  });

  test('unrouted: drop acknowledges without storing, counted and logged', async () => {
    const depth = h.spool!.stats().depth;
    const client = await connectClient(h.url, { clientId: 'stray' });
    await publishAsync(client, 'elsewhere/t', 'x', 1);
    await publishAsync(client, 'elsewhere/t', 'x', 2);
    assert.ok(client.connected);
    await client.endAsync();
    assert.equal(h.spool!.stats().depth, depth);
    assert.equal(h.ingest.stats().rejected.unrouted, 2);
    assert.ok(h.lines.some((l) => l.level === 'warn' && l.topic === 'elsewhere/t' && l.clientId === 'stray' && /no route/.test(String(l.msg))));
  });

  test('unrouted: refuse closes the connection without a PUBACK, counted and logged', async () => {
    const r = await startIngest({ routes: ROUTES, config: { unrouted: 'refuse' } });
    try {
      const client = await connectClient(r.url, { clientId: 'stray' });
      let acked = false;
      client.publish('elsewhere/t', 'x', { qos: 1 }, () => { acked = true; });
      await closed(client);
      await sleep(50);
      assert.equal(acked, false);
      assert.equal(r.ingest.stats().rejected.unrouted, 1);
      assert.ok(r.lines.some((l) => l.reason === 'unrouted' && l.clientId === 'stray'));
    } finally {
      await r.stop();
    }
  });

  test('a PUBACK for a dropped publish still waits for the commit of the one before it (PUBACKs in order)', async () => {
    const held = new HeldSpool();
    const r = await startIngest({ routes: ROUTES, spool: held });
    try {
      const client = await connectClient(r.url);
      const order: string[] = [];
      const first = publishAsync(client, 'sensor/a', '1').then(() => order.push('stored'));
      const second = publishAsync(client, 'nowhere', '2').then(() => order.push('dropped'));
      await waitFor(() => held.calls.length === 1);
      await sleep(200);
      assert.deepEqual(order, []);
      held.release();
      await Promise.all([first, second]);
      assert.deepEqual(order, ['stored', 'dropped']);
      await client.endAsync();
    } finally {
      await r.stop();
    }
  });
});

describe('a normal broker for local subscribers', () => {
  let h: Harness;
  before(async () => { h = await startIngest({ routes: ROUTES }); });
  after(async () => { await h.stop(); });

  test('a local subscriber receives what devices publish, only after it is stored', async () => {
    const held = new HeldSpool();
    const r = await startIngest({ routes: ROUTES, spool: held });
    try {
      const dashboard = await connectClient(r.url, { clientId: 'dashboard' });
      await dashboard.subscribeAsync('sensor/+/temp', { qos: 1 });
      const messages: Array<[string, string]> = [];
      dashboard.on('message', (topic, payload) => messages.push([topic, payload.toString()]));
      const device = await connectClient(r.url, { clientId: 'device' });
      const sent = publishAsync(device, 'sensor/line1/temp', '22.0');
      await waitFor(() => held.calls.length === 1);
      await sleep(200);
      assert.deepEqual(messages, [], 'delivered before it was stored');
      held.release();
      await sent;
      await waitFor(() => messages.length === 1);
      assert.deepEqual(messages, [['sensor/line1/temp', '22.0']]);
      await Promise.all([dashboard.endAsync(), device.endAsync()]);
    } finally {
      await r.stop();
    }
  });

  test('retained messages reach subscribers that come later; an empty retained message clears it', async () => {
    const device = await connectClient(h.url);
    await new Promise<void>((resolve, reject) => device.publish('sensor/line1/state', 'running', { qos: 1, retain: true }, (e) => (e ? reject(e) : resolve())));
    const late = await connectClient(h.url);
    const got = new Promise<[string, boolean]>((resolve) => late.once('message', (_t, payload, packet) => resolve([payload.toString(), packet.retain])));
    await late.subscribeAsync('sensor/line1/state', { qos: 1 });
    assert.deepEqual(await got, ['running', true]);
    await new Promise<void>((resolve, reject) => device.publish('sensor/line1/state', '', { qos: 1, retain: true }, (e) => (e ? reject(e) : resolve())));
    const later = await connectClient(h.url);
    let retained = 0;
    later.on('message', () => { retained += 1; });
    await later.subscribeAsync('sensor/line1/state', { qos: 1 });
    await sleep(200);
    assert.equal(retained, 0);
    await Promise.all([device.endAsync(), late.endAsync(), later.endAsync()]);
  });

  test('a will is published when a device drops off (stored if routed), not on a clean DISCONNECT', async () => {
    const watcher = await connectClient(h.url);
    await watcher.subscribeAsync('sensor/+/status', { qos: 1 });
    const wills: string[] = [];
    watcher.on('message', (_t, payload) => wills.push(payload.toString()));
    const will = { topic: 'sensor/press1/status', payload: Buffer.from('offline'), qos: 1 as const, retain: false };
    const polite = await connectClient(h.url, { clientId: 'polite', will: { ...will, payload: Buffer.from('polite') } });
    await polite.endAsync();
    const device = await connectClient(h.url, { clientId: 'press1', will });
    const depth = h.spool!.stats().depth;
    device.stream.destroy(); // the device loses power
    await waitFor(() => wills.length === 1, 5000, 'the will');
    assert.deepEqual(wills, ['offline']);
    assert.equal(h.spool!.stats().depth, depth + 1);
    const stored = (await h.spooled('/queue/telemetry')).at(-1)!;
    assert.equal(stored.topic, 'sensor/press1/status');
    assert.equal(stored.payload.toString(), 'offline');
    device.end(true);
    await watcher.endAsync();
  });

  test('the WebSocket listener: publish over ws, stored and acknowledged', async () => {
    const w = await startIngest({ routes: ROUTES, config: { websocket: { port: 8080 } } });
    try {
      assert.ok(w.wsPort !== undefined && w.wsPort !== 8080);
      const client = await mqtt.connectAsync(`ws://127.0.0.1:${w.wsPort}`, { ...CLIENT_DEFAULTS, clientId: 'browser' });
      await publishAsync(client, 'sensor/ws/temp', 'over websocket', 1);
      await client.endAsync();
      const stored = await w.spooled();
      assert.deepEqual(stored.map((r) => r.payload.toString()), ['over websocket']);
      assert.ok(w.lines.some((l) => l.msg === 'mqtt client connected' && l.transport === 'ws' && l.clientId === 'browser'));
      // A plain HTTP request is answered, not hung up on silently.
      const res = await fetch(`http://127.0.0.1:${w.wsPort}/`);
      assert.equal(res.status, 426);
    } finally {
      await w.stop();
    }
  });
});

describe('start and stop', () => {
  test('a port in use: start() fails with a GatewayError naming the listener, host:port and why', async () => {
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const port = (blocker.address() as { port: number }).port;
    const ingest = new MqttIngest({
      config: { ...mqttConfig(), port }, spool: new HeldSpool(), router: new Router({ routes: ROUTES }), log: memoryLogger().log,
    });
    try {
      await assert.rejects(ingest.start(), (err: { name: string; code: string; message: string; retryable: boolean }) => {
        assert.equal(err.name, 'GatewayError');
        assert.equal(err.code, 'IO');
        assert.equal(err.retryable, true);
        assert.match(err.message, new RegExp(`^mqtt tcp listener on 127\\.0\\.0\\.1:${port} could not be opened: the address is already in use .*\\(EADDRINUSE\\)$`));
        return true;
      });
    } finally {
      blocker.close();
    }
  });

  test('a TLS listener whose certificate cannot be read fails start() and leaves nothing open', async () => {
    const log = memoryLogger();
    const config = mqttConfig({ tls: { port: 8883, cert: '/nonexistent/server.pem', key: '/nonexistent/server.key' } });
    const ingest = new MqttIngest({ config, spool: new HeldSpool(), router: new Router({ routes: ROUTES }), log: log.log });
    await assert.rejects(ingest.start(), { code: 'CONFIG_UNREADABLE', message: /^mqtt\.tls\.cert: \/nonexistent\/server\.pem cannot be read \(ENOENT\)$/ });
    assert.deepEqual(ingest.listening, []);
  });

  test('stop() closes the listeners and every connection; no will is stored on shutdown; start again works', async () => {
    const h = await startIngest({ routes: ROUTES });
    const will = { topic: 'sensor/x/status', payload: Buffer.from('offline'), qos: 1 as const, retain: false };
    const client = await connectClient(h.url, { will });
    await publishAsync(client, 'sensor/x/v', '1');
    const port = h.port;
    await h.ingest.stop();
    await closed(client);
    assert.equal(h.spool!.stats().depth, 1, 'a will was stored on shutdown');
    await assert.rejects(connectClient(`mqtt://127.0.0.1:${port}`, { connectTimeout: 1000 }));
    await h.ingest.start();
    const again = await connectClient(`mqtt://127.0.0.1:${h.ingest.listening[0]!.port}`);
    await publishAsync(again, 'sensor/x/v', '2');
    await again.endAsync();
    await h.stop();
  });
});

/**
 * The `uplink-upstream` config node in node-red-node-test-helper (Node-RED 4): settings checked by
 * the gateway's config loader, credentials, paths under the user directory, one runtime shared by
 * the nodes that use it. The upstream is a closed port: nothing here needs a broker.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFileSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { runInNewContext } from 'node:vm';
import { after, afterEach, before, describe, test } from 'node:test';
import uplinkOut from '../../src/node-red/uplink-out.js';
import uplinkUpstream, { upstreamConfig, type UpstreamConfigNode, type UpstreamDef } from '../../src/node-red/uplink-upstream.js';
import { makeTestPki, type TestPki } from '../peers/certs.js';
import { freePort } from '../peers/ports.js';
import { startAmqpPeer } from './amqp-peer.js';
import { collect, REPOSITORY, testHelper, until, withHooks } from './helpers.js';

const helper = testHelper(4);
const nodes = withHooks(4, uplinkUpstream, uplinkOut);
let port: number;
let pki: TestPki;

before(async () => {
  port = await freePort();
  pki = await makeTestPki();
  await helper.startServer();
});
afterEach(async () => { await helper.unload(); });
after(async () => {
  await helper.stopServer();
  rmSync(pki.dir, { recursive: true, force: true });
});

const config = (): UpstreamConfigNode => helper.getNode('cfg') as unknown as UpstreamConfigNode;

describe('uplink-upstream', () => {
  test('SASL PLAIN takes the user name and password from the Node-RED credentials', async () => {
    await helper.load(nodes, [
      { id: 'cfg', type: 'uplink-upstream', url: `amqp://127.0.0.1:${port}`, sasl: 'plain', allowInsecure: true },
    ], { cfg: { username: 'line1', password: 's3cret' } });
    const upstream = config().uplink?.config.upstream;
    assert.equal(upstream?.username, 'line1');
    assert.equal(upstream?.password, 's3cret');
    assert.equal(config().credentials?.password, 's3cret');
  });

  test('the gateway\'s rules apply: PLAIN in clear text is refused, every problem is listed as path: message', async () => {
    await helper.load(nodes, [
      { id: 'cfg', type: 'uplink-upstream', url: `amqp://127.0.0.1:${port}`, sasl: 'plain' },
    ], { cfg: { username: 'line1' } });
    assert.equal(config().uplink, undefined);
    const failure = config().failure ?? '';
    assert.match(failure, /upstream\.password: is required for sasl: plain/);
    assert.match(failure, /upstream\.sasl: plain over amqp:\/\/ sends the password in clear text/);
    assert.doesNotMatch(failure, /line1/, 'no setting value is echoed');
    await helper.unload();

    await helper.load(nodes, [
      { id: 'cfg', type: 'uplink-upstream', url: 'mqtt://nope', sasl: 'anonymous', routes: [{ topic: 'a/#/b', address: '/queue/x' }] },
    ]);
    assert.match(config().failure ?? '', /upstream\.url: must use the amqp:\/\/ or amqps:\/\/ scheme/);
    assert.match(config().failure ?? '', /routes\[0\]\.topic: '#' must be a whole level and the last one/);
  });

  test('relative TLS paths and the spool directory are under the Node-RED user directory', async () => {
    for (const [name, from] of [['ca.pem', pki.ca.cert], ['gw.pem', pki.client.cert], ['gw.key', pki.client.key]] as const) {
      copyFileSync(from, join(helper.userDir, name));
    }
    await helper.load(nodes, [
      { id: 'cfg', type: 'uplink-upstream', url: `amqps://localhost:${port}`, sasl: 'external', ca: 'ca.pem', cert: 'gw.pem', key: 'gw.key', spoolDir: 'spools/line1' },
    ]);
    const c = config().uplink?.config;
    assert.equal(c?.upstream?.tls?.ca, join(helper.userDir, 'ca.pem'));
    assert.equal(c?.upstream?.tls?.key, join(helper.userDir, 'gw.key'));
    assert.equal(c?.dataDir, join(helper.userDir, 'spools', 'line1'));
  });

  test('the passphrase of an encrypted key is a credential; a wrong one is named as path: message', async () => {
    const encrypted = join(helper.userDir, 'encrypted.key');
    execFileSync('openssl', ['pkey', '-in', pki.client.key, '-aes256', '-passout', 'pass:open sesame', '-out', encrypted]);
    const flow = [{ id: 'cfg', type: 'uplink-upstream', url: `amqps://localhost:${port}`, sasl: 'external', ca: pki.ca.cert, cert: pki.client.cert, key: encrypted }];
    await helper.load(nodes, flow, { cfg: { passphrase: 'open sesame' } });
    assert.equal(config().failure, undefined);
    assert.equal(config().uplink?.config.upstream?.tls?.passphrase, 'open sesame');
    await helper.unload();
    await helper.load(nodes, flow, { cfg: { passphrase: 'wrong' } });
    assert.equal(config().failure, 'upstream.tls.passphrase: does not decrypt tls.key');
  });

  test('one runtime and one spool for every node that uses the config node', async () => {
    await helper.load(nodes, [
      { id: 'f1', type: 'tab' },
      { id: 'cfg', type: 'uplink-upstream', url: `amqp://127.0.0.1:${port}`, sasl: 'anonymous', spoolDir: 'shared', gatewayId: 'shared-gw' },
      { id: 'a', type: 'uplink out', z: 'f1', upstream: 'cfg', wires: [] },
      { id: 'b', type: 'uplink out', z: 'f1', upstream: 'cfg', topic: 'fixed/topic', wires: [] },
      { id: 'on-complete', type: 'complete', z: 'f1', scope: ['a', 'b'], uncaught: false, wires: [['stored']] },
      { id: 'stored', type: 'helper', z: 'f1' },
    ]);
    const stored = collect(helper.getNode('stored'));
    helper.getNode('a').receive({ topic: 'from/a', payload: 'a' });
    helper.getNode('b').receive({ topic: 'ignored', payload: 'b' });
    await until(() => stored.messages.length === 2, 'both stored');
    const uplink = config().uplink!;
    assert.equal(uplink.spool.stats().depth, 2);
    const leased = await uplink.spool.lease('/queue/telemetry', 10);
    assert.deepEqual(leased.map((r) => r.topic).sort(), ['fixed/topic', 'from/a']);
  });

  test('each config node connects with its own AMQP container id, even with the same gateway id', async () => {
    const peer = await startAmqpPeer();
    try {
      await helper.load(nodes, [
        { id: 'f1', type: 'tab' },
        { id: 'cfg1', type: 'uplink-upstream', url: `amqp://127.0.0.1:${peer.port}`, sasl: 'anonymous', gatewayId: 'line1-gw' },
        { id: 'cfg2', type: 'uplink-upstream', url: `amqp://127.0.0.1:${peer.port}`, sasl: 'anonymous', gatewayId: 'line1-gw' },
        { id: 'a', type: 'uplink out', z: 'f1', upstream: 'cfg1', wires: [] },
        { id: 'b', type: 'uplink out', z: 'f1', upstream: 'cfg2', wires: [] },
      ]);
      await until(() => peer.containerIds.length === 2, 'both connected');
      // Some brokers refuse a second connection with a container id already connected.
      assert.deepEqual([...peer.containerIds].sort(), ['line1-gw:cfg1', 'line1-gw:cfg2']);
      // The readings still carry the gateway id itself.
      assert.equal((helper.getNode('cfg1') as unknown as UpstreamConfigNode).uplink?.config.gatewayId, 'line1-gw');
    } finally {
      await helper.unload();
      await peer.stop();
    }
  });

  test('routes carry every setting of uplink.yaml: delivery, priority, ttl and properties', () => {
    const def: UpstreamDef = {
      id: 'cfg', type: 'uplink-upstream', url: `amqp://127.0.0.1:${port}`, sasl: 'anonymous',
      routes: [
        { topic: 'alarm/#', address: '/queue/alarms', delivery: 'at-least-once', priority: 9, ttl: '7d', properties: { line: '1', critical: true } },
        { topic: 'debug/#', address: '/queue/debug', delivery: 'at-most-once', priority: '0', ttl: 30 },
        { topic: '#', address: '/queue/other' },
      ],
    };
    const routes = upstreamConfig(def, {}, helper.userDir).routes;
    assert.deepEqual(routes.map((r) => [r.topic, r.address, r.delivery, r.priority, r.ttl, r.properties]), [
      ['alarm/#', '/queue/alarms', 'at-least-once', 9, 7 * 24 * 3600 * 1000, { line: '1', critical: true }],
      ['debug/#', '/queue/debug', 'at-most-once', 0, 30_000, undefined],
      ['#', '/queue/other', 'at-least-once', 4, undefined, undefined],
    ]);
    // Text that was not JSON in the editor is kept as text, and the loader says where.
    assert.throws(() => upstreamConfig({ ...def, routes: [{ topic: '#', address: '/queue/x', properties: '{line: 1' }] }, {}, helper.userDir),
      (err: Error & { issues?: Array<{ path: string }> }) => err.issues?.some((i) => /^routes\[0\]\.properties/.test(i.path)) === true);
  });

  test('the editor saves every route setting (topic, address, delivery, priority, ttl, properties) and checks them', () => {
    const html = readFileSync(join(REPOSITORY, 'src', 'node-red', 'uplink-upstream.html'), 'utf8');
    const script = /<script type="text\/javascript">([\s\S]*?)<\/script>/.exec(html)![1]!;
    type Definition = { oneditsave(this: Record<string, unknown>): void; defaults: { routes: { validate(v: unknown): boolean } } };
    const registered: Record<string, Definition> = {};
    // The editor's rows, as the fields oneditsave reads from each (by class).
    const rows = [
      { topic: ' alarm/# ', address: '/queue/alarms', delivery: 'at-least-once', priority: '9', ttl: '7d', properties: '{"line":"1","critical":true}' },
      { topic: 'debug/#', address: '/queue/debug', delivery: 'at-most-once', priority: '', ttl: '30', properties: '' },
      { topic: '', address: '', delivery: 'at-least-once', priority: '', ttl: '', properties: '' },
    ];
    const $ = (target: unknown): unknown => {
      if (target === '#node-config-input-routes-container') {
        return { editableList: (command: string) => (command === 'items' ? { each: (fn: (this: unknown) => void) => rows.forEach((row) => fn.call(row)) } : undefined) };
      }
      const row = rows.find((r) => r === target);
      if (row === undefined) throw new Error(`unexpected $(${String(target)})`);
      return { find: (selector: string) => ({ val: () => row[selector.replace('.node-config-input-route-', '') as keyof typeof row] }) };
    };
    runInNewContext(script, {
      $, RED: { nodes: { registerType: (type: string, definition: Definition) => { registered[type] = definition; } }, validators: { regex: (re: RegExp) => (v: string) => re.test(v) } },
    });
    const definition = registered['uplink-upstream']!;
    const node: Record<string, unknown> = {};
    definition.oneditsave.call(node);
    // Plain data across the vm boundary.
    const saved = JSON.parse(JSON.stringify(node.routes)) as UpstreamDef['routes'];
    assert.deepEqual(saved, [
      { topic: 'alarm/#', address: '/queue/alarms', priority: 9, ttl: '7d', properties: { line: '1', critical: true } },
      { topic: 'debug/#', address: '/queue/debug', delivery: 'at-most-once', ttl: 30 },
    ]);
    const validate = definition.defaults.routes.validate;
    assert.equal(validate(saved), true);
    for (const bad of [{ priority: 10 }, { delivery: 'twice' }, { ttl: 'a week' }, { properties: '{line: 1' }, { properties: { nested: { no: 1 } } }]) {
      assert.equal(validate([{ topic: '#', address: '/queue/x', ...bad }]), false, JSON.stringify(bad));
    }
    // What the editor saved is what the runtime runs on.
    const routes = upstreamConfig({ id: 'cfg', type: 'uplink-upstream', url: `amqp://127.0.0.1:${port}`, sasl: 'anonymous', routes: saved }, {}, helper.userDir).routes;
    assert.deepEqual(routes.map((r) => [r.delivery, r.priority, r.ttl, r.properties]), [
      ['at-least-once', 9, 7 * 24 * 3600 * 1000, { line: '1', critical: true }],
      ['at-most-once', 4, 30_000, undefined],
    ]);
  });
});

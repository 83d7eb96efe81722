/**
 * The `uplink-upstream` config node in node-red-node-test-helper (Node-RED 4): settings checked by
 * the gateway's config loader, credentials, paths under the user directory, one runtime shared by
 * the nodes that use it. The upstream is a closed port: nothing here needs a broker.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, afterEach, before, describe, test } from 'node:test';
import uplinkOut from '../../src/node-red/uplink-out.js';
import uplinkUpstream, { type UpstreamConfigNode } from '../../src/node-red/uplink-upstream.js';
import { freePort } from '../peers/ports.js';
import { collect, testHelper, until, withHooks } from './helpers.js';

const helper = testHelper(4);
const nodes = withHooks(4, uplinkUpstream, uplinkOut);
let port: number;

before(async () => {
  port = await freePort();
  await helper.startServer();
});
afterEach(async () => { await helper.unload(); });
after(async () => { await helper.stopServer(); });

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
    for (const name of ['ca.pem', 'gw.pem', 'gw.key']) writeFileSync(join(helper.userDir, name), 'not checked here');
    await helper.load(nodes, [
      { id: 'cfg', type: 'uplink-upstream', url: `amqps://localhost:${port}`, sasl: 'external', ca: 'ca.pem', cert: 'gw.pem', key: 'gw.key', spoolDir: 'spools/line1' },
    ]);
    const c = config().uplink?.config;
    assert.equal(c?.upstream?.tls?.ca, join(helper.userDir, 'ca.pem'));
    assert.equal(c?.upstream?.tls?.key, join(helper.userDir, 'gw.key'));
    assert.equal(c?.dataDir, join(helper.userDir, 'spools', 'line1'));
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
});

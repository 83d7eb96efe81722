/**
 * `uplink status` in node-red-node-test-helper (Node-RED 4): statistics of the shared runtime on
 * input and periodically. The upstream is a port nobody listens on, so readings stay spooled.
 */
import assert from 'node:assert/strict';
import { after, afterEach, before, describe, test } from 'node:test';
import uplinkOut from '../../src/node-red/uplink-out.js';
import uplinkStatus from '../../src/node-red/uplink-status.js';
import uplinkUpstream from '../../src/node-red/uplink-upstream.js';
import { freePort } from '../peers/ports.js';
import { collect, testHelper, until, withHooks } from './helpers.js';

const helper = testHelper(4);
const nodes = withHooks(4, uplinkUpstream, uplinkOut, uplinkStatus);
let port: number;

before(async () => {
  port = await freePort();
  await helper.startServer();
});
afterEach(async () => { await helper.unload(); });
after(async () => { await helper.stopServer(); });

function statusFlow(interval: number | string, spoolDir = ''): object[] {
  return [
    { id: 'f1', type: 'tab' },
    { id: 'cfg', type: 'uplink-upstream', url: `amqp://127.0.0.1:${port}`, sasl: 'anonymous', gatewayId: 'stats-gw', spoolDir,
      routes: [{ topic: 'sensor/#', address: '/queue/stats' }] },
    { id: 'out', type: 'uplink out', z: 'f1', upstream: 'cfg', wires: [] },
    { id: 'on-complete', type: 'complete', z: 'f1', scope: ['out'], uncaught: false, wires: [['stored']] },
    { id: 'stored', type: 'helper', z: 'f1' },
    { id: 'stats', type: 'uplink status', z: 'f1', upstream: 'cfg', interval, wires: [['end']] },
    { id: 'end', type: 'helper', z: 'f1' },
  ];
}

interface Stats {
  gatewayId: string;
  upstream: { connected: boolean; url: string; credit: number; lastError?: { code: string } };
  spool: { depth: number; byAddress: Record<string, number>; bytes: number };
  forward: { outcomes: Record<string, number> };
}

describe('uplink status', () => {
  test('on input: the statistics of the runtime the uplink out nodes share', async () => {
    await helper.load(nodes, statusFlow(0));
    const stored = collect(helper.getNode('stored'));
    const end = collect(helper.getNode('end'));
    for (let i = 0; i < 3; i++) helper.getNode('out').receive({ topic: 'sensor/a', payload: `r${i}` });
    await until(() => stored.messages.length === 3, 'three stored');
    helper.getNode('stats').receive({ topic: 'ask', payload: 'now' });
    await until(() => end.messages.length === 1, 'the statistics');
    const msg = end.messages[0]!;
    assert.equal(msg.topic, 'ask', 'the input message goes on with the statistics as its payload');
    const stats = msg.payload as Stats;
    assert.equal(stats.gatewayId, 'stats-gw');
    assert.equal(stats.upstream.connected, false);
    assert.equal(stats.upstream.url, `amqp://127.0.0.1:${port}`);
    assert.equal(stats.spool.depth, 3);
    assert.deepEqual(stats.spool.byAddress, { '/queue/stats': 3 });
    assert.equal(stats.spool.bytes, 6);
    assert.equal(stats.forward.outcomes.accepted, 0);
  });

  test('periodically, with topic uplink/status, when an interval is set', async () => {
    await helper.load(nodes, statusFlow(0.2));
    const end = collect(helper.getNode('end'));
    await until(() => end.messages.length >= 2, 'two periodic messages');
    assert.equal(end.messages[0]!.topic, 'uplink/status');
    await until(() => end.messages.some((m) => (m.payload as Stats).upstream.lastError?.code === 'UPSTREAM_CONNECTION'),
      'the last connection error');
  });

  test('interval empty: one answer per input, from its own (empty) spool', async () => {
    await helper.load(nodes, statusFlow('', 'another-spool'));
    const end = collect(helper.getNode('end'));
    const stats = helper.getNode('stats');
    stats.receive({ payload: 1 });
    stats.receive({ payload: 2 });
    await until(() => end.messages.length === 2, 'one answer per input');
    assert.ok(end.messages.every((m) => (m.payload as Stats).spool.depth === 0));
  });
});

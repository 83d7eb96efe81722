/**
 * Node-RED 5 (embedded: its CLI needs Node 22, RED.init + RED.start run on Node 20): the package
 * installed in the user directory registers its four node types without error, and the example
 * factory flow stores readings. The upstream is a port nobody listens on, so they stay spooled.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { UpstreamConfigNode } from '../../src/node-red/uplink-upstream.js';
import { freePort } from '../peers/ports.js';
import { exampleFlow, nodeStarted, startNodeRed, type EmbeddedNodeRed } from './embedded.js';
import { until } from './helpers.js';

let nr: EmbeddedNodeRed;

before(async () => {
  const port = await freePort();
  const flows = [...await exampleFlow('factory-line.json'), ...await exampleFlow('downlink-commands.json')].map((node) => {
    if (node.type === 'uplink-upstream') return { ...node, url: `amqp://127.0.0.1:${port}`, sasl: 'anonymous', ca: '', cert: '', key: '' };
    if (node.type === 'inject') return { ...node, repeat: '', once: false };
    return node;
  });
  nr = await startNodeRed(5, flows);
  for (const id of ['factory-uplink', 'downlink-in', 'factory-stats']) await nodeStarted(nr, id);
});
after(async () => { await nr?.stop(); });

describe('Node-RED 5', () => {
  test('the runtime is Node-RED 5, and the four node types register without error', () => {
    assert.match(nr.red.version(), /^5\./);
    const info = nr.red.nodes.getModuleInfo('uplink');
    assert.ok(info, 'the uplink module is installed');
    assert.deepEqual(info.nodes.map((n) => [n.name, n.types, n.enabled, n.err ?? null]), [
      ['uplink-upstream', ['uplink-upstream'], true, null],
      ['uplink-out', ['uplink out'], true, null],
      ['uplink-in', ['uplink in'], true, null],
      ['uplink-status', ['uplink status'], true, null],
    ]);
  });

  test('the factory flow stores its readings while the upstream is away', async () => {
    const uplink = nr.node<UpstreamConfigNode>('factory-broker').uplink;
    assert.ok(uplink);
    for (let i = 0; i < 3; i++) await nr.inject('factory-tick');
    await until(() => uplink.running && uplink.spool.stats().depth === 6, 'six readings spooled');
    assert.deepEqual(uplink.spool.stats().byAddress, { '/queue/telemetry': 3, '/queue/other': 3 });
    assert.equal(uplink.snapshot().upstream.connected, false);
  });
});

/**
 * Node-RED 5 (embedded: its CLI needs Node 22, RED.init + RED.start run on Node 20): the package
 * installed in the user directory registers its four node types without error, and every example
 * flow of flows/ loads: the factory flow and the serial flow (node-red-node-serialport reading a
 * socat pseudo-terminal) store readings, the downlink flow starts. The upstream is a port nobody
 * listens on, so the readings stay spooled.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import type { UpstreamConfigNode } from '../../src/node-red/uplink-upstream.js';
import { ptyPair, tempDir, type PtyPair } from '../ingest/serial/helpers.js';
import { freePort } from '../peers/ports.js';
import { leaseAll } from '../spool/lease-all.js';
import { exampleFlow, nodeStarted, REPOSITORY, startNodeRed, type EmbeddedNodeRed } from './embedded.js';
import { until } from './helpers.js';

let nr: EmbeddedNodeRed;
let pty: PtyPair;
const FLOWS = ['factory-line.json', 'serial-line.json', 'downlink-commands.json'];

before(async () => {
  const port = await freePort();
  pty = await ptyPair(join(await tempDir(), 'ttyLINE1'));
  const flows = (await Promise.all(FLOWS.map((name) => exampleFlow(name)))).flat().map((node) => {
    if (node.type === 'uplink-upstream') return { ...node, url: `amqp://127.0.0.1:${port}`, sasl: 'anonymous', ca: '', cert: '', key: '' };
    if (node.type === 'serial-port') return { ...node, serialport: pty.device };
    if (node.type === 'inject') return { ...node, repeat: '', once: false };
    return node;
  });
  nr = await startNodeRed(5, flows);
  for (const id of ['factory-uplink', 'downlink-in', 'factory-stats', 'serial-line1-in', 'serial-uplink']) await nodeStarted(nr, id);
});
after(async () => {
  await nr?.stop();
  await pty?.kill();
});

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

  test('every flow of flows/ is loaded here', () => {
    assert.deepEqual(readdirSync(join(REPOSITORY, 'flows')).filter((f) => f.endsWith('.json')).sort(), [...FLOWS].sort());
  });

  test('the serial flow stores the readings of a serial device while the upstream is away', async () => {
    const uplink = nr.node<UpstreamConfigNode>('serial-broker').uplink;
    assert.ok(uplink);
    const lines = [181.5, 182, 182.5].map((value) => JSON.stringify({ machine: 'oven2', metric: 'temperature', value }));
    await pty.write(`${lines.join('\n')}\n`);
    await until(() => uplink.running && uplink.spool.stats().depth === 3, 'three readings spooled');
    const leased = await leaseAll(uplink.spool, '/queue/telemetry');
    assert.deepEqual(leased.map((r) => [r.topic, JSON.parse(r.payload.toString()).value]), [
      ['sensor/oven2/temperature', 181.5], ['sensor/oven2/temperature', 182], ['sensor/oven2/temperature', 182.5],
    ]);
  });
});

/**
 * The example flows of flows/ in a real Node-RED 4 runtime (embedded, headless, the package
 * installed in its user directory) against a real RabbitMQ (TLS + SASL EXTERNAL):
 * - downlink commands: a command published upstream reaches the flow and is accepted only after
 *   the debug node is done with it;
 * - serial readings: lines written into a pseudo-terminal go through node-red-node-serialport and
 *   uplink out to the broker;
 * - the simulated factory line: readings go upstream; the broker is stopped while a burst of
 *   readings is being forwarded (some in flight: sent, not settled), and started again; every
 *   reading arrives, duplicates only with the same message_id (at least once), and in order of
 *   first arrival (checked by the sequence numbers in the payloads).
 * The command queue dead-letters into a queue of its own (a policy), so "settled" can tell
 * accepted (the dead-letter queue stays empty) from rejected.
 * Only the site-specific settings of each flow are changed: the broker URL and certificate files,
 * the serial device path, and the inject node fires when the test presses its button.
 */
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Script } from 'node:vm';
import { after, before, describe, test } from 'node:test';
import rhea from 'rhea';
import type { HookEvent } from '../../src/node-red/red-api.js';
import type { UpstreamConfigNode } from '../../src/node-red/uplink-upstream.js';
import { ptyPair, tempDir, type PtyPair } from '../ingest/serial/helpers.js';
import type { Message } from 'rhea';
import { consume, payloadOf } from '../peers/amqp-consumer.js';
import { makeTestPki, type TestPki } from '../peers/certs.js';
import { startRabbitMq, type RabbitMqPeer } from '../peers/rabbitmq.js';
import { declareQueue, publish, queueCounts } from './broker.js';
import { exampleFlow, nodeStarted, startNodeRed, type EmbeddedNodeRed, type FlowNode } from './embedded.js';
import { until, upstreamSettings } from './helpers.js';

let pki: TestPki;
let broker: RabbitMqPeer;
let pty: PtyPair;
let nr: EmbeddedNodeRed;

function forThisSite(flow: FlowNode[], device: string): FlowNode[] {
  return flow.map((node) => {
    if (node.type === 'uplink-upstream') return { ...node, ...upstreamSettings(pki, broker.amqpsPort) };
    if (node.type === 'serial-port') return { ...node, serialport: device };
    if (node.type === 'inject') return { ...node, repeat: '', once: false };
    return node;
  });
}

before(async () => {
  pki = await makeTestPki();
  broker = await startRabbitMq({ pki });
  await broker.ctl(['set_policy', 'commands-dlq', '^commands$', '{"dead-letter-exchange":"","dead-letter-routing-key":"commands-dead"}', '--apply-to', 'queues']);
  await declareQueue(pki, broker.amqpsPort, 'commands-dead');
  pty = await ptyPair(join(await tempDir(), 'ttyLINE1'));
  const flows = [
    ...await exampleFlow('downlink-commands.json'),
    ...await exampleFlow('serial-line.json'),
    ...await exampleFlow('factory-line.json'),
  ];
  nr = await startNodeRed(4, forThisSite(flows, pty.device), { editor: true });
  for (const id of ['downlink-in', 'serial-line1-in', 'factory-uplink']) await nodeStarted(nr, id);
});

after(async () => {
  await nr?.stop();
  await pty?.kill();
  await broker?.destroy();
  if (pki !== undefined) await rm(pki.dir, { recursive: true, force: true });
});

const uplinkOf = (id: string): NonNullable<UpstreamConfigNode['uplink']> => {
  const uplink = nr.node<UpstreamConfigNode>(id).uplink;
  assert.ok(uplink, `${id} has a runtime`);
  return uplink;
};

/** Consumes `/queue/NAME` until the broker has nothing left in it (duplicates included). */
async function drain(queue: string): Promise<Message[]> {
  const got: Message[] = [];
  for (let depth = await broker.queueDepth(queue) ?? 0; depth > 0; depth = await broker.queueDepth(queue) ?? 0) {
    got.push(...await consume({ host: '127.0.0.1', port: broker.amqpsPort, pki, address: `/queue/${queue}`, count: depth }));
  }
  return got;
}

/** The messages that reach node `id` from now on (seen through a messaging hook). */
function watch(id: string): Array<Record<string, unknown>> {
  const seen: Array<Record<string, unknown>> = [];
  nr.red.hooks.add(`onReceive.uplinkTestWatch_${id.replace(/\W/g, '_')}`, (event: HookEvent) => {
    if (event.destination?.id === id) seen.push(event.msg);
  });
  return seen;
}

describe('example flows in Node-RED 4', () => {
  test('the nodes of this package are loaded from the user directory without error', () => {
    const info = nr.red.nodes.getModuleInfo('uplink');
    assert.ok(info, 'the uplink module is installed');
    assert.deepEqual(info.nodes.map((n) => [n.name, n.types, n.enabled, n.err ?? null]), [
      ['uplink-upstream', ['uplink-upstream'], true, null],
      ['uplink-out', ['uplink out'], true, null],
      ['uplink-in', ['uplink in'], true, null],
      ['uplink-status', ['uplink status'], true, null],
    ]);
  });

  test('the editor gets each node\'s HTML (beside its .js) with a template, help text and valid JavaScript', async () => {
    const res = await fetch(`${nr.adminUrl}/nodes`, { headers: { Accept: 'text/html' } });
    assert.equal(res.status, 200);
    const html = await res.text();
    for (const type of ['uplink-upstream', 'uplink out', 'uplink in', 'uplink status']) {
      assert.ok(html.includes(`data-template-name="${type}"`), `template of ${type}`);
      assert.ok(html.includes(`data-help-name="${type}"`), `help of ${type}`);
      assert.ok(html.includes(`RED.nodes.registerType("${type}"`), `editor registration of ${type}`);
    }
    const ours = html.slice(html.indexOf('<!-- --- [red-module:uplink/uplink-upstream] --- -->'));
    const scripts = [...ours.matchAll(/<script type="text\/javascript">([\s\S]*?)<\/script>/g)].map((m) => m[1]!);
    assert.ok(scripts.length >= 4);
    // Compiled, not run: a syntax error would stop the editor from loading the palette.
    for (const code of scripts) assert.doesNotThrow(() => new Script(code));
  });

  test('downlink-commands.json: a command reaches the flow and is accepted only after the debug node is done', async () => {
    await until(() => uplinkOf('downlink-broker').snapshot().upstream.connected, 'the downlink flow connected');
    // Hold the command on its way into the debug node, as a slow consumer would.
    const held: Array<{ event: HookEvent; next: () => void }> = [];
    nr.red.hooks.add('onReceive.uplinkTestHold', ((event: HookEvent, next: () => void) => {
      if (event.destination?.id === 'downlink-debug') held.push({ event, next });
      else next();
    }) as never);
    try {
      await publish(pki, broker.amqpsPort, '/queue/commands', [{
        message_id: 'cmd-42', subject: 'press1/stop', application_properties: { operator: 'ana' },
        content_type: 'application/json', body: rhea.message.data_section(Buffer.from('{"command":"stop","reason":"maintenance"}')),
      }]);
      await until(() => held.length === 1, 'the command at the debug node');
      const msg = held[0]!.event.msg;
      assert.deepEqual(msg.payload, { command: 'stop', reason: 'maintenance' });
      assert.equal(msg.topic, 'press1/stop');
      assert.deepEqual(msg.properties, { operator: 'ana' });
      assert.equal((msg.amqp as { messageId: string }).messageId, 'cmd-42');
      await until(async () => (await queueCounts(broker, 'commands'))?.unacked === 1, 'unacknowledged while held');
      held[0]!.next();
      await until(async () => {
        const counts = await queueCounts(broker, 'commands');
        return counts?.ready === 0 && counts.unacked === 0;
      }, 'settled once the debug node is done');
      assert.equal(await broker.queueDepth('commands-dead'), 0, 'accepted, not rejected');
    } finally {
      nr.red.hooks.remove('*.uplinkTestHold');
    }
  });

  test('serial-line.json: lines from a serial device arrive upstream; a bad line goes to the Catch node', async () => {
    const uplink = uplinkOf('serial-broker');
    const bad = watch('serial-bad');
    const lines = Array.from({ length: 10 }, (_, i) => JSON.stringify({ machine: 'oven2', metric: 'temperature', value: 180 + i }));
    await pty.write(`${lines.slice(0, 5).join('\n')}\nthis is not json\n${lines.slice(5).join('\n')}\n`);
    const got = await consume({ host: '127.0.0.1', port: broker.amqpsPort, pki, address: '/queue/telemetry', count: 10 });
    assert.deepEqual(got.map((m) => JSON.parse(payloadOf(m).toString()).value), [180, 181, 182, 183, 184, 185, 186, 187, 188, 189]);
    assert.ok(got.every((m) => m.subject === 'sensor/oven2/temperature'));
    await until(() => uplink.spool.stats().depth === 0, 'the serial spool drained');
    await until(() => bad.length === 1, 'the bad line at the Catch node');
    assert.equal(bad[0]!.payload, 'this is not json\n');
    assert.equal((bad[0]!.error as { source: { id: string } }).source.id, 'serial-parse');
  });

  test('factory-line.json: readings arrive upstream, and nothing is lost when the broker stops with readings in flight', async () => {
    const uplink = nr.node<UpstreamConfigNode>('factory-broker').uplink!;
    const notStored = watch('factory-not-stored');
    const accepted = (): number => uplink.forwarder.stats().outcomes.accepted;
    await until(() => uplink.snapshot().upstream.connected, 'the factory flow connected');
    // Each press of the inject button makes two readings: temperature and speed.
    let presses = 0;
    const press = async (): Promise<void> => {
      await nr.inject('factory-tick');
      presses += 1;
    };
    for (let i = 0; i < 5; i++) await press();
    await until(() => accepted() >= 10, 'the first readings accepted upstream');

    // A burst, pressed until the flow sees the broker go: readings are being forwarded all along.
    let pressing = true;
    const burst = (async () => {
      while (pressing && presses < 2000) await press();
    })();
    await until(() => uplink.spool.stats().inFlight > 0, 'readings in flight');
    assert.ok(uplink.spool.stats().inFlight > 0, 'sent and not settled yet when the broker is stopped');
    const stopped = broker.stop();
    await until(() => !uplink.snapshot().upstream.connected, 'the flow saw the broker go', 60_000);
    pressing = false;
    await burst;
    await stopped;
    for (let i = 0; i < 5; i++) await press();
    await until(() => uplink.spool.stats().depth >= 10, 'the readings of the outage waiting in the spool');

    await broker.start();
    for (let i = 0; i < 5; i++) await press();
    await until(() => uplink.spool.stats().depth === 0, 'the spool drained after the broker came back', 120_000);

    for (const [queue, unit] of [['telemetry', 'C'], ['other', 'rpm']] as const) {
      const got = await drain(queue);
      const firstSeen = new Map<string, number>();
      for (const m of got) {
        const reading = JSON.parse(payloadOf(m).toString()) as { seq: number; unit: string };
        assert.equal(reading.unit, unit);
        const id = String(m.message_id);
        // At least once: a reading sent again keeps its message_id (and its payload).
        assert.equal(firstSeen.get(id) ?? reading.seq, reading.seq, `${queue}: message_id ${id} with two payloads`);
        if (!firstSeen.has(id)) firstSeen.set(id, reading.seq);
      }
      // Every reading, once per message_id, first arrivals in the order the flow made them.
      assert.deepEqual([...firstSeen.values()], Array.from({ length: presses }, (_, i) => i + 1), `${queue}: ${presses} readings in order`);
    }
    assert.deepEqual(notStored, [], 'the outage was no error for the flow: every reading was stored');
  });

});

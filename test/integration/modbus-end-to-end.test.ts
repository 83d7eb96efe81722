/**
 * The whole path for polled values, as deployed: pymodbus (Modbus TCP) → the gateway process
 * (`uplink run`: poll → route → spool → forward) → RabbitMQ over TLS + SASL EXTERNAL, across an
 * upstream outage: every reading the gateway stored arrives once, in order, with the mapping of
 * DESIGN.md.
 */
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { after, before, describe, test } from 'node:test';
import type { Message } from 'rhea';
import { consume, payloadOf } from '../peers/amqp-consumer.js';
import { makeTestPki, type TestPki } from '../peers/certs.js';
import { startGateway } from '../peers/gateway.js';
import { startRabbitMq, type RabbitMqPeer } from '../peers/rabbitmq.js';
import { startSlave, type Slave } from '../ingest/modbus/slave.js';
import { until } from '../peers/until.js';

let pki: TestPki;
let broker: RabbitMqPeer;
let slave: Slave;

before(async () => {
  pki = await makeTestPki();
  broker = await startRabbitMq({ pki });
  slave = await startSlave({ units: [1] });
});

after(async () => {
  await slave?.kill();
  await broker?.destroy();
  if (pki !== undefined) await rm(pki.dir, { recursive: true, force: true });
});

describe('modbus end to end', () => {
  test('polled values reach RabbitMQ with the mapping of DESIGN.md, across an upstream outage, nothing lost', async () => {
    const gw = await startGateway({ config: {
      upstream: {
        url: `amqps://localhost:${broker.amqpsPort}`, sasl: 'external', tls: { ca: pki.ca.cert, cert: pki.client.cert, key: pki.client.key },
      },
      modbus: { buses: [{
        name: 'plc', tcp: { host: '127.0.0.1', port: slave.port }, timeout: '300ms', retries: 1,
        devices: [{ name: 'press', unitId: 1, interval: '50ms', points: [{ name: 'cycle', function: 'holding', address: 0, type: 'uint16', unit: 'n' }] }],
      }] },
      routes: [{ topic: 'factory/+/+/cycle', address: '/queue/modbus-e2e', properties: { site: 'plant-1' } }],
    } });
    const metric = async (name: string): Promise<number> => {
      const text = await (await fetch(`http://127.0.0.1:${gw.httpPort}/metrics`)).text();
      const line = text.split('\n').find((l) => l.startsWith(`${name} `) || (!name.includes('{') && l.startsWith(`${name}{`)));
      return line === undefined ? 0 : Number(line.split(' ').at(-1));
    };
    const ingested = (): Promise<number> => metric('uplink_ingested_total');
    /**
     * Sets the register to each value in turn, each until the gateway stored three more readings:
     * when the set is done, one poll's reading may still wait for its commit and one request may
     * be out, both with the old value; the third was asked for after the set.
     */
    const step = async (values: number[]): Promise<void> => {
      for (const value of values) {
        await slave.set(1, 'hr', 0, [value]);
        const count = await ingested();
        await until(async () => (await ingested()) >= count + 3, `readings of ${value}`, 60_000);
      }
    };
    try {
      await until(async () => (await metric('uplink_upstream_connected')) === 1, 'connected', 60_000);
      await step([1, 2, 3]);
      assert.equal(await metric('uplink_modbus_device_online{bus="plc",device="press"}'), 1);
      assert.equal(await metric('uplink_ingest_connections{adapter="modbus"}'), 1);
      await broker.stop();
      await until(async () => (await metric('uplink_upstream_connected')) === 0, 'the outage seen', 60_000);
      await step([4, 5, 6, 7]);
      assert.ok((await metric('uplink_spool_depth')) > 0, 'readings wait in the spool during the outage');
      await broker.start();
      await step([8, 9]);
      // The device stops answering: its last reading is one of quality bad, then nothing more.
      await slave.mute(1);
      await gw.waitForLog((l) => l.msg === 'modbus device not answering; marked offline, polled again with backoff', 30_000);
      assert.equal(await metric('uplink_modbus_device_online{bus="plc",device="press"}'), 0);
      assert.ok((await metric('uplink_ingest_rejected_total{reason="modbus_offline"}')) === 1);
      // The reading of quality bad is stored just after the log line: the last one (nothing more
      // comes while the device is offline). Once it arrived upstream, the count of stored readings
      // is final, and every one of them must have arrived exactly once.
      const bad = (m: Message): boolean => (JSON.parse(payloadOf(m).toString()) as { quality: string }).quality === 'bad';
      const arrived = await consume({
        host: '127.0.0.1', port: broker.amqpsPort, pki, address: '/queue/modbus-e2e', count: Number.MAX_SAFE_INTEGER, last: bad, idleMs: 60_000, timeoutMs: 120_000,
      });
      assert.ok(arrived.some(bad), 'the reading of quality bad arrived');
      await until(async () => (await metric('uplink_spool_depth')) === 0, 'the spool drained', 120_000);
      const total = await ingested();
      // At least once (DESIGN.md): a reading the broker took just before it stopped, whose
      // outcome never came back, is sent again after the outage, with the same message_id, so the
      // upstream can drop it. Every stored reading arrived; a second copy is the same message.
      const first = new Map<string, Message>();
      for (const m of arrived) {
        const id = String(m.message_id);
        const seen = first.get(id);
        if (seen === undefined) first.set(id, m);
        else assert.deepEqual(payloadOf(m), payloadOf(seen), `${id} arrived twice with different payloads`);
      }
      const messages = [...first.values()];
      assert.equal(messages.length, total, `${messages.length} of ${total} stored readings arrived (${arrived.length} messages in all)`);
      const bodies = messages.map((m) => JSON.parse(payloadOf(m).toString()) as { value: number | null; unit: string; quality: string; time: string; error?: string });
      const good = bodies.filter((b) => b.quality === 'good').map((b) => b.value);
      assert.deepEqual([...new Set(good)], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9].filter((v) => good.includes(v)), 'values in the order they were set');
      for (const v of [1, 2, 3, 4, 5, 6, 7, 8, 9]) assert.ok(good.includes(v), `a reading of ${v}, polled during the outage or not`);
      assert.equal(bodies.at(-1)!.quality, 'bad');
      assert.match(bodies.at(-1)!.error!, /^offline: /);
      messages.forEach((m, i) => {
        assert.equal(m.subject, 'factory/plc/press/cycle');
        assert.equal(m.durable, true);
        assert.deepEqual(m.application_properties, { site: 'plant-1', gateway: 'test-gw' });
        assert.equal((m.creation_time as Date).getTime(), Date.parse(bodies[i]!.time), 'creation_time is the time of the poll');
        if (i > 0) assert.ok(Date.parse(bodies[i]!.time) >= Date.parse(bodies[i - 1]!.time), 'in order');
        assert.equal(bodies[i]!.unit, 'n');
      });
    } finally {
      await slave.unmute(1);
      assert.equal((await gw.stop()).code, 0);
    }
  });
});

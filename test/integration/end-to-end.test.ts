/**
 * The whole path, as deployed: MQTT clients → the gateway process (`uplink run`) → RabbitMQ over
 * TLS + SASL EXTERNAL, and `uplink demo`.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { rm } from 'node:fs/promises';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import mqtt from 'mqtt';
import { consume, payloadOf } from '../peers/amqp-consumer.js';
import { makeTestPki, type TestPki } from '../peers/certs.js';
import { CLI, startGateway } from '../peers/gateway.js';
import { startRabbitMq, type RabbitMqPeer } from '../peers/rabbitmq.js';

let pki: TestPki;
let broker: RabbitMqPeer;

before(async () => {
  pki = await makeTestPki();
  broker = await startRabbitMq({ pki });
});

after(async () => {
  await broker?.destroy();
  if (pki !== undefined) await rm(pki.dir, { recursive: true, force: true });
});

describe('end to end', () => {
  test('10,000 readings from MQTT clients arrive in RabbitMQ exactly once, in order per route, with the mapped properties', async () => {
    const gw = await startGateway({ config: {
      upstream: { url: `amqps://localhost:${broker.amqpsPort}`, sasl: 'external', tls: { ca: pki.ca.cert, cert: pki.client.cert, key: pki.client.key } },
      routes: [
        { topic: 'sensor/+/temperature', address: '/queue/e2e-telemetry', properties: { site: 'plant-1' } },
        { topic: '#', address: '/queue/e2e-other' },
      ],
    } });
    const started = Date.now();
    const CLIENTS = 4;
    const PER_CLIENT = 2500;
    try {
      await Promise.all(Array.from({ length: CLIENTS }, async (_, c) => {
        const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${gw.mqttPort}`, { clientId: `device-${c}` });
        // Even clients send temperatures, odd ones something else: both routes carry traffic.
        const topic = c % 2 === 0 ? `sensor/device-${c}/temperature` : `line/device-${c}/status`;
        const inFlight = new Set<Promise<unknown>>();
        for (let n = 0; n < PER_CLIENT; n++) {
          const p = client.publishAsync(topic, `${c}:${n}`, { qos: 1 });
          inFlight.add(p);
          void p.finally(() => inFlight.delete(p));
          if (inFlight.size >= 32) await Promise.race(inFlight);
        }
        await Promise.all(inFlight);
        await client.endAsync();
      }));
      const telemetry = await consume({ host: '127.0.0.1', port: broker.amqpsPort, pki, address: '/queue/e2e-telemetry', count: 5000, timeoutMs: 120_000 });
      const other = await consume({ host: '127.0.0.1', port: broker.amqpsPort, pki, address: '/queue/e2e-other', count: 5000, timeoutMs: 120_000 });
      for (const [name, messages, clients] of [['telemetry', telemetry, [0, 2]], ['other', other, [1, 3]]] as const) {
        const ids = messages.map((m) => String(m.message_id));
        assert.equal(new Set(ids).size, ids.length, `${name}: a message_id arrived twice`);
        assert.equal(messages.length, 5000, `${name}: ${messages.length} of 5000 arrived`);
        for (const c of clients) {
          const ns = messages.map((m) => payloadOf(m).toString()).filter((p) => p.startsWith(`${c}:`)).map((p) => Number(p.split(':')[1]));
          assert.deepEqual(ns, Array.from({ length: PER_CLIENT }, (_, i) => i), `${name}: device-${c} not complete and in order`);
        }
      }
      const sample = telemetry[0]!;
      assert.equal(sample.subject, 'sensor/device-0/temperature');
      assert.equal(sample.durable, true);
      assert.deepEqual(sample.application_properties, { site: 'plant-1', gateway: 'test-gw' });
      const created = (sample.creation_time as Date).getTime();
      assert.ok(created >= started - 1000 && created <= Date.now(), 'creation_time is when the gateway received it');
      assert.equal(other[0]!.application_properties?.gateway, 'test-gw');
    } finally {
      assert.equal((await gw.stop()).code, 0);
    }
  });

  test('uplink demo shows the path, an outage and the recovery, and loses nothing', async () => {
    const { stdout } = await promisify(execFile)(process.execPath, [CLI, 'demo', '--quick'], { timeout: 60_000 });
    assert.match(stdout, /upstream DOWN/);
    assert.match(stdout, /the receiver is back: the backlog drains/);
    assert.match(stdout, /every reading the gateway acknowledged \(\d+\) arrived upstream/);
  });
});

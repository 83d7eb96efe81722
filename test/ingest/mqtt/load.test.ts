/** 1,000 devices connect at once and each publishes a QoS 1 reading: all are stored and acknowledged. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type mqtt from 'mqtt';
import { connectClient, publishAsync, startIngest } from './helpers.js';

const CLIENTS = 1000;

test(`${CLIENTS} concurrent clients connect and publish at QoS 1 (mqtt.maxConnections at its default, ${CLIENTS})`, { timeout: 120_000 }, async () => {
  const h = await startIngest();
  const clients: mqtt.MqttClient[] = [];
  try {
    const started = Date.now();
    const connecting = Array.from({ length: CLIENTS }, (_, i) => connectClient(h.url, { clientId: `dev-${i}`, connectTimeout: 30_000 }));
    clients.push(...await Promise.all(connecting));
    assert.equal(h.ingest.stats().connections, CLIENTS);
    await Promise.all(clients.map((client, i) => publishAsync(client, `sensor/dev-${i}/temp`, String(i), 1)));
    const seconds = (Date.now() - started) / 1000;
    assert.equal(h.spool!.stats().depth, CLIENTS);
    assert.deepEqual(h.ingest.stats().ingested, { '/queue/telemetry': CLIENTS });
    const stored = await h.spooled();
    assert.deepEqual(new Set(stored.map((r) => r.topic)).size, CLIENTS);
    assert.deepEqual(h.ingest.stats().refused, {});
    console.log(`# ${CLIENTS} clients connected and published in ${seconds.toFixed(1)} s`);
  } finally {
    await Promise.all(clients.map((c) => c.endAsync()));
    await h.stop();
  }
});

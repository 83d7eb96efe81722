/**
 * A half-open upstream connection: the path to the broker dies without FIN or RST (a cellular
 * link, a firewall that dropped its state). A TCP relay between the gateway process and a Qpid
 * Proton receiver stops forwarding, both ways, and closes nothing. Only the idle timeout can
 * notice; the gateway then reconnects over its second URL and sends every reading that was in
 * flight again, with the same message_id.
 */
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { after, before, describe, test } from 'node:test';
import mqtt from 'mqtt';
import { UPSTREAM_DEFAULTS } from '../../src/upstream/amqp/amqp-upstream.js';
import { AmqpUpstream } from '../../src/upstream/amqp/amqp-upstream.js';
import { makeTestPki, type TestPki } from '../peers/certs.js';
import { startGateway } from '../peers/gateway.js';
import { memoryLogger } from '../peers/memory-log.js';
import { startProtonReceiver } from '../peers/proton.js';
import { startScriptedReceiver } from '../peers/rhea-receiver.js';
import { startTcpRelay } from '../peers/tcp-relay.js';
import { until } from './pipeline.js';

let pki: TestPki;
before(async () => { pki = await makeTestPki(); });
after(async () => { if (pki !== undefined) await rm(pki.dir, { recursive: true, force: true }); });

async function metric(port: number, name: string): Promise<number | undefined> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line === undefined ? undefined : Number(line.split(' ')[1]);
}

describe('a half-open upstream connection', () => {
  test('the path goes silent (no FIN, no RST): the gateway notices, reconnects over the second URL, and resends what was in flight with the same message_id', async () => {
    // The first 4 transfers are never settled: in flight when the path dies.
    const receiver = await startProtonReceiver({ pki, credit: { mode: 'window', n: 10 }, holdFirst: 4 });
    const relay = await startTcpRelay({ host: '127.0.0.1', port: receiver.port });
    const viaRelay = `amqps://localhost:${relay.port}`;
    const direct = receiver.url.replace('127.0.0.1', 'localhost');
    const gw = await startGateway({ config: {
      upstream: {
        url: [viaRelay, direct], sasl: 'external', idleTimeout: '1s',
        tls: { ca: pki.ca.cert, cert: pki.client.cert, key: pki.client.key },
      },
      routes: [{ topic: 'sensor/#', address: '/queue/half-open' }],
    } });
    const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${gw.mqttPort}`);
    try {
      await gw.waitForLog((l) => l.msg === 'upstream connected' && l.url === viaRelay);
      for (let i = 0; i < 8; i++) await client.publishAsync('sensor/a', `before-${i}`, { qos: 1 });
      const first = await receiver.waitForTransfers(8, 20_000);
      assert.ok(first.every((t) => t.conn === 1));
      const held = first.filter((t) => t.held).map((t) => String(t.message_id));
      const accepted = first.filter((t) => !t.held).map((t) => String(t.message_id));
      assert.equal(held.length, 4);
      // The 4 accepted ones must be settled at the gateway before the path dies, or they are in flight too.
      await until(async () => (await metric(gw.httpPort, 'uplink_spool_depth')) === 4, 'the 4 accepted to leave the spool', 20_000);

      relay.freeze();
      // Sent into the dead path: in flight as well.
      for (let i = 0; i < 3; i++) await client.publishAsync('sensor/a', `during-${i}`, { qos: 1 });

      const noticed = await gw.waitForLog((l) => /nothing heard from the broker/.test(String(l.msg)), 30_000);
      assert.equal(noticed.level, 'warn');
      assert.equal(noticed.url, viaRelay);
      assert.equal(noticed.idleTimeoutMs, 1000);
      await gw.waitForLog((l) => l.msg === 'upstream connected' && l.url === direct, 30_000);

      const all = await receiver.waitForTransfers(8 + 4 + 3, 30_000);
      const second = all.filter((t) => t.conn === 2);
      const resent = second.map((t) => String(t.message_id));
      // The held ones first, with their ids, in order; then the three sent into the dead path; nothing accepted sent twice.
      assert.deepEqual(resent.slice(0, 4), held);
      assert.equal(resent.length, 7, `conn 2 got ${resent.length} transfers`);
      assert.ok(resent.slice(4).every((id) => !first.some((t) => String(t.message_id) === id)));
      assert.ok(second.every((t) => t.outcome === 'accept'));
      assert.equal(new Set([...accepted, ...resent]).size, 11, 'every reading accepted exactly once');
      assert.equal(all.length, 15, 'a reading was sent more often than the dead path explains');
      await until(async () => (await metric(gw.httpPort, 'uplink_spool_depth')) === 0, 'the spool to drain', 20_000);
    } finally {
      await client.endAsync();
      await relay.stop();
      await receiver.stop();
      assert.equal((await gw.stop()).code, 0);
    }
  });

  test(`the open frame asks for upstream.idleTimeout: ${UPSTREAM_DEFAULTS.idleTimeoutMs} ms by default, the configured value otherwise`, async () => {
    const peer = await startScriptedReceiver({ linkCredit: 1, sessionWindow: 10 });
    try {
      for (const idleTimeoutMs of [undefined, 1500]) {
        const upstream = new AmqpUpstream({ urls: [peer.url], sasl: 'anonymous', gatewayId: 'gw', log: memoryLogger().log,
          ...(idleTimeoutMs === undefined ? {} : { idleTimeoutMs }) });
        await upstream.start();
        await until(() => upstream.state().connected, 'the connection');
        await upstream.stop();
      }
      assert.deepEqual(peer.opens().map((o) => o.idle_time_out), [20_000, 1500]);
    } finally {
      await peer.stop();
    }
  });
});

/**
 * The gateway process with an upstream: readiness follows the connection, SIGHUP reloads, and
 * errors show in the log.
 */
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { after, before, describe, test } from 'node:test';
import { makeTestPki, type TestPki } from '../peers/certs.js';
import { startGateway } from '../peers/gateway.js';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { ptyPair, tempDir } from '../ingest/serial/helpers.js';
import { startProtonReceiver } from '../peers/proton.js';

let pki: TestPki;
before(async () => { pki = await makeTestPki(); });
after(async () => { if (pki !== undefined) await rm(pki.dir, { recursive: true, force: true }); });

async function readyz(port: number): Promise<{ status: number; body: { ready: boolean; conditions: Record<string, { ready: boolean; reason?: string }> } }> {
  const res = await fetch(`http://127.0.0.1:${port}/readyz`);
  return { status: res.status, body: await res.json() as never };
}

async function until(condition: () => Promise<boolean>, what: string, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await condition())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The samples of a Prometheus text exposition; throws on a line that is not valid. */
function parseMetrics(text: string): Map<string, number> {
  const samples = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('# HELP ') || line.startsWith('# TYPE ')) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*\})?) (-?(?:\d+(?:\.\d+)?(?:e[+-]?\d+)?|NaN|\+Inf|-Inf))$/i.exec(line);
    assert.ok(match, `not Prometheus text: ${line}`);
    // Prometheus reads NaN and Inf in any case (Go ParseFloat); prom-client writes "Nan".
    samples.set(match[1]!, Number(match[2]!.replace(/^nan$/i, "NaN")));
  }
  return samples;
}

describe('gateway with an upstream', () => {
  test('/metrics is Prometheus text, and its counters move with traffic', async () => {
    const receiver = await startProtonReceiver({ pki, credit: { mode: 'window', n: 10 } });
    const gw = await startGateway({ config: {
      upstream: { url: receiver.url.replace('127.0.0.1', 'localhost'), sasl: 'external', tls: { ca: pki.ca.cert, cert: pki.client.cert, key: pki.client.key } },
      routes: [{ topic: 'sensor/#', address: '/queue/metrics' }],
    } });
    try {
      const scrape = async (): Promise<Map<string, number>> => parseMetrics(await (await fetch(`http://127.0.0.1:${gw.httpPort}/metrics`)).text());
      await until(async () => (await scrape()).get('uplink_upstream_connected') === 1, 'connected');
      const before = await scrape();
      assert.equal(before.get('uplink_spool_depth'), 0);
      assert.ok((before.get('process_resident_memory_bytes') ?? 0) > 0, 'process metrics');
      const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${gw.mqttPort}`);
      for (let i = 0; i < 7; i++) await client.publishAsync('sensor/a', `r${i}`, { qos: 1 });
      await client.publishAsync('nowhere', 'x', { qos: 1 });
      await client.endAsync();
      await receiver.waitForTransfers(7);
      // Counted forwarded at the outcome, out of the spool at the ack's commit a little later.
      await until(async () => {
        const now = await scrape();
        return now.get('uplink_forwarded_total{address="/queue/metrics"}') === 7 && now.get('uplink_spool_depth') === 0;
      }, 'forwarded 7, the spool empty');
      const after = await scrape();
      assert.equal(after.get('uplink_ingested_total{address="/queue/metrics"}'), 7);
      assert.equal(after.get('uplink_ingest_rejected_total{reason="unrouted"}'), 1);
      assert.equal(after.get('uplink_upstream_outcomes_total{outcome="accepted"}'), 7);
      assert.equal(after.get('uplink_spool_depth'), 0);
      assert.ok((after.get('uplink_spool_commits_total') ?? 0) > (before.get('uplink_spool_commits_total') ?? 0));
      // The receiver keeps a window of 10 (credit + unsettled = 10): with all 7 settled, the link has all 10.
      await until(async () => (await scrape()).get('uplink_upstream_credit') === 10, 'the credit the receiver granted (10)');
    } finally {
      await receiver.stop();
      assert.equal((await gw.stop()).code, 0);
    }
  });

  test('serial lines configured in uplink.yaml flow through the gateway process to the upstream', async () => {
    const receiver = await startProtonReceiver({ pki, credit: { mode: 'window', n: 10 } });
    const device = join(await tempDir(), 'ttyLINE1');
    const pty = await ptyPair(device);
    const gw = await startGateway({ config: {
      upstream: { url: receiver.url.replace('127.0.0.1', 'localhost'), sasl: 'external', tls: { ca: pki.ca.cert, cert: pki.client.cert, key: pki.client.key } },
      serial: [{ name: 'line1', path: device, baudRate: 115200, decode: 'json', topic: 'sensor/{port}/{metric}' }],
      routes: [{ topic: 'sensor/#', address: '/queue/serial' }],
    } });
    try {
      for (let i = 0; i < 20; i++) await pty.write(`{"metric":"temp","value":${i}}\n`);
      const transfers = await receiver.waitForTransfers(20, 20_000);
      assert.equal(transfers.length, 20);
      assert.ok(transfers.every((t) => t.address === '/queue/serial'));
    } finally {
      await pty.kill();
      await receiver.stop();
      assert.equal((await gw.stop()).code, 0);
    }
  });

  test('/readyz is 200 while connected, 503 with the reason when the upstream is gone', async () => {
    const receiver = await startProtonReceiver({ pki, credit: { mode: 'window', n: 10 } });
    const gw = await startGateway({ config: {
      upstream: { url: receiver.url.replace('127.0.0.1', 'localhost'), sasl: 'external', tls: { ca: pki.ca.cert, cert: pki.client.cert, key: pki.client.key } },
    } });
    try {
      await until(async () => (await readyz(gw.httpPort)).status === 200, 'ready');
      assert.ok(gw.logs.some((l) => l.msg === 'upstream connected' && l.component === 'upstream'));
      await receiver.stop();
      await until(async () => (await readyz(gw.httpPort)).status === 503, 'not ready');
      const { body } = await readyz(gw.httpPort);
      assert.match(body.conditions.upstream?.reason ?? '', /^upstream not connected: /);
      assert.ok(gw.logs.some((l) => l.level === 'error' && l.code === 'UPSTREAM_CONNECTION' && typeof l.retryInMs === 'number'));
      gw.child.kill('SIGHUP');
      await gw.waitForLog((l) => /SIGHUP/.test(String(l.msg)));
    } finally {
      await receiver.stop();
      assert.equal((await gw.stop()).code, 0);
    }
  });
});

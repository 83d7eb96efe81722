/**
 * The gateway process with an upstream: readiness follows the connection, SIGHUP reloads, and
 * errors show in the log.
 */
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { after, before, describe, test } from 'node:test';
import { makeTestPki, type TestPki } from '../peers/certs.js';
import { startGateway } from '../peers/gateway.js';
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

describe('gateway with an upstream', () => {
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

import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { describe, test } from 'node:test';
import { runCli as uplink, startGateway } from '../peers/gateway.js';

describe('uplink run', () => {
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    test(`starts, logs JSON, and stops cleanly with exit 0 on ${signal}`, async () => {
      const gw = await startGateway();
      const result = await gw.stop(signal);
      assert.deepEqual(result, { code: 0, signal: null }, gw.stderr());
      assert.deepEqual(gw.nonJson, [], 'every stdout line is JSON');
      assert.ok(gw.logs.every((line) => typeof line.level === 'string' && typeof line.time === 'string' && line.gatewayId === 'test-gw'));
      assert.ok(gw.logs.some((line) => line.msg === 'stopping' && line.signal === signal));
      assert.equal(gw.logs.at(-1)?.msg, 'stopped');
    });
  }

  test('without an upstream the log and /readyz say that readings wait in the spool', async () => {
    const gw = await startGateway();
    try {
      assert.ok(gw.logs.some((line) => line.level === 'warn' && /no upstream configured: readings wait in the spool/.test(String(line.msg))));
      const health = await fetch(`http://127.0.0.1:${gw.httpPort}/healthz`);
      assert.equal(health.status, 200);
      const ready = await fetch(`http://127.0.0.1:${gw.httpPort}/readyz`);
      assert.equal(ready.status, 503);
      const body = await ready.json() as { ready: boolean; conditions: Record<string, { ready: boolean; reason?: string }> };
      assert.equal(body.ready, false);
      assert.match(body.conditions.upstream?.reason ?? '', /no upstream configured: readings wait in the spool/);
    } finally {
      assert.equal((await gw.stop()).code, 0);
    }
  });

  test('an invalid config is exit 1 with every error as path: message, before anything starts', async () => {
    await assert.rejects(startGateway({ config: { mqtt: { port: 0 }, bogus: true } }), (err: Error) => {
      assert.match(err.message, /gateway exited \(1\)/);
      assert.match(err.message, /mqtt\.port: must be a port from 1 to 65535/);
      assert.match(err.message, /bogus: unknown key/);
      return true;
    });
  });

  test('a port already in use is a clear error and exit 1, not a crash with a stack', async () => {
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const port = (blocker.address() as { port: number }).port;
    try {
      await assert.rejects(startGateway({ config: { http: { host: '127.0.0.1', port } } }), (err: Error) => {
        assert.match(err.message, /gateway exited \(1\)/);
        assert.match(err.message, new RegExp(`cannot listen for HTTP on 127\\.0\\.0\\.1:${port}: the port is already in use`));
        return true;
      });
    } finally {
      blocker.close();
    }
  });
});

describe('uplink command line', () => {
  test('--version prints the package version', async () => {
    const result = await uplink('--version');
    assert.equal(result.code, 0);
    assert.match(result.stdout, /^\d+\.\d+\.\d+\n$/);
  });

  test('--help lists the commands', async () => {
    const result = await uplink('--help');
    assert.equal(result.code, 0);
    assert.match(result.stdout, /uplink run \[--config FILE\]/);
    assert.match(result.stdout, /uplink check-config --config FILE/);
  });

  test('an unknown command is exit 2 with a clear message', async () => {
    const result = await uplink('frobnicate');
    assert.equal(result.code, 2);
    assert.match(result.stderr, /unknown command 'frobnicate'/);
  });

  test('an unknown flag is exit 2 with a clear message', async () => {
    const result = await uplink('run', '--colour');
    assert.equal(result.code, 2);
    assert.match(result.stderr, /Unknown option '--colour'/);
  });
});

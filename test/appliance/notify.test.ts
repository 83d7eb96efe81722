/**
 * sd_notify from the real process: `node dist/cli.js run` with NOTIFY_SOCKET pointing at a unix
 * datagram socket the test bound (as systemd does for Type=notify) sends READY=1 once started,
 * WATCHDOG=1 while it runs (WATCHDOG_USEC set), and STOPPING=1 when it stops.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { startGateway } from '../peers/gateway.js';
import { notifySocket, PYTHON, requireTool } from './helpers.js';

describe('systemd notify (Type=notify)', () => {
  test('READY=1 once started, WATCHDOG=1 while running, STOPPING=1 on SIGTERM', async (t) => {
    if (requireTool(t, PYTHON, 'binds the notify socket') === undefined) return;
    const dir = await mkdtemp(join(tmpdir(), 'uplink-notify-'));
    const socket = await notifySocket(join(dir, 'notify.sock'));
    try {
      // 200 ms: pings every 100 ms, so the test sees several without waiting long.
      const gw = await startGateway({ env: { NOTIFY_SOCKET: socket.path, WATCHDOG_USEC: '200000' } });
      let stopped = false;
      try {
        await socket.waitFor('READY=1');
        assert.equal(socket.messages[0], 'READY=1', 'READY=1 comes first');
        const ready = gw.logs.find((l) => l.msg === 'systemd notified: ready');
        assert.ok(ready, 'the log says systemd was notified');
        assert.equal(ready.watchdogMs, 100);
        assert.equal(ready.component, 'systemd');
        assert.equal((await fetch(`http://127.0.0.1:${gw.httpPort}/healthz`)).status, 200);
        await socket.waitFor('WATCHDOG=1');
        const result = await gw.stop('SIGTERM');
        stopped = true;
        assert.equal(result.code, 0);
        // The gateway's datagrams were all queued before it exited; ours marks the end of them.
        await socket.send('TEST-END');
        await socket.waitFor('TEST-END');
        const sent = socket.messages.slice(0, -1);
        assert.equal(sent.at(-1), 'STOPPING=1', `STOPPING=1 is the last message: ${JSON.stringify(sent)}`);
        assert.equal(sent.filter((m) => m === 'READY=1').length, 1);
        assert.equal(sent.filter((m) => m === 'STOPPING=1').length, 1);
        assert.ok(sent.slice(1, -1).every((m) => m === 'WATCHDOG=1'), `between them only watchdog pings: ${JSON.stringify(sent)}`);
      } finally {
        if (!stopped) await gw.stop('SIGKILL');
      }
    } finally {
      await socket.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('a watchdog meant for another process (WATCHDOG_PID) is left alone; READY=1 still goes', async (t) => {
    if (requireTool(t, PYTHON, 'binds the notify socket') === undefined) return;
    const dir = await mkdtemp(join(tmpdir(), 'uplink-notify-'));
    const socket = await notifySocket(join(dir, 'notify.sock'));
    try {
      const gw = await startGateway({ env: { NOTIFY_SOCKET: socket.path, WATCHDOG_USEC: '200000', WATCHDOG_PID: '1' } });
      try {
        await socket.waitFor('READY=1');
        assert.equal(gw.logs.find((l) => l.msg === 'systemd notified: ready')?.watchdogMs, null);
      } finally {
        assert.equal((await gw.stop('SIGTERM')).code, 0);
      }
      await socket.send('TEST-END');
      await socket.waitFor('TEST-END');
      assert.deepEqual(socket.messages, ['READY=1', 'STOPPING=1', 'TEST-END']);
    } finally {
      await socket.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('a notify socket nobody listens on is logged as an error, and the gateway runs on', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'uplink-notify-'));
    try {
      const gw = await startGateway({ env: { NOTIFY_SOCKET: join(dir, 'nobody.sock') } });
      try {
        const line = await gw.waitForLog((l) => l.msg === 'systemd notify: send failed');
        assert.equal(line.level, 'error');
        assert.equal((await fetch(`http://127.0.0.1:${gw.httpPort}/healthz`)).status, 200);
      } finally {
        assert.equal((await gw.stop('SIGTERM')).code, 0);
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

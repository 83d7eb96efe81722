/**
 * Logs of the real process: JSON lines on a pipe (journald), one readable line each on a
 * terminal, the level from the config and changed by SIGHUP, other changes named as needing a
 * restart, and no secret in any line.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import mqtt from 'mqtt';
import { stringify } from 'yaml';
import { CLI, startGateway } from '../peers/gateway.js';
import { freePort, freePorts } from '../peers/ports.js';
import { HERE, PYTHON, requireTool, until } from './helpers.js';

async function connectOnce(port: number): Promise<void> {
  const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { reconnectPeriod: 0 });
  await client.endAsync();
}

describe('logs', () => {
  test('JSON lines on a pipe, each with level, time, gatewayId and msg', async () => {
    const gw = await startGateway();
    try {
      assert.deepEqual(gw.nonJson, []);
      assert.ok(gw.logs.length > 3);
      for (const line of gw.logs) {
        assert.ok(['trace', 'debug', 'info', 'warn', 'error', 'fatal'].includes(String(line.level)), JSON.stringify(line));
        assert.ok(!Number.isNaN(Date.parse(String(line.time))), JSON.stringify(line));
        assert.equal(line.gatewayId, 'test-gw');
        assert.equal(typeof line.msg, 'string');
      }
      assert.ok(gw.logs.some((l) => l.component === 'http' && l.msg === 'http endpoints listening'));
    } finally {
      assert.equal((await gw.stop()).code, 0);
    }
  });

  test('a readable line each on a terminal', async (t) => {
    if (requireTool(t, PYTHON, 'gives the gateway a pseudo-terminal') === undefined) return;
    const dir = await mkdtemp(join(tmpdir(), 'uplink-tty-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const [mqttPort, httpPort] = await freePorts(2) as [number, number];
    const config = join(dir, 'uplink.yaml');
    await writeFile(config, stringify({ gatewayId: 'tty-gw', dataDir: join(dir, 'data'), mqtt: { port: mqttPort }, http: { port: httpPort } }));
    const child = spawn(PYTHON, [`${HERE}pty_run.py`, process.execPath, CLI, 'run', '--config', config], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => { out += chunk; });
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    try {
      await until(() => out.includes('gateway started'), `gateway started on the terminal; got:\n${out}`);
      const lines = out.split(/\r?\n/).filter((l) => l !== '');
      for (const line of lines) assert.doesNotMatch(line, /^\{/, `not JSON on a terminal: ${line}`);
      assert.ok(lines.some((l) => new RegExp(`^\\d\\d:\\d\\d:\\d\\d\\.\\d{3} INFO {2}\\[http\\] http endpoints listening host=127\\.0\\.0\\.1 port=${httpPort}$`).test(l)),
        `a human line for the http listener in:\n${out}`);
      assert.ok(lines.some((l) => /^\d\d:\d\d:\d\d\.\d{3} WARN {2}no upstream configured/.test(l)), out);
    } finally {
      child.kill('SIGTERM');
      assert.equal(await exited, 0, out);
    }
  });

  test('SIGHUP takes over log.level, names the keys that need a restart, and keeps running on an invalid file', async () => {
    const gw = await startGateway();
    try {
      await connectOnce(gw.mqttPort);
      // At info, the debug line of a client connection is left out.
      const next = { ...gw.config, log: { level: 'debug' }, mqtt: { ...(gw.config.mqtt as object), maxConnections: 10 }, routes: [{ topic: 'a/#', address: '/queue/a' }] };
      await writeFile(gw.configFile, stringify(next));
      gw.child.kill('SIGHUP');
      const reloaded = await gw.waitForLog((l) => l.msg === 'SIGHUP: reloaded log.level');
      assert.deepEqual(reloaded.applied, ['log.level']);
      const restart = await gw.waitForLog((l) => typeof l.msg === 'string' && l.msg.startsWith('SIGHUP: the config file changed in keys that need a restart'));
      assert.equal(restart.level, 'warn');
      assert.deepEqual(restart.restartNeeded, ['mqtt.maxConnections', 'routes[0].topic', 'routes[0].address']);
      assert.match(String(restart.msg), /mqtt\.maxConnections, routes\[0\]\.topic, routes\[0\]\.address \(systemctl restart uplink\)$/);
      const upTo = gw.logs.indexOf(reloaded);
      assert.ok(!gw.logs.slice(0, upTo).some((l) => l.msg === 'mqtt client connected'), 'no debug line before the reload');
      await connectOnce(gw.mqttPort);
      const debug = await gw.waitForLog((l) => l.msg === 'mqtt client connected');
      assert.equal(debug.level, 'debug');

      await writeFile(gw.configFile, 'mqtt: { port: "not a port" }\n');
      gw.child.kill('SIGHUP');
      const invalid = await gw.waitForLog((l) => typeof l.msg === 'string' && l.msg.startsWith('SIGHUP: the config file is not valid'));
      assert.equal(invalid.level, 'error');
      assert.match(String(invalid.error), /mqtt\.port/);
      assert.equal((await fetch(`http://127.0.0.1:${gw.httpPort}/healthz`)).status, 200, 'still running');
    } finally {
      assert.equal((await gw.stop()).code, 0);
    }
  });

  test('no secret reaches the log: not the upstream password, at start, on errors or on SIGHUP', async () => {
    const closed = await freePort();
    const secret = 'S3cret-never-logged-41';
    const upstream = { url: `amqp://127.0.0.1:${closed}`, sasl: 'plain', username: 'gw', password: secret, allowInsecure: true };
    const gw = await startGateway({ config: { upstream, log: { level: 'trace' } } });
    try {
      await gw.waitForLog((l) => l.level === 'error' && l.component === 'upstream');
      await writeFile(gw.configFile, stringify({ ...gw.config, upstream: { ...upstream, password: `${secret}-new` } }));
      gw.child.kill('SIGHUP');
      const restart = await gw.waitForLog((l) => Array.isArray(l.restartNeeded));
      assert.deepEqual(restart.restartNeeded, ['upstream.password']);
    } finally {
      assert.equal((await gw.stop()).code, 0);
    }
    const all = gw.logs.map((l) => JSON.stringify(l)).join('\n') + gw.nonJson.join('\n') + gw.stderr();
    assert.ok(!all.includes(secret), 'the password appears nowhere in the output');
  });
});

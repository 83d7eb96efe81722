/**
 * Starting and stopping, where the order matters: a stop that comes during the start (what started
 * stops, nothing more starts, systemd never hears READY=1), a second signal while a stop hangs
 * (the process exits at once with 1), and the uptime and rates, which come from a monotonic clock
 * (a Raspberry Pi has no clock of its own; NTP sets the wall clock after boot).
 *
 * None of this waits for a time to pass: the start is held at a component until the test lets it
 * go, and the stop hangs on a reading whose fsync waits behind a read the test controls.
 */
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { mkdtemp, open, readdir, readlink, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import mqtt from 'mqtt';
import { stringify } from 'yaml';
import { parseConfig } from '../../src/config/load.js';
import { hashPassword } from '../../src/core/password.js';
import { Gateway } from '../../src/gateway.js';
import { Rates } from '../../src/ops/rates.js';
import { memoryLogger } from '../peers/memory-log.js';
import { startGateway } from '../peers/gateway.js';
import { freePorts } from '../peers/ports.js';
import { notifySocket, PYTHON, requireTool, run, until } from './helpers.js';

/** Whether something accepts TCP connections on 127.0.0.1:port. */
function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.once('connect', () => { socket.destroy(); resolve(true); });
    socket.once('error', () => resolve(false));
  });
}

async function gatewayConfig(dir: string, mqttPort: number, httpPort: number): Promise<ReturnType<typeof parseConfig>> {
  return parseConfig(stringify({
    gatewayId: 'lifecycle-gw', dataDir: join(dir, 'data'),
    mqtt: { host: '127.0.0.1', port: mqttPort }, http: { host: '127.0.0.1', port: httpPort },
  }), { source: 'test', baseDir: dir });
}

describe('start and stop', () => {
  test('a stop during the start waits for it, stops what started, starts nothing more, and systemd hears no READY=1', async (t) => {
    if (requireTool(t, PYTHON, 'binds the notify socket') === undefined) return;
    const dir = await mkdtemp(join(tmpdir(), 'uplink-lifecycle-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const socket = await notifySocket(join(dir, 'notify.sock'));
    t.after(() => socket.close());
    const [mqttPort, httpPort] = await freePorts(2) as [number, number];
    const { log, lines } = memoryLogger();
    const gw = new Gateway(await gatewayConfig(dir, mqttPort, httpPort), log, { env: { NOTIFY_SOCKET: socket.path } });

    // The serial component starts after the spool and MQTT, before HTTP and systemd notify: hold it there.
    let entered!: () => void;
    const inSerial = new Promise<void>((resolve) => { entered = resolve; });
    let release!: () => void;
    const gate = new Promise<void>((resolve) => { release = resolve; });
    const serialStart = gw.serial.start.bind(gw.serial);
    gw.serial.start = async () => {
      entered();
      await gate;
      await serialStart();
    };

    const starting = gw.start();
    await inSerial;
    assert.equal(await listening(mqttPort), true, 'MQTT is open before serial');
    let stopped = false;
    const stopping = gw.stop().then(() => { stopped = true; });
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(stopped, false, 'stop() waits for the start in progress');

    release();
    await starting; // resolves: a start cut short by stop() is no failure
    await stopping;
    assert.ok(!lines.some((l) => l.msg === 'gateway started'), 'no "gateway started"');
    assert.deepEqual(lines.find((l) => l.msg === 'start interrupted by stop')?.before, 'modbus', 'the component after serial');
    assert.ok(!lines.some((l) => l.msg === 'http endpoints listening'), 'HTTP was never opened');
    assert.equal(await listening(httpPort), false);
    assert.equal(await listening(mqttPort), false, 'MQTT, which had started, is closed again');
    await socket.send('TEST-END');
    await socket.waitFor('TEST-END');
    assert.deepEqual(socket.messages, ['TEST-END'], 'neither READY=1 nor anything else went to systemd');
  });

  test('a second signal while the stop hangs exits at once with 1, without waiting for the stop', async (t) => {
    if (requireTool(t, 'mkfifo', 'coreutils') === undefined) return;
    const dir = await mkdtemp(join(tmpdir(), 'uplink-second-signal-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const users = join(dir, 'users');
    await writeFile(users, `dev1:${await hashPassword('pw1')}\n`);
    const [mqttPort] = await freePorts(1) as [number];
    // One libuv worker thread: what blocks it blocks every fsync of the spool behind it.
    const gw = await startGateway({
      config: { mqtt: { host: '127.0.0.1', port: mqttPort, auth: 'password', usersFile: users }, routes: [{ topic: '#', address: '/queue/a' }] },
      env: { UV_THREADPOOL_SIZE: '1' },
    });
    let holder: Awaited<ReturnType<typeof open>> | undefined;
    const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${mqttPort}`, { username: 'dev1', password: 'pw1', reconnectPeriod: 0 });
    try {
      // The users file becomes a FIFO that the test holds open (so opening it does not block): the
      // comparison of the files read at start, on SIGHUP, reads from it and waits for the test.
      await rm(users);
      assert.equal((await run('mkfifo', [users])).code, 0);
      holder = await open(users, 'r+');
      gw.child.kill('SIGHUP');
      const fifoOpen = async (): Promise<boolean> => {
        const fds = await readdir(`/proc/${gw.child.pid}/fd`).catch(() => [] as string[]);
        const targets = await Promise.all(fds.map((fd) => readlink(`/proc/${gw.child.pid}/fd/${fd}`).catch(() => '')));
        return targets.includes(users);
      };
      await until(fifoOpen, 'the gateway reading the FIFO');
      // A reading committed, its fsync queued behind that read: the spool cannot close before it is done.
      client.publish('sensor/1', 'x', { qos: 1 });
      await until(async () => ((await (await fetch(`http://127.0.0.1:${gw.httpPort}/status`)).json()) as { spool: { depth: number } }).spool.depth === 1,
        'the reading in the spool');

      gw.child.kill('SIGTERM');
      await gw.waitForLog((l) => l.msg === 'stopping');
      gw.child.kill('SIGTERM');
      const second = await gw.waitForLog((l) => l.msg === 'second signal while stopping: exiting now');
      assert.equal(second.level, 'warn');
      // libuv lets the process end only once its worker thread is free: free it. A stop still
      // running would now finish and log 'stopped'; exiting at once, it never does.
      await holder.write(`dev1:${await hashPassword('pw1')}\n`);
      await holder.close();
      holder = undefined;
      assert.deepEqual(await gw.exited, { code: 1, signal: null });
      assert.ok(!gw.logs.some((l) => l.msg === 'stopped'), `it did not wait for the stop:\n${gw.logs.map((l) => l.msg).join('\n')}`);
    } finally {
      await holder?.close();
      await client.endAsync(true);
      await gw.stop('SIGKILL');
    }
  });

  test('uptime and rates come from a monotonic clock: a wall clock set a year forward moves neither', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'uplink-clock-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const [mqttPort, httpPort] = await freePorts(2) as [number, number];
    const { log } = memoryLogger();
    const gw = new Gateway(await gatewayConfig(dir, mqttPort, httpPort), log);
    const rates = new Rates({ read: () => ({ ingested: 0 }) });
    await gw.start();
    await rates.start();
    const wallClock = Date.now;
    const year = 365 * 86_400_000;
    try {
      Date.now = () => wallClock() + year; // what NTP does to a Pi that booted in 1970
      const status = gw.status() as { uptimeSeconds: number; startedAt: string; rates: { windowSeconds: number } };
      assert.ok(status.uptimeSeconds < 3600, `uptime ${status.uptimeSeconds} s`);
      assert.ok(status.rates.windowSeconds < 3600, `rate window ${status.rates.windowSeconds} s`);
      assert.ok(rates.rates().windowSeconds < 3600, 'Rates on its own');
      // The start shown on the wall clock as it is now: the same instant as the uptime says.
      assert.ok(Math.abs(Date.parse(status.startedAt) - (Date.now() - status.uptimeSeconds * 1000)) < 1000, status.startedAt);
    } finally {
      Date.now = wallClock;
      await rates.stop();
      await gw.stop();
    }
  });
});

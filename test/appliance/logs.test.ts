/**
 * Logs of the real process: JSON lines on a pipe (journald), one readable line each on a
 * terminal, the level from the config and changed by SIGHUP, other changes (also new contents of
 * the files read only at start) named as needing a restart, the upstream certificates reported
 * as they were found, and no secret in any line.
 */
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { copyFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { describe, test } from 'node:test';
import { promisify } from 'node:util';
import mqtt from 'mqtt';
import { stringify } from 'yaml';
import { hashPassword } from '../../src/core/password.js';
import { createLogger } from '../../src/ops/log.js';
import { makeTestPki } from '../peers/certs.js';
import { startProtonReceiver } from '../peers/proton.js';
import { CLI, startGateway, type GatewayProcess, type LogLine } from '../peers/gateway.js';
import { freePorts } from '../peers/ports.js';
import { HERE, PYTHON, requireTool, until } from './helpers.js';

const RESTART = 'SIGHUP: changes that need a restart to take effect';

/** Sends SIGHUP and returns the n-th 'SIGHUP: reloaded' line (n counts from 1 over the run). */
async function sighup(gw: GatewayProcess, n: number): Promise<LogLine> {
  gw.child.kill('SIGHUP');
  const lines = (): LogLine[] => gw.logs.filter((l) => typeof l.msg === 'string' && l.msg.startsWith('SIGHUP: reloaded'));
  await until(() => lines().length >= n, `reload ${n}`);
  return lines()[n - 1]!;
}

/** The restart lines logged so far. */
function restartLines(gw: GatewayProcess): LogLine[] {
  return gw.logs.filter((l) => typeof l.msg === 'string' && l.msg.startsWith(RESTART));
}

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
      const restart = await gw.waitForLog((l) => typeof l.msg === 'string' && l.msg.startsWith(RESTART));
      assert.equal(restart.level, 'warn');
      assert.deepEqual(restart.restartNeeded, ['mqtt.maxConnections', 'routes[0].topic', 'routes[0].address']);
      assert.match(String(restart.msg), /: mqtt\.maxConnections, routes\[0\]\.topic, routes\[0\]\.address \(systemctl restart uplink\)$/);
      const upTo = gw.logs.indexOf(reloaded);
      assert.ok(!gw.logs.slice(0, upTo).some((l) => l.msg === 'mqtt client connected'), 'no debug line before the reload');
      await connectOnce(gw.mqttPort);
      const debug = await gw.waitForLog((l) => l.msg === 'mqtt client connected');
      assert.equal(debug.level, 'debug');

      // An invalid file: the error says why, this reload applies nothing, the level stays debug,
      // nothing is named as needing a restart, and the gateway keeps running.
      await writeFile(gw.configFile, 'mqtt: { port: "not a port" }\n');
      const kept = await sighup(gw, 2);
      assert.deepEqual(kept.applied, []);
      assert.equal(kept.msg, 'SIGHUP: reloaded nothing');
      const invalid = gw.logs.find((l) => typeof l.msg === 'string' && l.msg.startsWith('SIGHUP: the config file is not valid'));
      assert.equal(invalid?.level, 'error');
      assert.match(String(invalid?.error), /mqtt\.port/);
      assert.ok(gw.logs.indexOf(invalid!) > gw.logs.indexOf(reloaded) && gw.logs.indexOf(invalid!) < gw.logs.indexOf(kept), 'logged by this reload');
      const mark = gw.logs.length;
      await connectOnce(gw.mqttPort);
      const stillDebug = await gw.waitForLog((l) => l.msg === 'mqtt client connected' && gw.logs.indexOf(l) >= mark);
      assert.equal(stillDebug.level, 'debug');
      // Every line of that reload came before this later one: a restart line would be among them.
      assert.deepEqual(restartLines(gw), [restart], 'only the restart line of the first reload');
      assert.equal((await fetch(`http://127.0.0.1:${gw.httpPort}/healthz`)).status, 200, 'still running');
    } finally {
      assert.equal((await gw.stop()).code, 0);
    }
  });

  test('SIGHUP names new contents of the MQTT TLS files and mqtt.usersFile, and reports the upstream certificates as found', async (t) => {
    if (requireTool(t, 'openssl', 'makes the test certificates') === undefined) return;
    if (requireTool(t, PYTHON, 'runs the Qpid Proton receiver (python3-qpid-proton)') === undefined) return;
    const pki = await makeTestPki();
    t.after(() => rm(pki.dir, { recursive: true, force: true }));
    // A connected upstream: it reads its certificates again only on SIGHUP (a failing one would
    // also before each attempt to connect, and take the new ones over by itself).
    const receiver = await startProtonReceiver({ pki });
    t.after(() => receiver.stop());
    const dir = await mkdtemp(join(tmpdir(), 'uplink-reload-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const file = (name: string): string => join(dir, name);
    const [mqttPort, tlsPort] = await freePorts(2) as [number, number];
    await copyFile(pki.server.cert, file('mqtt.pem'));
    await copyFile(pki.server.key, file('mqtt.key'));
    await copyFile(pki.client.cert, file('gw.pem'));
    await copyFile(pki.client.key, file('gw.key'));
    await writeFile(file('users'), `dev1:${await hashPassword('pw1')}\n`);
    const gw = await startGateway({ config: {
      mqtt: { host: '127.0.0.1', port: mqttPort, tls: { port: tlsPort, cert: file('mqtt.pem'), key: file('mqtt.key') }, auth: 'password', usersFile: file('users') },
      upstream: { url: receiver.url.replace('127.0.0.1', 'localhost'), sasl: 'external', tls: { ca: pki.ca.cert, cert: file('gw.pem'), key: file('gw.key') } },
    } });
    try {
      await gw.waitForLog((l) => l.msg === 'upstream connected');
      // Nothing changed: nothing applied, the certificates said to be unchanged, no restart line.
      const first = await sighup(gw, 1);
      assert.deepEqual(first.applied, []);
      assert.deepEqual(first.unchanged, ['upstream certificates']);
      assert.equal(first.msg, 'SIGHUP: reloaded nothing (upstream certificates: unchanged)');

      // New contents, same config file: the upstream takes its new pair over; the MQTT listener and
      // the device accounts read theirs only at start, so they need a restart, and the log says so.
      await copyFile(pki.unknownClient.key, file('gw.key'));
      await copyFile(pki.unknownClient.cert, file('gw.pem'));
      await copyFile(pki.client.key, file('mqtt.key'));
      await copyFile(pki.client.cert, file('mqtt.pem'));
      await writeFile(file('users'), `dev1:${await hashPassword('pw1')}\ndev2:${await hashPassword('pw2')}\n`);
      const second = await sighup(gw, 2);
      assert.deepEqual(second.applied, ['upstream certificates']);
      assert.equal(second.msg, 'SIGHUP: reloaded upstream certificates');
      await until(() => restartLines(gw).length === 1, 'the restart line');
      const [restart] = restartLines(gw);
      assert.ok(gw.logs.indexOf(restart!) > gw.logs.indexOf(first), 'none for the first reload');
      assert.equal(restart!.level, 'warn');
      assert.deepEqual(restart!.restartNeeded, ['mqtt.tls files', 'mqtt.usersFile contents']);
      assert.equal(restart!.msg, `${RESTART}: mqtt.tls files, mqtt.usersFile contents (systemctl restart uplink)`);

      // The upstream key gone: the config is not valid, nothing is applied, and an error says the
      // certificates could not be read again (the running ones stay).
      await rm(file('gw.key'));
      const third = await sighup(gw, 3);
      assert.deepEqual(third.applied, []);
      const failed = await gw.waitForLog((l) => l.msg === 'SIGHUP: could not read again: upstream certificates; the running ones stay (the log above says why)');
      assert.equal(failed.level, 'error');
      await until(() => restartLines(gw).length === 2, 'the second restart line');
      assert.deepEqual(restartLines(gw)[1]!.restartNeeded, ['mqtt.tls files', 'mqtt.usersFile contents'], 'still the files read at start');
    } finally {
      assert.equal((await gw.stop()).code, 0);
    }
  });

  test('no secret reaches the log: not the upstream password or key passphrase, nor device password hashes, at start, on errors or on SIGHUP', async (t) => {
    if (requireTool(t, 'openssl', 'makes the test certificates and an encrypted key') === undefined) return;
    const pki = await makeTestPki();
    t.after(() => rm(pki.dir, { recursive: true, force: true }));
    const [mqttPort, closed] = await freePorts(2) as [number, number];
    const secret = 'S3cret-never-logged-41';
    const passphrase = 'Passphrase-never-logged-42';
    const encryptedKey = join(pki.dir, 'client-encrypted.key');
    await promisify(execFile)('openssl', ['pkey', '-in', pki.client.key, '-aes256', '-passout', `pass:${passphrase}`, '-out', encryptedKey]);
    const hash = await hashPassword('device-password');
    const upstream = {
      url: `amqps://127.0.0.1:${closed}`, sasl: 'plain', username: 'gw', password: secret,
      tls: { ca: pki.ca.cert, cert: pki.client.cert, key: encryptedKey, passphrase },
    };
    // Inline device accounts (their hashes are secrets too) and an ACL.
    const mqttConfig = { host: '127.0.0.1', port: mqttPort, auth: 'password', users: [{ username: 'dev1', password: hash }], acl: [{ user: 'dev1', publish: ['sensor/#'] }] };
    const gw = await startGateway({ config: { upstream, mqtt: mqttConfig, log: { level: 'trace' } } });
    try {
      const started = await gw.waitForLog((l) => l.msg === 'gateway started');
      assert.deepEqual(started.mqtt, { auth: 'password', users: 1, usersFile: null, acl: 1, maxConnections: 1000 }, 'a summary, not the config');
      assert.deepEqual(started.listeners, [`mqtt 127.0.0.1:${mqttPort}`, `http 127.0.0.1:${gw.httpPort}`]);
      // On errors: the failed attempt to connect (PLAIN, with the password, over TLS with the encrypted key).
      const failed = await gw.waitForLog((l) => l.component === 'upstream' && l.msg === 'upstream connection failed; retrying');
      assert.equal(failed.level, 'error');
      assert.match(String(failed.err), new RegExp(`127\\.0\\.0\\.1:${closed}`), 'the error names where it tried');
      // A wrong passphrase: the file is refused, and the error names the key, not the passphrase;
      // the running certificates (with the right one) are read again and found unchanged.
      await writeFile(gw.configFile, stringify({ ...gw.config, upstream: { ...upstream, tls: { ...upstream.tls, passphrase: `${passphrase}-wrong` } } }));
      const first = await sighup(gw, 1);
      const invalid = gw.logs.find((l) => typeof l.msg === 'string' && l.msg.startsWith('SIGHUP: the config file is not valid'));
      assert.equal(invalid?.level, 'error');
      assert.match(String(invalid?.error), /upstream\.tls\.passphrase: does not decrypt tls\.key/);
      assert.deepEqual(first.applied, []);
      assert.equal(first.msg, 'SIGHUP: reloaded nothing (upstream certificates: unchanged)');
      // A new password: a key that needs a restart, named by its path only.
      await writeFile(gw.configFile, stringify({ ...gw.config, upstream: { ...upstream, password: `${secret}-new` } }));
      const second = await sighup(gw, 2);
      assert.deepEqual(second.applied, []);
      await until(() => restartLines(gw).length === 1, 'the restart line of the second reload');
      const [restart] = restartLines(gw);
      assert.ok(gw.logs.indexOf(restart!) > gw.logs.indexOf(second), 'logged by the second reload');
      assert.deepEqual(restart!.restartNeeded, ['upstream.password']);
      assert.equal(restart!.msg, `${RESTART}: upstream.password (systemctl restart uplink)`);
    } finally {
      assert.equal((await gw.stop()).code, 0);
    }
    const all = gw.logs.map((l) => JSON.stringify(l)).join('\n') + gw.nonJson.join('\n') + gw.stderr();
    assert.ok(!all.includes(secret), 'the password appears nowhere in the output');
    assert.ok(!all.includes(passphrase), 'the key passphrase appears nowhere in the output');
    assert.ok(!all.includes(hash.split('$').at(-1)!), 'no device password hash appears in the output');
  });

  test('redaction covers secrets at every depth a logged config object puts them', () => {
    const lines: string[] = [];
    const destination = new Writable({ write(chunk: Buffer, _encoding, callback) { lines.push(chunk.toString()); callback(); } });
    const log = createLogger({ level: 'info', destination });
    const mqttConfig = { auth: 'password', users: [{ username: 'dev1', password: '$scrypt$hash-1' }, { username: 'dev2', password: '$scrypt$hash-2' }] };
    const upstreamConfig = { url: 'amqps://broker:5671', password: 'pw-3', tls: { cert: '/etc/uplink/gw.pem', key: '-----BEGIN PRIVATE KEY----- pem-4', passphrase: 'pp-5' } };
    log.info({ password: 'pw-6', passphrase: 'pp-7', mqtt: mqttConfig, upstream: upstreamConfig }, 'top level');
    log.info({ config: { mqtt: mqttConfig, upstream: upstreamConfig } }, 'one level down');
    log.child({ component: 'x' }).warn({ options: { nested: { upstream: upstreamConfig } } }, 'deeper');
    log.info({ users: mqttConfig.users }, 'the users alone');
    const text = lines.join('');
    for (const secret of ['hash-1', 'hash-2', 'pw-3', 'pem-4', 'pp-5', 'pw-6', 'pp-7']) assert.ok(!text.includes(secret), `${secret} in:\n${text}`);
    assert.ok(text.includes('/etc/uplink/gw.pem') && text.includes('dev2') && text.includes('amqps://broker:5671'), 'the rest is kept');
    assert.equal(lines.length, 4);
  });
});

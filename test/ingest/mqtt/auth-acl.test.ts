/**
 * Device auth (password, certificate) and the per-device topic ACLs, allowed and denied, with
 * mqtt.js and mosquitto_pub/mosquitto_sub as the devices.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnectSocket } from 'node:tls';
import { after, before, describe, test } from 'node:test';
import type mqtt from 'mqtt';
import { hashPassword } from '../../../src/core/password.js';
import { makeTestPki, type TestPki } from '../../peers/certs.js';
import {
  closed, CONNACK_OK, connectClient, connectPacket, mosquitto, publishAsync, sleep, startIngest, subscribeGranted, waitFor, type Harness,
} from './helpers.js';

/** A TLS connection that sends CONNECT: 'connack' if it got one, 'closed' if the broker hung up. */
function tlsConnect(port: number, pki: TestPki, pair: { cert: string; key: string } | undefined): Promise<'connack' | 'closed'> {
  return new Promise((resolve) => {
    const socket = tlsConnectSocket({
      host: '127.0.0.1', port, ca: readFileSync(pki.ca.cert),
      ...(pair ? { cert: readFileSync(pair.cert), key: readFileSync(pair.key) } : {}),
    }, () => socket.write(connectPacket(`tls-${Math.random()}`)));
    socket.on('error', () => resolve('closed'));
    socket.on('close', () => resolve('closed'));
    socket.on('data', (chunk: Buffer) => {
      if (chunk.subarray(0, 4).equals(CONNACK_OK)) resolve('connack');
      socket.destroy();
    });
  });
}

async function refusedWith(promise: Promise<unknown>): Promise<number | string | undefined> {
  try {
    await promise;
  } catch (err) {
    return (err as { code?: number | string }).code;
  }
  assert.fail('the connection was accepted');
}

/** Publishes at QoS 1; 'acked' if the PUBACK came, 'closed' if the broker closed the connection. */
async function publishOutcome(client: mqtt.MqttClient, topic: string): Promise<'acked' | 'closed'> {
  return Promise.race([
    publishAsync(client, topic, 'x', 1).then(() => 'acked' as const),
    closed(client).then(() => 'closed' as const),
  ]);
}

describe('auth: password, and the ACL matrix', () => {
  let h: Harness;
  let usersFile: string;
  before(async () => {
    const dir = await mkdtemp(join(tmpdir(), 'uplink-users-'));
    usersFile = join(dir, 'users');
    await writeFile(usersFile, `# devices of line 2\n\nbob:${await hashPassword('bob-pw')}\ncarol:${await hashPassword('carol-pw')}\n`);
    h = await startIngest({
      config: {
        auth: 'password',
        users: [{ username: 'alice', password: await hashPassword('alice-pw') }],
        usersFile,
        acl: [
          { user: 'alice', publish: ['sensor/alice/#', 'broadcast/alice'], subscribe: ['cmd/alice/#'] },
          { user: '*', publish: ['devices/%u/#', 'clients/%c/#'], subscribe: ['devices/%u/+', 'broadcast/#'] },
        ],
      },
    });
  });
  after(async () => { await h.stop(); });

  const login = (username: string, password: string, clientId = `${username}-${Math.random().toString(16).slice(2, 8)}`): Promise<mqtt.MqttClient> =>
    connectClient(h.url, { username, password, clientId });

  test('a wrong password, an unknown user, or no credentials: CONNACK 4, counted and logged without the password', async () => {
    assert.equal(await refusedWith(login('alice', 'wrong')), 4);
    assert.equal(await refusedWith(login('mallory', 'alice-pw')), 4);
    assert.equal(await refusedWith(connectClient(h.url, { clientId: 'anonymous' })), 4);
    assert.equal(h.ingest.stats().refused.auth, 3);
    const line = h.lines.find((l) => l.reason === 'wrong password');
    assert.ok(line);
    assert.equal(line.username, 'alice');
    assert.equal(line.remoteAddress, '127.0.0.1');
    assert.ok(!JSON.stringify(h.lines).includes('alice-pw') && !JSON.stringify(h.lines).includes('"wrong"'));
  });

  test('accounts from the config and from the users file log in', async () => {
    for (const [user, pw] of [['alice', 'alice-pw'], ['bob', 'bob-pw'], ['carol', 'carol-pw']] as const) {
      const client = await login(user, pw);
      assert.ok(client.connected);
      await client.endAsync();
    }
  });

  const publishCases: Array<[string, string, string, string | undefined, 'acked' | 'closed']> = [
    ['alice', 'alice-pw', 'sensor/alice/temp', undefined, 'acked'],
    ['alice', 'alice-pw', 'sensor/bob/temp', undefined, 'closed'],
    ['bob', 'bob-pw', 'sensor/alice/temp', undefined, 'closed'],
    ['bob', 'bob-pw', 'devices/bob/temp', undefined, 'acked'],
    ['bob', 'bob-pw', 'devices/alice/temp', undefined, 'closed'],
    ['carol', 'carol-pw', 'clients/carol-7/x', 'carol-7', 'acked'],
    ['carol', 'carol-pw', 'clients/carol-8/x', 'carol-7', 'closed'],
    ['alice', 'alice-pw', '$SYS/broker/fake', undefined, 'closed'],
  ];
  for (const [user, pw, topic, clientId, expected] of publishCases) {
    test(`publish: ${user}${clientId ? ` (client ${clientId})` : ''} to ${topic} is ${expected === 'acked' ? 'allowed' : 'denied'}`, async () => {
      const depth = h.spool!.stats().depth;
      const denied = h.ingest.stats().rejected.denied ?? 0;
      const client = await login(user, pw, clientId);
      assert.equal(await publishOutcome(client, topic), expected);
      if (expected === 'acked') {
        assert.equal(h.spool!.stats().depth, depth + 1);
        await client.endAsync();
      } else {
        assert.equal(h.spool!.stats().depth, depth, 'a denied publish was stored');
        assert.equal(h.ingest.stats().rejected.denied, denied + 1);
        assert.ok(h.lines.some((l) => l.reason === 'denied' && l.topic === topic && l.username === user));
      }
    });
  }

  const subscribeCases: Array<[string, string, string, number]> = [
    ['alice', 'alice-pw', 'cmd/alice/#', 1],
    ['alice', 'alice-pw', 'cmd/alice/reboot', 1],
    ['alice', 'alice-pw', 'cmd/#', 128],
    ['alice', 'alice-pw', 'cmd/+/reboot', 128],
    ['bob', 'bob-pw', 'devices/bob/+', 1],
    ['bob', 'bob-pw', 'devices/bob/#', 128],
    ['bob', 'bob-pw', 'devices/+/temp', 128],
    ['bob', 'bob-pw', 'broadcast/line2/#', 1],
    ['bob', 'bob-pw', '#', 128],
  ];
  for (const [user, pw, filter, granted] of subscribeCases) {
    test(`subscribe: ${user} to ${filter} is ${granted === 128 ? 'refused (SUBACK 0x80)' : 'granted'}`, async () => {
      const client = await login(user, pw);
      assert.equal(await subscribeGranted(client, filter), granted);
      assert.ok(client.connected, 'a refused subscription must not close the connection');
      await client.endAsync();
    });
  }

  test('a will message the device may not publish is refused at CONNECT (CONNACK 5)', async () => {
    const will = { topic: 'sensor/bob/status', payload: Buffer.from('offline'), qos: 1 as const, retain: false };
    assert.equal(await refusedWith(connectClient(h.url, { username: 'alice', password: 'alice-pw', will })), 5);
    assert.equal(h.ingest.stats().refused.will_denied, 1);
    const ok = await connectClient(h.url, { username: 'alice', password: 'alice-pw', will: { ...will, topic: 'sensor/alice/status' } });
    await ok.endAsync();
  });

  test('mosquitto_pub: right password publishes at QoS 1 and 2, a wrong one is refused', async () => {
    const depth = h.spool!.stats().depth;
    for (const qos of ['1', '2']) {
      const ok = await mosquitto('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(h.port), '-u', 'bob', '-P', 'bob-pw', '-q', qos, '-t', 'devices/bob/m', '-m', `q${qos}`]);
      assert.equal(ok.code, 0, ok.stderr);
    }
    assert.equal(h.spool!.stats().depth, depth + 2);
    const bad = await mosquitto('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(h.port), '-u', 'bob', '-P', 'nope', '-q', '1', '-t', 'devices/bob/m', '-m', 'x']);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /bad user name or password/i);
  });

  test('mosquitto_sub: a subscriber gets what an allowed publisher sends, never what a denied one tried', async () => {
    const sub = mosquitto('mosquitto_sub', ['-h', '127.0.0.1', '-p', String(h.port), '-u', 'bob', '-P', 'bob-pw', '-t', 'broadcast/#', '-C', '1', '-q', '1']);
    await waitFor(() => h.ingest.stats().connections >= 1, 5000, 'mosquitto_sub to connect');
    const carol = await login('carol', 'carol-pw', 'carol-b');
    assert.equal(await publishOutcome(carol, 'broadcast/all'), 'closed');
    const alice = await login('alice', 'alice-pw');
    // Until mosquitto_sub has one (-C 1): its SUBSCRIBE may come after the first of them.
    let ended = false;
    void sub.then(() => { ended = true; });
    while (!ended) {
      await publishAsync(alice, 'broadcast/alice', 'hello from alice', 1);
      await sleep(100);
    }
    const result = await sub;
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout.trim(), 'hello from alice');
    await alice.endAsync();
  });
});

describe('auth: none, with patterns', () => {
  test('a username or client id with wildcards or / matches no %u / %c pattern', async () => {
    const h = await startIngest({ config: { acl: [{ user: '*', publish: ['devices/%u/#', 'clients/%c/#'] }] } });
    try {
      const plus = await connectClient(h.url, { username: '+', clientId: 'c-plus' });
      assert.equal(await publishOutcome(plus, 'devices/+x/t'.replace('+x', 'anything')), 'closed');
      const slash = await connectClient(h.url, { username: 'a/b', clientId: 'c-slash' });
      assert.equal(await publishOutcome(slash, 'devices/a/b/t'), 'closed');
      const good = await connectClient(h.url, { username: 'dev1', clientId: 'c/1' });
      assert.equal(await publishOutcome(good, 'devices/dev1/t'), 'acked');
      assert.equal(await publishOutcome(good, 'clients/c/1/t'), 'closed');
      const nobody = await connectClient(h.url, { clientId: 'no-user' });
      assert.equal(await publishOutcome(nobody, 'clients/no-user/t'), 'acked');
      await nobody.endAsync();
    } finally {
      await h.stop();
    }
  });
});

describe('auth: certificate (TLS client certificates, identity = CN)', () => {
  let pki: TestPki;
  let h: Harness;
  before(async () => {
    pki = await makeTestPki({ clientCn: 'press-7', unknownCn: 'press-9' });
    h = await startIngest({
      config: {
        auth: 'certificate',
        tls: { port: 8883, cert: pki.server.cert, key: pki.server.key, ca: pki.ca.cert },
        acl: [{ user: 'press-7', publish: ['presses/%u/#'], subscribe: ['presses/%u/#'] }],
      },
    });
  });
  after(async () => { await h.stop(); });

  const tlsOptions = (pair: { cert: string; key: string } | undefined): mqtt.IClientOptions => ({
    ca: readFileSync(pki.ca.cert), rejectUnauthorized: true,
    ...(pair ? { cert: readFileSync(pair.cert), key: readFileSync(pair.key) } : {}),
  });
  const mqtts = (): string => `mqtts://127.0.0.1:${h.tlsPort}`;

  test('a certificate signed by the CA logs in as its CN; the ACL applies to that CN', async () => {
    const client = await connectClient(mqtts(), { ...tlsOptions(pki.client), clientId: 'p7' });
    assert.equal(await publishOutcome(client, 'presses/press-7/pressure'), 'acked');
    assert.equal(await publishOutcome(client, 'presses/press-9/pressure'), 'closed');
    const other = await connectClient(mqtts(), { ...tlsOptions(pki.unknownClient), clientId: 'p9' });
    assert.equal(await publishOutcome(other, 'presses/press-9/pressure'), 'closed', 'press-9 has no ACL entry');
    assert.ok(h.lines.some((l) => l.reason === 'denied' && l.clientId === 'p9' && l.transport === 'tls'));
  });

  test('the username a device sends does not change its identity', async () => {
    const client = await connectClient(mqtts(), { ...tlsOptions(pki.unknownClient), clientId: 'p9b', username: 'press-7' });
    assert.equal(await publishOutcome(client, 'presses/press-7/pressure'), 'closed');
  });

  test('no certificate, or one from another CA: the TLS handshake fails, counted', async () => {
    const before = h.ingest.stats().refused.tls_handshake ?? 0;
    assert.equal(await tlsConnect(h.tlsPort!, pki, undefined), 'closed');
    assert.equal(await tlsConnect(h.tlsPort!, pki, pki.foreignClient), 'closed');
    assert.equal(await tlsConnect(h.tlsPort!, pki, pki.client), 'connack', 'the control case');
    await waitFor(() => (h.ingest.stats().refused.tls_handshake ?? 0) >= before + 2, 5000, 'two failed handshakes');
    assert.ok(h.lines.some((l) => l.reason === 'tls_handshake' && l.remoteAddress === '127.0.0.1'));
  });

  test('plain TCP has no certificate: CONNACK 5', async () => {
    assert.equal(await refusedWith(connectClient(h.url, { clientId: 'plain' })), 5);
  });

  test('mosquitto_pub with a client certificate publishes over TLS', async () => {
    const depth = h.spool!.stats().depth;
    const result = await mosquitto('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(h.tlsPort), '--cafile', pki.ca.cert,
      '--cert', pki.client.cert, '--key', pki.client.key, '-q', '1', '-t', 'presses/press-7/temp', '-m', '88']);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(h.spool!.stats().depth, depth + 1);
    const denied = await mosquitto('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(h.tlsPort), '--cafile', pki.ca.cert,
      '--cert', pki.foreignClient.cert, '--key', pki.foreignClient.key, '-q', '1', '-t', 'presses/press-7/temp', '-m', '88']);
    assert.notEqual(denied.code, 0);
    assert.equal(h.spool!.stats().depth, depth + 1);
  });
});

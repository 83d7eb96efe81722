/**
 * TLS files that exist but cannot be used (a key that does not parse, an encrypted key without
 * or with the wrong passphrase, a key of another certificate): reported by the config check as
 * `path: message`, and at run time logged and retried, never a crash. An encrypted key works
 * with its passphrase.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import { ConfigError } from '../../src/config/issues.js';
import { parseConfig } from '../../src/config/load.js';
import { makeTestPki, type TestPki } from '../peers/certs.js';
import { startProtonReceiver, type ProtonPeer } from '../peers/proton.js';
import { readings, startPipeline, until, type Pipeline } from './pipeline.js';

const PASSPHRASE = 'key passphrase 4b1d';
let pki: TestPki;
let dir: string;
let encryptedKey: string;
let garbageKey: string;
const peers: ProtonPeer[] = [];
const pipes: Pipeline[] = [];

before(async () => {
  pki = await makeTestPki();
  dir = await mkdtemp(join(tmpdir(), 'uplink-tls-files-'));
  encryptedKey = join(dir, 'encrypted.key');
  await promisify(execFile)('openssl', ['pkey', '-in', pki.client.key, '-aes256', '-passout', `pass:${PASSPHRASE}`, '-out', encryptedKey]);
  garbageKey = join(dir, 'garbage.key');
  await writeFile(garbageKey, '-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n');
});

after(async () => {
  for (const pipe of pipes) await pipe.stop();
  for (const peer of peers) await peer.stop();
  if (pki !== undefined) await rm(pki.dir, { recursive: true, force: true });
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

function issuesOf(tls: Record<string, string>): string[] {
  const lines = Object.entries(tls).map(([k, v]) => `    ${k}: ${JSON.stringify(v)}`).join('\n');
  try {
    parseConfig(`upstream:\n  url: amqps://broker:5671\n  tls:\n${lines}\n`, { source: 'test.yaml', baseDir: dir });
  } catch (err) {
    assert.ok(err instanceof ConfigError, String(err));
    return err.issues.map((i) => `${i.path}: ${i.message}`);
  }
  return [];
}

describe('TLS files that cannot be used', () => {
  test('the config check names the problem as path: message, and never echoes a key', () => {
    const { ca, client, server } = pki;
    assert.deepEqual(issuesOf({ ca: ca.cert, cert: client.cert, key: client.key }), []);
    assert.deepEqual(issuesOf({ ca: ca.cert, cert: client.cert, key: encryptedKey, passphrase: PASSPHRASE }), []);
    assert.deepEqual(issuesOf({ ca: ca.cert, cert: client.cert, key: encryptedKey }),
      ['upstream.tls.key: is encrypted: set the passphrase (tls.passphrase)']);
    assert.deepEqual(issuesOf({ ca: ca.cert, cert: client.cert, key: encryptedKey, passphrase: 'wrong one' }),
      ['upstream.tls.passphrase: does not decrypt tls.key']);
    assert.deepEqual(issuesOf({ ca: ca.cert, cert: server.cert, key: client.key }), ['upstream.tls.key: does not belong to tls.cert']);
    const garbage = issuesOf({ ca: ca.cert, cert: client.cert, key: garbageKey });
    assert.equal(garbage.length, 1);
    assert.match(garbage[0]!, /^upstream\.tls: the certificate files cannot be used: /);
    assert.ok(!garbage[0]!.includes('bm90IGEga2V5'), 'the key file contents reached the message');
  });

  test('at run time a key that does not parse is logged and retried, not a crash; fixed on disk, it connects', async () => {
    const receiver = await startProtonReceiver({ pki, credit: { mode: 'window', n: 10 } });
    peers.push(receiver);
    const key = join(dir, 'rotating.key');
    await copyFile(garbageKey, key);
    const pipe = await startPipeline({ url: receiver.url.replace('127.0.0.1', 'localhost'), pki, client: { cert: pki.client.cert, key } });
    pipes.push(pipe);
    await pipe.spool.append(readings(3, '/queue/tls-files', 't'));
    await until(() => pipe.lines.filter((l) => l.code === 'UPSTREAM_TLS' && /cannot be used/.test(String(l.err))).length >= 2,
      'the unusable key to be reported twice', 15_000);
    assert.equal(pipe.upstream.state().connected, false);
    await copyFile(pki.client.key, key);
    await receiver.waitForTransfers(3, 15_000);
    await until(() => pipe.spool.stats().depth === 0, 'the spool to drain');
  });

  test('an encrypted key connects with its passphrase', async () => {
    const receiver = await startProtonReceiver({ pki, credit: { mode: 'window', n: 10 } });
    peers.push(receiver);
    const pipe = await startPipeline({ url: receiver.url.replace('127.0.0.1', 'localhost'), pki,
      upstream: { tls: { ca: pki.ca.cert, cert: pki.client.cert, key: encryptedKey, passphrase: PASSPHRASE, servername: 'localhost' } } });
    pipes.push(pipe);
    await pipe.spool.append(readings(2, '/queue/tls-encrypted', 'e'));
    await receiver.waitForTransfers(2, 15_000);
    assert.ok(!JSON.stringify(pipe.lines).includes(PASSPHRASE), 'the passphrase reached a log line');
  });
});

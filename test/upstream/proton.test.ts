/**
 * The upstream against a Qpid Proton receiver that grants small credit, withholds it, and settles
 * with every outcome: the sender never exceeds credit, never leases more than it may send, and the
 * spool and dead-letter store end up right.
 */
import assert from 'node:assert/strict';
import { copyFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '../peers/ports.js';
import { after, before, describe, test } from 'node:test';
import { makeTestPki, type TestPki } from '../peers/certs.js';
import { startProtonReceiver, type ProtonPeer } from '../peers/proton.js';
import { readings, startPipeline, until, type Pipeline } from './pipeline.js';

let pki: TestPki;
const peers: ProtonPeer[] = [];
const pipes: Pipeline[] = [];

before(async () => {
  pki = await makeTestPki();
});

after(async () => {
  for (const pipe of pipes) await pipe.stop();
  for (const peer of peers) await peer.stop();
  if (pki !== undefined) await rm(pki.dir, { recursive: true, force: true });
});

async function peer(options: Parameters<typeof startProtonReceiver>[0]): Promise<ProtonPeer> {
  const p = await startProtonReceiver({ pki, ...options });
  peers.push(p);
  return p;
}

async function pipeline(url: string, maxAttempts?: number): Promise<Pipeline> {
  const pipe = await startPipeline({ url: url.replace('127.0.0.1', 'localhost'), pki, ...(maxAttempts ? { maxAttempts } : {}) });
  pipes.push(pipe);
  return pipe;
}

describe('AMQP uplink against a Proton receiver', () => {
  test('credit 5: never more than 5 outstanding, never more than 5 leased, all delivered in order', async () => {
    const receiver = await peer({ credit: { mode: 'window', n: 5 }, settleDelayMs: 5 });
    const pipe = await pipeline(receiver.url);
    const backlog = readings(400, '/queue/credit5', 'c');
    for (let i = 0; i < backlog.length; i += 100) await pipe.spool.append(backlog.slice(i, i + 100));
    let maxInFlight = 0;
    const sampler = setInterval(() => { maxInFlight = Math.max(maxInFlight, pipe.spool.stats().inFlight); }, 1);
    try {
      const transfers = await receiver.waitForTransfers(400, 60_000);
      await until(() => pipe.spool.stats().depth === 0, 'the spool to drain');
      assert.equal(receiver.overCredit(), 0, 'a transfer went beyond the granted credit');
      assert.ok(transfers.every((t) => t.credit >= 1 && t.credit <= 5));
      assert.deepEqual(transfers.map((t) => t.message_id), backlog.map((r) => r.id));
    } finally {
      clearInterval(sampler);
    }
    assert.ok(maxInFlight <= 5, `leased ${maxInFlight} readings with a credit of 5: the backlog is being pulled into memory`);
    assert.ok(maxInFlight >= 1);
  });

  test('credit withheld for 6 s: nothing is leased or sent meanwhile, then everything flows', async () => {
    const receiver = await peer({ credit: { mode: 'batch', n: 5 }, withholdSeconds: 6 });
    const pipe = await pipeline(receiver.url);
    await pipe.spool.append(readings(2000, '/queue/withheld', 'w'));
    await receiver.waitForEvent((e) => e.event === 'withholding', 10_000);
    const watchUntil = Date.now() + 2000;
    while (Date.now() < watchUntil) {
      assert.equal(pipe.spool.stats().inFlight, 0, 'leased readings without credit');
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.equal(receiver.transfers().length, 0);
    await receiver.waitForTransfers(2000, 60_000);
    await until(() => pipe.spool.stats().depth === 0, 'the spool to drain');
    assert.equal(receiver.overCredit(), 0);
  });

  test('drain: the sender sends what it has, gives the rest of the credit back at once, and never exceeds it', async () => {
    const receiver = await peer({ credit: { mode: 'drain', n: 20, drainIntervalMs: 300 } });
    const pipe = await pipeline(receiver.url);
    const first = readings(5, '/queue/drained', 'd');
    await pipe.spool.append(first);
    // 5 to send against 20: the round must end with 15 given back, not with the sender sitting on them.
    const round = await receiver.waitForEvent((e) => e.event === 'drained' && e.returned === 15, 10_000);
    assert.equal(round.received, 5);
    // Nothing spooled: the next round is given back whole.
    await receiver.waitForEvent((e) => e.event === 'drained' && e.returned === 20 && e.received === 5, 10_000);
    const second = readings(30, '/queue/drained', 'e');
    await pipe.spool.append(second);
    await receiver.waitForTransfers(35, 20_000);
    await until(() => pipe.spool.stats().depth === 0, 'the spool to drain');
    // 30 over rounds of 20: one round used up by transfers, the next ends with 10 given back.
    await receiver.waitForEvent((e) => e.event === 'drained' && e.received === 35 && e.returned === 10, 10_000);
    assert.equal(receiver.overCredit(), 0, 'a transfer went beyond the granted credit');
    assert.deepEqual(receiver.transfers().map((t) => t.message_id), [...first, ...second].map((r) => r.id));
  });

  test('rejected, released and modified readings: the spool and the dead-letter store end up right', async () => {
    const receiver = await peer({
      credit: { mode: 'window', n: 10 },
      outcomes: [{ outcome: 'reject', at: [3, 11] }, { outcome: 'release', at: [5, 6] }, { outcome: 'modify', at: [8] }],
      rejectCondition: 'amqp:precondition-failed',
    });
    const pipe = await pipeline(receiver.url);
    const sent = readings(30, '/queue/outcomes', 'o');
    await pipe.spool.append(sent);
    await until(() => pipe.spool.stats().depth === 0, 'every reading to be settled for good');
    const transfers = receiver.transfers();
    const rejected = transfers.filter((t) => t.outcome === 'reject').map((t) => String(t.message_id));
    const accepted = transfers.filter((t) => t.outcome === 'accept').map((t) => String(t.message_id));
    assert.equal(rejected.length, 2);
    assert.deepEqual([...accepted, ...rejected].sort(), sent.map((r) => r.id).sort(), 'each reading accepted or rejected exactly once');
    const dead = pipe.spool.deadLetters.list();
    assert.deepEqual(dead.map((d) => d.id).sort(), [...rejected].sort());
    assert.ok(dead.every((d) => d.reason.condition === 'amqp:precondition-failed' && (d.reason.description ?? '').length > 0));
    // The modified one was counted as an attempt; the released ones were not.
    const modifiedId = String(transfers.find((t) => t.outcome === 'modify')!.message_id);
    const releasedIds = transfers.filter((t) => t.outcome === 'release').map((t) => String(t.message_id));
    assert.equal(transfers.filter((t) => String(t.message_id) === modifiedId).length, 2, 'the modified reading was sent again');
    for (const id of releasedIds) assert.ok(transfers.filter((t) => String(t.message_id) === id).length >= 2, 'a released reading was sent again');
    assert.equal(pipe.forwarder.stats().outcomes.modified, 1);
    assert.equal(pipe.spool.stats().deadLettered, 2);
  });

  test('a rotated client certificate takes effect on reload (SIGHUP), without a restart', async () => {
    const receiver = await peer({ credit: { mode: 'window', n: 10 } });
    const dir = await mkdtemp(join(tmpdir(), 'uplink-rotate-'));
    const cert = join(dir, 'gw.pem');
    const key = join(dir, 'gw.key');
    // Start with a certificate the receiver does not trust.
    await copyFile(pki.foreignClient.cert, cert);
    await copyFile(pki.foreignClient.key, key);
    const pipe = await startPipeline({ url: receiver.url.replace('127.0.0.1', 'localhost'), pki, client: { cert, key },
      upstream: { backoff: { baseMs: 60_000, capMs: 60_000, random: () => 1 } } });
    pipes.push(pipe);
    // Over TLS 1.3 the client sees the refusal of its certificate as a reset connection.
    await until(() => pipe.upstream.state().lastError !== undefined, 'the refusal');
    // The next retry is a minute away; only the reload can bring the new certificate in sooner.
    await copyFile(pki.client.cert, cert);
    await copyFile(pki.client.key, key);
    await pipe.upstream.reload();
    await until(() => pipe.upstream.state().connected, 'the connection with the rotated certificate', 10_000);
    await pipe.spool.append(readings(3, '/queue/rotated', 'r'));
    await receiver.waitForTransfers(3, 10_000);
  });

  test('reload with changed certificates reconnects to the URL in use, not to the next one', async () => {
    const first = await peer({ credit: { mode: 'window', n: 10 } });
    const second = await peer({ credit: { mode: 'window', n: 10 } });
    const dir = await mkdtemp(join(tmpdir(), 'uplink-reload-'));
    const cert = join(dir, 'gw.pem');
    const key = join(dir, 'gw.key');
    await copyFile(pki.client.cert, cert);
    await copyFile(pki.client.key, key);
    const [firstUrl, secondUrl] = [first.url, second.url].map((u) => u.replace('127.0.0.1', 'localhost')) as [string, string];
    const pipe = await startPipeline({ url: firstUrl, pki, client: { cert, key }, upstream: { urls: [firstUrl, secondUrl] } });
    pipes.push(pipe);
    await until(() => pipe.upstream.state().connected, 'the connection to the first URL');
    assert.equal(pipe.upstream.state().url, firstUrl);
    // Another certificate of the same CA: changed material, and a client the peers accept.
    await copyFile(pki.unknownClient.cert, cert);
    await copyFile(pki.unknownClient.key, key);
    assert.equal(await pipe.upstream.reload(), 'changed');
    const again = await first.waitForEvent((e) => e.event === 'connection' && e.conn === 2, 15_000);
    assert.equal(again.user, `CN=${pki.unknownCn}`, 'the new connection does not use the new certificate');
    await until(() => pipe.upstream.state().connected, 'the connection with the new certificate');
    assert.equal(pipe.upstream.state().url, firstUrl);
    await pipe.spool.append(readings(3, '/queue/reloaded', 'r'));
    await first.waitForTransfers(3, 10_000);
    assert.equal(second.events().filter((e) => e.event === 'connection').length, 0, 'the reload failed over to the second URL');
    assert.ok(pipe.lines.some((l) => /same URL/.test(String(l.msg))));
  });

  test('the server name is checked: a certificate for another name is refused, retried at the cap, never used', async () => {
    const receiver = await peer({ credit: { mode: 'window', n: 10 } });
    const pipe = await startPipeline({ url: receiver.url.replace('127.0.0.1', 'localhost'), pki,
      upstream: { tls: { ca: pki.ca.cert, cert: pki.client.cert, key: pki.client.key, servername: 'broker.other.example' } } });
    pipes.push(pipe);
    await pipe.spool.append(readings(3, '/queue/wrong-name', 'n'));
    await until(() => pipe.lines.filter((l) => l.code === 'UPSTREAM_TLS' && /capped interval/.test(String(l.msg))).length >= 2, 'two refusals', 15_000);
    assert.match(String(pipe.upstream.state().lastError?.message), /broker\.other\.example|altnames|hostname/i);
    assert.equal(pipe.upstream.state().connected, false);
    assert.equal(receiver.transfers().length, 0);
    assert.equal(receiver.events().filter((e) => e.event === 'connection').length, 0, 'an AMQP connection was opened');
  });

  test('failover: a list of URLs is tried in turn', async () => {
    const receiver = await peer({ credit: { mode: 'window', n: 10 } });
    const dead = `amqps://localhost:${await freePort()}`;
    const pipe = await startPipeline({ url: dead, pki, upstream: { urls: [dead, receiver.url.replace('127.0.0.1', 'localhost')] } });
    pipes.push(pipe);
    await until(() => pipe.upstream.state().connected, 'the connection to the second URL', 15_000);
    assert.equal(pipe.upstream.state().url, receiver.url.replace('127.0.0.1', 'localhost'));
    assert.ok(pipe.lines.some((l) => l.code === 'UPSTREAM_CONNECTION' && String(l.url).includes(dead.split(':')[2]!)));
  });

  test('at-most-once: readings go pre-settled and leave the spool at once', async () => {
    const receiver = await peer({ credit: { mode: 'window', n: 10 } });
    const pipe = await startPipeline({ url: receiver.url.replace('127.0.0.1', 'localhost'), pki, mode: 'at-most-once' });
    pipes.push(pipe);
    const sent = readings(50, '/queue/best-effort', 'b');
    await pipe.spool.append(sent);
    const transfers = await receiver.waitForTransfers(50, 20_000);
    await until(() => pipe.spool.stats().depth === 0, 'the spool to empty');
    assert.ok(transfers.every((t) => t.presettled), 'every transfer pre-settled');
    assert.deepEqual(transfers.map((t) => t.message_id), sent.map((r) => r.id));
    assert.equal(receiver.overCredit(), 0);
  });

  test('a reading modified maxAttempts times is dead-lettered with the attempt count', async () => {
    const receiver = await peer({ credit: { mode: 'window', n: 5 }, outcomes: [{ outcome: 'modify', all: true }] });
    const pipe = await pipeline(receiver.url, 3);
    const sent = readings(4, '/queue/modified', 'm');
    await pipe.spool.append(sent);
    await until(() => pipe.spool.stats().deadLetters === 4, 'all four to be dead-lettered');
    const dead = pipe.spool.deadLetters.list();
    assert.deepEqual(dead.map((d) => d.id).sort(), sent.map((r) => r.id).sort());
    assert.ok(dead.every((d) => d.attempts === 3 && d.reason.condition === 'uplink:max-attempts'));
    assert.equal(receiver.transfers().length, 12);
    assert.equal(pipe.spool.stats().depth, 0);
  });
});

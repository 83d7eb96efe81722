/**
 * Limits and bad input: each offender is disconnected with a logged, counted reason, and the
 * broker goes on serving everyone else.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import {
  closed, CONNACK_OK, connectClient, connectPacket, publishAsync, publishHeader, publishPacket, rawClient, sleep, startIngest, subscribeGranted,
  waitFor, type Harness,
} from './helpers.js';

const MAX_PAYLOAD = 4096;
let h: Harness;
before(async () => {
  h = await startIngest({ config: { maxPayload: MAX_PAYLOAD, maxTopicLength: 32, maxTopicLevels: 4, maxConnections: 50 } });
});
after(async () => { await h.stop(); });

/** A well-behaved client still gets its PUBACK, and its reading is stored. */
async function brokerStillServes(): Promise<void> {
  const client = await connectClient(h.url, { clientId: `healthy-${Math.random()}` });
  await publishAsync(client, 'sensor/healthy', 'still here', 1);
  await client.endAsync();
}

function warned(reason: string): boolean {
  return h.lines.some((l) => l.level === 'warn' && l.reason === reason);
}

describe('packet limits', () => {
  test('an oversized payload disconnects that client only, with a logged reason; nothing is stored', async () => {
    const bystander = await connectClient(h.url, { clientId: 'bystander' });
    const offender = await connectClient(h.url, { clientId: 'offender' });
    const depth = h.spool!.stats().depth;
    offender.publish('sensor/big', Buffer.alloc(MAX_PAYLOAD + 1), { qos: 1 });
    await closed(offender);
    assert.equal(h.ingest.stats().rejected.too_large, 1);
    const line = h.lines.find((l) => l.reason === 'too_large');
    assert.ok(line, 'no log line for the oversized publish');
    assert.equal(line.clientId, 'offender');
    assert.equal(line.remoteAddress, '127.0.0.1');
    assert.match(String(line.detail), /mqtt\.maxPayload is 4096/);
    assert.ok(bystander.connected, 'the other client was disconnected too');
    await publishAsync(bystander, 'sensor/ok', Buffer.alloc(MAX_PAYLOAD), 1);
    assert.equal(h.spool!.stats().depth, depth + 1);
    await bystander.endAsync();
  });

  test('the limit applies before the bytes are buffered: a 20 MiB PUBLISH is refused on its header alone', async () => {
    const raw = await rawClient(h.port);
    raw.socket.write(connectPacket('header-only'));
    await raw.waitFor(CONNACK_OK);
    const before = h.ingest.stats().rejected.too_large ?? 0;
    // The header and topic claim 20 MiB; not a byte of the payload is ever sent.
    raw.socket.write(publishHeader('sensor/huge', 20 * 1024 * 1024));
    await raw.closed();
    assert.equal(h.ingest.stats().rejected.too_large, before + 1);
    await brokerStillServes();
  });

  test('a topic longer than maxTopicLength is refused before its bytes are read', async () => {
    const raw = await rawClient(h.port);
    raw.socket.write(connectPacket('long-topic'));
    await raw.waitFor(CONNACK_OK);
    raw.socket.write(publishHeader('t'.repeat(33), 10).subarray(0, 4)); // type, length, topic length: no topic yet
    await raw.closed();
    assert.equal(h.ingest.stats().rejected.topic_too_long, 1);
    assert.ok(warned('topic_too_long'));
  });

  test('a topic with more than maxTopicLevels levels is refused', async () => {
    const client = await connectClient(h.url, { clientId: 'deep' });
    client.publish('a/b/c/d/e', 'x', { qos: 1 });
    await closed(client);
    assert.equal(h.ingest.stats().rejected.topic_levels, 1);
    assert.ok(warned('topic_levels'));
  });

  test('a subscription beyond the topic limits is refused with SUBACK 0x80', async () => {
    const client = await connectClient(h.url, { clientId: 'deep-sub' });
    assert.equal(await subscribeGranted(client, 'a/b/c/d/#'), 128);
    assert.equal(await subscribeGranted(client, 'a/b/c/#'), 1);
    assert.ok(client.connected);
    await client.endAsync();
  });
});

describe('garbage on the wire', () => {
  test('streams of random bytes: each offender is closed, the broker survives and serves others', async () => {
    const offenders = await Promise.all(Array.from({ length: 20 }, () => rawClient(h.port)));
    offenders.forEach((raw, i) => {
      // Half start with a valid CONNECT, so the garbage reaches the packet parser too.
      if (i % 2 === 0) raw.socket.write(connectPacket(`garbage-${i}`));
      raw.socket.write(randomBytes(2048 + i * 100));
    });
    await Promise.race([Promise.all(offenders.map((r) => r.closed().catch(() => undefined))), sleep(3000)]);
    const open = offenders.filter((r) => !r.isClosed());
    // Random bytes may happen to spell a valid packet prefix and wait for more; close those ourselves.
    for (const raw of open) raw.socket.destroy();
    assert.ok(open.length <= 4, `${open.length} of 20 garbage connections still open`);
    assert.ok((h.ingest.stats().rejected.malformed ?? 0) + (h.ingest.stats().rejected.too_large ?? 0) >= 10);
    await brokerStillServes();
  });

  test('a first packet that is not CONNECT is refused at once', async () => {
    const raw = await rawClient(h.port);
    raw.socket.write(publishPacket('sensor/x', 'no connect', 0));
    await raw.closed();
    assert.ok(h.lines.some((l) => l.reason === 'malformed' && /not CONNECT/.test(String(l.detail))));
  });

  test('a PUBLISH to a wildcard topic is a protocol violation: closed and counted', async () => {
    const before = h.ingest.stats().rejected.malformed ?? 0;
    const raw = await rawClient(h.port);
    raw.socket.write(connectPacket('wildcard'));
    await raw.waitFor(CONNACK_OK);
    raw.socket.write(publishPacket('sensor/#', 'x', 1));
    await raw.closed();
    assert.equal(h.ingest.stats().rejected.malformed, before + 1);
  });

  test('truncated packets: nothing is stored from them, and the broker keeps serving', async () => {
    const depth = h.spool!.stats().depth;
    const a = await rawClient(h.port);
    a.socket.write(connectPacket('truncated').subarray(0, 7)); // half a CONNECT, then silence
    const b = await rawClient(h.port);
    b.socket.write(connectPacket('truncated-2'));
    await b.waitFor(CONNACK_OK);
    b.socket.write(publishPacket('sensor/cut', 'cut short', 1).subarray(0, 12)); // half a PUBLISH
    await brokerStillServes();
    b.socket.end(); // and the rest never comes
    await b.closed();
    a.socket.destroy();
    await sleep(50);
    assert.equal(h.spool!.stats().depth, depth + 1, 'only the healthy reading was stored');
  });
});

describe('connections', () => {
  test('maxConnections: the connection past the limit is closed at once, counted; room again after one leaves', async () => {
    const small = await startIngest({ config: { maxConnections: 3 } });
    try {
      const clients = await Promise.all([1, 2, 3].map((i) => connectClient(small.url, { clientId: `c${i}` })));
      const fourth = await rawClient(small.port);
      fourth.socket.write(connectPacket('c4'));
      await fourth.closed();
      assert.equal(Buffer.concat(fourth.received).length, 0, 'the refused connection got a CONNACK');
      assert.equal(small.ingest.stats().refused.max_connections, 1);
      assert.ok(small.lines.some((l) => l.reason === 'max_connections' && l.remoteAddress === '127.0.0.1'));
      await clients[0]!.endAsync();
      await waitFor(() => small.ingest.stats().sockets === 2);
      const late = await connectClient(small.url, { clientId: 'c5' });
      await publishAsync(late, 'sensor/late', 'in', 1);
      await Promise.all([late.endAsync(), clients[1]!.endAsync(), clients[2]!.endAsync()]);
    } finally {
      await small.stop();
    }
  });

  test('bad input is logged at a limited rate, and counted exactly', async () => {
    const before = h.ingest.stats().rejected.malformed ?? 0;
    const linesBefore = h.lines.filter((l) => l.reason === 'malformed').length;
    for (let i = 0; i < 30; i++) {
      const raw = await rawClient(h.port);
      raw.socket.write(Buffer.from([0xf0, 0x00]));
      await raw.closed();
    }
    assert.equal(h.ingest.stats().rejected.malformed, before + 30);
    const linesAfter = h.lines.filter((l) => l.reason === 'malformed').length;
    assert.ok(linesAfter - linesBefore <= 10, `${linesAfter - linesBefore} lines for 30 bad connections`);
  });
});

/**
 * The delivery contract: a QoS 1 PUBACK / QoS 2 PUBREC leaves only after spool.append resolved,
 * a full spool under `block` holds the device back, readings keep their order, and QoS 0
 * readings are stored too.
 */
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import type { RoutedReading } from '../../../src/core/envelope.js';
import type { Spool } from '../../../src/spool/interface.js';
import {
  closed, CONNACK_OK, connectClient, connectPacket, HeldSpool, mosquitto, publishAsync, publishPacket, rawClient, sleep, startIngest,
  waitFor, type Harness,
} from './helpers.js';

const harnesses: Harness[] = [];
after(async () => { await Promise.all(harnesses.map((h) => h.stop())); });
async function start(...args: Parameters<typeof startIngest>): Promise<Harness> {
  const h = await startIngest(...args);
  harnesses.push(h);
  return h;
}

describe('acknowledgements wait for the commit', () => {
  test('QoS 1: no PUBACK before spool.append resolved; it arrives once the append is released', async () => {
    const held = new HeldSpool();
    const h = await start({ spool: held });
    const client = await connectClient(h.url);
    let acked = false;
    const done = publishAsync(client, 'sensor/line1/temp', '21.5', 1).then(() => { acked = true; });
    await waitFor(() => held.calls.length === 1, 5000, 'the append');
    await sleep(300);
    assert.equal(acked, false, 'PUBACK before the commit');
    assert.equal(held.calls[0]!.readings[0]!.payload.toString(), '21.5');
    held.release();
    await done;
    assert.equal(acked, true);
    assert.deepEqual(h.ingest.stats().ingested, { '/queue/telemetry': 1 });
    await client.endAsync();
  });

  test('QoS 2: no PUBREC before the commit', async () => {
    const held = new HeldSpool();
    const h = await start({ spool: held });
    const client = await connectClient(h.url);
    const received: string[] = [];
    client.on('packetreceive', (packet) => received.push(packet.cmd));
    const done = publishAsync(client, 'sensor/line1/temp', 'q2', 2);
    await waitFor(() => held.calls.length === 1, 5000, 'the append');
    await sleep(300);
    assert.ok(!received.includes('pubrec'), 'PUBREC before the commit');
    held.release();
    await done;
    assert.ok(received.includes('pubrec') && received.includes('pubcomp'));
    assert.equal(held.committed.length, 1, 'stored once');
    await client.endAsync();
  });

  test('mosquitto_pub -q 1 waits for the commit before it exits', async () => {
    const held = new HeldSpool();
    const h = await start({ spool: held });
    let exited = false;
    const run = mosquitto('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(h.port), '-q', '1', '-t', 'sensor/a', '-m', 'from mosquitto']);
    void run.then(() => { exited = true; });
    await waitFor(() => held.calls.length === 1, 5000, 'the append');
    await sleep(300);
    assert.equal(exited, false, 'mosquitto_pub got its PUBACK before the commit');
    held.release();
    const result = await run;
    assert.equal(result.code, 0, result.stderr);
    assert.equal(held.committed[0]!.payload.toString(), 'from mosquitto');
  });

  test('a spool that fails the append: no PUBACK, the client is disconnected, the error counted', async () => {
    const failing: Pick<Spool, 'append'> = { append: async () => { throw new Error('disk on fire'); } };
    const h = await start({ spool: failing });
    const client = await connectClient(h.url);
    let acked = false;
    client.publish('sensor/a', 'x', { qos: 1 }, () => { acked = true; });
    await closed(client);
    await sleep(50);
    assert.equal(acked, false);
    assert.equal(h.ingest.stats().rejected.spool_error, 1);
    assert.ok(h.lines.some((l) => l.level === 'error' && /not stored/.test(String(l.msg)) && l.err === 'disk on fire'));
  });
});

describe('QoS 2 retransmissions are acknowledged again, not stored twice', () => {
  const pubrec = (id: number): Buffer => Buffer.from([0x50, 0x02, 0x00, id]);
  const dup = (packet: Buffer): Buffer => Buffer.concat([Buffer.from([packet[0]! | 0x08]), packet.subarray(1)]);

  test('a DUP of a stored QoS 2 publish before PUBREL, and one while the first still waits for the commit', async () => {
    const held = new HeldSpool();
    const h = await start({ spool: held });
    const raw = await rawClient(h.port);
    raw.socket.write(connectPacket('q2-dup'));
    await raw.waitFor(CONNACK_OK);
    // 7: stored, then retransmitted
    raw.socket.write(publishPacket('sensor/q2', 'seven', 2, 7));
    await waitFor(() => held.calls.length === 1);
    held.release();
    await raw.waitFor(pubrec(7));
    raw.socket.write(dup(publishPacket('sensor/q2', 'seven', 2, 7)));
    await waitFor(() => Buffer.concat(raw.received).toString('hex').split(pubrec(7).toString('hex')).length === 3, 5000, 'a second PUBREC 7');
    // 9: retransmitted while the first append still waits
    raw.socket.write(publishPacket('sensor/q2', 'nine', 2, 9));
    await waitFor(() => held.pending === 1);
    raw.socket.write(dup(publishPacket('sensor/q2', 'nine', 2, 9)));
    await sleep(200);
    assert.ok(!Buffer.concat(raw.received).includes(pubrec(9)), 'PUBREC before the commit');
    held.release();
    await waitFor(() => Buffer.concat(raw.received).toString('hex').split(pubrec(9).toString('hex')).length === 3, 5000, 'two PUBREC 9');
    assert.deepEqual(held.committed.map((r) => r.payload.toString()), ['seven', 'nine']);
    raw.socket.write(Buffer.from([0x62, 0x02, 0x00, 7]));
    await raw.waitFor(Buffer.from([0x70, 0x02, 0x00, 7]));
    raw.socket.destroy();
  });
});

describe('a full spool under block holds the device back', () => {
  test('the PUBACK of a reading that does not fit comes only once there is room', async () => {
    const h = await start({ spoolOptions: { maxReadings: 2, policy: 'block' } });
    const client = await connectClient(h.url);
    await publishAsync(client, 'sensor/a', '1');
    await publishAsync(client, 'sensor/a', '2');
    let acked = false;
    const third = publishAsync(client, 'sensor/a', '3').then(() => { acked = true; });
    await waitFor(() => h.spool!.stats().blocked, 5000, 'the spool to block');
    await sleep(300);
    assert.equal(acked, false, 'PUBACK while the spool was full');
    assert.equal(h.spool!.stats().depth, 2);
    const [first] = await h.spool!.lease('/queue/telemetry', 1);
    await h.spool!.ack([first!.seq]);
    await third;
    assert.equal(acked, true);
    const rest = await h.spool!.lease('/queue/telemetry', 10);
    assert.deepEqual(rest.map((r) => r.payload.toString()), ['2', '3']);
    await client.endAsync();
  });

  test('a client that disconnects while held back leaves nothing half-stored; its QoS 1 append is abandoned', async () => {
    const held = new HeldSpool();
    const h = await start({ spool: held });
    const client = await connectClient(h.url);
    client.publish('sensor/a', 'waiting', { qos: 1 });
    await waitFor(() => held.calls.length === 1, 5000, 'the append');
    assert.ok(held.calls[0]!.signal, 'a QoS 1 append can be abandoned');
    client.end(true);
    await waitFor(() => held.calls[0]!.settled, 5000, 'the append to be abandoned');
    assert.equal(held.committed.length, 0);
    assert.equal(h.ingest.stats().ingested['/queue/telemetry'], undefined);
  });
});

describe('order and QoS 0', () => {
  test('readings keep the order a client sent them in, across QoS 0, 1 and 2', async () => {
    const h = await start();
    const client = await connectClient(h.url);
    const sends: Array<Promise<void>> = [];
    for (let i = 0; i < 60; i++) sends.push(publishAsync(client, `sensor/${i % 3}`, String(i), (i % 3) as 0 | 1 | 2));
    await Promise.all(sends);
    await waitFor(() => h.spool!.stats().depth === 60, 5000, '60 readings');
    const stored = await h.spooled();
    assert.deepEqual(stored.map((r) => r.payload.toString()), Array.from({ length: 60 }, (_, i) => String(i)));
    await client.endAsync();
  });

  test('QoS 0 readings are stored, and none is lost when the spool is slow', async () => {
    const h0 = await start();
    const slow: Pick<Spool, 'append'> = {
      append: async (readings: readonly RoutedReading[], options?: { signal?: AbortSignal }) => {
        await sleep(20);
        await h0.spool!.append(readings, options);
      },
    };
    const h = await start({ spool: slow });
    const client = await connectClient(h.url);
    for (let i = 0; i < 300; i++) client.publish('sensor/q0', String(i), { qos: 0 });
    await waitFor(() => h0.spool!.stats().depth === 300, 10_000, '300 QoS 0 readings');
    const stored = await h0.spooled();
    assert.deepEqual(stored.map((r) => r.payload.toString()), Array.from({ length: 300 }, (_, i) => String(i)));
    await client.endAsync();
  });

  test('maxInFlight bounds the readings of one client waiting for the spool', async () => {
    const held = new HeldSpool();
    const h = await start({ spool: held, config: { maxInFlight: 3 } });
    const client = await connectClient(h.url);
    const sends = Array.from({ length: 10 }, (_, i) => publishAsync(client, 'sensor/a', String(i)));
    await waitFor(() => held.pending === 3, 5000, '3 readings in flight');
    await sleep(200);
    assert.equal(held.pending, 3, 'more than maxInFlight readings in flight');
    while (held.committed.length < 10) {
      held.release();
      await sleep(20);
      assert.ok(held.pending <= 3);
    }
    await Promise.all(sends);
    assert.deepEqual(held.committed.map((r) => r.payload.toString()), Array.from({ length: 10 }, (_, i) => String(i)));
    await client.endAsync();
  });

  test('a reading carries a new id, the exact payload bytes, the topic and receivedAt = now()', async () => {
    const held = new HeldSpool();
    const h = await start({ spool: held, now: () => 1_700_000_000_123 });
    const client = await connectClient(h.url);
    const payload = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    const first = publishAsync(client, 'sensor/bin', payload);
    const second = publishAsync(client, 'sensor/bin', payload);
    await waitFor(() => held.pending === 2);
    held.release();
    await Promise.all([first, second]);
    const [a, b] = held.committed;
    assert.deepEqual(a!.payload, payload);
    assert.equal(a!.topic, 'sensor/bin');
    assert.equal(a!.receivedAt, 1_700_000_000_123);
    assert.equal(a!.address, '/queue/telemetry');
    assert.match(a!.id, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    assert.notEqual(a!.id, b!.id);
    await client.endAsync();
  });
});

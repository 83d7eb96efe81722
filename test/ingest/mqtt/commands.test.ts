/**
 * Commands published on the embedded broker (src/ingest/mqtt/commands.ts) to real MQTT clients:
 * mqtt.js devices that hold back their acknowledgement (their handleMessage callback sends it),
 * and a raw-socket device that acknowledges by hand. A command is done only once every subscriber
 * it went to confirmed it: PUBACK at QoS 1, PUBCOMP (not PUBREC) at QoS 2, clean session or
 * persistent; it is unavailable when a subscriber leaves first, when the time runs out, and when a
 * subscriber was granted QoS 0 (it cannot confirm). These also check the aedes internals
 * commands.ts relies on: the packet ids it takes from the client's sequence, the clearing of
 * outgoing ids it watches, and the client list and subscriptions it reads.
 */
import assert from 'node:assert/strict';
import { afterEach, describe, test } from 'node:test';
import type mqtt from 'mqtt';
import type { MqttCommand, MqttCommandResult } from '../../../src/ingest/mqtt/commands.js';
import { until } from '../../peers/until.js';
import { CONNACK_OK, connectClient, connectPacket, rawClient, startIngest, within, type Harness } from './helpers.js';
import { publishesIn, pubackPacket, subscribePacket } from './raw-packets.js';

let h: Harness | undefined;
const clients: mqtt.MqttClient[] = [];

afterEach(async () => {
  for (const client of clients.splice(0)) await client.endAsync(true).catch(() => {});
  await h?.stop();
  h = undefined;
});

async function start(): Promise<Harness> {
  h = await startIngest();
  return h;
}

interface Device {
  client: mqtt.MqttClient;
  /** Publishes received, in order. */
  got: mqtt.IPublishPacket[];
  /** Sends the acknowledgement held back for each (QoS 1: PUBACK; QoS 2: PUBCOMP, after the PUBREL came). */
  release(): void;
}

/** An mqtt.js device subscribed to `filter` that acknowledges only when told (release()), or at once with `autoAck`. */
async function device(harness: Harness, clientId: string, filter: string, qos: 0 | 1 | 2, options: mqtt.IClientOptions = {}, autoAck = false): Promise<Device> {
  const client = await connectClient(harness.url, { clientId, ...options });
  clients.push(client);
  const got: mqtt.IPublishPacket[] = [];
  const held: Array<() => void> = [];
  client.handleMessage = (packet, callback) => {
    got.push(packet as mqtt.IPublishPacket);
    if (autoAck) callback();
    else held.push(() => callback());
  };
  await client.subscribeAsync(filter, { qos });
  return { client, got, release: () => { for (const ack of held.splice(0)) ack(); } };
}

/** The command's result, and whether it came yet (read without waiting). */
function send(harness: Harness, command: Partial<MqttCommand> & { topic: string }): { result: Promise<MqttCommandResult>; settled(): boolean } {
  let settled = false;
  const result = harness.ingest.publishCommand({ payload: Buffer.from('{"open":true}'), qos: 1, timeoutMs: 10_000, ...command });
  void result.then(() => { settled = true; });
  return { result, settled: () => settled };
}

describe('mqtt commands: done only once every subscriber confirmed', () => {
  test('QoS 1: the subscriber gets it at QoS 1 and the command is done only after its PUBACK', async () => {
    const harness = await start();
    const valve = await device(harness, 'valve-1', 'cmd/+', 1);
    const command = send(harness, { topic: 'cmd/valve-1' });
    await until(() => valve.got.length === 1, 'the command delivered');
    assert.deepEqual([valve.got[0]!.topic, valve.got[0]!.qos, valve.got[0]!.payload.toString()], ['cmd/valve-1', 1, '{"open":true}']);
    assert.equal(command.settled(), false, 'not done before the PUBACK');
    valve.release();
    assert.deepEqual(await within(command.result, 'the result'), { status: 'done', result: { subscribers: 1 } });
  });

  test('QoS 2: the PUBREC is not a confirmation; the command is done only after the PUBCOMP', async () => {
    const harness = await start();
    const plc = await device(harness, 'plc-3', 'cmd/plc-3', 2);
    const command = send(harness, { topic: 'cmd/plc-3', qos: 2 });
    // mqtt.js hands the message over when the PUBREL came, so the broker had the PUBREC before.
    await until(() => plc.got.length === 1, 'the PUBREL reached the device');
    assert.equal(plc.got[0]!.qos, 2);
    assert.equal(command.settled(), false, 'not done on the PUBREC');
    plc.release();
    assert.deepEqual(await within(command.result, 'the result'), { status: 'done', result: { subscribers: 1 } });
  });

  test('a device with a persistent session (clean: false) confirms with its PUBACK as well', async () => {
    const harness = await start();
    const pump = await device(harness, 'pump-9', 'cmd/pump-9', 1, { clean: false });
    const command = send(harness, { topic: 'cmd/pump-9' });
    await until(() => pump.got.length === 1, 'the command delivered');
    assert.equal(command.settled(), false, 'not done before the PUBACK');
    pump.release();
    assert.deepEqual(await within(command.result, 'the result'), { status: 'done', result: { subscribers: 1 } });
    // And the next one (the next packet id of the session).
    const next = send(harness, { topic: 'cmd/pump-9' });
    await until(() => pump.got.length === 2, 'the second command delivered');
    assert.notEqual(pump.got[1]!.messageId, pump.got[0]!.messageId);
    pump.release();
    assert.equal((await within(next.result, 'the second result')).status, 'done');
  });

  test('two subscribers: done only when both confirmed', async () => {
    const harness = await start();
    const a = await device(harness, 'a', 'cmd/all', 1);
    const b = await device(harness, 'b', 'cmd/#', 1);
    const command = send(harness, { topic: 'cmd/all' });
    await until(() => a.got.length === 1 && b.got.length === 1, 'the command delivered to both');
    a.release();
    // b's PUBACK is still held: a PUBACK of a only must not be enough.
    const second = send(harness, { topic: 'cmd/all', qos: 0 });
    assert.equal((await within(second.result, 'a QoS 0 command behind it')).status, 'done');
    assert.equal(command.settled(), false, 'not done while b has not confirmed');
    b.release();
    assert.deepEqual(await within(command.result, 'the result'), { status: 'done', result: { subscribers: 2 } });
  });

  test("another publish's PUBACK is not taken for the command's: the command's packet id comes from the client's own sequence", async () => {
    const harness = await start();
    const raw = await rawClient(harness.port);
    raw.socket.write(connectPacket('raw-device'));
    await raw.waitFor(CONNACK_OK);
    raw.socket.write(subscribePacket('cmd/#', 1));
    await raw.waitFor(Buffer.from([0x90, 0x03, 0x00, 0x01, 0x01]));
    const sensor = await connectClient(harness.url, { clientId: 'sensor' });
    clients.push(sensor);
    await sensor.publishAsync('cmd/other', 'from a device', { qos: 1 });
    const command = send(harness, { topic: 'cmd/raw' });
    await sensor.publishAsync('cmd/other', 'again', { qos: 1 });
    const publishes = (): ReturnType<typeof publishesIn> => publishesIn(Buffer.concat(raw.received));
    await until(() => publishes().length === 3, 'three publishes at the raw device');
    const [first, ours, third] = publishes();
    assert.deepEqual([first!.topic, ours!.topic, third!.topic], ['cmd/other', 'cmd/raw', 'cmd/other']);
    assert.equal(new Set([first!.messageId, ours!.messageId, third!.messageId]).size, 3, 'three distinct packet ids');
    raw.socket.write(Buffer.concat([pubackPacket(first!.messageId!), pubackPacket(third!.messageId!)]));
    // The command is still pending after the other two PUBACKs: a QoS 0 command behind them proves they were handled.
    const probe = send(harness, { topic: 'cmd/raw', qos: 0 });
    assert.equal((await within(probe.result, 'a QoS 0 command')).status, 'done');
    assert.equal(command.settled(), false, 'not confirmed by the PUBACK of another packet');
    raw.socket.write(pubackPacket(ours!.messageId!));
    assert.deepEqual(await within(command.result, 'the result'), { status: 'done', result: { subscribers: 1 } });
    raw.socket.destroy();
  });
});

describe('mqtt commands: unavailable when no confirmation can come', () => {
  test('no subscriber: unavailable at once', async () => {
    const harness = await start();
    assert.deepEqual(await send(harness, { topic: 'cmd/nobody' }).result, { status: 'unavailable', reason: 'no device is subscribed to cmd/nobody' });
  });

  test('a subscriber that leaves before its PUBACK: unavailable', async () => {
    const harness = await start();
    const valve = await device(harness, 'valve-2', 'cmd/valve-2', 1);
    const command = send(harness, { topic: 'cmd/valve-2' });
    await until(() => valve.got.length === 1, 'the command delivered');
    valve.client.stream.destroy();
    assert.deepEqual(await within(command.result, 'the result'), { status: 'unavailable', reason: 'a subscriber of cmd/valve-2 disconnected before it confirmed' });
  });

  test('no PUBACK within the time allowed (downlink.mqttTimeout): unavailable; a PUBACK after that changes nothing, and the next command works', async () => {
    const harness = await start();
    const valve = await device(harness, 'valve-3', 'cmd/valve-3', 1);
    const command = send(harness, { topic: 'cmd/valve-3', timeoutMs: 300 });
    assert.deepEqual(await within(command.result, 'the result'), { status: 'unavailable', reason: 'not confirmed by every subscriber of cmd/valve-3 within 300 ms' });
    valve.release();
    const next = send(harness, { topic: 'cmd/valve-3' });
    await until(() => valve.got.length === 2, 'the next command delivered');
    valve.release();
    assert.equal((await within(next.result, 'the next result')).status, 'done');
  });

  for (const how of ['did not confirm in time', 'left before it confirmed'] as const) {
    test(`a persistent-session device that ${how} is not sent the stale command when it comes back (the broker would have replayed it)`, async () => {
      const harness = await start();
      const first = await device(harness, 'pump-7', 'cmd/pump-7', 1, { clean: false });
      const timeoutMs = how === 'did not confirm in time' ? 300 : 10_000;
      const command = send(harness, { topic: 'cmd/pump-7', payload: Buffer.from('stale'), timeoutMs });
      await until(() => first.got.length === 1, 'the command delivered');
      if (how === 'left before it confirmed') first.client.stream.destroy();
      assert.equal((await within(command.result, 'the result')).status, 'unavailable');
      first.client.stream.destroy();
      await until(() => harness.ingest.stats().connections === 0, 'the device gone');
      const again = await device(harness, 'pump-7', 'cmd/pump-7', 1, { clean: false }, true);
      // What the session still held is sent on connect, before anything published after it.
      const marker = send(harness, { topic: 'cmd/pump-7', payload: Buffer.from('fresh'), qos: 0 });
      assert.equal((await within(marker.result, 'the marker')).status, 'done');
      await until(() => again.got.some((p) => p.payload.toString() === 'fresh'), 'the marker delivered');
      assert.deepEqual(again.got.map((p) => p.payload.toString()), ['fresh']);
    });
  }

  test('a QoS 1 command to a subscriber granted QoS 0 (it cannot confirm): unavailable, and not sent; a QoS 0 command is done', async () => {
    const harness = await start();
    const display = await device(harness, 'display-2', 'cmd/display-2', 0);
    assert.deepEqual(await send(harness, { topic: 'cmd/display-2', qos: 1 }).result, {
      status: 'unavailable', reason: 'a subscriber of cmd/display-2 was granted QoS 0 (display-2): it cannot confirm a QoS 1 command; send it with qos 0, or subscribe with QoS 1',
    });
    assert.equal((await send(harness, { topic: 'cmd/display-2', qos: 0 }).result).status, 'done');
    await until(() => display.got.length === 1, 'the QoS 0 command delivered');
    assert.equal(display.got[0]!.qos, 0);
  });
});

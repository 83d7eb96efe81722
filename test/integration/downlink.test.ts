/**
 * Commands down to devices through the gateway process (`uplink run`): sent to RabbitMQ by an
 * application with reply_to and correlation_id, received by the gateway's downlink, carried out on
 * a Modbus register of pymodbus (read back from it) and on an MQTT subscriber (mqtt.js), settled by
 * what the device said. The outcome is read from RabbitMQ itself: an accepted command leaves the
 * queue, a released one comes back to it, a rejected one is dead-lettered (a policy routes
 * rejections to `commands-dead`).
 */
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { after, before, describe, test } from 'node:test';
import mqtt from 'mqtt';
import rhea from 'rhea';
import { commandClient, type CommandClient } from '../peers/amqp-commands.js';
import { makeTestPki, type TestPki } from '../peers/certs.js';
import { startGateway, type GatewayProcess } from '../peers/gateway.js';
import { startRabbitMq, type RabbitMqPeer } from '../peers/rabbitmq.js';
import { startSlave, type Slave } from '../ingest/modbus/slave.js';
import { until } from '../peers/until.js';

let pki: TestPki;
let broker: RabbitMqPeer;
let slave: Slave;
let gw: GatewayProcess;
let client: CommandClient;

const REPLIES = '/queue/replies';
const DEAD = '/queue/commands-dead';

async function depth(queue: string): Promise<number | undefined> {
  return broker.queueDepth(queue);
}

before(async () => {
  pki = await makeTestPki();
  broker = await startRabbitMq({ pki });
  // Rejected commands are dead-lettered (by the default exchange) to commands-dead.
  await broker.ctl(['set_policy', '-p', '/', 'dead', '^commands$', '{"dead-letter-exchange":"","dead-letter-routing-key":"commands-dead"}', '--apply-to', 'queues']);
  slave = await startSlave({ units: [1] });
  gw = await startGateway({ config: {
    upstream: { url: `amqps://localhost:${broker.amqpsPort}`, sasl: 'external', tls: { ca: pki.ca.cert, cert: pki.client.cert, key: pki.client.key } },
    downlink: { address: '/queue/commands', credit: 5, mqttTimeout: '5s' },
    modbus: { buses: [{
      name: 'plc', tcp: { host: '127.0.0.1', port: slave.port }, timeout: '300ms', retries: 1, offlineBackoff: { base: '300ms', cap: '1s' },
      devices: [{ name: 'boiler', unitId: 1, interval: '200ms', points: [
        { name: 'setpoint', function: 'holding', address: 10, type: 'float32', writable: true, min: 0, max: 90, unit: '°C' },
        { name: 'pump', function: 'coil', address: 3, writable: true },
        { name: 'flow', function: 'input', address: 0 },
        { name: 'locked', function: 'holding', address: 20 },
        // The slave has 200 registers: a write here gets exception 2 from the device.
        { name: 'ghost', function: 'holding', address: 250, writable: true },
      ] }],
    }] },
    routes: [{ topic: 'factory/#', address: '/queue/dl-telemetry' }],
  } });
  client = await commandClient({ host: '127.0.0.1', port: broker.amqpsPort, pki, commands: '/queue/commands' });
  await client.listen(REPLIES);
  await client.listen(DEAD);
  await gw.waitForLog((l) => l.msg === 'modbus bus open');
});

after(async () => {
  client?.close();
  if (gw !== undefined) assert.equal((await gw.stop()).code, 0);
  await slave?.kill();
  await broker?.destroy();
  if (pki !== undefined) await rm(pki.dir, { recursive: true, force: true });
});

function replyTo(correlationId: string): Promise<{ body: Record<string, unknown>; correlationId: unknown }> {
  return client.waitFor(REPLIES, (r) => r.message.correlation_id === correlationId)
    .then((r) => ({ body: JSON.parse(r.text) as Record<string, unknown>, correlationId: r.message.correlation_id }));
}

describe('downlink: commands from RabbitMQ to devices', () => {
  test('a command to a Modbus register is written (read back from pymodbus), accepted, and replied to with its correlation id', async () => {
    await client.send({ target: 'modbus', bus: 'plc', device: 'boiler', point: 'setpoint', value: 55.5 }, { correlationId: 'set-1', replyTo: REPLIES });
    const reply = await replyTo('set-1');
    assert.deepEqual(reply.body, { ok: true });
    // 55.5 as float32, big-endian: 0x425E0000.
    assert.deepEqual(await slave.get(1, 'hr', 10, 2), [0x425E, 0x0000]);
    await client.send({ target: 'modbus', bus: 'plc', device: 'boiler', point: 'pump', value: true }, { correlationId: 'pump-1', replyTo: REPLIES });
    assert.deepEqual((await replyTo('pump-1')).body, { ok: true });
    assert.deepEqual(await slave.get(1, 'co', 3, 1), [1]);
    await until(async () => (await depth('commands')) === 0, 'the commands acknowledged');
    assert.equal(client.received(DEAD).length, 0, 'nothing dead-lettered');
    assert.ok(gw.logs.some((l) => l.msg === 'modbus write confirmed by the device' && l.point === 'setpoint' && l.fn === 16));
  });

  test('the reply carries the correlation_id as it came: a ulong stays a number, a binary stays bytes, a uuid stays a uuid', async () => {
    const binary = Buffer.from('c0ffee', 'hex');
    const uuid = Buffer.from('0123456789abcdef0123456789abcdef', 'hex');
    const cases: Array<[unknown, (id: unknown) => boolean, string]> = [
      [rhea.types.wrap_ulong(4242), (id) => id === 4242, 'ulong 4242'],
      [rhea.types.wrap_binary(binary), (id) => Buffer.isBuffer(id) && id.equals(binary), 'binary c0ffee'],
      [rhea.types.wrap_uuid(uuid), (id) => Buffer.isBuffer(id) && id.equals(uuid), 'uuid'],
    ];
    const deadBefore = client.received(DEAD).length;
    for (const [correlationId, matches, what] of cases) {
      await client.send({ target: 'modbus', bus: 'plc', device: 'boiler', point: 'nope', value: 1 }, { correlationId, replyTo: REPLIES });
      const reply = await client.waitFor(REPLIES, (r) => matches(r.message.correlation_id), 10_000).catch(() => undefined);
      assert.ok(reply !== undefined, `a reply with the correlation_id ${what}; got ${JSON.stringify(client.received(REPLIES).map((r) => r.message.correlation_id))}`);
      assert.equal((JSON.parse(reply.text) as { error: { code: string } }).error.code, 'unknown_point');
    }
    await until(() => client.received(DEAD).length === deadBefore + cases.length, 'the three commands dead-lettered');
  });

  test('commands that cannot be done are rejected with the reason (unknown point, read-only, out of range, the device refuses, not a command)', async () => {
    const deadBefore = client.received(DEAD).length;
    const cases: Array<[string, unknown, string]> = [
      ['r-unknown', { target: 'modbus', bus: 'plc', device: 'boiler', point: 'nope', value: 1 }, 'unknown_point'],
      ['r-input', { target: 'modbus', bus: 'plc', device: 'boiler', point: 'flow', value: 1 }, 'read_only'],
      ['r-locked', { target: 'modbus', bus: 'plc', device: 'boiler', point: 'locked', value: 1 }, 'read_only'],
      ['r-range', { target: 'modbus', bus: 'plc', device: 'boiler', point: 'setpoint', value: 95 }, 'out_of_range'],
      ['r-device', { target: 'modbus', bus: 'plc', device: 'boiler', point: 'ghost', value: 1 }, 'device_exception'],
      ['r-shape', { target: 'modbus', bus: 'plc', device: 'boiler' }, 'invalid_command'],
    ];
    for (const [id, body] of cases) await client.send(body, { correlationId: id, replyTo: REPLIES });
    await client.send('{not json', { correlationId: 'r-json', replyTo: REPLIES, raw: true });
    for (const [id, , code] of cases) {
      const reply = await replyTo(id);
      assert.equal(reply.body.ok, false, id);
      assert.equal((reply.body.error as { code: string }).code, code, `${id}: ${JSON.stringify(reply.body)}`);
    }
    assert.match(((await replyTo('r-device')).body.error as { message: string }).message, /exception 2 \(illegal data address\)/);
    assert.match(((await replyTo('r-range')).body.error as { message: string }).message, /above the point's max 90/);
    assert.equal(((await replyTo('r-json')).body.error as { code: string }).code, 'invalid_command');
    // Rejected, not accepted and not released: each one is dead-lettered, and the queue is empty.
    await until(() => client.received(DEAD).length === deadBefore + cases.length + 1, 'every rejected command dead-lettered');
    await until(async () => (await depth('commands')) === 0, 'the queue empty');
    assert.deepEqual(await slave.get(1, 'hr', 20, 1), [0], 'the read-only register was not written');
  });

  test('a command to a device that does not answer is released and carried out once it is back', async () => {
    await slave.mute(1);
    await gw.waitForLog((l) => l.msg === 'modbus device not answering; marked offline, polled again with backoff' && l.device === 'boiler');
    await client.send({ target: 'modbus', bus: 'plc', device: 'boiler', point: 'setpoint', value: 42 }, { correlationId: 'off-1', replyTo: REPLIES });
    await gw.waitForLog((l) => l.msg === 'downlink: command not carried out now; released to be tried again' && l.correlationId === 'off-1');
    assert.equal(client.received(REPLIES).filter((r) => r.message.correlation_id === 'off-1').length, 0, 'no reply while it is not done');
    assert.deepEqual(await slave.get(1, 'hr', 10, 2), [0x425E, 0x0000], 'not written meanwhile');
    await slave.unmute(1);
    assert.deepEqual((await replyTo('off-1')).body, { ok: true });
    assert.deepEqual(await slave.get(1, 'hr', 10, 2), [0x4228, 0x0000]);
    await until(async () => (await depth('commands')) === 0, 'the command acknowledged');
  });

  test('a command to an MQTT topic reaches the subscriber and is accepted only after its PUBACK; without a subscriber it is released', async () => {
    await client.send({ target: 'mqtt', topic: 'cmd/valve-7', qos: 1, payload: { open: true } }, { correlationId: 'mq-0', replyTo: REPLIES });
    await gw.waitForLog((l) => l.msg === 'downlink: command not carried out now; released to be tried again' && l.correlationId === 'mq-0'
      && /no device is subscribed to cmd\/valve-7/.test(String(l.reason)));
    const device = await mqtt.connectAsync(`mqtt://127.0.0.1:${gw.mqttPort}`, { clientId: 'valve-7' });
    try {
      const held: Array<() => void> = [];
      const got: mqtt.IPublishPacket[] = [];
      // mqtt.js sends the PUBACK when this callback is called: hold it.
      device.handleMessage = (packet, callback) => {
        got.push(packet as mqtt.IPublishPacket);
        held.push(() => callback());
      };
      await device.subscribeAsync('cmd/+', { qos: 1 });
      // The released command comes back (after its release backoff) and reaches the device.
      await until(() => got.length >= 1, 'the command delivered to the subscriber');
      assert.equal(got[0]!.topic, 'cmd/valve-7');
      assert.equal(got[0]!.qos, 1);
      assert.deepEqual(JSON.parse(got[0]!.payload.toString()), { open: true });
      assert.equal(client.received(REPLIES).filter((r) => r.message.correlation_id === 'mq-0').length, 0, 'no reply before the PUBACK');
      assert.equal(await depth('commands'), 1, 'not acknowledged to RabbitMQ before the PUBACK');
      held.shift()!();
      assert.deepEqual((await replyTo('mq-0')).body, { ok: true, result: { subscribers: 1 } });
      await until(async () => (await depth('commands')) === 0, 'the command acknowledged');
    } finally {
      await device.endAsync();
    }
  });

  test('GET /metrics and GET /status show whether the command link is attached, the commands by outcome, the replies sent and failed, and the Modbus devices', async () => {
    const metrics = await (await fetch(`http://127.0.0.1:${gw.httpPort}/metrics`)).text();
    const value = (series: string): number | undefined => {
      const line = metrics.split('\n').find((l) => l.startsWith(`${series} `));
      return line === undefined ? undefined : Number(line.split(' ').at(-1));
    };
    assert.equal(value('uplink_downlink_attached'), 1, metrics);
    assert.ok((value('uplink_downlink_replies_total{result="sent"}') ?? 0) >= 10, 'replies sent');
    assert.equal(value('uplink_downlink_replies_total{result="failed"}'), 0);
    assert.ok((value('uplink_downlink_commands_total{outcome="accepted"}') ?? 0) >= 3);
    const status = await (await fetch(`http://127.0.0.1:${gw.httpPort}/status`)).json() as Record<string, unknown>;
    const downlink = status.downlink as { address: string; attached: boolean; received: number; inProgress: number; outcomes: Record<string, number>; replies: { sent: number; failed: number } };
    assert.equal(downlink.address, '/queue/commands');
    assert.equal(downlink.attached, true);
    assert.equal(downlink.inProgress, 0);
    assert.deepEqual(downlink.replies, { sent: value('uplink_downlink_replies_total{result="sent"}'), failed: 0 });
    assert.equal(downlink.received, downlink.outcomes.accepted! + downlink.outcomes.rejected! + downlink.outcomes.released!);
    assert.deepEqual(status.modbus, { buses: [{ name: 'plc', open: true, devices: [{ name: 'boiler', unitId: 1, online: true }] }] });
  });
});

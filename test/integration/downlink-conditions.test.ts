/**
 * The AMQP outcome of each command, as the sender sees it on the wire: the gateway process
 * (`uplink run`) receives commands from an in-process rhea peer (test/node-red/amqp-peer.ts),
 * which records every outcome with its error condition and description. RabbitMQ does not show
 * these (it dead-letters a rejected message without its condition).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import rhea, { type Message } from 'rhea';
import { startAmqpPeer, type AmqpPeer } from '../node-red/amqp-peer.js';
import { startGateway, type GatewayProcess } from '../peers/gateway.js';
import { until } from '../peers/until.js';

const command = (id: string, body: unknown, raw = false): Message => ({
  message_id: id, body: rhea.message.data_section(Buffer.from(raw ? String(body) : JSON.stringify(body))),
});

let peer: AmqpPeer;
let gw: GatewayProcess;

before(async () => {
  peer = await startAmqpPeer({ messages: { '/commands': [
    command('c-json', '{"target": "mqtt", ', true),
    command('c-shape', { target: 'mqtt', qos: 7 }),
    command('c-topic', { target: 'mqtt', topic: 'cmd/#', payload: 'x' }),
    command('c-modbus', { target: 'modbus', bus: 'line1', device: 'm', point: 'p', value: 1 }),
    command('c-nobody', { target: 'mqtt', topic: 'cmd/nobody', payload: 'x', qos: 0 }),
  ] } });
  gw = await startGateway({ config: {
    upstream: { url: `amqp://127.0.0.1:${peer.port}`, sasl: 'anonymous' },
    downlink: { address: '/commands', credit: 10 },
  } });
});

after(async () => {
  if (gw !== undefined) assert.equal((await gw.stop()).code, 0);
  await peer?.stop();
});

describe('downlink outcomes on the wire', () => {
  test('each refusal is rejected with its AMQP condition and the reason; a command nobody can take now is released', async () => {
    await until(() => peer.outcomes.length >= 5, 'five outcomes');
    const byId = new Map(peer.outcomes.map((o) => [o.messageId, o]));
    const json = byId.get('c-json')!;
    assert.deepEqual([json.kind, json.condition], ['rejected', 'amqp:decode-error']);
    // The rest is V8's message, which differs between Node versions.
    assert.match(json.description!, /^invalid_command: the body is not UTF-8 JSON: \S/);
    assert.deepEqual(byId.get('c-shape'), {
      messageId: 'c-shape', kind: 'rejected', condition: 'amqp:decode-error',
      description: 'invalid_command: topic: is required; qos: must be 0, 1 or 2',
    });
    assert.deepEqual(byId.get('c-topic'), {
      messageId: 'c-topic', kind: 'rejected', condition: 'amqp:invalid-field', description: 'invalid_topic: MQTT topic "cmd/#" has a wildcard or NUL',
    });
    assert.deepEqual(byId.get('c-modbus'), {
      messageId: 'c-modbus', kind: 'rejected', condition: 'amqp:not-implemented', description: 'unknown_target: this gateway polls no Modbus devices',
    });
    assert.deepEqual(byId.get('c-nobody'), { messageId: 'c-nobody', kind: 'released' });
    assert.ok(gw.logs.some((l) => l.msg === 'downlink: command cannot be carried out; rejected' && l.code === 'invalid_topic' && l.topic === 'cmd/#'));
  });
});

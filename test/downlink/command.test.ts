/** The command message format: bodies as data sections, AMQP strings and maps; payload forms; problems as path: message. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseCommand } from '../../src/downlink/command.js';

describe('downlink command format', () => {
  test('a data section of UTF-8 JSON, an AMQP string and an AMQP map give the same command', () => {
    const command = { target: 'modbus', bus: 'line1', device: 'boiler', point: 'setpoint', value: 21.5 };
    for (const body of [Buffer.from(JSON.stringify(command)), JSON.stringify(command), command]) {
      assert.deepEqual(parseCommand(body), command);
    }
  });

  test('MQTT payloads: a string as its UTF-8 bytes, other JSON as JSON text, payloadBase64 as bytes; QoS 1 by default', () => {
    assert.deepEqual(parseCommand({ target: 'mqtt', topic: 't', payload: 'héllo' }), { target: 'mqtt', topic: 't', qos: 1, payload: Buffer.from('héllo') });
    assert.deepEqual(parseCommand({ target: 'mqtt', topic: 't', qos: 0, payload: { open: true } }), { target: 'mqtt', topic: 't', qos: 0, payload: Buffer.from('{"open":true}') });
    assert.deepEqual(parseCommand({ target: 'mqtt', topic: 't', qos: 2, payload: 42 }), { target: 'mqtt', topic: 't', qos: 2, payload: Buffer.from('42') });
    assert.deepEqual(parseCommand({ target: 'mqtt', topic: 't', payloadBase64: 'AAH/' }), { target: 'mqtt', topic: 't', qos: 1, payload: Buffer.from([0, 1, 255]) });
  });

  test('what is not a command says why, as path: message', () => {
    assert.deepEqual(parseCommand(Buffer.from([0xff, 0xfe])), { problem: 'the body is not UTF-8 JSON: The encoded data was not valid for encoding utf-8' });
    assert.deepEqual(parseCommand('[1]'), { problem: 'the body is not a JSON object' });
    assert.deepEqual(parseCommand({ target: 'serial' }), { problem: 'target: must be "mqtt" or "modbus"' });
    assert.deepEqual(parseCommand({ target: 'mqtt', topic: 't', payload: 'a', payloadBase64: 'AA==' }), { problem: 'payload: give either payload or payloadBase64' });
    assert.deepEqual(parseCommand({ target: 'mqtt', topic: 't' }), { problem: 'payload: give either payload or payloadBase64' });
    assert.deepEqual(parseCommand({ target: 'modbus', bus: 'b', device: 7, point: '', extra: 1 }),
      { problem: 'device: must be a string; point: must not be empty; value: is required; extra: is not a field of a command' });
  });
});

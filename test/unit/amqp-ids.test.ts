/**
 * Message and correlation ids through the gateway in their AMQP types: decoded by rhea as the
 * receiver link does, and encoded again as a reply carries them.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import rhea from 'rhea';
import { toAmqpMessage } from '../../src/upstream/amqp/message.js';
import { toDownlinkMessage } from '../../src/upstream/amqp/receiver-link.js';

interface Section {
  descriptor?: { value: unknown };
  value: Array<{ type: { typecode: number } }>;
}

const Reader = (rhea.types as unknown as { Reader: new (buffer: Buffer) => { read(): Section; remaining(): number } }).Reader;

/** The AMQP type code rhea writes for `correlation_id` (the 6th field of the properties section) in a reply carrying `id`. */
function typecodeOf(id: string | number | Buffer): number | undefined {
  const message = toAmqpMessage({ id: 'r', topic: 't', payload: Buffer.from('{}'), receivedAt: 0, priority: 4, correlationId: id }, 'gw');
  const reader = new Reader(rhea.message.encode(message as never));
  while (reader.remaining() > 0) {
    const section = reader.read();
    if (Number(section.descriptor?.value) === 0x73) return section.value[5]?.type.typecode;
  }
  return undefined;
}

describe('AMQP ids', () => {
  test('a command\'s ids as they came, and in text for logs', () => {
    const cases: Array<[unknown, unknown, string]> = [
      ['corr-1', 'corr-1', 'corr-1'],
      [rhea.types.wrap_ulong(42), 42, '42'],
      [rhea.types.wrap_binary(Buffer.from('c0ffee', 'hex')), Buffer.from('c0ffee', 'hex'), 'c0ffee'],
    ];
    for (const [sent, value, text] of cases) {
      const message = toDownlinkMessage(rhea.message.decode(rhea.message.encode({ message_id: sent, correlation_id: sent, body: 'x' } as never)) as never);
      assert.deepEqual([message.idValue, message.correlationIdValue, message.id, message.correlationId], [value, value, text, text]);
    }
  });

  test('a reply\'s correlation_id goes out in the type it came in: string, ulong, uuid (16 bytes), binary (other lengths)', () => {
    assert.equal(typecodeOf('corr-1'), 0xa1);
    assert.ok([0x80, 0x53, 0x44].includes(typecodeOf(42) ?? -1), 'a ulong');
    assert.equal(typecodeOf(Buffer.alloc(16, 7)), 0x98);
    assert.equal(typecodeOf(Buffer.from('c0ffee', 'hex')), 0xa0);
  });
});

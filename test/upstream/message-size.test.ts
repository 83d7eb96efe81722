/**
 * A receiver that states the largest message it takes (max_message_size in its attach; RabbitMQ 4
 * states 16 MiB by default and ends the session for a larger one). A larger reading is never sent:
 * it is dead-lettered with amqp:link:message-size-exceeded, and the readings around it flow.
 */
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { startScriptedReceiver, type ScriptedReceiver } from '../peers/rhea-receiver.js';
import { readings, startPipeline, until, type Pipeline } from './pipeline.js';

const peers: ScriptedReceiver[] = [];
const pipes: Pipeline[] = [];

after(async () => {
  for (const pipe of pipes) await pipe.stop();
  for (const peer of peers) await peer.stop();
});

describe('the max_message_size of the receiver', () => {
  test('a reading over it is dead-lettered with the reason, never sent; the readings before and after it arrive in order', async () => {
    const peer = await startScriptedReceiver({ linkCredit: 100, sessionWindow: 1000, maxMessageSize: 4096 });
    peers.push(peer);
    const pipe = await startPipeline({ url: peer.url });
    pipes.push(pipe);
    const address = '/queue/sizes';
    const small = readings(6, address, 's');
    // 4 KiB of payload: over the limit once the header and properties are added.
    const [big] = readings(1, address, 'big', { payload: Buffer.alloc(4096, 0x62) });
    // Just under it (the properties take a few hundred bytes): sent.
    const [fits] = readings(1, address, 'fits', { payload: Buffer.alloc(3000, 0x63) });
    await pipe.spool.append([...small.slice(0, 3), big!, fits!, ...small.slice(3)]);
    await until(() => pipe.spool.stats().depth === 0, 'every reading settled');
    const dead = pipe.spool.deadLetters.list();
    assert.deepEqual(dead.map((d) => d.id), [big!.id]);
    assert.equal(dead[0]!.reason.condition, 'amqp:link:message-size-exceeded');
    assert.match(dead[0]!.reason.description ?? '', /max_message_size/);
    assert.deepEqual(peer.transfers().map((t) => t.messageId), [...small.slice(0, 3), fits!, ...small.slice(3)].map((r) => r.id));
    assert.ok(pipe.lines.some((l) => l.msg === 'upstream: a reading larger than the broker takes was not sent' && l.id === big!.id && l.address === address));
  });
});

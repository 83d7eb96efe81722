/**
 * A receiver that refuses the link to one address while the connection stays up (RabbitMQ 4 ends
 * the session with amqp:not-found for a queue that does not exist). The other addresses flow; the
 * refused one waits in the spool, is named in the upstream's state with the broker's reason, is
 * logged once, and is attached again with growing waits until the receiver takes it.
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

describe('an address the receiver refuses', () => {
  test('waits with backoff, named in the state and logged once, the others flow; taken later, it drains', async () => {
    const refuse: Record<string, { condition: string; description: string }> = {
      '/queue/missing': { condition: 'amqp:not-found', description: 'no queue missing' },
    };
    const peer = await startScriptedReceiver({ linkCredit: 100, sessionWindow: 1000, refuse });
    peers.push(peer);
    // random 1: each wait is the largest the backoff allows, base + base * 2^n up to the cap.
    const pipe = await startPipeline({ url: peer.url, upstream: { linkRetryMs: 100, backoff: { baseMs: 100, capMs: 800, random: () => 1 } } });
    pipes.push(pipe);
    const missing = readings(10, '/queue/missing', 'm');
    const present = readings(50, '/queue/present', 'p');
    await pipe.spool.append([...missing.slice(0, 5), ...present, ...missing.slice(5)]);
    await until(() => pipe.forwarder.stats().outcomes.accepted === 50, 'the other address to drain');
    await until(() => (pipe.upstream.state().refused?.[0]?.attempts ?? 0) >= 5, 'five refused attaches');

    const state = pipe.upstream.state();
    assert.equal(state.connected, true);
    assert.equal(state.reconnects, 0, 'the connection was kept');
    assert.deepEqual(state.refused?.map((r) => [r.address, r.condition]), [['/queue/missing', 'amqp:not-found']]);
    assert.match(state.refused![0]!.message, /no queue missing/);
    assert.equal(pipe.spool.stats().depth, 10, 'the refused readings wait in the spool');
    const refusals = pipe.lines.filter((l) => l.address === '/queue/missing' && /^upstream refused the link/.test(String(l.msg)));
    assert.deepEqual(refusals.filter((l) => l.level === 'error').map((l) => l.attempts), [1], 'logged at error once');
    const waits = refusals.slice(0, 4).map((l) => l.retryInMs);
    assert.deepEqual(waits, [200, 300, 500, 800], 'waits growing to the cap');

    delete refuse['/queue/missing'];
    await until(() => pipe.spool.stats().depth === 0, 'the address to drain once taken');
    assert.equal(pipe.upstream.state().refused, undefined);
    assert.deepEqual(peer.transfers().filter((t) => t.address === '/queue/missing').map((t) => t.messageId), missing.map((r) => r.id));
    assert.ok(pipe.lines.some((l) => l.address === '/queue/missing' && l.msg === 'upstream took the link to an address it refused: its readings flow again'));
  });
  test('a refusal that needs a person (amqp:not-allowed) waits the capped interval from the first, the others flow', async () => {
    const refuse = { '/queue/forbidden': { condition: 'amqp:not-allowed', description: 'access to queue forbidden refused' } };
    const peer = await startScriptedReceiver({ linkCredit: 100, sessionWindow: 1000, refuse });
    peers.push(peer);
    // random 1: the capped wait is the cap itself; a retryable refusal would wait 200, 300, 500 first.
    const pipe = await startPipeline({ url: peer.url, upstream: { linkRetryMs: 100, backoff: { baseMs: 100, capMs: 800, random: () => 1 } } });
    pipes.push(pipe);
    await pipe.spool.append([...readings(3, '/queue/forbidden', 'f'), ...readings(20, '/queue/open', 'o')]);
    await until(() => pipe.forwarder.stats().outcomes.accepted === 20, 'the other address to drain');
    await until(() => (pipe.upstream.state().refused?.[0]?.attempts ?? 0) >= 3, 'three refused attaches');
    const waits = pipe.lines.filter((l) => l.address === '/queue/forbidden' && /^upstream refused the link/.test(String(l.msg))).slice(0, 3).map((l) => l.retryInMs);
    assert.deepEqual(waits, [800, 800, 800], 'the cap from the first refusal');
    assert.equal(pipe.upstream.state().refused?.[0]?.condition, 'amqp:not-allowed');
    assert.equal(pipe.spool.stats().depth, 3, 'its readings wait in the spool');
  });
});

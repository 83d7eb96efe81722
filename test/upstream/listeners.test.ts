/**
 * Listeners of AmqpUpstream run inside rhea's event handlers. One that throws is logged with what
 * it concerns and skipped; rhea's processing and the connection carry on (rhea would otherwise
 * take the throw for a fault of the connection and drop it, with every unsettled delivery).
 */
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { AmqpUpstream } from '../../src/upstream/amqp/amqp-upstream.js';
import type { Outcome, UpstreamState } from '../../src/upstream/interface.js';
import { memoryLogger } from '../peers/memory-log.js';
import { startScriptedReceiver, type ScriptedReceiver } from '../peers/rhea-receiver.js';
import { until } from './pipeline.js';

const peers: ScriptedReceiver[] = [];
const upstreams: AmqpUpstream[] = [];

after(async () => {
  for (const upstream of upstreams) await upstream.stop();
  for (const peer of peers) await peer.stop();
});

function message(id: string): { id: string; topic: string; payload: Buffer; receivedAt: number; priority: number } {
  return { id, topic: 'sensor/t', payload: Buffer.from(id), receivedAt: Date.now(), priority: 4 };
}

const threw = (line: Record<string, unknown>): boolean => /a listener threw/.test(String(line.msg));

describe('listeners of the upstream', () => {
  test('throwing onState, onCredit, outcome and receiver onChange listeners: logged, and the connection carries on', async () => {
    const peer = await startScriptedReceiver({ linkCredit: 100, sessionWindow: 10_000 });
    peers.push(peer);
    const { log, lines } = memoryLogger();
    const upstream = new AmqpUpstream({ urls: [peer.url], sasl: 'anonymous', gatewayId: 'gw', log, backoff: { baseMs: 50, capMs: 100 } });
    upstreams.push(upstream);
    const states: UpstreamState[] = [];
    upstream.onState(() => { throw new Error('onState bug'); });
    upstream.onState((state) => states.push(state));
    await upstream.start();
    await until(() => states.some((s) => s.connected), 'the connection');

    const link = upstream.link('/queue/guarded', 'at-least-once');
    let credits = 0;
    link.onCredit(() => { throw new Error('onCredit bug'); });
    link.onCredit(() => { credits += 1; });
    await until(() => link.credit() > 0, 'credit');
    assert.ok(credits > 0, 'the second credit listener was not called');

    const outcomes: Outcome[] = [];
    link.send(message('m1'), () => { throw new Error('outcome bug'); });
    link.send(message('m2'), (outcome) => outcomes.push(outcome));
    await until(() => outcomes.length === 1, 'the outcome of m2');
    assert.deepEqual(outcomes, [{ kind: 'accepted' }]);

    const receiver = upstream.receiver({
      address: '/queue/commands', credit: 1, onDelivery: (d) => d.settle({ kind: 'accept' }),
      onChange: () => { throw new Error('onChange bug'); },
    });
    await until(() => receiver.attached, 'the receiver');

    // Sent after every throw: it arrives on the same connection.
    link.send(message('m3'), (outcome) => outcomes.push(outcome));
    await until(() => outcomes.length === 2, 'the outcome of m3');
    assert.deepEqual(peer.transfers().map((t) => t.messageId), ['m1', 'm2', 'm3']);
    assert.equal(peer.opens().length, 1, 'the connection was dropped and opened again');
    assert.equal(upstream.state().reconnects, 0);
    assert.equal(upstream.state().connected, true);

    const logged = lines.filter(threw);
    assert.ok(logged.some((l) => (l.err as { message?: string }).message === 'onState bug' && typeof l.url === 'string'), 'onState throw not logged with the url');
    assert.ok(logged.some((l) => (l.err as { message?: string }).message === 'onCredit bug' && l.address === '/queue/guarded'), 'onCredit throw not logged with the address');
    assert.ok(logged.some((l) => (l.err as { message?: string }).message === 'outcome bug' && l.address === '/queue/guarded' && l.outcome === 'accepted'));
    assert.ok(logged.some((l) => (l.err as { message?: string }).message === 'onChange bug' && l.address === '/queue/commands'));
    assert.ok(logged.every((l) => l.level === 'error'), 'logged as errors');
  });
});

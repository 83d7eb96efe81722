/**
 * The cap on open sender links (upstream.maxLinks) and the closing of idle links
 * (upstream.linkIdleTimeout): address templates such as `/queue/device-{2}` give one link and one
 * session per device, and without a bound a gateway would hold thousands open at the broker.
 * The peers count the links attached at once on their side of the wire.
 */
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { after, before, describe, test } from 'node:test';
import type { RoutedReading } from '../../src/core/envelope.js';
import { AmqpUpstream } from '../../src/upstream/amqp/amqp-upstream.js';
import type { Outcome } from '../../src/upstream/interface.js';
import { makeTestPki, type TestPki } from '../peers/certs.js';
import { memoryLogger } from '../peers/memory-log.js';
import { startProtonReceiver, type PeerEvent, type ProtonPeer } from '../peers/proton.js';
import { startScriptedReceiver, type ScriptedReceiver } from '../peers/rhea-receiver.js';
import { readings, startPipeline, until, type Pipeline } from './pipeline.js';

let pki: TestPki;
const protons: ProtonPeer[] = [];
const scripted: ScriptedReceiver[] = [];
const pipes: Pipeline[] = [];
const upstreams: AmqpUpstream[] = [];

before(async () => { pki = await makeTestPki(); });
after(async () => {
  for (const pipe of pipes) await pipe.stop();
  for (const upstream of upstreams) await upstream.stop();
  for (const peer of protons) await peer.stop();
  for (const peer of scripted) await peer.stop();
  if (pki !== undefined) await rm(pki.dir, { recursive: true, force: true });
});

function message(id: string): { id: string; topic: string; payload: Buffer; receivedAt: number; priority: number } {
  return { id, topic: 'sensor/t', payload: Buffer.from(id), receivedAt: Date.now(), priority: 4 };
}

/** The most links the Proton peer had attached at once, from its event stream (in wire order). */
function maxAttachedAtOnce(events: PeerEvent[]): number {
  let now = 0;
  let max = 0;
  for (const event of events) {
    if (event.event === 'link') now += 1;
    else if (event.event === 'link_closed') now -= 1;
    max = Math.max(max, now);
  }
  return max;
}

async function scriptedUpstream(options: { holdOutcomes?: boolean; maxLinks: number; linkIdleTimeoutMs?: number }): Promise<{ peer: ScriptedReceiver; upstream: AmqpUpstream }> {
  const peer = await startScriptedReceiver({ linkCredit: 10, sessionWindow: 1000, ...(options.holdOutcomes ? { holdOutcomes: true } : {}) });
  scripted.push(peer);
  const upstream = new AmqpUpstream({ urls: [peer.url], sasl: 'anonymous', gatewayId: 'gw', log: memoryLogger().log,
    maxLinks: options.maxLinks, linkIdleTimeoutMs: options.linkIdleTimeoutMs ?? 600_000 });
  upstreams.push(upstream);
  await upstream.start();
  await until(() => upstream.state().connected, 'the connection');
  return { peer, upstream };
}

describe('the cap on open sender links', () => {
  test('at the cap, a link waits with no credit while none is idle; it attaches once the busy link is settled and closed', async () => {
    const { peer, upstream } = await scriptedUpstream({ holdOutcomes: true, maxLinks: 1 });
    const a = upstream.link('/queue/a', 'at-least-once');
    let aCalls = 0;
    a.onCredit(() => { aCalls += 1; });
    await until(() => a.credit() > 0, 'credit on a');
    const outcomes: Outcome[] = [];
    a.send(message('a1'), (o) => outcomes.push(o));
    await peer.until(() => peer.transfers().length === 1, 'a1 at the peer');

    const b = upstream.link('/queue/b', 'at-least-once');
    assert.notEqual(b, a);
    assert.equal(upstream.link('/queue/b', 'at-least-once'), b, 'a waiting link is the same object until it is closed');
    let bCalls = 0;
    b.onCredit(() => { bCalls += 1; });
    // a has an unsettled delivery: it may not be closed, so b waits.
    assert.equal(b.credit(), 0);
    assert.deepEqual(upstream.links(), { open: 1, closing: 0, waiting: 1 });
    assert.equal(a.closed, false);

    peer.settle();
    await until(() => bCalls > 0 && b.credit() > 0, 'b attached with credit');
    assert.deepEqual(outcomes, [{ kind: 'accepted' }]);
    assert.equal(a.closed, true);
    assert.equal(a.credit(), 0);
    const aCallsAtClose = aCalls;
    assert.deepEqual(upstream.links(), { open: 1, closing: 0, waiting: 0 });
    assert.deepEqual(peer.attached(), { now: 1, max: 1 }, 'two links attached at once');

    b.send(message('b1'), (o) => outcomes.push(o));
    await peer.until(() => peer.transfers().length === 2, 'b1 at the peer');
    peer.settle();
    await until(() => outcomes.length === 2, 'b1 settled');
    assert.equal(aCalls, aCallsAtClose, 'a closed link called its listener');

    // a again: a new object, which waits for b (idle now) to be closed.
    const a2 = upstream.link('/queue/a', 'at-least-once');
    assert.notEqual(a2, a);
    await until(() => a2.credit() > 0, 'the new link for a');
    assert.equal(b.closed, true);
    assert.equal(peer.attached().max, 1);
    assert.equal(peer.links(), 3);
  });

  test('links idle for linkIdleTimeout are closed (detach and end of session) and forgotten', async () => {
    const { peer, upstream } = await scriptedUpstream({ maxLinks: 8, linkIdleTimeoutMs: 1000 });
    const links = ['/queue/i1', '/queue/i2', '/queue/i3'].map((address) => upstream.link(address, 'at-least-once'));
    for (const link of links) await until(() => link.credit() > 0, `credit on ${link.address}`);
    const outcomes: Outcome[] = [];
    links[0]!.send(message('i1'), (o) => outcomes.push(o));
    await peer.until(() => peer.attached().now === 0 && peer.links() === 3, 'the peer to see all three detached', 20_000);
    assert.deepEqual(outcomes, [{ kind: 'accepted' }]);
    assert.ok(links.every((link) => link.closed && link.credit() === 0));
    // Forgotten once the peer has ended their sessions too.
    await until(() => upstream.links().closing === 0, 'the sessions to end');
    assert.deepEqual(upstream.links(), { open: 0, closing: 0, waiting: 0 });
    assert.equal(upstream.credit(), 0);
    const again = upstream.link('/queue/i1', 'at-least-once');
    assert.notEqual(again, links[0]);
    await until(() => again.credit() > 0, 'the link attached again');
    again.send(message('i1-again'), (o) => outcomes.push(o));
    await until(() => outcomes.length === 2, 'its outcome');
    assert.deepEqual(peer.transfers().map((t) => t.messageId), ['i1', 'i1-again']);
  });

  test('a link without credit is never idle: the idle link with credit is closed instead, and the one without keeps its caller', async () => {
    const peer = await startScriptedReceiver({ linkCredit: 10, creditFor: { '/queue/no-credit': 0 }, sessionWindow: 1000 });
    scripted.push(peer);
    const upstream = new AmqpUpstream({ urls: [peer.url], sasl: 'anonymous', gatewayId: 'gw', log: memoryLogger().log, maxLinks: 2, linkIdleTimeoutMs: 100 });
    upstreams.push(upstream);
    await upstream.start();
    // a is asked for first: the least recently used, and idle longest if credit did not count.
    const a = upstream.link('/queue/no-credit', 'at-least-once');
    let aCalls = 0;
    a.onCredit(() => { aCalls += 1; });
    const c = upstream.link('/queue/with-credit', 'at-least-once');
    await until(() => c.credit() > 0 && peer.attached().now === 2, 'both links');
    const b = upstream.link('/queue/waiting', 'at-least-once');
    await until(() => c.closed && b.credit() > 0, 'c closed for b');
    assert.equal(a.closed, false, 'a link waiting for credit was closed');
    assert.deepEqual(upstream.links(), { open: 2, closing: 0, waiting: 0 });
    assert.equal(peer.attached().max, 2);
    const before = aCalls;
    peer.grant('/queue/no-credit', 3);
    await until(() => aCalls > before, 'a hears of its credit');
    assert.equal(a.credit(), 3);
  });

  test('a link the broker refused gives its place up to a waiting link', async () => {
    const peer = await startScriptedReceiver({ linkCredit: 10, sessionWindow: 1000,
      refuse: { '/queue/missing': { condition: 'amqp:not-found', description: 'no queue /queue/missing' } } });
    scripted.push(peer);
    const upstream = new AmqpUpstream({ urls: [peer.url], sasl: 'anonymous', gatewayId: 'gw', log: memoryLogger().log,
      maxLinks: 1, linkIdleTimeoutMs: 600_000, linkRetryMs: 600_000 });
    upstreams.push(upstream);
    await upstream.start();
    const refused = upstream.link('/queue/missing', 'at-least-once');
    await until(() => upstream.state().lastError?.condition === 'amqp:not-found', 'the refusal');
    const good = upstream.link('/queue/present', 'at-least-once');
    await until(() => good.credit() > 0, 'the waiting link to get the place');
    assert.equal(refused.closed, true);
    assert.deepEqual(upstream.links(), { open: 1, closing: 0, waiting: 0 });
  });

  test('80 addresses, maxLinks 4, against Proton: never more than 4 links attached at the peer, every reading in order per address, nothing lost', async () => {
    const receiver = await startProtonReceiver({ pki, credit: { mode: 'window', n: 5 } });
    protons.push(receiver);
    const pipe = await startPipeline({ url: receiver.url.replace('127.0.0.1', 'localhost'), pki, upstream: { maxLinks: 4, linkIdleTimeoutMs: 600_000 } });
    pipes.push(pipe);
    await until(() => pipe.upstream.state().connected, 'the connection');
    const addresses = Array.from({ length: 80 }, (_, i) => `/queue/device-${i}`);
    const sent = new Map<string, RoutedReading[]>(addresses.map((address, i) => [address, readings(12, address, `d${i}`)]));
    // Interleaved, as devices publish: one reading of each address in turn.
    const all: RoutedReading[] = [];
    for (let n = 0; n < 12; n++) for (const address of addresses) all.push(sent.get(address)![n]!);
    let maxOpen = 0;
    const sampler = setInterval(() => { maxOpen = Math.max(maxOpen, pipe.upstream.links().open + pipe.upstream.links().closing); }, 5);
    try {
      for (let i = 0; i < all.length; i += 80) await pipe.spool.append(all.slice(i, i + 80));
      await receiver.waitForTransfers(all.length, 120_000);
      await until(() => pipe.spool.stats().depth === 0, 'the spool to drain');
    } finally {
      clearInterval(sampler);
    }
    const transfers = receiver.transfers();
    for (const address of addresses) {
      assert.deepEqual(transfers.filter((t) => t.address === address).map((t) => String(t.message_id)), sent.get(address)!.map((r) => r.id),
        `readings of ${address} out of order, lost or sent twice`);
    }
    assert.equal(transfers.length, all.length);
    assert.equal(receiver.overCredit(), 0);
    const events = receiver.events();
    assert.equal(maxAttachedAtOnce(events), 4, 'links attached at once at the peer');
    assert.ok(events.filter((e) => e.event === 'link').length >= 80, 'every address had a link');
    assert.ok(maxOpen <= 4, `the upstream held ${maxOpen} links`);
    const counts = pipe.upstream.links();
    assert.ok(counts.open + counts.closing <= 4 && counts.waiting === 0, JSON.stringify(counts));
  });
});

/**
 * Session flow control: a receiver that grants link credit but a session window of 0 (RabbitMQ 4
 * during a memory or disk alarm), then opens it. The sender offers no credit while the window is
 * shut, so nothing is leased from the spool or sent; once a flow for the session alone opens it,
 * everything goes, in order, within the window.
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

describe('the session window of the receiver', () => {
  test('window 0 with link credit 100: no credit offered, nothing leased or sent; opened, all 30 arrive in order', async () => {
    const peer = await startScriptedReceiver({ linkCredit: 100, sessionWindow: 0 });
    peers.push(peer);
    const pipe = await startPipeline({ url: peer.url });
    pipes.push(pipe);
    await until(() => pipe.upstream.state().connected, 'the connection');
    const address = '/queue/alarm';
    // Asked for before the forwarder does, so this listener hears each credit change first,
    // before anything is sent on it.
    const link = pipe.upstream.link(address, 'at-least-once');
    const offered: number[] = [];
    let shut = true;
    link.onCredit(() => { if (shut) offered.push(link.credit()); });
    const sent = readings(30, address, 'w');
    await pipe.spool.append(sent);
    await peer.until(() => peer.links() === 1, 'the link to attach');
    // A barrier, both ways: the peer answers this attach after the flow that granted the link
    // credit (with window 0), so once the answer is in, the sender has taken that flow in too; and
    // any transfer the sender wrote before this attach reached the peer before it.
    const barrier = pipe.upstream.receiver({ address: '/queue/barrier', credit: 1, onDelivery: (d) => d.settle({ kind: 'release' }) });
    await until(() => barrier.attached, 'the barrier link');
    assert.equal(peer.senders(), 1);
    assert.ok(offered.length > 0, 'the link never heard of its credit');
    assert.ok(offered.every((credit) => credit === 0), `credit offered while the session window was 0: ${offered.join(', ')}`);
    assert.equal(link.credit(), 0);
    assert.equal(peer.transfers().length, 0, 'a transfer went out while the session window was 0');
    assert.equal(pipe.spool.stats().inFlight, 0, 'readings were leased although the session window was 0');

    shut = false;
    peer.setWindow(1000);
    await peer.until(() => peer.transfers().length >= 30, 'all 30 transfers once the window opened');
    await until(() => pipe.spool.stats().depth === 0, 'the spool to drain');
    assert.deepEqual(peer.transfers().map((t) => t.messageId), sent.map((r) => r.id));
    assert.equal(peer.transfers().filter((t) => t.overWindow).length, 0, 'a transfer beyond the session window');
  });

  test('a window of 3 lets exactly 3 through: credit() never offers more than the window left', async () => {
    const peer = await startScriptedReceiver({ linkCredit: 100, sessionWindow: 0 });
    peers.push(peer);
    const pipe = await startPipeline({ url: peer.url });
    pipes.push(pipe);
    await until(() => pipe.upstream.state().connected, 'the connection');
    const address = '/queue/narrow';
    const link = pipe.upstream.link(address, 'at-least-once');
    const offered: number[] = [];
    link.onCredit(() => offered.push(link.credit()));
    const sent = readings(10, address, 'n');
    await pipe.spool.append(sent);
    await until(() => offered.length > 0, 'the link credit to reach the sender');
    peer.setWindow(3);
    await peer.until(() => peer.transfers().length >= 3, 'three transfers');
    // Settled (accepted) by the peer; with the window used up, the sender offers nothing more.
    await until(() => pipe.spool.stats().depth === 7, 'the 3 to be acknowledged');
    assert.equal(link.credit(), 0);
    assert.ok(offered.every((credit) => credit <= 3), `offered more than the window: ${offered.join(', ')}`);
    assert.equal(pipe.spool.stats().inFlight, 0, 'readings leased beyond the window');
    peer.setWindow(1000);
    await peer.until(() => peer.transfers().length >= 10, 'the rest');
    assert.deepEqual(peer.transfers().map((t) => t.messageId), sent.map((r) => r.id));
    assert.equal(peer.transfers().filter((t) => t.overWindow).length, 0);
  });
});

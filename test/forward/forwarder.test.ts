/**
 * The forwarder between the real spool and the scripted upstream (scripted-upstream.ts), each
 * interleaving of outcomes, disconnects, credit and link closes made certain by the script. Every
 * test also ends with the reference model's verdict (reference.ts): nothing sent twice at once,
 * nothing settled by a late outcome, nothing accepted sent again, order, ids, credit.
 */
import assert from 'node:assert/strict';
import { afterEach, describe, test } from 'node:test';
import type { Outcome } from '../../src/upstream/interface.js';
import { Harness } from './harness.js';

const running: Harness[] = [];

async function harness(options: Parameters<typeof Harness.start>[0] = {}): Promise<Harness> {
  const h = await Harness.start(options);
  running.push(h);
  return h;
}

/** Ends a test: everything left drains, and the model saw no violation. */
async function finish(h: Harness): Promise<void> {
  await h.drainAll();
  assert.deepEqual(h.violations(), []);
}

/** Waits (event-driven, generous) until `check` holds, re-checking after every turn of the event loop. */
async function until(check: () => boolean, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!check()) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
}

afterEach(async () => {
  for (const h of running.splice(0)) await h.stop();
});

describe('forwarder: credit', () => {
  test('never more transfers than the credit granted; outcomes do not give credit back', async () => {
    const h = await harness();
    await h.append('a', 10);
    h.upstream.connect();
    await h.quiet();
    assert.equal(h.sent().length, 0, 'nothing is sent before the receiver grants credit');
    h.upstream.grant('a', 3);
    await h.quiet();
    assert.equal(h.sent().length, 3);
    h.settleAll({ kind: 'accepted' });
    await h.quiet();
    assert.equal(h.sent().length, 3, 'accepted outcomes are not credit');
    h.upstream.grant('a', 2);
    await h.quiet();
    assert.deepEqual(h.sent(), ['a/1', 'a/2', 'a/3', 'a/4', 'a/5']);
    assert.equal(h.upstream.current('a')!.credit(), 0);
    await finish(h);
  });

  test('credit that grows while a lease is pending is used, in order, and never exceeded', async () => {
    const h = await harness();
    await h.append('a', 10);
    h.upstream.connect();
    await h.quiet();
    h.upstream.grant('a', 2);
    // The pump leased 2 and waits for the lease to resolve; more credit comes meanwhile.
    h.upstream.grant('a', 3);
    h.upstream.grant('a', 1);
    await h.quiet();
    assert.deepEqual(h.sent(), ['a/1', 'a/2', 'a/3', 'a/4', 'a/5', 'a/6']);
    assert.equal(h.raw.stats().inFlight, 6, 'no reading is leased beyond what was sent');
    await finish(h);
  });

  test('a receiver that asks to drain gets its credit back once nothing is left to send', async () => {
    const h = await harness();
    await h.append('a', 2);
    h.upstream.connect();
    await h.quiet();
    const link = h.upstream.grant('a', 5, { drain: true });
    await h.quiet();
    assert.deepEqual(h.sent(), ['a/1', 'a/2']);
    assert.equal(link.drained, 1);
    assert.equal(link.credit(), 0);
    await finish(h);
  });
});

describe('forwarder: order', () => {
  test('per address: higher priority first, then arrival; addresses independent', async () => {
    const h = await harness();
    await h.append('a', 3, 2);
    await h.append('b', 2, 4);
    await h.append('a', 2, 7);
    await h.append('a', 1, 2);
    await h.append('b', 1, 9);
    h.upstream.connect();
    await h.quiet();
    h.upstream.grant('a', 10);
    h.upstream.grant('b', 10);
    await h.quiet();
    assert.deepEqual(h.sent('a'), ['a/6', 'a/7', 'a/1', 'a/2', 'a/3', 'a/8']);
    assert.deepEqual(h.sent('b'), ['b/9', 'b/4', 'b/5']);
    await finish(h);
  });

  test('a released reading is sent again before the readings behind it, with the same message id', async () => {
    const h = await harness();
    await h.append('a', 4);
    h.upstream.connect();
    await h.quiet();
    h.upstream.grant('a', 2);
    await h.quiet();
    const [first, second] = h.upstream.open('a');
    h.upstream.deliver(second!, { kind: 'accepted' });
    h.upstream.deliver(first!, { kind: 'released' });
    await h.quiet();
    h.upstream.grant('a', 3);
    await h.quiet();
    assert.deepEqual(h.sent(), ['a/1', 'a/2', 'a/1', 'a/3', 'a/4']);
    const ids = h.upstream.transfers.filter((t) => t.message.payload.toString() === 'a/1').map((t) => t.message.id);
    assert.equal(new Set(ids).size, 1);
    await finish(h);
  });
});

describe('forwarder: each outcome maps onto the spool as DESIGN.md says', () => {
  async function one(outcome: Outcome, options: Parameters<typeof Harness.start>[0] = {}): Promise<Harness> {
    const h = await harness(options);
    await h.append('a', 2);
    h.upstream.connect();
    await h.quiet();
    h.upstream.grant('a', 1);
    await h.quiet();
    h.upstream.deliver(h.upstream.open('a')[0]!, outcome);
    await h.quiet();
    h.upstream.grant('a', 1);
    await h.quiet();
    return h;
  }

  test('accepted → ack: deleted from the spool and counted as forwarded', async () => {
    const h = await one({ kind: 'accepted' });
    assert.deepEqual(h.sent(), ['a/1', 'a/2']);
    assert.equal(h.raw.stats().depth, 1);
    assert.deepEqual(h.forwarder.stats().forwarded, { a: 1 });
    assert.equal(h.forwarder.stats().outcomes.accepted, 1);
    await finish(h);
  });

  test('released → release: sent again first, no attempt counted', async () => {
    const h = await one({ kind: 'released' });
    assert.deepEqual(h.sent(), ['a/1', 'a/1']);
    assert.equal(h.upstream.transfers[1]!.message.id, h.upstream.transfers[0]!.message.id);
    assert.equal(h.model.byPayload('a/1')!.attempts, 0);
    await finish(h);
  });

  test('lost → release: sent again first, no attempt counted', async () => {
    const h = await one({ kind: 'lost' });
    assert.deepEqual(h.sent(), ['a/1', 'a/1']);
    assert.equal(h.model.byPayload('a/1')!.attempts, 0);
    await finish(h);
  });

  test('modified without delivery-failed → release: no attempt counted', async () => {
    const h = await one({ kind: 'modified', deliveryFailed: false });
    assert.deepEqual(h.sent(), ['a/1', 'a/1']);
    assert.equal(h.model.byPayload('a/1')!.attempts, 0);
    await finish(h);
  });

  test('modified with delivery-failed → an attempt counted (the model checks the leased count), dead-lettered at the cap', async () => {
    const h = await one({ kind: 'modified', deliveryFailed: true }, { maxAttempts: 2 });
    assert.deepEqual(h.sent(), ['a/1', 'a/1']);
    assert.equal(h.model.byPayload('a/1')!.attempts, 1);
    h.upstream.deliver(h.upstream.open('a')[0]!, { kind: 'modified', deliveryFailed: true });
    await h.quiet();
    const [dead] = h.raw.deadLetters.list();
    assert.equal(dead!.id, h.model.byPayload('a/1')!.id);
    assert.equal(dead!.reason.condition, 'uplink:max-attempts');
    await finish(h);
  });

  test('rejected → dead-lettered with the condition and description, and logged', async () => {
    const h = await one({ kind: 'rejected', condition: 'amqp:precondition-failed', description: 'too big' });
    assert.deepEqual(h.sent(), ['a/1', 'a/2']);
    const [dead] = h.raw.deadLetters.list();
    assert.equal(dead!.id, h.model.byPayload('a/1')!.id);
    assert.deepEqual(dead!.reason, { condition: 'amqp:precondition-failed', description: 'too big' });
    assert.ok(h.lines.some((l) => l.msg === 'upstream rejected a reading: moved to the dead-letter store' && l.condition === 'amqp:precondition-failed'
      && l.id === dead!.id && l.address === 'a'));
    await finish(h);
  });

  test('at-most-once: presettled readings are acked at once', async () => {
    const h = await harness({ atMostOnce: () => true });
    await h.append('m', 3);
    h.upstream.connect();
    await h.quiet();
    h.upstream.grant('m', 3);
    await h.quiet();
    assert.deepEqual(h.sent(), ['m/1', 'm/2', 'm/3']);
    assert.equal(h.raw.stats().depth, 0);
    await finish(h);
  });
});

describe('forwarder: interleavings with disconnects', () => {
  const late: Outcome[] = [
    { kind: 'released' }, { kind: 'lost' }, { kind: 'accepted' }, { kind: 'rejected', condition: 'amqp:internal-error' },
    { kind: 'modified', deliveryFailed: true },
  ];
  for (const outcome of late) {
    test(`a late ${outcome.kind} from the old connection does not settle the reading leased again on the new one`, async () => {
      const h = await harness();
      await h.append('a', 3);
      h.upstream.connect();
      await h.quiet();
      h.upstream.grant('a', 3);
      await h.quiet();
      const old = h.upstream.open('a');
      h.upstream.disconnect('withhold');
      h.upstream.connect();
      h.upstream.grant('a', 3);
      await h.quiet();
      assert.deepEqual(h.open('a'), ['a/1', 'a/2', 'a/3'], 'everything is sent again on the new connection');
      h.upstream.deliver(old[0]!, outcome);
      await h.quiet();
      assert.deepEqual(h.violations(), []);
      h.upstream.grant('a', 3);
      await h.quiet();
      assert.deepEqual(h.sent(), ['a/1', 'a/2', 'a/3', 'a/1', 'a/2', 'a/3'], 'a/1 is not leased a third time while its transfer is open');
      assert.equal(h.raw.deadLetters.count(), 0);
      assert.equal(h.raw.stats().inFlight, 3);
      await finish(h);
    });
  }

  test('lost reported after the state event: the readings are sent again once, in order', async () => {
    const h = await harness();
    await h.append('a', 3);
    h.upstream.connect();
    await h.quiet();
    h.upstream.grant('a', 3);
    await h.quiet();
    h.upstream.disconnect('lost-after-state');
    await h.quiet();
    h.upstream.connect();
    h.upstream.grant('a', 10);
    await h.quiet();
    assert.deepEqual(h.sent(), ['a/1', 'a/2', 'a/3', 'a/1', 'a/2', 'a/3']);
    await finish(h);
  });

  test('acks still batched when the disconnect comes reach the spool before its releaseAll: nothing accepted is sent again', async () => {
    const h = await harness();
    await h.append('a', 4);
    h.upstream.connect();
    await h.quiet();
    h.upstream.grant('a', 4);
    await h.quiet();
    // One disposition frame accepts three, and the socket closes before the next turn.
    const open = h.upstream.open('a');
    for (const t of open.slice(0, 3)) h.upstream.deliver(t, { kind: 'accepted' });
    h.upstream.disconnect('lost');
    h.upstream.connect();
    h.upstream.grant('a', 10);
    await h.quiet();
    assert.deepEqual(h.sent(), ['a/1', 'a/2', 'a/3', 'a/4', 'a/4']);
    await finish(h);
  });

  test('a modify racing a disconnect: the reading comes back at its place once its commit lands, nothing skipped', async () => {
    const h = await harness();
    await h.append('a', 5);
    h.upstream.connect();
    await h.quiet();
    h.upstream.grant('a', 5);
    await h.quiet();
    const open = h.upstream.open('a');
    h.upstream.deliver(open[2]!, { kind: 'modified', deliveryFailed: true });
    h.upstream.disconnect('lost');
    h.upstream.connect();
    h.upstream.grant('a', 10);
    await h.quiet();
    h.settleAll({ kind: 'accepted' });
    await h.quiet();
    h.upstream.grant('a', 10);
    await h.quiet();
    const resent = h.sent().slice(5);
    assert.deepEqual([...resent].sort(), ['a/1', 'a/2', 'a/3', 'a/4', 'a/5']);
    assert.equal(h.model.byPayload('a/3')!.attempts, 1);
    assert.equal(h.raw.stats().depth, 0);
    await finish(h);
  });
});

describe('forwarder: links the upstream closes', () => {
  test('a link closed with readings in flight: they are lost, sent again in order on the new link, the subscription moves', async () => {
    const h = await harness();
    await h.append('a', 4);
    h.upstream.connect();
    await h.quiet();
    h.upstream.grant('a', 4);
    await h.quiet();
    const old = h.upstream.closeLink('a', 'lost');
    await h.quiet();
    const fresh = h.upstream.current('a');
    assert.ok(fresh !== undefined && fresh !== old, 'the forwarder asked for a new link');
    assert.equal(old.listeners.size, 0, 'the closed link holds no subscription');
    assert.equal(fresh.listeners.size, 1, 'one subscription, on the new link');
    h.upstream.grant('a', 4);
    await h.quiet();
    assert.deepEqual(h.sent(), ['a/1', 'a/2', 'a/3', 'a/4', 'a/1', 'a/2', 'a/3', 'a/4']);
    assert.ok(h.upstream.transfers.slice(4).every((t) => t.link === fresh));
    await finish(h);
  });

  test('a link closed with its outcomes held back: they arrive later and the readings go again', async () => {
    const h = await harness();
    await h.append('a', 2);
    h.upstream.connect();
    await h.quiet();
    h.upstream.grant('a', 2);
    await h.quiet();
    h.upstream.closeLink('a', 'withhold');
    await h.quiet();
    for (const t of h.upstream.orphans()) h.upstream.deliver(t, { kind: 'lost' });
    await h.quiet();
    h.upstream.grant('a', 2);
    await h.quiet();
    assert.deepEqual(h.sent(), ['a/1', 'a/2', 'a/1', 'a/2']);
    await finish(h);
  });

  test('a link that waits for a place under the cap gets its readings once attached', async () => {
    const h = await harness();
    h.upstream.connect();
    await h.append('a', 2);
    await h.quiet();
    const link = h.upstream.current('a')!;
    assert.equal(link.attached, false);
    assert.equal(h.sent().length, 0);
    h.upstream.grant('a', 5);
    await h.quiet();
    assert.deepEqual(h.sent(), ['a/1', 'a/2']);
    await finish(h);
  });

  test('a link closed while its readings wait for credit: the forwarder asks for a new link by itself', async () => {
    const h = await harness();
    await h.append('a', 3);
    h.upstream.connect();
    await h.quiet();
    h.upstream.grant('a', 1);
    await h.quiet();
    h.settleAll({ kind: 'accepted' });
    await h.quiet();
    // Idle by the upstream's measure (nothing sent, nothing unsettled), though readings wait.
    const old = h.upstream.closeLink('a');
    await until(() => h.upstream.current('a') !== undefined, 'the forwarder to ask for a new link to a');
    assert.notEqual(h.upstream.current('a'), old);
    h.upstream.grant('a', 5);
    await h.quiet();
    assert.deepEqual(h.sent(), ['a/1', 'a/2', 'a/3']);
    await finish(h);
  });

  test('one device per address through a cap of links: the bookkeeping stays bounded', async () => {
    const h = await harness();
    h.upstream.connect();
    const devices = 600;
    for (let i = 0; i < devices; i++) {
      const address = `dev/${i}`;
      await h.append(address, 1);
      h.upstream.grant(address, 1);
      await h.quiet();
      h.settleAll({ kind: 'accepted' }, address);
      await h.quiet();
      h.upstream.closeLink(address);
    }
    assert.equal(h.raw.stats().depth, 0);
    const held = h.upstream.subscriptions();
    assert.ok(held.onClosed <= 128, `subscriptions held on closed links: ${held.onClosed} (of ${devices} links closed)`);
    const forwarded = h.forwarder.stats().forwarded;
    assert.ok(Object.keys(forwarded).length <= 101, `forwarded stats keys: ${Object.keys(forwarded).length}`);
    assert.equal(Object.values(forwarded).reduce((a, b) => a + b, 0), devices, 'every reading is counted, the rest under _other');
    assert.equal(forwarded._other, devices - 100);
    await finish(h);
  });
});

describe('forwarder: stop', () => {
  test('stop() while a pump waits for its lease: nothing is sent after stop, the lease goes back', async () => {
    const h = await harness();
    await h.append('a', 5);
    h.upstream.connect();
    await h.quiet();
    h.upstream.grant('a', 5);
    // The pump leased and waits for the lease to resolve; stop comes first.
    const stopped = h.forwarder.stop();
    await stopped;
    await h.quiet();
    assert.deepEqual(h.sent(), []);
    assert.equal(h.raw.stats().inFlight, 0, 'the leased readings are back in the queue');
    assert.equal(h.upstream.subscriptions().all, 0, 'the pump that ended after stop subscribed to nothing');
    assert.deepEqual(h.violations(), []);
  });

  test('stop() removes every subscription it made (credit and state)', async () => {
    const h = await harness();
    await h.append('a', 2);
    await h.append('b', 2);
    h.upstream.connect();
    h.upstream.grant('a', 1);
    h.upstream.grant('b', 1);
    await h.quiet();
    assert.equal(h.upstream.subscriptions().all, 2);
    await h.forwarder.stop();
    assert.equal(h.upstream.subscriptions().all, 0);
    h.upstream.grant('a', 5);
    h.upstream.disconnect('lost');
    await h.quiet();
    assert.deepEqual(h.sent(), ['a/1', 'b/3']);
    assert.deepEqual(h.violations(), []);
  });
});

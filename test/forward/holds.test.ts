/**
 * The wait of an address after a release (src/forward/holds.ts), with the scripted upstream and the
 * waits ended by hand: a reading the broker does not take (RabbitMQ 4 releases what nothing routes)
 * must not go round in a loop, and must not hold the other addresses back.
 */
import assert from 'node:assert/strict';
import { afterEach, describe, test } from 'node:test';
import { Harness } from './harness.js';

const running: Harness[] = [];

afterEach(async () => {
  for (const h of running.splice(0)) await h.stop();
});

describe('forwarder: an address waits after a release', () => {
  test('nothing is sent to it until the wait ends, other addresses flow; the waits grow while the reading stays untaken, and start over once it is taken', async () => {
    // random 1: each wait is the ceiling, base * 2^n up to the cap (100 ms, 400 ms).
    const h = await Harness.start({ holds: { random: () => 1 } });
    running.push(h);
    const waits = h.waits;
    await h.append('a', 2);
    await h.append('b', 2);
    h.upstream.connect();
    await h.quiet();
    h.upstream.grant('a', 1);
    await h.quiet();
    h.upstream.deliver(h.upstream.open('a')[0]!, { kind: 'released' });
    await h.quiet();
    assert.deepEqual(waits.asked, [100]);
    assert.equal(h.forwarder.stats().held, 1);

    h.upstream.grant('a', 5);
    h.upstream.grant('b', 5);
    await h.append('a', 1);
    await h.quiet();
    assert.deepEqual(h.sent('a'), ['a/1'], 'sent to a waiting address');
    assert.deepEqual(h.sent('b'), ['b/3', 'b/4'], 'the other address held back');

    // Untaken again and again: 100, 200, 400, 400 (the cap).
    for (let round = 2; round <= 4; round++) {
      assert.ok(waits.end(), 'a wait to end');
      await h.quiet();
      assert.deepEqual(h.open('a'), ['a/1', 'a/2', 'a/5'], `round ${round}: the released reading first, then the rest, in order`);
      const [first, ...rest] = h.upstream.open('a');
      h.upstream.deliver(first!, { kind: 'released' });
      for (const t of rest) h.upstream.deliver(t, { kind: 'released' });
      await h.quiet();
      h.upstream.grant('a', 3);
      await h.quiet();
    }
    assert.deepEqual(waits.asked, [100, 200, 400, 400], 'one wait per round, growing to the cap');
    assert.equal(h.sent('a').length, 1 + 3 * 3, 'sent once per wait, never in a loop');

    // Taken: the waits start over.
    assert.ok(waits.end(), 'a wait to end');
    await h.quiet();
    h.settleAll({ kind: 'accepted' }, 'a');
    await h.quiet();
    assert.equal(h.forwarder.stats().held, 0);
    await h.append('a', 1);
    await h.quiet();
    h.upstream.deliver(h.upstream.open('a')[0]!, { kind: 'released' });
    await h.quiet();
    assert.deepEqual(waits.asked.slice(4), [100], 'the waits started over');

    const stats = h.forwarder.stats();
    assert.equal(stats.outcomes.released, 1 + 3 * 3 + 1);
    assert.deepEqual(stats.released, { a: 11 });
    const warned = h.lines.filter((l) => l.level === 'warn' && l.address === 'a' && /did not take a reading/.test(String(l.msg)));
    assert.equal(warned.length, 2, 'said once per run of waits');
    await h.drainAll();
    assert.deepEqual(h.violations(), []);
  });

  test('modified (not delivery-failed) holds the address as released does; lost does not', async () => {
    const h = await Harness.start({ holds: { random: () => 1 } });
    running.push(h);
    const waits = h.waits;
    await h.append('a', 1);
    h.upstream.connect();
    await h.quiet();
    h.upstream.grant('a', 1);
    await h.quiet();
    h.upstream.deliver(h.upstream.open('a')[0]!, { kind: 'lost' });
    await h.quiet();
    h.upstream.grant('a', 1);
    await h.quiet();
    assert.deepEqual(h.sent('a'), ['a/1', 'a/1'], 'lost: sent again at once');
    assert.equal(waits.pending(), 0);
    h.upstream.deliver(h.upstream.open('a')[0]!, { kind: 'modified', deliveryFailed: false });
    await h.quiet();
    h.upstream.grant('a', 1);
    await h.quiet();
    assert.deepEqual(h.sent('a'), ['a/1', 'a/1'], 'modified: held');
    assert.equal(waits.pending(), 1);
    assert.ok(waits.end(), 'a wait to end');
    await h.quiet();
    assert.deepEqual(h.sent('a'), ['a/1', 'a/1', 'a/1']);
    await h.drainAll();
    assert.deepEqual(h.violations(), []);
  });

  test('stop() ends the waits', async () => {
    const h = await Harness.start({ holds: {} });
    running.push(h);
    const waits = h.waits;
    await h.append('a', 1);
    h.upstream.connect();
    await h.quiet();
    h.upstream.grant('a', 1);
    await h.quiet();
    h.upstream.deliver(h.upstream.open('a')[0]!, { kind: 'released' });
    await h.quiet();
    assert.equal(waits.pending(), 1);
    await h.forwarder.stop();
    assert.equal(waits.pending(), 0);
  });
});

/**
 * The contract of the Spool interface (src/spool/interface.ts) as one suite that any
 * implementation runs: `spoolContract('sqlite', factory)`.
 */
import assert from 'node:assert/strict';
import { afterEach, describe, test } from 'node:test';
import type { RoutedReading } from '../../src/core/envelope.js';
import type { DeadLetterStore, Spool, SpooledReading } from '../../src/spool/interface.js';

export interface SpoolUnderTest {
  spool: Spool;
  deadLetters: () => DeadLetterStore;
  /** Stops and opens the same spool again, as a process restart would. */
  restart(): Promise<SpoolUnderTest>;
  now: { value: number };
}

export interface SpoolFactoryOptions {
  maxReadings?: number;
  maxBytes?: number;
  policy?: 'block' | 'drop-oldest';
  expired?: 'drop' | 'dead-letter';
  maxAttempts?: number;
}

export type SpoolFactory = (options?: SpoolFactoryOptions) => Promise<SpoolUnderTest>;

let counter = 0;
export function reading(address: string, text: string, extra: Partial<RoutedReading> = {}): RoutedReading {
  counter += 1;
  return {
    id: `id-${counter}-${text}`, topic: `t/${address}`, payload: Buffer.from(text), receivedAt: 1_000 + counter,
    address, priority: 4, ...extra,
  };
}

const texts = (readings: SpooledReading[]): string[] => readings.map((r) => r.payload.toString());

export function spoolContract(name: string, factory: SpoolFactory): void {
  describe(`Spool contract: ${name}`, () => {
    const open: SpoolUnderTest[] = [];
    const make = async (options?: SpoolFactoryOptions): Promise<SpoolUnderTest> => {
      const s = await factory(options);
      open.push(s);
      return s;
    };
    const restart = async (s: SpoolUnderTest): Promise<SpoolUnderTest> => {
      const next = await s.restart();
      open.push(next);
      return next;
    };
    afterEach(async () => {
      for (const s of open.splice(0)) await s.spool.stop();
    });

    test('leases what was appended, in order, with ids, topics, payloads and times intact', async () => {
      const { spool } = await make();
      const input = ['a', 'b', 'c'].map((t) => reading('q1', t));
      await spool.append(input);
      const leased = await spool.lease('q1', 10);
      assert.deepEqual(leased.map(({ id, topic, payload, receivedAt, address, priority }) => ({ id, topic, payload, receivedAt, address, priority })),
        input.map(({ id, topic, payload, receivedAt, address, priority }) => ({ id, topic, payload, receivedAt, address, priority })));
      assert.ok(leased.every((r) => r.attempts === 0));
      assert.equal(spool.stats().depth, 3);
      assert.equal(spool.stats().inFlight, 3);
    });

    test('a leased reading is not leased again until released, and comes back at its place', async () => {
      const { spool } = await make();
      await spool.append(['a', 'b', 'c', 'd'].map((t) => reading('q', t)));
      const first = await spool.lease('q', 2);
      assert.deepEqual(texts(first), ['a', 'b']);
      assert.deepEqual(texts(await spool.lease('q', 1)), ['c']);
      await spool.release([first[1]!.seq]);
      assert.deepEqual(texts(await spool.lease('q', 10)), ['b', 'd']);
      assert.deepEqual(await spool.lease('q', 10), []);
    });

    test('higher priority first, arrival order within a priority', async () => {
      const { spool } = await make();
      await spool.append([reading('q', 'low1', { priority: 1 }), reading('q', 'hi1', { priority: 9 }),
        reading('q', 'mid', { priority: 4 }), reading('q', 'hi2', { priority: 9 }), reading('q', 'low2', { priority: 1 })]);
      assert.deepEqual(texts(await spool.lease('q', 10)), ['hi1', 'hi2', 'mid', 'low1', 'low2']);
    });

    test('addresses are independent queues, each in order', async () => {
      const { spool } = await make();
      await spool.append([reading('x', 'x1'), reading('y', 'y1'), reading('x', 'x2'), reading('y', 'y2')]);
      assert.deepEqual(new Set(spool.addresses()), new Set(['x', 'y']));
      assert.deepEqual(texts(await spool.lease('y', 10)), ['y1', 'y2']);
      assert.deepEqual(texts(await spool.lease('x', 1)), ['x1']);
      assert.deepEqual(spool.addresses(), ['x']);
      assert.deepEqual(await spool.lease('nowhere', 10), []);
    });

    test('ack deletes; everything else survives a restart, in-flight readings back in their original order', async () => {
      const s = await make();
      await s.spool.append(['a', 'b', 'c', 'd', 'e'].map((t) => reading('q', t)));
      const leased = await s.spool.lease('q', 4);
      await s.spool.ack([leased[1]!.seq]);
      await s.spool.release([leased[3]!.seq]);
      const after = await restart(s);
      assert.equal(after.spool.stats().depth, 4);
      assert.equal(after.spool.stats().inFlight, 0);
      const again = await after.spool.lease('q', 10);
      assert.deepEqual(texts(again), ['a', 'c', 'd', 'e']);
      assert.deepEqual(again.map((r) => r.id), [leased[0]!.id, leased[2]!.id, leased[3]!.id, again[3]!.id]);
    });

    test('releaseAll (a reconnect) returns every in-flight reading in order; pending acks are not resent', async () => {
      const { spool } = await make();
      await spool.append(['a', 'b', 'c', 'd'].map((t) => reading('q', t)));
      const leased = await spool.lease('q', 3);
      const acked = spool.ack([leased[0]!.seq]);
      spool.releaseAll();
      assert.deepEqual(texts(await spool.lease('q', 10)), ['b', 'c', 'd']);
      await acked;
      assert.equal(spool.stats().depth, 3);
    });

    test('settlement is idempotent: settling what is not in flight changes nothing', async () => {
      const { spool } = await make();
      await spool.append([reading('q', 'a')]);
      const [a] = await spool.lease('q', 1);
      await spool.ack([a!.seq]);
      await spool.ack([a!.seq]);
      await spool.reject([a!.seq], { condition: 'amqp:x' });
      await spool.release([a!.seq, 12345]);
      assert.equal(spool.stats().depth, 0);
      assert.equal(spool.stats().deadLettered, 0);
    });

    test('modify counts an attempt and returns the reading; past the cap it is dead-lettered', async () => {
      const s = await make({ maxAttempts: 3 });
      await s.spool.append([reading('q', 'm'), reading('q', 'n')]);
      for (let attempt = 1; attempt <= 2; attempt++) {
        const [m] = await s.spool.lease('q', 1);
        assert.equal(m!.payload.toString(), 'm');
        assert.equal(m!.attempts, attempt - 1);
        await s.spool.modify([m!.seq]);
        s.spool.releaseAll();
      }
      const [m] = await s.spool.lease('q', 1);
      assert.equal(m!.attempts, 2);
      await s.spool.modify([m!.seq]);
      assert.deepEqual(texts(await s.spool.lease('q', 10)), ['n']);
      const [dead] = s.deadLetters().list();
      assert.equal(dead?.id, m!.id);
      assert.equal(dead?.attempts, 3);
      assert.equal(dead?.reason.condition, 'uplink:max-attempts');
      assert.equal(s.spool.stats().deadLettered, 1);
    });

    test('reject moves the reading to the dead-letter store with the reason; replay and purge', async () => {
      const s = await make();
      await s.spool.append([reading('q', 'bad'), reading('q', 'worse'), reading('q', 'good')]);
      const [bad, worse] = await s.spool.lease('q', 2);
      await s.spool.reject([bad!.seq], { condition: 'amqp:precondition-failed', description: 'schema mismatch' });
      await s.spool.reject([worse!.seq], { condition: 'amqp:not-allowed' });
      assert.equal(s.spool.stats().depth, 1);
      assert.equal(s.spool.stats().deadLetters, 2);
      const dlq = s.deadLetters();
      const listed = dlq.list();
      assert.deepEqual(listed.map((d) => [d.id, d.reason.condition, d.reason.description]),
        [[bad!.id, 'amqp:precondition-failed', 'schema mismatch'], [worse!.id, 'amqp:not-allowed', undefined]]);
      assert.deepEqual(dlq.get(listed[0]!.seq)?.payload, Buffer.from('bad'));
      assert.equal(dlq.purge([listed[1]!.seq]), 1);
      assert.equal(dlq.replay(), 1);
      assert.equal(dlq.count(), 0);
      // The replayed reading keeps its id and goes to the back of its queue.
      const after = await restart(s);
      const again = await after.spool.lease('q', 10);
      assert.deepEqual(again.map((r) => r.id), [again[0]!.id, bad!.id]);
      assert.deepEqual(texts(again), ['good', 'bad']);
    });

    test('expired readings are never leased; they are dropped and counted', async () => {
      const s = await make();
      s.now.value = 10_000;
      await s.spool.append([reading('q', 'old', { expiresAt: 10_500 }), reading('q', 'fresh', { expiresAt: 20_000 }), reading('q', 'forever')]);
      s.now.value = 11_000;
      assert.deepEqual(texts(await s.spool.lease('q', 10)), ['fresh', 'forever']);
      assert.equal(s.spool.stats().dropped.expired, 1);
      assert.equal(s.spool.stats().depth, 2);
    });

    test('expired readings can go to the dead-letter store instead', async () => {
      const s = await make({ expired: 'dead-letter' });
      s.now.value = 10_000;
      await s.spool.append([reading('q', 'old', { expiresAt: 10_500 })]);
      s.now.value = 11_000;
      assert.deepEqual(await s.spool.lease('q', 10), []);
      assert.equal(s.deadLetters().list()[0]?.reason.condition, 'uplink:expired');
      assert.equal(s.spool.stats().deadLettered, 1);
    });

    test('block: an append that does not fit waits until an ack makes room, and is then stored', async () => {
      const { spool } = await make({ maxReadings: 2, policy: 'block' });
      await spool.append([reading('q', 'a'), reading('q', 'b')]);
      let stored = false;
      const waiting = spool.append([reading('q', 'c')]).then(() => { stored = true; });
      await new Promise((r) => setTimeout(r, 50));
      assert.equal(stored, false);
      assert.equal(spool.stats().blocked, true);
      assert.equal(spool.stats().depth, 2);
      const [a] = await spool.lease('q', 1);
      await spool.ack([a!.seq]);
      await waiting;
      assert.equal(stored, true);
      assert.equal(spool.stats().blocked, false);
      assert.deepEqual(texts(await spool.lease('q', 10)), ['b', 'c']);
    });

    test('block: a waiting append can be abandoned with an AbortSignal (retryable), and is not stored', async () => {
      const { spool } = await make({ maxReadings: 1, policy: 'block' });
      await spool.append([reading('q', 'a')]);
      const controller = new AbortController();
      const waiting = spool.append([reading('q', 'b')], { signal: controller.signal });
      controller.abort();
      await assert.rejects(waiting, (err: { code: string; retryable: boolean }) => err.code === 'SPOOL_FULL' && err.retryable);
      assert.equal(spool.stats().depth, 1);
    });

    test('drop-oldest: the oldest lowest-priority readings go, counted; in-flight ones stay', async () => {
      const { spool } = await make({ maxReadings: 3, policy: 'drop-oldest' });
      await spool.append([reading('q', 'p9', { priority: 9 }), reading('q', 'a', { priority: 1 }), reading('q', 'b', { priority: 1 })]);
      const [p9] = await spool.lease('q', 1);
      assert.equal(p9!.payload.toString(), 'p9');
      await spool.append([reading('q', 'c', { priority: 1 }), reading('q', 'd', { priority: 5 })]);
      assert.equal(spool.stats().dropped.evicted, 2);
      assert.equal(spool.stats().depth, 3);
      spool.releaseAll();
      assert.deepEqual(texts(await spool.lease('q', 10)), ['p9', 'd', 'c']);
    });

    test('byte quota applies like the count quota', async () => {
      const { spool } = await make({ maxBytes: 10, policy: 'drop-oldest' });
      await spool.append([reading('q', '12345'), reading('q', '67890')]);
      await spool.append([reading('q', 'abc')]);
      assert.equal(spool.stats().bytes, 8);
      assert.equal(spool.stats().dropped.evicted, 1);
      await assert.rejects(spool.append([reading('q', 'x'.repeat(11))]), (err: { code: string }) => err.code === 'PAYLOAD_TOO_LARGE');
    });

    test('concurrent appends share commits (group commit), and each resolves only once committed', async () => {
      const { spool } = await make();
      const before = spool.stats().commits;
      await Promise.all(Array.from({ length: 200 }, (_, i) => spool.append([reading('q', `r${i}`)])));
      const commits = spool.stats().commits - before;
      assert.ok(commits < 20, `200 concurrent appends took ${commits} commits`);
      assert.equal(spool.stats().depth, 200);
    });

    test('onAvailable fires for the address when readings arrive or come back', async () => {
      const { spool } = await make();
      const seen: string[] = [];
      spool.onAvailable((address) => seen.push(address));
      await spool.append([reading('q', 'a')]);
      assert.deepEqual(seen, ['q']);
      const [a] = await spool.lease('q', 1);
      await spool.release([a!.seq]);
      assert.deepEqual(seen, ['q', 'q']);
    });

    test('stats: depth, bytes, oldest age, in flight, per address', async () => {
      const s = await make();
      s.now.value = 50_000;
      await s.spool.append([reading('a', 'xx', { receivedAt: 40_000 }), reading('b', 'yyy', { receivedAt: 45_000 })]);
      await s.spool.lease('a', 1);
      const stats = s.spool.stats();
      assert.equal(stats.depth, 2);
      assert.equal(stats.bytes, 5);
      assert.equal(stats.oldestAgeMs, 10_000);
      assert.equal(stats.inFlight, 1);
      assert.deepEqual(stats.byAddress, { a: 1, b: 1 });
      const after = await restart(s);
      assert.equal(after.spool.stats().bytes, 5);
      assert.deepEqual(after.spool.stats().byAddress, { a: 1, b: 1 });
    });
  });
}

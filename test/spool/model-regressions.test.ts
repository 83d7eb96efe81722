/**
 * What the model-based test (model.test.ts) found, each as the minimal sequence it shrank to, with
 * the seed that found it, replayed as a plain test that fails without its fix.
 */
import assert from 'node:assert/strict';
import { afterEach, describe, test } from 'node:test';
import type { RoutedReading } from '../../src/core/envelope.js';
import { World, type WorldConfig } from './model-world.js';

const worlds: World[] = [];
const BASE = { maxAttempts: 3, maxReadings: 1_000_000, expired: 'drop', jitter: 0 } satisfies WorldConfig;

async function world(config: Partial<WorldConfig> = {}): Promise<World> {
  const w = new World({ ...BASE, ...config }, process.env.UPLINK_SPOOL_DIR ?? '/dev/shm');
  worlds.push(w);
  await w.start();
  return w;
}

let n = 0;
function reading(w: World, extra: Partial<RoutedReading> = {}): RoutedReading {
  n += 1;
  return { id: `reg-${n}`, topic: 't/q', payload: Buffer.from(`p${n}`), receivedAt: w.now, address: 'q', priority: 4, ...extra };
}

/** Appends and lets the commit and its fsync complete. */
async function stored(w: World, readings: RoutedReading[]): Promise<void> {
  const appended = w.spool.append(readings);
  while (w.held.length === 0) await w.tick();
  w.completeSync(0, true);
  await appended;
}

describe('spool: found by the model-based test', () => {
  afterEach(async () => {
    for (const w of worlds.splice(0)) await w.close();
  });

  // Seed 1299632843: append(a/p4), release, then the final lease. Date.now() truncates and the
  // step-free clock rounds, so wall minus step-free time is -1, 0 or 1 ms (or a fraction) without
  // any step; that was stored as an offset and added to every reading.
  for (const jitter of [-0.4, 0.5, 1, -1]) {
    test(`receivedAt (the AMQP creation_time) is what arrived, also when the wall clock is ${jitter} ms off the step-free clock`, async () => {
      const w = await world({ jitter });
      const input = reading(w, { expiresAt: w.now + 5000 });
      await stored(w, [input]);
      const [leased] = await w.spool.lease('q', 1);
      assert.equal(leased?.receivedAt, input.receivedAt);
      assert.equal(leased?.expiresAt, input.expiresAt);
      await w.restart(true);
      const [again] = await w.spool.lease('q', 1);
      assert.equal(again?.receivedAt, input.receivedAt, 'and after a restart');
    });
  }

  test('a stamp with a fraction of a millisecond is stored rounded, once: what is leased is a whole millisecond', async () => {
    const w = await world({ jitter: 0.5 });
    const input = reading(w, { receivedAt: w.now + 0.6, expiresAt: w.now + 5000.6 });
    await stored(w, [input]);
    const [leased] = await w.spool.lease('q', 1);
    assert.equal(leased?.receivedAt, w.now + 1);
    assert.equal(leased?.expiresAt, w.now + 5001);
  });

  // Seed 1299690931: failCommits(SQLITE_IOERR_WRITE), append, restart. stop() commits what waits;
  // that commit failed with an I/O error, and the append was then refused as "spool stopped before
  // there was room" (SPOOL_FULL, retryable: not stored, send it again) instead of STORAGE_FAILED.
  test('an I/O error in the commit that stop() makes refuses what waited with STORAGE_FAILED, not as retryable', async () => {
    const w = await world();
    w.plan.push('SQLITE_IOERR_WRITE');
    const appended = w.spool.append([reading(w)]);
    const settled = appended.then(() => undefined, (err: unknown) => err);
    await w.stop(true);
    const err = await settled as { code?: string; retryable?: boolean } | undefined;
    assert.equal(w.failed, true);
    assert.equal(err?.code, 'STORAGE_FAILED');
    assert.equal(err?.retryable, false);
  });

  // Seed 1299728756: append, tick, lease, fsync#0 EIO, ack. After the storage failed, settlements
  // were ignored and reported done: the forwarder took the ack for committed. (Since then a reading
  // is leased only once its fsync came back: the leased one is an earlier append's.)
  for (const kind of ['ack', 'modify', 'reject'] as const) {
    test(`after a failed fsync, ${kind} of a leased reading is refused with STORAGE_FAILED, not reported done`, async () => {
      const w = await world();
      const durable = w.spool.append([reading(w)]);
      while (w.held.length === 0) await w.tick();
      w.completeSync(0, true);
      await durable;
      const appended = w.spool.append([reading(w)]);
      appended.catch(() => undefined);
      while (w.held.length === 0) await w.tick();
      const [leased] = await w.spool.lease('q', 1);
      assert.ok(leased !== undefined);
      w.completeSync(0, false);
      await assert.rejects(appended, { code: 'STORAGE_FAILED' });
      assert.equal(w.failed, true);
      const settled = kind === 'reject' ? w.spool.reject([leased!.seq], { condition: 'amqp:not-allowed' }) : w.spool[kind]([leased!.seq]);
      await assert.rejects(settled, { code: 'STORAGE_FAILED' });
    });
  }

  // Seed 1299750013: append, tick (its fsync held), failCommits(SQLITE_IOERR_WRITE), append, tick,
  // then the first fsync completes. The spool had stopped on the I/O error, yet the first append
  // was acknowledged when its fsync came back.
  test('an append whose fsync completes after an I/O error stopped the spool is not acknowledged', async () => {
    const w = await world();
    const first = w.spool.append([reading(w)]);
    const outcome = first.then(() => 'acknowledged', (err: { code?: string }) => err.code);
    while (w.held.length === 0) await w.tick();
    w.plan.push('SQLITE_IOERR_WRITE');
    await assert.rejects(w.spool.append([reading(w)]), { code: 'STORAGE_FAILED' });
    assert.equal(w.failed, true);
    w.completeSync(0, true);
    assert.equal(await outcome, 'STORAGE_FAILED');
  });

  // Seed 1299892543: append, tick, append, tick (two fsyncs held), the second fsync fails. The spool
  // went on (leasing, committing settlements, no fatal line, no exit) until the first fsync came
  // back, which on a dying SD card may be never.
  test('an fsync that fails while an earlier one is still out stops the spool at once', async () => {
    const w = await world();
    const first = w.spool.append([reading(w)]).then(() => 'acknowledged', (err: { code?: string }) => err.code);
    while (w.held.length === 0) await w.tick();
    const second = w.spool.append([reading(w)]).then(() => 'acknowledged', (err: { code?: string }) => err.code);
    while (w.held.length === 1) await w.tick();
    w.completeSync(1, false);
    await w.tick();
    const failed = w.failed;
    const leased = await w.spool.lease('q', 10);
    w.completeSync(0, true);
    assert.equal(failed, true, 'onFatal before the earlier fsync came back');
    assert.equal(w.fatalLines, 1);
    assert.deepEqual(leased, [], 'nothing more is handed out');
    assert.equal(await second, 'STORAGE_FAILED');
    assert.equal(await first, 'STORAGE_FAILED');
  });

  // Seed 1302398116: the next fsync fails at once, append (fits), append of three (beyond
  // maxReadings 3: waits for room, with a signal), tick, abort. The fsync failed inside the commit
  // round, which stopped the spool there; the round then put the waiting append back into the
  // queue, after the failure had refused what was queued. It stayed there, neither stored nor
  // refused, and its abort then refused it as retryable SPOOL_FULL.
  test('an append waiting for room when an fsync fails at once is refused with STORAGE_FAILED, not left waiting', async () => {
    const w = await world({ maxReadings: 3 });
    w.failNextSyncAtOnce = true;
    const first = w.spool.append([reading(w)]).then(() => 'acknowledged', (err: { code?: string }) => err.code);
    const waiting = w.spool.append([reading(w), reading(w), reading(w)]).then(() => 'acknowledged', (err: { code?: string }) => err.code);
    await w.tick();
    assert.equal(w.failed, true);
    assert.equal(await first, 'STORAGE_FAILED');
    assert.equal(await Promise.race([waiting, w.tick().then(() => 'still waiting')]), 'STORAGE_FAILED');
  });
});

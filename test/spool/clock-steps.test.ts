/**
 * The spool across steps of the system clock (core/clock.ts, spool/sqlite/clock-steps.ts), with an
 * injected clock: a Raspberry Pi without an RTC boots in 1970 and NTP later steps its clock by 56
 * years, or a wrong server steps it back. Each reading must keep its real age: a backlog is neither
 * expired wholesale by a step forward nor kept for ever after a step back, across restarts too.
 */
import assert from 'node:assert/strict';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import type { Clock } from '../../src/core/clock.js';
import type { RoutedReading } from '../../src/core/envelope.js';
import { SqliteSpool } from '../../src/spool/sqlite/sqlite-spool.js';
import { memoryLogger } from '../peers/memory-log.js';
import { spoolOptions } from './options.js';

const MIN = 60_000;
const HOUR = 60 * MIN;
const YEAR = 365 * 24 * HOUR;
/** Where a Pi without an RTC (and without fake-hwclock) starts its clock. */
const BOOT = Date.UTC(1970, 0, 1, 0, 0, 30);
/** What NTP says the time is. */
const REAL = Date.UTC(2026, 5, 1, 12, 0, 0);
const STEPPED = 'the system clock was stepped: stored readings keep their age and expiry';
const EXPIRED = 'spool: readings expired before they could be forwarded';

/**
 * The two clocks of one run of the process: a monotonic one that only moves forward with
 * `advance`, and the system clock, which `setWall` steps as NTP (or a person) would. A restart is
 * a new PiClock, anchored at what the system clock says then.
 */
class PiClock implements Clock {
  readonly #anchor: number;
  #elapsed = 0;
  #shift = 0;

  constructor(wallAtStart: number) {
    this.#anchor = wallAtStart;
  }

  now(): number {
    return this.#anchor + this.#elapsed;
  }

  wall(): number {
    return this.#anchor + this.#elapsed + this.#shift;
  }

  advance(ms: number): void {
    this.#elapsed += ms;
  }

  setWall(time: number): void {
    this.#shift = time - this.#anchor - this.#elapsed;
  }
}

/** A reading as the router makes it: stamped with the step-free clock, expiring `ttlMs` later. */
function reading(clock: Clock, name: string, ttlMs?: number): RoutedReading {
  const receivedAt = clock.now();
  return {
    id: `id-${name}`, topic: 't', payload: Buffer.from(name), receivedAt, address: 'q', priority: 4,
    ...(ttlMs === undefined ? {} : { expiresAt: receivedAt + ttlMs }),
  };
}

interface Times {
  receivedAt: number;
  expiresAt: number | undefined;
}

const open: SqliteSpool[] = [];
after(async () => {
  for (const spool of open) await spool.stop();
});

async function newDir(): Promise<string> {
  return mkdtemp(join(tmpdir(), 'uplink-clock-'));
}

async function start(dir: string, clock: Clock, maintenanceMs = 60_000): Promise<{ spool: SqliteSpool; lines: Array<Record<string, unknown>> }> {
  const { log, lines } = memoryLogger();
  const spool = new SqliteSpool(spoolOptions(dir, { clock, log, maintenanceMs }));
  await spool.start();
  open.push(spool);
  return { spool, lines };
}

async function stop(spool: SqliteSpool): Promise<void> {
  await spool.stop();
  open.splice(open.indexOf(spool), 1);
}

/** What a lease hands out now (the forwarder's view), by payload; released again at once. */
async function peek(spool: SqliteSpool): Promise<Record<string, Times>> {
  const leased = await spool.lease('q', 1000);
  await spool.release(leased.map((r) => r.seq));
  return Object.fromEntries(leased.map((r) => [r.payload.toString(), { receivedAt: r.receivedAt, expiresAt: r.expiresAt }]));
}

const at = (receivedAt: number, ttlMs: number): Times => ({ receivedAt, expiresAt: receivedAt + ttlMs });

/** Resolves once `match` holds for `count` log lines; rejects after a generous timeout. */
async function logged(lines: Array<Record<string, unknown>>, msg: string, count: number): Promise<Array<Record<string, unknown>>> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const found = lines.filter((l) => l.msg === msg);
    if (found.length >= count) return found;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${count} × "${msg}"; log: ${JSON.stringify(lines)}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

describe('spool across steps of the system clock', () => {
  test('a backlog spooled in 1970 survives the NTP step forward by 56 years; each reading expires by its real age', async () => {
    const pi = new PiClock(BOOT);
    const { spool } = await start(await newDir(), pi);
    await spool.append([reading(pi, 'a', HOUR)]);
    pi.advance(20 * MIN);
    await spool.append([reading(pi, 'b', HOUR)]);
    pi.advance(20 * MIN);
    pi.setWall(REAL);
    await spool.append([reading(pi, 'c', HOUR)]);

    // creation_time is the time of arrival in the frame NTP set (README, "The spool": Times).
    assert.deepEqual(await peek(spool), { a: at(REAL - 40 * MIN, HOUR), b: at(REAL - 20 * MIN, HOUR), c: at(REAL, HOUR) });
    assert.equal(spool.stats().oldestAgeMs, 40 * MIN);
    assert.equal(spool.stats().dropped.expired, 0);

    pi.advance(25 * MIN);
    assert.deepEqual(Object.keys(await peek(spool)), ['b', 'c'], 'a is 65 minutes old: expired; b and c are not');
    assert.equal(spool.stats().dropped.expired, 1);
    assert.equal(spool.stats().oldestAgeMs, 45 * MIN);
  });

  test('a step back by a year: readings still expire by their real age, not a year late', async () => {
    const pi = new PiClock(REAL);
    const { spool } = await start(await newDir(), pi);
    await spool.append([reading(pi, 'a', HOUR)]);
    pi.advance(10 * MIN);
    pi.setWall(REAL + 10 * MIN - YEAR);
    await spool.append([reading(pi, 'b', HOUR)]);

    assert.deepEqual(await peek(spool), { a: at(REAL - YEAR, HOUR), b: at(REAL + 10 * MIN - YEAR, HOUR) });
    assert.equal(spool.stats().oldestAgeMs, 10 * MIN);

    pi.advance(55 * MIN);
    assert.deepEqual(Object.keys(await peek(spool)), ['b'], 'a is 65 minutes old: expired');
    assert.equal(spool.stats().dropped.expired, 1);
    assert.equal(spool.stats().oldestAgeMs, 55 * MIN);
  });

  test('the sweep removes exactly the readings whose real age passed their TTL, across steps forward and back', async () => {
    const pi = new PiClock(BOOT);
    const { spool, lines } = await start(await newDir(), pi, 10);
    await spool.append([reading(pi, 'a', 30 * MIN)]);
    pi.advance(10 * MIN);
    pi.setWall(REAL);
    await spool.append([reading(pi, 'b', 30 * MIN)]);
    pi.advance(10 * MIN);
    pi.setWall(pi.wall() - YEAR);
    await spool.append([reading(pi, 'c', 30 * MIN)]);
    await logged(lines, STEPPED, 2);

    // Ages now: a 20, b 10, c 0 minutes. Nothing is leased: only the sweep can remove them.
    pi.advance(15 * MIN);
    assert.deepEqual((await logged(lines, EXPIRED, 1)).map((l) => l.count), [1]);
    assert.equal(spool.stats().depth, 2);
    pi.advance(10 * MIN);
    assert.deepEqual((await logged(lines, EXPIRED, 2)).map((l) => l.count), [1, 1]);
    assert.deepEqual(Object.keys(await peek(spool)), ['c']);
    assert.equal(spool.stats().dropped.expired, 2);
  });

  test('a lease right after a step, before the spool committed anything, hands out times in the new frame', async () => {
    // The forwarder sends `expiresAt - Date.now()` as the AMQP ttl and `receivedAt` as creation_time:
    // in the old frame they would be a ttl of 1 ms (the broker drops what the spool deleted as
    // accepted) and a creation_time in 1970.
    const pi = new PiClock(BOOT);
    const { spool, lines } = await start(await newDir(), pi);
    await spool.append([reading(pi, 'a', HOUR)]);
    pi.advance(5 * MIN);
    pi.setWall(REAL);
    const leased = await spool.lease('q', 10);
    assert.deepEqual(leased.map((r) => [r.receivedAt, r.expiresAt! - pi.wall()]), [[REAL - 5 * MIN, 55 * MIN]]);
    assert.equal(spool.stats().oldestAgeMs, 5 * MIN);
    await spool.release(leased.map((r) => r.seq));

    // A lease after the step expires by the real age as well.
    pi.advance(56 * MIN);
    await spool.append([reading(pi, 'b', HOUR)]);
    assert.deepEqual(await peek(spool), { b: at(REAL + 56 * MIN, HOUR) });
    assert.equal(spool.stats().dropped.expired, 1);
    assert.equal(lines.filter((l) => l.msg === STEPPED).length, 1, 'the commit recorded the step once');
  });

  test('the step recorded by a commit is not counted twice by leases that saw it before', async () => {
    const pi = new PiClock(BOOT);
    const { spool } = await start(await newDir(), pi);
    await spool.append([reading(pi, 'a', HOUR)]);
    pi.advance(5 * MIN);
    pi.setWall(REAL);
    assert.deepEqual(await peek(spool), { a: at(REAL - 5 * MIN, HOUR) });
    await spool.append([reading(pi, 'b', HOUR)]);
    assert.deepEqual(await peek(spool), { a: at(REAL - 5 * MIN, HOUR), b: at(REAL, HOUR) });
    pi.setWall(REAL - HOUR);
    assert.deepEqual(await peek(spool), { a: at(REAL - HOUR - 5 * MIN, HOUR), b: at(REAL - HOUR, HOUR) });
    await spool.append([reading(pi, 'c', HOUR)]);
    assert.deepEqual(await peek(spool), { a: at(REAL - HOUR - 5 * MIN, HOUR), b: at(REAL - HOUR, HOUR), c: at(REAL - HOUR, HOUR) });
  });

  test('each step is logged once, with its size and the times before and after it; jitter under a second is not a step', async () => {
    const pi = new PiClock(BOOT);
    const { spool, lines } = await start(await newDir(), pi, 10);
    pi.setWall(REAL);
    // An empty spool has nothing to correct, but the step is still news.
    const [first] = await logged(lines, STEPPED, 1);
    assert.equal(first!.level, 'warn');
    assert.equal(first!.stepMs, REAL - BOOT);
    assert.equal(first!.from, new Date(BOOT).toISOString());
    assert.equal(first!.to, new Date(REAL).toISOString());

    await spool.append([reading(pi, 'a', HOUR)]);
    pi.setWall(pi.wall() + 400);
    pi.advance(MIN);
    pi.setWall(pi.wall() - HOUR);
    const [, second] = await logged(lines, STEPPED, 2);
    assert.equal(second!.stepMs, -HOUR + 400, 'the 400 ms of jitter are part of the next step');
    assert.equal(second!.from, new Date(REAL + MIN).toISOString());
    assert.equal(second!.to, new Date(REAL + MIN + 400 - HOUR).toISOString());

    // A barrier: a sweep that expires something has run a whole maintenance round after the steps.
    await spool.append([reading(pi, 'x', MIN)]);
    pi.advance(2 * MIN);
    await logged(lines, EXPIRED, 1);
    assert.equal(lines.filter((l) => l.msg === STEPPED).length, 2);
  });

  describe('restarts', () => {
    test('readings stored in 1970 by a Pi that stopped before NTP set the clock count their age from the next start', async () => {
      const dir = await newDir();
      const before = new PiClock(BOOT);
      const first = await start(dir, before);
      await first.spool.append([reading(before, 'a', HOUR)]);
      before.advance(10 * MIN);
      await first.spool.append([reading(before, 'b', HOUR)]);
      await stop(first.spool);

      // Days later the Pi starts again, and NTP set the clock before the gateway started.
      const pi = new PiClock(REAL);
      const { spool, lines } = await start(dir, pi);
      assert.deepEqual(lines.filter((l) => l.level === 'warn').map((l) => l.msg),
        ['spool: readings were stored while the clock was not set; their age counts from now']);
      assert.equal(lines.find((l) => l.level === 'warn')!.shiftMs, REAL - (BOOT + 10 * MIN));
      assert.deepEqual(await peek(spool), { a: at(REAL - 10 * MIN, HOUR), b: at(REAL, HOUR) });
      assert.equal(spool.stats().oldestAgeMs, 10 * MIN);
      pi.advance(55 * MIN);
      assert.deepEqual(Object.keys(await peek(spool)), ['b']);
      assert.equal(spool.stats().dropped.expired, 1);
    });

    test('a restart while the clock is still in 1970, then the NTP step: readings neither expire wholesale nor live for ever', async () => {
      const dir = await newDir();
      const before = new PiClock(REAL);
      const first = await start(dir, before);
      await first.spool.append([reading(before, 'a', HOUR)]);
      before.advance(10 * MIN);
      await first.spool.append([reading(before, 'b', HOUR)]);
      await stop(first.spool);

      // A reboot without network: the clock is back in 1970, and the gateway runs so.
      const pi = new PiClock(BOOT);
      const { spool, lines } = await start(dir, pi);
      assert.deepEqual(lines.filter((l) => l.level === 'warn').map((l) => l.msg),
        ['spool: the clock is behind the readings stored before the restart; their age counts from now']);
      assert.equal(lines.find((l) => l.level === 'warn')!.shiftMs, BOOT - (REAL + 10 * MIN));
      assert.deepEqual(await peek(spool), { a: at(BOOT - 10 * MIN, HOUR), b: at(BOOT, HOUR) });
      await spool.append([reading(pi, 'c', HOUR)]);
      pi.advance(5 * MIN);
      // The restart was at REAL + 10 min (a quick reboot); NTP answers 5 minutes later.
      pi.setWall(REAL + 15 * MIN);
      await spool.append([reading(pi, 'd', HOUR)]);
      assert.deepEqual(await peek(spool), {
        a: at(REAL, HOUR), b: at(REAL + 10 * MIN, HOUR), c: at(REAL + 10 * MIN, HOUR), d: at(REAL + 15 * MIN, HOUR),
      });
      assert.equal(spool.stats().oldestAgeMs, 15 * MIN);

      pi.advance(50 * MIN);
      assert.deepEqual(Object.keys(await peek(spool)), ['b', 'c', 'd'], 'a is 65 minutes old (counted from the restart, less its spacing)');
      pi.advance(9 * MIN);
      assert.deepEqual(Object.keys(await peek(spool)), ['d'], 'b and c are 64 minutes old, d 59');
      assert.equal(spool.stats().dropped.expired, 3);
    });

    test('a restart into the older time fake-hwclock saved, then the NTP step: ages count from the restart', async () => {
      const dir = await newDir();
      const before = new PiClock(REAL);
      const first = await start(dir, before);
      await first.spool.append([reading(before, 'a', HOUR)]);
      before.advance(40 * MIN);
      await first.spool.append([reading(before, 'b', HOUR)]);
      await stop(first.spool);

      // Power back at REAL + 41 min; fake-hwclock last saved REAL - 20 min, an hour behind b.
      const pi = new PiClock(REAL - 20 * MIN);
      const { spool, lines } = await start(dir, pi);
      assert.deepEqual(lines.filter((l) => l.level === 'warn').map((l) => l.shiftMs), [-60 * MIN]);
      pi.advance(2 * MIN);
      pi.setWall(REAL + 43 * MIN);
      await spool.append([reading(pi, 'c', HOUR)]);
      assert.deepEqual(await peek(spool), { a: at(REAL + MIN, HOUR), b: at(REAL + 41 * MIN, HOUR), c: at(REAL + 43 * MIN, HOUR) });
      pi.advance(20 * MIN);
      assert.deepEqual(Object.keys(await peek(spool)), ['b', 'c'], 'a is 62 minutes old, counted from the restart less its spacing');
    });

    test('a step just before stop(), with no commit after it, is recorded by stop: after the restart the readings keep their real age', async () => {
      const dir = await newDir();
      const before = new PiClock(BOOT);
      const first = await start(dir, before);
      await first.spool.append([reading(before, 'a', HOUR)]);
      before.advance(10 * MIN);
      // NTP steps the clock, and the gateway is stopped before the spool commits or maintains again.
      before.setWall(REAL);
      await stop(first.spool);

      const pi = new PiClock(REAL + MIN);
      const { spool } = await start(dir, pi);
      assert.deepEqual(await peek(spool), { a: at(REAL - 10 * MIN, HOUR) });
      assert.equal(spool.stats().oldestAgeMs, 11 * MIN);
    });

    test('steps recorded before a restart still correct the readings stored before them', async () => {
      const dir = await newDir();
      const before = new PiClock(BOOT);
      const first = await start(dir, before);
      await first.spool.append([reading(before, 'a', HOUR)]);
      before.advance(10 * MIN);
      before.setWall(REAL);
      await first.spool.append([reading(before, 'b', HOUR)]);
      before.advance(10 * MIN);
      await stop(first.spool);

      const pi = new PiClock(REAL + 11 * MIN);
      const { spool, lines } = await start(dir, pi);
      assert.deepEqual(lines.filter((l) => l.level === 'warn'), [], 'nothing to correct at start');
      assert.deepEqual(await peek(spool), { a: at(REAL - 10 * MIN, HOUR), b: at(REAL, HOUR) });
      assert.equal(spool.stats().oldestAgeMs, 21 * MIN);
      pi.advance(40 * MIN);
      assert.deepEqual(Object.keys(await peek(spool)), ['b']);
    });
  });
});

/**
 * RateLimitedLog's windows across a step of the system clock back: the interval is measured on the
 * monotonic clock, so a kind of line that was rate-limited is heard again after `intervalMs`,
 * not after the size of the step. The step is injected into Date.now, which is what steps.
 */
import assert from 'node:assert/strict';
import { afterEach, test } from 'node:test';
import { RateLimitedLog } from '../../src/core/rate-limited-log.js';
import { memoryLogger } from '../peers/memory-log.js';

const realNow = Date.now;
afterEach(() => { Date.now = realNow; });

test('after the system clock steps back a year, a rate-limited kind of line is logged again once the interval passed', async () => {
  let shift = 0;
  Date.now = () => realNow() + shift;
  const { log, lines } = memoryLogger();
  const limited = new RateLimitedLog(log, { burst: 1, intervalMs: 1000 });
  limited.write('warn', 'bad', { i: 0 }, 'bad input');
  limited.write('warn', 'bad', { i: 1 }, 'bad input');
  assert.deepEqual(lines.map((l) => l.i), [0]);

  shift = -365 * 24 * 3_600_000;
  const deadline = performance.now() + 10_000;
  let i = 2;
  while (lines.length < 2) {
    assert.ok(performance.now() < deadline, 'no line in 10 s: the window was measured on the stepped clock');
    limited.write('warn', 'bad', { i: i++ }, 'bad input');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  assert.equal(lines[1]!.suppressed, Number(lines[1]!.i) - 1, 'the lines left out in between are counted');
});

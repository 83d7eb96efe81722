/** Backoff's upper-half jitter (the default, full jitter, is tested with the upstream errors). */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Backoff } from '../../src/core/backoff.js';

describe('backoff with upper-half jitter', () => {
  test('doubles up to the cap, each delay between half the ceiling and the ceiling, never near zero', () => {
    const low = new Backoff({ baseMs: 100, capMs: 1000, random: () => 0, jitter: 'upper-half' });
    assert.deepEqual(Array.from({ length: 6 }, () => low.next()), [50, 100, 200, 400, 500, 500]);
    const high = new Backoff({ baseMs: 100, capMs: 1000, random: () => 0.999999, jitter: 'upper-half' });
    assert.deepEqual(Array.from({ length: 6 }, () => high.next()), [99, 199, 399, 799, 999, 999]);
    high.reset();
    assert.equal(high.attempts, 0);
    assert.equal(high.next(), 99);
  });
});

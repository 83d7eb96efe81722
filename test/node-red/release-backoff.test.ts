/** The wait before `uplink in` releases a command the flow failed on (release-backoff.ts). */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { RELEASE_BACKOFF, ReleaseBackoff } from '../../src/core/release-backoff.js';

describe('release backoff', () => {
  test('1 s, doubling per message id, capped at 30 s', () => {
    const backoff = new ReleaseBackoff();
    assert.deepEqual(RELEASE_BACKOFF, { baseMs: 1000, capMs: 30_000, remember: 1000 });
    assert.deepEqual(Array.from({ length: 8 }, () => backoff.next('cmd-1')), [1000, 2000, 4000, 8000, 16_000, 30_000, 30_000, 30_000]);
    assert.equal(backoff.attempts('cmd-1'), 8);
    // Another id starts again from the base.
    assert.equal(backoff.next('cmd-2'), 1000);
    // Long after the cap, no overflow.
    for (let i = 0; i < 2000; i++) backoff.next('cmd-3');
    assert.equal(backoff.next('cmd-3'), 30_000);
  });

  test('settled for good (accepted or rejected): forgotten, so a later failure starts from the base', () => {
    const backoff = new ReleaseBackoff();
    backoff.next('cmd-1');
    backoff.next('cmd-1');
    backoff.forget('cmd-1');
    assert.equal(backoff.attempts('cmd-1'), 0);
    assert.equal(backoff.next('cmd-1'), 1000);
  });

  test('a message without an id always waits the base delay', () => {
    const backoff = new ReleaseBackoff();
    assert.deepEqual([backoff.next(undefined), backoff.next(undefined)], [1000, 1000]);
    assert.equal(backoff.size, 0);
  });

  test('bounded: the ids released longest ago are forgotten first', () => {
    const backoff = new ReleaseBackoff({ baseMs: 10, capMs: 1000, remember: 3 });
    for (const id of ['a', 'b', 'c']) backoff.next(id);
    backoff.next('a'); // a is now the most recent
    backoff.next('d'); // b goes
    assert.equal(backoff.size, 3);
    assert.deepEqual(['a', 'b', 'c', 'd'].map((id) => backoff.attempts(id)), [2, 0, 1, 1]);
  });
});

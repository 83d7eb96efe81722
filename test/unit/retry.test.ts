/** The one retry policy (core/retry.ts): the wait is decided by the translated error. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { GatewayError } from '../../src/core/errors.js';
import { RetryPolicy } from '../../src/core/retry.js';
import { translateAmqpError } from '../../src/upstream/amqp/errors.js';

const reset = new GatewayError('UPSTREAM_CONNECTION', 'connection reset', { retryable: true });
const refused = new GatewayError('UPSTREAM_AUTH', 'bad password', { retryable: false });

describe('the retry policy', () => {
  test('a retryable error: exponential backoff with full jitter, from 0 (no floor) up to the cap', () => {
    const high = new RetryPolicy({ baseMs: 100, capMs: 1000, random: () => 0.999999 });
    assert.deepEqual(Array.from({ length: 6 }, () => high.next(reset)), [99, 199, 399, 799, 999, 999]);
    const low = new RetryPolicy({ baseMs: 100, capMs: 1000, random: () => 0 });
    assert.deepEqual(Array.from({ length: 3 }, () => low.next(reset)), [0, 0, 0]);
  });

  test('a floor: no wait is shorter, and none is longer than the cap', () => {
    const high = new RetryPolicy({ baseMs: 100, capMs: 800, floorMs: 100, random: () => 1 });
    assert.deepEqual(Array.from({ length: 5 }, () => high.next(reset)), [200, 300, 500, 800, 800]);
    const low = new RetryPolicy({ baseMs: 100, capMs: 800, floorMs: 100, random: () => 0 });
    assert.deepEqual(Array.from({ length: 3 }, () => low.next(reset)), [100, 100, 100]);
  });

  test('an error that is not retryable waits the capped interval (upper half), from the first failure on', () => {
    const policy = new RetryPolicy({ baseMs: 100, capMs: 30_000, floorMs: 100, random: () => 0 });
    assert.deepEqual([policy.next(refused), policy.next(refused)], [15_000, 15_000]);
    const high = new RetryPolicy({ baseMs: 100, capMs: 30_000, random: () => 0.999999 });
    assert.equal(high.next(refused), 29_999);
  });

  test('the floor holds for the capped wait too; a cap of 0 (a loop without a pause) is refused', () => {
    const policy = new RetryPolicy({ baseMs: 20_000, capMs: 30_000, floorMs: 20_000, random: () => 0 });
    assert.equal(policy.next(refused), 20_000);
    assert.equal(policy.next(reset), 20_000);
    assert.throws(() => new RetryPolicy({ baseMs: 0, capMs: 0 }), /capMs must be above 0/);
  });

  test('reset() after a success starts the waits over; attempts counts the failures since', () => {
    const policy = new RetryPolicy({ baseMs: 100, capMs: 1000, random: () => 0.999999 });
    policy.next(reset);
    policy.next(refused);
    policy.next(reset);
    assert.equal(policy.attempts, 3);
    policy.reset();
    assert.equal(policy.attempts, 0);
    assert.equal(policy.next(reset), 99);
  });

  test('decided by the translation: a refused login waits the cap, a reset socket and a missing queue back off', () => {
    const wait = (err: unknown): number => new RetryPolicy({ baseMs: 100, capMs: 30_000, random: () => 0 }).next(translateAmqpError(err, 'x'));
    assert.equal(wait({ condition: 'amqp:unauthorized-access' }), 15_000);
    assert.equal(wait(Object.assign(new Error('unable to verify the first certificate'), { code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' })), 15_000);
    assert.equal(wait({ condition: 'amqp:not-allowed' }), 15_000);
    assert.equal(wait(Object.assign(new Error('reset'), { code: 'ECONNRESET' })), 0);
    assert.equal(wait({ condition: 'amqp:not-found' }), 0);
    assert.equal(wait({ condition: 'amqp:resource-deleted' }), 0);
  });
});

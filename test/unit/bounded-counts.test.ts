/**
 * core/bounded-counts.ts: counts by key with a bound on the keys (per-address stats and metric
 * labels under `{N}` address templates).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { BoundedCounts, BoundedKeys, OTHER } from '../../src/core/bounded-counts.js';

describe('BoundedCounts', () => {
  test('the first keys count on their own, later ones under _other; the sum is kept', () => {
    const counts = new BoundedCounts(2);
    for (const key of ['a', 'b', 'a', 'c', 'd', 'c', 'b']) counts.add(key);
    assert.deepEqual(counts.toRecord(), { a: 2, b: 2, [OTHER]: 3 });
  });

  test('no _other until a key overflows; a key named _other is never given a place', () => {
    const counts = new BoundedCounts(3);
    counts.add('a', 5);
    assert.deepEqual(counts.toRecord(), { a: 5 });
    counts.add(OTHER, 2);
    assert.deepEqual(counts.toRecord(), { a: 5, [OTHER]: 2 });
  });
});

describe('BoundedKeys', () => {
  test('keys shown stay shown across reads, whatever order the source lists them in; the rest sum under _other', () => {
    const keys = new BoundedKeys(2);
    assert.deepEqual(keys.apply({ a: 1, b: 1 }), [['a', 1], ['b', 1]]);
    assert.deepEqual(keys.apply({ c: 9, a: 2, b: 3 }), [['a', 2], ['b', 3], [OTHER, 9]]);
    assert.deepEqual(keys.apply({ d: 1, c: 10, b: 3, a: 2 }), [['b', 3], ['a', 2], [OTHER, 11]]);
  });
});

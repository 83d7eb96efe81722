import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Readiness, refusedAddresses } from '../../src/ops/readiness.js';

describe('readiness: addresses the upstream refuses', () => {
  test('none: ready', () => {
    assert.deepEqual(refusedAddresses([]), { ready: true });
  });

  test('each named with the broker\'s reason, five at most, the rest counted', () => {
    const one = refusedAddresses([{ address: '/queues/a', condition: 'amqp:not-found', message: "amqp:not-found (no queue 'a')" }]);
    assert.equal(one.ready, false);
    assert.equal(one.reason, "the upstream refuses an address; its readings wait in the spool: /queues/a (amqp:not-found (no queue 'a'))");
    const many = refusedAddresses(Array.from({ length: 8 }, (_, i) => ({ address: `/queues/d${i}`, message: 'amqp:not-found' })));
    assert.match(many.reason ?? '', /^the upstream refuses 8 addresses; .*\/queues\/d4 \(amqp:not-found\), and 3 more$/);
    assert.ok(!(many.reason ?? '').includes('/queues/d5'));
  });

  test('a refused address makes /readyz not ready beside a connected upstream', () => {
    const readiness = new Readiness();
    readiness.set('upstream', { ready: true });
    readiness.set('upstream-addresses', refusedAddresses([{ address: '/queues/a', message: 'amqp:not-found' }]));
    assert.equal(readiness.snapshot().ready, false);
    readiness.delete('upstream-addresses');
    assert.equal(readiness.snapshot().ready, true);
  });
});

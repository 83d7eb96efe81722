import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import rhea from 'rhea';
import { Backoff } from '../../src/core/backoff.js';
import { translateAmqpError } from '../../src/upstream/amqp/errors.js';
import { toAmqpMessage } from '../../src/upstream/amqp/message.js';

describe('backoff with full jitter', () => {
  test('grows exponentially up to the cap, each delay anywhere between 0 and the ceiling', () => {
    const ceilings = (() => {
      const b = new Backoff({ baseMs: 100, capMs: 1000, random: () => 0.999999 });
      return Array.from({ length: 6 }, () => b.next());
    })();
    assert.deepEqual(ceilings, [99, 199, 399, 799, 999, 999]);
    const b = new Backoff({ baseMs: 100, capMs: 1000, random: () => 0 });
    assert.equal(b.next(), 0);
    b.reset();
    assert.equal(b.attempts, 0);
  });

  test('the capped delay never comes near zero, so refused credentials do not cause a tight loop', () => {
    const b = new Backoff({ baseMs: 100, capMs: 30_000, random: () => 0 });
    assert.equal(b.capped(), 15_000);
  });

  test('a fleet spreads out: 100 gateways do not retry at the same moment', () => {
    const delays = Array.from({ length: 100 }, () => {
      const b = new Backoff({ baseMs: 1000, capMs: 30_000 });
      b.next();
      b.next();
      return b.next();
    });
    assert.ok(new Set(delays).size > 90);
    assert.ok(delays.every((d) => d >= 0 && d < 4000));
  });
});

describe('upstream error translation', () => {
  // retryable: what the retry policy decides by (core/retry.ts); false means "someone must change
  // something first" (credentials, a certificate), tried again only at the capped interval.
  const cases: Array<[unknown, string, boolean]> = [
    [{ condition: 'amqp:unauthorized-access', description: 'Failed to authenticate' }, 'UPSTREAM_AUTH', false],
    // A queue missing at attach may be declared later by its consumer.
    [{ condition: 'amqp:not-found', description: 'no queue' }, 'UPSTREAM_REJECTED', true],
    [{ condition: 'amqp:not-allowed', description: 'access refused' }, 'UPSTREAM_REJECTED', false],
    [{ condition: 'amqp:resource-limit-exceeded' }, 'UPSTREAM_CONNECTION', true],
    [{ condition: 'vendor:something-new' }, 'UPSTREAM_CONNECTION', true],
    [Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5671'), { code: 'ECONNREFUSED' }), 'UPSTREAM_CONNECTION', true],
    [Object.assign(new Error('unable to verify the first certificate'), { code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' }), 'UPSTREAM_TLS', false],
    [Object.assign(new Error("Hostname/IP does not match certificate's altnames"), { code: 'ERR_TLS_CERT_ALTNAME_INVALID' }), 'UPSTREAM_TLS', false],
    [new Error('140:error:tlsv1 alert unknown ca'), 'UPSTREAM_TLS', false],
  ];
  for (const [input, code, retryable] of cases) {
    test(`${JSON.stringify((input as { condition?: string }).condition ?? (input as Error).message)} → ${code}`, () => {
      const err = translateAmqpError(input, 'connecting');
      assert.equal(err.code, code);
      assert.equal(err.retryable, retryable);
      assert.match(err.message, /^connecting: /);
    });
  }

  test('a certificate not yet valid (or expired) points at this machine\'s clock', () => {
    const err = translateAmqpError(Object.assign(new Error('certificate is not yet valid'), { code: 'CERT_NOT_YET_VALID' }), 'connecting');
    assert.equal(err.code, 'UPSTREAM_TLS');
    assert.match(err.message, /is this machine's clock right\? \d{4}-/);
  });
});

describe('message mapping', () => {
  test('payload as one data section, durable, ids, subject, times, gateway property', () => {
    const message = toAmqpMessage({ id: 'm-1', topic: 'sensor/a/t', payload: Buffer.from([0, 1, 2]), receivedAt: 1_700_000_000_000,
      priority: 6, ttlMs: 1500.7, properties: { line: 'L1', gateway: 'spoofed' } }, 'gw-1');
    assert.equal(message.message_id, 'm-1');
    assert.equal(message.durable, true);
    assert.equal(message.priority, 6);
    assert.equal(message.ttl, 1500);
    assert.equal(message.subject, 'sensor/a/t');
    assert.deepEqual(message.creation_time, new Date(1_700_000_000_000));
    assert.deepEqual(message.application_properties, { line: 'L1', gateway: 'gw-1' });
    const body = message.body as { typecode: number; content: Buffer };
    assert.equal(body.typecode, 0x75);
    assert.deepEqual(body.content, Buffer.from([0, 1, 2]));
  });

  test('a ttl beyond what header.ttl holds (uint, about 49.7 days) is sent as the largest it holds, and encodes', () => {
    const message = toAmqpMessage({ id: 'm-2', topic: 't', payload: Buffer.from('x'), receivedAt: 1_700_000_000_000,
      priority: 4, ttlMs: 60 * 86_400_000 }, 'gw-1');
    assert.equal(message.ttl, 0xffff_ffff);
    assert.doesNotThrow(() => rhea.message.encode(message as never));
  });
});

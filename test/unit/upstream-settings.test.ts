/**
 * The upstream keys of uplink.yaml reach AmqpUpstream: idleTimeout (rhea's idle_time_out),
 * maxLinks and linkIdleTimeout, with the same defaults as AmqpUpstream's own (for Node-RED).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseConfig } from '../../src/config/load.js';
import { silentLogger } from '../../src/core/logger.js';
import { UPSTREAM_DEFAULTS } from '../../src/upstream/amqp/amqp-upstream.js';
import { upstreamOptions } from '../../src/upstream/amqp/settings.js';

const base = 'upstream:\n  url: amqp://broker:5672\n  sasl: anonymous\n';

function upstreamOf(extra = ''): NonNullable<ReturnType<typeof parseConfig>['upstream']> {
  const upstream = parseConfig(base + extra, { source: 'test.yaml', baseDir: '/tmp' }).upstream;
  assert.ok(upstream !== undefined);
  return upstream;
}

function issues(extra: string): string[] {
  try {
    parseConfig(base + extra, { source: 'test.yaml', baseDir: '/tmp' });
    return [];
  } catch (err) {
    return (err as { issues: Array<{ path: string; message: string }> }).issues.map((i) => `${i.path}: ${i.message}`);
  }
}

describe('upstream settings', () => {
  test('defaults: idleTimeout 20 s (a dead link noticed within about 41 s), 64 links, links idle 5 min closed', () => {
    const upstream = upstreamOf();
    assert.equal(upstream.idleTimeout, 20_000);
    assert.equal(upstream.maxLinks, 64);
    assert.equal(upstream.linkIdleTimeout, 300_000);
    assert.deepEqual(UPSTREAM_DEFAULTS, { idleTimeoutMs: 20_000, maxLinks: 64, linkIdleTimeoutMs: 300_000 });
    const options = upstreamOptions(upstream, { gatewayId: 'gw', log: silentLogger });
    assert.equal(options.idleTimeoutMs, 20_000);
    assert.equal(options.maxLinks, 64);
    assert.equal(options.linkIdleTimeoutMs, 300_000);
  });

  test('durations as text or seconds, passed on in ms', () => {
    const options = upstreamOptions(upstreamOf('  idleTimeout: 5s\n  maxLinks: 8\n  linkIdleTimeout: 90\n'), { gatewayId: 'gw', log: silentLogger });
    assert.deepEqual([options.idleTimeoutMs, options.maxLinks, options.linkIdleTimeoutMs], [5000, 8, 90_000]);
  });

  test('out of range: path and message', () => {
    assert.deepEqual(issues('  idleTimeout: 10ms\n'), ['upstream.idleTimeout: must be at least 100ms']);
    assert.deepEqual(issues('  idleTimeout: 2h\n'), ['upstream.idleTimeout: must be at most 1h']);
    assert.deepEqual(issues('  maxLinks: 0\n'), ['upstream.maxLinks: must be a whole number from 1 to 10000']);
    assert.deepEqual(issues('  linkIdleTimeout: soon\n'), ['upstream.linkIdleTimeout: must be a duration: seconds, or text such as 30s, 15m, 12h or 7d']);
  });
});

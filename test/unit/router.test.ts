import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Router } from '../../src/route/router.js';
import { topicMatches } from '../../src/route/topic-filter.js';

describe('topic filters', () => {
  const cases: Array<[string, string, boolean]> = [
    ['sensor/+/temperature', 'sensor/line1/temperature', true],
    ['sensor/+/temperature', 'sensor/line1/humidity', false],
    ['sensor/+/temperature', 'sensor/line1/a/temperature', false],
    ['sensor/#', 'sensor', true],
    ['sensor/#', 'sensor/a/b/c', true],
    ['sensor/#', 'sensors/a', false],
    ['#', 'anything/at/all', true],
    ['#', '$SYS/broker', false],
    ['+/x', '$SYS/x', false],
    ['a/b', 'a/b', true],
    ['a/b', 'a/b/c', false],
    ['+', 'a', true],
    ['+', 'a/b', false],
    ['a/+', 'a/', true],
  ];
  for (const [filter, topic, expected] of cases) {
    test(`${filter} ${expected ? 'matches' : 'does not match'} ${topic}`, () => assert.equal(topicMatches(filter, topic), expected));
  }
});

describe('router', () => {
  const router = new Router({
    routes: [
      { topic: 'sensor/+/temperature', address: '/queue/telemetry', priority: 6, ttl: 60_000 },
      { topic: 'alarm/#', address: '/queue/alarms', priority: 9 },
      { topic: '#', address: '/queue/other', priority: 4 },
    ],
    defaultTtl: 3_600_000,
  });
  const envelope = (topic: string) => ({ id: 'x', topic, payload: Buffer.from('1'), receivedAt: 1_000 });

  test('the first matching route wins, in config order', () => {
    assert.equal(router.route(envelope('sensor/l1/temperature'))?.address, '/queue/telemetry');
    assert.equal(router.route(envelope('alarm/l1/door'))?.address, '/queue/alarms');
    assert.equal(router.route(envelope('sensor/l1/humidity'))?.address, '/queue/other');
  });

  test('priority and expiry come from the route, the TTL from the route or the default', () => {
    assert.deepEqual(router.route(envelope('sensor/l1/temperature')), { ...envelope('sensor/l1/temperature'), address: '/queue/telemetry', priority: 6, expiresAt: 61_000 });
    assert.equal(router.route(envelope('alarm/x'))?.expiresAt, 3_601_000);
  });

  test('address templates take topic levels, and map back to their route', () => {
    const templated = new Router({ routes: [
      { topic: 'sensor/+/+', address: '/exchange/telemetry/{2}.{3}', priority: 4, delivery: 'at-most-once' },
      { topic: '#', address: '/queue/rest', priority: 4 },
    ] });
    assert.equal(templated.route(envelope('sensor/line1/temp'))?.address, '/exchange/telemetry/line1.temp');
    assert.equal(templated.routeForAddress('/exchange/telemetry/line9.rpm')?.delivery, 'at-most-once');
    assert.equal(templated.routeForAddress('/queue/rest')?.topic, '#');
    assert.equal(templated.routeForAddress('/queue/unknown'), undefined);
  });

  test('no route: undefined, and no TTL at all: no expiry', () => {
    const narrow = new Router({ routes: [{ topic: 'a/b', address: 'q', priority: 4 }] });
    assert.equal(narrow.route(envelope('c')), undefined);
    assert.equal('expiresAt' in narrow.route(envelope('a/b'))!, false);
  });
});

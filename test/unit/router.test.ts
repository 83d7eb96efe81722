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

  test('v2 addresses (/queues/, /exchanges/): each filling percent-encoded, the template as written', () => {
    const v2 = new Router({ routes: [
      { topic: 'plant/+/+', address: '/exchanges/plant%20data/{2}.{3}', priority: 4 },
      { topic: 'line/#', address: '/queues/{2}', priority: 4 },
    ] });
    assert.equal(v2.route(envelope('line/line 1'))?.address, '/queues/line%201');
    assert.equal(v2.route(envelope('line/a.b_c-d~e'))?.address, '/queues/a.b_c-d~e');
    // RFC 3986: all but the unreserved characters, including those encodeURIComponent leaves alone.
    assert.equal(v2.route(envelope("line/50%!'()*#+&=?:@ü"))?.address, '/queues/50%25%21%27%28%29%2A%23%2B%26%3D%3F%3A%40%C3%BC');
    assert.equal(v2.route(envelope('plant/hall 2/temp°C'))?.address, '/exchanges/plant%20data/hall%202.temp%C2%B0C');
    assert.equal(v2.route(envelope('line'))?.address, '/queues/', 'a missing level is empty');
    // Spooled readings find their route by the encoded address too.
    assert.equal(v2.routeForAddress('/queues/line%201')?.topic, 'line/#');
  });

  test('v1 and ActiveMQ addresses take the fillings as they are', () => {
    const raw = new Router({ routes: [
      { topic: 'a/+', address: '/queue/{2}', priority: 4 },
      { topic: 'b/+', address: 'queue://plant.{2}', priority: 4 },
      { topic: 'c/+', address: 'topic://{2}', priority: 4 },
    ] });
    assert.equal(raw.route(envelope('a/line 1'))?.address, '/queue/line 1');
    assert.equal(raw.route(envelope('b/hall 2'))?.address, 'queue://plant.hall 2');
    assert.equal(raw.route(envelope('c/x%y'))?.address, 'topic://x%y');
  });

  test('no route: undefined, and no TTL at all: no expiry', () => {
    const narrow = new Router({ routes: [{ topic: 'a/b', address: 'q', priority: 4 }] });
    assert.equal(narrow.route(envelope('c')), undefined);
    assert.equal('expiresAt' in narrow.route(envelope('a/b'))!, false);
  });
});

/**
 * The label sets of the metrics stay bounded: one address per device (`{N}` templates) must not
 * give one series per device. Unit test of ops/metrics.ts with a source of plain figures.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { createMetrics, type MetricsSource } from '../../src/ops/metrics.js';

function source(figures: { ingested: Record<string, number>; forwarded: Record<string, number> }): MetricsSource {
  return {
    spool: () => ({ depth: 0, bytes: 0, oldestAgeMs: 0, inFlight: 0, deadLettered: 0, deadLetters: 0, dropped: { expired: 0, evicted: 0 }, commits: 0, blocked: false, diskFull: false }),
    ingested: () => figures.ingested,
    rejected: () => ({}),
    forwarded: () => figures.forwarded,
    outcomes: () => ({ accepted: 0 }),
    upstream: () => undefined,
    connections: () => ({}),
    info: { version: 'test', gatewayId: 'gw' },
  };
}

async function series(registry: ReturnType<typeof createMetrics>, name: string): Promise<Map<string, number>> {
  const metric = (await registry.getMetricsAsJSON()).find((m) => m.name === name);
  assert.ok(metric !== undefined, `${name} exists`);
  return new Map(metric.values.map((v) => [String(v.labels.address), v.value]));
}

const devices = (n: number, from = 0, count = 1): Record<string, number> =>
  Object.fromEntries(Array.from({ length: n }, (_, i) => [`/queue/dev/${from + i}`, count]));

describe('metrics: bounded label sets', () => {
  test('250 device addresses: 100 series of their own, the rest summed under _other, nothing lost from the total', async () => {
    const registry = createMetrics(source({ ingested: devices(250, 0, 2), forwarded: devices(250) }));
    for (const [name, each] of [['uplink_ingested_total', 2], ['uplink_forwarded_total', 1]] as const) {
      const values = await series(registry, name);
      assert.equal(values.size, 101, `${name}: 100 addresses and _other`);
      assert.equal(values.get('_other'), 150 * each);
      assert.equal([...values.values()].reduce((a, b) => a + b, 0), 250 * each);
      assert.equal(values.get('/queue/dev/0'), each);
    }
    const text = await registry.metrics();
    assert.equal(text.split('\n').filter((l) => l.startsWith('uplink_ingested_total{')).length, 101);
  });

  test('stable: an address once shown keeps its series; a new one goes to _other, which only grows', async () => {
    const figures = { ingested: devices(3), forwarded: {} as Record<string, number> };
    const registry = createMetrics(source(figures), { maxLabelValues: 3 });
    assert.deepEqual([...(await series(registry, 'uplink_ingested_total')).keys()].sort(), ['/queue/dev/0', '/queue/dev/1', '/queue/dev/2']);
    // A new address, listed first by its source and busier than any: it still does not displace one shown.
    figures.ingested = { '/queue/dev/9': 50, ...devices(3, 0, 5) };
    let values = await series(registry, 'uplink_ingested_total');
    assert.deepEqual([...values.keys()].sort(), ['/queue/dev/0', '/queue/dev/1', '/queue/dev/2', '_other']);
    assert.equal(values.get('_other'), 50);
    assert.equal(values.get('/queue/dev/0'), 5);
    figures.ingested = { ...figures.ingested, '/queue/dev/9': 60, '/queue/dev/10': 1 };
    values = await series(registry, 'uplink_ingested_total');
    assert.equal(values.get('_other'), 61);
    assert.equal(values.size, 4);
  });

  test("a source's own _other (the forwarder bounds its stats too) is merged into the metric's _other", async () => {
    const registry = createMetrics(source({ ingested: {}, forwarded: { '/queue/a': 4, _other: 7, '/queue/b': 1 } }), { maxLabelValues: 1 });
    const values = await series(registry, 'uplink_forwarded_total');
    assert.deepEqual(Object.fromEntries(values), { '/queue/a': 4, _other: 8 });
  });

  test('under the bound there is no _other series', async () => {
    const registry = createMetrics(source({ ingested: devices(5), forwarded: devices(5) }));
    const values = await series(registry, 'uplink_forwarded_total');
    assert.equal(values.size, 5);
    assert.equal(values.has('_other'), false);
  });
});

describe('metrics: what the upstream does not take', () => {
  test('released readings by address (bounded), addresses held back, addresses refused', async () => {
    const registry = createMetrics({
      ...source({ ingested: {}, forwarded: {} }),
      released: () => ({ ...devices(3, 0, 2), '/exchanges/amq.direct/nobody': 47 }),
      held: () => 1,
      upstream: () => ({ connected: true, credit: 170, reconnects: 0, refusedAddresses: 2 }),
    }, { maxLabelValues: 2 });
    const released = await series(registry, 'uplink_upstream_released_total');
    assert.deepEqual(Object.fromEntries(released), { '/queue/dev/0': 2, '/queue/dev/1': 2, _other: 49 });
    const text = await registry.metrics();
    assert.match(text, /^uplink_forward_held_addresses 1$/m);
    assert.match(text, /^uplink_upstream_refused_addresses 2$/m);
  });

  test('a source without them shows zeros', async () => {
    const text = await createMetrics(source({ ingested: {}, forwarded: {} })).metrics();
    assert.match(text, /^uplink_forward_held_addresses 0$/m);
    assert.match(text, /^uplink_upstream_refused_addresses 0$/m);
  });
});

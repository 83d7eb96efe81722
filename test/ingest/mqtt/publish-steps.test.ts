/** Unit tests of the MQTT publish steps (publish-steps.ts) and the QoS 2 window (qos2.ts), each step alone, on a fake environment. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Client, PublishPacket } from 'aedes';
import type { RoutedReading } from '../../../src/core/envelope.js';
import { Acl } from '../../../src/ingest/mqtt/acl.js';
import { Refusal } from '../../../src/ingest/mqtt/client-errors.js';
import { PublishPipeline } from '../../../src/ingest/mqtt/publish-pipeline.js';
import {
  acl, dedupeQos2, PUBLISH_STEPS, route, runPublish, submit, topicLimits, unrouted, willOnStop,
  type Publish, type PublishEnv,
} from '../../../src/ingest/mqtt/publish-steps.js';
import { Qos2Window } from '../../../src/ingest/mqtt/qos2.js';
import type { Session } from '../../../src/ingest/mqtt/sessions.js';
import { Router } from '../../../src/route/router.js';
import { sleep } from './helpers.js';

interface Fake {
  env: PublishEnv;
  rejected: string[];
  logged: Array<{ level: string; key: string; fields: Record<string, unknown> }>;
  appended: Array<{ readings: RoutedReading[]; signal: AbortSignal | undefined; commit(): void; fail(e: Error): void }>;
  routed: string[];
  held: Set<number>;
  stopping: boolean;
}

function fake(options: { unrouted?: 'drop' | 'refuse'; acl?: ConstructorParameters<typeof Acl>[0] } = {}): Fake {
  const router = new Router({ routes: [{ topic: 'sensor/#', address: '/queue/telemetry', priority: 4 }] });
  const f: Fake = {
    rejected: [], logged: [], appended: [], routed: [], held: new Set(), stopping: false,
    env: undefined as unknown as PublishEnv,
  };
  f.env = {
    limits: { maxTopicLength: 32, maxTopicLevels: 4 },
    unrouted: options.unrouted ?? 'drop',
    acl: new Acl(options.acl),
    router: { route: (envelope) => { f.routed.push(envelope.topic); return router.route(envelope); } },
    log: { write: (level, key, fields) => { f.logged.push({ level, key, fields }); } },
    now: () => 1_700_000_000_000,
    stopping: () => f.stopping,
    rejected: (reason) => { f.rejected.push(reason); },
    heldByBroker: (_client, messageId) => (f.held.has(messageId) ? Promise.resolve({}) : Promise.reject(new Error('not held'))),
    append: (_session, readings, signal) => new Promise<void>((resolve, reject) => {
      f.appended.push({ readings, signal, commit: resolve, fail: reject });
    }),
  };
  return f;
}

function session(f: Fake, identity = 'dev1'): Session {
  const s: Session = {
    info: { id: 1, transport: 'tcp', remoteAddress: '127.0.0.1', remotePort: 1234 },
    clientId: 'c1', username: identity, identity, qos2: new Qos2Window(),
    pipeline: new PublishPipeline({ maxInFlight: 10, append: (readings, signal) => f.env.append(s, readings, signal) }),
  };
  return s;
}

function publish(f: Fake, packet: Partial<PublishPacket> & { topic: string }, extra: { will?: boolean; session?: Session } = {}): Publish & { results: Array<Error | null> } {
  const results: Array<Error | null> = [];
  return {
    client: {} as Client,
    session: extra.session ?? session(f),
    packet: { cmd: 'publish', qos: 1, dup: false, retain: false, payload: Buffer.from('21.5'), messageId: 7, ...packet } as PublishPacket,
    will: extra.will ?? false,
    done: (error) => { results.push(error); },
    results,
  };
}

function refusal(error: Error | undefined, reason: string): void {
  assert.ok(error instanceof Refusal, `a Refusal, got ${String(error)}`);
  assert.equal(error.reason, reason);
}

describe('publish steps, each alone', () => {
  test('willOnStop: only a will, and only while the gateway stops, is dropped', () => {
    const f = fake();
    assert.equal(willOnStop(publish(f, { topic: 'sensor/a' }, { will: true }), f.env), undefined);
    f.stopping = true;
    refusal(willOnStop(publish(f, { topic: 'sensor/a' }, { will: true }), f.env), 'will_dropped');
    assert.equal(willOnStop(publish(f, { topic: 'sensor/a' }), f.env), undefined, 'an ordinary publish while stopping goes on');
    assert.deepEqual(f.rejected, [], 'a dropped will is not counted as rejected');
  });

  test('topicLimits: too long (bytes) or too deep is refused, counted and logged by its reason', () => {
    const f = fake();
    assert.equal(topicLimits(publish(f, { topic: 'sensor/a/b/c' }), f.env), undefined);
    refusal(topicLimits(publish(f, { topic: `sensor/${'é'.repeat(13)}` }), f.env), 'topic_too_long');
    refusal(topicLimits(publish(f, { topic: 'a/b/c/d/e' }), f.env), 'topic_levels');
    assert.deepEqual(f.rejected, ['topic_too_long', 'topic_levels']);
    assert.deepEqual(f.logged.map((l) => [l.level, l.key, l.fields.clientId]), [['warn', 'topic_too_long', 'c1'], ['warn', 'topic_levels', 'c1']]);
  });

  test('acl: $SYS/ and what the ACL does not allow the identity are denied', () => {
    const f = fake({ acl: [{ user: 'dev1', publish: ['sensor/%u/#'], subscribe: [] }] });
    assert.equal(acl(publish(f, { topic: 'sensor/dev1/t' }), f.env), undefined);
    refusal(acl(publish(f, { topic: 'sensor/dev2/t' }), f.env), 'denied');
    refusal(acl(publish(fake(), { topic: '$SYS/broker/x' }), f.env), 'denied');
    assert.deepEqual(f.rejected, ['denied', 'denied']);
  });

  test('route: the reading carries the exact payload bytes, the clock\'s time and the route\'s address; no match leaves none', () => {
    const f = fake();
    const bytes = Buffer.from([0, 255, 1, 2]);
    const p = publish(f, { topic: 'sensor/line1/t', payload: bytes });
    assert.equal(route(p, f.env), undefined);
    assert.ok(p.reading !== undefined);
    assert.deepEqual(p.reading.payload, bytes);
    assert.equal(p.reading.receivedAt, 1_700_000_000_000);
    assert.equal(p.reading.address, '/queue/telemetry');
    assert.equal(p.reading.topic, 'sensor/line1/t');
    assert.equal(typeof p.reading.id, 'string');
    const stringPayload = publish(f, { topic: 'sensor/x', payload: 'text' as unknown as Buffer });
    route(stringPayload, f.env);
    assert.deepEqual(stringPayload.reading?.payload, Buffer.from('text'));
    const other = publish(f, { topic: 'other/x' });
    assert.equal(route(other, f.env), undefined);
    assert.equal(other.reading, undefined);
  });

  test('unrouted: drop goes on with nothing to store, refuse closes; both counted once as unrouted', () => {
    const drop = fake({ unrouted: 'drop' });
    const dropped = publish(drop, { topic: 'other/x' });
    assert.equal(unrouted(dropped, drop.env), undefined);
    assert.deepEqual(drop.rejected, ['unrouted']);
    assert.deepEqual(drop.logged.map((l) => l.key), ['unrouted']);

    const refuse = fake({ unrouted: 'refuse' });
    refusal(unrouted(publish(refuse, { topic: 'other/x' }), refuse.env), 'unrouted');
    assert.deepEqual(refuse.rejected, ['unrouted'], 'counted once, not again as a refusal');

    const routed = publish(drop, { topic: 'sensor/x' });
    route(routed, drop.env);
    assert.equal(unrouted(routed, drop.env), undefined);
    assert.deepEqual(drop.rejected, ['unrouted'], 'a routed publish is not counted');
  });

  test('dedupeQos2: only a QoS 2 publish to be stored is tracked; only a DUP gets a check', () => {
    const f = fake();
    for (const [packet, will] of [[{ topic: 'sensor/x', qos: 1 }, false], [{ topic: 'sensor/x', qos: 2 }, true]] as const) {
      const p = publish(f, packet, { will });
      route(p, f.env);
      const done = p.done;
      assert.equal(dedupeQos2(p, f.env), undefined);
      assert.equal(p.done, done, `untouched: qos ${packet.qos}${will ? ', a will' : ''}`);
      assert.equal(p.check, undefined);
    }
    const nothing = publish(f, { topic: 'other/x', qos: 2 });
    dedupeQos2(nothing, f.env);
    assert.equal(nothing.session.qos2.size, 0, 'nothing to store: not tracked');

    const first = publish(f, { topic: 'sensor/x', qos: 2, messageId: 9 });
    route(first, f.env);
    dedupeQos2(first, f.env);
    assert.equal(first.check, undefined, 'not a DUP: no check');
    assert.equal(first.session.qos2.size, 1, 'tracked until its append settles');
  });

  test('dedupeQos2: a DUP while the first append is under way is stored only if that append fails', async () => {
    const f = fake();
    const s = session(f);
    const run = async (outcome: Error | null): Promise<boolean> => {
      const first = publish(f, { topic: 'sensor/x', qos: 2, messageId: 9 }, { session: s });
      route(first, f.env);
      dedupeQos2(first, f.env);
      const dup = publish(f, { topic: 'sensor/x', qos: 2, messageId: 9, dup: true }, { session: s });
      route(dup, f.env);
      dedupeQos2(dup, f.env);
      assert.ok(dup.check !== undefined);
      const needed = dup.check();
      let answered = false;
      void needed.then(() => { answered = true; });
      await sleep(5);
      assert.equal(answered, false, 'the check waits for the first append');
      first.done(outcome);
      dup.done(null);
      return needed;
    };
    assert.equal(await run(null), false, 'the first committed: nothing more to store');
    assert.equal(await run(new Error('spool full')), true, 'the first failed: the DUP is stored');
    await sleep(0);
    assert.equal(s.qos2.size, 0, 'nothing tracked once both settled');
  });

  test('dedupeQos2: a DUP with nothing under way asks aedes\' store (held until PUBREL)', async () => {
    const f = fake();
    f.held.add(3);
    for (const [messageId, expected] of [[3, false], [4, true]] as const) {
      const dup = publish(f, { topic: 'sensor/x', qos: 2, messageId, dup: true });
      route(dup, f.env);
      dedupeQos2(dup, f.env);
      assert.equal(await dup.check!(), expected, `packet ${messageId}`);
    }
  });

  test('submit: a publish goes through its connection\'s pipeline and is done once committed', async () => {
    const f = fake();
    const p = publish(f, { topic: 'sensor/x' });
    route(p, f.env);
    submit(p, f.env);
    await sleep(0);
    assert.equal(f.appended.length, 1);
    assert.ok(f.appended[0]!.signal !== undefined, 'a QoS 1 append can be abandoned with its connection');
    assert.deepEqual(p.results, [], 'not done before the commit');
    f.appended[0]!.commit();
    await sleep(0);
    assert.deepEqual(p.results, [null]);
  });

  test('submit: a will goes to the spool directly (its pipeline closed with the connection); an unrouted will is done at once', async () => {
    const f = fake();
    const s = session(f);
    s.pipeline.close();
    const will = publish(f, { topic: 'sensor/x' }, { will: true, session: s });
    route(will, f.env);
    submit(will, f.env);
    assert.equal(f.appended.length, 1);
    assert.equal(f.appended[0]!.signal, undefined);
    f.appended[0]!.fail(new Error('disk'));
    await sleep(0);
    assert.equal(will.results[0]?.message, 'disk');
    const lost = publish(f, { topic: 'other/x' }, { will: true, session: s });
    route(lost, f.env);
    submit(lost, f.env);
    assert.deepEqual(lost.results, [null]);
    assert.equal(f.appended.length, 1);
  });
});

describe('publish steps, in order', () => {
  test('the order of the head of publish-steps.ts', () => {
    assert.deepEqual(PUBLISH_STEPS, [willOnStop, topicLimits, acl, route, unrouted, dedupeQos2]);
  });

  test('the first refusal ends the publish: a denied topic is never routed nor counted as unrouted, nothing is stored', async () => {
    const f = fake({ acl: [{ user: 'dev1', publish: ['sensor/%u/#'], subscribe: [] }], unrouted: 'refuse' });
    const p = publish(f, { topic: 'other/x' });
    runPublish(p, f.env);
    await sleep(0);
    assert.equal(p.results.length, 1);
    refusal(p.results[0] ?? undefined, 'denied');
    assert.deepEqual(f.routed, []);
    assert.deepEqual(f.rejected, ['denied']);
    assert.equal(f.appended.length, 0);
  });

  test('every step before submit runs inside the call: publishes reach the pipeline in arrival order, as one append', async () => {
    const f = fake();
    const s = session(f);
    const ps = ['sensor/1', 'other/2', 'sensor/3'].map((topic) => publish(f, { topic }, { session: s }));
    for (const p of ps) runPublish(p, f.env);
    await sleep(0);
    assert.deepEqual(f.appended.map((a) => a.readings.map((r) => r.topic)), [['sensor/1', 'sensor/3']]);
    f.appended[0]!.commit();
    await sleep(0);
    assert.deepEqual(ps.map((p) => p.results), [[null], [null], [null]], 'the dropped one is done too, in its turn');
  });
});

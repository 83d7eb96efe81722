/** The pure parts of MQTT ingest: the frame guard, ACL matching, the publish pipeline, rate-limited logs. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { RoutedReading } from '../../../src/core/envelope.js';
import { Acl, filterCovers, substitute } from '../../../src/ingest/mqtt/acl.js';
import { FrameGuard } from '../../../src/ingest/mqtt/frame-guard.js';
import { PublishPipeline } from '../../../src/ingest/mqtt/publish-pipeline.js';
import { RateLimitedLog } from '../../../src/core/rate-limited-log.js';
import { memoryLogger } from '../../peers/memory-log.js';
import { connectPacket, publishHeader, publishPacket, sleep } from './helpers.js';

describe('FrameGuard', () => {
  const limits = { maxPayload: 100, maxTopicLength: 10 };
  const connected = (): FrameGuard => {
    const guard = new FrameGuard(limits);
    assert.equal(guard.check(connectPacket('c')), undefined);
    return guard;
  };

  test('valid packets pass, split at any byte', () => {
    const stream = Buffer.concat([connectPacket('dev'), publishPacket('a/b', Buffer.alloc(100), 1), publishPacket('a', 'x', 0),
      Buffer.from([0x40, 0x02, 0x00, 0x01]), Buffer.from([0xc0, 0x00]), publishPacket('t', Buffer.alloc(0), 2), Buffer.from([0xe0, 0x00])]);
    for (let split = 1; split < stream.length; split++) {
      const guard = new FrameGuard(limits);
      assert.equal(guard.check(stream.subarray(0, split)), undefined, `split at ${split}`);
      assert.equal(guard.check(stream.subarray(split)), undefined, `split at ${split}`);
    }
    const byteByByte = new FrameGuard(limits);
    for (const byte of stream) assert.equal(byteByByte.check(Buffer.from([byte])), undefined);
  });

  test('a payload over maxPayload is refused on the header, before the payload', () => {
    assert.equal(connected().check(publishPacket('a/b', Buffer.alloc(100), 1)), undefined);
    assert.equal(connected().check(publishPacket('a/b', Buffer.alloc(101), 1))?.reason, 'too_large');
    const huge = connected().check(publishHeader('a', 20 * 1024 * 1024).subarray(0, 5));
    assert.equal(huge?.reason, 'too_large');
    assert.match(huge!.detail, /PUBLISH of 20971\d+ bytes; mqtt\.maxPayload is 100/);
  });

  test('a topic over maxTopicLength is refused on its length bytes', () => {
    const header = publishHeader('t'.repeat(11), 0, 0);
    assert.equal(connected().check(header.subarray(0, 4))?.reason, 'topic_too_long');
    assert.equal(connected().check(publishPacket('t'.repeat(10), 'x')), undefined);
  });

  test('malformed: not CONNECT first, reserved types and flags, QoS 3, long lengths, wrong ack sizes', () => {
    const cases: Array<[string, Buffer, boolean]> = [
      ['PUBLISH first', publishPacket('a', 'x'), false],
      ['type 0', Buffer.from([0x00, 0x00]), true],
      ['type 15', Buffer.from([0xf0, 0x00]), true],
      ['SUBSCRIBE with flags 0', Buffer.from([0x80, 0x00]), true],
      ['PUBREL with flags 0', Buffer.from([0x60, 0x02, 0, 1]), true],
      ['PUBLISH QoS 3', Buffer.from([0x36, 0x03, 0, 1, 0x61]), true],
      ['5-byte length', Buffer.from([0xc0, 0x80, 0x80, 0x80, 0x80, 0x01]), true],
      ['PUBACK of 3 bytes', Buffer.from([0x40, 0x03, 0, 1, 0]), true],
      ['PINGREQ with a body', Buffer.from([0xc0, 0x01, 0]), true],
      ['PUBLISH without topic', Buffer.from([0x30, 0x01, 0]), true],
      ['PUBLISH shorter than its topic', Buffer.from([0x32, 0x04, 0x00, 0x05, 0x61, 0x62]), true],
    ];
    for (const [name, bytes, afterConnect] of cases) {
      const guard = afterConnect ? connected() : new FrameGuard(limits);
      assert.equal(guard.check(bytes)?.reason, 'malformed', name);
    }
  });

  test('other packets are bounded too (a CONNECT with a huge will or password)', () => {
    const guard = new FrameGuard(limits);
    assert.equal(guard.check(Buffer.from([0x10, 0xff, 0xff, 0x7f]))?.reason, 'too_large');
    assert.ok(guard.maxPacket >= 100 + 10 + 4);
  });
});

describe('Acl', () => {
  test('no acl: everything is allowed', () => {
    assert.equal(new Acl(undefined).allows({ identity: undefined, clientId: 'x' }, 'publish', 'any/topic'), true);
  });

  test('entries for a user, for everyone, with %u and %c; what no entry allows is denied', () => {
    const acl = new Acl([
      { user: 'alice', publish: ['a/#'], subscribe: [] },
      { user: '*', publish: ['u/%u/#', 'c/%c'], subscribe: ['u/%u/+'] },
    ]);
    const alice = { identity: 'alice', clientId: 'c1' };
    const bob = { identity: 'bob', clientId: 'c2' };
    assert.equal(acl.allows(alice, 'publish', 'a/x/y'), true);
    assert.equal(acl.allows(bob, 'publish', 'a/x/y'), false);
    assert.equal(acl.allows(bob, 'publish', 'u/bob/t'), true);
    assert.equal(acl.allows(bob, 'publish', 'u/alice/t'), false);
    assert.equal(acl.allows(bob, 'publish', 'c/c2'), true);
    assert.equal(acl.allows(bob, 'publish', 'c/c1'), false);
    assert.equal(acl.allows(bob, 'subscribe', 'u/bob/+'), true);
    assert.equal(acl.allows(bob, 'subscribe', 'u/bob/#'), false);
    assert.equal(acl.allows({ identity: undefined, clientId: 'c3' }, 'publish', 'u//t'), false);
  });

  test('substitution refuses values that would widen a pattern', () => {
    assert.equal(substitute('d/%u/#', { identity: 'x', clientId: 'c' }), 'd/x/#');
    assert.equal(substitute('d/%c/%u', { identity: 'x', clientId: 'c' }), 'd/c/x');
    for (const bad of ['#', '+', 'a/b', '']) assert.equal(substitute('d/%u/#', { identity: bad, clientId: 'c' }), undefined, bad);
    assert.equal(substitute('plain/topic', { identity: undefined, clientId: '#' }), 'plain/topic');
  });

  test('filterCovers: a requested filter must be within the allowed one, wildcards included', () => {
    const cases: Array<[string, string, boolean]> = [
      ['a/#', 'a/#', true], ['a/#', 'a', true], ['a/#', 'a/b/+', true], ['a/#', '#', false],
      ['a/+', 'a/b', true], ['a/+', 'a/+', true], ['a/+', 'a/#', false], ['a/+', 'a/b/c', false],
      ['a/b', 'a/+', false], ['a/b', 'a/b', true], ['#', '$SYS/x', false], ['+/x', '$SYS/x', false],
      ['$SYS/#', '$SYS/x', true], ['#', 'anything/#', true],
    ];
    for (const [allowed, requested, expected] of cases) assert.equal(filterCovers(allowed, requested), expected, `${allowed} covers ${requested}`);
  });
});

describe('PublishPipeline', () => {
  const reading = (n: number): RoutedReading => ({ id: String(n), topic: 't', payload: Buffer.from(String(n)), receivedAt: 0, address: 'q', priority: 4 });
  type Call = { readings: RoutedReading[]; signal: AbortSignal | undefined; resolve(): void; reject(e: Error): void };
  const recorder = (): { calls: Call[]; append(r: RoutedReading[], s: AbortSignal | undefined): Promise<void> } => {
    const calls: Call[] = [];
    return {
      calls,
      append: (readings, signal) => new Promise<void>((resolve, reject) => { calls.push({ readings, signal, resolve, reject }); }),
    };
  };

  test('publishes of one turn share one append; completions come in submission order', async () => {
    const spool = recorder();
    const pipeline = new PublishPipeline({ append: spool.append, maxInFlight: 10 });
    const done: number[] = [];
    for (let i = 0; i < 4; i++) pipeline.submit({ reading: reading(i), qos: 1 }, () => done.push(i));
    await sleep(0);
    assert.equal(spool.calls.length, 1);
    assert.deepEqual(spool.calls[0]!.readings.map((r) => r.id), ['0', '1', '2', '3']);
    spool.calls[0]!.resolve();
    await sleep(0);
    assert.deepEqual(done, [0, 1, 2, 3]);
  });

  test('QoS 0 and QoS 1/2 never share an append; only QoS 1/2 appends can be abandoned', async () => {
    const spool = recorder();
    const pipeline = new PublishPipeline({ append: spool.append, maxInFlight: 10 });
    const results: Array<string | undefined> = [];
    for (const qos of [0, 0, 1, 2, 0] as const) pipeline.submit({ reading: reading(results.length), qos }, (e) => results.push(e?.message));
    await sleep(0);
    assert.deepEqual(spool.calls.map((c) => [c.readings.length, c.signal !== undefined]), [[2, false], [2, true], [1, false]]);
    pipeline.close();
    assert.equal(spool.calls[1]!.signal!.aborted, true);
    assert.equal(spool.calls[0]!.signal, undefined);
  });

  test('a later publish is completed only after an earlier one, even with nothing to store', async () => {
    const spool = recorder();
    const pipeline = new PublishPipeline({ append: spool.append, maxInFlight: 10 });
    const done: string[] = [];
    pipeline.submit({ reading: reading(1), qos: 1 }, () => done.push('stored'));
    pipeline.submit({ reading: undefined, qos: 1 }, () => done.push('dropped'));
    await sleep(10);
    assert.deepEqual(done, []);
    spool.calls[0]!.resolve();
    await sleep(0);
    assert.deepEqual(done, ['stored', 'dropped']);
  });

  test('maxInFlight counts readings; a failed append fails its publishes only', async () => {
    const spool = recorder();
    const pipeline = new PublishPipeline({ append: spool.append, maxInFlight: 2 });
    const results: Array<[number, string | undefined]> = [];
    for (let i = 0; i < 5; i++) pipeline.submit({ reading: reading(i), qos: 1 }, (e) => results.push([i, e?.message]));
    await sleep(0);
    assert.deepEqual(spool.calls.map((c) => c.readings.length), [2]);
    assert.equal(pipeline.inFlight, 2);
    spool.calls[0]!.reject(new Error('boom'));
    await sleep(0);
    assert.deepEqual(spool.calls.map((c) => c.readings.length), [2, 2]);
    spool.calls[1]!.resolve();
    await sleep(0);
    spool.calls[2]!.resolve();
    await sleep(0);
    assert.deepEqual(results, [[0, 'boom'], [1, 'boom'], [2, undefined], [3, undefined], [4, undefined]]);
  });

  test('a check holds the entries behind it; a reading found stored is not appended again', async () => {
    const spool = recorder();
    const pipeline = new PublishPipeline({ append: spool.append, maxInFlight: 10 });
    let answer!: (needed: boolean) => void;
    const done: number[] = [];
    pipeline.submit({ reading: reading(0), qos: 2, check: () => new Promise((resolve) => { answer = resolve; }) }, () => done.push(0));
    pipeline.submit({ reading: reading(1), qos: 1 }, () => done.push(1));
    await sleep(0);
    assert.equal(spool.calls.length, 0, 'the entry after the check went first');
    answer(false);
    await sleep(0);
    assert.deepEqual(spool.calls.map((c) => c.readings.map((r) => r.id)), [['1']]);
    spool.calls[0]!.resolve();
    await sleep(0);
    assert.deepEqual(done, [0, 1]);
  });

  test('after close, waiting QoS 1/2 publishes fail without an append; QoS 0 ones are still stored', async () => {
    const spool = recorder();
    const pipeline = new PublishPipeline({ append: spool.append, maxInFlight: 1 });
    const results: Array<string | undefined> = [];
    pipeline.submit({ reading: reading(0), qos: 1 }, (e) => results.push(e?.message));
    pipeline.submit({ reading: reading(1), qos: 1 }, (e) => results.push(e?.message));
    pipeline.submit({ reading: reading(2), qos: 0 }, (e) => results.push(e?.message));
    await sleep(0);
    pipeline.close();
    spool.calls[0]!.reject(new Error('aborted'));
    await sleep(0);
    assert.deepEqual(spool.calls.map((c) => c.readings.map((r) => r.id)), [['0'], ['2']]);
    spool.calls[1]!.resolve();
    await sleep(0);
    assert.equal(results.length, 3);
    assert.equal(results[0], 'aborted');
    assert.match(String(results[1]), /connection closed before the reading was stored/);
    assert.equal(results[2], undefined);
  });
});

describe('RateLimitedLog', () => {
  test('at most `burst` lines per interval and key; the next line says how many were left out', () => {
    const { log, lines } = memoryLogger();
    let now = 0;
    const limited = new RateLimitedLog(log, { burst: 2, intervalMs: 1000, now: () => now });
    for (let i = 0; i < 5; i++) limited.write('warn', 'a', { i }, 'bad input');
    limited.write('warn', 'b', {}, 'other kind');
    assert.deepEqual(lines.map((l) => [l.msg, l.i]), [['bad input', 0], ['bad input', 1], ['other kind', undefined]]);
    now = 1000;
    limited.write('warn', 'a', { i: 5 }, 'bad input');
    assert.equal(lines.at(-1)!.suppressed, 3);
    assert.equal(lines.at(-1)!.i, 5);
  });
});

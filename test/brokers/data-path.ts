/**
 * The data-path suite every broker runs (test/brokers/*.test.ts, one broker a file): the spool
 * draining through the real AMQP upstream to a real broker over TLS with a client certificate.
 * Exactly once and in order, across a broker outage and a restart mid-stream; never more in
 * flight than the broker's credit; every message durable; TLS and SASL refusals retried at the
 * capped interval. What differs between brokers comes from BrokerUnderTest (brokers.ts).
 */
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { after, before, beforeEach, describe, test } from 'node:test';
import type { Message } from 'rhea';
import { payloadOf } from '../peers/amqp-consumer.js';
import { makeTestPki, type TestPki } from '../peers/certs.js';
import { readings, startPipeline, until, type Pipeline, type PipelineOptions } from '../upstream/pipeline.js';
import { PLAIN_USER, type BrokerKind, type BrokerUnderTest } from './brokers.js';

export function assertInOrder(messages: Message[], ids: string[], what: string): void {
  const got = messages.map((m) => String(m.message_id));
  assert.equal(new Set(got).size, got.length, `${what}: duplicates`);
  assert.deepEqual(got, ids, `${what}: not exactly the readings, in order`);
}

/** Retries logged at the capped interval (credentials or certificates refused) with this code. */
export function cappedRetries(pipe: Pipeline, code: string): number {
  return pipe.lines.filter((l) => l.code === code && /retrying at the capped interval/.test(String(l.msg))).length;
}

/** `until`, and on a timeout the pipeline's last warnings and errors, so a failure says what the gateway saw. */
export async function waitFor(pipe: Pipeline, condition: () => boolean | Promise<boolean>, what: string, timeoutMs?: number): Promise<void> {
  try {
    await until(condition, what, timeoutMs);
  } catch (error) {
    const lines = pipe.lines.filter((l) => l.level === 'warn' || l.level === 'error').slice(-8)
      .map((l) => JSON.stringify({ msg: l.msg, address: l.address, code: l.code, condition: l.condition, err: l.err }));
    throw new Error(`${(error as Error).message}; spool ${JSON.stringify(pipe.spool.stats())}; outcomes ${JSON.stringify(pipe.forwarder.stats().outcomes)}\n` +
      `last warnings and errors:\n${lines.join('\n')}`);
  }
}

export function describeDataPath(kind: BrokerKind): void {
  let pki: TestPki;
  let broker: BrokerUnderTest;

  before(async () => {
    pki = await makeTestPki();
    broker = await kind.start(pki);
  });

  // A test that failed while the broker was stopped must not fail the ones after it.
  beforeEach(async () => {
    if (broker !== undefined && !broker.running) await broker.start();
  });

  after(async () => {
    await broker?.destroy();
    if (pki !== undefined) await rm(pki.dir, { recursive: true, force: true });
  });

  const pipeline = (options: Partial<PipelineOptions> = {}): Promise<Pipeline> =>
    startPipeline({ url: broker.url, pki, ...options, upstream: { ...broker.login, ...options.upstream } });

  describe(`data path to ${kind.name} (TLS, client certificate)`, () => {
    test('a backlog drains exactly once, in order per address, every message durable with the mapped properties', async () => {
      const [addressA, addressB] = [await broker.queue('drain-a'), await broker.queue('drain-b')];
      const a = readings(1500, addressA, 'a');
      const b = readings(500, addressB, 'b', { priority: 7 });
      const pipe = await pipeline({ properties: { line: 'L1', shift: 2 } });
      try {
        for (let i = 0; i < 500; i++) await pipe.spool.append([a[3 * i]!, b[i]!, a[3 * i + 1]!, a[3 * i + 2]!]);
        await waitFor(pipe, () => pipe.spool.stats().depth === 0, 'the spool to drain');
        assert.equal(pipe.forwarder.stats().outcomes.accepted, 2000);
      } finally {
        await pipe.stop();
      }
      const gotA = await broker.consume('drain-a', 1500);
      const gotB = await broker.consume('drain-b', 500);
      assertInOrder(gotA, a.map((r) => r.id), 'drain-a');
      assertInOrder(gotB, b.map((r) => r.id), 'drain-b');
      // The spec's default is not durable (RabbitMQ 4.2 follows it): the header must say so, every time.
      const notDurable = [...gotA, ...gotB].filter((m) => m.durable !== true).map((m) => String(m.message_id));
      assert.deepEqual(notDurable, [], 'messages that arrived without header.durable = true');
      const [first] = gotB;
      assert.deepEqual(payloadOf(first!), b[0]!.payload);
      assert.equal(first!.subject, b[0]!.topic);
      assert.equal(first!.priority, 7);
      assert.equal((first!.creation_time as Date).getTime(), b[0]!.receivedAt);
      assert.deepEqual(first!.application_properties, { line: 'L1', shift: 2, gateway: 'test-gw' });
    });

    test('credit: the link offers what the broker granted, no transfer goes beyond it, the backlog stays on disk', async () => {
      const address = await broker.queue('credit');
      const pipe = await pipeline();
      // rhea's session buffer holds 2048 unsettled deliveries: the link offers no more than that.
      const offered = Math.min(broker.grantedCredit, 2048);
      let maxCredit = 0;
      let maxInFlight = 0;
      const sample = (): void => {
        maxCredit = Math.max(maxCredit, pipe.upstream.credit());
        maxInFlight = Math.max(maxInFlight, pipe.spool.stats().inFlight);
      };
      const sampler = setInterval(sample, 1);
      try {
        pipe.upstream.link(address, 'at-least-once');
        await waitFor(pipe, () => pipe.upstream.credit() > 0, 'the broker to grant credit');
        sample();
        const backlog = readings(5000, address, 'c');
        for (let i = 0; i < backlog.length; i += 500) await pipe.spool.append(backlog.slice(i, i + 500));
        await waitFor(pipe, () => pipe.spool.stats().depth === 0, 'the spool to drain');
        assertInOrder(await broker.consume('credit', backlog.length), backlog.map((r) => r.id), 'credit');
      } finally {
        clearInterval(sampler);
        await pipe.stop();
      }
      assert.equal(maxCredit, offered, `the credit ${kind.name} grants a sender`);
      // A broker detaches a link that sends beyond its credit (amqp:link:transfer-limit-exceeded).
      assert.deepEqual(pipe.lines.filter((l) => l.msg === 'upstream closed the sender link'), [], 'the broker closed the link');
      // Credit limits transfers, not unsettled deliveries: a broker that grants more before it settles
      // (RabbitMQ 4 does) may have more than its credit unsettled. What is leased must still fit
      // rhea's session buffer, or the backlog is being pulled into memory.
      assert.ok(maxInFlight <= 2048, `${maxInFlight} readings leased at once`);
      assert.ok(maxInFlight > 0);
    });

    test('broker stopped: readings wait in the spool; started again: the backlog drains, nothing lost or reordered', async () => {
      const address = await broker.queue('outage');
      const pipe = await pipeline();
      const sent: string[] = [];
      try {
        await waitFor(pipe, () => pipe.upstream.state().connected, 'connected');
        const first = readings(300, address, 'before');
        await pipe.spool.append(first);
        sent.push(...first.map((r) => r.id));
        await waitFor(pipe, () => pipe.spool.stats().depth === 0, 'the first batch to drain');

        const failedAttempts = (): number => pipe.lines.filter((l) => l.msg === 'upstream connection failed; retrying').length;
        const failedBefore = failedAttempts();
        await broker.stop();
        await waitFor(pipe, () => !pipe.upstream.state().connected, 'the upstream to notice the outage');
        const during = readings(700, address, 'during');
        for (let i = 0; i < during.length; i += 50) await pipe.spool.append(during.slice(i, i + 50));
        sent.push(...during.map((r) => r.id));
        // Two attempts refused after the readings were spooled: the forwarder had every chance to lose them.
        const failedAfterAppend = failedAttempts();
        await waitFor(pipe, () => failedAttempts() >= Math.max(failedBefore, failedAfterAppend) + 2, 'two failed reconnection attempts');
        assert.equal(pipe.spool.stats().depth, 700, 'readings wait in the spool while the broker is down');

        await broker.start();
        await waitFor(pipe, () => pipe.spool.stats().depth === 0, 'the backlog to drain after the broker is back', 120_000);
        assert.ok(pipe.upstream.state().reconnects >= 1);
      } finally {
        await pipe.stop();
      }
      assertInOrder(await broker.consume('outage', sent.length), sent, 'outage');
    });

    test('a broker restart in the middle of a stream loses nothing, and first arrivals are in order', async () => {
      const address = await broker.queue('restart');
      const pipe = await pipeline();
      const stream = readings(3000, address, 'stream');
      try {
        await waitFor(pipe, () => pipe.upstream.state().connected, 'connected');
        const appending = (async () => {
          for (let i = 0; i < stream.length; i += 10) {
            await pipe.spool.append(stream.slice(i, i + 10));
            await new Promise((r) => setTimeout(r, 2));
          }
        })();
        await waitFor(pipe, () => pipe.forwarder.stats().outcomes.accepted > 300, 'the stream to be flowing');
        await broker.restart();
        await appending;
        await waitFor(pipe, () => pipe.spool.stats().depth === 0, 'the stream to drain after the restart', 120_000);
      } finally {
        await pipe.stop();
      }
      const ids = (await broker.consume('restart', stream.length, 5000)).map((m) => String(m.message_id));
      const seen = new Set(ids);
      assert.deepEqual(stream.filter((r) => !seen.has(r.id)).map((r) => r.id), [], 'every reading arrived');
      // At-least-once: a reading in flight at the restart may arrive twice (same message_id).
      assert.deepEqual([...seen], stream.map((r) => r.id), 'first arrivals in order');
    });

    test('a server certificate from a CA the gateway does not trust is refused and retried at the cap', async () => {
      const pipe = await pipeline({ ca: pki.foreignCa.cert });
      try {
        await waitFor(pipe, () => cappedRetries(pipe, 'UPSTREAM_TLS') >= 3, 'three refusals retried at the cap', 30_000);
        assert.equal(pipe.upstream.state().connected, false);
      } finally {
        await pipe.stop();
      }
    });

    test('a client certificate from a foreign CA is refused by the broker, and the gateway retries', async () => {
      const pipe = await pipeline({ client: pki.foreignClient });
      try {
        await waitFor(pipe, () => pipe.upstream.state().lastError !== undefined, 'the refusal', 30_000);
        await waitFor(pipe, () => pipe.lines.filter((l) => /retrying/.test(String(l.msg))).length >= 2, 'two retries', 30_000);
        assert.equal(pipe.upstream.state().connected, false);
      } finally {
        await pipe.stop();
      }
    });

    test('SASL PLAIN over TLS delivers; a wrong password is refused and retried at the capped interval', async () => {
      const address = await broker.queue('plain-tls');
      const plain = { sasl: 'plain' as const, username: PLAIN_USER.name, password: PLAIN_USER.password };
      const good = await pipeline({ upstream: plain });
      const wrong = await pipeline({ upstream: { ...plain, password: 'not-the-password-7f3a' } });
      try {
        const sent = readings(20, address, 'p');
        await good.spool.append(sent);
        await waitFor(good, () => good.spool.stats().depth === 0, 'the spool to drain');
        assertInOrder(await broker.consume('plain-tls', 20), sent.map((r) => r.id), 'plain-tls');
        await waitFor(wrong, () => cappedRetries(wrong, 'UPSTREAM_AUTH') >= 2, 'the refused password to be retried at the cap', 30_000);
        assert.equal(wrong.upstream.state().connected, false);
        assert.ok(!JSON.stringify(wrong.lines).includes('not-the-password-7f3a'), 'the password reached a log line');
      } finally {
        await good.stop();
        await wrong.stop();
      }
    });
  });

  // rabbitmqctl can close client connections and knows EXTERNAL; ActiveMQ has neither here.
  if (kind.name.startsWith('RabbitMQ')) {
    describe(`${kind.name} closing connections`, () => {
      // RabbitMQ 4 closes the connection with a close frame; 3.10's AMQP 1.0 plugin ends each session instead.
      const ends = kind.name === 'RabbitMQ 3.10' ? 'session' : 'connection';
      const what = ends === 'connection' ? 'the connection (a close frame): the gateway reconnects'
        : 'the session (3.10\'s plugin keeps the connection): the gateway attaches the link again';
      test(`the broker closes ${what}, and what was in flight is sent again`, async () => {
        assert.ok(broker.closeConnections);
        assert.equal(broker.closeEnds, ends);
        const address = await broker.queue('closed-by-broker');
        const pipe = await pipeline();
        const sent = readings(2000, address, 'k');
        try {
          await waitFor(pipe, () => pipe.upstream.state().connected, 'connected');
          await pipe.spool.append(sent.slice(0, 1000));
          await waitFor(pipe, () => pipe.forwarder.stats().outcomes.accepted > 100, 'readings flowing');
          await broker.closeConnections();
          if (ends === 'connection') {
            await waitFor(pipe, () => pipe.upstream.state().reconnects >= 1 && pipe.upstream.state().connected, 'a new connection');
          } else {
            await waitFor(pipe, () => pipe.lines.some((l) => l.msg === 'upstream closed the sender link' && l.address === address), 'the session ended');
          }
          await pipe.spool.append(sent.slice(1000));
          await waitFor(pipe, () => pipe.spool.stats().depth === 0, `the spool to drain over a new ${ends}`, 60_000);
          if (ends === 'session') assert.equal(pipe.upstream.state().reconnects, 0, 'the connection was kept');
        } finally {
          await pipe.stop();
        }
        const ids = (await broker.consume('closed-by-broker', sent.length, 5000)).map((m) => String(m.message_id));
        assert.deepEqual([...new Set(ids)], sent.map((r) => r.id), 'every reading, first arrivals in order');
      });
    });

    describe(`SASL EXTERNAL on ${kind.name}`, () => {
      test('the certificate CN logs in; an unknown CN is refused and retried at the capped interval', async () => {
        const address = await broker.queue('external');
        const known = await pipeline({ upstream: { sasl: 'external' } });
        const unknown = await pipeline({ client: pki.unknownClient, upstream: { sasl: 'external' } });
        try {
          const sent = readings(10, address, 'x');
          await known.spool.append(sent);
          await waitFor(known, () => known.spool.stats().depth === 0, 'the spool to drain');
          assertInOrder(await broker.consume('external', 10), sent.map((r) => r.id), 'external');
          await waitFor(unknown, () => cappedRetries(unknown, 'UPSTREAM_AUTH') >= 2, 'the unknown CN to be retried at the cap', 30_000);
          assert.equal(unknown.upstream.state().lastError?.condition, 'amqp:unauthorized-access');
          assert.equal(unknown.upstream.state().connected, false);
        } finally {
          await known.stop();
          await unknown.stop();
        }
      });
    });
  }
}

/**
 * The real gateway process across steps of its system clock: libfaketime (test/peers/faketime.ts)
 * starts it in 1970, as a Raspberry Pi without an RTC boots, and the test steps the clock while it
 * runs, as NTP would. Readings come in over MQTT and go out to a Qpid Proton receiver that reports
 * each message's creation_time and ttl (test/peers/proton-capture.ts).
 */
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { describe, test } from 'node:test';
import mqtt from 'mqtt';
import { makeTestPki } from '../peers/certs.js';
import { startProtonReceiver } from '../peers/proton.js';
import { startCapture, type CapturedMessage } from '../peers/proton-capture.js';
import { fakeClock } from '../peers/faketime.js';
import { startGateway, type GatewayProcess, type LogLine } from '../peers/gateway.js';
import { freePort } from '../peers/ports.js';

const HOUR = 3_600_000;
const STEPPED = 'the system clock was stepped: stored readings keep their age and expiry';
const EXPIRED = 'spool: readings expired before they could be forwarded';
/** Slack for comparing a time the gateway took with one the test took around it (two processes). */
const SLACK_MS = 1000;

const ROUTES = [{ topic: 'short/#', address: '/queue/short', ttl: '2s' }, { topic: '#', address: '/queue/long', ttl: '1h' }];

/** The samples of /metrics that a test reads, by name with labels. */
async function metrics(gw: GatewayProcess): Promise<Map<string, number>> {
  const text = await (await fetch(`http://127.0.0.1:${gw.httpPort}/metrics`)).text();
  return new Map(text.split('\n').filter((l) => l.startsWith('uplink_')).map((l) => {
    const i = l.lastIndexOf(' ');
    return [l.slice(0, i), Number(l.slice(i + 1))];
  }));
}

async function until(what: string, condition: () => Promise<boolean>, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await condition())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** An MQTT device that remembers, by payload, the real time just before its publish and just after the PUBACK. */
async function device(gw: GatewayProcess): Promise<{ publish(topic: string, body: string): Promise<void>; sent: Map<string, [number, number]>; end(): Promise<void> }> {
  const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${gw.mqttPort}`, { reconnectPeriod: 0 });
  const sent = new Map<string, [number, number]>();
  return {
    sent,
    async publish(topic, body) {
      const before = Date.now();
      await client.publishAsync(topic, body, { qos: 1 });
      sent.set(body, [before, Date.now()]);
    },
    end: () => client.endAsync(),
  };
}

/** Each message arrived with the real time of its arrival at the gateway, and what is left of its ttl. */
function assertTimes(messages: CapturedMessage[], sent: Map<string, [number, number]>, ttl: number, arrived: number): void {
  for (const m of messages) {
    const [before, after] = sent.get(m.body)!;
    assert.ok(m.creation_time !== null && m.creation_time >= before - SLACK_MS && m.creation_time <= after + SLACK_MS,
      `${m.body}: creation_time ${new Date(m.creation_time ?? 0).toISOString()} (ttl ${String(m.ttl)} ms), published between ${new Date(before).toISOString()} and ${new Date(after).toISOString()}`);
    // The ttl is what was left when it was sent: its ttl less its real age then (arrived is later).
    assert.ok(m.ttl !== null && m.ttl <= ttl && m.ttl >= ttl - (arrived - before) - SLACK_MS,
      `${m.body}: ttl ${m.ttl} ms of ${ttl}, its real age when sent at most ${arrived - before} ms`);
  }
}

const steps = (gw: GatewayProcess): LogLine[] => gw.logs.filter((l) => l.msg === STEPPED);
/** Readings the gateway logged as expired so far (one sweep may take them in several rounds). */
const expiredCount = (gw: GatewayProcess): number => gw.logs.filter((l) => l.msg === EXPIRED).reduce((sum, l) => sum + Number(l.count), 0);

describe('the gateway across steps of its system clock (libfaketime)', () => {
  test('readings published in 1970 reach the upstream after the NTP step with their real creation_time and ttl; one whose real age passed its ttl is dropped and counted', async (t) => {
    const clock = await fakeClock(Date.UTC(1970, 0, 1, 0, 0, 30));
    // Nothing listens there yet: the upstream comes up only after the step.
    const port = await freePort();
    const gw = await startGateway({ env: clock.env, config: { upstream: { url: `amqp://127.0.0.1:${port}`, sasl: 'anonymous' }, routes: ROUTES } });
    t.after(() => gw.stop());
    assert.match(String(gw.logs[0]!.time), /^1970-01-01T/, 'the gateway runs on the fake clock');
    const dev = await device(gw);
    t.after(() => dev.end());
    await dev.publish('long/a', 'a1');
    await dev.publish('short/b', 's1');
    await dev.publish('long/a', 'a2');

    await clock.setReal();
    const step = await gw.waitForLog((l) => l.msg === STEPPED);
    assert.equal(step.level, 'warn');
    assert.match(String(step.from), /^1970-01-01T/);
    assert.ok(Math.abs(Date.parse(String(step.to)) - Date.now()) < 10_000, `stepped to ${String(step.to)}`);
    assert.equal(step.stepMs, Date.parse(String(step.to)) - Date.parse(String(step.from)));
    await dev.publish('long/a', 'a3');

    // s1's real age passes its 2 s; the others, 56 years "old" by the stored 1970 stamps, stay.
    await gw.waitForLog(() => expiredCount(gw) >= 1);
    assert.equal(expiredCount(gw), 1);
    await until('the metrics to count the expired reading', async () => (await metrics(gw)).get('uplink_dropped_total{reason="expired"}') === 1);
    assert.equal((await metrics(gw)).get('uplink_spool_depth'), 3);

    const upstream = await startCapture({ port });
    t.after(() => upstream.stop());
    const messages = await upstream.waitForMessages(3, 45_000);
    const arrived = Date.now();
    assert.deepEqual(messages.map((m) => [m.address, m.body]), [['/queue/long', 'a1'], ['/queue/long', 'a2'], ['/queue/long', 'a3']]);
    assertTimes(messages, dev.sent, HOUR, arrived);
    assert.equal(steps(gw).length, 1, 'one line for the one step');
  });

  test('a link with credit waiting at the moment of the step: what is sent at once carries the new frame', async (t) => {
    // The forwarder leases as soon as credit comes, before the spool's next maintenance round (every
    // second) records the step. The spool must hand out times in the new frame all the same, or the
    // message leaves with a ttl of 1 ms (expiresAt in 1970 less the time now) and a 1970 creation_time.
    const clock = await fakeClock(Date.UTC(1970, 0, 1, 0, 0, 30));
    const upstream = await startCapture({ hold: true });
    t.after(() => upstream.stop());
    const gw = await startGateway({ env: clock.env, config: { upstream: { url: upstream.url, sasl: 'anonymous' }, routes: ROUTES } });
    t.after(() => gw.stop());
    const dev = await device(gw);
    t.after(() => dev.end());
    for (const body of ['b1', 'b2', 'b3']) await dev.publish('long/b', body);
    await upstream.waitForLink();

    await clock.setReal();
    await upstream.grant();
    const messages = await upstream.waitForMessages(3);
    assertTimes(messages, dev.sent, HOUR, Date.now());
    await gw.waitForLog((l) => l.msg === STEPPED);
    assert.equal((await metrics(gw)).get('uplink_dropped_total{reason="expired"}'), 0);
  });

  test('a step back by a year: readings expire by their real age, not a year late; creation_time is in the new frame; /metrics keeps up', async (t) => {
    // A clock a year ahead (a wrong RTC, a bad NTP server) that is then set right.
    const clock = await fakeClock(Date.now() + 365 * 24 * HOUR);
    const port = await freePort();
    const gw = await startGateway({ env: clock.env, config: { upstream: { url: `amqp://127.0.0.1:${port}`, sasl: 'anonymous' }, routes: ROUTES } });
    t.after(() => gw.stop());
    const dev = await device(gw);
    t.after(() => dev.end());
    await dev.publish('long/c', 'c1');
    await dev.publish('short/d', 's1');
    await dev.publish('short/d', 's2');
    // A scrape before the step: /metrics caches the spool's figures for 50 ms, and must not for a year.
    const before = await metrics(gw);
    assert.equal(before.get('uplink_spool_depth')! + before.get('uplink_dropped_total{reason="expired"}')!, 3);

    await clock.setReal();
    const step = await gw.waitForLog((l) => l.msg === STEPPED);
    assert.ok(Number(step.stepMs) < -364 * 24 * HOUR, `a step back by a year: ${String(step.stepMs)} ms`);
    await dev.publish('long/c', 'c2');

    await gw.waitForLog(() => expiredCount(gw) >= 2);
    assert.equal(expiredCount(gw), 2);
    await until('the metrics to count the expired readings', async () => {
      const m = await metrics(gw);
      return m.get('uplink_dropped_total{reason="expired"}') === 2 && m.get('uplink_spool_depth') === 2;
    });

    const upstream = await startCapture({ port });
    t.after(() => upstream.stop());
    const messages = await upstream.waitForMessages(2, 45_000);
    assert.deepEqual(messages.map((m) => m.body), ['c1', 'c2']);
    // The new frame is the real time: c1's creation_time is when it really arrived, not a year on.
    assertTimes(messages, dev.sent, HOUR, Date.now());
    assert.equal(steps(gw).length, 1);
  });

  test('TLS to the upstream needs the time: in 1970 the broker certificate is not yet valid; once NTP sets the clock the readings go', async (t) => {
    const pki = await makeTestPki();
    t.after(() => rm(pki.dir, { recursive: true, force: true }));
    const receiver = await startProtonReceiver({ pki });
    t.after(() => receiver.stop());
    const clock = await fakeClock(Date.UTC(1970, 0, 1, 0, 0, 30));
    const gw = await startGateway({ env: clock.env, config: {
      upstream: { url: receiver.url.replace('127.0.0.1', 'localhost'), sasl: 'external', tls: { ca: pki.ca.cert, cert: pki.client.cert, key: pki.client.key } },
      routes: ROUTES,
    } });
    t.after(() => gw.stop());
    const refused = await gw.waitForLog((l) => l.component === 'upstream' && l.level === 'error');
    assert.equal(refused.code, 'UPSTREAM_TLS');
    assert.match(String(refused.err), /CERT_NOT_YET_VALID/);
    const dev = await device(gw);
    t.after(() => dev.end());
    await dev.publish('long/e', 'e1');
    await dev.publish('long/e', 'e2');

    await clock.setReal();
    // A refused certificate is retried at the capped interval (30 s, README "Reconnect").
    await gw.waitForLog((l) => l.component === 'upstream' && l.msg === 'upstream connected', 45_000);
    const transfers = await receiver.waitForTransfers(2, 15_000);
    assert.deepEqual(transfers.map((x) => x.address), ['/queue/long', '/queue/long']);
    assert.equal(expiredCount(gw), 0);
  });
});

/**
 * Modbus TCP against the same pymodbus slave, serving TCP on a free loopback port: two unit ids
 * behind one connection, an exception response, a unit that stops answering, a response cut short
 * (by a relay, tcp-cutter.ts), and the server going away and coming back on the same port.
 */
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { after, before, describe, test } from 'node:test';
import { freePort } from '../../peers/ports.js';
import { startSynSink } from '../../peers/syn-sink.js';
import { busConfig, startModbus, tempDir, until, within } from './helpers.js';
import { startSlave } from './slave.js';
import { startTcpCutter } from './tcp-cutter.js';

let dir: string;

before(async () => { dir = await tempDir(); });
after(async () => { await rm(dir, { recursive: true, force: true }); });

function tcpBus(port: number): ReturnType<typeof busConfig> {
  return busConfig({
    name: 'plc', tcp: { host: '127.0.0.1', port }, timeout: '300ms', retries: 1, offlineBackoff: { base: '300ms', cap: '1s' },
    devices: [
      { name: 'press', unitId: 1, interval: '50ms', points: [
        { name: 'force', function: 'holding', address: 0, type: 'float32', unit: 'kN' },
        { name: 'beyond', function: 'input', address: 199, count: 2 },
      ] },
      { name: 'oven', unitId: 2, interval: '50ms', points: [{ name: 'temp', function: 'input', address: 0, type: 'int16', scale: 0.1, unit: '°C' }] },
    ],
  });
}

describe('modbus TCP (pymodbus on a loopback port)', () => {
  test('two unit ids behind one connection are polled; an exception is a bad reading; a silent unit goes offline alone', async () => {
    const slave = await startSlave({ units: [1, 2] });
    await slave.set(1, 'hr', 0, [0x4148, 0x0000]); // 12.5
    await slave.set(2, 'ir', 0, [0xFF38]); // -200 * 0.1
    const h = await startModbus(dir, [tcpBus(slave.port)]);
    try {
      await until(() => h.of('factory/plc/press/force').length >= 2 && h.of('factory/plc/oven/temp').length >= 2
        && h.of('factory/plc/press/beyond').length >= 1, 'readings of both units');
      assert.ok(h.of('factory/plc/press/force').every((r) => r.body.value === 12.5 && r.body.unit === 'kN'));
      assert.ok(h.of('factory/plc/oven/temp').every((r) => r.body.value === -20));
      assert.equal(h.of('factory/plc/press/beyond')[0]!.body.error, 'exception 2 (illegal data address)');

      await slave.mute(1);
      await until(() => h.of('factory/plc/press/force').some((r) => r.body.quality === 'bad'), 'press offline');
      assert.equal(h.ingest.stats().buses.plc!.devices.press!.online, false);
      const oven = h.of('factory/plc/oven/temp').length;
      await until(() => h.of('factory/plc/oven/temp').length >= oven + 10, 'the oven polled on over the same connection');
      assert.equal(h.ingest.stats().buses.plc!.opens, 1, 'a silent unit does not cost the connection');
      await slave.unmute(1);
      await until(() => h.ingest.stats().buses.plc!.devices.press!.online, 'press back');
    } finally {
      await h.stop();
      await slave.kill();
    }
  });

  test('a response cut short (7 bytes) costs the connection, not the device: counted modbus_short_frame, the connection is opened again and the device answers on', async () => {
    const slave = await startSlave({ units: [1] });
    await slave.set(1, 'hr', 0, [0x4148, 0x0000]); // 12.5
    const cutter = await startTcpCutter({ host: '127.0.0.1', port: slave.port });
    const h = await startModbus(dir, [busConfig({
      name: 'plc', tcp: { host: '127.0.0.1', port: cutter.port }, timeout: '300ms', retries: 1, offlineBackoff: { base: '300ms', cap: '1s' },
      devices: [{ name: 'press', unitId: 1, interval: '50ms', points: [{ name: 'force', function: 'holding', address: 0, type: 'float32' }] }],
    })]);
    const topic = 'factory/plc/press/force';
    try {
      await until(() => h.of(topic).length >= 2, 'readings');
      // The MBAP header and the unit id: modbus-serial waits for the rest, and would read every later response against it.
      cutter.cutNext(7);
      await until(() => cutter.cut === 1, 'a response cut');
      const after = h.of(topic).length;
      await until(() => h.of(topic).slice(after).filter((r) => r.body.quality === 'good').length >= 5, 'the device answering on', 10_000);
      assert.ok(h.readings().every((r) => r.body.quality === 'bad' || r.body.value === 12.5), JSON.stringify(h.readings().map((r) => r.body)));
      assert.equal(h.ingest.stats().rejected.modbus_short_frame, 1);
      assert.equal(h.ingest.stats().rejected.modbus_offline, undefined, 'the retry on the new connection answered');
      assert.equal(cutter.connections(), 2, 'the connection was opened again');
      assert.ok(h.lines.some((l) => l.msg === 'modbus response dropped: the response stopped after 7 bytes; the connection is opened again (its stream cannot be resynchronised)'
        && l.reason === 'short_frame' && l.device === 'press'));
    } finally {
      await h.stop();
      await cutter.stop();
      await slave.kill();
    }
  });

  test('a spool that does not keep up holds the polls back: no more requests than readings waiting', async () => {
    const slave = await startSlave({ units: [1] });
    let open: () => void = () => {};
    let inAppend = 0;
    const gate = new Promise<void>((resolve) => { open = resolve; });
    const h = await startModbus(dir, [busConfig({
      name: 'plc', tcp: { host: '127.0.0.1', port: slave.port },
      devices: [{ name: 'press', unitId: 1, interval: '10ms', points: [{ name: 'force', function: 'holding', address: 0 }] }],
    })], { highWater: 5, gate: (readings) => { inAppend += readings; return gate; } });
    try {
      await until(() => h.ingest.stats().spool.holding, 'the polls held back');
      const held = h.ingest.stats();
      // The readings of the append that waits, five queued behind it; not a request more.
      assert.equal(held.spool.pending, 5);
      assert.ok(inAppend >= 1);
      assert.equal((await slave.requests()).total, inAppend + 5);
      assert.equal(held.buses.plc!.requests, inAppend + 5);
      open();
      await until(() => h.readings().length >= 20, 'polling resumed once the spool took the readings');
      assert.equal(h.ingest.stats().spool.holding, false);
    } finally {
      open();
      await h.stop();
      await slave.kill();
    }
  });

  test('a write goes out while the polls wait for room in the spool (a write needs none), and is confirmed', async () => {
    const slave = await startSlave({ units: [1] });
    const h = await startModbus(dir, [busConfig({
      name: 'plc', tcp: { host: '127.0.0.1', port: slave.port },
      devices: [{ name: 'press', unitId: 1, interval: '10ms', points: [
        { name: 'force', function: 'holding', address: 0 },
        { name: 'limit', function: 'holding', address: 5, writable: true },
      ] }],
    })], { highWater: 5, gate: (_readings, signal) => new Promise((_, reject) => signal?.addEventListener('abort', () => reject(signal.reason))), stopGraceMs: 200 });
    try {
      await until(() => h.ingest.stats().spool.holding, 'the polls held back');
      const result = await within(h.ingest.writePoint({ bus: 'plc', device: 'press', point: 'limit', value: 77 }), 10_000, 'the write');
      assert.deepEqual(result, { status: 'done' });
      assert.deepEqual(await slave.get(1, 'hr', 5, 1), [77]);
      assert.equal(h.ingest.stats().spool.holding, true, 'the polls still wait');
    } finally {
      await h.stop();
      await slave.kill();
    }
  });

  test('stop() while the polls wait for a spool that never takes them: it ends, and counts what it could not store', async () => {
    const slave = await startSlave({ units: [1] });
    const h = await startModbus(dir, [busConfig({
      name: 'plc', tcp: { host: '127.0.0.1', port: slave.port },
      devices: [{ name: 'press', unitId: 1, interval: '10ms', points: [{ name: 'force', function: 'holding', address: 0 }] }],
    })], { highWater: 5, gate: (_readings, signal) => new Promise((_, reject) => signal?.addEventListener('abort', () => reject(signal.reason))), stopGraceMs: 200 });
    try {
      await until(() => h.ingest.stats().spool.holding, 'the polls held back');
    } finally {
      await h.ingest.stop();
      await h.spool.stop();
      await slave.kill();
    }
    assert.ok((h.ingest.stats().rejected.stopped ?? 0) >= 5, JSON.stringify(h.ingest.stats().rejected));
    assert.ok(h.lines.some((l) => l.msg === 'modbus: readings polled but not stored: the spool had no room for them before the stop grace ran out'));
  });

  test('started again after a stop that gave up on a stuck spool: its readings are stored again', async () => {
    const slave = await startSlave({ units: [1] });
    await slave.set(1, 'hr', 0, [5]);
    let stuck = true;
    const h = await startModbus(dir, [busConfig({
      name: 'plc', tcp: { host: '127.0.0.1', port: slave.port },
      devices: [{ name: 'press', unitId: 1, interval: '10ms', points: [{ name: 'force', function: 'holding', address: 0 }] }],
    })], {
      highWater: 5, stopGraceMs: 200,
      gate: (_readings, signal) => (stuck ? new Promise((_, reject) => signal?.addEventListener('abort', () => reject(signal.reason))) : Promise.resolve()),
    });
    try {
      await until(() => h.ingest.stats().spool.holding, 'the polls held back');
      await h.ingest.stop();
      assert.ok((h.ingest.stats().rejected.stopped ?? 0) >= 5, 'the stop gave up on what waited');
      stuck = false;
      await h.ingest.start();
      await until(() => h.readings().length >= 10, 'readings stored after the new start');
      assert.ok(h.readings().every((r) => r.body.value === 5));
    } finally {
      await h.stop();
      await slave.kill();
    }
  });

  test('connection attempts that time out (SYNs dropped) leave no socket behind: each failed attempt is closed before the next', async () => {
    const sink = await startSynSink();
    const sockets = (): number => process.getActiveResourcesInfo().filter((r) => r === 'TCPSocketWrap').length;
    const before = sockets();
    const h = await startModbus(dir, [busConfig({
      name: 'plc', tcp: { host: '127.0.0.1', port: sink.port, connectTimeout: '100ms' },
      devices: [{ name: 'press', unitId: 1, points: [{ name: 'force', function: 'holding', address: 0 }] }],
    })], { reopen: { baseMs: 20, capMs: 40 } });
    try {
      const attempts = (): number => h.lines.filter((l) => l.bus === 'plc' && /^modbus bus (unavailable|still unavailable)/.test(String(l.msg))).length;
      await until(() => attempts() >= 8, 'eight failed connection attempts');
      // At most the attempt in progress.
      assert.ok(sockets() - before <= 1, `${sockets() - before} sockets left after ${attempts()} attempts`);
      assert.match(String(h.lines.find((l) => l.msg === 'modbus bus unavailable; reopening with backoff')!.reason), /timed out/i);
    } finally {
      await h.stop();
      await sink.stop();
    }
  });

  test('the server goes away: the bus reconnects with backoff, its devices are offline meanwhile, and come back with the server', async () => {
    const port = await freePort();
    let slave = await startSlave({ tcpPort: port, units: [1, 2] });
    await slave.set(1, 'hr', 0, [0x4148, 0x0000]);
    const h = await startModbus(dir, [tcpBus(port)]);
    try {
      await until(() => h.of('factory/plc/press/force').length >= 1, 'a first reading');
      await slave.kill();
      await until(() => h.of('factory/plc/oven/temp').some((r) => r.body.quality === 'bad')
        && h.of('factory/plc/press/force').some((r) => r.body.quality === 'bad'), 'both devices offline');
      assert.ok(h.lines.some((l) => l.msg === 'modbus bus unavailable; reopening with backoff' && l.bus === 'plc'));
      assert.equal(h.ingest.stats().connections, 0);
      slave = await startSlave({ tcpPort: port, units: [1, 2] });
      await slave.set(1, 'hr', 0, [0x4148, 0x0000]);
      await until(() => h.of('factory/plc/press/force').at(-1)?.body.quality === 'good', 'press back', 15_000);
      assert.equal(h.of('factory/plc/press/force').at(-1)!.body.value, 12.5);
      assert.ok(h.ingest.stats().buses.plc!.opens >= 2);
      assert.equal(h.ingest.stats().connections, 1);
    } finally {
      await h.stop();
      await slave.kill();
    }
  });
});

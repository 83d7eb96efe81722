/**
 * Modbus RTU against pymodbus (an independent slave) on a socat pty pair: several unit ids on one
 * bus, every data type and byte order, exception responses, a slave that stops answering and
 * comes back.
 */
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ptyPair, type PtyPair } from '../serial/helpers.js';
import { busConfig, startModbus, tempDir, until } from './helpers.js';
import { startSlave, type Slave } from './slave.js';

/** Registers of `bytes` (big-endian, two bytes each). */
function registers(bytes: Buffer): number[] {
  const out: number[] = [];
  for (let i = 0; i < bytes.length; i += 2) out.push(bytes.readUInt16BE(i));
  return out;
}

let dir: string;
let pty: PtyPair;
let slave: Slave;

before(async () => {
  dir = await tempDir();
  pty = await ptyPair(join(dir, 'gw'), join(dir, 'slave'));
  slave = await startSlave({ rtu: join(dir, 'slave'), units: [1, 2, 3] });
});

after(async () => {
  await slave?.kill();
  await pty?.kill();
  await rm(dir, { recursive: true, force: true });
});

function rtuBus(devices: Parameters<typeof busConfig>[0]['devices'], extra: Partial<Parameters<typeof busConfig>[0]> = {}): ReturnType<typeof busConfig> {
  return busConfig({
    name: 'line1', rtu: { path: join(dir, 'gw'), baudRate: 115200, parity: 'none' },
    timeout: '300ms', retries: 1, offlineBackoff: { base: '400ms', cap: '2s' }, devices, ...extra,
  });
}

describe('modbus RTU (pymodbus on a pty)', () => {
  test('three unit ids on one bus: every data type, byte and word order, scale and offset, coils and discrete inputs', async () => {
    const float64 = Buffer.alloc(8);
    float64.writeDoubleBE(-9876.54321);
    await slave.set(1, 'hr', 0, [
      0xFB2E, // int16 -1234
      0xD431, // uint16 54321
      0xF8A4, 0x32EB, // int32 -123456789, big/big (ABCD)
      0x5E00, 0xB2D0, // uint32 3000000000 = 0xB2D05E00, word order little (CDAB)
      0xF642, 0x79E9, // float32 123.456 = 0x42F6E979, byte order little (BADC)
      ...registers(Buffer.from(float64).reverse()), // float64, little/little (DCBA)
      ...registers(Buffer.from('PUMP-07\u0000', 'latin1')), // string of 8 bytes
      0b1000, // bit 3
      650, // 650 * 0.1 - 40 = 25
      0x4996, 0x02D2, 0xC996, 0x02D2, // two int32: 1234567890 (0x499602D2) and -912915758 (0xC99602D2)
    ]);
    await slave.set(2, 'ir', 10, [0x41AC, 0x0000]); // float32 21.5, big/big
    await slave.set(3, 'co', 0, [1, 0, 1, 1, 0]);
    await slave.set(3, 'di', 7, [1]);
    const started = Date.now();
    const h = await startModbus(dir, [rtuBus([
      {
        name: 'meter', unitId: 1, interval: '200ms', points: [
          { name: 'i16', function: 'holding', address: 0, type: 'int16' },
          { name: 'u16', function: 'holding', address: 1, type: 'uint16', unit: 'rpm' },
          { name: 'i32', function: 'holding', address: 2, type: 'int32' },
          { name: 'u32', function: 'holding', address: 4, type: 'uint32', wordOrder: 'little' },
          { name: 'f32', function: 'holding', address: 6, type: 'float32', byteOrder: 'little' },
          { name: 'f64', function: 'holding', address: 8, type: 'float64', byteOrder: 'little', wordOrder: 'little' },
          { name: 'tag', function: 'holding', address: 12, type: 'string', length: 8 },
          { name: 'alarm', function: 'holding', address: 16, type: 'bit', bit: 3 },
          { name: 'temp', function: 'holding', address: 17, type: 'uint16', scale: 0.1, offset: -40, unit: '°C' },
          { name: 'pair', function: 'holding', address: 18, type: 'int32', count: 2 },
        ],
      },
      { name: 'room', unitId: 2, interval: '200ms', points: [{ name: 'temp', function: 'input', address: 10, type: 'float32', unit: '°C' }] },
      {
        name: 'valves', unitId: 3, interval: '200ms', points: [
          { name: 'open', function: 'coil', address: 0, count: 5 },
          { name: 'door', function: 'discrete', address: 7 },
        ],
      },
    ])]);
    try {
      const expected: Record<string, unknown> = {
        'factory/line1/meter/i16': -1234, 'factory/line1/meter/u16': 54321, 'factory/line1/meter/i32': -123456789,
        'factory/line1/meter/u32': 3000000000, 'factory/line1/meter/f64': -9876.54321, 'factory/line1/meter/tag': 'PUMP-07',
        'factory/line1/meter/alarm': true, 'factory/line1/meter/temp': 25, 'factory/line1/meter/pair': [1234567890, -912915758],
        'factory/line1/room/temp': 21.5, 'factory/line1/valves/open': [true, false, true, true, false], 'factory/line1/valves/door': true,
      };
      const topics = [...Object.keys(expected), 'factory/line1/meter/f32'];
      await until(() => topics.every((t) => h.of(t).length >= 2), 'two readings of every point');
      for (const [topic, value] of Object.entries(expected)) {
        for (const reading of h.of(topic)) assert.deepEqual(reading.body.value, value, topic);
      }
      // float32 has no exact decimal: compare what the device's bits mean.
      const f32 = Buffer.from([0x42, 0xF6, 0xE9, 0x79]).readFloatBE(0);
      assert.equal(h.of('factory/line1/meter/f32')[0]!.body.value, f32);
      const sample = h.of('factory/line1/meter/temp')[0]!.body;
      assert.deepEqual(Object.keys(sample), ['value', 'unit', 'quality', 'time']);
      assert.equal(sample.unit, '°C');
      assert.equal(sample.quality, 'good');
      const time = Date.parse(sample.time);
      assert.ok(time >= started && time <= Date.now(), `time is the time of the poll: ${sample.time}`);
      assert.deepEqual(h.ingest.stats().buses.line1!.devices, {
        meter: { unitId: 1, online: true }, room: { unitId: 2, online: true }, valves: { unitId: 3, online: true },
      });
      assert.deepEqual(Object.keys(h.ingest.stats().rejected).filter((k) => k.startsWith('modbus_')), [], 'no faults on a clean line');
    } finally {
      await h.stop();
    }
  });

  test('an exception response is counted and gives a reading of quality bad; the device stays online and its other points keep coming', async () => {
    await slave.set(1, 'hr', 0, [42]);
    const h = await startModbus(dir, [rtuBus([{
      name: 'meter', unitId: 1, interval: '100ms', points: [
        { name: 'ok', function: 'holding', address: 0 },
        // The slave has 200 registers: 198-202 is an illegal data address.
        { name: 'beyond', function: 'holding', address: 198, count: 5 },
      ],
    }])]);
    try {
      await until(() => h.of('factory/line1/meter/beyond').length >= 3 && h.of('factory/line1/meter/ok').length >= 3, 'polls of both points');
      for (const reading of h.of('factory/line1/meter/beyond')) {
        assert.deepEqual(reading.body, { value: null, quality: 'bad', error: 'exception 2 (illegal data address)', time: reading.body.time });
      }
      assert.ok(h.of('factory/line1/meter/ok').every((r) => r.body.value === 42));
      const stats = h.ingest.stats();
      assert.ok((stats.rejected.modbus_exception ?? 0) >= 3);
      assert.equal(stats.rejected.modbus_offline, undefined, 'an exception is an answer: the device is not offline');
      assert.equal(stats.buses.line1!.devices.meter!.online, true);
    } finally {
      await h.stop();
    }
  });

  test('a slave that stops answering is marked offline once (bad readings, a metric, one log line) and probed with backoff while the other device keeps its pace; it comes back', async () => {
    await slave.set(1, 'hr', 0, [7]);
    await slave.set(2, 'hr', 0, [8]);
    const h = await startModbus(dir, [rtuBus([
      { name: 'a', unitId: 1, interval: '50ms', points: [{ name: 'x', function: 'holding', address: 0 }, { name: 'y', function: 'holding', address: 1 }] },
      { name: 'b', unitId: 2, interval: '50ms', points: [{ name: 'x', function: 'holding', address: 0 }] },
    ])]);
    try {
      await until(() => h.of('factory/line1/a/x').length >= 2, 'device a polled');
      await slave.mute(1);
      const badOfA = (): Array<{ topic: string; body: { error?: string } }> => h.readings().filter((r) => r.topic.startsWith('factory/line1/a/') && r.body.quality === 'bad');
      await until(() => badOfA().length >= 2, 'bad readings of device a', 10_000);
      assert.equal(h.ingest.stats().buses.line1!.devices.a!.online, false);
      const offline = badOfA();
      assert.deepEqual(offline.map((r) => r.topic).sort(), ['factory/line1/a/x', 'factory/line1/a/y'], 'one bad reading per point');
      assert.match(offline[0]!.body.error!, /^offline: no response/);
      const before = await slave.requests();
      const bBefore = h.of('factory/line1/b/x').length;
      // While a is silent: b keeps coming, a is only probed now and then (no retries).
      await until(() => h.of('factory/line1/b/x').length >= bBefore + 40, 'device b polled on');
      const during = await slave.requests();
      const probes = (during.byUnit['1'] ?? 0) - (before.byUnit['1'] ?? 0);
      const polls = (during.byUnit['2'] ?? 0) - (before.byUnit['2'] ?? 0);
      assert.ok(probes < polls / 4, `offline device a got ${probes} requests while b got ${polls}`);
      assert.equal(h.ingest.stats().rejected.modbus_offline, 1, 'offline once');
      const warnings = h.lines.filter((l) => l.msg === 'modbus device not answering; marked offline, polled again with backoff');
      assert.equal(warnings.length, 1);
      assert.deepEqual([warnings[0]!.bus, warnings[0]!.device, warnings[0]!.unitId, warnings[0]!.level], ['line1', 'a', 1, 'warn']);
      assert.ok(h.readings().filter((r) => r.topic.startsWith('factory/line1/a/')).every((r) => r.body.quality === 'good' || /^offline/.test(r.body.error!)));

      await slave.unmute(1);
      await until(() => h.ingest.stats().buses.line1!.devices.a!.online, 'device a back', 10_000);
      const count = h.of('factory/line1/a/x').length;
      await until(() => h.of('factory/line1/a/x').length >= count + 2, 'device a polled again');
      assert.deepEqual(h.of('factory/line1/a/x').at(-1)!.body.value, 7);
      assert.ok(h.lines.some((l) => l.msg === 'modbus device answering again' && l.device === 'a'));
    } finally {
      await slave.unmute(1);
      await h.stop();
    }
  });

  test('report by exception: a change within the deadband is not reported, one beyond it is; an unchanged value comes with the heartbeat', async () => {
    await slave.set(1, 'hr', 5, [100]);
    await slave.set(2, 'hr', 5, [7]);
    const h = await startModbus(dir, [rtuBus([
      { name: 'a', unitId: 1, interval: '20ms', reportByException: { deadband: 5, heartbeat: '1h' }, points: [{ name: 'v', function: 'holding', address: 5 }] },
      { name: 'b', unitId: 2, interval: '20ms', reportByException: { deadband: 0, heartbeat: '300ms' }, points: [{ name: 'v', function: 'holding', address: 5 }] },
    ])]);
    try {
      await until(() => h.of('factory/line1/a/v').length === 1, 'the first value of a');
      const polled = async (n: number): Promise<void> => {
        const start = (await slave.requests()).byUnit['1'] ?? 0;
        await until(async () => ((await slave.requests()).byUnit['1'] ?? 0) >= start + n, `${n} more polls of a`);
      };
      await slave.set(1, 'hr', 5, [103]);
      await polled(10);
      await slave.set(1, 'hr', 5, [110]);
      await until(() => h.of('factory/line1/a/v').length === 2, 'the change beyond the deadband');
      await polled(10);
      assert.deepEqual(h.of('factory/line1/a/v').map((r) => r.body.value), [100, 110]);

      await until(() => h.of('factory/line1/b/v').length >= 3, 'heartbeats of b');
      const requests = (await slave.requests()).byUnit['2'] ?? 0;
      const readings = h.of('factory/line1/b/v');
      assert.ok(readings.every((r) => r.body.value === 7));
      assert.ok(requests > 2 * readings.length, `b was polled ${requests} times for ${readings.length} readings`);
    } finally {
      await h.stop();
    }
  });
});

/**
 * ModbusIngest.writePoint against pymodbus over TCP: what is refused before anything is sent,
 * a write confirmed by the device (read back from it, and polled again at once), and what each
 * answer of the device makes of the command: an exception refuses it, except 5 (acknowledge: it
 * is done), 6 (busy) and 10/11 (a Modbus gateway says the device behind it does not answer: the
 * device is offline) that make it unavailable; a device that does not answer makes it unavailable
 * and the device offline.
 */
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { after, afterEach, before, beforeEach, describe, test } from 'node:test';
import { busConfig, startModbus, tempDir, until, type Harness } from './helpers.js';
import { startSlave, type Slave } from './slave.js';

let dir: string;
let slave: Slave;
let h: Harness | undefined;

before(async () => {
  dir = await tempDir();
  slave = await startSlave({ units: [1] });
});

beforeEach(async () => {
  await slave.exception(1, 0);
  await slave.unmute(1);
  await slave.set(1, 'hr', 0, [0, 0, 0, 0, 0, 0]);
});

afterEach(async () => {
  await h?.stop();
  h = undefined;
});

after(async () => {
  await slave?.kill();
  await rm(dir, { recursive: true, force: true });
});

const POINT = { bus: 'plc', device: 'boiler', point: 'setpoint' };

/** One device whose points are polled once an hour: it stays online unless a write finds otherwise. */
async function start(): Promise<Harness> {
  h = await startModbus(dir, [busConfig({
    name: 'plc', tcp: { host: '127.0.0.1', port: slave.port }, timeout: '300ms', retries: 1, offlineBackoff: { base: '200ms', cap: '400ms' },
    devices: [{ name: 'boiler', unitId: 1, interval: '1h', points: [
      { name: 'setpoint', function: 'holding', address: 0, type: 'int16', scale: 0.5, writable: true, min: -10, max: 90 },
      { name: 'pump', function: 'coil', address: 3, writable: true },
      { name: 'flow', function: 'input', address: 0 },
      { name: 'locked', function: 'holding', address: 5 },
    ] }],
  })]);
  const harness = h;
  await until(() => harness.readings().length >= 4, 'the first poll of every point');
  return harness;
}

describe('modbus writes (ModbusIngest.writePoint, pymodbus over TCP)', () => {
  test('what cannot be written is refused before anything is sent, with a code and the reason', async () => {
    const harness = await start();
    const before = (await slave.requests()).total;
    const cases: Array<[Partial<Parameters<Harness['ingest']['writePoint']>[0]>, string, RegExp]> = [
      [{ ...POINT, bus: 'nope' }, 'unknown_point', /no modbus bus named nope/],
      [{ ...POINT, device: 'nope' }, 'unknown_point', /no device nope on modbus bus plc/],
      [{ ...POINT, point: 'nope' }, 'unknown_point', /no point nope on device boiler/],
      [{ ...POINT, point: 'flow' }, 'read_only', /input points can only be read/],
      [{ ...POINT, point: 'locked' }, 'read_only', /not configured writable: true/],
      [{ ...POINT, value: 95 }, 'out_of_range', /above the point's max 90/],
      [{ ...POINT, value: 21.25 }, 'invalid_value', /whole steps of 0.5/],
      [{ ...POINT, value: 'hot' }, 'invalid_value', /must be a number/],
    ];
    for (const [command, code, reason] of cases) {
      const result = await harness.ingest.writePoint({ ...POINT, value: 1, ...command });
      assert.equal(result.status, 'refused', JSON.stringify(command));
      assert.equal((result as { code: string }).code, code, JSON.stringify(command));
      assert.match((result as { reason: string }).reason, reason);
    }
    assert.equal((await slave.requests()).total, before, 'nothing sent');
  });

  test('a write confirmed by the device is done: the device has the value, and the point is polled again at once', async () => {
    const harness = await start();
    assert.deepEqual(await harness.ingest.writePoint({ ...POINT, value: 21.5 }), { status: 'done' });
    assert.deepEqual(await slave.get(1, 'hr', 0, 1), [43]);
    assert.deepEqual(await harness.ingest.writePoint({ ...POINT, point: 'pump', value: true }), { status: 'done' });
    assert.deepEqual(await slave.get(1, 'co', 3, 1), [1]);
    // Polled once an hour, but read back after the write.
    await until(() => harness.of('factory/plc/boiler/setpoint').at(-1)?.body.value === 21.5, 'the written value reported');
    await until(() => harness.of('factory/plc/boiler/pump').at(-1)?.body.value === true, 'the written coil reported');
    assert.ok(harness.lines.some((l) => l.msg === 'modbus write confirmed by the device' && l.point === 'setpoint' && l.fn === 6));
  });

  test('the device answers with an exception: 2 refuses the write, 5 (acknowledge) makes it done, 6 (busy) unavailable; the device stays online', async () => {
    const harness = await start();
    const cases: Array<[number, Record<string, unknown>]> = [
      [2, { status: 'refused', code: 'device_exception', reason: 'the device refused the write: exception 2 (illegal data address)' }],
      [5, { status: 'done' }],
      [6, { status: 'unavailable', reason: 'the device is busy (exception 6 (slave device busy))' }],
    ];
    for (const [code, expected] of cases) {
      await slave.exception(1, code, [6]);
      assert.deepEqual(await harness.ingest.writePoint({ ...POINT, value: 10 }), expected, `exception ${code}`);
    }
    assert.deepEqual(await slave.get(1, 'hr', 0, 1), [0], 'an exception changes nothing');
    assert.equal(harness.ingest.stats().buses.plc!.devices.boiler!.online, true);
    assert.equal(harness.ingest.stats().rejected.modbus_offline, undefined);
  });

  test('exceptions 10 and 11 (a Modbus gateway cannot reach the device) make the write unavailable and the device offline, as no answer does', async () => {
    for (const code of [10, 11]) {
      const harness = await start();
      await slave.exception(1, code);
      const result = await harness.ingest.writePoint({ ...POINT, value: 10 });
      assert.equal(result.status, 'unavailable', `exception ${code}: ${JSON.stringify(result)}`);
      assert.match((result as { reason: string }).reason, new RegExp(`no confirmation from device boiler: exception ${code} \\(gateway`));
      assert.equal(harness.ingest.stats().buses.plc!.devices.boiler!.online, false, `exception ${code}`);
      assert.equal(harness.ingest.stats().rejected.modbus_offline, 1);
      assert.equal(harness.ingest.stats().rejected.modbus_gateway, 2, 'the first attempt and its retry');
      // Its points get a reading of quality bad, and a poll (a probe) gets the same answer: still offline.
      await until(() => harness.of('factory/plc/boiler/setpoint').at(-1)?.body.quality === 'bad', 'a bad reading');
      assert.match(harness.of('factory/plc/boiler/setpoint').at(-1)!.body.error!, new RegExp(`^offline: exception ${code} `));
      const probes = (await slave.requests()).total;
      await until(async () => (await slave.requests()).total >= probes + 2, 'two probes');
      assert.equal(harness.ingest.stats().buses.plc!.devices.boiler!.online, false);
      await slave.exception(1, 0);
      await until(() => harness.ingest.stats().buses.plc!.devices.boiler!.online, 'the device back');
      await h!.stop();
      h = undefined;
    }
  });

  test('a device that does not answer a write (online until then): unavailable, not done, and the device offline', async () => {
    const harness = await start();
    await slave.mute(1);
    const result = await harness.ingest.writePoint({ ...POINT, value: 10 });
    assert.deepEqual(result, { status: 'unavailable', reason: 'no confirmation from device boiler: no response' });
    assert.equal(harness.ingest.stats().buses.plc!.devices.boiler!.online, false);
    assert.equal(harness.ingest.stats().rejected.modbus_timeout, 2);
    // Offline now: the next write is not even sent.
    assert.deepEqual(await harness.ingest.writePoint({ ...POINT, value: 10 }), { status: 'unavailable', reason: 'device boiler is not answering' });
  });
});

/**
 * Units of Modbus ingest without a line: the codec (every type and order, scale, refusals), the
 * schema (defaults, inheritance, errors as path: message), report by exception, the translation of
 * modbus-serial's errors, and the RTU line's framing fed byte by byte.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { ConfigError } from '../../../src/config/issues.js';
import { parseConfig } from '../../../src/config/load.js';
import { decodePoint, encodePoint } from '../../../src/ingest/modbus/codec.js';
import type { ModbusPointConfig, ModbusType, Order } from '../../../src/ingest/modbus/config.js';
import { translateFault } from '../../../src/ingest/modbus/connection.js';
import { Reporter } from '../../../src/ingest/modbus/report.js';
import { responseLength } from '../../../src/ingest/modbus/rtu-line.js';
import { defaultInterFrameDelay } from '../../../src/ingest/modbus/bus.js';
import { busConfig } from './helpers.js';

function point(overrides: Partial<ModbusPointConfig>): ModbusPointConfig {
  return {
    name: 'p', function: 'holding', address: 0, type: 'uint16', count: 1, byteOrder: 'big', wordOrder: 'big', scale: 1, offset: 0,
    interval: 1000, writable: true, ...overrides,
  };
}

function issuesOf(yaml: string): string[] {
  try {
    parseConfig(yaml, { source: 'test.yaml', baseDir: '/tmp' });
  } catch (err) {
    assert.ok(err instanceof ConfigError);
    return err.issues.map((i) => `${i.path}: ${i.message}`);
  }
  return [];
}

describe('modbus codec', () => {
  test('float32 123.456 in the four orders: ABCD, BADC, CDAB, DCBA', () => {
    const value = Buffer.from([0x42, 0xF6, 0xE9, 0x79]).readFloatBE(0);
    const cases: Array<[Order, Order, number[]]> = [
      ['big', 'big', [0x42F6, 0xE979]], ['little', 'big', [0xF642, 0x79E9]],
      ['big', 'little', [0xE979, 0x42F6]], ['little', 'little', [0x79E9, 0xF642]],
    ];
    for (const [byteOrder, wordOrder, registers] of cases) {
      const p = point({ type: 'float32', byteOrder, wordOrder });
      assert.deepEqual(decodePoint(p, registers), { ok: true, value }, `${byteOrder}/${wordOrder}`);
      assert.deepEqual(encodePoint(p, value), { ok: true, kind: 'registers', registers }, `${byteOrder}/${wordOrder}`);
    }
  });

  test('every numeric type and order survives encode then decode (seeded: MODBUS_SEED)', () => {
    const seed = Number(process.env.MODBUS_SEED ?? Date.now() % 2 ** 31);
    console.log(`codec seed: ${seed} (replay with MODBUS_SEED=${seed})`);
    const typed: Record<string, fc.Arbitrary<number>> = {
      int16: fc.integer({ min: -32768, max: 32767 }), uint16: fc.integer({ min: 0, max: 65535 }),
      int32: fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }), uint32: fc.integer({ min: 0, max: 2 ** 32 - 1 }),
      float32: fc.float({ noNaN: true, noDefaultInfinity: true }).map(Math.fround), float64: fc.double({ noNaN: true, noDefaultInfinity: true }),
    };
    fc.assert(fc.property(
      fc.constantFrom(...Object.keys(typed)).chain((type) => fc.tuple(fc.constant(type), fc.array(typed[type]!, { minLength: 1, maxLength: 4 }))),
      fc.constantFrom<Order>('big', 'little'), fc.constantFrom<Order>('big', 'little'),
      ([type, values], byteOrder, wordOrder) => {
        const p = point({ type: type as ModbusType, count: values.length, byteOrder, wordOrder });
        const encoded = encodePoint(p, values.length === 1 ? values[0] : values);
        assert.ok(encoded.ok && encoded.kind === 'registers', JSON.stringify(encoded));
        const decoded = decodePoint(p, encoded.registers);
        assert.ok(decoded.ok);
        // -0 and 0 are the same reading (JSON writes both as 0).
        const plain = (v: unknown): unknown => (Array.isArray(v) ? v.map((x: number) => x + 0) : (v as number) + 0);
        assert.deepEqual(plain(decoded.value), plain(values.length === 1 ? values[0] : values));
      },
    ), { seed, numRuns: 500 });
  });

  test('scale and offset both ways; a value between steps, out of the type or of min/max is refused', () => {
    const temp = point({ type: 'int16', scale: 0.1, offset: -40, min: -40, max: 120 });
    assert.deepEqual(decodePoint(temp, [650]), { ok: true, value: 25 });
    assert.deepEqual(decodePoint(temp, [0xFFFF]), { ok: true, value: -40.1 });
    assert.deepEqual(encodePoint(temp, 21.5), { ok: true, kind: 'registers', registers: [615] });
    assert.deepEqual(encodePoint(temp, 21.55), { ok: false, code: 'invalid_value', error: '21.55 is not representable: the point stores whole steps of 0.1' });
    assert.deepEqual(encodePoint(temp, 121), { ok: false, code: 'out_of_range', error: "121 is above the point's max 120" });
    assert.deepEqual(encodePoint(point({ type: 'uint16' }), 70000), { ok: false, code: 'out_of_range', error: '70000 is outside what uint16 holds' });
    assert.deepEqual(encodePoint(point({ type: 'uint16' }), -1), { ok: false, code: 'out_of_range', error: '-1 is outside what uint16 holds' });
    assert.deepEqual(encodePoint(point({ type: 'uint16' }), '7'), { ok: false, code: 'invalid_value', error: 'must be a number (uint16)' });
    assert.deepEqual(encodePoint(point({ type: 'uint16', count: 2 }), 7), { ok: false, code: 'invalid_value', error: 'must be an array of 2 values' });
  });

  test('strings, bits of a register, coils; a float that is not a number is no value', () => {
    const tag = point({ type: 'string', length: 5 });
    assert.deepEqual(decodePoint(tag, [0x4142, 0x4344, 0x4500]), { ok: true, value: 'ABCDE' });
    assert.deepEqual(decodePoint(point({ type: 'string', length: 6, byteOrder: 'little' }), [0x4241, 0x0043, 0x0000]), { ok: true, value: 'ABC' });
    assert.deepEqual(encodePoint(tag, 'AB'), { ok: true, kind: 'registers', registers: [0x4142, 0x0000, 0x0000] });
    assert.deepEqual(encodePoint(tag, 'ABCDEF'), { ok: false, code: 'out_of_range', error: 'is 6 bytes long; the point holds 5' });
    assert.deepEqual(decodePoint(point({ type: 'bit', bit: 15 }), [0x8000]), { ok: true, value: true });
    assert.deepEqual(decodePoint(point({ type: 'bit', bit: 0 }), [0x8000]), { ok: true, value: false });
    const coils = point({ function: 'coil', type: 'bit', count: 3 });
    assert.deepEqual(decodePoint(coils, [true, false, true, false, false, false, false, false]), { ok: true, value: [true, false, true] });
    assert.deepEqual(encodePoint(coils, [true, 0, 1]), { ok: true, kind: 'bits', bits: [true, false, true] });
    assert.deepEqual(encodePoint(point({ function: 'coil', type: 'bit' }), 'on'), { ok: false, code: 'invalid_value', error: 'must be true or false (or 1 or 0)' });
    assert.deepEqual(decodePoint(point({ type: 'float32' }), [0x7FC0, 0x0000]), { ok: false, error: 'the device sent NaN (not a number)' });
    assert.deepEqual(decodePoint(point({ type: 'float32' }), [0x7F80, 0x0000]), { ok: false, error: 'the device sent Infinity (not a number)' });
  });
});

describe('modbus config', () => {
  test('defaults from the Modbus specifications, and intervals and report by exception inherited from the device', () => {
    const bus = busConfig({
      name: 'line1', rtu: { path: '/dev/ttyUSB0' },
      devices: [{ name: 'm', unitId: 3, interval: '250ms', reportByException: { deadband: 0.5 }, points: [
        { name: 'a', function: 'holding', address: 0 },
        { name: 'b', function: 'coil', address: 4, interval: 5, reportByException: false },
      ] }],
    });
    assert.deepEqual(bus.rtu, { path: '/dev/ttyUSB0', baudRate: 19200, dataBits: 8, parity: 'even', stopBits: 1,
      rs485: { echo: false } });
    assert.deepEqual([bus.timeout, bus.retries, bus.interFrameDelay, bus.offlineBackoff, bus.topic],
      [1000, 2, undefined, { base: 1000, cap: 60_000 }, 'factory/{bus}/{device}/{point}']);
    const [a, b] = bus.devices[0]!.points;
    assert.deepEqual([a!.type, a!.interval, a!.reportByException, a!.byteOrder, a!.wordOrder, a!.writable], ['uint16', 250, { deadband: 0.5, heartbeat: 60_000 }, 'big', 'big', false]);
    assert.deepEqual([b!.type, b!.interval, b!.reportByException], ['bit', 5000, undefined]);
    // 3.5 characters of 11 bits at 19200 baud; the spec's fixed 1.75 ms above it; none on TCP.
    assert.ok(Math.abs(defaultInterFrameDelay(bus) - 2.005) < 0.001);
    assert.equal(defaultInterFrameDelay(busConfig({ name: 'x', rtu: { path: '/dev/x', baudRate: 115200 }, devices: bus.devices as never })), 1.75);
  });

  test('every mistake is reported as path: message', () => {
    assert.deepEqual(issuesOf(`
modbus:
  buses:
    - name: line1
      rtu: { path: /dev/ttyUSB0 }
      tcp: { host: plc }
      topic: "factory/{bus}/{line}"
      devices:
        - name: m
          unitId: 0
          points:
            - { name: v, function: input, address: 0, writable: true }
            - { name: v, function: coil, address: 65535, count: 2, type: int16 }
            - { name: s, function: holding, address: 0, type: string }
            - { name: r, function: holding, address: 0, type: float64, count: 32 }
            - { name: b, function: holding, address: 0, type: bit }
        - { name: m, unitId: 0, points: [{ name: x, function: holding, address: 0, wordOrder: middle }] }
`).sort(), [
      'modbus.buses[0].devices[0].points[0].writable: input points can only be read',
      'modbus.buses[0].devices[0].points[1].address: the point runs past address 65535',
      'modbus.buses[0].devices[0].points[1].type: must be bit for coil points',
      'modbus.buses[0].devices[0].points[2].length: is required for type string',
      'modbus.buses[0].devices[0].points[3].count: needs 128 registers; one request reads at most 125',
      'modbus.buses[0].devices[0].points[4].bit: is required for type bit on a register (0-15)',
      'modbus.buses[0].devices[1].points[0].wordOrder: must be big or little',
      'modbus.buses[0].topic: has {line}; known are {bus}, {device}, {point} and {unitId}',
    ].sort());
    assert.deepEqual(issuesOf(`
modbus:
  buses:
    - name: line1
      rtu: { path: /dev/ttyUSB0, parity: mark }
      devices: [{ name: m, unitId: 1, points: [{ name: v, function: holding, address: 0 }] }]
    - name: line2
      devices: [{ name: m, unitId: 1, points: [{ name: v, function: holding, address: 0 }] }]
`).sort(), [
      'modbus.buses[0].rtu.parity: must be none, even or odd',
      'modbus.buses[1]: must have either rtu or tcp (not both)',
    ]);
    // Checks across entries run once each entry is valid on its own.
    assert.deepEqual(issuesOf(`
modbus:
  buses:
    - name: line1
      rtu: { path: /dev/ttyUSB0 }
      devices:
        - { name: m, unitId: 248, points: [{ name: v, function: holding, address: 0 }, { name: v, function: coil, address: 0 }] }
        - { name: m, unitId: 248, points: [{ name: v, function: holding, address: 0 }] }
    - name: line1
      tcp: { host: plc }
      devices: [{ name: m, unitId: 255, points: [{ name: v, function: holding, address: 0 }] }]
`), ['modbus.buses[0].devices[0].points[1].name: is used twice on device m']);
    assert.deepEqual(issuesOf(`
modbus:
  buses:
    - name: line1
      rtu: { path: /dev/ttyUSB0 }
      devices:
        - { name: m, unitId: 248, points: [{ name: v, function: holding, address: 0 }] }
        - { name: m, unitId: 248, points: [{ name: v, function: holding, address: 0 }] }
    - name: line1
      tcp: { host: plc }
      devices: [{ name: m, unitId: 255, points: [{ name: v, function: holding, address: 0 }] }]
`).sort(), [
      'modbus.buses[0].devices[0].unitId: must be from 1 to 247 on a serial line',
      'modbus.buses[0].devices[1].name: is used twice on bus line1',
      'modbus.buses[0].devices[1].unitId: is used twice on bus line1',
      'modbus.buses[0].devices[1].unitId: must be from 1 to 247 on a serial line',
      'modbus.buses[1].name: is used by another bus',
    ].sort());
    assert.deepEqual(issuesOf('downlink: { address: /queue/commands }\n'), ['downlink: needs an upstream: commands are received over the upstream connection']);
  });
});

describe('modbus config: values that cannot work together', () => {
  test('a delay that is neither 0 nor a duration says what it must be; an offline backoff whose base is above its cap is refused', () => {
    assert.deepEqual(issuesOf(`
modbus:
  buses:
    - name: line1
      rtu: { path: /dev/ttyUSB0 }
      interFrameDelay: -1
      lateWindow: soon
      offlineBackoff: { base: 10s, cap: 5s }
      devices: [{ name: m, unitId: 1, points: [{ name: v, function: holding, address: 0 }] }]
`).sort(), [
      'modbus.buses[0].interFrameDelay: must be 0 or a duration: seconds, or text such as 5ms, 2s or 1m',
      'modbus.buses[0].lateWindow: must be 0 or a duration: seconds, or text such as 5ms, 2s or 1m',
      'modbus.buses[0].offlineBackoff.base: must not be more than cap (5000 ms)',
    ]);
  });

  test('one serial device used by two buses, or by a bus and a serial port, is refused (they would steal each other\'s bytes)', () => {
    assert.deepEqual(issuesOf(`
modbus:
  buses:
    - name: line1
      rtu: { path: /dev/ttyUSB0 }
      devices: [{ name: m, unitId: 1, points: [{ name: v, function: holding, address: 0 }] }]
    - name: line2
      rtu: { path: /dev/./ttyUSB0 }
      devices: [{ name: m, unitId: 1, points: [{ name: v, function: holding, address: 0 }] }]
    - name: plc
      tcp: { host: plc }
      devices: [{ name: m, unitId: 1, points: [{ name: v, function: holding, address: 0 }] }]
serial:
  - { name: scale, path: /dev/ttyUSB0, topic: scale/weight }
  - { name: other, path: /dev/ttyUSB1, topic: scale/other }
`).sort(), [
      'modbus.buses[1].rtu.path: is the serial device of modbus bus line1 already (each would take the other\'s bytes)',
      'serial[0].path: is the serial device of modbus bus line1 already (each would take the other\'s bytes)',
    ]);
  });
});

describe('modbus report by exception', () => {
  test('without it every sample is reported; with it a change beyond the deadband, a quality change, or the heartbeat', () => {
    const all = new Reporter(undefined);
    assert.ok(all.offer({ quality: 'good', value: 1 }, 0) && all.offer({ quality: 'good', value: 1 }, 1));
    const rbe = new Reporter({ deadband: 0.5, heartbeat: 10_000 });
    const offers: Array<[Parameters<Reporter['offer']>[0], number, boolean]> = [
      [{ quality: 'good', value: 20 }, 0, true],
      [{ quality: 'good', value: 20.4 }, 1000, false],
      [{ quality: 'good', value: 20.5 }, 2000, false],
      [{ quality: 'good', value: 20.6 }, 3000, true],
      [{ quality: 'bad', error: 'offline: no response' }, 4000, true],
      [{ quality: 'bad', error: 'offline: no response' }, 5000, false],
      [{ quality: 'bad', error: 'exception 2 (illegal data address)' }, 6000, true],
      [{ quality: 'good', value: 20.6 }, 7000, true],
      [{ quality: 'good', value: 20.6 }, 16_999, false],
      [{ quality: 'good', value: 20.6 }, 17_000, true],
      [{ quality: 'good', value: [true, false] }, 17_001, true],
      [{ quality: 'good', value: [true, false] }, 17_002, false],
      [{ quality: 'good', value: [true, true] }, 17_003, true],
      [{ quality: 'good', value: 'A' }, 17_004, true],
    ];
    for (const [sample, now, reported] of offers) assert.equal(rbe.offer(sample, now), reported, `${JSON.stringify(sample)} at ${now}`);
  });
});

describe('modbus wire', () => {
  test("modbus-serial's errors become faults with a reason", () => {
    const cases: Array<[unknown, number, string, boolean]> = [
      [{ name: 'TransactionTimedOutError', message: 'Timed out', errno: 'ETIMEDOUT' }, 0, 'timeout', true],
      [{ name: 'TransactionTimedOutError', message: 'Timed out', errno: 'ETIMEDOUT' }, 4, 'short_frame', true],
      [new Error('CRC error'), 0, 'crc', true],
      [Object.assign(new Error('Modbus exception 2: Illegal data address'), { modbusCode: 2 }), 0, 'exception', false],
      [Object.assign(new Error('Modbus exception 10: Gateway path unavailable'), { modbusCode: 10 }), 0, 'gateway', true],
      [Object.assign(new Error('Modbus exception 11: Gateway target device failed to respond'), { modbusCode: 11 }), 0, 'gateway', true],
      [new Error('Data length error, expected 9 got 7'), 0, 'bad_length', true],
      [new Error('Unexpected data error, expected address 1 got 2'), 0, 'unexpected', true],
      [{ name: 'PortNotOpenError', message: 'Port Not Open' }, 0, 'not_open', true],
      [new Error('EIO'), 0, 'io', true],
    ];
    for (const [err, short, reason, retryable] of cases) {
      const fault = translateFault(err, short);
      assert.deepEqual([fault.reason, fault.retryable], [reason, retryable], JSON.stringify(err));
    }
    assert.equal(translateFault(Object.assign(new Error('x'), { modbusCode: 6 })).message, 'exception 6 (slave device busy)');
  });

  test('the length of the response a request implies', () => {
    const request = (fn: number, quantity: number): Buffer => Buffer.from([1, fn, 0, 0, quantity >> 8, quantity & 0xff, 0, 0]);
    assert.deepEqual([1, 2, 3, 4, 5, 6, 15, 16].map((fn) => responseLength(request(fn, 10))), [7, 7, 25, 25, 8, 8, 8, 8]);
    assert.equal(responseLength(request(1, 2000)), 255);
    assert.equal(responseLength(request(3, 125)), 255);
  });
});

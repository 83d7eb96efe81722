/**
 * Bad input on a Modbus RTU line, injected for real by a relay between the gateway and the
 * pymodbus slave (relay.ts): a corrupted frame, a response cut short, garbage before a response
 * and between requests, a response that comes after its timeout, a write confirmation that echoes
 * another value, and a storm of random garbage. Each is counted by reason, never crashes the bus,
 * and never becomes a stored value.
 */
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { after, afterEach, before, beforeEach, describe, test } from 'node:test';
import fc from 'fast-check';
import { busConfig, startModbus, tempDir, until, type Harness } from './helpers.js';
import { startRelay, withCrc, type Relay } from './relay.js';
import { startSlave, type Slave } from './slave.js';

let dir: string;
let relay: Relay;
let slave: Slave;
let h: Harness | undefined;

before(async () => {
  dir = await tempDir();
  relay = await startRelay(dir);
  slave = await startSlave({ rtu: relay.slave, units: [1] });
  await slave.set(1, 'hr', 0, [0x1234, 0x5678]);
});

beforeEach(() => {
  relay.delay = 0;
});

afterEach(async () => {
  await h?.stop();
  h = undefined;
});

after(async () => {
  await slave?.kill();
  await relay?.close();
  await rm(dir, { recursive: true, force: true });
});

const TOPIC = 'factory/line1/meter/v';

async function start(interval = '100ms', echo = false): Promise<Harness> {
  h = await startModbus(dir, [busConfig({
    name: 'line1', rtu: { path: relay.gateway, baudRate: 115200, parity: 'none', rs485: { echo } }, timeout: '300ms', retries: 2,
    devices: [{ name: 'meter', unitId: 1, interval, points: [
      { name: 'v', function: 'holding', address: 0, type: 'uint32' },
      { name: 'w', function: 'holding', address: 20, writable: true, interval: '1h' },
    ] }],
  })]);
  await until(() => h!.of(TOPIC).length >= 1, 'a first reading');
  return h;
}

/** Waits for `n` more readings of the point. */
async function more(harness: Harness, n: number): Promise<void> {
  const count = harness.of(TOPIC).length;
  await until(() => harness.of(TOPIC).length >= count + n, `${n} more readings`);
}

function assertOnlyTrueValues(harness: Harness): void {
  for (const reading of harness.of(TOPIC)) {
    assert.deepEqual([reading.body.quality, reading.body.value], ['good', 0x12345678], `a stored reading: ${JSON.stringify(reading.body)}`);
  }
}

describe('modbus RTU: bad input injected on the line', () => {
  test('a corrupted data byte fails the CRC: counted modbus_crc, never stored, and the retry reads the true value', async () => {
    const harness = await start();
    const tampered = relay.tampered;
    // Response: unit, function, byte count, 4 data bytes, CRC: byte 4 is data.
    relay.corruptNext(4);
    await until(() => (harness.ingest.stats().rejected.modbus_crc ?? 0) >= 1, 'a CRC error counted');
    assert.equal(relay.tampered, tampered + 1);
    await more(harness, 2);
    assertOnlyTrueValues(harness);
    assert.equal(harness.ingest.stats().rejected.modbus_offline, undefined, 'the retry answered: the device stayed online');
    assert.ok(harness.lines.some((l) => l.msg === 'modbus response dropped: the response failed its CRC check' && l.reason === 'crc' && l.device === 'meter'));
  });

  test('a corrupted unit id: the frame is skipped as garbage, the request times out and the retry reads the true value', async () => {
    const harness = await start();
    relay.corruptNext(0);
    await until(() => (harness.ingest.stats().rejected.modbus_timeout ?? 0) >= 1, 'a timeout counted');
    await more(harness, 2);
    assert.ok((harness.ingest.stats().rejected.modbus_garbage ?? 0) >= 1, 'the bytes were counted as garbage');
    assertOnlyTrueValues(harness);
  });

  test('a response cut short is counted modbus_short_frame, and its bytes do not spoil the next response', async () => {
    const harness = await start();
    relay.truncateNext(4);
    await until(() => (harness.ingest.stats().rejected.modbus_short_frame ?? 0) >= 1, 'a short frame counted');
    await more(harness, 3);
    assertOnlyTrueValues(harness);
    assert.equal(harness.ingest.stats().rejected.modbus_crc, undefined, 'no CRC error: the cut frame was not glued to the next one');
  });

  test('garbage before a response and between requests is skipped and counted modbus_garbage; the polls go on', async () => {
    const harness = await start('300ms');
    relay.prefixNext(Buffer.from([0x00, 0xff, 0x13, 0x37]));
    await more(harness, 1);
    await relay.inject(Buffer.from('noise on the line\r\n'));
    await until(() => (harness.ingest.stats().rejected.modbus_garbage ?? 0) >= 2, 'two runs of garbage counted');
    await more(harness, 2);
    assertOnlyTrueValues(harness);
    assert.ok(harness.ingest.stats().buses.line1!.garbageBytes >= 4 + 19);
  });

  test('an RS-485 adapter that echoes the requests: with rs485.echo the echo is skipped, and nothing is counted', async () => {
    relay.echo = true;
    try {
      const harness = await start('50ms', true);
      await more(harness, 10);
      assertOnlyTrueValues(harness);
      assert.deepEqual(Object.keys(harness.ingest.stats().rejected), []);
      assert.equal(harness.ingest.stats().buses.line1!.garbageBytes, 0);
    } finally {
      relay.echo = false;
    }
  });

  test('a response that comes after its timeout is dropped in the quiet window that follows, counted modbus_late, never taken as the answer to the next request', async () => {
    // Two points of the same size on one device: a late answer to one would pass every check
    // as the answer to the other (RTU has no transaction id). Every response takes 100 ms (a slow
    // slave), one takes 1300 ms: past the 1 s timeout, inside the late window (the timeout) after it. The
    // timeout is 1 s, not less, so that a stall of this machine does not make a second answer late.
    await slave.set(1, 'hr', 10, [111, 222]);
    relay.delay = 100;
    h = await startModbus(dir, [busConfig({
      name: 'line1', rtu: { path: relay.gateway, baudRate: 115200, parity: 'none' }, timeout: '1s', retries: 1,
      devices: [{ name: 'meter', unitId: 1, interval: '50ms', points: [
        { name: 'a', function: 'holding', address: 10 },
        { name: 'b', function: 'holding', address: 11 },
      ] }],
    })]);
    const harness = h;
    const a = (): number => harness.of('factory/line1/meter/a').length;
    const b = (): number => harness.of('factory/line1/meter/b').length;
    await until(() => a() >= 2 && b() >= 2, 'readings of both points');
    relay.delayNext(1300);
    await until(() => (harness.ingest.stats().rejected.modbus_timeout ?? 0) >= 1, 'the timeout');
    const [aAt, bAt] = [a(), b()];
    await until(() => a() >= aAt + 5 && b() >= bAt + 5, 'five more readings of each point', 20_000);
    for (const [point, value] of [['a', 111], ['b', 222]] as const) {
      const values = harness.of(`factory/line1/meter/${point}`).map((r) => r.body.value);
      assert.ok(values.every((v) => v === value), `point ${point}: ${JSON.stringify(values)}`);
    }
    const rejected = harness.ingest.stats().rejected;
    assert.equal(rejected.modbus_late, 1, JSON.stringify(rejected));
    assert.equal(rejected.modbus_offline, undefined, 'the retry answered: the device stayed online');
    assert.ok(harness.lines.some((l) => l.msg === 'modbus answer came after its timeout; dropped' && l.bus === 'line1' && l.bytes === 7));
  });

  test('a write confirmation that echoes another value than the one written is no confirmation: counted modbus_unexpected, and the write is not done', async () => {
    const harness = await start('1h');
    await until(() => harness.of('factory/line1/meter/w').length >= 1, 'the first poll of w');
    // The response to function 6 echoes address and value: make it echo value + 1, with a valid CRC.
    const echoOther = (response: Buffer): Buffer => {
      const frame = Buffer.from(response.subarray(0, 6));
      frame.writeUInt16BE((frame.readUInt16BE(4) + 1) & 0xffff, 4);
      return withCrc(frame);
    };
    relay.rewriteNext(3, echoOther);
    const result = await harness.ingest.writePoint({ bus: 'line1', device: 'meter', point: 'w', value: 4660 });
    assert.equal(result.status, 'unavailable', JSON.stringify(result));
    assert.match((result as { reason: string }).reason, /no confirmation from device meter: .*echoes/);
    assert.equal(harness.ingest.stats().rejected.modbus_unexpected, 3);
    // No valid answer to any attempt: offline, like a device that does not answer, until a poll is answered.
    await until(() => harness.ingest.stats().buses.line1!.devices.meter!.online, 'the device back');
    // Untouched, the same write is confirmed.
    assert.deepEqual(await harness.ingest.writePoint({ bus: 'line1', device: 'meter', point: 'w', value: 4661 }), { status: 'done' });
    assert.deepEqual(await slave.get(1, 'hr', 20, 1), [4661]);
  });

  test('a storm of random garbage and corrupted responses never stores a wrong value (seeded: MODBUS_SEED)', async () => {
    const seed = Number(process.env.MODBUS_SEED ?? Date.now() % 2 ** 31);
    console.log(`random faults seed: ${seed} (replay with MODBUS_SEED=${seed})`);
    const harness = await start('20ms');
    const faults = fc.sample(fc.oneof(
      fc.record({ kind: fc.constant('corrupt' as const), index: fc.integer({ min: 0, max: 8 }) }),
      fc.record({ kind: fc.constant('truncate' as const), bytes: fc.integer({ min: 1, max: 8 }) }),
      fc.record({ kind: fc.constant('prefix' as const), bytes: fc.uint8Array({ minLength: 1, maxLength: 40 }) }),
      fc.record({ kind: fc.constant('inject' as const), bytes: fc.uint8Array({ minLength: 1, maxLength: 300 }) }),
    ), { seed, numRuns: 40 });
    for (const fault of faults) {
      if (fault.kind === 'corrupt') relay.corruptNext(fault.index);
      else if (fault.kind === 'truncate') relay.truncateNext(fault.bytes);
      else if (fault.kind === 'prefix') relay.prefixNext(Buffer.from(fault.bytes));
      else await relay.inject(Buffer.from(fault.bytes));
      await more(harness, 1);
    }
    // The line is clean again: the bus answers on.
    await more(harness, 5);
    // A good reading is the true value; three faults in a row may make the device offline for a
    // moment, which is a bad reading without a value.
    for (const reading of harness.of(TOPIC)) {
      if (reading.body.quality === 'good') assert.equal(reading.body.value, 0x12345678, JSON.stringify(reading.body));
      else assert.match(reading.body.error!, /^offline: /);
    }
    const rejected = harness.ingest.stats().rejected;
    const counted = ['crc', 'timeout', 'short_frame', 'garbage'].reduce((n, reason) => n + (rejected[`modbus_${reason}`] ?? 0), 0);
    assert.ok(counted > 0, `faults counted: ${JSON.stringify(rejected)}`);
  });
});

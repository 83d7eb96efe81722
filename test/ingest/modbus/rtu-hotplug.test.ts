/**
 * A Modbus RTU port that is missing at start, then unplugged and plugged in again: socat's pty
 * pair appears, is killed with its links removed (the USB adapter pulled out), and is made again
 * at the same path, with pymodbus on its other end each time.
 */
import assert from 'node:assert/strict';
import { rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ptyPair, type PtyPair } from '../serial/helpers.js';
import { busConfig, startModbus, tempDir, until, type Harness } from './helpers.js';
import { startSlave, type Slave } from './slave.js';

let dir: string;
let h: Harness | undefined;
let pty: PtyPair | undefined;
let slave: Slave | undefined;

before(async () => { dir = await tempDir(); });

after(async () => {
  await h?.stop();
  await slave?.kill();
  await pty?.kill();
  await rm(dir, { recursive: true, force: true });
});

/**
 * The port appears (a rename of the link: at once, as a USB adapter does) only once the slave
 * holds its value: polled before, it answers with its initial 0, a good reading of another value.
 */
async function plugIn(): Promise<void> {
  pty = await ptyPair(join(dir, 'gw.new'), join(dir, 'slave'));
  slave = await startSlave({ rtu: join(dir, 'slave'), units: [1] });
  await slave.set(1, 'hr', 0, [42]);
  await rename(join(dir, 'gw.new'), join(dir, 'gw'));
}

async function unplug(): Promise<void> {
  await slave?.kill();
  await pty?.kill();
  await rm(join(dir, 'gw'), { force: true });
  slave = undefined;
  pty = undefined;
}

describe('modbus RTU: the port comes and goes', () => {
  test('a port missing at start is opened once it appears; unplugged, the bus notices, its device is offline, and it comes back when the port is plugged in again', async () => {
    h = await startModbus(dir, [busConfig({
      name: 'line1', rtu: { path: join(dir, 'gw'), baudRate: 115200, parity: 'none' }, timeout: '200ms', retries: 1,
      offlineBackoff: { base: '200ms', cap: '400ms' },
      devices: [{ name: 'meter', unitId: 1, interval: '50ms', points: [{ name: 'v', function: 'holding', address: 0 }] }],
    })], { reopen: { baseMs: 100, capMs: 400 } });
    const harness = h;
    const topic = 'factory/line1/meter/v';
    const good = (): number => harness.of(topic).filter((r) => r.body.quality === 'good').length;

    await until(() => harness.lines.some((l) => l.msg === 'modbus bus unavailable; reopening with backoff' && l.bus === 'line1'), 'the missing port logged');
    assert.equal(harness.ingest.stats().buses.line1!.open, false);
    assert.equal(harness.ingest.stats().buses.line1!.devices.meter!.online, false);

    await plugIn();
    await until(() => good() >= 2, 'readings once the port appeared');
    assert.equal(harness.ingest.stats().buses.line1!.opens, 1);

    await unplug();
    await until(() => !harness.ingest.stats().buses.line1!.open, 'the unplugged port noticed');
    await until(() => harness.of(topic).at(-1)?.body.quality === 'bad', 'a bad reading');
    assert.equal(harness.ingest.stats().buses.line1!.devices.meter!.online, false);

    await plugIn();
    const before = good();
    await until(() => good() >= before + 2, 'readings once the port is back');
    assert.equal(harness.ingest.stats().buses.line1!.opens, 2);
    assert.ok(harness.of(topic).filter((r) => r.body.quality === 'good').every((r) => r.body.value === 42));
  });
});

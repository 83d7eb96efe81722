/**
 * systemd/uplink.service: `systemd-analyze verify` is clean and `systemd-analyze security`
 * rates it 2.5 or lower, while it keeps what the gateway needs (notify, watchdog, restart, its
 * own user in dialout, state and config directories, serial devices, network sockets).
 *
 * verify checks that the ExecStart binary exists. The unit names /usr/bin/node, and install.sh
 * writes the node it found in its place; the test verifies a copy with the node running it,
 * exactly as install.sh would write it on this machine.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { REPO, requireTool } from './helpers.js';
import { exposure, MAX_EXPOSURE, verifyUnit } from './systemd-analyze.js';

const UNIT = join(REPO, 'systemd/uplink.service');
const MODULES_LOAD = join(REPO, 'systemd/uplink.modules-load.conf');

/** The unit's `Key=value` lines, every value of a key in order. */
function directives(text: string): Map<string, string[]> {
  const map = new Map<string, string[]>();
  for (const line of text.split('\n')) {
    const match = /^([A-Za-z]+)=(.*)$/.exec(line);
    if (match !== null) map.set(match[1]!, [...(map.get(match[1]!) ?? []), match[2]!]);
  }
  return map;
}

describe('systemd/uplink.service', () => {
  test('keeps what the gateway needs', () => {
    const unit = directives(readFileSync(UNIT, 'utf8'));
    const one = (key: string): string | undefined => unit.get(key)?.at(-1);
    assert.equal(one('Type'), 'notify');
    assert.equal(one('NotifyAccess'), 'main');
    assert.match(one('WatchdogSec') ?? '', /^\d+$/);
    assert.equal(one('Restart'), 'on-failure');
    // Keeps trying for as long as it takes (no start limit), slowly.
    assert.equal(one('StartLimitIntervalSec'), '0');
    assert.equal(unit.get('StartLimitBurst'), undefined);
    assert.ok(Number(one('RestartSec')) >= 5, `RestartSec=${one('RestartSec')}`);
    assert.equal(one('User'), 'uplink');
    assert.equal(one('Group'), 'uplink');
    assert.equal(one('SupplementaryGroups'), 'dialout');
    assert.equal(one('StateDirectory'), 'uplink');
    assert.equal(one('ConfigurationDirectory'), 'uplink');
    assert.equal(one('ExecStart'), '/usr/bin/node /opt/uplink/dist/cli.js run --config /etc/uplink/uplink.yaml');
    assert.equal(one('ExecReload'), '/bin/kill -HUP $MAINPID');
    // Serial ports: the host's /dev, with only these devices allowed.
    assert.equal(one('PrivateDevices'), 'no');
    assert.equal(one('DevicePolicy'), 'closed');
    for (const device of ['char-ttyUSB rw', 'char-ttyACM rw', 'char-ttyAMA rw']) assert.ok(unit.get('DeviceAllow')?.includes(device), device);
    // Listeners and the upstream (TCP), the notify socket (unix).
    assert.deepEqual(one('RestrictAddressFamilies')?.split(' ').sort(), ['AF_INET', 'AF_INET6', 'AF_UNIX']);
    assert.equal(unit.get('PrivateNetwork'), undefined);
    // V8 compiles to memory that is written and then executed.
    assert.equal(unit.get('MemoryDenyWriteExecute'), undefined);
    assert.equal(one('WantedBy'), 'multi-user.target');
    // Started after the clock is set (time-sync.target), so that new readings get a real wall time.
    for (const key of ['After', 'Wants']) assert.deepEqual(one(key)?.split(' ').sort(), ['network-online.target', 'time-sync.target'], key);
  });

  test('the drivers behind char-ttyUSB and char-ttyACM are loaded at boot (modules-load.d), so hot-plugged adapters may be opened', () => {
    // systemd resolves the groups in /proc/devices when the unit starts; they exist only with the drivers loaded.
    const modules = readFileSync(MODULES_LOAD, 'utf8').split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'));
    assert.deepEqual(modules, ['usbserial', 'cdc_acm']);
    const allowed = directives(readFileSync(UNIT, 'utf8')).get('DeviceAllow') ?? [];
    for (const group of ['char-ttyUSB', 'char-ttyACM']) assert.ok(allowed.some((d) => d.startsWith(`${group} `)), group);
  });

  test('systemd-analyze verify is clean', async (t) => {
    const analyze = requireTool(t, 'systemd-analyze', 'Debian package systemd');
    if (analyze === undefined) return;
    const dir = await mkdtemp(join(tmpdir(), 'uplink-unit-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const copy = join(dir, 'uplink.service');
    await writeFile(copy, readFileSync(UNIT, 'utf8').replace(/^ExecStart=\/usr\/bin\/node /m, `ExecStart=${process.execPath} `));
    await verifyUnit(analyze, copy);
  });

  test(`systemd-analyze security rates it ${MAX_EXPOSURE} or lower`, async (t) => {
    const analyze = requireTool(t, 'systemd-analyze', 'Debian package systemd');
    if (analyze === undefined) return;
    const level = await exposure(analyze, UNIT);
    t.diagnostic(`overall exposure level: ${level}`);
    assert.ok(level <= MAX_EXPOSURE, `exposure ${level} > ${MAX_EXPOSURE}`);
  });
});

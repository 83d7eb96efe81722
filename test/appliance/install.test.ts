/**
 * scripts/install.sh and scripts/uninstall.sh, run for real into a temporary root directory
 * (`--root DIR`): the expected tree, the same tree when run twice, an upgrade that keeps the
 * config and the spool, the unit enabled offline, and an uninstall that keeps the data unless
 * --purge. The root is seeded like a fresh Debian system (root, and group dialout with gid 20).
 *
 * `--no-build`: dist/ was built before the tests (npm test builds first); building it again here
 * would rewrite the dist/ the other tests run.
 *
 * The node the installer finds is a link, in a directory whose name has characters that systemd
 * (`%`, `$`) and sed (`&`, `#`) treat specially: ExecStart must name the link (not the file it
 * resolves to), and `systemd-analyze verify` must find it there. (A backslash, a quote or a space
 * systemd takes in no executable name: the installer refuses such a path.)
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, lstatSync, readdirSync, readFileSync, readlinkSync, realpathSync, statSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, rm, symlink, writeFile, appendFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import { REPO, requireTool, run } from './helpers.js';
import { exposure, MAX_EXPOSURE, verifyUnit } from './systemd-analyze.js';

const INSTALL = join(REPO, 'scripts/install.sh');
const UNINSTALL = join(REPO, 'scripts/uninstall.sh');
const VERSION = (JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { version: string }).version;

async function seededRoot(t: TestContext): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), 'uplink-root-'));
  t.after(() => rm(root, { recursive: true, force: true }));
  await mkdir(join(root, 'etc'));
  await writeFile(join(root, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/bash\n');
  await writeFile(join(root, 'etc/group'), 'root:x:0:\ndialout:x:20:\n');
  return root;
}

async function sh(script: string, ...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return run('/bin/bash', [script, ...args]);
}

/** A directory with `node` in it, a link to the node running the tests, as /usr/local/bin/node often is. */
async function linkedNode(t: TestContext): Promise<{ dir: string; node: string; env: NodeJS.ProcessEnv }> {
  const base = await mkdtemp(join(tmpdir(), 'uplink-node-'));
  t.after(() => rm(base, { recursive: true, force: true }));
  const dir = join(base, 'n&o#d%e$bin');
  await mkdir(dir);
  const node = join(dir, 'node');
  await symlink(process.execPath, node);
  return { dir, node, env: { ...process.env, PATH: `${dir}:${process.env.PATH ?? '/usr/bin:/bin'}` } };
}

/** An executable name as ExecStart= must spell it: % starts a systemd specifier ($ is taken as it is there). */
function systemdEscape(path: string): string {
  return path.replace(/%/g, '%%');
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/**
 * Every path under `root` with its type, mode, owner and content hash (link target), except
 * inside node_modules, which counts as its package list, and the lock and backup files of the
 * user database.
 */
function tree(root: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (dir: string, rel: string): void => {
    for (const name of readdirSync(dir).sort()) {
      const path = join(dir, name);
      const relPath = rel === '' ? name : `${rel}/${name}`;
      if (/^etc\/(\.pwd\.lock|[a-z]+-)$/.test(relPath)) continue;
      const st = lstatSync(path);
      const meta = `${(st.mode & 0o7777).toString(8)} ${st.uid}:${st.gid}`;
      if (st.isSymbolicLink()) out.set(relPath, `link -> ${readlinkSync(path)}`);
      else if (st.isDirectory() && /^opt\/uplink(\.prev)?\/node_modules$/.test(relPath)) out.set(relPath, `packages ${readdirSync(path).sort().join(',')}`);
      else if (st.isDirectory()) {
        out.set(relPath, `dir ${meta}`);
        walk(path, relPath);
      } else out.set(relPath, `file ${meta} ${createHash('sha256').update(readFileSync(path)).digest('hex')}`);
    }
  };
  walk(root, '');
  return out;
}

function passwdEntry(root: string, file: 'passwd' | 'group', name: string): string[] | undefined {
  return readFileSync(join(root, 'etc', file), 'utf8').split('\n').map((l) => l.split(':')).find((f) => f[0] === name);
}

describe('install.sh and uninstall.sh into a root directory', () => {
  test('install twice gives the same expected tree; uninstall keeps the data; --purge removes it', async (t) => {
    if (requireTool(t, 'systemd-sysusers', 'Debian package systemd: adds the user') === undefined) return;
    const root = await seededRoot(t);
    const linked = await linkedNode(t);
    const install = (...args: string[]): ReturnType<typeof run> => run('/bin/bash', [INSTALL, ...args], { env: linked.env });

    const first = await install('--root', root, '--no-systemctl', '--no-build');
    assert.equal(first.code, 0, `${first.stdout}${first.stderr}`);
    assert.ok(first.stdout.includes(`Node.js ${process.versions.node} at ${linked.node} (${process.execPath})`), first.stdout);
    assert.match(first.stdout, new RegExp(`installed uplink ${VERSION.replace(/\./g, '\\.')} to ${root}/opt/uplink`));
    assert.match(first.stdout, /wrote .*\/etc\/uplink\/uplink\.yaml from the example/);
    const afterFirst = tree(root);

    // The app: what the package ships, with production dependencies only.
    const app = join(root, 'opt/uplink');
    for (const file of ['dist/cli.js', 'dist/gateway.js', 'package.json', 'package-lock.json', 'README.md', 'schema/uplink.schema.json',
      'systemd/uplink.service', 'systemd/uplink.example.yaml', 'systemd/uplink.sysusers', 'systemd/uplink.modules-load.conf',
      'node_modules/unix-dgram/build/Release/unix_dgram.node']) {
      assert.ok(afterFirst.has(`opt/uplink/${file}`) || statSync(join(app, file)).isFile(), file);
    }
    assert.ok(statSync(join(app, 'dist/cli.js')).mode & 0o111, 'cli.js is executable');
    const packages = afterFirst.get('opt/uplink/node_modules')!;
    for (const dep of ['better-sqlite3', 'aedes', 'rhea', 'serialport', 'pino', 'unix-dgram']) assert.match(packages, new RegExp(`(^|[ ,])${dep}(,|$)`), dep);
    for (const dev of ['typescript', 'node-red', 'eslint', 'tsx']) assert.doesNotMatch(packages, new RegExp(`[ ,]${dev}(,|$)`), `${dev} is a dev dependency`);
    for (const absent of ['opt/uplink/src', 'opt/uplink/test', 'opt/uplink/bench']) assert.ok(!afterFirst.has(absent), absent);
    assert.equal(afterFirst.get('usr/local/bin/uplink'), 'link -> /opt/uplink/dist/cli.js');

    // The user, in dialout.
    const user = passwdEntry(root, 'passwd', 'uplink');
    assert.ok(user, 'uplink in etc/passwd');
    assert.deepEqual(user.slice(5), ['/var/lib/uplink', '/usr/sbin/nologin']);
    assert.equal(passwdEntry(root, 'group', 'dialout')?.[3], 'uplink');
    const uid = Number(user[2]);
    const gid = Number(passwdEntry(root, 'group', 'uplink')?.[2]);
    assert.ok(uid > 0 && uid < 1000, `a system uid: ${uid}`);
    assert.equal(afterFirst.get('usr/local/lib/sysusers.d/uplink.conf')?.split(' ')[1], '644');

    // Config from the example, readable by the service's group only; the spool directory its own.
    assert.equal(readFileSync(join(root, 'etc/uplink/uplink.yaml'), 'utf8'), readFileSync(join(REPO, 'systemd/uplink.example.yaml'), 'utf8'));
    assert.equal(afterFirst.get('etc/uplink')?.split(' ').slice(0, 3).join(' '), `dir 750 0:${gid}`);
    assert.equal(afterFirst.get('etc/uplink/uplink.yaml')?.split(' ').slice(0, 3).join(' '), `file 640 0:${gid}`);
    assert.equal(afterFirst.get('var/lib/uplink'), `dir 750 ${uid}:${gid}`);

    // The unit, with ExecStart on the node found on PATH: the link, not what it points to.
    const unit = readFileSync(join(root, 'etc/systemd/system/uplink.service'), 'utf8');
    assert.match(unit, new RegExp(`^ExecStart=${escapeRegExp(systemdEscape(linked.node))} /opt/uplink/dist/cli\\.js run --config /etc/uplink/uplink\\.yaml$`, 'm'));
    assert.equal(afterFirst.get('etc/systemd/system/multi-user.target.wants/uplink.service'), undefined, '--no-systemctl enables nothing');

    // The USB serial drivers, loaded at boot (the unit's DeviceAllow=char-ttyUSB/char-ttyACM need them).
    assert.equal(afterFirst.get('etc/modules-load.d/uplink.conf')?.split(' ').slice(0, 3).join(' '), 'file 644 0:0');
    assert.equal(readFileSync(join(root, 'etc/modules-load.d/uplink.conf'), 'utf8'), readFileSync(join(REPO, 'systemd/uplink.modules-load.conf'), 'utf8'));
    assert.doesNotMatch(first.stdout, /modprobe/, 'nothing is loaded into the running kernel under --root');

    // The installed app runs, and the example config is valid.
    const version = await run(process.execPath, [join(app, 'dist/cli.js'), '--version']);
    assert.equal(version.stdout, `${VERSION}\n`);
    const check = await run(process.execPath, [join(app, 'dist/cli.js'), 'check-config', '--config', join(root, 'etc/uplink/uplink.yaml')]);
    assert.equal(check.code, 0, check.stderr);

    // Twice in a row: the same tree, and the app it replaced kept whole as opt/uplink.prev (for --rollback).
    const second = await install('--root', root, '--no-systemctl', '--no-build');
    assert.equal(second.code, 0, `${second.stdout}${second.stderr}`);
    assert.match(second.stdout, new RegExp(`upgraded .*/opt/uplink to uplink ${escapeRegExp(VERSION)} \\(uplink ${escapeRegExp(VERSION)} kept as .*/opt/uplink\\.prev\\)`));
    assert.match(second.stdout, /kept .*\/etc\/uplink\/uplink\.yaml/);
    const afterSecond = tree(root);
    const prev = new Map([...afterSecond].filter(([path]) => path.startsWith('opt/uplink.prev')));
    assert.deepEqual(new Map([...afterSecond].filter(([path]) => !prev.has(path))), afterFirst);
    assert.deepEqual(new Map([...prev].map(([path, meta]) => [path.replace(/^opt\/uplink\.prev/, 'opt/uplink'), meta])),
      new Map([...afterFirst].filter(([path]) => path === 'opt/uplink' || path.startsWith('opt/uplink/'))));

    // --rollback swaps the two back (offline: nothing to restart under --root).
    const rolled = await install('--root', root, '--no-systemctl', '--rollback');
    assert.equal(rolled.code, 0, `${rolled.stdout}${rolled.stderr}`);
    assert.match(rolled.stdout, new RegExp(`rolled back .*/opt/uplink to uplink ${escapeRegExp(VERSION)}; uplink ${escapeRegExp(VERSION)} is now .*/opt/uplink\\.prev`));
    assert.deepEqual(tree(root), afterSecond);

    // An upgrade keeps a changed config and the spool; with systemctl (offline, --root) it enables the unit.
    await appendFile(join(root, 'etc/uplink/uplink.yaml'), '# changed by the operator\n');
    await writeFile(join(root, 'var/lib/uplink/spool.db'), 'readings');
    const upgrade = requireTool(t, 'systemctl', 'Debian package systemd: enables the unit offline') === undefined
      ? undefined : await install('--root', root, '--no-build');
    if (upgrade === undefined) return;
    assert.equal(upgrade.code, 0, `${upgrade.stdout}${upgrade.stderr}`);
    assert.match(readFileSync(join(root, 'etc/uplink/uplink.yaml'), 'utf8'), /# changed by the operator\n$/);
    assert.equal(readFileSync(join(root, 'var/lib/uplink/spool.db'), 'utf8'), 'readings');
    assert.equal(tree(root).get('etc/systemd/system/multi-user.target.wants/uplink.service'), 'link -> /etc/systemd/system/uplink.service');

    // The unit as installed passes verify and keeps its rating.
    const analyze = requireTool(t, 'systemd-analyze', 'Debian package systemd');
    if (analyze === undefined) return;
    await verifyUnit(analyze, join(root, 'etc/systemd/system/uplink.service'));
    assert.ok(await exposure(analyze, join(root, 'etc/systemd/system/uplink.service')) <= MAX_EXPOSURE);

    // Uninstall: app, unit, links and the modules-load.d file go; config, spool, user and the
    // operator's drop-ins (systemctl edit uplink) stay.
    await mkdir(join(root, 'etc/systemd/system/uplink.service.d'));
    await writeFile(join(root, 'etc/systemd/system/uplink.service.d/override.conf'), '[Service]\nEnvironment=EXTRA=1\n');
    const removed = await sh(UNINSTALL, '--root', root, '--no-systemctl');
    assert.equal(removed.code, 0, `${removed.stdout}${removed.stderr}`);
    assert.match(removed.stdout, /kept .*\/etc\/uplink \(config\), .*\/var\/lib\/uplink \(the spool\), the user uplink and .*\/etc\/systemd\/system\/uplink\.service\.d/);
    const afterUninstall = tree(root);
    for (const gone of ['opt/uplink', 'opt/uplink.prev', 'etc/systemd/system/uplink.service', 'etc/systemd/system/multi-user.target.wants/uplink.service', 'usr/local/bin/uplink',
      'etc/modules-load.d/uplink.conf']) {
      assert.ok(!afterUninstall.has(gone), `${gone} is removed`);
    }
    assert.ok(afterUninstall.has('etc/systemd/system/uplink.service.d/override.conf'), 'drop-ins are kept without --purge');
    assert.match(readFileSync(join(root, 'etc/uplink/uplink.yaml'), 'utf8'), /# changed by the operator/);
    assert.equal(readFileSync(join(root, 'var/lib/uplink/spool.db'), 'utf8'), 'readings');
    assert.ok(passwdEntry(root, 'passwd', 'uplink'));

    // Uninstalling again is fine; --purge removes the data and the user.
    const purged = await sh(UNINSTALL, '--root', root, '--no-systemctl', '--purge');
    assert.equal(purged.code, 0, `${purged.stdout}${purged.stderr}`);
    const afterPurge = tree(root);
    for (const gone of ['etc/uplink', 'var/lib/uplink', 'usr/local/lib/sysusers.d/uplink.conf', 'etc/systemd/system/uplink.service.d']) {
      assert.ok(!afterPurge.has(gone), `${gone} is purged`);
    }
    assert.equal(passwdEntry(root, 'passwd', 'uplink'), undefined);
    assert.equal(passwdEntry(root, 'group', 'uplink'), undefined);
    assert.deepEqual(passwdEntry(root, 'group', 'dialout'), ['dialout', 'x', '20', '']);
  });

  test('without root: --no-user installs an unpacked package (no src/) into a directory of its own', async (t) => {
    const asRoot = process.getuid?.() === 0;
    if (asRoot && requireTool(t, 'runuser', 'runs the installer as the user nobody') === undefined) return;
    // A copy the user nobody can read, shaped like an unpacked `npm pack` (no package-lock.json) with its node_modules.
    const work = await mkdtemp(join(tmpdir(), 'uplink-nonroot-'));
    t.after(() => rm(work, { recursive: true, force: true }));
    const source = join(work, 'source');
    await mkdir(source);
    for (const entry of ['package.json', 'README.md', 'dist', 'schema', 'systemd', 'scripts', 'flows', 'node_modules']) {
      // realpath: in a git worktree node_modules may be a link to a shared one.
      const copied = await run('/bin/cp', ['-a', realpathSync(join(REPO, entry)), join(source, entry)]);
      assert.equal(copied.code, 0, copied.stderr);
    }
    const root = join(work, 'root');
    await mkdir(root);
    await mkdir(join(work, 'home'));
    if (asRoot) assert.equal((await run('/bin/chown', ['-R', 'nobody', work])).code, 0);
    const as = (script: string, ...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> => (asRoot
      // Without the npm_config_* variables `npm test` sets: they name root's npm cache.
      ? run('runuser', ['-u', 'nobody', '--', 'env', `HOME=${join(work, 'home')}`, '/bin/bash', join(source, 'scripts', script), ...args],
        { env: withoutNpmConfig(process.env) })
      : run('/bin/bash', [join(source, 'scripts', script), ...args]));

    const refused = await as('install.sh', '--root', root, '--no-systemctl');
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /adding the user uplink to .* needs root: run as root, or add --no-user/);
    const installed = await as('install.sh', '--root', root, '--no-systemctl', '--no-user');
    assert.equal(installed.code, 0, `${installed.stdout}${installed.stderr}`);
    assert.match(installed.stdout, /user uplink not added \(--no-user\)/);
    assert.doesNotMatch(installed.stdout, /building dist/, 'a package without src/ is not built');
    const files = tree(root);
    for (const path of ['opt/uplink/dist/cli.js', 'etc/uplink/uplink.yaml', 'etc/systemd/system/uplink.service', 'var/lib/uplink']) assert.ok(files.has(path), path);
    assert.ok(!files.has('etc/passwd'), 'no user database written');
    const version = await run(process.execPath, [join(root, 'opt/uplink/dist/cli.js'), '--version']);
    assert.equal(version.stdout, `${VERSION}\n`);
    const removed = await as('uninstall.sh', '--root', root, '--no-systemctl');
    assert.equal(removed.code, 0, `${removed.stdout}${removed.stderr}`);
    assert.ok(!tree(root).has('opt/uplink'));
    assert.ok(tree(root).has('etc/uplink/uplink.yaml'));
  });

  test('from an unpacked npm pack tarball without node_modules: npm install without a lock file, npm ci with one; native modules are loaded for real, rebuilt, and refused if still broken', async (t) => {
    for (const tool of ['make', 'g++']) if (requireTool(t, tool, 'install.sh wants the build tools before npm rebuild') === undefined) return;
    const work = await mkdtemp(join(tmpdir(), 'uplink-pack-'));
    t.after(() => rm(work, { recursive: true, force: true }));
    // What `npm pack` ships, unpacked: no package-lock.json, no node_modules, no src/.
    const packed = await run('npm', ['pack', '--loglevel=error', '--pack-destination', work], { cwd: REPO });
    assert.equal(packed.code, 0, packed.stderr);
    const source = join(work, 'source');
    await mkdir(source);
    assert.equal((await run('/bin/tar', ['-xzf', join(work, packed.stdout.trim().split('\n').at(-1)!), '-C', source, '--strip-components=1'])).code, 0);
    assert.ok(!existsSync(join(source, 'package-lock.json')) && !existsSync(join(source, 'node_modules')) && !existsSync(join(source, 'src')));

    // npm, with the registry left out: `ci` and `install` get the checkout's modules (then the real
    // npm prunes the dev ones), optionally with better-sqlite3's binding broken, as one built for
    // another Node would be; `rebuild` mends it only when asked to. Every call is logged.
    const realNpm = (await run('/bin/sh', ['-c', 'command -v npm'])).stdout.trim();
    const bin = join(work, 'bin');
    await mkdir(bin);
    const binding = 'node_modules/better-sqlite3/build/Release/better_sqlite3.node';
    await writeFile(join(bin, 'npm'), `#!/bin/bash
echo "$*" >> "$NPM_LOG"
case "$1" in
  ci|install)
    cp -a "$(readlink -f "$REPO_DIR/node_modules")" ./node_modules
    [ -z "$BREAK_BINDING" ] || : > ${binding}
    exec "$REAL_NPM" prune --omit=dev --no-audit --no-fund --loglevel=error ;;
  rebuild)
    [ -z "$MEND_ON_REBUILD" ] || cp "$REPO_DIR/${binding}" ${binding}
    exit 0 ;;
esac
exec "$REAL_NPM" "$@"
`);
    await chmod(join(bin, 'npm'), 0o755);
    const npmLog = join(work, 'npm.log');
    const install = async (root: string, env: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string; npm: string[] }> => {
      await rm(npmLog, { force: true });
      const result = await run('/bin/bash', [join(source, 'scripts/install.sh'), '--root', root, '--no-systemctl', '--no-user'], {
        env: { ...process.env, PATH: `${bin}:${process.env.PATH ?? '/usr/bin:/bin'}`, NPM_LOG: npmLog, REPO_DIR: REPO, REAL_NPM: realNpm, ...env },
      });
      const npm = existsSync(npmLog) ? readFileSync(npmLog, 'utf8').trim().split('\n').filter((l) => !l.startsWith('pack ')) : [];
      return { ...result, npm };
    };

    // No lock file: npm install. The binding does not load (although `cli.js --version` would
    // run: better-sqlite3 loads it only when a database opens), so npm rebuild, and then it does.
    const rootA = join(work, 'a');
    const a = await install(rootA, { BREAK_BINDING: '1', MEND_ON_REBUILD: '1' });
    assert.equal(a.code, 0, `${a.stdout}${a.stderr}`);
    assert.deepEqual(a.npm, ['install --omit=dev --no-audit --no-fund', 'rebuild']);
    assert.match(a.stdout, /production dependencies: npm install --omit=dev/);
    assert.match(a.stdout, /the native modules do not load with Node\.js [\d.]+; rebuilding them \(npm rebuild\)/);
    const opened = await run(process.execPath, ['--input-type=commonjs', '-e', "new (require('better-sqlite3'))(':memory:').close(); require('unix-dgram')"],
      { cwd: join(rootA, 'opt/uplink') });
    assert.equal(opened.code, 0, opened.stderr);

    // With a lock file: npm ci. A binding that npm rebuild does not mend stops the install before
    // anything is swapped in, with the error and what to do.
    await writeFile(join(source, 'package-lock.json'), readFileSync(join(REPO, 'package-lock.json')));
    const rootB = join(work, 'b');
    const b = await install(rootB, { BREAK_BINDING: '1' });
    assert.equal(b.code, 1, `${b.stdout}${b.stderr}`);
    assert.deepEqual(b.npm, ['ci --omit=dev --no-audit --no-fund', 'rebuild']);
    assert.match(b.stderr, /the native modules \(better-sqlite3 for the spool, unix-dgram for systemd notify\) do not load with Node\.js .*, even after npm rebuild; nothing was changed/);
    assert.match(b.stderr, /apt-get install build-essential python3/);
    assert.match(b.stderr, /better_sqlite3\.node/, 'the loader error is shown');
    assert.ok(!existsSync(join(rootB, 'opt/uplink')), 'nothing installed');
    assert.deepEqual(readdirSync(join(rootB, 'opt')), [], 'the stage is cleaned up');
  });

  test('a missing or too old Node.js is refused with how to get one, before anything is written', async (t) => {
    const root = await seededRoot(t);
    const bin = await mkdtemp(join(tmpdir(), 'uplink-fake-node-'));
    t.after(() => rm(bin, { recursive: true, force: true }));
    await writeFile(join(bin, 'node'), '#!/bin/sh\necho 18.19.0\n');
    await chmod(join(bin, 'node'), 0o755);
    const old = await run('/bin/bash', [INSTALL, '--root', root, '--no-systemctl', '--no-build'], { env: { ...process.env, PATH: `${bin}:/usr/bin:/bin` } });
    assert.equal(old.code, 1);
    assert.match(old.stderr, /Node\.js 18\.19\.0 .* is too old: uplink needs 20\.19 or newer/);
    assert.match(old.stderr, /NodeSource/);
    // 20.18 cannot require() the ES modules the Node-RED nodes are built as.
    await writeFile(join(bin, 'node'), '#!/bin/sh\necho 20.18.3\n');
    const early20 = await run('/bin/bash', [INSTALL, '--root', root, '--no-systemctl', '--no-build'], { env: { ...process.env, PATH: `${bin}:/usr/bin:/bin` } });
    assert.equal(early20.code, 1);
    assert.match(early20.stderr, /Node\.js 20\.18\.3 .* is too old: uplink needs 20\.19 or newer/);

    // bash itself, but no node on PATH.
    await rm(join(bin, 'node'));
    for (const tool of ['dirname', 'readlink']) await run('/bin/ln', ['-s', `/usr/bin/${tool}`, join(bin, tool)]);
    const missing = await run('/bin/bash', [INSTALL, '--root', root, '--no-systemctl', '--no-build'], { env: { ...process.env, PATH: bin } });
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /Node\.js is not installed/);
    assert.deepEqual(readdirSync(root), ['etc'], 'nothing was written');

    // A node systemd could not start: a backslash in its path.
    const odd = join(bin, 'a\\b');
    await mkdir(odd);
    await symlink(process.execPath, join(odd, 'node'));
    const refused = await run('/bin/bash', [INSTALL, '--root', root, '--no-systemctl', '--no-build'], { env: { ...process.env, PATH: `${odd}:/usr/bin:/bin` } });
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /has a space, a quote or a backslash, which systemd does not take in ExecStart=/);
    assert.deepEqual(readdirSync(join(root, 'etc')).sort(), ['group', 'passwd']);
  });

  test('unknown options are usage errors (exit 2) with the usage text', async () => {
    for (const script of [INSTALL, UNINSTALL]) {
      const result = await sh(script, '--bogus');
      assert.equal(result.code, 2);
      assert.match(result.stderr, /unknown option --bogus/);
      assert.match(result.stderr, /--root DIR/);
      const help = await sh(script, '--help');
      assert.equal(help.code, 0);
      assert.match(help.stdout, /--no-systemctl/);
    }
  });
});

/** The environment without what an enclosing npm run adds (npm_config_cache=/root/.npm and the like). */
function withoutNpmConfig(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(env).filter(([key]) => !/^npm_/i.test(key)));
}

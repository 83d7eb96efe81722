/** scrypt password hashes (core/password.ts), `uplink passwd`, and loading device accounts. */
import assert from 'node:assert/strict';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { describe, test } from 'node:test';
import { passwdCommand } from '../../../src/cli/passwd.js';
import { hashPassword, parsePasswordHash, verifyPassword } from '../../../src/core/password.js';
import { Authenticator } from '../../../src/ingest/mqtt/auth.js';

describe('password hashes', () => {
  test('a hash verifies its password and no other; salts differ', async () => {
    const a = await hashPassword('s3cret');
    const b = await hashPassword('s3cret');
    assert.match(a, /^\$scrypt\$N=16384,r=8,p=1\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+$/);
    assert.notEqual(a, b);
    assert.equal(await verifyPassword('s3cret', a), true);
    assert.equal(await verifyPassword(Buffer.from('s3cret'), b), true);
    assert.equal(await verifyPassword('s3cret ', a), false);
    assert.equal(await verifyPassword('', a), false);
  });

  test('the cost parameters travel with the hash', async () => {
    const cheap = await hashPassword('pw', { N: 1024, r: 4, p: 2 });
    assert.match(cheap, /^\$scrypt\$N=1024,r=4,p=2\$/);
    assert.equal(await verifyPassword('pw', cheap), true);
  });

  test('malformed hashes are described, and verifying one is a config error', async () => {
    assert.match(String(parsePasswordHash('plaintext')), /not a hash made by 'uplink passwd'/);
    assert.match(String(parsePasswordHash('$scrypt$N=1000,r=8,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5a2V5')), /power of two/);
    assert.match(String(parsePasswordHash('$scrypt$N=16384,r=8,p=1$c2E$a2V5a2V5a2V5a2V5a2V5a2V5')), /salt shorter/);
    assert.match(String(parsePasswordHash('$scrypt$N=1048576,r=64,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5a2V5')), /512 MiB/);
    await assert.rejects(verifyPassword('x', '$scrypt$nope'), { code: 'CONFIG_INVALID' });
  });
});

describe('uplink passwd', () => {
  const run = async (args: string[], stdin = ''): Promise<string> => {
    let text = '';
    const code = await passwdCommand(args, (t) => { text += t; }, Readable.from([stdin]));
    assert.equal(code, 0);
    return text;
  };

  test('hashes the first line of standard input', async () => {
    const out = await run([], 'from-stdin\nignored second line\n');
    assert.equal(out.split('\n').length, 2);
    assert.equal(await verifyPassword('from-stdin', out.trim()), true);
  });

  test('--password and --user print a users-file line', async () => {
    const out = await run(['--user', 'press-7', '--password', 'pw 7']);
    const [user, hash] = [out.slice(0, out.indexOf(':')), out.slice(out.indexOf(':') + 1).trim()];
    assert.equal(user, 'press-7');
    assert.equal(await verifyPassword('pw 7', hash), true);
  });

  test('an empty password, a bad user name or an unknown flag is a usage error', async () => {
    await assert.rejects(run([], ''), { code: 'USAGE' });
    await assert.rejects(run(['--user', 'a:b', '--password', 'x']), { code: 'USAGE' });
    await assert.rejects(run(['--frobnicate']), { code: 'USAGE' });
  });

  test('what it prints is accepted by the broker as an account', async () => {
    const out = await run(['--user', 'dev1'], 'pw1\n');
    const dir = await mkdtemp(join(tmpdir(), 'uplink-passwd-'));
    await writeFile(join(dir, 'users'), out);
    const auth = new Authenticator({ auth: 'password', users: [], usersFile: join(dir, 'users') });
    assert.equal(await auth.load(), 1);
    assert.deepEqual(await auth.authenticate({ username: 'dev1', password: Buffer.from('pw1'), certCn: undefined }), { ok: true, identity: 'dev1' });
    assert.equal((await auth.authenticate({ username: 'dev1', password: Buffer.from('pw2'), certCn: undefined })).ok, false);
  });
});

describe('loading device accounts', () => {
  const load = (config: ConstructorParameters<typeof Authenticator>[0]): Promise<number> => new Authenticator(config).load();

  test('a bad hash in the config or the users file stops start() and names its place', async () => {
    await assert.rejects(load({ auth: 'password', users: [{ username: 'a', password: '$scrypt$bad' }] }),
      { code: 'CONFIG_INVALID', message: /^mqtt\.users\.0: the password of 'a' is not a hash/ });
    const dir = await mkdtemp(join(tmpdir(), 'uplink-users-'));
    const file = join(dir, 'users');
    await writeFile(file, `# comment\n\nok:${await hashPassword('x', { N: 1024, r: 1, p: 1 })}\nbroken-line\n`);
    await assert.rejects(load({ auth: 'password', users: [], usersFile: file }),
      { code: 'CONFIG_INVALID', message: new RegExp(`usersFile ${file} line 4: expected "username:hash"`) });
  });

  test('a user defined twice, a missing users file, no accounts at all, certificate auth without a CA', async () => {
    const hash = await hashPassword('x', { N: 1024, r: 1, p: 1 });
    await assert.rejects(load({ auth: 'password', users: [{ username: 'a', password: hash }, { username: 'a', password: hash }] }),
      { message: /user 'a' is defined twice/ });
    await assert.rejects(load({ auth: 'password', users: [], usersFile: '/nonexistent/users' }),
      { code: 'CONFIG_UNREADABLE', message: /mqtt\.usersFile: \/nonexistent\/users cannot be read \(ENOENT\)/ });
    await assert.rejects(load({ auth: 'password', users: [] }), { code: 'CONFIG_INVALID', message: /no accounts/ });
    await assert.rejects(load({ auth: 'certificate', users: [] }), { code: 'CONFIG_INVALID', message: /mqtt\.tls\.ca/ });
  });
});

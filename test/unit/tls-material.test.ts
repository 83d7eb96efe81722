/**
 * core/tls-material.ts: what is wrong with TLS files, named the same way every time. A wrong
 * passphrase is not always "bad decrypt": about one in 150 decrypts to bytes whose padding
 * happens to check, and OpenSSL then reports the garbage as "unsupported" (CI met one).
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { describe, test } from 'node:test';
import { createSecureContext } from 'node:tls';
import { tlsMaterialProblem } from '../../src/core/tls-material.js';

const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const passphrase = 'the-right-one';
const encrypted = Buffer.from(privateKey.export({ type: 'pkcs8', format: 'pem', cipher: 'aes-256-cbc', passphrase }));
const legacyEncrypted = Buffer.from(
  generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey.export({ type: 'pkcs1', format: 'pem', cipher: 'aes-256-cbc', passphrase }),
);

/** A wrong passphrase that OpenSSL does not report as "bad decrypt" (found by trying; seeded by the index). */
function wrongPassphraseOpenSslMisnames(key: Buffer): string {
  for (let i = 0; i < 20_000; i++) {
    const wrong = `wrong-${i}`;
    try {
      createSecureContext({ key, passphrase: wrong });
    } catch (err) {
      if (!/bad decrypt/i.test((err as Error).message)) return wrong;
    }
  }
  throw new Error('no wrong passphrase in 20000 gave anything but "bad decrypt"');
}

describe('TLS material', () => {
  test('an encrypted key with its passphrase: no problem', () => {
    assert.equal(tlsMaterialProblem({ key: encrypted, passphrase }), undefined);
    assert.equal(tlsMaterialProblem({ key: legacyEncrypted, passphrase }), undefined);
  });

  test('a wrong passphrase is a passphrase problem, also when OpenSSL calls the result "unsupported"', () => {
    assert.equal(tlsMaterialProblem({ key: encrypted, passphrase: 'wrong' })?.kind, 'passphrase');
    const misnamed = wrongPassphraseOpenSslMisnames(encrypted);
    assert.equal(tlsMaterialProblem({ key: encrypted, passphrase: misnamed })?.kind, 'passphrase', `passphrase ${misnamed}`);
    assert.equal(tlsMaterialProblem({ key: legacyEncrypted, passphrase: 'wrong' })?.kind, 'passphrase');
  });

  test('an encrypted key without a passphrase is a passphrase problem', () => {
    assert.equal(tlsMaterialProblem({ key: encrypted })?.kind, 'passphrase');
    assert.equal(tlsMaterialProblem({ key: legacyEncrypted })?.kind, 'passphrase');
  });

  test('a key that is not a key is unusable, whatever the passphrase; the reason names no material', () => {
    const garbage = Buffer.from('-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n');
    for (const input of [{ key: garbage }, { key: garbage, passphrase: 'x' }]) {
      const problem = tlsMaterialProblem(input);
      assert.equal(problem?.kind, 'unusable');
      assert.doesNotMatch(problem!.reason, /bm90IGEga2V5|BEGIN/);
    }
  });
});

/**
 * Reads the certificate files named in the config, and checks that they can be used together.
 * Called before every connection attempt, so a rotated certificate takes effect on the next
 * reconnect. Errors name the files, never their contents.
 *
 * Error rules: every failure is an UPSTREAM_TLS UpstreamError, not retryable (someone must fix the
 * file); the connection still tries again at the capped interval, and a file fixed on disk is
 * picked up by the next attempt. A key that does not parse, a wrong passphrase or a key that does
 * not belong to the certificate is found here, before rhea sees the material: TLS would throw it
 * from inside the connection attempt, out of reach of the error handling.
 */
import { readFileSync } from 'node:fs';
import { tlsMaterialProblem, type TlsMaterialProblem } from '../../core/tls-material.js';
import { UpstreamError } from './errors.js';

export interface TlsPaths {
  ca?: string;
  cert?: string;
  key?: string;
  /** Of an encrypted key file. */
  passphrase?: string;
}

export interface TlsMaterial {
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
}

const FILES = ['ca', 'cert', 'key'] as const;

export function readTlsFiles(paths: TlsPaths | undefined): TlsMaterial {
  const material: TlsMaterial = {};
  for (const name of FILES) {
    const path = paths?.[name];
    if (path === undefined) continue;
    try {
      material[name] = readFileSync(path);
    } catch (err) {
      throw new UpstreamError('UPSTREAM_TLS', `cannot read upstream.tls.${name} ${path}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`,
        { retryable: false, cause: err });
    }
  }
  const problem = tlsMaterialProblem({ ...material, passphrase: paths?.passphrase });
  if (problem !== undefined) {
    const named = FILES.filter((name) => paths?.[name] !== undefined).map((name) => `upstream.tls.${name} ${paths![name]}`).join(', ');
    throw new UpstreamError('UPSTREAM_TLS', `the upstream TLS files cannot be used (${PROBLEM_WORDS[problem.kind] ?? problem.reason}); check ${named}`,
      { retryable: false });
  }
  return material;
}

const PROBLEM_WORDS: Partial<Record<TlsMaterialProblem['kind'], string>> = {
  passphrase: 'the key cannot be decrypted: wrong or missing upstream.tls.passphrase',
  mismatch: 'the key does not belong to the certificate',
};

export function sameMaterial(a: TlsMaterial, b: TlsMaterial): boolean {
  return FILES.every((k) => (a[k] === undefined ? b[k] === undefined : b[k] !== undefined && a[k]!.equals(b[k]!)));
}

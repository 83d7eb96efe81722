/**
 * TLS files that exist but cannot be used: a key that does not parse, a wrong passphrase, a key
 * that does not belong to its certificate, a CA file that holds no certificate. Found when the
 * config is loaded (and by `uplink check-config`), not at the first connection. The files are
 * read to try them; their contents never appear in a message.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { createSecureContext } from 'node:tls';
import type { PathSegment } from './issues.js';
import type { Config } from './schema.js';

interface Issue { path: PathSegment[]; message: string }

interface TlsFiles { ca?: string | undefined; cert?: string | undefined; key?: string | undefined; passphrase?: string | undefined }

export function checkTlsMaterial(config: Config, baseDir: string): Issue[] {
  return [
    ...check(['upstream', 'tls'], config.upstream?.tls, baseDir),
    ...check(['mqtt', 'tls'], config.mqtt.tls, baseDir),
  ];
}

function check(at: PathSegment[], files: TlsFiles | undefined, baseDir: string): Issue[] {
  if (files === undefined) return [];
  const read = (path: string | undefined): Buffer | undefined => (path === undefined ? undefined : readFileSync(resolve(baseDir, path)));
  try {
    const ca = read(files.ca);
    const cert = read(files.cert);
    const key = read(files.key);
    createSecureContext({
      ...(ca === undefined ? {} : { ca }), ...(cert === undefined ? {} : { cert }), ...(key === undefined ? {} : { key }),
      ...(files.passphrase === undefined ? {} : { passphrase: files.passphrase }),
    });
    return [];
  } catch (err) {
    // A file that cannot be read was reported by the file checks already.
    if ((err as NodeJS.ErrnoException).syscall !== undefined) return [];
    const reason = ((err as Error).message ?? '').split('::').pop() ?? '';
    if (/bad decrypt|bad password/i.test(reason)) {
      return [{ path: [...at, files.passphrase === undefined ? 'key' : 'passphrase'], message: files.passphrase === undefined
        ? 'is encrypted: set the passphrase (tls.passphrase)' : 'does not decrypt tls.key' }];
    }
    if (/key values mismatch/i.test(reason)) return [{ path: [...at, 'key'], message: 'does not belong to tls.cert' }];
    return [{ path: at, message: `the certificate files cannot be used: ${reason || String(err)}` }];
  }
}

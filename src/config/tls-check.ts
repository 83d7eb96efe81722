/**
 * TLS files that exist but cannot be used: a key that does not parse, a wrong passphrase, a key
 * that does not belong to its certificate, a CA file that holds no certificate. Found when the
 * config is loaded (and by `uplink check-config`), not at the first connection. The files are
 * read to try them; their contents never appear in a message.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { tlsMaterialProblem, type TlsMaterialProblem } from '../core/tls-material.js';
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
  let problem: TlsMaterialProblem | undefined;
  try {
    const read = (path: string | undefined): Buffer | undefined => (path === undefined ? undefined : readFileSync(resolve(baseDir, path)));
    problem = tlsMaterialProblem({ ca: read(files.ca), cert: read(files.cert), key: read(files.key), passphrase: files.passphrase });
  } catch {
    // A file that cannot be read was reported by the file checks already.
    return [];
  }
  if (problem === undefined) return [];
  if (problem.kind === 'passphrase') {
    return [{ path: [...at, files.passphrase === undefined ? 'key' : 'passphrase'], message: files.passphrase === undefined
      ? 'is encrypted: set the passphrase (tls.passphrase)' : 'does not decrypt tls.key' }];
  }
  if (problem.kind === 'mismatch') return [{ path: [...at, 'key'], message: 'does not belong to tls.cert' }];
  return [{ path: at, message: `the certificate files cannot be used: ${problem.reason}` }];
}

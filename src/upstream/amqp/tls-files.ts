/**
 * Reads the certificate files named in the config. Called before every connection attempt, so a
 * rotated certificate takes effect on the next reconnect. Errors name the file, never its contents.
 */
import { readFileSync } from 'node:fs';
import { UpstreamError } from './errors.js';

export interface TlsPaths {
  ca?: string;
  cert?: string;
  key?: string;
}

export interface TlsMaterial {
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
}

export function readTlsFiles(paths: TlsPaths | undefined): TlsMaterial {
  const material: TlsMaterial = {};
  for (const name of ['ca', 'cert', 'key'] as const) {
    const path = paths?.[name];
    if (path === undefined) continue;
    try {
      material[name] = readFileSync(path);
    } catch (err) {
      throw new UpstreamError('UPSTREAM_TLS', `cannot read upstream.tls.${name} ${path}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`,
        { retryable: true, cause: err });
    }
  }
  return material;
}

export function sameMaterial(a: TlsMaterial, b: TlsMaterial): boolean {
  return (['ca', 'cert', 'key'] as const).every((k) => (a[k] === undefined ? b[k] === undefined : b[k] !== undefined && a[k]!.equals(b[k]!)));
}

/**
 * Reads the certificate files named in the config, and checks that they can be used together.
 * Called before every connection attempt, so a rotated certificate takes effect on the next
 * reconnect. Errors name the files, never their contents.
 *
 * Error rules: every failure is an UPSTREAM_TLS UpstreamError, retryable (a file fixed on disk is
 * picked up by the next attempt). A key that does not parse, a wrong passphrase or a key that does
 * not belong to the certificate is found here, before rhea sees the material: TLS would throw it
 * from inside the connection attempt, out of reach of the error handling.
 */
import { readFileSync } from 'node:fs';
import { createSecureContext } from 'node:tls';
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
        { retryable: true, cause: err });
    }
  }
  try {
    createSecureContext({ ...material, ...(paths?.passphrase === undefined ? {} : { passphrase: paths.passphrase }) });
  } catch (err) {
    const named = FILES.filter((name) => paths?.[name] !== undefined).map((name) => `upstream.tls.${name} ${paths![name]}`).join(', ');
    throw new UpstreamError('UPSTREAM_TLS', `the upstream TLS files cannot be used (${tlsReason(err)}); check ${named}`,
      { retryable: true, cause: err });
  }
  return material;
}

/** OpenSSL's words, made readable: "error:1C800064:Provider routines::bad decrypt" → "bad decrypt". */
function tlsReason(err: unknown): string {
  const message = (err as Error).message ?? String(err);
  const reason = message.split('::').pop() ?? message;
  if (/bad decrypt|bad password/i.test(reason)) return 'the key cannot be decrypted: wrong or missing upstream.tls.passphrase';
  if (/key values mismatch/i.test(reason)) return 'the key does not belong to the certificate';
  return reason;
}

export function sameMaterial(a: TlsMaterial, b: TlsMaterial): boolean {
  return FILES.every((k) => (a[k] === undefined ? b[k] === undefined : b[k] !== undefined && a[k]!.equals(b[k]!)));
}

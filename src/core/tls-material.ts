/**
 * Certificate material tried as TLS will use it (node:tls createSecureContext), so that a key
 * that does not parse, a wrong or missing passphrase, or a key of another certificate is found
 * where it can be reported (config load, before a connection attempt) instead of thrown from
 * inside a connection. Only OpenSSL's reason leaves here, never the material.
 */
import { createPrivateKey } from 'node:crypto';
import { createSecureContext } from 'node:tls';

export interface TlsMaterialInput {
  ca?: Buffer | undefined;
  cert?: Buffer | undefined;
  key?: Buffer | undefined;
  passphrase?: string | undefined;
}

export type TlsMaterialProblem =
  /** The key is encrypted and the passphrase is missing or wrong. */
  | { kind: 'passphrase'; reason: string }
  /** The key does not belong to the certificate. */
  | { kind: 'mismatch'; reason: string }
  | { kind: 'unusable'; reason: string };

export function tlsMaterialProblem(material: TlsMaterialInput): TlsMaterialProblem | undefined {
  const { key, passphrase } = material;
  // Without a MAC, a wrong passphrase cannot be told from a corrupt encrypted key, and OpenSSL
  // names it by where the garbage failed: "bad decrypt" mostly, "unsupported" (the decoder)
  // when the padding happens to check. An encrypted key that does not decrypt is a passphrase problem.
  if (key !== undefined && ENCRYPTED_PEM.test(key.toString('latin1'))) {
    try {
      createPrivateKey({ key, format: 'pem', ...(passphrase === undefined ? {} : { passphrase }) });
    } catch (err) {
      return { kind: 'passphrase', reason: reasonOf(err) };
    }
  }
  const options = Object.fromEntries(Object.entries(material).filter(([, v]) => v !== undefined));
  try {
    createSecureContext(options);
    return undefined;
  } catch (err) {
    const reason = reasonOf(err);
    if (/bad decrypt|bad password/i.test(reason)) return { kind: 'passphrase', reason };
    if (/key values mismatch/i.test(reason)) return { kind: 'mismatch', reason };
    return { kind: 'unusable', reason };
  }
}

/** PKCS#8 (BEGIN ENCRYPTED PRIVATE KEY) and the legacy PEM header of PKCS#1/SEC1 keys. */
const ENCRYPTED_PEM = /-----BEGIN ENCRYPTED PRIVATE KEY-----|^Proc-Type:\s*4,ENCRYPTED/m;

/** "error:1C800064:Provider routines::bad decrypt" → "bad decrypt" */
function reasonOf(err: unknown): string {
  const message = (err as Error).message ?? String(err);
  return message.split('::').pop() || message;
}

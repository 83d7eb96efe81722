/**
 * Certificate material tried as TLS will use it (node:tls createSecureContext), so that a key
 * that does not parse, a wrong or missing passphrase, or a key of another certificate is found
 * where it can be reported (config load, before a connection attempt) instead of thrown from
 * inside a connection. Only OpenSSL's reason leaves here, never the material.
 */
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
  const options = Object.fromEntries(Object.entries(material).filter(([, v]) => v !== undefined));
  try {
    createSecureContext(options);
    return undefined;
  } catch (err) {
    const message = (err as Error).message ?? String(err);
    // "error:1C800064:Provider routines::bad decrypt" → "bad decrypt"
    const reason = message.split('::').pop() || message;
    if (/bad decrypt|bad password/i.test(reason)) return { kind: 'passphrase', reason };
    if (/key values mismatch/i.test(reason)) return { kind: 'mismatch', reason };
    return { kind: 'unusable', reason };
  }
}

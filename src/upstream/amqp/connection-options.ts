/**
 * rhea's options for one connection attempt to one URL: the transport (TCP, or TLS with the
 * certificate files read afresh, so that a rotated certificate takes effect on the next attempt),
 * the SASL mechanism and the idle timeout. rhea's own reconnect is always off (FACTS.md).
 *
 * Error rules: the TLS files are read here; a file that cannot be read or used throws its
 * UPSTREAM_TLS UpstreamError (tls-files.ts), before rhea sees anything.
 */
import type { ConnectionOptions } from 'rhea';
import { readTlsFiles, type TlsMaterial, type TlsPaths } from './tls-files.js';

export interface ConnectionSettings {
  sasl: 'external' | 'plain' | 'anonymous';
  tls?: TlsPaths & { servername?: string };
  username?: string;
  password?: string;
  containerId: string;
  idleTimeoutMs: number;
}

/** The options for `url`, and the TLS material read for them (empty for amqp://). */
export function connectionOptions(url: URL, o: ConnectionSettings): { options: ConnectionOptions; tls: TlsMaterial } {
  const secure = url.protocol === 'amqps:';
  const host = url.hostname.replace(/^\[|\]$/g, '');
  const port = url.port === '' ? (secure ? 5671 : 5672) : Number(url.port);
  const base: Record<string, unknown> = {
    host, port, hostname: host, container_id: o.containerId, reconnect: false, idle_time_out: o.idleTimeoutMs,
  };
  let tls: TlsMaterial = {};
  if (secure) {
    tls = readTlsFiles(o.tls);
    Object.assign(base, {
      transport: 'tls', servername: o.tls?.servername ?? host, minVersion: 'TLSv1.2', rejectUnauthorized: true,
      ...(tls.ca ? { ca: tls.ca } : {}), ...(tls.cert ? { cert: tls.cert } : {}), ...(tls.key ? { key: tls.key } : {}),
      ...(o.tls?.passphrase === undefined ? {} : { passphrase: o.tls.passphrase }),
    });
  } else {
    base.transport = 'tcp';
  }
  if (o.sasl === 'external') base.enable_sasl_external = true;
  else if (o.sasl === 'plain') Object.assign(base, { username: o.username, password: o.password });
  // ANONYMOUS: rhea offers it when given a user name without a password.
  else base.username = 'anonymous';
  return { options: base as unknown as ConnectionOptions, tls };
}

/** A URL for logs: never with credentials. */
export function redact(url: string): string {
  try {
    const u = new URL(url);
    u.username = '';
    u.password = '';
    return u.href.replace(/\/$/, '');
  } catch {
    return '(invalid url)';
  }
}
